//! Finding names: lookup of one entry, resolving a path from the root,
//! directory listings in name order, the parent of an inode, and inodes
//! left without a name. Everything public
//! here is a read on the reader pool; the `*_in` helpers also serve the
//! reads inside write transactions. Nothing here changes the database.

use rusqlite::{params, Connection, OptionalExtension};

use super::inodes::{inode_columns, inode_from_row};
use super::Meta;
use crate::error::{Error, Result};
use crate::model::{DirPage, Inode, Kind, ROOT_INO};

/// How many parent links `is_ancestor` follows before giving up.
const MAX_DEPTH: usize = 4096;

impl Meta {
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<Inode>> {
        self.db
            .read(|conn| match Self::lookup_in(conn, parent, name)? {
                Some(ino) => Self::get_inode_in(conn, ino),
                None => Ok(None),
            })
    }

    pub(super) fn lookup_in(conn: &Connection, parent: u64, name: &[u8]) -> Result<Option<u64>> {
        let mut st = conn.prepare_cached("SELECT ino FROM dentries WHERE parent=?1 AND name=?2")?;
        Ok(st
            .query_row(params![parent as i64, name], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|i| i as u64))
    }

    /// Resolve path components from the root.
    pub fn resolve(&self, parts: &[&[u8]]) -> Result<Option<Inode>> {
        self.db.read(|conn| {
            let mut ino = ROOT_INO;
            for (i, part) in parts.iter().enumerate() {
                match Self::lookup_in(conn, ino, part)? {
                    Some(next) => {
                        if i + 1 < parts.len() {
                            let node = Self::must_inode(conn, next)?;
                            if node.kind != Kind::Dir {
                                return Err(Error::NotADirectory(
                                    String::from_utf8_lossy(part).into(),
                                ));
                            }
                        }
                        ino = next
                    }
                    None => return Ok(None),
                }
            }
            Self::get_inode_in(conn, ino)
        })
    }

    /// One page of a directory's entries, in name order.
    pub fn list_dir(&self, parent: u64, page: DirPage) -> Result<Vec<(Vec<u8>, Inode)>> {
        let DirPage { after, limit } = page;
        self.db.read(|conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT d.name, {} FROM dentries d JOIN inodes i ON i.ino=d.ino
                 WHERE d.parent=?1 AND d.name > ?2 ORDER BY d.name LIMIT ?3",
                inode_columns("i")
            ))?;
            let after: &[u8] = after.unwrap_or(b"");
            let rows = st.query_map(params![parent as i64, after, limit as i64], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, inode_from_row(r, 1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub(super) fn has_children_in(conn: &Connection, ino: u64) -> Result<bool> {
        let mut st = conn.prepare_cached("SELECT 1 FROM dentries WHERE parent=?1 LIMIT 1")?;
        Ok(st.exists([ino as i64])?)
    }

    /// The parent and name of an inode (any one link).
    pub fn parent_of(&self, ino: u64) -> Result<Option<(u64, Vec<u8>)>> {
        self.db.read(|conn| {
            let mut st =
                conn.prepare_cached("SELECT parent, name FROM dentries WHERE ino=?1 LIMIT 1")?;
            Ok(st
                .query_row([ino as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
                })
                .optional()?)
        })
    }

    /// Inodes left with no names (a crash while they were open).
    pub fn unlinked_inodes(&self) -> Result<Vec<u64>> {
        self.db.read(|conn| {
            let mut st = conn.prepare(
                "SELECT ino FROM inodes WHERE ino != 1 AND NOT EXISTS (SELECT 1 FROM dentries d WHERE d.ino = inodes.ino)",
            )?;
            let rows = st.query_map([], |r| r.get::<_, i64>(0))?;
            Ok(rows
                .map(|r| r.map(|i| i as u64))
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Whether `maybe_ancestor` is `ino` or one of its parents.
    pub(super) fn is_ancestor(
        conn: &Connection,
        maybe_ancestor: u64,
        mut ino: u64,
    ) -> Result<bool> {
        let mut st = conn.prepare_cached("SELECT parent FROM dentries WHERE ino=?1 LIMIT 1")?;
        for _ in 0..MAX_DEPTH {
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
}
