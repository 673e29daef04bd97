//! Node backends: where shard files physically live. Owns the `NodeBackend`
//! trait, the node identity file, and the implementations (a local
//! directory per node, a bucket on an object store, and an in-memory double
//! for tests), plus the per-node
//! I/O executor that runs every call with a deadline, and the check that
//! keeps minigcs out of the Python prototype's node folders. A backend stores
//! opaque shard bytes under a `ShardKey`; it knows nothing of chunks, files or
//! erasure coding, and never interprets what it stores.

mod executor;
mod local;
mod local_meta;
mod local_segments;
mod memory;
mod object;
pub mod own_mounts;
pub mod prototype_folder;
pub mod segments;
mod written;

pub use executor::{ExecutorStats, NodeExecutor, NodeLate, NodeOp, HEDGE_FLOOR};
pub use local::{identity_in, LocalDirNode, NODE_LOCK_FILE};
pub use local_segments::SEGMENTS_FOLDER;
pub use memory::{memory_nodes, MemoryNode};
pub use object::ObjectStoreNode;
pub use segments::{CleanPass, SegmentFigures, SegmentSettings};
pub use written::WrittenBytes;

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::SystemTime;

use crate::error::Result;

/// The node a config entry describes: its folder (with the store's
/// segment settings), or its bucket. (The daemon locks folders on top:
/// `crate::service` at start.)
pub fn configured(
    node: &crate::config::NodeConfig,
    segments: &crate::config::SegmentsConfig,
) -> Result<std::sync::Arc<dyn NodeBackend>> {
    Ok(match &node.s3 {
        Some(s3) => std::sync::Arc::new(ObjectStoreNode::s3(&node.id, &node.region, s3)?),
        None => std::sync::Arc::new(
            LocalDirNode::new(&node.id, &node.region, &node.storage_path)
                .with_segments(segments.settings()),
        ),
    })
}

/// Name of the identity file at the top of every node folder.
pub const IDENTITY_FILE: &str = "minigcs-node.json";

/// The folder in every node that holds copies of the metadata (not shards):
/// `<node>/meta/<area>/<name>`, e.g. `meta/snapshots/…` (and, later,
/// `meta/journal/…`).
pub const META_FOLDER: &str = "meta";

/// Whether `name` may name a metadata area or file on a node: one plain
/// path component of safe characters (never `..`, `/` or a hidden name).
pub fn is_safe_meta_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Which shard of which chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    pub chunk_id: u64,
    pub index: u16,
}

impl ShardKey {
    pub fn file_name(&self) -> String {
        format!("{:016x}.{}.shard", self.chunk_id, self.index)
    }

    pub fn parse_file_name(name: &str) -> Option<ShardKey> {
        let rest = name.strip_suffix(".shard")?;
        let (id, index) = rest.split_once('.')?;
        if id.len() != 16 {
            return None;
        }
        Some(ShardKey {
            chunk_id: u64::from_str_radix(id, 16).ok()?,
            index: index.parse().ok()?,
        })
    }
}

/// What a node folder says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub cluster_id: String,
    pub node_id: String,
    pub region: String,
    pub format: u32,
}

/// When a node folder was set up, and when the shards in it last changed
/// (a shard stored or removed); None when the node cannot tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeTimes {
    pub created: Option<SystemTime>,
    /// None too while nothing was ever stored or removed there.
    pub updated: Option<SystemTime>,
}

/// The result of a health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeProbe {
    /// Folder present, identity matches, writable.
    Healthy,
    /// The folder exists but holds no identity and no shards: a replaced or
    /// wiped disk, ready to be rebuilt.
    Empty(String),
    /// Missing, unreadable, not writable, or another node's folder.
    Failed(String),
    /// The probe could not look (the daemon is out of file descriptors): it
    /// says nothing about the node, whose last known state stands.
    Inconclusive(String),
}

/// Refuse a read of `wanted` bytes at `offset` past the end of a shard of
/// `len` bytes (a short shard is corrupt), for every backend's reader.
pub(crate) fn check_shard_range(offset: u64, wanted: usize, len: u64) -> Result<()> {
    if offset + wanted as u64 > len {
        return Err(crate::error::Error::Corrupt(format!(
            "shard too short: wanted {wanted} bytes at {offset}, shard has {len}"
        )));
    }
    Ok(())
}

