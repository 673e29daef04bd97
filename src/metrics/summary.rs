//! The JSON views of the metrics registry: the prototype-shaped summary
//! served by `GET /metrics/summary` and `ctl metrics`, the per-record JSON of
//! the recent operations and recoveries, and the export document that
//! `POST /metrics/export` writes to a file.
//!
//! Durations are milliseconds rounded to microseconds, success rates
//! percentages in `0.0..=100.0` (as the prototype's) rounded to four places,
//! throughput MB/s (1 MB = 2^20 bytes, as the
//! prototype's) rounded to three; every figure is finite (0.0
//! where nothing was recorded, as the prototype's `recovery_success_rate`
//! with no recovery). This module
//! formats snapshots it is given; the only I/O is [`write_export`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::state::{duration_ns, throughput_mbps, OpRecord, RecoveryRecord, State, BYTES_PER_MB};
use super::time::format_iso8601_utc;
use super::CounterValues;

/// The summary document; see `Metrics::summary_json` for its fields.
pub(super) fn summary_json(state: &State, counters: &CounterValues) -> Value {
    let mut ops = Map::new();
    let (mut total, mut total_ok, mut total_bytes, mut total_ns) = (0u64, 0u64, 0u64, 0u128);
    for (name, s) in &state.ops {
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
                "success_rate": percent(s.success, count),
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
    let r = &state.recovery;
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
        total_bytes as f64 / BYTES_PER_MB / overall_secs
    } else {
        0.0
    };
    json!({
        "total_operations": total,
        "total_recoveries": rcount,
        "overall_success_rate": percent(total_ok, total),
        "recovery_success_rate": percent(r.success, rcount),
        "overall_throughput_mbps": round3(overall_tp),
        "total_data_processed_mb": round6(total_bytes as f64 / BYTES_PER_MB),
        "operation_summary": Value::Object(ops),
        "recovery_summary": {
            "count": rcount,
            "success_count": r.success,
            "failure_count": r.failure,
            "success_rate": percent(r.success, rcount),
            "avg_mttr_ms": ms(avg(r.mttr_sum_ns)),
            "min_mttr_ms": ms(if rcount == 0 { 0.0 } else { r.mttr_min_ns as f64 }),
            "max_mttr_ms": ms(r.mttr_max_ns as f64),
            "last_mttr_ms": ms(r.last_mttr_ns as f64),
            "avg_detect_to_start_ms": ms(avg(r.detect_sum_ns)),
            "avg_start_to_done_ms": ms(avg(r.repair_sum_ns)),
            "total_bytes_rebuilt": r.bytes_rebuilt,
            "total_shards_rebuilt": r.shards_rebuilt,
        },
        "degraded_reads": counters.degraded_reads,
        "repaired_shards": counters.repaired_shards,
        "corrupt_shards_found": counters.corrupt_shards_found,
        "csv_rows_dropped": counters.csv_rows_dropped,
    })
}

/// The kept operations and recoveries as JSON arrays, oldest first.
pub(super) fn recent_records_json(state: &State) -> (Vec<Value>, Vec<Value>) {
    let ops = state.recent_ops.iter().map(op_record_json).collect();
    let recoveries = state
        .recent_recoveries
        .iter()
        .map(recovery_record_json)
        .collect();
    (ops, recoveries)
}

/// Writes `{"exported_at", "summary", "recent_operations", "recoveries"}` as
/// pretty JSON to `path`, via a temporary file of its own
/// (`<path>.<pid>.<n>.tmp`, removed on failure; two exports to one name at
/// once each write whole) that is synced and renamed; the parent folder is
/// created if missing.
pub(super) fn write_export(
    path: &Path,
    summary: Value,
    recent_operations: Vec<Value>,
    recoveries: Vec<Value>,
) -> io::Result<()> {
    let doc = json!({
        "exported_at": format_iso8601_utc(SystemTime::now()),
        "summary": summary,
        "recent_operations": recent_operations,
        "recoveries": recoveries,
    });
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    static EXPORTS: AtomicU64 = AtomicU64::new(0);
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        EXPORTS.fetch_add(1, Ordering::Relaxed)
    ));
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

/// `part` as a percentage of `whole`, rounded to four places; 0.0 when
/// `whole` is 0 (nothing to rate).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        finite((part as f64 * 100.0 / whole as f64 * 1e4).round() / 1e4)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use crate::metrics::{ms_dur, Metrics};

    #[test]
    fn counts_bytes_and_success_rate() {
        let m = Metrics::new(None);
        for i in 0..10u64 {
            m.record("upload", "a/b", 1 << 20, ms_dur(10), i != 3, None);
        }
        m.record("download", "a/b", 512, ms_dur(1), false, Some("boom"));
        let s = m.summary_json();
        assert_eq!(s["total_operations"], 11);
        let up = &s["operation_summary"]["upload"];
        assert_eq!(up["count"], 10);
        assert_eq!(up["success_count"], 9);
        assert_eq!(up["failure_count"], 1);
        assert_eq!(up["success_rate"].as_f64().unwrap(), 90.0);
        assert_eq!(up["total_size_bytes"], 10u64 << 20);
        assert_eq!(up["avg_duration_ms"].as_f64().unwrap(), 10.0);
        assert_eq!(up["min_duration_ms"].as_f64().unwrap(), 10.0);
        assert_eq!(up["max_duration_ms"].as_f64().unwrap(), 10.0);
        // 1 MB (2^20 bytes, the prototype's MB) in 10 ms = 100 MB/s.
        assert!((up["avg_throughput_mbps"].as_f64().unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(s["operation_summary"]["download"]["success_rate"], 0.0);
        let overall = s["overall_success_rate"].as_f64().unwrap();
        assert_eq!(overall, 81.8182, "9 of 11 as a percentage");
        let mb = 10.0 + 512.0 / 1_048_576.0;
        assert!((s["total_data_processed_mb"].as_f64().unwrap() - mb).abs() < 1e-6);
        // 10.000488 MB over 101 ms.
        let tp = s["overall_throughput_mbps"].as_f64().unwrap();
        assert!((tp - mb / 0.101).abs() < 0.01, "{tp}");
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
        assert_eq!(s["recovery_success_rate"].as_f64(), Some(50.0));
        let r = &s["recovery_summary"];
        assert_eq!(r["count"], 2);
        assert_eq!(r["success_rate"].as_f64(), Some(50.0));
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
    fn export_json_writes_summary_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics::new(None);
        m.record("upload", "a/b", 10, ms_dur(3), true, None);
        m.record("download", "a/b", 10, ms_dur(4), false, Some("nope"));
        m.record_recovery("node-9", ms_dur(1), ms_dur(2), 3, 4, true, None);
        let path = dir.path().join("out").join("export.json");
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
        let names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["export.json"], "no temporary file is left");
    }
}
