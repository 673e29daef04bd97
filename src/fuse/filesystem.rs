//! The `fuser::Filesystem` of one mount: each request is decoded (kernel
//! types and flags into service arguments), handed to one service call, and
//! answered (attributes, entries, data or an errno). Requests run on the
//! session's event loops, several at once, so one slow commit does not hold
//! up a lookup. Nothing here decides what a file operation means; conversions,
//! directory handles, xattr replies and the page-cache policy live in the
//! sibling modules.

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::convert::{
    allocate_mode, fail, fail_on_inode, if_exists, mknod_kind, open_flags, rename_mode,
    time_or_now, to_attr, to_nanos,
};
use super::dirs::{fill_readdir, fill_readdirplus, DirHandles};
use super::page_cache::PageCache;
use super::{xattr, TTL};
use crate::error::{Error, Result};
use crate::model::{AttrChange, Inode, Kind, NodeSpec};
use crate::service::Service;

/// Largest read/write request asked from the kernel.
const MAX_IO: u32 = 1024 * 1024;
/// Block size reported by statfs.
const STATFS_BSIZE: u64 = 4096;

/// One mount's request handler: the service, plus the state that exists
/// only for the kernel (directory handles, the page-cache policy).
pub(super) struct MiniFs {
    service: Arc<Service>,
    dirs: DirHandles,
    page_cache: Arc<PageCache>,
}

/// What mknod, mkdir and symlink create.
struct NewNode<'a> {
    kind: Kind,
    mode: u32,
    rdev: u32,
    target: Option<&'a [u8]>,
}

fn reply_entry(op: &str, r: Result<Inode>, reply: ReplyEntry) {
    match r {
        Ok(inode) => reply.entry(&TTL, &to_attr(&inode), Generation(0)),
        Err(e) => reply.error(fail(op, &e)),
    }
}

fn reply_attr(op: &str, r: Result<Inode>, reply: ReplyAttr) {
    match r {
        Ok(inode) => reply.attr(&TTL, &to_attr(&inode)),
        Err(e) => reply.error(fail(op, &e)),
    }
}

fn reply_empty(op: &str, r: Result<()>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(fail(op, &e)),
    }
}

