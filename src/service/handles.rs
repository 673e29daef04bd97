//! The handle table: file handles (fh → handle: inode, open flags, where the
//! last read ended, which failed commits it has heard of) and open files
//! (inode → the one `OpenFile` every handle of that inode shares, with its
//! number of users). It decides when an open file is created and when the
//! last user lets it go (buffers dropped, an inode unlinked while open
//! purged), and it is the only code that takes more than one of its locks.
//!
//! An inode that lost its last name is either open (the last close purges
//! it) or claimed for purging here; no handle attaches to a claimed inode,
//! so none is ever left on a purged one (an open racing the purge fails
//! with NotFound, which the mount answers as a stale inode).
//!
//! Lock order, for the whole file service (written here only):
//!
//! 1. an `OpenFile`'s commit lock — one commit (or setattr) of a file
//!    at a time; held across upload waits and the metadata transaction;
//! 2. an `OpenFile`'s write lock — one write or truncation of a file at a
//!    time; held across its base reads and budget waits;
//! 3. an `OpenFile`'s state lock — short, never across I/O or any wait;
//! 4. this table's `files` map, then its `purging` set, then its `handles`
//!    map — short, and nothing else is taken while any is held.
//!
//! Leaves, taken last and never held while taking another lock: pins, the
//! chunk cache, the budget, and an upload's slot (which a waiter holds while
//! the upload finishes, so it is never taken under a state lock). Spilling
//! another file's buffers only ever `try_lock`s that file's write lock.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::context::Context;
use super::upload::UploadPipeline;
use super::writer::OpenFile;
use super::Env;
use crate::error::{Error, Result};
use crate::meta::{Inode, Kind};

/// What a handle was opened for.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenFlags {
    pub read: bool,
    pub write: bool,
    pub append: bool,
}