/// A shard opened for reading.
pub trait ShardReader: Send {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fill `buf` from `offset`; a short read (end of file) is an error.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// `len` bytes from `offset` in a new buffer; a short read is an error.
    /// Backends that can read into unfilled memory skip zeroing it first.
    fn read_vec_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    }
}

/// Storage for shards on one node. Implementations must be safe to call from
/// many threads at once.
pub trait NodeBackend: Send + Sync {
    fn id(&self) -> &str;
    fn region(&self) -> &str;
    /// Where the node lives, for humans (a path).
    fn location(&self) -> String;
    /// Write the identity and layout into an absent or empty folder. Refuses a
    /// folder that holds another node's identity.
    fn initialize(&self, cluster_id: &str) -> Result<()>;
    /// Check presence, identity and writability. A check the daemon could
    /// not make for want of file descriptors is `Inconclusive`, never `Failed`.
    fn probe(&self, cluster_id: &str) -> NodeProbe;
    /// Store a shard durably (returns only after the bytes and the name are on
    /// stable storage). `parts` are concatenated. A shard is never modified:
    /// writing an existing key replaces it atomically.
    fn put_shard(&self, key: ShardKey, parts: &[&[u8]]) -> Result<()>;
    fn open_shard(&self, key: ShardKey) -> Result<Box<dyn ShardReader>>;
    /// Remove a shard; removing an absent shard succeeds.
    fn delete_shard(&self, key: ShardKey) -> Result<()>;
    /// Every shard present, with its modification time.
    fn list_shards(&self) -> Result<Vec<(ShardKey, SystemTime)>>;
    /// (total bytes, free bytes) of the storage under the node; an error
    /// when the backend cannot tell (an object store).
    fn capacity(&self) -> Result<(u64, u64)>;
    /// When the node was set up and its shards last changed (statistics
    /// only); a backend that does not know says so with `None`s.
    fn times(&self) -> Result<NodeTimes> {
        Ok(NodeTimes::default())
    }
    /// Which filesystem holds the node (nodes sharing one are counted once
    /// in the mount's capacity); None when unknown.
    fn filesystem_id(&self) -> Option<u64> {
        None
    }
    /// The store using this node closed: let go of what ties the node to it
    /// (a folder's lock) now, even though an I/O thread may still hold the
    /// node for a moment.
    fn release(&self) {}

    /// Figures of the node's small-shard segments; None when it keeps none.
    fn segment_figures(&self) -> Option<SegmentFigures> {
        None
    }

    /// One pass of the segment cleaner over this node: rewrite the live
    /// entries of segments past the dead threshold and remove them, calling
    /// `pace(bytes)` after each entry copied, stopping when `stop()`.
    fn clean_segments(
        &self,
        pace: &mut dyn FnMut(u64),
        stop: &dyn Fn() -> bool,
    ) -> Result<CleanPass> {
        let _ = (pace, stop);
        Ok(CleanPass::default())
    }

    /// Store a metadata file (a snapshot) durably as `<meta>/<area>/<name>`:
    /// temp file, fsync, rename, fsync of the folder. Refused on a node that
    /// is not set up (no identity), so a missing folder stays missing.
    fn put_meta_file(&self, area: &str, name: &str, parts: &[&[u8]]) -> Result<()> {
        let _ = (area, name, parts);
        Err(crate::error::Error::Other(
            "this node keeps no metadata files".into(),
        ))
    }

    /// Store `header` followed by the content of the local file `body`
    /// as a metadata file, like `put_meta_file`. Backends that can stream
    /// copy the body without holding it in memory.
    fn put_meta_file_from(&self, area: &str, name: &str, header: &[u8], body: &Path) -> Result<()> {
        let content = std::fs::read(body)?;
        self.put_meta_file(area, name, &[header, &content])
    }

    /// Append `bytes` to the metadata file `<meta>/<area>/<name>`
    /// (creating it) at `at`, the length of everything appended to it
    /// before, and return once they are on stable storage (fdatasync; a new
    /// file's folder entry is synced too). A backend may keep the file
    /// longer than what was appended, filled with zero bytes written ahead
    /// of need, so that most appends overwrite allocated blocks instead of
    /// growing the file (a much cheaper sync): readers of such files treat
    /// a zero tail as their end. Returns the bytes physically written
    /// (`bytes` plus any zero fill). Refused on a node that is not set up.
    fn append_meta_file(&self, area: &str, name: &str, at: u64, bytes: &[u8]) -> Result<u64> {
        let _ = (area, name, at, bytes);
        Err(crate::error::Error::Other(
            "this node keeps no metadata files".into(),
        ))
    }

