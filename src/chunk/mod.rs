//! The chunk store: turns one chunk of bytes into k+m verified shards on
//! distinct nodes and back. Owns encoding, shard placement, node health state,
//! verified (and degraded, and hedged) reads, rebuilding lost shards and
//! shard deletion. Every node operation goes through that node's executor
//! with a deadline (`crate::node::NodeExecutor`): a node that does not answer
//! in time counts as failed for the operation and is marked failed until a
//! probe finds it answering again. It never sees paths, inodes or SQL:
//! callers hand it a `ChunkLayout` and a `Placement` and record the outcome
//! themselves.

pub mod codec;
mod data;
mod fault;
#[cfg(test)]
mod format_tests;
mod nodes;
pub mod placement;
mod read;
pub mod shard;
mod write;

use crossbeam_channel::unbounded;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::node::{NodeBackend, NodeExecutor, NodeLate, NodeOp, ShardKey};
use codec::Codec;
pub use data::ChunkBytes;
pub use fault::{ShardFault, UnknownFault};
pub use nodes::NodeCapacity;
use placement::Candidate;
pub use read::{read_header, read_whole_shard};
use shard::ShardHeader;

/// `recovery.node_timeout_ms` when nobody says otherwise.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// A node operation to run, answering a `T`.
type NodeTask<T> = Box<dyn FnOnce(&dyn NodeBackend) -> T + Send>;

/// Everything needed to interpret a chunk's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    pub chunk_id: u64,
    pub k: u16,
    pub m: u16,
    pub data_len: u64,
}

impl ChunkLayout {
    pub fn shard_count(&self) -> usize {
        (self.k + self.m) as usize
    }
    pub fn shard_len(&self) -> usize {
        (self.data_len as usize).div_ceil(self.k as usize).max(1)
    }
}

/// Per shard index: the node index holding it, or None when it is missing.
pub type Placement = Vec<Option<usize>>;

/// Verified bytes of one shard, or what is wrong with it.
type ShardRead = Result<Vec<u8>, ShardFault>;

/// The outcome of writing one chunk.
#[derive(Debug, Clone)]
pub struct WrittenChunk {
    pub layout: ChunkLayout,
    pub placement: Placement,
    /// Per shard: the whole-shard checksum (CRC32C of its block table).
    pub checksums: Vec<Option<u32>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Up,
    /// Present but empty: a new or replaced disk waiting to be rebuilt.
    Empty,
    Failed,
}

impl NodeState {
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Empty => "empty",
            NodeState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub state: NodeState,
    pub reason: String,
    /// When the node left the Up state (for MTTR "detect").
    pub since: Option<SystemTime>,
}

/// A shard that failed verification or could not be read, for the repair queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadShard {
    pub chunk_id: u64,
    pub shard_index: usize,
    pub fault: ShardFault,
}

pub struct ChunkStore {
    nodes: Vec<Arc<dyn NodeBackend>>,
    /// One I/O executor per node: every node call runs there.
    io: Vec<NodeExecutor>,
    /// `recovery.node_timeout_ms`: one unit of every operation's deadline.
    node_timeout: Duration,
    /// Last known capacity per node (statfs and reports never wait on a node
    /// longer than a deadline, and fall back to these).
    capacity: Arc<Mutex<Vec<Option<NodeCapacity>>>>,
    regions: Vec<usize>,
    region_names: Vec<String>,
    cluster_id: String,
    cluster_tag: [u8; 16],
    k: usize,
    m: usize,
    codecs: Mutex<HashMap<(usize, usize), Arc<Codec>>>,
    status: RwLock<Vec<NodeStatus>>,
    bad_shards: Mutex<Vec<BadShard>>,
    /// Told each time a shard joins `bad_shards` (wakes the repair worker).
    bad_shard_listener: OnceLock<Box<dyn Fn() + Send + Sync>>,
    metrics: Arc<Metrics>,
}

impl Drop for ChunkStore {
    /// A closed store lets go of its nodes' locks at once: a store opened
    /// again on the same folders (tests do) never meets its own lock.
    fn drop(&mut self) {
        for node in &self.nodes {
            node.release();
        }
    }
}

