//! Open files: per-inode write state shared by every handle on that inode.
//! Writes land in chunk-sized dirty buffers (taken from the memory budget);
//! a buffer whose chunk is complete is encoded and stored in the background
//! while the writer goes on; flush/fsync/release wait for those uploads and
//! commit the new chunk list in one metadata transaction. Random writes touch
//! only their chunks (read-modify-write); truncation drops or trims chunks.

use crossbeam_channel::{unbounded, Sender};
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::budget::Permit;
use super::{Handle, Service};
use crate::chunk::{ChunkStore, WrittenChunk};
use crate::error::{Error, Result};
use crate::meta::{now_nanos, FileCommit, Inode, Kind};

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

/// The result slot of one background chunk upload.
pub struct Upload {
    result: Mutex<Option<std::result::Result<WrittenChunk, String>>>,
    done: Condvar,
    no_space: Mutex<bool>,
}

impl Upload {
    pub fn wait(&self) -> Result<WrittenChunk> {
        let mut r = self.result.lock();
        while r.is_none() {
            self.done.wait(&mut r);
        }
        match r.as_ref().unwrap() {
            Ok(w) => Ok(w.clone()),
            Err(e) if *self.no_space.lock() => Err(Error::NoSpace(e.clone())),
            Err(e) => Err(Error::Unavailable(e.clone())),
        }
    }
}

/// A small pool of threads that encode and store chunks.
pub struct Uploader {
    jobs: Sender<Box<dyn FnOnce() + Send>>,
}

impl Uploader {
    pub fn new(threads: usize) -> Uploader {
        let (tx, rx) = unbounded::<Box<dyn FnOnce() + Send>>();
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("upload-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .expect("spawn upload thread");
        }
        Uploader { jobs: tx }
    }

    /// Encode and store `data`; the permit is held until the bytes are stored.
    pub fn submit(
        &self,
        store: Arc<ChunkStore>,
        data: Vec<u8>,
        permit: Option<Permit>,
    ) -> Arc<Upload> {
        let slot = Arc::new(Upload {
            result: Mutex::new(None),
            done: Condvar::new(),
            no_space: Mutex::new(false),
        });
        let s = slot.clone();
        let job = Box::new(move || {
            let r = store.write_chunk(data);
            drop(permit);
            if let Err(e) = &r {
                *s.no_space.lock() = e.is_no_space();
            }
            *s.result.lock() = Some(r.map_err(|e| e.to_string()));
            s.done.notify_all();
        });
        if let Err(e) = self.jobs.send(job) {
            (e.0)();
        }
        slot
    }
}

struct Dirty {
    buf: Vec<u8>,
    _permit: Option<Permit>,
}

/// Where the current content of one chunk index is, for an open file.
enum Source {
    Dirty,
    Pending(Arc<Upload>),
    Staged(WrittenChunk),
    Committed,
    Hole,
}

#[derive(Default)]
struct FileState {
    size: u64,
    mtime: i64,
    ctime: i64,
    dirty: BTreeMap<u64, Dirty>,
    pending: BTreeMap<u64, Arc<Upload>>,
    staged: BTreeMap<u64, WrittenChunk>,
    /// Indexes whose committed chunk is removed without replacement.
    holes: std::collections::BTreeSet<u64>,
    /// Committed chunks at or after this index no longer belong to the file.
    drop_from: Option<u64>,
    modified: bool,
    unlinked: bool,
    /// Commits that failed and dropped buffered data; every handle open at
    /// the time hears of it once, at its next flush/fsync/close.
    failed_commits: u64,
}

pub struct OpenFile {
    pub ino: u64,
    /// Handles (and in-flight truncations) using this state. Changed only
    /// under the service's `open_files` lock, which is never held while
    /// waiting for `state` (writers holding `state` may take `open_files`).
    opens: AtomicUsize,
    state: Mutex<FileState>,
}

impl OpenFile {
    pub fn overlay_attrs(&self, inode: &mut Inode) {
        let st = self.state.lock();
        if st.modified {
            inode.size = st.size;
            inode.mtime = st.mtime;
            inode.ctime = st.ctime.max(inode.ctime);
        }
    }

    pub fn mark_unlinked(&self) {
        self.state.lock().unlinked = true;
    }

    pub fn set_mtime(&self, t: i64) {
        let mut st = self.state.lock();
        st.mtime = t;
    }
}

