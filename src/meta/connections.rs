//! The connection layer of the metadata database: one writer connection and
//! a small pool of WAL reader connections, and the only two ways the rest of
//! `meta` reaches SQLite.
//!
//! - `Database::read` runs a query on a reader connection inside one read
//!   transaction, so it sees one committed state. In WAL mode a reader reads
//!   the last committed state while the writer is in the middle of a
//!   transaction or an fsync: lookups, getattr and listings never wait behind
//!   a durable commit. A write is visible to every read that starts after the
//!   write returned.
//! - `Database::write_transaction` is the write funnel: every change to the
//!   database is one (IMMEDIATE) transaction on the writer connection that
//!   goes through it, with the reads that belong to the change. It is the one
//!   place a replicated metadata journal hooks in: each committed change, in
//!   commit order, passes here.
//!
//! Durability: the writer runs with synchronous=NORMAL, so changes commit
//! without fsync (they survive a daemon crash and reach the disk with the
//! next durable commit, like a local filesystem's metadata before fsync).
//! When a `Durability::Durable` transaction (or `sync`) returns, it and
//! every commit before it are on stable storage twice over: the WAL file
//! is fdatasynced (what synchronous=FULL would do at commit, but outside
//! the writer lock, so other writers go on and concurrent syncs share the
//! disk's flush) and, at the same time, the metadata journal on the nodes
//! holds every record through it (`JournalSink`).
//!
//! The journal: each committed transaction that changed something gets the
//! next log sequence number (LSN, stored in the same transaction as
//! `settings.journal_lsn`, so a copy of the database says which records it
//! already holds) and its changeset (`changes`) is queued, in commit order,
//! for the journal writer to take (`RecordQueue`).
//!
//! The database file under the daemon: the funnel checks, before each
//! write, that the path still names the file SQLite opened (device and
//! inode). A database deleted or replaced under a running daemon would
//! take every later change with it at the next restart, so from then on
//! writes are refused (`Error::ReadOnly`) until a restart, reads go on from
//! the still-open file, and a copy of it is saved next to the path
//! (`VACUUM INTO`), so that nothing acknowledged is lost.
//!
//! This module knows nothing about the tables; schema and queries live in the
//! other files of `meta`.

use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::changes::ChangeCapture;
use super::records::{JournalRecord, JournalSink, RecordQueue};
use crate::error::{Error, Result};

/// Reader connections kept open. Reads are short and CPU-bound on SQLite's
/// page cache, so more connections than cores add no throughput, while each
/// keeps its own page cache (up to 2 MiB) and statement cache. Four cover the
/// usual concurrent readers (FUSE request workers, HTTP handlers, one
/// maintenance scan) on a small machine; a read that finds all four busy opens
/// a short-lived extra connection instead of waiting behind a long scan.
pub(super) const READER_POOL_SIZE: usize = 4;
/// How long a connection waits for a lock held by another process (a
/// checkpoint, an external `sqlite3` shell) before reporting busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read waits for a pooled reader once the database file is
/// gone from its path (no new reader can be opened then).
const READER_WAIT: Duration = Duration::from_secs(5);
/// Prepared statements cached per connection.
const STATEMENT_CACHE: usize = 64;

/// How a write transaction reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// Commit without fsync (synchronous=NORMAL): namespace changes, shard
    /// states, queues, recovery records.
    Buffered,
    /// Commit with synchronous=FULL: file content commits and explicit syncs.
    Durable,
}

pub(super) struct Database {
    path: PathBuf,
    /// (device, inode) of the file opened, to notice it deleted or replaced.
    file_id: (u64, u64),
    /// Why writes are refused, once the file was found deleted or replaced.
    lost: OnceLock<String>,
    writer: Mutex<Connection>,
    idle_readers: Mutex<Vec<Connection>>,
    /// Signalled when a reader goes back to the pool.
    reader_back: Condvar,
    /// Write transactions committed since the database was opened (a
    /// snapshot is only worth taking when this moved).
    commits: AtomicU64,
    /// Committed changesets waiting for the journal writer.
    records: Arc<RecordQueue>,
    /// The journal writer, once the nodes are set up.
    sink: OnceLock<Arc<dyn JournalSink>>,
    /// The WAL file, opened on the first durable sync.
    wal: Mutex<Option<std::fs::File>>,
}

impl Database {
    /// Open the writer connection (switching the database to WAL) and let
    /// `prepare` bring the schema up to date before any reader opens.
    pub(super) fn open(
        path: &Path,
        prepare: impl FnOnce(&mut Connection) -> Result<()>,
    ) -> Result<Database> {
        let mut writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.pragma_update(None, "foreign_keys", "OFF")?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        prepare(&mut writer)?;
        let last_lsn: Option<String> = writer
            .query_row(
                "SELECT value FROM settings WHERE key='journal_lsn'",
                [],
                |r| r.get(0),
            )
            .ok();
        let last_lsn = last_lsn.and_then(|v| v.parse().ok()).unwrap_or(0);
        // Extra readers open later: a relative path must not follow a chdir.
        let path = std::fs::canonicalize(path)?;
        let file = std::fs::metadata(&path)?;
        let readers = (0..READER_POOL_SIZE)
            .map(|_| open_reader(&path))
            .collect::<Result<Vec<_>>>()?;
        Ok(Database {
            path,
            file_id: (file.dev(), file.ino()),
            lost: OnceLock::new(),
            writer: Mutex::new(writer),
            idle_readers: Mutex::new(readers),
            reader_back: Condvar::new(),
            commits: AtomicU64::new(0),
            records: Arc::new(RecordQueue::starting_at(last_lsn)),
            sink: OnceLock::new(),
            wal: Mutex::new(None),
        })
    }

