//! Uploads assembled from parts (S3 multipart uploads), staged in the
//! namespace. An upload is the directory `.s3-uploads/<id>` (`id`: 32 hex
//! digits) whose extended attributes hold the target key, content type and
//! the attributes the object will get; each part is a committed file
//! `.s3-uploads/<id>/<number, 5 digits>`, stored like any upload (streamed,
//! under the write budget, with its MD5). Completing streams the chosen
//! parts, in order, into one upload of the target key (visible at once and
//! whole, as any PUT) and then removes the staging directory; aborting
//! removes it. A part, once stored, survives a crash; an upload nobody
//! completes is removed by `sweep_uploads` once it is older than the age
//! given. The parts are read back on completion: the layout costs one more
//! pass over the bytes, and keeps every part an ordinary file. A part may
//! also be copied from a range of another object (`copy_part`).

use std::io::Read;
use std::time::Duration;

use super::keys::parse_key;
use super::objects::SnapshotReader;
use super::Service;
use crate::error::{Error, Result};
use crate::model::{
    now_nanos, DirPage, Inode, Kind, Nanos, NodeSpec, Owner, PutOptions, XattrSet, XattrWrite,
    ROOT_INO,
};

/// The top-level directory holding the uploads in progress.
pub const UPLOADS_DIR: &str = ".s3-uploads";

const ATTR_KEY: &[u8] = b"user.minigcs.upload.key";
const ATTR_TYPE: &[u8] = b"user.minigcs.upload.content_type";
const ATTR_PREFIX: &[u8] = b"user.minigcs.upload.xattr_prefix";

/// Directory entries read per page.
const PAGE: usize = 1000;

/// One upload in progress.
#[derive(Debug, Clone)]
pub struct StagedUpload {
    pub id: String,
    /// The key the object will have.
    pub key: String,
    pub started: Nanos,
    dir: u64,
}

/// One stored part.
#[derive(Debug, Clone)]
pub struct StagedPart {
    pub number: u32,
    pub size: u64,
    pub md5: String,
    pub mtime: Nanos,
}

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

fn part_key(id: &str, number: u32) -> String {
    format!("{UPLOADS_DIR}/{id}/{number:05}")
}