impl Service {
    fn open_file_state(&self, inode: &Inode) -> Arc<OpenFile> {
        let mut files = self.open_files.lock();
        let f = files.entry(inode.ino).or_insert_with(|| {
            Arc::new(OpenFile {
                ino: inode.ino,
                opens: AtomicUsize::new(0),
                state: Mutex::new(FileState {
                    size: inode.size,
                    mtime: inode.mtime,
                    ctime: inode.ctime,
                    ..Default::default()
                }),
            })
        });
        f.opens.fetch_add(1, Ordering::SeqCst);
        f.clone()
    }

    /// Forget buffered, uncommitted changes of an open file after another
    /// writer (an API PUT) replaced its content: later writes and reads of the
    /// handles start from `inode`'s version.
    pub(super) fn rebase_open_file(&self, f: &OpenFile, inode: &Inode) {
        let mut st = f.state.lock();
        st.dirty.clear();
        for (_, up) in std::mem::take(&mut st.pending) {
            if let Ok(w) = up.wait() {
                self.store.delete_chunk(&w.layout, &w.placement);
            }
        }
        for (_, w) in std::mem::take(&mut st.staged) {
            self.store.delete_chunk(&w.layout, &w.placement);
        }
        st.holes.clear();
        st.drop_from = None;
        st.modified = false;
        st.size = inode.size;
        st.mtime = inode.mtime;
        st.ctime = inode.ctime;
    }

    /// Open a file; returns the handle.
    pub fn open_file(&self, ino: u64, flags: OpenFlags) -> Result<u64> {
        let inode = self.getattr_committed(ino)?;
        match inode.kind {
            Kind::File => {}
            Kind::Dir => return Err(Error::IsADirectory(format!("inode {ino}"))),
            _ => return Err(Error::InvalidArgument("not a regular file".into())),
        }
        let f = self.open_file_state(&inode);
        let seen_failures = f.state.lock().failed_commits;
        let fh = self
            .next_handle
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.handles.lock().insert(
            fh,
            Handle {
                ino,
                flags,
                last_read_end: u64::MAX,
                seen_failures,
            },
        );
        Ok(fh)
    }

