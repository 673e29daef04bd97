//! The FUSE adapter: it translates kernel requests into file-service calls,
//! file-service results into replies (attributes, entries, directory pages)
//! and `Error`s into errno. It owns the parts that only exist because of the
//! kernel: attribute conversion and TTLs, directory-handle snapshots and their
//! offsets, the page-cache policy (FOPEN_KEEP_CACHE while a file is unchanged),
//! the worker pool that keeps slow requests off fuser's single session thread,
//! and kernel cache invalidation when the HTTP side changes something. No rule
//! about files, versions or durability lives here: those are the service's.
//! Mounting, stale-mount clearing and unmounting live in `mount`.

mod mount;

pub use mount::{mount, MountHandle};

use crossbeam_channel::{bounded, Sender};
use fuser::consts::{
    FOPEN_KEEP_CACHE, FUSE_ASYNC_DIO, FUSE_CACHE_SYMLINKS, FUSE_DO_READDIRPLUS,
    FUSE_PARALLEL_DIROPS, FUSE_READDIRPLUS_AUTO,
};
use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, Notifier, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow,
};
use libc::c_int;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::model::{now_nanos, AttrChange, Inode, Kind, RenameMode};
use crate::service::{Change, ChangeObserver, OpenFlags, Service};

/// How long the kernel may cache attributes and entries. The service tells
/// the kernel about changes made elsewhere, so this only bounds staleness if
/// a notification is lost.
const TTL: Duration = Duration::from_secs(1);
/// Largest read/write request asked from the kernel.
const MAX_IO: u32 = 1024 * 1024;
/// Reported `st_blksize`: tools size their buffers from it.
const BLKSIZE: u32 = 64 * 1024;
/// Block size reported by statfs.
const STATFS_BSIZE: u64 = 4096;
/// Directory entries fetched from the service per query when snapshotting.
const DIR_PAGE: usize = 1024;
/// Bound on the keep-cache map (it is only an optimisation).
const MAX_CACHE_KEYS: usize = 100_000;

// ------------------------------------------------------------ conversion

/// Error → errno. The only place errors become numbers for the kernel.
fn errno(e: &Error) -> c_int {
    if e.is_no_space() {
        return libc::ENOSPC;
    }
    match e {
        Error::NotFound(_) => libc::ENOENT,
        Error::AlreadyExists(_) => libc::EEXIST,
        Error::NotADirectory(_) => libc::ENOTDIR,
        Error::IsADirectory(_) => libc::EISDIR,
        Error::NotEmpty(_) => libc::ENOTEMPTY,
        Error::NameTooLong(_) => libc::ENAMETOOLONG,
        Error::InvalidArgument(_) | Error::InvalidKey(_) => libc::EINVAL,
        Error::PermissionDenied(_) => libc::EPERM,
        Error::NoAttribute(_) => libc::ENODATA,
        Error::TooLarge(_) => libc::EFBIG,
        Error::NoSpace(_) => libc::ENOSPC,
        Error::Unavailable(_)
        | Error::Corrupt(_)
        | Error::Io(_)
        | Error::Db(_)
        | Error::Other(_)
        | Error::UnknownNode(_)
        | Error::Config(_) => libc::EIO,
    }
}

/// Map an error for `op`, logging the ones the user cannot fix (EIO class).
fn fail(op: &str, e: &Error) -> c_int {
    let code = errno(e);
    if code == libc::EIO {
        log::warn!("fuse {op}: {e}");
    } else {
        log::debug!("fuse {op}: {e}");
    }
    code
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
    }
}

fn to_system_time(nanos: i64) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

fn to_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    }
}

fn time_or_now(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::SpecificTime(t) => to_nanos(t),
        TimeOrNow::Now => now_nanos(),
    }
}

