//! The metadata database (SQLite in WAL mode): the
//! namespace (inodes, directory entries, symlink targets, xattrs), each file's
//! chunk list, where every shard lives and whether it is healthy, the queue of
//! superseded chunks, and recovery records. Every multi-step change is one
//! transaction. This module never sees file bytes and never touches nodes.

pub mod posix;
mod schema;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::chunk::{ChunkLayout, Placement, WrittenChunk};
use crate::error::{Error, Result};

pub const ROOT_INO: u64 = 1;

/// (parent, name) of directory entries a call created.
pub type CreatedEntries = Vec<(u64, Vec<u8>)>;

/// What `put_file` did.
#[derive(Debug)]
pub struct PutOutcome {
    pub inode: Inode,
    pub created: CreatedEntries,
    /// The file's (parent, name).
    pub entry: (u64, Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    CharDevice = 5,
    BlockDevice = 6,
    Socket = 7,
}

impl Kind {
    fn from_i64(v: i64) -> Kind {
        match v {
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Fifo,
            5 => Kind::CharDevice,
            6 => Kind::BlockDevice,
            7 => Kind::Socket,
            _ => Kind::File,
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub type Nanos = i64;

pub fn now_nanos() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub ino: u64,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (no file-type bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    pub rdev: u32,
    pub atime: Nanos,
    pub mtime: Nanos,
    pub ctime: Nanos,
    pub crtime: Nanos,
    pub target: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub version: u64,
    pub checksum: Option<String>,
}

impl Inode {
    pub fn new(kind: Kind, mode: u32, uid: u32, gid: u32) -> Inode {
        let now = now_nanos();
        Inode {
            ino: 0,
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            size: 0,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            target: None,
            content_type: None,
            version: 0,
            checksum: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    Ok = 0,
    Missing = 1,
    Corrupt = 2,
}

impl ShardState {
    fn from_i64(v: i64) -> ShardState {
        match v {
            0 => ShardState::Ok,
            2 => ShardState::Corrupt,
            _ => ShardState::Missing,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            ShardState::Ok => "ok",
            ShardState::Missing => "missing",
            ShardState::Corrupt => "corrupt",
        }
    }
}

/// A live or dead chunk with its shard map.
#[derive(Debug, Clone)]
pub struct ChunkRecord {
    pub idx: u64,
    pub layout: ChunkLayout,
    pub placement: Placement,
    pub states: Vec<ShardState>,
    pub checksums: Vec<Option<u32>>,
}

impl ChunkRecord {
    pub fn healthy_shards(&self) -> usize {
        self.placement
            .iter()
            .zip(&self.states)
            .filter(|(p, s)| p.is_some() && **s == ShardState::Ok)
            .count()
    }
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
    pub content_type: Option<String>,
}

/// Changes to an inode's attributes; None = unchanged.
#[derive(Debug, Default, Clone)]
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Nanos>,
    pub mtime: Option<Nanos>,
    pub ctime: Option<Nanos>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    Replace,
    NoReplace,
    Exchange,
}

/// The result of removing a name.
#[derive(Debug, Clone, Copy)]
pub struct Unlinked {
    pub ino: u64,
    pub nlink: u32,
}

pub struct Meta {
    conn: Mutex<Connection>,
    node_ids: Vec<String>,
}

fn map_constraint(e: rusqlite::Error, what: &str) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::ConstraintViolation {
            return Error::AlreadyExists(what.to_string());
        }
    }
    Error::Db(e)
}

const INODE_COLUMNS: &str =
    "ino, kind, mode, uid, gid, size, nlink, rdev, atime, mtime, ctime, crtime, target, content_type, version, checksum";

fn row_to_inode(r: &rusqlite::Row) -> rusqlite::Result<Inode> {
    Ok(Inode {
        ino: r.get::<_, i64>(0)? as u64,
        kind: Kind::from_i64(r.get(1)?),
        mode: r.get::<_, i64>(2)? as u32,
        uid: r.get::<_, i64>(3)? as u32,
        gid: r.get::<_, i64>(4)? as u32,
        size: r.get::<_, i64>(5)? as u64,
        nlink: r.get::<_, i64>(6)? as u32,
        rdev: r.get::<_, i64>(7)? as u32,
        atime: r.get(8)?,
        mtime: r.get(9)?,
        ctime: r.get(10)?,
        crtime: r.get(11)?,
        target: r.get(12)?,
        content_type: r.get(13)?,
        version: r.get::<_, i64>(14)? as u64,
        checksum: r.get(15)?,
    })
}

impl Meta {
    /// Open (creating if needed) the database. Returns the cluster id and
    /// whether the database was created now.
    pub fn open(
        path: &Path,
        node_ids: Vec<String>,
        wanted_cluster_id: Option<&str>,
    ) -> Result<(Meta, String, bool)> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Namespace changes commit without fsync (they survive a daemon
        // crash; like a local filesystem they reach the disk with the next
        // fsync). File content commits run with FULL: see `durably`.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut conn)?;
        let existing: Option<String> = conn
            .query_row(
                "SELECT value FROM settings WHERE key='cluster_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
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
                let id = wanted_cluster_id
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
                let tx = conn.transaction()?;
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
                tx.commit()?;
                (id, true)
            }
        };
        Ok((
            Meta {
                conn: Mutex::new(conn),
                node_ids,
            },
            cluster_id,
            created,
        ))
    }

    fn node_index(&self, id: Option<String>) -> Option<usize> {
        id.and_then(|id| self.node_ids.iter().position(|n| *n == id))
    }

    pub fn node_id(&self, index: usize) -> &str {
        &self.node_ids[index]
    }

    // ---------- namespace reads ----------

    pub fn get_inode(&self, ino: u64) -> Result<Option<Inode>> {
        let conn = self.conn.lock();
        Self::get_inode_in(&conn, ino)
    }

    fn get_inode_in(conn: &Connection, ino: u64) -> Result<Option<Inode>> {
        let mut st =
            conn.prepare_cached(&format!("SELECT {INODE_COLUMNS} FROM inodes WHERE ino=?1"))?;
        Ok(st.query_row([ino as i64], row_to_inode).optional()?)
    }

    fn must_inode(conn: &Connection, ino: u64) -> Result<Inode> {
        Self::get_inode_in(conn, ino)?.ok_or_else(|| Error::NotFound(format!("inode {ino}")))
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<Inode>> {
        let conn = self.conn.lock();
        let ino = Self::lookup_in(&conn, parent, name)?;
        match ino {
            Some(ino) => Self::get_inode_in(&conn, ino),
            None => Ok(None),
        }
    }

    fn lookup_in(conn: &Connection, parent: u64, name: &[u8]) -> Result<Option<u64>> {
        let mut st = conn.prepare_cached("SELECT ino FROM dentries WHERE parent=?1 AND name=?2")?;
        Ok(st
            .query_row(params![parent as i64, name], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|i| i as u64))
    }

    /// Resolve path components from the root.
    pub fn resolve(&self, parts: &[&[u8]]) -> Result<Option<Inode>> {
        let conn = self.conn.lock();
        let mut ino = ROOT_INO;
        for (i, part) in parts.iter().enumerate() {
            match Self::lookup_in(&conn, ino, part)? {
                Some(next) => {
                    if i + 1 < parts.len() {
                        let node = Self::must_inode(&conn, next)?;
                        if node.kind != Kind::Dir {
                            return Err(Error::NotADirectory(String::from_utf8_lossy(part).into()));
                        }
                    }
                    ino = next
                }
                None => return Ok(None),
            }
        }
        Self::get_inode_in(&conn, ino)
    }

    /// Entries of a directory after `after` (exclusive), in name order.
    pub fn list_dir(
        &self,
        parent: u64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Inode)>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT d.name, {} FROM dentries d JOIN inodes i ON i.ino=d.ino
             WHERE d.parent=?1 AND d.name > ?2 ORDER BY d.name LIMIT ?3",
            INODE_COLUMNS
                .split(", ")
                .map(|c| format!("i.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        let after: &[u8] = after.unwrap_or(b"");
        let rows = st.query_map(params![parent as i64, after, limit as i64], |r| {
            let name: Vec<u8> = r.get(0)?;
            let ino = Inode {
                ino: r.get::<_, i64>(1)? as u64,
                kind: Kind::from_i64(r.get(2)?),
                mode: r.get::<_, i64>(3)? as u32,
                uid: r.get::<_, i64>(4)? as u32,
                gid: r.get::<_, i64>(5)? as u32,
                size: r.get::<_, i64>(6)? as u64,
                nlink: r.get::<_, i64>(7)? as u32,
                rdev: r.get::<_, i64>(8)? as u32,
                atime: r.get(9)?,
                mtime: r.get(10)?,
                ctime: r.get(11)?,
                crtime: r.get(12)?,
                target: r.get(13)?,
                content_type: r.get(14)?,
                version: r.get::<_, i64>(15)? as u64,
                checksum: r.get(16)?,
            };
            Ok((name, ino))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn has_children_in(conn: &Connection, ino: u64) -> Result<bool> {
        let mut st = conn.prepare_cached("SELECT 1 FROM dentries WHERE parent=?1 LIMIT 1")?;
        Ok(st.exists([ino as i64])?)
    }

    /// The parent and name of an inode (any one link).
    pub fn parent_of(&self, ino: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let conn = self.conn.lock();
        let mut st =
            conn.prepare_cached("SELECT parent, name FROM dentries WHERE ino=?1 LIMIT 1")?;
        Ok(st
            .query_row([ino as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .optional()?)
    }

    /// Every regular file as (key, inode), keys joined with '/'.
    pub fn all_files(&self, under: u64, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Inode)>> {
        let mut out = Vec::new();
        let mut stack: Vec<(u64, Vec<u8>)> = vec![(under, prefix.to_vec())];
        while let Some((dir, path)) = stack.pop() {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = self.list_dir(dir, after.as_deref(), 1000)?;
                if page.is_empty() {
                    break;
                }
                after = page.last().map(|(n, _)| n.clone());
                for (name, inode) in page {
                    let mut key = path.clone();
                    if !key.is_empty() {
                        key.push(b'/');
                    }
                    key.extend_from_slice(&name);
                    match inode.kind {
                        Kind::Dir => stack.push((inode.ino, key)),
                        Kind::File => out.push((key, inode)),
                        _ => {}
                    }
                }
            }
        }
        Ok(out)
    }

    // ---------- namespace writes ----------

    fn touch_dir(tx: &Transaction, dir: u64, now: Nanos) -> Result<()> {
        tx.prepare_cached("UPDATE inodes SET mtime=?2, ctime=?2 WHERE ino=?1")?
            .execute(params![dir as i64, now])?;
        Ok(())
    }

    fn insert_inode(tx: &Transaction, inode: &Inode) -> Result<u64> {
        tx.prepare_cached(
            "INSERT INTO inodes(kind, mode, uid, gid, size, nlink, rdev, atime, mtime, ctime, crtime, target, content_type, version, checksum)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            inode.kind as i64,
            inode.mode,
            inode.uid,
            inode.gid,
            inode.size as i64,
            inode.nlink,
            inode.rdev,
            inode.atime,
            inode.mtime,
            inode.ctime,
            inode.crtime,
            inode.target,
            inode.content_type,
            inode.version as i64,
            inode.checksum
        ])?;
        Ok(tx.last_insert_rowid() as u64)
    }

    fn insert_dentry(tx: &Transaction, parent: u64, name: &[u8], ino: u64) -> Result<()> {
        tx.prepare_cached("INSERT INTO dentries(parent, name, ino) VALUES(?1, ?2, ?3)")?
            .execute(params![parent as i64, name, ino as i64])
            .map_err(|e| map_constraint(e, &String::from_utf8_lossy(name)))?;
        Ok(())
    }

    fn require_dir(conn: &Connection, ino: u64) -> Result<Inode> {
        let dir = Self::must_inode(conn, ino)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotADirectory(format!("inode {ino}")));
        }
        if dir.nlink == 0 {
            return Err(Error::NotFound("directory was removed".into()));
        }
        Ok(dir)
    }

    /// Create a new inode named `name` in `parent`.
    pub fn create(&self, parent: u64, name: &[u8], template: &Inode) -> Result<Inode> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        Self::require_dir(&tx, parent)?;
        if Self::lookup_in(&tx, parent, name)?.is_some() {
            return Err(Error::AlreadyExists(String::from_utf8_lossy(name).into()));
        }
        let ino = Self::insert_inode(&tx, template)?;
        Self::insert_dentry(&tx, parent, name, ino)?;
        if template.kind == Kind::Dir {
            tx.prepare_cached("UPDATE inodes SET nlink=nlink+1 WHERE ino=?1")?
                .execute([parent as i64])?;
        }
        Self::touch_dir(&tx, parent, template.ctime)?;
        tx.commit()?;
        let mut inode = template.clone();
        inode.ino = ino;
        Ok(inode)
    }

    /// Add a hard link.
    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> Result<Inode> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        Self::require_dir(&tx, parent)?;
        let inode = Self::must_inode(&tx, ino)?;
        if inode.kind == Kind::Dir {
            return Err(Error::PermissionDenied("hard links to directories".into()));
        }
        if Self::lookup_in(&tx, parent, name)?.is_some() {
            return Err(Error::AlreadyExists(String::from_utf8_lossy(name).into()));
        }
        Self::insert_dentry(&tx, parent, name, ino)?;
        let now = now_nanos();
        tx.prepare_cached("UPDATE inodes SET nlink=nlink+1, ctime=?2 WHERE ino=?1")?
            .execute(params![ino as i64, now])?;
        Self::touch_dir(&tx, parent, now)?;
        let inode = Self::must_inode(&tx, ino)?;
        tx.commit()?;
        Ok(inode)
    }

    /// Remove a non-directory name. The inode stays (nlink 0) until `purge`.
    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<Unlinked> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let ino = Self::lookup_in(&tx, parent, name)?
            .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(name).into()))?;
        let inode = Self::must_inode(&tx, ino)?;
        if inode.kind == Kind::Dir {
            return Err(Error::IsADirectory(String::from_utf8_lossy(name).into()));
        }
        let now = now_nanos();
        let out = Self::drop_name(&tx, parent, name, &inode, now)?;
        Self::touch_dir(&tx, parent, now)?;
        tx.commit()?;
        Ok(out)
    }

