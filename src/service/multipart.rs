//! Uploads assembled from parts (S3 multipart uploads), kept outside the
//! namespace: nothing of an upload shows in the mount or in any listing
//! until it is completed. The upload and its parts are metadata of their
//! own (`meta::uploads`); each part's bytes are streamed into chunks under
//! the write budget like any upload, and UploadPart answers once the part's
//! shards and its record are durable, so a part survives a crash and an
//! upload can go on after a restart.
//!
//! Completing makes the chosen parts, in order, one file of the target key
//! in one metadata transaction (visible at once and whole, as any PUT),
//! which also removes the upload. When every chosen part but the last is a
//! whole number of chunks long, the parts' chunks are moved into the file's
//! chunk list by re-indexing them: no shard is read or written, and the
//! file's SHA-256 is computed when first asked for, as for files written
//! through the mount. Otherwise the parts are read back and re-encoded
//! into the file's chunks (streamed, under the write budget). Aborting an
//! upload, or the age sweep (`sweep_uploads`), drops it; the parts' chunks
//! go to the collection queue either way. A part may also be copied from a
//! range of another object (`copy_part`).

use std::collections::VecDeque;
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;

use super::keys::parse_key;
use super::objects::{content_type_for, stream_chunks, Objects, SnapshotReader};
use super::read::{read_committed_piece, PinGuard};
use super::{Context, Service};
use crate::error::{Error, Result};
use crate::meta::{
    now_nanos, ChunkRecord, FileCommit, Inode, Kind, PartMove, PartRecord, UploadRecord,
};
use crate::model::{Nanos, XattrSet};

/// One upload in progress.
#[derive(Debug, Clone)]
pub struct StagedUpload {
    pub id: String,
    /// The key the object will have.
    pub key: String,
    pub started: Nanos,
}

/// One stored part.
#[derive(Debug, Clone)]
pub struct StagedPart {
    pub number: u32,
    pub size: u64,
    pub md5: String,
    pub mtime: Nanos,
}

/// How a completion made its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assembly {
    /// The parts' chunks became the object's (no shard read or written).
    Moved,
    /// The parts were read back and stored again as the object's chunks.
    Rewritten,
}

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

fn no_upload(id: &str) -> Error {
    Error::NotFound(format!("upload {id}"))
}

/// The name a part's shard headers carry (for `fsck --rebuild`).
fn part_name(id: &str, number: u32) -> String {
    format!(".s3-uploads/{id}/{number:05}")
}

fn staged(record: UploadRecord) -> StagedUpload {
    StagedUpload {
        id: record.id,
        key: record.key,
        started: record.started,
    }
}

fn part_of(record: &PartRecord) -> StagedPart {
    StagedPart {
        number: record.number,
        size: record.size,
        md5: record.md5.clone(),
        mtime: record.mtime,
    }
}

/// A part as stored: (part id, size, (index, data length) of each chunk).
type StoredLayout = (i64, u64, Vec<(u64, u64)>);

/// Where each part's chunks go in the object, when every part but the last
/// is a whole number of chunks, stored as this chunk size cuts it; None
/// when the parts must be re-encoded.
fn chunk_moves(parts: &[StoredLayout], chunk_size: u64) -> Option<Vec<PartMove>> {
    let mut moves = Vec::with_capacity(parts.len());
    let mut first_index = 0;
    for (i, (part_id, size, lengths)) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if !last && (*size == 0 || size % chunk_size != 0) {
            return None;
        }
        // The part must be stored as this chunk size cuts it: full chunks
        // at indexes 0.., the last one holding the rest.
        let count = size.div_ceil(chunk_size);
        if lengths.len() as u64 != count {
            return None;
        }
        for (j, (idx, len)) in lengths.iter().enumerate() {
            let j = j as u64;
            let want = (size - j * chunk_size).min(chunk_size);
            if *idx != j || *len != want {
                return None;
            }
        }
        moves.push(PartMove {
            part_id: *part_id,
            first_index,
        });
        first_index += count;
    }
    Some(moves)
}

