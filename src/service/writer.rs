//! The writer: `OpenFile`, the state of one open inode shared by all its
//! handles. Writes land in chunk-sized dirty buffers (each holding a permit of
//! the write budget); a full buffer is handed to the upload pipeline while the
//! writer goes on; random writes read-modify-write only their chunks;
//! truncation cuts buffers and remembers from which index committed chunks go.
//! `commit` makes it all durable and visible in one metadata transaction
//! (commit.rs); `rebase` forgets it when an API PUT replaced the file;
//! `discard` drops it at the last close.
//!
//! Locks (order in handles.rs): the commit lock serialises commits of the
//! file; the write lock serialises writes and truncations; the state lock is
//! held only to look at or change `FileState`, never across a shard read, an
//! upload wait, a budget wait or a metadata transaction. So readers of one
//! file, `getattr` and writers proceed while a commit waits for its uploads.
//!
//! Protocol (how a lock-free stretch stays correct):
//! - Reads capture under the state lock, per chunk piece, a copy of the dirty
//!   bytes or a reference to the upload holding that chunk; committed pieces
//!   are read through the read path, pinned and confirmed live. A reference
//!   keeps an uncommitted chunk's shards alive until the reader is done.
//! - A write into a chunk that has no dirty buffer notes the chunk's source
//!   (`SourceKey`), reads the chunk's bytes and takes a budget permit with no
//!   lock held, then re-checks the key: if the chunk changed meanwhile (a
//!   commit settled it, a PUT rebased the file) it looks again. A reset of the
//!   buffers (failed commit, rebase) during a write starts the write over, so
//!   a write is never half applied on top of a reset.
//! - Every slot (dirty buffer, upload or hole) has a stamp; a commit captures
//!   the stamps, uploads and truncation it commits, and afterwards removes
//!   only slots still carrying those stamps. Writes and truncations that
//!   landed meanwhile stay buffered, `modified` stays set (their count moved),
//!   and the next commit takes them. A slot replaced or cut meanwhile is
//!   still committed by the commit that captured it (its upload is held), and
//!   superseded by the next one.
//! - A failed upload fails the commit and drops every buffer of the file (the
//!   last committed version stays; never a partial file); each handle hears
//!   of it once. An API PUT takes the commit lock, so it lands before or after
//!   a commit, never inside it; it then rebases every handle on its version.
//! - Whoever removes an upload from the state waits for it, then lets it go
//!   with no lock held: the last holder of an uncommitted chunk deletes its
//!   shards; a committed one is marked first and only unpinned.

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::budget::Permit;
use super::context::Context;
use super::read::{chunk_spans, read_live_piece, ChunkSpan};
use super::upload::{Upload, UploadPipeline};
use super::Env;
use crate::error::Result;
use crate::meta::{now_nanos, Inode, Nanos};

/// Committed chunks up to this size are read whole into the cache even by a
/// random reader.
const SMALL_CHUNK: u64 = 1024 * 1024;

pub(crate) struct OpenFile {
    pub ino: u64,
    pub(super) commit_lock: Mutex<()>,
    write_lock: Mutex<()>,
    pub(super) state: Mutex<FileState>,
}

pub(super) struct FileState {
    pub size: u64,
    pub mtime: Nanos,
    pub ctime: Nanos,
    /// Uncommitted content by chunk index.
    pub chunks: BTreeMap<u64, Slot>,
    /// Committed chunks from this index on no longer belong to the file.
    pub truncation: Option<Truncation>,
    pub modified: bool,
    pub unlinked: bool,
    /// Commits that failed and dropped buffered data; every handle open at
    /// the time hears of it once, at its next flush/fsync/close.
    pub failed_commits: u64,
    /// Counts writes and truncations (a commit compares it to know whether
    /// it took everything).
    pub changes: u64,
    /// Counts changes of the committed content under the buffers.
    pub base: u64,
    /// Counts wholesale drops of the buffers (failed commit, rebase).
    pub resets: u64,
    next_stamp: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Truncation {
    pub from: u64,
    pub stamp: u64,
}

pub(super) struct Slot {
    pub stamp: u64,
    pub content: Content,
}

pub(super) enum Content {
    Dirty {
        buf: Vec<u8>,
        _permit: Permit,
    },
    Stored(Arc<Upload>),
    /// The committed chunk is removed without replacement.
    Hole,
}

/// Where a chunk's bytes come from, identified for a later re-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKey {
    Slot(u64),
    Truncated(u64),
    Committed(u64),
}

/// A chunk's bytes when it has no dirty buffer, captured for use unlocked.
enum Base {
    Stored(Arc<Upload>),
    Hole,
    Committed,
}

/// One piece of a read, captured under the state lock.
enum Piece {
    Bytes(Vec<u8>),
    Stored(Arc<Upload>),
    Hole,
    Committed,
}

