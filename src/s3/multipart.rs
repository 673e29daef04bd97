//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts and
//! ListMultipartUploads over the file service's staged uploads, which live
//! outside the namespace (see `service::multipart`). S3's rules are checked here: part
//! numbers 1 to 10,000, parts named in ascending order with the ETags they
//! were given, every part but the last at least 5 MiB, the whole within
//! `api.max_file_size`. The object's ETag is S3's: the MD5 of the parts'
//! binary MD5s, a dash and the part count. Uploads older than
//! `s3.multipart_max_age_secs` are swept whenever an upload starts and by
//! a sweeper thread every quarter of that age (at most hourly).

use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result};
use std::sync::Arc;
use std::time::Duration;

use super::body;
use super::buckets::{require, timestamp};
use super::error::to_s3;
use super::names::object_key;
use super::objects::{metadata_xattrs, too_large, MAX_SINGLE_PUT, META_PREFIX};
use super::{blocking, S3Front};
use crate::error::Error;
use crate::model::XattrSet;
use crate::service::{Service, StagedUpload};

/// S3's smallest part but the last.
const MIN_PART: u64 = 5 << 20;
/// S3's largest part number.
const MAX_PART_NUMBER: i32 = 10_000;
/// Parts and uploads listed per page at most.
const MAX_LISTED: usize = 1000;

fn no_such_upload(id: &str) -> S3Error {
    s3s::s3_error!(
        NoSuchUpload,
        "The specified multipart upload does not exist: {id}"
    )
}

/// Upload `id` of `bucket/key`, or NoSuchUpload.
async fn upload_of(front: &S3Front, full: &str, id: &str) -> S3Result<StagedUpload> {
    let service = front.service.clone();
    let owned = id.to_string();
    let found = tokio::task::spawn_blocking(move || service.staged_upload(&owned))
        .await
        .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    match found {
        Ok(u) if u.key == full => Ok(u),
        Ok(_) | Err(Error::NotFound(_)) => Err(no_such_upload(id)),
        Err(e) => Err(to_s3(e)),
    }
}

/// Remove the uploads older than `s3.multipart_max_age_secs`, logging
/// what happened.
fn sweep(service: &Service) {
    let max_age = Duration::from_secs(service.config().s3.multipart_max_age_secs);
    match service.sweep_uploads(max_age) {
        Ok(0) => {}
        Ok(n) => log::info!("S3 API: removed {n} multipart uploads older than {max_age:?}"),
        Err(e) => log::warn!("S3 API: sweeping old multipart uploads: {e}"),
    }
}

/// Sweep old uploads now and then on a thread of its own (as well as
/// whenever an upload starts): at the start, then every quarter of the
/// maximum age (between a second and an hour). It holds the service
/// weakly and stops when the service shuts down or goes.
pub fn start_sweeper(service: &Arc<Service>) {
    let max_age = service.config().s3.multipart_max_age_secs;
    let every = Duration::from_secs((max_age / 4).clamp(1, 3600));
    let weak = Arc::downgrade(service);
    let started = std::thread::Builder::new()
        .name("s3-upload-sweep".into())
        .spawn(move || {
            let tick = Duration::from_secs(1).min(every);
            let mut waited = every;
            loop {
                let Some(service) = weak.upgrade() else { break };
                if service.is_shutting_down() {
                    break;
                }
                if waited >= every {
                    sweep(&service);
                    waited = Duration::ZERO;
                }
                drop(service);
                std::thread::sleep(tick);
                waited += tick;
            }
        });
    if let Err(e) = started {
        log::warn!("S3 API: no sweeper thread ({e}): old uploads go when an upload starts");
    }
}

pub async fn create(
    front: &S3Front,
    input: CreateMultipartUploadInput,
) -> S3Result<(S3Response<CreateMultipartUploadOutput>, u64)> {
    let full = object_key(&input.bucket, &input.key)?;
    require(front, &input.bucket).await?;
    let attrs = metadata_xattrs(input.metadata)?;
    let content_type = input.content_type;
    let service = front.service.clone();
    let id = blocking(move || {
        sweep(&service);
        let set = XattrSet {
            prefix: META_PREFIX,
            attrs: &attrs,
        };
        service.begin_upload(&full, content_type.as_deref(), set)
    })
    .await?;
    let output = CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(id),
        ..Default::default()
    };
    Ok((S3Response::new(output), 0))
}

