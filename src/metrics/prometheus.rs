//! The Prometheus text exposition (format 0.0.4) served by `GET /metrics`.
//!
//! Renders the registry's aggregates and counters as metric families whose
//! names all start with `minigcs_`: operation counts, duration histograms and
//! bytes per op (ops in name order), the degraded-read / repaired-shard /
//! corrupt-shard / dropped-CSV-row counters, and recovery counts and MTTR;
//! and, from the chunk store's figures, each node's I/O: operations,
//! timeouts, refusals, smoothed read latency, and the bytes stored there by
//! kind. Durations are in seconds
//! here (milliseconds everywhere else). This module only formats a snapshot
//! it is given; it takes no lock and does no I/O.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};

use super::state::State;
use super::CounterValues;
use crate::node::ExecutorStats;

/// Renders the whole exposition text from the guarded state and counters.
pub(super) fn render(state: &State, counters: &CounterValues) -> String {
    let mut out = String::with_capacity(1024 + state.ops.len() * 2048);
    operations(&mut out, state);
    for (name, help, value) in [
        (
            "minigcs_degraded_reads_total",
            "Reads that reconstructed data from parity.",
            counters.degraded_reads,
        ),
        (
            "minigcs_repaired_shards_total",
            "Shards rewritten by recovery, scrub or repair.",
            counters.repaired_shards,
        ),
        (
            "minigcs_corrupt_shards_found_total",
            "Shards found corrupt or unreadable.",
            counters.corrupt_shards_found,
        ),
        (
            "minigcs_metrics_csv_rows_dropped_total",
            "Metrics CSV rows dropped because the writer fell behind or failed.",
            counters.csv_rows_dropped,
        ),
    ] {
        single(&mut out, name, "counter", help, value);
    }
    recoveries(&mut out, state);
    out
}

/// Per-node I/O families from each node's executor figures, by node id.
pub fn node_io_text(nodes: &[(String, ExecutorStats)]) -> String {
    let mut out = String::with_capacity(256 + nodes.len() * 256);
    type Figure = fn(&ExecutorStats) -> String;
    let families: [(&str, &str, &str, Figure); 4] = [
        (
            "minigcs_node_io_operations_total",
            "counter",
            "Node operations that ran to completion, by node.",
            |s| s.completed.to_string(),
        ),
        (
            "minigcs_node_io_timeouts_total",
            "counter",
            "Node operations not answered within their deadline, by node.",
            |s| s.timed_out.to_string(),
        ),
        (
            "minigcs_node_io_refused_total",
            "counter",
            "Node operations refused at once because the node was stuck or saturated, by node.",
            |s| s.refused.to_string(),
        ),
        (
            "minigcs_node_read_latency_seconds",
            "gauge",
            "Smoothed shard read latency, by node (0 before the first read).",
            |s| prom_f64(s.read_latency_us as f64 / 1e6),
        ),
    ];
    for (name, kind, help, figure) in families {
        family(&mut out, name, kind, help);
        for (node, stats) in nodes {
            let node = escape_label(node);
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {}", figure(stats));
        }
    }
    written(&mut out, nodes);
    segments(&mut out, nodes);
    out
}

/// The small-shard segments of the nodes that keep them.
fn segments(out: &mut String, nodes: &[(String, ExecutorStats)]) {
    type Figure = fn(&crate::node::SegmentFigures) -> u64;
    let families: [(&str, &str, &str, Figure); 7] = [
        ("minigcs_node_segments", "gauge", "Segment files on the node.", |f| f.segments),
        (
            "minigcs_node_segment_live_bytes",
            "gauge",
            "Bytes of live entries in the node's segments.",
            |f| f.live_bytes,
        ),
        (
            "minigcs_node_segment_dead_bytes",
            "gauge",
            "Bytes of the node's segments the cleaner may reclaim (removed or replaced entries, unused space).",
            |f| f.dead_bytes,
        ),
        (
            "minigcs_node_segment_reclaimed_bytes_total",
            "counter",
            "Bytes of segment files the cleaner removed since start.",
            |f| f.reclaimed_bytes,
        ),
        (
            "minigcs_node_segment_moved_bytes_total",
            "counter",
            "Bytes of live entries the cleaner copied forward since start.",
            |f| f.moved_bytes,
        ),
        (
            "minigcs_node_segment_appends_total",
            "counter",
            "Entries appended to the node's segments since start.",
            |f| f.appends,
        ),
        (
            "minigcs_node_segment_syncs_total",
            "counter",
            "fdatasync calls that made the node's segment appends durable since start (one serves every append written before it began).",
            |f| f.syncs,
        ),
    ];
    if nodes.iter().all(|(_, s)| s.segments.is_none()) {
        return;
    }
    for (name, kind, help, figure) in families {
        family(out, name, kind, help);
        for (node, stats) in nodes {
            if let Some(f) = &stats.segments {
                let node = escape_label(node);
                let _ = writeln!(out, "{name}{{node=\"{node}\"}} {}", figure(f));
            }
        }
    }
}

