//! `minigcs fsck --rebuild`: recover file contents from the shard headers
//! alone, when the metadata (and every copy of it) is gone. Scans every
//! node's shard files, reads their headers (v2 headers carry the chunk's
//! origin: inode, stamp, index in the file, file size, last known name; see
//! `crate::chunk::shard`), groups the shards by file and chunk index, takes
//! per index the chunk with the newest stamp, and the size the file's newest
//! chunk carries. A file whose chunks all decode from k verified shards is
//! written back through the file service (an API PUT) under
//! `lost+found/<last known name>` (or `lost+found/<inode>`), so it is
//! durable before anything else happens. It never deletes a shard: the
//! originals become orphans of the new metadata, which the next daemon
//! start sweeps. Chunks the metadata already knows are left alone (the
//! files they belong to are not lost), and a file already recovered under
//! its name with the same bytes is not written again: running it twice
//! changes nothing.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Read;

use crate::chunk::codec::Codec;
use crate::chunk::shard::{ShardHeader, ShardOrigin};
use crate::chunk::{read_header, read_whole_shard};
use crate::error::{Error, Result};
use crate::model::PutOptions;
use crate::node::ShardKey;
use crate::service::Service;
use crate::snapshot::restore::restored_marker;

/// Where recovered files go.
pub const LOST_AND_FOUND: &str = "lost+found";

/// One shard file found on a node.
#[derive(Debug, Clone, Copy)]
struct Found {
    node: usize,
    key: ShardKey,
    header: ShardHeader,
}

/// One chunk as its shards describe it.
#[derive(Debug, Clone)]
struct FoundChunk {
    origin: ShardOrigin,
    header: ShardHeader,
    shards: Vec<Found>,
}

impl FoundChunk {
    /// Distinct shard indexes found (a shard found twice counts once).
    fn distinct_shards(&self) -> usize {
        let mut seen: Vec<u16> = self.shards.iter().map(|f| f.key.index).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

/// Which file a chunk belongs to: its inode, or for chunks encoded before
/// their file had one (API PUTs), its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum FileKey {
    Inode(u64),
    Name(String),
}

/// A file that came back.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub key: String,
    pub size: u64,
    /// The file's inode in the lost metadata (0: not known).
    pub old_inode: u64,
    /// Already there from an earlier run (same bytes): not written again.
    pub already_there: bool,
    /// Chunk indexes with no shard at all, filled with zeros (a hole, or
    /// every shard of that chunk lost).
    pub holes: Vec<u64>,
}

/// A file that could not come back, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Unrecovered {
    pub file: String,
    pub reason: String,
}

/// The outcome of `minigcs fsck --rebuild`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    pub shard_files: u64,
    /// Shards of chunks the metadata knows: their files are not lost.
    pub known_to_metadata: u64,
    /// v1 shards: no origin recorded, they cannot be placed in a file.
    pub without_origin: u64,
    pub unreadable_headers: u64,
    pub recovered: Vec<Recovered>,
    pub unrecovered: Vec<Unrecovered>,
}

impl RebuildReport {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let written = self.recovered.iter().filter(|r| !r.already_there).count();
        let rows = [
            ("shard files scanned", self.shard_files),
            ("shards of files the metadata knows", self.known_to_metadata),
            ("shards without origin (format v1)", self.without_origin),
            ("shards with unreadable headers", self.unreadable_headers),
            ("files recovered now", written as u64),
            (
                "files recovered earlier",
                (self.recovered.len() - written) as u64,
            ),
            ("files not recoverable", self.unrecovered.len() as u64),
        ];
        for (what, n) in rows {
            let _ = writeln!(out, "{what:<38}{n:>10}");
        }
        for r in &self.recovered {
            let state = if r.already_there {
                "already there"
            } else {
                "recovered"
            };
            let _ = write!(out, "{state}: {} ({} bytes", r.key, r.size);
            if r.old_inode != 0 {
                let _ = write!(out, ", was inode {}", r.old_inode);
            }
            if !r.holes.is_empty() {
                let _ = write!(out, "; chunks with no shard, zero-filled: {:?}", r.holes);
            }
            let _ = writeln!(out, ")");
        }
        for u in &self.unrecovered {
            let _ = writeln!(out, "NOT RECOVERED: {}: {}", u.file, u.reason);
        }
        if !self.unrecovered.is_empty() {
            let _ = writeln!(
                out,
                "The shards of files not recovered are orphans of the metadata now: the next daemon start deletes them. To try again later (a node folder back), copy the node folders aside first."
            );
        }
        out
    }
}

/// Recover every file the shard headers describe into `lost+found/`. Once
/// done, the marker a snapshot restore left (which keeps the orphan sweep
/// off so these shards survive) is removed: what could be recovered is.
pub fn rebuild(service: &Service) -> Result<RebuildReport> {
    let mut report = RebuildReport::default();
    let files = scan(service, &mut report)?;
    let chunk_size = service.chunk_size();
    for (file_key, chunks) in files {
        match recover_file(service, &file_key, &chunks, chunk_size) {
            Ok(r) => report.recovered.push(r),
            Err(reason) => report.unrecovered.push(Unrecovered {
                file: describe(&file_key, &chunks),
                reason,
            }),
        }
    }
    let marker = restored_marker(&service.config().metadata.path);
    match std::fs::remove_file(&marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Other(format!(
                "cannot remove {}: {e}",
                marker.display()
            )))
        }
        _ => {}
    }
    Ok(report)
}