    /// The queue of committed records (shared with the journal writer).
    pub(super) fn records(&self) -> &Arc<RecordQueue> {
        &self.records
    }

    /// Hand records to `sink` from now on (once).
    pub(super) fn attach_sink(&self, sink: Arc<dyn JournalSink>) {
        let _ = self.sink.set(sink);
    }

    /// Run `query` on a reader connection in one read transaction: it sees
    /// the last committed state and never waits for the writer.
    pub(super) fn read<T>(&self, query: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut reader = self.take_reader()?;
        let result = (|| {
            let snapshot = reader.connection().transaction()?;
            let value = query(&snapshot)?;
            snapshot.commit()?;
            Ok(value)
        })();
        drop(reader);
        result
    }

    /// The write funnel: run `change` in one transaction on the writer and
    /// commit it; a transaction that changed rows gets the next LSN and
    /// its changeset is queued for the journal. An error from `change`
    /// rolls the whole transaction back. `Durable`: returns once the change
    /// and every one before it are on stable storage (`sync`); an error
    /// then may come after the commit (committed, not confirmed durable), so
    /// callers that keep books about what the change references commit
    /// `Buffered`, settle their books, then call `sync` themselves.
    pub(super) fn write_transaction<T>(
        &self,
        durability: Durability,
        change: impl FnOnce(&Transaction) -> Result<T>,
    ) -> Result<T> {
        self.check_file()?;
        let mut writer = self.writer.lock();
        self.commits.fetch_add(1, Ordering::Relaxed);
        let (value, queued) = self.commit_recorded(&mut writer, change)?;
        drop(writer);
        if let (Some(bytes), Some(sink)) = (queued, self.sink.get()) {
            sink.records_queued(bytes);
        }
        if durability == Durability::Durable {
            // The change is committed and visible; an error says only that
            // it is not confirmed durable.
            self.sync()?;
        }
        Ok(value)
    }

    /// Commit `change` with its changeset captured; returns the value and,
    /// when a record was queued, the bytes now queued.
    fn commit_recorded<T>(
        &self,
        writer: &mut Connection,
        change: impl FnOnce(&Transaction) -> Result<T>,
    ) -> Result<(T, Option<u64>)> {
        let capture = ChangeCapture::start(writer)?;
        let tx = Transaction::new_unchecked(writer, TransactionBehavior::Immediate)?;
        let value = change(&tx)?;
        if capture.is_empty() {
            tx.commit()?;
            return Ok((value, None));
        }
        let lsn = self.records.last_lsn() + 1;
        tx.prepare_cached(
            "INSERT INTO settings(key, value) VALUES('journal_lsn', ?1)
             ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        )?
        .execute([lsn.to_string()])?;
        let changeset = capture.changeset()?;
        tx.commit()?;
        drop(capture);
        Ok((
            value,
            Some(self.records.push(JournalRecord { lsn, changeset })),
        ))
    }

    /// Make every committed change durable: fdatasync of the WAL here and,
    /// at the same time, the journal records through the newest one on the
    /// nodes. Concurrent callers share both (the kernel merges the WAL
    /// syncs; the journal writer groups records into one append).
    pub(super) fn sync(&self) -> Result<()> {
        let lsn = self.records.last_lsn();
        let Some(sink) = self.sink.get() else {
            return self.sync_wal();
        };
        std::thread::scope(|scope| {
            let local = scope.spawn(|| self.sync_wal());
            let remote = sink.sync_through(lsn);
            let local = local
                .join()
                .unwrap_or_else(|_| Err(Error::Other("WAL sync panicked".into())));
            local.and(remote)
        })
    }

    /// fdatasync of the WAL file: every transaction committed before it
    /// reaches stable storage (a checkpoint that moved frames into the
    /// database file synced that file first).
    fn sync_wal(&self) -> Result<()> {
        let mut wal = self.wal.lock();
        if wal.is_none() {
            let mut name = self.path.as_os_str().to_owned();
            name.push("-wal");
            *wal = Some(std::fs::File::open(PathBuf::from(name))?);
        }
        let file = wal.as_ref().expect("opened above").try_clone()?;
        drop(wal);
        file.sync_data()?;
        Ok(())
    }

