//! Operation and recovery metrics for the whole daemon.
//!
//! This module owns every number minigcs reports about itself: per-operation
//! counters and fixed-bucket latency histograms (keyed by a free-form op name
//! such as `upload` or `fuse_read`), node-recovery records with MTTR split into
//! detect→start and start→done, the degraded-read / repaired-shard /
//! corrupt-shard counters, the append-only CSV log (written by one background
//! thread so callers never wait on disk), the Prometheus text exposition for
//! `GET /metrics`, and the prototype-shaped JSON summary for
//! `GET /metrics/summary`, `POST /metrics/export` and `ctl metrics`.
//! It knows nothing about files, shards or HTTP: front ends and the file
//! service call [`Metrics::record`] and friends, and serve what comes back.
//!
//! [`Metrics`] here is the facade; the parts behind it are `state` (the
//! aggregates and recent records under one mutex), `histogram` (latency
//! buckets and quantiles), `csv` (the CSV log and its writer thread),
//! `prometheus` and `summary` (the text and JSON views) and `time` (ISO-8601
//! timestamps).
//!
//! Units and conventions used everywhere below:
//! - success rates are percentages in `0.0..=100.0` (as the prototype's),
//!   and `0.0` when nothing has been recorded;
//! - a megabyte is the prototype's, 2^20 bytes (`1 MB = 1_048_576 bytes`),
//!   throughput is `size_bytes / 2^20 / seconds` and `0.0` for a zero
//!   duration;
//! - durations in JSON and CSV are milliseconds (floats, µs resolution), in
//!   Prometheus seconds;
//! - percentiles are estimated from the histogram: the upper bound of the
//!   bucket that holds the rank, clamped to the observed min/max.

mod csv;
mod histogram;
mod prometheus;
mod state;
mod summary;
mod time;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde_json::Value;

use self::csv::CsvLog;
use self::state::{OpEvent, RecoveryRecord, State};

pub use self::csv::CSV_HEADER;
pub use self::prometheus::node_io_text;
pub use self::state::{RECENT_OPERATIONS_CAPACITY, RECENT_RECOVERIES_CAPACITY};
pub use self::time::{format_iso8601_utc, iso8601_from_nanos};

/// Process-wide metrics registry, shared as `Arc<Metrics>`.
pub struct Metrics {
    state: Mutex<State>,
    degraded_reads: AtomicU64,
    repaired_shards: AtomicU64,
    corrupt_shards_found: AtomicU64,
    /// Shared with the CSV log, which counts the rows it loses.
    csv_rows_dropped: Arc<AtomicU64>,
    csv: Option<CsvLog>,
}

/// The plain counters, read once for one summary or exposition.
struct CounterValues {
    degraded_reads: u64,
    repaired_shards: u64,
    corrupt_shards_found: u64,
    csv_rows_dropped: u64,
}

impl Metrics {
    /// Creates the registry. With `csv_path` set (config `metrics.enabled`),
    /// opens that file for appending (creating it and its parent folder if
    /// needed), writes the CSV header if the file is empty, and starts the
    /// writer thread. If the file cannot be opened, a warning is logged and
    /// metrics run without the CSV log.
    pub fn new(csv_path: Option<PathBuf>) -> Arc<Metrics> {
        let csv_rows_dropped = Arc::new(AtomicU64::new(0));
        let csv = csv_path.and_then(|path| CsvLog::start(path, Arc::clone(&csv_rows_dropped)));
        Arc::new(Metrics {
            state: Mutex::new(State::new()),
            degraded_reads: AtomicU64::new(0),
            repaired_shards: AtomicU64::new(0),
            corrupt_shards_found: AtomicU64::new(0),
            csv_rows_dropped,
            csv,
        })
    }

