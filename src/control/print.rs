//! Human-readable text for `minigcs ctl`: renders each typed reply (`Reply`)
//! as the tables and summary lines `ctl` prints without `--json`, and the
//! detail of a progress line. Only formats; `main.rs` does the printing and
//! nothing here talks to the socket.

use std::fmt::Write as _;

use super::client::Reply;
use crate::report::{
    HealthReport, InfoReport, MetricsSummary, NodeStats, NodesReport, Progress, RecoveryReport,
    ScrubReport, StatsReport, WorkersReport,
};

/// The text `ctl` prints for a reply (ends with a newline).
pub fn render(reply: &Reply) -> String {
    let mut out = String::new();
    match reply {
        Reply::Pong(p) => {
            let _ = writeln!(out, "pong: minigcs {}", p.version);
        }
        Reply::Health(h) => health(h, &mut out),
        Reply::Stats(s) => stats(s, &mut out),
        Reply::Nodes(n) => nodes(n, &mut out),
        Reply::Recovery(r) => recovery(r, &mut out),
        Reply::Scrub(s) => scrub(s, &mut out),
        Reply::Metrics(m) => metrics(m, &mut out),
        Reply::Info(i) => info(i, &mut out),
        Reply::Workers(w) => workers(w, &mut out),
        Reply::Snapshot(s) => {
            let _ = writeln!(out, "{}", s.message);
            for failed in &s.failed {
                let _ = writeln!(out, "  no copy on {failed}");
            }
        }
    }
    out
}

/// `1.5 MiB`-style sizes (`512 B` below a KiB).
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Bytes in a mebibyte: human output uses binary units throughout.
const MIB: f64 = 1024.0 * 1024.0;

/// Megabytes as the JSON reports carry them (the prototype's `_mb` and
/// `_mbps` fields, 2^20 bytes each), in bytes.
fn mb_to_bytes(mb: f64) -> u64 {
    (mb * MIB).round().max(0.0) as u64
}

/// `851.2 MiB/s`-style rates, in the units of `human_bytes`.
pub fn human_rate(bytes_per_sec: f64) -> String {
    format!("{}/s", human_bytes(bytes_per_sec.max(0.0) as u64))
}

/// Bytes done, rate and time left of a running operation.
pub fn progress_detail(p: &Progress) -> String {
    let eta = p
        .eta_secs
        .map(|s| format!("ETA {s:.0}s"))
        .unwrap_or_default();
    format!(
        "{}  {}  {eta}",
        human_bytes(p.bytes),
        human_rate(p.rate_bytes_per_sec)
    )
}

/// Columns padded to their widest cell, two spaces apart.
struct Table {
    headers: &'static [&'static str],
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &'static [&'static str]) -> Table {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let headers = self.headers.iter().map(|h| h.to_string()).collect();
        for cells in std::iter::once(&headers).chain(&self.rows) {
            let line: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, &w)| format!("{c:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
    }
}

/// `name: value` pairs three spaces apart, as one line.
fn summary_line(out: &mut String, pairs: &[(&str, String)]) {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    out.push_str(&parts.join("   "));
    out.push('\n');
}

/// `-` where a value is absent.
fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn health(h: &HealthReport, out: &mut String) {
    let _ = writeln!(out, "status: {}  ({})", h.status.as_str(), h.message);
    summary_line(
        out,
        &[
            ("chunks missing shards", h.chunks_missing_shards.to_string()),
            ("shards to repair", h.repair_queue.to_string()),
        ],
    );
    if !h.metadata_snapshot.message.is_empty() {
        let _ = writeln!(out, "metadata snapshot: {}", h.metadata_snapshot.message);
    }
    if !h.metadata_journal.message.is_empty() {
        let _ = writeln!(out, "metadata journal: {}", h.metadata_journal.message);
    }
    let mut table = Table::new(&["NODE", "REGION", "STATE", "REASON"]);
    for n in &h.nodes {
        table.row(vec![
            n.id.clone(),
            n.region.clone(),
            n.state.as_str().into(),
            n.reason.clone(),
        ]);
    }
    table.render(out);
}

/// State, shards, bytes and free space of a node: the last columns of its row.
fn usage_cells(n: &NodeStats) -> [String; 4] {
    [
        n.state.as_str().into(),
        n.shards.to_string(),
        human_bytes(n.bytes),
        human_bytes(n.free_bytes),
    ]
}

