//! The metadata database (SQLite in WAL mode): the namespace (inodes,
//! directory entries, symlink targets, xattrs), each file's chunk list, where
//! every shard lives and whether it is healthy, the queue of superseded
//! chunks, and recovery records. Every multi-step change is one transaction.
//! This module never sees file bytes and never touches nodes.
//!
//! `Meta` is one type whose methods are spread over the files of this folder,
//! one concern each:
//!
//! - `connections`: the writer connection, the pool of WAL readers, the read
//!   helper and the one write funnel every change goes through;
//! - `changes`: each transaction's changeset (SQLite's session extension),
//!   and replaying one onto another database;
//! - `records`: committed changesets queued for the metadata journal;
//! - `schema`: tables and migrations;
//! - `inodes`: inode rows, attributes, xattrs;
//! - `lookup`: finding names (lookup, resolve, listings, parents);
//! - `listing`: object keys in key order from a bound (keyset paging);
//! - `namespace`: changing names (create, link, unlink, rmdir, rename, purge);
//! - `posix`: multi-step POSIX changes made atomic (create-or-open, ACL + mode);
//! - `file_content`: chunk lists and file commits;
//! - `shard_map`: shard placement and health, usage statistics;
//! - `collection_queue`: superseded chunks waiting for their shards to go;
//! - `recoveries`: records of node recoveries;
//! - `uploads`: S3 multipart uploads in progress and their parts' chunks.
//!
//! The types every layer speaks (`Inode`, `Kind`, …) live in `crate::model`
//! and are re-exported here.

mod changes;
mod collection_queue;
mod connections;
mod file_content;
mod inodes;
mod listing;
mod lookup;
mod namespace;
pub mod posix;
mod records;
mod recoveries;
mod schema;
mod shard_map;
#[cfg(test)]
mod tests;
mod uploads;
#[cfg(test)]
mod uploads_tests;

use rusqlite::{params, OptionalExtension};
use std::path::Path;

use crate::error::{Error, Result};
use connections::{Database, Durability};

pub use crate::model::ShardState;
pub use crate::model::{now_nanos, AttrChange, Inode, Kind, Nanos, RenameMode, ROOT_INO};
pub use changes::ApplyReport;
pub use connections::RESCUED_INFIX;
pub use file_content::{CommitOutcome, CreatedEntries, FileCommit, PutOutcome};
pub use namespace::Unlinked;
pub use records::{JournalRecord, JournalSink, RecordQueue};
pub use shard_map::ChunkRecord;
pub use uploads::{PartMove, PartRecord, UploadRecord};

pub struct Meta {
    db: Database,
    node_ids: Vec<String>,
}

impl Meta {
    /// Open (creating if needed) the database. Returns the cluster id and
    /// whether the database was created now.
    ///
    /// A database that holds no store yet (no file, or an earlier start
    /// stopped before creating one) first asks `on_new`: an error leaves no
    /// store (and no file where there was none; the next start asks again); `Ok(Some(id))` proposes the
    /// cluster id to create it with when `wanted_cluster_id` is None.
    pub fn open(
        path: &Path,
        node_ids: Vec<String>,
        wanted_cluster_id: Option<&str>,
        on_new: impl FnOnce() -> Result<Option<String>>,
    ) -> Result<(Meta, String, bool)> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // No file yet: ask before SQLite creates one, so a refusal leaves
        // nothing behind that looks like a database.
        let mut on_new = Some(on_new);
        let mut proposed = None;
        if !path.exists() {
            proposed = on_new.take().map_or(Ok(None), |ask| ask())?;
        }
        let db = Database::open(path, schema::migrate)?;
        let existing: Option<String> = db.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT value FROM settings WHERE key='cluster_id'",
                    [],
                    |r| r.get(0),
                )
                .optional()?)
        })?;
        let (cluster_id, created) = match existing {
            Some(id) => {
                if let Some(w) = wanted_cluster_id {
                    if w != id {
                        return Err(Error::Config(format!(
                            "cluster.id is {w:?} but the metadata at {} belongs to cluster {id:?}",
                            path.display()
                        )));
                    }
                }
                (id, false)
            }
            None => {
                if let Some(ask) = on_new.take() {
                    proposed = ask()?;
                }
                let id = wanted_cluster_id
                    .map(str::to_string)
                    .or(proposed)
                    .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
                db.write_transaction(Durability::Buffered, |tx| {
                    tx.execute(
                        "INSERT INTO settings(key, value) VALUES('cluster_id', ?1)",
                        [&id],
                    )?;
                    let root = Inode::new(Kind::Dir, 0o755, 0, 0);
                    tx.execute(
                        "INSERT INTO inodes(ino, kind, mode, uid, gid, size, nlink, atime, mtime, ctime, crtime, version)
                         VALUES(?1, ?2, ?3, 0, 0, 0, 2, ?4, ?4, ?4, ?4, 0)",
                        params![ROOT_INO as i64, Kind::Dir as i64, root.mode, root.mtime],
                    )?;
                    Ok(())
                })?;
                (id, true)
            }
        };
        Ok((Meta { db, node_ids }, cluster_id, created))
    }

    /// Why writes are refused, when the database file was deleted or
    /// replaced under this process (checked now; for good once found).
    pub fn lost_reason(&self) -> Option<String> {
        match self.db.check_file() {
            Err(Error::ReadOnly(reason)) => Some(reason),
            _ => None,
        }
    }

    /// Write transactions since the database was opened: equal counts mean
    /// nothing changed in between.
    pub fn commit_count(&self) -> u64 {
        self.db.commit_count()
    }

    /// Write a consistent copy of the database to the new file `dest`
    /// without holding writers back (see `Database::copy_into`).
    pub fn copy_into(&self, dest: &Path) -> Result<()> {
        self.db.copy_into(dest)
    }

    /// The queue of committed records for the journal writer.
    pub fn journal_records(&self) -> std::sync::Arc<RecordQueue> {
        self.db.records().clone()
    }

    /// From now on durable changes wait for `sink` too (the journal on the
    /// nodes).
    pub fn attach_journal(&self, sink: std::sync::Arc<dyn JournalSink>) {
        self.db.attach_sink(sink);
    }

    /// `Error::ReadOnly` once the database file was deleted or replaced.
    pub fn check_writable(&self) -> Result<()> {
        self.db.check_file()
    }

    fn node_index(&self, id: Option<String>) -> Option<usize> {
        id.and_then(|id| self.node_ids.iter().position(|n| *n == id))
    }

    pub fn node_id(&self, index: usize) -> &str {
        &self.node_ids[index]
    }
}

/// Bring the schema of a database opened outside `Meta` (a restore's
/// copy) up to this version, so journal records made by it apply.
pub fn prepare_schema(conn: &mut rusqlite::Connection) -> Result<()> {
    schema::migrate(conn)
}

/// Replay one journal record onto `conn` (see `changes::apply`).
pub fn apply_journal_record(
    conn: &rusqlite::Connection,
    record: &JournalRecord,
) -> Result<ApplyReport> {
    changes::apply(conn, &record.changeset)
}

/// The journal LSN a database holds (0: none yet).
pub fn journal_lsn_of(conn: &rusqlite::Connection) -> Result<u64> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM settings WHERE key='journal_lsn'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// A unique-constraint failure becomes AlreadyExists(`what`).
fn map_constraint(e: rusqlite::Error, what: &str) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::ConstraintViolation {
            return Error::AlreadyExists(what.to_string());
        }
    }
    Error::Db(e)
}
