//! The chunk store: turns one chunk of bytes into k+m verified shards on
//! distinct nodes and back. Owns encoding, shard placement, node health state,
//! verified (and degraded) reads, rebuilding lost shards and shard deletion.
//! It never sees paths, inodes or SQL: callers hand it a `ChunkLayout` and a
//! `Placement` and record the outcome themselves.

pub mod codec;
mod fault;
pub mod placement;
pub mod shard;

use parking_lot::{Mutex, RwLock};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::node::{NodeBackend, NodeProbe, ShardKey};
use codec::Codec;
pub use fault::{ShardFault, UnknownFault};
use placement::Candidate;
use shard::{ShardHeader, BLOCK_SIZE, HEADER_LEN};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    /// Probe one node and record its state. Returns the new state and whether it changed.
    pub fn probe_node(&self, index: usize) -> (NodeState, bool) {
        let id = self.nodes[index].id();
        let probe = self.nodes[index].probe(&self.cluster_id);
        let (state, reason) = match probe {
            NodeProbe::Healthy => (NodeState::Up, String::new()),
            NodeProbe::Empty(r) => (NodeState::Empty, r),
            NodeProbe::Failed(r) => (NodeState::Failed, r),
            NodeProbe::Inconclusive(r) => {
                crate::warn_limited!("health probe inconclusive", "node {id}: {r}");
                return (self.status.read()[index].state, false);
            }
        };
        let mut status = self.status.write();
        let s = &mut status[index];
        let changed = s.state != state;
        if changed {
            if state == NodeState::Up {
                crate::log_limited!(
                    log::Level::Info,
                    format!("node {id} state"),
                    "node {id} is up again"
                );
                s.since = None;
            } else {
                crate::warn_limited!(
                    format!("node {id} state"),
                    "node {id} is {}: {reason}",
                    state.as_str()
                );
                if s.since.is_none() {
                    s.since = Some(SystemTime::now());
                }
            }
        }
        s.state = state;
        s.reason = reason;
        (state, changed)
    }

    pub fn probe_all(&self) -> Vec<(usize, NodeState)> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let (state, changed) = self.probe_node(i);
                changed.then_some((i, state))
            })
            .collect()
    }

    /// Mark a node up after it was (re)initialized.
    pub fn initialize_node(&self, index: usize) -> Result<()> {
        self.nodes[index].initialize(&self.cluster_id)?;
        self.probe_node(index);
        Ok(())
    }

    fn on_io_error(&self, node: usize, err: &Error) {
        if matches!(err, Error::Io(_) | Error::NoSpace(_)) {
            self.probe_node(node);
        }
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
        }
    }

    fn write_shard(
        &self,
        node: usize,
        layout: &ChunkLayout,
        index: usize,
        payload: &[u8],
    ) -> Result<u32> {
        let header = self.header(layout, index).encode();
        let table = shard::block_table(payload);
        let key = ShardKey {
            chunk_id: layout.chunk_id,
            index: index as u16,
        };
        self.nodes[node]
            .put_shard(key, &[&header, &table, payload])
            .inspect_err(|e| self.on_io_error(node, e))?;
        Ok(shard::table_checksum(&table))
    }

    /// Encode and store a new chunk. Succeeds once at least k shards are
    /// durable (all k when m = 0); shards that could not be placed are `None`
    /// in the placement and must be queued for repair by the caller.
    pub fn write_chunk(&self, mut data: Vec<u8>) -> Result<WrittenChunk> {
        if data.is_empty() {
            return Err(Error::InvalidArgument("empty chunk".into()));
        }
        let chunk_id = loop {
            let id: u64 = rand::thread_rng().gen();
            if id != 0 {
                break id;
            }
        };
        let layout = ChunkLayout {
            chunk_id,
            k: self.k as u16,
            m: self.m as u16,
            data_len: data.len() as u64,
        };
        let codec = self.codec(self.k, self.m)?;
        let parity = codec.encode(&mut data)?;
        let l = layout.shard_len();
        let payloads: Vec<&[u8]> = data
            .chunks(l)
            .chain(parity.iter().map(|p| &p[..]))
            .collect();
        let total = layout.shard_count();
        let mut placement = placement::place(&self.candidates(), total, chunk_id);
        let mut checksums: Vec<Option<u32>> = vec![None; total];
        let mut errors: Vec<Error> = Vec::new();
        let results: Vec<(usize, Result<u32>)> = std::thread::scope(|s| {
            let handles: Vec<_> = placement
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.map(|node| (i, node)))
                .map(|(i, node)| {
                    let payload = payloads[i];
                    let layout = &layout;
                    (
                        i,
                        s.spawn(move || self.write_shard(node, layout, i, payload)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| {
                    (
                        i,
                        h.join()
                            .unwrap_or_else(|_| Err(Error::Other("shard writer panicked".into()))),
                    )
                })
                .collect()
        });
        for (i, r) in results {
            match r {
                Ok(sum) => checksums[i] = Some(sum),
                Err(e) => {
                    placement[i] = None;
                    errors.push(e);
                }
            }
        }
        // Shards that failed or had no node: try other usable nodes once each.
        for i in 0..total {
            if checksums[i].is_some() {
                continue;
            }
            let used: Vec<usize> = placement.iter().flatten().copied().collect();
            for node in placement::order(&self.candidates(), chunk_id, &used) {
                match self.write_shard(node, &layout, i, payloads[i]) {
                    Ok(sum) => {
                        checksums[i] = Some(sum);
                        placement[i] = Some(node);
                        break;
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        let durable = checksums.iter().filter(|c| c.is_some()).count();
        let needed = if self.m == 0 { total } else { self.k };
        if durable < needed {
            self.delete_chunk(&layout, &placement);
            let detail = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            if errors.iter().any(|e| e.is_no_space()) {
                return Err(Error::NoSpace(format!(
                    "only {durable} of {total} shards could be stored: {detail}"
                )));
            }
            return Err(Error::Unavailable(format!(
                "only {durable} of {total} shards could be stored (need {needed}){}{detail}",
                if detail.is_empty() { "" } else { ": " }
            )));
        }
        if durable < total {
            crate::warn_limited!(
                "degraded write",
                "chunk {chunk_id:016x}: {} shard(s) could not be placed; queued for repair",
                total - durable
            );
        }
        Ok(WrittenChunk {
            layout,
            placement,
            checksums,
        })
    }

    /// Read and verify `[start, end)` (block-aligned) of one shard's payload.
    fn read_shard_range(
        &self,
        layout: &ChunkLayout,
        index: usize,
        node: usize,
        start: usize,
        end: usize,
    ) -> ShardRead {
        let mut data = vec![0u8; end - start];
        self.read_shard_range_into(layout, index, node, start, &mut data)?;
        Ok(data)
    }

    /// Read and verify payload bytes from `start` (block-aligned) into `dst`
    /// (whose end is block-aligned or the payload's end).
    fn read_shard_range_into(
        &self,
        layout: &ChunkLayout,
        index: usize,
        node: usize,
        start: usize,
        dst: &mut [u8],
    ) -> Result<(), ShardFault> {
        if !self.is_up(node) {
            return Err(ShardFault::NodeDown {
                node: self.nodes[node].id().to_string(),
            });
        }
        let key = ShardKey {
            chunk_id: layout.chunk_id,
            index: index as u16,
        };
        let mut reader = self.nodes[node]
            .open_shard(key)
            .inspect_err(|e| self.on_io_error(node, e))?;
        let expected = self.header(layout, index);
        let blocks = expected.block_count();
        let mut head = vec![0u8; HEADER_LEN + 4 * blocks];
        if reader.len() != expected.file_len() {
            return Err(ShardFault::Corrupt {
                reason: format!(
                    "shard length {} differs from expected {}",
                    reader.len(),
                    expected.file_len()
                ),
            });
        }
        reader.read_exact_at(0, &mut head)?;
        let header = ShardHeader::decode(&head)?;
        if header != expected {
            return Err(ShardFault::WrongIdentity {
                found: format!(
                    "chunk {:016x} shard {} (k={} m={} len={})",
                    header.chunk_id, header.shard_index, header.k, header.m, header.data_len
                ),
                expected: format!("chunk {:016x} shard {index}", layout.chunk_id),
            });
        }
        reader.read_exact_at(expected.payload_offset() + start as u64, dst)?;
        shard::verify_blocks(&head[HEADER_LEN..], start / BLOCK_SIZE, dst)?;
        Ok(())
    }

    /// Read `len` bytes at `offset` of the chunk's data, verified. Missing or
    /// corrupt data shards are rebuilt from the others for just that range.
    pub fn read(
        &self,
        layout: &ChunkLayout,
        placement: &Placement,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let end = (offset + len as u64).min(layout.data_len);
        if offset >= end {
            return Ok(Vec::new());
        }
        let l = layout.shard_len() as u64;
        let first = (offset / l) as usize;
        let last = ((end - 1) / l) as usize;
        let pieces: Vec<(usize, u64, u64)> = (first..=last)
            .map(|s| {
                let s_start = s as u64 * l;
                let a = offset.max(s_start) - s_start;
                let b = end.min(s_start + l) - s_start;
                (s, a, b)
            })
            .collect();
        let fetch = |(s, a, b): (usize, u64, u64), dst: &mut [u8]| -> Result<()> {
            let bs = BLOCK_SIZE as u64;
            let aligned_a = (a / bs * bs) as usize;
            let aligned_b = (b.div_ceil(bs) * bs).min(l) as usize;
            if aligned_a as u64 == a && aligned_b as u64 == b {
                // Aligned (whole chunks, big reads): straight into the output.
                if let Some(node) = placement.get(s).copied().flatten() {
                    if self
                        .read_shard_range_into(layout, s, node, aligned_a, dst)
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
            }
            let range = self.read_data_shard_range(layout, placement, s, aligned_a, aligned_b)?;
            dst.copy_from_slice(&range[a as usize - aligned_a..b as usize - aligned_a]);
            Ok(())
        };
        let mut out = vec![0u8; (end - offset) as usize];
        let mut slices: Vec<&mut [u8]> = Vec::with_capacity(pieces.len());
        let mut rest: &mut [u8] = &mut out;
        for &(_, a, b) in &pieces {
            let (head, tail) = rest.split_at_mut((b - a) as usize);
            slices.push(head);
            rest = tail;
        }
        if pieces.len() > 1 && len >= 256 * 1024 {
            std::thread::scope(|sc| -> Result<()> {
                let hs: Vec<_> = pieces
                    .iter()
                    .zip(slices)
                    .map(|(&p, dst)| sc.spawn(move || fetch(p, dst)))
                    .collect();
                for h in hs {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Other("reader panicked".into())))?;
                }
                Ok(())
            })?;
        } else {
            for (&p, dst) in pieces.iter().zip(slices) {
                fetch(p, dst)?;
            }
        }
        Ok(out)
    }

    fn read_data_shard_range(
        &self,
        layout: &ChunkLayout,
        placement: &Placement,
        s: usize,
        a: usize,
        b: usize,
    ) -> Result<Vec<u8>> {
        let fault = match placement.get(s).copied().flatten() {
            Some(node) => match self.read_shard_range(layout, s, node, a, b) {
                Ok(d) => return Ok(d),
                Err(fault) => fault,
            },
            None => ShardFault::NotPlaced,
        };
        self.report_bad(layout.chunk_id, s, fault);
        self.metrics.add_degraded_read();
        let mut shards = self.gather(layout, placement, a, b, &[s])?;
        self.codec(layout.k as usize, layout.m as usize)?
            .reconstruct(&mut shards)?;
        Ok(shards[s].take().expect("reconstructed"))
    }

    /// Read `[a, b)` of k verified shards other than `skip`, as a full
    /// Option vector ready for reconstruction.
    fn gather(
        &self,
        layout: &ChunkLayout,
        placement: &Placement,
        a: usize,
        b: usize,
        skip: &[usize],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let k = layout.k as usize;
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; layout.shard_count()];
        let mut have = 0;
        let candidates: Vec<(usize, usize)> = placement
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .filter_map(|(i, p)| p.map(|node| (i, node)))
            .filter(|&(_, node)| self.is_up(node))
            .collect();
        let mut next = 0;
        let mut not_checked = None;
        // Read k candidates at once (they sit on different nodes); fall back
        // to the next ones for any that fail.
        while have < k && next < candidates.len() {
            let wave: Vec<(usize, usize)> =
                candidates[next..].iter().copied().take(k - have).collect();
            next += wave.len();
            let results: Vec<(usize, ShardRead)> = if wave.len() > 1 && b - a >= 256 * 1024 {
                std::thread::scope(|sc| {
                    let hs: Vec<_> = wave
                        .iter()
                        .map(|&(i, node)| {
                            (
                                i,
                                sc.spawn(move || self.read_shard_range(layout, i, node, a, b)),
                            )
                        })
                        .collect();
                    hs.into_iter()
                        .map(|(i, h)| {
                            (
                                i,
                                h.join().unwrap_or_else(|_| {
                                    Err(Error::Other("reader panicked".into()).into())
                                }),
                            )
                        })
                        .collect()
                })
            } else {
                wave.iter()
                    .map(|&(i, node)| (i, self.read_shard_range(layout, i, node, a, b)))
                    .collect()
            };
            for (i, r) in results {
                match r {
                    Ok(d) => {
                        shards[i] = Some(d);
                        have += 1;
                    }
                    Err(ShardFault::NotChecked { reason }) => not_checked = Some(reason),
                    Err(fault) => self.report_bad(layout.chunk_id, i, fault),
                }
            }
        }
        if let (true, Some(reason)) = (have < k, not_checked) {
            return Err(Error::Unavailable(format!(
                "chunk {:016x}: the daemon could not open its shards now ({reason})",
                layout.chunk_id
            )));
        }
        if have < k {
            return Err(Error::Unavailable(format!(
                "chunk {:016x}: only {have} of the {k} shards needed are readable",
                layout.chunk_id
            )));
        }
        Ok(shards)
    }

    /// Rebuild the given shard indexes from k verified shards and write each to
    /// its target node. Returns per rebuilt shard its checksum. `timeout`
    /// bounds the whole operation.
    pub fn rebuild(
        &self,
        layout: &ChunkLayout,
        placement: &Placement,
        targets: &[(usize, usize)],
        timeout: Duration,
    ) -> Result<Vec<(usize, usize, u32)>> {
        let started = Instant::now();
        let l = layout.shard_len();
        let skip: Vec<usize> = targets.iter().map(|t| t.0).collect();
        let mut shards = self.gather(layout, placement, 0, l, &skip)?;
        let codec = self.codec(layout.k as usize, layout.m as usize)?;
        // Rebuild only what is asked: mark targets missing, reconstruct all.
        codec.reconstruct(&mut shards)?;
        if started.elapsed() > timeout {
            return Err(Error::Other(format!("rebuild timed out after {timeout:?}")));
        }
        let mut out = Vec::new();
        for &(index, node) in targets {
            let payload = shards[index].as_ref().expect("reconstructed");
            let sum = self.write_shard(node, layout, index, payload)?;
            out.push((index, node, sum));
        }
        Ok(out)
    }

    /// Read a whole shard and verify header and every block.
    pub fn verify_shard(
        &self,
        layout: &ChunkLayout,
        index: usize,
        node: usize,
    ) -> Result<(), ShardFault> {
        self.read_shard_range(layout, index, node, 0, layout.shard_len())
            .map(|_| ())
    }

    /// Remove every shard of a chunk (best effort; absent shards are fine).
    pub fn delete_chunk(&self, layout: &ChunkLayout, placement: &Placement) {
        for (i, p) in placement.iter().enumerate() {
            if let Some(node) = p {
                let key = ShardKey {
                    chunk_id: layout.chunk_id,
                    index: i as u16,
                };
                if let Err(e) = self.nodes[*node].delete_shard(key) {
                    log::debug!("delete shard {key:?} on {}: {e}", self.nodes[*node].id());
                }
            }
        }
    }

    /// Delete shard files by key on a node (for orphan sweeps).
    pub fn delete_shard_on(&self, node: usize, key: ShardKey) -> Result<()> {
        self.nodes[node].delete_shard(key)
    }
}
