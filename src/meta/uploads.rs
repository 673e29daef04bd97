//! Multipart uploads in progress (S3), kept outside the namespace: the
//! upload (target key, content type, the attributes the object will get)
//! and its parts (number, size, MD5), each part's content being chunks
//! like a file's. A part's chunks are `chunks` rows owned by the part's
//! negative id instead of an inode, so they are live (scrubbed, repaired,
//! counted) while the upload lasts, and join the collection queue in the
//! same transaction that drops the part or the upload. Completing turns
//! chosen parts into a file in one transaction, moving their chunks into
//! the file's chunk list by re-indexing them (no shard is read or written)
//! or taking chunks re-encoded from them.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::file_content::{FileCommit, PutOutcome};
use super::shard_map::ChunkRecord;
use super::{Durability, Meta};
use crate::chunk::WrittenChunk;
use crate::error::{Error, Result};
use crate::model::{Inode, Nanos, XattrSet};

/// An upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: String,
    /// The key the object will have.
    pub key: String,
    pub started: Nanos,
    pub content_type: Option<String>,
    /// The object's attributes under this prefix are replaced by the
    /// upload's at completion.
    pub xattr_prefix: Vec<u8>,
}

/// A stored part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    /// The owner of its chunks is `-part_id`.
    pub part_id: i64,
    pub number: u32,
    pub size: u64,
    pub md5: String,
    pub mtime: Nanos,
}

/// A part's place in a completed object: its chunks become the object's
/// chunks `first_index..`.
#[derive(Debug, Clone, Copy)]
pub struct PartMove {
    pub part_id: i64,
    pub first_index: u64,
}

fn no_upload(id: &str) -> Error {
    Error::NotFound(format!("upload {id}"))
}

const UPLOAD_COLUMNS: &str = "id, key, started, content_type, xattr_prefix";

fn upload_from_row(r: &rusqlite::Row) -> rusqlite::Result<UploadRecord> {
    Ok(UploadRecord {
        id: r.get(0)?,
        key: r.get(1)?,
        started: r.get(2)?,
        content_type: r.get(3)?,
        xattr_prefix: r.get(4)?,
    })
}

