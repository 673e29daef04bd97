//! Small shards of a local node, kept in append-only segment files
//! (`<node>/segments/seg-<id>.seg`, a log-structured store): a put appends
//! an entry to the active segment and returns once an `fdatasync` covering
//! it is done, shared by every put that wrote meanwhile (group commit); a
//! delete appends a tombstone. Segments are pre-written whole (header and
//! zeros, fsynced) before they are used, so an append overwrites blocks the
//! file system already allocated and its `fdatasync` commits no file system
//! journal. An in-memory index (key → segment, offset, length) is rebuilt
//! at open by scanning every segment; the cleaner (`clean`) copies the live
//! entries of mostly-dead segments forward and removes them.

mod clean;
mod format;
#[cfg(test)]
mod tests;

pub use clean::CleanPass;

use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use format::{EntryHeader, EntryKind, ENTRY_HEADER_LEN, FILE_HEADER_LEN};

use super::{ShardKey, ShardReader};
use crate::error::{Error, Result};

/// Shards up to this many bytes go to segments by default.
pub const DEFAULT_MAX_SHARD: u64 = 256 * 1024;
/// Bytes of one segment file by default.
pub const DEFAULT_SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
/// The cleaner rewrites a sealed segment once this fraction of it is dead
/// by default (removed or replaced entries, and space never used).
pub const DEFAULT_DEAD_FRACTION: f64 = 0.5;

/// How a node uses segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentSettings {
    /// Shards of at most this many bytes go to segments; 0: none do.
    pub max_shard: u64,
    /// Size of each segment file.
    pub segment_bytes: u64,
    /// Dead fraction past which the cleaner rewrites a sealed segment.
    pub dead_fraction: f64,
}

impl Default for SegmentSettings {
    fn default() -> Self {
        SegmentSettings {
            max_shard: DEFAULT_MAX_SHARD,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            dead_fraction: DEFAULT_DEAD_FRACTION,
        }
    }
}

impl SegmentSettings {
    /// Whether a shard of `len` bytes goes to a segment.
    pub fn takes(&self, len: u64) -> bool {
        self.max_shard > 0
            && len <= self.max_shard
            && format::entry_len(len) + FILE_HEADER_LEN <= self.segment_bytes
    }
}

/// Figures of one node's segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentFigures {
    pub segments: u64,
    /// Bytes of live entries (headers included).
    pub live_bytes: u64,
    /// Bytes of sealed segments not live: removed or replaced entries,
    /// tombstones, space never used.
    pub dead_bytes: u64,
    /// Shards held in segments.
    pub shards: u64,
    /// Bytes the cleaner gave back since the store opened.
    pub reclaimed_bytes: u64,
    /// Bytes the cleaner copied forward since the store opened.
    pub moved_bytes: u64,
    /// Entries appended since the store opened (stores, tombstones, copies).
    pub appends: u64,
    /// `fdatasync` calls that made them durable (group commit: one may
    /// serve many appends).
    pub syncs: u64,
}

/// Where a shard's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    segment: u64,
    /// Offset of the entry (its header) in the segment.
    offset: u64,
    len: u32,
    seq: u64,
    mtime_ms: u64,
}

/// A segment present on disk.
struct Segment {
    file: Arc<File>,
    path: PathBuf,
    /// Bytes of live entries in it (headers included).
    live: u64,
    /// Bytes appended so far (file header included).
    used: u64,
    /// Bytes of the file.
    size: u64,
}

/// The index and the segment table, under one lock.
#[derive(Default)]
struct Catalog {
    index: HashMap<ShardKey, Location>,
    segments: BTreeMap<u64, Segment>,
}

/// Where appends go.
struct Active {
    id: u64,
    file: Arc<File>,
    end: u64,
    /// A write into it failed: what part of it reached the file is
    /// unknown, so no entry may follow; the next append seals it and goes
    /// on in a new segment.
    sealed: bool,
}

/// Group commit: the highest write ticket known durable, and whether a
/// sync is under way.
#[derive(Default)]
struct SyncState {
    durable: u64,
    syncing: bool,
    /// An fdatasync failed: nothing written since can be promised durable.
    failed: Option<String>,
}

