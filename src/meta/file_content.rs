//! File content: each file's chunk list (chunk index → chunk with its shard
//! map) and the commits that replace it. A file commit (`commit_file`) and an
//! object upload (`put_file`, which also creates missing parent directories)
//! are each one durable transaction (synchronous=FULL), as is `sync` (fsync,
//! fsyncdir). An upload over an existing file gives the name a new inode,
//! as `rename` would. Superseded chunks are not deleted here: they lose their file
//! (ino NULL) and wait in the collection queue.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::namespace::Unlinked;
use super::shard_map::ChunkRecord;
use super::{Durability, Meta};
use crate::chunk::{ChunkLayout, Placement, WrittenChunk};
use crate::error::{Error, Result};
use crate::model::ShardState;
use crate::model::{Inode, Kind, Nanos, XattrSet, ROOT_INO};

/// (parent, name) of directory entries a call created.
pub type CreatedEntries = Vec<(u64, Vec<u8>)>;

/// What `put_file` did.
#[derive(Debug)]
pub struct PutOutcome {
    pub inode: Inode,
    pub created: CreatedEntries,
    /// The file's (parent, name).
    pub entry: (u64, Vec<u8>),
    /// The file the name held before, which lost that link (purge it, or
    /// let its last open handle do so, when it has no link left).
    pub replaced: Option<Unlinked>,
}

/// What `commit_file` did.
#[derive(Debug)]
pub struct CommitOutcome {
    pub inode: Inode,
    /// Chunks the commit superseded (now in the collection queue).
    pub superseded: usize,
}

/// What a file commit changes.
pub struct FileCommit {
    pub ino: u64,
    /// New chunks by index (replacing whatever was there).
    pub chunks: Vec<(u64, WrittenChunk)>,
    /// Indexes whose chunk is removed without replacement (holes).
    pub removed: Vec<u64>,
    /// Chunks at or after this index are dropped (truncation).
    pub drop_from: Option<u64>,
    pub size: u64,
    pub mtime: Nanos,
    pub ctime: Nanos,
    pub checksum: Option<String>,
    /// The content's hex MD5 when the writer computed it (None: unknown).
    pub md5: Option<String>,
    pub content_type: Option<String>,
}

/// A `chunks` row: (chunk_id, idx, data_len, k, m).
type ChunkRow = (i64, i64, i64, i64, i64);