impl OpenFlags {
    pub fn from_libc(flags: i32) -> OpenFlags {
        let acc = flags & libc::O_ACCMODE;
        OpenFlags {
            read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            append: flags & libc::O_APPEND != 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Handle {
    pub ino: u64,
    pub flags: OpenFlags,
    /// Where recent reads through this handle ended (sequential detection).
    pub read_streams: ReadStreams,
    /// `failed_commits` of the file as this handle last reported it.
    seen_failures: u64,
}

struct OpenEntry {
    file: Arc<OpenFile>,
    /// Handles and in-flight truncations using the file.
    users: usize,
}

/// How many interleaved sequential readers one handle tells apart (threads
/// reading their own parts of a file through one shared descriptor, or the
/// kernel's read-ahead answering out of order).
const READ_STREAMS: usize = 8;

/// Where the recent sequential streams of reads through one handle ended: a
/// read that starts where one of them ended continues it. One remembered end
/// would call every read of interleaved readers random and turn read-ahead
/// off exactly when several readers want it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadStreams {
    ends: [u64; READ_STREAMS],
    oldest: usize,
}

impl Default for ReadStreams {
    fn default() -> ReadStreams {
        ReadStreams {
            ends: [u64::MAX; READ_STREAMS],
            oldest: 0,
        }
    }
}

impl ReadStreams {
    /// Whether a read at `offset` continues one of the streams.
    pub fn continues(&self, offset: u64) -> bool {
        self.ends.contains(&offset)
    }

    /// A read of `start..end` happened: it moves the stream it continues
    /// forward, or replaces the oldest stream.
    pub fn record(&mut self, start: u64, end: u64) {
        match self.ends.iter().position(|&e| e == start) {
            Some(i) => self.ends[i] = end,
            None => {
                self.ends[self.oldest] = end;
                self.oldest = (self.oldest + 1) % READ_STREAMS;
            }
        }
    }
}

pub(crate) struct HandleTable {
    files: Mutex<HashMap<u64, OpenEntry>>,
    /// Inodes with no name and no user, being purged: nothing attaches.
    purging: Mutex<HashSet<u64>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
}

impl HandleTable {
    pub fn new() -> HandleTable {
        HandleTable {
            files: Mutex::new(HashMap::new()),
            purging: Mutex::new(HashSet::new()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        }
    }

    /// One more user of the open file of `inode` (created from its committed
    /// attributes when it is not open yet). NotFound when the inode lost
    /// its last name and is being purged.
    pub fn attach(&self, inode: &Inode) -> Result<Arc<OpenFile>> {
        let mut files = self.files.lock();
        if self.purging.lock().contains(&inode.ino) {
            return Err(Error::NotFound(format!("inode {} was removed", inode.ino)));
        }
        let entry = files.entry(inode.ino).or_insert_with(|| OpenEntry {
            file: Arc::new(OpenFile::new(inode)),
            users: 0,
        });
        entry.users += 1;
        Ok(entry.file.clone())
    }

    /// An inode lost its last name: its open file if it has one (the last
    /// close purges it), else None and the inode is claimed for purging
    /// until `purged`.
    pub fn open_or_claim(&self, ino: u64) -> Option<Arc<OpenFile>> {
        let files = self.files.lock();
        match files.get(&ino) {
            Some(entry) => Some(entry.file.clone()),
            None => {
                self.purging.lock().insert(ino);
                None
            }
        }
    }

    /// The purge of a claimed inode is over (done or failed).
    pub fn purged(&self, ino: u64) {
        self.purging.lock().remove(&ino);
    }

    /// One user less. The last one frees the file's uncommitted buffers and
    /// purges its inode if it lost its last name while open.
    pub fn detach(&self, f: &Arc<OpenFile>, ctx: &Context) {
        let last = Self::release_user(&mut self.files.lock(), f);
        if last {
            Self::last_close(f, ctx);
        }
    }

    /// Open a handle on `inode` (a regular file; the caller checked).
    pub fn open(&self, inode: &Inode, flags: OpenFlags) -> Result<u64> {
        let f = self.attach(inode)?;
        let seen_failures = f.failed_commits();
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = Handle {
            ino: inode.ino,
            flags,
            read_streams: ReadStreams::default(),
            seen_failures,
        };
        self.handles.lock().insert(fh, handle);
        Ok(fh)
    }

    /// Close handle `fh` of `f`: the handle goes, and so does the file's
    /// state if this was its last user.
    pub fn close(&self, fh: u64, f: &Arc<OpenFile>, ctx: &Context) {
        let last = {
            let mut files = self.files.lock();
            self.handles.lock().remove(&fh);
            Self::release_user(&mut files, f)
        };
        if last {
            Self::last_close(f, ctx);
        }
    }

    /// Forget a handle whose file is no longer open.
    pub fn forget(&self, fh: u64) {
        self.handles.lock().remove(&fh);
    }

    fn release_user(files: &mut HashMap<u64, OpenEntry>, f: &Arc<OpenFile>) -> bool {
        let Some(entry) = files.get_mut(&f.ino) else {
            return false;
        };
        debug_assert!(Arc::ptr_eq(&entry.file, f));
        entry.users -= 1;
        if entry.users > 0 {
            return false;
        }
        files.remove(&f.ino);
        true
    }

    fn last_close(f: &OpenFile, ctx: &Context) {
        if f.discard() {
            if let Err(e) = ctx.meta.purge(f.ino) {
                crate::log_limited!(
                    log::Level::Error,
                    "purge",
                    "purge of unlinked inode {}: {e}",
                    f.ino
                );
            }
            ctx.wake.collector.notify();
        }
    }

    pub fn get(&self, fh: u64) -> Option<Handle> {
        self.handles.lock().get(&fh).copied()
    }

    pub fn handle(&self, fh: u64) -> Result<Handle> {
        self.get(fh)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown file handle {fh}")))
    }

    /// The open file of inode `ino`, if any handle has it open.
    pub fn file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        self.files.lock().get(&ino).map(|e| e.file.clone())
    }

    /// A handle and its open file.
    pub fn file_of(&self, fh: u64) -> Result<(Handle, Arc<OpenFile>)> {
        let h = self.handle(fh)?;
        let f = self
            .file(h.ino)
            .ok_or_else(|| Error::InvalidArgument(format!("inode {} is not open", h.ino)))?;
        Ok((h, f))
    }

    /// Users of `f` (handles and in-flight truncations).
    pub fn users(&self, f: &OpenFile) -> usize {
        self.files.lock().get(&f.ino).map_or(0, |e| e.users)
    }

    pub fn record_read(&self, fh: u64, start: u64, end: u64) {
        if let Some(h) = self.handles.lock().get_mut(&fh) {
            h.read_streams.record(start, end);
        }
    }

    /// Like Linux's writeback errors: when a commit failed (through any
    /// handle), each handle open then gets the error once, so no close
    /// reports success for data that was dropped.
    pub fn report_lost_writes(&self, fh: u64, f: &OpenFile, r: Result<()>) -> Result<()> {
        let failures = f.failed_commits();
        let mut handles = self.handles.lock();
        let Some(h) = handles.get_mut(&fh) else {
            return r;
        };
        if h.seen_failures == failures {
            return r;
        }
        h.seen_failures = failures;
        r.and(Err(Error::Unavailable(
            "data written to this file could not be stored; it was dropped".into(),
        )))
    }

    /// Every open file.
    pub fn open_files(&self) -> Vec<Arc<OpenFile>> {
        self.files.lock().values().map(|e| e.file.clone()).collect()
    }

    pub fn open_file_count(&self) -> usize {
        self.files.lock().len()
    }

    /// Start uploading the buffers of every file (but `except`) whose writer
    /// is idle, so their budget comes back once the bytes are stored.
    pub fn spill_idle(&self, except: Option<u64>, uploads: &UploadPipeline) {
        for f in self.open_files() {
            if Some(f.ino) != except {
                f.spill_if_idle(uploads);
            }
        }
    }
}

/// Operations by file handle: open, read, write, flush, fsync, release.
pub(crate) struct Handles<'a>(pub Env<'a>);

impl Handles<'_> {
    /// Open a file; returns the handle.
    pub fn open(&self, ino: u64, flags: OpenFlags) -> Result<u64> {
        let inode = self.0.ctx.committed_inode(ino)?;
        match inode.kind {
            Kind::File => self.0.files.open(&inode, flags),
            Kind::Dir => Err(Error::IsADirectory(format!("inode {ino}"))),
            _ => Err(Error::InvalidArgument("not a regular file".into())),
        }
    }