/// The segments of one node folder.
pub struct SegmentStore {
    dir: PathBuf,
    /// (device, inode) of `dir` when opened: a folder deleted and created
    /// again is a different store.
    identity: (u64, u64),
    settings: SegmentSettings,
    catalog: Mutex<Catalog>,
    active: Mutex<Active>,
    /// The active segment's id, readable without waiting for an append.
    active_id: AtomicU64,
    /// Tickets of appends whose bytes are written (not yet synced).
    issued: AtomicU64,
    sync: Mutex<SyncState>,
    synced: Condvar,
    next_seq: AtomicU64,
    next_segment: AtomicU64,
    /// A pre-written segment ready to become the active one.
    spare: Mutex<Option<(u64, File)>>,
    /// Prepare the first segment before the first append asks for it (set
    /// by the daemon that holds the folder; a store only read stays as is).
    eager: std::sync::atomic::AtomicBool,
    spare_wanted: Condvar,
    /// Latest store or removal (milliseconds since the epoch).
    changed_ms: AtomicU64,
    reclaimed: AtomicU64,
    syncs: AtomicU64,
    moved: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn segment_name(id: u64) -> String {
    format!("seg-{id:016x}.seg")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".seg")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

/// (device, inode) of a folder.
pub fn folder_identity(dir: &Path) -> std::io::Result<(u64, u64)> {
    let m = fs::metadata(dir)?;
    Ok((m.dev(), m.ino()))
}

impl SegmentStore {
    /// Remove the segments a stopped daemon left half pre-written in
    /// `dir`; only the daemon holding the folder, before it opens it.
    pub fn remove_leftovers(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-seg-") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    /// Open the segments under `dir` (which exists): scan them all, rebuild
    /// the index, pick where appends continue, and start the thread that
    /// pre-writes the next segment.
    pub fn open(dir: &Path, settings: SegmentSettings) -> Result<Arc<SegmentStore>> {
        let identity = folder_identity(dir)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = parse_segment_name(&name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut catalog = Catalog::default();
        let mut tombstones: HashMap<ShardKey, u64> = HashMap::new();
        let mut max_seq = 0u64;
        let mut changed = 0u64;
        let mut last_end = None;
        for &id in &ids {
            let path = dir.join(segment_name(id));
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let size = file.metadata()?.len();
            let mut head = [0u8; FILE_HEADER_LEN as usize];
            if size < FILE_HEADER_LEN
                || file.read_exact_at(&mut head, 0).is_err()
                || format::parse_file_header(&head) != Some(id)
            {
                log::warn!("{}: not a segment (bad header); left alone", path.display());
                continue;
            }
            let end = format::scan(&file, size, |offset, h| {
                max_seq = max_seq.max(h.seq);
                changed = changed.max(h.mtime_ms);
                match h.kind {
                    EntryKind::Put => {
                        let loc = Location {
                            segment: id,
                            offset,
                            len: h.len,
                            seq: h.seq,
                            mtime_ms: h.mtime_ms,
                        };
                        let newer = catalog.index.get(&h.key).is_none_or(|old| old.seq < h.seq);
                        if newer {
                            catalog.index.insert(h.key, loc);
                        }
                    }
                    EntryKind::Tombstone => {
                        let t = tombstones.entry(h.key).or_insert(0);
                        *t = (*t).max(h.seq);
                    }
                }
            })?;
            if end.skipped > 0 {
                log::warn!(
                    "{}: {} corrupt entr(y/ies) skipped (their shards are missing here; repair rebuilds them)",
                    path.display(),
                    end.skipped
                );
            }
            if end.end < size && !end.clean_tail {
                log::warn!(
                    "{}: entries end at byte {} (a torn or corrupt tail); the rest is ignored",
                    path.display(),
                    end.end
                );
            }
            last_end = Some((id, end));
            catalog.segments.insert(
                id,
                Segment {
                    file: Arc::new(file),
                    path,
                    live: 0,
                    used: end.end,
                    size,
                },
            );
        }
        catalog
            .index
            .retain(|key, loc| tombstones.get(key).is_none_or(|&t| t < loc.seq));
        for loc in catalog.index.values() {
            if let Some(seg) = catalog.segments.get_mut(&loc.segment) {
                seg.live += format::entry_len(loc.len as u64);
            }
        }
        let next_segment = ids.last().map_or(1, |l| l + 1);
        let store = SegmentStore {
            dir: dir.to_path_buf(),
            identity,
            settings,
            catalog: Mutex::new(catalog),
            active: Mutex::new(Active {
                id: 0,
                file: Arc::new(File::open(dir)?),
                end: 0,
                sealed: false,
            }),
            active_id: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
            next_seq: AtomicU64::new(max_seq + 1),
            next_segment: AtomicU64::new(next_segment),
            spare: Mutex::new(None),
            eager: std::sync::atomic::AtomicBool::new(false),
            spare_wanted: Condvar::new(),
            changed_ms: AtomicU64::new(changed),
            reclaimed: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            moved: AtomicU64::new(0),
        };
        // Appends continue in the newest segment when nothing but zeros
        // follows its entries; otherwise the first append begins a new one
        // (so a store only read, by fsck say, writes nothing).
        if let Some((id, end)) = last_end {
            if end.clean_tail && end.end < settings.segment_bytes {
                let file = store.catalog.lock().segments[&id].file.clone();
                store.active_id.store(id, Ordering::Relaxed);
                *store.active.lock() = Active {
                    id,
                    file,
                    end: end.end,
                    sealed: false,
                };
            }
        }
        let store = Arc::new(store);
        start_preparer(Arc::downgrade(&store));
        Ok(store)
    }

    /// Have a segment pre-written in the background now when appends
    /// have none to go to yet, so the first store waits for no segment.
    pub fn prepare_ahead(&self) {
        self.eager.store(true, Ordering::Relaxed);
        self.spare_wanted.notify_one();
    }

    /// The folder's (device, inode) when the store was opened.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    pub fn settings(&self) -> &SegmentSettings {
        &self.settings
    }

    /// Store `parts` as the shard `key`; returns once durable.
    pub fn put(&self, key: ShardKey, parts: &[&[u8]]) -> Result<()> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let header = EntryHeader {
            kind: EntryKind::Put,
            key,
            len: len as u32,
            seq,
            mtime_ms: now_ms(),
        };
        let ticket = self.append(&header, parts, None)?;
        self.wait_durable(ticket)
    }

