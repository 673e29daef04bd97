//! Bytes written to a node: what every write through a node's executor
//! stored there, counted once whatever the backend. The executor hands each
//! task a `CountingNode` (the node itself behind a thin wrapper) that adds
//! the bytes of every successful store to the node's `WriteCounters`: shard
//! files (header, block table and payload), journal appends, and whole
//! metadata copies (snapshots, rewritten journal segment copies). What a
//! backend adds on its own (folder entries, file system journal) is not
//! seen here: these are the bytes minigcs asked the node to keep, the
//! figure "node bytes ÷ application bytes" is made of.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::{NodeBackend, NodeProbe, NodeTimes, ShardKey, ShardReader};
use crate::error::Result;

/// Running totals of what was stored on one node since the store opened.
#[derive(Debug, Default)]
pub(super) struct WriteCounters {
    shard_bytes: AtomicU64,
    journal_bytes: AtomicU64,
    copy_bytes: AtomicU64,
    writes: AtomicU64,
}

/// A snapshot of one node's `WriteCounters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WrittenBytes {
    /// Shard files stored (each whole: header, block table, payload).
    pub shard_bytes: u64,
    /// Records appended to metadata journal segments.
    pub journal_bytes: u64,
    /// Whole metadata files stored: snapshot copies, journal segment copies.
    pub copy_bytes: u64,
    /// Successful store operations of any of the three kinds.
    pub writes: u64,
}

impl WrittenBytes {
    /// Every byte stored, whatever its kind.
    pub fn total(&self) -> u64 {
        self.shard_bytes + self.journal_bytes + self.copy_bytes
    }
}

impl WriteCounters {
    pub(super) fn snapshot(&self) -> WrittenBytes {
        WrittenBytes {
            shard_bytes: self.shard_bytes.load(Ordering::Relaxed),
            journal_bytes: self.journal_bytes.load(Ordering::Relaxed),
            copy_bytes: self.copy_bytes.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }

    /// Count `bytes` of one successful store into `counter`.
    fn add(&self, counter: &AtomicU64, bytes: u64) {
        counter.fetch_add(bytes, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

fn length(parts: &[&[u8]]) -> u64 {
    parts.iter().map(|p| p.len() as u64).sum()
}

/// A node seen through its counters: every call goes to `node`; stores that
/// succeed are counted.
pub(super) struct CountingNode<'a> {
    pub(super) node: &'a dyn NodeBackend,
    pub(super) counters: &'a WriteCounters,
}

impl NodeBackend for CountingNode<'_> {
    fn id(&self) -> &str {
        self.node.id()
    }
    fn region(&self) -> &str {
        self.node.region()
    }
    fn location(&self) -> String {
        self.node.location()
    }
    fn initialize(&self, cluster_id: &str) -> Result<()> {
        self.node.initialize(cluster_id)
    }
    fn probe(&self, cluster_id: &str) -> NodeProbe {
        self.node.probe(cluster_id)
    }
    fn put_shard(&self, key: ShardKey, parts: &[&[u8]]) -> Result<()> {
        self.node.put_shard(key, parts)?;
        self.counters.add(&self.counters.shard_bytes, length(parts));
        Ok(())
    }
    fn open_shard(&self, key: ShardKey) -> Result<Box<dyn ShardReader>> {
        self.node.open_shard(key)
    }
    fn delete_shard(&self, key: ShardKey) -> Result<()> {
        self.node.delete_shard(key)
    }
    fn list_shards(&self) -> Result<Vec<(ShardKey, SystemTime)>> {
        self.node.list_shards()
    }
    fn capacity(&self) -> Result<(u64, u64)> {
        self.node.capacity()
    }
    fn times(&self) -> Result<NodeTimes> {
        self.node.times()
    }
    fn filesystem_id(&self) -> Option<u64> {
        self.node.filesystem_id()
    }
    fn release(&self) {
        self.node.release()
    }
    fn segment_figures(&self) -> Option<super::SegmentFigures> {
        self.node.segment_figures()
    }
    fn clean_segments(
        &self,
        pace: &mut dyn FnMut(u64),
        stop: &dyn Fn() -> bool,
    ) -> Result<super::CleanPass> {
        self.node.clean_segments(pace, stop)
    }
    fn put_meta_file(&self, area: &str, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.node.put_meta_file(area, name, parts)?;
        self.counters.add(&self.counters.copy_bytes, length(parts));
        Ok(())
    }
    fn put_meta_file_from(&self, area: &str, name: &str, header: &[u8], body: &Path) -> Result<()> {
        let body_len = std::fs::metadata(body)?.len();
        self.node.put_meta_file_from(area, name, header, body)?;
        let stored = header.len() as u64 + body_len;
        self.counters.add(&self.counters.copy_bytes, stored);
        Ok(())
    }
    fn append_meta_file(&self, area: &str, name: &str, at: u64, bytes: &[u8]) -> Result<u64> {
        let written = self.node.append_meta_file(area, name, at, bytes)?;
        self.counters.add(&self.counters.journal_bytes, written);
        Ok(written)
    }
    fn list_meta_files(&self, area: &str) -> Result<Vec<(String, u64)>> {
        self.node.list_meta_files(area)
    }
    fn read_meta_file(&self, area: &str, name: &str) -> Result<Vec<u8>> {
        self.node.read_meta_file(area, name)
    }
    fn delete_meta_file(&self, area: &str, name: &str) -> Result<()> {
        self.node.delete_meta_file(area, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::MemoryNode;

    #[test]
    fn successful_stores_are_counted_by_kind_and_failures_are_not() {
        let node = MemoryNode::new("node-1", "r1");
        let counters = WriteCounters::default();
        let counted = CountingNode {
            node: &node,
            counters: &counters,
        };
        // The memory node refuses metadata before it is set up: not counted.
        assert!(counted
            .append_meta_file("journal", "j-1", 0, b"early")
            .is_err());
        assert_eq!(counters.snapshot(), WrittenBytes::default());

        counted.initialize("c1").unwrap();
        let key = ShardKey {
            chunk_id: 1,
            index: 0,
        };
        counted.put_shard(key, &[b"head", &[7u8; 1000]]).unwrap();
        counted
            .append_meta_file("journal", "j-1", 0, b"record")
            .unwrap();
        counted
            .put_meta_file("snapshots", "s-1", &[b"h", b"body"])
            .unwrap();
        let body = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(body.path(), [1u8; 300]).unwrap();
        counted
            .put_meta_file_from("snapshots", "s-2", b"head", body.path())
            .unwrap();
        // Reads, listings and deletes store nothing.
        counted.open_shard(key).unwrap();
        counted.delete_shard(key).unwrap();

        let written = counters.snapshot();
        assert_eq!(
            written,
            WrittenBytes {
                shard_bytes: 1004,
                journal_bytes: 6,
                copy_bytes: 5 + 304,
                writes: 4,
            }
        );
        assert_eq!(written.total(), 1004 + 6 + 309);
        assert_eq!(node.read_meta_file("snapshots", "s-2").unwrap().len(), 304);
    }
}
