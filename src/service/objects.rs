//! Object operations by key, as the HTTP API sees the namespace: resolve a
//! key, put an object from a stream (through the same upload pipeline and
//! budget as the mount's writes), open it for streaming reads, delete, list,
//! and describe it (metadata, computing the SHA-256 when unknown).
//!
//! A PUT over an existing file behaves like `rename` of a new file over it:
//! the name moves to a new inode holding the upload, in one transaction.
//! Whoever has the old inode open (a mount handle, a streaming GET) keeps
//! reading the old version whole; a writer that has it open goes on writing
//! to the old, now nameless, file, as after a rename over an open file; the
//! old inode is freed when it has neither a link nor an open handle. The
//! mount's kernel caches drop the name and the old inode's attributes.

use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::Read;

use super::keys::parse_key;
use super::namespace::Namespace;
use super::read::{chunk_spans, Snapshot};
use super::uncommitted::UncommittedChunk;
use super::upload::{ChunkSource, StoredChunk};
use super::{Change, Env, ObjectInfo};
use crate::error::{Error, Result};
use crate::meta::{now_nanos, FileCommit, Inode, Kind, PutOutcome, ROOT_INO};
use crate::model::{ObjectStamp, PutOptions};

/// Chunks of one PUT being stored at once.
const PUT_CHUNKS_IN_FLIGHT: usize = 2;

/// How often `open` looks a name up again when the inode it found was
/// replaced and freed before it could be captured.
const REPLACED_RETRIES: usize = 8;

/// The type used when neither the client nor the key's extension says one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// An object's content type: `given` (as stored, or as the client sent it),
/// else guessed from the key's extension, else [`DEFAULT_CONTENT_TYPE`].
/// A PUT stores what this returns; files written through the mount store
/// none, and every view of them asks this function.
pub fn content_type_for(key: &str, given: Option<&str>) -> String {
    given.map(str::to_string).unwrap_or_else(|| {
        mime_guess::from_path(key)
            .first()
            .map(|m| m.essence_str().to_string())
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string())
    })
}

pub(crate) struct Objects<'a>(pub Env<'a>);

