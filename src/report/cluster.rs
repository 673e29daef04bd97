//! Reports about the cluster as a whole: health (`GET /cluster/health`,
//! `ctl health`), statistics (`GET /cluster/stats`, `ctl stats`) and the node
//! list (`ctl nodes`). Maps keyed by node id or region are `BTreeMap`s, so
//! they serialize in name order as they always have.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::chunk::NodeState;

/// The cluster's overall state (the prototype's three words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every node is up and every chunk has all its shards.
    Healthy,
    /// Something is missing, but every chunk is readable.
    Degraded,
    /// Some data is unreadable, or too few nodes are up to write.
    Error,
}

impl HealthStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Error => "error",
        }
    }
}

/// Whether a node serves shards: `up`, or `failed` for anything else (the
/// finer state is `NodeHealth::detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeAvailability {
    Up,
    Failed,
}

impl NodeAvailability {
    pub fn of(state: NodeState) -> NodeAvailability {
        if state == NodeState::Up {
            NodeAvailability::Up
        } else {
            NodeAvailability::Failed
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeAvailability::Up => "up",
            NodeAvailability::Failed => "failed",
        }
    }
}

/// `GET /cluster/health` and `ctl health`: the prototype's `status`,
/// `failed_nodes` and `message`, plus each node and the repair counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthReport {
    pub status: HealthStatus,
    /// Ids of the nodes that are not up.
    pub failed_nodes: Vec<String>,
    /// One sentence for humans.
    pub message: String,
    pub nodes: Vec<NodeHealth>,
    /// Live chunks lacking at least one healthy shard.
    pub chunks_missing_shards: u64,
    /// Shards that are missing, known bad or on a down node.
    pub shards_missing: u64,
    /// Shards waiting to be rebuilt (the same count as `shards_missing`).
    pub repair_queue: u64,
    /// The newest metadata snapshot on the nodes.
    #[serde(default)]
    pub metadata_snapshot: SnapshotHealth,
    /// The metadata journal on the nodes.
    #[serde(default)]
    pub metadata_journal: JournalHealth,
}

/// The metadata journal on the nodes, in the health report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JournalHealth {
    /// Every committed metadata change through this LSN is on the nodes.
    pub durable_lsn: u64,
    /// The newest change committed (later ones than `durable_lsn` wait for
    /// the next durable operation or the periodic flush).
    pub last_lsn: u64,
    /// The journal LSN the newest snapshot holds: a restore replays the
    /// records after it.
    pub snapshot_lsn: Option<u64>,
    /// Records after the newest snapshot (the journal's length).
    pub records_since_snapshot: u64,
    /// Bytes appended since the newest snapshot taken by this daemon.
    pub bytes_since_snapshot: u64,
    /// The segment being appended to and the nodes holding it.
    pub active_segment: Option<String>,
    pub nodes: Vec<String>,
    /// Copies of the active segment, and copies wanted (m+1).
    pub copies: usize,
    pub wanted_copies: usize,
    /// Copies the last scrub found bad and could not rewrite.
    pub bad_copies: u64,
    /// Appends that failed on a node since the start.
    pub node_failures: u64,
    pub last_error: Option<String>,
    /// One sentence for humans.
    pub message: String,
}

/// The newest metadata snapshot and its copies, in the health report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotHealth {
    /// Its sequence number; None while no snapshot exists.
    pub seq: Option<u64>,
    /// When it was taken (ISO-8601) and how long ago, in seconds.
    pub taken_at: Option<String>,
    pub age_secs: Option<u64>,
    /// Nodes that are up and hold a copy.
    pub nodes: Vec<String>,
    pub copies: usize,
    /// Copies wanted: m+1 (so any m node losses or a region loss leave one).
    pub wanted_copies: usize,
    /// One sentence for humans.
    pub message: String,
}

/// `ctl snapshot`: the snapshot just taken (or why none was needed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// False when the database had not changed since the newest snapshot,
    /// which still has its copies: nothing was written.
    pub taken: bool,
    pub seq: u64,
    pub taken_at: String,
    /// Bytes of the database copied, files and bytes it describes.
    pub db_size: u64,
    pub files: u64,
    pub bytes: u64,
    /// Nodes that hold a copy now.
    pub nodes: Vec<String>,
    pub wanted_copies: usize,
    /// Nodes that could not take a copy, with why.
    pub failed: Vec<String>,
    pub message: String,
}

/// One node in the health report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeHealth {
    pub id: String,
    pub region: String,
    /// Where the node lives, for humans.
    pub path: String,
    pub state: NodeAvailability,
    /// The probe's finer state: `up`, `empty` (waiting to be rebuilt) or `failed`.
    pub detail: NodeState,
    /// Why the node is not up, or a warning (low on space); empty when fine.
    pub reason: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// `GET /cluster/stats` and `ctl stats`: the prototype's keys (`total_nodes`,
