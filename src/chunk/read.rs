//! Reading: every shard read runs on its node's executor (open, header,
//! payload range, block checksums) with the read deadline, and the caller
//! waits for answers, not for nodes. A range of a chunk is a stripe read:
//! ask the data shards that hold it; when one of them fails, is down or does
//! not answer in time, ask another shard of the chunk; when one of them is
//! merely slower than its node usually is (`NodeExecutor::hedge_delay`), ask
//! enough other shards at once that one answer more than needed is on its
//! way (a hedged read). The first k verified answers
//! rebuild whatever data shard is still missing. Never feeds an unverified
//! shard to the decoder. Rebuilding lost shards and verifying one shard
//! (scrub) use the same reads.

use bytes::Bytes;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::shard::{
    self, ShardHeader, ShardOrigin, BLOCK_SIZE, HEADER_LEN_MAX, HEADER_LEN_V1, HEADER_LEN_V2,
};
use super::{ChunkBytes, ChunkLayout, ChunkStore, Placement, ShardFault, ShardRead};
use crate::error::{Error, Result};
use crate::node::{NodeBackend, NodeLate, NodeOp, ShardKey};

/// A read's verified bytes or fault, and whether the node itself failed
/// (an I/O error: the node is probed).
type ReadAnswer = (ShardRead, bool);

/// Read and verify payload bytes `[start, end)` (start block-aligned, end
/// block-aligned or the payload's end) of the shard `expected` describes.
/// Runs on the node's executor.
fn read_verified(
    node: &dyn NodeBackend,
    expected: ShardHeader,
    start: usize,
    end: usize,
) -> ReadAnswer {
    let key = ShardKey {
        chunk_id: expected.chunk_id,
        index: expected.shard_index,
    };
    let mut reader = match node.open_shard(key) {
        Ok(r) => r,
        Err(e) => {
            let io_error = matches!(e, Error::Io(_) | Error::NoSpace(_));
            return (Err(e.into()), io_error);
        }
    };
    let verified = (|| -> ShardRead {
        // The header is v1 (64 bytes) or v2 (256): the file's length tells.
        let header_len = reader.len().checked_sub(expected.body_len());
        let header_len = match header_len.map(|l| l as usize) {
            Some(l @ (HEADER_LEN_V1 | HEADER_LEN_V2)) => l,
            _ => {
                return Err(ShardFault::Corrupt {
                    reason: format!(
                        "shard length {} differs from expected {}",
                        reader.len(),
                        expected.file_len()
                    ),
                })
            }
        };
        let mut head = vec![0u8; header_len + 4 * expected.block_count()];
        reader.read_exact_at(0, &mut head)?;
        let header = ShardHeader::decode(&head)?;
        if header.header_len() != header_len {
            return Err(ShardFault::Corrupt {
                reason: "shard header length does not match its format".into(),
            });
        }
        if !header.same_identity(&expected) {
            return Err(ShardFault::WrongIdentity {
                found: format!(
                    "chunk {:016x} shard {} (k={} m={} len={})",
                    header.chunk_id, header.shard_index, header.k, header.m, header.data_len
                ),
                expected: format!(
                    "chunk {:016x} shard {}",
                    expected.chunk_id, expected.shard_index
                ),
            });
        }
        let data = reader.read_vec_at(header.payload_offset() + start as u64, end - start)?;
        shard::verify_blocks(&head[header_len..], start / BLOCK_SIZE, &data)?;
        Ok(data)
    })();
    (verified, false)
}

/// The header of the shard file `key` on `node`, checked (magic, format,
/// checksum, and the file's length against it). Reads no payload.
pub fn read_header(node: &dyn NodeBackend, key: ShardKey) -> Result<ShardHeader> {
    let mut reader = node.open_shard(key)?;
    let mut head = vec![0u8; (reader.len() as usize).min(HEADER_LEN_MAX)];
    reader.read_exact_at(0, &mut head)?;
    let header = ShardHeader::decode(&head)?;
    if header.file_len() != reader.len() {
        return Err(Error::Corrupt(format!(
            "shard length {} differs from {} its header gives",
            reader.len(),
            header.file_len()
        )));
    }
    if header.chunk_id != key.chunk_id || header.shard_index != key.index {
        return Err(Error::Corrupt(format!(
            "file of chunk {:016x} shard {} holds chunk {:016x} shard {}",
            key.chunk_id, key.index, header.chunk_id, header.shard_index
        )));
    }
    Ok(header)
}

