//! The file service: the one place every front end calls. Owns the rules about
//! files: key validation, namespace operations, open files and their write
//! buffers, commits (new chunks become visible in one metadata transaction,
//! after their shards are durable), versions and checksums, the background
//! workers (chunk collection, repair, health checks, scrub, recovery) and the
//! change notifications that keep the mount and the HTTP view in step. It
//! speaks `Error`, never errno or HTTP status.

mod budget;
mod cache;
mod file;
mod keys;
mod maintenance;
pub mod posix;

pub use budget::Budget;
pub use file::OpenFlags;
pub use keys::{parse_key, validate_name, MAX_KEY_LEN, MAX_NAME_LEN};
pub use maintenance::{Progress, RecoveryReport, ScrubProblem, ScrubReport};

use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::chunk::{ChunkStore, NodeState, WrittenChunk};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::meta::{
    now_nanos, AttrChange, ChunkRecord, FileCommit, Inode, Kind, Meta, RenameMode, ShardState,
    ROOT_INO,
};
use crate::metrics::Metrics;
use crate::node::{LocalDirNode, NodeBackend};
use cache::ChunkCache;
use file::OpenFile;

/// Chunks read ahead at once, across all readers (each is a chunk of memory).
const MAX_PREFETCH: usize = 4;

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

/// One shard's placement and health, for `info` and the placement xattr.
#[derive(Debug, Clone, Serialize)]
pub struct ShardInfo {
    pub index: usize,
    pub node: Option<String>,
    pub region: Option<String>,
    pub state: String,
    pub healthy: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkInfo {
    pub index: u64,
    pub chunk_id: String,
    pub len: u64,
    pub k: u16,
    pub m: u16,
    pub shards: Vec<ShardInfo>,
}

/// An object's metadata, as the API and `ctl info` show it.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: String,
    pub inode: Inode,
    pub chunks: Vec<ChunkRecord>,
}

/// A consistent view of one version of a file for streaming reads: the chunk
/// list is captured once, and its chunks are pinned against collection.
pub struct Snapshot {
    pub inode: Inode,
    chunks: BTreeMap<u64, ChunkRecord>,
    service: Arc<Service>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut pins = self.service.pinned.lock();
        for c in self.chunks.values() {
            if let Some(n) = pins.get_mut(&c.layout.chunk_id) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(&c.layout.chunk_id);
                }
            }
        }
    }
}

impl Snapshot {
    /// Read `len` bytes at `offset` of this version (short at end of file).
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = (offset + len as u64).min(self.inode.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let cs = self.service.chunk_size;
        let mut pos = offset;
        while pos < end {
            let idx = pos / cs;
            let in_off = pos % cs;
            let n = (cs - in_off).min(end - pos) as usize;
            let piece = match self.chunks.get(&idx) {
                Some(rec) => self.service.read_committed_piece(rec, in_off, n, true)?,
                None => Vec::new(),
            };
            out.extend_from_slice(&piece);
            out.resize(out.len() + (n - piece.len()), 0);
            pos += n as u64;
        }
        Ok(out)
    }
}

/// Statistics for `df`.
#[derive(Debug, Clone, Copy)]
pub struct FsStats {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub files: u64,
}

pub struct Service {
    pub config: Arc<Config>,
    pub meta: Meta,
    pub store: Arc<ChunkStore>,
    pub metrics: Arc<Metrics>,
    pub chunk_size: u64,
    open_files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
    budget: Arc<Budget>,
    uploads: file::Uploader,
    cache: ChunkCache,
    prefetching: Mutex<std::collections::HashSet<u64>>,
    pinned: Mutex<HashMap<u64, usize>>,
    observers: RwLock<Vec<Arc<dyn ChangeObserver>>>,
    wake: (Mutex<bool>, Condvar),
    shutting_down: AtomicBool,
    started: SystemTime,
    recovery_lock: Mutex<()>,
}

#[derive(Debug, Clone, Copy)]
struct Handle {
    ino: u64,
    flags: OpenFlags,
    last_read_end: u64,
    /// `failed_commits` of the file as this handle last reported it.
    seen_failures: u64,
}

