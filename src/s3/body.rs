//! Upload bodies: the request's byte stream (s3s has already decoded an
//! aws-chunked body and checked its chunk signatures) handed to the file
//! service as a blocking reader, while the digests the client sent are
//! checked: `Content-MD5`, and the `x-amz-checksum-*` value of CRC32,
//! CRC32C, CRC64NVME, SHA-1 or SHA-256, from a header or from the body's
//! trailer (what current SDKs send by default). s3s reads the trailer but
//! leaves checking its value to the service, so it is checked here. A
//! mismatch fails the reader before its end, so the service stores nothing,
//! and the request fails with BadDigest.

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use parking_lot::Mutex;
use s3s::checksum::ChecksumHasher;
use s3s::dto::{Checksum, StreamingBlob};
use s3s::{S3Error, S3Result, TrailingHeaders};
use std::io::Read;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Pieces of body in flight between the network and the service.
const QUEUED: usize = 4;

/// What the client said the body's digests are.
#[derive(Default)]
pub struct Expected {
    /// `Content-MD5`, base64.
    pub content_md5: Option<String>,
    /// `x-amz-checksum-*` headers (s3s puts them in the input).
    pub headers: Checksum,
    /// The algorithms the `x-amz-trailer` header announces.
    pub trailer_names: Vec<String>,
    pub trailers: Option<TrailingHeaders>,
}

impl Expected {
    /// What a request says: `Content-MD5`, the checksum headers (as s3s
    /// parsed them) and the trailers `x-amz-trailer` announces.
    pub fn from_request(
        headers: &axum::http::HeaderMap,
        trailers: Option<TrailingHeaders>,
        content_md5: Option<String>,
        checksums: Checksum,
    ) -> Expected {
        let trailer_names = headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|n| n.trim().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        Expected {
            content_md5,
            headers: checksums,
            trailer_names,
            trailers,
        }
    }

    /// The algorithms to compute: those with a header value or a trailer.
    fn hasher(&self) -> ChecksumHasher {
        let has = |header: &Option<String>, name: &str| {
            header.is_some() || self.trailer_names.iter().any(|t| t == name)
        };
        let h = &self.headers;
        ChecksumHasher {
            crc32: has(&h.checksum_crc32, "x-amz-checksum-crc32").then(Default::default),
            crc32c: has(&h.checksum_crc32c, "x-amz-checksum-crc32c").then(Default::default),
            sha1: has(&h.checksum_sha1, "x-amz-checksum-sha1").then(Default::default),
            sha256: has(&h.checksum_sha256, "x-amz-checksum-sha256").then(Default::default),
            crc64nvme: has(&h.checksum_crc64nvme, "x-amz-checksum-crc64nvme")
                .then(Default::default),
        }
    }

