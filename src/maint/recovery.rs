//! Node recovery: rebuild everything that belongs on one node — its folder
//! re-created when it is missing or empty — from the other nodes, in
//! parallel across chunks, rate-limited, with progress and MTTR recorded
//! (detect → start → done) both in the metrics and in the metadata's
//! recovery records. `ctl recover` and `POST /cluster/recovery/{node}` run
//! it synchronously; the worker resumes recoveries a stop cut short and,
//! with `recovery.auto`, rebuilds a node the health probe found back empty.
//! Recoveries run one at a time (`Context::recovery_lock`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::repair::{record_rebuilt, repair_target};
use super::{millis, throttle, Step, WakeOn, Worker};
use crate::chunk::{NodeState, Placement};
use crate::error::{Error, Result};
use crate::meta::ShardState;
use crate::report::{Progress, RecoveryReport};
use crate::service::wake::WorkerStatus;
use crate::service::Context;

/// The node-recovery worker.
pub(super) struct NodeRecovery {
    pub(super) ctx: Arc<Context>,
    /// Recoveries a stop cut short are resumed by the first step.
    resumed: bool,
}

impl NodeRecovery {
    pub fn new(ctx: &Arc<Context>) -> NodeRecovery {
        NodeRecovery {
            ctx: ctx.clone(),
            resumed: false,
        }
    }

    /// Nodes to rebuild now: those a stop interrupted (first step only),
    /// then, with `recovery.auto`, those whose folder came back empty.
    fn nodes_to_recover(&mut self) -> Result<Vec<(String, &'static str)>> {
        let mut nodes = Vec::new();
        if !self.resumed {
            self.resumed = true;
            for (id, node, _) in self.ctx.meta.interrupted_recoveries()? {
                self.ctx.meta.update_recovery(
                    id,
                    "interrupted",
                    0,
                    0,
                    0,
                    Some(millis(SystemTime::now())),
                    Some("daemon stopped"),
                )?;
                log::info!("resuming the interrupted recovery of node {node}");
                nodes.push((node, "resumed"));
            }
            return Ok(nodes);
        }
        if self.ctx.config.recovery.auto {
            for (i, s) in self.ctx.store.node_status().iter().enumerate() {
                if s.state == NodeState::Empty {
                    let id = self.ctx.store.nodes()[i].id().to_string();
                    log::info!("node {id} came back empty: rebuilding it");
                    nodes.push((id, "automatic"));
                }
            }
        }
        Ok(nodes)
    }
}

impl Worker for NodeRecovery {
    fn name(&self) -> &'static str {
        "recovery"
    }

    fn wake_on(&self) -> WakeOn {
        WakeOn::signal(&self.ctx.wake.recovery).at_start()
    }

    fn first_status(&self) -> String {
        "waiting for a node to rebuild".into()
    }

    fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
        let nodes = self.nodes_to_recover()?;
        status.set_queue(nodes.len() as u64);
        let mut last_error = None;
        let mut rebuilt = 0;
        for (left, (node, why)) in (1..=nodes.len()).rev().zip(&nodes) {
            if self.ctx.is_shutting_down() {
                break;
            }
            status.doing(format!("{why} recovery of {node}"));
            let progress = |p: &Progress| {
                status.doing(format!(
                    "{why} recovery of {node}: {}/{} chunks",
                    p.done, p.total
                ))
            };
            match recover_node(&self.ctx, node, &progress) {
                Ok(r) => {
                    log::info!("{}", r.message);
                    super::snapshot::node_rebuilt(&self.ctx, node);
                    status.add_done(1);
                    rebuilt += 1;
                }
                Err(e) => {
                    log::warn!("{why} recovery of {node}: {e}");
                    last_error = Some(Error::Other(format!("{why} recovery of {node}: {e}")));
                }
            }
            status.set_queue(left as u64 - 1);
        }
        status.doing(match nodes.len() {
            0 => "waiting for a node to rebuild".to_string(),
            n => format!("rebuilt {rebuilt} of {n} node(s)"),
        });
        match last_error {
            Some(e) => Err(e),
            None => Ok(Step::Idle),
        }
    }
}

