//! Buckets: the top-level directories of the namespace. ListBuckets lists
//! those whose names follow S3's bucket rules (files at the root and other
//! directories belong to no bucket); CreateBucket makes the directory,
//! DeleteBucket removes it when empty; HeadBucket and GetBucketLocation
//! answer for an existing one.

use s3s::dto::*;
use s3s::{S3Response, S3Result};

use super::error::{no_such_bucket, to_s3};
use super::names::check_bucket;
use super::{blocking, S3Front};
use crate::error::Error;
use crate::model::{DirPage, Inode, Kind, ROOT_INO};

/// Root entries read per page while listing buckets.
const PAGE: usize = 1000;

/// The directory of an existing bucket, or NoSuchBucket.
pub async fn require(front: &S3Front, bucket: &str) -> S3Result<Inode> {
    check_bucket(bucket).map_err(|_| no_such_bucket(bucket))?;
    let service = front.service.clone();
    let name = bucket.to_string();
    let found = tokio::task::spawn_blocking(move || service.lookup(ROOT_INO, name.as_bytes()))
        .await
        .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    match found {
        Ok(inode) if inode.kind == Kind::Dir => Ok(inode),
        Ok(_) | Err(Error::NotFound(_)) => Err(no_such_bucket(bucket)),
        Err(e) => Err(to_s3(e)),
    }
}

pub async fn list(front: &S3Front) -> S3Result<(S3Response<ListBucketsOutput>, u64)> {
    let service = front.service.clone();
    let dirs = blocking(move || {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = service.list_dir(ROOT_INO, DirPage::new(after.as_deref(), PAGE))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let full = page.len() >= PAGE;
            out.extend(page.into_iter().filter(|(_, i)| i.kind == Kind::Dir));
            if !full {
                break;
            }
        }
        Ok(out)
    })
    .await?;
    let buckets: Vec<Bucket> = dirs
        .into_iter()
        .filter_map(|(name, inode)| {
            let name = String::from_utf8(name).ok()?;
            check_bucket(&name).ok()?;
            Some(Bucket {
                name: Some(name),
                creation_date: Some(timestamp(inode.crtime)),
                bucket_region: Some(front.region.clone()),
            })
        })
        .collect();
    let output = ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(Owner {
            display_name: Some("minigcs".into()),
            id: Some("minigcs".into()),
        }),
        ..Default::default()
    };
    Ok((S3Response::new(output), 0))
}

pub async fn create(
    front: &S3Front,
    bucket: &str,
) -> S3Result<(S3Response<CreateBucketOutput>, u64)> {
    check_bucket(bucket)?;
    let service = front.service.clone();
    let name = bucket.to_string();
    let made = tokio::task::spawn_blocking(move || service.make_top_dir(name.as_bytes()))
        .await
        .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    match made {
        Ok(_) => {}
        Err(Error::AlreadyExists(_)) => {
            // A directory of that name is this store's bucket already; a
            // file of that name keeps the name from being a bucket.
            return Err(match require(front, bucket).await {
                Ok(_) => s3s::s3_error!(
                    BucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it."
                ),
                Err(_) => s3s::s3_error!(
                    BucketAlreadyExists,
                    "A file named {bucket} exists at the top of the namespace."
                ),
            });
        }
        Err(e) => return Err(to_s3(e)),
    }
    let output = CreateBucketOutput {
        location: Some(format!("/{bucket}")),
    };
    Ok((S3Response::new(output), 0))
}

pub async fn head(front: &S3Front, bucket: &str) -> S3Result<(S3Response<HeadBucketOutput>, u64)> {
    require(front, bucket).await?;
    let output = HeadBucketOutput {
        bucket_region: Some(front.region.clone()),
        ..Default::default()
    };
    Ok((S3Response::new(output), 0))
}

pub async fn delete(
    front: &S3Front,
    bucket: &str,
) -> S3Result<(S3Response<DeleteBucketOutput>, u64)> {
    require(front, bucket).await?;
    let service = front.service.clone();
    let name = bucket.to_string();
    let removed = tokio::task::spawn_blocking(move || service.remove_top_dir(name.as_bytes()))
        .await
        .map_err(|e| s3s::s3_error!(InternalError, "request worker failed: {e}"))?;
    match removed {
        Ok(()) => Ok((S3Response::new(DeleteBucketOutput::default()), 0)),
        Err(Error::NotFound(_)) => Err(no_such_bucket(bucket)),
        Err(Error::NotEmpty(_)) => Err(s3s::s3_error!(
            BucketNotEmpty,
            "The bucket you tried to delete is not empty: {bucket}"
        )),
        Err(e) => Err(to_s3(e)),
    }
}

pub async fn location(
    front: &S3Front,
    bucket: &str,
) -> S3Result<(S3Response<GetBucketLocationOutput>, u64)> {
    require(front, bucket).await?;
    // S3 reports us-east-1 as no constraint at all.
    let constraint =
        (front.region != "us-east-1").then(|| BucketLocationConstraint::from(front.region.clone()));
    let output = GetBucketLocationOutput {
        location_constraint: constraint,
    };
    Ok((S3Response::new(output), 0))
}

/// An S3 timestamp from minigcs nanoseconds since the epoch.
pub fn timestamp(nanos: i64) -> Timestamp {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos.max(0) as u64);
    Timestamp::from(t)
}
