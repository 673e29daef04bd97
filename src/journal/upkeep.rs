//! Keeping the journal on the nodes in shape: dropping segments that
//! snapshots made unnecessary (`truncate`), and rewriting copies that are
//! bad, cut short or missing from the copy with the most valid records
//! (`check_copies`, run by scrub and after a node recovery). The segment
//! being appended to is closed first, so only finished segments are
//! compared.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{parse_segment, parse_segment_name, JournalWriter, JOURNAL_AREA};
use crate::chunk::ChunkStore;
use crate::error::Result;

/// Segment (first LSN, creation ms) → (file name, nodes holding a copy).
pub type SegmentMap = BTreeMap<(u64, u64), (String, Vec<usize>)>;

/// The journal segments on the up nodes (a node that cannot list is
/// skipped and logged).
pub fn list_segments(store: &ChunkStore) -> SegmentMap {
    let mut segments = SegmentMap::new();
    for i in 0..store.nodes().len() {
        if !store.is_up(i) {
            continue;
        }
        match store.meta_file_call(i, |n| n.list_meta_files(JOURNAL_AREA)) {
            Ok(files) => {
                for (name, _) in files {
                    if let Some(key) = parse_segment_name(&name) {
                        segments.entry(key).or_insert((name, Vec::new())).1.push(i);
                    }
                }
            }
            Err(e) => log::warn!("metadata journal on node {}: {e}", store.nodes()[i].id()),
        }
    }
    segments
}

/// Drop every segment whose records all have an LSN of at most `covered`
/// (a snapshot the nodes keep holds them), judged by the records of a copy
/// that reads back whole, never by the names alone: a segment that a failed
/// append closed may hold records a later segment was meant to repeat.
/// The active segment stays. Returns the segments dropped.
pub fn truncate(store: &ChunkStore, writer: &JournalWriter, covered: u64) -> usize {
    let segments = list_segments(store);
    let active = writer.active_segment();
    let mut dropped = 0;
    for ((first, _), (name, holders)) in &segments {
        if *first > covered || active.as_deref() == Some(name.as_str()) {
            continue;
        }
        let last = holders.iter().find_map(|&i| {
            let name = name.clone();
            let bytes = store
                .meta_file_call(i, move |n| n.read_meta_file(JOURNAL_AREA, &name))
                .ok()?;
            let segment = parse_segment(&bytes).ok()?;
            segment
                .stopped
                .is_none()
                .then(|| segment.last_lsn().unwrap_or(first.saturating_sub(1)))
        });
        if last.is_none_or(|last| last > covered) {
            continue;
        }
        for &i in holders {
            let name = name.clone();
            if let Err(e) =
                store.meta_file_call(i, move |n| n.delete_meta_file(JOURNAL_AREA, &name))
            {
                log::warn!("dropping journal segment on {}: {e}", store.nodes()[i].id());
            }
        }
        dropped += 1;
    }
    dropped
}

/// What a check of the copies found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopiesChecked {
    pub segments: u64,
    /// Copies that were unreadable, corrupt or held fewer records than
    /// the best copy of their segment.
    pub bad: u64,
    /// Copies rewritten (bad ones) or added (segments short of copies).
    pub rewritten: u64,
    pub added: u64,
}

/// Compare every finished segment's copies; with `repair`, rewrite the bad
/// ones from the best copy and add copies where fewer than wanted remain.
pub fn check_copies(
    store: &Arc<ChunkStore>,
    writer: &JournalWriter,
    repair: bool,
) -> Result<CopiesChecked> {
    let closed_through = writer.close_segment();
    let mut checked = CopiesChecked::default();
    for (name, holders) in list_segments(store).into_values() {
        // Appends may have opened a segment since the close (even while
        // this pass reads): it is not done, its copies may differ by the
        // frame in flight. Each such segment starts past the close.
        if parse_segment_name(&name).is_none_or(|(first, _)| first > closed_through) {
            continue;
        }
        checked.segments += 1;
        let mut copies = Vec::new();
        for &i in &holders {
            let name = name.clone();
            let read = store.meta_file_call(i, move |n| n.read_meta_file(JOURNAL_AREA, &name));
            let records = match &read {
                Ok(bytes) => parse_segment(bytes)
                    .map(|s| (s.records.len(), s.stopped.is_some()))
                    .ok(),
                Err(_) => None,
            };
            copies.push((i, read.ok(), records));
        }
        let best = copies
            .iter()
            .filter_map(|(i, bytes, parsed)| Some((*i, bytes.clone()?, (*parsed)?)))
            .max_by_key(|(_, _, (records, torn))| (*records, !*torn));
        let Some((best_node, best_bytes, (best_records, _))) = best else {
            log::error!("no readable copy of journal segment {name}");
            checked.bad += holders.len() as u64;
            continue;
        };
        let bad: Vec<usize> = copies
            .iter()
            .filter(|(i, _, parsed)| {
                *i != best_node
                    && parsed.is_none_or(|(records, torn)| records < best_records || torn)
            })
            .map(|(i, _, _)| *i)
            .collect();
        checked.bad += bad.len() as u64;
        if !repair {
            continue;
        }
        let best_bytes = Arc::new(best_bytes);
        let put = |i: usize| {
            let (name, bytes) = (name.clone(), best_bytes.clone());
            store.meta_file_call(i, move |n| n.put_meta_file(JOURNAL_AREA, &name, &[&bytes]))
        };
        for &i in &bad {
            match put(i) {
                Ok(()) => checked.rewritten += 1,
                Err(e) => log::warn!(
                    "rewriting journal segment {name} on {}: {e}",
                    store.nodes()[i].id()
                ),
            }
        }
        let wanted = writer.wanted_copies();
        let mut have = holders.iter().filter(|&&i| store.is_up(i)).count();
        for i in store.spread_over_regions() {
            if have >= wanted {
                break;
            }
            if holders.contains(&i) || !store.is_up(i) {
                continue;
            }
            match put(i) {
                Ok(()) => {
                    checked.added += 1;
                    have += 1;
                }
                Err(e) => log::warn!(
                    "copying journal segment {name} to {}: {e}",
                    store.nodes()[i].id()
                ),
            }
        }
    }
    Ok(checked)
}
