//! `/objects…`: uploads (raw body or multipart field `file`) streamed into
//! `Service::put_object`, downloads streamed out of a `Snapshot` (ranges,
//! HEAD, ETag / Last-Modified / 304, `Content-Disposition`), delete, list
//! and info. Handlers only
//! translate: the key is percent-decoded from the request path and handed to
//! the service, which validates it and applies every storage rule. Memory per
//! request stays bounded: uploads are streamed through a blocking reader,
//! downloads are read one chunk at a time into a one-slot channel.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::disposition;
use super::error::body_io_error;
use super::range::{self, RangeSpec};
use super::schema::{
    DeleteResponses, DownloadHeaders, DownloadResponses, ListQuery, ListResponses, MissingFile,
    ObjectBytes, ObjectKey, UploadForm, UploadQuery, UploadResponses,
};
use super::stream::{next_chunk_boundary, stream_body, Recorder};
use super::{blocking, ApiError, App};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::{Inode, Kind, PutOptions};
use crate::report::{self, InfoReport};
use crate::service::{content_type_for, parse_key, Snapshot, DEFAULT_CONTENT_TYPE};

/// Room for multipart boundaries and part headers on top of
/// `api.max_file_size` when judging a multipart `Content-Length`.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// The longest `content_type` we store.
const MAX_CONTENT_TYPE_LEN: usize = 255;

// ------------------------------------------------------------------ request helpers

/// The object key named by the request path: everything after `/objects/`,
/// percent-decoded. Validation against the key rules is the service's.
fn key_of(uri: &Uri) -> Result<String, ApiError> {
    let raw = uri.path().strip_prefix("/objects/").unwrap_or("");
    let bytes = percent_decode(raw)
        .ok_or_else(|| ApiError::bad_request("invalid key: bad percent-encoding in the path"))?;
    String::from_utf8(bytes).map_err(|_| ApiError::bad_request("invalid key: not valid UTF-8"))
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = (*b.get(i + 1)? as char).to_digit(16)?;
            let lo = (*b.get(i + 2)? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn query_of(uri: &Uri) -> Result<HashMap<String, String>, ApiError> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A content type worth storing: not one that only says "some bytes".
fn meaningful_type(t: Option<&str>) -> Option<String> {
    let t = t?.trim();
    let essence = t
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/octet-stream" | "application/x-www-form-urlencoded" => None,
        _ => Some(t.to_string()),
    }
}

fn check_content_type(t: &str) -> Result<(), ApiError> {
    if t.len() > MAX_CONTENT_TYPE_LEN || HeaderValue::from_str(t).is_err() {
        return Err(ApiError::bad_request(
            "content_type must be a valid header value of at most 255 bytes",
        ));
    }
    Ok(())
}

fn record(
    metrics: &Metrics,
    op: &str,
    key: &str,
    bytes: u64,
    took: Duration,
    err: Option<&ApiError>,
) {
    metrics.record(
        op,
        key,
        bytes,
        took,
        err.is_none(),
        err.map(|e| e.detail.as_str()),
    );
}

// ------------------------------------------------------------------ uploads

/// Upload an object (raw body)
///
/// The request body is the object, streamed to the nodes. It replaces any
/// object under the key whole: readers of the old one keep reading it.
#[utoipa::path(put, path = "/objects/{key}", tag = "objects", params(ObjectKey, UploadQuery),
    request_body(content = ObjectBytes, content_type = "*/*", description = "The object's bytes"),
    responses(UploadResponses))]
pub(super) async fn put_object(State(app): State<App>, req: Request) -> Response {
    upload(app, req, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Upload an object (multipart, as the prototype)
///
/// `multipart/form-data` with the object in the field `file`; any other body
/// is the object's bytes, as with `PUT`.
#[utoipa::path(post, path = "/objects/{key}", tag = "objects", params(ObjectKey, UploadQuery),
    request_body(content((UploadForm = "multipart/form-data"), (ObjectBytes = "application/octet-stream"))),
    responses(UploadResponses, MissingFile))]
