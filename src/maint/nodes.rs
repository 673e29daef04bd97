//! Workers that look at the node folders themselves: the health probe
//! (every `recovery.health_interval_secs`, or on request: the metadata
//! database file still in place, then folder, identity file, writability
//! of each node; a node that came back wakes the repair
//! worker, one that came back empty wakes node recovery when
//! `recovery.auto` is on) and the start-up orphan sweep (shard files no
//! metadata refers to, left by writes a crash cut short; those written
//! just before the start get a second look a few seconds later).
//!
//! Neither runs because files were written: commits never wake them.

use std::sync::Arc;
use std::time::Duration;

use super::{Step, WakeOn, Worker};
use crate::chunk::NodeState;
use crate::error::Result;
use crate::node::ShardKey;
use crate::service::wake::{Woken, WorkerStatus};
use crate::service::Context;

/// How much older than this daemon's start a shard file must be before the
/// start-up pass of the orphan sweep may delete it.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// How far a file time may lag the clock it was read from: the kernel stamps
/// files from a coarse clock (a tick behind), so a shard this daemon wrote
/// right after its start can look a few milliseconds older than the start.
const FILE_CLOCK_LAG: Duration = Duration::from_millis(100);

/// How long after its start-up pass the sweep comes back for the files that
/// were too young then.
const ORPHAN_RECHECK: Duration = Duration::from_secs(4);

/// What one pass of the orphan sweep did.
pub(super) struct SweepPass {
    pub(super) freed: usize,
    /// Shard files no metadata referred to that were written within
    /// `ORPHAN_GRACE` before this daemon started (and not within
    /// `FILE_CLOCK_LAG` of it, where its own writes may land): spared by
    /// this pass, they are looked at again by `sweep_young_orphans`.
    pub(super) too_young: Vec<(usize, ShardKey)>,
}

/// Remove shard files no metadata refers to (writes cut short by a crash).
/// Only files older than this daemon's start are touched.
pub(super) fn sweep_orphans(ctx: &Context) -> Result<SweepPass> {
    // File times can lag the clock (coarse kernel timestamps, 1-2 s
    // granularity on some filesystems): a shard this daemon is writing
    // right now must never look older than its start.
    let cutoff = ctx
        .started
        .checked_sub(ORPHAN_GRACE)
        .unwrap_or(std::time::UNIX_EPOCH);
    let before_start = ctx
        .started
        .checked_sub(FILE_CLOCK_LAG)
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut pass = SweepPass {
        freed: 0,
        too_young: Vec::new(),
    };
    for i in 0..ctx.store.nodes().len() {
        if !ctx.store.is_up(i) {
            continue;
        }
        let known = ctx.meta.shard_keys_on_node(i)?;
        for (key, mtime) in ctx.store.list_shards_on(i)? {
            if known.contains(&(key.chunk_id, key.index)) {
                continue;
            }
            if mtime < cutoff {
                ctx.store.delete_shard_on(i, key)?;
                pass.freed += 1;
            } else if mtime < before_start {
                // Written just before this start (a crash and a quick
                // restart): the next pass decides, once this daemon's own
                // writes of that moment are committed or pinned.
                pass.too_young.push((i, key));
            }
        }
    }
    Ok(pass)
}

/// The sweep's second look at the files its start-up pass found too young:
/// those still unknown to the metadata and not pinned by a write of this
/// daemon (an uncommitted chunk is pinned until its commit) are orphans.
pub(super) fn sweep_young_orphans(ctx: &Context, young: &[(usize, ShardKey)]) -> Result<usize> {
    let pinned = ctx.pins.pinned();
    let mut freed = 0;
    for i in 0..ctx.store.nodes().len() {
        let on_node: Vec<ShardKey> = young
            .iter()
            .filter(|(node, key)| *node == i && !pinned.contains(&key.chunk_id))
            .map(|(_, key)| *key)
            .collect();
        if on_node.is_empty() || !ctx.store.is_up(i) {
            continue;
        }
        // Read after the pins: a chunk unpinned since was committed first.
        let known = ctx.meta.shard_keys_on_node(i)?;
        for key in on_node {
            if !known.contains(&(key.chunk_id, key.index)) {
                ctx.store.delete_shard_on(i, key)?;
                freed += 1;
            }
        }
    }
    Ok(freed)
}

