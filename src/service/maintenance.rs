//! Background care of the store: collecting superseded chunks, repairing
//! shards found missing or corrupt, node health checks, orphan sweeps after a
//! crash, scrub, and node recovery with MTTR. Also the health and statistics
//! reports that the control socket and the HTTP API both serve.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Service;
use crate::chunk::{placement, ChunkLayout, NodeState, Placement, ShardFault};
use crate::error::{Error, Result};
use crate::meta::{ChunkRecord, ShardState};
use crate::node::ShardKey;
use crate::report::{
    HealthReport, HealthStatus, InfoReport, NodeAvailability, NodeHealth, NodeListEntry, NodeStats,
    NodesReport, Progress, RecoveryReport, RegionStats, ScrubProblem, ScrubReport, StatsReport,
};

/// How much older than this daemon's start a shard file must be before the
/// orphan sweep may delete it.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

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

impl Service {
    /// Start the background workers. They stop when the service shuts down.
    pub fn start_workers(self: &Arc<Self>) {
        let this = self.clone();
        std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || {
                this.worker_loop(Duration::from_secs(2), |s| {
                    if let Err(e) = s.collect_garbage() {
                        log::warn!("chunk collection: {e}");
                    }
                    if let Err(e) = s.repair_pending() {
                        log::warn!("repair: {e}");
                    }
                })
            })
            .expect("spawn collector");
        let this = self.clone();
        let interval = Duration::from_secs(self.ctx.config.recovery.health_interval_secs);
        std::thread::Builder::new()
            .name("health".into())
            .spawn(move || this.worker_loop(interval, |s| s.check_health()))
            .expect("spawn health");
        let this = self.clone();
        std::thread::Builder::new()
            .name("sweeper".into())
            .spawn(move || {
                match this.sweep_orphans() {
                    Ok(n) if n > 0 => {
                        log::info!("freed {n} orphan shard(s) left by an earlier run")
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("orphan sweep: {e}"),
                }
                this.resume_recoveries();
            })
            .expect("spawn sweeper");
        let scrub_every = self.ctx.config.recovery.scrub_interval_secs;
        if scrub_every > 0 {
            let this = self.clone();
            std::thread::Builder::new()
                .name("scrubber".into())
                .spawn(move || {
                    this.worker_loop(Duration::from_secs(scrub_every), |s| {
                        match s.scrub(true, &|_| {}) {
                            Ok(r) if r.corrupt + r.missing > 0 => {
                                log::warn!(
                                    "background scrub: {} corrupt, {} missing, {} repaired",
                                    r.corrupt,
                                    r.missing,
                                    r.repaired
                                )
                            }
                            Ok(_) => {}
                            Err(e) => log::warn!("background scrub: {e}"),
                        }
                    })
                })
                .expect("spawn scrubber");
        }
    }

    fn worker_loop(&self, every: Duration, mut work: impl FnMut(&Service)) {
        loop {
            {
                let (lock, cv) = &self.ctx.wake;
                let mut woken = lock.lock();
                if !*woken {
                    cv.wait_for(&mut woken, every);
                }
                *woken = false;
            }
            if self.is_shutting_down() {
                return;
            }
            work(self);
        }
    }

