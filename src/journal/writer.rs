//! Appending the metadata journal to the nodes, with group commit: a
//! durable operation asks for every record through its LSN; the first
//! caller becomes the leader and writes every queued record as one frame
//! to the active segment's m+1 nodes at once (fdatasync on each); callers
//! arriving meanwhile wait for it, then find their records written or lead
//! the next append. Namespace changes that need no sync ride along with
//! the next durable operation, or with the periodic flush.
//!
//! A segment lives on the nodes chosen when it was started (up nodes,
//! spread over the regions). When one of them fails an append, the segment
//! is closed and the same frame is written again at the start of a new
//! segment on healthy nodes, so the new records have their full copies at
//! once; the older records of the closed segment keep one copy fewer until
//! the next snapshot covers them (the snapshot worker is woken).

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{
    encode_frame, encode_segment_header, segment_name, SegmentHeader, FORMAT, JOURNAL_AREA,
};
use crate::chunk::ChunkStore;
use crate::error::{Error, Result};
use crate::meta::{JournalSink, RecordQueue};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Queued records past this size are written without waiting for a sync.
const EARLY_FLUSH_BYTES: u64 = 1024 * 1024;
/// Records per frame are cut at this size (a queue that grew while nodes
/// were down goes out in several appends).
const FRAME_BYTES: u64 = 4 * 1024 * 1024;
/// Attempts of one append on fresh segments before it is given up.
const ATTEMPTS: usize = 3;
/// A node that failed an append is not chosen for a new segment for this
/// long (unless too few others are up).
const SUSPECT_FOR: Duration = Duration::from_secs(30);

/// The segment being appended to.
#[derive(Debug, Clone)]
struct ActiveSegment {
    name: String,
    first_lsn: u64,
    nodes: Vec<usize>,
    bytes: u64,
}

/// What `ctl health` shows about the journal writer.
#[derive(Debug, Clone, Default)]
pub struct WriterStatus {
    /// Every record through this LSN is on the nodes.
    pub durable_lsn: u64,
    /// The newest record committed.
    pub last_lsn: u64,
    pub queued_bytes: u64,
    /// The active segment and the nodes holding it.
    pub active_segment: Option<String>,
    pub active_nodes: Vec<String>,
    pub appends: u64,
    pub appended_bytes: u64,
    /// Appends that failed on a node (the segment was closed for it).
    pub node_failures: u64,
    /// Segments closed with fewer copies than wanted since the start.
    pub reduced_segments: u64,
    /// Copies the last scrub found bad and could not rewrite.
    pub bad_copies: u64,
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    durable_lsn: u64,
    flushing: bool,
    active: Option<ActiveSegment>,
    /// Grows when the active segment is closed from outside (snapshot,
    /// scrub): an append that started before does not reopen it.
    closings: u64,
    /// Nodes that failed an append, and when.
    suspects: Vec<(usize, Instant)>,
    status: WriterStatus,
}

pub struct JournalWriter {
    queue: Arc<RecordQueue>,
    store: Arc<ChunkStore>,
    cluster_id: String,
    /// Copies wanted of each segment: m+1, or every node when fewer.
    wanted: usize,
    state: Mutex<State>,
    flushed: Condvar,
    /// The creation time of the newest segment name (names never repeat).
    last_created_ms: AtomicU64,
    /// Called when a segment ends up with fewer copies than wanted, or
    /// records must be written early (wake the snapshot / flush workers).
    on_reduced: Box<dyn Fn() + Send + Sync>,
    on_backlog: Box<dyn Fn() + Send + Sync>,
}