    /// The metadata files of `area` (name, size); none when it has none.
    fn list_meta_files(&self, area: &str) -> Result<Vec<(String, u64)>> {
        let _ = area;
        Ok(Vec::new())
    }

    /// The whole content of one metadata file.
    fn read_meta_file(&self, area: &str, name: &str) -> Result<Vec<u8>> {
        Err(crate::error::Error::NotFound(format!("{area}/{name}")))
    }

    /// Remove one metadata file; removing an absent one succeeds.
    fn delete_meta_file(&self, area: &str, name: &str) -> Result<()> {
        let _ = (area, name);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod conformance {
    //! One suite every backend must pass.
    use super::*;

    pub fn run(node: &dyn NodeBackend) {
        let cluster = "cluster-test";
        node.initialize(cluster).unwrap();
        assert_eq!(node.probe(cluster), NodeProbe::Healthy);
        assert!(matches!(node.probe("other-cluster"), NodeProbe::Failed(_)));

        let a = ShardKey {
            chunk_id: 0xdead_beef,
            index: 0,
        };
        let b = ShardKey {
            chunk_id: 0xdead_beef,
            index: 3,
        };
        node.put_shard(a, &[b"hello ", b"world"]).unwrap();
        node.put_shard(b, &[&[7u8; 100_000]]).unwrap();
        let mut r = node.open_shard(a).unwrap();
        assert_eq!(r.len(), 11);
        let mut buf = [0u8; 5];
        r.read_exact_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"world");
        assert!(
            r.read_exact_at(8, &mut buf).is_err(),
            "read past end must fail"
        );
        assert_eq!(r.read_vec_at(6, 5).unwrap(), b"world");
        assert_eq!(r.read_vec_at(0, 6).unwrap(), b"hello ");
        assert!(r.read_vec_at(0, 0).unwrap().is_empty());
        assert!(r.read_vec_at(8, 5).is_err(), "read past end must fail");
        let mut big = node.open_shard(b).unwrap();
        assert_eq!(big.read_vec_at(1, 99_999).unwrap(), vec![7u8; 99_999]);

        // Replace is atomic and complete.
        node.put_shard(a, &[b"again"]).unwrap();
        let r = node.open_shard(a).unwrap();
        assert_eq!(r.len(), 5);

        let mut listed: Vec<ShardKey> = node
            .list_shards()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        listed.sort();
        assert_eq!(listed, vec![a, b]);

        node.delete_shard(a).unwrap();
        node.delete_shard(a).unwrap();
        assert!(matches!(
            node.open_shard(a),
            Err(crate::error::Error::NotFound(_))
        ));
        assert_eq!(node.list_shards().unwrap().len(), 1);
        // Object stores report no capacity; those that do, a sane one.
        if let Ok((total, free)) = node.capacity() {
            assert!(total >= free);
        }

        // Metadata files: whole copies replace, appends add to the end.
        node.put_meta_file("snapshots", "s-1", &[b"head", b"body"])
            .unwrap();
        assert_eq!(
            node.read_meta_file("snapshots", "s-1").unwrap(),
            b"headbody"
        );
        // A backend may keep zeros written ahead after what was appended.
        let appended = |node: &dyn NodeBackend| {
            let mut bytes = node.read_meta_file("journal", "j-1").unwrap();
            let listed = node.list_meta_files("journal").unwrap();
            assert_eq!(listed, vec![("j-1".to_string(), bytes.len() as u64)]);
            assert!(bytes[7..].iter().all(|&b| b == 0), "only zeros follow");
            bytes.truncate(7);
            bytes
        };
        assert!(node.append_meta_file("journal", "j-1", 0, b"one ").unwrap() >= 4);
        assert!(node.append_meta_file("journal", "j-1", 4, b"two").unwrap() >= 3);
        assert_eq!(appended(node), b"one two");
        // An append that failed on another copy is written again at the
        // same place: the file says the same.
        node.append_meta_file("journal", "j-1", 4, b"two").unwrap();
        assert_eq!(appended(node), b"one two");
        assert!(node
            .append_meta_file("journal", "../escape", 0, b"x")
            .is_err());
        node.delete_meta_file("journal", "j-1").unwrap();
        assert!(node.list_meta_files("journal").unwrap().is_empty());
        assert!(matches!(
            node.read_meta_file("journal", "j-1"),
            Err(crate::error::Error::NotFound(_))
        ));
    }
}