pub(super) async fn post_object(State(app): State<App>, req: Request) -> Response {
    upload(app, req, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn upload(app: App, req: Request, multipart_allowed: bool) -> Result<Response, ApiError> {
    let key = key_of(req.uri())?;
    let started = Instant::now();
    let result = upload_inner(&app, key.clone(), req, multipart_allowed).await;
    let took = started.elapsed();
    let bytes = result.as_ref().map(|i| i.size).unwrap_or(0);
    record(
        app.service.metrics(),
        "upload",
        &key,
        bytes,
        took,
        result.as_ref().err(),
    );
    let inode = result?;
    let etag = etag_of(&inode);
    let mut res = Json(json!({
        "message": format!("Object {key} uploaded successfully"),
        "key": key,
        "size": inode.size,
        "version": inode.version,
        "checksum": inode.checksum,
        "etag": etag,
        "content_type": inode.content_type,
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    Ok(res)
}

async fn upload_inner(
    app: &App,
    key: String,
    req: Request,
    multipart_allowed: bool,
) -> Result<Inode, ApiError> {
    parse_key(&key)?;
    let query = query_of(req.uri())?;
    let query_type = query
        .get("content_type")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty());
    if let Some(t) = query_type {
        check_content_type(t)?;
    }
    let query_type = query_type.map(str::to_string);
    let headers = req.headers();
    let length = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("invalid Content-Length"))?,
        ),
    };
    let request_type = header_str(headers, header::CONTENT_TYPE);
    let multipart = multipart_allowed
        && request_type.is_some_and(|t| {
            t.trim_start()
                .get(..19)
                .is_some_and(|p| p.eq_ignore_ascii_case("multipart/form-data"))
        });
    let max = app.max_file_size;
    let allowed = max.saturating_add(if multipart { MULTIPART_OVERHEAD } else { 0 });
    if length.is_some_and(|n| n > allowed) {
        // Refused before a byte of the body is read.
        return Err(Error::TooLarge(format!(
            "request body of {} bytes exceeds api.max_file_size ({max} bytes)",
            length.unwrap_or(0)
        ))
        .into());
    }
    if multipart {
        upload_multipart(app, key, query_type, req).await
    } else {
        let content_type = query_type.or_else(|| meaningful_type(request_type));
        if let Some(t) = &content_type {
            check_content_type(t)?;
        }
        upload_raw(app, key, content_type, length, req.into_body()).await
    }
}

/// The whole body is the object.
async fn upload_raw(
    app: &App,
    key: String,
    content_type: Option<String>,
    length: Option<u64>,
    body: Body,
) -> Result<Inode, ApiError> {
    let service = app.service.clone();
    let max = app.max_file_size;
    match length {
        // Small bodies: gather them here and store in one blocking call.
        Some(n) if n <= service.chunk_size() => {
            let bytes = axum::body::to_bytes(body, n as usize)
                .await
                .map_err(|e| ApiError::from(Error::Io(body_io_error(e))))?;
            blocking(move || {
                service.put_object(&key, &mut &bytes[..], put_options(&content_type, max))
            })
            .await
        }
        _ => {
            let stream = body.into_data_stream().map_err(body_io_error);
            let mut reader = SyncIoBridge::new(StreamReader::new(stream));
            blocking(move || service.put_object(&key, &mut reader, put_options(&content_type, max)))
                .await
        }
    }
}

/// An upload's content type (None: guessed from the key) and size limit.
fn put_options(content_type: &Option<String>, max_size: u64) -> PutOptions<'_> {
    PutOptions {
        content_type: content_type.as_deref(),
        max_size: Some(max_size),
        xattrs: None,
        etag: None,
    }
}

