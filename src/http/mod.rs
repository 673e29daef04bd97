//! The HTTP API (CONTRACT.md's table, prototype-compatible): an axum router
//! that translates requests into file-service calls and service errors into
//! status codes and `{"detail": …}` bodies. It owns routing, bearer-token
//! auth, request/response streaming, header handling (ranges, ETags,
//! conditional requests) and the metrics of API operations. It owns no
//! storage rule: keys are validated, objects stored, read and listed by
//! `service`; reports come from the same service/metrics code the control
//! socket serves.
//!
//! - `objects`: `/objects…` (upload, download, HEAD, delete, list, info)
//! - `cluster`: `/cluster/*` and `/metrics*`
//! - `error`: the one mapping from `Error` to HTTP status
//! - `range`: `Range` and conditional-request header rules
//! - `disposition`: the `Content-Disposition` of downloads
//! - `stream`: streamed download bodies and their metrics record
//! - `accept`: the accept loop, the connection cap and its 503 refusals
//! - `timeouts`: header, idle and stall timeouts of each connection
//! - `openapi`: the OpenAPI document (`/openapi.json`) and what is public
//! - `schema`: the HTTP shapes (replies, errors, parameters) it describes
//! - `docs`: the Swagger UI page (`/docs`), served from the binary

mod accept;
mod cluster;
mod disposition;
mod docs;
mod error;
mod objects;
pub mod openapi;
mod range;
pub mod schema;
mod stream;
mod timeouts;

pub use error::{status_of, ApiError};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::service::Service;

/// How long in-flight requests may run on after shutdown is signalled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every handler gets: the service and the API settings it needs.
#[derive(Clone)]
pub(crate) struct App {
    pub service: Arc<Service>,
    pub max_file_size: u64,
    pub auth_token: Option<Arc<str>>,
}

/// The API's routes over `service`, with auth when `api.auth_token` is set.
pub fn router(service: Arc<Service>) -> Router {
    let api = &service.config().api;
    let app = App {
        max_file_size: api.max_file_size,
        auth_token: api
            .auth_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(Arc::from),
        service,
    };
    let objects = get(objects::get_object)
        .head(objects::head_object)
        .put(objects::put_object)
        .post(objects::post_object)
        .delete(objects::delete_object);
    let mut router = Router::new()
        .route("/", get(root))
        .route("/objects", get(objects::list_objects))
        .route(
            "/objects/",
            get(objects::list_objects)
                .put(objects::put_object)
                .post(objects::post_object)
                .delete(objects::delete_object),
        )
        .route("/objects/*key", objects)
        .route("/cluster/stats", get(cluster::stats))
        .route("/cluster/health", get(cluster::health))
        .route("/cluster/recovery/:node_id", post(cluster::recover))
        .route("/metrics", get(cluster::prometheus))
        .route("/metrics/summary", get(cluster::summary))
        .route("/metrics/export", post(cluster::export))
        .route("/metrics/clear", post(cluster::clear))
        .merge(openapi::routes(app.auth_token.is_some()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    if app.auth_token.is_some() {
        router = router.layer(axum::middleware::from_fn_with_state(app.clone(), auth));
    }
    router.layer(DefaultBodyLimit::disable()).with_state(app)
}

/// Serve the API on `listener` until `shutdown` completes, under the
/// connection cap and timeouts of `api.*` (the cap lowered to what the
/// descriptor limit allows); in-flight requests then get [`SHUTDOWN_GRACE`]
/// to finish before the server returns anyway.
pub async fn serve(
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = service.config().clone();
    serve_router("HTTP API", router(service), &config, listener, shutdown).await
}

/// Serve `router` as `what` ("HTTP API", "S3 API") on `listener` until
/// `shutdown` completes, under the connection cap and timeouts of `api.*`.
pub(crate) async fn serve_router(
    what: &'static str,
    router: Router,
    config: &crate::config::Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let limits = accept::Limits::from_config(config, crate::resources::descriptor_limit());
    if let Ok(addr) = listener.local_addr() {
        log::info!(
            "{what} listening on http://{addr}: at most {} connections, header timeout {}s, idle timeout {}s",
            limits.max_connections,
            limits.timeouts.header.as_secs(),
            limits.timeouts.idle.as_secs()
        );
    }
    let server = accept::serve(listener, router, limits, rx.clone());
    let deadline = async move {
        accept::stopped(rx).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => r,
        _ = deadline => {
            log::warn!("{what}: requests still running {}s after shutdown; closing them", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    }
}

/// The API's name and version
///
/// Needs no token.
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "Who answers", body = schema::RootReply)))]
async fn root() -> Json<serde_json::Value> {
    Json(json!({"message": "MiniGCS API", "version": env!("CARGO_PKG_VERSION")}))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// `Authorization: Bearer <token>` on everything but `GET /` and the API's
/// documentation (`openapi::is_public`).
async fn auth(State(app): State<App>, req: Request, next: Next) -> Response {
    let open = openapi::is_public(req.method(), req.uri().path());
    if let (Some(token), false) = (&app.auth_token, open) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let ok = given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes()));
        if !ok {
            let detail = if given.is_some() {
                "invalid bearer token"
            } else {
                "missing Authorization: Bearer token"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response();
        }
    }
    next.run(req).await
}

/// Comparison whose time does not depend on where the inputs differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Run blocking service work off the async threads; map its error.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> crate::error::Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("request worker failed: {e}"))),
    }
}