impl FileState {
    fn new_stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    fn key(&self, index: u64) -> SourceKey {
        match self.chunks.get(&index) {
            Some(slot) => SourceKey::Slot(slot.stamp),
            None => match self.truncation {
                Some(t) if index >= t.from => SourceKey::Truncated(t.stamp),
                _ => SourceKey::Committed(self.base),
            },
        }
    }

    fn base_of(&self, index: u64) -> Option<Base> {
        match self.chunks.get(&index).map(|s| &s.content) {
            Some(Content::Dirty { .. }) => None,
            Some(Content::Stored(up)) => Some(Base::Stored(up.clone())),
            Some(Content::Hole) => Some(Base::Hole),
            None if self.truncation.is_some_and(|t| index >= t.from) => Some(Base::Hole),
            None => Some(Base::Committed),
        }
    }

    fn piece(&self, span: &ChunkSpan) -> Piece {
        match self.chunks.get(&span.index).map(|s| &s.content) {
            Some(Content::Dirty { buf, .. }) => {
                let start = (span.offset as usize).min(buf.len());
                let end = (span.offset as usize + span.len).min(buf.len());
                Piece::Bytes(buf[start..end].to_vec())
            }
            _ => match self.base_of(span.index) {
                Some(Base::Stored(up)) => Piece::Stored(up),
                Some(Base::Committed) => Piece::Committed,
                _ => Piece::Hole,
            },
        }
    }

    /// Hand the dirty buffer of `index` to the uploaders (an empty one
    /// becomes a hole). The slot keeps its stamp: same bytes.
    fn start_upload(&mut self, index: u64, uploads: &UploadPipeline) {
        let Some(slot) = self.chunks.get_mut(&index) else {
            return;
        };
        let content = std::mem::replace(&mut slot.content, Content::Hole);
        slot.content = match content {
            Content::Dirty { buf, _permit } if !buf.is_empty() => {
                Content::Stored(Upload::new(uploads.submit(buf, _permit)))
            }
            Content::Dirty { .. } => Content::Hole,
            other => other,
        };
    }

    /// Start uploading every dirty buffer.
    pub fn spill(&mut self, uploads: &UploadPipeline) {
        let dirty: Vec<u64> = self
            .chunks
            .iter()
            .filter(|(_, s)| matches!(s.content, Content::Dirty { .. }))
            .map(|(i, _)| *i)
            .collect();
        for index in dirty {
            self.start_upload(index, uploads);
        }
    }

    /// Copy `bytes` into the dirty buffer of `span`, if there is one.
    fn copy_into_dirty(
        &mut self,
        span: &ChunkSpan,
        bytes: &[u8],
        chunk_size: u64,
        uploads: &UploadPipeline,
    ) -> bool {
        let Some(Slot {
            content: Content::Dirty { buf, .. },
            ..
        }) = self.chunks.get_mut(&span.index)
        else {
            return false;
        };
        let (at, end) = (span.offset as usize, span.offset as usize + span.len);
        if buf.capacity() < end && span.len >= 64 * 1024 {
            buf.reserve_exact(chunk_size as usize - buf.len());
        }
        if buf.len() == at {
            // Appending (the common case): no zero-fill first.
            buf.extend_from_slice(bytes);
        } else {
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[at..end].copy_from_slice(bytes);
        }
        if end as u64 == chunk_size {
            self.start_upload(span.index, uploads);
        }
        self.size = self.size.max(span.pos + span.len as u64);
        true
    }

    fn touch(&mut self, now: Nanos) {
        self.mtime = now;
        self.ctime = now;
        self.modified = true;
        self.changes += 1;
    }

    /// Cut the file to `size`; `replacement` is the cut chunk's new buffer
    /// when it had none. Returns the slots that no longer belong.
    fn apply_truncate(
        &mut self,
        size: u64,
        replacement: Option<Vec<u8>>,
        permit: Option<Permit>,
        chunk_size: u64,
    ) -> Vec<Slot> {
        let mut gone = Vec::new();
        if size < self.size {
            let keep = size.div_ceil(chunk_size);
            let cut: Vec<u64> = self.chunks.range(keep..).map(|(i, _)| *i).collect();
            gone.extend(cut.iter().filter_map(|i| self.chunks.remove(i)));
            let from = self.truncation.map_or(keep, |t| t.from.min(keep));
            let stamp = self.new_stamp();
            self.truncation = Some(Truncation { from, stamp });
            let (index, in_off) = (size / chunk_size, (size % chunk_size) as usize);
            if let Some(Slot {
                content: Content::Dirty { buf, .. },
                ..
            }) = self.chunks.get_mut(&index)
            {
                buf.truncate(in_off);
            } else if let (Some(buf), Some(_permit)) = (replacement, permit) {
                let stamp = self.new_stamp();
                let slot = Slot {
                    stamp,
                    content: Content::Dirty { buf, _permit },
                };
                gone.extend(self.chunks.insert(index, slot));
            }
        }
        self.size = size;
        gone
    }