pub async fn upload_part(
    front: &S3Front,
    req: S3Request<UploadPartInput>,
) -> S3Result<(S3Response<UploadPartOutput>, u64)> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let full = object_key(&input.bucket, &input.key)?;
    if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
        return Err(s3s::s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
        ));
    }
    require(front, &input.bucket).await?;
    upload_of(front, &full, &input.upload_id).await?;
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
    let service = front.service.clone();
    let (id, number) = (input.upload_id.clone(), input.part_number as u32);
    let stored =
        tokio::task::spawn_blocking(move || service.put_part(&id, number, &mut reader, Some(max)))
            .await
            .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    let part = match stored {
        Ok(p) => p,
        Err(e) => {
            if let Some(refused) = verdict.lock().refused.take() {
                return Err(refused);
            }
            return Err(match e {
                Error::TooLarge(_) => too_large(max),
                Error::NotFound(_) => no_such_upload(&input.upload_id),
                other => to_s3(other),
            });
        }
    };
    let checksums = std::mem::take(&mut verdict.lock().checksums);
    let output = UploadPartOutput {
        e_tag: Some(ETag::Strong(part.md5)),
        checksum_crc32: checksums.checksum_crc32,
        checksum_crc32c: checksums.checksum_crc32c,
        checksum_crc64nvme: checksums.checksum_crc64nvme,
        checksum_sha1: checksums.checksum_sha1,
        checksum_sha256: checksums.checksum_sha256,
        ..Default::default()
    };
    Ok((S3Response::new(output), part.size))
}

pub async fn upload_part_copy(
    front: &S3Front,
    input: UploadPartCopyInput,
) -> S3Result<(S3Response<UploadPartCopyOutput>, u64)> {
    let full = object_key(&input.bucket, &input.key)?;
    if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
        return Err(s3s::s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
        ));
    }
    let (src_bucket, src_key) = match &input.copy_source {
        CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
        _ => {
            return Err(s3s::s3_error!(
                NotImplemented,
                "only bucket/key copy sources are supported"
            ))
        }
    };
    let from = object_key(&src_bucket, &src_key)?;
    require(front, &input.bucket).await?;
    require(front, &src_bucket).await?;
    upload_of(front, &full, &input.upload_id).await?;
    let service = front.service.clone();
    let source = from.clone();
    let size = match blocking(move || service.resolve_key(&source)).await? {
        Some(i) if i.kind == crate::model::Kind::File => i.size,
        _ => return Err(super::error::no_such_key(&src_key)),
    };
    let range = match input.copy_source_range.as_deref() {
        None => None,
        Some(text) => {
            let bad = || {
                s3s::s3_error!(
                    InvalidRange,
                    "The x-amz-copy-source-range {text:?} is not satisfiable (size {size})"
                )
            };
            let parsed = Range::parse(text).map_err(|_| bad())?;
            Some(parsed.check(size).map_err(|_| bad())?)
        }
    };
    let max = front.max_file_size.min(MAX_SINGLE_PUT);
    let length = range.as_ref().map_or(size, |r| r.end - r.start);
    if length > max {
        return Err(too_large(max));
    }
    let service = front.service.clone();
    let (id, number) = (input.upload_id.clone(), input.part_number as u32);
    let part = blocking(move || service.copy_part(&id, number, &from, range, Some(max))).await?;
    let output = UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(part.md5)),
            last_modified: Some(timestamp(part.mtime)),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok((S3Response::new(output), part.size))
}

/// S3's ETag of an object made of parts with these (hex) MD5s.
fn multipart_etag(md5s: &[&str]) -> String {
    let mut outer = Md5::new();
    for m in md5s {
        outer.update(hex::decode(m).unwrap_or_default());
    }
    format!("{}-{}", hex::encode(outer.finalize()), md5s.len())
}

pub async fn complete(
    front: &S3Front,
    input: CompleteMultipartUploadInput,
) -> S3Result<(S3Response<CompleteMultipartUploadOutput>, u64)> {
    let full = object_key(&input.bucket, &input.key)?;
    require(front, &input.bucket).await?;
    upload_of(front, &full, &input.upload_id).await?;
    let asked = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    if asked.is_empty() {
        return Err(s3s::s3_error!(
            MalformedXML,
            "You must specify at least one part"
        ));
    }
    let service = front.service.clone();
    let id = input.upload_id.clone();
    let stored = blocking(move || service.staged_parts(&id)).await?;
    let mut chosen = Vec::with_capacity(asked.len());
    let mut previous = 0;
    for part in &asked {
        let number = part.part_number.unwrap_or(0);
        if number <= previous {
            return Err(s3s::s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order"
            ));
        }
        previous = number;
        let found = stored.iter().find(|p| p.number as i32 == number);
        let given = part.e_tag.as_ref().map(|e| e.value().trim_matches('"'));
        match found {
            Some(p) if given.is_none_or(|g| g == p.md5) => chosen.push(p),
            _ => {
                return Err(s3s::s3_error!(
                    InvalidPart,
                    "Part {number} was not found or its ETag does not match"
                ))
            }
        }
    }
    if let Some(small) = chosen[..chosen.len() - 1]
        .iter()
        .find(|p| p.size < MIN_PART)
    {
        return Err(s3s::s3_error!(
            EntityTooSmall,
            "Part {} is {} bytes; every part but the last must be at least {MIN_PART}",
            small.number,
            small.size
        ));
    }
    let total: u64 = chosen.iter().map(|p| p.size).sum();
    if total > front.max_file_size {
        return Err(too_large(front.max_file_size));
    }
    let md5s: Vec<&str> = chosen.iter().map(|p| p.md5.as_str()).collect();
    let etag = multipart_etag(&md5s);
    let numbers: Vec<u32> = chosen.iter().map(|p| p.number).collect();
    let service = front.service.clone();
    let id = input.upload_id.clone();
    let max = front.max_file_size;
    let recorded = etag.clone();
    let completed = tokio::task::spawn_blocking(move || {
        service.complete_upload(&id, &numbers, &recorded, Some(max))
    })
    .await
    .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    // Aborted, or a part replaced, since the parts were checked.
    let inode = match completed {
        Ok((inode, _)) => inode,
        Err(Error::NotFound(what)) if what.starts_with("part") => {
            return Err(s3s::s3_error!(InvalidPart, "{what} was replaced meanwhile"))
        }
        Err(Error::NotFound(_)) => return Err(no_such_upload(&input.upload_id)),
        Err(e) => return Err(to_s3(e)),
    };
    let output = CompleteMultipartUploadOutput {
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(ETag::Strong(etag)),
        ..Default::default()
    };
    Ok((S3Response::new(output), inode.size))
}