/// The header and verified payload of the shard file `key` on `node`,
/// knowing nothing but the file (every block checked).
pub fn read_whole_shard(node: &dyn NodeBackend, key: ShardKey) -> Result<(ShardHeader, Vec<u8>)> {
    let header = read_header(node, key)?;
    let mut reader = node.open_shard(key)?;
    let table_at = header.header_len() as u64;
    let table = reader.read_vec_at(table_at, 4 * header.block_count())?;
    let payload = reader.read_vec_at(header.payload_offset(), header.payload_len as usize)?;
    shard::verify_blocks(&table, 0, &payload)?;
    Ok((header, payload))
}

/// One shard read waiting for its answer.
struct Asked {
    index: usize,
    node: usize,
    due: Instant,
    /// When to ask one more shard if this one has not answered.
    hedge_at: Instant,
}

/// The same byte range `[a, b)` of several shards of one chunk.
struct Stripe<'a> {
    store: &'a ChunkStore,
    layout: &'a ChunkLayout,
    placement: &'a Placement,
    a: usize,
    b: usize,
    deadline: Duration,
    answers: Sender<(usize, ReadAnswer)>,
    arrivals: Receiver<(usize, ReadAnswer)>,
    shards: Vec<Option<Vec<u8>>>,
    have: usize,
    asked: Vec<Asked>,
    /// Shards to ask next, fastest node first.
    spares: VecDeque<usize>,
    /// A wanted shard failed, was down or was late.
    degraded: bool,
    /// Why a shard could not even be looked at (the daemon is out of file
    /// descriptors): then a failed read is the daemon's fault, not the data's.
    not_checked: Option<String>,
}

impl Stripe<'_> {
    /// Ask shard `index`'s node; false when it cannot be asked (not placed,
    /// node down, node refused).
    fn ask(&mut self, index: usize) -> bool {
        let Some(node) = self.placement.get(index).copied().flatten() else {
            return false;
        };
        if !self.store.is_up(node) {
            return false;
        }
        let expected = self.store.header(self.layout, index);
        let (a, b, answers) = (self.a, self.b, self.answers.clone());
        let io = &self.store.io[node];
        let asked = io.submit(NodeOp::Read, self.deadline, move |n| {
            let _ = answers.send((index, read_verified(n, expected, a, b)));
        });
        match asked {
            Ok(due) => {
                let hedge_at = Instant::now() + io.hedge_delay(self.deadline);
                self.asked.push(Asked {
                    index,
                    node,
                    due,
                    hedge_at,
                });
                true
            }
            Err(late) => {
                self.store.node_late(node, &late);
                false
            }
        }
    }

    /// Ask the next spare shard that can be asked; false when none is left.
    fn ask_spare(&mut self) -> bool {
        while let Some(index) = self.spares.pop_front() {
            if self.ask(index) {
                return true;
            }
        }
        false
    }

    fn arrived(&mut self, index: usize, (answer, io_error): ReadAnswer, wanted: &[usize]) {
        let Some(pos) = self.asked.iter().position(|a| a.index == index) else {
            return;
        };
        let asked = self.asked.swap_remove(pos);
        match answer {
            Ok(data) => {
                self.shards[index] = Some(data);
                self.have += 1;
            }
            Err(ShardFault::NotChecked { reason }) => {
                self.degraded |= wanted.contains(&index);
                self.not_checked = Some(reason);
            }
            Err(fault) => {
                if io_error {
                    self.store.probe_node(asked.node);
                }
                self.degraded |= wanted.contains(&index);
                self.store.report_bad(self.layout.chunk_id, index, fault);
            }
        }
    }

    /// Reads past their deadline count as failed; their nodes are failed.
    fn expire(&mut self, now: Instant, wanted: &[usize]) {
        let late = NodeLate::TimedOut {
            op: NodeOp::Read,
            after: self.deadline,
        };
        for asked in self.asked.iter().filter(|a| a.due <= now) {
            self.store.io[asked.node].note_timeout();
            self.store.node_late(asked.node, &late);
            self.degraded |= wanted.contains(&asked.index);
        }
        self.asked.retain(|a| a.due > now);
    }
}