    /// Drop every buffer (failed commit, rebase, last close).
    pub fn take_all(&mut self) -> Vec<Slot> {
        self.truncation = None;
        self.modified = false;
        self.base += 1;
        std::mem::take(&mut self.chunks).into_values().collect()
    }
}

/// Let go of slots taken out of a file's state (no lock held): wait for
/// their uploads, so that dropping the last reference deletes the shards of
/// a chunk that will never be committed before this returns.
pub(super) fn let_go(slots: Vec<Slot>) {
    for slot in &slots {
        if let Content::Stored(up) = &slot.content {
            let _ = up.wait();
        }
    }
}

impl OpenFile {
    pub fn new(inode: &Inode) -> OpenFile {
        OpenFile {
            ino: inode.ino,
            commit_lock: Mutex::new(()),
            write_lock: Mutex::new(()),
            state: Mutex::new(FileState {
                size: inode.size,
                mtime: inode.mtime,
                ctime: inode.ctime,
                chunks: BTreeMap::new(),
                truncation: None,
                modified: false,
                unlinked: false,
                failed_commits: 0,
                changes: 0,
                base: 0,
                resets: 0,
                next_stamp: 0,
            }),
        }
    }

    /// Hold off commits of this file (an API PUT replacing it, a setattr).
    pub fn lock_commits(&self) -> MutexGuard<'_, ()> {
        self.commit_lock.lock()
    }

    /// Show uncommitted size and times.
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

    pub fn is_unlinked(&self) -> bool {
        self.state.lock().unlinked
    }

    pub fn is_modified(&self) -> bool {
        self.state.lock().modified
    }

    pub fn failed_commits(&self) -> u64 {
        self.state.lock().failed_commits
    }

    /// An explicit mtime (utimens); the caller holds `lock_commits`.
    pub fn set_mtime(&self, t: Nanos) {
        self.state.lock().mtime = t;
    }

    /// Start uploading this file's buffers unless a write is in progress.
    pub fn spill_if_idle(&self, uploads: &UploadPipeline) {
        if let Some(_idle) = self.write_lock.try_lock() {
            self.state.lock().spill(uploads);
        }
    }

    /// Up to `len` bytes at `offset`, and the file size they were read at.
    pub fn read(
        &self,
        ctx: &Arc<Context>,
        offset: u64,
        len: usize,
        sequential: bool,
    ) -> Result<(Vec<u8>, u64)> {
        let committed = match self.is_modified() {
            true => None,
            false => Some(ctx.committed_inode(self.ino)?.size),
        };
        let (size, plan) = {
            let st = self.state.lock();
            let size = committed.filter(|_| !st.modified).unwrap_or(st.size);
            let end = offset.saturating_add(len as u64).min(size);
            let spans = chunk_spans(offset, end.saturating_sub(offset), ctx.chunk_size);
            let plan: Vec<(ChunkSpan, Piece)> = spans.map(|s| (s, st.piece(&s))).collect();
            (size, plan)
        };
        let only_piece = plan.len() == 1;
        let mut out = Vec::with_capacity(plan.iter().map(|(s, _)| s.len).sum());
        for (span, piece) in plan {
            let bytes = match piece {
                Piece::Bytes(b) => b,
                Piece::Hole => Vec::new(),
                Piece::Stored(up) => {
                    let w = up.wait()?;
                    ctx.store
                        .read(&w.layout, &w.placement, span.offset, span.len)?
                }
                Piece::Committed => {
                    read_live_piece(ctx, self.ino, span.index, span.offset, span.len, |rec| {
                        span.offset == 0 || sequential || rec.layout.data_len <= SMALL_CHUNK
                    })?
                }
            };
            if only_piece && bytes.len() == span.len {
                out = bytes; // the whole answer: no copy
            } else {
                out.extend_from_slice(&bytes);
                out.resize(out.len() + (span.len - bytes.len()), 0);
            }
        }
        Ok((out, size))
    }

    /// Write `data` at `offset` (at the end of the file when `append`).
    pub fn write(&self, env: &Env, offset: u64, data: &[u8], append: bool) -> Result<usize> {
        let _writing = self.write_lock.lock();
        'whole: loop {
            let (resets, offset) = {
                let st = self.state.lock();
                (st.resets, if append { st.size } else { offset })
            };
            let now = now_nanos();
            for span in chunk_spans(offset, data.len() as u64, env.ctx.chunk_size) {
                let bytes = &data[span.at..span.at + span.len];
                if !self.write_span(env, &span, bytes, now, resets)? {
                    continue 'whole;
                }
            }
            return Ok(data.len());
        }
    }

    /// Land one chunk's piece of a write. False when the buffers were reset
    /// meanwhile (the write starts over).
    fn write_span(
        &self,
        env: &Env,
        span: &ChunkSpan,
        bytes: &[u8],
        now: Nanos,
        resets: u64,
    ) -> Result<bool> {
        let cs = env.ctx.chunk_size;
        loop {
            let (key, base) = {
                let mut st = self.state.lock();
                if st.resets != resets {
                    return Ok(false);
                }
                if st.copy_into_dirty(span, bytes, cs, env.uploads) {
                    st.touch(now);
                    return Ok(true);
                }
                (st.key(span.index), st.base_of(span.index))
            };
            let buf = match (span.offset == 0 && span.len as u64 == cs, base) {
                (true, _) | (_, None) => Vec::new(),
                (false, Some(base)) => self.base_bytes(env.ctx, span.index, base)?,
            };
            let permit = self.reserve(env);
            let gone = {
                let mut st = self.state.lock();
                if st.resets != resets {
                    return Ok(false);
                }
                if st.key(span.index) != key {
                    continue; // changed while unlocked: look again
                }
                let stamp = st.new_stamp();
                let slot = Slot {
                    stamp,
                    content: Content::Dirty {
                        buf,
                        _permit: permit,
                    },
                };
                let gone = st.chunks.insert(span.index, slot);
                st.copy_into_dirty(span, bytes, cs, env.uploads);
                st.touch(now);
                gone
            };
            let_go(gone.into_iter().collect());
            return Ok(true);
        }
    }

    /// The current bytes of chunk `index` (its data length, not padded).
    fn base_bytes(&self, ctx: &Arc<Context>, index: u64, base: Base) -> Result<Vec<u8>> {
        match base {
            Base::Hole => Ok(Vec::new()),
            Base::Stored(up) => {
                let w = up.wait()?;
                ctx.store
                    .read(&w.layout, &w.placement, 0, w.layout.data_len as usize)
            }
            Base::Committed => {
                read_live_piece(ctx, self.ino, index, 0, ctx.chunk_size as usize, |_| true)
            }
        }
    }

    /// A chunk of write budget for a new buffer: this file's own buffers are
    /// spilled first, then idle writers' buffers while waiting.
    fn reserve(&self, env: &Env) -> Permit {
        if let Some(p) = env.uploads.try_reserve() {
            return p;
        }
        self.state.lock().spill(env.uploads);
        env.uploads
            .reserve(&|| env.files.spill_idle(Some(self.ino), env.uploads))
    }

    /// Truncate or extend to `size` (committed later, with the writes).
    pub fn truncate(&self, env: &Env, size: u64) -> Result<()> {
        let _writing = self.write_lock.lock();
        let cs = env.ctx.chunk_size;
        let (index, in_off) = (size / cs, (size % cs) as usize);
        loop {
            // The chunk cut in the middle keeps its head: read it unlocked.
            let (key, base) = {
                let mut st = self.state.lock();
                let base = st.base_of(index).filter(|_| size < st.size && in_off > 0);
                let Some(base) = base else {
                    let gone = st.apply_truncate(size, None, None, cs);
                    st.touch(now_nanos());
                    drop(st);
                    let_go(gone);
                    return Ok(());
                };
                (st.key(index), base)
            };
            let mut head = self.base_bytes(env.ctx, index, base)?;
            let (head, permit) = if head.len() > in_off {
                head.truncate(in_off);
                (Some(head), Some(self.reserve(env)))
            } else {
                (None, None)
            };
            let gone = {
                let mut st = self.state.lock();
                if st.key(index) != key {
                    continue;
                }
                let gone = st.apply_truncate(size, head, permit, cs);
                st.touch(now_nanos());
                gone
            };
            let_go(gone);
            return Ok(());
        }
    }

    /// Forget buffered changes after an API PUT replaced the content: the
    /// handles build on `inode`'s version from now on. The caller holds
    /// `lock_commits`.
    pub fn rebase(&self, inode: &Inode) {
        let gone = {
            let mut st = self.state.lock();
            st.resets += 1;
            st.size = inode.size;
            st.mtime = inode.mtime;
            st.ctime = inode.ctime;
            st.take_all()
        };
        let_go(gone);
    }

    /// Drop every buffer (the last close). True if the inode lost its last
    /// name while open and must now be purged.
    pub fn discard(&self) -> bool {
        let (gone, unlinked) = {
            let mut st = self.state.lock();
            (st.take_all(), st.unlinked)
        };
        let_go(gone);
        unlinked
    }
}