    /// Records one finished operation. `op` is free-form (`upload`,
    /// `download`, `fuse_read`, …); each distinct name gets its own counters
    /// and histogram. `size_bytes` is the payload moved (0 for metadata ops).
    pub fn record(
        &self,
        op: &str,
        key: &str,
        size_bytes: u64,
        duration: Duration,
        success: bool,
        error: Option<&str>,
    ) {
        let event = OpEvent {
            at: SystemTime::now(),
            op,
            key,
            size_bytes,
            duration,
            success,
            error,
        };
        if let Some(csv) = &self.csv {
            csv.send(csv::operation_row(&event));
        }
        self.state.lock().record_op(&event);
    }

    /// Records one finished node recovery. MTTR is
    /// `detect_to_start + start_to_done`.
    #[allow(clippy::too_many_arguments)]
    pub fn record_recovery(
        &self,
        node_id: &str,
        detect_to_start: Duration,
        start_to_done: Duration,
        bytes_rebuilt: u64,
        shards_rebuilt: u64,
        success: bool,
        error: Option<&str>,
    ) {
        let rec = RecoveryRecord {
            at: SystemTime::now(),
            node_id: node_id.to_owned(),
            detect_to_start,
            start_to_done,
            bytes_rebuilt,
            shards_rebuilt,
            success,
            error: error.map(str::to_owned),
        };
        if let Some(csv) = &self.csv {
            csv.send(csv::recovery_row(&rec));
        }
        self.state.lock().record_recovery(rec);
    }

