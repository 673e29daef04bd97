//! The reports the file service answers with about the cluster as a whole
//! and about one object: health (`GET /cluster/health`, `ctl health`),
//! statistics, the node list, object info with shard placement, and the
//! background workers' status (`ctl workers`). They only read: the node
//! probe a health report makes is the one write-free check of the folders,
//! and a node found back wakes the repair worker. The types live in
//! `crate::report`; the work the workers do lives in `crate::maint`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{ObjectInfo, Service};
use crate::chunk::{ChunkLayout, NodeCapacity, NodeState, Placement};
use crate::error::Result;
use crate::metrics::{format_iso8601_utc, iso8601_from_nanos};
use crate::report::{
    ClusterNodeStats, HealthReport, HealthStatus, InfoReport, NodeAvailability, NodeHealth,
    NodeListEntry, NodeStats, NodesReport, RegionStats, StatsReport, WorkersReport,
};

impl Service {
    /// The health report: `status`, `failed_nodes`, `message` (as the
    /// prototype's `/cluster/health`) plus per-node state and repair counts.
    pub fn health_report(&self) -> Result<HealthReport> {
        // Check every node now (folder, identity, writability), not from cache.
        // Probes run at once, each with a deadline, and measure capacity.
        self.ctx.probe_nodes();
        let status = self.ctx.store.node_status();
        let capacities = self.ctx.store.cached_capacities();
        let mut failed = Vec::new();
        let mut nodes = Vec::new();
        for (i, s) in status.iter().enumerate() {
            let node = &self.ctx.store.nodes()[i];
            if s.state != NodeState::Up {
                failed.push(node.id().to_string());
            }
            let (total_bytes, free_bytes) = capacity_of(&capacities[i]);
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
        let (metadata_snapshot, snapshot_short) = self.snapshot_health();
        let (state, message) = if let Some(reason) = self.ctx.meta.lost_reason() {
            (HealthStatus::Error, reason)
        } else if unreadable > 0 {
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
        } else if let Some(why) = self.ctx.snapshot_needed.lock().clone() {
            (
                HealthStatus::Degraded,
                format!(
                    "changes since the start are not restorable from the nodes until a metadata snapshot is taken ({why})"
                ),
            )
        } else if snapshot_short {
            (
                HealthStatus::Degraded,
                format!(
                    "the newest metadata snapshot has too few copies: {}",
                    metadata_snapshot.message
                ),
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
            metadata_journal: self.journal_health(&metadata_snapshot),
            metadata_snapshot,
        })
    }

    /// The journal writer's state, next to the newest snapshot's.
    fn journal_health(
        &self,
        snapshot: &crate::report::SnapshotHealth,
    ) -> crate::report::JournalHealth {
        let now = self.ctx.journal.status();
        let book = self.ctx.snapshots.state.lock().clone();
        let snapshot_lsn = snapshot.seq.and(book.recent_lsns.last().copied());
        let since = now.last_lsn - snapshot_lsn.unwrap_or(0).min(now.last_lsn);
        let copies = now.active_nodes.len();
        let wanted = self.ctx.journal.wanted_copies();
        let message = format!(
            "through LSN {} on the nodes ({} committed); {since} record(s) after {}; {}",
            now.durable_lsn,
            now.last_lsn,
            match snapshot_lsn {
                Some(lsn) => format!("the newest snapshot (LSN {lsn})"),
                None => "the store's start".into(),
            },
            match &now.active_segment {
                Some(name) => format!(
                    "{name} on {copies} of {wanted} node(s): {}",
                    now.active_nodes.join(", ")
                ),
                None => "no segment open (the next change starts one)".into(),
            }
        );
        crate::report::JournalHealth {
            durable_lsn: now.durable_lsn,
            last_lsn: now.last_lsn,
            snapshot_lsn,
            records_since_snapshot: since,
            bytes_since_snapshot: now
                .appended_bytes
                .saturating_sub(book.journal_bytes_at_snapshot),
            active_segment: now.active_segment,
            nodes: now.active_nodes,
            copies,
            wanted_copies: wanted,
            bad_copies: now.bad_copies,
            node_failures: now.node_failures,
            last_error: now.last_error,
            message,
        }
    }

    /// Cluster statistics (the prototype's `/cluster/stats` shape plus extras).
    pub fn stats_report(&self) -> Result<StatsReport> {
        let (objects, size) = self.ctx.meta.object_totals()?;
        let usage = self.ctx.meta.node_usage()?;
        let status = self.ctx.store.node_status();
        let capacities = self.ctx.store.capacities(Duration::MAX);
        let times = self.ctx.store.node_times();
        let io = self.ctx.store.executor_stats();
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
            let (total_bytes, free_bytes) = capacity_of(&capacities[i]);
            let as_written = self
                .ctx
                .config
                .nodes
                .iter()
                .find(|n| n.id == node.id())
                .map(|n| n.storage_path_as_written.clone())
                .filter(|p| !p.is_empty());
            let time = |t: Option<std::time::SystemTime>| t.map(format_iso8601_utc);
            let times = times[i].unwrap_or_default();
            node_stats.insert(
                node.id().to_string(),
                ClusterNodeStats {
                    node_id: node.id().to_string(),
                    storage_path: as_written.unwrap_or_else(|| node.location()),
                    total_shards: shards,
                    total_size: bytes,
                    created_at: time(times.created),
                    updated_at: time(times.updated),
                    stats: NodeStats {
                        region: node.region().to_string(),
                        path: node.location(),
                        state: NodeAvailability::of(status[i].state),
                        shards,
                        bytes,
                        free_bytes,
                        total_bytes,
                        bytes_written: io[i].written.total(),
                        shard_bytes_written: io[i].written.shard_bytes,
                        journal_bytes_written: io[i].written.journal_bytes,
                        copy_bytes_written: io[i].written.copy_bytes,
                        write_ops: io[i].written.writes,
                        segments: io[i].segments.map(Into::into),
                    },
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
                    stats: stats.remove(n.id())?.stats,
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
    pub fn object_report(&self, info: &ObjectInfo) -> InfoReport {
        let i = &info.inode;
        let content_type = super::content_type_for(&info.key, i.content_type.as_deref());
        let chunks = self.chunk_infos(&info.chunks);
        InfoReport {
            key: info.key.clone(),
            size: i.size,
            content_type,
            created_at: iso8601_from_nanos(i.crtime),
            updated_at: iso8601_from_nanos(i.mtime),
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

    /// Every background worker's state, current work, queue and last error.
    pub fn workers_report(&self) -> WorkersReport {
        self.ctx.workers.report()
    }
}

/// (total, free) bytes of a node, 0 when unknown.
fn capacity_of(capacity: &Option<NodeCapacity>) -> (u64, u64) {
    capacity.map_or((0, 0), |c| (c.total_bytes, c.free_bytes))
}
