//! The background workers' report (`ctl workers`, `{"cmd": "workers"}`):
//! one row per worker — collection, repair, node recovery, scrub, health
//! probes and the start-up orphan sweep — with its state, what it is doing,
//! how much work waits, how much it has done and its last error.

use serde::{Deserialize, Serialize};

/// Whether a worker is inside a step of work right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Waiting for its wake-up signal or its interval.
    Idle,
    /// Inside a step of work.
    Running,
    /// Finished for good (a one-off job done, or the daemon shutting down).
    Stopped,
}

impl WorkerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Running => "running",
            WorkerState::Stopped => "stopped",
        }
    }
}

/// One background worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Also the name of its thread.
    pub name: String,
    pub state: WorkerState,
    /// What it is doing now, or what it found last time it looked.
    pub doing: String,
    /// Items known to be waiting (chunks to collect or repair, nodes to
    /// recover, …).
    pub queue: u64,
    /// Items finished since the daemon started (chunks freed, shards
    /// repaired, chunks scrubbed, probes, …).
    pub done: u64,
    /// Steps of work run since the daemon started.
    pub runs: u64,
    /// When the last step ended (ISO-8601 UTC); `null` before the first.
    pub last_run: Option<String>,
    /// The last step that failed: its error and when (ISO-8601 UTC).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

impl WorkerReport {
    /// A worker that has run no step yet.
    pub fn new(name: &str, state: WorkerState, doing: &str) -> WorkerReport {
        WorkerReport {
            name: name.to_string(),
            state,
            doing: doing.to_string(),
            queue: 0,
            done: 0,
            runs: 0,
            last_run: None,
            last_error: None,
            last_error_at: None,
        }
    }
}

/// Every background worker, in start order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WorkersReport {
    pub workers: Vec<WorkerReport>,
}