    /// Ok while the path still names the database file SQLite opened;
    /// `Error::ReadOnly` (for good) once it was deleted or replaced. One
    /// `stat`; a path that cannot be examined for another reason
    /// (permissions) is not taken for a lost database.
    pub(super) fn check_file(&self) -> Result<()> {
        if let Some(reason) = self.lost.get() {
            return Err(Error::ReadOnly(reason.clone()));
        }
        let what = match std::fs::metadata(&self.path) {
            Ok(named) if (named.dev(), named.ino()) == self.file_id => return Ok(()),
            Ok(_) => "was replaced by another file",
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                "was deleted"
            }
            Err(_) => return Ok(()),
        };
        Err(Error::ReadOnly(self.mark_lost(what)))
    }

    /// Refuse writes from now on, saving a copy of the still-open database
    /// next to its path first. Returns the reason given to every refusal.
    fn mark_lost(&self, what: &str) -> String {
        // Holding the writer: no change slips in between the copy and the
        // refusal, and only one thread makes the copy.
        let writer = self.writer.lock();
        if let Some(reason) = self.lost.get() {
            return reason.clone();
        }
        let path = self.path.display();
        let saved = match save_copy(&writer, &self.path) {
            Ok(copy) => format!(
                "a copy of the database as it was is saved at {}: stop minigcs, remove {path}-wal and {path}-shm if they are there, move the copy to {path}, then start it again",
                copy.display()
            ),
            Err(e) => format!(
                "saving a copy of it failed ({e}): what changed since the start is lost once minigcs stops"
            ),
        };
        let reason = format!(
            "the metadata database {path} {what} while minigcs was running; writes are refused until a restart so that nothing is acknowledged that a restart would lose; reads go on; {saved}"
        );
        log::error!("{reason}");
        self.lost.get_or_init(|| reason).clone()
    }

    /// Write transactions tried since the database was opened.
    pub(super) fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Write a consistent copy of the last committed state to the new file
    /// `dest` (`VACUUM INTO`). It runs on a connection of its own inside
    /// one read transaction: in WAL mode the writer goes on committing
    /// meanwhile, and the copy is compact (no free pages).
    ///
    /// Refused once the file was deleted or replaced under this process
    /// (the path would name another database, or a new empty one).
    pub(super) fn copy_into(&self, dest: &Path) -> Result<()> {
        self.check_file()?;
        let copier = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // The path could have changed between the check and the open.
        self.check_file()?;
        copier.busy_timeout(BUSY_TIMEOUT)?;
        copier.execute("VACUUM INTO ?1", [dest.to_string_lossy()])?;
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn idle_reader_count(&self) -> usize {
        self.idle_readers.lock().len()
    }

    /// A reader from the pool, or a new one while the path still names the
    /// database this process opened. Once it does not (deleted or replaced
    /// under us), opening by path would read, or even create, another
    /// file: wait for a reader of ours to come back instead.
    fn take_reader(&self) -> Result<PooledReader<'_>> {
        let mut idle = self.idle_readers.lock();
        let connection = loop {
            if let Some(connection) = idle.pop() {
                break connection;
            }
            drop(idle);
            if self.check_file().is_ok() {
                let connection = open_reader(&self.path)?;
                // The path could have changed between the check and the open.
                if self.check_file().is_ok() {
                    break connection;
                }
            }
            idle = self.idle_readers.lock();
            if idle.is_empty()
                && self
                    .reader_back
                    .wait_for(&mut idle, READER_WAIT)
                    .timed_out()
                && idle.is_empty()
            {
                return Err(Error::Unavailable(
                    "the metadata database was deleted or replaced and every reader of it is busy"
                        .into(),
                ));
            }
        };
        Ok(PooledReader {
            pool: self,
            connection: Some(connection),
        })
    }
}

/// What follows the database's file name in the name of a saved copy.
pub const RESCUED_INFIX: &str = ".rescued-";

/// Write a consistent copy of the open database (WAL included) to a new
/// file `<path>.rescued-<unix seconds>` next to `path`.
fn save_copy(writer: &Connection, path: &Path) -> Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!("{RESCUED_INFIX}{secs}"));
    let copy = PathBuf::from(name);
    if let Some(parent) = copy.parent() {
        std::fs::create_dir_all(parent)?;
    }
    writer.execute("VACUUM INTO ?1", [copy.to_string_lossy()])?;
    Ok(copy)
}

/// A connection that only reads (query_only): a bug that writes through it
/// fails instead of bypassing the write funnel.
fn open_reader(path: &Path) -> Result<Connection> {
    let reader = Connection::open(path)?;
    reader.pragma_update(None, "query_only", "ON")?;
    reader.busy_timeout(BUSY_TIMEOUT)?;
    reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(reader)
}

/// A reader taken from the pool; back to the pool on drop. It is closed
/// instead when the pool is already full (it was an extra one) or when a
/// failure left it inside a transaction.
struct PooledReader<'a> {
    pool: &'a Database,
    connection: Option<Connection>,
}

impl PooledReader<'_> {
    fn connection(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("reader present until drop")
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if !connection.is_autocommit() {
            return;
        }
        let mut idle = self.pool.idle_readers.lock();
        if idle.len() < READER_POOL_SIZE {
            idle.push(connection);
            self.pool.reader_back.notify_one();
        }
    }
}
