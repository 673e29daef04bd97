//! Reports of long maintenance commands: `Progress` lines while they run, and
//! the final `RecoveryReport` (`ctl recover`; `RecoveryReply` is its shape in
//! `POST /cluster/recovery/{node}`) and `ScrubReport` (`ctl scrub`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::chunk::ShardFault;

/// Progress of a long operation, sent to `ctl` while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// What is running: `recover` or `scrub`.
    pub phase: String,
    /// Chunks done, of `total` (0 when not known in advance).
    pub done: u64,
    pub total: u64,
    pub bytes: u64,
    pub rate_bytes_per_sec: f64,
    /// `null` until there is a rate to estimate from.
    pub eta_secs: Option<f64>,
}

/// The outcome of rebuilding one node (`ctl recover`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecoveryReport {
    pub node_id: String,
    pub message: String,
    /// Chunks that had something to rebuild there, and how many of them failed.
    pub chunks_total: u64,
    pub chunks_failed: u64,
    pub shards_rebuilt: u64,
    pub bytes_rebuilt: u64,
    /// From the node failing (as detected) to the rebuild starting.
    pub detect_to_start_ms: f64,
    pub start_to_done_ms: f64,
    /// Mean time to repair: detection to done.
    pub mttr_ms: f64,
    pub rebuild_rate_mb_per_sec: f64,
}

/// `POST /cluster/recovery/{node}`: the recovery report whose `message` is
/// the prototype's fixed sentence, the report's own message moved to `summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecoveryReply {
    /// The report's own message.
    pub summary: String,
    /// With `message` = `Recovery completed for node {id}`.
    #[serde(flatten)]
    pub report: RecoveryReport,
}

impl From<RecoveryReport> for RecoveryReply {
    fn from(mut report: RecoveryReport) -> RecoveryReply {
        let prototype = format!("Recovery completed for node {}", report.node_id);
        let summary = std::mem::replace(&mut report.message, prototype);
        RecoveryReply { summary, report }
    }
}

/// One bad shard found by a scrub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrubProblem {
    pub chunk_id: String,
    pub shard_index: usize,
    /// The node holding it; `null` when it was never placed.
    pub node: Option<String>,
    /// In JSON the fault's text: `missing: …` or `corrupt: …`.
    pub problem: ShardFault,
    pub repaired: bool,
}

/// The outcome of `ctl scrub [--repair]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ScrubReport {
    pub chunks_checked: u64,
    pub shards_checked: u64,
    /// Bytes of shards read and verified.
    pub bytes_checked: u64,
    pub corrupt: u64,
    pub missing: u64,
    pub repaired: u64,
    /// With `--repair`: bad shards that could not be rebuilt.
    pub unrepairable: u64,
    pub problems: Vec<ScrubProblem>,
    /// Metadata journal segments compared, copies found bad (unreadable,
    /// corrupt or shorter than the best copy) and copies rewritten or
    /// added (with `--repair`).
    #[serde(default)]
    pub journal_segments: u64,
    #[serde(default)]
    pub journal_copies_bad: u64,
    #[serde(default)]
    pub journal_copies_repaired: u64,
}
