//! The upload pipeline, shared by writes through the mount and API PUTs: the
//! write-buffer memory budget, the pool of uploader threads that encode and
//! store full chunks while writers go on, and spilling under pressure (a
//! writer that finds the budget spent asks idle writers to upload their
//! buffers, then waits for room).
//!
//! A stored chunk comes back as an `UncommittedChunk`: its shards go away
//! unless a commit keeps them. An API PUT owns its chunks one by one
//! (`StoredChunk`); an open file shares each of its uploads (`Upload`) between
//! its state, its readers and its commit, and the shards go when the last of
//! them lets go. The uploader thread hands its result over a channel and keeps
//! no reference, so the waiter that drops a discarded chunk last deletes its
//! shards before it returns.

use crossbeam_channel::{bounded, Receiver};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use super::budget::{Budget, Permit};
use super::context::Context;
use super::pool::WorkerPool;
use super::read::Pins;
use super::uncommitted::UncommittedChunk;
use crate::chunk::{ChunkStore, WrittenChunk};
use crate::error::{Error, Result};

/// Threads encoding and storing chunks.
const UPLOAD_THREADS: usize = 4;
/// How long a writer waits for budget before spilling idle buffers again.
const SPILL_EVERY: Duration = Duration::from_millis(50);

pub(crate) struct UploadPipeline {
    budget: Arc<Budget>,
    pool: WorkerPool,
    store: Arc<ChunkStore>,
    pins: Arc<Pins>,
    chunk_size: u64,
}

impl UploadPipeline {
    pub fn new(ctx: &Context) -> UploadPipeline {
        UploadPipeline {
            budget: Budget::new(ctx.config.mount.memory_budget),
            pool: WorkerPool::new("upload", UPLOAD_THREADS),
            store: ctx.store.clone(),
            pins: ctx.pins.clone(),
            chunk_size: ctx.chunk_size,
        }
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// A chunk's worth of budget, if there is room now.
    pub fn try_reserve(&self) -> Option<Permit> {
        self.budget.try_acquire(self.chunk_size)
    }

    /// Wait for a chunk's worth of budget. Each time the wait runs long,
    /// `spill_idle` is called to start uploads of idle buffers (whose permits
    /// return once their bytes are stored).
    pub fn reserve(&self, spill_idle: &dyn Fn()) -> Permit {
        loop {
            if let Some(p) = self.budget.acquire_timeout(self.chunk_size, SPILL_EVERY) {
                return p;
            }
            spill_idle();
        }
    }

    /// Encode and store `data` in the background. The permit is held until
    /// the bytes are stored.
    pub fn submit(&self, data: Vec<u8>, permit: Permit) -> StoredChunk {
        let (tx, rx) = bounded(1);
        let (store, pins) = (self.store.clone(), self.pins.clone());
        self.pool.execute(move || {
            let result = match store.write_chunk(data) {
                Ok(written) => Ok(UncommittedChunk::new(written, store, &pins)),
                Err(e) => Err(UploadError {
                    no_space: e.is_no_space(),
                    message: e.to_string(),
                }),
            };
            drop(permit);
            // Nobody waiting: the result drops here, shards and all.
            let _ = tx.send(result);
        });
        StoredChunk(rx)
    }
}

/// Why an upload failed, kept so every waiter gets the same error.
#[derive(Debug, Clone)]
struct UploadError {
    message: String,
    no_space: bool,
}

impl UploadError {
    fn to_error(&self) -> Error {
        if self.no_space {
            Error::NoSpace(self.message.clone())
        } else {
            Error::Unavailable(self.message.clone())
        }
    }
}

type UploadResult = std::result::Result<UncommittedChunk, UploadError>;

fn received(r: std::result::Result<UploadResult, crossbeam_channel::RecvError>) -> UploadResult {
    r.unwrap_or_else(|_| {
        Err(UploadError {
            message: "the uploader stopped".into(),
            no_space: false,
        })
    })
}

/// One chunk being stored for a single owner (an API PUT).
#[must_use = "wait for the chunk; dropping it deletes its shards once stored"]
pub(crate) struct StoredChunk(Receiver<UploadResult>);

impl StoredChunk {
    pub fn wait(self) -> Result<UncommittedChunk> {
        received(self.0.recv()).map_err(|e| e.to_error())
    }
}

/// One chunk being stored for an open file, shared by the file's state, its
/// readers and its commit.
pub(crate) struct Upload {
    state: Mutex<UploadState>,
    /// File bytes in the chunk.
    data_len: u64,
}

enum UploadState {
    Running(Receiver<UploadResult>),
    Done(UploadResult),
}

impl Upload {
    /// The upload of a chunk of `data_len` file bytes.
    pub fn new(chunk: StoredChunk, data_len: u64) -> Arc<Upload> {
        Arc::new(Upload {
            state: Mutex::new(UploadState::Running(chunk.0)),
            data_len,
        })
    }

    /// File bytes in the chunk (known before it is stored).
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Wait until the chunk is stored; its layout and placement. Waiters of
    /// one upload queue on its own slot, nothing else.
    pub fn wait(&self) -> Result<WrittenChunk> {
        match &*self.finished() {
            UploadState::Done(Ok(chunk)) => Ok(chunk.written().clone()),
            UploadState::Done(Err(e)) => Err(e.to_error()),
            UploadState::Running(_) => unreachable!("finished"),
        }
    }

    /// The metadata now references this chunk: keep its shards.
    pub fn mark_committed(&self) {
        if let UploadState::Done(Ok(chunk)) = &*self.finished() {
            chunk.mark_committed();
        }
    }

    fn finished(&self) -> parking_lot::MutexGuard<'_, UploadState> {
        let mut state = self.state.lock();
        if let UploadState::Running(rx) = &*state {
            let result = received(rx.recv());
            *state = UploadState::Done(result);
        }
        state
    }
}
