//! The state every part of the file service shares, held in one `Arc`: the
//! configuration, the metadata store, the chunk store, metrics, the chunk
//! cache and the pins that keep chunks in use from collection, one wake-up
//! signal per background worker and the board of their statuses, the
//! shutdown flag and the observers told about changes made outside the
//! mount. The background workers (`crate::maint`) reach all of it through
//! this struct without going through the `Service` facade.
//!
//! It owns no open files, handles, buffers or threads: those belong to the
//! handle table, the writer and the upload pipeline.

use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use super::cache::ChunkCache;
use super::read::Pins;
use super::wake::{Wakes, WorkerBoard};
use crate::chunk::{ChunkStore, NodeState};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::journal::JournalWriter;
use crate::meta::{Inode, Meta};
use crate::metrics::Metrics;
use crate::node::NodeBackend;
use crate::snapshot::SnapshotBook;
use crate::store_lock::StoreLock;

use super::ownership;

/// A change made through the object API that the mount must learn about.
#[derive(Debug, Clone)]
pub enum Change {
    /// Content or attributes of an inode changed.
    Inode(u64),
    /// A name appeared or disappeared in a directory.
    Entry { parent: u64, name: Vec<u8> },
}

/// Something that wants to hear about changes made outside the mount.
pub trait ChangeObserver: Send + Sync {
    fn changed(&self, change: &Change);
}

pub(crate) struct Context {
    pub(crate) config: Arc<Config>,
    pub(crate) meta: Meta,
    pub(crate) store: Arc<ChunkStore>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) chunk_size: u64,
    /// Whole decoded chunks, by chunk id.
    pub(crate) cache: Arc<ChunkCache>,
    /// Chunks being read or not yet committed: collection skips them.
    pub(crate) pins: Arc<Pins>,
    /// One wake-up signal per background worker.
    pub(crate) wake: Wakes,
    /// The status each running worker publishes.
    pub(crate) workers: WorkerBoard,
    shutting_down: AtomicBool,
    /// When this service started (orphan sweeps spare younger shard files).
    pub(crate) started: SystemTime,
    /// Node recoveries run one at a time.
    pub(crate) recovery_lock: Mutex<()>,
    observers: RwLock<Vec<Arc<dyn ChangeObserver>>>,
    /// The newest metadata snapshot on the nodes, as last seen.
    pub(crate) snapshots: SnapshotBook,
    /// Appends every metadata transaction to the journal on the nodes.
    pub(crate) journal: Arc<JournalWriter>,
    /// Why the journal on the nodes does not continue this database: a
    /// snapshot is taken before the daemon serves.
    /// Cleared by the first snapshot taken (until then `ctl health` says
    /// the store is degraded).
    pub(crate) snapshot_needed: Mutex<Option<String>>,
    /// The metadata was restored from a snapshot (this start, or an earlier
    /// one with `fsck --rebuild` not run since): the orphan sweep is
    /// skipped, so shards of files written after it stay on the nodes.
    pub(crate) restored_from_snapshot: bool,
    /// This process's lock on the metadata database: one daemon per store.
    _metadata_lock: StoreLock,
}

impl Context {
    /// Lock the metadata database, then open the store over `nodes` (see
    /// `open_locked`).
    pub fn open(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        nodes: Vec<Arc<dyn NodeBackend>>,
    ) -> Result<Context> {
        let metadata_lock = ownership::lock_metadata(&config)?;
        Self::open_locked(config, metrics, metadata_lock, nodes)
    }