pub async fn abort(
    front: &S3Front,
    input: AbortMultipartUploadInput,
) -> S3Result<(S3Response<AbortMultipartUploadOutput>, u64)> {
    let full = object_key(&input.bucket, &input.key)?;
    require(front, &input.bucket).await?;
    upload_of(front, &full, &input.upload_id).await?;
    let service = front.service.clone();
    let id = input.upload_id.clone();
    let aborted = tokio::task::spawn_blocking(move || service.abort_upload(&id))
        .await
        .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    match aborted {
        Ok(()) => Ok((S3Response::new(AbortMultipartUploadOutput::default()), 0)),
        Err(Error::NotFound(_)) => Err(no_such_upload(&input.upload_id)),
        Err(e) => Err(to_s3(e)),
    }
}

pub async fn list_parts(
    front: &S3Front,
    input: ListPartsInput,
) -> S3Result<(S3Response<ListPartsOutput>, u64)> {
    let full = object_key(&input.bucket, &input.key)?;
    require(front, &input.bucket).await?;
    upload_of(front, &full, &input.upload_id).await?;
    let service = front.service.clone();
    let id = input.upload_id.clone();
    let stored = blocking(move || service.staged_parts(&id)).await?;
    let max = input
        .max_parts
        .map_or(MAX_LISTED, |m| (m.max(0) as usize).min(MAX_LISTED));
    let after = input.part_number_marker.unwrap_or(0).max(0) as u32;
    let rest: Vec<_> = stored.into_iter().filter(|p| p.number > after).collect();
    let truncated = rest.len() > max;
    let shown = &rest[..rest.len().min(max)];
    let parts: Vec<Part> = shown
        .iter()
        .map(|p| Part {
            part_number: Some(p.number as i32),
            size: Some(p.size as i64),
            e_tag: Some(ETag::Strong(p.md5.clone())),
            last_modified: Some(timestamp(p.mtime)),
            ..Default::default()
        })
        .collect();
    let output = ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: shown.last().filter(|_| truncated).map(|p| p.number as i32),
        parts: Some(parts),
        ..Default::default()
    };
    Ok((S3Response::new(output), 0))
}

pub async fn list_uploads(
    front: &S3Front,
    input: ListMultipartUploadsInput,
) -> S3Result<(S3Response<ListMultipartUploadsOutput>, u64)> {
    require(front, &input.bucket).await?;
    let service = front.service.clone();
    let mut uploads = blocking(move || service.staged_uploads()).await?;
    let base = format!("{}/{}", input.bucket, input.prefix.as_deref().unwrap_or(""));
    uploads.retain(|u| u.key.starts_with(&base));
    uploads.sort_by(|a, b| (&a.key, &a.id).cmp(&(&b.key, &b.id)));
    let bucket_len = input.bucket.len() + 1;
    if let Some(marker) = input.key_marker.as_deref().filter(|m| !m.is_empty()) {
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        uploads.retain(|u| {
            let key = &u.key[bucket_len..];
            key > marker || (key == marker && !id_marker.is_empty() && u.id > id_marker)
        });
    }
    let max = input
        .max_uploads
        .map_or(MAX_LISTED, |m| (m.max(0) as usize).min(MAX_LISTED));
    let truncated = uploads.len() > max;
    uploads.truncate(max);
    let last = uploads.last().cloned().filter(|_| truncated);
    let listed: Vec<MultipartUpload> = uploads
        .into_iter()
        .map(|u| MultipartUpload {
            key: Some(u.key[bucket_len..].to_string()),
            upload_id: Some(u.id),
            initiated: Some(timestamp(u.started)),
            ..Default::default()
        })
        .collect();
    let output = ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: last.as_ref().map(|u| u.key[bucket_len..].to_string()),
        next_upload_id_marker: last.map(|u| u.id),
        uploads: Some(listed),
        ..Default::default()
    };
    Ok((S3Response::new(output), 0))
}
