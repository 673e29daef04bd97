//! The append-only CSV log of finished operations and recoveries.
//!
//! Rows are formatted by the recording thread and handed over a bounded
//! queue to one background writer thread that owns the file, so callers never
//! wait on disk: when the queue is full (or the writer failed) the row is
//! dropped and counted instead. The writer buffers rows and flushes them when
//! idle, on request ([`CsvLog::flush`]) and when the log is dropped.
//! Columns are [`CSV_HEADER`]; fields are quoted per RFC 4180. This module
//! knows nothing about aggregates, JSON or Prometheus.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::state::{duration_ns, throughput_mbps, OpEvent, RecoveryRecord};
use super::time::push_iso8601;

/// Header line of the CSV log (without the trailing newline).
pub const CSV_HEADER: &str = "timestamp,operation_type,object_key,size_bytes,duration_ms,\
throughput_mbps,success,error_message,node_id,metrics_type";

/// How many CSV rows may wait for the writer thread before new rows are dropped.
const CSV_QUEUE_CAPACITY: usize = 8192;

/// How long the CSV writer keeps rows buffered before flushing them anyway.
const CSV_IDLE_FLUSH: Duration = Duration::from_millis(500);

enum CsvMsg {
    Row(String),
    Flush(Sender<()>),
}

/// The sending half of the CSV log; the writer thread owns the file and
/// exits once this is dropped (after writing what was queued).
pub(super) struct CsvLog {
    tx: Sender<CsvMsg>,
    /// Rows lost to a full queue or a failed write; shared with `Metrics`.
    dropped: Arc<AtomicU64>,
    _thread: JoinHandle<()>,
}

impl CsvLog {
    /// Opens `path` for appending (creating it and its parent folder if
    /// needed), writes the header if the file is empty, and starts the writer
    /// thread. On failure logs a warning and returns `None`: metrics then run
    /// without the CSV log.
    pub(super) fn start(path: PathBuf, dropped: Arc<AtomicU64>) -> Option<CsvLog> {
        let file = match open_csv(&path) {
            Ok(file) => file,
            Err(e) => {
                log::warn!(
                    "metrics CSV log disabled: cannot open {}: {e}",
                    path.display()
                );
                return None;
            }
        };
        let (tx, rx) = crossbeam_channel::bounded(CSV_QUEUE_CAPACITY);
        let thread_dropped = Arc::clone(&dropped);
        match std::thread::Builder::new()
            .name("metrics-csv".into())
            .spawn(move || csv_writer_loop(file, &path, rx, &thread_dropped))
        {
            Ok(handle) => Some(CsvLog {
                tx,
                dropped,
                _thread: handle,
            }),
            Err(e) => {
                log::warn!("metrics CSV log disabled: cannot start writer thread: {e}");
                None
            }
        }
    }

    /// Queues one finished row (ending in `\n`); never blocks. A row that
    /// does not fit is counted as dropped.
    pub(super) fn send(&self, row: String) {
        if self.tx.try_send(CsvMsg::Row(row)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Blocks until every row queued before this call is written and flushed
    /// to the OS.
    pub(super) fn flush(&self) {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if self.tx.send(CsvMsg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }
}

/// The CSV row of one finished operation (`metrics_type` `operation`).
pub(super) fn operation_row(event: &OpEvent<'_>) -> String {
    let mut row = String::with_capacity(96 + event.op.len() + event.key.len());
    push_iso8601(&mut row, event.at);
    row.push(',');
    push_csv_field(&mut row, event.op);
    row.push(',');
    push_csv_field(&mut row, event.key);
    let _ = write!(
        row,
        ",{},{:.3},{:.3},{},",
        event.size_bytes,
        duration_ns(event.duration) as f64 / 1e6,
        event.throughput_mbps(),
        event.success
    );
    push_csv_field(&mut row, event.error.unwrap_or(""));
    row.push_str(",,operation\n");
    row
}

/// The CSV row of one finished node recovery (`operation_type` and
/// `metrics_type` `recovery`; duration is the MTTR, size the bytes rebuilt).
pub(super) fn recovery_row(rec: &RecoveryRecord) -> String {
    let mttr = rec.mttr();
    let mut row = String::with_capacity(128 + rec.node_id.len());
    push_iso8601(&mut row, rec.at);
    row.push_str(",recovery,,");
    let _ = write!(
        row,
        "{},{:.3},{:.3},{},",
        rec.bytes_rebuilt,
        duration_ns(mttr) as f64 / 1e6,
        throughput_mbps(rec.bytes_rebuilt, mttr),
        rec.success
    );
    push_csv_field(&mut row, rec.error.as_deref().unwrap_or(""));
    row.push(',');
    push_csv_field(&mut row, &rec.node_id);
    row.push_str(",recovery\n");
    row
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
    // Logs the first failure of a run of failures, not every row.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ms_dur, Metrics};

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

    /// The row has `want` in each listed column.
    fn assert_columns(row: &[String], columns: &[(usize, &str)]) {
        for &(column, want) in columns {
            assert_eq!(row[column], want, "column {column} of {row:?}");
        }
    }

    #[test]
    fn csv_header_and_rows_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("metrics.csv");
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
        let operation = [
            (1, "upload"),
            (2, "k0"),
            (3, "100"),
            (4, "2.000"),
            (6, "true"),
            (9, "operation"),
        ];
        assert_columns(first, &operation);
        assert!(
            first[0].ends_with('Z') && first[0].contains('T'),
            "{}",
            first[0]
        );
        let quoted = [(2, "a,b \"q\""), (6, "false"), (7, "line1\nline2, \"x\"")];
        assert_columns(&rows[26], &quoted);
        let recovery = [
            (1, "recovery"),
            (3, "500"),
            (4, "30.000"),
            (8, "node-2"),
            (9, "recovery"),
        ];
        assert_columns(&rows[27], &recovery);
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        let m = Metrics::new(Some(path.clone()));
        m.record("delete", "x", 0, ms_dur(1), true, None);
        drop(m);
        let rows = parse_csv(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn unwritable_csv_path_disables_csv_but_metrics_work() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let m = Metrics::new(Some(blocker.join("metrics.csv")));
        m.record("upload", "k", 1, ms_dur(1), true, None);
        m.flush();
        assert_eq!(m.summary_json()["total_operations"], 1);
    }

    #[test]
    fn rows_are_byte_exact() {
        let at = std::time::UNIX_EPOCH + Duration::from_micros(1_500_123);
        let op = operation_row(&OpEvent {
            at,
            op: "upload",
            key: "a/b",
            size_bytes: 1_048_576,
            duration: ms_dur(10),
            success: false,
            error: Some("x,y"),
        });
        assert_eq!(
            op,
            "1970-01-01T00:00:01.500123Z,upload,a/b,1048576,10.000,100.000,false,\"x,y\",,operation\n"
        );
        let rec = recovery_row(&RecoveryRecord {
            at,
            node_id: "node-1".into(),
            detect_to_start: ms_dur(500),
            start_to_done: ms_dur(1500),
            bytes_rebuilt: 4 << 20,
            shards_rebuilt: 2,
            success: true,
            error: None,
        });
        assert_eq!(
            rec,
            "1970-01-01T00:00:01.500123Z,recovery,,4194304,2000.000,2.000,true,,node-1,recovery\n"
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
