//! ListObjects (v1) and ListObjectsV2: the files under a bucket in key
//! order, with prefix, delimiter, paging (continuation token or marker,
//! start-after) and max-keys. Pages come from the file service's keyset
//! walk, which seeks to the bound instead of skipping what sorts before it;
//! a common prefix is stepped over in one seek, so a page costs the same
//! wherever it starts, at 100,000 keys as at 10.

use base64::Engine;
use s3s::dto::*;
use s3s::{S3Response, S3Result};

use super::buckets::{require, timestamp};
use super::{blocking, etag, S3Front};
use crate::service::Service;

/// S3's largest page, and the default one.
const MAX_KEYS: usize = 1000;

/// Sorts after every key that starts with what precedes it.
const AFTER_ALL: char = char::MAX;

/// One entry of a page, bucket-relative.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Key(String),
    Prefix(String),
}

impl Entry {
    /// The opaque continuation token resuming after this entry.
    fn token(&self) -> String {
        let raw = match self {
            Entry::Key(k) => format!("k{k}"),
            Entry::Prefix(p) => format!("p{p}"),
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    fn from_token(token: &str) -> S3Result<Entry> {
        let bad = || {
            s3s::s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        match raw.split_at_checked(1) {
            Some(("k", k)) => Ok(Entry::Key(k.to_string())),
            Some(("p", p)) => Ok(Entry::Prefix(p.to_string())),
            _ => Err(bad()),
        }
    }
}

/// One page: objects (with their inodes' facts) and common prefixes.
struct Page {
    objects: Vec<Object>,
    prefixes: Vec<String>,
    last: Option<Entry>,
    truncated: bool,
    /// Files listed without a known MD5 (provisional ETags).
    unhashed: Vec<u64>,
}

/// The entries of `bucket` under `prefix` after `after`, at most `max`.
fn walk(
    service: &Service,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<Entry>,
    max: usize,
) -> crate::error::Result<Page> {
    let base = format!("{bucket}/");
    let full_prefix = format!("{base}{prefix}");
    let mut cursor = after.map(|a| match a {
        Entry::Key(k) => format!("{base}{k}"),
        Entry::Prefix(p) => format!("{base}{p}{AFTER_ALL}"),
    });
    let mut entries: Vec<Entry> = Vec::new();
    let mut truncated = false;
    'pages: loop {
        let want = max + 1 - entries.len();
        let (keys, more) = service.list_objects(&full_prefix, cursor.as_deref(), Some(want))?;
        let mut reseek = false;
        for key in keys {
            let rel = &key[base.len()..];
            let folded = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                rel[prefix.len()..]
                    .find(d)
                    .map(|at| rel[..prefix.len() + at + d.len()].to_string())
            });
            if entries.len() == max {
                truncated = true;
                break 'pages;
            }
            match folded {
                Some(common) => {
                    cursor = Some(format!("{base}{common}{AFTER_ALL}"));
                    entries.push(Entry::Prefix(common));
                    reseek = true;
                    break;
                }
                None => {
                    entries.push(Entry::Key(rel.to_string()));
                    cursor = Some(key);
                }
            }
        }
        if !reseek && !more {
            break;
        }
    }
    let last = entries.last().cloned();
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    let mut unhashed = Vec::new();
    for entry in entries {
        match entry {
            Entry::Prefix(p) => prefixes.push(p),
            Entry::Key(k) => {
                // Gone since the walk saw it: left out, as if listed later.
                let Some(inode) = service.resolve_key(&format!("{base}{k}"))? else {
                    continue;
                };
                // Never reads content: an unknown MD5 is computed later.
                let (e_tag, wanted) = etag::listed(&inode);
                if wanted {
                    unhashed.push(inode.ino);
                }
                objects.push(Object {
                    key: Some(k),
                    size: Some(inode.size as i64),
                    last_modified: Some(timestamp(inode.mtime)),
                    e_tag: Some(ETag::Strong(e_tag)),
                    storage_class: Some(ObjectStorageClass::from_static(
                        ObjectStorageClass::STANDARD,
                    )),
                    ..Default::default()
                });
            }
        }
    }
    Ok(Page {
        objects,
        prefixes,
        last,
        truncated,
        unhashed,
    })
}

fn page_size(max_keys: Option<i32>) -> S3Result<usize> {
    match max_keys {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3s::s3_error!(InvalidArgument, "max-keys must be >= 0")),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

async fn run(
    front: &S3Front,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<Entry>,
    max: usize,
) -> S3Result<Page> {
    require(front, bucket).await?;
    let service = front.service.clone();
    let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
    let delimiter = delimiter.map(str::to_string);
    let mut page =
        blocking(move || walk(&service, &bucket, &prefix, delimiter.as_deref(), after, max))
            .await?;
    front
        .md5_backfill
        .request(std::mem::take(&mut page.unhashed));
    Ok(page)
}

fn common_prefixes(prefixes: Vec<String>) -> Option<Vec<CommonPrefix>> {
    Some(
        prefixes
            .into_iter()
            .map(|p| CommonPrefix { prefix: Some(p) })
            .collect(),
    )
}

pub async fn list_v2(
    front: &S3Front,
    input: ListObjectsV2Input,
) -> S3Result<(S3Response<ListObjectsV2Output>, u64)> {
    let max = page_size(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let after = match (&input.continuation_token, &input.start_after) {
        (Some(token), _) => Some(Entry::from_token(token)?),
        (None, Some(start)) if !start.is_empty() => Some(Entry::Key(start.clone())),
        _ => None,
    };
    let page = run(
        front,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        after,
        max,
    )
    .await?;
    let count = page.objects.len() + page.prefixes.len();
    let output = ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(prefix),
        delimiter: input.delimiter,
        max_keys: Some(max as i32),
        key_count: Some(count as i32),
        continuation_token: input.continuation_token,
        start_after: input.start_after,
        is_truncated: Some(page.truncated),
        next_continuation_token: page.last.filter(|_| page.truncated).map(|e| e.token()),
        contents: Some(page.objects),
        common_prefixes: common_prefixes(page.prefixes),
        ..Default::default()
    };
    Ok((S3Response::new(output), 0))
}

pub async fn list_v1(
    front: &S3Front,
    input: ListObjectsInput,
) -> S3Result<(S3Response<ListObjectsOutput>, u64)> {
    let max = page_size(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
    // A marker ending with the delimiter is a common prefix handed back
    // (keys never end with '/', so for '/' this cannot be a key).
    let after = input
        .marker
        .as_ref()
        .filter(|m| !m.is_empty())
        .map(|m| match delimiter {
            Some(d) if m.ends_with(d) && m.starts_with(prefix.as_str()) => Entry::Prefix(m.clone()),
            _ => Entry::Key(m.clone()),
        });
    let page = run(front, &input.bucket, &prefix, delimiter, after, max).await?;
    let next_marker = page.last.filter(|_| page.truncated).map(|e| match e {
        Entry::Key(k) | Entry::Prefix(k) => k,
    });
    let output = ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(prefix),
        delimiter: input.delimiter,
        marker: Some(input.marker.unwrap_or_default()),
        max_keys: Some(max as i32),
        is_truncated: Some(page.truncated),
        next_marker,
        contents: Some(page.objects),
        common_prefixes: common_prefixes(page.prefixes),
        ..Default::default()
    };
    Ok((S3Response::new(output), 0))
}