/// The node health probe.
pub(super) struct HealthProbe {
    pub(super) ctx: Arc<Context>,
}

impl Worker for HealthProbe {
    fn name(&self) -> &'static str {
        "health"
    }

    fn wake_on(&self) -> WakeOn {
        // No first probe: the store probed every node when it opened.
        let every = Duration::from_secs(self.ctx.config.recovery.health_interval_secs);
        WakeOn::signal(&self.ctx.wake.health).every(Some(every))
    }

    fn first_status(&self) -> String {
        "first probe after the health interval".into()
    }

    fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
        // A metadata database deleted under us is found here even when
        // nothing writes (the check logs it and saves a copy once).
        let metadata_lost = self.ctx.meta.lost_reason().is_some();
        status.doing("probing nodes");
        self.ctx.probe_nodes();
        let states = self.ctx.store.node_status();
        let down: Vec<&str> = states
            .iter()
            .zip(self.ctx.store.nodes())
            .filter(|(s, _)| s.state != NodeState::Up)
            .map(|(_, n)| n.id())
            .collect();
        let came_back_empty = states.iter().any(|s| s.state == NodeState::Empty);
        if came_back_empty && self.ctx.config.recovery.auto {
            self.ctx.wake.recovery.notify();
        }
        status.add_done(1);
        status.set_queue(down.len() as u64);
        let nodes = match &down[..] {
            [] => format!("all {} nodes up", states.len()),
            _ => format!(
                "{} of {} nodes up; not up: {}",
                states.len() - down.len(),
                states.len(),
                down.join(", ")
            ),
        };
        status.doing(match metadata_lost {
            true => format!("metadata database lost, writes refused; {nodes}"),
            false => nodes,
        });
        Ok(Step::Idle)
    }
}

/// The start-up orphan sweep: one pass, and a second one `ORPHAN_RECHECK`
/// later when the first spared files written just before the start; then
/// it stops (a failed pass waits for an explicit request).
pub(super) struct OrphanSweep {
    pub(super) ctx: Arc<Context>,
}

impl Worker for OrphanSweep {
    fn name(&self) -> &'static str {
        "orphan-sweep"
    }

    fn wake_on(&self) -> WakeOn {
        WakeOn::signal(&self.ctx.wake.sweep).at_start()
    }

    fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
        if self.ctx.restored_from_snapshot {
            status.doing(
                "skipped: the metadata was restored from a snapshot, so shards of files written after it are kept until `minigcs fsck --rebuild` has recovered them",
            );
            return Ok(Step::Done);
        }
        status.doing("sweeping orphan shard files");
        let pass = sweep_orphans(&self.ctx)?;
        if pass.freed > 0 {
            log::info!(
                "freed {} orphan shard(s) left by an earlier run",
                pass.freed
            );
        }
        status.add_done(pass.freed as u64);
        let mut freed = pass.freed;
        if !pass.too_young.is_empty() {
            status.doing(format!(
                "{} shard file(s) written just before the start: looking again in {}s",
                pass.too_young.len(),
                ORPHAN_RECHECK.as_secs()
            ));
            // Shutdown closes the signal: no second look then.
            if self
                .ctx
                .wake
                .sweep
                .wait(Some(ORPHAN_RECHECK), Duration::ZERO)
                == Woken::Closed
            {
                return Ok(Step::Done);
            }
            let young = sweep_young_orphans(&self.ctx, &pass.too_young)?;
            if young > 0 {
                log::info!("freed {young} orphan shard(s) written just before this start");
            }
            status.add_done(young as u64);
            freed += young;
        }
        status.doing(format!("start-up sweep freed {freed} orphan shard file(s)"));
        Ok(Step::Done)
    }
}
