//! The HTTP API's shapes that are not reports, as types the OpenAPI
//! document is generated from: the small JSON replies the handlers build
//! (`{"message": …}`, the upload and list replies), the error bodies
//! (`{"detail": "…"}` and FastAPI's 422 list), the multipart upload form,
//! the path, query and header parameters, and the sets of responses the
//! object endpoints share. Reports (`crate::report`) describe themselves.
//! Nothing here is behaviour: `tests/shell/test_openapi.sh` checks the
//! daemon's live answers against the document built from these types.

use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, IntoResponses, ToSchema};

use crate::report::InfoReport;

// ------------------------------------------------------------------ bodies

/// Every error answer (4xx and 5xx but 422): what went wrong, for humans.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"detail": "Object not found"}))]
pub struct ErrorDetail {
    pub detail: String,
}

/// FastAPI's validation error: one entry per problem with the request.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"detail": [
    {"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": null}
]}))]
pub struct ValidationError {
    pub detail: Vec<ValidationIssue>,
}

/// One problem of a validation error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ValidationIssue {
    /// The kind of problem: `missing` for an absent field.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it is, e.g. `["body", "file"]`.
    pub loc: Vec<String>,
    /// For humans, e.g. `Field required`.
    pub msg: String,
    /// The value given; `null` when there was none.
    pub input: Value,
}

/// `GET /`: who answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"message": "MiniGCS API", "version": "0.1.0"}))]
pub struct RootReply {
    /// Always `MiniGCS API`.
    pub message: String,
    /// The daemon's version.
    pub version: String,
}

/// A reply that only says what was done.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"message": "Object docs/a.txt deleted successfully"}))]
pub struct MessageReply {
    pub message: String,
}

/// An upload's reply: the prototype's `message` and `size`, plus what was
/// stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "message": "Object docs/a.txt uploaded successfully", "key": "docs/a.txt", "size": 6,
    "version": 1, "checksum": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
    "etag": "\"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\"",
    "content_type": "text/plain"
}))]
pub struct UploadReply {
    /// `Object {key} uploaded successfully`.
    pub message: String,
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// 1 for a new key, one more on each overwrite.
    pub version: u64,
    /// SHA-256 of the content, hex.
    pub checksum: Option<String>,
    /// The quoted checksum, as in the `ETag` header.
    pub etag: String,
    /// The content type stored with the object.
    pub content_type: Option<String>,
}

/// `GET /objects`: the keys of the files under `prefix`, sorted.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"objects": ["docs/a.txt", "docs/b.txt"], "count": 2}))]
pub struct ListReply {
    pub objects: Vec<String>,
    /// Keys in this answer.
    pub count: u64,
    /// Present when `limit` cut the list: pass it as `start_after` to get
    /// the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_start_after: Option<String>,
}

/// `POST /metrics/export`: where the export was written.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "message": "Metrics exported successfully",
    "filename": "./metrics_export_1764075157192.json"
}))]
pub struct ExportReply {
    pub message: String,
    /// Path of the file written, beside `metrics.output_file`.
    pub filename: String,
}

/// A multipart upload, as the prototype takes it.
#[derive(Debug, Clone, ToSchema)]
pub struct UploadForm {
    /// The object's bytes. Other fields are ignored.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

// ------------------------------------------------------------------ parameters

/// The object named in the path.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ObjectKey {
    /// The object's key: a relative path that may contain `/` (send it as
    /// is or as `%2F`; both name the same key). No empty, `.` or `..`
    /// segment, at most 1024 bytes, each segment at most 255.
    #[param(example = "docs/report.pdf")]
    pub key: String,
}

/// How an upload names its content type.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The content type to store. Else the multipart part's (or the
    /// request's) `Content-Type`, else a guess from the key's extension.
    #[param(example = "application/pdf", nullable = false)]
    pub content_type: Option<String>,
}

/// Which page of which keys to list.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys starting with this text (not only whole folders).
    #[param(example = "docs/", nullable = false)]
    pub prefix: Option<String>,
    /// At most this many keys; `next_start_after` says where the next
    /// page starts.
    #[param(minimum = 1, nullable = false)]
    pub limit: Option<u64>,
    /// Only keys sorting after this one: a previous page's
    /// `next_start_after`.
    #[param(nullable = false)]
    pub start_after: Option<String>,
}

/// The request headers a download obeys.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct DownloadHeaders {
    /// One byte range: `bytes=0-1023`, `bytes=1024-` or `bytes=-500`.
    /// Answered 206 with `Content-Range`, or 416 when it starts past the end.
    #[param(rename = "Range", example = "bytes=0-1023", nullable = false)]
    pub range: Option<String>,
    /// Apply `Range` only if this ETag or date still holds; else send all.
    #[param(rename = "If-Range", nullable = false)]
    pub if_range: Option<String>,
    /// 304 without a body when one of these ETags (or `*`) matches.
    #[param(rename = "If-None-Match", nullable = false)]
    pub if_none_match: Option<String>,
    /// 304 when unchanged since this HTTP date (ignored with `If-None-Match`).
    #[param(rename = "If-Modified-Since", nullable = false)]
    pub if_modified_since: Option<String>,
}

/// The node named in the path.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodeId {
    /// A node's `id` from the configuration.
    #[param(example = "node-2")]
    pub node_id: String,
}

