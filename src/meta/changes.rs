//! Row-level change capture with SQLite's session extension: each write
//! transaction of the funnel is recorded as a changeset (the rows it
//! inserted, the columns it updated with their old and new values, the rows
//! it deleted), and a changeset is applied to another database to replay
//! that transaction. The metadata journal on the nodes is made of these.
//!
//! Why changesets rather than a log of operations written by hand: every
//! change to the database already goes through one funnel, and a changeset
//! captures exactly what a transaction did, whatever code made it, with no
//! per-operation encoding to keep in step with the queries. Replay is
//! SQLite's own `sqlite3changeset_apply`.
//!
//! The extension is compiled into the bundled SQLite (`.cargo/config.toml`,
//! checked by `build.rs`); its few entry points are declared here because
//! rusqlite exposes them only together with a build-time dependency on
//! libclang. This is the only `unsafe` of `meta`.

use rusqlite::{ffi, Connection};
use std::ffi::{c_char, c_int, c_void};

use crate::error::{Error, Result};

// The conflict kinds passed to a conflict handler and its answers
// (sqlite3.h, session extension).
const CHANGESET_DATA: c_int = 1;
const CHANGESET_NOTFOUND: c_int = 2;
const CHANGESET_CONFLICT: c_int = 3;
const CHANGESET_OMIT: c_int = 0;
const CHANGESET_REPLACE: c_int = 1;

extern "C" {
    fn sqlite3session_create(
        db: *mut ffi::sqlite3,
        schema: *const c_char,
        session: *mut *mut c_void,
    ) -> c_int;
    fn sqlite3session_delete(session: *mut c_void);
    fn sqlite3session_attach(session: *mut c_void, table: *const c_char) -> c_int;
    fn sqlite3session_isempty(session: *mut c_void) -> c_int;
    fn sqlite3session_changeset(
        session: *mut c_void,
        size: *mut c_int,
        changeset: *mut *mut c_void,
    ) -> c_int;
    fn sqlite3changeset_apply(
        db: *mut ffi::sqlite3,
        size: c_int,
        changeset: *mut c_void,
        filter: Option<unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int>,
        conflict: Option<unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int>,
        context: *mut c_void,
    ) -> c_int;
}

/// Records every change made through one connection to the tables of its
/// main database that have a primary key (all of minigcs's tables; SQLite's
/// own `sqlite_sequence` has none and is rebuilt by replaying the inserts).
pub(super) struct ChangeCapture<'conn> {
    session: *mut c_void,
    _connection: std::marker::PhantomData<&'conn Connection>,
}

impl<'conn> ChangeCapture<'conn> {
    /// Start recording on `connection`; stops when dropped.
    pub(super) fn start(connection: &'conn Connection) -> Result<ChangeCapture<'conn>> {
        let mut session = std::ptr::null_mut();
        // SAFETY: the handle is valid while `connection` lives, and the
        // capture borrows it for its whole life; "main\0" is a C string.
        let rc =
            unsafe { sqlite3session_create(connection.handle(), c"main".as_ptr(), &mut session) };
        check(rc, "starting change capture")?;
        let capture = ChangeCapture {
            session,
            _connection: std::marker::PhantomData,
        };
        // SAFETY: `session` was just created; a null table attaches all.
        let rc = unsafe { sqlite3session_attach(capture.session, std::ptr::null()) };
        check(rc, "attaching change capture")?;
        Ok(capture)
    }

    /// Whether nothing was changed since the capture started.
    pub(super) fn is_empty(&self) -> bool {
        // SAFETY: the session lives until drop.
        unsafe { sqlite3session_isempty(self.session) != 0 }
    }

    /// The changes made so far, as a changeset.
    pub(super) fn changeset(&self) -> Result<Vec<u8>> {
        let mut size: c_int = 0;
        let mut buffer: *mut c_void = std::ptr::null_mut();
        // SAFETY: the session lives until drop; on success SQLite hands us
        // `size` bytes at `buffer`, which we copy and then free with
        // sqlite3_free as the API requires.
        unsafe {
            let rc = sqlite3session_changeset(self.session, &mut size, &mut buffer);
            if rc != ffi::SQLITE_OK {
                if !buffer.is_null() {
                    ffi::sqlite3_free(buffer);
                }
                return check(rc, "reading captured changes").map(|_| Vec::new());
            }
            if buffer.is_null() || size <= 0 {
                return Ok(Vec::new());
            }
            let bytes = std::slice::from_raw_parts(buffer as *const u8, size as usize).to_vec();
            ffi::sqlite3_free(buffer);
            Ok(bytes)
        }
    }
}

impl Drop for ChangeCapture<'_> {
    fn drop(&mut self) {
        // SAFETY: created in `start`, deleted once, while the connection
        // (borrowed for 'conn) is still open.
        unsafe { sqlite3session_delete(self.session) }
    }
}

/// What replaying one changeset met.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyReport {
    /// Rows whose current values differed from the changeset's "before"
    /// (overwritten with its "after"), or inserts of rows already there
    /// (replaced).
    pub replaced: u64,
    /// Updates or deletes of rows that were not there (skipped).
    pub missing: u64,
}

unsafe extern "C" fn on_conflict(context: *mut c_void, kind: c_int, _iter: *mut c_void) -> c_int {
    // SAFETY: `context` is the `ApplyReport` passed to
    // sqlite3changeset_apply by `apply`, alive for the whole call.
    let report = unsafe { &mut *(context as *mut ApplyReport) };
    match kind {
        CHANGESET_DATA | CHANGESET_CONFLICT => {
            report.replaced += 1;
            CHANGESET_REPLACE
        }
        CHANGESET_NOTFOUND => {
            report.missing += 1;
            CHANGESET_OMIT
        }
        // A constraint or foreign-key failure: the row is skipped.
        _ => {
            report.missing += 1;
            CHANGESET_OMIT
        }
    }
}

/// Apply `changeset` to `connection` (in its own transaction, as SQLite
/// does). The journal is the record of what happened: where the database
/// disagrees with a change's "before", the change's "after" wins.
pub(super) fn apply(connection: &Connection, changeset: &[u8]) -> Result<ApplyReport> {
    let mut report = ApplyReport::default();
    if changeset.is_empty() {
        return Ok(report);
    }
    let size = c_int::try_from(changeset.len())
        .map_err(|_| Error::Other("a journal record is larger than 2 GiB".into()))?;
    // SAFETY: the handle is valid while `connection` lives; SQLite only
    // reads the changeset buffer; `report` outlives the call.
    let rc = unsafe {
        sqlite3changeset_apply(
            connection.handle(),
            size,
            changeset.as_ptr() as *mut c_void,
            None,
            Some(on_conflict),
            &mut report as *mut ApplyReport as *mut c_void,
        )
    };
    check(rc, "replaying a journal record")?;
    Ok(report)
}

fn check(rc: c_int, doing: &str) -> Result<()> {
    if rc == ffi::SQLITE_OK {
        return Ok(());
    }
    Err(Error::Db(rusqlite::Error::SqliteFailure(
        ffi::Error::new(rc),
        Some(format!("{doing} (SQLite session extension)")),
    )))
}