impl JournalWriter {
    pub fn new(
        queue: Arc<RecordQueue>,
        store: Arc<ChunkStore>,
        on_reduced: Box<dyn Fn() + Send + Sync>,
        on_backlog: Box<dyn Fn() + Send + Sync>,
    ) -> JournalWriter {
        let wanted = (store.m() + 1).min(store.nodes().len()).max(1);
        // Records committed before this start are on the nodes already, or
        // were never acknowledged; those queued now (a new store's first
        // transaction) are not.
        let durable_lsn = queue
            .oldest_lsn()
            .map_or(queue.last_lsn(), |oldest| oldest - 1);
        JournalWriter {
            cluster_id: store.cluster_id().to_string(),
            queue,
            store,
            wanted,
            state: Mutex::new(State {
                durable_lsn,
                ..State::default()
            }),
            flushed: Condvar::new(),
            last_created_ms: AtomicU64::new(0),
            on_reduced,
            on_backlog,
        }
    }

    /// Copies wanted of each segment.
    pub fn wanted_copies(&self) -> usize {
        self.wanted
    }

    /// Write every queued record now (the periodic flush, shutdown).
    pub fn flush_all(&self) -> Result<()> {
        self.sync_through(self.queue.last_lsn())
    }

    /// Close the active segment: the next append starts a new one (a
    /// snapshot does, so the segments it covers can go; a scrub does,
    /// before it compares the copies of closed segments). Returns the LSN
    /// durable at the close: every segment opened after it starts past it.
    pub fn close_segment(&self) -> u64 {
        let mut state = self.state.lock();
        // An append in flight finishes first: a closed segment's copies
        // are complete when they are compared or dropped.
        while state.flushing {
            self.flushed.wait(&mut state);
        }
        state.active = None;
        state.closings += 1;
        state.status.active_segment = None;
        state.status.active_nodes.clear();
        state.durable_lsn
    }