impl ChunkStore {
    /// Verified `[a, b)` of every shard in `wanted`: read where possible,
    /// rebuilt from the first k verified answers otherwise. Shards whose
    /// placement is `None` are never read. Returns all shards fetched (and
    /// rebuilt) and whether a wanted shard could not be read.
    fn fetch_stripe(
        &self,
        layout: &ChunkLayout,
        placement: &Placement,
        wanted: &[usize],
        a: usize,
        b: usize,
    ) -> Result<(Vec<Option<Vec<u8>>>, bool)> {
        let k = layout.k as usize;
        let deadline = self.deadline(NodeOp::Read);
        let mut spares: Vec<usize> = (0..layout.shard_count())
            .filter(|i| !wanted.contains(i))
            .filter(|&i| placement.get(i).copied().flatten().is_some())
            .collect();
        spares.sort_by_key(|&i| self.io[placement[i].expect("placed")].hedge_delay(deadline));
        let (answers, arrivals) = unbounded();
        let mut stripe = Stripe {
            store: self,
            layout,
            placement,
            a,
            b,
            deadline,
            answers,
            arrivals,
            shards: vec![None; layout.shard_count()],
            have: 0,
            asked: Vec::new(),
            spares: spares.into(),
            degraded: false,
            not_checked: None,
        };
        for &i in wanted {
            if !stripe.ask(i) {
                stripe.degraded = true;
            }
        }
        let mut hedged = false;
        loop {
            if wanted.iter().all(|&i| stripe.shards[i].is_some()) {
                break;
            }
            if stripe.have >= k {
                self.codec(k, layout.m as usize)?
                    .reconstruct(&mut stripe.shards)?;
                break;
            }
            // Unless every missing wanted shard is still on its way, make
            // sure enough shards are asked for k answers.
            let wanted_coming = wanted
                .iter()
                .all(|&i| stripe.shards[i].is_some() || stripe.asked.iter().any(|a| a.index == i));
            while !wanted_coming && stripe.have + stripe.asked.len() < k {
                if !stripe.ask_spare() {
                    break;
                }
            }
            let Some(due) = stripe.asked.iter().map(|a| a.due).min() else {
                if let Some(reason) = stripe.not_checked {
                    return Err(Error::Unavailable(format!(
                        "chunk {:016x}: the daemon could not open its shards now ({reason})",
                        layout.chunk_id
                    )));
                }
                return Err(Error::Unavailable(format!(
                    "chunk {:016x}: only {} of the {k} shards needed are readable",
                    layout.chunk_id, stripe.have
                )));
            };
            let hedge_at = (!hedged)
                .then(|| {
                    stripe
                        .asked
                        .iter()
                        .filter(|a| wanted.contains(&a.index))
                        .map(|a| a.hedge_at)
                        .min()
                })
                .flatten();
            match stripe
                .arrivals
                .recv_deadline(hedge_at.map_or(due, |h| h.min(due)))
            {
                Ok((index, answer)) => stripe.arrived(index, answer, wanted),
                Err(_) => {
                    let now = Instant::now();
                    stripe.expire(now, wanted);
                    if hedge_at.is_some_and(|h| h <= now) {
                        // One answer more than needed is on its way: any
                        // k of them will do, whichever shard is slow.
                        hedged = true;
                        while stripe.have + stripe.asked.len() < k + 1 && stripe.ask_spare() {}
                    }
                }
            }
        }
        Ok((stripe.shards, stripe.degraded))
    }

    /// Read `len` bytes at `offset` of the chunk's data, verified, as one
    /// buffer (copied together only when the range spans data shards).
    pub fn read(
        &self,
        layout: &ChunkLayout,
        placement: &Placement,
        offset: u64,
        len: usize,
    ) -> Result<Bytes> {
        Ok(self
            .read_pieces(layout, placement, offset, len)?
            .into_bytes())
    }

