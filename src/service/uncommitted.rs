//! The owner of a chunk whose shards are stored but which no metadata
//! references yet. Dropping it deletes the shards; a commit keeps them by
//! consuming it (`into_committed`) or, for a chunk still shared with readers,
//! by marking it (`mark_committed`) — both only after the metadata
//! transaction that references the chunk succeeded. So a chunk that will
//! never be committed (superseded, truncated, failed commit, closed
//! unlinked file, failed PUT) loses its shards exactly once, and a chunk the
//! metadata references never does (DESIGN.md invariant 1).
//!
//! While it lives the chunk is pinned, so a reader that still holds it after
//! its commit is safe from the collector even once a later commit supersedes
//! the chunk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::read::{PinGuard, Pins};
use crate::chunk::{ChunkStore, WrittenChunk};

#[must_use = "dropping an uncommitted chunk deletes its shards"]
pub(crate) struct UncommittedChunk {
    written: WrittenChunk,
    store: Arc<ChunkStore>,
    committed: AtomicBool,
    _pin: PinGuard,
}

impl UncommittedChunk {
    pub fn new(
        written: WrittenChunk,
        store: Arc<ChunkStore>,
        pins: &Arc<Pins>,
    ) -> UncommittedChunk {
        let pin = pins.pin(vec![written.layout.chunk_id]);
        UncommittedChunk {
            written,
            store,
            committed: AtomicBool::new(false),
            _pin: pin,
        }
    }

    /// What a commit records: layout, placement and shard checksums.
    pub fn written(&self) -> &WrittenChunk {
        &self.written
    }

    /// The metadata now references this chunk: keep its shards.
    pub fn into_committed(self) -> WrittenChunk {
        self.mark_committed();
        self.written.clone()
    }

    /// Like `into_committed`, for a chunk other holders may still be reading:
    /// whoever drops it last only unpins it.
    pub fn mark_committed(&self) {
        self.committed.store(true, Ordering::SeqCst);
    }
}

impl Drop for UncommittedChunk {
    fn drop(&mut self) {
        if !self.committed.load(Ordering::SeqCst) {
            self.store
                .delete_chunk(&self.written.layout, &self.written.placement);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{MemoryNode, NodeBackend};

    fn store() -> (Arc<ChunkStore>, Vec<Arc<MemoryNode>>) {
        let (store, nodes) = crate::chunk::memory_test_store();
        (Arc::new(store), nodes)
    }

    /// `data` stored as a chunk that is not committed yet.
    fn uncommitted(store: &Arc<ChunkStore>, pins: &Arc<Pins>, data: Vec<u8>) -> UncommittedChunk {
        let written = store.write_chunk(data, Default::default()).unwrap();
        UncommittedChunk::new(written, store.clone(), pins)
    }

    fn shard_count(nodes: &[Arc<MemoryNode>]) -> usize {
        nodes.iter().map(|n| n.list_shards().unwrap().len()).sum()
    }

    #[test]
    fn dropped_uncommitted_chunk_deletes_its_shards_and_unpins() {
        let (store, nodes) = store();
        let pins = Arc::new(Pins::default());
        let chunk = uncommitted(&store, &pins, vec![7; 1000]);
        let id = chunk.written().layout.chunk_id;
        assert_eq!(shard_count(&nodes), 3);
        assert!(pins.pinned().contains(&id), "uncommitted chunks are pinned");
        drop(chunk);
        assert_eq!(shard_count(&nodes), 0, "shards of a dropped chunk remain");
        assert!(pins.pinned().is_empty());
    }

    #[test]
    fn committed_chunk_keeps_its_shards() {
        let (store, nodes) = store();
        let pins = Arc::new(Pins::default());
        let chunk = uncommitted(&store, &pins, vec![1; 10]);
        let written = chunk.into_committed();
        assert_eq!(shard_count(&nodes), 3);
        assert!(pins.pinned().is_empty(), "consumed: no longer pinned");
        let got = store
            .read(&written.layout, &written.placement, 0, 10)
            .unwrap();
        assert_eq!(got, vec![1; 10]);

        let shared = Arc::new(uncommitted(&store, &pins, vec![2; 10]));
        let reader = shared.clone();
        shared.mark_committed();
        drop(shared);
        assert_eq!(shard_count(&nodes), 6);
        assert_eq!(pins.pinned().len(), 1, "a reader still holds it");
        drop(reader);
        assert_eq!(shard_count(&nodes), 6, "marked committed: shards kept");
        assert!(pins.pinned().is_empty());
    }
}