    /// Open the metadata and the chunk store over `nodes` (initialized on
    /// first start, probed always) and purge inodes that lost their last
    /// name while open before a crash. The caller holds the metadata lock
    /// (kept for the context's life) and the locks of local node folders.
    pub fn open_locked(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        metadata_lock: StoreLock,
        nodes: Vec<Arc<dyn NodeBackend>>,
    ) -> Result<Context> {
        let restored = crate::snapshot::restore::restore_at_start(&config, &nodes)?;
        let snapshot_needed = match &restored {
            // A fresh snapshot of what was rebuilt puts m+1 copies of it on
            // the nodes at once and anchors the journal (past a gap too).
            Some(_) => Some("the database was rebuilt from the nodes".to_string()),
            None => crate::snapshot::restore::catch_up_at_start(&config, &nodes)?,
        };
        let node_ids = nodes.iter().map(|n| n.id().to_string()).collect();
        let (meta, cluster_id, created) = Meta::open(
            &config.metadata.path,
            node_ids,
            config.cluster.id.as_deref(),
            || ownership::confirm_new_database(&config, &nodes),
        )?;
        let store = Arc::new(
            ChunkStore::new(nodes, &cluster_id, config.k(), config.m(), metrics.clone())?
                .with_node_timeout(config.node_timeout()),
        );
        for i in 0..store.nodes().len() {
            // First start: every folder is new. Later, a missing or empty
            // folder is a failed node until it is recovered.
            if created {
                if let Err(e) = store.initialize_node(i) {
                    let node = &store.nodes()[i];
                    log::warn!(
                        "cannot initialize node {} at {}: {e}",
                        node.id(),
                        node.location()
                    );
                }
            }
            store.probe_node(i);
        }
        let mut ctx = Context::new(config, meta, store, metrics, metadata_lock);
        // Restored now with a gap in the journal, or earlier with `fsck
        // --rebuild` not run since.
        // A restore that applied the whole journal lost nothing: the sweep
        // stays on (shards it finds unreferenced were never acknowledged).
        ctx.restored_from_snapshot = restored.is_some_and(|r| !r.complete())
            || crate::snapshot::restore::restored_marker(&ctx.config.metadata.path).exists();
        *ctx.snapshot_needed.get_mut() = snapshot_needed;
        // Inodes that lost their last name while open before a crash.
        for ino in ctx.meta.unlinked_inodes()? {
            ctx.meta.purge(ino)?;
        }
        Ok(ctx)
    }

    fn new(
        config: Arc<Config>,
        meta: Meta,
        store: Arc<ChunkStore>,
        metrics: Arc<Metrics>,
        metadata_lock: StoreLock,
    ) -> Context {
        let chunk_size = config.chunk_size();
        let cache_bytes = (config.mount.memory_budget / 2).max(chunk_size * 2);
        let wake = Wakes::default();
        // A shard a read found bad is queued for repair: wake the repair worker.
        let repair = wake.repair.clone();
        store.on_bad_shard(Box::new(move || repair.notify()));
        let (snapshot, backlog) = (wake.snapshot.clone(), wake.journal.clone());
        let journal = Arc::new(JournalWriter::new(
            meta.journal_records(),
            store.clone(),
            Box::new(move || snapshot.notify()),
            Box::new(move || backlog.notify()),
        ));
        meta.attach_journal(journal.clone());
        Context {
            journal,
            snapshot_needed: Mutex::new(None),
            meta,
            store,
            metrics,
            chunk_size,
            cache: Arc::new(ChunkCache::new(cache_bytes)),
            pins: Arc::new(Pins::default()),
            wake,
            workers: WorkerBoard::default(),
            shutting_down: AtomicBool::new(false),
            started: SystemTime::now(),
            recovery_lock: Mutex::new(()),
            observers: RwLock::new(Vec::new()),
            snapshots: SnapshotBook::default(),
            restored_from_snapshot: false,
            _metadata_lock: metadata_lock,
            config,
        }
    }

    /// Committed attributes of an inode (no open-file overlay).
    pub fn committed_inode(&self, ino: u64) -> Result<Inode> {
        self.meta
            .get_inode(ino)?
            .ok_or_else(|| Error::NotFound(format!("inode {ino}")))
    }

    /// Probe every node now (folder, identity, writability); a node that
    /// came back wakes the repair worker, which rebuilds what it missed.
    pub fn probe_nodes(&self) {
        let changed = self.store.probe_all();
        if changed.iter().any(|(_, s)| *s == NodeState::Up) {
            self.wake.repair.notify();
        }
    }

    /// Stop taking background work: every worker ends after its step.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.wake.close_all();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn add_observer(&self, observer: Arc<dyn ChangeObserver>) {
        self.observers.write().push(observer);
    }

    pub fn notify(&self, changes: &[Change]) {
        let observers = self.observers.read();
        for change in changes {
            for o in observers.iter() {
                o.changed(change);
            }
        }
    }
}
