//! The read path for committed content: the one chunk-span iterator every
//! offset/length loop uses, pins that keep chunks being read (or not yet
//! committed) away from the collector, snapshots (one version of a file for
//! streaming reads), reads through the chunk cache, and read-ahead on a small
//! fixed pool of threads with a bounded number of chunks in flight.
//!
//! It never sees write buffers or open handles: the writer decides which
//! pieces of an open file are committed and asks for those here.
//!
//! Collection safety: the collector deletes a dead chunk only if it is not
//! pinned when it looks. A reader therefore pins a chunk and then checks that
//! it is still live (the file's version did not move, or the chunk is still at
//! its index); if so, no collection can take it until the pin is dropped.

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::context::Context;
use super::pool::WorkerPool;
use crate::error::{Error, Result};
use crate::meta::{ChunkRecord, Inode, Kind};

/// Chunks read ahead at once, across all readers (each is a chunk of memory);
/// also the number of read-ahead threads.
const MAX_PREFETCH: usize = 4;

/// Attempts to catch a file between two commits before giving up.
const CHANGE_RETRIES: usize = 10;

// ------------------------------------------------------------ chunk spans

/// The part of a byte range that falls in one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkSpan {
    /// Chunk index in the file.
    pub index: u64,
    /// Where the piece starts inside its chunk.
    pub offset: u64,
    pub len: usize,
    /// Where the piece starts in the file.
    pub pos: u64,
    /// Where the piece starts relative to the start of the range.
    pub at: usize,
}

/// The chunk pieces of `len` bytes at `offset`, in order.
pub(crate) fn chunk_spans(offset: u64, len: u64, chunk_size: u64) -> ChunkSpans {
    ChunkSpans {
        start: offset,
        pos: offset,
        end: offset.saturating_add(len),
        chunk_size,
    }
}

pub(crate) struct ChunkSpans {
    start: u64,
    pos: u64,
    end: u64,
    chunk_size: u64,
}

impl Iterator for ChunkSpans {
    type Item = ChunkSpan;

    fn next(&mut self) -> Option<ChunkSpan> {
        if self.pos >= self.end {
            return None;
        }
        let offset = self.pos % self.chunk_size;
        let len = (self.chunk_size - offset).min(self.end - self.pos);
        let span = ChunkSpan {
            index: self.pos / self.chunk_size,
            offset,
            len: len as usize,
            pos: self.pos,
            at: (self.pos - self.start) as usize,
        };
        self.pos += len;
        Some(span)
    }
}

// ------------------------------------------------------------------- pins

/// Chunk ids in use by readers or not yet committed, with use counts.
#[derive(Default)]
pub(crate) struct Pins {
    counts: Mutex<HashMap<u64, usize>>,
}

/// Holds its chunks pinned until dropped.
pub(crate) struct PinGuard {
    pins: Arc<Pins>,
    ids: Vec<u64>,
}

impl Pins {
    pub fn pin(self: &Arc<Self>, ids: Vec<u64>) -> PinGuard {
        let mut counts = self.counts.lock();
        for id in &ids {
            *counts.entry(*id).or_insert(0) += 1;
        }
        PinGuard {
            pins: self.clone(),
            ids,
        }
    }

    /// The chunk ids pinned right now.
    pub fn pinned(&self) -> HashSet<u64> {
        self.counts.lock().keys().copied().collect()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut counts = self.pins.counts.lock();
        for id in &self.ids {
            if let Some(n) = counts.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(id);
                }
            }
        }
    }
}

// -------------------------------------------------------------- snapshots

/// A consistent view of one version of a file for streaming reads: the chunk
/// list is captured once, and its chunks are pinned against collection.
pub struct Snapshot {
    pub inode: Inode,
    chunks: BTreeMap<u64, ChunkRecord>,
    ctx: Arc<Context>,
    _pins: PinGuard,
}

impl Snapshot {
    /// Capture the committed version of a file.
    pub(crate) fn capture(ctx: &Arc<Context>, ino: u64) -> Result<Snapshot> {
        for _ in 0..CHANGE_RETRIES {
            let inode = ctx.committed_inode(ino)?;
            if inode.kind == Kind::Dir {
                return Err(Error::IsADirectory(format!("inode {ino}")));
            }
            let chunks = ctx.meta.chunks_of(ino)?;
            let pins = ctx
                .pins
                .pin(chunks.iter().map(|c| c.layout.chunk_id).collect());
            // A commit between reading the inode and pinning: try again.
            if ctx.committed_inode(ino)?.version == inode.version {
                return Ok(Snapshot {
                    inode,
                    chunks: chunks.into_iter().map(|c| (c.idx, c)).collect(),
                    ctx: ctx.clone(),
                    _pins: pins,
                });
            }
        }
        Err(Error::Other("file keeps changing; try again".into()))
    }