    /// Remove `key` if a segment holds it: it leaves the index at once and a
    /// tombstone is appended (durable with the next sync; a tombstone lost
    /// to a crash only brings back an orphan the store's sweep removes).
    /// Returns whether a segment held it.
    pub fn remove(&self, key: ShardKey) -> Result<bool> {
        if !self.catalog.lock().index.contains_key(&key) {
            return Ok(false);
        }
        let header = EntryHeader {
            kind: EntryKind::Tombstone,
            key,
            len: 0,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            mtime_ms: now_ms(),
        };
        self.append(&header, &[], None)?;
        Ok(true)
    }

    /// Remove `key` and wait until its tombstone is durable (a shard moving
    /// to its own file must not be shadowed by this copy after a crash).
    pub fn remove_durably(&self, key: ShardKey) -> Result<()> {
        if self.remove(key)? {
            self.wait_durable(self.issued.load(Ordering::Acquire))?;
        }
        Ok(())
    }

    /// Append one entry and update the index. With `moving` (the cleaner),
    /// the index is updated only when it still points at that location.
    /// Returns the write's ticket for `wait_durable`.
    fn append(
        &self,
        header: &EntryHeader,
        parts: &[&[u8]],
        moving: Option<Location>,
    ) -> Result<u64> {
        let entry_len = format::entry_len(header.len as u64);
        let head = format::entry_header(header, parts);
        let mut active = self.active.lock();
        if active.id == 0 || active.sealed || active.end + entry_len > self.settings.segment_bytes {
            self.rotate(&mut active)?;
        }
        let at = active.end;
        let mut buf = Vec::with_capacity(entry_len as usize);
        buf.extend_from_slice(&head);
        for p in parts {
            buf.extend_from_slice(p);
        }
        if let Err(e) = active.file.write_all_at(&buf, at) {
            active.sealed = true;
            return Err(io_error(e));
        }
        active.end = at + entry_len;
        if active.end * 2 > self.settings.segment_bytes {
            self.spare_wanted.notify_one();
        }
        let ticket = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
        let mut catalog = self.catalog.lock();
        if let Some(seg) = catalog.segments.get_mut(&active.id) {
            seg.used = active.end;
        }
        let loc = Location {
            segment: active.id,
            offset: at,
            len: header.len,
            seq: header.seq,
            mtime_ms: header.mtime_ms,
        };
        drop(active);
        match header.kind {
            EntryKind::Put => {
                let current = catalog.index.get(&header.key).copied();
                let wins = match moving {
                    Some(from) => current == Some(from),
                    None => current.is_none_or(|c| c.seq < header.seq),
                };
                if wins {
                    if let Some(old) = current {
                        catalog.release(&old);
                    }
                    catalog.index.insert(header.key, loc);
                    if let Some(seg) = catalog.segments.get_mut(&loc.segment) {
                        seg.live += entry_len;
                    }
                }
            }
            EntryKind::Tombstone => {
                if let Some(old) = catalog.index.get(&header.key).copied() {
                    if old.seq < header.seq {
                        catalog.index.remove(&header.key);
                        catalog.release(&old);
                    }
                }
            }
        }
        drop(catalog);
        if moving.is_none() {
            self.changed_ms.fetch_max(now_ms(), Ordering::Relaxed);
        }
        Ok(ticket)
    }

