//! Inode rows: how an `Inode` is stored and read back, reading one inode,
//! changing its attributes (mode, owner, times, checksum) and its extended
//! attributes. Names (directory entries) are `lookup`'s and `namespace`'s;
//! content (chunks) is `file_content`'s.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{Durability, Meta};
use crate::error::{Error, Result};
use crate::model::{now_nanos, AttrChange, Inode, Kind, XattrWrite};

/// The columns of an inode row, in the order `inode_from_row` reads them
/// (then `STORED_BYTES`).
const ROW_COLUMNS: &[&str] = &[
    "ino",
    "kind",
    "mode",
    "uid",
    "gid",
    "size",
    "nlink",
    "rdev",
    "atime",
    "mtime",
    "ctime",
    "crtime",
    "target",
    "content_type",
    "version",
    "checksum",
    "md5",
];

/// The bytes a regular file's live chunks hold (`{t}`: the inodes table's
/// name or alias in the query); holes are chunks with no row.
const STORED_BYTES: &str =
    "CASE WHEN {t}.kind = 1 THEN (SELECT COALESCE(SUM(c.data_len), 0) FROM chunks c WHERE c.ino = {t}.ino) ELSE 0 END";

/// The select list `inode_from_row` reads, for the inodes table named (or
/// aliased) `table` in the query.
pub(super) fn inode_columns(table: &str) -> String {
    let mut columns: Vec<String> = ROW_COLUMNS.iter().map(|c| format!("{table}.{c}")).collect();
    columns.push(STORED_BYTES.replace("{t}", table));
    columns.join(", ")
}

/// The kind stored as `code` (unknown codes read as a regular file).
fn kind_from_code(code: i64) -> Kind {
    match code {
        2 => Kind::Dir,
        3 => Kind::Symlink,
        4 => Kind::Fifo,
        5 => Kind::CharDevice,
        6 => Kind::BlockDevice,
        7 => Kind::Socket,
        _ => Kind::File,
    }
}

/// Read an inode from `inode_columns` starting at column `first`.
pub(super) fn inode_from_row(r: &rusqlite::Row, first: usize) -> rusqlite::Result<Inode> {
    Ok(Inode {
        ino: r.get::<_, i64>(first)? as u64,
        kind: kind_from_code(r.get(first + 1)?),
        mode: r.get::<_, i64>(first + 2)? as u32,
        uid: r.get::<_, i64>(first + 3)? as u32,
        gid: r.get::<_, i64>(first + 4)? as u32,
        size: r.get::<_, i64>(first + 5)? as u64,
        nlink: r.get::<_, i64>(first + 6)? as u32,
        rdev: r.get::<_, i64>(first + 7)? as u32,
        atime: r.get(first + 8)?,
        mtime: r.get(first + 9)?,
        ctime: r.get(first + 10)?,
        crtime: r.get(first + 11)?,
        target: r.get(first + 12)?,
        content_type: r.get(first + 13)?,
        version: r.get::<_, i64>(first + 14)? as u64,
        checksum: r.get(first + 15)?,
        md5: r.get(first + 16)?,
        stored_bytes: r.get::<_, i64>(first + 17)? as u64,
    })
}

impl Meta {
    pub fn get_inode(&self, ino: u64) -> Result<Option<Inode>> {
        self.db.read(|conn| Self::get_inode_in(conn, ino))
    }

    pub(super) fn get_inode_in(conn: &Connection, ino: u64) -> Result<Option<Inode>> {
        let mut st = conn.prepare_cached(&format!(
            "SELECT {} FROM inodes WHERE ino=?1",
            inode_columns("inodes")
        ))?;
        Ok(st
            .query_row([ino as i64], |r| inode_from_row(r, 0))
            .optional()?)
    }

    pub(super) fn must_inode(conn: &Connection, ino: u64) -> Result<Inode> {
        Self::get_inode_in(conn, ino)?.ok_or_else(|| Error::NotFound(format!("inode {ino}")))
    }

    /// The directory `ino`, which must still have a name.
    pub(super) fn require_dir(conn: &Connection, ino: u64) -> Result<Inode> {
        let dir = Self::must_inode(conn, ino)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotADirectory(format!("inode {ino}")));
        }
        if dir.nlink == 0 {
            return Err(Error::NotFound("directory was removed".into()));
        }
        Ok(dir)
    }

    /// Insert a new inode row (its number is chosen by the database).
    pub(super) fn insert_inode(tx: &Transaction, inode: &Inode) -> Result<u64> {
        tx.prepare_cached(
            "INSERT INTO inodes(kind, mode, uid, gid, size, nlink, rdev, atime, mtime, ctime, crtime, target, content_type, version, checksum, md5)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
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
            inode.checksum,
            inode.md5
        ])?;
        Ok(tx.last_insert_rowid() as u64)
    }

    pub fn set_attrs(&self, ino: u64, change: &AttrChange) -> Result<Inode> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let mut inode = Self::must_inode(tx, ino)?;
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
            Ok(inode)
        })
    }

    /// Record the whole-content checksum of `version` (a no-op when the file
    /// has moved on to another version meanwhile).
    pub fn set_checksum(&self, ino: u64, version: u64, checksum: &str) -> Result<()> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            tx.execute(
                "UPDATE inodes SET checksum=?3 WHERE ino=?1 AND version=?2",
                params![ino as i64, version as i64, checksum],
            )?;
            Ok(())
        })
    }

    /// Record the content MD5 of `version` (a no-op when the file has moved
    /// on to another version meanwhile).
    pub fn set_md5(&self, ino: u64, version: u64, md5: &str) -> Result<()> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            tx.execute(
                "UPDATE inodes SET md5=?3 WHERE ino=?1 AND version=?2",
                params![ino as i64, version as i64, md5],
            )?;
            Ok(())
        })
    }

    // ---------- extended attributes ----------

    pub fn get_xattr(&self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.read(|conn| {
            let mut st =
                conn.prepare_cached("SELECT value FROM xattrs WHERE ino=?1 AND name=?2")?;
            Ok(st
                .query_row(params![ino as i64, name], |r| r.get(0))
                .optional()?)
        })
    }

    pub fn list_xattrs(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        self.db.read(|conn| {
            let mut st =
                conn.prepare_cached("SELECT name FROM xattrs WHERE ino=?1 ORDER BY name")?;
            let rows = st.query_map([ino as i64], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Store an attribute as `mode` allows (XATTR_CREATE / XATTR_REPLACE).
    pub fn set_xattr(&self, ino: u64, name: &[u8], value: &[u8], mode: XattrWrite) -> Result<()> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            Self::must_inode(tx, ino)?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM xattrs WHERE ino=?1 AND name=?2")?
                .exists(params![ino as i64, name])?;
            if let Some(refused) = mode.refusal(exists, name) {
                return Err(refused);
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES(?1, ?2, ?3)",
            )?
            .execute(params![ino as i64, name, value])?;
            tx.prepare_cached("UPDATE inodes SET ctime=?2 WHERE ino=?1")?
                .execute(params![ino as i64, now_nanos()])?;
            Ok(())
        })
    }

    pub fn remove_xattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let n = tx.execute(
                "DELETE FROM xattrs WHERE ino=?1 AND name=?2",
                params![ino as i64, name],
            )?;
            if n == 0 {
                return Err(Error::NoAttribute(String::from_utf8_lossy(name).into()));
            }
            tx.execute(
                "UPDATE inodes SET ctime=?2 WHERE ino=?1",
                params![ino as i64, now_nanos()],
            )?;
            Ok(())
        })
    }
}
