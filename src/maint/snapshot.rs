//! Metadata snapshots to the nodes: `take` copies the database (`VACUUM
//! INTO` on a connection of its own, so writers go on), wraps it in a
//! checksummed copy (`crate::snapshot`) and stores it on m+1 nodes spread
//! over the regions (so any m node losses or a region loss leave a copy),
//! each through its node's executor with a deadline: a hung node is skipped
//! and the next candidate takes the copy. Each node then keeps only its
//! newest `metadata.snapshots_kept` copies.
//!
//! The worker takes one every `metadata.snapshot_interval_secs` when the
//! database changed since the last one, or when the newest snapshot has
//! fewer copies on up nodes than wanted (a node holding one failed or was
//! replaced). `ctl snapshot` and the end of `ctl recover` take one at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Step, WakeOn, Worker};
use crate::error::{Error, Result};
use crate::metrics::iso8601_from_nanos;
use crate::report::{SnapshotHealth, SnapshotReport};
use crate::service::wake::WorkerStatus;
use crate::service::Context;
use crate::snapshot::{encode_header, parse_file_name, Manifest, SnapshotCopies, SNAPSHOT_AREA};

/// Copies wanted of each snapshot: m+1, or every node when there are fewer.
fn wanted_copies(ctx: &Context) -> usize {
    (ctx.store.m() + 1).min(ctx.store.nodes().len())
}

/// Nodes in the order they are asked to take a copy (see
/// `ChunkStore::spread_over_regions`).
fn candidates(ctx: &Context) -> Vec<usize> {
    ctx.store.spread_over_regions()
}

/// Learn the newest snapshot on the nodes (names only: no copy is read).
fn scan(ctx: &Context) {
    let mut newest: Option<SnapshotCopies> = None;
    for i in 0..ctx.store.nodes().len() {
        if !ctx.store.is_up(i) {
            continue;
        }
        let listed = ctx
            .store
            .meta_file_call(i, |n| n.list_meta_files(SNAPSHOT_AREA));
        let files = match listed {
            Ok(files) => files,
            Err(e) => {
                log::warn!(
                    "metadata snapshots on node {}: {e}",
                    ctx.store.nodes()[i].id()
                );
                continue;
            }
        };
        let id = ctx.store.nodes()[i].id().to_string();
        for (seq, secs) in files.iter().filter_map(|(name, _)| parse_file_name(name)) {
            match &mut newest {
                Some(n) if n.seq == seq => {
                    if !n.nodes.contains(&id) {
                        n.nodes.push(id.clone());
                    }
                }
                Some(n) if n.seq > seq => {}
                _ => {
                    newest = Some(SnapshotCopies {
                        seq,
                        unix_secs: secs,
                        nodes: vec![id.clone()],
                    })
                }
            }
        }
    }
    let mut state = ctx.snapshots.state.lock();
    state.scanned = true;
    state.newest = newest;
}

/// Copies of the newest snapshot on nodes that are up now.
fn copies_on_up_nodes(ctx: &Context, copies: &SnapshotCopies) -> Vec<String> {
    copies
        .nodes
        .iter()
        .filter(|id| ctx.store.node_index(id).is_some_and(|i| ctx.store.is_up(i)))
        .cloned()
        .collect()
}

/// A node was rebuilt from nothing: the snapshot copies it held are gone.
/// Forget them and wake the worker, which puts the copies back; put the
/// journal's copies back at once.
pub(super) fn node_rebuilt(ctx: &Context, node_id: &str) {
    if let Some(newest) = &mut ctx.snapshots.state.lock().newest {
        newest.nodes.retain(|n| n != node_id);
    }
    ctx.wake.snapshot.notify();
    restore_journal_copies(ctx, node_id);
}

/// Put back the journal segment copies a rebuilt node held (each segment
/// back on m+1 nodes).
pub(super) fn restore_journal_copies(ctx: &Context, node_id: &str) {
    match crate::journal::upkeep::check_copies(&ctx.store, &ctx.journal, true) {
        Ok(c) if c.rewritten + c.added > 0 => log::info!(
            "metadata journal after rebuilding {node_id}: {} segment copies rewritten, {} added",
            c.rewritten,
            c.added
        ),
        Ok(_) => {}
        Err(e) => log::warn!("metadata journal copies after rebuilding {node_id}: {e}"),
    }
}

