//! The HTTP API end to end: every endpoint of CONTRACT.md's table and its
//! error paths, through `minigcs::http::router` in process (tower `oneshot`)
//! and through `minigcs::http::serve` on a real socket (keep-alive, racing
//! clients, a client that disconnects mid-upload, 413 before the body is
//! sent). The service runs on three local node folders in a temp dir.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tower::ServiceExt;

use minigcs::config::Config;
use minigcs::metrics::Metrics;
use minigcs::service::Service;

const MIB: u64 = 1024 * 1024;
const CHUNK: u64 = MIB;
const MAX: u64 = 3 * MIB;

struct Env {
    dir: TempDir,
    service: Arc<Service>,
    router: Router,
}

fn env_with(tweak: impl FnOnce(&mut Config)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_test(dir.path(), &["a", "b", "c"], 2, 1, CHUNK);
    config.api.max_file_size = MAX;
    config.metrics.output_file = dir.path().join("out/metrics.csv");
    // These tests remove and count shard files directly: every shard in
    // its own file (segments have their own tests).
    config.segments.max_shard = 0;
    tweak(&mut config);
    let service = Service::open(Arc::new(config), Metrics::new(None)).unwrap();
    let router = minigcs::http::router(service.clone());
    Env {
        dir,
        service,
        router,
    }
}

fn env() -> Env {
    env_with(|_| {})
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .expect("error body has a string detail")
            .to_string()
    }
}

impl Env {
    async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn req(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(body.into()).unwrap()).await
    }

    async fn get(&self, uri: &str) -> Resp {
        self.req("GET", uri, &[], Body::empty()).await
    }

    async fn put(&self, key: &str, data: &[u8]) -> Resp {
        let len = data.len().to_string();
        self.req(
            "PUT",
            &format!("/objects/{key}"),
            &[("content-length", &len)],
            data.to_vec(),
        )
        .await
    }

    fn shard_files(&self) -> usize {
        count_files(&self.dir.path().join("nodes"), "shards")
    }
}

/// Files under any `shards` folder below `root`.
fn count_files(root: &Path, within: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![(root.to_path_buf(), false)];
    while let Some((dir, inside)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let inside = inside || e.file_name() == within;
            if path.is_dir() {
                stack.push((path, inside));
            } else if inside {
                n += 1;
            }
        }
    }
    n
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    minigcs::test_data::seeded_bytes(seed, len)
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn multipart(
    field: &str,
    filename: &str,
    content_type: Option<&str>,
    payload: &[u8],
) -> (String, Vec<u8>) {
    let boundary = "------------------------minigcsTESTboundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n")
            .as_bytes(),
    );
    if let Some(t) = content_type {
        body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
    }
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(payload);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