impl ChunkStore {
    pub fn new(
        nodes: Vec<Arc<dyn NodeBackend>>,
        cluster_id: &str,
        k: usize,
        m: usize,
        metrics: Arc<Metrics>,
    ) -> Result<ChunkStore> {
        let mut region_names: Vec<String> = Vec::new();
        let mut regions = Vec::new();
        for n in &nodes {
            let r = match region_names.iter().position(|x| x == n.region()) {
                Some(i) => i,
                None => {
                    region_names.push(n.region().to_string());
                    region_names.len() - 1
                }
            };
            regions.push(r);
        }
        let digest = Sha256::digest(cluster_id.as_bytes());
        let status = nodes
            .iter()
            .map(|_| NodeStatus {
                state: NodeState::Up,
                reason: String::new(),
                since: None,
            })
            .collect();
        let store = ChunkStore {
            io: nodes.iter().map(|n| NodeExecutor::new(n.clone())).collect(),
            node_timeout: DEFAULT_NODE_TIMEOUT,
            capacity: Arc::new(Mutex::new(vec![None; nodes.len()])),
            nodes,
            regions,
            region_names,
            cluster_id: cluster_id.to_string(),
            cluster_tag: digest[..16].try_into().unwrap(),
            k,
            m,
            codecs: Mutex::new(HashMap::new()),
            status: RwLock::new(status),
            bad_shards: Mutex::new(Vec::new()),
            bad_shard_listener: OnceLock::new(),
            metrics,
        };
        store.codec(k, m)?;
        Ok(store)
    }

    /// Set `recovery.node_timeout_ms` (one unit of every node deadline).
    pub fn with_node_timeout(mut self, timeout: Duration) -> ChunkStore {
        self.node_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }

    /// How long `op` may take on a node before it counts as failed.
    pub fn deadline(&self, op: NodeOp) -> Duration {
        self.node_timeout * op.timeout_units()
    }