    /// Write bytes at `offset` (at the end for O_APPEND handles).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        let (h, f) = self.0.files.file_of(fh)?;
        if !h.flags.write {
            return Err(Error::PermissionDenied(
                "handle is not open for writing".into(),
            ));
        }
        f.write(&self.0, offset, data, h.flags.append)
    }

    /// Read up to `len` bytes at `offset`; sequential readers get read-ahead.
    pub fn read(&self, fh: u64, offset: u64, len: usize) -> Result<Bytes> {
        let Env { ctx, files, .. } = self.0;
        let (h, f) = files.file_of(fh)?;
        let sequential = h.read_streams.continues(offset);
        let (out, size) = f.read(ctx, offset, len, sequential)?;
        files.record_read(fh, offset, offset + out.len() as u64);
        self.0
            .prefetch
            .after_read(ctx, h.ino, offset, out.len(), size, sequential);
        Ok(out)
    }

    /// Make everything written so far durable and visible (flush/fsync).
    pub fn flush(&self, fh: u64) -> Result<()> {
        let (_, f) = self.0.files.file_of(fh)?;
        let r = f.commit(&self.0);
        self.0.files.report_lost_writes(fh, &f, r)
    }

    /// Like flush; with nothing to commit, makes metadata-only changes
    /// (create, chmod, rename) durable.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        let (_, f) = self.0.files.file_of(fh)?;
        let r = match f.is_modified() {
            false => self.0.ctx.meta.sync(),
            true => f.commit(&self.0),
        };
        self.0.files.report_lost_writes(fh, &f, r)
    }

    /// Close a handle: commit pending writes (not for the last handle of an
    /// unlinked file), report whether they are durable.
    pub fn release(&self, fh: u64) -> Result<()> {
        let files = self.0.files;
        let Some(h) = files.get(fh) else {
            return Ok(());
        };
        let Some(f) = files.file(h.ino) else {
            files.forget(fh);
            return Ok(());
        };
        let r = match f.is_unlinked() && files.users(&f) == 1 {
            true => Ok(()),
            false => f.commit(&self.0),
        };
        let r = files.report_lost_writes(fh, &f, r);
        files.close(fh, &f, self.0.ctx);
        r
    }

    /// Commit every open file (shutdown).
    pub fn commit_all(&self) {
        for f in self.0.files.open_files() {
            if let Err(e) = f.commit(&self.0) {
                log::error!("could not commit inode {} at shutdown: {e}", f.ino);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadStreams;

    #[test]
    fn interleaved_readers_of_one_handle_each_stay_sequential() {
        let mut streams = ReadStreams::default();
        assert!(!streams.continues(0), "a fresh handle has no stream");
        // Four readers, each its own quarter, reading 1 MiB at a time in turn.
        let quarter = 256u64 << 20;
        for step in 0..4u64 {
            for reader in 0..4u64 {
                let start = reader * quarter + (step << 20);
                if step > 0 {
                    assert!(streams.continues(start), "reader {reader} step {step}");
                }
                streams.record(start, start + (1 << 20));
            }
        }
        assert!(
            !streams.continues(12345),
            "a random offset is not sequential"
        );
    }

    #[test]
    fn random_reads_replace_the_oldest_stream() {
        let mut streams = ReadStreams::default();
        streams.record(0, 10);
        for i in 0..super::READ_STREAMS as u64 {
            streams.record(1000 * (i + 1), 1000 * (i + 1) + 1);
        }
        assert!(!streams.continues(10), "the oldest stream was forgotten");
        assert!(streams.continues(1000 * super::READ_STREAMS as u64 + 1));
    }
}
