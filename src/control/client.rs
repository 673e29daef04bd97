//! The control-socket client used by `minigcs ctl`: sends one request,
//! hands progress lines to a callback, returns the final reply.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::Request;
use crate::error::{Error, Result};

/// Send `req` and wait for the final reply's `data` (or its error).
pub fn call(socket: &Path, req: &Request, mut on_progress: impl FnMut(&Value)) -> Result<Value> {
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
            on_progress(p);
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
