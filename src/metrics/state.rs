//! What the metrics registry remembers between reads, all behind the one
//! mutex that `Metrics` takes per record: per-operation aggregates (counts,
//! bytes, latency histogram), recovery aggregates (MTTR split into
//! detect→start and start→done), and bounded rings of the most recent
//! operations and recoveries kept verbatim for export.
//!
//! This module only updates numbers; it does no I/O and no formatting (the
//! CSV row, JSON and Prometheus text are built elsewhere from these types).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use super::histogram::Histogram;

/// How many finished operations are kept verbatim for `Metrics::export_json`.
pub const RECENT_OPERATIONS_CAPACITY: usize = 4096;

/// How many recovery records are kept verbatim for `Metrics::export_json`.
pub const RECENT_RECOVERIES_CAPACITY: usize = 1024;

/// One finished operation as reported by a caller, borrowed for the time it
/// takes to count it and format its CSV row.
pub(super) struct OpEvent<'a> {
    pub(super) at: SystemTime,
    pub(super) op: &'a str,
    pub(super) key: &'a str,
    pub(super) size_bytes: u64,
    pub(super) duration: Duration,
    pub(super) success: bool,
    pub(super) error: Option<&'a str>,
}

impl OpEvent<'_> {
    pub(super) fn throughput_mbps(&self) -> f64 {
        throughput_mbps(self.size_bytes, self.duration)
    }
}

/// Aggregates for one operation name.
#[derive(Clone, Debug)]
pub(super) struct OpStats {
    pub(super) success: u64,
    pub(super) failure: u64,
    pub(super) bytes: u64,
    /// Sum of per-operation throughputs (MB/s), for their mean.
    pub(super) throughput_sum: f64,
    pub(super) latency: Histogram,
}

impl OpStats {
    const fn new() -> Self {
        OpStats {
            success: 0,
            failure: 0,
            bytes: 0,
            throughput_sum: 0.0,
            latency: Histogram::new(),
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.success + self.failure
    }
}

/// One finished operation kept for export. Slots are reused once the ring is
/// full, so their strings keep their capacity and recording does not allocate.
#[derive(Clone, Debug)]
pub(super) struct OpRecord {
    pub(super) at: SystemTime,
    pub(super) op: String,
    pub(super) key: String,
    pub(super) size_bytes: u64,
    pub(super) duration: Duration,
    pub(super) success: bool,
    pub(super) error: Option<String>,
}

impl OpRecord {
    fn empty(at: SystemTime) -> Self {
        OpRecord {
            at,
            op: String::new(),
            key: String::new(),
            size_bytes: 0,
            duration: Duration::ZERO,
            success: true,
            error: None,
        }
    }

    fn fill_from(&mut self, event: &OpEvent<'_>) {
        self.at = event.at;
        self.op.clear();
        self.op.push_str(event.op);
        self.key.clear();
        self.key.push_str(event.key);
        self.size_bytes = event.size_bytes;
        self.duration = event.duration;
        self.success = event.success;
        self.error = event.error.map(str::to_owned);
    }
}

/// One finished node recovery.
#[derive(Clone, Debug)]
pub(super) struct RecoveryRecord {
    pub(super) at: SystemTime,
    pub(super) node_id: String,
    pub(super) detect_to_start: Duration,
    pub(super) start_to_done: Duration,
    pub(super) bytes_rebuilt: u64,
    pub(super) shards_rebuilt: u64,
    pub(super) success: bool,
    pub(super) error: Option<String>,
}

impl RecoveryRecord {
    /// Mean time to repair of this recovery: detect→start plus start→done.
    pub(super) fn mttr(&self) -> Duration {
        self.detect_to_start.saturating_add(self.start_to_done)
    }
}

/// Aggregates over all recoveries since start or the last `clear()`.
/// MTTR figures cover every recovery, failed ones included.
#[derive(Clone, Debug)]
pub(super) struct RecoveryStats {
    pub(super) success: u64,
    pub(super) failure: u64,
    pub(super) mttr_sum_ns: u128,
    pub(super) mttr_min_ns: u64,
    pub(super) mttr_max_ns: u64,
    pub(super) last_mttr_ns: u64,
    pub(super) detect_sum_ns: u128,
    pub(super) repair_sum_ns: u128,
    pub(super) bytes_rebuilt: u64,
    pub(super) shards_rebuilt: u64,
}

impl RecoveryStats {
    const fn new() -> Self {
        RecoveryStats {
            success: 0,
            failure: 0,
            mttr_sum_ns: 0,
            mttr_min_ns: u64::MAX,
            mttr_max_ns: 0,
            last_mttr_ns: 0,
            detect_sum_ns: 0,
            repair_sum_ns: 0,
            bytes_rebuilt: 0,
            shards_rebuilt: 0,
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.success + self.failure
    }
}

/// Everything guarded by the one mutex taken per record.
pub(super) struct State {
    /// Per operation name, in name order (the order of every output).
    pub(super) ops: BTreeMap<String, OpStats>,
    pub(super) recent_ops: VecDeque<OpRecord>,
    pub(super) recovery: RecoveryStats,
    pub(super) recent_recoveries: VecDeque<RecoveryRecord>,
}

impl State {
    pub(super) fn new() -> Self {
        State {
            ops: BTreeMap::new(),
            recent_ops: VecDeque::new(),
            recovery: RecoveryStats::new(),
            recent_recoveries: VecDeque::new(),
        }
    }