impl Service {
    /// Entries of directory `ino`, all pages.
    fn all_entries(&self, ino: u64) -> Result<Vec<(Vec<u8>, Inode)>> {
        let mut out: Vec<(Vec<u8>, Inode)> = Vec::new();
        loop {
            let after = out.last().map(|(n, _)| n.clone());
            let page = self.list_dir(ino, DirPage::new(after.as_deref(), PAGE))?;
            let full = page.len() >= PAGE;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// The uploads directory, made when `create` and missing.
    fn uploads_dir(&self, create: bool) -> Result<Option<Inode>> {
        match self.lookup(ROOT_INO, UPLOADS_DIR.as_bytes()) {
            Ok(i) if i.kind == Kind::Dir => Ok(Some(i)),
            Ok(_) => Err(Error::AlreadyExists(format!(
                "{UPLOADS_DIR} exists and is not a directory"
            ))),
            Err(Error::NotFound(_)) if create => {
                match self.make_node(
                    ROOT_INO,
                    UPLOADS_DIR.as_bytes(),
                    &NodeSpec::dir(0o700, Owner::ROOT),
                ) {
                    Ok(i) => Ok(Some(i)),
                    Err(Error::AlreadyExists(_)) => self.uploads_dir(false),
                    Err(e) => Err(e),
                }
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Start an upload of `key`: its id. The object will get `content_type`
    /// and the attributes of `xattrs`.
    pub fn begin_upload(
        &self,
        key: &str,
        content_type: Option<&str>,
        xattrs: XattrSet,
    ) -> Result<String> {
        self.ctx.meta.check_writable()?;
        parse_key(key)?;
        let root = self.uploads_dir(true)?.expect("made");
        let id = format!("{:032x}", rand::random::<u128>());
        let dir = self.make_node(root.ino, id.as_bytes(), &NodeSpec::dir(0o700, Owner::ROOT))?;
        let upsert = XattrWrite::Upsert;
        self.set_xattr(dir.ino, ATTR_PREFIX, xattrs.prefix, upsert)?;
        for (name, value) in xattrs.attrs {
            self.set_xattr(dir.ino, name, value, upsert)?;
        }
        if let Some(t) = content_type {
            self.set_xattr(dir.ino, ATTR_TYPE, t.as_bytes(), upsert)?;
        }
        // Last: an upload without its key is unfinished and swept.
        self.set_xattr(dir.ino, ATTR_KEY, key.as_bytes(), upsert)?;
        Ok(id)
    }

    /// The upload `id`; NotFound when there is none (or it is unfinished).
    pub fn staged_upload(&self, id: &str) -> Result<StagedUpload> {
        let missing = || Error::NotFound(format!("upload {id}"));
        if !valid_id(id) {
            return Err(missing());
        }
        let root = self.uploads_dir(false)?.ok_or_else(missing)?;
        let dir = match self.lookup(root.ino, id.as_bytes()) {
            Ok(d) if d.kind == Kind::Dir => d,
            Ok(_) | Err(Error::NotFound(_)) => return Err(missing()),
            Err(e) => return Err(e),
        };
        let key = match self.get_xattr(dir.ino, ATTR_KEY) {
            Ok(k) => String::from_utf8_lossy(&k).into_owned(),
            Err(Error::NoAttribute(_)) => return Err(missing()),
            Err(e) => return Err(e),
        };
        Ok(StagedUpload {
            id: id.to_string(),
            key,
            started: dir.crtime,
            dir: dir.ino,
        })
    }

    /// Every upload in progress (unfinished ones left out).
    pub fn staged_uploads(&self) -> Result<Vec<StagedUpload>> {
        let Some(root) = self.uploads_dir(false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (name, _) in self.all_entries(root.ino)? {
            let id = String::from_utf8_lossy(&name).into_owned();
            match self.staged_upload(&id) {
                Ok(u) => out.push(u),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Store part `number` of upload `id` from a stream (as a PUT).
    pub fn put_part(
        &self,
        id: &str,
        number: u32,
        reader: &mut dyn Read,
        max_size: Option<u64>,
    ) -> Result<Inode> {
        self.staged_upload(id)?;
        let opts = PutOptions {
            content_type: Some(super::DEFAULT_CONTENT_TYPE),
            max_size,
            ..PutOptions::default()
        };
        self.put_object(&part_key(id, number), reader, opts)
    }

    /// Store bytes `range` (all when None) of the current version of
    /// object `from` as part `number` of upload `id`.
    pub fn copy_part(
        &self,
        id: &str,
        number: u32,
        from: &str,
        range: Option<std::ops::Range<u64>>,
        max_size: Option<u64>,
    ) -> Result<Inode> {
        self.ctx.meta.check_writable()?;
        self.staged_upload(id)?;
        let snapshot = self.open_object(from)?;
        let range = range.unwrap_or(0..snapshot.inode.size);
        let mut reader = SnapshotReader::range(snapshot, self.chunk_size(), range.start, range.end);
        let opts = PutOptions {
            content_type: Some(super::DEFAULT_CONTENT_TYPE),
            max_size,
            ..PutOptions::default()
        };
        self.put_object(&part_key(id, number), &mut reader, opts)
    }

    /// The stored parts of upload `id`, by number.
    pub fn staged_parts(&self, id: &str) -> Result<Vec<StagedPart>> {
        let upload = self.staged_upload(id)?;
        let mut parts = Vec::new();
        for (name, inode) in self.all_entries(upload.dir)? {
            let Some(number) = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if inode.kind != Kind::File {
                continue;
            }
            let (inode, md5) = self.md5_of(inode)?;
            parts.push(StagedPart {
                number,
                size: inode.size,
                md5,
                mtime: inode.mtime,
            });
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Store parts `numbers` of upload `id`, in that order, as its object
    /// (known by `etag` instead of the MD5 of its bytes), then remove the
    /// upload.
    pub fn complete_upload(
        &self,
        id: &str,
        numbers: &[u32],
        etag: &str,
        max_size: Option<u64>,
    ) -> Result<Inode> {
        let upload = self.staged_upload(id)?;
        let chunk_size = self.chunk_size();
        let mut readers = Vec::with_capacity(numbers.len());
        for &n in numbers {
            let snapshot = self.open_object(&part_key(id, n))?;
            readers.push(SnapshotReader::new(snapshot, chunk_size));
        }
        let mut whole = Chained {
            parts: readers.into_iter().collect(),
        };
        let prefix = self.get_xattr(upload.dir, ATTR_PREFIX).unwrap_or_default();
        let mut attrs = Vec::new();
        if !prefix.is_empty() {
            for name in self.list_xattrs(upload.dir)? {
                if name.starts_with(&prefix) {
                    attrs.push((name.clone(), self.get_xattr(upload.dir, &name)?));
                }
            }
        }
        let content_type = self
            .get_xattr(upload.dir, ATTR_TYPE)
            .ok()
            .map(|t| String::from_utf8_lossy(&t).into_owned());
        let opts = PutOptions {
            content_type: content_type.as_deref(),
            max_size,
            xattrs: Some(XattrSet {
                prefix: &prefix,
                attrs: &attrs,
            }),
            etag: Some(etag),
        };
        let inode = self.put_object(&upload.key, &mut whole, opts)?;
        if let Err(e) = self.abort_upload(id) {
            log::warn!("removing completed upload {id}: {e} (swept later)");
        }
        Ok(inode)
    }

    /// Remove upload `id` and its parts.
    pub fn abort_upload(&self, id: &str) -> Result<()> {
        if !valid_id(id) {
            return Err(Error::NotFound(format!("upload {id}")));
        }
        let root = self
            .uploads_dir(false)?
            .ok_or_else(|| Error::NotFound(format!("upload {id}")))?;
        let dir = self.lookup(root.ino, id.as_bytes())?;
        for (name, _) in self.all_entries(dir.ino)? {
            self.unlink(dir.ino, &name)?;
        }
        self.rmdir(root.ino, id.as_bytes())
    }

    /// Remove the uploads started more than `max_age` ago (and unfinished
    /// ones as old); how many.
    pub fn sweep_uploads(&self, max_age: Duration) -> Result<usize> {
        let Some(root) = self.uploads_dir(false)? else {
            return Ok(0);
        };
        let oldest = now_nanos().saturating_sub(max_age.as_nanos().min(i64::MAX as u128) as i64);
        let mut removed = 0;
        for (name, dir) in self.all_entries(root.ino)? {
            let id = String::from_utf8_lossy(&name).into_owned();
            if dir.kind == Kind::Dir && dir.crtime < oldest && valid_id(&id) {
                match self.abort_upload(&id) {
                    Ok(()) => removed += 1,
                    Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}

/// Readers one after the other.
struct Chained {
    parts: std::collections::VecDeque<SnapshotReader>,
}

impl Read for Chained {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while let Some(part) = self.parts.front_mut() {
            let n = part.read(out)?;
            if n > 0 || out.is_empty() {
                return Ok(n);
            }
            self.parts.pop_front();
        }
        Ok(0)
    }
}