    /// Counts one read that had to reconstruct data from parity.
    pub fn add_degraded_read(&self) {
        self.degraded_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` shards rewritten by repair (recovery, scrub, write-repair).
    pub fn add_repaired_shards(&self, n: u64) {
        self.repaired_shards.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` shards found corrupt (bad checksum, bad header, short).
    pub fn add_corrupt_shards_found(&self, n: u64) {
        self.corrupt_shards_found.fetch_add(n, Ordering::Relaxed);
    }

    /// Degraded reads since start or the last `clear()`.
    pub fn degraded_reads(&self) -> u64 {
        self.degraded_reads.load(Ordering::Relaxed)
    }

    /// The prototype-shaped summary served by `GET /metrics/summary`.
    ///
    /// Prototype fields: `total_operations`, `total_recoveries`,
    /// `overall_success_rate`, `recovery_success_rate`,
    /// `overall_throughput_mbps` (all bytes / sum of all op durations),
    /// `total_data_processed_mb`, `operation_summary`
    /// (`{op: {count, success_rate, avg_duration_ms, min_duration_ms,
    /// max_duration_ms, avg_throughput_mbps, total_size_bytes}}`, where
    /// `avg_throughput_mbps` is the mean of per-operation throughputs) and
    /// `recovery_summary` (`{count, success_rate, avg_mttr_ms, min_mttr_ms,
    /// max_mttr_ms, avg_detect_to_start_ms, avg_start_to_done_ms,
    /// total_bytes_rebuilt}`).
    /// Extras: per op `success_count`, `failure_count`, `p50_ms`, `p95_ms`,
    /// `p99_ms`; in `recovery_summary` `success_count`, `failure_count`,
    /// `last_mttr_ms`, `total_shards_rebuilt`; top level `degraded_reads`,
    /// `repaired_shards`, `corrupt_shards_found`, `csv_rows_dropped`.
    /// Success rates are percentages in 0..=100 (as the prototype's) and
    /// 0.0 when nothing was recorded.
    pub fn summary_json(&self) -> Value {
        let state = self.state.lock();
        summary::summary_json(&state, &self.counter_values())
    }

    /// Prometheus text exposition format 0.0.4 (serve with
    /// `Content-Type: text/plain; version=0.0.4`). All names start with
    /// `minigcs_`; ops appear in name order.
    pub fn prometheus_text(&self) -> String {
        let state = self.state.lock();
        prometheus::render(&state, &self.counter_values())
    }

    /// Writes `{"exported_at", "summary", "recent_operations", "recoveries"}`
    /// as pretty JSON to `path` (via a temporary file and rename; the parent
    /// folder is created if missing). `recent_operations` holds the last
    /// [`RECENT_OPERATIONS_CAPACITY`] operations, oldest first.
    pub fn export_json(&self, path: &Path) -> io::Result<()> {
        let summary = self.summary_json();
        let (ops, recoveries) = summary::recent_records_json(&self.state.lock());
        summary::write_export(path, summary, ops, recoveries)
    }

    /// Resets every counter, histogram and kept record. The CSV file is left
    /// alone (rows already queued are still written).
    pub fn clear(&self) {
        let mut state = self.state.lock();
        *state = State::new();
        self.degraded_reads.store(0, Ordering::Relaxed);
        self.repaired_shards.store(0, Ordering::Relaxed);
        self.corrupt_shards_found.store(0, Ordering::Relaxed);
        self.csv_rows_dropped.store(0, Ordering::Relaxed);
    }

    /// Blocks until every CSV row queued before this call is written and
    /// flushed to the OS. Returns at once when the CSV log is disabled.
    pub fn flush(&self) {
        if let Some(csv) = &self.csv {
            csv.flush();
        }
    }

    fn counter_values(&self) -> CounterValues {
        CounterValues {
            degraded_reads: self.degraded_reads.load(Ordering::Relaxed),
            repaired_shards: self.repaired_shards.load(Ordering::Relaxed),
            corrupt_shards_found: self.corrupt_shards_found.load(Ordering::Relaxed),
            csv_rows_dropped: self.csv_rows_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        // Write what is queued; the writer thread exits once the log is dropped.
        self.flush();
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("csv_enabled", &self.csv.is_some())
            .finish_non_exhaustive()
    }
}

/// `ms` milliseconds: shorthand for the tests of every part of the module.
#[cfg(test)]
fn ms_dur(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters() {
        let m = Metrics::new(None);
        m.add_degraded_read();
        m.add_degraded_read();
        m.add_repaired_shards(5);
        m.add_corrupt_shards_found(3);
        assert_eq!(m.degraded_reads(), 2);
        let s = m.summary_json();
        assert_eq!(s["degraded_reads"], 2);
        assert_eq!(s["repaired_shards"], 5);
        assert_eq!(s["corrupt_shards_found"], 3);
    }

    #[test]
    fn clear_resets_everything() {
        let m = Metrics::new(None);
        m.record("upload", "k", 10, ms_dur(1), true, None);
        m.record_recovery("n", ms_dur(1), ms_dur(1), 1, 1, true, None);
        m.add_degraded_read();
        m.add_repaired_shards(1);
        m.add_corrupt_shards_found(1);
        m.clear();
        let s = m.summary_json();
        assert_eq!(s, Metrics::new(None).summary_json());
        assert_eq!(m.degraded_reads(), 0);
        let text = m.prometheus_text();
        assert!(!text.contains("op=\"upload\""));
        // Still usable after clear.
        m.record("upload", "k", 10, ms_dur(1), true, None);
        assert_eq!(m.summary_json()["total_operations"], 1);
    }

    #[test]
    fn recent_ring_is_bounded() {
        let m = Metrics::new(None);
        for i in 0..(RECENT_OPERATIONS_CAPACITY + 10) {
            m.record("info", &format!("k{i}"), 0, ms_dur(1), true, None);
        }
        let inner = m.state.lock();
        assert_eq!(inner.recent_ops.len(), RECENT_OPERATIONS_CAPACITY);
        assert_eq!(inner.recent_ops.front().unwrap().key, "k10");
        assert_eq!(
            inner.ops["info"].count(),
            (RECENT_OPERATIONS_CAPACITY + 10) as u64
        );
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let m = Metrics::new(None);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.record(
                            "fuse_read",
                            "f",
                            4096,
                            Duration::from_micros(80),
                            true,
                            None,
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = m.summary_json();
        assert_eq!(s["operation_summary"]["fuse_read"]["count"], 4000);
        assert_eq!(
            s["operation_summary"]["fuse_read"]["total_size_bytes"],
            4000 * 4096
        );
    }
}
