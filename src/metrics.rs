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
//! Units and conventions used everywhere below:
//! - success rates are fractions in `0.0..=1.0`, and `0.0` when nothing has
//!   been recorded;
//! - megabytes are decimal (`1 MB = 1_000_000 bytes`), throughput is
//!   `size_bytes / 1e6 / seconds` and `0.0` for a zero duration;
//! - durations in JSON and CSV are milliseconds (floats, µs resolution), in
//!   Prometheus seconds;
//! - percentiles are estimated from the histogram: the upper bound of the
//!   bucket that holds the rank, clamped to the observed min/max.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

/// Header line of the CSV log (without the trailing newline).
pub const CSV_HEADER: &str = "timestamp,operation_type,object_key,size_bytes,duration_ms,\
throughput_mbps,success,error_message,node_id,metrics_type";

/// How many CSV rows may wait for the writer thread before new rows are dropped.
const CSV_QUEUE_CAPACITY: usize = 8192;

/// How long the CSV writer keeps rows buffered before flushing them anyway.
const CSV_IDLE_FLUSH: Duration = Duration::from_millis(500);

/// How many finished operations are kept verbatim for [`Metrics::export_json`].
pub const RECENT_OPERATIONS_CAPACITY: usize = 4096;

/// How many recovery records are kept verbatim for [`Metrics::export_json`].
pub const RECENT_RECOVERIES_CAPACITY: usize = 1024;

/// Histogram bucket upper bounds in nanoseconds: 50 µs doubling up to ~105 s.
/// One more implicit bucket (`+Inf`) catches everything larger.
const BUCKET_BOUNDS_NS: [u64; 22] = {
    let mut b = [0u64; 22];
    let mut i = 0;
    while i < b.len() {
        b[i] = 50_000u64 << i;
        i += 1;
    }
    b
};
const NUM_BUCKETS: usize = BUCKET_BOUNDS_NS.len() + 1;

/// Fixed log-scale latency histogram with exact count/sum/min/max.
#[derive(Clone, Debug)]
struct Histogram {
    buckets: [u64; NUM_BUCKETS],
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
}

impl Histogram {
    const fn new() -> Self {
        Histogram {
            buckets: [0; NUM_BUCKETS],
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }

    fn observe(&mut self, ns: u64) {
        let idx = BUCKET_BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[idx] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    fn min_ns(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min_ns
        }
    }

    fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// Estimated `q` quantile (0..=1) in nanoseconds; 0 when empty.
    fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let upper = BUCKET_BOUNDS_NS.get(i).copied().unwrap_or(self.max_ns);
                return upper.min(self.max_ns).max(self.min_ns);
            }
        }
        self.max_ns
    }
}

/// Aggregates for one operation name.
#[derive(Clone, Debug)]
struct OpStats {
    success: u64,
    failure: u64,
    bytes: u64,
    throughput_sum: f64,
    latency: Histogram,
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

    fn count(&self) -> u64 {
        self.success + self.failure
    }
}

/// One finished operation kept for export. Slots are reused once the ring is
/// full, so their strings keep their capacity and recording does not allocate.
#[derive(Clone, Debug)]
struct OpRecord {
    at: SystemTime,
    op: String,
    key: String,
    size_bytes: u64,
    duration: Duration,
    success: bool,
    error: Option<String>,
}

/// One finished node recovery.
#[derive(Clone, Debug)]
struct RecoveryRecord {
    at: SystemTime,
    node_id: String,
    detect_to_start: Duration,
    start_to_done: Duration,
    bytes_rebuilt: u64,
    shards_rebuilt: u64,
    success: bool,
    error: Option<String>,
}

impl RecoveryRecord {
    fn mttr(&self) -> Duration {
        self.detect_to_start.saturating_add(self.start_to_done)
    }
}

/// Aggregates over all recoveries since start or the last `clear()`.
/// MTTR figures cover every recovery, failed ones included.
#[derive(Clone, Debug)]
struct RecoveryStats {
    success: u64,
    failure: u64,
    mttr_sum_ns: u128,
    mttr_min_ns: u64,
    mttr_max_ns: u64,
    last_mttr_ns: u64,
    detect_sum_ns: u128,
    repair_sum_ns: u128,
    bytes_rebuilt: u64,
    shards_rebuilt: u64,
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

    fn count(&self) -> u64 {
        self.success + self.failure
    }
}

/// Everything guarded by the one mutex taken per record.
struct Inner {
    ops: BTreeMap<String, OpStats>,
    recent_ops: VecDeque<OpRecord>,
    recovery: RecoveryStats,
    recent_recoveries: VecDeque<RecoveryRecord>,
}

impl Inner {
    fn new() -> Self {
        Inner {
            ops: BTreeMap::new(),
            recent_ops: VecDeque::new(),
            recovery: RecoveryStats::new(),
            recent_recoveries: VecDeque::new(),
        }
    }
}

enum CsvMsg {
    Row(String),
    Flush(Sender<()>),
}

/// The sending half of the CSV log; the writer thread owns the file.
struct CsvSink {
    tx: Sender<CsvMsg>,
    _thread: JoinHandle<()>,
}

