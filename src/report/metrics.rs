//! The metrics summary (`GET /metrics/summary`, `ctl metrics`) as a type:
//! the prototype's keys plus latency quantiles, recovery figures and
//! counters. `tests/report_json.rs` checks that the metrics registry's
//! summary decodes into it and encodes back unchanged.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Operation counts, rates and latencies since start (or the last clear).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsSummary {
    pub total_operations: u64,
    pub total_recoveries: u64,
    /// Percent (0–100) of operations that succeeded; 0.0 when none ran.
    pub overall_success_rate: f64,
    /// Percent (0–100) of recoveries that succeeded; 0.0 when none ran
    /// (check `total_recoveries` before showing it).
    pub recovery_success_rate: f64,
    pub overall_throughput_mbps: f64,
    pub total_data_processed_mb: f64,
    /// Operation name (`upload`, `download`, …) → its figures.
    pub operation_summary: BTreeMap<String, OperationSummary>,
    pub recovery_summary: RecoverySummary,
    pub degraded_reads: u64,
    pub repaired_shards: u64,
    pub corrupt_shards_found: u64,
    pub csv_rows_dropped: u64,
}

/// One operation's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OperationSummary {
    pub count: u64,
    pub success_count: u64,
    pub failure_count: u64,
    /// Percent (0–100).
    pub success_rate: f64,
    pub avg_duration_ms: f64,
    pub min_duration_ms: f64,
    pub max_duration_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub avg_throughput_mbps: f64,
    pub total_size_bytes: u64,
}

/// Node recoveries: how many, how they went, and mean time to repair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecoverySummary {
    pub count: u64,
    pub success_count: u64,
    pub failure_count: u64,
    /// Percent (0–100); 0.0 when `count` is 0.
    pub success_rate: f64,
    pub avg_mttr_ms: f64,
    pub min_mttr_ms: f64,
    pub max_mttr_ms: f64,
    pub last_mttr_ms: f64,
    pub avg_detect_to_start_ms: f64,
    pub avg_start_to_done_ms: f64,
    pub total_bytes_rebuilt: u64,
    pub total_shards_rebuilt: u64,
}