fn stats(s: &StatsReport, out: &mut String) {
    let _ = writeln!(
        out,
        "objects: {}   bytes: {} ({})   k={} m={} chunk_size={}",
        s.total_objects,
        s.total_size,
        human_bytes(s.total_size),
        s.k,
        s.m,
        human_bytes(s.chunk_size)
    );
    let mut table = Table::new(&["NODE", "REGION", "STATE", "SHARDS", "BYTES", "FREE"]);
    for (id, n) in &s.node_stats {
        let mut row = vec![id.clone(), n.stats.region.clone()];
        row.extend(usage_cells(&n.stats));
        table.row(row);
    }
    table.render(out);
    out.push('\n');
    let mut table = Table::new(&["REGION", "SHARDS", "BYTES"]);
    for (region, r) in &s.region_stats {
        table.row(vec![
            region.clone(),
            r.shards.to_string(),
            human_bytes(r.bytes),
        ]);
    }
    table.render(out);
}

fn nodes(report: &NodesReport, out: &mut String) {
    let mut table = Table::new(&["NODE", "REGION", "PATH", "STATE", "SHARDS", "BYTES", "FREE"]);
    for n in &report.nodes {
        let mut row = vec![n.id.clone(), n.stats.region.clone(), n.stats.path.clone()];
        row.extend(usage_cells(&n.stats));
        table.row(row);
    }
    table.render(out);
}

fn recovery(r: &RecoveryReport, out: &mut String) {
    let _ = writeln!(out, "{}", r.message);
    summary_line(
        out,
        &[
            (
                "chunks",
                format!("{} ({} failed)", r.chunks_total, r.chunks_failed),
            ),
            ("shards rebuilt", r.shards_rebuilt.to_string()),
            ("bytes rebuilt", human_bytes(r.bytes_rebuilt)),
            ("rate", human_rate(r.rebuild_rate_mb_per_sec * 1e6)),
        ],
    );
    let _ = writeln!(
        out,
        "MTTR: {:.1} ms (detect→start {:.1} ms, start→done {:.1} ms)",
        r.mttr_ms, r.detect_to_start_ms, r.start_to_done_ms
    );
}

fn scrub(s: &ScrubReport, out: &mut String) {
    summary_line(
        out,
        &[
            ("chunks", s.chunks_checked.to_string()),
            ("shards checked", s.shards_checked.to_string()),
            ("bytes verified", human_bytes(s.bytes_checked)),
            ("corrupt", s.corrupt.to_string()),
            ("missing", s.missing.to_string()),
            ("repaired", s.repaired.to_string()),
        ],
    );
    if s.journal_segments > 0 {
        summary_line(
            out,
            &[
                ("journal segments", s.journal_segments.to_string()),
                ("bad copies", s.journal_copies_bad.to_string()),
                ("copies rewritten", s.journal_copies_repaired.to_string()),
            ],
        );
    }
    if !s.problems.is_empty() {
        let mut table = Table::new(&["CHUNK", "SHARD", "NODE", "PROBLEM", "REPAIRED"]);
        for p in &s.problems {
            table.row(vec![
                p.chunk_id.clone(),
                p.shard_index.to_string(),
                or_dash(&p.node),
                p.problem.to_string(),
                p.repaired.to_string(),
            ]);
        }
        table.render(out);
    }
}

/// A success rate (a percentage) of `count` attempts; "n/a" when there
/// were none, as the JSON's 0.0 then rates nothing.
fn rate_text(rate: f64, count: u64, none: &str) -> String {
    if count == 0 {
        format!("n/a ({none})")
    } else {
        format!("{rate:.1}%")
    }
}

fn metrics(m: &MetricsSummary, out: &mut String) {
    summary_line(
        out,
        &[
            ("operations", m.total_operations.to_string()),
            (
                "success rate",
                rate_text(m.overall_success_rate, m.total_operations, "no operations"),
            ),
            ("data", human_bytes(mb_to_bytes(m.total_data_processed_mb))),
            ("recoveries", m.total_recoveries.to_string()),
            (
                "recovery success rate",
                rate_text(m.recovery_success_rate, m.total_recoveries, "no recoveries"),
            ),
            ("degraded reads", m.degraded_reads.to_string()),
        ],
    );
    let mut table = Table::new(&[
        "OPERATION",
        "COUNT",
        "SUCCESS",
        "AVG_MS",
        "P50_MS",
        "P99_MS",
        "MAX_MS",
        "MIB/S",
    ]);
    for (op, o) in &m.operation_summary {
        let mut row = vec![
            op.clone(),
            o.count.to_string(),
            format!("{:.1}%", o.success_rate),
        ];
        row.extend(
            [
                o.avg_duration_ms,
                o.p50_ms,
                o.p99_ms,
                o.max_duration_ms,
                mb_to_bytes(o.avg_throughput_mbps) as f64 / MIB,
            ]
            .map(|v| format!("{v:.2}")),
        );
        table.row(row);
    }
    table.render(out);
    let r = &m.recovery_summary;
    if r.count > 0 {
        let _ = writeln!(
            out,
            "recovery MTTR: avg {:.1} ms, min {:.1} ms, max {:.1} ms",
            r.avg_mttr_ms, r.min_mttr_ms, r.max_mttr_ms
        );
    }
}