/// Process-wide metrics registry, shared as `Arc<Metrics>`.
pub struct Metrics {
    inner: Mutex<Inner>,
    degraded_reads: AtomicU64,
    repaired_shards: AtomicU64,
    corrupt_shards_found: AtomicU64,
    csv_rows_dropped: Arc<AtomicU64>,
    csv: Option<CsvSink>,
}

impl Metrics {
    /// Creates the registry. With `csv_path` set (config `metrics.enabled`),
    /// opens that file for appending (creating it and its parent folder if
    /// needed), writes the CSV header if the file is empty, and starts the
    /// writer thread. If the file cannot be opened, a warning is logged and
    /// metrics run without the CSV log.
    pub fn new(csv_path: Option<PathBuf>) -> Arc<Metrics> {
        let csv_rows_dropped = Arc::new(AtomicU64::new(0));
        let csv = csv_path.and_then(|path| match open_csv(&path) {
            Ok(file) => {
                let (tx, rx) = crossbeam_channel::bounded(CSV_QUEUE_CAPACITY);
                let dropped = Arc::clone(&csv_rows_dropped);
                let thread_path = path.clone();
                match std::thread::Builder::new()
                    .name("metrics-csv".into())
                    .spawn(move || csv_writer_loop(file, &thread_path, rx, &dropped))
                {
                    Ok(handle) => Some(CsvSink {
                        tx,
                        _thread: handle,
                    }),
                    Err(e) => {
                        log::warn!("metrics CSV log disabled: cannot start writer thread: {e}");
                        None
                    }
                }
            }
            Err(e) => {
                log::warn!(
                    "metrics CSV log disabled: cannot open {}: {e}",
                    path.display()
                );
                None
            }
        });
        Arc::new(Metrics {
            inner: Mutex::new(Inner::new()),
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
        let at = SystemTime::now();
        let ns = duration_ns(duration);
        let throughput = throughput_mbps(size_bytes, duration);

        if let Some(csv) = &self.csv {
            let mut row = String::with_capacity(96 + op.len() + key.len());
            push_iso8601(&mut row, at);
            row.push(',');
            push_csv_field(&mut row, op);
            row.push(',');
            push_csv_field(&mut row, key);
            let _ = write!(
                row,
                ",{size_bytes},{:.3},{throughput:.3},{success},",
                ns as f64 / 1e6
            );
            push_csv_field(&mut row, error.unwrap_or(""));
            row.push_str(",,operation\n");
            self.send_csv(csv, row);
        }

        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if !inner.ops.contains_key(op) {
            // First time this op name is seen: the only allocation here.
            inner.ops.insert(op.to_owned(), OpStats::new());
        }
        let stats = inner.ops.get_mut(op).expect("inserted above");
        if success {
            stats.success += 1;
        } else {
            stats.failure += 1;
        }
        stats.bytes = stats.bytes.saturating_add(size_bytes);
        stats.throughput_sum += throughput;
        stats.latency.observe(ns);

        let mut slot = if inner.recent_ops.len() >= RECENT_OPERATIONS_CAPACITY {
            inner.recent_ops.pop_front().expect("ring is full")
        } else {
            OpRecord {
                at,
                op: String::new(),
                key: String::new(),
                size_bytes: 0,
                duration: Duration::ZERO,
                success: true,
                error: None,
            }
        };
        slot.at = at;
        slot.op.clear();
        slot.op.push_str(op);
        slot.key.clear();
        slot.key.push_str(key);
        slot.size_bytes = size_bytes;
        slot.duration = duration;
        slot.success = success;
        slot.error = error.map(str::to_owned);
        inner.recent_ops.push_back(slot);
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
        let mttr = rec.mttr();
        let mttr_ns = duration_ns(mttr);

        if let Some(csv) = &self.csv {
            let mut row = String::with_capacity(128 + node_id.len());
            push_iso8601(&mut row, rec.at);
            row.push_str(",recovery,,");
            let _ = write!(
                row,
                "{bytes_rebuilt},{:.3},{:.3},{success},",
                mttr_ns as f64 / 1e6,
                throughput_mbps(bytes_rebuilt, mttr)
            );
            push_csv_field(&mut row, error.unwrap_or(""));
            row.push(',');
            push_csv_field(&mut row, node_id);
            row.push_str(",recovery\n");
            self.send_csv(csv, row);
        }

        let mut inner = self.inner.lock();
        let r = &mut inner.recovery;
        if success {
            r.success += 1;
        } else {
            r.failure += 1;
        }
        r.mttr_sum_ns += u128::from(mttr_ns);
        r.mttr_min_ns = r.mttr_min_ns.min(mttr_ns);
        r.mttr_max_ns = r.mttr_max_ns.max(mttr_ns);
        r.last_mttr_ns = mttr_ns;
        r.detect_sum_ns += u128::from(duration_ns(detect_to_start));
        r.repair_sum_ns += u128::from(duration_ns(start_to_done));
        r.bytes_rebuilt = r.bytes_rebuilt.saturating_add(bytes_rebuilt);
        r.shards_rebuilt = r.shards_rebuilt.saturating_add(shards_rebuilt);
        if inner.recent_recoveries.len() >= RECENT_RECOVERIES_CAPACITY {
            inner.recent_recoveries.pop_front();
        }
        inner.recent_recoveries.push_back(rec);
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
    /// Rates are fractions in 0..=1 and 0.0 when nothing was recorded.
    pub fn summary_json(&self) -> Value {
        let inner = self.inner.lock();
        let mut ops = Map::new();
        let (mut total, mut total_ok, mut total_bytes, mut total_ns) = (0u64, 0u64, 0u64, 0u128);
        for (name, s) in &inner.ops {
            let count = s.count();
            total += count;
            total_ok += s.success;
            total_bytes = total_bytes.saturating_add(s.bytes);
            total_ns += s.latency.sum_ns;
            let h = &s.latency;
            let avg_tp = if count == 0 {
                0.0
            } else {
                s.throughput_sum / count as f64
            };
            ops.insert(
                name.clone(),
                json!({
                    "count": count,
                    "success_count": s.success,
                    "failure_count": s.failure,
                    "success_rate": ratio(s.success, count),
                    "avg_duration_ms": ms(h.mean_ns()),
                    "min_duration_ms": ms(h.min_ns() as f64),
                    "max_duration_ms": ms(h.max_ns as f64),
                    "p50_ms": ms(h.quantile_ns(0.50) as f64),
                    "p95_ms": ms(h.quantile_ns(0.95) as f64),
                    "p99_ms": ms(h.quantile_ns(0.99) as f64),
                    "avg_throughput_mbps": round3(avg_tp),
                    "total_size_bytes": s.bytes,
                }),
            );
        }
        let r = &inner.recovery;
        let rcount = r.count();
        let avg = |sum: u128| {
            if rcount == 0 {
                0.0
            } else {
                sum as f64 / rcount as f64
            }
        };
        let overall_secs = total_ns as f64 / 1e9;
        let overall_tp = if overall_secs > 0.0 {
            total_bytes as f64 / 1e6 / overall_secs
        } else {
            0.0
        };
        json!({
            "total_operations": total,
            "total_recoveries": rcount,
            "overall_success_rate": ratio(total_ok, total),
            "recovery_success_rate": ratio(r.success, rcount),
            "overall_throughput_mbps": round3(overall_tp),
            "total_data_processed_mb": round6(total_bytes as f64 / 1e6),
            "operation_summary": Value::Object(ops),
            "recovery_summary": {
                "count": rcount,
                "success_count": r.success,
                "failure_count": r.failure,
                "success_rate": ratio(r.success, rcount),
                "avg_mttr_ms": ms(avg(r.mttr_sum_ns)),
                "min_mttr_ms": ms(if rcount == 0 { 0.0 } else { r.mttr_min_ns as f64 }),
                "max_mttr_ms": ms(r.mttr_max_ns as f64),
                "last_mttr_ms": ms(r.last_mttr_ns as f64),
                "avg_detect_to_start_ms": ms(avg(r.detect_sum_ns)),
                "avg_start_to_done_ms": ms(avg(r.repair_sum_ns)),
                "total_bytes_rebuilt": r.bytes_rebuilt,
                "total_shards_rebuilt": r.shards_rebuilt,
            },
            "degraded_reads": self.degraded_reads.load(Ordering::Relaxed),
            "repaired_shards": self.repaired_shards.load(Ordering::Relaxed),
            "corrupt_shards_found": self.corrupt_shards_found.load(Ordering::Relaxed),
            "csv_rows_dropped": self.csv_rows_dropped.load(Ordering::Relaxed),
        })
    }

    /// Prometheus text exposition format 0.0.4 (serve with
    /// `Content-Type: text/plain; version=0.0.4`). All names start with
    /// `minigcs_`; ops appear in name order.
    pub fn prometheus_text(&self) -> String {
        let inner = self.inner.lock();
        let mut out = String::with_capacity(1024 + inner.ops.len() * 2048);

        family(
            &mut out,
            "minigcs_operations_total",
            "counter",
            "Finished operations by type and result.",
        );
        for (op, s) in &inner.ops {
            let op = escape_label(op);
            let _ = writeln!(
                out,
                "minigcs_operations_total{{op=\"{op}\",result=\"success\"}} {}",
                s.success
            );
            let _ = writeln!(
                out,
                "minigcs_operations_total{{op=\"{op}\",result=\"failure\"}} {}",
                s.failure
            );
        }

        family(
            &mut out,
            "minigcs_operation_duration_seconds",
            "histogram",
            "Duration of finished operations.",
        );
        for (op, s) in &inner.ops {
            let op = escape_label(op);
            let h = &s.latency;
            let mut cumulative = 0u64;
            for (i, &c) in h.buckets.iter().enumerate() {
                cumulative += c;
                let le = match BUCKET_BOUNDS_NS.get(i) {
                    Some(&b) => format!("{}", b as f64 / 1e9),
                    None => "+Inf".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "minigcs_operation_duration_seconds_bucket{{op=\"{op}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "minigcs_operation_duration_seconds_sum{{op=\"{op}\"}} {}",
                prom_f64(h.sum_ns as f64 / 1e9)
            );
            let _ = writeln!(
                out,
                "minigcs_operation_duration_seconds_count{{op=\"{op}\"}} {}",
                h.count
            );
        }

        family(
            &mut out,
            "minigcs_operation_bytes_total",
            "counter",
            "Payload bytes of finished operations.",
        );
        for (op, s) in &inner.ops {
            let _ = writeln!(
                out,
                "minigcs_operation_bytes_total{{op=\"{}\"}} {}",
                escape_label(op),
                s.bytes
            );
        }

        for (name, help, value) in [
            (
                "minigcs_degraded_reads_total",
                "Reads that reconstructed data from parity.",
                self.degraded_reads.load(Ordering::Relaxed),
            ),
            (
                "minigcs_repaired_shards_total",
                "Shards rewritten by recovery, scrub or repair.",
                self.repaired_shards.load(Ordering::Relaxed),
            ),
            (
                "minigcs_corrupt_shards_found_total",
                "Shards found corrupt or unreadable.",
                self.corrupt_shards_found.load(Ordering::Relaxed),
            ),
            (
                "minigcs_metrics_csv_rows_dropped_total",
                "Metrics CSV rows dropped because the writer fell behind or failed.",
                self.csv_rows_dropped.load(Ordering::Relaxed),
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }

        let r = &inner.recovery;
        family(
            &mut out,
            "minigcs_recoveries_total",
            "counter",
            "Finished node recoveries by result.",
        );
        let _ = writeln!(
            out,
            "minigcs_recoveries_total{{result=\"success\"}} {}",
            r.success
        );
        let _ = writeln!(
            out,
            "minigcs_recoveries_total{{result=\"failure\"}} {}",
            r.failure
        );
        family(
            &mut out,
            "minigcs_recovery_mttr_seconds",
            "summary",
            "Node recovery time, failure detection to repair done.",
        );
        let _ = writeln!(
            out,
            "minigcs_recovery_mttr_seconds_sum {}",
            prom_f64(r.mttr_sum_ns as f64 / 1e9)
        );
        let _ = writeln!(out, "minigcs_recovery_mttr_seconds_count {}", r.count());
        family(
            &mut out,
            "minigcs_recovery_last_mttr_seconds",
            "gauge",
            "MTTR of the most recent node recovery (0 if none).",
        );
        let _ = writeln!(
            out,
            "minigcs_recovery_last_mttr_seconds {}",
            prom_f64(r.last_mttr_ns as f64 / 1e9)
        );
        family(
            &mut out,
            "minigcs_bytes_rebuilt_total",
            "counter",
            "Bytes of shards rebuilt by node recovery.",
        );
        let _ = writeln!(out, "minigcs_bytes_rebuilt_total {}", r.bytes_rebuilt);
        family(
            &mut out,
            "minigcs_shards_rebuilt_total",
            "counter",
            "Shards rebuilt by node recovery.",
        );
        let _ = writeln!(out, "minigcs_shards_rebuilt_total {}", r.shards_rebuilt);
        out
    }

    /// Writes `{"exported_at", "summary", "recent_operations", "recoveries"}`
    /// as pretty JSON to `path` (via a temporary file and rename; the parent
    /// folder is created if missing). `recent_operations` holds the last
    /// [`RECENT_OPERATIONS_CAPACITY`] operations, oldest first.
    pub fn export_json(&self, path: &Path) -> io::Result<()> {
        let summary = self.summary_json();
        let (ops, recoveries) = {
            let inner = self.inner.lock();
            let ops: Vec<Value> = inner.recent_ops.iter().map(op_record_json).collect();
            let recs: Vec<Value> = inner
                .recent_recoveries
                .iter()
                .map(recovery_record_json)
                .collect();
            (ops, recs)
        };
        let doc = json!({
            "exported_at": format_iso8601_utc(SystemTime::now()),
            "summary": summary,
            "recent_operations": ops,
            "recoveries": recoveries,
        });
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let result = (|| {
            let mut w = BufWriter::new(File::create(&tmp)?);
            serde_json::to_writer_pretty(&mut w, &doc)?;
            w.write_all(b"\n")?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Resets every counter, histogram and kept record. The CSV file is left
    /// alone (rows already queued are still written).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        *inner = Inner::new();
        self.degraded_reads.store(0, Ordering::Relaxed);
        self.repaired_shards.store(0, Ordering::Relaxed);
        self.corrupt_shards_found.store(0, Ordering::Relaxed);
        self.csv_rows_dropped.store(0, Ordering::Relaxed);
    }

    /// Blocks until every CSV row queued before this call is written and
    /// flushed to the OS. Returns at once when the CSV log is disabled.
    pub fn flush(&self) {
        let Some(csv) = &self.csv else { return };
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if csv.tx.send(CsvMsg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    fn send_csv(&self, csv: &CsvSink, row: String) {
        match csv.tx.try_send(CsvMsg::Row(row)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.csv_rows_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        // Write what is queued; the writer thread exits once `tx` is dropped.
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

fn open_csv(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    if file.metadata()?.len() == 0 {
        file.write_all(CSV_HEADER.as_bytes())?;
        file.write_all(b"\n")?;
    }
    Ok(file)
}

fn csv_writer_loop(file: File, path: &Path, rx: Receiver<CsvMsg>, dropped: &AtomicU64) {
    let mut w = BufWriter::with_capacity(64 * 1024, file);
    let mut dirty = false;
    let mut failing = false;
    let report = |res: io::Result<()>, failing: &mut bool| match res {
        Ok(()) => *failing = false,
        Err(e) => {
            if !*failing {
                log::error!("metrics CSV log {}: write failed: {e}", path.display());
            }
            *failing = true;
        }
    };
    loop {
        match rx.recv_timeout(CSV_IDLE_FLUSH) {
            Ok(CsvMsg::Row(row)) => {
                let res = w.write_all(row.as_bytes());
                if res.is_err() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                report(res, &mut failing);
                dirty = true;
            }
            Ok(CsvMsg::Flush(ack)) => {
                report(w.flush(), &mut failing);
                dirty = false;
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                if dirty {
                    report(w.flush(), &mut failing);
                    dirty = false;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                report(w.flush(), &mut failing);
                return;
            }
        }
    }
}

fn op_record_json(r: &OpRecord) -> Value {
    json!({
        "timestamp": format_iso8601_utc(r.at),
        "operation_type": r.op,
        "object_key": r.key,
        "size_bytes": r.size_bytes,
        "duration_ms": ms(duration_ns(r.duration) as f64),
        "throughput_mbps": round3(throughput_mbps(r.size_bytes, r.duration)),
        "success": r.success,
        "error_message": r.error,
        "metrics_type": "operation",
    })
}

fn recovery_record_json(r: &RecoveryRecord) -> Value {
    json!({
        "timestamp": format_iso8601_utc(r.at),
        "node_id": r.node_id,
        "detect_to_start_ms": ms(duration_ns(r.detect_to_start) as f64),
        "start_to_done_ms": ms(duration_ns(r.start_to_done) as f64),
        "mttr_ms": ms(duration_ns(r.mttr()) as f64),
        "bytes_rebuilt": r.bytes_rebuilt,
        "shards_rebuilt": r.shards_rebuilt,
        "success": r.success,
        "error_message": r.error,
        "metrics_type": "recovery",
    })
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// MB/s with decimal megabytes; 0.0 for a zero duration.
fn throughput_mbps(bytes: u64, d: Duration) -> f64 {
    let secs = d.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round6(part as f64 / whole as f64)
    }
}

/// Nanoseconds to milliseconds, rounded to microseconds.
fn ms(ns: f64) -> f64 {
    round3(ns / 1e6)
}

fn round3(x: f64) -> f64 {
    finite((x * 1e3).round() / 1e3)
}

fn round6(x: f64) -> f64 {
    finite((x * 1e6).round() / 1e6)
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

fn prom_f64(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else if x.is_nan() {
        "NaN".to_owned()
    } else if x > 0.0 {
        "+Inf".to_owned()
    } else {
        "-Inf".to_owned()
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a Prometheus label value: backslash, double quote, newline.
fn escape_label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut s = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    std::borrow::Cow::Owned(s)
}

/// Appends `field` to a CSV row, quoted per RFC 4180 when it holds a comma,
/// a double quote, CR or LF.
fn push_csv_field(row: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        row.push('"');
        for c in field.chars() {
            if c == '"' {
                row.push('"');
            }
            row.push(c);
        }
        row.push('"');
    } else {
        row.push_str(field);
    }
}

/// Formats `t` as ISO-8601 UTC with microseconds, e.g.
/// `2024-05-01T12:34:56.789012Z`. Times before 1970 print as the epoch.
pub fn format_iso8601_utc(t: SystemTime) -> String {
    let mut s = String::with_capacity(27);
    push_iso8601(&mut s, t);
    s
}

fn push_iso8601(out: &mut String, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_micros()
    );
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), using
/// 400-year eras that start on March 1st so the leap day falls last.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month index from March, 0..11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_dur(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A fresh folder under the system temp dir, removed on drop (even on panic).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "minigcs-metrics-{tag}-{}-{nanos}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Splits a CSV document into records of fields (RFC 4180 quoting).
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if quoted {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        quoted = false;
                    }
                } else {
                    field.push(c);
                }
            } else {
                match c {
                    '"' => quoted = true,
                    ',' => row.push(std::mem::take(&mut field)),
                    '\n' => {
                        row.push(std::mem::take(&mut field));
                        rows.push(std::mem::take(&mut row));
                    }
                    c => field.push(c),
                }
            }
        }
        assert!(
            field.is_empty() && row.is_empty(),
            "CSV must end with a newline"
        );
        rows
    }

    #[test]
    fn counts_bytes_and_success_rate() {
        let m = Metrics::new(None);
        for i in 0..10u64 {
            m.record("upload", "a/b", 1_000_000, ms_dur(10), i != 3, None);
        }
        m.record("download", "a/b", 500, ms_dur(1), false, Some("boom"));
        let s = m.summary_json();
        assert_eq!(s["total_operations"], 11);
        let up = &s["operation_summary"]["upload"];
        assert_eq!(up["count"], 10);
        assert_eq!(up["success_count"], 9);
        assert_eq!(up["failure_count"], 1);
        assert_eq!(up["success_rate"].as_f64().unwrap(), 0.9);
        assert_eq!(up["total_size_bytes"], 10_000_000u64);
        assert_eq!(up["avg_duration_ms"].as_f64().unwrap(), 10.0);
        assert_eq!(up["min_duration_ms"].as_f64().unwrap(), 10.0);
        assert_eq!(up["max_duration_ms"].as_f64().unwrap(), 10.0);
        // 1 MB in 10 ms = 100 MB/s.
        assert!((up["avg_throughput_mbps"].as_f64().unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(s["operation_summary"]["download"]["success_rate"], 0.0);
        let overall = s["overall_success_rate"].as_f64().unwrap();
        assert!((overall - 9.0 / 11.0).abs() < 1e-5, "{overall}");
        assert!((s["total_data_processed_mb"].as_f64().unwrap() - 10.0005).abs() < 1e-9);
        // 10.0005 MB over 101 ms.
        let tp = s["overall_throughput_mbps"].as_f64().unwrap();
        assert!((tp - 10.0005 / 0.101).abs() < 0.01, "{tp}");
    }

    #[test]
    fn empty_summary_has_zero_rates_and_all_fields() {
        let m = Metrics::new(None);
        let s = m.summary_json();
        for k in [
            "total_operations",
            "total_recoveries",
            "overall_success_rate",
            "recovery_success_rate",
            "overall_throughput_mbps",
            "total_data_processed_mb",
            "degraded_reads",
            "repaired_shards",
            "corrupt_shards_found",
            "csv_rows_dropped",
        ] {
            assert_eq!(s[k].as_f64(), Some(0.0), "{k}");
        }
        assert!(s["operation_summary"].as_object().unwrap().is_empty());
        let r = &s["recovery_summary"];
        for k in [
            "count",
            "success_rate",
            "avg_mttr_ms",
            "min_mttr_ms",
            "max_mttr_ms",
            "avg_detect_to_start_ms",
            "avg_start_to_done_ms",
            "total_bytes_rebuilt",
        ] {
            assert_eq!(r[k].as_f64(), Some(0.0), "recovery_summary.{k}");
        }
    }

    #[test]
    fn zero_duration_gives_zero_throughput() {
        let m = Metrics::new(None);
        m.record("upload", "k", 123, Duration::ZERO, true, None);
        let s = m.summary_json();
        assert_eq!(s["overall_throughput_mbps"].as_f64(), Some(0.0));
        assert_eq!(
            s["operation_summary"]["upload"]["avg_throughput_mbps"].as_f64(),
            Some(0.0)
        );
    }

    #[test]
    fn percentiles_are_roughly_right() {
        let m = Metrics::new(None);
        // 1..=100 ms, one each.
        for i in 1..=100u64 {
            m.record("download", "k", 0, ms_dur(i), true, None);
        }
        let s = m.summary_json();
        let d = &s["operation_summary"]["download"];
        let p50 = d["p50_ms"].as_f64().unwrap();
        let p95 = d["p95_ms"].as_f64().unwrap();
        let p99 = d["p99_ms"].as_f64().unwrap();
        // Buckets double, so an estimate is at most 2x the true value and never below it.
        assert!((50.0..=100.0).contains(&p50), "p50 {p50}");
        assert!((95.0..=100.0).contains(&p95), "p95 {p95}");
        assert!((99.0..=100.0).contains(&p99), "p99 {p99}");
        assert!(p50 <= p95 && p95 <= p99);
        assert_eq!(d["min_duration_ms"].as_f64(), Some(1.0));
        assert_eq!(d["max_duration_ms"].as_f64(), Some(100.0));
        assert_eq!(d["avg_duration_ms"].as_f64(), Some(50.5));
    }

    #[test]
    fn percentiles_are_capped_by_min_and_max() {
        let mut h = Histogram::new();
        h.observe(70_000); // 70 µs: bucket (50, 100] µs
        assert_eq!(h.quantile_ns(0.5), 70_000);
        assert_eq!(h.quantile_ns(1.0), 70_000);
        h.observe(1_000); // tiny: first bucket, estimated by its 50 µs bound
        assert_eq!(h.quantile_ns(0.0), 50_000);
        assert_eq!(h.quantile_ns(1.0), 70_000);
        let mut tiny = Histogram::new();
        tiny.observe(1_000);
        assert_eq!(tiny.quantile_ns(0.5), 1_000, "capped at max");
        let mut big = Histogram::new();
        big.observe(500 * 1_000_000_000); // beyond the last bound: +Inf bucket
        assert_eq!(big.quantile_ns(0.99), 500 * 1_000_000_000);
        assert_eq!(big.buckets[NUM_BUCKETS - 1], 1);
    }

    #[test]
    fn bucket_boundaries_are_inclusive_upper_bounds() {
        let mut h = Histogram::new();
        h.observe(50_000);
        h.observe(50_001);
        h.observe(100_000);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 2);
        assert!(*BUCKET_BOUNDS_NS.last().unwrap() >= 60 * 1_000_000_000);
    }

    #[test]
    fn recovery_summary() {
        let m = Metrics::new(None);
        m.record_recovery("node-2", ms_dur(100), ms_dur(900), 4096, 2, true, None);
        m.record_recovery(
            "node-3",
            ms_dur(300),
            ms_dur(2700),
            100,
            1,
            false,
            Some("x"),
        );
        let s = m.summary_json();
        assert_eq!(s["total_recoveries"], 2);
        assert_eq!(s["recovery_success_rate"].as_f64(), Some(0.5));
        let r = &s["recovery_summary"];
        assert_eq!(r["count"], 2);
        assert_eq!(r["avg_mttr_ms"].as_f64(), Some(2000.0));
        assert_eq!(r["min_mttr_ms"].as_f64(), Some(1000.0));
        assert_eq!(r["max_mttr_ms"].as_f64(), Some(3000.0));
        assert_eq!(r["last_mttr_ms"].as_f64(), Some(3000.0));
        assert_eq!(r["avg_detect_to_start_ms"].as_f64(), Some(200.0));
        assert_eq!(r["avg_start_to_done_ms"].as_f64(), Some(1800.0));
        assert_eq!(r["total_bytes_rebuilt"], 4196);
        assert_eq!(r["total_shards_rebuilt"], 3);
        assert_eq!(s["total_operations"], 0, "recoveries are not operations");
    }

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

    /// Parses the exposition text: returns (name, labels, value) per sample and
    /// checks that every sample belongs to a family declared by # TYPE.
    /// One parsed sample: metric name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    fn parse_prometheus(text: &str) -> Vec<Sample> {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            assert!(!line.is_empty(), "no blank lines expected");
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let kw = parts.next().unwrap();
                let name = parts.next().unwrap();
                let tail = parts.next().unwrap();
                assert!(kw == "HELP" || kw == "TYPE", "{line}");
                if kw == "TYPE" {
                    assert!(
                        ["counter", "gauge", "histogram", "summary"].contains(&tail),
                        "{line}"
                    );
                    assert!(types.insert(name.to_owned(), tail.to_owned()).is_none());
                }
                continue;
            }
            let name_end = line.find(['{', ' ']).expect(line);
            let name = &line[..name_end];
            assert!(!name.is_empty());
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            assert!(name.starts_with("minigcs_"), "{line}");
            let mut labels = Vec::new();
            let mut rest = &line[name_end..];
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices();
                let end = loop {
                    // label name
                    let mut lname = String::new();
                    for (_, c) in chars.by_ref() {
                        if c == '=' {
                            break;
                        }
                        lname.push(c);
                    }
                    assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                    let mut val = String::new();
                    while let Some((_, c)) = chars.next() {
                        match c {
                            '\\' => match chars.next().unwrap().1 {
                                'n' => val.push('\n'),
                                c => val.push(c),
                            },
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.push((lname, val));
                    match chars.next() {
                        Some((_, ',')) => continue,
                        Some((i, '}')) => break i + 1,
                        other => panic!("bad label list in {line}: {other:?}"),
                    }
                };
                rest = &r[end..];
            }
            let value = rest.strip_prefix(' ').expect(line);
            assert!(!value.contains(' '), "{line}");
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suf| {
                    name.strip_suffix(suf)
                        .filter(|base| types.get(*base).is_some_and(|t| t != "counter"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "no # TYPE for {line}");
            samples.push((name.to_owned(), labels, v));
        }
        samples
    }

    fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .unwrap_or_else(|| panic!("missing {name} {labels:?}"))
            .2
    }

    #[test]
    fn prometheus_text_parses_and_has_values() {
        let m = Metrics::new(None);
        m.record("upload", "k", 1000, ms_dur(2), true, None);
        m.record("upload", "k", 1000, ms_dur(30), false, Some("e"));
        m.record("we\"ird\\op\nx", "k", 5, ms_dur(1), true, None);
        m.add_degraded_read();
        m.record_recovery("node-1", ms_dur(500), ms_dur(1500), 77, 3, true, None);
        let text = m.prometheus_text();
        let s = parse_prometheus(&text);
        let up = [("op", "upload")];
        assert_eq!(
            sample(
                &s,
                "minigcs_operations_total",
                &[("op", "upload"), ("result", "success")]
            ),
            1.0
        );
        assert_eq!(
            sample(
                &s,
                "minigcs_operations_total",
                &[("op", "upload"), ("result", "failure")]
            ),
            1.0
        );
        assert_eq!(
            sample(&s, "minigcs_operation_duration_seconds_count", &up),
            2.0
        );
        let sum = sample(&s, "minigcs_operation_duration_seconds_sum", &up);
        assert!((sum - 0.032).abs() < 1e-9, "{sum}");
        assert_eq!(
            sample(
                &s,
                "minigcs_operation_duration_seconds_bucket",
                &[("op", "upload"), ("le", "+Inf")]
            ),
            2.0
        );
        // Buckets are cumulative and non-decreasing.
        let buckets: Vec<f64> = s
            .iter()
            .filter(|(n, l, _)| {
                n == "minigcs_operation_duration_seconds_bucket"
                    && l.iter().any(|(k, v)| k == "op" && v == "upload")
            })
            .map(|x| x.2)
            .collect();
        assert_eq!(buckets.len(), NUM_BUCKETS);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(sample(&s, "minigcs_operation_bytes_total", &up), 2000.0);
        assert_eq!(
            sample(
                &s,
                "minigcs_operation_bytes_total",
                &[("op", "we\"ird\\op\nx")]
            ),
            5.0
        );
        assert_eq!(sample(&s, "minigcs_degraded_reads_total", &[]), 1.0);
        assert_eq!(
            sample(&s, "minigcs_recoveries_total", &[("result", "success")]),
            1.0
        );
        assert_eq!(sample(&s, "minigcs_recovery_mttr_seconds_sum", &[]), 2.0);
        assert_eq!(sample(&s, "minigcs_recovery_mttr_seconds_count", &[]), 1.0);
        assert_eq!(sample(&s, "minigcs_recovery_last_mttr_seconds", &[]), 2.0);
        assert_eq!(sample(&s, "minigcs_bytes_rebuilt_total", &[]), 77.0);
        assert_eq!(sample(&s, "minigcs_shards_rebuilt_total", &[]), 3.0);
    }

    #[test]
    fn prometheus_text_parses_when_empty() {
        let text = Metrics::new(None).prometheus_text();
        let s = parse_prometheus(&text);
        assert_eq!(
            sample(&s, "minigcs_recoveries_total", &[("result", "failure")]),
            0.0
        );
    }

    #[test]
    fn csv_header_and_rows_after_flush() {
        let dir = TempDir::new("csv");
        let path = dir.0.join("sub").join("metrics.csv");
        let m = Metrics::new(Some(path.clone()));
        for i in 0..25 {
            m.record("upload", &format!("k{i}"), 100, ms_dur(2), true, None);
        }
        m.record(
            "download",
            "a,b \"q\"",
            1,
            ms_dur(1),
            false,
            Some("line1\nline2, \"x\""),
        );
        m.record_recovery("node-2", ms_dur(10), ms_dur(20), 500, 1, true, None);
        m.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let rows = parse_csv(&text);
        assert_eq!(rows[0].join(","), CSV_HEADER);
        assert_eq!(rows.len(), 1 + 25 + 1 + 1);
        for r in &rows {
            assert_eq!(r.len(), 10, "{r:?}");
        }
        let first = &rows[1];
        assert_eq!(first[1], "upload");
        assert_eq!(first[2], "k0");
        assert_eq!(first[3], "100");
        assert_eq!(first[4], "2.000");
        assert_eq!(first[6], "true");
        assert_eq!(first[9], "operation");
        assert!(
            first[0].ends_with('Z') && first[0].contains('T'),
            "{}",
            first[0]
        );
        let quoted = &rows[26];
        assert_eq!(quoted[2], "a,b \"q\"");
        assert_eq!(quoted[6], "false");
        assert_eq!(quoted[7], "line1\nline2, \"x\"");
        let rec = &rows[27];
        assert_eq!(rec[1], "recovery");
        assert_eq!(rec[3], "500");
        assert_eq!(rec[4], "30.000");
        assert_eq!(rec[8], "node-2");
        assert_eq!(rec[9], "recovery");
        assert_eq!(m.summary_json()["csv_rows_dropped"], 0);

        // Reopening appends without a second header.
        drop(m);
        let m2 = Metrics::new(Some(path.clone()));
        m2.record("list", "", 0, ms_dur(1), true, None);
        m2.flush();
        let rows = parse_csv(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(rows.len(), 29);
        assert_eq!(rows.iter().filter(|r| r[0] == "timestamp").count(), 1);
    }

    #[test]
    fn csv_rows_written_on_drop() {
        let dir = TempDir::new("drop");
        let path = dir.0.join("m.csv");
        let m = Metrics::new(Some(path.clone()));
        m.record("delete", "x", 0, ms_dur(1), true, None);
        drop(m);
        let rows = parse_csv(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn unwritable_csv_path_disables_csv_but_metrics_work() {
        let dir = TempDir::new("bad");
        let blocker = dir.0.join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let m = Metrics::new(Some(blocker.join("metrics.csv")));
        m.record("upload", "k", 1, ms_dur(1), true, None);
        m.flush();
        assert_eq!(m.summary_json()["total_operations"], 1);
    }

    #[test]
    fn export_json_writes_summary_and_records() {
        let dir = TempDir::new("export");
        let m = Metrics::new(None);
        m.record("upload", "a/b", 10, ms_dur(3), true, None);
        m.record("download", "a/b", 10, ms_dur(4), false, Some("nope"));
        m.record_recovery("node-9", ms_dur(1), ms_dur(2), 3, 4, true, None);
        let path = dir.0.join("out").join("export.json");
        m.export_json(&path).unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["summary"], m.summary_json());
        let ops = v["recent_operations"].as_array().unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0]["operation_type"], "upload");
        assert_eq!(ops[1]["error_message"], "nope");
        assert_eq!(ops[1]["duration_ms"].as_f64(), Some(4.0));
        assert_eq!(v["recoveries"][0]["node_id"], "node-9");
        assert_eq!(v["recoveries"][0]["mttr_ms"].as_f64(), Some(3.0));
        assert!(!dir.0.join("out").join("export.json.tmp").exists());
    }

    #[test]
    fn recent_ring_is_bounded() {
        let m = Metrics::new(None);
        for i in 0..(RECENT_OPERATIONS_CAPACITY + 10) {
            m.record("info", &format!("k{i}"), 0, ms_dur(1), true, None);
        }
        let inner = m.inner.lock();
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

    #[test]
    fn iso8601_dates() {
        let at = |secs: u64| format_iso8601_utc(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000000Z");
        assert_eq!(at(951_868_799), "2000-02-29T23:59:59.000000Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59.000000Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00.000000Z");
        assert_eq!(
            format_iso8601_utc(UNIX_EPOCH + Duration::from_micros(1_500_123)),
            "1970-01-01T00:00:01.500123Z"
        );
    }

    #[test]
    fn csv_field_quoting() {
        let q = |s: &str| {
            let mut r = String::new();
            push_csv_field(&mut r, s);
            r
        };
        assert_eq!(q("plain"), "plain");
        assert_eq!(q("a,b"), "\"a,b\"");
        assert_eq!(q("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(q("a\r\nb"), "\"a\r\nb\"");
    }
}