/// The object is the multipart field `file`; other fields are skipped.
async fn upload_multipart(
    app: &App,
    key: String,
    query_type: Option<String>,
    req: Request,
) -> Result<Inode, ApiError> {
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut field = loop {
        match multipart.next_field().await {
            Ok(Some(f)) if f.name() == Some("file") => break f,
            Ok(Some(_)) => continue,
            // FastAPI's answer when the prototype's `file` is missing.
            Ok(None) => return Err(ApiError::missing_field(&["body", "file"])),
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "malformed multipart body: {}",
                    e.body_text()
                )))
            }
        }
    };
    let content_type = query_type.or_else(|| meaningful_type(field.content_type()));
    if let Some(t) = &content_type {
        check_content_type(t)?;
    }
    // The field borrows the request, so this task pumps it into a small
    // channel that the blocking writer reads.
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let stream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let mut reader = SyncIoBridge::new(StreamReader::new(stream));
    let service = app.service.clone();
    let max = app.max_file_size;
    let store =
        blocking(move || service.put_object(&key, &mut reader, put_options(&content_type, max)));
    let pump = async move {
        loop {
            match field.chunk().await {
                Ok(Some(bytes)) => {
                    if tx.send(Ok(bytes)).await.is_err() {
                        break; // the writer stopped (error or limit)
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(body_io_error(e.body_text()))).await;
                    break;
                }
            }
        }
    };
    let ((), stored) = tokio::join!(pump, store);
    stored
}

// ------------------------------------------------------------------ downloads

/// Strong validator: the content hash when known, else version and inode.
fn etag_of(inode: &Inode) -> String {
    match &inode.checksum {
        Some(sum) => format!("\"{sum}\""),
        None => format!("\"v{}-{}\"", inode.version, inode.ino),
    }
}

fn mtime_of(inode: &Inode) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(inode.mtime.max(0) as u64)
}

fn content_type_of(inode: &Inode, key: &str) -> HeaderValue {
    HeaderValue::from_str(&content_type_for(key, inode.content_type.as_deref()))
        .unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_CONTENT_TYPE))
}

/// A missing object gets the prototype's exact 404 body.
fn as_object_error(e: ApiError) -> ApiError {
    if e.status == StatusCode::NOT_FOUND {
        ApiError::new(StatusCode::NOT_FOUND, "Object not found")
    } else {
        e
    }
}

/// The request headers a download depends on.
struct Conditions {
    range: Option<RangeSpec>,
    if_range: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
}

enum Outcome {
    Info(InfoReport),
    NotModified(Inode),
    Unsatisfiable(Inode),
    /// Headers only (HEAD).
    Head(Inode, Range<u64>, bool),
    /// The bytes, read in one go.
    Whole(Inode, Range<u64>, bool, Bytes),
    /// More than one chunk: streamed from the snapshot, starting with the
    /// first piece, read before any header is sent.
    Stream(Snapshot, Range<u64>, bool, Bytes),
}

/// Download an object
///
/// Streamed, with `ETag`, `Last-Modified` and `Content-Disposition`; one
/// byte range with `Range` (206); 304 for `If-None-Match` or
/// `If-Modified-Since`. (`GET /objects/` lists, as `GET /objects`.)
#[utoipa::path(
    get,
    path = "/objects/{key}",
    tag = "objects",
    params(ObjectKey, DownloadHeaders),
    responses(DownloadResponses)
)]
pub(super) async fn get_object(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    download(app, method == Method::HEAD, uri, headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// An object's headers
///
/// What `GET` would answer, without the body.
#[utoipa::path(
    head,
    path = "/objects/{key}",
    tag = "objects",
    params(ObjectKey, DownloadHeaders),
    responses(DownloadResponses)
)]
pub(super) async fn head_object(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    get_object(State(app), Method::HEAD, uri, headers).await
}

