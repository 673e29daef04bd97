//! Changing names: create, hard link, unlink, rmdir, rename (replace,
//! no-replace, exchange) and purging an inode that lost its last name. Each
//! call is one write transaction through the funnel, committed without fsync
//! (a namespace change survives a daemon crash and reaches the disk with the
//! next durable commit). Directory link counts and parent times are kept
//! here; reading names is `lookup`'s.

use rusqlite::{params, Transaction};

use super::{map_constraint, Durability, Meta};
use crate::error::{Error, Result};
use crate::model::{now_nanos, Inode, Kind, NameRef, Nanos, RenameMode};

/// The result of removing a name.
#[derive(Debug, Clone, Copy)]
pub struct Unlinked {
    pub ino: u64,
    pub nlink: u32,
}

impl Meta {
    /// A directory's entries changed: its mtime and ctime become `now`.
    pub(super) fn touch_dir(tx: &Transaction, dir: u64, now: Nanos) -> Result<()> {
        tx.prepare_cached("UPDATE inodes SET mtime=?2, ctime=?2 WHERE ino=?1")?
            .execute(params![dir as i64, now])?;
        Ok(())
    }

    pub(super) fn insert_dentry(
        tx: &Transaction,
        parent: u64,
        name: &[u8],
        ino: u64,
    ) -> Result<()> {
        tx.prepare_cached("INSERT INTO dentries(parent, name, ino) VALUES(?1, ?2, ?3)")?
            .execute(params![parent as i64, name, ino as i64])
            .map_err(|e| map_constraint(e, &String::from_utf8_lossy(name)))?;
        Ok(())
    }

    /// Create a new inode named `name` in `parent`.
    pub fn create(&self, parent: u64, name: &[u8], template: &Inode) -> Result<Inode> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            Self::require_dir(tx, parent)?;
            if Self::lookup_in(tx, parent, name)?.is_some() {
                return Err(Error::AlreadyExists(String::from_utf8_lossy(name).into()));
            }
            Self::insert_named(tx, parent, name, template)
        })
    }

    /// Insert a new inode from `template` under a free name in `parent`
    /// (inside the caller's transaction).
    pub(super) fn insert_named(
        tx: &Transaction,
        parent: u64,
        name: &[u8],
        template: &Inode,
    ) -> Result<Inode> {
        let ino = Self::insert_inode(tx, template)?;
        Self::insert_dentry(tx, parent, name, ino)?;
        if template.kind == Kind::Dir {
            tx.prepare_cached("UPDATE inodes SET nlink=nlink+1 WHERE ino=?1")?
                .execute([parent as i64])?;
        }
        Self::touch_dir(tx, parent, template.ctime)?;
        let mut inode = template.clone();
        inode.ino = ino;
        Ok(inode)
    }

    /// Add a hard link.
    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> Result<Inode> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            Self::require_dir(tx, parent)?;
            let inode = Self::must_inode(tx, ino)?;
            if inode.kind == Kind::Dir {
                return Err(Error::PermissionDenied("hard links to directories".into()));
            }
            if Self::lookup_in(tx, parent, name)?.is_some() {
                return Err(Error::AlreadyExists(String::from_utf8_lossy(name).into()));
            }
            Self::insert_dentry(tx, parent, name, ino)?;
            let now = now_nanos();
            tx.prepare_cached("UPDATE inodes SET nlink=nlink+1, ctime=?2 WHERE ino=?1")?
                .execute(params![ino as i64, now])?;
            Self::touch_dir(tx, parent, now)?;
            let inode = Self::must_inode(tx, ino)?;
            Ok(inode)
        })
    }

    /// Remove a non-directory name. The inode stays (nlink 0) until `purge`.
    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<Unlinked> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let ino = Self::lookup_in(tx, parent, name)?
                .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(name).into()))?;
            let inode = Self::must_inode(tx, ino)?;
            if inode.kind == Kind::Dir {
                return Err(Error::IsADirectory(String::from_utf8_lossy(name).into()));
            }
            let now = now_nanos();
            let out = Self::drop_name(tx, parent, name, &inode, now)?;
            Self::touch_dir(tx, parent, now)?;
            Ok(out)
        })
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
        self.db.write_transaction(Durability::Buffered, |tx| {
            let ino = Self::lookup_in(tx, parent, name)?
                .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(name).into()))?;
            let inode = Self::must_inode(tx, ino)?;
            if inode.kind != Kind::Dir {
                return Err(Error::NotADirectory(String::from_utf8_lossy(name).into()));
            }
            if Self::has_children_in(tx, ino)? {
                return Err(Error::NotEmpty(String::from_utf8_lossy(name).into()));
            }
            let now = now_nanos();
            let out = Self::drop_name(tx, parent, name, &inode, now)?;
            Self::purge_in(tx, ino)?;
            Self::touch_dir(tx, parent, now)?;
            Ok(out)
        })
    }

    /// Delete an inode with no names left: its row, xattrs, and chunks (queued
    /// for the collector).
    pub fn purge(&self, ino: u64) -> Result<()> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let still_linked: bool = tx
                .prepare_cached("SELECT 1 FROM dentries WHERE ino=?1 LIMIT 1")?
                .exists([ino as i64])?;
            if !still_linked {
                Self::purge_in(tx, ino)?;
            }
            Ok(())
        })
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

    /// Atomic rename. Returns the inode that lost its last name, if any.
    pub fn rename(&self, from: NameRef, to: NameRef, mode: RenameMode) -> Result<Option<Unlinked>> {
        let NameRef { parent, name } = from;
        let NameRef {
            parent: new_parent,
            name: new_name,
        } = to;
        self.db.write_transaction(Durability::Buffered, |tx| {
            let ino = Self::lookup_in(tx, parent, name)?
                .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(name).into()))?;
            Self::require_dir(tx, new_parent)?;
            let src = Self::must_inode(tx, ino)?;
            let existing = Self::lookup_in(tx, new_parent, new_name)?;
            if existing == Some(ino) {
                return Ok(None);
            }
            if src.kind == Kind::Dir && Self::is_ancestor(tx, ino, new_parent)? {
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
                    let dst = Self::must_inode(tx, other)?;
                    if dst.kind == Kind::Dir && Self::is_ancestor(tx, other, parent)? {
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
                        let dst = Self::must_inode(tx, other)?;
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
                            (true, true) if Self::has_children_in(tx, other)? => {
                                return Err(Error::NotEmpty(
                                    String::from_utf8_lossy(new_name).into(),
                                ));
                            }
                            _ => {}
                        }
                        let gone = Self::drop_name(tx, new_parent, new_name, &dst, now)?;
                        if dst.kind == Kind::Dir {
                            Self::purge_in(tx, other)?;
                        } else if gone.nlink == 0 {
                            lost = Some(gone);
                        }
                    }
                    tx.prepare_cached("DELETE FROM dentries WHERE parent=?1 AND name=?2")?
                        .execute(params![parent as i64, name])?;
                    Self::insert_dentry(tx, new_parent, new_name, ino)?;
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
            Self::touch_dir(tx, parent, now)?;
            Self::touch_dir(tx, new_parent, now)?;
            Ok(lost)
        })
    }
}
