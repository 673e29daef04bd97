//! A fixed set of named threads running boxed jobs from one queue: the
//! uploader pool (encode and store chunks) and the read-ahead pool use it, so
//! no request ever spawns a thread of its own. Callers bound what they queue
//! (the write budget, the read-ahead in-flight set); the pool does not.
//! Dropping the pool closes the queue: the threads finish what is queued and
//! exit.

use crossbeam_channel::{unbounded, Sender};

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct WorkerPool {
    jobs: Sender<Job>,
}

impl WorkerPool {
    /// Start `threads` threads named `{name}-{i}`.
    pub fn new(name: &str, threads: usize) -> WorkerPool {
        let (tx, rx) = unbounded::<Job>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .expect("spawn pool thread");
        }
        WorkerPool { jobs: tx }
    }

    /// Queue `job`; runs it on the calling thread if the pool is gone.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        if let Err(e) = self.jobs.send(Box::new(job)) {
            (e.0)();
        }
    }
}
