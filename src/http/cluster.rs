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

use super::{blocking, ApiError, App};
use crate::report::{self, RecoveryReply};

pub(super) async fn stats(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let service = app.service.clone();
    let stats = blocking(move || service.stats_report()).await?;
    Ok(Json(report::to_value(&stats)))
}

pub(super) async fn health(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let service = app.service.clone();
    let health = blocking(move || service.health_report()).await?;
    Ok(Json(report::to_value(&health)))
}

/// The recovery report with the prototype's fixed `message`; the report's
/// own message is in `summary`.
pub(super) async fn recover(
    State(app): State<App>,
    node: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(node) = node.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let service = app.service.clone();
    let recovery = blocking(move || service.recover_node(&node, &|_| {})).await?;
    Ok(Json(report::to_value(&RecoveryReply::from(recovery))))
}

pub(super) async fn summary(State(app): State<App>) -> Json<Value> {
    Json(app.service.metrics().summary_json())
}

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

/// Writes `metrics_export_YYYYMMDD_HHMMSS.json` (UTC) next to
/// `metrics.output_file` and answers as the prototype: `message` and the
/// file's name in `filename`; `path` is where it was written.
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

pub(super) async fn clear(State(app): State<App>) -> Json<Value> {
    app.service.metrics().clear();
    Json(json!({"message": "Metrics cleared successfully"}))
}