    /// Read `len` bytes at `offset` of the chunk's data, verified, one piece
    /// per data shard as read (never copied). Data shards that are missing,
    /// corrupt, down or late are rebuilt from the others for just that range.
    pub fn read_pieces(
        &self,
        layout: &ChunkLayout,
        placement: &Placement,
        offset: u64,
        len: usize,
    ) -> Result<ChunkBytes> {
        let end = (offset + len as u64).min(layout.data_len);
        if offset >= end {
            return Ok(ChunkBytes::default());
        }
        let l = layout.shard_len() as u64;
        let bs = BLOCK_SIZE as u64;
        let first = offset / l;
        let last = (end - 1) / l;
        // Per data shard: the bytes of it wanted, relative to the shard.
        let pieces: Vec<(usize, usize, usize)> = (first..=last)
            .map(|s| {
                let s_start = s * l;
                let a = offset.max(s_start) - s_start;
                let b = end.min(s_start + l) - s_start;
                (s as usize, a as usize, b as usize)
            })
            .collect();
        // One block-aligned range for all of them (a whole chunk: the whole
        // payload of every data shard).
        let from = pieces
            .iter()
            .map(|p| p.1 as u64 / bs * bs)
            .min()
            .unwrap_or(0);
        let to = pieces
            .iter()
            .map(|p| (p.2 as u64).div_ceil(bs) * bs)
            .max()
            .unwrap_or(0)
            .min(l);
        let wanted: Vec<usize> = pieces.iter().map(|p| p.0).collect();
        for &s in &wanted {
            if placement.get(s).copied().flatten().is_none() {
                self.report_bad(layout.chunk_id, s, ShardFault::NotPlaced);
            }
        }
        let (mut shards, degraded) =
            self.fetch_stripe(layout, placement, &wanted, from as usize, to as usize)?;
        if degraded {
            self.metrics.add_degraded_read();
        }
        let from = from as usize;
        Ok(ChunkBytes::from_pieces(
            pieces
                .into_iter()
                .map(|(s, a, b)| {
                    let shard = shards[s].take().expect("wanted shards are fetched");
                    Bytes::from(shard).slice(a - from..b - from)
                })
                .collect(),
        ))
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
        // Never read the shards being replaced: rebuild them all.
        let mut readable = placement.clone();
        for &(index, _) in targets {
            readable[index] = None;
        }
        let wanted: Vec<usize> = targets.iter().map(|t| t.0).collect();
        let (mut shards, _) =
            self.fetch_stripe(layout, &readable, &wanted, 0, layout.shard_len())?;
        if started.elapsed() > timeout {
            return Err(Error::Other(format!("rebuild timed out after {timeout:?}")));
        }
        // A rebuilt shard keeps the chunk's origin, read from a sibling.
        let origin = self.origin_of(layout, &readable);
        let mut out = Vec::new();
        for &(index, node) in targets {
            let payload = shards[index].take().expect("reconstructed");
            let sum = self.write_shard(node, layout, index, payload, origin)?;
            out.push((index, node, sum));
        }
        Ok(out)
    }

    /// The origin a chunk's shards carry (None: v1 shards, or no placed
    /// shard answered).
    fn origin_of(&self, layout: &ChunkLayout, placement: &Placement) -> Option<ShardOrigin> {
        for (index, node) in placement.iter().enumerate() {
            let Some(node) = *node else { continue };
            if !self.is_up(node) {
                continue;
            }
            let key = ShardKey {
                chunk_id: layout.chunk_id,
                index: index as u16,
            };
            if let Ok(Ok(header)) = self.call(node, NodeOp::Read, move |n| read_header(n, key)) {
                return header.origin;
            }
        }
        None
    }

    /// Read a whole shard and verify header and every block.
    pub fn verify_shard(
        &self,
        layout: &ChunkLayout,
        index: usize,
        node: usize,
    ) -> Result<(), ShardFault> {
        let down = || ShardFault::NodeDown {
            node: self.nodes[node].id().to_string(),
        };
        if !self.is_up(node) {
            return Err(down());
        }
        let expected = self.header(layout, index);
        let l = layout.shard_len();
        match self.call(node, NodeOp::Read, move |n| {
            read_verified(n, expected, 0, l)
        }) {
            Ok((Ok(_), _)) => Ok(()),
            Ok((Err(fault), io_error)) => {
                if io_error {
                    self.probe_node(node);
                }
                Err(fault)
            }
            Err(_) => Err(down()),
        }
    }
}