impl Meta {
    /// The shard map of a chunk: node, state and checksum per shard index.
    fn shard_rows(
        &self,
        conn: &Connection,
        layout: &ChunkLayout,
    ) -> Result<(Placement, Vec<ShardState>, Vec<Option<u32>>)> {
        let n = layout.shard_count();
        let mut placement = vec![None; n];
        let mut states = vec![ShardState::Missing; n];
        let mut sums = vec![None; n];
        let mut st =
            conn.prepare_cached("SELECT idx, node, state, checksum FROM shards WHERE chunk_id=?1")?;
        let rows = st.query_map([layout.chunk_id as i64], |r| {
            Ok((
                r.get::<_, i64>(0)? as usize,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        for row in rows {
            let (idx, node, state, sum) = row?;
            if idx < n {
                placement[idx] = self.node_index(node);
                states[idx] = ShardState::from_code(state);
                sums[idx] = sum.map(|s| s as u32);
                if placement[idx].is_none() {
                    states[idx] = ShardState::Missing;
                }
            }
        }
        Ok((placement, states, sums))
    }

    /// A chunk row with its shard map.
    pub(super) fn chunk_from_row(&self, conn: &Connection, row: ChunkRow) -> Result<ChunkRecord> {
        let (chunk_id, idx, data_len, k, m) = row;
        let layout = ChunkLayout {
            chunk_id: chunk_id as u64,
            k: k as u16,
            m: m as u16,
            data_len: data_len as u64,
        };
        let (placement, states, checksums) = self.shard_rows(conn, &layout)?;
        Ok(ChunkRecord {
            idx: idx as u64,
            layout,
            placement,
            states,
            checksums,
        })
    }

    /// Chunk rows selected by `sql` (which selects the `ChunkRow` columns).
    pub(super) fn chunk_records(
        &self,
        conn: &Connection,
        sql: &str,
        key: impl rusqlite::Params,
    ) -> Result<Vec<ChunkRecord>> {
        let rows: Vec<ChunkRow> = conn
            .prepare_cached(sql)?
            .query_map(key, |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|row| self.chunk_from_row(conn, row))
            .collect()
    }

    /// The live chunk at `idx` of a file.
    pub fn chunk_at(&self, ino: u64, idx: u64) -> Result<Option<ChunkRecord>> {
        self.db.read(|conn| {
            let found = self.chunk_records(
                conn,
                "SELECT chunk_id, idx, data_len, k, m FROM chunks WHERE ino=?1 AND idx=?2",
                params![ino as i64, idx as i64],
            )?;
            Ok(found.into_iter().next())
        })
    }

    pub fn chunks_of(&self, ino: u64) -> Result<Vec<ChunkRecord>> {
        self.db.read(|conn| {
            self.chunk_records(
                conn,
                "SELECT chunk_id, idx, data_len, k, m FROM chunks WHERE ino=?1 ORDER BY idx",
                [ino as i64],
            )
        })
    }

    /// (index, data length) of each live chunk of a file, by index: where
    /// it has data. An index with no chunk is a hole.
    pub fn chunk_lengths(&self, ino: u64) -> Result<Vec<(u64, u64)>> {
        self.db.read(|conn| {
            let mut st =
                conn.prepare_cached("SELECT idx, data_len FROM chunks WHERE ino=?1 ORDER BY idx")?;
            let rows = st.query_map([ino as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// A chunk (live or dead) by id, with the file it belongs to (None: dead).
    pub fn chunk_by_id(&self, chunk_id: u64) -> Result<Option<(Option<u64>, ChunkRecord)>> {
        self.db.read(|conn| self.chunk_by_id_in(conn, chunk_id))
    }

    pub(super) fn chunk_by_id_in(
        &self,
        conn: &Connection,
        chunk_id: u64,
    ) -> Result<Option<(Option<u64>, ChunkRecord)>> {
        let row = conn
            .prepare_cached(
                "SELECT chunk_id, idx, data_len, k, m, ino FROM chunks WHERE chunk_id=?1",
            )?
            .query_row([chunk_id as i64], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                    r.get::<_, Option<i64>>(5)?,
                ))
            })
            .optional()?;
        match row {
            Some((row, ino)) => Ok(Some((
                ino.map(|x| x as u64),
                self.chunk_from_row(conn, row)?,
            ))),
            None => Ok(None),
        }
    }

    /// Record a stored chunk as chunk `idx` of `owner`: an inode, or (a
    /// negative number) an upload's part (see `uploads`).
    pub(super) fn insert_chunk(
        &self,
        tx: &Transaction,
        owner: Option<i64>,
        idx: u64,
        chunk: &WrittenChunk,
    ) -> Result<()> {
        let l = &chunk.layout;
        tx.prepare_cached(
            "INSERT INTO chunks(chunk_id, ino, idx, data_len, k, m) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            l.chunk_id as i64,
            owner,
            idx as i64,
            l.data_len as i64,
            l.k,
            l.m
        ])?;
        let mut st = tx.prepare_cached(
            "INSERT INTO shards(chunk_id, idx, node, state, checksum) VALUES(?1, ?2, ?3, ?4, ?5)",
        )?;
        for (i, node) in chunk.placement.iter().enumerate() {
            let (node_id, state) = match node {
                Some(n) if chunk.checksums[i].is_some() => {
                    (Some(self.node_ids[*n].as_str()), ShardState::Ok)
                }
                _ => (None, ShardState::Missing),
            };
            st.execute(params![
                l.chunk_id as i64,
                i as i64,
                node_id,
                state as i64,
                chunk.checksums[i].map(|c| c as i64)
            ])?;
        }
        Ok(())
    }

    /// The chunk at (ino, idx) leaves the file and joins the collection
    /// queue. Returns how many chunks did (0 or 1).
    fn kill_chunks(tx: &Transaction, ino: u64, idx: u64) -> Result<usize> {
        Ok(tx
            .prepare_cached("UPDATE chunks SET ino=NULL WHERE ino=?1 AND idx=?2")?
            .execute(params![ino as i64, idx as i64])?)
    }

    /// Commit new content of a file: one transaction. Returns the new inode
    /// and how many chunks it superseded.
    /// Not synced: the caller marks the chunks committed, then `sync`s.
    pub fn commit_file(&self, commit: &FileCommit) -> Result<CommitOutcome> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let inode = Self::must_inode(tx, commit.ino)?;
            let superseded = self.commit_in(tx, &inode, commit)?;
            Ok(CommitOutcome {
                inode: Self::must_inode(tx, commit.ino)?,
                superseded,
            })
        })
    }

    /// Make every change so far durable (fsync of a directory): on the
    /// local disk and in the journal on the nodes.
    pub fn sync(&self) -> Result<()> {
        self.db.sync()
    }

    /// Returns how many chunks the commit superseded.
    fn commit_in(&self, tx: &Transaction, inode: &Inode, c: &FileCommit) -> Result<usize> {
        let mut superseded = 0;
        if let Some(from) = c.drop_from {
            superseded += tx
                .prepare_cached("UPDATE chunks SET ino=NULL WHERE ino=?1 AND idx>=?2")?
                .execute(params![inode.ino as i64, from as i64])?;
        }
        for idx in &c.removed {
            superseded += Self::kill_chunks(tx, inode.ino, *idx)?;
        }
        for (idx, chunk) in &c.chunks {
            superseded += Self::kill_chunks(tx, inode.ino, *idx)?;
            self.insert_chunk(tx, Some(inode.ino as i64), *idx, chunk)?;
        }
        let content_type = c
            .content_type
            .clone()
            .or_else(|| inode.content_type.clone());
        tx.prepare_cached(
            "UPDATE inodes SET size=?2, mtime=?3, ctime=?4, version=version+1, checksum=?5, content_type=?6, md5=?7 WHERE ino=?1",
        )?
        .execute(params![inode.ino as i64, c.size as i64, c.mtime, c.ctime, c.checksum, content_type, c.md5])?;
        Ok(superseded)
    }

    /// Create or replace the file at `parts` (creating parent directories) with
    /// the given content, in one transaction. A name that held a file is
    /// moved to a new inode, as `rename` of a new file over it would: hard
    /// links and open handles of the old inode keep the old content. The new
    /// inode takes over the old one's mode, owner, creation time, extended
    /// attributes and version count.
    pub fn put_file(
        &self,
        parts: &[&[u8]],
        template: &Inode,
        commit: FileCommit,
        xattrs: Option<XattrSet>,
    ) -> Result<PutOutcome> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let outcome = self.put_file_in(tx, parts, template, commit)?;
            if let Some(set) = xattrs {
                Self::replace_xattrs_in(tx, outcome.inode.ino, set)?;
            }
            Ok(outcome)
        })
    }

    /// Replace the attributes of `ino` under `set.prefix` by `set.attrs`.
    pub(super) fn replace_xattrs_in(tx: &Transaction, ino: u64, set: XattrSet) -> Result<()> {
        tx.prepare_cached("DELETE FROM xattrs WHERE ino=?1 AND substr(name, 1, ?3)=?2")?
            .execute(params![ino as i64, set.prefix, set.prefix.len() as i64])?;
        let mut insert = tx
            .prepare_cached("INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES(?1, ?2, ?3)")?;
        for (name, value) in set.attrs {
            insert.execute(params![ino as i64, name, value])?;
        }
        Ok(())
    }

    pub(super) fn put_file_in(
        &self,
        tx: &Transaction,
        parts: &[&[u8]],
        template: &Inode,
        mut commit: FileCommit,
    ) -> Result<PutOutcome> {
        let mut created = Vec::new();
        let mut dir = ROOT_INO;
        let now = template.ctime;
        for part in &parts[..parts.len() - 1] {
            dir = match Self::lookup_in(tx, dir, part)? {
                Some(ino) => {
                    let d = Self::must_inode(tx, ino)?;
                    if d.kind != Kind::Dir {
                        return Err(Error::NotADirectory(String::from_utf8_lossy(part).into()));
                    }
                    ino
                }
                None => {
                    let mut d = template.clone();
                    d.kind = Kind::Dir;
                    d.mode = 0o755;
                    d.nlink = 2;
                    d.content_type = None;
                    let ino = Self::insert_inode(tx, &d)?;
                    Self::insert_dentry(tx, dir, part, ino)?;
                    tx.execute("UPDATE inodes SET nlink=nlink+1 WHERE ino=?1", [dir as i64])?;
                    Self::touch_dir(tx, dir, now)?;
                    created.push((dir, part.to_vec()));
                    ino
                }
            };
        }
        let name = parts[parts.len() - 1];
        let old = match Self::lookup_in(tx, dir, name)? {
            Some(ino) => {
                let f = Self::must_inode(tx, ino)?;
                if f.kind == Kind::Dir {
                    return Err(Error::IsADirectory(String::from_utf8_lossy(name).into()));
                }
                if f.kind != Kind::File {
                    return Err(Error::InvalidArgument(format!(
                        "{} is not a regular file",
                        String::from_utf8_lossy(name)
                    )));
                }
                Some(f)
            }
            None => None,
        };
        let mut inode = template.clone();
        if let Some(old) = &old {
            inode.mode = old.mode;
            inode.uid = old.uid;
            inode.gid = old.gid;
            inode.crtime = old.crtime;
            inode.version = old.version;
        }
        inode.ino = Self::insert_inode(tx, &inode)?;
        let replaced = match &old {
            Some(old) => {
                tx.prepare_cached("UPDATE dentries SET ino=?3 WHERE parent=?1 AND name=?2")?
                    .execute(params![dir as i64, name, inode.ino as i64])?;
                tx.prepare_cached(
                    "INSERT INTO xattrs(ino, name, value) SELECT ?2, name, value FROM xattrs WHERE ino=?1",
                )?
                .execute(params![old.ino as i64, inode.ino as i64])?;
                let nlink = old.nlink.saturating_sub(1);
                tx.prepare_cached("UPDATE inodes SET nlink=?2, ctime=?3 WHERE ino=?1")?
                    .execute(params![old.ino as i64, nlink, now])?;
                Some(Unlinked {
                    ino: old.ino,
                    nlink,
                })
            }
            None => {
                Self::insert_dentry(tx, dir, name, inode.ino)?;
                created.push((dir, name.to_vec()));
                None
            }
        };
        Self::touch_dir(tx, dir, now)?;
        commit.ino = inode.ino;
        self.commit_in(tx, &inode, &commit)?;
        let inode = Self::must_inode(tx, inode.ino)?;
        Ok(PutOutcome {
            inode,
            created,
            entry: (dir, name.to_vec()),
            replaced,
        })
    }
}
