//! The writer: `OpenFile`, the state of one open inode shared by all its
//! handles. Writes land in chunk-sized dirty buffers (each holding a permit of
//! the write budget); a full buffer is handed to the upload pipeline while the
//! writer goes on; random writes read-modify-write only their chunks;
//! truncation cuts buffers and remembers from which index committed chunks go;
//! a zeroed range (punched hole) turns the chunks it covers whole into holes
//! and cuts or zeroes the chunks at its edges.
//! `commit` makes it all durable and visible in one metadata transaction
//! (commit.rs); `discard` drops it at the last close. (An API PUT never
//! touches an open file: it gives the name a new inode.)
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
//!   commit settled it) it looks again. A reset of the buffers (a failed
//!   commit) during a write starts the write over, so
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
//!   of it once.
//! - Whoever removes an upload from the state waits for it, then lets it go
//!   with no lock held: the last holder of an uncommitted chunk deletes its
//!   shards; a committed one is marked first and only unpinned.

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, MutexGuard};
use std::sync::Arc;

use super::budget::Permit;
use super::context::Context;
use super::read::{chunk_spans, read_live_piece, ChunkSpan};
use super::state::{let_go, Base, Content, FileState, Piece, Slot};
use super::upload::UploadPipeline;
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

impl OpenFile {
    pub fn new(inode: &Inode) -> OpenFile {
        OpenFile {
            ino: inode.ino,
            commit_lock: Mutex::new(()),
            write_lock: Mutex::new(()),
            state: Mutex::new(FileState::new(inode)),
        }
    }

