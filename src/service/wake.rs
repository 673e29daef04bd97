//! How the file service reaches its background workers without knowing
//! them: one wake-up `Signal` per worker (commits wake only the collector,
//! the read path's bad-shard reports only the repair worker, …) and the
//! board where each running worker publishes its status for `ctl workers`.
//!
//! A signal coalesces: any number of `notify` calls before the worker looks
//! make one wake-up, and a worker may ask to settle for a moment after the
//! first one so a burst of commits becomes one pass. Closing a signal (at
//! shutdown) releases its worker for good. Nothing here runs work or starts
//! threads; `crate::maint` does.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::metrics::format_iso8601_utc;
use crate::report::{WorkerReport, WorkerState, WorkersReport};

/// A coalescing wake-up for one worker.
#[derive(Default)]
pub struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Default)]
struct SignalState {
    /// Notifications since the worker last looked.
    pending: u64,
    closed: bool,
}

/// Why `Signal::wait` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// Somebody asked for work (this many times since the last wait).
    Notified(u64),
    /// The interval passed with no request.
    Interval,
    /// The signal was closed: the worker must stop.
    Closed,
}

impl Signal {
    /// Ask for one pass of work (cheap; a burst makes one wake-up).
    pub fn notify(&self) {
        let mut st = self.state.lock();
        st.pending += 1;
        if st.pending == 1 {
            self.changed.notify_all();
        }
    }

    /// Wake the worker for good: every wait returns `Closed` from now on.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.changed.notify_all();
    }

    /// Whether a notification waits to be taken.
    pub fn is_pending(&self) -> bool {
        self.state.lock().pending > 0
    }

    /// Wait for a notification, or until `every` passes (forever when
    /// `None`). After a notification, wait `settle` more so the rest of a
    /// burst joins it; then every pending notification is taken at once.
    pub fn wait(&self, every: Option<Duration>, settle: Duration) -> Woken {
        let mut st = self.state.lock();
        let deadline = every.map(|d| Instant::now() + d);
        while st.pending == 0 && !st.closed {
            match deadline {
                Some(d) => {
                    if self.changed.wait_until(&mut st, d).timed_out() {
                        break;
                    }
                }
                None => self.changed.wait(&mut st),
            }
        }
        if st.closed {
            return Woken::Closed;
        }
        if st.pending == 0 {
            return Woken::Interval;
        }
        let settled = Instant::now() + settle;
        while !st.closed && !self.changed.wait_until(&mut st, settled).timed_out() {}
        if st.closed {
            return Woken::Closed;
        }
        Woken::Notified(std::mem::take(&mut st.pending))
    }
}

/// One wake-up signal per background worker.
#[derive(Default)]
pub struct Wakes {
    /// Commits, deletes and purges that superseded or freed chunks.
    pub collector: Arc<Signal>,
    /// A read found a bad shard, or a node came back.
    pub repair: Arc<Signal>,
    /// A node came back empty (automatic recovery).
    pub recovery: Arc<Signal>,
    /// An explicit request for a node probe.
    pub health: Arc<Signal>,
    /// An explicit request for a background scrub.
    pub scrub: Arc<Signal>,
    /// An explicit request for another orphan sweep.
    pub sweep: Arc<Signal>,
    /// An explicit request for a metadata snapshot in the background.
    pub snapshot: Arc<Signal>,
    /// Journal records piled up: write them out without waiting.
    pub journal: Arc<Signal>,
    /// An explicit request for a segment cleaning pass.
    pub segments: Arc<Signal>,
}

impl Wakes {
    /// Close every signal (shutdown): each worker ends after its step.
    pub fn close_all(&self) {
        for s in [
            &self.collector,
            &self.repair,
            &self.recovery,
            &self.health,
            &self.scrub,
            &self.sweep,
            &self.snapshot,
            &self.journal,
            &self.segments,
        ] {
            s.close();
        }
    }
}

/// The live status of one worker: written by its thread, read by reports.
pub struct WorkerStatus {
    report: Mutex<WorkerReport>,
}

impl WorkerStatus {
    pub fn new(name: &str) -> WorkerStatus {
        WorkerStatus {
            report: Mutex::new(WorkerReport::new(name, WorkerState::Idle, "starting")),
        }
    }

    /// What the worker is doing now (or found last).
    pub fn doing(&self, what: impl Into<String>) {
        self.report.lock().doing = what.into();
    }

    /// Items known to be waiting.
    pub fn set_queue(&self, queue: u64) {
        self.report.lock().queue = queue;
    }

    /// Count finished items.
    pub fn add_done(&self, items: u64) {
        self.report.lock().done += items;
    }

    pub fn set_state(&self, state: WorkerState) {
        self.report.lock().state = state;
    }

    /// A step ended, with its error if it failed.
    pub fn step_ended(&self, error: Option<String>) {
        let now = format_iso8601_utc(SystemTime::now());
        let mut r = self.report.lock();
        r.runs += 1;
        r.state = WorkerState::Idle;
        if let Some(e) = error {
            r.last_error = Some(e);
            r.last_error_at = Some(now.clone());
        }
        r.last_run = Some(now);
    }

    pub fn snapshot(&self) -> WorkerReport {
        self.report.lock().clone()
    }
}

/// Where the running workers publish their status.
#[derive(Default)]
pub struct WorkerBoard {
    workers: Mutex<Vec<Arc<WorkerStatus>>>,
}

impl WorkerBoard {
    /// Add a worker's status (in start order).
    pub fn publish(&self, status: Arc<WorkerStatus>) {
        self.workers.lock().push(status);
    }

    pub fn report(&self) -> WorkersReport {
        WorkersReport {
            workers: self.workers.lock().iter().map(|w| w.snapshot()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_notifications_is_one_wake_up() {
        let signal = Signal::default();
        for _ in 0..1000 {
            signal.notify();
        }
        assert_eq!(
            signal.wait(Some(Duration::from_secs(5)), Duration::ZERO),
            Woken::Notified(1000)
        );
        assert!(!signal.is_pending());
        assert_eq!(
            signal.wait(Some(Duration::from_millis(20)), Duration::ZERO),
            Woken::Interval
        );
    }

    #[test]
    fn notifications_during_the_settle_time_join_the_wake_up() {
        let signal = Arc::new(Signal::default());
        let s = signal.clone();
        let notifier = std::thread::spawn(move || {
            for _ in 0..10 {
                s.notify();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let woken = signal.wait(None, Duration::from_millis(300));
        notifier.join().unwrap();
        assert_eq!(woken, Woken::Notified(10));
    }

    #[test]
    fn closing_releases_a_waiter_for_good() {
        let signal = Arc::new(Signal::default());
        let s = signal.clone();
        let waiter = std::thread::spawn(move || s.wait(None, Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(20));
        signal.close();
        assert_eq!(waiter.join().unwrap(), Woken::Closed);
        signal.notify();
        assert_eq!(signal.wait(None, Duration::ZERO), Woken::Closed);
    }
}