impl Service {
    /// Start an upload of `key`: its id. The object will get `content_type`
    /// and the attributes of `xattrs`.
    pub fn begin_upload(
        &self,
        key: &str,
        content_type: Option<&str>,
        xattrs: XattrSet,
    ) -> Result<String> {
        self.refuse_if_read_only("an upload")?;
        self.ctx.meta.check_writable()?;
        parse_key(key)?;
        let id = format!("{:032x}", rand::random::<u128>());
        let record = UploadRecord {
            id: id.clone(),
            key: key.to_string(),
            started: now_nanos(),
            content_type: content_type.map(str::to_string),
            xattr_prefix: xattrs.prefix.to_vec(),
        };
        self.ctx.meta.create_upload(&record, xattrs.attrs)?;
        self.ctx.meta.sync()?;
        Ok(id)
    }

    /// The upload `id`; NotFound when there is none.
    pub fn staged_upload(&self, id: &str) -> Result<StagedUpload> {
        if !valid_id(id) {
            return Err(no_upload(id));
        }
        self.ctx
            .meta
            .upload(id)?
            .map(staged)
            .ok_or_else(|| no_upload(id))
    }

    /// Every upload in progress, by key then id.
    pub fn staged_uploads(&self) -> Result<Vec<StagedUpload>> {
        Ok(self.ctx.meta.uploads()?.into_iter().map(staged).collect())
    }

    /// Store part `number` of upload `id` from a stream (replacing a part
    /// of that number). Durable when it returns.
    pub fn put_part(
        &self,
        id: &str,
        number: u32,
        reader: &mut dyn Read,
        max_size: Option<u64>,
    ) -> Result<StagedPart> {
        self.writable_upload(id)?;
        self.store_part(id, number, reader, max_size)
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
    ) -> Result<StagedPart> {
        self.writable_upload(id)?;
        let snapshot = self.open_object(from)?;
        let range = range.unwrap_or(0..snapshot.inode.size);
        let mut reader = SnapshotReader::range(snapshot, self.chunk_size(), range.start, range.end);
        self.store_part(id, number, &mut reader, max_size)
    }

    /// Parts may be added to upload `id`: the store takes writes and the
    /// upload exists.
    fn writable_upload(&self, id: &str) -> Result<()> {
        self.refuse_if_read_only("an upload")?;
        self.ctx.meta.check_writable()?;
        self.staged_upload(id).map(|_| ())
    }

    fn store_part(
        &self,
        id: &str,
        number: u32,
        reader: &mut dyn Read,
        max_size: Option<u64>,
    ) -> Result<StagedPart> {
        let streamed = stream_chunks(self.env(), reader, max_size, &part_name(id, number))?;
        let record = PartRecord {
            part_id: 0,
            number,
            size: streamed.size,
            md5: streamed.md5.clone(),
            mtime: now_nanos(),
        };
        let written: Vec<_> = streamed
            .chunks
            .iter()
            .map(|(i, c)| (*i, c.written().clone()))
            .collect();
        // An upload removed meanwhile: the chunks drop with their shards.
        let superseded = self.ctx.meta.record_part(id, &record, &written)?;
        for (_, chunk) in streamed.chunks {
            let _ = chunk.into_committed();
        }
        if superseded > 0 {
            self.ctx.wake.collector.notify();
        }
        self.ctx.meta.sync()?;
        Ok(part_of(&record))
    }

    /// The stored parts of upload `id`, by number.
    pub fn staged_parts(&self, id: &str) -> Result<Vec<StagedPart>> {
        self.staged_upload(id)?;
        Ok(self
            .ctx
            .meta
            .upload_parts(id)?
            .iter()
            .map(part_of)
            .collect())
    }

