//! Background care of the store, as workers: each concern is one `Worker`
//! (one step of work at a time, its own wake-up signal and/or interval, a
//! published status) driven on its own thread by the `runner`, and stopped
//! when the service shuts down.
//!
//! - `collect`: frees the shards of superseded chunks (woken by commits,
//!   deletes and purges that superseded or freed chunks);
//! - `repair`: records shards the read path found bad and rebuilds unhealthy
//!   shards (woken by a bad-shard report or a node coming back);
//! - `recovery`: rebuilds a whole node — resumes recoveries a stop cut short,
//!   and rebuilds a node that came back empty when `recovery.auto` is on;
//!   `ctl recover` runs the same code synchronously;
//! - `scrub`: verifies every shard on `recovery.scrub_interval_secs`,
//!   rate-limited; `ctl scrub` runs the same code synchronously;
//! - `nodes`: node health probes on `recovery.health_interval_secs`, and the
//!   start-up sweep of orphan shard files a crash left behind (a second
//!   look a few seconds later at those written just before the start);
//! - `journal`: writes journal records of unsynced changes to the nodes
//!   every `metadata.journal_flush_ms`;
//! - `segments`: the segment cleaner, rewriting mostly-dead segment files
//!   of the local nodes on `segments.cleaner_interval_secs`, rate-limited;
//! - `snapshot`: metadata snapshots to the nodes on
//!   `metadata.snapshot_interval_secs` when the database changed; `ctl
//!   snapshot` runs the same code synchronously.
//!
//! Workers reach the store only through the shared service context
//! (`service::Context`), never through the facade; this module also gives
//! the facade its maintenance methods (`start_workers`, `recover_node`,
//! `scrub`, `collect_garbage`, `sweep_orphans`), which call the same code
//! the workers run. Reports about the cluster stay in the service.

mod collect;
mod journal;
mod nodes;
mod recovery;
mod repair;
mod runner;
mod scrub;
mod segments;
mod snapshot;

pub use runner::Workers;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::report::{Progress, RecoveryReport, ScrubReport};
use crate::service::wake::{Signal, WorkerStatus};
use crate::service::Service;

/// What a step of work found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More work is queued: run the next step at once.
    More,
    /// Nothing left for now: wait for the next wake-up or interval.
    Idle,
    /// Finished for good: the worker's thread ends.
    Done,
}

/// How a worker waits for work.
pub struct WakeOn {
    /// Its own wake-up signal (closed at shutdown).
    pub signal: Arc<Signal>,
    /// Run anyway when this long passes without a wake-up.
    pub every: Option<Duration>,
    /// After a wake-up, wait this much longer so a burst makes one pass.
    pub settle: Duration,
    /// Run a first step at start, before any wake-up.
    pub at_start: bool,
}

impl WakeOn {
    /// Wake on `signal` only: no interval, no settling, no first run.
    pub fn signal(signal: &Arc<Signal>) -> WakeOn {
        WakeOn {
            signal: signal.clone(),
            every: None,
            settle: Duration::ZERO,
            at_start: false,
        }
    }

    /// Also run when `every` passes without a wake-up.
    pub fn every(self, every: Option<Duration>) -> WakeOn {
        WakeOn { every, ..self }
    }

    /// Let a burst of wake-ups settle for `settle` before the step.
    pub fn settle(self, settle: Duration) -> WakeOn {
        WakeOn { settle, ..self }
    }

    /// Run a first step at start.
    pub fn at_start(self) -> WakeOn {
        WakeOn {
            at_start: true,
            ..self
        }
    }
}

/// One background concern, driven by the runner on its own thread.
pub trait Worker: Send {
    /// Its name in `ctl workers` and the name of its thread (≤ 15 bytes).
    fn name(&self) -> &'static str;

    /// How it waits for work.
    fn wake_on(&self) -> WakeOn;

    /// What `ctl workers` shows before the first step.
    fn first_status(&self) -> String {
        "waiting for work".into()
    }

    /// One step of work. It reports what it is doing, its queue and the
    /// items it finished on `status`; an error is recorded as its last.
    fn step(&mut self, status: &WorkerStatus) -> Result<Step>;
}