    /// Delete the shards of superseded chunks, then forget them.
    pub fn collect_garbage(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let dead = self.ctx.meta.dead_chunks(256)?;
            let pinned = self.ctx.pins.pinned();
            let dead: Vec<ChunkRecord> = dead
                .into_iter()
                .filter(|c| !pinned.contains(&c.layout.chunk_id))
                .collect();
            if dead.is_empty() {
                return Ok(total);
            }
            for c in &dead {
                self.ctx.store.delete_chunk(&c.layout, &c.placement);
                self.ctx.cache.remove(c.layout.chunk_id);
            }
            let ids: Vec<u64> = dead.iter().map(|c| c.layout.chunk_id).collect();
            self.ctx.meta.forget_chunks(&ids)?;
            total += ids.len();
            if ids.len() < 256 {
                return Ok(total);
            }
        }
    }

    /// Record shards the read path found bad, then rebuild every unhealthy
    /// shard that has somewhere to go.
    pub fn repair_pending(&self) -> Result<u64> {
        for bad in self.ctx.store.take_bad_shards() {
            let state = if bad.fault.is_missing() {
                ShardState::Missing
            } else {
                ShardState::Corrupt
            };
            self.ctx
                .meta
                .set_shard_state(bad.chunk_id, bad.shard_index, state)?;
            if state == ShardState::Corrupt {
                self.ctx.metrics.add_corrupt_shards_found(1);
            }
        }
        let mut repaired = 0;
        for (_, rec) in self.ctx.meta.chunks_needing_repair(1000)? {
            if self.is_shutting_down() {
                break;
            }
            match self.repair_chunk(&rec, None) {
                Ok(n) => repaired += n,
                Err(e) => log::debug!("repair of chunk {:016x} deferred: {e}", rec.layout.chunk_id),
            }
        }
        if repaired > 0 {
            self.ctx.metrics.add_repaired_shards(repaired);
            log::info!("repaired {repaired} shard(s)");
        }
        Ok(repaired)
    }

    /// Where shard `index` of a chunk should be rebuilt: its node if up, else
    /// another up node that holds no shard of the chunk, keeping regions even.
    fn repair_target(&self, chunk_id: u64, placement: &Placement, index: usize) -> Option<usize> {
        if let Some(n) = placement[index] {
            if self.ctx.store.is_up(n) {
                return Some(n);
            }
        }
        let others: Vec<usize> = placement
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .filter_map(|(_, p)| *p)
            .collect();
        let candidates: Vec<placement::Candidate> = self
            .ctx
            .store
            .node_status()
            .iter()
            .enumerate()
            .map(|(i, s)| placement::Candidate {
                region: self
                    .ctx
                    .store
                    .region_names()
                    .iter()
                    .position(|r| r == self.ctx.store.node_region(i))
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
    fn repair_chunk(&self, rec: &ChunkRecord, only: Option<&BTreeSet<usize>>) -> Result<u64> {
        let mut targets = Vec::new();
        for i in 0..rec.layout.shard_count() {
            if only.is_some_and(|o| !o.contains(&i)) {
                continue;
            }
            if rec.states[i] == ShardState::Ok && rec.placement[i].is_some() && only.is_none() {
                continue;
            }
            if let Some(t) = self.repair_target(rec.layout.chunk_id, &rec.placement, i) {
                if !targets.iter().any(|&(_, n)| n == t) {
                    targets.push((i, t));
                }
            }
        }
        if targets.is_empty() {
            return Ok(0);
        }
        let timeout = Duration::from_secs(self.ctx.config.recovery.timeout);
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
        let rebuilt = self
            .ctx
            .store
            .rebuild(&rec.layout, &readable, &targets, timeout)?;
        self.record_rebuilt(rec.layout.chunk_id, &rec.placement, &rebuilt)?;
        Ok(rebuilt.len() as u64)
    }

    /// Point the shard map at rebuilt shards, then remove the copies they
    /// replace. A chunk that stopped being live meanwhile keeps nothing.
    fn record_rebuilt(
        &self,
        chunk_id: u64,
        old: &Placement,
        rebuilt: &[(usize, usize, u32)],
    ) -> Result<()> {
        for &(i, node, sum) in rebuilt {
            let key = ShardKey {
                chunk_id,
                index: i as u16,
            };
            if !self.ctx.meta.set_shard_ok(chunk_id, i, node, sum)? {
                let _ = self.ctx.store.delete_shard_on(node, key);
                continue;
            }
            if let Some(previous) = old[i] {
                if previous != node {
                    let _ = self.ctx.store.delete_shard_on(previous, key);
                }
            }
        }
        Ok(())
    }

    /// Probe every node; a node that came back wakes the repair worker.
    fn probe_nodes(&self) {
        if self
            .ctx
            .store
            .probe_all()
            .iter()
            .any(|(_, s)| *s == NodeState::Up)
        {
            self.wake_workers();
        }
    }

    /// Probe every node; rebuild automatically a node whose folder came back
    /// empty when `recovery.auto` is on.
    pub fn check_health(&self) {
        self.probe_nodes();
        if !self.ctx.config.recovery.auto {
            return;
        }
        for (i, s) in self.ctx.store.node_status().iter().enumerate() {
            if s.state == NodeState::Empty {
                let id = self.ctx.store.nodes()[i].id().to_string();
                log::info!("node {id} came back empty: rebuilding it");
                match self.recover_node(&id, &|_| {}) {
                    Ok(r) => log::info!("{}", r.message),
                    Err(e) => log::warn!("automatic recovery of {id}: {e}"),
                }
            }
        }
    }

    /// Remove shard files no metadata refers to (writes cut short by a crash).
    /// Only files older than this daemon's start are touched.
    pub fn sweep_orphans(&self) -> Result<usize> {
        // File times can lag the clock (coarse kernel timestamps, 1-2 s
        // granularity on some filesystems): a shard this daemon is writing
        // right now must never look older than its start.
        let cutoff = self
            .ctx
            .started
            .checked_sub(ORPHAN_GRACE)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut freed = 0;
        for (i, node) in self.ctx.store.nodes().iter().enumerate() {
            if !self.ctx.store.is_up(i) {
                continue;
            }
            let known = self.ctx.meta.shard_keys_on_node(i)?;
            for (key, mtime) in node.list_shards()? {
                if mtime < cutoff && !known.contains(&(key.chunk_id, key.index)) {
                    self.ctx.store.delete_shard_on(i, key)?;
                    freed += 1;
                }
            }
        }
        Ok(freed)
    }

    fn resume_recoveries(&self) {
        let Ok(list) = self.ctx.meta.interrupted_recoveries() else {
            return;
        };
        for (id, node, _) in list {
            let _ = self.ctx.meta.update_recovery(
                id,
                "interrupted",
                0,
                0,
                0,
                Some(millis(SystemTime::now())),
                Some("daemon stopped"),
            );
            log::info!("resuming the interrupted recovery of node {node}");
            match self.recover_node(&node, &|_| {}) {
                Ok(r) => log::info!("{}", r.message),
                Err(e) => log::warn!("resumed recovery of {node}: {e}"),
            }
        }
    }

    /// Rebuild everything that belongs on `node_id` (its folder re-created if
    /// missing or empty). Idempotent; parallel across chunks; reports progress.
    pub fn recover_node(
        &self,
        node_id: &str,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<RecoveryReport> {
        let idx = self
            .ctx
            .store
            .node_index(node_id)
            .ok_or_else(|| Error::UnknownNode(node_id.to_string()))?;
        let _one_at_a_time = self.ctx.recovery_lock.lock();
        let detected = self.ctx.store.node_status()[idx]
            .since
            .unwrap_or_else(SystemTime::now);
        let started_at = SystemTime::now();
        let started = Instant::now();
        let (state, _) = self.ctx.store.probe_node(idx);
        let fresh = state != NodeState::Up;
        if fresh {
            let reason = self.ctx.store.node_status()[idx].reason.clone();
            let folder_gone_or_empty = state == NodeState::Empty || reason.contains("missing");
            if !folder_gone_or_empty {
                return Err(Error::Other(format!(
                    "node {node_id} cannot be rebuilt in place: {reason}"
                )));
            }
            self.ctx.store.initialize_node(idx)?;
            if !self.ctx.store.is_up(idx) {
                let reason = self.ctx.store.node_status()[idx].reason.clone();
                return Err(Error::Other(format!(
                    "node {node_id} is still unusable after re-creating it: {reason}"
                )));
            }
        }
        let rec_id = self
            .ctx
            .meta
            .start_recovery(node_id, millis(detected), millis(started_at))?;
        // Work: every live chunk with a shard recorded here, plus chunks with
        // shards that were never placed.
        let mut ids: BTreeSet<u64> = self.ctx.meta.chunk_ids_on_node(idx)?.into_iter().collect();
        for (_, rec) in self.ctx.meta.chunks_needing_repair(usize::MAX >> 1)? {
            ids.insert(rec.layout.chunk_id);
        }
        let ids: Vec<u64> = ids.into_iter().collect();
        let total = ids.len() as u64;
        let next = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        let failed = AtomicU64::new(0);
        let shards = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let rate = self.ctx.config.recovery.rate_limit_bytes_per_sec;
        let retries = self.ctx.config.recovery.retry_attempts.max(1);
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
            for _ in 0..self.ctx.config.recovery.parallelism {
                s.spawn(|| loop {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if n >= ids.len() || self.is_shutting_down() {
                        return;
                    }
                    let mut last_err = None;
                    for _attempt in 0..retries {
                        match self.recover_chunk(ids[n], idx, fresh) {
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
                        log::warn!("recovery of chunk {:016x}: {e}", ids[n]);
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
        let ok = failed == 0 && !self.is_shutting_down();
        let err_text = (!ok).then(|| format!("{failed} chunk(s) could not be rebuilt"));
        self.ctx.metrics.record_recovery(
            node_id,
            detect_to_start,
            start_to_done,
            total_bytes,
            total_shards,
            ok,
            err_text.as_deref(),
        );
        self.ctx.meta.update_recovery(
            rec_id,
            if ok {
                "done"
            } else if self.is_shutting_down() {
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
            self.ctx.metrics.add_repaired_shards(total_shards);
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
    fn recover_chunk(&self, id: u64, node: usize, fresh: bool) -> Result<(u64, u64)> {
        let Some((Some(_), rec)) = self.ctx.meta.chunk_by_id(id)? else {
            return Ok((0, 0));
        };
        let mut want = BTreeSet::new();
        for i in 0..rec.layout.shard_count() {
            match rec.placement[i] {
                Some(n) if n == node => {
                    let needs = fresh
                        || rec.states[i] != ShardState::Ok
                        || self.ctx.store.verify_shard(&rec.layout, i, node).is_err();
                    if needs {
                        want.insert(i);
                    }
                }
                None => {
                    want.insert(i);
                }
                Some(n) if rec.states[i] != ShardState::Ok || !self.ctx.store.is_up(n) => {
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
                self.repair_target(id, &p, i).filter(|t| !taken.contains(t))
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
        let rebuilt = self.ctx.store.rebuild(
            &rec.layout,
            &readable,
            &targets,
            Duration::from_secs(self.ctx.config.recovery.timeout),
        )?;
        let shard_len = rec.layout.shard_len() as u64;
        self.record_rebuilt(id, &rec.placement, &rebuilt)?;
        Ok((rebuilt.len() as u64, rebuilt.len() as u64 * shard_len))
    }

    /// Verify every shard of every live chunk (parity too); with `repair`,
    /// rebuild the bad ones.
    pub fn scrub(
        &self,
        repair: bool,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        let started = Instant::now();
        let mut after = None;
        let rate = self.ctx.config.recovery.rate_limit_bytes_per_sec;
        loop {
            let ids = self.ctx.meta.live_chunk_ids(after, 512)?;
            let Some(&last) = ids.last() else { break };
            after = Some(last);
            for id in ids {
                if self.is_shutting_down() {
                    return Ok(report);
                }
                let Some((Some(_), rec)) = self.ctx.meta.chunk_by_id(id)? else {
                    continue;
                };
                report.chunks_checked += 1;
                let mut bad = BTreeSet::new();
                let mut problems = Vec::new();
                for i in 0..rec.layout.shard_count() {
                    report.shards_checked += 1;
                    let problem = match rec.placement[i] {
                        None => Some(ShardFault::NotPlaced),
                        Some(n) if !self.ctx.store.is_up(n) => Some(ShardFault::NodeDown {
                            node: self.ctx.store.nodes()[n].id().to_string(),
                        }),
                        Some(n) => match self.ctx.store.verify_shard(&rec.layout, i, n) {
                            Ok(()) => {
                                report.bytes_checked += rec.layout.shard_len() as u64;
                                None
                            }
                            Err(fault) => Some(fault),
                        },
                    };
                    if let Some(fault) = problem {
                        if !fault.is_missing() {
                            report.corrupt += 1;
                            self.ctx.metrics.add_corrupt_shards_found(1);
                            // A plain scrub only reports; with --repair the
                            // state is recorded so a failed rebuild is retried.
                            if repair {
                                self.ctx.meta.set_shard_state(id, i, ShardState::Corrupt)?;
                            }
                        } else {
                            report.missing += 1;
                            if repair && rec.placement[i].is_none_or(|n| self.ctx.store.is_up(n)) {
                                self.ctx.meta.set_shard_state(id, i, ShardState::Missing)?;
                            }
                        }
                        bad.insert(i);
                        problems.push(ScrubProblem {
                            chunk_id: format!("{id:016x}"),
                            shard_index: i,
                            node: rec.placement[i]
                                .map(|n| self.ctx.store.nodes()[n].id().to_string()),
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
                    match self.repair_chunk(&fixed_rec, Some(&bad)) {
                        Ok(n) => {
                            report.repaired += n;
                            self.ctx.metrics.add_repaired_shards(n);
                            if n as usize == bad.len() {
                                for p in &mut problems {
                                    p.repaired = true;
                                }
                            }
                        }
                        Err(e) => log::warn!("scrub repair of chunk {id:016x}: {e}"),
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
        Ok(report)
    }

    // ------------------------------------------------------------- reports

    /// The health report: `status`, `failed_nodes`, `message` (as the
    /// prototype's `/cluster/health`) plus per-node state and repair counts.
    pub fn health_report(&self) -> Result<HealthReport> {
        // Check every node now (folder, identity, writability), not from cache.
        self.probe_nodes();
        let status = self.ctx.store.node_status();
        let mut failed = Vec::new();
        let mut nodes = Vec::new();
        for (i, s) in status.iter().enumerate() {
            let node = &self.ctx.store.nodes()[i];
            if s.state != NodeState::Up {
                failed.push(node.id().to_string());
            }
            let (total_bytes, free_bytes) = node.capacity().unwrap_or((0, 0));
            let mut reason = s.reason.clone();
            if s.state == NodeState::Up && total_bytes > 0 && free_bytes < total_bytes / 100 {
                reason = format!("low on space: {free_bytes} bytes free");
            }
            nodes.push(NodeHealth {
                id: node.id().to_string(),
                region: node.region().to_string(),
                path: node.location(),
                state: NodeAvailability::of(s.state),
                detail: s.state,
                reason,
                free_bytes,
                total_bytes,
            });
        }
        // A shard is missing when it was never placed, is known bad, or sits
        // on a node that is down; a chunk is unreadable below k good shards.
        let down: Vec<usize> = (0..status.len())
            .filter(|&i| status[i].state != NodeState::Up)
            .collect();
        let (chunks_missing, shards_missing, unreadable) =
            self.ctx.meta.live_shard_health(&down)?;
        let up = status.len() - down.len();
        let k = self.ctx.store.k();
        let (state, message) = if unreadable > 0 {
            (
                HealthStatus::Error,
                format!(
                    "{} node(s) failed ({}): {unreadable} chunk(s) have fewer than the {k} shards needed and are unreadable",
                    failed.len(),
                    failed.join(", ")
                ),
            )
        } else if up < k {
            (
                HealthStatus::Error,
                format!("only {up} node(s) are up, fewer than the {k} a write needs"),
            )
        } else if !failed.is_empty() {
            (
                HealthStatus::Degraded,
                format!(
                    "{} node(s) failed: {}; data is readable from the others",
                    failed.len(),
                    failed.join(", ")
                ),
            )
        } else if chunks_missing > 0 {
            (
                HealthStatus::Degraded,
                format!("{chunks_missing} chunk(s) are missing shards; repair is queued"),
            )
        } else {
            (HealthStatus::Healthy, "All nodes are healthy".to_string())
        };
        Ok(HealthReport {
            status: state,
            failed_nodes: failed,
            message,
            nodes,
            chunks_missing_shards: chunks_missing,
            shards_missing,
            repair_queue: shards_missing,
        })
    }

    /// Cluster statistics (the prototype's `/cluster/stats` shape plus extras).
    pub fn stats_report(&self) -> Result<StatsReport> {
        let (objects, size) = self.ctx.meta.object_totals()?;
        let usage = self.ctx.meta.node_usage()?;
        let status = self.ctx.store.node_status();
        let mut nodes_by_region: BTreeMap<String, u64> = BTreeMap::new();
        let mut region_stats: BTreeMap<String, RegionStats> = BTreeMap::new();
        let mut node_stats = BTreeMap::new();
        for (i, node) in self.ctx.store.nodes().iter().enumerate() {
            *nodes_by_region
                .entry(node.region().to_string())
                .or_default() += 1;
            let (shards, bytes) = usage.get(node.id()).copied().unwrap_or((0, 0));
            let region = region_stats.entry(node.region().to_string()).or_default();
            region.shards += shards;
            region.bytes += bytes;
            let (total_bytes, free_bytes) = node.capacity().unwrap_or((0, 0));
            node_stats.insert(
                node.id().to_string(),
                NodeStats {
                    region: node.region().to_string(),
                    path: node.location(),
                    state: NodeAvailability::of(status[i].state),
                    shards,
                    bytes,
                    free_bytes,
                    total_bytes,
                },
            );
        }
        Ok(StatsReport {
            total_nodes: self.ctx.store.nodes().len(),
            nodes_by_region,
            total_objects: objects,
            total_size: size,
            node_stats,
            region_stats,
            k: self.ctx.store.k(),
            m: self.ctx.store.m(),
            chunk_size: self.ctx.chunk_size,
            open_files: self.statistics_open_files(),
            write_buffer_bytes: self.uploads.budget().used(),
            write_buffer_limit: self.uploads.budget().limit(),
        })
    }

    /// The node list for `ctl nodes`, in configuration order.
    pub fn nodes_report(&self) -> Result<NodesReport> {
        let mut stats = self.stats_report()?.node_stats;
        let status = self.ctx.store.node_status();
        let nodes = self
            .ctx
            .store
            .nodes()
            .iter()
            .zip(status)
            .filter_map(|(n, s)| {
                Some(NodeListEntry {
                    id: n.id().to_string(),
                    reason: s.reason,
                    stats: stats.remove(n.id())?,
                })
            })
            .collect();
        Ok(NodesReport { nodes })
    }

    /// `info` of a key: metadata plus chunk placement and health.
    pub fn info_report(self: &Arc<Self>, key: &str) -> Result<InfoReport> {
        let info = self.object_info(key)?;
        Ok(self.object_report(&info))
    }

    /// The `info` report of an object already looked up.
    pub fn object_report(&self, info: &super::ObjectInfo) -> InfoReport {
        let i = &info.inode;
        let content_type = i.content_type.clone().unwrap_or_else(|| {
            mime_guess::from_path(&info.key)
                .first()
                .map(|m| m.essence_str().to_string())
                .unwrap_or_else(|| "application/octet-stream".into())
        });
        let chunks = self.chunk_infos(&info.chunks);
        InfoReport {
            key: info.key.clone(),
            size: i.size,
            content_type,
            created_at: iso8601(i.crtime),
            updated_at: iso8601(i.mtime),
            version: i.version,
            checksum: i.checksum.clone(),
            kind: format!("{:?}", i.kind).to_lowercase(),
            mode: format!("{:o}", i.mode),
            nlink: i.nlink,
            chunk_size: self.ctx.chunk_size,
            healthy: InfoReport::all_healthy(&chunks),
            chunks,
        }
    }

    /// Layout helper for tools: a chunk's shard placement.
    pub fn chunk_layout(&self, chunk_id: u64) -> Result<Option<(ChunkLayout, Placement)>> {
        Ok(self
            .ctx
            .meta
            .chunk_by_id(chunk_id)?
            .map(|(_, r)| (r.layout, r.placement)))
    }
}

/// ISO-8601 UTC with microseconds, from nanoseconds since the epoch.
pub fn iso8601(nanos: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64);
    crate::metrics::format_iso8601_utc(t)
}