/// Take a snapshot unless the database did not change since the newest
/// one and that one still has its copies (`force` takes one anyway).
pub(super) fn take(ctx: &Context, force: bool) -> Result<SnapshotReport> {
    let _one_at_a_time = ctx.snapshots.taking.lock();
    if !ctx.snapshots.state.lock().scanned {
        scan(ctx);
    }
    let wanted = wanted_copies(ctx);
    let commits = ctx.meta.commit_count();
    let previous = ctx.snapshots.state.lock().clone();
    if let (false, Some(newest), Some(at)) = (force, &previous.newest, previous.taken_at_commit) {
        let held = copies_on_up_nodes(ctx, newest);
        if at == commits && held.len() >= wanted {
            return Ok(SnapshotReport {
                taken: false,
                seq: newest.seq,
                taken_at: iso8601_from_nanos(newest.unix_secs.saturating_mul(1_000_000_000)),
                db_size: 0,
                files: 0,
                bytes: 0,
                message: format!(
                    "metadata unchanged since snapshot #{}, which has {} copies ({})",
                    newest.seq,
                    held.len(),
                    held.join(", ")
                ),
                nodes: held,
                wanted_copies: wanted,
                failed: Vec::new(),
            });
        }
    }
    let (files, bytes) = ctx.meta.object_totals()?;
    let seq = previous.newest.as_ref().map_or(1, |n| n.seq + 1);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // The copy streams from a temp file next to the database to each node:
    // the database is never held in memory.
    // Records after the copy go to a new journal segment, so the ones
    // before it can be dropped once older snapshots are gone.
    ctx.journal.close_segment();
    let journal_bytes = ctx.journal.status().appended_bytes;
    let copy = TempCopy::of(ctx)?;
    let mut manifest = Manifest::describe_file(&copy.0, ctx.store.cluster_id(), seq, now_ms)?;
    manifest.files = files;
    manifest.bytes = bytes;
    manifest.journal_lsn = crate::meta::journal_lsn_of(&rusqlite::Connection::open(&copy.0)?)?;
    let name = manifest.file_name();
    let header = Arc::new(encode_header(&manifest));
    let source = Arc::new(copy.0.clone());

    let mut written = Vec::new();
    let mut failed = Vec::new();
    let mut order = candidates(ctx).into_iter();
    // First the wanted number at once, then one more candidate per failure.
    let mut batch: Vec<usize> = order.by_ref().take(wanted).collect();
    while !batch.is_empty() {
        let results: Vec<(usize, Result<()>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|&i| {
                    let (header, source, name) = (header.clone(), source.clone(), name.clone());
                    scope.spawn(move || {
                        let stored = ctx.store.meta_file_call(i, move |n| {
                            n.put_meta_file_from(SNAPSHOT_AREA, &name, &header, &source)
                        });
                        (i, stored)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("snapshot copy thread"))
                .collect()
        });
        let mut missing = 0;
        for (i, stored) in results {
            let id = ctx.store.nodes()[i].id().to_string();
            match stored {
                Ok(()) => written.push((i, id)),
                Err(e) => {
                    missing += 1;
                    failed.push(format!("{id}: {e}"));
                }
            }
        }
        batch = order.by_ref().take(missing).collect();
    }
    if written.is_empty() {
        return Err(Error::Unavailable(format!(
            "no node took metadata snapshot #{seq}: {}",
            failed.join("; ")
        )));
    }
    for (i, _) in &written {
        prune(ctx, *i);
    }
    match ctx.journal.anchor_after(manifest.journal_lsn) {
        Ok(()) => *ctx.snapshot_needed.lock() = None,
        Err(e) => log::warn!("metadata journal after snapshot #{seq}: {e}"),
    }
    let journal_covered = {
        let mut state = ctx.snapshots.state.lock();
        state.recent_lsns.push(manifest.journal_lsn);
        let kept = ctx.config.metadata.snapshots_kept.max(1);
        let excess = state.recent_lsns.len().saturating_sub(kept);
        state.recent_lsns.drain(..excess);
        state.journal_bytes_at_snapshot = journal_bytes;
        // The oldest snapshot the nodes still keep holds every record
        // through its LSN.
        (state.recent_lsns.len() == kept && written.len() >= wanted).then(|| state.recent_lsns[0])
    };
    if let Some(covered) = journal_covered {
        let dropped = crate::journal::upkeep::truncate(&ctx.store, &ctx.journal, covered);
        if dropped > 0 {
            log::info!("metadata journal: dropped {dropped} segment(s) through LSN {covered}");
        }
    }
    let nodes: Vec<String> = written.into_iter().map(|(_, id)| id).collect();
    {
        let mut state = ctx.snapshots.state.lock();
        state.newest = Some(SnapshotCopies {
            seq,
            unix_secs: now_ms / 1000,
            nodes: nodes.clone(),
        });
        state.taken_at_commit = Some(commits);
    }
    let short = match nodes.len() < wanted {
        true => format!(" (fewer than the {wanted} wanted: the metadata is less protected until more nodes take one)"),
        false => String::new(),
    };
    let message = format!(
        "metadata snapshot #{seq}: {} bytes ({files} files, {bytes} bytes of content) on {} node(s): {}{short}",
        manifest.db_size,
        nodes.len(),
        nodes.join(", ")
    );
    log::info!("{message}");
    Ok(SnapshotReport {
        taken: true,
        seq,
        taken_at: iso8601_from_nanos(now_ms.saturating_mul(1_000_000)),
        db_size: manifest.db_size,
        files,
        bytes,
        nodes,
        wanted_copies: wanted,
        failed,
        message,
    })
}

/// A consistent copy of the database in a temp file next to it, removed
/// on drop (a node thread still copying it keeps reading the open file).
struct TempCopy(std::path::PathBuf);

impl TempCopy {
    fn of(ctx: &Context) -> Result<TempCopy> {
        let mut name = ctx.config.metadata.path.as_os_str().to_owned();
        name.push(format!(".snapshot-{}", std::process::id()));
        let copy = TempCopy(std::path::PathBuf::from(name));
        let _ = std::fs::remove_file(&copy.0);
        ctx.meta.copy_into(&copy.0)?;
        Ok(copy)
    }
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Keep only the newest `metadata.snapshots_kept` copies on node `i`.
fn prune(ctx: &Context, i: usize) {
    let kept = ctx.config.metadata.snapshots_kept.max(1);
    let pruned = ctx.store.meta_file_call(i, move |n| {
        let mut names: Vec<(u64, String)> = n
            .list_meta_files(SNAPSHOT_AREA)?
            .into_iter()
            .filter_map(|(name, _)| parse_file_name(&name).map(|(seq, _)| (seq, name)))
            .collect();
        names.sort();
        let old = names.len().saturating_sub(kept);
        for (_, name) in &names[..old] {
            n.delete_meta_file(SNAPSHOT_AREA, name)?;
        }
        Ok(())
    });
    if let Err(e) = pruned {
        log::warn!(
            "removing old metadata snapshots on node {}: {e}",
            ctx.store.nodes()[i].id()
        );
    }
}

/// The snapshot part of the health report; `short` is true when the
/// newest snapshot has fewer copies on up nodes than wanted.
pub(crate) fn health(ctx: &Context) -> (SnapshotHealth, bool) {
    let wanted = wanted_copies(ctx);
    let state = ctx.snapshots.state.lock().clone();
    let interval = ctx.config.metadata.snapshot_interval_secs;
    let Some(newest) = state.newest else {
        let message = match (state.scanned, interval) {
            (false, _) => "not looked for yet (the snapshot worker starts with the daemon)".into(),
            (true, 0) => "no snapshot yet and periodic snapshots are off (metadata.snapshot_interval_secs: 0): run `minigcs ctl snapshot`".into(),
            (true, _) => format!("no snapshot yet: one is taken within {interval} s of a change, or run `minigcs ctl snapshot`"),
        };
        return (
            SnapshotHealth {
                wanted_copies: wanted,
                message,
                ..SnapshotHealth::default()
            },
            false,
        );
    };
    let held = copies_on_up_nodes(ctx, &newest);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let age = (now - newest.unix_secs).max(0) as u64;
    let short = held.len() < wanted;
    let message = format!(
        "#{} taken {age} s ago, {} of {wanted} copies on up nodes ({}){}",
        newest.seq,
        held.len(),
        held.join(", "),
        match short {
            true => "; the next snapshot restores the copies",
            false => "",
        }
    );
    (
        SnapshotHealth {
            seq: Some(newest.seq),
            taken_at: Some(iso8601_from_nanos(
                newest.unix_secs.saturating_mul(1_000_000_000),
            )),
            age_secs: Some(age),
            copies: held.len(),
            nodes: held,
            wanted_copies: wanted,
            message,
        },
        short,
    )
}

/// The periodic snapshot worker.
pub(super) struct SnapshotWorker {
    pub(super) ctx: Arc<Context>,
}

impl Worker for SnapshotWorker {
    fn name(&self) -> &'static str {
        "meta-snapshot"
    }

    fn wake_on(&self) -> WakeOn {
        let every = match self.ctx.config.metadata.snapshot_interval_secs {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        };
        WakeOn::signal(&self.ctx.wake.snapshot)
            .every(every)
            .at_start()
    }

    fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
        let ctx = &self.ctx;
        let periodic = ctx.config.metadata.snapshot_interval_secs > 0;
        let first = !ctx.snapshots.state.lock().scanned;
        if first {
            status.doing("looking for snapshots on the nodes");
            let _one_at_a_time = ctx.snapshots.taking.lock();
            scan(ctx);
            // A database just restored from the newest snapshot is that
            // snapshot. Otherwise it may hold changes made after it (a
            // crash before the next snapshot): the first interval takes one.
            if ctx.restored_from_snapshot {
                let mut state = ctx.snapshots.state.lock();
                if state.newest.is_some() {
                    state.taken_at_commit = Some(ctx.meta.commit_count());
                }
            }
        }
        let no_snapshot = ctx.snapshots.state.lock().newest.is_none();
        // At start, a snapshot at once only for a store with files and none
        // yet; with periodic snapshots off, only to put back the copies of
        // an existing snapshot (woken after a node was rebuilt).
        let anchor_pending = ctx.snapshot_needed.lock().is_some();
        let wait = !anchor_pending
            && match first {
                true => !(periodic && no_snapshot && ctx.meta.object_totals()?.0 > 0),
                false => !periodic && no_snapshot,
            };
        if wait {
            status.doing(health(ctx).0.message);
            return Ok(Step::Idle);
        }
        status.doing("taking a metadata snapshot");
        let report = take(ctx, false)?;
        if report.taken {
            status.add_done(1);
        }
        status.doing(health(ctx).0.message);
        Ok(Step::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::model::PutOptions;
    use crate::node::{memory_nodes, MemoryNode, NodeBackend};
    use crate::service::Service;
    use crate::snapshot::decode;

    /// Releases a hung node when the test ends, also when it fails.
    struct Unhang(Arc<MemoryNode>);

    impl Drop for Unhang {
        fn drop(&mut self) {
            self.0.set_hung(false);
        }
    }

    #[test]
    fn copies_go_to_m_plus_one_regions_skip_a_hung_node_and_only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let regions = ["a", "b", "c", "a"];
        let mut config = Config::for_test(dir.path(), &regions, 2, 1, 64 * 1024);
        config.recovery.node_timeout_ms = 100;
        let (nodes, backends) = memory_nodes(&regions);
        let svc = Service::open_with_nodes(Arc::new(config), Metrics::new(None), backends).unwrap();
        svc.put_object("f", &mut &[7u8; 1000][..], PutOptions::default())
            .unwrap();

        let first = svc.snapshot_metadata().unwrap();
        assert!(first.taken);
        assert_eq!(first.seq, 1);
        assert_eq!(first.files, 1);
        assert_eq!(first.nodes, vec!["node-1", "node-2"], "two regions: a, b");
        let again = svc.snapshot_metadata().unwrap();
        assert!(!again.taken, "unchanged database: {}", again.message);

        // Node 2 hangs: the snapshot goes elsewhere, within the deadline.
        let _unhang = Unhang(nodes[1].clone());
        nodes[1].set_hung(true);
        let second = take(svc.context(), true).unwrap();
        assert_eq!(second.seq, 2);
        assert_eq!(second.nodes.len(), 2, "{second:?}");
        assert!(!second.nodes.contains(&"node-2".to_string()), "{second:?}");
        let (health, short) = health(svc.context());
        assert!(!short, "{health:?}");
        assert_eq!(health.seq, Some(2));

        // Each node keeps its newest two; every kept copy verifies.
        for _ in 0..3 {
            take(svc.context(), true).unwrap();
        }
        let kept = nodes[0].list_meta_files(SNAPSHOT_AREA).unwrap();
        let mut seqs: Vec<u64> = kept
            .iter()
            .map(|(name, _)| {
                let copy = nodes[0].read_meta_file(SNAPSHOT_AREA, name).unwrap();
                decode(&copy).unwrap().0.seq
            })
            .collect();
        seqs.sort();
        assert_eq!(seqs, vec![4, 5]);
    }
}
