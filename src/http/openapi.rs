//! The OpenAPI 3.1 document of the HTTP API (`GET /openapi.json`),
//! generated with `utoipa` from the handlers' `#[utoipa::path]` attributes,
//! the report types (`crate::report`) and the HTTP shapes in `schema`. It
//! owns the document's frame (title, tags, which operations are public) and
//! the one runtime choice: with `api.auth_token` set, every operation but the
//! public ones declares the bearer scheme and its 401 answer. What is public
//! is decided here for the auth middleware too, so the two cannot disagree.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{HttpMethod, OpenApi as Document, SecurityRequirement};
use utoipa::{IntoResponses, OpenApi};

use super::schema::{
    ErrorDetail, InfoResponses, ListReply, MessageReply, ObjectKey, UploadReply, ValidationError,
};
use super::{cluster, docs, objects, App};
use crate::report::InfoReport;

/// The name of the bearer scheme in the document.
const BEARER: &str = "bearerAuth";

/// May `method path` be answered without the bearer token? `GET /` (as
/// before), the document and the page that shows it: they describe the API
/// and hold no data, and the page must load before its user can enter a
/// token ("Authorize").
pub(super) fn is_public(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    matches!(*method, Method::GET | Method::HEAD)
        && (path == "/" || path == "/openapi.json" || path == "/docs" || path.starts_with("/docs/"))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MiniGCS API",
        description = "Erasure-coded, multi-region object storage: objects are files of the \
            same namespace the FUSE mount shows (object `a/b.txt` is `mnt/a/b.txt`). \
            Prototype-compatible paths, multipart field `file` and JSON field names. \
            Errors are `{\"detail\": \"…\"}`; a connection over `api.max_connections` is \
            answered 503 at once on any path.",
        license(name = "MIT"),
    ),
    paths(
        super::root,
        objects::list_objects,
        objects::put_object,
        objects::post_object,
        objects::get_object,
        objects::head_object,
        objects::delete_object,
        object_info,
        cluster::stats,
        cluster::health,
        cluster::recover,
        cluster::prometheus,
        cluster::summary,
        cluster::export,
        cluster::clear,
        openapi_json,
        docs::page,
        docs::file,
    ),
    // Answers declared through `IntoResponses` sets, which utoipa does not
    // collect on its own.
    components(schemas(InfoReport, ListReply, MessageReply, UploadReply, ValidationError)),
    tags(
        (name = "objects", description = "Upload, download, list and delete objects"),
        (name = "cluster", description = "Nodes, health and recovery"),
        (name = "metrics", description = "Operation metrics, as JSON and for Prometheus"),
        (name = "service", description = "This API and its documentation"),
    )
)]
struct ApiDoc;

/// The document for a daemon with (`auth`) or without `api.auth_token`.
pub fn document(auth: bool) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    if !auth {
        return doc;
    }
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token set in `api.auth_token`"))
                    .build(),
            ),
        );
    let unauthorized = Unauthorized::responses();
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (HttpMethod::Get, &mut item.get),
            (HttpMethod::Head, &mut item.head),
            (HttpMethod::Put, &mut item.put),
            (HttpMethod::Post, &mut item.post),
            (HttpMethod::Delete, &mut item.delete),
            (HttpMethod::Patch, &mut item.patch),
            (HttpMethod::Options, &mut item.options),
            (HttpMethod::Trace, &mut item.trace),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            if is_public(&method_of(method), path) {
                continue;
            }
            operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            operation.responses.responses.extend(unauthorized.clone());
        }
    }
    doc
}

fn method_of(method: HttpMethod) -> axum::http::Method {
    use axum::http::Method;
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Post => Method::POST,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// The answer of a protected operation without the right token.
#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "No `Authorization: Bearer <token>` header, or the wrong token",
    headers(("WWW-Authenticate" = String, description = "`Bearer`"))
)]
pub struct Unauthorized(pub ErrorDetail);

/// `/openapi.json` (the document, built once) and `/docs` (the page).
pub(super) fn routes(auth: bool) -> Router<App> {
    let json = document(auth)
        .to_pretty_json()
        .expect("the OpenAPI document always serializes");
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .with_state(Arc::<str>::from(json))
        .merge(docs::routes())
}

/// This OpenAPI document
///
/// OpenAPI 3.1, generated from the daemon's own types. Needs no token.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The document", body = Object)))]
async fn openapi_json(State(json): State<Arc<str>>) -> Response {
    let mut res = json.to_string().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// An object's information
///
/// The prototype's `key`, `size`, `content_type`, `created_at`,
/// `updated_at`, `version` and `checksum` (ISO-8601 times, SHA-256 hex),
/// plus the kind, mode, chunks, the placement and health of every shard.
/// When `{key}` is not a file but an object named `{key}/info` exists, this
/// downloads that object instead.
///
/// (Served by the same route as downloads, which axum cannot split on a
/// suffix after the key; this declares the operation for the document.)
#[utoipa::path(
    get,
    path = "/objects/{key}/info",
    tag = "objects",
    params(ObjectKey),
    responses(InfoResponses)
)]
#[allow(dead_code)]
fn object_info() {}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn only_the_description_of_the_api_is_public() {
        for path in [
            "/",
            "/openapi.json",
            "/docs",
            "/docs/",
            "/docs/swagger-ui.css",
        ] {
            assert!(is_public(&Method::GET, path), "{path}");
            assert!(is_public(&Method::HEAD, path), "{path}");
            assert!(!is_public(&Method::POST, path), "{path}");
        }
        for path in [
            "/objects",
            "/objects/docs",
            "/docsx",
            "/metrics",
            "/openapi.json/x",
        ] {
            assert!(!is_public(&Method::GET, path), "{path}");
        }
    }

    #[test]
    fn the_bearer_scheme_covers_every_operation_but_the_public_ones() {
        let plain = serde_json::to_value(document(false)).unwrap();
        assert!(plain.pointer("/components/securitySchemes").is_none());
        let doc = serde_json::to_value(document(true)).unwrap();
        assert_eq!(
            doc.pointer("/components/securitySchemes/bearerAuth/scheme"),
            Some(&serde_json::json!("bearer"))
        );
        let mut protected = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let public = is_public(&method.to_uppercase().parse().unwrap(), path);
                let secured = op.get("security").is_some();
                assert_eq!(secured, !public, "{method} {path}");
                assert_eq!(
                    op["responses"].get("401").is_some(),
                    !public,
                    "{method} {path}"
                );
                protected += usize::from(secured);
            }
        }
        assert!(protected >= 14, "{protected}");
        assert_eq!(
            plain["paths"]["/objects/{key}"]["post"]["responses"]["422"]["content"]
                ["application/json"]["schema"]["$ref"],
            "#/components/schemas/ValidationError"
        );
    }
}
