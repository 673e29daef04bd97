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
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::convert::{
    allocate_mode, fail, if_exists, mknod_kind, open_flags, rename_mode, seek_whence, time_or_now,
    to_attr, to_nanos,
};
use super::dirs::{fill_readdir, fill_readdirplus, DirHandles};
use super::page_cache::PageCache;
use super::reply::{self, answer, answer_on_inode};
use super::{xattr, TTL};
use crate::error::{Error, Result};
use crate::model::{AttrChange, Inode, Kind, NameRef, NodeSpec, Owner};
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

/// The owner of what a request creates: its caller.
fn caller(req: &Request) -> Owner {
    Owner::new(req.uid(), req.gid())
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

    /// Run a service call, recording its latency and the bytes it moved
    /// (`bytes` of its result) as operation `metric`.
    fn timed_io<T>(
        &self,
        metric: &str,
        bytes: impl FnOnce(&T) -> u64,
        call: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let start = Instant::now();
        let r = call();
        let moved = r.as_ref().map_or(0, bytes);
        self.record(metric, start, moved, r.as_ref().err());
        r
    }

    /// Run a service call that moves no data, recording its latency.
    fn timed<T>(&self, metric: &str, call: impl FnOnce() -> Result<T>) -> Result<T> {
        self.timed_io(metric, |_| 0, call)
    }

    /// Create `spec` as `name` in `parent` (not opened). Directories and
    /// files are timed (`fuse_mkdir`, `fuse_create`).
    fn make(&self, parent: INodeNo, name: &OsStr, spec: &NodeSpec) -> Result<Inode> {
        let make = || self.service.make_node(parent.0, name.as_bytes(), spec);
        match spec.kind {
            Kind::Dir => self.timed("fuse_mkdir", make),
            Kind::File => self.timed("fuse_create", make),
            _ => make(),
        }
    }

    /// Answer a flush, fsync or release: run `commit` (timed as `fuse_<op>`
    /// when `timed`), keep the page-cache bookkeeping, reply.
    fn commit_reply(
        &self,
        op: &str,
        timed: bool,
        ino: INodeNo,
        commit: impl FnOnce() -> Result<()>,
        reply: ReplyEmpty,
    ) {
        let r = match timed {
            true => self.timed(&format!("fuse_{op}"), commit),
            false => commit(),
        };
        self.page_cache.after_commit(&self.service, ino.0, &r);
        reply::empty(op, r, reply);
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
        let r = self.service.lookup(parent.0, name.as_bytes());
        reply::entry("lookup", r, reply);
    }

    fn forget(&self, _req: &Request, _ino: INodeNo, _nlookup: u64) {}

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self.service.getattr(ino.0);
        answer_on_inode("getattr", r, reply, |reply, inode| {
            reply.attr(&TTL, &to_attr(&inode))
        });
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
        reply::attr("setattr", self.service.setattr(ino.0, &change, size), reply);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self.service.readlink(ino.0);
        answer("readlink", r, reply, |reply, target| reply.data(&target));
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
        let spec = NodeSpec::special(kind, mode & 0o7777, rdev, caller(req));
        reply::entry("mknod", self.make(parent, name, &spec), reply);
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
        let spec = NodeSpec::dir(mode & 0o7777, caller(req));
        reply::entry("mkdir", self.make(parent, name, &spec), reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let spec = NodeSpec::symlink(target.as_os_str().as_bytes(), caller(req));
        reply::entry("symlink", self.make(parent, link_name, &spec), reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.timed("fuse_unlink", || {
            self.service.unlink(parent.0, name.as_bytes())
        });
        reply::empty("unlink", r, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.service.rmdir(parent.0, name.as_bytes());
        reply::empty("rmdir", r, reply);
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
        let from = NameRef::new(parent.0, name.as_bytes());
        let to = NameRef::new(newparent.0, newname.as_bytes());
        let r = self.timed("fuse_rename", || self.service.rename(from, to, mode));
        reply::empty("rename", r, reply);
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
        reply::entry("link", r, reply);
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
        answer_on_inode("open", r, reply, |reply, (fh, inode)| {
            let keep = self.page_cache.keep_on_open(&inode);
            reply.opened(FileHandle(fh), reply::open_flags(keep));
        });
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
        let read = || self.service.read(fh.0, offset, size as usize);
        let r = self.timed_io("fuse_read", |data| data.len() as u64, read);
        answer("read", r, reply, |reply, data| reply.data(&data));
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
        let write = || self.service.write(fh.0, offset, data);
        let r = self.timed_io("fuse_write", |&n| n as u64, write);
        answer("write", r, reply, |reply, n| reply.written(n as u32));
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.commit_reply("flush", true, ino, || self.service.flush(fh.0), reply);
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
        self.commit_reply("release", false, ino, || self.service.release(fh.0), reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.commit_reply("fsync", true, ino, || self.service.fsync(fh.0), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = self.dirs.open(&self.service, ino.0);
        answer("opendir", r, reply, |reply, fh| {
            reply.opened(FileHandle(fh), FopenFlags::empty())
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let r = self.dirs.entries(&self.service, ino.0, fh.0, offset);
        answer("readdir", r, reply, |mut reply, entries| {
            fill_readdir(&mut reply, &entries, offset);
            reply.ok();
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let r = self.dirs.entries(&self.service, ino.0, fh.0, offset);
        answer("readdirplus", r, reply, |mut reply, entries| {
            fill_readdirplus(&mut reply, &self.service, ino.0, &entries, offset);
            reply.ok();
        });
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
        reply::empty("fsyncdir", self.service.sync_metadata(), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        answer("statfs", self.service.fs_stats(), reply, |reply, s| {
            let blocks = s.total_bytes / STATFS_BSIZE;
            let bfree = (s.free_bytes / STATFS_BSIZE).min(blocks);
            // Inodes are rows in the metadata database: report plenty.
            let ffree = (u32::MAX as u64).saturating_sub(s.files);
            let bsize = STATFS_BSIZE as u32;
            let files = s.files + ffree;
            reply.statfs(blocks, bfree, bfree, files, ffree, bsize, 255, bsize);
        });
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
        let r = self.service.get_xattr(ino.0, name.as_bytes());
        answer("getxattr", r, reply, |reply, value| {
            xattr::reply_value(reply, size, &value)
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        answer(
            "listxattr",
            self.service.list_xattrs(ino.0),
            reply,
            |reply, names| xattr::reply_value(reply, size, &xattr::name_list(&names)),
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.service.remove_xattr_posix(ino.0, name.as_bytes());
        reply::empty("removexattr", r, reply);
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
        let (name, owner) = (name.as_bytes(), caller(req));
        let (open, if_exists) = (open_flags(OpenFlags(flags)), if_exists(flags));
        let r = self.timed("fuse_create", || {
            let service = &self.service;
            service.create_or_open(parent.0, name, mode & 0o7777, owner, open, if_exists)
        });
        answer("create", r, reply, |reply, (inode, fh)| {
            let keep = self.page_cache.keep_on_open(&inode);
            let attr = to_attr(&inode);
            let flags = reply::open_flags(keep);
            reply.created(&TTL, &attr, Generation(0), FileHandle(fh), flags);
        });
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
        reply::empty("fallocate", r.map(|_| ()), reply);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let (Some(what), Ok(offset)) = (seek_whence(whence), u64::try_from(offset)) else {
            return reply.error(Errno::EINVAL);
        };
        match self.service.seek(fh.0, offset, what) {
            Ok(Some(at)) => reply.offset(at as i64),
            Ok(None) => reply.error(Errno::ENXIO),
            Err(e) => reply.error(fail("lseek", &e)),
        }
    }
}