    /// Read `len` bytes at `offset` of this version (short at end of file).
    pub fn read(&self, offset: u64, len: usize) -> Result<Bytes> {
        let end = offset.saturating_add(len as u64).min(self.inode.size);
        let mut spans = chunk_spans(offset, end.saturating_sub(offset), self.ctx.chunk_size);
        let piece = |span: &ChunkSpan| match self.chunks.get(&span.index) {
            Some(rec) => read_committed_piece(&self.ctx, rec, span.offset, span.len, true),
            None => Ok(Bytes::new()),
        };
        let Some(first) = spans.next() else {
            return Ok(Bytes::new());
        };
        let first_piece = piece(&first)?;
        if first.pos + first.len as u64 == end && first_piece.len() == first.len {
            return Ok(first_piece); // one chunk, no hole: no copy
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        let mut add = |span: &ChunkSpan, bytes: Bytes| {
            out.extend_from_slice(&bytes);
            out.resize(out.len() + (span.len - bytes.len()), 0);
        };
        add(&first, first_piece);
        for span in spans {
            add(&span, piece(&span)?);
        }
        Ok(out.freeze())
    }
}

// -------------------------------------------------------- committed reads

/// Read part of a committed chunk, via the cache. `whole` loads the whole
/// chunk into the cache (sequential readers; a load of it already under
/// way is waited for, not repeated), else only the range is read. The
/// caller keeps the chunk from collection (a snapshot or a pin).
pub(crate) fn read_committed_piece(
    ctx: &Context,
    rec: &ChunkRecord,
    in_off: u64,
    len: usize,
    whole: bool,
) -> Result<Bytes> {
    let data_len = rec.layout.data_len;
    if in_off >= data_len {
        return Ok(Bytes::new());
    }
    let end = (in_off + len as u64).min(data_len);
    let id = rec.layout.chunk_id;
    let cached = match whole {
        true => Some(ctx.cache.get_or_load(id, || {
            ctx.store
                .read_pieces(&rec.layout, &rec.placement, 0, data_len as usize)
        })?),
        false => ctx.cache.get(id),
    };
    match cached {
        Some(data) => Ok(data.slice(in_off as usize, end as usize)),
        None => ctx
            .store
            .read(&rec.layout, &rec.placement, in_off, (end - in_off) as usize),
    }
}

/// Read part of the chunk a live file has at `index` now (no snapshot): the
/// chunk is pinned and confirmed still in place before its shards are read,
/// so a commit and a collection running meanwhile cannot free it under the
/// reader. `whole` decides, given the chunk, whether to load all of it.
pub(crate) fn read_live_piece(
    ctx: &Arc<Context>,
    ino: u64,
    index: u64,
    in_off: u64,
    len: usize,
    whole: impl Fn(&ChunkRecord) -> bool,
) -> Result<Bytes> {
    for _ in 0..CHANGE_RETRIES {
        let Some(rec) = ctx.meta.chunk_at(ino, index)? else {
            return Ok(Bytes::new());
        };
        let id = rec.layout.chunk_id;
        if let Some(data) = ctx.cache.get(id) {
            return Ok(data.slice(in_off as usize, in_off as usize + len));
        }
        let _pin = ctx.pins.pin(vec![id]);
        match ctx.meta.chunk_at(ino, index)? {
            Some(now) if now.layout.chunk_id == id => {
                return read_committed_piece(ctx, &rec, in_off, len, whole(&rec))
            }
            _ => continue,
        }
    }
    Err(Error::Other("file keeps changing; try again".into()))
}

// -------------------------------------------------------------- read-ahead

/// Loads the next chunks of sequential readers into the cache in the
/// background, at most `MAX_PREFETCH` at once whatever the number of readers.
pub(crate) struct Prefetcher {
    pool: WorkerPool,
    inflight: Arc<Mutex<HashSet<u64>>>,
}

impl Prefetcher {
    pub fn new() -> Prefetcher {
        Prefetcher {
            pool: WorkerPool::new("read-ahead", MAX_PREFETCH),
            inflight: Arc::default(),
        }
    }