    pub fn k(&self) -> usize {
        self.k
    }
    pub fn m(&self) -> usize {
        self.m
    }
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }
    pub fn nodes(&self) -> &[Arc<dyn NodeBackend>] {
        &self.nodes
    }
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id() == id)
    }
    pub fn node_region(&self, index: usize) -> &str {
        &self.region_names[self.regions[index]]
    }
    pub fn region_names(&self) -> &[String] {
        &self.region_names
    }
    pub fn node_status(&self) -> Vec<NodeStatus> {
        self.status.read().clone()
    }
    pub fn is_up(&self, index: usize) -> bool {
        self.status.read()[index].state == NodeState::Up
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn codec(&self, k: usize, m: usize) -> Result<Arc<Codec>> {
        let mut codecs = self.codecs.lock();
        if let Some(c) = codecs.get(&(k, m)) {
            return Ok(c.clone());
        }
        let c = Arc::new(Codec::new(k, m)?);
        codecs.insert((k, m), c.clone());
        Ok(c)
    }

    /// Take the shards found bad since the last call.
    pub fn take_bad_shards(&self) -> Vec<BadShard> {
        std::mem::take(&mut *self.bad_shards.lock())
    }

    /// Call `listener` each time a shard is found bad (set once; later calls
    /// are ignored).
    pub fn on_bad_shard(&self, listener: Box<dyn Fn() + Send + Sync>) {
        let _ = self.bad_shard_listener.set(listener);
    }

    /// Queue a faulty shard for repair (a down node is not a shard fault).
    fn report_bad(&self, chunk_id: u64, shard_index: usize, fault: ShardFault) {
        if !fault.needs_repair() {
            return;
        }
        crate::warn_limited!(
            "bad shard",
            "chunk {chunk_id:016x} shard {shard_index}: {fault}"
        );
        self.bad_shards.lock().push(BadShard {
            chunk_id,
            shard_index,
            fault,
        });
        if let Some(listener) = self.bad_shard_listener.get() {
            listener();
        }
    }

    fn candidates(&self) -> Vec<Candidate> {
        let status = self.status.read();
        self.regions
            .iter()
            .zip(status.iter())
            .map(|(&region, s)| Candidate {
                region,
                usable: s.state == NodeState::Up,
            })
            .collect()
    }

    fn header(&self, layout: &ChunkLayout, shard_index: usize) -> ShardHeader {
        ShardHeader {
            shard_index: shard_index as u16,
            k: layout.k,
            m: layout.m,
            chunk_id: layout.chunk_id,
            cluster_tag: self.cluster_tag,
            data_len: layout.data_len,
            payload_len: layout.shard_len() as u32,
            origin: None,
        }
    }

    /// Run `task` on `node` and wait for it until the deadline of `op`; a
    /// node that does not answer in time is marked failed.
    fn call<T: Send + 'static>(
        &self,
        node: usize,
        op: NodeOp,
        task: impl FnOnce(&dyn NodeBackend) -> T + Send + 'static,
    ) -> Result<T, NodeLate> {
        self.io[node]
            .call(op, self.deadline(op), task)
            .inspect_err(|late| self.node_late(node, late))
    }

    /// Run one task per (node, task) at once and wait for every answer until
    /// its deadline; answers come back in the order of `calls`. Nodes that
    /// do not answer in time are marked failed.
    fn call_each<T: Send + 'static>(
        &self,
        op: NodeOp,
        calls: Vec<(usize, NodeTask<T>)>,
    ) -> Vec<(usize, Result<T, NodeLate>)> {
        let deadline = self.deadline(op);
        let (tx, rx) = unbounded();
        let mut answers: Vec<(usize, Option<Result<T, NodeLate>>)> = Vec::new();
        let mut waiting: Vec<(usize, Instant)> = Vec::new();
        for (pos, (node, task)) in calls.into_iter().enumerate() {
            let tx = tx.clone();
            let submitted = self.io[node].submit(op, deadline, move |n| {
                let _ = tx.send((pos, task(n)));
            });
            match submitted {
                Ok(due) => {
                    answers.push((node, None));
                    waiting.push((pos, due));
                }
                Err(late) => {
                    self.node_late(node, &late);
                    answers.push((node, Some(Err(late))));
                }
            }
        }
        while let Some(due) = waiting.iter().map(|w| w.1).min() {
            match rx.recv_deadline(due) {
                Ok((pos, answer)) => {
                    waiting.retain(|w| w.0 != pos);
                    answers[pos].1 = Some(Ok(answer));
                }
                Err(_) => {
                    let now = Instant::now();
                    for &(pos, _) in waiting.iter().filter(|w| w.1 <= now) {
                        let node = answers[pos].0;
                        let late = NodeLate::TimedOut {
                            op,
                            after: deadline,
                        };
                        self.io[node].note_timeout();
                        self.node_late(node, &late);
                        answers[pos].1 = Some(Err(late));
                    }
                    waiting.retain(|w| w.1 > now);
                }
            }
        }
        answers
            .into_iter()
            .map(|(node, a)| (node, a.expect("every call answered or timed out")))
            .collect()
    }

    /// Remove every shard of a chunk (best effort; absent shards are fine).
    pub fn delete_chunk(&self, layout: &ChunkLayout, placement: &Placement) {
        let chunk_id = layout.chunk_id;
        let calls: Vec<(usize, NodeTask<Result<()>>)> = placement
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|node| (i, node)))
            .map(|(i, node)| {
                let key = ShardKey {
                    chunk_id,
                    index: i as u16,
                };
                let task: NodeTask<Result<()>> = Box::new(move |n| n.delete_shard(key));
                (node, task)
            })
            .collect();
        for (node, answer) in self.call_each(NodeOp::Delete, calls) {
            match answer {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!(
                    "delete of a shard of chunk {chunk_id:016x} on {}: {e}",
                    self.nodes[node].id()
                ),
                Err(late) => log::debug!(
                    "delete of a shard of chunk {chunk_id:016x} on {}: {late}",
                    self.nodes[node].id()
                ),
            }
        }
    }

    /// Delete shard files by key on a node (for orphan sweeps).
    pub fn delete_shard_on(&self, node: usize, key: ShardKey) -> Result<()> {
        self.call(node, NodeOp::Delete, move |n| n.delete_shard(key))
            .map_err(|late| self.late_error(node, &late))?
    }

    /// Every shard file on a node, with its modification time.
    pub fn list_shards_on(&self, node: usize) -> Result<Vec<(ShardKey, SystemTime)>> {
        self.call(node, NodeOp::List, |n| n.list_shards())
            .map_err(|late| self.late_error(node, &late))?
    }

    /// The error a caller gets when a node did not answer.
    fn late_error(&self, node: usize, late: &NodeLate) -> Error {
        Error::Unavailable(format!("node {}: {late}", self.nodes[node].id()))
    }
}

/// A 2+1 store over three fresh memory nodes in three regions, every node
/// set up and up (unit tests of the chunk store and its users).
#[cfg(test)]
pub(crate) fn memory_test_store() -> (ChunkStore, Vec<Arc<crate::node::MemoryNode>>) {
    let (nodes, backends) = crate::node::memory_nodes(&["r1", "r2", "r3"]);
    let store = ChunkStore::new(backends, "cluster-test", 2, 1, Metrics::new(None)).unwrap();
    for i in 0..nodes.len() {
        store.initialize_node(i).unwrap();
        store.probe_node(i);
    }
    (store, nodes)
}
