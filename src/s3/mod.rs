//! The S3-compatible API (`s3:` in the config): the same namespace as the
//! mount and the HTTP API, seen as buckets (the top-level directories) and
//! keys (paths below them). `s3s` speaks the wire protocol (routing, SigV4
//! and presigned URLs, clock skew, XML, aws-chunked bodies); this module
//! turns each S3 operation into file-service calls and service errors into
//! S3 error codes, and owns nothing of storage: objects are stored, read,
//! listed and deleted by `service`, with the same key rules, limits and
//! cache invalidation as the other front ends. It is served by the HTTP
//! API's accept loop, under the same connection cap and timeouts.
//!
//! - `names`: bucket-name rules and bucket/key → namespace key
//! - `error`: the one mapping from `Error` to S3 error codes
//! - `etag`: provisional ETags of files whose MD5 is unknown, and their MD5s computed in the background
//! - `body`: upload bodies as a blocking reader, with their digests checked
//! - `buckets`: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation
//! - `objects`: PutObject, GetObject, HeadObject, DeleteObject(s), CopyObject
//! - `listing`: ListObjects (v1) and ListObjectsV2
//! - `multipart`: multipart uploads (Create, UploadPart(Copy), Complete, Abort, ListParts, ListMultipartUploads)

mod body;
mod buckets;
mod error;
mod etag;
mod listing;
mod multipart;
mod names;
mod objects;

use s3s::auth::{S3Auth, SecretKey, SimpleAuth};
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Response, S3Result};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::service::Service;

/// The S3 operations over the file service.
pub struct S3Front {
    service: Arc<Service>,
    region: String,
    max_file_size: u64,
    md5_backfill: etag::Md5Backfill,
}

/// The one key pair of `s3.access_key`/`s3.secret_key`; an unknown access
/// key is `InvalidAccessKeyId` (s3s checks the signature itself).
struct KeyPair(SimpleAuth);

#[async_trait::async_trait]
impl S3Auth for KeyPair {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        self.0.lookup(access_key).cloned().ok_or_else(|| {
            s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )
        })
    }
}

/// The S3 API's router: every request goes to the s3s service.
pub fn router(service: Arc<Service>) -> axum::Router {
    let s3 = &service.config().s3;
    multipart::start_sweeper(&service);
    let mut builder = S3ServiceBuilder::new(S3Front {
        region: s3.region.clone(),
        max_file_size: service.config().api.max_file_size,
        md5_backfill: etag::Md5Backfill::start(&service),
        service: service.clone(),
    });
    builder.set_auth(KeyPair(SimpleAuth::from_single(
        s3.access_key.clone(),
        s3.secret_key.as_str(),
    )));
    let s3_service = builder.build();
    let handled =
        axum::error_handling::HandleError::new(s3_service, |e: s3s::HttpError| async move {
            log::warn!("S3 API: {e:?}");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            )
        });
    axum::Router::new()
        .fallback_service(handled)
        .layer(axum::middleware::from_fn(close_after_refused_body))
}

/// A request refused before its body was read (a bad key, metadata too
/// large, an upload over the limit, often while the client waits for
/// `100 Continue`) leaves that body unread on the connection: the answer
/// closes the connection, so the next request never starts inside it.
async fn close_after_refused_body(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header;
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let mut response = next.run(req).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Serve the S3 API on `listener` until `shutdown` completes.
pub async fn serve(
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = service.config().clone();
    crate::http::serve_router("S3 API", router(service), &config, listener, shutdown).await
}

/// The address `s3.host`:`s3.port` as a socket address string.
pub fn address(config: &crate::config::Config) -> String {
    let host = if config.s3.host == "localhost" {
        "127.0.0.1"
    } else {
        config.s3.host.as_str()
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", config.s3.port)
    } else {
        format!("{host}:{}", config.s3.port)
    }
}

impl S3Front {
    /// Run `op` and record it in the metrics as `s3_<name>` (with the bytes
    /// it reports moving).
    async fn measured<T>(
        &self,
        name: &str,
        key: &str,
        op: impl Future<Output = S3Result<(S3Response<T>, u64)>>,
    ) -> S3Result<S3Response<T>> {
        let started = Instant::now();
        let result = op.await;
        let (ok, bytes, code) = match &result {
            Ok((_, bytes)) => (true, *bytes, None),
            Err(e) => (false, 0, Some(e.code().as_str().to_string())),
        };
        self.service.metrics().record(
            &format!("s3_{name}"),
            key,
            bytes,
            started.elapsed(),
            ok,
            code.as_deref(),
        );
        result.map(|(r, _)| r)
    }
}

/// Run blocking service work off the async threads; map its error.
pub(crate) async fn blocking<T, F>(f: F) -> S3Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> crate::error::Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(error::to_s3),
        Err(e) => Err(s3s::s3_error!(InternalError, "request worker failed: {e}")),
    }
}

#[async_trait::async_trait]
impl s3s::S3 for S3Front {
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.measured("list_buckets", "", buckets::list(self)).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket.clone();
        self.measured("create_bucket", &bucket, buckets::create(self, &bucket))
            .await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let bucket = req.input.bucket.clone();
        self.measured("head_bucket", &bucket, buckets::head(self, &bucket))
            .await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket.clone();
        self.measured("delete_bucket", &bucket, buckets::delete(self, &bucket))
            .await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let bucket = req.input.bucket.clone();
        self.measured(
            "get_bucket_location",
            &bucket,
            buckets::location(self, &bucket),
        )
        .await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured("put_object", &key, objects::put(self, req))
            .await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured("get_object", &key, objects::get(self, req.input))
            .await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured("head_object", &key, objects::head(self, req.input))
            .await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured("delete_object", &key, objects::delete(self, req.input))
            .await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        self.measured(
            "delete_objects",
            &bucket,
            objects::delete_many(self, req.input),
        )
        .await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured("copy_object", &key, objects::copy(self, req.input))
            .await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        self.measured("list_objects", &bucket, listing::list_v1(self, req.input))
            .await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        self.measured(
            "list_objects_v2",
            &bucket,
            listing::list_v2(self, req.input),
        )
        .await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured(
            "create_multipart_upload",
            &key,
            multipart::create(self, req.input),
        )
        .await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured("upload_part", &key, multipart::upload_part(self, req))
            .await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured(
            "upload_part_copy",
            &key,
            multipart::upload_part_copy(self, req.input),
        )
        .await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured(
            "complete_multipart_upload",
            &key,
            multipart::complete(self, req.input),
        )
        .await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured(
            "abort_multipart_upload",
            &key,
            multipart::abort(self, req.input),
        )
        .await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let key = format!("{}/{}", req.input.bucket, req.input.key);
        self.measured("list_parts", &key, multipart::list_parts(self, req.input))
            .await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let bucket = req.input.bucket.clone();
        self.measured(
            "list_multipart_uploads",
            &bucket,
            multipart::list_uploads(self, req.input),
        )
        .await
    }
}