    /// After a read of `got` bytes at `offset` of a file of `size` bytes:
    /// keep two chunks ahead of a sequential (or chunk-aligned) reader.
    pub fn after_read(
        &self,
        ctx: &Context,
        ino: u64,
        offset: u64,
        got: usize,
        size: u64,
        sequential: bool,
    ) {
        let cs = ctx.chunk_size;
        if got == 0 || !(sequential || offset.is_multiple_of(cs)) {
            return;
        }
        let from = ((offset + got as u64 - 1) / cs + 1) * cs;
        if from >= size {
            return;
        }
        for span in chunk_spans(from, (2 * cs).min(size - from), cs) {
            self.prefetch(ctx, ino, span.index);
        }
    }

    fn prefetch(&self, ctx: &Context, ino: u64, index: u64) {
        let Ok(Some(rec)) = ctx.meta.chunk_at(ino, index) else {
            return;
        };
        let id = rec.layout.chunk_id;
        {
            let mut inflight = self.inflight.lock();
            if ctx.cache.has_or_loading(id)
                || inflight.len() >= MAX_PREFETCH
                || !inflight.insert(id)
            {
                return;
            }
        }
        let (store, cache, inflight) =
            (ctx.store.clone(), ctx.cache.clone(), self.inflight.clone());
        self.pool.execute(move || {
            // A failed read-ahead is forgotten: the reader will ask again.
            let _ = cache.get_or_load(id, || {
                store.read_pieces(&rec.layout, &rec.placement, 0, rec.layout.data_len as usize)
            });
            inflight.lock().remove(&id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(offset: u64, len: u64, cs: u64) -> Vec<(u64, u64, usize, usize)> {
        chunk_spans(offset, len, cs)
            .map(|s| {
                assert_eq!(s.pos, offset + s.at as u64);
                (s.index, s.offset, s.len, s.at)
            })
            .collect()
    }

    #[test]
    fn chunk_spans_split_at_every_boundary() {
        const CS: u64 = 100;
        assert!(spans(0, 0, CS).is_empty());
        assert!(spans(250, 0, CS).is_empty());
        assert_eq!(spans(0, 1, CS), vec![(0, 0, 1, 0)]);
        assert_eq!(spans(0, CS - 1, CS), vec![(0, 0, 99, 0)]);
        assert_eq!(spans(0, CS, CS), vec![(0, 0, 100, 0)]);
        assert_eq!(spans(0, CS + 1, CS), vec![(0, 0, 100, 0), (1, 0, 1, 100)]);
        assert_eq!(spans(CS - 1, 1, CS), vec![(0, 99, 1, 0)]);
        assert_eq!(spans(CS - 1, 2, CS), vec![(0, 99, 1, 0), (1, 0, 1, 1)]);
        assert_eq!(spans(CS, 1, CS), vec![(1, 0, 1, 0)]);
        assert_eq!(spans(CS + 1, CS, CS), vec![(1, 1, 99, 0), (2, 0, 1, 99)]);
        assert_eq!(
            spans(50, 3 * CS, CS),
            vec![
                (0, 50, 50, 0),
                (1, 0, 100, 50),
                (2, 0, 100, 150),
                (3, 0, 50, 250)
            ]
        );
        assert_eq!(
            spans(0, 3 * CS, CS),
            vec![(0, 0, 100, 0), (1, 0, 100, 100), (2, 0, 100, 200)]
        );
        let total: usize = chunk_spans(7, 12345, 64).map(|s| s.len).sum();
        assert_eq!(total, 12345);
    }

    #[test]
    fn chunk_spans_never_overflow_at_the_end_of_the_offset_range() {
        let s: Vec<ChunkSpan> = chunk_spans(u64::MAX - 10, 100, 4096).collect();
        assert_eq!(s.iter().map(|s| s.len).sum::<usize>(), 10);
    }

    #[test]
    fn pins_count_nested_users() {
        let pins = Arc::new(Pins::default());
        let a = pins.pin(vec![1, 2]);
        let b = pins.pin(vec![2]);
        assert_eq!(pins.pinned(), HashSet::from([1, 2]));
        drop(a);
        assert_eq!(pins.pinned(), HashSet::from([2]));
        drop(b);
        assert!(pins.pinned().is_empty());
    }
}