    /// Make parts `numbers` of upload `id`, in that order, its object
    /// (known by `etag` instead of the MD5 of its bytes) and remove the
    /// upload, in one transaction. Returns the file and how it was made.
    pub fn complete_upload(
        &self,
        id: &str,
        numbers: &[u32],
        etag: &str,
        max_size: Option<u64>,
    ) -> Result<(Inode, Assembly)> {
        self.refuse_if_read_only("an upload")?;
        self.ctx.meta.check_writable()?;
        let upload = self.ctx.meta.upload(id)?.ok_or_else(|| no_upload(id))?;
        let stored = self.ctx.meta.upload_parts(id)?;
        let mut chosen = Vec::with_capacity(numbers.len());
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = numbers.iter().find(|n| !seen.insert(**n)) {
            return Err(Error::InvalidArgument(format!(
                "part {twice} is named twice"
            )));
        }
        for n in numbers {
            let part = stored
                .iter()
                .find(|p| p.number == *n)
                .ok_or_else(|| Error::NotFound(format!("part {n} of upload {id}")))?;
            chosen.push(part);
        }
        let total: u64 = chosen.iter().map(|p| p.size).sum();
        if let Some(max) = max_size.filter(|&max| total > max) {
            return Err(Error::TooLarge(format!(
                "object exceeds the {max}-byte limit"
            )));
        }
        let path = parse_key(&upload.key)?;
        let path: Vec<&[u8]> = path.iter().map(|p| p.as_bytes()).collect();
        let chunk_size = self.chunk_size();
        let mut layouts = Vec::with_capacity(chosen.len());
        for part in &chosen {
            let lengths = self
                .ctx
                .meta
                .part_chunks(part.part_id)?
                .iter()
                .map(|c| (c.idx, c.layout.data_len))
                .collect();
            layouts.push((part.part_id, part.size, lengths));
        }
        let moves = chunk_moves(&layouts, chunk_size);
        let now = now_nanos();
        let decided = content_type_for(&upload.key, upload.content_type.as_deref());
        let mut template = Inode::new(Kind::File, 0o644, 0, 0);
        template.ctime = now;
        template.content_type = Some(decided.clone());
        template.md5 = Some(etag.to_string());
        let mut commit = FileCommit {
            ino: 0,
            chunks: Vec::new(),
            removed: Vec::new(),
            drop_from: None,
            size: total,
            mtime: now,
            ctime: now,
            // Unknown without a read when the chunks move: computed when
            // first asked for.
            checksum: None,
            md5: Some(etag.to_string()),
            content_type: Some(decided),
        };
        let (rewritten, moves, assembly) = match moves {
            Some(moves) => (None, moves, Assembly::Moved),
            None => {
                let mut whole = PartsReader::new(&self.ctx, &chosen)?;
                let streamed = stream_chunks(self.env(), &mut whole, max_size, &upload.key)?;
                if streamed.size != total {
                    return Err(Error::Other(format!(
                        "the parts of upload {id} read back {} bytes, not {total}",
                        streamed.size
                    )));
                }
                commit.checksum = Some(streamed.sha256.clone());
                commit.chunks = streamed
                    .chunks
                    .iter()
                    .map(|(i, c)| (*i, c.written().clone()))
                    .collect();
                (Some(streamed), Vec::new(), Assembly::Rewritten)
            }
        };
        let (outcome, superseded) = self
            .ctx
            .meta
            .complete_upload(id, &path, &template, commit, &moves)?;
        if let Some(streamed) = rewritten {
            for (_, chunk) in streamed.chunks {
                let _ = chunk.into_committed();
            }
        }
        if superseded > 0 {
            self.ctx.wake.collector.notify();
        }
        log::info!(
            "upload {id}: {} parts completed as {} ({total} bytes, chunks {})",
            numbers.len(),
            upload.key,
            match assembly {
                Assembly::Moved => "moved",
                Assembly::Rewritten => "rewritten",
            }
        );
        let inode = Objects(self.env()).published(&upload.key, outcome)?;
        Ok((inode, assembly))
    }

    /// Remove upload `id`; its parts' chunks go to the collection queue.
    pub fn abort_upload(&self, id: &str) -> Result<()> {
        if !valid_id(id) {
            return Err(no_upload(id));
        }
        self.ctx.meta.check_writable()?;
        let chunks = self.ctx.meta.remove_upload(id)?;
        if chunks > 0 {
            self.ctx.wake.collector.notify();
        }
        self.ctx.meta.sync()
    }