/// Rebuild everything that belongs on `node_id` (its folder re-created if
/// missing or empty). Idempotent; parallel across chunks; reports progress.
pub(super) fn recover_node(
    ctx: &Context,
    node_id: &str,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<RecoveryReport> {
    let idx = ctx
        .store
        .node_index(node_id)
        .ok_or_else(|| Error::UnknownNode(node_id.to_string()))?;
    let _one_at_a_time = ctx.recovery_lock.lock();
    let detected = ctx.store.node_status()[idx]
        .since
        .unwrap_or_else(SystemTime::now);
    let started_at = SystemTime::now();
    let started = Instant::now();
    let (state, _) = ctx.store.probe_node(idx);
    let fresh = state != NodeState::Up;
    if fresh {
        let reason = ctx.store.node_status()[idx].reason.clone();
        let folder_gone_or_empty = state == NodeState::Empty || reason.contains("missing");
        if !folder_gone_or_empty {
            return Err(Error::Other(format!(
                "node {node_id} cannot be rebuilt in place: {reason}"
            )));
        }
        ctx.store.initialize_node(idx)?;
        if !ctx.store.is_up(idx) {
            let reason = ctx.store.node_status()[idx].reason.clone();
            return Err(Error::Other(format!(
                "node {node_id} is still unusable after re-creating it: {reason}"
            )));
        }
    }
    let rec_id = ctx
        .meta
        .start_recovery(node_id, millis(detected), millis(started_at))?;
    // Work: every live chunk with a shard recorded here, plus chunks with
    // shards that were never placed.
    let mut ids: BTreeSet<u64> = ctx.meta.chunk_ids_on_node(idx)?.into_iter().collect();
    for (_, rec) in ctx.meta.chunks_needing_repair(usize::MAX >> 1)? {
        ids.insert(rec.layout.chunk_id);
    }
    let ids: Vec<u64> = ids.into_iter().collect();
    let total = ids.len() as u64;
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let shards = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let rate = ctx.config.recovery.rate_limit_bytes_per_sec;
    let retries = ctx.config.recovery.retry_attempts.max(1);
    let report = |force: bool| {
        let d = done.load(Ordering::Relaxed);
        if !force && !d.is_multiple_of(16) {
            return;
        }
        let b = bytes.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(1e-6);
        let per_chunk = secs / d.max(1) as f64;
        progress(&Progress {
            phase: "recover".into(),
            done: d,
            total,
            bytes: b,
            rate_bytes_per_sec: b as f64 / secs,
            eta_secs: (d > 0).then(|| per_chunk * (total - d) as f64),
        });
    };
    report(true);
    std::thread::scope(|s| {
        for _ in 0..ctx.config.recovery.parallelism {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                if n >= ids.len() || ctx.is_shutting_down() {
                    return;
                }
                let mut last_err = None;
                for _attempt in 0..retries {
                    match recover_chunk(ctx, ids[n], idx, fresh) {
                        Ok((sh, by)) => {
                            shards.fetch_add(sh, Ordering::Relaxed);
                            bytes.fetch_add(by, Ordering::Relaxed);
                            last_err = None;
                            break;
                        }
                        Err(e) => last_err = Some(e),
                    }
                }
                if let Some(e) = last_err {
                    crate::warn_limited!(
                        "chunk recovery",
                        "recovery of chunk {:016x}: {e}",
                        ids[n]
                    );
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                report(false);
                throttle(rate, started, bytes.load(Ordering::Relaxed));
            });
        }
    });
    report(true);
    let (total_shards, total_bytes, failed) =
        (shards.into_inner(), bytes.into_inner(), failed.into_inner());
    let finished = SystemTime::now();
    let detect_to_start = started_at.duration_since(detected).unwrap_or_default();
    let start_to_done = finished.duration_since(started_at).unwrap_or_default();
    let ok = failed == 0 && !ctx.is_shutting_down();
    let err_text = (!ok).then(|| format!("{failed} chunk(s) could not be rebuilt"));
    ctx.metrics.record_recovery(
        node_id,
        detect_to_start,
        start_to_done,
        total_bytes,
        total_shards,
        ok,
        err_text.as_deref(),
    );
    ctx.meta.update_recovery(
        rec_id,
        if ok {
            "done"
        } else if ctx.is_shutting_down() {
            "running"
        } else {
            "failed"
        },
        total,
        total - failed,
        total_bytes,
        Some(millis(finished)),
        err_text.as_deref(),
    )?;
    if total_shards > 0 {
        ctx.metrics.add_repaired_shards(total_shards);
    }
    let secs = start_to_done.as_secs_f64();
    let report = RecoveryReport {
        node_id: node_id.to_string(),
        message: if ok {
            format!("Recovery completed for node {node_id}")
        } else {
            format!(
                "Recovery of node {node_id} incomplete: {}",
                err_text.clone().unwrap_or_default()
            )
        },
        chunks_total: total,
        chunks_failed: failed,
        shards_rebuilt: total_shards,
        bytes_rebuilt: total_bytes,
        detect_to_start_ms: detect_to_start.as_secs_f64() * 1000.0,
        start_to_done_ms: secs * 1000.0,
        mttr_ms: (detect_to_start + start_to_done).as_secs_f64() * 1000.0,
        rebuild_rate_mb_per_sec: if secs > 0.0 {
            total_bytes as f64 / 1e6 / secs
        } else {
            0.0
        },
    };
    if !ok {
        return Err(Error::Unavailable(report.message));
    }
    Ok(report)
}