    /// Hold off commits of this file (a setattr).
    pub fn lock_commits(&self) -> MutexGuard<'_, ()> {
        self.commit_lock.lock()
    }

    /// Show uncommitted size, times and stored bytes. `committed`: the
    /// file's (chunk index, length) in the metadata, read before (None when
    /// unknown: the stored bytes stay the committed ones).
    pub fn overlay_attrs(&self, inode: &mut Inode, committed: Option<&[(u64, u64)]>) {
        let st = self.state.lock();
        if st.modified {
            inode.size = st.size;
            inode.mtime = st.mtime;
            inode.ctime = st.ctime.max(inode.ctime);
            if let Some(committed) = committed {
                inode.stored_bytes = st.data_chunks(committed).values().sum();
            }
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
    ) -> Result<(Bytes, u64)> {
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
        let mut out = BytesMut::with_capacity(plan.iter().map(|(s, _)| s.len).sum());
        for (span, piece) in plan {
            let bytes = match piece {
                Piece::Bytes(b) => Bytes::from(b),
                Piece::Hole => Bytes::new(),
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
                return Ok((bytes, size)); // the whole answer: no copy
            }
            out.extend_from_slice(&bytes);
            out.resize(out.len() + (span.len - bytes.len()), 0);
        }
        Ok((out.freeze(), size))
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
                Ok(ctx
                    .store
                    .read(&w.layout, &w.placement, 0, w.layout.data_len as usize)?
                    .into())
            }
            Base::Committed => {
                read_live_piece(ctx, self.ino, index, 0, ctx.chunk_size as usize, |_| true)
                    .map(Vec::from)
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

    /// Extend to at least `size` (fallocate): under the write lock, so a
    /// write that extends the file at the same moment is never cut back.
    /// False when the file was already that long.
    pub fn grow(&self, size: u64, chunk_size: u64) -> bool {
        let _writing = self.write_lock.lock();
        let mut st = self.state.lock();
        if st.size >= size {
            return false;
        }
        let gone = st.apply_truncate(size, None, None, chunk_size);
        st.touch(now_nanos());
        drop(st);
        let_go(gone);
        true
    }

    /// Zero `offset..end` (fallocate PUNCH_HOLE, ZERO_RANGE): chunks wholly
    /// inside the range and the file become holes, the parts of chunks at
    /// its edges that hold data are written with zeros (a hole stays a
    /// hole). Nothing past the end of the file is touched, unless `extend`:
    /// then the file grows to `end`. Under the write lock, like a write.
    /// True if the file changed.
    pub fn zero_range(&self, env: &Env, offset: u64, end: u64, extend: bool) -> Result<bool> {
        let _writing = self.write_lock.lock();
        let cs = env.ctx.chunk_size;
        'whole: loop {
            let (resets, size) = {
                let st = self.state.lock();
                (st.resets, st.size)
            };
            let now = now_nanos();
            let inside = end.min(size);
            let mut changed = false;
            for span in chunk_spans(offset, inside.saturating_sub(offset), cs) {
                let chunk_start = span.index * cs;
                let chunk_end = (chunk_start + cs).min(size);
                if span.pos == chunk_start && span.pos + span.len as u64 >= chunk_end {
                    let gone = {
                        let mut st = self.state.lock();
                        if st.resets != resets {
                            continue 'whole;
                        }
                        let stamp = st.new_stamp();
                        let hole = Slot {
                            stamp,
                            content: Content::Hole,
                        };
                        let gone = st.chunks.insert(span.index, hole);
                        st.touch(now);
                        gone
                    };
                    let_go(gone.into_iter().collect());
                } else if !self.holds_data(env.ctx, span.index)? {
                    // A hole already: it stays one.
                } else if span.pos + span.len as u64 >= chunk_end {
                    // Zeros to the chunk's end: the chunk just ends earlier.
                    if !self.cut_chunk(env, span.index, span.offset as usize, now, resets)? {
                        continue 'whole;
                    }
                } else {
                    let zeros = vec![0u8; span.len];
                    if !self.write_span(env, &span, &zeros, now, resets)? {
                        continue 'whole;
                    }
                }
                changed = true;
            }
            if extend && end > size {
                let gone = {
                    let mut st = self.state.lock();
                    if st.resets != resets {
                        continue 'whole;
                    }
                    let gone = st.apply_truncate(end, None, None, cs);
                    st.touch(now);
                    gone
                };
                let_go(gone);
                changed = true;
            }
            return Ok(changed);
        }
    }

    /// Keep only the first `keep` bytes of chunk `index` (what follows
    /// reads as zeros, as past the end of any short chunk); a chunk cut to
    /// nothing becomes a hole. False when the buffers were reset meanwhile.
    fn cut_chunk(
        &self,
        env: &Env,
        index: u64,
        keep: usize,
        now: Nanos,
        resets: u64,
    ) -> Result<bool> {
        loop {
            let (key, base) = {
                let mut st = self.state.lock();
                if st.resets != resets {
                    return Ok(false);
                }
                if let Some(Slot {
                    content: Content::Dirty { buf, .. },
                    ..
                }) = st.chunks.get_mut(&index)
                {
                    buf.truncate(keep);
                    st.touch(now);
                    return Ok(true);
                }
                (st.key(index), st.base_of(index))
            };
            let mut head = match base {
                Some(base) => self.base_bytes(env.ctx, index, base)?,
                None => continue, // a buffer appeared meanwhile
            };
            head.truncate(keep);
            let permit = (!head.is_empty()).then(|| self.reserve(env));
            let gone = {
                let mut st = self.state.lock();
                if st.resets != resets {
                    return Ok(false);
                }
                if st.key(index) != key {
                    continue; // changed while unlocked: look again
                }
                let stamp = st.new_stamp();
                let content = match permit {
                    Some(_permit) => Content::Dirty { buf: head, _permit },
                    None => Content::Hole,
                };
                let gone = st.chunks.insert(index, Slot { stamp, content });
                st.touch(now);
                gone
            };
            let_go(gone.into_iter().collect());
            return Ok(true);
        }
    }

    /// Whether chunk `index` holds any data (buffered, being stored or
    /// committed).
    fn holds_data(&self, ctx: &Arc<Context>, index: u64) -> Result<bool> {
        let base = self.state.lock().base_of(index);
        match base {
            None | Some(Base::Stored(_)) => Ok(true),
            Some(Base::Hole) => Ok(false),
            Some(Base::Committed) => Ok(ctx.meta.chunk_at(self.ino, index)?.is_some()),
        }
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
