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
use crate::service::wake::{Woken, WorkerStatus};
use crate::service::Context;

/// The running workers' threads.
pub struct Workers {
    ctx: Arc<Context>,
    threads: Vec<(&'static str, JoinHandle<()>)>,
}

impl Workers {
    /// Publish each worker's status and start its thread.
    pub(crate) fn start(ctx: &Arc<Context>, workers: Vec<Box<dyn Worker>>) -> Workers {
        let mut threads = Vec::new();
        for worker in workers {
            let name = worker.name();
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
            log::warn!("{}: {e}", worker.name());
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
