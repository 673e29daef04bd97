//! Streamed download bodies: after the first piece of a range (read before
//! any header is sent), the rest is read chunk by chunk on a blocking thread
//! and handed to the connection through a one-slot channel, and the
//! download is recorded in the metrics when the body is dropped, whether
//! every byte went out or the client left. `objects` decides what to send;
//! this module only moves the bytes.

use axum::body::{Body, Bytes};
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::Metrics;
use crate::service::Snapshot;

/// Records a streamed download when its body is dropped: a success when
/// every byte was handed to the connection, a failure otherwise.
pub(super) struct Recorder {
    pub metrics: Arc<Metrics>,
    pub key: String,
    pub started: Instant,
    pub expected: u64,
    pub sent: u64,
    pub error: Option<String>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let error = match (&self.error, self.sent == self.expected) {
            (Some(e), _) => Some(e.clone()),
            (None, true) => None,
            (None, false) => Some(format!(
                "client went away after {} of {} bytes",
                self.sent, self.expected
            )),
        };
        self.metrics.record(
            "download",
            &self.key,
            self.sent,
            self.started.elapsed(),
            error.is_none(),
            error.as_deref(),
        );
    }
}

/// Where the chunk holding byte `pos` ends.
pub(super) fn next_chunk_boundary(pos: u64, chunk_size: u64) -> u64 {
    (pos / chunk_size + 1) * chunk_size
}

/// A body that starts with `first` (the range's first piece, already read)
/// and goes on chunk by chunk, fed by a blocking reader through a one-slot
/// channel: at most about three chunks of this download are in memory. A
/// read that fails later ends the stream with an error, so the connection
/// is cut short of its Content-Length and the client sees a failed
/// transfer, never a clean short body.
pub(super) fn stream_body(
    snap: Snapshot,
    range: Range<u64>,
    first: Bytes,
    chunk_size: u64,
    recorder: Recorder,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(1);
    tokio::task::spawn_blocking(move || {
        let mut pos = range.start + first.len() as u64;
        if tx.blocking_send(Ok(first)).is_err() {
            return; // client gone
        }
        while pos < range.end {
            // Pieces end on chunk boundaries so each reads one chunk.
            let next = next_chunk_boundary(pos, chunk_size).min(range.end);
            let piece = snap
                .read(pos, (next - pos) as usize)
                .map_err(|e| io::Error::other(e.to_string()));
            let failed = piece.is_err();
            if tx.blocking_send(piece).is_err() || failed {
                return; // client gone, or the read failed (connection is cut)
            }
            pos = next;
        }
    });
    let stream = futures_util::stream::unfold((rx, recorder), |(mut rx, mut rec)| async move {
        let item = rx.recv().await?;
        match &item {
            Ok(b) => rec.sent += b.len() as u64,
            Err(e) => {
                crate::warn_limited!(
                    "download failed mid-stream",
                    "download of {} failed mid-stream: {e}",
                    rec.key
                );
                rec.error = Some(e.to_string());
            }
        }
        Some((item, (rx, rec)))
    });
    Body::from_stream(stream)
}
