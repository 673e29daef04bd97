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
use crate::chunk::shard::{next_stamp, ShardOrigin, ORIGIN_NAME_MAX};
use crate::chunk::{ChunkStore, WrittenChunk};
use crate::error::{Error, Result};
use crate::meta::ROOT_INO;

/// Threads encoding and storing chunks.
const UPLOAD_THREADS: usize = 4;
/// How long a writer waits for budget before spilling idle buffers again.
const SPILL_EVERY: Duration = Duration::from_millis(50);

/// Which file a chunk belongs to, for its shard headers' origin
/// (`crate::chunk::shard`): what `fsck --rebuild` needs without metadata.
pub(crate) struct ChunkSource {
    /// 0 when the file has no inode yet (an API PUT).
    pub ino: u64,
    pub index: u64,
    /// The file's size as the writer knows it now.
    pub size: u64,
    /// The file's name when the writer knows it (an object key); else the
    /// uploader looks up the inode's path.
    pub name: Option<String>,
}

pub(crate) struct UploadPipeline {
    ctx: Arc<Context>,
    budget: Arc<Budget>,
    pool: WorkerPool,
    store: Arc<ChunkStore>,
    pins: Arc<Pins>,
    chunk_size: u64,
}

impl UploadPipeline {
    pub fn new(ctx: &Arc<Context>) -> UploadPipeline {
        UploadPipeline {
            ctx: ctx.clone(),
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
    /// the bytes are stored. The chunk's stamp is taken now, so chunks
    /// handed over later carry larger stamps.
    pub fn submit(&self, data: Vec<u8>, permit: Permit, source: ChunkSource) -> StoredChunk {
        let (tx, rx) = bounded(1);
        let (store, pins) = (self.store.clone(), self.pins.clone());
        let stamp = next_stamp();
        let ctx = self.ctx.clone();
        self.pool.execute(move || {
            let name = match source.name {
                Some(name) => name,
                None => last_known_path(&ctx, source.ino),
            };
            let origin = ShardOrigin::new(source.ino, stamp, source.index, source.size, &name);
            let result = match store.write_chunk(data, origin) {
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

/// The path of `ino` from the root through one of its names, as far as a
/// shard header keeps it ("" when it has none). A few indexed reads, on an
/// uploader thread: off the writer's path.
fn last_known_path(ctx: &Context, ino: u64) -> String {
    let mut parts: Vec<String> = Vec::new();
    let (mut at, mut len) = (ino, 0);
    while at != ROOT_INO && len <= ORIGIN_NAME_MAX && parts.len() < 64 {
        match ctx.meta.parent_of(at) {
            Ok(Some((parent, name))) => {
                let name = String::from_utf8_lossy(&name).into_owned();
                len += name.len() + 1;
                parts.push(name);
                at = parent;
            }
            _ => break,
        }
    }
    if at != ROOT_INO {
        // Too deep to keep whole, or unnamed: keep the file's own name.
        parts.truncate(1);
    }
    parts.reverse();
    parts.join("/")
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