/// Bytes stored on each node by kind, and the store operations behind them.
fn written(out: &mut String, nodes: &[(String, ExecutorStats)]) {
    let name = "minigcs_node_written_bytes_total";
    family(
        out,
        name,
        "counter",
        "Bytes stored on the node since start, by node and kind (shard files, journal appends, whole metadata copies).",
    );
    for (node, stats) in nodes {
        let node = escape_label(node);
        let w = &stats.written;
        for (kind, bytes) in [
            ("shard", w.shard_bytes),
            ("journal", w.journal_bytes),
            ("copy", w.copy_bytes),
        ] {
            let _ = writeln!(out, "{name}{{node=\"{node}\",kind=\"{kind}\"}} {bytes}");
        }
    }
    let name = "minigcs_node_write_operations_total";
    family(
        out,
        name,
        "counter",
        "Successful store operations on the node since start (shards, journal appends, metadata copies), by node.",
    );
    for (node, stats) in nodes {
        let node = escape_label(node);
        let _ = writeln!(out, "{name}{{node=\"{node}\"}} {}", stats.written.writes);
    }
}

/// Per-op families: counts by result, duration histogram, payload bytes.
fn operations(out: &mut String, state: &State) {
    family(
        out,
        "minigcs_operations_total",
        "counter",
        "Finished operations by type and result.",
    );
    for (op, s) in &state.ops {
        let op_label = format!("op=\"{}\",", escape_label(op));
        by_result(
            out,
            "minigcs_operations_total",
            &op_label,
            s.success,
            s.failure,
        );
    }

    family(
        out,
        "minigcs_operation_duration_seconds",
        "histogram",
        "Duration of finished operations.",
    );
    for (op, s) in &state.ops {
        let op = escape_label(op);
        let h = &s.latency;
        for (bound_ns, cumulative) in h.cumulative_buckets() {
            let le = match bound_ns {
                Some(b) => format!("{}", b as f64 / 1e9),
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
        out,
        "minigcs_operation_bytes_total",
        "counter",
        "Payload bytes of finished operations.",
    );
    for (op, s) in &state.ops {
        let _ = writeln!(
            out,
            "minigcs_operation_bytes_total{{op=\"{}\"}} {}",
            escape_label(op),
            s.bytes
        );
    }
}

/// Recovery families: counts by result, MTTR summary, last MTTR, rebuilt.
fn recoveries(out: &mut String, state: &State) {
    let r = &state.recovery;
    family(
        out,
        "minigcs_recoveries_total",
        "counter",
        "Finished node recoveries by result.",
    );
    by_result(out, "minigcs_recoveries_total", "", r.success, r.failure);
    family(
        out,
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
    single(
        out,
        "minigcs_recovery_last_mttr_seconds",
        "gauge",
        "MTTR of the most recent node recovery (0 if none).",
        prom_f64(r.last_mttr_ns as f64 / 1e9),
    );
    single(
        out,
        "minigcs_bytes_rebuilt_total",
        "counter",
        "Bytes of shards rebuilt by node recovery.",
        r.bytes_rebuilt,
    );
    single(
        out,
        "minigcs_shards_rebuilt_total",
        "counter",
        "Shards rebuilt by node recovery.",
        r.shards_rebuilt,
    );
}

/// A family with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The two samples of a counter split by `result`; `labels` (empty or ending
/// in a comma) go before the `result` label.
fn by_result(out: &mut String, name: &str, labels: &str, success: u64, failure: u64) {
    let _ = writeln!(out, "{name}{{{labels}result=\"success\"}} {success}");
    let _ = writeln!(out, "{name}{{{labels}result=\"failure\"}} {failure}");
}

/// A sample value: Rust's shortest round-trip form, or `NaN`/`±Inf`.
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

/// The `# HELP` and `# TYPE` lines that open a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a Prometheus label value: backslash, double quote, newline.
fn escape_label(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
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
    Cow::Owned(s)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::node_io_text;
    use crate::metrics::histogram::NUM_BUCKETS;
    use crate::metrics::{ms_dur, Metrics};
    use crate::node::{ExecutorStats, WrittenBytes};

    /// One parsed sample: metric name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Parses the exposition text: returns (name, labels, value) per sample and
    /// checks that every sample belongs to a family declared by # TYPE.
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
    fn node_io_families_parse_with_one_sample_per_node() {
        let stats = ExecutorStats {
            completed: 5,
            timed_out: 2,
            refused: 1,
            read_latency_us: 1500,
            written: WrittenBytes {
                shard_bytes: 3000,
                journal_bytes: 200,
                copy_bytes: 10,
                writes: 7,
            },
            ..Default::default()
        };
        let text = node_io_text(&[
            ("node-1".into(), stats),
            ("n\"2".into(), Default::default()),
        ]);
        let samples = parse_prometheus(&text);
        assert_eq!(samples.len(), 16);
        let timeouts = "minigcs_node_io_timeouts_total";
        assert_eq!(sample(&samples, timeouts, &[("node", "node-1")]), 2.0);
        assert_eq!(sample(&samples, timeouts, &[("node", "n\"2")]), 0.0);
        let latency = "minigcs_node_read_latency_seconds";
        assert_eq!(sample(&samples, latency, &[("node", "node-1")]), 0.0015);
        let written = "minigcs_node_written_bytes_total";
        let of = |kind| [("node", "node-1"), ("kind", kind)];
        assert_eq!(sample(&samples, written, &of("shard")), 3000.0);
        assert_eq!(sample(&samples, written, &of("journal")), 200.0);
        assert_eq!(sample(&samples, written, &of("copy")), 10.0);
        let other = [("node", "n\"2"), ("kind", "shard")];
        assert_eq!(sample(&samples, written, &other), 0.0);
        let ops = "minigcs_node_write_operations_total";
        assert_eq!(sample(&samples, ops, &[("node", "node-1")]), 7.0);
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
}
