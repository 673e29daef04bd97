//! Objects: PutObject, GetObject (ranges, conditional requests), HeadObject,
//! DeleteObject, DeleteObjects and CopyObject, each a file-service call on
//! `bucket/key`. The ETag is the content's MD5 (recorded by every upload,
//! computed once and stored for files written through the mount). User
//! metadata (`x-amz-meta-*`) is kept as the extended attributes
//! `user.s3.meta.<name>` of the file, set in the same transaction as its
//! content, so the mount shows them too (`getfattr -d`).

use futures_util::stream;
use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result};
use std::collections::HashMap;
use std::sync::Arc;

use super::body;
use super::buckets::{require, timestamp};
use super::error::{no_such_key, to_s3};
use super::names::object_key;
use super::{blocking, S3Front};
use crate::error::Error;
use crate::model::{Inode, PutOptions, XattrSet};
use crate::service::{content_type_for, Service, Snapshot};

/// The extended-attribute prefix of S3 user metadata.
pub const META_PREFIX: &[u8] = b"user.s3.meta.";

/// Bytes read from the store per piece of a download.
const READ_PIECE: u64 = 1 << 20;

/// S3's largest single PUT (5 GiB), whatever `api.max_file_size` allows.
pub const MAX_SINGLE_PUT: u64 = 5 << 30;

/// S3's limit on the user metadata of an object (names and values).
const MAX_METADATA: usize = 2048;

/// User metadata as the extended attributes that keep it; S3's size limit
/// applies (MetadataTooLarge).
pub fn metadata_xattrs(metadata: Option<Metadata>) -> S3Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let metadata = metadata.unwrap_or_default();
    let size: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_METADATA {
        return Err(s3s::s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size ({size} > {MAX_METADATA} bytes)"
        ));
    }
    let mut attrs: Vec<(Vec<u8>, Vec<u8>)> = metadata
        .into_iter()
        .map(|(name, value)| {
            let mut full = META_PREFIX.to_vec();
            full.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            (full, value.into_bytes())
        })
        .collect();
    attrs.sort();
    Ok(attrs)
}

/// The user metadata of a file, from its extended attributes.
fn metadata_of(service: &Service, ino: u64) -> crate::error::Result<Option<Metadata>> {
    let mut out = HashMap::new();
    for name in service.list_xattrs(ino)? {
        if let Some(short) = name.strip_prefix(META_PREFIX) {
            let value = match service.get_xattr(ino, &name) {
                Ok(v) => v,
                Err(Error::NoAttribute(_)) => continue,
                Err(e) => return Err(e),
            };
            out.insert(
                String::from_utf8_lossy(short).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            );
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// What GET and HEAD answer with: a captured version, its MD5 and metadata.
struct Found {
    snapshot: Snapshot,
    md5: String,
    metadata: Option<Metadata>,
    content_type: String,
}

/// Capture the current version of `key` with its MD5 (computed and stored
/// when unknown). A key that is no file is NoSuchKey.
async fn find(front: &S3Front, bucket: &str, key: &str) -> S3Result<Found> {
    let full = object_key(bucket, key)?;
    require(front, bucket).await?;
    let service = front.service.clone();
    let shown = key.to_string();
    let found = tokio::task::spawn_blocking(move || -> crate::error::Result<Found> {
        let mut attempts = 0;
        loop {
            let snapshot = service.open_object(&full)?;
            let md5 = match snapshot.inode.md5.clone() {
                Some(m) => m,
                None => {
                    let (inode, m) = service.md5_of(snapshot.inode.clone())?;
                    attempts += 1;
                    if inode.version != snapshot.inode.version && attempts < 3 {
                        continue; // written meanwhile: capture the new version
                    }
                    m
                }
            };
            let metadata = metadata_of(&service, snapshot.inode.ino)?;
            let content_type = content_type_for(&full, snapshot.inode.content_type.as_deref());
            return Ok(Found {
                snapshot,
                md5,
                metadata,
                content_type,
            });
        }
    })
    .await
    .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    match found {
        Ok(f) => Ok(f),
        Err(Error::NotFound(_) | Error::IsADirectory(_) | Error::NotADirectory(_)) => {
            Err(no_such_key(&shown))
        }
        Err(e) => Err(to_s3(e)),
    }
}

/// The conditional-request headers of GET and HEAD, in S3's order.
struct Conditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

/// Whether `condition` names this version: by its MD5, or by the
/// provisional ETag a listing showed before the MD5 was known.
fn matches(condition: &ETagCondition, inode: &Inode, md5: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == md5 || e.value() == super::etag::provisional(inode),
    }
}

impl Conditions<'_> {
    fn check(&self, inode: &Inode, md5: &str) -> S3Result<()> {
        // Last-Modified is shown in whole seconds: compare what was shown.
        let modified = timestamp(inode.mtime - inode.mtime.rem_euclid(1_000_000_000));
        if let Some(c) = self.if_match {
            if !matches(c, inode, md5) {
                return Err(s3s::s3_error!(
                    PreconditionFailed,
                    "If-Match: the ETag is {md5}"
                ));
            }
        } else if let Some(t) = self.if_unmodified_since {
            if modified > *t {
                return Err(s3s::s3_error!(
                    PreconditionFailed,
                    "modified since If-Unmodified-Since"
                ));
            }
        }
        if let Some(c) = self.if_none_match {
            if matches(c, inode, md5) {
                return Err(S3Error::new(s3s::S3ErrorCode::NotModified));
            }
        } else if let Some(t) = self.if_modified_since {
            if modified <= *t {
                return Err(S3Error::new(s3s::S3ErrorCode::NotModified));
            }
        }
        Ok(())
    }
}

/// The options of a PUT or copy that stores the object's user metadata
/// (`x-amz-meta-*` as xattrs under `META_PREFIX`, replacing the old ones).
fn with_user_metadata<'a>(
    content_type: Option<&'a str>,
    max: u64,
    attrs: &'a [(Vec<u8>, Vec<u8>)],
) -> PutOptions<'a> {
    PutOptions {
        content_type,
        max_size: Some(max),
        xattrs: Some(XattrSet {
            prefix: META_PREFIX,
            attrs,
        }),
        etag: None,
    }
}