async fn download(
    app: App,
    head: bool,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = key_of(&uri)?;
    let started = Instant::now();
    // `{key}/info` is the info of `{key}` when that is a file.
    let info_of = key
        .strip_suffix("/info")
        .filter(|k| !k.is_empty() && parse_key(k).is_ok())
        .map(str::to_string);
    let text = |name| header_str(&headers, name).map(str::to_string);
    let cond = Conditions {
        range: header_str(&headers, header::RANGE).and_then(range::parse_range),
        if_range: text(header::IF_RANGE),
        if_none_match: text(header::IF_NONE_MATCH),
        if_modified_since: text(header::IF_MODIFIED_SINCE),
    };
    let service = app.service.clone();
    let k = key.clone();
    let outcome = blocking(move || {
        if let Some(prefix) = info_of {
            if let Ok(Some(inode)) = service.resolve_key(&prefix) {
                if inode.kind == Kind::File {
                    let info = service.info_of(prefix, inode)?;
                    return Ok(Outcome::Info(service.object_report(&info)));
                }
            }
        }
        let snap = service.open_object(&k)?;
        let inode = &snap.inode;
        let etag = etag_of(inode);
        let mtime = mtime_of(inode);
        let not_modified = match (&cond.if_none_match, &cond.if_modified_since) {
            (Some(inm), _) => range::etag_matches(inm, &etag),
            (None, Some(ims)) => range::not_modified_since(ims, mtime),
            (None, None) => false,
        };
        if not_modified {
            return Ok(Outcome::NotModified(snap.inode.clone()));
        }
        let size = inode.size;
        let spec = cond.range.filter(|_| {
            cond.if_range
                .as_deref()
                .is_none_or(|ir| range::if_range_holds(ir, &etag, mtime))
        });
        let (range, partial) = match spec {
            None => (0..size, false),
            Some(spec) => match range::resolve(spec, size) {
                Ok(r) => (r, true),
                Err(()) => return Ok(Outcome::Unsatisfiable(snap.inode.clone())),
            },
        };
        if head {
            return Ok(Outcome::Head(snap.inode.clone(), range, partial));
        }
        let len = range.end - range.start;
        if len <= service.chunk_size() {
            let data = snap.read(range.start, len as usize)?;
            return Ok(Outcome::Whole(snap.inode.clone(), range, partial, data));
        }
        // A file whose first chunk cannot be read gets an error status, not
        // a 200 with nothing behind it.
        let first_end = next_chunk_boundary(range.start, service.chunk_size()).min(range.end);
        let first = snap.read(range.start, (first_end - range.start) as usize)?;
        Ok(Outcome::Stream(snap, range, partial, first))
    })
    .await
    .map_err(as_object_error);
    let metrics = app.service.metrics();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            record(metrics, "download", &key, 0, started.elapsed(), Some(&e));
            return Err(e);
        }
    };
    let res = match outcome {
        Outcome::Info(info) => {
            record(metrics, "info", &info.key, 0, started.elapsed(), None);
            Json(report::to_value(&info)).into_response()
        }
        Outcome::NotModified(inode) => {
            record(metrics, "download", &key, 0, started.elapsed(), None);
            let mut res = StatusCode::NOT_MODIFIED.into_response();
            validators(res.headers_mut(), &inode);
            res
        }
        Outcome::Unsatisfiable(inode) => {
            let e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "range not satisfiable for an object of {} bytes",
                    inode.size
                ),
            );
            record(metrics, "download", &key, 0, started.elapsed(), Some(&e));
            let mut res = e.into_response();
            let h = res.headers_mut();
            set(h, header::CONTENT_RANGE, format!("bytes */{}", inode.size));
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            res
        }
        Outcome::Head(inode, range, partial) => {
            record(metrics, "head", &key, 0, started.elapsed(), None);
            object_response(&inode, &key, &range, partial, Body::empty())
        }
        Outcome::Whole(inode, range, partial, data) => {
            record(
                metrics,
                "download",
                &key,
                data.len() as u64,
                started.elapsed(),
                None,
            );
            object_response(&inode, &key, &range, partial, Body::from(data))
        }
        Outcome::Stream(snap, range, partial, first) => {
            let inode = snap.inode.clone();
            let recorder = Recorder {
                metrics: app.service.metrics().clone(),
                key: key.clone(),
                started,
                expected: range.end - range.start,
                sent: 0,
                error: None,
            };
            let body = stream_body(
                snap,
                range.clone(),
                first,
                app.service.chunk_size(),
                recorder,
            );
            object_response(&inode, &key, &range, partial, body)
        }
    };
    Ok(res)
}