fn info(i: &InfoReport, out: &mut String) {
    if i.kind != "file" {
        return not_a_file_info(i, out);
    }
    let fields = [
        ("key", i.key.clone()),
        ("size", format!("{} ({})", i.size, human_bytes(i.size))),
        ("content type", i.content_type.clone()),
        ("version", i.version.to_string()),
        ("sha256", or_dash(&i.checksum)),
        ("created", i.created_at.clone()),
        ("updated", i.updated_at.clone()),
        ("healthy", i.healthy.to_string()),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "{:<14}{value}", format!("{name}:"));
    }
    let mut table = Table::new(&["CHUNK", "ID", "SHARD", "NODE", "REGION", "STATE"]);
    for c in &i.chunks {
        for s in &c.shards {
            table.row(vec![
                c.index.to_string(),
                c.chunk_id.clone(),
                s.index.to_string(),
                or_dash(&s.node),
                or_dash(&s.region),
                s.state.as_str().into(),
            ]);
        }
    }
    if !table.rows.is_empty() {
        out.push('\n');
        table.render(out);
    }
}

/// `info` of a directory (or a symlink, a device…): what it is, no chunks.
fn not_a_file_info(i: &InfoReport, out: &mut String) {
    let key = match i.key.as_str() {
        "" => "/ (the root of the store)".to_string(),
        key => key.to_string(),
    };
    let kind = match i.kind.as_str() {
        "dir" => {
            let prefix = match i.key.as_str() {
                "" => String::new(),
                key => format!("{key}/"),
            };
            format!("directory (list it with ls, or GET /objects?prefix={prefix})")
        }
        other => format!("{other} (not a regular file: it has no chunks)"),
    };
    let fields = [
        ("key", key),
        ("type", kind),
        ("mode", i.mode.clone()),
        ("created", i.created_at.clone()),
        ("updated", i.updated_at.clone()),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "{:<14}{value}", format!("{name}:"));
    }
}