/// Per file, per chunk index, every chunk found (any stamp).
type FoundFiles = BTreeMap<FileKey, BTreeMap<u64, Vec<FoundChunk>>>;

/// Read every shard header on every node and group the shards.
fn scan(service: &Service, report: &mut RebuildReport) -> Result<FoundFiles> {
    let ctx = service.context();
    let mut chunks: HashMap<u64, FoundChunk> = HashMap::new();
    let mut known: HashMap<u64, bool> = HashMap::new();
    for (i, node) in service.chunk_store().nodes().iter().enumerate() {
        let keys = match node.list_shards() {
            Ok(keys) => keys,
            Err(e) => {
                report.unrecovered.push(Unrecovered {
                    file: format!("(every shard on node {})", node.id()),
                    reason: format!("the node could not be listed: {e}"),
                });
                continue;
            }
        };
        for (key, _) in keys {
            report.shard_files += 1;
            let is_known = match known.get(&key.chunk_id) {
                Some(&k) => k,
                None => {
                    let k = ctx.meta.chunk_by_id(key.chunk_id)?.is_some();
                    known.insert(key.chunk_id, k);
                    k
                }
            };
            if is_known {
                report.known_to_metadata += 1;
                continue;
            }
            let header = match read_header(node.as_ref(), key) {
                Ok(h) => h,
                Err(e) => {
                    log::warn!(
                        "node {}: shard {} of chunk {:016x}: {e}",
                        node.id(),
                        key.index,
                        key.chunk_id
                    );
                    report.unreadable_headers += 1;
                    continue;
                }
            };
            let Some(origin) = header.origin else {
                report.without_origin += 1;
                continue;
            };
            let found = Found {
                node: i,
                key,
                header,
            };
            chunks
                .entry(key.chunk_id)
                .or_insert_with(|| FoundChunk {
                    origin,
                    header,
                    shards: Vec::new(),
                })
                .shards
                .push(found);
        }
    }
    let mut files: FoundFiles = BTreeMap::new();
    for chunk in chunks.into_values() {
        let o = chunk.origin;
        let file = match o.inode {
            0 => FileKey::Name(o.name().to_string()),
            ino => FileKey::Inode(ino),
        };
        files
            .entry(file)
            .or_default()
            .entry(o.chunk_index)
            .or_default()
            .push(chunk);
    }
    Ok(files)
}

fn describe(file: &FileKey, chunks: &BTreeMap<u64, Vec<FoundChunk>>) -> String {
    let name = newest(chunks).map(|c| c.origin.name().to_string());
    match (file, name) {
        (FileKey::Inode(ino), Some(name)) if !name.is_empty() => format!("inode {ino} ({name})"),
        (FileKey::Inode(ino), _) => format!("inode {ino}"),
        (FileKey::Name(name), _) => format!("object {name}"),
    }
}

/// The file's newest chunk (largest stamp): its size and name are the file's.
fn newest(chunks: &BTreeMap<u64, Vec<FoundChunk>>) -> Option<&FoundChunk> {
    chunks.values().flatten().max_by_key(|c| c.origin.stamp)
}

/// The chunks that make up the file's newest version: per index below its
/// size, the chunk with the largest stamp (None: no shard found at all).
fn plan(
    chunks: &BTreeMap<u64, Vec<FoundChunk>>,
    chunk_size: u64,
) -> (u64, Vec<Option<FoundChunk>>) {
    let size = newest(chunks).map(|c| c.origin.file_size).unwrap_or(0);
    let count = size.div_ceil(chunk_size.max(1));
    let picks = (0..count)
        .map(|i| {
            chunks
                .get(&i)
                .and_then(|v| v.iter().max_by_key(|c| c.origin.stamp).cloned())
        })
        .collect();
    (size, picks)
}

/// Decode one chunk from k verified shards.
fn decode(service: &Service, chunk: &FoundChunk) -> std::result::Result<Vec<u8>, String> {
    let h = chunk.header;
    let (k, m) = (h.k as usize, h.m as usize);
    let codec = Codec::new(k, m).map_err(|e| e.to_string())?;
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; k + m];
    let mut bad = Vec::new();
    let nodes = service.chunk_store().nodes();
    for f in &chunk.shards {
        let index = f.key.index as usize;
        if index >= k + m || shards[index].is_some() {
            continue;
        }
        match read_whole_shard(nodes[f.node].as_ref(), f.key) {
            Ok((header, payload)) if header.same_identity(&f.header) => {
                shards[index] = Some(payload)
            }
            Ok(_) => bad.push(format!("shard {index}: header changed while reading")),
            Err(e) => bad.push(format!("shard {index} on {}: {e}", nodes[f.node].id())),
        }
        if shards.iter().flatten().count() == k {
            break;
        }
    }
    let good = shards.iter().flatten().count();
    if good < k {
        return Err(format!(
            "chunk {} ({:016x}): {} shard(s) found, {good} verified, {k} needed{}{}",
            chunk.origin.chunk_index,
            h.chunk_id,
            chunk.distinct_shards(),
            if bad.is_empty() { "" } else { ": " },
            bad.join("; ")
        ));
    }
    codec.reconstruct(&mut shards).map_err(|e| e.to_string())?;
    let mut data = Vec::with_capacity(k * h.payload_len as usize);
    for shard in shards.into_iter().take(k) {
        data.extend_from_slice(&shard.expect("reconstructed"));
    }
    data.truncate(h.data_len as usize);
    Ok(data)
}