    /// Compare what was computed with what the client sent (headers first,
    /// then the trailer, read once the body has ended).
    fn check(&self, md5: Option<Vec<u8>>, computed: &Checksum) -> Result<(), S3Error> {
        if let (Some(sent), Some(md5)) = (&self.content_md5, md5) {
            let ours = base64::engine::general_purpose::STANDARD.encode(md5);
            if sent.trim() != ours {
                return Err(s3s::s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                ));
            }
        }
        let trailer = self.trailers.as_ref().and_then(|t| t.take());
        let pairs = [
            (
                "x-amz-checksum-crc32",
                &self.headers.checksum_crc32,
                &computed.checksum_crc32,
            ),
            (
                "x-amz-checksum-crc32c",
                &self.headers.checksum_crc32c,
                &computed.checksum_crc32c,
            ),
            (
                "x-amz-checksum-sha1",
                &self.headers.checksum_sha1,
                &computed.checksum_sha1,
            ),
            (
                "x-amz-checksum-sha256",
                &self.headers.checksum_sha256,
                &computed.checksum_sha256,
            ),
            (
                "x-amz-checksum-crc64nvme",
                &self.headers.checksum_crc64nvme,
                &computed.checksum_crc64nvme,
            ),
        ];
        for (name, header, ours) in pairs {
            let Some(ours) = ours else { continue };
            let sent = header.clone().or_else(|| {
                trailer
                    .as_ref()
                    .and_then(|t| t.get(name))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
            match sent {
                Some(sent) if sent.trim() == ours => {}
                Some(_) => {
                    return Err(s3s::s3_error!(
                        BadDigest,
                        "The {name} you specified did not match the calculated checksum."
                    ))
                }
                None => {
                    return Err(s3s::s3_error!(
                        InvalidRequest,
                        "The body announced a {name} trailer but did not send it."
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The outcome of a body once read: its checksums as computed, or why it
/// was refused.
#[derive(Default)]
pub struct Verdict {
    pub refused: Option<S3Error>,
    pub checksums: Checksum,
}

/// A blocking reader of an upload body; its verdict once read.
pub struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    pending: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.pending = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.pending.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        let _ = self.pending.split_to(n);
        Ok(n)
    }
}

/// Start pumping `body` into a reader; the verdict is filled in when the
/// body has ended (before the reader sees its end).
pub fn reader(
    body: Option<StreamingBlob>,
    expected: Expected,
) -> S3Result<(BodyReader, Arc<Mutex<Verdict>>)> {
    let (tx, rx) = mpsc::channel(QUEUED);
    let verdict = Arc::new(Mutex::new(Verdict::default()));
    let filled = verdict.clone();
    tokio::spawn(async move {
        let mut hasher = expected.hasher();
        let mut md5 = expected.content_md5.as_ref().map(|_| Md5::new());
        if let Some(mut body) = body {
            while let Some(piece) = body.next().await {
                match piece {
                    Ok(bytes) => {
                        hasher.update(&bytes);
                        if let Some(m) = &mut md5 {
                            m.update(&bytes);
                        }
                        if tx.send(Ok(bytes)).await.is_err() {
                            return; // the service stopped reading
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("reading the request body: {e}"))).await;
                        return;
                    }
                }
            }
        }
        let computed = hasher.finalize();
        let md5 = md5.map(|m| m.finalize().to_vec());
        let refused = expected.check(md5, &computed).err();
        let failed = refused.is_some();
        {
            let mut v = filled.lock();
            v.refused = refused;
            v.checksums = computed;
        }
        if failed {
            let _ = tx
                .send(Err("the body's digest does not match".into()))
                .await;
        }
    });
    Ok((
        BodyReader {
            rx,
            pending: Bytes::new(),
        },
        verdict,
    ))
}

/// The digests a PutObject or UploadPart request sends (`input` is either
/// input type: they name their fields alike).
macro_rules! sent_checksums {
    ($input:expr) => {
        s3s::dto::Checksum {
            checksum_crc32: $input.checksum_crc32.clone(),
            checksum_crc32c: $input.checksum_crc32c.clone(),
            checksum_crc64nvme: $input.checksum_crc64nvme.clone(),
            checksum_sha1: $input.checksum_sha1.clone(),
            checksum_sha256: $input.checksum_sha256.clone(),
            ..Default::default()
        }
    };
}
pub(super) use sent_checksums;

/// An upload's body, checked: refused at once when its declared length is
/// over `max`, else read through a `BodyReader` that checks the digests the
/// request declares (headers or aws-chunked trailer).
pub fn checked_upload(
    headers: &axum::http::HeaderMap,
    trailers: Option<TrailingHeaders>,
    content_length: Option<i64>,
    content_md5: Option<String>,
    checksums: Checksum,
    body: Option<StreamingBlob>,
    max: u64,
) -> S3Result<(BodyReader, Arc<Mutex<Verdict>>)> {
    if content_length.is_some_and(|l| l > 0 && l as u64 > max) {
        return Err(super::objects::too_large(max));
    }
    reader(
        body,
        Expected::from_request(headers, trailers, content_md5, checksums),
    )
}