/// A Swagger UI file.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DocsFile {
    /// A file of the page, e.g. `swagger-ui.css`; empty (`/docs/`) for the
    /// page itself.
    #[param(example = "swagger-ui.css")]
    pub file: String,
}

// ------------------------------------------------------------------ responses

/// The answers to `GET` (and `HEAD`) of an object.
#[derive(IntoResponses)]
pub enum DownloadResponses {
    /// The whole object, streamed (`HEAD`: the headers only).
    #[response(status = 200, content_type = "*/*", headers(
        ("Content-Type" = String, description = "As stored, else guessed from the key"),
        ("Content-Length" = u64, description = "Bytes in the body"),
        ("Content-Disposition" = String, description = "`attachment; filename=…` (the key's last segment), as the prototype"),
        ("ETag" = String, description = "The quoted SHA-256 (`\"v<version>-<inode>\"` until a file written through the mount has been hashed)"),
        ("Last-Modified" = String, description = "HTTP date of the last change"),
        ("Accept-Ranges" = String, description = "`bytes`"),
    ))]
    Whole(#[to_schema] ObjectBytes),
    /// The requested range (`Range`), streamed.
    #[response(status = 206, content_type = "*/*", headers(
        ("Content-Range" = String, description = "`bytes first-last/size`"),
        ("Content-Length" = u64, description = "Bytes in the range"),
        ("Content-Disposition" = String, description = "`attachment; filename=…`"),
        ("ETag" = String),
        ("Last-Modified" = String),
        ("Accept-Ranges" = String),
    ))]
    Partial(#[to_schema] ObjectBytes),
    /// Not modified since `If-None-Match` / `If-Modified-Since`; no body.
    #[response(status = 304, headers(("ETag" = String), ("Last-Modified" = String)))]
    NotModified,
    /// The key is not valid (bad percent-encoding, empty, `..` segment, …).
    #[response(status = 400)]
    BadKey(ErrorDetail),
    /// No object has this key.
    #[response(status = 404)]
    NotFound(ErrorDetail),
    /// The key names a directory (made through the mount).
    #[response(status = 409)]
    Conflict(ErrorDetail),
    /// The range starts past the end of the object.
    #[response(status = 416, headers(("Content-Range" = String, description = "`bytes */size`")))]
    Unsatisfiable(ErrorDetail),
    /// Too few healthy shards to rebuild the first chunk (answered before
    /// any byte is sent; a later chunk failing cuts the connection short),
    /// or too many connections.
    #[response(status = 503)]
    Unavailable(ErrorDetail),
}

/// An object's bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ObjectBytes(pub Vec<u8>);

/// The answers to an upload (`PUT` and `POST`).
#[derive(IntoResponses)]
pub enum UploadResponses {
    /// Stored; the previous object under this key (if any) is replaced whole.
    #[response(status = 200, headers(("ETag" = String, description = "The new object's ETag")))]
    Stored(UploadReply),
    /// Bad key, `content_type`, `Content-Length` or multipart body, or the
    /// client's body failed mid-way.
    #[response(status = 400)]
    BadRequest(ErrorDetail),
    /// The daemon runs read-only (`--read-only`, `-o ro`).
    #[response(status = 403)]
    ReadOnly(ErrorDetail),
    /// The key names a directory or goes through a file (`a.txt/b`).
    #[response(status = 409)]
    Conflict(ErrorDetail),
    /// Larger than `api.max_file_size` (judged from `Content-Length`
    /// before the body is read, else while reading).
    #[response(status = 413)]
    TooLarge(ErrorDetail),
    /// Too few nodes up to store every shard, or too many connections.
    #[response(status = 503)]
    Unavailable(ErrorDetail),
    /// No space left on the nodes.
    #[response(status = 507)]
    NoSpace(ErrorDetail),
}

/// A multipart upload without a `file` field.
#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "A multipart body without a `file` field (FastAPI's answer, as the prototype)"
)]
pub struct MissingFile(pub ValidationError);

/// The answers to `DELETE` of an object.
#[derive(IntoResponses)]
pub enum DeleteResponses {
    /// Deleted, or there was nothing to delete (as the prototype).
    #[response(status = 200)]
    Deleted(MessageReply),
    /// The key is not valid.
    #[response(status = 400)]
    BadKey(ErrorDetail),
    /// The daemon runs read-only (`--read-only`, `-o ro`).
    #[response(status = 403)]
    ReadOnly(ErrorDetail),
    /// The key names a directory.
    #[response(status = 409)]
    Conflict(ErrorDetail),
    /// The metadata store cannot be written (read-only), or too many
    /// connections.
    #[response(status = 503)]
    Unavailable(ErrorDetail),
}

/// The answers to `GET /objects`.
#[derive(IntoResponses)]
pub enum ListResponses {
    /// The keys.
    #[response(status = 200)]
    Keys(ListReply),
    /// `limit` is not a positive integer, or the query string is malformed.
    #[response(status = 400)]
    BadQuery(ErrorDetail),
}

/// What `GET /objects/{key}/info` answers.
#[derive(IntoResponses)]
pub enum InfoResponses {
    /// The object's metadata and the placement and health of its shards.
    #[response(status = 200)]
    Info(InfoReport),
    /// The key is not valid.
    #[response(status = 400)]
    BadKey(ErrorDetail),
    /// No file has this key (and no object is named `{key}/info`).
    #[response(status = 404)]
    NotFound(ErrorDetail),
}