/// Inode → the kernel's attributes.
fn to_attr(i: &Inode) -> FileAttr {
    FileAttr {
        ino: i.ino,
        size: i.size,
        blocks: i.size.div_ceil(512),
        atime: to_system_time(i.atime),
        mtime: to_system_time(i.mtime),
        ctime: to_system_time(i.ctime),
        crtime: to_system_time(i.crtime),
        kind: file_type(i.kind),
        perm: (i.mode & 0o7777) as u16,
        nlink: i.nlink,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The kind of a node created by mknod, from the file-type bits of `mode`.
fn mknod_kind(mode: u32) -> Option<Kind> {
    match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Some(Kind::File),
        libc::S_IFIFO => Some(Kind::Fifo),
        libc::S_IFCHR => Some(Kind::CharDevice),
        libc::S_IFBLK => Some(Kind::BlockDevice),
        libc::S_IFSOCK => Some(Kind::Socket),
        _ => None,
    }
}

fn rename_mode(flags: u32) -> Option<RenameMode> {
    match flags {
        0 => Some(RenameMode::Replace),
        f if f == libc::RENAME_NOREPLACE => Some(RenameMode::NoReplace),
        f if f == libc::RENAME_EXCHANGE => Some(RenameMode::Exchange),
        _ => None,
    }
}

const ACL_ACCESS_XATTR: &[u8] = b"system.posix_acl_access";

/// The permission bits a POSIX ACL (Linux xattr format: u32 version 2, then
/// {u16 tag, u16 perm, u32 id} entries) implies, and whether it is minimal
/// (owner, group and other only). None when malformed.
fn acl_mode_bits(value: &[u8]) -> Option<(u32, bool)> {
    const USER_OBJ: u16 = 0x01;
    const USER: u16 = 0x02;
    const GROUP_OBJ: u16 = 0x04;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    if value.len() < 4
        || !(value.len() - 4).is_multiple_of(8)
        || u32::from_le_bytes(value[..4].try_into().ok()?) != 2
    {
        return None;
    }
    let (mut user, mut group, mut other, mut mask) = (None, None, None, None);
    let mut minimal = true;
    for e in value[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u32::from(u16::from_le_bytes([e[2], e[3]]) & 0o7);
        match tag {
            USER_OBJ => user = Some(perm),
            GROUP_OBJ => group = Some(perm),
            OTHER => other = Some(perm),
            MASK => mask = Some(perm),
            USER | GROUP => minimal = false,
            _ => return None,
        }
    }
    let group_bits = mask.or(group)?;
    if mask.is_some() {
        minimal = false;
    }
    Some(((user? << 6) | (group_bits << 3) | other?, minimal))
}

/// Answer an xattr read of `value` for a caller buffer of `size` bytes
/// (0 = "how big is it?").
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(libc::ERANGE);
    } else {
        reply.data(value);
    }
}

// ------------------------------------------------------------ state

/// One entry of a directory-handle snapshot.
struct DirEntry {
    name: Vec<u8>,
    ino: u64,
    kind: FileType,
}

/// An open directory: the listing taken at opendir (or at a rewind); readdir
/// offsets are positions in it, so concurrent changes never skip or repeat
/// entries within one pass.
struct DirHandle {
    ino: u64,
    entries: Arc<Vec<DirEntry>>,
    /// True until the first readdir: an offset-0 readdir after that is a
    /// rewind and takes a new snapshot.
    fresh: bool,
}

/// What the kernel's page cache of a file was filled from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CacheKey {
    version: u64,
    size: u64,
    mtime: i64,
}

impl CacheKey {
    fn of(i: &Inode) -> CacheKey {
        CacheKey {
            version: i.version,
            size: i.size,
            mtime: i.mtime,
        }
    }
}

/// State shared by the session thread, the worker pool and the invalidator.
struct Shared {
    service: Arc<Service>,
    dirs: Mutex<HashMap<u64, DirHandle>>,
    next_dir: AtomicU64,
    /// Per inode, the version the kernel's page cache holds (as far as we
    /// know). An open that sees the same key keeps the cache.
    cached: Mutex<HashMap<u64, CacheKey>>,
}

impl Shared {
    fn record(&self, op: &str, start: Instant, bytes: u64, err: Option<&Error>) {
        let msg = err.map(|e| e.to_string());
        self.service.metrics().record(
            op,
            "",
            bytes,
            start.elapsed(),
            err.is_none(),
            msg.as_deref(),
        );
    }

