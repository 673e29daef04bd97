//! The control socket: a unix stream socket (mode 0600) speaking
//! newline-delimited JSON. A request is one object per line, e.g.
//! `{"cmd": "recover", "node": "node-2"}`; the reply is zero or more
//! `{"progress": {…}}` lines then exactly one `{"ok": true, "data": {…}}` or
//! `{"ok": false, "error": "…"}`. This module owns the protocol, the server
//! (which only translates to service calls and sends their typed reports from
//! `crate::report`), the client `ctl` uses (which decodes them back) and the
//! human rendering of those reports.

pub mod client;
pub mod print;
mod server;

pub use client::Reply;
pub use server::{bind, execute, serve, SocketFile};

use serde::{Deserialize, Serialize};

/// Longest request line accepted; longer lines get an error reply.
pub const MAX_LINE: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ping,
    Stats,
    Health,
    Nodes,
    Recover {
        node: String,
    },
    Scrub {
        #[serde(default)]
        repair: bool,
    },
    Metrics,
    Info {
        key: String,
        /// Absolute path when the argument named a file in the mount.
        #[serde(default)]
        path: Option<String>,
    },
    /// Each background worker's state, current work, queue and last error.
    Workers,
    /// Write a metadata snapshot to the nodes now.
    Snapshot,
}

/// Parse one request line into a Request or a clear error message.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "empty request: send one JSON object per line, e.g. {\"cmd\": \"health\"}".into(),
        );
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("request is not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err("request must be a JSON object with a \"cmd\" field".into());
    }
    if value.get("cmd").and_then(|c| c.as_str()).is_none() {
        return Err("request has no \"cmd\" string field".into());
    }
    serde_json::from_value(value).map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_garbage_gets_clear_errors() {
        assert_eq!(
            parse_request(br#"{"cmd":"recover","node":"node-2"}"#).unwrap(),
            Request::Recover {
                node: "node-2".into()
            }
        );
        assert_eq!(
            parse_request(br#"{"cmd":"scrub"}"#).unwrap(),
            Request::Scrub { repair: false }
        );
        assert_eq!(
            parse_request(br#"{"cmd":"workers"}"#).unwrap(),
            Request::Workers
        );
        assert!(parse_request(b"").unwrap_err().contains("empty"));
        assert!(parse_request(b"garbage")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(parse_request(b"[1,2]").unwrap_err().contains("object"));
        assert!(parse_request(br#"{"cmd":"launch"}"#)
            .unwrap_err()
            .contains("bad request"));
        assert!(parse_request(br#"{"cmd":"recover"}"#).is_err());
        assert!(parse_request(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }
}