    /// Create and open a new file.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
        flags: OpenFlags,
    ) -> Result<(Inode, u64)> {
        let inode = self.make_node(parent, name, Kind::File, mode, uid, gid, 0, None)?;
        let fh = self.open_file(inode.ino, flags)?;
        Ok((inode, fh))
    }

    fn file_of(&self, ino: u64) -> Result<Arc<OpenFile>> {
        self.open_files
            .lock()
            .get(&ino)
            .cloned()
            .ok_or_else(|| Error::InvalidArgument(format!("inode {ino} is not open")))
    }

    fn source(&self, st: &FileState, idx: u64) -> Source {
        if st.dirty.contains_key(&idx) {
            Source::Dirty
        } else if let Some(p) = st.pending.get(&idx) {
            Source::Pending(p.clone())
        } else if let Some(s) = st.staged.get(&idx) {
            Source::Staged(s.clone())
        } else if st.holes.contains(&idx) || st.drop_from.is_some_and(|d| idx >= d) {
            Source::Hole
        } else {
            Source::Committed
        }
    }

    /// The current bytes of chunk `idx` (its data length, not padded).
    fn chunk_content(&self, f: &OpenFile, st: &FileState, idx: u64) -> Result<Vec<u8>> {
        match self.source(st, idx) {
            Source::Dirty => Ok(st.dirty[&idx].buf.clone()),
            Source::Pending(up) => {
                let w = up.wait()?;
                self.store
                    .read(&w.layout, &w.placement, 0, w.layout.data_len as usize)
            }
            Source::Staged(w) => {
                self.store
                    .read(&w.layout, &w.placement, 0, w.layout.data_len as usize)
            }
            Source::Hole => Ok(Vec::new()),
            Source::Committed => match self.meta.chunk_at(f.ino, idx)? {
                Some(rec) => self.read_committed_piece(&rec, 0, rec.layout.data_len as usize, true),
                None => Ok(Vec::new()),
            },
        }
    }

    /// Reserve memory for a new dirty buffer, spilling buffers to the nodes
    /// (as uncommitted chunks) when the budget is spent.
    fn reserve(&self, f: &OpenFile, st: &mut FileState, keep: u64) -> Option<Permit> {
        if let Some(p) = self.budget.try_acquire(self.chunk_size) {
            return Some(p);
        }
        let own: Vec<u64> = st.dirty.keys().copied().filter(|&i| i != keep).collect();
        for idx in own {
            self.start_upload(st, idx);
        }
        Some(self.acquire_permit(Some(f.ino)))
    }

    /// Wait for a chunk's worth of budget, spilling the buffers of files
    /// whose writers are idle (not `exclude`) while waiting.
    pub(super) fn acquire_permit(&self, exclude: Option<u64>) -> Permit {
        loop {
            if let Some(p) = self
                .budget
                .acquire_timeout(self.chunk_size, Duration::from_millis(50))
            {
                return p;
            }
            let others: Vec<Arc<OpenFile>> = self
                .open_files
                .lock()
                .values()
                .filter(|o| Some(o.ino) != exclude)
                .cloned()
                .collect();
            for o in others {
                if let Some(mut ost) = o.state.try_lock() {
                    let idxs: Vec<u64> = ost.dirty.keys().copied().collect();
                    for idx in idxs {
                        self.start_upload(&mut ost, idx);
                    }
                }
            }
        }
    }

    fn start_upload(&self, st: &mut FileState, idx: u64) {
        let Some(d) = st.dirty.remove(&idx) else {
            return;
        };
        if let Some(old) = st.staged.remove(&idx) {
            self.store.delete_chunk(&old.layout, &old.placement);
        }
        if d.buf.is_empty() {
            // Nothing to store: the chunk becomes a hole.
            st.holes.insert(idx);
            return;
        }
        st.holes.remove(&idx);
        let up = self.uploads.submit(self.store.clone(), d.buf, d._permit);
        st.pending.insert(idx, up);
    }

    /// Write bytes at `offset` (or at the end for O_APPEND handles). Returns
    /// bytes written.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        let h = self.handle(fh)?;
        if !h.flags.write {
            return Err(Error::PermissionDenied(
                "handle is not open for writing".into(),
            ));
        }
        let f = self.file_of(h.ino)?;
        let mut st = f.state.lock();
        let offset = if h.flags.append { st.size } else { offset };
        let cs = self.chunk_size;
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let idx = pos / cs;
            let in_off = (pos % cs) as usize;
            let n = ((cs - in_off as u64).min(end - pos)) as usize;
            if !st.dirty.contains_key(&idx) {
                let covers_all = in_off == 0 && n as u64 == cs;
                let base = if covers_all {
                    Vec::new()
                } else {
                    self.chunk_content(&f, &st, idx)?
                };
                let permit = self.reserve(&f, &mut st, idx);
                if let Some(p) = st.pending.remove(&idx) {
                    // Superseded before commit: free its shards once stored.
                    if let Ok(w) = p.wait() {
                        self.store.delete_chunk(&w.layout, &w.placement);
                    }
                }
                st.dirty.insert(
                    idx,
                    Dirty {
                        buf: base,
                        _permit: permit,
                    },
                );
            }
            let d = st.dirty.get_mut(&idx).unwrap();
            let src = (pos - offset) as usize;
            if d.buf.capacity() < in_off + n && n >= 64 * 1024 {
                d.buf.reserve_exact(cs as usize - d.buf.len());
            }
            if d.buf.len() == in_off {
                // Appending (the common case): no zero-fill first.
                d.buf.extend_from_slice(&data[src..src + n]);
            } else {
                if d.buf.len() < in_off + n {
                    d.buf.resize(in_off + n, 0);
                }
                d.buf[in_off..in_off + n].copy_from_slice(&data[src..src + n]);
            }
            if (in_off + n) as u64 == cs {
                self.start_upload(&mut st, idx);
            }
            pos += n as u64;
        }
        st.size = st.size.max(end);
        let now = now_nanos();
        st.mtime = now;
        st.ctime = now;
        st.modified = true;
        Ok(data.len())
    }

    /// Read up to `len` bytes at `offset`.
    pub fn read(self: &Arc<Self>, fh: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        let h = self.handle(fh)?;
        let f = self.file_of(h.ino)?;
        let sequential = h.last_read_end == offset;
        let cs = self.chunk_size;
        let st = f.state.lock();
        let size = if st.modified {
            st.size
        } else {
            self.getattr_committed(h.ino)?.size
        };
        let end = (offset + len as u64).min(size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        let mut last_idx = None;
        while pos < end {
            let idx = pos / cs;
            let in_off = pos % cs;
            let n = ((cs - in_off).min(end - pos)) as usize;
            let piece = match self.source(&st, idx) {
                Source::Dirty => {
                    let b = &st.dirty[&idx].buf;
                    let s = (in_off as usize).min(b.len());
                    let e = (in_off as usize + n).min(b.len());
                    b[s..e].to_vec()
                }
                Source::Pending(up) => {
                    let w = up.wait()?;
                    self.store.read(&w.layout, &w.placement, in_off, n)?
                }
                Source::Staged(w) => self.store.read(&w.layout, &w.placement, in_off, n)?,
                Source::Hole => Vec::new(),
                Source::Committed => match self.meta.chunk_at(h.ino, idx)? {
                    Some(rec) => {
                        let whole = in_off == 0 || sequential || rec.layout.data_len <= 1024 * 1024;
                        self.read_committed_piece(&rec, in_off, n, whole)?
                    }
                    None => Vec::new(),
                },
            };
            if out.is_empty() && piece.len() == n && pos + n as u64 == end {
                out = piece; // the whole answer: no copy
            } else {
                out.extend_from_slice(&piece);
                out.resize(out.len() + (n - piece.len()), 0);
            }
            pos += n as u64;
            last_idx = Some(idx);
        }
        drop(st);
        if let Some(hh) = self.handles.lock().get_mut(&fh) {
            hh.last_read_end = offset + out.len() as u64;
        }
        if let Some(idx) = last_idx {
            if sequential || offset.is_multiple_of(cs) {
                // Keep two chunks ahead of a sequential reader.
                for ahead in idx + 1..=idx + 2 {
                    if ahead * cs < size {
                        self.prefetch(h.ino, ahead);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Truncate or extend a file to `size`, committing at once unless the file
    /// is open (then the change commits at flush/release with the writes).
    pub fn truncate(&self, ino: u64, size: u64) -> Result<()> {
        let inode = self.getattr_committed(ino)?;
        let f = self.open_file_state(&inode);
        let result = (|| {
            let mut st = f.state.lock();
            let cs = self.chunk_size;
            if size < st.size {
                let keep_chunks = size.div_ceil(cs);
                let cut: Vec<u64> = st
                    .dirty
                    .keys()
                    .chain(st.pending.keys())
                    .chain(st.staged.keys())
                    .copied()
                    .filter(|&i| i >= keep_chunks)
                    .collect();
                for idx in cut {
                    st.dirty.remove(&idx);
                    if let Some(p) = st.pending.remove(&idx) {
                        if let Ok(w) = p.wait() {
                            self.store.delete_chunk(&w.layout, &w.placement);
                        }
                    }
                    if let Some(w) = st.staged.remove(&idx) {
                        self.store.delete_chunk(&w.layout, &w.placement);
                    }
                }
                st.drop_from = Some(st.drop_from.map_or(keep_chunks, |d| d.min(keep_chunks)));
                let in_off = (size % cs) as usize;
                if in_off > 0 {
                    let idx = size / cs;
                    if !st.dirty.contains_key(&idx) {
                        let mut base = self.chunk_content(&f, &st, idx)?;
                        if base.len() > in_off {
                            base.truncate(in_off);
                            let permit = self.reserve(&f, &mut st, idx);
                            if let Some(p) = st.pending.remove(&idx) {
                                if let Ok(w) = p.wait() {
                                    self.store.delete_chunk(&w.layout, &w.placement);
                                }
                            }
                            if let Some(w) = st.staged.remove(&idx) {
                                self.store.delete_chunk(&w.layout, &w.placement);
                            }
                            // The chunk index is below drop_from only if kept.
                            st.dirty.insert(
                                idx,
                                Dirty {
                                    buf: base,
                                    _permit: permit,
                                },
                            );
                        }
                    } else if let Some(d) = st.dirty.get_mut(&idx) {
                        d.buf.truncate(in_off);
                    }
                }
            }
            st.size = size;
            let now = now_nanos();
            st.mtime = now;
            st.ctime = now;
            st.modified = true;
            Ok(())
        })();
        let only_us = f.opens.load(Ordering::SeqCst) == 1;
        if result.is_ok() && only_us {
            let r = self.commit(&f);
            self.close_state(&f);
            return r;
        }
        self.close_state(&f);
        result
    }

    /// Make everything written so far durable and visible (flush/fsync).
    pub fn flush(&self, fh: u64) -> Result<()> {
        let h = self.handle(fh)?;
        let f = self.file_of(h.ino)?;
        let r = self.commit(&f);
        self.report_lost_writes(fh, &f, r)
    }

    /// Like Linux's writeback errors: when a commit failed (through any
    /// handle), each handle open then gets the error once, so no close
    /// reports success for data that was dropped.
    fn report_lost_writes(&self, fh: u64, f: &OpenFile, r: Result<()>) -> Result<()> {
        let failures = f.state.lock().failed_commits;
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

    /// fsync: like flush, and also makes metadata-only changes (create,
    /// chmod, rename) durable when there was no content to commit.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        let h = self.handle(fh)?;
        let f = self.file_of(h.ino)?;
        let r = if !f.state.lock().modified {
            self.sync_metadata()
        } else {
            self.commit(&f)
        };
        self.report_lost_writes(fh, &f, r)
    }

    pub(super) fn commit(&self, f: &OpenFile) -> Result<()> {
        let mut st = f.state.lock();
        if !st.modified {
            return Ok(());
        }
        let idxs: Vec<u64> = st.dirty.keys().copied().collect();
        for idx in idxs {
            self.start_upload(&mut st, idx);
        }
        let removed: Vec<u64> = std::mem::take(&mut st.holes).into_iter().collect();
        let pending: Vec<(u64, Arc<Upload>)> =
            std::mem::take(&mut st.pending).into_iter().collect();
        let mut first_err = None;
        for (idx, up) in pending {
            match up.wait() {
                Ok(w) => {
                    st.staged.insert(idx, w);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            // The data could not be made durable: report it, and fall back to
            // the last committed version rather than commit a partial file.
            for (_, w) in std::mem::take(&mut st.staged) {
                self.store.delete_chunk(&w.layout, &w.placement);
            }
            st.dirty.clear();
            st.drop_from = None;
            st.modified = false;
            if let Ok(inode) = self.getattr_committed(f.ino) {
                st.size = inode.size;
                st.mtime = inode.mtime;
            }
            st.failed_commits += 1;
            return Err(e);
        }
        // The whole-file SHA-256 is computed when first asked for (info,
        // HTTP ETag): hashing inline would cost the writer a core.
        let checksum = None;
        let staged: Vec<(u64, WrittenChunk)> =
            st.staged.iter().map(|(i, w)| (*i, w.clone())).collect();
        let commit = FileCommit {
            ino: f.ino,
            chunks: staged,
            removed,
            drop_from: st.drop_from,
            size: st.size,
            mtime: st.mtime,
            ctime: st.ctime,
            checksum,
            content_type: None,
        };
        match self.meta.commit_file(&commit) {
            Ok(_) => {
                st.staged.clear();
                st.holes.clear();
                st.drop_from = None;
                st.modified = false;
                drop(st);
                self.wake_workers();
                Ok(())
            }
            Err(Error::NotFound(_)) => {
                // The inode is gone (deleted through the API): drop the data.
                for (_, w) in std::mem::take(&mut st.staged) {
                    self.store.delete_chunk(&w.layout, &w.placement);
                }
                st.modified = false;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Drop one open of a file's state; the last one frees it (and purges an
    /// unlinked inode).
    fn close_state(&self, f: &Arc<OpenFile>) {
        let last = {
            let mut files = self.open_files.lock();
            let last = f.opens.fetch_sub(1, Ordering::SeqCst) == 1;
            if last {
                files.remove(&f.ino);
            }
            last
        };
        if last {
            let mut st = f.state.lock();
            let unlinked = st.unlinked;
            for (_, w) in std::mem::take(&mut st.staged) {
                self.store.delete_chunk(&w.layout, &w.placement);
            }
            // Uploads never committed (an unlinked file): free them once stored.
            let pending = std::mem::take(&mut st.pending);
            drop(st);
            for up in pending.into_values() {
                if let Ok(w) = up.wait() {
                    self.store.delete_chunk(&w.layout, &w.placement);
                }
            }
            if unlinked {
                if let Err(e) = self.meta.purge(f.ino) {
                    log::error!("purge of unlinked inode {}: {e}", f.ino);
                }
                self.wake_workers();
            }
        }
    }

    /// Close a handle: commit pending writes, report whether they are durable.
    pub fn release(&self, fh: u64) -> Result<()> {
        let Some(h) = self.handles.lock().get(&fh).copied() else {
            return Ok(());
        };
        let Ok(f) = self.file_of(h.ino) else {
            self.handles.lock().remove(&fh);
            return Ok(());
        };
        let unlinked = f.state.lock().unlinked;
        let r = if unlinked && f.opens.load(Ordering::SeqCst) == 1 {
            Ok(())
        } else {
            self.commit(&f)
        };
        let r = self.report_lost_writes(fh, &f, r);
        self.handles.lock().remove(&fh);
        self.close_state(&f);
        r
    }
}