fn set(h: &mut HeaderMap, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name, v);
    }
}

fn validators(h: &mut HeaderMap, inode: &Inode) {
    set(h, header::ETAG, etag_of(inode));
    set(
        h,
        header::LAST_MODIFIED,
        httpdate::fmt_http_date(mtime_of(inode)),
    );
}

fn object_response(
    inode: &Inode,
    key: &str,
    range: &Range<u64>,
    partial: bool,
    body: Body,
) -> Response {
    let mut res = Response::new(body);
    if partial {
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type_of(inode, key));
    h.insert(header::CONTENT_DISPOSITION, disposition::attachment(key));
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    validators(h, inode);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if partial {
        set(
            h,
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", range.start, range.end - 1, inode.size),
        );
    }
    res
}

// ------------------------------------------------------------------ delete, list

/// Delete an object
///
/// 200 also when there is no such object, as the prototype.
#[utoipa::path(
    delete,
    path = "/objects/{key}",
    tag = "objects",
    params(ObjectKey),
    responses(DeleteResponses)
)]
pub(super) async fn delete_object(
    State(app): State<App>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let key = key_of(&uri)?;
    let started = Instant::now();
    let service = app.service.clone();
    let k = key.clone();
    let result = blocking(move || service.delete_object(&k)).await;
    record(
        app.service.metrics(),
        "delete",
        &key,
        0,
        started.elapsed(),
        result.as_ref().err(),
    );
    result?;
    Ok(Json(
        json!({ "message": format!("Object {key} deleted successfully") }),
    ))
}

/// List objects
///
/// The keys of the files (not directories) under `prefix`, sorted, a page
/// at a time with `limit` and `start_after`.
#[utoipa::path(
    get,
    path = "/objects",
    tag = "objects",
    params(ListQuery),
    responses(ListResponses)
)]
pub(super) async fn list_objects(
    State(app): State<App>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let query = query_of(&uri)?;
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let start_after = query.get("start_after").filter(|s| !s.is_empty()).cloned();
    let limit = match query
        .get("limit")
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
    {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit must be a positive integer, got {l:?}"
                )))
            }
        },
    };
    let started = Instant::now();
    let service = app.service.clone();
    let p = prefix.clone();
    let result = blocking(move || service.list_objects(&p, start_after.as_deref(), limit)).await;
    record(
        app.service.metrics(),
        "list",
        &prefix,
        0,
        started.elapsed(),
        result.as_ref().err(),
    );
    let (keys, truncated) = result?;
    let mut body = json!({ "count": keys.len() });
    if truncated {
        if let Some(last) = keys.last() {
            body["next_start_after"] = Value::String(last.clone());
        }
    }
    body["objects"] = Value::from(keys);
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_decoded_from_the_path() {
        let k = |p: &str| key_of(&p.parse::<Uri>().unwrap()).map_err(|e| e.detail);
        assert_eq!(k("/objects/a/b%20c.txt").unwrap(), "a/b c.txt");
        assert_eq!(k("/objects/a%2Fb").unwrap(), "a/b");
        assert_eq!(k("/objects/%2e%2e").unwrap(), "..");
        assert_eq!(k("/objects/x%00y").unwrap(), "x\0y");
        assert_eq!(k("/objects/caf%C3%A9").unwrap(), "café");
        assert!(k("/objects/bad%zz").is_err());
        assert!(k("/objects/bad%+1").is_err());
        assert!(k("/objects/trunc%4").is_err());
        assert!(k("/objects/%ff").is_err());
        assert_eq!(k("/objects/").unwrap(), "");
    }

    #[test]
    fn generic_content_types_are_not_stored() {
        assert_eq!(meaningful_type(Some("application/octet-stream")), None);
        assert_eq!(
            meaningful_type(Some("application/x-www-form-urlencoded")),
            None
        );
        assert_eq!(meaningful_type(None), None);
        assert_eq!(
            meaningful_type(Some("text/plain; charset=utf-8")).as_deref(),
            Some("text/plain; charset=utf-8")
        );
    }
}