    /// Seal the active segment (its bytes synced) and continue in a
    /// pre-written one, preparing it here when none is ready.
    fn rotate(&self, active: &mut Active) -> Result<()> {
        if active.id != 0 {
            active.file.sync_data().map_err(io_error)?;
        }
        let spare = self.spare.lock().take();
        let (id, file) = match spare {
            Some(ready) => ready,
            None => self.prepare_segment()?,
        };
        let file = Arc::new(file);
        self.catalog.lock().segments.insert(
            id,
            Segment {
                file: file.clone(),
                path: self.dir.join(segment_name(id)),
                live: 0,
                used: FILE_HEADER_LEN,
                size: self.settings.segment_bytes,
            },
        );
        *active = Active {
            id,
            file,
            end: FILE_HEADER_LEN,
            sealed: false,
        };
        self.active_id.store(id, Ordering::Relaxed);
        self.spare_wanted.notify_one();
        Ok(())
    }

    /// Write a new segment whole (header, then zeros to its full size),
    /// sync it, and give it its name: appends into it never allocate.
    fn prepare_segment(&self) -> Result<(u64, File)> {
        let id = self.next_segment.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".tmp-{}", segment_name(id)));
        let path = self.dir.join(segment_name(id));
        let write = || -> std::io::Result<File> {
            // One a crash left half-written (ids are never reused once named).
            let _ = fs::remove_file(&tmp);
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(&format::file_header(id))?;
            let zeros = vec![0u8; 1 << 20];
            let mut left = self.settings.segment_bytes - FILE_HEADER_LEN;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()?;
            Ok(f)
        };
        match write() {
            Ok(f) => Ok((id, f)),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(io_error(e))
            }
        }
    }

    /// Return once every append up to `ticket` is on stable storage. The
    /// first waiter syncs for everyone whose bytes were written before its
    /// sync began; the others wait for it (group commit).
    fn wait_durable(&self, ticket: u64) -> Result<()> {
        let mut state = self.sync.lock();
        loop {
            if let Some(why) = &state.failed {
                return Err(Error::Unavailable(format!("segment store: {why}")));
            }
            if state.durable >= ticket {
                return Ok(());
            }
            if state.syncing {
                self.synced.wait(&mut state);
                continue;
            }
            state.syncing = true;
            let target = self.issued.load(Ordering::Acquire);
            drop(state);
            // Segments sealed since were synced when they were sealed.
            let file = self.active.lock().file.clone();
            let result = file.sync_data();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            state = self.sync.lock();
            state.syncing = false;
            match result {
                Ok(()) => state.durable = state.durable.max(target),
                Err(e) => state.failed = Some(format!("fdatasync failed: {e}")),
            }
            self.synced.notify_all();
        }
    }

    /// A reader of `key`'s bytes, if a segment holds it. It keeps the
    /// segment file open: a segment the cleaner removes meanwhile stays
    /// readable through it.
    pub fn open_shard(&self, key: ShardKey) -> Option<Box<dyn ShardReader>> {
        let catalog = self.catalog.lock();
        let loc = catalog.index.get(&key)?;
        let seg = catalog.segments.get(&loc.segment)?;
        Some(Box::new(SegmentShardReader {
            file: seg.file.clone(),
            base: loc.offset + ENTRY_HEADER_LEN,
            len: loc.len as u64,
        }))
    }

    pub fn contains(&self, key: ShardKey) -> bool {
        self.catalog.lock().index.contains_key(&key)
    }

    /// Every shard held in segments, with when it was stored.
    pub fn list(&self) -> Vec<(ShardKey, SystemTime)> {
        self.catalog
            .lock()
            .index
            .iter()
            .map(|(k, loc)| (*k, UNIX_EPOCH + Duration::from_millis(loc.mtime_ms)))
            .collect()
    }

    /// Latest store or removal in segments, if any.
    pub fn changed(&self) -> Option<SystemTime> {
        match self.changed_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// The store's figures; no I/O, and no wait for an append or a sync.
    pub fn figures(&self) -> SegmentFigures {
        let active = self.active_id.load(Ordering::Relaxed);
        let catalog = self.catalog.lock();
        let mut f = SegmentFigures {
            segments: catalog.segments.len() as u64,
            shards: catalog.index.len() as u64,
            reclaimed_bytes: self.reclaimed.load(Ordering::Relaxed),
            moved_bytes: self.moved.load(Ordering::Relaxed),
            appends: self.issued.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (id, seg) in &catalog.segments {
            f.live_bytes += seg.live;
            let span = if *id == active { seg.used } else { seg.size };
            f.dead_bytes += span.saturating_sub(seg.live + FILE_HEADER_LEN);
        }
        f
    }
}

impl Catalog {
    /// `old` stopped being live: its segment holds that much less.
    fn release(&mut self, old: &Location) {
        if let Some(seg) = self.segments.get_mut(&old.segment) {
            seg.live = seg.live.saturating_sub(format::entry_len(old.len as u64));
        }
    }
}

fn io_error(e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        Error::NoSpace("segment store".into())
    } else {
        Error::Io(e)
    }
}