    /// Whether an open may keep the page cache; remembers the current version.
    fn keep_cache_on_open(&self, inode: &Inode) -> bool {
        let key = CacheKey::of(inode);
        let mut cached = self.cached.lock();
        if cached.len() >= MAX_CACHE_KEYS && !cached.contains_key(&inode.ino) {
            cached.clear();
        }
        cached.insert(inode.ino, key) == Some(key)
    }

    /// After our own successful commit the page cache holds what was
    /// committed (writes went through it): remember the new version.
    fn cache_matches_committed(&self, ino: u64) {
        match self.service.getattr(ino) {
            Ok(inode) => {
                let mut cached = self.cached.lock();
                if cached.contains_key(&ino) {
                    cached.insert(ino, CacheKey::of(&inode));
                }
            }
            Err(_) => self.forget_cache(ino),
        }
    }

    /// Keep-cache bookkeeping after a flush, fsync or release.
    fn after_commit(&self, ino: u64, r: &Result<()>) {
        match r {
            Ok(()) => self.cache_matches_committed(ino),
            Err(_) => self.forget_cache(ino),
        }
    }

    fn forget_cache(&self, ino: u64) {
        self.cached.lock().remove(&ino);
    }

    /// Snapshot of a directory for a handle, with "." and "..".
    fn snapshot_dir(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.service.list_dir(ino, after.as_deref(), DIR_PAGE)?;
            let full = page.len() == DIR_PAGE;
            after = page.last().map(|(n, _)| n.clone());
            entries.extend(page.into_iter().map(|(name, inode)| DirEntry {
                name,
                ino: inode.ino,
                kind: file_type(inode.kind),
            }));
            if !full {
                break;
            }
        }
        let parent = self.service.parent_of(ino)?;
        let mut out = Vec::with_capacity(entries.len() + 2);
        out.push(DirEntry {
            name: b".".to_vec(),
            ino,
            kind: FileType::Directory,
        });
        out.push(DirEntry {
            name: b"..".to_vec(),
            ino: parent,
            kind: FileType::Directory,
        });
        out.extend(entries);
        Ok(out)
    }

    /// The entries of directory handle `fh`, re-snapshotted on a rewind.
    /// The handle lock is not held while listing or while the caller fills
    /// its reply.
    fn dir_entries(&self, ino: u64, fh: u64, offset: i64) -> Result<Arc<Vec<DirEntry>>> {
        {
            let mut dirs = self.dirs.lock();
            let d = dirs
                .get_mut(&fh)
                .ok_or_else(|| Error::InvalidArgument(format!("unknown directory handle {fh}")))?;
            if d.ino != ino {
                return Err(Error::InvalidArgument(format!(
                    "directory handle {fh} is not for inode {ino}"
                )));
            }
            let rewind = offset == 0 && !d.fresh;
            d.fresh = false;
            if !rewind {
                return Ok(d.entries.clone());
            }
        }
        let entries = Arc::new(self.snapshot_dir(ino)?);
        if let Some(d) = self.dirs.lock().get_mut(&fh) {
            d.entries = entries.clone();
        }
        Ok(entries)
    }

    /// setxattr("system.posix_acl_access"). Without FUSE_POSIX_ACL the
    /// kernel passes ACLs through raw where a local file system would
    /// update the mode (`cp -a` and `setfacl` set an ACL instead of calling
    /// chmod). Do what ext4 does: the ACL's owner/group(mask)/other bits
    /// become the mode; a minimal ACL (one the mode expresses fully) is not
    /// kept; an extended one is kept as an attribute.
    fn set_access_acl(&self, ino: u64, value: &[u8], create: bool, replace: bool) -> Result<()> {
        let (bits, minimal) = acl_mode_bits(value)
            .ok_or_else(|| Error::InvalidArgument("malformed POSIX ACL".into()))?;
        let stored = self.service.get_xattr(ino, ACL_ACCESS_XATTR).is_ok();
        if create && stored {
            return Err(Error::AlreadyExists("system.posix_acl_access".into()));
        }
        if replace && !stored {
            return Err(Error::NoAttribute("system.posix_acl_access".into()));
        }
        let inode = self.service.getattr(ino)?;
        let change = AttrChange {
            mode: Some((inode.mode & !0o777) | bits),
            ..Default::default()
        };
        self.service.setattr(ino, &change, None)?;
        if minimal {
            match self.service.remove_xattr(ino, ACL_ACCESS_XATTR) {
                Ok(()) | Err(Error::NoAttribute(_)) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            self.service
                .set_xattr(ino, ACL_ACCESS_XATTR, value, false, false)
        }
    }

    /// O_CREAT without O_EXCL on a name that exists: open what is there.
    fn open_existing(&self, parent: u64, name: &[u8], flags: i32) -> Result<(Inode, u64)> {
        let inode = self.service.lookup(parent, name)?;
        let fh = self
            .service
            .open_file(inode.ino, OpenFlags::from_libc(flags))?;
        if flags & libc::O_TRUNC != 0 && inode.size > 0 {
            if let Err(e) = self
                .service
                .setattr(inode.ino, &AttrChange::default(), Some(0))
            {
                let _ = self.service.release(fh);
                return Err(e);
            }
        }
        let inode = self.service.getattr(inode.ino)?;
        Ok((inode, fh))
    }
}

