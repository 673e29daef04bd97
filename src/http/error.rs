//! The HTTP face of `Error`: which status code each failure gets and the
//! `{"detail": "…"}` body every error response carries — or, for a request
//! the prototype's FastAPI would have refused in validation, its 422 body
//! `{"detail": [{"type", "loc", "msg", "input"}]}`. This is the only place in
//! minigcs that maps errors to HTTP status codes; it decides nothing about
//! storage, it only translates.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::fmt;
use std::io;

use crate::error::Error;

/// An error answer: a status and the human-readable `detail`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// FastAPI's validation errors: when set, the body's `detail` is this
    /// list (and `detail` above only names the problem for logs and metrics).
    validation: Option<Vec<Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
            validation: None,
        }
    }

    /// 422 as FastAPI answers a request that lacks a required field, e.g.
    /// `loc` = `["body", "file"]`: `{"detail": [{"type": "missing", "loc":
    /// ["body", "file"], "msg": "Field required", "input": null}]}`.
    pub fn missing_field(loc: &[&str]) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: format!("{} is required", loc.join(".")),
            validation: Some(vec![json!({
                "type": "missing",
                "loc": loc,
                "msg": "Field required",
                "input": null,
            })]),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
}

/// The status code of a service error.
///
/// Keys naming a directory, or going through a file, conflict with the
/// namespace as it is: 409. Everything about the request itself: 400.
pub fn status_of(e: &Error) -> StatusCode {
    if e.is_no_space() {
        return StatusCode::INSUFFICIENT_STORAGE;
    }
    match e {
        Error::InvalidKey(_) | Error::InvalidArgument(_) | Error::NameTooLong(_) => {
            StatusCode::BAD_REQUEST
        }
        Error::IsADirectory(_)
        | Error::NotADirectory(_)
        | Error::AlreadyExists(_)
        | Error::NotEmpty(_) => StatusCode::CONFLICT,
        Error::NotFound(_) | Error::UnknownNode(_) | Error::NoAttribute(_) => StatusCode::NOT_FOUND,
        // Refused by the operator's choice, for every client alike.
        Error::PermissionDenied(_) | Error::ReadOnlyMode(_) => StatusCode::FORBIDDEN,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Unavailable(_) | Error::ReadOnly(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Io(io) if body_error(io).is_some() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = status_of(&e);
        let detail = match &e {
            Error::Io(io) => match body_error(io) {
                Some(b) => b.to_string(),
                None => e.to_string(),
            },
            _ => e.to_string(),
        };
        if status.is_server_error() {
            crate::warn_limited!(
                format!("HTTP {}", status.as_u16()),
                "HTTP {}: {detail}",
                status.as_u16()
            );
        }
        ApiError::new(status, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = match self.validation {
            Some(errors) => Value::from(errors),
            None => Value::from(self.detail),
        };
        let mut res = (self.status, axum::Json(json!({ "detail": detail }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// Marks an I/O error as coming from the client's request body (a
/// disconnect, a malformed multipart body) rather than from the store.
#[derive(Debug)]
pub struct BodyError(pub String);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not read the request body: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

/// Wrap a request-body failure as an `io::Error` the service will return as is.
pub fn body_io_error(e: impl fmt::Display) -> io::Error {
    io::Error::other(BodyError(e.to_string()))
}

fn body_error(e: &io::Error) -> Option<&BodyError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<BodyError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_field_answers_fastapis_422() {
        let res = ApiError::missing_field(&["body", "file"]).into_response();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"detail": [{"type": "missing", "loc": ["body", "file"],
                               "msg": "Field required", "input": null}]})
        );
    }

    #[test]
    fn statuses_follow_the_contract() {
        let cases = [
            (Error::InvalidKey("x".into()), 400),
            (Error::InvalidArgument("x".into()), 400),
            (Error::IsADirectory("x".into()), 409),
            (Error::NotADirectory("x".into()), 409),
            (Error::NotFound("x".into()), 404),
            (Error::UnknownNode("x".into()), 404),
            (Error::TooLarge("x".into()), 413),
            (Error::NoSpace("x".into()), 507),
            (Error::Unavailable("x".into()), 503),
            (Error::ReadOnly("x".into()), 503),
            (Error::ReadOnlyMode("x".into()), 403),
            (Error::Corrupt("x".into()), 500),
            (Error::Other("x".into()), 500),
            (Error::Io(io::Error::from_raw_os_error(libc::ENOSPC)), 507),
            (Error::Io(body_io_error("connection reset")), 400),
            (Error::Io(io::Error::other("disk")), 500),
        ];
        for (e, want) in cases {
            assert_eq!(status_of(&e).as_u16(), want, "{e}");
        }
    }
}