    /// After a snapshot holding every record through `lsn`: write out what
    /// is queued and make sure a segment on the nodes reaches `lsn` (holds
    /// it, or starts right after it), so a restore from this snapshot can
    /// tell an intact journal from one whose copies were lost. With no
    /// segment open, an empty one is started after the last durable record.
    pub fn anchor_after(&self, lsn: u64) -> Result<()> {
        self.flush_all()?;
        let mut state = self.state.lock();
        while state.flushing {
            self.flushed.wait(&mut state);
        }
        if state.active.is_some() {
            return Ok(());
        }
        let first = state.durable_lsn.max(lsn) + 1;
        state.flushing = true;
        drop(state);
        let started = {
            let _done = FlushDone(self);
            self.start_empty_segment(first)
        };
        let mut state = self.state.lock();
        match started {
            Ok(segment) => {
                state.status.active_segment = Some(segment.name.clone());
                state.status.active_nodes = self.node_ids(&segment.nodes);
                state.active = Some(segment);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Write a segment header alone on up nodes (no record yet).
    fn start_empty_segment(&self, first_lsn: u64) -> Result<ActiveSegment> {
        let mut segment = self.segment_for(first_lsn, 0)?;
        let header = encode_segment_header(&SegmentHeader {
            format: FORMAT,
            cluster_id: self.cluster_id.clone(),
            first_lsn,
            created_unix_ms: segment_created_ms(&segment.name),
        });
        let size = header.len() as u64;
        let answers = self.store.journal_append_each(
            &segment.nodes,
            JOURNAL_AREA,
            &segment.name,
            0,
            Arc::new(header),
        );
        let failed: Vec<String> = answers
            .iter()
            .filter_map(|(node, a)| {
                a.as_ref()
                    .err()
                    .map(|e| format!("{}: {e}", self.store.nodes()[*node].id()))
            })
            .collect();
        if failed.len() == answers.len() {
            return Err(Error::Unavailable(format!(
                "no node took the new journal segment: {}",
                failed.join("; ")
            )));
        }
        segment.nodes = answers
            .iter()
            .filter(|(_, a)| a.is_ok())
            .map(|(node, _)| *node)
            .collect();
        segment.bytes = size;
        Ok(segment)
    }

    /// A creation time for a new segment's name, later than the last one's.
    fn next_created_ms(&self) -> u64 {
        let now = now_ms();
        let previous = self.last_created_ms.fetch_max(now, Ordering::SeqCst);
        if previous >= now {
            self.last_created_ms.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            now
        }
    }

    fn node_ids(&self, nodes: &[usize]) -> Vec<String> {
        nodes
            .iter()
            .map(|&i| self.store.nodes()[i].id().to_string())
            .collect()
    }

    /// The name of the active segment (never truncated, never repaired).
    pub fn active_segment(&self) -> Option<String> {
        self.state.lock().active.as_ref().map(|a| a.name.clone())
    }

    /// What the last scrub left bad.
    pub fn note_bad_copies(&self, bad: u64) {
        self.state.lock().status.bad_copies = bad;
    }

    pub fn status(&self) -> WriterStatus {
        let state = self.state.lock();
        let mut status = state.status.clone();
        status.durable_lsn = state.durable_lsn;
        status.last_lsn = self.queue.last_lsn();
        status.queued_bytes = self.queue.queued_bytes();
        status
    }

    /// One append of everything queued. Returns the LSN now durable.
    fn append_queued(&self) -> Result<Option<u64>> {
        let records = self.queue.take_up_to(FRAME_BYTES);
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(None);
        };
        let (first, last) = (first.lsn, last.lsn);
        let frame = encode_frame(&records);
        let mut errors = Vec::new();
        let mut copies_written = 0;
        for _ in 0..ATTEMPTS {
            let closings = self.state.lock().closings;
            let mut segment = match self.segment_for(first, frame.len() as u64) {
                Ok(segment) => segment,
                Err(e) => {
                    errors.push(e.to_string());
                    break;
                }
            };
            let mut bytes = Vec::new();
            if segment.bytes == 0 {
                bytes = encode_segment_header(&SegmentHeader {
                    format: FORMAT,
                    cluster_id: self.cluster_id.clone(),
                    first_lsn: segment.first_lsn,
                    created_unix_ms: segment_created_ms(&segment.name),
                });
            }
            bytes.extend_from_slice(&frame);
            let size = bytes.len() as u64;
            let answers = self.store.journal_append_each(
                &segment.nodes,
                JOURNAL_AREA,
                &segment.name,
                segment.bytes,
                Arc::new(bytes),
            );
            let failed: Vec<String> = answers
                .iter()
                .filter_map(|(node, answer)| {
                    answer
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {e}", self.store.nodes()[*node].id()))
                })
                .collect();
            let written = answers.len() - failed.len();
            copies_written += written;
            let mut state = self.state.lock();
            state.status.appends += 1;
            let now = Instant::now();
            state
                .suspects
                .retain(|(_, at)| now.duration_since(*at) < SUSPECT_FOR);
            for (node, answer) in &answers {
                if answer.is_err() {
                    state.suspects.push((*node, now));
                }
            }
            if failed.is_empty() {
                segment.bytes += size;
                state.status.appended_bytes += size;
                if state.closings == closings {
                    state.status.active_segment = Some(segment.name.clone());
                    state.status.active_nodes = self.node_ids(&segment.nodes);
                    state.active = Some(segment);
                }
                return Ok(Some(last));
            }
            // A node failed: this segment is closed. Its earlier records
            // keep one copy fewer until the next snapshot.
            state.status.node_failures += failed.len() as u64;
            state.status.reduced_segments += 1;
            state.status.last_error = Some(failed.join("; "));
            state.active = None;
            drop(state);
            log::warn!(
                "metadata journal segment {} closed: an append failed on {} (written on {written} of {})",
                segment.name,
                failed.join("; "),
                segment.nodes.len()
            );
            (self.on_reduced)();
            errors.extend(failed);
            if written > 0 && self.healthy_nodes() < self.wanted {
                // No better set of nodes to try: the records have fewer
                // copies, as data written while nodes are down.
                return Ok(Some(last));
            }
        }
        if copies_written > 0 {
            // Durable on fewer nodes than wanted, as data written while
            // nodes are down; the next snapshot covers them.
            return Ok(Some(last));
        }
        // Not written anywhere: the records wait for the next attempt (no
        // LSN is ever skipped).
        self.queue.give_back(records);
        let why = errors.join("; ");
        self.state.lock().status.last_error = Some(why.clone());
        Err(Error::Unavailable(format!(
            "the metadata journal could not be written to any node: {why}"
        )))
    }

    fn healthy_nodes(&self) -> usize {
        (0..self.store.nodes().len())
            .filter(|&i| self.store.is_up(i))
            .count()
    }

    /// The segment the next frame (of `frame_bytes`, first record
    /// `first_lsn`) goes to: the active one, or a new one on up nodes.
    fn segment_for(&self, first_lsn: u64, frame_bytes: u64) -> Result<ActiveSegment> {
        let now = Instant::now();
        let (suspects, lost_node) = {
            let mut state = self.state.lock();
            if let Some(active) = &state.active {
                let nodes_up = active.nodes.iter().all(|&i| self.store.is_up(i));
                if nodes_up && active.bytes + frame_bytes <= SEGMENT_BYTES {
                    return Ok(active.clone());
                }
                if !nodes_up {
                    state.status.reduced_segments += 1;
                }
            }
            let suspects: Vec<usize> = state
                .suspects
                .iter()
                .filter(|(_, at)| now.duration_since(*at) < SUSPECT_FOR)
                .map(|(n, _)| *n)
                .collect();
            let lost_node = state
                .active
                .as_ref()
                .is_some_and(|a| !a.nodes.iter().all(|&i| self.store.is_up(i)));
            (suspects, lost_node)
        };
        if lost_node {
            (self.on_reduced)();
        }
        // Up nodes spread over the regions, those that failed an append
        // lately last.
        let mut order: Vec<usize> = self
            .store
            .spread_over_regions()
            .into_iter()
            .filter(|&i| self.store.is_up(i))
            .collect();
        order.sort_by_key(|i| suspects.contains(i));
        let nodes: Vec<usize> = order.into_iter().take(self.wanted).collect();
        if nodes.is_empty() {
            return Err(Error::Unavailable("no node is up".into()));
        }
        let created = self.next_created_ms();
        Ok(ActiveSegment {
            name: segment_name(first_lsn, created),
            first_lsn,
            nodes,
            bytes: 0,
        })
    }
}

/// Clears `flushing` and wakes the waiters when an append ends, a panic
/// included (durable operations would otherwise wait for ever).
struct FlushDone<'a>(&'a JournalWriter);

impl Drop for FlushDone<'_> {
    fn drop(&mut self) {
        self.0.state.lock().flushing = false;
        self.0.flushed.notify_all();
    }
}

impl JournalSink for JournalWriter {
    fn sync_through(&self, lsn: u64) -> Result<()> {
        let mut state = self.state.lock();
        loop {
            if state.durable_lsn >= lsn {
                return Ok(());
            }
            if state.flushing {
                self.flushed.wait(&mut state);
                continue;
            }
            state.flushing = true;
            drop(state);
            let appended = {
                let _done = FlushDone(self);
                self.append_queued()
            };
            state = self.state.lock();
            match appended {
                Ok(Some(durable)) => state.durable_lsn = state.durable_lsn.max(durable),
                // Nothing queued: every record through `lsn` was taken by an
                // append that finished (a failed one gives them back).
                Ok(None) => state.durable_lsn = state.durable_lsn.max(lsn),
                Err(e) => return Err(e),
            }
        }
    }

    fn records_queued(&self, queued_bytes: u64) {
        if queued_bytes >= EARLY_FLUSH_BYTES {
            (self.on_backlog)();
        }
    }
}

/// The creation time a segment's name carries (its header says the same).
fn segment_created_ms(name: &str) -> u64 {
    super::parse_segment_name(name).map_or(0, |(_, ms)| ms)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