/// The recovered file's bytes, decoded chunk by chunk as they are read.
struct Rebuilt<'a> {
    service: &'a Service,
    picks: &'a [Option<FoundChunk>],
    chunk_size: u64,
    size: u64,
    next: usize,
    buf: Vec<u8>,
    at: usize,
    hasher: Sha256,
}

impl Read for Rebuilt<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            let Some(pick) = self.picks.get(self.next) else {
                return Ok(0);
            };
            let start = self.next as u64 * self.chunk_size;
            let want = (self.size - start).min(self.chunk_size) as usize;
            let mut data = match pick {
                Some(chunk) => decode(self.service, chunk).map_err(std::io::Error::other)?,
                None => Vec::new(),
            };
            // A chunk shorter than its place (a sparse tail) reads as zeros.
            data.resize(want, 0);
            self.hasher.update(&data);
            self.buf = data;
            self.at = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl<'a> Rebuilt<'a> {
    fn new(
        service: &'a Service,
        picks: &'a [Option<FoundChunk>],
        chunk_size: u64,
        size: u64,
    ) -> Self {
        Rebuilt {
            service,
            picks,
            chunk_size,
            size,
            next: 0,
            buf: Vec::new(),
            at: 0,
            hasher: Sha256::new(),
        }
    }

    /// SHA-256 of every byte, read to the end.
    fn digest(mut self) -> std::io::Result<String> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(hex::encode(self.hasher.finalize()))
    }
}

/// Names to try for a file, in order: its last known name, then the same
/// with its old inode (or stamp) appended, then the inode alone.
fn candidate_keys(file: &FileKey, newest: &FoundChunk) -> Vec<String> {
    let name: String = newest
        .origin
        .name()
        .split('/')
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .collect::<Vec<_>>()
        .join("/");
    let id = match file {
        FileKey::Inode(ino) => ino.to_string(),
        FileKey::Name(_) => format!("put-{}", newest.origin.stamp),
    };
    let mut keys = Vec::new();
    if !name.is_empty() {
        keys.push(format!("{LOST_AND_FOUND}/{name}"));
        keys.push(format!("{LOST_AND_FOUND}/{name}.{id}"));
    }
    keys.push(format!("{LOST_AND_FOUND}/{id}"));
    keys
}

fn recover_file(
    service: &Service,
    file: &FileKey,
    chunks: &BTreeMap<u64, Vec<FoundChunk>>,
    chunk_size: u64,
) -> std::result::Result<Recovered, String> {
    let newest = newest(chunks).ok_or("no chunk")?.clone();
    let (size, picks) = plan(chunks, chunk_size);
    // Every chunk must be decodable before anything is written.
    for pick in picks.iter().flatten() {
        if pick.distinct_shards() < pick.header.k as usize {
            return Err(format!(
                "chunk {} ({:016x}): {} shard(s) found, {} needed",
                pick.origin.chunk_index,
                pick.header.chunk_id,
                pick.distinct_shards(),
                pick.header.k
            ));
        }
    }
    let holes: Vec<u64> = picks
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_none())
        .map(|(i, _)| i as u64)
        .collect();
    let old_inode = match file {
        FileKey::Inode(ino) => *ino,
        FileKey::Name(_) => 0,
    };
    let mut digest: Option<String> = None;
    let mut last_error = String::from("no name to write it under");
    for key in candidate_keys(file, &newest) {
        match service.resolve_key(&key) {
            Ok(Some(existing)) => {
                // Taken: by this very file from an earlier run, or another.
                if digest.is_none() {
                    let d = Rebuilt::new(service, &picks, chunk_size, size)
                        .digest()
                        .map_err(|e| e.to_string())?;
                    digest = Some(d);
                }
                if existing.size == size && existing.checksum == digest {
                    return Ok(Recovered {
                        key,
                        size,
                        old_inode,
                        already_there: true,
                        holes,
                    });
                }
                continue;
            }
            Ok(None) => {}
            // Not a usable name (a parent is a file, a bad character): next.
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        }
        let mut reader = Rebuilt::new(service, &picks, chunk_size, size);
        match service.put_object(&key, &mut reader, PutOptions::default()) {
            Ok(_) => {
                return Ok(Recovered {
                    key,
                    size,
                    old_inode,
                    already_there: false,
                    holes,
                })
            }
            Err(Error::Io(e)) => return Err(e.to_string()),
            Err(e) => last_error = format!("cannot write {key}: {e}"),
        }
    }
    Err(last_error)
}
