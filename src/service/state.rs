//! The bookkeeping of one open file (part of the writer; the protocol is in
//! writer.rs): per chunk index, the uncommitted content — a dirty buffer, an
//! upload, or a hole — each slot stamped so a commit can tell later changes
//! from what it committed; the pending truncation; the uncommitted size and
//! times; and the counters that tell a writer working unlocked whether the
//! file changed under it. Everything here runs under the state lock and does
//! no I/O; what leaves the state (`let_go`) is released after the lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::budget::Permit;
use super::read::ChunkSpan;
use super::upload::{ChunkSource, Upload, UploadPipeline};
use crate::meta::{Inode, Nanos};

pub(super) struct FileState {
    pub ino: u64,
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
    /// Counts wholesale drops of the buffers (failed commit).
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
pub(super) enum SourceKey {
    Slot(u64),
    Truncated(u64),
    Committed(u64),
}

/// A chunk's bytes when it has no dirty buffer, captured for use unlocked.
pub(super) enum Base {
    Stored(Arc<Upload>),
    Hole,
    Committed,
}

/// One piece of a read, captured under the state lock.
pub(super) enum Piece {
    Bytes(Vec<u8>),
    Stored(Arc<Upload>),
    Hole,
    Committed,
}

impl FileState {
    pub fn new(inode: &Inode) -> FileState {
        FileState {
            ino: inode.ino,
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
        }
    }

    pub fn new_stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    pub fn key(&self, index: u64) -> SourceKey {
        match self.chunks.get(&index) {
            Some(slot) => SourceKey::Slot(slot.stamp),
            None => match self.truncation {
                Some(t) if index >= t.from => SourceKey::Truncated(t.stamp),
                _ => SourceKey::Committed(self.base),
            },
        }
    }

    pub fn base_of(&self, index: u64) -> Option<Base> {
        match self.chunks.get(&index).map(|s| &s.content) {
            Some(Content::Dirty { .. }) => None,
            Some(Content::Stored(up)) => Some(Base::Stored(up.clone())),
            Some(Content::Hole) => Some(Base::Hole),
            None if self.truncation.is_some_and(|t| index >= t.from) => Some(Base::Hole),
            None => Some(Base::Committed),
        }
    }

    pub fn piece(&self, span: &ChunkSpan) -> Piece {
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
    pub fn start_upload(&mut self, index: u64, uploads: &UploadPipeline) {
        let Some(slot) = self.chunks.get_mut(&index) else {
            return;
        };
        let content = std::mem::replace(&mut slot.content, Content::Hole);
        slot.content = match content {
            Content::Dirty { buf, _permit } if !buf.is_empty() => {
                let source = ChunkSource {
                    ino: self.ino,
                    index,
                    size: self.size,
                    name: None,
                };
                let data_len = buf.len() as u64;
                Content::Stored(Upload::new(uploads.submit(buf, _permit, source), data_len))
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
    pub fn copy_into_dirty(
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
        // The size first: an upload records the file's size in its shards.
        self.size = self.size.max(span.pos + span.len as u64);
        if end as u64 == chunk_size {
            self.start_upload(span.index, uploads);
        }
        true
    }

    pub fn touch(&mut self, now: Nanos) {
        self.mtime = now;
        self.ctime = now;
        self.modified = true;
        self.changes += 1;
    }

    /// Cut the file to `size`; `replacement` is the cut chunk's new buffer
    /// when it had none. Returns the slots that no longer belong.
    pub fn apply_truncate(
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

    /// Drop every buffer (failed commit, last close).
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