impl Service {
    /// Open the store described by `config`: metadata, nodes (initialized
    /// on first start), chunk store.
    pub fn open(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<Arc<Service>> {
        let nodes: Vec<Arc<dyn NodeBackend>> = config
            .nodes
            .iter()
            .map(|n| {
                Arc::new(LocalDirNode::new(&n.id, &n.region, &n.storage_path))
                    as Arc<dyn NodeBackend>
            })
            .collect();
        Self::open_with_nodes(config, metrics, nodes)
    }

    /// Open with explicit node backends (tests use in-memory doubles).
    pub fn open_with_nodes(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        nodes: Vec<Arc<dyn NodeBackend>>,
    ) -> Result<Arc<Service>> {
        let node_ids = nodes.iter().map(|n| n.id().to_string()).collect();
        let (meta, cluster_id, created) = Meta::open(
            &config.metadata.path,
            node_ids,
            config.cluster.id.as_deref(),
        )?;
        let store = Arc::new(ChunkStore::new(
            nodes,
            &cluster_id,
            config.k(),
            config.m(),
            metrics.clone(),
        )?);
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
        let chunk_size = config.chunk_size();
        let budget = Budget::new(config.mount.memory_budget);
        let cache_bytes = (config.mount.memory_budget / 2).max(chunk_size * 2);
        let service = Arc::new(Service {
            meta,
            store,
            metrics,
            chunk_size,
            open_files: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            budget,
            uploads: file::Uploader::new(4),
            cache: ChunkCache::new(cache_bytes),
            prefetching: Mutex::new(Default::default()),
            pinned: Mutex::new(HashMap::new()),
            observers: RwLock::new(Vec::new()),
            wake: (Mutex::new(false), Condvar::new()),
            shutting_down: AtomicBool::new(false),
            started: SystemTime::now(),
            recovery_lock: Mutex::new(()),
            config,
        });
        // Inodes that lost their last name while open before a crash.
        for ino in service.meta.unlinked_inodes()? {
            service.meta.purge(ino)?;
        }
        Ok(service)
    }

    pub fn add_observer(&self, observer: Arc<dyn ChangeObserver>) {
        self.observers.write().push(observer);
    }

    fn notify(&self, changes: &[Change]) {
        let observers = self.observers.read();
        for change in changes {
            for o in observers.iter() {
                o.changed(change);
            }
        }
    }

    /// Wake the background workers (collection, repair).
    pub fn wake_workers(&self) {
        let (lock, cv) = &self.wake;
        *lock.lock() = true;
        cv.notify_all();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    // ---------------------------------------------------------------- keys

    /// Resolve an object key to its inode (any kind).
    pub fn resolve_key(&self, key: &str) -> Result<Option<Inode>> {
        let parts = parse_key(key)?;
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        match self.meta.resolve(&parts) {
            Err(Error::NotADirectory(_)) => {
                Err(Error::NotADirectory(format!("{key}: a parent is a file")))
            }
            other => other,
        }
    }

    /// The key of an inode (walking up its first name).
    pub fn key_of(&self, mut ino: u64) -> Result<String> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        while ino != ROOT_INO {
            let (parent, name) = self
                .meta
                .parent_of(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino} has no name")))?;
            parts.push(name);
            ino = parent;
            if parts.len() > 4096 {
                return Err(Error::Other("directory loop".into()));
            }
        }
        parts.reverse();
        Ok(parts
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join("/"))
    }

    // ---------------------------------------------------------- object API

    /// Store an object from a stream. Memory stays bounded (a few chunks);
    /// nothing becomes visible until every chunk is durable; a failing reader
    /// leaves no object and no shards behind.
    pub fn put_object(
        &self,
        key: &str,
        reader: &mut dyn Read,
        content_type: Option<&str>,
        max_size: Option<u64>,
    ) -> Result<Inode> {
        let parts = parse_key(key)?;
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        // Refuse early when the key names a directory or goes through a file.
        match self.meta.resolve(&parts) {
            Ok(Some(i)) if i.kind == Kind::Dir => return Err(Error::IsADirectory(key.to_string())),
            Ok(Some(i)) if i.kind != Kind::File => {
                return Err(Error::InvalidArgument(format!(
                    "{key} is not a regular file"
                )))
            }
            Err(Error::NotADirectory(_)) => {
                return Err(Error::NotADirectory(format!("{key}: a parent is a file")))
            }
            Err(e) => return Err(e),
            _ => {}
        }
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut written: Vec<(u64, WrittenChunk)> = Vec::new();
        let mut inflight: std::collections::VecDeque<(u64, Arc<file::Upload>)> = Default::default();
        let result = (|| -> Result<()> {
            let mut idx = 0u64;
            loop {
                // The permit is taken once the bytes are here: a client that
                // stalls mid-body must not hold write budget the mount needs.
                let mut buf = Vec::new();
                let n = read_full(reader, &mut buf, self.chunk_size as usize)?;
                if n == 0 {
                    break;
                }
                let permit = Some(self.acquire_permit(None));
                size += n as u64;
                if let Some(max) = max_size {
                    if size > max {
                        return Err(Error::TooLarge(format!(
                            "object exceeds the {max}-byte limit"
                        )));
                    }
                }
                hasher.update(&buf);
                inflight.push_back((idx, self.uploads.submit(self.store.clone(), buf, permit)));
                while inflight.len() >= 2 {
                    let (i, up) = inflight.pop_front().unwrap();
                    written.push((i, up.wait()?));
                }
                idx += 1;
                if n < self.chunk_size as usize {
                    break;
                }
            }
            while let Some((i, up)) = inflight.pop_front() {
                written.push((i, up.wait()?));
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (_, up) in inflight.drain(..) {
                if let Ok(w) = up.wait() {
                    written.push((0, w));
                }
            }
            for (_, w) in &written {
                self.store.delete_chunk(&w.layout, &w.placement);
            }
            return Err(e);
        }
        let now = now_nanos();
        let mut template = Inode::new(Kind::File, 0o644, 0, 0);
        template.ctime = now;
        let guessed = content_type.map(str::to_string).or_else(|| {
            mime_guess::from_path(key)
                .first()
                .map(|m| m.essence_str().to_string())
        });
        template.content_type = guessed.clone();
        let commit = FileCommit {
            ino: 0,
            chunks: written.clone(),
            removed: Vec::new(),
            drop_from: None,
            size,
            mtime: now,
            ctime: now,
            checksum: Some(hex::encode(hasher.finalize())),
            content_type: guessed,
        };
        let outcome = match self.meta.put_file(&parts, &template, commit) {
            Ok(r) => r,
            Err(e) => {
                for (_, w) in &written {
                    self.store.delete_chunk(&w.layout, &w.placement);
                }
                return Err(e);
            }
        };
        // Handles open in the mount now build on the new version (the PUT is
        // the later writer), never on a mix of old chunks and new ones.
        let open = self.open_files.lock().get(&outcome.inode.ino).cloned();
        if let Some(f) = open {
            self.rebase_open_file(&f, &outcome.inode);
        }
        let mut changes = vec![
            Change::Inode(outcome.inode.ino),
            Change::Entry {
                parent: outcome.entry.0,
                name: outcome.entry.1.clone(),
            },
        ];
        self.wake_workers();
        changes.extend(
            outcome
                .created
                .into_iter()
                .map(|(parent, name)| Change::Entry { parent, name }),
        );
        self.notify(&changes);
        Ok(outcome.inode)
    }

    /// Capture a version of a file for reading.
    pub fn snapshot(self: &Arc<Self>, ino: u64) -> Result<Snapshot> {
        for _ in 0..10 {
            let inode = self.getattr_committed(ino)?;
            if inode.kind == Kind::Dir {
                return Err(Error::IsADirectory(format!("inode {ino}")));
            }
            let chunks = self.meta.chunks_of(ino)?;
            {
                let mut pins = self.pinned.lock();
                for c in &chunks {
                    *pins.entry(c.layout.chunk_id).or_insert(0) += 1;
                }
            }
            let snap = Snapshot {
                inode,
                chunks: chunks.into_iter().map(|c| (c.idx, c)).collect(),
                service: self.clone(),
            };
            // A commit between reading the inode and pinning: try again.
            if self.getattr_committed(ino)?.version == snap.inode.version {
                return Ok(snap);
            }
        }
        Err(Error::Other("file keeps changing; try again".into()))
    }

    pub fn open_object(self: &Arc<Self>, key: &str) -> Result<Snapshot> {
        let inode = self
            .resolve_key(key)?
            .ok_or_else(|| Error::NotFound(key.to_string()))?;
        match inode.kind {
            Kind::File => self.snapshot(inode.ino),
            Kind::Dir => Err(Error::IsADirectory(key.to_string())),
            _ => Err(Error::InvalidArgument(format!(
                "{key} is not a regular file"
            ))),
        }
    }

    /// Delete an object; Ok(false) when it did not exist.
    pub fn delete_object(&self, key: &str) -> Result<bool> {
        let parts = parse_key(key)?;
        let (parent_parts, name) = parts.split_at(parts.len() - 1);
        let parent_parts: Vec<&[u8]> = parent_parts.iter().map(|p| p.as_bytes()).collect();
        let parent = match self.meta.resolve(&parent_parts) {
            Ok(Some(p)) if p.kind == Kind::Dir => p,
            Ok(_) | Err(Error::NotADirectory(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let name = name[0].as_bytes();
        match self.meta.lookup(parent.ino, name)? {
            None => return Ok(false),
            Some(i) if i.kind == Kind::Dir => return Err(Error::IsADirectory(key.to_string())),
            Some(_) => {}
        }
        let gone = self.meta.unlink(parent.ino, name)?;
        self.after_unlink(gone.ino, gone.nlink)?;
        self.notify(&[
            Change::Entry {
                parent: parent.ino,
                name: name.to_vec(),
            },
            Change::Inode(gone.ino),
        ]);
        Ok(true)
    }

    /// Keys of files under `prefix` (a plain string prefix of the key), sorted.
    /// Returns (keys, truncated).
    pub fn list_objects(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(Vec<String>, bool)> {
        // Start at the deepest directory the prefix names completely.
        let mut dir = ROOT_INO;
        let mut base = String::new();
        if let Some(pos) = prefix.rfind('/') {
            let dir_part = &prefix[..pos];
            if !dir_part.is_empty() {
                let parts: Vec<&[u8]> = dir_part.split('/').map(|p| p.as_bytes()).collect();
                match self.meta.resolve(&parts) {
                    Ok(Some(i)) if i.kind == Kind::Dir => {
                        dir = i.ino;
                        base = dir_part.to_string();
                    }
                    _ => return Ok((Vec::new(), false)),
                }
            }
        }
        let mut keys: Vec<String> = self
            .meta
            .all_files(dir, base.as_bytes())?
            .into_iter()
            .filter(|(_, i)| i.nlink > 0)
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .filter(|k| k.starts_with(prefix))
            .filter(|k| start_after.is_none_or(|s| k.as_str() > s))
            .collect();
        keys.sort();
        let truncated = match limit {
            Some(l) if keys.len() > l => {
                keys.truncate(l);
                true
            }
            _ => false,
        };
        Ok((keys, truncated))
    }

    /// Metadata, chunks and placement of a file. Computes the SHA-256 when
    /// it is not known yet (after random writes) and stores it.
    pub fn object_info(self: &Arc<Self>, key: &str) -> Result<ObjectInfo> {
        let inode = self
            .resolve_key(key)?
            .ok_or_else(|| Error::NotFound(key.to_string()))?;
        self.info_of(key.to_string(), inode)
    }

    pub fn info_of(self: &Arc<Self>, key: String, mut inode: Inode) -> Result<ObjectInfo> {
        if inode.kind == Kind::File && inode.checksum.is_none() {
            let snap = self.snapshot(inode.ino)?;
            let mut hasher = Sha256::new();
            let mut pos = 0;
            while pos < snap.inode.size {
                let piece = snap.read(pos, self.chunk_size as usize)?;
                hasher.update(&piece);
                pos += piece.len() as u64;
            }
            let sum = hex::encode(hasher.finalize());
            self.meta
                .set_checksum(inode.ino, snap.inode.version, &sum)?;
            inode = snap.inode.clone();
            inode.checksum = Some(sum);
        }
        let chunks = if inode.kind == Kind::File {
            self.meta.chunks_of(inode.ino)?
        } else {
            Vec::new()
        };
        Ok(ObjectInfo { key, inode, chunks })
    }

    /// Placement and health of each chunk, for humans and JSON.
    pub fn chunk_infos(&self, chunks: &[ChunkRecord]) -> Vec<ChunkInfo> {
        let status = self.store.node_status();
        chunks
            .iter()
            .map(|c| ChunkInfo {
                index: c.idx,
                chunk_id: format!("{:016x}", c.layout.chunk_id),
                len: c.layout.data_len,
                k: c.layout.k,
                m: c.layout.m,
                shards: c
                    .placement
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let node_up = p.map(|n| status[n].state == NodeState::Up).unwrap_or(false);
                        let state = if p.is_some() && !node_up && c.states[i] == ShardState::Ok {
                            "node-down".to_string()
                        } else {
                            c.states[i].as_str().to_string()
                        };
                        ShardInfo {
                            index: i,
                            node: p.map(|n| self.store.nodes()[n].id().to_string()),
                            region: p.map(|n| self.store.node_region(n).to_string()),
                            healthy: node_up && c.states[i] == ShardState::Ok,
                            state,
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    // ------------------------------------------------------- namespace API

    /// Attributes, including uncommitted size/times of a file open for writing.
    pub fn getattr(&self, ino: u64) -> Result<Inode> {
        let mut inode = self.getattr_committed(ino)?;
        let open = self.open_files.lock().get(&ino).cloned();
        if let Some(f) = open {
            f.overlay_attrs(&mut inode);
        }
        Ok(inode)
    }

    fn getattr_committed(&self, ino: u64) -> Result<Inode> {
        self.meta
            .get_inode(ino)?
            .ok_or_else(|| Error::NotFound(format!("inode {ino}")))
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Inode> {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong(String::from_utf8_lossy(name).into()));
        }
        let inode = self
            .meta
            .lookup(parent, name)?
            .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(name).into()))?;
        let open = self.open_files.lock().get(&inode.ino).cloned();
        let mut inode = inode;
        if let Some(f) = open {
            f.overlay_attrs(&mut inode);
        }
        Ok(inode)
    }

    /// Create a directory, file, symlink or special file. Applies setgid
    /// directory inheritance.
    #[allow(clippy::too_many_arguments)]
    pub fn make_node(
        &self,
        parent: u64,
        name: &[u8],
        kind: Kind,
        mode: u32,
        uid: u32,
        gid: u32,
        rdev: u32,
        target: Option<&[u8]>,
    ) -> Result<Inode> {
        validate_name(name)?;
        let dir = self.getattr_committed(parent)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotADirectory(format!("inode {parent}")));
        }
        let mut template = Inode::new(kind, mode, uid, gid);
        if dir.mode & libc::S_ISGID != 0 {
            template.gid = dir.gid;
            if kind == Kind::Dir {
                template.mode |= libc::S_ISGID;
            }
        }
        template.rdev = rdev;
        if let Some(t) = target {
            template.size = t.len() as u64;
            template.target = Some(t.to_vec());
        }
        self.meta.create(parent, name, &template)
    }

    /// Make every namespace change so far durable (fsync of a directory).
    pub fn sync_metadata(&self) -> Result<()> {
        self.meta.sync()
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let inode = self.getattr_committed(ino)?;
        inode
            .target
            .ok_or_else(|| Error::InvalidArgument("not a symbolic link".into()))
    }

    pub fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<Inode> {
        validate_name(new_name)?;
        let mut inode = self.meta.link(ino, new_parent, new_name)?;
        let open = self.open_files.lock().get(&ino).cloned();
        if let Some(f) = open {
            f.overlay_attrs(&mut inode);
        }
        Ok(inode)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        let gone = self.meta.unlink(parent, name)?;
        self.after_unlink(gone.ino, gone.nlink)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        if name == b"." {
            return Err(Error::InvalidArgument("cannot remove '.'".into()));
        }
        self.meta.rmdir(parent, name).map(|_| ())
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()> {
        validate_name(new_name)?;
        if let Some(lost) = self.meta.rename(parent, name, new_parent, new_name, mode)? {
            self.after_unlink(lost.ino, lost.nlink)?;
        }
        Ok(())
    }

    /// An inode lost a name: free it unless names or open handles remain.
    fn after_unlink(&self, ino: u64, nlink: u32) -> Result<()> {
        if nlink > 0 {
            return Ok(());
        }
        let open = self.open_files.lock().get(&ino).cloned();
        match open {
            Some(f) => f.mark_unlinked(),
            None => {
                self.meta.purge(ino)?;
                self.wake_workers();
            }
        }
        Ok(())
    }

    /// chmod/chown/utimens/truncate. `size` truncates or extends.
    pub fn setattr(&self, ino: u64, change: &AttrChange, size: Option<u64>) -> Result<Inode> {
        if let Some(size) = size {
            let inode = self.getattr_committed(ino)?;
            if inode.kind == Kind::Dir {
                return Err(Error::IsADirectory(format!("inode {ino}")));
            }
            if inode.kind != Kind::File {
                return Err(Error::InvalidArgument("truncate of a special file".into()));
            }
            self.truncate(ino, size)?;
        }
        let attrs_changed = change.mode.is_some()
            || change.uid.is_some()
            || change.gid.is_some()
            || change.atime.is_some()
            || change.mtime.is_some();
        if attrs_changed {
            let open = self.open_files.lock().get(&ino).cloned();
            if let (Some(f), Some(t)) = (&open, change.mtime) {
                f.set_mtime(t);
            }
            self.meta.set_attrs(ino, change)?;
        }
        self.getattr(ino)
    }

    pub fn list_dir(
        &self,
        ino: u64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Inode)>> {
        let dir = self.getattr_committed(ino)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotADirectory(format!("inode {ino}")));
        }
        self.meta.list_dir(ino, after, limit)
    }

    pub fn parent_of(&self, ino: u64) -> Result<u64> {
        if ino == ROOT_INO {
            return Ok(ROOT_INO);
        }
        Ok(self
            .meta
            .parent_of(ino)?
            .map(|(p, _)| p)
            .unwrap_or(ROOT_INO))
    }

    // xattrs: `user.minigcs.placement` is virtual and read-only.
    pub const PLACEMENT_XATTR: &'static [u8] = b"user.minigcs.placement";

    pub fn get_xattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        if name == Self::PLACEMENT_XATTR {
            let inode = self.getattr_committed(ino)?;
            if inode.kind != Kind::File {
                return Err(Error::NoAttribute("placement exists on files only".into()));
            }
            let chunks = self.meta.chunks_of(ino)?;
            let json = serde_json::json!({
                "size": inode.size,
                "version": inode.version,
                "k": self.store.k(),
                "m": self.store.m(),
                "chunks": self.chunk_infos(&chunks),
            });
            return Ok(json.to_string().into_bytes());
        }
        self.meta
            .get_xattr(ino, name)?
            .ok_or_else(|| Error::NoAttribute(String::from_utf8_lossy(name).into()))
    }

    pub fn set_xattr(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        create_only: bool,
        replace_only: bool,
    ) -> Result<()> {
        if name == Self::PLACEMENT_XATTR {
            return Err(Error::PermissionDenied(
                "user.minigcs.placement is read-only".into(),
            ));
        }
        if name.is_empty() || name.len() > 255 {
            return Err(Error::InvalidArgument(
                "xattr name must be 1-255 bytes".into(),
            ));
        }
        if value.len() > 64 * 1024 {
            return Err(Error::TooLarge("xattr value over 64 KiB".into()));
        }
        self.meta
            .set_xattr(ino, name, value, create_only, replace_only)
    }

    pub fn list_xattrs(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        self.getattr_committed(ino)?;
        self.meta.list_xattrs(ino)
    }

    pub fn remove_xattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        if name == Self::PLACEMENT_XATTR {
            return Err(Error::PermissionDenied(
                "user.minigcs.placement is read-only".into(),
            ));
        }
        self.meta.remove_xattr(ino, name)
    }

    /// Capacity of the distinct filesystems under the nodes, scaled by k/(k+m).
    pub fn fs_stats(&self) -> Result<FsStats> {
        let mut seen = std::collections::HashSet::new();
        let (mut total, mut free) = (0u64, 0u64);
        for (node, cfg) in self.store.nodes().iter().zip(&self.config.nodes) {
            let dev = std::fs::metadata(&cfg.storage_path)
                .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
                .unwrap_or(u64::MAX);
            if let Ok((t, f)) = node.capacity() {
                if seen.insert(dev) || dev == u64::MAX {
                    total += t;
                    free += f;
                }
            }
        }
        let (k, m) = (self.store.k() as u64, self.store.m() as u64);
        Ok(FsStats {
            total_bytes: total / (k + m) * k,
            free_bytes: free / (k + m) * k,
            files: self.meta.inode_count()?,
        })
    }

    // ------------------------------------------------------ committed reads

    /// Read part of a committed chunk, via the cache. `whole` loads the whole
    /// chunk (sequential readers), else only the range is read.
    fn read_committed_piece(
        &self,
        rec: &ChunkRecord,
        in_off: u64,
        len: usize,
        whole: bool,
    ) -> Result<Vec<u8>> {
        let data_len = rec.layout.data_len;
        if in_off >= data_len {
            return Ok(Vec::new());
        }
        let end = (in_off + len as u64).min(data_len);
        if let Some(data) = self.cache.get(rec.layout.chunk_id) {
            return Ok(data[in_off as usize..end as usize].to_vec());
        }
        if whole {
            let data =
                Arc::new(
                    self.store
                        .read(&rec.layout, &rec.placement, 0, data_len as usize)?,
                );
            self.cache.insert(rec.layout.chunk_id, data.clone());
            return Ok(data[in_off as usize..end as usize].to_vec());
        }
        self.store
            .read(&rec.layout, &rec.placement, in_off, (end - in_off) as usize)
    }

    /// Load the next chunk of a file into the cache in the background.
    fn prefetch(self: &Arc<Self>, ino: u64, idx: u64) {
        let Ok(Some(rec)) = self.meta.chunk_at(ino, idx) else {
            return;
        };
        let id = rec.layout.chunk_id;
        {
            // At most a few chunks in flight, whatever the number of readers.
            let mut inflight = self.prefetching.lock();
            if self.cache.contains(id) || inflight.len() >= MAX_PREFETCH || !inflight.insert(id) {
                return;
            }
        }
        let this = self.clone();
        std::thread::spawn(move || {
            if let Ok(data) =
                this.store
                    .read(&rec.layout, &rec.placement, 0, rec.layout.data_len as usize)
            {
                this.cache.insert(id, Arc::new(data));
            }
            this.prefetching.lock().remove(&id);
        });
    }

    // ------------------------------------------------------------ handles

    fn handle(&self, fh: u64) -> Result<Handle> {
        self.handles
            .lock()
            .get(&fh)
            .copied()
            .ok_or_else(|| Error::InvalidArgument(format!("unknown file handle {fh}")))
    }

    pub fn statistics_open_files(&self) -> usize {
        self.open_files.lock().len()
    }

    /// Stop accepting work: commit every open file.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let files: Vec<Arc<OpenFile>> = self.open_files.lock().values().cloned().collect();
        for f in files {
            if let Err(e) = self.commit(&f) {
                log::error!("could not commit inode {} at shutdown: {e}", f.ino);
            }
        }
        self.wake_workers();
        self.metrics.flush();
    }
}

/// Read until `limit` bytes or end of stream.
/// The buffer grows as data arrives, so a small object never costs a whole
/// chunk of zeroed memory.
fn read_full(reader: &mut dyn Read, buf: &mut Vec<u8>, limit: usize) -> Result<usize> {
    let mut filled = 0;
    while filled < limit {
        if buf.len() == filled {
            let grown = (filled * 2).clamp(64 * 1024, limit);
            buf.resize(grown, 0);
        }
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(filled);
                return Err(Error::Io(e));
            }
        }
    }
    buf.truncate(filled);
    Ok(filled)
}