impl Service {
    /// Start every background worker on its own thread. They stop when the
    /// service shuts down; `Workers::stop` also waits for them.
    pub fn start_workers(&self) -> Workers {
        let ctx = self.context();
        let workers: Vec<Box<dyn Worker>> = vec![
            Box::new(collect::Collector { ctx: ctx.clone() }),
            Box::new(repair::RepairQueue { ctx: ctx.clone() }),
            Box::new(recovery::NodeRecovery::new(ctx)),
            Box::new(scrub::Scrubber::new(ctx)),
            Box::new(nodes::HealthProbe { ctx: ctx.clone() }),
            Box::new(nodes::OrphanSweep { ctx: ctx.clone() }),
            Box::new(snapshot::SnapshotWorker { ctx: ctx.clone() }),
            Box::new(journal::JournalFlusher { ctx: ctx.clone() }),
            Box::new(segments::SegmentCleaner {
                ctx: ctx.clone(),
                total: Default::default(),
            }),
        ];
        Workers::start(ctx, workers)
    }

    /// Delete the shards of superseded chunks, then forget them. Returns the
    /// chunks freed (chunks still being read wait for a later pass).
    pub fn collect_garbage(&self) -> Result<usize> {
        Ok(collect::collect(self.context())?.freed as usize)
    }

    /// Record shards the read path found bad, then rebuild every unhealthy
    /// shard that has somewhere to go. Returns shards rebuilt.
    pub fn repair_pending(&self) -> Result<u64> {
        Ok(repair::repair_pending(self.context(), None)?.repaired)
    }

    /// Remove shard files no metadata refers to (writes cut short by a
    /// crash). Only files older than this daemon's start are touched (the
    /// start-up worker looks again later at those written just before it).
    pub fn sweep_orphans(&self) -> Result<usize> {
        Ok(nodes::sweep_orphans(self.context())?.freed)
    }

    /// Rebuild everything that belongs on `node_id` (its folder re-created
    /// if missing or empty). Idempotent; parallel across chunks; reports
    /// progress. At the end a fresh metadata snapshot is taken, so the
    /// snapshot copies a replaced node held are back on m+1 nodes (the
    /// rebuilt one among them when it is a preferred holder).
    pub fn recover_node(
        &self,
        node_id: &str,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<RecoveryReport> {
        let report = recovery::recover_node(self.context(), node_id, progress)?;
        if let Err(e) = snapshot::take(self.context(), true) {
            log::warn!("metadata snapshot after recovering node {node_id}: {e}");
        }
        snapshot::restore_journal_copies(self.context(), node_id);
        Ok(report)
    }

    /// Before serving: when the journal on the nodes does not continue the
    /// database (see `restore::catch_up_at_start`), take a snapshot so
    /// that what is acknowledged from now on can be restored.
    pub fn anchor_journal(&self) {
        let Some(why) = self.context().snapshot_needed.lock().clone() else {
            return;
        };
        log::info!("{why}: taking a metadata snapshot before serving");
        if let Err(e) = snapshot::take(self.context(), true) {
            // The store is degraded until a snapshot is taken (health says
            // so); the snapshot worker tries again at its start.
            log::error!("metadata snapshot at start: {e}; changes are not restorable from the nodes until a snapshot is taken");
        }
    }

    /// Take a metadata snapshot now and store it on m+1 nodes across the
    /// regions (`ctl snapshot`). Nothing is written when the database did
    /// not change since the newest snapshot and that one has its copies.
    pub fn snapshot_metadata(&self) -> Result<crate::report::SnapshotReport> {
        snapshot::take(self.context(), false)
    }

    /// The snapshot part of the health report, and whether the newest
    /// snapshot has fewer copies on up nodes than wanted.
    pub(crate) fn snapshot_health(&self) -> (crate::report::SnapshotHealth, bool) {
        snapshot::health(self.context())
    }

    /// Verify every shard of every live chunk (parity too); with `repair`,
    /// rebuild the bad ones.
    pub fn scrub(
        &self,
        repair: bool,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<ScrubReport> {
        scrub::scrub(self.context(), repair, progress)
    }
}

/// Milliseconds since the epoch, as recovery records store times.
fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sleeps as needed so that `bytes` over `started` stays under `rate` B/s.
fn throttle(rate: u64, started: Instant, bytes: u64) {
    if rate == 0 {
        return;
    }
    let should_take = Duration::from_secs_f64(bytes as f64 / rate as f64);
    let elapsed = started.elapsed();
    if should_take > elapsed {
        std::thread::sleep(should_take - elapsed);
    }
}