    /// Counts one finished operation and keeps it in the recent ring
    /// (dropping the oldest once the ring is full).
    pub(super) fn record_op(&mut self, event: &OpEvent<'_>) {
        if !self.ops.contains_key(event.op) {
            // First time this op name is seen: the only allocation here.
            self.ops.insert(event.op.to_owned(), OpStats::new());
        }
        let stats = self.ops.get_mut(event.op).expect("inserted above");
        if event.success {
            stats.success += 1;
        } else {
            stats.failure += 1;
        }
        stats.bytes = stats.bytes.saturating_add(event.size_bytes);
        stats.throughput_sum += event.throughput_mbps();
        stats.latency.observe(duration_ns(event.duration));

        let mut slot = if self.recent_ops.len() >= RECENT_OPERATIONS_CAPACITY {
            self.recent_ops.pop_front().expect("ring is full")
        } else {
            OpRecord::empty(event.at)
        };
        slot.fill_from(event);
        self.recent_ops.push_back(slot);
    }

    /// Counts one finished node recovery and keeps it in the recent ring.
    pub(super) fn record_recovery(&mut self, rec: RecoveryRecord) {
        let mttr_ns = duration_ns(rec.mttr());
        let r = &mut self.recovery;
        if rec.success {
            r.success += 1;
        } else {
            r.failure += 1;
        }
        r.mttr_sum_ns += u128::from(mttr_ns);
        r.mttr_min_ns = r.mttr_min_ns.min(mttr_ns);
        r.mttr_max_ns = r.mttr_max_ns.max(mttr_ns);
        r.last_mttr_ns = mttr_ns;
        r.detect_sum_ns += u128::from(duration_ns(rec.detect_to_start));
        r.repair_sum_ns += u128::from(duration_ns(rec.start_to_done));
        r.bytes_rebuilt = r.bytes_rebuilt.saturating_add(rec.bytes_rebuilt);
        r.shards_rebuilt = r.shards_rebuilt.saturating_add(rec.shards_rebuilt);
        if self.recent_recoveries.len() >= RECENT_RECOVERIES_CAPACITY {
            self.recent_recoveries.pop_front();
        }
        self.recent_recoveries.push_back(rec);
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (~584 years).
pub(super) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Bytes in the "MB" of every `_mb` and `_mbps` figure: the prototype's
/// (2^20, a mebibyte), so its users' dashboards keep their scale.
pub(super) const BYTES_PER_MB: f64 = 1_048_576.0;

/// MB/s (`BYTES_PER_MB`); 0.0 for a zero duration.
pub(super) fn throughput_mbps(bytes: u64, d: Duration) -> f64 {
    let secs = d.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / BYTES_PER_MB / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_ring_is_bounded_and_mttr_adds_both_phases() {
        let mut state = State::new();
        for i in 0..(RECENT_RECOVERIES_CAPACITY + 3) {
            state.record_recovery(RecoveryRecord {
                at: SystemTime::now(),
                node_id: format!("node-{i}"),
                detect_to_start: Duration::from_millis(1),
                start_to_done: Duration::from_millis(2),
                bytes_rebuilt: 1,
                shards_rebuilt: 1,
                success: i % 2 == 0,
                error: None,
            });
        }
        assert_eq!(state.recent_recoveries.len(), RECENT_RECOVERIES_CAPACITY);
        assert_eq!(state.recent_recoveries[0].node_id, "node-3");
        assert_eq!(state.recovery.last_mttr_ns, 3_000_000);
        assert_eq!(
            state.recovery.count(),
            (RECENT_RECOVERIES_CAPACITY + 3) as u64
        );
    }

    #[test]
    fn units() {
        assert_eq!(duration_ns(Duration::MAX), u64::MAX);
        assert_eq!(throughput_mbps(5, Duration::ZERO), 0.0);
        assert_eq!(throughput_mbps(2 << 20, Duration::from_secs(2)), 1.0);
    }
}