/// FOPEN_KEEP_CACHE when the page cache may be kept.
fn open_reply_flags(keep_cache: bool) -> FopenFlags {
    if keep_cache {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

impl MiniFs {
    pub(super) fn new(service: Arc<Service>) -> MiniFs {
        MiniFs {
            service,
            dirs: DirHandles::new(),
            page_cache: Arc::new(PageCache::default()),
        }
    }

    /// The page-cache policy, shared with the invalidator.
    pub(super) fn page_cache(&self) -> Arc<PageCache> {
        self.page_cache.clone()
    }

    fn record(&self, op: &str, start: Instant, bytes: u64, err: Option<&Error>) {
        let msg = err.map(|e| e.to_string());
        let (ok, elapsed) = (err.is_none(), start.elapsed());
        self.service
            .metrics()
            .record(op, "", bytes, elapsed, ok, msg.as_deref());
    }

    /// Create a node of `node.kind` (not opened) owned by the caller.
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        node: NewNode<'_>,
    ) -> Result<Inode> {
        let start = Instant::now();
        let spec = NodeSpec {
            kind: node.kind,
            mode: node.mode & 0o7777,
            uid: req.uid(),
            gid: req.gid(),
            rdev: node.rdev,
            target: node.target,
        };
        let r = self.service.make_node(parent.0, name.as_bytes(), &spec);
        match node.kind {
            Kind::Dir => self.record("fuse_mkdir", start, 0, r.as_ref().err()),
            Kind::File => self.record("fuse_create", start, 0, r.as_ref().err()),
            _ => {}
        }
        r
    }

    /// The end of a flush, fsync or release: its latency when timed
    /// (`fuse_<op>`), keep-cache bookkeeping, and the reply.
    fn finish_commit(
        &self,
        op: &str,
        started: Option<Instant>,
        ino: INodeNo,
        r: Result<()>,
        reply: ReplyEmpty,
    ) {
        if let Some(start) = started {
            self.record(&format!("fuse_{op}"), start, 0, r.as_ref().err());
        }
        self.page_cache.after_commit(&self.service, ino.0, &r);
        reply_empty(op, r, reply);
    }
}

impl Filesystem for MiniFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(max) = config.set_max_write(MAX_IO) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(MAX_IO) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        // Optional capabilities: take each one the kernel offers.
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_ASYNC_DIO,
        ] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(
            "lookup",
            self.service.lookup(parent.0, name.as_bytes()),
            reply,
        );
    }

    fn forget(&self, _req: &Request, _ino: INodeNo, _nlookup: u64) {}

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.service.getattr(ino.0) {
            Ok(inode) => reply.attr(&TTL, &to_attr(&inode)),
            Err(e) => reply.error(fail_on_inode("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = AttrChange {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            atime: atime.map(time_or_now),
            mtime: mtime.map(time_or_now),
            ctime: ctime.map(to_nanos),
        };
        reply_attr("setattr", self.service.setattr(ino.0, &change, size), reply);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.service.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(fail("readlink", &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(kind) = mknod_kind(mode) else {
            return reply.error(Errno::EINVAL);
        };
        let devices = matches!(kind, Kind::CharDevice | Kind::BlockDevice);
        let rdev = if devices { rdev } else { 0 };
        let node = NewNode {
            kind,
            mode,
            rdev,
            target: None,
        };
        reply_entry("mknod", self.make(req, parent, name, node), reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let node = NewNode {
            kind: Kind::Dir,
            mode,
            rdev: 0,
            target: None,
        };
        reply_entry("mkdir", self.make(req, parent, name, node), reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let node = NewNode {
            kind: Kind::Symlink,
            mode: 0o777,
            rdev: 0,
            target: Some(target.as_os_str().as_bytes()),
        };
        let r = self.make(req, parent, link_name, node);
        reply_entry("symlink", r, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let start = Instant::now();
        let r = self.service.unlink(parent.0, name.as_bytes());
        self.record("fuse_unlink", start, 0, r.as_ref().err());
        reply_empty("unlink", r, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            "rmdir",
            self.service.rmdir(parent.0, name.as_bytes()),
            reply,
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let Some(mode) = rename_mode(flags) else {
            return reply.error(Errno::EINVAL);
        };
        let start = Instant::now();
        let (name, newname) = (name.as_bytes(), newname.as_bytes());
        let r = self
            .service
            .rename(parent.0, name, newparent.0, newname, mode);
        self.record("fuse_rename", start, 0, r.as_ref().err());
        reply_empty("rename", r, reply);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = self.service.link(ino.0, newparent.0, newname.as_bytes());
        reply_entry("link", r, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let service = &self.service;
        let r = service.open_file(ino.0, open_flags(flags)).and_then(|fh| {
            service
                .getattr(ino.0)
                .map(|inode| (fh, inode))
                .inspect_err(|_| {
                    let _ = service.release(fh);
                })
        });
        match r {
            Ok((fh, inode)) => {
                let keep = self.page_cache.keep_on_open(&inode);
                reply.opened(FileHandle(fh), open_reply_flags(keep));
            }
            Err(e) => reply.error(fail_on_inode("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let start = Instant::now();
        match self.service.read(fh.0, offset, size as usize) {
            Ok(data) => {
                self.record("fuse_read", start, data.len() as u64, None);
                reply.data(&data);
            }
            Err(e) => {
                self.record("fuse_read", start, 0, Some(&e));
                reply.error(fail("read", &e));
            }
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let start = Instant::now();
        let r = self.service.write(fh.0, offset, data);
        let written = *r.as_ref().unwrap_or(&0) as u64;
        self.record("fuse_write", start, written, r.as_ref().err());
        match r {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(fail("write", &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let start = Instant::now();
        let r = self.service.flush(fh.0);
        self.finish_commit("flush", Some(start), ino, r, reply);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.service.release(fh.0);
        self.finish_commit("release", None, ino, r, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let start = Instant::now();
        let r = self.service.fsync(fh.0);
        self.finish_commit("fsync", Some(start), ino, r, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.dirs.open(&self.service, ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(fail("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.dirs.entries(&self.service, ino.0, fh.0, offset) {
            Ok(entries) => {
                fill_readdir(&mut reply, &entries, offset);
                reply.ok();
            }
            Err(e) => reply.error(fail("readdir", &e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.dirs.entries(&self.service, ino.0, fh.0, offset) {
            Ok(entries) => {
                fill_readdirplus(&mut reply, &self.service, ino.0, &entries, offset);
                reply.ok();
            }
            Err(e) => reply.error(fail("readdirplus", &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.release(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Namespace changes commit without fsync; fsync of a directory makes
        // them durable, as on a local filesystem.
        reply_empty("fsyncdir", self.service.sync_metadata(), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.service.fs_stats() {
            Ok(s) => {
                let blocks = s.total_bytes / STATFS_BSIZE;
                let bfree = (s.free_bytes / STATFS_BSIZE).min(blocks);
                // Inodes are rows in the metadata database: report plenty.
                let ffree = (u32::MAX as u64).saturating_sub(s.files);
                let bsize = STATFS_BSIZE as u32;
                let files = s.files + ffree;
                reply.statfs(blocks, bfree, bfree, files, ffree, bsize, 255, bsize);
            }
            Err(e) => reply.error(fail("statfs", &e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let Some(mode) = xattr::set_flags(flags) else {
            return reply.error(Errno::EINVAL);
        };
        let name = name.as_bytes();
        match self.service.set_xattr_posix(ino.0, name, value, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(xattr::set_error(&e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.service.get_xattr(ino.0, name.as_bytes()) {
            Ok(value) => xattr::reply_value(reply, size, &value),
            Err(e) => reply.error(fail("getxattr", &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.service.list_xattrs(ino.0) {
            Ok(names) => xattr::reply_value(reply, size, &xattr::name_list(&names)),
            Err(e) => reply.error(fail("listxattr", &e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.service.remove_xattr(ino.0, name.as_bytes());
        reply_empty("removexattr", r, reply);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions: the kernel checks mode bits.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let start = Instant::now();
        let r = self.service.create_or_open(
            parent.0,
            name.as_bytes(),
            mode & 0o7777,
            req.uid(),
            req.gid(),
            open_flags(OpenFlags(flags)),
            if_exists(flags),
        );
        self.record("fuse_create", start, 0, r.as_ref().err());
        match r {
            Ok((inode, fh)) => {
                let keep = self.page_cache.keep_on_open(&inode);
                let attr = to_attr(&inode);
                let flags = open_reply_flags(keep);
                reply.created(&TTL, &attr, Generation(0), FileHandle(fh), flags);
            }
            Err(e) => reply.error(fail("create", &e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(mode) = allocate_mode(mode) else {
            return reply.error(Errno::EOPNOTSUPP);
        };
        let r = self.service.fallocate(ino.0, offset, length, mode);
        reply_empty("fallocate", r.map(|_| ()), reply);
    }
}
