//! The repair queue: shards the read path found missing or corrupt are
//! recorded in the shard map, and every live chunk with an unhealthy shard
//! gets it rebuilt where it belongs — its own node if up, else another up
//! node holding no shard of the chunk, keeping regions even. Also the
//! rebuild helpers node recovery and scrub share (`repair_target`,
//! `repair_chunk`, `record_rebuilt`).
//!
//! The worker wakes when a read reports a bad shard or a node comes back,
//! and on a short interval for shards a write could not place.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::{Step, WakeOn, Worker};
use crate::chunk::{placement, NodeState, Placement};
use crate::error::Result;
use crate::meta::{ChunkRecord, ShardState};
use crate::node::ShardKey;
use crate::service::wake::WorkerStatus;
use crate::service::Context;

/// Chunks taken from the repair queue per pass.
const BATCH: usize = 1000;
/// A pass runs at least this often (shards a write left unplaced).
const EVERY: Duration = Duration::from_secs(2);
/// After a wake-up, how long the rest of a burst of reports may join it.
const SETTLE: Duration = Duration::from_millis(100);

/// What one repair pass did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Repaired {
    /// Shards rebuilt.
    pub repaired: u64,
    /// Chunks with unhealthy shards this pass looked at, and how many of
    /// them it rebuilt something of.
    pub queued: u64,
    pub chunks_fixed: u64,
}

/// Record shards the read path found bad, then rebuild every unhealthy
/// shard that has somewhere to go.
pub(super) fn repair_pending(ctx: &Context, status: Option<&WorkerStatus>) -> Result<Repaired> {
    for bad in ctx.store.take_bad_shards() {
        let state = if bad.fault.is_missing() {
            ShardState::Missing
        } else {
            ShardState::Corrupt
        };
        ctx.meta
            .set_shard_state(bad.chunk_id, bad.shard_index, state)?;
        if state == ShardState::Corrupt {
            ctx.metrics.add_corrupt_shards_found(1);
        }
    }
    let queue = ctx.meta.chunks_needing_repair(BATCH)?;
    let mut done = Repaired {
        queued: queue.len() as u64,
        ..Repaired::default()
    };
    if let Some(s) = status {
        s.set_queue(done.queued);
    }
    for (_, rec) in queue {
        if ctx.is_shutting_down() {
            break;
        }
        match repair_chunk(ctx, &rec, None) {
            Ok(n) => {
                done.repaired += n;
                done.chunks_fixed += (n > 0) as u64;
                if let Some(s) = status {
                    s.add_done(n);
                    s.set_queue(done.queued - done.chunks_fixed);
                }
            }
            Err(e) => log::debug!("repair of chunk {:016x} deferred: {e}", rec.layout.chunk_id),
        }
    }
    if done.repaired > 0 {
        ctx.metrics.add_repaired_shards(done.repaired);
        log::info!("repaired {} shard(s)", done.repaired);
    }
    Ok(done)
}

/// Where shard `index` of a chunk should be rebuilt: its node if up, else
/// another up node that holds no shard of the chunk, keeping regions even.
pub(super) fn repair_target(
    ctx: &Context,
    chunk_id: u64,
    placement: &Placement,
    index: usize,
) -> Option<usize> {
    if let Some(n) = placement[index] {
        if ctx.store.is_up(n) {
            return Some(n);
        }
    }
    let others: Vec<usize> = placement
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .filter_map(|(_, p)| *p)
        .collect();
    let candidates: Vec<placement::Candidate> = ctx
        .store
        .node_status()
        .iter()
        .enumerate()
        .map(|(i, s)| placement::Candidate {
            region: ctx
                .store
                .region_names()
                .iter()
                .position(|r| r == ctx.store.node_region(i))
                .unwrap_or(0),
            usable: s.state == NodeState::Up,
        })
        .collect();
    placement::order(&candidates, chunk_id, &others)
        .into_iter()
        .next()
}

/// Rebuild the unhealthy shards of one chunk (all of them, or only those
/// in `only`). Returns shards rebuilt.
pub(super) fn repair_chunk(
    ctx: &Context,
    rec: &ChunkRecord,
    only: Option<&BTreeSet<usize>>,
) -> Result<u64> {
    let mut targets = Vec::new();
    for i in 0..rec.layout.shard_count() {
        if only.is_some_and(|o| !o.contains(&i)) {
            continue;
        }
        if rec.states[i] == ShardState::Ok && rec.placement[i].is_some() && only.is_none() {
            continue;
        }
        if let Some(t) = repair_target(ctx, rec.layout.chunk_id, &rec.placement, i) {
            if !targets.iter().any(|&(_, n)| n == t) {
                targets.push((i, t));
            }
        }
    }
    if targets.is_empty() {
        return Ok(0);
    }
    let timeout = Duration::from_secs(ctx.config.recovery.timeout);
    let mut placement = rec.placement.clone();
    for &(i, _) in &targets {
        placement[i] = None;
    }
    // Never read from the shards being replaced.
    let readable: Placement = placement
        .iter()
        .enumerate()
        .map(|(i, p)| p.filter(|_| rec.states[i] == ShardState::Ok))
        .collect();
    let rebuilt = ctx
        .store
        .rebuild(&rec.layout, &readable, &targets, timeout)?;
    record_rebuilt(ctx, rec.layout.chunk_id, &rec.placement, &rebuilt)?;
    Ok(rebuilt.len() as u64)
}

/// Point the shard map at rebuilt shards, then remove the copies they
/// replace. A chunk that stopped being live meanwhile keeps nothing.
pub(super) fn record_rebuilt(
    ctx: &Context,
    chunk_id: u64,
    old: &Placement,
    rebuilt: &[(usize, usize, u32)],
) -> Result<()> {
    for &(i, node, sum) in rebuilt {
        let key = ShardKey {
            chunk_id,
            index: i as u16,
        };
        if !ctx.meta.set_shard_ok(chunk_id, i, node, sum)? {
            let _ = ctx.store.delete_shard_on(node, key);
            continue;
        }
        if let Some(previous) = old[i] {
            if previous != node {
                let _ = ctx.store.delete_shard_on(previous, key);
            }
        }
    }
    Ok(())
}

/// The repair-queue worker.
pub(super) struct RepairQueue {
    pub(super) ctx: Arc<Context>,
}

impl Worker for RepairQueue {
    fn name(&self) -> &'static str {
        "repair"
    }

    fn wake_on(&self) -> WakeOn {
        WakeOn::signal(&self.ctx.wake.repair)
            .every(Some(EVERY))
            .settle(SETTLE)
            .at_start()
    }

    fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
        status.doing("repairing unhealthy shards");
        let done = repair_pending(&self.ctx, Some(status))?;
        status.doing(match (done.queued, done.repaired) {
            (0, _) => "no unhealthy shards".to_string(),
            (q, 0) => format!("{q} chunk(s) wait for a node to rebuild on"),
            (q, r) => format!("rebuilt {r} shard(s) of {q} chunk(s)"),
        });
        status.set_queue(done.queued - done.chunks_fixed);
        // A full batch with progress: the queue may hold more.
        let more = done.queued == BATCH as u64 && done.repaired > 0;
        Ok(if more { Step::More } else { Step::Idle })
    }
}