    /// Remove the uploads started more than `max_age` ago; how many.
    pub fn sweep_uploads(&self, max_age: Duration) -> Result<usize> {
        let oldest = now_nanos().saturating_sub(max_age.as_nanos().min(i64::MAX as u128) as i64);
        let mut removed = 0;
        for id in self.ctx.meta.uploads_started_before(oldest)? {
            match self.abort_upload(&id) {
                Ok(()) => removed += 1,
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

/// The bytes of parts one after the other, chunk by chunk, their chunks
/// pinned against collection while read.
struct PartsReader<'a> {
    ctx: &'a Context,
    chunks: VecDeque<ChunkRecord>,
    pending: Bytes,
    _pins: PinGuard,
}

impl<'a> PartsReader<'a> {
    fn new(ctx: &'a std::sync::Arc<Context>, parts: &[&PartRecord]) -> Result<PartsReader<'a>> {
        let mut chunks = VecDeque::new();
        for part in parts {
            let records = ctx.meta.part_chunks(part.part_id)?;
            let stored: u64 = records.iter().map(|c| c.layout.data_len).sum();
            let dense = records.iter().enumerate().all(|(i, c)| c.idx == i as u64);
            if stored != part.size || !dense {
                return Err(Error::Other(format!(
                    "part {} is stored as {} bytes in {} chunks, not {}",
                    part.number,
                    stored,
                    records.len(),
                    part.size
                )));
            }
            chunks.extend(records);
        }
        let pins = ctx
            .pins
            .pin(chunks.iter().map(|c| c.layout.chunk_id).collect());
        Ok(PartsReader {
            ctx,
            chunks,
            pending: Bytes::new(),
            _pins: pins,
        })
    }
}

impl Read for PartsReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            let Some(chunk) = self.chunks.pop_front() else {
                return Ok(0);
            };
            let len = chunk.layout.data_len as usize;
            self.pending = read_committed_piece(self.ctx, &chunk, 0, len, false)
                .map_err(std::io::Error::other)?;
        }
        let n = out.len().min(self.pending.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        let _ = self.pending.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: u64 = 4;

    fn lengths(size: u64) -> Vec<(u64, u64)> {
        (0..size.div_ceil(CS))
            .map(|i| (i, (size - i * CS).min(CS)))
            .collect()
    }

    #[test]
    fn parts_of_whole_chunks_move_to_consecutive_indexes() {
        let parts = vec![(1, 8, lengths(8)), (2, 8, lengths(8)), (3, 5, lengths(5))];
        let moves = chunk_moves(&parts, CS).expect("movable");
        let placed: Vec<(i64, u64)> = moves.iter().map(|m| (m.part_id, m.first_index)).collect();
        assert_eq!(placed, vec![(1, 0), (2, 2), (3, 4)]);
    }

    #[test]
    fn a_part_not_a_whole_number_of_chunks_before_the_last_is_rewritten() {
        let parts = vec![(1, 5, lengths(5)), (2, 5, lengths(5))];
        assert!(chunk_moves(&parts, CS).is_none());
        // An empty part before the last, too.
        let parts = vec![(1, 0, lengths(0)), (2, 5, lengths(5))];
        assert!(chunk_moves(&parts, CS).is_none());
        // A single part of any size moves.
        assert!(chunk_moves(&[(1, 5, lengths(5))], CS).is_some());
    }

    #[test]
    fn a_part_stored_with_another_chunk_size_is_rewritten() {
        // Stored in chunks of 2 (an earlier chunk size), asked for 4.
        let halves: Vec<(u64, u64)> = (0..4).map(|i| (i, 2)).collect();
        assert!(chunk_moves(&[(1, 8, halves), (2, 3, lengths(3))], CS).is_none());
        // A gap in the indexes.
        assert!(chunk_moves(&[(1, 8, vec![(0, 4), (2, 4)])], CS).is_none());
    }
}