    fn drop_name(
        tx: &Transaction,
        parent: u64,
        name: &[u8],
        inode: &Inode,
        now: Nanos,
    ) -> Result<Unlinked> {
        tx.prepare_cached("DELETE FROM dentries WHERE parent=?1 AND name=?2")?
            .execute(params![parent as i64, name])?;
        let nlink = if inode.kind == Kind::Dir {
            tx.prepare_cached("UPDATE inodes SET nlink=nlink-1 WHERE ino=?1")?
                .execute([parent as i64])?;
            0
        } else {
            inode.nlink.saturating_sub(1)
        };
        tx.prepare_cached("UPDATE inodes SET nlink=?2, ctime=?3 WHERE ino=?1")?
            .execute(params![inode.ino as i64, nlink, now])?;
        Ok(Unlinked {
            ino: inode.ino,
            nlink,
        })
    }

    /// Remove an empty directory.
    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<Unlinked> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let ino = Self::lookup_in(&tx, parent, name)?
            .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(name).into()))?;
        let inode = Self::must_inode(&tx, ino)?;
        if inode.kind != Kind::Dir {
            return Err(Error::NotADirectory(String::from_utf8_lossy(name).into()));
        }
        if Self::has_children_in(&tx, ino)? {
            return Err(Error::NotEmpty(String::from_utf8_lossy(name).into()));
        }
        let now = now_nanos();
        let out = Self::drop_name(&tx, parent, name, &inode, now)?;
        Self::purge_in(&tx, ino)?;
        Self::touch_dir(&tx, parent, now)?;
        tx.commit()?;
        Ok(out)
    }

    /// Delete an inode with no names left: its row, xattrs, and chunks (queued
    /// for the collector).
    pub fn purge(&self, ino: u64) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let still_linked: bool = tx
            .prepare_cached("SELECT 1 FROM dentries WHERE ino=?1 LIMIT 1")?
            .exists([ino as i64])?;
        if !still_linked {
            Self::purge_in(&tx, ino)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn purge_in(tx: &Transaction, ino: u64) -> Result<()> {
        tx.prepare_cached("UPDATE chunks SET ino=NULL WHERE ino=?1")?
            .execute([ino as i64])?;
        tx.prepare_cached("DELETE FROM xattrs WHERE ino=?1")?
            .execute([ino as i64])?;
        tx.prepare_cached("DELETE FROM inodes WHERE ino=?1")?
            .execute([ino as i64])?;
        Ok(())
    }

    /// Inodes left with no names (a crash while they were open).
    pub fn unlinked_inodes(&self) -> Result<Vec<u64>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT ino FROM inodes WHERE ino != 1 AND NOT EXISTS (SELECT 1 FROM dentries d WHERE d.ino = inodes.ino)",
        )?;
        let rows = st.query_map([], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .map(|r| r.map(|i| i as u64))
            .collect::<rusqlite::Result<_>>()?)
    }

    fn is_ancestor(conn: &Connection, maybe_ancestor: u64, mut ino: u64) -> Result<bool> {
        let mut st = conn.prepare_cached("SELECT parent FROM dentries WHERE ino=?1 LIMIT 1")?;
        for _ in 0..4096 {
            if ino == maybe_ancestor {
                return Ok(true);
            }
            if ino == ROOT_INO {
                return Ok(false);
            }
            match st
                .query_row([ino as i64], |r| r.get::<_, i64>(0))
                .optional()?
            {
                Some(p) => ino = p as u64,
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Atomic rename. Returns the inode that lost its last name, if any.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<Option<Unlinked>> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let ino = Self::lookup_in(&tx, parent, name)?
            .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(name).into()))?;
        Self::require_dir(&tx, new_parent)?;
        let src = Self::must_inode(&tx, ino)?;
        let existing = Self::lookup_in(&tx, new_parent, new_name)?;
        if existing == Some(ino) {
            return Ok(None);
        }
        if src.kind == Kind::Dir && Self::is_ancestor(&tx, ino, new_parent)? {
            return Err(Error::InvalidArgument(
                "cannot move a directory inside itself".into(),
            ));
        }
        let now = now_nanos();
        let mut lost = None;
        match (mode, existing) {
            (RenameMode::NoReplace, Some(_)) => {
                return Err(Error::AlreadyExists(
                    String::from_utf8_lossy(new_name).into(),
                ))
            }
            (RenameMode::Exchange, None) => {
                return Err(Error::NotFound(String::from_utf8_lossy(new_name).into()))
            }
            (RenameMode::Exchange, Some(other)) => {
                let dst = Self::must_inode(&tx, other)?;
                if dst.kind == Kind::Dir && Self::is_ancestor(&tx, other, parent)? {
                    return Err(Error::InvalidArgument(
                        "cannot move a directory inside itself".into(),
                    ));
                }
                tx.prepare_cached("UPDATE dentries SET ino=?3 WHERE parent=?1 AND name=?2")?
                    .execute(params![parent as i64, name, other as i64])?;
                tx.prepare_cached("UPDATE dentries SET ino=?3 WHERE parent=?1 AND name=?2")?
                    .execute(params![new_parent as i64, new_name, ino as i64])?;
                if parent != new_parent {
                    let delta = (src.kind == Kind::Dir) as i64 - (dst.kind == Kind::Dir) as i64;
                    tx.execute(
                        "UPDATE inodes SET nlink=nlink-?2 WHERE ino=?1",
                        params![parent as i64, delta],
                    )?;
                    tx.execute(
                        "UPDATE inodes SET nlink=nlink+?2 WHERE ino=?1",
                        params![new_parent as i64, delta],
                    )?;
                }
                tx.execute(
                    "UPDATE inodes SET ctime=?2 WHERE ino IN (?1, ?3)",
                    params![ino as i64, now, other as i64],
                )?;
            }
            (_, existing) => {
                if let Some(other) = existing {
                    let dst = Self::must_inode(&tx, other)?;
                    match (src.kind == Kind::Dir, dst.kind == Kind::Dir) {
                        (true, false) => {
                            return Err(Error::NotADirectory(
                                String::from_utf8_lossy(new_name).into(),
                            ))
                        }
                        (false, true) => {
                            return Err(Error::IsADirectory(
                                String::from_utf8_lossy(new_name).into(),
                            ))
                        }
                        (true, true) if Self::has_children_in(&tx, other)? => {
                            return Err(Error::NotEmpty(String::from_utf8_lossy(new_name).into()));
                        }
                        _ => {}
                    }
                    let gone = Self::drop_name(&tx, new_parent, new_name, &dst, now)?;
                    if dst.kind == Kind::Dir {
                        Self::purge_in(&tx, other)?;
                    } else if gone.nlink == 0 {
                        lost = Some(gone);
                    }
                }
                tx.prepare_cached("DELETE FROM dentries WHERE parent=?1 AND name=?2")?
                    .execute(params![parent as i64, name])?;
                Self::insert_dentry(&tx, new_parent, new_name, ino)?;
                if src.kind == Kind::Dir && parent != new_parent {
                    tx.execute(
                        "UPDATE inodes SET nlink=nlink-1 WHERE ino=?1",
                        [parent as i64],
                    )?;
                    tx.execute(
                        "UPDATE inodes SET nlink=nlink+1 WHERE ino=?1",
                        [new_parent as i64],
                    )?;
                }
                tx.execute(
                    "UPDATE inodes SET ctime=?2 WHERE ino=?1",
                    params![ino as i64, now],
                )?;
            }
        }
        Self::touch_dir(&tx, parent, now)?;
        Self::touch_dir(&tx, new_parent, now)?;
        tx.commit()?;
        Ok(lost)
    }

    pub fn set_attrs(&self, ino: u64, change: &AttrChange) -> Result<Inode> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let mut inode = Self::must_inode(&tx, ino)?;
        if let Some(m) = change.mode {
            inode.mode = m & 0o7777;
        }
        if let Some(u) = change.uid {
            inode.uid = u;
        }
        if let Some(g) = change.gid {
            inode.gid = g;
        }
        if let Some(t) = change.atime {
            inode.atime = t;
        }
        if let Some(t) = change.mtime {
            inode.mtime = t;
        }
        inode.ctime = change.ctime.unwrap_or_else(now_nanos);
        tx.prepare_cached(
            "UPDATE inodes SET mode=?2, uid=?3, gid=?4, atime=?5, mtime=?6, ctime=?7 WHERE ino=?1",
        )?
        .execute(params![
            ino as i64,
            inode.mode,
            inode.uid,
            inode.gid,
            inode.atime,
            inode.mtime,
            inode.ctime
        ])?;
        tx.commit()?;
        Ok(inode)
    }

    pub fn set_checksum(&self, ino: u64, version: u64, checksum: &str) -> Result<()> {
        let conn = self.conn.lock();
        conn.execute(
            "UPDATE inodes SET checksum=?3 WHERE ino=?1 AND version=?2",
            params![ino as i64, version as i64, checksum],
        )?;
        Ok(())
    }

    // ---------- xattrs ----------

    pub fn get_xattr(&self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare_cached("SELECT value FROM xattrs WHERE ino=?1 AND name=?2")?;
        Ok(st
            .query_row(params![ino as i64, name], |r| r.get(0))
            .optional()?)
    }

    pub fn list_xattrs(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare_cached("SELECT name FROM xattrs WHERE ino=?1 ORDER BY name")?;
        let rows = st.query_map([ino as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// `create_only`/`replace_only` follow XATTR_CREATE / XATTR_REPLACE.
    pub fn set_xattr(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        create_only: bool,
        replace_only: bool,
    ) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        Self::must_inode(&tx, ino)?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM xattrs WHERE ino=?1 AND name=?2")?
            .exists(params![ino as i64, name])?;
        if create_only && exists {
            return Err(Error::AlreadyExists(String::from_utf8_lossy(name).into()));
        }
        if replace_only && !exists {
            return Err(Error::NoAttribute(String::from_utf8_lossy(name).into()));
        }
        tx.prepare_cached("INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES(?1, ?2, ?3)")?
            .execute(params![ino as i64, name, value])?;
        tx.prepare_cached("UPDATE inodes SET ctime=?2 WHERE ino=?1")?
            .execute(params![ino as i64, now_nanos()])?;
        tx.commit()?;
        Ok(())
    }

    pub fn remove_xattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "DELETE FROM xattrs WHERE ino=?1 AND name=?2",
            params![ino as i64, name],
        )?;
        if n == 0 {
            return Err(Error::NoAttribute(String::from_utf8_lossy(name).into()));
        }
        conn.execute(
            "UPDATE inodes SET ctime=?2 WHERE ino=?1",
            params![ino as i64, now_nanos()],
        )?;
        Ok(())
    }

    // ---------- chunks ----------

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
                states[idx] = ShardState::from_i64(state);
                sums[idx] = sum.map(|s| s as u32);
                if placement[idx].is_none() {
                    states[idx] = ShardState::Missing;
                }
            }
        }
        Ok((placement, states, sums))
    }

    fn chunk_from_row(
        &self,
        conn: &Connection,
        chunk_id: i64,
        idx: i64,
        data_len: i64,
        k: i64,
        m: i64,
    ) -> Result<ChunkRecord> {
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

    /// The live chunk at `idx` of a file.
    pub fn chunk_at(&self, ino: u64, idx: u64) -> Result<Option<ChunkRecord>> {
        let conn = self.conn.lock();
        let row = conn
            .prepare_cached(
                "SELECT chunk_id, idx, data_len, k, m FROM chunks WHERE ino=?1 AND idx=?2",
            )?
            .query_row(params![ino as i64, idx as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        match row {
            Some((c, i, l, k, m)) => Ok(Some(self.chunk_from_row(&conn, c, i, l, k, m)?)),
            None => Ok(None),
        }
    }

    pub fn chunks_of(&self, ino: u64) -> Result<Vec<ChunkRecord>> {
        let conn = self.conn.lock();
        let rows: Vec<(i64, i64, i64, i64, i64)> = conn
            .prepare_cached(
                "SELECT chunk_id, idx, data_len, k, m FROM chunks WHERE ino=?1 ORDER BY idx",
            )?
            .query_map([ino as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(c, i, l, k, m)| self.chunk_from_row(&conn, c, i, l, k, m))
            .collect()
    }

    pub fn chunk_by_id(&self, chunk_id: u64) -> Result<Option<(Option<u64>, ChunkRecord)>> {
        let conn = self.conn.lock();
        let row = conn
            .prepare_cached(
                "SELECT chunk_id, idx, data_len, k, m, ino FROM chunks WHERE chunk_id=?1",
            )?
            .query_row([chunk_id as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })
            .optional()?;
        match row {
            Some((c, i, l, k, m, ino)) => Ok(Some((
                ino.map(|x| x as u64),
                self.chunk_from_row(&conn, c, i, l, k, m)?,
            ))),
            None => Ok(None),
        }
    }

    fn insert_chunk(
        &self,
        tx: &Transaction,
        ino: Option<u64>,
        idx: u64,
        chunk: &WrittenChunk,
    ) -> Result<()> {
        let l = &chunk.layout;
        tx.prepare_cached(
            "INSERT INTO chunks(chunk_id, ino, idx, data_len, k, m) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            l.chunk_id as i64,
            ino.map(|i| i as i64),
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

    fn kill_chunks(tx: &Transaction, ino: u64, idx: u64) -> Result<()> {
        tx.prepare_cached("UPDATE chunks SET ino=NULL WHERE ino=?1 AND idx=?2")?
            .execute(params![ino as i64, idx as i64])?;
        Ok(())
    }

    /// Commit new content of a file: one transaction. Returns the new inode.
    pub fn commit_file(&self, commit: &FileCommit) -> Result<Inode> {
        let mut conn = self.conn.lock();
        Self::durably(&mut conn, |conn| self.commit_file_in(conn, commit))
    }

    /// Run `f` with synchronous=FULL, so its commit (and every commit before
    /// it in the WAL) is on stable storage when it returns.
    fn durably<T>(
        conn: &mut Connection,
        f: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        let result = f(conn);
        let restored = conn.pragma_update(None, "synchronous", "NORMAL");
        let value = result?;
        restored?;
        Ok(value)
    }

    /// Make every change so far durable (fsync of a directory).
    pub fn sync(&self) -> Result<()> {
        let mut conn = self.conn.lock();
        Self::durably(&mut conn, |conn| {
            conn.execute("UPDATE settings SET value=value WHERE key='cluster_id'", [])?;
            Ok(())
        })
    }

    fn commit_file_in(&self, conn: &mut Connection, commit: &FileCommit) -> Result<Inode> {
        let tx = conn.transaction()?;
        let inode = Self::must_inode(&tx, commit.ino)?;
        self.commit_in(&tx, &inode, commit)?;
        let inode = Self::must_inode(&tx, commit.ino)?;
        tx.commit()?;
        Ok(inode)
    }

    fn commit_in(&self, tx: &Transaction, inode: &Inode, c: &FileCommit) -> Result<()> {
        if let Some(from) = c.drop_from {
            tx.prepare_cached("UPDATE chunks SET ino=NULL WHERE ino=?1 AND idx>=?2")?
                .execute(params![inode.ino as i64, from as i64])?;
        }
        for idx in &c.removed {
            Self::kill_chunks(tx, inode.ino, *idx)?;
        }
        for (idx, chunk) in &c.chunks {
            Self::kill_chunks(tx, inode.ino, *idx)?;
            self.insert_chunk(tx, Some(inode.ino), *idx, chunk)?;
        }
        let content_type = c
            .content_type
            .clone()
            .or_else(|| inode.content_type.clone());
        tx.prepare_cached(
            "UPDATE inodes SET size=?2, mtime=?3, ctime=?4, version=version+1, checksum=?5, content_type=?6 WHERE ino=?1",
        )?
        .execute(params![inode.ino as i64, c.size as i64, c.mtime, c.ctime, c.checksum, content_type])?;
        Ok(())
    }

    /// Create or replace the file at `parts` (creating parent directories) with
    /// the given content, in one transaction. An existing file keeps its inode
    /// (hard links and open handles see the new content).
    pub fn put_file(
        &self,
        parts: &[&[u8]],
        template: &Inode,
        commit: FileCommit,
    ) -> Result<PutOutcome> {
        let mut conn = self.conn.lock();
        Self::durably(&mut conn, |conn| {
            self.put_file_in(conn, parts, template, commit)
        })
    }

    fn put_file_in(
        &self,
        conn: &mut Connection,
        parts: &[&[u8]],
        template: &Inode,
        mut commit: FileCommit,
    ) -> Result<PutOutcome> {
        let tx = conn.transaction()?;
        let mut created = Vec::new();
        let mut dir = ROOT_INO;
        let now = template.ctime;
        for part in &parts[..parts.len() - 1] {
            dir = match Self::lookup_in(&tx, dir, part)? {
                Some(ino) => {
                    let d = Self::must_inode(&tx, ino)?;
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
                    let ino = Self::insert_inode(&tx, &d)?;
                    Self::insert_dentry(&tx, dir, part, ino)?;
                    tx.execute("UPDATE inodes SET nlink=nlink+1 WHERE ino=?1", [dir as i64])?;
                    Self::touch_dir(&tx, dir, now)?;
                    created.push((dir, part.to_vec()));
                    ino
                }
            };
        }
        let name = parts[parts.len() - 1];
        let inode = match Self::lookup_in(&tx, dir, name)? {
            Some(ino) => {
                let f = Self::must_inode(&tx, ino)?;
                if f.kind == Kind::Dir {
                    return Err(Error::IsADirectory(String::from_utf8_lossy(name).into()));
                }
                if f.kind != Kind::File {
                    return Err(Error::InvalidArgument(format!(
                        "{} is not a regular file",
                        String::from_utf8_lossy(name)
                    )));
                }
                commit.drop_from = Some(0);
                f
            }
            None => {
                let ino = Self::insert_inode(&tx, template)?;
                Self::insert_dentry(&tx, dir, name, ino)?;
                Self::touch_dir(&tx, dir, now)?;
                created.push((dir, name.to_vec()));
                let mut f = template.clone();
                f.ino = ino;
                f
            }
        };
        commit.ino = inode.ino;
        self.commit_in(&tx, &inode, &commit)?;
        let inode = Self::must_inode(&tx, inode.ino)?;
        tx.commit()?;
        Ok(PutOutcome {
            inode,
            created,
            entry: (dir, name.to_vec()),
        })
    }

    // ---------- shard health, repair and collection ----------

    pub fn set_shard_state(&self, chunk_id: u64, idx: usize, state: ShardState) -> Result<bool> {
        let conn = self.conn.lock();
        let n = conn
            .prepare_cached(
                "UPDATE shards SET state=?3 WHERE chunk_id=?1 AND idx=?2 AND state != ?3",
            )?
            .execute(params![chunk_id as i64, idx as i64, state as i64])?;
        Ok(n > 0)
    }

    /// Record a rebuilt shard. Only updates if the chunk still exists.
    /// Record a rebuilt shard. Returns false (changing nothing) when the
    /// chunk is no longer live: the caller then removes what it wrote.
    pub fn set_shard_ok(
        &self,
        chunk_id: u64,
        idx: usize,
        node: usize,
        checksum: u32,
    ) -> Result<bool> {
        let conn = self.conn.lock();
        let changed = conn
            .prepare_cached(
                "UPDATE shards SET node=?3, state=0, checksum=?4 WHERE chunk_id=?1 AND idx=?2
                 AND EXISTS (SELECT 1 FROM chunks c WHERE c.chunk_id=?1 AND c.ino IS NOT NULL)",
            )?
            .execute(params![
                chunk_id as i64,
                idx as i64,
                self.node_ids[node],
                checksum as i64
            ])?;
        Ok(changed > 0)
    }

    /// Mark every healthy shard on a node missing (the node was lost).
    pub fn mark_node_lost(&self, node: usize) -> Result<usize> {
        let conn = self.conn.lock();
        Ok(conn.execute(
            "UPDATE shards SET state=1 WHERE node=?1 AND state=0",
            [&self.node_ids[node]],
        )?)
    }

    /// Chunks (live or dead) with at least one shard not ok.
    pub fn chunks_needing_repair(&self, limit: usize) -> Result<Vec<(Option<u64>, ChunkRecord)>> {
        let ids: Vec<i64> = {
            let conn = self.conn.lock();
            let mut st = conn.prepare_cached(
                "SELECT DISTINCT s.chunk_id FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id
                 WHERE s.state != 0 AND c.ino IS NOT NULL LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some(r) = self.chunk_by_id(id as u64)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Health of the live chunks when the nodes `down` (indexes) are
    /// unreachable: (chunks lacking a healthy shard, shards not healthy,
    /// chunks with fewer than k healthy shards, i.e. unreadable).
    pub fn live_shard_health(&self, down: &[usize]) -> Result<(u64, u64, u64)> {
        let conn = self.conn.lock();
        let down_ids: Vec<&str> = down.iter().map(|&i| self.node_ids[i].as_str()).collect();
        let placeholders = vec!["?"; down_ids.len()].join(",");
        let healthy = if down_ids.is_empty() {
            "s.state = 0 AND s.node IS NOT NULL".to_string()
        } else {
            format!("s.state = 0 AND s.node IS NOT NULL AND s.node NOT IN ({placeholders})")
        };
        let sql = format!(
            "SELECT COUNT(*), COALESCE(SUM(total - good), 0), COALESCE(SUM(good < k), 0) FROM (
               SELECT c.k AS k, COUNT(*) AS total, SUM(CASE WHEN {healthy} THEN 1 ELSE 0 END) AS good
               FROM chunks c JOIN shards s ON s.chunk_id = c.chunk_id
               WHERE c.ino IS NOT NULL GROUP BY c.chunk_id
             ) WHERE good < total"
        );
        let (chunks, shards, unreadable): (i64, i64, i64) =
            conn.query_row(&sql, rusqlite::params_from_iter(down_ids.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        Ok((chunks as u64, shards as u64, unreadable as u64))
    }

    pub fn count_unhealthy_chunks(&self) -> Result<(u64, u64)> {
        let conn = self.conn.lock();
        let chunks: i64 = conn.query_row(
            "SELECT COUNT(DISTINCT s.chunk_id) FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id WHERE s.state != 0 AND c.ino IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        let shards: i64 = conn.query_row(
            "SELECT COUNT(*) FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id WHERE s.state != 0 AND c.ino IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        Ok((chunks as u64, shards as u64))
    }

    /// Live chunk ids in order, for scrub: pages after `after` (None: from
    /// the start). Ids are stored as i64, so the order is that of the signed
    /// values; pass back the last id of a page to get the next one.
    pub fn live_chunk_ids(&self, after: Option<u64>, limit: usize) -> Result<Vec<u64>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare_cached(
            "SELECT chunk_id FROM chunks WHERE ino IS NOT NULL AND (?1 IS NULL OR chunk_id > ?1) ORDER BY chunk_id LIMIT ?2",
        )?;
        let rows = st.query_map(params![after.map(|a| a as i64), limit as i64], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(rows
            .map(|r| r.map(|i| i as u64))
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Live chunks that have a shard recorded on `node` (any state), for recovery.
    pub fn chunk_ids_on_node(&self, node: usize) -> Result<Vec<u64>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare_cached(
            "SELECT s.chunk_id FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id WHERE s.node=?1 AND c.ino IS NOT NULL",
        )?;
        let rows = st.query_map([&self.node_ids[node]], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .map(|r| r.map(|i| i as u64))
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Superseded chunks waiting for their shards to be deleted.
    pub fn dead_chunks(&self, limit: usize) -> Result<Vec<ChunkRecord>> {
        let conn = self.conn.lock();
        let rows: Vec<(i64, i64, i64, i64, i64)> = conn
            .prepare_cached(
                "SELECT chunk_id, idx, data_len, k, m FROM chunks WHERE ino IS NULL LIMIT ?1",
            )?
            .query_map([limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(c, i, l, k, m)| self.chunk_from_row(&conn, c, i, l, k, m))
            .collect()
    }

    pub fn forget_chunks(&self, ids: &[u64]) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for id in ids {
            tx.prepare_cached("DELETE FROM shards WHERE chunk_id=?1")?
                .execute([*id as i64])?;
            tx.prepare_cached("DELETE FROM chunks WHERE chunk_id=?1 AND ino IS NULL")?
                .execute([*id as i64])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every (chunk_id, shard index) recorded on a node: for orphan sweeps.
    pub fn shard_keys_on_node(&self, node: usize) -> Result<HashSet<(u64, u16)>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare("SELECT chunk_id, idx FROM shards WHERE node=?1")?;
        let rows = st.query_map([&self.node_ids[node]], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u16))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---------- statistics ----------

    /// (file count, total bytes of files).
    pub fn object_totals(&self) -> Result<(u64, u64)> {
        let conn = self.conn.lock();
        let (n, b): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM inodes WHERE kind=1 AND nlink > 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n as u64, b as u64))
    }

    /// Per node id: (healthy shards, bytes of shard payload).
    pub fn node_usage(&self) -> Result<BTreeMap<String, (u64, u64)>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT s.node, COUNT(*), COALESCE(SUM((c.data_len + c.k - 1) / c.k), 0)
             FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id
             WHERE s.node IS NOT NULL AND s.state=0 GROUP BY s.node",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (node, n, b) = row?;
            out.insert(node, (n, b));
        }
        Ok(out)
    }

    pub fn inode_count(&self) -> Result<u64> {
        let conn = self.conn.lock();
        Ok(conn.query_row("SELECT COUNT(*) FROM inodes", [], |r| r.get::<_, i64>(0))? as u64)
    }

    // ---------- recoveries ----------

    pub fn start_recovery(&self, node: &str, detected_ms: i64, started_ms: i64) -> Result<i64> {
        let conn = self.conn.lock();
        conn.execute(
            "INSERT INTO recoveries(node, state, detected_ms, started_ms) VALUES(?1, 'running', ?2, ?3)",
            params![node, detected_ms, started_ms],
        )?;
        Ok(conn.last_insert_rowid())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn update_recovery(
        &self,
        id: i64,
        state: &str,
        total: u64,
        done: u64,
        bytes: u64,
        done_ms: Option<i64>,
        error: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn.lock();
        conn.execute(
            "UPDATE recoveries SET state=?2, shards_total=?3, shards_done=?4, bytes=?5, done_ms=?6, error=?7 WHERE id=?1",
            params![id, state, total as i64, done as i64, bytes as i64, done_ms, error],
        )?;
        Ok(())
    }

    /// Recoveries left 'running' by a crash: (id, node, detected_ms).
    pub fn interrupted_recoveries(&self) -> Result<Vec<(i64, String, i64)>> {
        let conn = self.conn.lock();
        let mut st =
            conn.prepare("SELECT id, node, detected_ms FROM recoveries WHERE state='running'")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
