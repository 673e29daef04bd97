//! The collector: deletes the shards of chunks that left their file (an
//! overwrite, truncation, delete or purge put them in the collection queue)
//! and then forgets their records. Chunks pinned by a reader or an
//! unfinished commit are skipped until a later pass.
//!
//! Only commits that superseded chunks, deletes and purges wake it, and a
//! burst of them coalesces into one pass after a short settle time; a slow
//! interval catches chunks whose last reader has since let go. Writing new
//! files never wakes it.

use std::sync::Arc;
use std::time::Duration;

use super::{Step, WakeOn, Worker};
use crate::error::Result;
use crate::meta::ChunkRecord;
use crate::service::wake::WorkerStatus;
use crate::service::Context;

/// Chunks taken from the queue per metadata query.
const BATCH: usize = 256;
/// A pass runs at least this often (pinned chunks become free unannounced).
const EVERY: Duration = Duration::from_secs(2);
/// After a wake-up, how long the rest of a burst of commits may join it.
const SETTLE: Duration = Duration::from_millis(100);

/// What one collection pass did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Collected {
    /// Chunks whose shards were deleted and records forgotten.
    pub freed: u64,
    /// Chunks still in use by a reader or a commit, left for later.
    pub waiting: u64,
}

/// Delete the shards of superseded chunks, then forget them.
pub(super) fn collect(ctx: &Context) -> Result<Collected> {
    let mut done = Collected::default();
    // Without a database to forget them in, deleting would only repeat
    // (the refusal of writes was logged when it began).
    if ctx.meta.lost_reason().is_some() {
        return Ok(done);
    }
    loop {
        let dead = ctx.meta.dead_chunks(BATCH)?;
        let seen = dead.len();
        let pinned = ctx.pins.pinned();
        let dead: Vec<ChunkRecord> = dead
            .into_iter()
            .filter(|c| !pinned.contains(&c.layout.chunk_id))
            .collect();
        done.waiting = (seen - dead.len()) as u64;
        if dead.is_empty() {
            return Ok(done);
        }
        for c in &dead {
            ctx.store.delete_chunk(&c.layout, &c.placement);
            ctx.cache.remove(c.layout.chunk_id);
        }
        let ids: Vec<u64> = dead.iter().map(|c| c.layout.chunk_id).collect();
        ctx.meta.forget_chunks(&ids)?;
        done.freed += ids.len() as u64;
        if ids.len() < BATCH || ctx.is_shutting_down() {
            return Ok(done);
        }
    }
}

/// The collection worker.
pub(super) struct Collector {
    pub(super) ctx: Arc<Context>,
}

impl Worker for Collector {
    fn name(&self) -> &'static str {
        "collector"
    }

    fn wake_on(&self) -> WakeOn {
        // At start: chunks superseded before a stop are still queued.
        WakeOn::signal(&self.ctx.wake.collector)
            .every(Some(EVERY))
            .settle(SETTLE)
            .at_start()
    }

    fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
        status.doing("collecting superseded chunks");
        let done = collect(&self.ctx)?;
        status.add_done(done.freed);
        status.set_queue(done.waiting);
        status.doing(match (done.freed, done.waiting) {
            (0, 0) => "nothing to collect".to_string(),
            (freed, 0) => format!("freed {freed} superseded chunk(s)"),
            (freed, waiting) => {
                format!("freed {freed} superseded chunk(s); {waiting} still in use")
            }
        });
        Ok(Step::Idle)
    }
}
