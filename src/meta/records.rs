//! The hand-over between the write funnel and the metadata journal: the
//! queue of committed changesets waiting to be written to the nodes, in
//! LSN order, and the trait the journal writer implements so the funnel
//! can make records durable without knowing about nodes.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;

/// One committed transaction: its log sequence number and its changeset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub lsn: u64,
    pub changeset: Vec<u8>,
}

/// Where records go once committed (the journal writer, set up after the
/// nodes are). Without one, records only wait in the queue.
pub trait JournalSink: Send + Sync {
    /// Make every record through `lsn` durable on the nodes; blocks until
    /// then. Called while the WAL is fdatasynced on another thread.
    fn sync_through(&self, lsn: u64) -> Result<()>;
    /// Records were queued: the sink may write them out early (a queue past
    /// its soft bound is written without waiting for the next sync).
    fn records_queued(&self, queued_bytes: u64);
}

/// Committed records not yet taken by the journal writer.
#[derive(Default)]
pub struct RecordQueue {
    records: Mutex<VecDeque<JournalRecord>>,
    bytes: AtomicU64,
    /// The LSN of the newest record queued (the database's journal_lsn).
    last_lsn: AtomicU64,
}

impl RecordQueue {
    pub(super) fn starting_at(last_lsn: u64) -> RecordQueue {
        RecordQueue {
            last_lsn: AtomicU64::new(last_lsn),
            ..RecordQueue::default()
        }
    }

    /// Queue a record (the funnel, holding the writer: LSN order is commit
    /// order). Returns the bytes queued.
    pub(super) fn push(&self, record: JournalRecord) -> u64 {
        let size = record.changeset.len() as u64 + 12;
        let lsn = record.lsn;
        self.records.lock().push_back(record);
        self.last_lsn.store(lsn, Ordering::SeqCst);
        self.bytes.fetch_add(size, Ordering::SeqCst) + size
    }

    /// Take the oldest queued records, at least one, up to `max_bytes`.
    pub fn take_up_to(&self, max_bytes: u64) -> Vec<JournalRecord> {
        let mut records = self.records.lock();
        let mut size = 0;
        let mut count = 0;
        for record in records.iter() {
            let more = record.changeset.len() as u64 + 12;
            if count > 0 && size + more > max_bytes {
                break;
            }
            size += more;
            count += 1;
        }
        self.bytes.fetch_sub(size, Ordering::SeqCst);
        records.drain(..count).collect()
    }

    /// Take every queued record, oldest first.
    pub fn take_all(&self) -> Vec<JournalRecord> {
        let mut records = self.records.lock();
        self.bytes.store(0, Ordering::SeqCst);
        records.drain(..).collect()
    }

    /// Put records that could not be written back at the front, so the
    /// next write carries them first (no LSN is ever skipped).
    pub fn give_back(&self, taken: Vec<JournalRecord>) {
        let size: u64 = taken.iter().map(|r| r.changeset.len() as u64 + 12).sum();
        let mut records = self.records.lock();
        for record in taken.into_iter().rev() {
            records.push_front(record);
        }
        self.bytes.fetch_add(size, Ordering::SeqCst);
    }

    /// LSN of the oldest record waiting, if any.
    pub fn oldest_lsn(&self) -> Option<u64> {
        self.records.lock().front().map(|r| r.lsn)
    }

    /// LSN of the newest committed record.
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn.load(Ordering::SeqCst)
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}