impl Meta {
    /// Record a new upload with the attributes its object will get.
    pub fn create_upload(&self, upload: &UploadRecord, attrs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO uploads({UPLOAD_COLUMNS}) VALUES(?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(params![
                upload.id,
                upload.key,
                upload.started,
                upload.content_type,
                upload.xattr_prefix
            ])
            .map_err(|e| super::map_constraint(e, &format!("upload {}", upload.id)))?;
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO upload_xattrs(upload, name, value) VALUES(?1, ?2, ?3)",
            )?;
            for (name, value) in attrs {
                insert.execute(params![upload.id, name, value])?;
            }
            Ok(())
        })
    }

    fn upload_in(conn: &Connection, id: &str) -> Result<Option<UploadRecord>> {
        Ok(conn
            .prepare_cached(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id=?1"))?
            .query_row([id], upload_from_row)
            .optional()?)
    }

    pub fn upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        self.db.read(|conn| Self::upload_in(conn, id))
    }

    /// Every upload in progress, by key then id.
    pub fn uploads(&self) -> Result<Vec<UploadRecord>> {
        self.db.read(|conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {UPLOAD_COLUMNS} FROM uploads ORDER BY key, id"
            ))?;
            let rows = st.query_map([], upload_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Ids of the uploads started before `when`.
    pub fn uploads_started_before(&self, when: Nanos) -> Result<Vec<String>> {
        self.db.read(|conn| {
            let mut st = conn.prepare_cached("SELECT id FROM uploads WHERE started < ?1")?;
            let rows = st.query_map([when], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// The attributes the object of upload `id` will get.
    pub fn upload_xattrs(&self, id: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT name, value FROM upload_xattrs WHERE upload=?1 ORDER BY name",
            )?;
            let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Record part `number` of upload `id` with its chunks (by index from
    /// 0), replacing a part of that number (whose chunks join the collection
    /// queue). Returns how many chunks were superseded.
    pub fn record_part(
        &self,
        id: &str,
        part: &PartRecord,
        chunks: &[(u64, WrittenChunk)],
    ) -> Result<usize> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            if Self::upload_in(tx, id)?.is_none() {
                return Err(no_upload(id));
            }
            let old: Option<i64> = tx
                .prepare_cached("SELECT part_id FROM upload_parts WHERE upload=?1 AND number=?2")?
                .query_row(params![id, part.number], |r| r.get(0))
                .optional()?;
            let mut superseded = 0;
            if let Some(old) = old {
                superseded += Self::drop_part_in(tx, old)?;
            }
            tx.prepare_cached(
                "INSERT INTO upload_parts(upload, number, size, md5, mtime) VALUES(?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, part.number, part.size as i64, part.md5, part.mtime])?;
            let owner = -tx.last_insert_rowid();
            for (idx, chunk) in chunks {
                self.insert_chunk(tx, Some(owner), *idx, chunk)?;
            }
            Ok(superseded)
        })
    }

    /// Forget a part; its chunks join the collection queue. How many.
    fn drop_part_in(tx: &Transaction, part_id: i64) -> Result<usize> {
        let chunks = tx
            .prepare_cached("UPDATE chunks SET ino=NULL WHERE ino=?1")?
            .execute([-part_id])?;
        tx.prepare_cached("DELETE FROM upload_parts WHERE part_id=?1")?
            .execute([part_id])?;
        Ok(chunks)
    }

    /// The parts of upload `id`, by number.
    pub fn upload_parts(&self, id: &str) -> Result<Vec<PartRecord>> {
        self.db.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT part_id, number, size, md5, mtime FROM upload_parts WHERE upload=?1 ORDER BY number",
            )?;
            let rows = st.query_map([id], |r| {
                Ok(PartRecord {
                    part_id: r.get(0)?,
                    number: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    md5: r.get(3)?,
                    mtime: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// The chunks of a part with their shard maps, by index.
    pub fn part_chunks(&self, part_id: i64) -> Result<Vec<ChunkRecord>> {
        self.db.read(|conn| {
            self.chunk_records(
                conn,
                "SELECT chunk_id, idx, data_len, k, m FROM chunks WHERE ino=?1 ORDER BY idx",
                [-part_id],
            )
        })
    }

    /// Remove upload `id` and its parts, whose chunks join the collection
    /// queue. Returns how many chunks did.
    pub fn remove_upload(&self, id: &str) -> Result<usize> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            if Self::upload_in(tx, id)?.is_none() {
                return Err(no_upload(id));
            }
            Self::remove_upload_in(tx, id)
        })
    }

    fn remove_upload_in(tx: &Transaction, id: &str) -> Result<usize> {
        let parts: Vec<i64> = tx
            .prepare_cached("SELECT part_id FROM upload_parts WHERE upload=?1")?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut chunks = 0;
        for part in parts {
            chunks += Self::drop_part_in(tx, part)?;
        }
        tx.prepare_cached("DELETE FROM upload_xattrs WHERE upload=?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM uploads WHERE id=?1")?
            .execute([id])?;
        Ok(chunks)
    }

    /// Complete upload `id`, in one transaction: create or replace the file
    /// at `path` as `put_file` does, with `commit`'s chunks plus the chunks
    /// of the parts `moves` re-indexed into it (the parts must belong to
    /// the upload), give it the upload's attributes, and remove the upload
    /// (the chunks of parts not moved join the collection queue). Returns
    /// the put's outcome and how many chunks were superseded.
    pub fn complete_upload(
        &self,
        id: &str,
        path: &[&[u8]],
        template: &Inode,
        commit: FileCommit,
        moves: &[PartMove],
    ) -> Result<(PutOutcome, usize)> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let upload = Self::upload_in(tx, id)?.ok_or_else(|| no_upload(id))?;
            let attrs: Vec<(Vec<u8>, Vec<u8>)> = tx
                .prepare_cached("SELECT name, value FROM upload_xattrs WHERE upload=?1")?
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut outcome = self.put_file_in(tx, path, template, commit)?;
            let ino = outcome.inode.ino as i64;
            for m in moves {
                let owned: Option<String> = tx
                    .prepare_cached("SELECT upload FROM upload_parts WHERE part_id=?1")?
                    .query_row([m.part_id], |r| r.get(0))
                    .optional()?;
                if owned.as_deref() != Some(id) {
                    return Err(Error::NotFound(format!(
                        "part {} of upload {id}",
                        m.part_id
                    )));
                }
                tx.prepare_cached("UPDATE chunks SET ino=?1, idx=idx+?2 WHERE ino=?3")?
                    .execute(params![ino, m.first_index as i64, -m.part_id])?;
            }
            Self::replace_xattrs_in(
                tx,
                outcome.inode.ino,
                XattrSet {
                    prefix: &upload.xattr_prefix,
                    attrs: &attrs,
                },
            )?;
            let superseded = Self::remove_upload_in(tx, id)?;
            outcome.inode = Self::must_inode(tx, outcome.inode.ino)?;
            Ok((outcome, superseded))
        })
    }
}
