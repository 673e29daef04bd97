//! `/cluster/*` and `/metrics*`: thin wrappers that serve the reports the
//! service and the metrics registry build (the same ones the control socket
//! serves) and run recovery. No report is computed here.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::path::PathBuf;

use super::schema::{ErrorDetail, ExportReply, MessageReply, NodeId};
use super::{blocking, ApiError, App};
use crate::report::{self, HealthReport, MetricsSummary, RecoveryReply, StatsReport};

/// Cluster statistics
///
/// Nodes by region, objects and bytes, and each node's and region's shards.
#[utoipa::path(get, path = "/cluster/stats", tag = "cluster", operation_id = "cluster_stats",
    responses((status = 200, description = "The statistics", body = StatsReport)))]
pub(super) async fn stats(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let service = app.service.clone();
    let stats = blocking(move || service.stats_report()).await?;
    Ok(Json(report::to_value(&stats)))
}

/// Cluster health
///
/// `healthy`, `degraded` (something missing, everything readable) or
/// `error`, with each node's state and the shards waiting for repair.
#[utoipa::path(get, path = "/cluster/health", tag = "cluster", operation_id = "cluster_health",
    responses((status = 200, description = "The health report", body = HealthReport)))]
pub(super) async fn health(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let service = app.service.clone();
    let health = blocking(move || service.health_report()).await?;
    Ok(Json(report::to_value(&health)))
}

/// Rebuild a node
///
/// Rebuilds every shard the node should hold, on the node as it is now (an
/// empty or replaced folder), and answers when done: the prototype's fixed
/// `message`, the report's own message in `summary`.
#[utoipa::path(post, path = "/cluster/recovery/{node_id}", tag = "cluster",
    operation_id = "recover_node", params(NodeId), responses(
    (status = 200, description = "Recovery done", body = RecoveryReply),
    (status = 404, description = "No node has this id", body = ErrorDetail),
    (status = 500, description = "The node cannot be rebuilt as it is (e.g. failed but not empty)", body = ErrorDetail),
    (status = 503, description = "Too few healthy shards, or the metadata store is read-only", body = ErrorDetail)))]
pub(super) async fn recover(
    State(app): State<App>,
    node: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(node) = node.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let service = app.service.clone();
    let recovery = blocking(move || service.recover_node(&node, &|_| {})).await?;
    Ok(Json(report::to_value(&RecoveryReply::from(recovery))))
}

/// Metrics summary
///
/// Operation counts, success rates (percent), latencies and throughput
/// since start or the last clear, and node recoveries with their times.
#[utoipa::path(get, path = "/metrics/summary", tag = "metrics", operation_id = "metrics_summary",
    responses((status = 200, description = "The summary", body = MetricsSummary)))]
pub(super) async fn summary(State(app): State<App>) -> Json<Value> {
    Json(app.service.metrics().summary_json())
}

/// Prometheus metrics
///
/// Text exposition format 0.0.4, names prefixed `minigcs_`, with per-node
/// I/O counters and latency (label `node`).
#[utoipa::path(get, path = "/metrics", tag = "metrics", operation_id = "metrics_prometheus",
    responses((status = 200, description = "The metrics", body = String,
        content_type = "text/plain; version=0.0.4")))]
pub(super) async fn prometheus(State(app): State<App>) -> Response {
    let mut text = app.service.metrics().prometheus_text();
    let store = app.service.chunk_store();
    let nodes: Vec<(String, _)> = store
        .nodes()
        .iter()
        .map(|n| n.id().to_string())
        .zip(store.executor_stats())
        .collect();
    text.push_str(&crate::metrics::node_io_text(&nodes));
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}

/// Export metrics to a file
///
/// Writes `metrics_export_YYYYMMDD_HHMMSS.json` (UTC) next to
/// `metrics.output_file` and answers as the prototype: `message` and the
/// file's name in `filename`; `path` is where it was written.
#[utoipa::path(post, path = "/metrics/export", tag = "metrics", operation_id = "metrics_export",
    responses((status = 200, description = "Written", body = ExportReply),
        (status = 500, description = "The file could not be written", body = ErrorDetail)))]
pub(super) async fn export(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let folder = app
        .service
        .config()
        .metrics
        .output_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = format!(
        "metrics_export_{}.json",
        jiff::Timestamp::now().strftime("%Y%m%d_%H%M%S")
    );
    let path = folder.join(&name);
    let metrics = app.service.metrics().clone();
    let target = path.clone();
    blocking(move || metrics.export_json(&target).map_err(Into::into)).await?;
    Ok(Json(json!({
        "message": format!("Metrics exported to {name}"),
        "filename": name,
        "path": path.display().to_string(),
    })))
}

/// Clear metrics
///
/// Resets every counter and kept record (the CSV file is left alone).
#[utoipa::path(post, path = "/metrics/clear", tag = "metrics", operation_id = "metrics_clear",
    responses((status = 200, description = "Cleared", body = MessageReply)))]
pub(super) async fn clear(State(app): State<App>) -> Json<Value> {
    app.service.metrics().clear();
    Json(json!({"message": "Metrics cleared successfully"}))
}