pub async fn put(
    front: &S3Front,
    req: S3Request<PutObjectInput>,
) -> S3Result<(S3Response<PutObjectOutput>, u64)> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let full = object_key(&input.bucket, &input.key)?;
    require(front, &input.bucket).await?;
    let max = front.max_file_size.min(MAX_SINGLE_PUT);
    let (mut reader, verdict) = body::checked_upload(
        &headers,
        trailing_headers,
        input.content_length,
        input.content_md5.clone(),
        body::sent_checksums!(input),
        input.body,
        max,
    )?;
    let attrs = metadata_xattrs(input.metadata)?;
    let content_type = input.content_type;
    let service = front.service.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let opts = with_user_metadata(content_type.as_deref(), max, &attrs);
        service.put_object(&full, &mut reader, opts)
    })
    .await
    .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    let inode = match stored {
        Ok(inode) => inode,
        Err(e) => {
            if let Some(refused) = verdict.lock().refused.take() {
                return Err(refused);
            }
            return Err(match e {
                Error::TooLarge(_) => too_large(max),
                other => to_s3(other),
            });
        }
    };
    let checksums = std::mem::take(&mut verdict.lock().checksums);
    let output = PutObjectOutput {
        e_tag: inode.md5.clone().map(ETag::Strong),
        size: Some(inode.size as i64),
        checksum_crc32: checksums.checksum_crc32,
        checksum_crc32c: checksums.checksum_crc32c,
        checksum_crc64nvme: checksums.checksum_crc64nvme,
        checksum_sha1: checksums.checksum_sha1,
        checksum_sha256: checksums.checksum_sha256,
        ..Default::default()
    };
    Ok((S3Response::new(output), inode.size))
}

pub fn too_large(max: u64) -> S3Error {
    s3s::s3_error!(
        EntityTooLarge,
        "Your proposed upload exceeds the maximum allowed object size of {max} bytes."
    )
}

/// The preconditions a GetObject or HeadObject request sends (both input
/// types name them alike).
macro_rules! request_conditions {
    ($input:expr) => {
        Conditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}

pub async fn get(
    front: &S3Front,
    input: GetObjectInput,
) -> S3Result<(S3Response<GetObjectOutput>, u64)> {
    let found = find(front, &input.bucket, &input.key).await?;
    let inode = &found.snapshot.inode;
    request_conditions!(input).check(inode, &found.md5)?;
    let size = inode.size;
    let (span, content_range) = match &input.range {
        None => (0..size, None),
        Some(range) => {
            let span = range.check(size).map_err(|_| {
                s3s::s3_error!(
                    InvalidRange,
                    "The requested range is not satisfiable (size {size})"
                )
            })?;
            let shown = format!("bytes {}-{}/{size}", span.start, span.end.saturating_sub(1));
            (span, Some(shown))
        }
    };
    let length = span.end - span.start;
    let output = GetObjectOutput {
        content_length: Some(length as i64),
        content_range,
        content_type: Some(found.content_type.clone()),
        e_tag: Some(ETag::Strong(found.md5.clone())),
        last_modified: Some(timestamp(inode.mtime)),
        metadata: found.metadata.clone(),
        accept_ranges: Some("bytes".into()),
        body: Some(download(found.snapshot, span.start, span.end)),
        ..Default::default()
    };
    Ok((S3Response::new(output), length))
}

/// The bytes `start..end` of a captured version, read piece by piece off
/// the async threads.
fn download(snapshot: Snapshot, start: u64, end: u64) -> StreamingBlob {
    let snapshot = Arc::new(snapshot);
    let pieces = stream::unfold(start, move |pos| {
        let snapshot = snapshot.clone();
        async move {
            if pos >= end {
                return None;
            }
            let len = (end - pos).min(READ_PIECE - pos % READ_PIECE) as usize;
            let read = tokio::task::spawn_blocking(move || snapshot.read(pos, len)).await;
            match read {
                Ok(Ok(bytes)) if !bytes.is_empty() => {
                    let next = pos + bytes.len() as u64;
                    Some((Ok(bytes), next))
                }
                Ok(Ok(_)) => Some((Err(std::io::Error::other("object ended early")), end)),
                Ok(Err(e)) => Some((Err(std::io::Error::other(e.to_string())), end)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), end)),
            }
        }
    });
    StreamingBlob::wrap(pieces)
}

