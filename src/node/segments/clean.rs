//! The segment cleaner's work on one node: a sealed segment whose dead
//! fraction (bytes not live ÷ its size) passes the threshold has its live
//! entries copied to the active segment (keeping their sequence numbers
//! and times, so a later write or tombstone still wins), the copies made
//! durable, and then the segment is removed. Tombstones are copied only
//! while an older segment may still hold a put they hide. A reader that
//! opened a shard in the removed segment keeps reading it (the open file
//! outlives the name); the index points at the copy from the moment it is
//! written.

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::format::{self, EntryHeader, EntryKind, ENTRY_HEADER_LEN};
use super::{io_error, Location, SegmentStore};
use crate::error::Result;

/// What one cleaning pass over a node's segments did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanPass {
    /// Segments rewritten and removed.
    pub segments_cleaned: u64,
    /// Bytes of live entries copied forward.
    pub moved_bytes: u64,
    /// Bytes of segment files removed.
    pub reclaimed_bytes: u64,
}

impl SegmentStore {
    /// Sealed segments whose dead fraction passes the threshold, the
    /// deadest first (ties: the oldest).
    fn cleaning_candidates(&self) -> Vec<u64> {
        let active = self.active_id.load(Ordering::Relaxed);
        let catalog = self.catalog.lock();
        let mut found: Vec<(f64, u64)> = catalog
            .segments
            .iter()
            .filter(|(id, _)| **id != active)
            .filter_map(|(id, seg)| {
                let dead = 1.0 - seg.live as f64 / seg.size.max(1) as f64;
                (dead >= self.settings.dead_fraction).then_some((dead, *id))
            })
            .collect();
        found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        found.into_iter().map(|(_, id)| id).collect()
    }

    /// Clean every segment past the threshold, calling `pace(bytes)` after
    /// each entry copied (the caller's rate limit) and stopping early when
    /// `stop()` says so.
    pub fn clean(&self, pace: &mut dyn FnMut(u64), stop: &dyn Fn() -> bool) -> Result<CleanPass> {
        let mut pass = CleanPass::default();
        for id in self.cleaning_candidates() {
            if stop() {
                break;
            }
            let (moved, reclaimed) = self.clean_segment(id, pace)?;
            pass.segments_cleaned += 1;
            pass.moved_bytes += moved;
            pass.reclaimed_bytes += reclaimed;
        }
        Ok(pass)
    }

    /// Copy the live entries of sealed segment `id` forward, then remove
    /// it. Returns (bytes moved, bytes reclaimed).
    fn clean_segment(&self, id: u64, pace: &mut dyn FnMut(u64)) -> Result<(u64, u64)> {
        let (file, path, size, older_exists) = {
            let catalog = self.catalog.lock();
            let Some(seg) = catalog.segments.get(&id) else {
                return Ok((0, 0));
            };
            let older = catalog
                .segments
                .keys()
                .next()
                .is_some_and(|&first| first < id);
            (seg.file.clone(), seg.path.clone(), seg.size, older)
        };
        let mut entries: Vec<(u64, EntryHeader)> = Vec::new();
        format::scan(&file, size, |offset, h| entries.push((offset, *h))).map_err(io_error)?;
        let mut moved = 0u64;
        let mut last_ticket = 0u64;
        let mut payload = Vec::new();
        for (offset, h) in entries {
            let here = Location {
                segment: id,
                offset,
                len: h.len,
                seq: h.seq,
                mtime_ms: h.mtime_ms,
            };
            let keep = {
                let catalog = self.catalog.lock();
                let current = catalog.index.get(&h.key);
                match h.kind {
                    EntryKind::Put => current == Some(&here),
                    // A tombstone still hides something only when an older
                    // segment may hold a put of its key, and nothing newer
                    // was stored since.
                    EntryKind::Tombstone => older_exists && current.is_none(),
                }
            };
            if !keep {
                continue;
            }
            payload.resize(h.len as usize, 0);
            file.read_exact_at(&mut payload, offset + ENTRY_HEADER_LEN)
                .map_err(io_error)?;
            let moving = (h.kind == EntryKind::Put).then_some(here);
            last_ticket = self.append(&h, &[&payload], moving)?;
            let bytes = format::entry_len(h.len as u64);
            moved += bytes;
            pace(bytes);
        }
        if last_ticket > 0 {
            self.wait_durable(last_ticket)?;
        }
        {
            let mut catalog = self.catalog.lock();
            if catalog.index.values().any(|loc| loc.segment == id) {
                // Cannot happen (a sealed segment takes no new entries and
                // every live one was moved); keep it rather than lose one.
                log::warn!("segment {} still holds live entries; kept", path.display());
                return Ok((moved, 0));
            }
            catalog.segments.remove(&id);
        }
        fs::remove_file(&path).map_err(io_error)?;
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.moved.fetch_add(moved, Ordering::Relaxed);
        self.reclaimed.fetch_add(size, Ordering::Relaxed);
        Ok((moved, size))
    }
}
