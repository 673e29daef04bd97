//! Scrub: read every shard of every live chunk (parity too) and verify its
//! checksums; with repair, record the bad ones in the shard map and rebuild
//! them. Rate-limited by `recovery.rate_limit_bytes_per_sec`. `ctl scrub
//! [--repair]` runs it synchronously with progress; the worker runs it with
//! repair every `recovery.scrub_interval_secs` (never when that is 0).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::repair::repair_chunk;
use super::{throttle, Step, WakeOn, Worker};
use crate::chunk::ShardFault;
use crate::error::{Error, Result};
use crate::meta::ShardState;
use crate::report::{Progress, ScrubProblem, ScrubReport};
use crate::service::wake::WorkerStatus;
use crate::service::Context;

/// The periodic scrub worker.
pub(super) struct Scrubber {
    pub(super) ctx: Arc<Context>,
}

impl Scrubber {
    pub fn new(ctx: &Arc<Context>) -> Scrubber {
        Scrubber { ctx: ctx.clone() }
    }

    fn every(&self) -> Option<Duration> {
        let secs = self.ctx.config.recovery.scrub_interval_secs;
        (secs > 0).then(|| Duration::from_secs(secs))
    }
}

impl Worker for Scrubber {
    fn name(&self) -> &'static str {
        "scrub"
    }

    fn wake_on(&self) -> WakeOn {
        WakeOn::signal(&self.ctx.wake.scrub).every(self.every())
    }

    fn first_status(&self) -> String {
        match self.every() {
            Some(every) => format!("first scrub in {}s", every.as_secs()),
            None => "periodic scrub off (recovery.scrub_interval_secs: 0)".into(),
        }
    }

    fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
        status.doing("scrubbing");
        let progress = |p: &Progress| status.doing(format!("scrubbing: {} chunks checked", p.done));
        let r = scrub(&self.ctx, true, &progress)?;
        status.add_done(r.chunks_checked);
        if r.corrupt + r.missing > 0 {
            log::warn!(
                "background scrub: {} corrupt, {} missing, {} repaired",
                r.corrupt,
                r.missing,
                r.repaired
            );
        }
        status.set_queue(r.unrepairable);
        status.doing(format!(
            "last scrub: {} chunks, {} corrupt, {} missing, {} repaired",
            r.chunks_checked, r.corrupt, r.missing, r.repaired
        ));
        Ok(Step::Idle)
    }
}

/// Verify every shard of every live chunk (parity too); with `repair`,
/// rebuild the bad ones.
pub(super) fn scrub(
    ctx: &Context,
    repair: bool,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<ScrubReport> {
    let mut report = ScrubReport::default();
    let started = Instant::now();
    let mut after = None;
    let rate = ctx.config.recovery.rate_limit_bytes_per_sec;
    loop {
        let ids = ctx.meta.live_chunk_ids(after, 512)?;
        let Some(&last) = ids.last() else { break };
        after = Some(last);
        for id in ids {
            if ctx.is_shutting_down() {
                return Ok(report);
            }
            let Some((Some(_), rec)) = ctx.meta.chunk_by_id(id)? else {
                continue;
            };
            report.chunks_checked += 1;
            let mut bad = BTreeSet::new();
            let mut problems = Vec::new();
            for i in 0..rec.layout.shard_count() {
                report.shards_checked += 1;
                let problem = match rec.placement[i] {
                    None => Some(ShardFault::NotPlaced),
                    Some(n) if !ctx.store.is_up(n) => Some(ShardFault::NodeDown {
                        node: ctx.store.nodes()[n].id().to_string(),
                    }),
                    Some(n) => match ctx.store.verify_shard(&rec.layout, i, n) {
                        Ok(()) => {
                            report.bytes_checked += rec.layout.shard_len() as u64;
                            None
                        }
                        // Nothing is known about the shard: stop rather
                        // than report or rebuild a healthy one.
                        Err(ShardFault::NotChecked { reason }) => {
                            return Err(Error::Unavailable(format!(
                                "scrub stopped at chunk {id:016x}: {reason}"
                            )))
                        }
                        Err(fault) => Some(fault),
                    },
                };
                if let Some(fault) = problem {
                    if !fault.is_missing() {
                        report.corrupt += 1;
                        ctx.metrics.add_corrupt_shards_found(1);
                        // A plain scrub only reports; with --repair the
                        // state is recorded so a failed rebuild is retried.
                        if repair {
                            ctx.meta.set_shard_state(id, i, ShardState::Corrupt)?;
                        }
                    } else {
                        report.missing += 1;
                        if repair && rec.placement[i].is_none_or(|n| ctx.store.is_up(n)) {
                            ctx.meta.set_shard_state(id, i, ShardState::Missing)?;
                        }
                    }
                    bad.insert(i);
                    problems.push(ScrubProblem {
                        chunk_id: format!("{id:016x}"),
                        shard_index: i,
                        node: rec.placement[i].map(|n| ctx.store.nodes()[n].id().to_string()),
                        problem: fault,
                        repaired: false,
                    });
                }
            }
            if repair && !bad.is_empty() {
                let mut fixed_rec = rec.clone();
                for &i in &bad {
                    fixed_rec.states[i] = ShardState::Corrupt;
                }
                match repair_chunk(ctx, &fixed_rec, Some(&bad)) {
                    Ok(n) => {
                        report.repaired += n;
                        ctx.metrics.add_repaired_shards(n);
                        if n as usize == bad.len() {
                            for p in &mut problems {
                                p.repaired = true;
                            }
                        }
                    }
                    Err(e) => {
                        crate::warn_limited!("scrub repair", "scrub repair of chunk {id:016x}: {e}")
                    }
                }
            }
            report.unrepairable +=
                problems.iter().filter(|p| !p.repaired).count() as u64 * repair as u64;
            report.problems.extend(problems);
            if report.chunks_checked % 16 == 0 {
                let secs = started.elapsed().as_secs_f64().max(1e-6);
                progress(&Progress {
                    phase: "scrub".into(),
                    done: report.chunks_checked,
                    total: 0,
                    bytes: report.bytes_checked,
                    rate_bytes_per_sec: report.bytes_checked as f64 / secs,
                    eta_secs: None,
                });
            }
            throttle(rate, started, report.bytes_checked);
        }
    }
    let journal = crate::journal::upkeep::check_copies(&ctx.store, &ctx.journal, repair)?;
    report.journal_segments = journal.segments;
    report.journal_copies_bad = journal.bad;
    report.journal_copies_repaired = journal.rewritten + journal.added;
    ctx.journal
        .note_bad_copies(journal.bad.saturating_sub(journal.rewritten));
    Ok(report)
}