/// `nodes_by_region`, `total_objects`, `total_size`, `node_stats`) plus extras.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsReport {
    pub total_nodes: usize,
    /// Region name → number of nodes in it.
    pub nodes_by_region: BTreeMap<String, u64>,
    /// Files (objects) in the namespace.
    pub total_objects: u64,
    /// Their bytes.
    pub total_size: u64,
    /// Node id → its figures.
    pub node_stats: BTreeMap<String, ClusterNodeStats>,
    /// Region name → shards and bytes stored there.
    pub region_stats: BTreeMap<String, RegionStats>,
    pub k: usize,
    pub m: usize,
    pub chunk_size: u64,
    pub open_files: usize,
    /// Bytes of written data buffered in memory, and the cap.
    pub write_buffer_bytes: u64,
    pub write_buffer_limit: u64,
}

/// One node in `node_stats`: the prototype's keys (`node_id`, `region`,
/// `storage_path`, `total_shards`, `total_size`, `created_at`,
/// `updated_at`) beside minigcs's own figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterNodeStats {
    pub node_id: String,
    /// As written in the configuration (e.g. `./data/node-1`); the
    /// resolved folder is `path`.
    pub storage_path: String,
    /// Healthy shards on the node (the same count as `shards`).
    pub total_shards: u64,
    /// Their payload bytes (the same count as `bytes`).
    pub total_size: u64,
    /// When the node folder was set up (ISO-8601 UTC); `null` when the node
    /// cannot tell (its folder is missing, or it did not answer).
    pub created_at: Option<String>,
    /// When a shard was last stored or removed there; `null` before the
    /// first one, as the prototype leaves it out until then.
    pub updated_at: Option<String>,
    #[serde(flatten)]
    pub stats: NodeStats,
}

/// One node's figures in the statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeStats {
    pub region: String,
    pub path: String,
    pub state: NodeAvailability,
    /// Healthy shards recorded on the node.
    pub shards: u64,
    /// Their payload bytes.
    pub bytes: u64,
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Bytes this daemon stored on the node since it started: shard files,
    /// journal appends and whole metadata copies (the three that follow).
    /// Divided by the bytes applications wrote, the write amplification.
    #[serde(default)]
    pub bytes_written: u64,
    /// Shard files stored (header, block table and payload).
    #[serde(default)]
    pub shard_bytes_written: u64,
    /// Records appended to the metadata journal.
    #[serde(default)]
    pub journal_bytes_written: u64,
    /// Snapshot copies and journal segment copies stored whole.
    #[serde(default)]
    pub copy_bytes_written: u64,
    /// Store operations behind those bytes (each one durable on its own).
    #[serde(default)]
    pub write_ops: u64,
    /// The node's small-shard segments; absent when it keeps none (or its
    /// segments were not opened yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<NodeSegments>,
}

/// One node's segment files (small shards appended to pre-written files)
/// and what their cleaner did since the daemon started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
pub struct NodeSegments {
    /// Segment files.
    pub segments: u64,
    /// Shards held in them.
    pub shards: u64,
    /// Bytes of live entries.
    pub live_bytes: u64,
    /// Bytes the cleaner may reclaim: removed or replaced entries,
    /// tombstones, space of sealed segments never used.
    pub dead_bytes: u64,
    /// Bytes of segment files the cleaner removed.
    pub reclaimed_bytes: u64,
    /// Bytes of live entries it copied forward.
    pub moved_bytes: u64,
    /// Entries appended since the daemon started (stores, tombstones,
    /// the cleaner's copies).
    #[serde(default)]
    pub appends: u64,
    /// `fdatasync` calls that made them durable: concurrent stores share
    /// one (group commit).
    #[serde(default)]
    pub syncs: u64,
}

impl From<crate::node::SegmentFigures> for NodeSegments {
    fn from(f: crate::node::SegmentFigures) -> NodeSegments {
        NodeSegments {
            segments: f.segments,
            shards: f.shards,
            live_bytes: f.live_bytes,
            dead_bytes: f.dead_bytes,
            reclaimed_bytes: f.reclaimed_bytes,
            moved_bytes: f.moved_bytes,
            appends: f.appends,
            syncs: f.syncs,
        }
    }
}

/// Shards and bytes stored in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
pub struct RegionStats {
    pub shards: u64,
    pub bytes: u64,
}

/// `ctl nodes`: every node in configuration order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesReport {
    pub nodes: Vec<NodeListEntry>,
}

/// One node of `ctl nodes`: its statistics plus id and probe reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeListEntry {
    pub id: String,
    /// Why the node is not up; empty when it is.
    pub reason: String,
    #[serde(flatten)]
    pub stats: NodeStats,
}