// ------------------------------------------------------------ worker pool

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads that serve requests (I/O, commits, metadata
/// transactions) so fuser's single session thread only reads and dispatches.
struct Pool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        // A bounded queue: when every worker is busy and the queue is full,
        // the session thread waits, which holds the kernel back.
        let (tx, rx) = bounded::<Job>(threads * 4);
        let threads = (0..threads)
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("fuse-worker-{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    })
                    .expect("spawn FUSE worker thread")
            })
            .collect();
        Pool {
            tx: Some(tx),
            threads,
        }
    }

    fn run(&self, job: impl FnOnce() + Send + 'static) {
        match &self.tx {
            Some(tx) => {
                if let Err(e) = tx.send(Box::new(job)) {
                    (e.0)();
                }
            }
            None => job(),
        }
    }
}

impl Drop for Pool {
    /// Let queued requests finish (their commits matter), then stop.
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------ filesystem

/// The `fuser::Filesystem` of one mount. Every request that reaches the
/// service runs on the pool: even a lookup can wait behind a metadata commit
/// (fsync), and the session thread must keep reading requests meanwhile.
pub(crate) struct MiniFs {
    shared: Arc<Shared>,
    pool: Pool,
}

fn reply_entry(op: &str, r: Result<Inode>, reply: ReplyEntry) {
    match r {
        Ok(inode) => reply.entry(&TTL, &to_attr(&inode), 0),
        Err(e) => reply.error(fail(op, &e)),
    }
}

fn reply_empty(op: &str, r: Result<()>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(fail(op, &e)),
    }
}

/// A name from the kernel, owned so it can travel to a worker.
fn owned(name: &OsStr) -> Vec<u8> {
    name.as_bytes().to_vec()
}

impl MiniFs {
    pub(crate) fn new(service: Arc<Service>) -> MiniFs {
        let threads = service.config().mount.threads;
        MiniFs {
            shared: Arc::new(Shared {
                service,
                dirs: Mutex::new(HashMap::new()),
                next_dir: AtomicU64::new(1),
                cached: Mutex::new(HashMap::new()),
            }),
            pool: Pool::new(threads),
        }
    }

    /// Run `job` on the worker pool.
    fn spawn(&self, job: impl FnOnce(&Shared) + Send + 'static) {
        let shared = self.shared.clone();
        self.pool.run(move || job(&shared));
    }

