//! Metadata changes that POSIX wants atomic but that are made of several
//! steps: "create this file unless the name exists, else give me what is
//! there" (`open` with `O_CREAT` and no `O_EXCL`), and "store this access
//! ACL and the mode bits it implies" (`setfacl`, `cp -a`). Each runs as one
//! transaction, so a concurrent change never sees or leaves half of it. The
//! rules that decide what to ask for (ACL parsing, setgid inheritance, what
//! O_EXCL means) are the service's; this file only makes them atomic.

use rusqlite::{params, OptionalExtension, Transaction};

use super::connections::Durability;
use super::{Inode, Meta};
use crate::error::Result;
use crate::model::XattrWrite;

/// An access-ACL change, applied together with the mode bits it implies.
#[derive(Debug, Clone, Copy)]
pub struct AccessAclChange<'a> {
    /// The extended attribute that holds the ACL.
    pub name: &'a [u8],
    /// New owner/group/other permission bits (`0o777` part of the mode).
    pub permission_bits: u32,
    /// The ACL to store, or None when the mode expresses it fully (then a
    /// stored copy is removed).
    pub stored_value: Option<&'a [u8]>,
    /// XATTR_CREATE / XATTR_REPLACE: whether an ACL may or must be stored.
    pub mode: XattrWrite,
}

impl Meta {
    /// The inode named `name` in directory `parent`: created from `template`
    /// when the name is free (true), or the one already there (false), in
    /// one transaction, so a name that appears or disappears meanwhile never
    /// turns into a spurious "exists" or "not found".
    pub fn create_or_lookup(
        &self,
        parent: u64,
        name: &[u8],
        template: &Inode,
    ) -> Result<(Inode, bool)> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            Self::require_dir(tx, parent)?;
            if let Some(ino) = Self::lookup_in(tx, parent, name)? {
                // Nothing written: the transaction commits no change.
                return Ok((Self::must_inode(tx, ino)?, false));
            }
            Ok((Self::insert_named(tx, parent, name, template)?, true))
        })
    }

    /// Store (or drop) an access ACL and set the permission bits it implies
    /// (setuid, setgid and sticky bits are kept), in one transaction: on any
    /// error neither the mode nor the attribute changed. Returns the inode.
    pub fn set_access_acl(&self, ino: u64, change: &AccessAclChange<'_>) -> Result<Inode> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let mut inode = Self::must_inode(tx, ino)?;
            let stored = acl_is_stored(tx, ino, change.name)?;
            if let Some(refused) = change.mode.refusal(stored, change.name) {
                return Err(refused);
            }
            inode.mode = (inode.mode & 0o7000) | (change.permission_bits & 0o777);
            inode.ctime = super::now_nanos();
            tx.prepare_cached("UPDATE inodes SET mode=?2, ctime=?3 WHERE ino=?1")?
                .execute(params![ino as i64, inode.mode, inode.ctime])?;
            match change.stored_value {
                Some(value) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES(?1, ?2, ?3)",
                    )?
                    .execute(params![ino as i64, change.name, value])?;
                }
                None => {
                    tx.prepare_cached("DELETE FROM xattrs WHERE ino=?1 AND name=?2")?
                        .execute(params![ino as i64, change.name])?;
                }
            }
            Ok(inode)
        })
    }
}

fn acl_is_stored(tx: &Transaction<'_>, ino: u64, name: &[u8]) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM xattrs WHERE ino=?1 AND name=?2")?
        .query_row(params![ino as i64, name], |_| Ok(()))
        .optional()?
        .is_some())
}
