//! Typed reports: the JSON documents the daemon answers with — health,
//! statistics, the node list, object info with shard placement, recovery,
//! scrub, progress, the background workers, the metrics summary and `ping`.
//! The service builds them, the control socket and the HTTP API serialize
//! them, and `minigcs ctl` decodes them to print its tables, so a field is
//! named once, here.
//!
//! The field names, nesting and value types are the JSON contract outside
//! scripts rely on (`tests/data/reports/` holds documents captured from the
//! daemon, and `tests/report_json.rs` pins every type against them): rename
//! nothing, and add a field only where an extension is meant. The types the
//! HTTP API answers with also derive `ToSchema`, so the OpenAPI document
//! (`/openapi.json`) describes them from these definitions and their doc
//! comments. This module owns no behaviour and touches no storage; it only
//! describes.

mod cluster;
mod metrics;
mod object;
mod work;
mod workers;

pub use cluster::{
    ClusterNodeStats, HealthReport, HealthStatus, JournalHealth, NodeAvailability, NodeHealth,
    NodeListEntry, NodeSegments, NodeStats, NodesReport, RegionStats, SnapshotHealth,
    SnapshotReport, StatsReport,
};
pub use metrics::{MetricsSummary, OperationSummary, RecoverySummary};
pub use object::{ChunkInfo, InfoReport, PlacementReport, ShardInfo, ShardStatus};
pub use work::{Progress, RecoveryReply, RecoveryReport, ScrubProblem, ScrubReport};
pub use workers::{WorkerReport, WorkerState, WorkersReport};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The answer to `ping`: a daemon is there, and which version it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingReply {
    pub pong: bool,
    pub version: String,
}

impl PingReply {
    /// This build's answer.
    pub fn now() -> PingReply {
        PingReply {
            pong: true,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// A report as a JSON value. Objects come out with their keys sorted, the
/// order the daemon has always sent them in.
pub fn to_value<T: Serialize>(report: &T) -> Value {
    serde_json::to_value(report).expect("reports have string keys and always serialize")
}