fn workers(report: &WorkersReport, out: &mut String) {
    let mut table = Table::new(&[
        "WORKER",
        "STATE",
        "QUEUE",
        "DONE",
        "LAST RUN",
        "DOING",
        "LAST ERROR",
    ]);
    for w in &report.workers {
        let last_error = match (&w.last_error, &w.last_error_at) {
            (Some(e), Some(at)) => format!("{at}: {e}"),
            (Some(e), None) => e.clone(),
            (None, _) => "-".into(),
        };
        table.row(vec![
            w.name.clone(),
            w.state.as_str().into(),
            w.queue.to_string(),
            w.done.to_string(),
            or_dash(&w.last_run),
            w.doing.clone(),
            last_error,
        ]);
    }
    table.render(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_humans_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3932163), "3.8 MiB");
    }

    #[test]
    fn recovery_prints_counts_and_mttr() {
        let report = RecoveryReport {
            node_id: "node-2".into(),
            message: "Recovery completed for node node-2".into(),
            chunks_total: 10,
            chunks_failed: 0,
            shards_rebuilt: 4,
            bytes_rebuilt: 2 * 1024 * 1024,
            detect_to_start_ms: 0.000191,
            start_to_done_ms: 2.464196,
            mttr_ms: 2.464387,
            rebuild_rate_mb_per_sec: 851.25,
        };
        assert_eq!(
            render(&Reply::Recovery(report)),
            "Recovery completed for node node-2\n\
             chunks: 10 (0 failed)   shards rebuilt: 4   bytes rebuilt: 2.0 MiB   rate: 811.8 MiB/s\n\
             MTTR: 2.5 ms (detect→start 0.0 ms, start→done 2.5 ms)\n"
        );
    }

    #[test]
    fn metrics_show_percentages_and_no_rate_without_attempts() {
        let summary = |recoveries: u64, recovery_rate: f64| -> MetricsSummary {
            serde_json::from_value(serde_json::json!({
                "total_operations": 4, "total_recoveries": recoveries,
                "overall_success_rate": 75.0, "recovery_success_rate": recovery_rate,
                "overall_throughput_mbps": 0.0, "total_data_processed_mb": 0.0,
                "operation_summary": {"upload": {
                    "count": 4, "success_count": 3, "failure_count": 1, "success_rate": 75.0,
                    "avg_duration_ms": 1.0, "min_duration_ms": 1.0, "max_duration_ms": 1.0,
                    "p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0,
                    "avg_throughput_mbps": 0.0, "total_size_bytes": 0}},
                "recovery_summary": {
                    "count": recoveries, "success_count": 0, "failure_count": 0,
                    "success_rate": recovery_rate, "avg_mttr_ms": 0.0, "min_mttr_ms": 0.0,
                    "max_mttr_ms": 0.0, "last_mttr_ms": 0.0, "avg_detect_to_start_ms": 0.0,
                    "avg_start_to_done_ms": 0.0, "total_bytes_rebuilt": 0,
                    "total_shards_rebuilt": 0},
                "degraded_reads": 0, "repaired_shards": 0, "corrupt_shards_found": 0,
                "csv_rows_dropped": 0
            }))
            .unwrap()
        };
        let none = render(&Reply::Metrics(summary(0, 0.0)));
        assert!(
            none.starts_with("operations: 4   success rate: 75.0%"),
            "{none}"
        );
        assert!(
            none.contains("recovery success rate: n/a (no recoveries)"),
            "{none}"
        );
        assert!(
            !none.contains("0.0%"),
            "no rate claimed for nothing: {none}"
        );
        assert!(none.contains("upload     4      75.0%"), "{none}");
        let two = render(&Reply::Metrics(summary(2, 50.0)));
        assert!(two.contains("recovery success rate: 50.0%"), "{two}");
    }

    #[test]
    fn workers_print_one_row_each_with_the_last_error() {
        use crate::report::{WorkerReport, WorkerState};
        let row = WorkerReport::new;
        let mut repair = row("repair", WorkerState::Running, "repairing unhealthy shards");
        repair.queue = 3;
        repair.done = 12;
        repair.runs = 4;
        repair.last_run = Some("2026-01-02T03:04:05.000000Z".into());
        repair.last_error = Some("node-2 is down".into());
        repair.last_error_at = Some("2026-01-02T03:04:00.000000Z".into());
        let report = WorkersReport {
            workers: vec![
                row("collector", WorkerState::Idle, "nothing to collect"),
                repair,
            ],
        };
        assert_eq!(
            render(&Reply::Workers(report)),
            "WORKER     STATE    QUEUE  DONE  LAST RUN                     DOING                       LAST ERROR\n\
             collector  idle     0      0     -                            nothing to collect          -\n\
             repair     running  3      12    2026-01-02T03:04:05.000000Z  repairing unhealthy shards  2026-01-02T03:04:00.000000Z: node-2 is down\n"
        );
    }

    #[test]
    fn metrics_print_in_binary_units_only() {
        let metrics = crate::metrics::Metrics::new(None);
        let ten_ms = std::time::Duration::from_millis(10);
        metrics.record("upload", "a", 3 * 1024 * 1024, ten_ms, true, None);
        let summary = serde_json::from_value(metrics.summary_json()).unwrap();
        let text = render(&Reply::Metrics(summary));
        assert!(text.contains("data: 3.0 MiB"), "{text}");
        // 3 MiB in 10 ms.
        assert!(text.contains("MIB/S") && text.contains("300.00"), "{text}");
        assert!(!text.contains("MB"), "decimal units in: {text}");
    }

    #[test]
    fn info_of_a_directory_says_it_is_one() {
        let mut report = InfoReport {
            key: "docs".into(),
            size: 0,
            content_type: "application/octet-stream".into(),
            created_at: "2026-01-02T03:04:05.000000Z".into(),
            updated_at: "2026-01-02T03:04:06.000000Z".into(),
            version: 0,
            checksum: None,
            kind: "dir".into(),
            mode: "755".into(),
            nlink: 2,
            chunk_size: 1024,
            chunks: Vec::new(),
            healthy: true,
        };
        assert_eq!(
            render(&Reply::Info(report.clone())),
            "key:          docs\n\
             type:         directory (list it with ls, or GET /objects?prefix=docs/)\n\
             mode:         755\n\
             created:      2026-01-02T03:04:05.000000Z\n\
             updated:      2026-01-02T03:04:06.000000Z\n"
        );
        report.key = String::new();
        let root = render(&Reply::Info(report.clone()));
        assert!(
            root.starts_with("key:          / (the root of the store)\n"),
            "{root}"
        );
        report.kind = "file".into();
        let file = render(&Reply::Info(report));
        assert!(
            file.contains("content type:") && !file.contains("directory"),
            "{file}"
        );
    }

    #[test]
    fn progress_shows_bytes_rate_and_eta() {
        let mut p = Progress {
            phase: "recover".into(),
            done: 3,
            total: 11,
            bytes: 3 * 1024 * 1024,
            rate_bytes_per_sec: 1024.0 * 1024.0,
            eta_secs: Some(8.4),
        };
        assert_eq!(progress_detail(&p), "3.0 MiB  1.0 MiB/s  ETA 8s");
        p.eta_secs = None;
        assert_eq!(progress_detail(&p), "3.0 MiB  1.0 MiB/s  ");
    }
}