impl Objects<'_> {
    /// Resolve an object key to its inode (any kind).
    pub fn resolve(&self, key: &str) -> Result<Option<Inode>> {
        let parts = parse_key(key)?;
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        match self.0.ctx.meta.resolve(&parts) {
            Err(Error::NotADirectory(_)) => {
                Err(Error::NotADirectory(format!("{key}: a parent is a file")))
            }
            other => other,
        }
    }

    /// Store an object from a stream. Memory stays bounded (a few chunks);
    /// nothing becomes visible until every chunk is durable; a failing reader
    /// leaves no object and no shards behind.
    pub fn put(&self, key: &str, reader: &mut dyn Read, opts: PutOptions) -> Result<Inode> {
        self.store(key, reader, opts, None)
    }

    /// `put` of an object that keeps its own times, version and content
    /// type (`stamp`); the key must be free: an existing name is an error.
    pub fn put_stamped(
        &self,
        key: &str,
        reader: &mut dyn Read,
        stamp: &ObjectStamp,
    ) -> Result<Inode> {
        let opts = PutOptions {
            content_type: stamp.content_type.as_deref(),
            ..PutOptions::default()
        };
        self.store(key, reader, opts, Some(stamp))
    }

    fn store(
        &self,
        key: &str,
        reader: &mut dyn Read,
        opts: PutOptions,
        stamp: Option<&ObjectStamp>,
    ) -> Result<Inode> {
        let PutOptions {
            content_type,
            max_size,
            xattrs,
            etag,
        } = opts;
        let ctx = self.0.ctx;
        let parts = parse_key(key)?;
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        // Refuse early when the key names a directory or goes through a file.
        match ctx.meta.resolve(&parts) {
            Ok(Some(i)) if i.kind == Kind::Dir => return Err(Error::IsADirectory(key.to_string())),
            Ok(Some(i)) if i.kind != Kind::File => {
                return Err(Error::InvalidArgument(format!(
                    "{key} is not a regular file"
                )))
            }
            Err(Error::NotADirectory(_)) => {
                return Err(Error::NotADirectory(format!("{key}: a parent is a file")))
            }
            Ok(Some(_)) if stamp.is_some() => return Err(Error::AlreadyExists(key.to_string())),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let streamed = stream_chunks(self.0, reader, max_size, key)?;
        let now = now_nanos();
        let mut template = Inode::new(Kind::File, 0o644, 0, 0);
        template.ctime = now;
        let mut mtime = now;
        if let Some(stamp) = stamp {
            // The commit counts one more version, as every commit does.
            template.version = stamp.version.max(1) - 1;
            template.crtime = stamp.created;
            template.atime = stamp.updated;
            mtime = stamp.updated;
        }
        // The type is decided once, here, and stored: the upload's answer,
        // `info` and the download headers all show this same value.
        let decided = content_type_for(key, content_type);
        template.content_type = Some(decided.clone());
        let md5 = match etag {
            Some(given) => given.to_string(),
            None => streamed.md5.clone(),
        };
        template.md5 = Some(md5.clone());
        let commit = FileCommit {
            ino: 0,
            chunks: streamed
                .chunks
                .iter()
                .map(|(i, c)| (*i, c.written().clone()))
                .collect(),
            removed: Vec::new(),
            drop_from: None,
            size: streamed.size,
            mtime,
            ctime: now,
            checksum: Some(streamed.sha256.clone()),
            md5: Some(md5),
            content_type: Some(decided),
        };
        let outcome = ctx.meta.put_file(&parts, &template, commit, xattrs)?;
        for (_, chunk) in streamed.chunks {
            let _ = chunk.into_committed();
        }
        self.published(key, outcome)
    }

    /// After a put's transaction: tell the mount's caches, free the inode
    /// the name held before, and make it durable. The new inode.
    pub fn published(&self, key: &str, outcome: PutOutcome) -> Result<Inode> {
        let ctx = self.0.ctx;
        // The kernel forgets the name's old inode before that inode can go,
        // so a cached name never leads to a purged inode.
        let (parent, name) = outcome.entry;
        let mut changes = vec![Change::Entry { parent, name }];
        changes.extend(outcome.replaced.map(|old| Change::Inode(old.ino)));
        changes.extend(
            outcome
                .created
                .into_iter()
                .map(|(parent, name)| Change::Entry { parent, name }),
        );
        ctx.notify(&changes);
        if let Some(old) = outcome.replaced {
            // The upload is stored and visible; an old inode that could not
            // be freed now is freed at the next start.
            if let Err(e) = Namespace(self.0).after_unlink(old.ino, old.nlink) {
                log::error!("freeing inode {} replaced by {key}: {e}", old.ino);
            }
        }
        // Acknowledged only once durable here and in the journal on the
        // nodes.
        ctx.meta.sync()?;
        Ok(outcome.inode)
    }

    /// Open an object for streaming reads of its current version.
    /// A PUT moves the name to a new inode and may free the old one between
    /// the lookup and the capture: then the name is looked up again.
    pub fn open(&self, key: &str) -> Result<Snapshot> {
        let mut attempts = 0;
        loop {
            let inode = self
                .resolve(key)?
                .ok_or_else(|| Error::NotFound(key.to_string()))?;
            let captured = match inode.kind {
                Kind::File => Snapshot::capture(self.0.ctx, inode.ino),
                Kind::Dir => return Err(Error::IsADirectory(key.to_string())),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "{key} is not a regular file"
                    )))
                }
            };
            attempts += 1;
            match captured {
                Err(Error::NotFound(_)) if attempts < REPLACED_RETRIES => continue,
                other => return other,
            }
        }
    }

    /// Delete an object; Ok(false) when it did not exist.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let meta = &self.0.ctx.meta;
        let parts = parse_key(key)?;
        let (parent_parts, name) = parts.split_at(parts.len() - 1);
        let parent_parts: Vec<&[u8]> = parent_parts.iter().map(|p| p.as_bytes()).collect();
        let parent = match meta.resolve(&parent_parts) {
            Ok(Some(p)) if p.kind == Kind::Dir => p,
            Ok(_) | Err(Error::NotADirectory(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let name = name[0].as_bytes();
        match meta.lookup(parent.ino, name)? {
            None => return Ok(false),
            Some(i) if i.kind == Kind::Dir => return Err(Error::IsADirectory(key.to_string())),
            Some(_) => {}
        }
        let gone = meta.unlink(parent.ino, name)?;
        Namespace(self.0).after_unlink(gone.ino, gone.nlink)?;
        // An acknowledged DELETE survives a crash and the loss of the
        // metadata disk: on the local disk and in the journal on the nodes.
        meta.sync()?;
        self.0.ctx.notify(&[
            Change::Entry {
                parent: parent.ino,
                name: name.to_vec(),
            },
            Change::Inode(gone.ino),
        ]);
        Ok(true)
    }

    /// Keys of files under `prefix` (a plain string prefix of the key),
    /// sorted, after `start_after`, at most `limit`: a keyset walk that
    /// never visits the keys before `start_after`. Returns (keys, truncated).
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(Vec<String>, bool)> {
        let meta = &self.0.ctx.meta;
        // Start at the deepest directory the prefix names completely.
        let mut dir = ROOT_INO;
        let mut base = String::new();
        if let Some(pos) = prefix.rfind('/') {
            let dir_part = &prefix[..pos];
            if !dir_part.is_empty() {
                let parts: Vec<&[u8]> = dir_part.split('/').map(|p| p.as_bytes()).collect();
                match meta.resolve(&parts) {
                    Ok(Some(i)) if i.kind == Kind::Dir => {
                        dir = i.ino;
                        base = dir_part.to_string();
                    }
                    _ => return Ok((Vec::new(), false)),
                }
            }
        }
        // One more than asked tells whether the listing goes on.
        let wanted = limit.map_or(usize::MAX, |l| l.saturating_add(1));
        let found = meta.files_in_key_order(
            dir,
            base.as_bytes(),
            prefix.as_bytes(),
            start_after.map(str::as_bytes),
            wanted,
        )?;
        let mut keys: Vec<String> = found
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect();
        let truncated = match limit {
            Some(l) if keys.len() > l => {
                keys.truncate(l);
                true
            }
            _ => false,
        };
        Ok((keys, truncated))
    }

    /// The hex MD5 of a file's committed content: as stored, else computed
    /// from the bytes (a file written through the mount) and stored for
    /// that version. Returns the inode read with it.
    pub fn md5_of(&self, inode: Inode) -> Result<(Inode, String)> {
        if let Some(sum) = inode.md5.clone() {
            return Ok((inode, sum));
        }
        let ctx = self.0.ctx;
        let snap = Snapshot::capture(ctx, inode.ino)?;
        let mut hasher = Md5::new();
        for span in chunk_spans(0, snap.inode.size, ctx.chunk_size) {
            hasher.update(snap.read(span.pos, span.len)?);
        }
        let sum = hex::encode(hasher.finalize());
        // Only a cache: a store that cannot record it now still answers.
        if let Err(e) = ctx.meta.set_md5(inode.ino, snap.inode.version, &sum) {
            log::warn!("recording the MD5 of inode {}: {e}", inode.ino);
        }
        let mut inode = snap.inode.clone();
        inode.md5 = Some(sum.clone());
        Ok((inode, sum))
    }

    /// Store a copy of the current version of `from` at `to` (streamed,
    /// as a PUT of its bytes).
    pub fn copy(&self, from: &str, to: &str, opts: PutOptions) -> Result<Inode> {
        let snapshot = self.open(from)?;
        let mut reader = SnapshotReader::new(snapshot, self.0.ctx.chunk_size);
        self.put(to, &mut reader, opts)
    }

    /// Metadata and chunks of a file. Computes the SHA-256 when it is not
    /// known yet (after writes through the mount) and stores it.
    pub fn info_of(&self, key: String, mut inode: Inode) -> Result<ObjectInfo> {
        let ctx = self.0.ctx;
        if inode.kind == Kind::File && inode.checksum.is_none() {
            let snap = Snapshot::capture(ctx, inode.ino)?;
            let mut hasher = Sha256::new();
            for span in chunk_spans(0, snap.inode.size, ctx.chunk_size) {
                hasher.update(snap.read(span.pos, span.len)?);
            }
            let sum = hex::encode(hasher.finalize());
            ctx.meta.set_checksum(inode.ino, snap.inode.version, &sum)?;
            inode = snap.inode.clone();
            inode.checksum = Some(sum);
        }
        let chunks = if inode.kind == Kind::File {
            ctx.meta.chunks_of(inode.ino)?
        } else {
            Vec::new()
        };
        Ok(ObjectInfo { key, inode, chunks })
    }
}

/// The bytes of a captured version as a `Read`, chunk by chunk.
pub(crate) struct SnapshotReader {
    snapshot: Snapshot,
    pos: u64,
    end: u64,
    chunk_size: u64,
    pending: bytes::Bytes,
}

impl SnapshotReader {
    pub fn new(snapshot: Snapshot, chunk_size: u64) -> SnapshotReader {
        let end = snapshot.inode.size;
        SnapshotReader::range(snapshot, chunk_size, 0, end)
    }

    /// The bytes `start..end` (cut to the version's size).
    pub fn range(snapshot: Snapshot, chunk_size: u64, start: u64, end: u64) -> SnapshotReader {
        let end = end.min(snapshot.inode.size);
        SnapshotReader {
            snapshot,
            pos: start.min(end),
            end,
            chunk_size,
            pending: bytes::Bytes::new(),
        }
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            let left = self.end.saturating_sub(self.pos);
            if left == 0 {
                return Ok(0);
            }
            let len = left.min(self.chunk_size - self.pos % self.chunk_size) as usize;
            self.pending = self
                .snapshot
                .read(self.pos, len)
                .map_err(std::io::Error::other)?;
            if self.pending.is_empty() {
                return Ok(0);
            }
            self.pos += self.pending.len() as u64;
        }
        let n = out.len().min(self.pending.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        let _ = self.pending.split_to(n);
        Ok(n)
    }
}

/// A stream stored as chunks (indexes from 0), not committed yet: their
/// shards go when they drop.
pub(crate) struct StreamedChunks {
    pub chunks: Vec<(u64, UncommittedChunk)>,
    pub size: u64,
    /// Hex SHA-256 and MD5 of the bytes.
    pub sha256: String,
    pub md5: String,
}

/// Store the bytes of `reader` as chunks through the upload pipeline (under
/// the write budget, a few chunks in flight), hashing them on the way.
/// `name` goes into the shard headers. A stream longer than `max_size`, or
/// one that fails, leaves no shards behind.
pub(crate) fn stream_chunks(
    env: Env,
    reader: &mut dyn Read,
    max_size: Option<u64>,
    name: &str,
) -> Result<StreamedChunks> {
    let Env {
        ctx,
        files,
        uploads,
        ..
    } = env;
    let mut hasher = Sha256::new();
    let mut md5 = Md5::new();
    let mut size = 0u64;
    let mut stored: Vec<(u64, UncommittedChunk)> = Vec::new();
    let mut inflight: VecDeque<(u64, StoredChunk)> = VecDeque::new();
    let streamed = (|| -> Result<()> {
        for index in 0.. {
            // The permit is taken once the bytes are here: a client that
            // stalls mid-body must not hold write budget the mount needs.
            let mut buf = Vec::new();
            let n = read_full(reader, &mut buf, ctx.chunk_size as usize)?;
            if n == 0 {
                break;
            }
            let permit = uploads.reserve(&|| files.spill_idle(None, uploads));
            size += n as u64;
            if let Some(max) = max_size.filter(|&max| size > max) {
                return Err(Error::TooLarge(format!(
                    "object exceeds the {max}-byte limit"
                )));
            }
            hasher.update(&buf);
            md5.update(&buf);
            let source = ChunkSource {
                ino: 0,
                index,
                size,
                name: Some(name.to_string()),
            };
            inflight.push_back((index, uploads.submit(buf, permit, source)));
            while inflight.len() >= PUT_CHUNKS_IN_FLIGHT {
                let (i, up) = inflight.pop_front().expect("in flight");
                stored.push((i, up.wait()?));
            }
            if n < ctx.chunk_size as usize {
                break;
            }
        }
        while let Some((i, up)) = inflight.pop_front() {
            stored.push((i, up.wait()?));
        }
        Ok(())
    })();
    if let Err(e) = streamed {
        // Chunks stored so far (and those still in flight, once stored)
        // lose their shards as they drop.
        for (_, up) in inflight {
            drop(up.wait());
        }
        return Err(e);
    }
    Ok(StreamedChunks {
        chunks: stored,
        size,
        sha256: hex::encode(hasher.finalize()),
        md5: hex::encode(md5.finalize()),
    })
}

/// Read until `limit` bytes or end of stream.
/// The buffer grows as data arrives, so a small object never costs a whole
/// chunk of zeroed memory.
fn read_full(reader: &mut dyn Read, buf: &mut Vec<u8>, limit: usize) -> Result<usize> {
    let mut filled = 0;
    while filled < limit {
        if buf.len() == filled {
            let grown = (filled * 2).clamp(64 * 1024, limit);
            buf.resize(grown, 0);
        }
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(filled);
                return Err(Error::Io(e));
            }
        }
    }
    buf.truncate(filled);
    Ok(filled)
}
