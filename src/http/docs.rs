//! `/docs`: the interactive API page (Swagger UI) over `/openapi.json`.
//! Its scripts, styles and icons are compiled into the binary (the
//! `utoipa-swagger-ui` crate's vendored copy), so the page works offline
//! and loads nothing from another site. This module only serves those
//! files; the document is `openapi`'s.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use utoipa_swagger_ui::Config;

use super::schema::{DocsFile, ErrorDetail};
use super::{ApiError, App};

type PageConfig = Arc<Config<'static>>;

/// `/docs`, `/docs/` and `/docs/{file}`.
pub(super) fn routes() -> Router<App> {
    let config = Config::new(["/openapi.json"])
        // The page alone, as FastAPI's: no bar to explore other documents.
        .use_base_layout()
        // No validity badge fetched from swagger.io.
        .validator_url("none");
    Router::new()
        .route("/docs", get(page))
        .route("/docs/", get(page))
        .route("/docs/*file", get(file))
        .with_state(Arc::new(config))
}

/// The API's interactive documentation
///
/// Swagger UI showing `/openapi.json`, with "Try it out" for every
/// operation (and "Authorize" for the bearer token when `api.auth_token`
/// is set). Needs no token and no network.
#[utoipa::path(get, path = "/docs", tag = "service",
    responses((status = 200, description = "The page (also at `/docs/`)", content_type = "text/html", body = String)))]
pub(super) async fn page(State(config): State<PageConfig>) -> Response {
    serve("index.html", config)
}

/// A file of the documentation page
///
/// The scripts, styles and icons of `/docs`, from the binary.
#[utoipa::path(get, path = "/docs/{file}", tag = "service", params(DocsFile),
    responses(
        (status = 200, description = "The file", content_type = "*/*", body = String),
        (status = 404, description = "No such file", body = ErrorDetail),
    ))]
pub(super) async fn file(State(config): State<PageConfig>, Path(file): Path<String>) -> Response {
    serve(&file, config)
}

fn serve(file: &str, config: PageConfig) -> Response {
    let file = file.trim_start_matches('/');
    let file = if file.is_empty() { "index.html" } else { file };
    let found = match utoipa_swagger_ui::serve(file, config) {
        Ok(Some(found)) => found,
        Ok(None) => return ApiError::new(StatusCode::NOT_FOUND, "Not Found").into_response(),
        Err(e) => return ApiError::internal(format!("documentation page: {e}")).into_response(),
    };
    let body = if file == "index.html" {
        page_html(&found.bytes)
    } else {
        found.bytes.into_owned()
    };
    let mut res = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&found.content_type) {
        res.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    res
}

/// Swagger UI's page, titled for this API and with its files' relative
/// addresses resolved under `/docs/`, so that `/docs` itself (FastAPI's
/// address, no trailing slash) shows the page rather than a redirect.
fn page_html(html: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(html)
        .replacen("<head>", "<head>\n    <base href=\"/docs/\">", 1)
        .replacen(
            "<title>Swagger UI</title>",
            "<title>MiniGCS API - Swagger UI</title>",
            1,
        )
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_in_the_binary() {
        let config = Arc::new(Config::new(["/openapi.json"]));
        let index = utoipa_swagger_ui::serve("index.html", config.clone())
            .unwrap()
            .expect("index.html");
        let html = String::from_utf8(page_html(&index.bytes)).unwrap();
        assert!(html.contains("<base href=\"/docs/\">"), "{html}");
        assert!(
            html.contains("<title>MiniGCS API - Swagger UI</title>"),
            "{html}"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
        for asset in [
            "swagger-ui.css",
            "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js",
        ] {
            assert!(html.contains(asset), "{asset} not in the page");
            let found = utoipa_swagger_ui::serve(asset, config.clone()).unwrap();
            assert!(found.is_some_and(|f| f.bytes.len() > 10_000), "{asset}");
        }
        let init = utoipa_swagger_ui::serve("swagger-initializer.js", config)
            .unwrap()
            .expect("swagger-initializer.js");
        let init = String::from_utf8(init.bytes.into_owned()).unwrap();
        assert!(init.contains("/openapi.json"), "{init}");
        assert!(!init.contains("petstore"), "{init}");
    }
}
