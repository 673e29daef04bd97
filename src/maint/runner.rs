//! The runner: one named thread per worker, each looping "wait for work,
//! run one step, publish the outcome" until the service shuts down (which
//! closes every wake-up signal) or the worker says it is done. A step that
//! fails or panics is recorded as the worker's last error; the thread goes
//! on. The runner owns the threads and nothing else: what a step does is
//! the worker's business, and statuses live on the context's board.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Step, Worker};
use crate::report::WorkerState;
use crate::service::wake::{Signal, Woken, WorkerStatus};
use crate::service::Context;

/// The running workers' threads.
pub struct Workers {
    ctx: Arc<Context>,
    threads: Vec<(&'static str, JoinHandle<()>)>,
    /// Each worker's wake-up, closed by `stop`.
    signals: Vec<Arc<Signal>>,
}

impl Workers {
    /// Publish each worker's status and start its thread.
    pub(crate) fn start(ctx: &Arc<Context>, workers: Vec<Box<dyn Worker>>) -> Workers {
        let mut threads = Vec::new();
        let mut signals = Vec::new();
        for worker in workers {
            let name = worker.name();
            signals.push(worker.wake_on().signal);
            let status = Arc::new(WorkerStatus::new(name));
            status.doing(worker.first_status());
            ctx.workers.publish(status.clone());
            let thread_ctx = ctx.clone();
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || drive(&thread_ctx, worker, &status))
                .unwrap_or_else(|e| panic!("cannot start the {name} worker thread: {e}"));
            threads.push((name, handle));
        }
        Workers {
            ctx: ctx.clone(),
            threads,
            signals,
        }
    }

    /// Names of the workers whose thread is still running.
    pub fn running(&self) -> Vec<&'static str> {
        self.threads
            .iter()
            .filter(|(_, t)| !t.is_finished())
            .map(|(name, _)| *name)
            .collect()
    }

    /// Shut the workers down (the service stops taking background work) and
    /// wait up to `grace` for each to finish its step. Returns the names of
    /// those still busy when the time ran out (their threads are left to end
    /// on their own).
    pub fn stop(self, grace: Duration) -> Vec<&'static str> {
        self.ctx.begin_shutdown();
        for signal in &self.signals {
            signal.close();
        }
        let deadline = Instant::now() + grace;
        while !self.running().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut busy = Vec::new();
        for (name, thread) in self.threads {
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                busy.push(name);
            }
        }
        busy
    }
}

/// A worker's thread: wait, step, publish, until shutdown or done.
fn drive(ctx: &Context, mut worker: Box<dyn Worker>, status: &WorkerStatus) {
    let wake = worker.wake_on();
    let mut ready = wake.at_start;
    loop {
        if !ready && wake.signal.wait(wake.every, wake.settle) == Woken::Closed {
            break;
        }
        if ctx.is_shutting_down() {
            break;
        }
        status.set_state(WorkerState::Running);
        let outcome = catch_unwind(AssertUnwindSafe(|| worker.step(status)));
        let (step, error) = match outcome {
            Ok(Ok(step)) => (step, None),
            Ok(Err(e)) => (Step::Idle, Some(e.to_string())),
            Err(panic) => (
                Step::Idle,
                Some(format!("panicked: {}", panic_text(&panic))),
            ),
        };
        if let Some(e) = &error {
            crate::warn_limited!(worker.name(), "{}: {e}", worker.name());
        }
        status.step_ended(error);
        match step {
            Step::More => ready = true,
            Step::Idle => ready = false,
            Step::Done => break,
        }
    }
    status.set_state(WorkerState::Stopped);
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::{Error, Result};
    use crate::maint::WakeOn;
    use crate::metrics::Metrics;
    use crate::node::{MemoryNode, NodeBackend};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A context over three in-memory nodes (metadata in `dir`).
    fn context(dir: &std::path::Path) -> Arc<Context> {
        let config = Config::for_test(dir, &["a", "b", "c"], 2, 1, 64 * 1024);
        let nodes: Vec<Arc<dyn NodeBackend>> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, r)| Arc::new(MemoryNode::new(&format!("node-{}", i + 1), r)) as _)
            .collect();
        Arc::new(Context::open(Arc::new(config), Metrics::new(None), nodes).unwrap())
    }

    /// Counts its steps; the first `busy` steps report more work queued,
    /// the step numbered `fail_at` fails and `panic_at` panics.
    struct Counter {
        signal: Arc<Signal>,
        steps: Arc<AtomicU64>,
        busy: u64,
        fail_at: u64,
        panic_at: u64,
    }

    impl Worker for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }

        fn wake_on(&self) -> WakeOn {
            WakeOn::signal(&self.signal)
        }

        fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
            let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
            status.add_done(1);
            if n == self.fail_at {
                return Err(Error::Other("step failed".into()));
            }
            if n == self.panic_at {
                panic!("step panicked");
            }
            Ok(if n <= self.busy {
                Step::More
            } else {
                Step::Idle
            })
        }
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_worker_runs_when_woken_goes_on_after_errors_and_stops_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let signal = Arc::new(Signal::default());
        let steps = Arc::new(AtomicU64::new(0));
        let counter = Counter {
            signal: signal.clone(),
            steps: steps.clone(),
            busy: 2,
            fail_at: 4,
            panic_at: 5,
        };
        let workers = Workers::start(&ctx, vec![Box::new(counter)]);
        let status = || ctx.workers.report().workers[0].clone();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(steps.load(Ordering::SeqCst), 0, "no step before a wake-up");
        assert_eq!(status().state, WorkerState::Idle);
        assert_eq!(status().doing, "waiting for work");

        // One wake-up: a step, then the two it said were queued.
        signal.notify();
        wait_for("three steps", || status().runs == 3);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(steps.load(Ordering::SeqCst), 3, "idle after the queue");
        assert!(status().last_run.is_some());

        // A failing step and a panicking one are recorded; the thread lives.
        signal.notify();
        wait_for("the failed step", || status().runs == 4);
        assert_eq!(status().last_error.as_deref(), Some("step failed"));
        assert!(status().last_error_at.is_some());
        signal.notify();
        wait_for("the panicked step", || status().runs == 5);
        assert_eq!(
            status().last_error.as_deref(),
            Some("panicked: step panicked")
        );
        signal.notify();
        wait_for("a step after the panic", || status().runs == 6);
        assert_eq!(status().done, 6);
        assert_eq!(workers.running(), vec!["counter"]);

        assert!(workers.stop(Duration::from_secs(10)).is_empty());
        assert!(ctx.is_shutting_down());
        assert_eq!(status().state, WorkerState::Stopped);
    }
}
