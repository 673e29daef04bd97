//! Namespace operations, as the mount sees the tree: attributes (with the
//! uncommitted size and times of open files laid over), lookup, creating
//! nodes (setgid directories), links, unlink/rmdir/rename (an inode that
//! loses its last name while open lives until its last close), setattr and
//! truncation, directory listing, extended attributes and `df` figures.

use std::collections::HashSet;
use std::time::Duration;

use super::keys::{validate_name, MAX_NAME_LEN};
use super::{Env, PLACEMENT_XATTR};
use crate::error::{Error, Result};
use crate::model::{
    AttrChange, DirPage, Inode, Kind, NameRef, NodeSpec, RenameMode, XattrWrite, ROOT_INO,
};

/// How long `statfs` waits for fresh node capacities before it answers
/// with the last known ones (a hung node must not hang `df`).
const STATFS_WAIT: Duration = Duration::from_millis(100);

/// Statistics for `df`.
#[derive(Debug, Clone, Copy)]
pub struct FsStats {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub files: u64,
}

pub(crate) struct Namespace<'a>(pub Env<'a>);

impl Namespace<'_> {
    /// Attributes, including uncommitted size/times of a file open for writing.
    pub fn getattr(&self, ino: u64) -> Result<Inode> {
        let inode = self.0.ctx.committed_inode(ino)?;
        Ok(self.with_open_attrs(inode))
    }

    fn with_open_attrs(&self, mut inode: Inode) -> Inode {
        if let Some(f) = self.0.files.file(inode.ino) {
            // The committed chunk lengths are read only for a file with
            // uncommitted changes, and before its state lock is taken.
            let committed = match f.is_modified() && inode.kind == Kind::File {
                true => self.0.ctx.meta.chunk_lengths(inode.ino).ok(),
                false => None,
            };
            f.overlay_attrs(&mut inode, committed.as_deref());
        }
        inode
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Inode> {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong(String::from_utf8_lossy(name).into()));
        }
        let inode = self
            .0
            .ctx
            .meta
            .lookup(parent, name)?
            .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(name).into()))?;
        Ok(self.with_open_attrs(inode))
    }

    /// Create a directory, file, symlink or special file. Applies setgid
    /// directory inheritance.
    pub fn make_node(&self, parent: u64, name: &[u8], spec: &NodeSpec) -> Result<Inode> {
        let template = self.template_in(parent, name, spec)?;
        self.0.ctx.meta.create(parent, name, &template)
    }

    /// The inode `spec` becomes as `name` in directory `parent` (name
    /// rules checked, setgid inheritance applied).
    pub fn template_in(&self, parent: u64, name: &[u8], spec: &NodeSpec) -> Result<Inode> {
        validate_name(name)?;
        let dir = self.0.ctx.committed_inode(parent)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotADirectory(format!("inode {parent}")));
        }
        Ok(spec.template_in(&dir))
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let inode = self.0.ctx.committed_inode(ino)?;
        inode
            .target
            .ok_or_else(|| Error::InvalidArgument("not a symbolic link".into()))
    }

    pub fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<Inode> {
        validate_name(new_name)?;
        let inode = self.0.ctx.meta.link(ino, new_parent, new_name)?;
        Ok(self.with_open_attrs(inode))
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        let gone = self.0.ctx.meta.unlink(parent, name)?;
        self.after_unlink(gone.ino, gone.nlink)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        if name == b"." {
            return Err(Error::InvalidArgument("cannot remove '.'".into()));
        }
        self.0.ctx.meta.rmdir(parent, name).map(|_| ())
    }

    pub fn rename(&self, from: NameRef, to: NameRef, mode: RenameMode) -> Result<()> {
        validate_name(to.name)?;
        if let Some(lost) = self.0.ctx.meta.rename(from, to, mode)? {
            self.after_unlink(lost.ino, lost.nlink)?;
        }
        Ok(())
    }

    /// An inode lost a name: free it unless names or open handles remain.
    pub fn after_unlink(&self, ino: u64, nlink: u32) -> Result<()> {
        if nlink > 0 {
            return Ok(());
        }
        match self.0.files.open_or_claim(ino) {
            Some(f) => f.mark_unlinked(),
            None => {
                let purged = self.0.ctx.meta.purge(ino);
                self.0.files.purged(ino);
                purged?;
                self.0.ctx.wake.collector.notify();
            }
        }
        Ok(())
    }

    /// chmod/chown/utimens/truncate. `size` truncates or extends.
    pub fn setattr(&self, ino: u64, change: &AttrChange, size: Option<u64>) -> Result<Inode> {
        if let Some(size) = size {
            let inode = self.0.ctx.committed_inode(ino)?;
            if inode.kind == Kind::Dir {
                return Err(Error::IsADirectory(format!("inode {ino}")));
            }
            if inode.kind != Kind::File {
                return Err(Error::InvalidArgument("truncate of a special file".into()));
            }
            self.truncate(ino, size)?;
        }
        let attrs_changed = change.mode.is_some()
            || change.uid.is_some()
            || change.gid.is_some()
            || change.atime.is_some()
            || change.mtime.is_some();
        if attrs_changed {
            // An explicit mtime of an open file lands between its commits,
            // never under one (which would write the older time back).
            let open = change
                .mtime
                .and_then(|t| self.0.files.file(ino).map(|f| (f, t)));
            let _no_commits = open.as_ref().map(|(f, t)| {
                let guard = f.lock_commits();
                f.set_mtime(*t);
                guard
            });
            self.0.ctx.meta.set_attrs(ino, change)?;
        }
        self.getattr(ino)
    }

    /// Truncate or extend a file to `size`, committing at once unless the file
    /// is open (then the change commits at flush/release with the writes).
    pub fn truncate(&self, ino: u64, size: u64) -> Result<()> {
        let env = &self.0;
        let inode = env.ctx.committed_inode(ino)?;
        let f = env.files.attach(&inode)?;
        let result = f.truncate(env, size);
        let result = match result {
            Ok(()) if env.files.users(&f) == 1 => f.commit(env),
            other => other,
        };
        env.files.detach(&f, env.ctx);
        result
    }

    /// Grow a file to at least `size` bytes, never shrinking it (fallocate):
    /// the size is compared under the open file's write lock, so a
    /// concurrent extending write keeps its bytes. Commits at once unless
    /// the file is open elsewhere (then with its writes).
    pub fn grow(&self, ino: u64, size: u64) -> Result<()> {
        let env = &self.0;
        let inode = env.ctx.committed_inode(ino)?;
        let f = env.files.attach(&inode)?;
        let result = match f.grow(size, env.ctx.chunk_size) {
            true if env.files.users(&f) == 1 => f.commit(env),
            _ => Ok(()),
        };
        env.files.detach(&f, env.ctx);
        result
    }

    /// Zero `offset..end` of a file (fallocate PUNCH_HOLE, ZERO_RANGE; see
    /// `OpenFile::zero_range`), growing it to `end` when `extend`. Commits
    /// at once unless the file is open elsewhere (then with its writes).
    pub fn zero_range(&self, ino: u64, offset: u64, end: u64, extend: bool) -> Result<()> {
        let env = &self.0;
        let inode = env.ctx.committed_inode(ino)?;
        let f = env.files.attach(&inode)?;
        let result = match f.zero_range(env, offset, end, extend) {
            Ok(true) if env.files.users(&f) == 1 => f.commit(env),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        env.files.detach(&f, env.ctx);
        result
    }

    pub fn list_dir(&self, ino: u64, page: DirPage) -> Result<Vec<(Vec<u8>, Inode)>> {
        let dir = self.0.ctx.committed_inode(ino)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotADirectory(format!("inode {ino}")));
        }
        self.0.ctx.meta.list_dir(ino, page)
    }

    pub fn parent_of(&self, ino: u64) -> Result<u64> {
        if ino == ROOT_INO {
            return Ok(ROOT_INO);
        }
        Ok(self
            .0
            .ctx
            .meta
            .parent_of(ino)?
            .map(|(p, _)| p)
            .unwrap_or(ROOT_INO))
    }

    /// A stored extended attribute (the placement one is the facade's).
    pub fn get_xattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        self.0
            .ctx
            .meta
            .get_xattr(ino, name)?
            .ok_or_else(|| Error::NoAttribute(String::from_utf8_lossy(name).into()))
    }

    pub fn set_xattr(&self, ino: u64, name: &[u8], value: &[u8], mode: XattrWrite) -> Result<()> {
        if name == PLACEMENT_XATTR {
            return Err(Error::PermissionDenied(
                "user.minigcs.placement is read-only".into(),
            ));
        }
        if name.is_empty() || name.len() > 255 {
            return Err(Error::InvalidArgument(
                "xattr name must be 1-255 bytes".into(),
            ));
        }
        if value.len() > 64 * 1024 {
            return Err(Error::TooLarge("xattr value over 64 KiB".into()));
        }
        self.0.ctx.meta.set_xattr(ino, name, value, mode)
    }

    pub fn list_xattrs(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        self.0.ctx.committed_inode(ino)?;
        self.0.ctx.meta.list_xattrs(ino)
    }

    pub fn remove_xattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        if name == PLACEMENT_XATTR {
            return Err(Error::PermissionDenied(
                "user.minigcs.placement is read-only".into(),
            ));
        }
        self.0.ctx.meta.remove_xattr(ino, name)
    }

    /// Capacity of the distinct filesystems under the nodes, scaled by
    /// k/(k+m). Measured now, but `statfs` waits at most `STATFS_WAIT`: a
    /// node slower than that counts with what it reported last.
    pub fn fs_stats(&self) -> Result<FsStats> {
        let ctx = self.0.ctx;
        let mut seen = HashSet::new();
        let (mut total, mut free) = (0u64, 0u64);
        for c in ctx.store.capacities(STATFS_WAIT).into_iter().flatten() {
            if c.filesystem.is_none_or(|fs| seen.insert(fs)) {
                total += c.total_bytes;
                free += c.free_bytes;
            }
        }
        let (k, m) = (ctx.store.k() as u64, ctx.store.m() as u64);
        Ok(FsStats {
            total_bytes: total / (k + m) * k,
            free_bytes: free / (k + m) * k,
            files: ctx.meta.inode_count()?,
        })
    }
}