pub async fn head(
    front: &S3Front,
    input: HeadObjectInput,
) -> S3Result<(S3Response<HeadObjectOutput>, u64)> {
    let found = find(front, &input.bucket, &input.key).await?;
    let inode = &found.snapshot.inode;
    request_conditions!(input).check(inode, &found.md5)?;
    let output = HeadObjectOutput {
        content_length: Some(inode.size as i64),
        content_type: Some(found.content_type.clone()),
        e_tag: Some(ETag::Strong(found.md5.clone())),
        last_modified: Some(timestamp(inode.mtime)),
        metadata: found.metadata.clone(),
        accept_ranges: Some("bytes".into()),
        ..Default::default()
    };
    Ok((S3Response::new(output), 0))
}

/// Delete `bucket/key`; a key that is absent (or names a directory) is
/// already deleted, as S3 answers.
async fn delete_one(front: &S3Front, bucket: &str, key: &str) -> S3Result<()> {
    let full = object_key(bucket, key)?;
    let service = front.service.clone();
    let deleted = tokio::task::spawn_blocking(move || service.delete_object(&full))
        .await
        .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    match deleted {
        Ok(_) | Err(Error::NotFound(_) | Error::IsADirectory(_) | Error::NotADirectory(_)) => {
            Ok(())
        }
        Err(e) => Err(to_s3(e)),
    }
}

pub async fn delete(
    front: &S3Front,
    input: DeleteObjectInput,
) -> S3Result<(S3Response<DeleteObjectOutput>, u64)> {
    require(front, &input.bucket).await?;
    delete_one(front, &input.bucket, &input.key).await?;
    Ok((S3Response::new(DeleteObjectOutput::default()), 0))
}

pub async fn delete_many(
    front: &S3Front,
    input: DeleteObjectsInput,
) -> S3Result<(S3Response<DeleteObjectsOutput>, u64)> {
    require(front, &input.bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in input.delete.objects {
        match delete_one(front, &input.bucket, &object.key).await {
            Ok(()) if quiet => {}
            Ok(()) => deleted.push(DeletedObject {
                key: Some(object.key),
                ..Default::default()
            }),
            Err(e) => errors.push(s3s::dto::Error {
                code: Some(e.code().as_str().to_string()),
                key: Some(object.key),
                message: e.message().map(str::to_string),
                version_id: None,
            }),
        }
    }
    let output = DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    };
    Ok((S3Response::new(output), 0))
}

pub async fn copy(
    front: &S3Front,
    input: CopyObjectInput,
) -> S3Result<(S3Response<CopyObjectOutput>, u64)> {
    let (src_bucket, src_key) = match &input.copy_source {
        CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
        _ => {
            return Err(s3s::s3_error!(
                NotImplemented,
                "only bucket/key copy sources are supported"
            ))
        }
    };
    let to = object_key(&input.bucket, &input.key)?;
    require(front, &input.bucket).await?;
    let source = find(front, &src_bucket, &src_key).await?;
    Conditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    }
    .check(&source.snapshot.inode, &source.md5)
    .map_err(|e| {
        if *e.code() == s3s::S3ErrorCode::NotModified {
            s3s::s3_error!(PreconditionFailed, "copy source not modified")
        } else {
            e
        }
    })?;
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    let (content_type, attrs) = if replace {
        (input.content_type.clone(), metadata_xattrs(input.metadata)?)
    } else {
        (
            Some(source.content_type.clone()),
            metadata_xattrs(source.metadata.clone())?,
        )
    };
    let from = object_key(&src_bucket, &src_key)?;
    let max = front.max_file_size.min(MAX_SINGLE_PUT);
    let service = front.service.clone();
    let inode = blocking(move || {
        let opts = with_user_metadata(content_type.as_deref(), max, &attrs);
        service.copy_object(&from, &to, opts)
    })
    .await?;
    let output = CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: inode.md5.clone().map(ETag::Strong),
            last_modified: Some(timestamp(inode.mtime)),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok((S3Response::new(output), inode.size))
}