// ------------------------------------------------------------------ objects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_names_the_api() {
    let env = env();
    let r = env.get("/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["message"], "MiniGCS API");
    assert_eq!(r.json()["version"], env!("CARGO_PKG_VERSION"));
    let r = env.get("/no/such/route").await;
    assert_eq!(r.status, 404);
    assert!(!r.detail().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_upload_then_info_and_download() {
    let env = env();
    let payload = data(300_000, 1);
    let r = env.put("hello.txt", &payload).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["message"], "Object hello.txt uploaded successfully");
    assert_eq!(j["key"], "hello.txt");
    assert_eq!(j["size"], 300_000);
    assert_eq!(j["checksum"], sha256(&payload));
    assert_eq!(j["etag"], format!("\"{}\"", sha256(&payload)));
    let v1 = j["version"].as_u64().unwrap();

    let info = env.get("/objects/hello.txt/info").await;
    assert_eq!(info.status, 200);
    let i = info.json();
    assert_eq!(i["key"], "hello.txt");
    assert_eq!(i["size"], 300_000);
    assert_eq!(i["content_type"], "text/plain");
    assert_eq!(i["version"], v1);
    assert_eq!(i["checksum"], sha256(&payload));
    for t in ["created_at", "updated_at"] {
        let s = i[t].as_str().unwrap();
        assert!(
            s.len() >= 19 && &s[4..5] == "-" && &s[10..11] == "T",
            "{t}: {s}"
        );
    }
    assert!(i["chunks"].is_array());

    let d = env.get("/objects/hello.txt").await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body, payload);
    assert_eq!(d.header("content-length"), Some("300000"));
    assert_eq!(d.header("content-type"), Some("text/plain"));
    assert_eq!(d.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        d.header("etag").unwrap(),
        format!("\"{}\"", sha256(&payload))
    );
    assert!(httpdate::parse_http_date(d.header("last-modified").unwrap()).is_ok());

    // Overwrite: new version, new bytes; content_type from the query.
    let r = env
        .req(
            "PUT",
            "/objects/hello.txt?content_type=application/x-test",
            &[],
            b"v2".to_vec(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["version"].as_u64().unwrap() > v1);
    let d = env.get("/objects/hello.txt").await;
    assert_eq!(d.body, b"v2");
    assert_eq!(d.header("content-type"), Some("application/x-test"));

    // An empty object, and an unknown extension served as octet-stream.
    assert_eq!(env.put("empty.zzqq", b"").await.status, 200);
    let d = env.get("/objects/empty.zzqq").await;
    assert_eq!(d.status, 200);
    assert!(d.body.is_empty());
    assert_eq!(d.header("content-type"), Some("application/octet-stream"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_takes_the_file_field() {
    let env = env();
    let payload = data(2 * CHUNK as usize + 1234, 2);
    let (ct, body) = multipart("file", "photo.bin", Some("image/x-test"), &payload);
    let r = env
        .req(
            "POST",
            "/objects/up/photo.bin",
            &[("content-type", &ct)],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["message"],
        "Object up/photo.bin uploaded successfully"
    );
    assert_eq!(r.json()["size"], payload.len());
    let i = env.get("/objects/up/photo.bin/info").await.json();
    assert_eq!(i["checksum"], sha256(&payload));
    assert_eq!(i["content_type"], "image/x-test");
    assert_eq!(i["chunks"].as_array().unwrap().len(), 3);
    let d = env.get("/objects/up/photo.bin").await;
    assert_eq!(d.body, payload);

    // The query's content_type wins; a generic part type lets the key decide.
    let (ct, body) = multipart("file", "a.txt", Some("application/octet-stream"), b"hi");
    let r = env
        .req("POST", "/objects/q.json", &[("content-type", &ct)], body)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        env.get("/objects/q.json").await.header("content-type"),
        Some("application/json")
    );
    let (ct, body) = multipart("file", "a.txt", Some("text/plain"), b"hi");
    let r = env
        .req(
            "POST",
            "/objects/q2?content_type=text/csv",
            &[("content-type", &ct)],
            body,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        env.get("/objects/q2").await.header("content-type"),
        Some("text/csv")
    );

    // No `file` field: FastAPI's 422, nothing stored.
    let (ct, body) = multipart("upload", "a.txt", None, b"hi");
    let r = env
        .req("POST", "/objects/nofile", &[("content-type", &ct)], body)
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json(),
        serde_json::json!({"detail": [{"type": "missing", "loc": ["body", "file"],
                                       "msg": "Field required", "input": null}]})
    );
    assert_eq!(env.get("/objects/nofile").await.status, 404);

    // POST with another content type stores the raw body.
    let r = env
        .req(
            "POST",
            "/objects/raw.bin",
            &[("content-type", "application/octet-stream")],
            b"raw".to_vec(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(env.get("/objects/raw.bin").await.body, b"raw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_keys_directories_and_files_in_the_way() {
    let env = env();
    assert_eq!(env.put("a/b/c.txt", b"nested").await.status, 200);
    assert_eq!(env.get("/objects/a/b/c.txt").await.body, b"nested");
    assert_eq!(env.get("/objects/a%2Fb%2Fc.txt").await.body, b"nested");
    let r = env.get("/objects/a/b").await;
    assert!(
        r.status.is_client_error(),
        "GET of a directory: {}",
        r.status
    );
    assert!(!r.detail().is_empty());
    let r = env.put("a/b/c.txt/d", b"x").await;
    assert!(
        r.status.is_client_error(),
        "PUT through a file: {}",
        r.status
    );
    assert!(!r.detail().is_empty());
    assert_eq!(env.put("a/b", b"x").await.status, 409);
    assert_eq!(
        env.req("DELETE", "/objects/a/b", &[], Body::empty())
            .await
            .status,
        409
    );
    // Reading through a file is a 4xx too, and never a 500.
    assert!(env
        .get("/objects/a/b/c.txt/d")
        .await
        .status
        .is_client_error());
    let l = env.get("/objects?prefix=a/").await.json();
    assert_eq!(l["objects"], serde_json::json!(["a/b/c.txt"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_suffix_downloads_when_the_prefix_is_not_a_file() {
    let env = env();
    assert_eq!(env.put("dl/info", b"i am dl/info").await.status, 200);
    let r = env.get("/objects/dl/info").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"i am dl/info");
    assert_eq!(env.put("info", b"top").await.status, 200);
    assert_eq!(env.get("/objects/info").await.body, b"top");
    assert_eq!(env.get("/objects/nothing/info").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_head_and_conditional_requests() {
    let env = env();
    let payload = data(2 * CHUNK as usize + 500, 3);
    let size = payload.len();
    assert_eq!(env.put("r.bin", &payload).await.status, 200);
    let env = &env;
    let range = |spec: &'static str| async move {
        env.req("GET", "/objects/r.bin", &[("range", spec)], Body::empty())
            .await
    };

    let r = range("bytes=100-199").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &payload[100..200]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{size}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("100"));

    // Across a chunk boundary, and long enough to be streamed.
    let r = env
        .req(
            "GET",
            "/objects/r.bin",
            &[("range", "bytes=1000-2097000")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, 206);
    assert!(r.body == payload[1000..2_097_001], "streamed range differs");

    let r = range("bytes=-10").await;
    assert_eq!(r.body, &payload[size - 10..]);
    let r = range("bytes=2097152-").await;
    assert_eq!(r.body, &payload[2_097_152..]);
    let r = range("bytes=0-1,5-6").await;
    assert_eq!(r.status, 200, "multiple ranges get the whole object");
    assert!(r.body == payload);

    let r = range("bytes=99999999-").await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    assert!(!r.detail().is_empty());

    let h = env.req("HEAD", "/objects/r.bin", &[], Body::empty()).await;
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), Some(size.to_string().as_str()));
    let etag = h.header("etag").unwrap().to_string();
    let last_modified = h.header("last-modified").unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", sha256(&payload)));
    assert_eq!(
        env.req("HEAD", "/objects/none", &[], Body::empty())
            .await
            .status,
        404
    );

    let r = env
        .req(
            "GET",
            "/objects/r.bin",
            &[("if-none-match", &etag)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = env
        .req(
            "GET",
            "/objects/r.bin",
            &[("if-none-match", "\"other\"")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = env
        .req(
            "GET",
            "/objects/r.bin",
            &[("if-modified-since", &last_modified)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, 304);
    // If-Range with a stale validator: the whole object.
    let r = env
        .req(
            "GET",
            "/objects/r.bin",
            &[("range", "bytes=0-9"), ("if-range", "\"stale\"")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_with_prefix_and_paging() {
    let env = env();
    for k in ["list/b", "list/a", "list/c", "list/sub/d", "other/x", "top"] {
        assert_eq!(env.put(k, k.as_bytes()).await.status, 200);
    }
    let l = env.get("/objects?prefix=list/").await.json();
    assert_eq!(
        l["objects"],
        serde_json::json!(["list/a", "list/b", "list/c", "list/sub/d"])
    );
    assert_eq!(l["count"], 4);
    assert!(l.get("next_start_after").is_none());
    let all = env.get("/objects").await.json();
    assert_eq!(
        all["objects"],
        serde_json::json!(["list/a", "list/b", "list/c", "list/sub/d", "other/x", "top"])
    );
    let p1 = env.get("/objects?prefix=list/&limit=2").await.json();
    assert_eq!(p1["objects"], serde_json::json!(["list/a", "list/b"]));
    assert_eq!(p1["next_start_after"], "list/b");
    let p2 = env
        .get("/objects?prefix=list/&limit=2&start_after=list/b")
        .await
        .json();
    assert_eq!(p2["objects"], serde_json::json!(["list/c", "list/sub/d"]));
    assert!(p2.get("next_start_after").is_none());
    let none = env.get("/objects?prefix=nothing-here/").await.json();
    assert_eq!(none["objects"], serde_json::json!([]));
    assert_eq!(none["count"], 0);
    assert_eq!(env.get("/objects?limit=zero").await.status, 400);
    assert_eq!(env.get("/objects?limit=0").await.status, 400);
}

impl Env {
    /// Delete `count` shard files of chunk `index` of object `key`.
    fn lose_shards(&self, key: &str, index: usize, count: usize) {
        let info = self.service.object_info(key).unwrap();
        let chunk = &info.chunks[index];
        let id = chunk.layout.chunk_id;
        for (shard, node) in chunk.placement.iter().enumerate().take(count) {
            let path = self
                .dir
                .path()
                .join(format!("nodes/node-{}/shards", node.unwrap() + 1))
                .join(format!("{:02x}", id & 0xff))
                .join(format!("{id:016x}.{shard}.shard"));
            std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

/// A GET never answers 200 with an empty or short body: an object whose
/// first chunk cannot be reconstructed is a 503 before any byte, whole or
/// ranged; one whose later chunk cannot be is a body that ends in an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_chunks_are_errors_never_short_bodies() {
    let env = env();
    let size = 2 * CHUNK as usize + 1000;
    for key in ["head", "tail"] {
        assert_eq!(env.put(key, &data(size, 7)).await.status, 200);
    }
    // k = 2, m = 1: two lost shards of one chunk leave it unreadable.
    env.lose_shards("head", 0, 2);
    env.lose_shards("tail", 2, 2);
    let r = env.get("/objects/head").await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.detail().contains("not enough healthy shards"));
    for range in ["bytes=0-", "bytes=100-1999999", "bytes=0-99"] {
        let r = env
            .req("GET", "/objects/head", &[("range", range)], Body::empty())
            .await;
        assert_eq!(r.status, 503, "range {range}");
    }
    // The readable part of a ranged read is still served.
    let r = env
        .req(
            "GET",
            "/objects/head",
            &[("range", "bytes=1048576-")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data(size, 7)[CHUNK as usize..]);

    let res = env
        .router
        .clone()
        .oneshot(
            Request::builder()
                .uri("/objects/tail")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "headers go out once the first chunk is read"
    );
    assert!(
        res.into_body().collect().await.is_err(),
        "the body must end in an error, not cleanly short"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_404_and_delete_of_absent_is_ok() {
    let env = env();
    assert_eq!(env.put("gone.txt", b"bye").await.status, 200);
    let r = env
        .req("DELETE", "/objects/gone.txt", &[], Body::empty())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["message"], "Object gone.txt deleted successfully");
    let r = env.get("/objects/gone.txt").await;
    assert_eq!(r.status, 404);
    assert!(!r.detail().is_empty());
    assert_eq!(env.get("/objects/gone.txt/info").await.status, 404);
    let r = env
        .req("DELETE", "/objects/gone.txt", &[], Body::empty())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["message"], "Object gone.txt deleted successfully");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_keys_are_400() {
    let env = env();
    let long_segment = format!("dir/{}", "s".repeat(256));
    let long_key = format!("{}/end", vec!["x".repeat(250); 5].join("/"));
    for key in [
        "..",
        "a/../b",
        "../etc/passwd",
        "a/./b",
        "%2e%2e",
        "a/%2E%2E/b",
        "%2e%2e%2fetc",
        "a//b",
        "a/",
        "x%00y",
        "bad%zz",
        "%ff%fe",
        long_segment.as_str(),
        long_key.as_str(),
    ] {
        let r = env.put(key, b"x").await;
        assert_eq!(r.status, 400, "PUT {key}");
        assert!(!r.detail().is_empty());
        assert_eq!(
            env.get(&format!("/objects/{key}")).await.status,
            400,
            "GET {key}"
        );
        let r = env
            .req("DELETE", &format!("/objects/{key}"), &[], Body::empty())
            .await;
        assert_eq!(r.status, 400, "DELETE {key}");
    }
    assert_eq!(env.put("", b"x").await.status, 400);
    assert_eq!(count_files(&env.dir.path().join("nodes"), "etc"), 0);
    assert_eq!(env.get("/objects").await.json()["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_max_file_size_are_413_and_leave_nothing() {
    let env = env();
    let before = env.shard_files();
    // Declared too large: refused on the header alone (the body is never read).
    let r = env
        .req(
            "PUT",
            "/objects/big",
            &[("content-length", &(MAX + 1).to_string())],
            Body::from_stream(futures_util::stream::pending::<
                Result<Vec<u8>, std::io::Error>,
            >()),
        )
        .await;
    assert_eq!(r.status, 413);
    assert!(!r.detail().is_empty());
    // Exactly the limit is fine.
    assert_eq!(env.put("exact", &data(MAX as usize, 4)).await.status, 200);
    let after_exact = env.shard_files();
    assert!(after_exact > before);
    // No length: cut off by the service once past the limit.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|i| Ok(data(MIB as usize / 2, i))).collect();
    let r = env
        .req(
            "PUT",
            "/objects/big-stream",
            &[],
            Body::from_stream(futures_util::stream::iter(pieces)),
        )
        .await;
    assert_eq!(r.status, 413);
    // Multipart with a small enough Content-Length but a file over the limit.
    let (ct, body) = multipart("file", "big.bin", None, &data(MAX as usize + 10, 5));
    let r = env
        .req("POST", "/objects/big-multi", &[("content-type", &ct)], body)
        .await;
    assert_eq!(r.status, 413);
    for k in ["big", "big-stream", "big-multi"] {
        assert_eq!(env.get(&format!("/objects/{k}")).await.status, 404, "{k}");
    }
    assert_eq!(
        env.shard_files(),
        after_exact,
        "a refused upload left shards"
    );
}

// ------------------------------------------------------------------ cluster and metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_endpoints() {
    let env = env();
    assert_eq!(env.put("s1", b"abc").await.status, 200);
    let s = env.get("/cluster/stats").await;
    assert_eq!(s.status, 200);
    let s = s.json();
    assert_eq!(s["total_nodes"], 3);
    assert_eq!(s["nodes_by_region"]["a"], 1);
    assert_eq!(s["total_objects"], 1);
    assert_eq!(s["total_size"], 3);
    assert!(s["node_stats"]["node-1"].is_object());
    let h = env.get("/cluster/health").await.json();
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["failed_nodes"], serde_json::json!([]));
    assert!(h["message"].is_string());

    let r = env
        .req("POST", "/cluster/recovery/node-2", &[], Body::empty())
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["message"], "Recovery completed for node node-2");
    assert!(r.json()["mttr_ms"].is_number());
    let r = env
        .req("POST", "/cluster/recovery/no-such-node", &[], Body::empty())
        .await;
    assert_eq!(r.status, 404);
    assert!(r.detail().contains("no-such-node"));
    assert_eq!(env.get("/cluster/recovery/node-2").await.status, 405);
}

/// The prototype's keys, scales and headers (PROTOTYPE-FACTS.md), beside
/// minigcs's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prototype_shapes_headers_and_scales() {
    let env = env();
    let s = env.get("/cluster/stats").await.json();
    let fresh = &s["node_stats"]["node-1"];
    assert!(fresh["created_at"].is_string(), "{fresh}");
    // (Only where the filesystem records birth times can a node tell
    // that nothing was ever stored in it.)
    if std::fs::metadata(env.dir.path()).unwrap().created().is_ok() {
        assert!(fresh["updated_at"].is_null(), "nothing stored yet: {fresh}");
    }

    // The upload says the type it stored, the one `info` shows.
    let r = env.put("noext", b"abc").await.json();
    assert_eq!(r["content_type"], "application/octet-stream");
    let i = env.get("/objects/noext/info").await.json();
    assert_eq!(i["content_type"], r["content_type"]);
    let (ct, body) = multipart("file", "docs.txt", Some("text/plain"), b"hello\n");
    let r = env
        .req("POST", "/objects/docs.txt", &[("content-type", &ct)], body)
        .await
        .json();
    assert_eq!(r["content_type"], "text/plain");
    assert_eq!(r["size"], 6);

    // Downloads are attachments named after the key's last segment.
    for method in ["GET", "HEAD"] {
        let d = env
            .req(method, "/objects/docs.txt", &[], Body::empty())
            .await;
        assert_eq!(
            d.header("content-disposition"),
            Some("attachment; filename=docs.txt"),
            "{method}"
        );
    }
    assert_eq!(env.put("dir/my%20report.pdf", b"x").await.status, 200);
    assert_eq!(
        env.get("/objects/dir/my%20report.pdf")
            .await
            .header("content-disposition"),
        Some("attachment; filename=\"my report.pdf\"")
    );
    assert_eq!(env.put("photos/caf%C3%A9.jpg", b"x").await.status, 200);
    assert_eq!(
        env.get("/objects/photos/caf%C3%A9.jpg")
            .await
            .header("content-disposition"),
        Some("attachment; filename=\"caf_.jpg\"; filename*=UTF-8''caf%C3%A9.jpg")
    );

    // A missing object: the prototype's exact 404.
    for uri in [
        "/objects/missing",
        "/objects/missing/info",
        "/objects/a/b/c",
    ] {
        let r = env.get(uri).await;
        assert_eq!(r.status, 404, "{uri}");
        assert_eq!(r.json(), serde_json::json!({"detail": "Object not found"}));
    }

    // Node figures under the prototype's names too.
    let s = env.get("/cluster/stats").await.json();
    for (id, n) in s["node_stats"].as_object().unwrap() {
        assert_eq!(n["node_id"], id.as_str());
        assert_eq!(n["total_shards"], n["shards"]);
        assert_eq!(n["total_size"], n["bytes"]);
        assert!(n["total_shards"].as_u64().unwrap() > 0, "{n}");
        assert!(n["storage_path"].as_str().is_some_and(|p| !p.is_empty()));
        let created = n["created_at"].as_str().unwrap();
        let updated = n["updated_at"].as_str().unwrap();
        assert!(created.ends_with('Z') && created.len() == 27, "{created}");
        assert!(updated >= created, "{updated} before {created}");
    }

    // Success rates are percentages: 4 uploads ok; 3 downloads ok, 3 failed.
    let m = env.get("/metrics/summary").await.json();
    let ops = &m["operation_summary"];
    assert_eq!(ops["upload"]["success_rate"].as_f64(), Some(100.0));
    assert_eq!(ops["download"]["success_rate"].as_f64(), Some(50.0));
    let total = m["total_operations"].as_f64().unwrap();
    let failed = 3.0;
    let overall = m["overall_success_rate"].as_f64().unwrap();
    assert!(
        (overall - (total - failed) / total * 100.0).abs() < 1e-3,
        "{m}"
    );
    assert_eq!(
        m["recovery_success_rate"].as_f64(),
        Some(0.0),
        "no recovery yet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoints() {
    let env = env();
    for i in 0..3 {
        assert_eq!(env.put(&format!("m{i}"), b"12345").await.status, 200);
    }
    assert_eq!(env.get("/objects/m0").await.status, 200);
    let s = env.get("/metrics/summary").await.json();
    assert_eq!(s["operation_summary"]["upload"]["count"], 3);
    assert_eq!(s["operation_summary"]["upload"]["total_size_bytes"], 15);
    assert_eq!(s["operation_summary"]["download"]["count"], 1);
    assert!(s["total_operations"].as_u64().unwrap() >= 4);

    let p = env.get("/metrics").await;
    assert_eq!(p.status, 200);
    assert!(p
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(p.body).unwrap();
    assert!(text.lines().any(|l| l.starts_with("minigcs_")), "{text}");

    let e = env.req("POST", "/metrics/export", &[], Body::empty()).await;
    assert_eq!(e.status, 200);
    // The prototype's answer: the file's name, `metrics_export_YYYYMMDD_HHMMSS.json`.
    let name = e.json()["filename"].as_str().unwrap().to_string();
    assert_eq!(e.json()["message"], format!("Metrics exported to {name}"));
    let stamp = name
        .strip_prefix("metrics_export_")
        .and_then(|n| n.strip_suffix(".json"))
        .unwrap_or_else(|| panic!("{name}"));
    assert!(
        stamp.len() == 15
            && stamp.char_indices().all(|(i, c)| if i == 8 {
                c == '_'
            } else {
                c.is_ascii_digit()
            }),
        "{name}"
    );
    // `path` says where: next to `metrics.output_file`.
    let file = e.json()["path"].as_str().unwrap().to_string();
    assert_eq!(
        std::path::Path::new(&file),
        env.dir.path().join("out").join(&name)
    );
    let exported: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(exported["summary"].is_object());

    let c = env.req("POST", "/metrics/clear", &[], Body::empty()).await;
    assert_eq!(c.json()["message"], "Metrics cleared successfully");
    assert_eq!(
        env.get("/metrics/summary").await.json()["total_operations"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_guards_everything_but_root() {
    let env = env_with(|c| c.api.auth_token = Some("s3cret".into()));
    assert_eq!(env.get("/").await.status, 200);
    for (method, uri) in [
        ("GET", "/objects"),
        ("GET", "/objects/x"),
        ("PUT", "/objects/x"),
        ("DELETE", "/objects/x"),
        ("GET", "/cluster/health"),
        ("POST", "/metrics/clear"),
        ("GET", "/nope"),
    ] {
        let r = env.req(method, uri, &[], Body::empty()).await;
        assert_eq!(r.status, 401, "{method} {uri}");
        assert!(!r.detail().is_empty());
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let r = env
            .req(
                method,
                uri,
                &[("authorization", "Bearer wrong")],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, 401, "{method} {uri} with a wrong token");
    }
    let ok = [("authorization", "Bearer s3cret")];
    assert_eq!(
        env.req("PUT", "/objects/x", &ok, b"data".to_vec())
            .await
            .status,
        200
    );
    let r = env.req("GET", "/objects/x", &ok, Body::empty()).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, &b"data"[..])
    );
    assert_eq!(
        env.req("GET", "/cluster/health", &ok, Body::empty())
            .await
            .status,
        200
    );
}

// ------------------------------------------------------------------ over a real socket

/// A minimal keep-alive HTTP/1.1 client (responses with Content-Length or chunked).
struct Conn {
    io: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Conn {
        Conn {
            io: BufReader::new(TcpStream::connect(addr).await.unwrap()),
        }
    }

    async fn send_head(&mut self, method: &str, path: &str, headers: &[(&str, String)]) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.io.get_mut().write_all(head.as_bytes()).await.unwrap();
    }

    async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Resp {
        self.send_head(method, path, &[("Content-Length", body.len().to_string())])
            .await;
        self.io.get_mut().write_all(body).await.unwrap();
        self.read_response(method == "HEAD").await
    }

    async fn read_response(&mut self, head: bool) -> Resp {
        let mut line = String::new();
        self.io.read_line(&mut line).await.unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        loop {
            line.clear();
            self.io.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.append(
                axum::http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
        let mut body = Vec::new();
        if !head && status != 304 {
            if let Some(len) = headers.get("content-length") {
                body.resize(len.to_str().unwrap().parse().unwrap(), 0);
                self.io.read_exact(&mut body).await.unwrap();
            } else if headers.get("transfer-encoding").is_some() {
                loop {
                    line.clear();
                    self.io.read_line(&mut line).await.unwrap();
                    let n = usize::from_str_radix(line.trim(), 16).unwrap();
                    let start = body.len();
                    body.resize(start + n + 2, 0);
                    self.io.read_exact(&mut body[start..]).await.unwrap();
                    body.truncate(start + n);
                    if n == 0 {
                        break;
                    }
                }
            }
        }
        Resp {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body,
        }
    }
}

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_server(env: &Env) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(minigcs::http::serve(
        env.service.clone(),
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        r.expect("serve returns after shutdown").unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_connections_alive_and_shuts_down() {
    let env = env();
    let server = start_server(&env).await;
    let mut c = Conn::open(server.addr).await;
    for i in 0..50u64 {
        let payload = data(1000 + i as usize * 100, i);
        let key = format!("/objects/ka/{i}.bin");
        let r = c.request("PUT", &key, &payload).await;
        assert_eq!(r.status, 200);
        let r = c.request("GET", &key, b"").await;
        assert_eq!(r.body, payload);
        let r = c.request("HEAD", &key, b"").await;
        assert_eq!(
            r.header("content-length"),
            Some(payload.len().to_string().as_str())
        );
    }
    // A multi-chunk object streamed over the socket.
    let big = data(2 * CHUNK as usize + 77, 99);
    assert_eq!(c.request("PUT", "/objects/big.bin", &big).await.status, 200);
    let r = c.request("GET", "/objects/big.bin", b"").await;
    assert!(r.body == big, "streamed download differs");
    let r = c.request("GET", "/objects/%2e%2e", b"").await;
    assert_eq!(r.status, 400);
    // A percent-encoded `..` with a raw path the client did not normalise.
    let r = c.request("PUT", "/objects/a/../b", b"x").await;
    assert_eq!(r.status, 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_oversize_upload_is_refused_before_the_body() {
    let env = env();
    let server = start_server(&env).await;
    let mut c = Conn::open(server.addr).await;
    c.send_head(
        "PUT",
        "/objects/huge",
        &[("Content-Length", (10 * MAX).to_string())],
    )
    .await;
    let r = tokio::time::timeout(Duration::from_secs(5), c.read_response(false))
        .await
        .expect("413 arrives without the body being sent");
    assert_eq!(r.status, 413);
    assert!(!r.detail().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_upload_leaves_no_object_and_no_shards() {
    let env = env();
    assert_eq!(env.put("keep", b"keep").await.status, 200);
    let before = env.shard_files();
    let server = start_server(&env).await;
    for multipart_upload in [false, true] {
        let mut c = Conn::open(server.addr).await;
        let part = data(2 * CHUNK as usize + 100, 7);
        if multipart_upload {
            let (ct, body) = multipart("file", "x.bin", None, &data(MAX as usize - 10, 7));
            c.send_head(
                "POST",
                "/objects/cut",
                &[
                    ("Content-Type", ct),
                    ("Content-Length", body.len().to_string()),
                ],
            )
            .await;
            c.io.get_mut().write_all(&body[..part.len()]).await.unwrap();
        } else {
            c.send_head(
                "PUT",
                "/objects/cut",
                &[("Content-Length", MAX.to_string())],
            )
            .await;
            c.io.get_mut().write_all(&part).await.unwrap();
        }
        c.io.get_mut().flush().await.unwrap();
        // Wait until the server has stored the full chunks it got, then hang up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while env.shard_files() <= before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            env.shard_files() > before,
            "the first chunks were never written"
        );
        drop(c);
        let deadline = Instant::now() + Duration::from_secs(10);
        while env.shard_files() != before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            env.shard_files(),
            before,
            "shards leaked (multipart: {multipart_upload})"
        );
        assert_eq!(env.get("/objects/cut").await.status, 404);
    }
    let l = env.get("/objects").await.json();
    assert_eq!(l["objects"], serde_json::json!(["keep"]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_uploaders_on_one_key_readers_see_whole_versions() {
    let env = env();
    let versions: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..8)
            .map(|i| data(CHUNK as usize + 4096 * (i + 1), 100 + i as u64))
            .collect(),
    );
    let server = start_server(&env).await;
    let addr = server.addr;
    assert_eq!(
        Conn::open(addr)
            .await
            .request("PUT", "/objects/race", &versions[0])
            .await
            .status,
        200
    );
    let mut tasks = Vec::new();
    for w in 0..8 {
        let versions = versions.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            for _ in 0..3 {
                let r = c.request("PUT", "/objects/race", &versions[w]).await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            }
        }));
    }
    for _ in 0..4 {
        let versions = versions.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            for _ in 0..10 {
                let r = c.request("GET", "/objects/race", b"").await;
                assert_eq!(r.status, 200);
                assert!(
                    versions.contains(&r.body),
                    "a read returned a mix of versions"
                );
                let etag = r.header("etag").unwrap().trim_matches('"').to_string();
                assert_eq!(
                    etag,
                    sha256(&r.body),
                    "ETag does not match the bytes served"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last = Conn::open(addr)
        .await
        .request("GET", "/objects/race", b"")
        .await;
    assert!(versions.contains(&last.body));
    server.stop().await;
}
