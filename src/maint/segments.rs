//! The segment cleaner: every `segments.cleaner_interval_secs`, on each
//! node that is up, rewrites the live entries of segment files whose dead
//! fraction passed `segments.cleaner_dead_fraction` and removes them (see
//! `node::segments`), copying at most `segments.cleaner_rate_bytes_per_sec`.
//! Its status names the segments, live and dead bytes across the nodes and
//! what it reclaimed; the per-node figures are in `ctl stats`/`ctl nodes`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{throttle, Step, WakeOn, Worker};
use crate::error::Result;
use crate::node::CleanPass;
use crate::service::wake::WorkerStatus;
use crate::service::Context;

/// The cleaner worker.
pub(super) struct SegmentCleaner {
    pub(super) ctx: Arc<Context>,
    /// What it did since the daemon started.
    pub(super) total: CleanPass,
}

/// One pass over every node that is up.
pub(super) fn clean_segments(ctx: &Context) -> Result<CleanPass> {
    let rate = ctx.config.segments.cleaner_rate_bytes_per_sec;
    let started = Instant::now();
    let mut copied = 0u64;
    let mut done = CleanPass::default();
    for (i, node) in ctx.store.nodes().iter().enumerate() {
        if !ctx.store.is_up(i) || ctx.is_shutting_down() {
            continue;
        }
        let pass = node.clean_segments(
            &mut |bytes| {
                copied += bytes;
                throttle(rate, started, copied);
            },
            &|| ctx.is_shutting_down(),
        );
        match pass {
            Ok(pass) => {
                done.segments_cleaned += pass.segments_cleaned;
                done.moved_bytes += pass.moved_bytes;
                done.reclaimed_bytes += pass.reclaimed_bytes;
            }
            Err(e) => log::warn!("segment cleaner on node {}: {e}", node.id()),
        }
    }
    Ok(done)
}

impl Worker for SegmentCleaner {
    fn name(&self) -> &'static str {
        "seg-cleaner"
    }

    fn wake_on(&self) -> WakeOn {
        let every = self.ctx.config.segments.cleaner_interval_secs.max(1);
        WakeOn::signal(&self.ctx.wake.segments).every(Some(Duration::from_secs(every)))
    }

    fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
        status.doing("cleaning segments");
        let pass = clean_segments(&self.ctx)?;
        self.total.segments_cleaned += pass.segments_cleaned;
        self.total.moved_bytes += pass.moved_bytes;
        self.total.reclaimed_bytes += pass.reclaimed_bytes;
        status.add_done(pass.segments_cleaned);
        let (mut segments, mut live, mut dead) = (0, 0, 0);
        for stats in self.ctx.store.executor_stats() {
            if let Some(f) = stats.segments {
                segments += f.segments;
                live += f.live_bytes;
                dead += f.dead_bytes;
            }
        }
        status.doing(format!(
            "{segments} segment(s): {live} live bytes, {dead} dead; reclaimed {} bytes ({} segment(s), {} bytes moved) since start",
            self.total.reclaimed_bytes, self.total.segments_cleaned, self.total.moved_bytes
        ));
        Ok(Step::Idle)
    }
}