    /// Create a node of `kind` (not opened) owned by the caller.
    fn make(
        &self,
        req: &Request<'_>,
        op: &'static str,
        parent: u64,
        name: &OsStr,
        node: NewNode,
        reply: ReplyEntry,
    ) {
        let (uid, gid) = (req.uid(), req.gid());
        let name = owned(name);
        self.spawn(move |sh| {
            let start = Instant::now();
            let r = sh.service.make_node(
                parent,
                &name,
                node.kind,
                node.mode & 0o7777,
                uid,
                gid,
                node.rdev,
                node.target.as_deref(),
            );
            match node.kind {
                Kind::Dir => sh.record("fuse_mkdir", start, 0, r.as_ref().err()),
                Kind::File => sh.record("fuse_create", start, 0, r.as_ref().err()),
                _ => {}
            }
            reply_entry(op, r, reply);
        });
    }
}

/// What mknod, mkdir and symlink create.
struct NewNode {
    kind: Kind,
    mode: u32,
    rdev: u32,
    target: Option<Vec<u8>>,
}

impl Filesystem for MiniFs {
    fn init(
        &mut self,
        _req: &Request<'_>,
        config: &mut KernelConfig,
    ) -> std::result::Result<(), c_int> {
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
            FUSE_DO_READDIRPLUS,
            FUSE_READDIRPLUS_AUTO,
            FUSE_PARALLEL_DIROPS,
            FUSE_CACHE_SYMLINKS,
            FUSE_ASYNC_DIO,
        ] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let name = owned(name);
        self.spawn(move |sh| reply_entry("lookup", sh.service.lookup(parent, &name), reply));
    }

    fn forget(&mut self, _req: &Request<'_>, _ino: u64, _nlookup: u64) {}

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        self.spawn(move |sh| match sh.service.getattr(ino) {
            Ok(inode) => reply.attr(&TTL, &to_attr(&inode)),
            Err(e) => reply.error(fail("getattr", &e)),
        });
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
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
        self.spawn(move |sh| match sh.service.setattr(ino, &change, size) {
            Ok(inode) => reply.attr(&TTL, &to_attr(&inode)),
            Err(e) => reply.error(fail("setattr", &e)),
        });
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        self.spawn(move |sh| match sh.service.readlink(ino) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(fail("readlink", &e)),
        });
    }

    fn mknod(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(kind) = mknod_kind(mode) else {
            reply.error(libc::EINVAL);
            return;
        };
        let rdev = if matches!(kind, Kind::CharDevice | Kind::BlockDevice) {
            rdev
        } else {
            0
        };
        let node = NewNode {
            kind,
            mode,
            rdev,
            target: None,
        };
        self.make(req, "mknod", parent, name, node, reply);
    }

    fn mkdir(
        &mut self,
        req: &Request<'_>,
        parent: u64,
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
        self.make(req, "mkdir", parent, name, node, reply);
    }

    fn symlink(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let node = NewNode {
            kind: Kind::Symlink,
            mode: 0o777,
            rdev: 0,
            target: Some(target.as_os_str().as_bytes().to_vec()),
        };
        self.make(req, "symlink", parent, link_name, node, reply);
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let name = owned(name);
        self.spawn(move |sh| {
            let start = Instant::now();
            let r = sh.service.unlink(parent, &name);
            sh.record("fuse_unlink", start, 0, r.as_ref().err());
            reply_empty("unlink", r, reply);
        });
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let name = owned(name);
        self.spawn(move |sh| reply_empty("rmdir", sh.service.rmdir(parent, &name), reply));
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let Some(mode) = rename_mode(flags) else {
            // RENAME_WHITEOUT and unknown flags.
            reply.error(libc::EINVAL);
            return;
        };
        let (name, newname) = (owned(name), owned(newname));
        self.spawn(move |sh| {
            let start = Instant::now();
            let r = sh.service.rename(parent, &name, newparent, &newname, mode);
            sh.record("fuse_rename", start, 0, r.as_ref().err());
            reply_empty("rename", r, reply);
        });
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = owned(newname);
        self.spawn(move |sh| reply_entry("link", sh.service.link(ino, newparent, &newname), reply));
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        self.spawn(move |sh| {
            let service = &sh.service;
            let r = service
                .open_file(ino, OpenFlags::from_libc(flags))
                .and_then(|fh| match service.getattr(ino) {
                    Ok(inode) => Ok((fh, inode)),
                    Err(e) => {
                        let _ = service.release(fh);
                        Err(e)
                    }
                });
            match r {
                Ok((fh, inode)) => {
                    let keep = sh.keep_cache_on_open(&inode);
                    reply.opened(fh, if keep { FOPEN_KEEP_CACHE } else { 0 });
                }
                Err(e) => reply.error(fail("open", &e)),
            }
        });
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        if offset < 0 {
            reply.error(libc::EINVAL);
            return;
        }
        self.spawn(move |sh| {
            let start = Instant::now();
            match sh.service.read(fh, offset as u64, size as usize) {
                Ok(data) => {
                    sh.record("fuse_read", start, data.len() as u64, None);
                    reply.data(&data);
                }
                Err(e) => {
                    sh.record("fuse_read", start, 0, Some(&e));
                    reply.error(fail("read", &e));
                }
            }
        });
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        if offset < 0 {
            reply.error(libc::EINVAL);
            return;
        }
        // The request buffer is reused for the next request: copy.
        let data = data.to_vec();
        self.spawn(move |sh| {
            let start = Instant::now();
            let r = sh.service.write(fh, offset as u64, &data);
            sh.record(
                "fuse_write",
                start,
                *r.as_ref().unwrap_or(&0) as u64,
                r.as_ref().err(),
            );
            match r {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(fail("write", &e)),
            }
        });
    }

    fn flush(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |sh| {
            let start = Instant::now();
            let r = sh.service.flush(fh);
            sh.record("fuse_flush", start, 0, r.as_ref().err());
            sh.after_commit(ino, &r);
            reply_empty("flush", r, reply);
        });
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |sh| {
            let r = sh.service.release(fh);
            sh.after_commit(ino, &r);
            reply_empty("release", r, reply);
        });
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, fh: u64, _datasync: bool, reply: ReplyEmpty) {
        self.spawn(move |sh| {
            let start = Instant::now();
            let r = sh.service.fsync(fh);
            sh.record("fuse_fsync", start, 0, r.as_ref().err());
            sh.after_commit(ino, &r);
            reply_empty("fsync", r, reply);
        });
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        self.spawn(move |sh| match sh.snapshot_dir(ino) {
            Ok(entries) => {
                let fh = sh.next_dir.fetch_add(1, Ordering::Relaxed);
                sh.dirs.lock().insert(
                    fh,
                    DirHandle {
                        ino,
                        entries: Arc::new(entries),
                        fresh: true,
                    },
                );
                reply.opened(fh, 0);
            }
            Err(e) => reply.error(fail("opendir", &e)),
        });
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let start = offset.max(0) as usize;
        self.spawn(move |sh| {
            let entries = match sh.dir_entries(ino, fh, offset) {
                Ok(entries) => entries,
                Err(e) => return reply.error(fail("readdir", &e)),
            };
            for (i, e) in entries.iter().enumerate().skip(start) {
                if reply.add(e.ino, (i + 1) as i64, e.kind, OsStr::from_bytes(&e.name)) {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn readdirplus(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let start = offset.max(0) as usize;
        self.spawn(move |sh| {
            let service = &sh.service;
            let entries = match sh.dir_entries(ino, fh, offset) {
                Ok(entries) => entries,
                Err(e) => return reply.error(fail("readdirplus", &e)),
            };
            for (i, e) in entries.iter().enumerate().skip(start) {
                // Fresh attributes (the snapshot may be older than writes in
                // progress); an entry gone since the snapshot is skipped.
                let inode = match service.getattr(e.ino) {
                    Ok(inode) => inode,
                    Err(_) if i < 2 => match service.getattr(ino) {
                        Ok(inode) => inode,
                        Err(_) => continue,
                    },
                    Err(_) => continue,
                };
                let name = OsStr::from_bytes(&e.name);
                if reply.add(e.ino, (i + 1) as i64, name, &TTL, &to_attr(&inode), 0) {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        self.shared.dirs.lock().remove(&fh);
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Namespace changes commit without fsync; fsync of a directory makes
        // them durable, as on a local filesystem.
        self.spawn(move |sh| reply_empty("fsyncdir", sh.service.sync_metadata(), reply));
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        self.spawn(move |sh| match sh.service.fs_stats() {
            Ok(s) => {
                let blocks = s.total_bytes / STATFS_BSIZE;
                let bfree = (s.free_bytes / STATFS_BSIZE).min(blocks);
                // Inodes are rows in the metadata database: report plenty.
                let ffree = (u32::MAX as u64).saturating_sub(s.files);
                let bsize = STATFS_BSIZE as u32;
                reply.statfs(
                    blocks,
                    bfree,
                    bfree,
                    s.files + ffree,
                    ffree,
                    bsize,
                    255,
                    bsize,
                );
            }
            Err(e) => reply.error(fail("statfs", &e)),
        });
    }

    fn setxattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let create = flags & libc::XATTR_CREATE != 0;
        let replace = flags & libc::XATTR_REPLACE != 0;
        if flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 || (create && replace) {
            reply.error(libc::EINVAL);
            return;
        }
        let (name, value) = (owned(name), value.to_vec());
        self.spawn(move |sh| {
            let r = if name == ACL_ACCESS_XATTR {
                sh.set_access_acl(ino, &value, create, replace)
            } else {
                sh.service.set_xattr(ino, &name, &value, create, replace)
            };
            match r {
                Ok(()) => reply.ok(),
                Err(Error::TooLarge(_)) => reply.error(libc::E2BIG),
                Err(e) => reply.error(fail("setxattr", &e)),
            }
        });
    }

    fn getxattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let name = owned(name);
        self.spawn(move |sh| match sh.service.get_xattr(ino, &name) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(e) => reply.error(fail("getxattr", &e)),
        });
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        self.spawn(move |sh| match sh.service.list_xattrs(ino) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names
                    .iter()
                    .filter(|n| n.as_slice() != Service::PLACEMENT_XATTR)
                {
                    buf.extend_from_slice(n);
                    buf.push(0);
                }
                reply_xattr(reply, size, &buf);
            }
            Err(e) => reply.error(fail("listxattr", &e)),
        });
    }

    fn removexattr(&mut self, _req: &Request<'_>, ino: u64, name: &OsStr, reply: ReplyEmpty) {
        let name = owned(name);
        self.spawn(move |sh| {
            reply_empty("removexattr", sh.service.remove_xattr(ino, &name), reply)
        });
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        // Mounted with default_permissions: the kernel checks mode bits.
        reply.ok();
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (uid, gid) = (req.uid(), req.gid());
        let name = owned(name);
        self.spawn(move |sh| {
            let start = Instant::now();
            let open_flags = OpenFlags::from_libc(flags);
            let r = match sh
                .service
                .create(parent, &name, mode & 0o7777, uid, gid, open_flags)
            {
                Err(Error::AlreadyExists(_)) if flags & libc::O_EXCL == 0 => {
                    sh.open_existing(parent, &name, flags)
                }
                other => other,
            };
            sh.record("fuse_create", start, 0, r.as_ref().err());
            match r {
                Ok((inode, fh)) => {
                    let keep = sh.keep_cache_on_open(&inode);
                    let flags = if keep { FOPEN_KEEP_CACHE } else { 0 };
                    reply.created(&TTL, &to_attr(&inode), 0, fh, flags);
                }
                Err(e) => reply.error(fail("create", &e)),
            }
        });
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            reply.error(libc::EOPNOTSUPP);
            return;
        }
        if offset < 0 || length <= 0 {
            reply.error(libc::EINVAL);
            return;
        }
        let Some(end) = (offset as u64).checked_add(length as u64) else {
            reply.error(libc::EFBIG);
            return;
        };
        self.spawn(move |sh| {
            let r = sh.service.getattr(ino).and_then(|inode| {
                if end > inode.size {
                    sh.service
                        .setattr(ino, &AttrChange::default(), Some(end))
                        .map(|_| ())
                } else {
                    Ok(())
                }
            });
            reply_empty("fallocate", r, reply);
        });
    }
}

// ------------------------------------------------------------ invalidation

/// Tells the kernel to drop what it cached about inodes and names that the
/// HTTP side changed. Detached when the session ends.
pub(crate) struct Invalidator {
    notifier: Mutex<Option<Notifier>>,
    /// Weak: the service holds this observer, and `Shared` holds the service.
    shared: Weak<Shared>,
}

impl Invalidator {
    fn detach(&self) {
        self.notifier.lock().take();
    }
}

impl ChangeObserver for Invalidator {
    fn changed(&self, change: &Change) {
        // Clone out so a slow kernel call never holds our lock.
        let Some(notifier) = self.notifier.lock().clone() else {
            return;
        };
        // Errors are normal here: ENOENT when the kernel never saw the inode
        // or the name, ENODEV once unmounted.
        match change {
            Change::Inode(ino) => {
                if let Some(shared) = self.shared.upgrade() {
                    shared.forget_cache(*ino);
                }
                if let Err(e) = notifier.inval_inode(*ino, 0, 0) {
                    log::debug!("invalidate inode {ino}: {e}");
                }
            }
            Change::Entry { parent, name } => {
                if let Err(e) = notifier.inval_entry(*parent, OsStr::from_bytes(name)) {
                    log::debug!(
                        "invalidate entry {parent}/{}: {e}",
                        String::from_utf8_lossy(name)
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_errno_tools_expect() {
        assert_eq!(errno(&Error::NotFound("x".into())), libc::ENOENT);
        assert_eq!(errno(&Error::NotEmpty("x".into())), libc::ENOTEMPTY);
        assert_eq!(errno(&Error::NoAttribute("x".into())), libc::ENODATA);
        assert_eq!(errno(&Error::Unavailable("x".into())), libc::EIO);
        let full = Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(errno(&full), libc::ENOSPC);
    }

    #[test]
    fn times_round_trip_with_nanoseconds_and_before_the_epoch() {
        for n in [0i64, 1, 1_700_000_000_123_456_789, -1, -1_000_000_007] {
            assert_eq!(to_nanos(to_system_time(n)), n);
        }
    }

    #[test]
    fn attributes_follow_the_inode() {
        let mut i = Inode::new(Kind::File, 0o4755, 7, 8);
        i.ino = 42;
        i.size = 513;
        let a = to_attr(&i);
        assert_eq!(
            (a.ino, a.perm, a.uid, a.gid, a.blocks, a.kind),
            (42, 0o4755, 7, 8, 2, FileType::RegularFile)
        );
    }

    #[test]
    fn acls_become_mode_bits() {
        let acl = |entries: &[(u16, u16)]| {
            let mut v = 2u32.to_le_bytes().to_vec();
            for (tag, perm) in entries {
                v.extend_from_slice(&tag.to_le_bytes());
                v.extend_from_slice(&perm.to_le_bytes());
                v.extend_from_slice(&u32::MAX.to_le_bytes());
            }
            v
        };
        assert_eq!(
            acl_mode_bits(&acl(&[(1, 7), (4, 5), (0x20, 5)])),
            Some((0o755, true))
        );
        assert_eq!(
            acl_mode_bits(&acl(&[(1, 6), (2, 6), (4, 4), (0x10, 6), (0x20, 0)])),
            Some((0o660, false))
        );
        assert_eq!(acl_mode_bits(&acl(&[(1, 7), (0x20, 5)])), None);
        assert_eq!(acl_mode_bits(b"\x02\x00"), None);
    }

    #[test]
    fn mknod_and_rename_flags() {
        assert_eq!(mknod_kind(libc::S_IFIFO | 0o644), Some(Kind::Fifo));
        assert_eq!(mknod_kind(libc::S_IFREG | 0o644), Some(Kind::File));
        assert_eq!(mknod_kind(libc::S_IFDIR | 0o755), None);
        assert_eq!(
            rename_mode(libc::RENAME_EXCHANGE),
            Some(RenameMode::Exchange)
        );
        assert_eq!(rename_mode(libc::RENAME_WHITEOUT), None);
    }
}