/// The thread that keeps one pre-written segment ready: woken when the
/// active segment passes half full (or was just replaced), it ends once
/// the store is dropped.
fn start_preparer(store: Weak<SegmentStore>) {
    let spawned = std::thread::Builder::new()
        .name("seg-prepare".into())
        .spawn(move || loop {
            let Some(s) = store.upgrade() else { return };
            // Never wait on the spare's lock while holding the active one's
            // (appends take them in the other order).
            let has_spare = s.spare.lock().is_some();
            let need = !has_spare && {
                let active = s.active.lock();
                let first = active.id == 0 && s.eager.load(Ordering::Relaxed);
                first || active.sealed || active.end * 2 > s.settings.segment_bytes
            };
            if need {
                match s.prepare_segment() {
                    Ok(ready) => *s.spare.lock() = Some(ready),
                    Err(e) => {
                        log::warn!("pre-writing a segment in {}: {e}", s.dir.display());
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            } else {
                let mut spare = s.spare.lock();
                s.spare_wanted
                    .wait_for(&mut spare, Duration::from_millis(500));
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the segment preparer: {e}; segments are prepared when needed");
    }
}

struct SegmentShardReader {
    file: Arc<File>,
    base: u64,
    len: u64,
}

impl ShardReader for SegmentShardReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        crate::node::check_shard_range(offset, buf.len(), self.len)?;
        self.file
            .read_exact_at(buf, self.base + offset)
            .map_err(|e| match e.kind() {
                ErrorKind::UnexpectedEof => {
                    Error::Corrupt(format!("segment ended inside a shard: {e}"))
                }
                _ => Error::Io(e),
            })
    }
}