/// Rebuild what chunk `id` lacks on node `node`. Returns (shards, bytes).
fn recover_chunk(ctx: &Context, id: u64, node: usize, fresh: bool) -> Result<(u64, u64)> {
    let Some((Some(_), rec)) = ctx.meta.chunk_by_id(id)? else {
        return Ok((0, 0));
    };
    let mut want = BTreeSet::new();
    for i in 0..rec.layout.shard_count() {
        match rec.placement[i] {
            Some(n) if n == node => {
                let needs = fresh
                    || rec.states[i] != ShardState::Ok
                    || ctx.store.verify_shard(&rec.layout, i, node).is_err();
                if needs {
                    want.insert(i);
                }
            }
            None => {
                want.insert(i);
            }
            Some(n) if rec.states[i] != ShardState::Ok || !ctx.store.is_up(n) => {
                want.insert(i);
            }
            _ => {}
        }
    }
    if want.is_empty() {
        return Ok((0, 0));
    }
    // The recovering node takes back its own shard first; when it holds
    // none of this chunk it may take one shard that has no home. Every
    // other shard goes to an up node holding no shard of the chunk, so
    // the k+m shards stay on distinct nodes.
    let keep: Vec<usize> = rec
        .placement
        .iter()
        .enumerate()
        .filter(|(i, _)| !want.contains(i))
        .filter_map(|(_, p)| *p)
        .collect();
    let mut targets: Vec<(usize, usize)> = Vec::new();
    if let Some(&i) = want.iter().find(|&&i| rec.placement[i] == Some(node)) {
        targets.push((i, node));
    }
    for &i in &want {
        if targets.iter().any(|&(j, _)| j == i) {
            continue;
        }
        let taken: Vec<usize> = keep
            .iter()
            .copied()
            .chain(targets.iter().map(|&(_, n)| n))
            .collect();
        let t = if !taken.contains(&node) {
            Some(node)
        } else {
            // Only the shards that stay and the targets chosen so far
            // count as occupied (plus this shard's own node if still free).
            let mut p: Placement = vec![None; rec.placement.len()];
            for (j, slot) in p.iter_mut().enumerate() {
                if !want.contains(&j) {
                    *slot = rec.placement[j];
                }
            }
            for &(j, n) in &targets {
                p[j] = Some(n);
            }
            p[i] = rec.placement[i].filter(|n| !taken.contains(n));
            repair_target(ctx, id, &p, i).filter(|t| !taken.contains(t))
        };
        if let Some(t) = t {
            targets.push((i, t));
        }
    }
    let readable: Placement = rec
        .placement
        .iter()
        .enumerate()
        .map(|(i, p)| p.filter(|_| !want.contains(&i) && rec.states[i] == ShardState::Ok))
        .collect();
    let rebuilt = ctx.store.rebuild(
        &rec.layout,
        &readable,
        &targets,
        Duration::from_secs(ctx.config.recovery.timeout),
    )?;
    let shard_len = rec.layout.shard_len() as u64;
    record_rebuilt(ctx, id, &rec.placement, &rebuilt)?;
    Ok((rebuilt.len() as u64, rebuilt.len() as u64 * shard_len))
}
