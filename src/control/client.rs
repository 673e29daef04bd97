//! The control-socket client used by `minigcs ctl`: sends one request,
//! decodes progress lines for a callback, returns the final reply's `data`
//! as sent, and decodes that into the typed report (`Reply`) of the request.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::Request;
use crate::error::{Error, Result};
use crate::report::{
    HealthReport, InfoReport, MetricsSummary, NodesReport, PingReply, Progress, RecoveryReport,
    ScrubReport, SnapshotReport, StatsReport, WorkersReport,
};

/// Send `req` and wait for the final reply's `data` (or its error). Progress
/// lines go to `on_progress`; one that does not decode is skipped.
pub fn call(socket: &Path, req: &Request, mut on_progress: impl FnMut(&Progress)) -> Result<Value> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        Error::Other(format!(
            "no minigcs daemon is listening on {} ({e}); start one with `minigcs mount` or `minigcs serve`",
            socket.display()
        ))
    })?;
    let mut line = serde_json::to_vec(req).expect("request serializes");
    line.push(b'\n');
    stream.write_all(&line)?;
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let line = line?;
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| Error::Other(format!("daemon sent an unreadable reply: {e}")))?;
        if let Some(p) = value.get("progress") {
            match Progress::deserialize(p) {
                Ok(progress) => on_progress(&progress),
                Err(e) => log::debug!("unreadable progress line {p}: {e}"),
            }
            continue;
        }
        return match value.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(value.get("data").cloned().unwrap_or(Value::Null)),
            _ => Err(Error::Other(
                value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("the daemon reported an unspecified error")
                    .to_string(),
            )),
        };
    }
    Err(Error::Other(
        "the daemon closed the connection without a reply".into(),
    ))
}

/// The typed `data` of a successful reply, one variant per request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Pong(PingReply),
    Stats(StatsReport),
    Health(HealthReport),
    Nodes(NodesReport),
    Recovery(RecoveryReport),
    Scrub(ScrubReport),
    Metrics(MetricsSummary),
    Info(InfoReport),
    Workers(WorkersReport),
    Snapshot(SnapshotReport),
}

impl Reply {
    /// Decode the `data` the daemon sent in answer to `request`.
    pub fn decode(request: &Request, data: Value) -> Result<Reply> {
        fn typed<T: DeserializeOwned>(data: Value) -> Result<T> {
            serde_path_to_error::deserialize(data).map_err(|e| {
                Error::Other(format!(
                    "the daemon's reply does not match this ctl (at {}): {}",
                    e.path(),
                    e.inner()
                ))
            })
        }
        Ok(match request {
            Request::Ping => Reply::Pong(typed(data)?),
            Request::Stats => Reply::Stats(typed(data)?),
            Request::Health => Reply::Health(typed(data)?),
            Request::Nodes => Reply::Nodes(typed(data)?),
            Request::Recover { .. } => Reply::Recovery(typed(data)?),
            Request::Scrub { .. } => Reply::Scrub(typed(data)?),
            Request::Metrics => Reply::Metrics(typed(data)?),
            Request::Info { .. } => Reply::Info(typed(data)?),
            Request::Workers => Reply::Workers(typed(data)?),
            Request::Snapshot => Reply::Snapshot(typed(data)?),
        })
    }
}
