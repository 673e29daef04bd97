//! The local-directory node backend: one folder per node, large shard files
//! under `shards/<2 hex>/`, written temp → fsync → rename → fsync(dir), and
//! small shards in append-only segments under `segments/` (see
//! `local_segments` and `segments`). The folder
//! is locked (`minigcs-node.lock`, see `crate::store_lock`) while this
//! process uses it: at start when it exists, when it is initialized, and
//! again by the health probe when it was deleted and came back.

use parking_lot::Mutex;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use super::segments::{CleanPass, SegmentFigures, SegmentSettings, SegmentStore};

use super::{
    own_mounts, prototype_folder, NodeBackend, NodeIdentity, NodeProbe, NodeTimes, ShardKey,
    ShardReader, IDENTITY_FILE,
};
use crate::error::{Error, Result};
use crate::store_lock::{holder_text, LockFailure, StoreLock};

/// Name of the file in every local node folder that names the daemon
/// holding the folder's lock (the lock is on the folder itself). It is not
/// part of the store: a folder holding only it counts as empty.
pub const NODE_LOCK_FILE: &str = "minigcs-node.lock";
use crate::resources::is_fd_exhaustion;

pub struct LocalDirNode {
    pub(super) id: String,
    region: String,
    pub(super) root: PathBuf,
    pub(super) temp_counter: AtomicU64,
    /// This process's lock on the folder, once taken.
    lock: Mutex<Option<StoreLock>>,
    pub(super) segment_settings: SegmentSettings,
    /// The folder's segment store, once opened.
    pub(super) segments: Mutex<Option<Arc<SegmentStore>>>,
}

impl LocalDirNode {
    pub fn new(id: &str, region: &str, root: &Path) -> LocalDirNode {
        LocalDirNode {
            id: id.to_string(),
            region: region.to_string(),
            root: root.to_path_buf(),
            temp_counter: AtomicU64::new(0),
            lock: Mutex::new(None),
            segment_settings: SegmentSettings::default(),
            segments: Mutex::new(None),
        }
    }

    /// Lock the folder if it exists (daemon start). A folder another
    /// daemon holds is an error naming its pid; a missing or unusable
    /// folder is not: it is a failed node, locked once it is usable.
    pub fn lock_if_present(&self) -> Result<()> {
        if !self.root.is_dir() {
            return Ok(());
        }
        match self.hold_lock() {
            Ok(()) => Ok(()),
            Err(held @ LockFailure::Held { .. }) => Err(held.into_error(&self.lock_subject())),
            Err(LockFailure::Io { error, .. }) => {
                log::warn!("cannot lock {}: {error}", self.lock_subject());
                Ok(())
            }
        }
    }

    /// Whether this process holds the folder's lock now.
    pub fn holds_lock(&self) -> bool {
        self.lock.lock().as_ref().is_some_and(StoreLock::is_current)
    }

    fn lock_subject(&self) -> String {
        format!("node {}'s folder {}", self.id, self.root.display())
    }

    /// Hold the folder's lock, taking it again when the folder (or the
    /// lock file) was deleted and created anew since it was taken.
    fn hold_lock(&self) -> std::result::Result<(), LockFailure> {
        let mut held = self.lock.lock();
        if held.as_ref().is_some_and(StoreLock::is_current) {
            return Ok(());
        }
        *held = None;
        *held = Some(StoreLock::acquire_folder(&self.root, NODE_LOCK_FILE)?);
        Ok(())
    }

    fn shard_dir(&self, key: ShardKey) -> PathBuf {
        self.root
            .join("shards")
            .join(format!("{:02x}", key.chunk_id & 0xff))
    }

    pub(super) fn shard_path(&self, key: ShardKey) -> PathBuf {
        self.shard_dir(key).join(key.file_name())
    }

    /// Why the folder is not ours to write into when it holds the Python
    /// prototype's data.
    fn prototype_refusal(&self) -> Option<String> {
        prototype_folder::prototype_data_in(&self.root)
            .map(|found| prototype_folder::refusal(&self.id, &self.root, &found, None))
    }

    /// The end of a temp-file-then-rename write: a failed one leaves no
    /// temp file behind, and a full disk is `NoSpace`.
    pub(super) fn finish_write(&self, tmp: &Path, result: std::io::Result<()>) -> Result<()> {
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result.map_err(|e| self.io_error(e))
    }

    /// An I/O error of this node; a full disk is `NoSpace`.
    pub(super) fn io_error(&self, e: std::io::Error) -> Error {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            Error::NoSpace(format!("node {}", self.id))
        } else {
            Error::Io(e)
        }
    }

    fn read_identity(&self) -> std::io::Result<NodeIdentity> {
        identity_in(&self.root)
    }

    /// Empty but for our lock file.
    fn folder_is_empty(&self) -> std::io::Result<bool> {
        for entry in fs::read_dir(&self.root)? {
            if entry?.file_name() != NODE_LOCK_FILE {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The probe's checks. An error is one they do not classify themselves:
    /// descriptor exhaustion, or a folder that cannot be stat'ed.
    fn probe_folder(&self, cluster_id: &str) -> std::io::Result<NodeProbe> {
        let meta = match fs::metadata(&self.root) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(NodeProbe::Failed(format!(
                    "folder {} is missing",
                    self.root.display()
                )))
            }
            Err(e) => return Err(e),
        };
        if !meta.is_dir() {
            return Ok(NodeProbe::Failed(format!(
                "{} is not a folder",
                self.root.display()
            )));
        }
        if let Some(refusal) = self.prototype_refusal() {
            return Ok(NodeProbe::Failed(refusal));
        }
        // A folder another daemon locked is not ours to use. (A lock file
        // that cannot be created is reported by the checks below.)
        if let Err(LockFailure::Held { pid, .. }) = self.hold_lock() {
            return Ok(NodeProbe::Failed(format!(
                "folder is locked by {} (another minigcs daemon)",
                holder_text(pid)
            )));
        }
        match self.read_identity() {
            Ok(found) => {
                if found.cluster_id != cluster_id || found.node_id != self.id {
                    return Ok(NodeProbe::Failed(format!(
                        "folder holds node {} of cluster {}, expected {} of {}",
                        found.node_id, found.cluster_id, self.id, cluster_id
                    )));
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(match self.folder_is_empty() {
                    Ok(true) => NodeProbe::Empty("folder is empty (new or replaced disk)".into()),
                    Ok(false) => NodeProbe::Failed("identity file is missing".into()),
                    Err(e) if is_fd_exhaustion(&e) => return Err(e),
                    Err(e) => NodeProbe::Failed(format!("folder unreadable: {e}")),
                });
            }
            Err(e) if is_fd_exhaustion(&e) => return Err(e),
            Err(e) => return Ok(NodeProbe::Failed(format!("identity file unreadable: {e}"))),
        }
        // Writability: create and remove a probe file. Root ignores mode bits,
        // so also refuse a folder whose owner permissions were removed.
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o700 == 0 {
            return Ok(NodeProbe::Failed(
                "folder permissions deny access (mode 000)".into(),
            ));
        }
        let probe = self.root.join(".probe");
        match File::create(&probe).and_then(|mut f| f.write_all(b"ok")) {
            Ok(()) => {
                let _ = fs::remove_file(&probe);
            }
            Err(e) if is_fd_exhaustion(&e) => return Err(e),
            Err(e) => return Ok(NodeProbe::Failed(format!("folder not writable: {e}"))),
        }
        if !self.root.join("shards").is_dir() {
            return Ok(NodeProbe::Failed("shards folder is missing".into()));
        }
        Ok(NodeProbe::Healthy)
    }
}

/// When a file or folder was created: its birth time where the filesystem
/// records one, else its modification time.
fn birth_time(meta: &fs::Metadata) -> Option<SystemTime> {
    meta.created().or_else(|_| meta.modified()).ok()
}

/// The latest change to the shard folders under `root`: a folder's
/// modification time moves past its birth time when a shard is renamed
/// into it or removed. Folders never written into count for nothing, so a
/// node that never stored a shard has no such time (where birth times are
/// not recorded, the folders' creation counts as a change).
fn shards_changed(root: &Path) -> std::io::Result<Option<SystemTime>> {
    let shards = root.join("shards");
    let mut latest: Option<SystemTime> = None;
    for i in 0..256u32 {
        let meta = match fs::metadata(shards.join(format!("{i:02x}"))) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let changed = meta.modified()?;
        let written = meta.created().map_or(true, |born| changed > born);
        if written && latest.is_none_or(|l| changed > l) {
            latest = Some(changed);
        }
    }
    Ok(latest)
}

/// The identity file of the node folder `folder`, if it has one.
pub fn identity_in(folder: &Path) -> std::io::Result<NodeIdentity> {
    let text = fs::read(folder.join(IDENTITY_FILE))?;
    serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e.to_string()))
}

pub(super) fn fsync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

pub(super) fn map_not_found(e: std::io::Error, what: &str) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::NotFound(what.to_string())
    } else {
        Error::Io(e)
    }
}

struct LocalShardReader {
    file: File,
    len: u64,
}

impl ShardReader for LocalShardReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        super::check_shard_range(offset, buf.len(), self.len)?;
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn read_vec_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        super::check_shard_range(offset, len, self.len)?;
        // `read_to_end` reads into the buffer's unfilled capacity: no pass
        // zeroing megabytes that the read overwrites at once.
        let mut buf = Vec::with_capacity(len);
        self.file.seek(SeekFrom::Start(offset))?;
        (&self.file).take(len as u64).read_to_end(&mut buf)?;
        if buf.len() != len {
            return Err(Error::Corrupt(format!(
                "shard ended early: read {} of {len} bytes at {offset}",
                buf.len()
            )));
        }
        Ok(buf)
    }
}

impl NodeBackend for LocalDirNode {
    fn id(&self) -> &str {
        &self.id
    }

    fn release(&self) {
        *self.lock.lock() = None;
        *self.segments.lock() = None;
    }

    fn region(&self) -> &str {
        &self.region
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn initialize(&self, cluster_id: &str) -> Result<()> {
        own_mounts::refuse_inside(&self.root)?;
        if let Some(refusal) = self.prototype_refusal() {
            return Err(Error::Config(refusal));
        }
        // Lock before anything is written: a folder another daemon holds
        // stays untouched.
        fs::create_dir_all(&self.root)?;
        self.hold_lock()
            .map_err(|failure| failure.into_error(&self.lock_subject()))?;
        match self.read_identity() {
            Ok(found) => {
                if found.cluster_id != cluster_id || found.node_id != self.id {
                    return Err(Error::Other(format!(
                        "{} belongs to node {} of cluster {}, not {} of {}",
                        self.root.display(),
                        found.node_id,
                        found.cluster_id,
                        self.id,
                        cluster_id
                    )));
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let identity = NodeIdentity {
                    cluster_id: cluster_id.to_string(),
                    node_id: self.id.clone(),
                    region: self.region.clone(),
                    format: 1,
                };
                let tmp = self.root.join(format!("{IDENTITY_FILE}.tmp"));
                let mut f = File::create(&tmp)?;
                f.write_all(&serde_json::to_vec_pretty(&identity).expect("identity serializes"))?;
                f.sync_all()?;
                fs::rename(&tmp, self.root.join(IDENTITY_FILE))?;
            }
            Err(e) => return Err(Error::Io(e)),
        }
        let shards = self.root.join("shards");
        fs::create_dir_all(&shards)?;
        for i in 0..256u32 {
            let d = shards.join(format!("{i:02x}"));
            if !d.is_dir() {
                fs::create_dir(&d)?;
            }
        }
        fsync_dir(&shards)?;
        match fs::create_dir(self.segments_dir()) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e.into()),
            _ => {}
        }
        fsync_dir(&self.root)?;
        if let Some(parent) = self.root.parent() {
            let _ = fsync_dir(parent);
        }
        Ok(())
    }

    /// Set up when its identity file was written; changed when a shard
    /// folder last was.
    fn times(&self) -> Result<NodeTimes> {
        own_mounts::refuse_inside(&self.root)?;
        let created = match fs::metadata(self.root.join(IDENTITY_FILE)) {
            Ok(meta) => birth_time(&meta),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let in_files = shards_changed(&self.root)?;
        let in_segments = self.segment_store(false)?.and_then(|s| s.changed());
        Ok(NodeTimes {
            created,
            updated: in_files.max(in_segments),
        })
    }

    fn probe(&self, cluster_id: &str) -> NodeProbe {
        if let Err(e) = own_mounts::refuse_inside(&self.root) {
            return NodeProbe::Failed(e.to_string());
        }
        match self.probe_folder(cluster_id) {
            Ok(probe) => probe,
            Err(e) if is_fd_exhaustion(&e) => NodeProbe::Inconclusive(format!(
                "the daemon is out of file descriptors ({e}); keeping the last state"
            )),
            Err(e) => NodeProbe::Failed(format!("folder {}: {e}", self.root.display())),
        }
    }

    fn put_shard(&self, key: ShardKey, parts: &[&[u8]]) -> Result<()> {
        own_mounts::refuse_inside(&self.root)?;
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if self.segment_settings.takes(len) {
            return self.put_small_shard(key, parts);
        }
        let dir = self.shard_dir(key);
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".tmp-{}-{n}-{}",
            std::process::id(),
            key.file_name()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            for p in parts {
                f.write_all(p)?;
            }
            f.sync_data()?;
            fs::rename(&tmp, self.shard_path(key))?;
            fsync_dir(&dir)
        };
        self.finish_write(&tmp, write())?;
        // A copy in a segment would hide the new file.
        if let Some(store) = self.segment_store(false)? {
            store.remove_durably(key)?;
        }
        Ok(())
    }

    fn open_shard(&self, key: ShardKey) -> Result<Box<dyn ShardReader>> {
        own_mounts::refuse_inside(&self.root)?;
        if let Some(reader) = self
            .segment_store(false)?
            .and_then(|store| store.open_shard(key))
        {
            return Ok(reader);
        }
        let path = self.shard_path(key);
        let file = File::open(&path).map_err(|e| map_not_found(e, &path.display().to_string()))?;
        let len = file.metadata()?.len();
        Ok(Box::new(LocalShardReader { file, len }))
    }

    fn delete_shard(&self, key: ShardKey) -> Result<()> {
        own_mounts::refuse_inside(&self.root)?;
        if let Some(store) = self.segment_store(false)? {
            store.remove(key)?;
        }
        match fs::remove_file(self.shard_path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io(e)),
        }
    }

    fn list_shards(&self) -> Result<Vec<(ShardKey, SystemTime)>> {
        own_mounts::refuse_inside(&self.root)?;
        let mut out = Vec::new();
        let shards = self.root.join("shards");
        let in_segments = self.segment_store(false)?.map(|s| s.list());
        let segment_keys: std::collections::HashSet<ShardKey> =
            in_segments.iter().flatten().map(|(key, _)| *key).collect();
        for dir in fs::read_dir(&shards)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(dir.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if let Some(key) = ShardKey::parse_file_name(&name) {
                    if segment_keys.contains(&key) {
                        continue;
                    }
                    let mtime = entry.metadata()?.modified()?;
                    out.push((key, mtime));
                } else if let Some(rest) = name.strip_prefix(".tmp-") {
                    // A temp file of a write that never finished. Ours carry
                    // our pid; one from another process is a crash leftover.
                    let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
                    if pid != Some(std::process::id()) {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
        }
        out.extend(in_segments.into_iter().flatten());
        Ok(out)
    }

    fn segment_figures(&self) -> Option<SegmentFigures> {
        LocalDirNode::segment_figures(self)
    }

    fn clean_segments(
        &self,
        pace: &mut dyn FnMut(u64),
        stop: &dyn Fn() -> bool,
    ) -> Result<CleanPass> {
        own_mounts::refuse_inside(&self.root)?;
        match self.segment_store(false)? {
            Some(store) => store.clean(pace, stop),
            None => Ok(CleanPass::default()),
        }
    }

    fn put_meta_file(&self, area: &str, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.put_meta(area, name, parts)
    }

    fn put_meta_file_from(&self, area: &str, name: &str, header: &[u8], body: &Path) -> Result<()> {
        self.put_meta_from(area, name, header, body)
    }

    fn append_meta_file(&self, area: &str, name: &str, at: u64, bytes: &[u8]) -> Result<u64> {
        self.append_meta(area, name, at, bytes)
    }

    fn list_meta_files(&self, area: &str) -> Result<Vec<(String, u64)>> {
        self.list_meta(area)
    }

    fn read_meta_file(&self, area: &str, name: &str) -> Result<Vec<u8>> {
        self.read_meta(area, name)
    }

    fn delete_meta_file(&self, area: &str, name: &str) -> Result<()> {
        self.delete_meta(area, name)
    }

    fn filesystem_id(&self) -> Option<u64> {
        own_mounts::refuse_inside(&self.root).ok()?;
        fs::metadata(&self.root)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
    }

    fn capacity(&self) -> Result<(u64, u64)> {
        // statfs on our own mount would call back into this very method.
        own_mounts::refuse_inside(&self.root)?;
        let st = nix::sys::statvfs::statvfs(&self.root).map_err(|e| Error::Io(e.into()))?;
        let frsize = st.fragment_size() as u64;
        Ok((
            st.blocks() as u64 * frsize,
            st.blocks_available() as u64 * frsize,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dir_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let node = LocalDirNode::new("node-1", "r1", &dir.path().join("n1"));
        super::super::conformance::run(&node);
    }

    #[test]
    fn times_say_when_the_folder_was_set_up_and_its_shards_changed() {
        let dir = tempfile::tempdir().unwrap();
        let node = LocalDirNode::new("node-1", "r1", &dir.path().join("n1"));
        assert_eq!(node.times().unwrap(), NodeTimes::default(), "no folder yet");
        let before = SystemTime::now();
        node.initialize("c").unwrap();
        let fresh = node.times().unwrap();
        assert!(fresh.created.is_some());
        // Where the filesystem records birth times, a node that never
        // stored anything has no change time.
        if fs::metadata(dir.path()).unwrap().created().is_ok() {
            assert_eq!(fresh.updated, None);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let key = ShardKey {
            chunk_id: 7,
            index: 0,
        };
        node.put_shard(key, &[b"abc"]).unwrap();
        let stored = node.times().unwrap();
        assert_eq!(stored.created, fresh.created, "set up once");
        let updated = stored.updated.expect("a shard was stored");
        assert!(updated > before && updated > fresh.created.unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        node.delete_shard(key).unwrap();
        assert!(
            node.times().unwrap().updated.unwrap() > updated,
            "a removal is a change"
        );
    }

    #[test]
    fn missing_emptied_and_foreign_folders_are_not_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("n1");
        let node = LocalDirNode::new("node-1", "r1", &root);
        assert!(matches!(node.probe("c"), NodeProbe::Failed(_)));
        fs::create_dir(&root).unwrap();
        assert!(matches!(node.probe("c"), NodeProbe::Empty(_)));
        node.initialize("c").unwrap();
        assert_eq!(node.probe("c"), NodeProbe::Healthy);
        let other = LocalDirNode::new("node-2", "r1", &root);
        assert!(matches!(other.probe("c"), NodeProbe::Failed(_)));
        assert!(
            other.initialize("c").is_err(),
            "must not adopt another node's folder"
        );
        fs::remove_file(root.join(IDENTITY_FILE)).unwrap();
        assert!(matches!(node.probe("c"), NodeProbe::Failed(_)));
    }

    #[test]
    fn a_folder_another_holder_locked_is_refused_at_start_and_failed_in_probes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("n1");
        let first = LocalDirNode::new("node-1", "r1", &root);
        first.initialize("c").unwrap();
        assert!(first.holds_lock());
        let second = LocalDirNode::new("node-1", "r1", &root);
        let refused = second.lock_if_present().unwrap_err().to_string();
        assert!(
            refused.contains("node node-1's folder")
                && refused.contains(&format!("locked by pid {}", std::process::id())),
            "{refused}"
        );
        assert!(matches!(second.probe("c"), NodeProbe::Failed(r) if r.contains("locked by pid")));
        assert!(second.initialize("c").is_err());
        assert_eq!(first.probe("c"), NodeProbe::Healthy);
        // A folder missing at start is no reason to refuse, and is not created.
        let absent = dir.path().join("absent");
        LocalDirNode::new("node-2", "r1", &absent)
            .lock_if_present()
            .unwrap();
        assert!(!absent.exists());
    }

    #[test]
    fn a_folder_deleted_and_created_again_is_locked_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("n1");
        let node = LocalDirNode::new("node-1", "r1", &root);
        node.initialize("c").unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert!(!node.holds_lock());
        fs::create_dir(&root).unwrap();
        // The probe takes the lock again; the lock file alone keeps the
        // folder empty, ready to be rebuilt.
        assert!(matches!(node.probe("c"), NodeProbe::Empty(_)));
        assert!(node.holds_lock());
        node.initialize("c").unwrap();
        assert_eq!(node.probe("c"), NodeProbe::Healthy);
        let other = LocalDirNode::new("node-1", "r1", &root);
        assert!(other.lock_if_present().is_err());
    }

    #[test]
    fn metadata_files_live_under_meta_and_never_recreate_a_lost_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("n1");
        let node = LocalDirNode::new("node-1", "r1", &root);
        assert!(
            node.put_meta_file("snapshots", "a", &[b"x"]).is_err(),
            "a folder never set up"
        );
        assert!(!root.exists(), "the missing folder stays missing");
        node.initialize("c").unwrap();
        let body = dir.path().join("body");
        fs::write(&body, vec![9u8; 300_000]).unwrap();
        node.put_meta_file_from("snapshots", "s-1", b"head", &body)
            .unwrap();
        node.put_meta_file("snapshots", "s-2", &[b"ab", b"c"])
            .unwrap();
        let stored = fs::read(root.join("meta/snapshots/s-1")).unwrap();
        assert_eq!(&stored[..4], b"head");
        assert_eq!(stored.len(), 300_004);
        // A temp file a crashed process left is tidied by the listing.
        fs::write(root.join("meta/snapshots/.tmp-999999999-0-s-3"), b"torn").unwrap();
        let mut listed = node.list_meta_files("snapshots").unwrap();
        listed.sort();
        assert_eq!(
            listed,
            vec![("s-1".to_string(), 300_004), ("s-2".to_string(), 3)]
        );
        assert!(!root.join("meta/snapshots/.tmp-999999999-0-s-3").exists());
        // A process without the folder's lock (restore-meta next to a
        // running daemon) leaves temp files alone.
        fs::write(root.join("meta/snapshots/.tmp-999999999-1-s-4"), b"busy").unwrap();
        let onlooker = LocalDirNode::new("node-1", "r1", &root);
        assert_eq!(onlooker.list_meta_files("snapshots").unwrap().len(), 2);
        assert!(root.join("meta/snapshots/.tmp-999999999-1-s-4").exists());
        fs::remove_file(root.join("meta/snapshots/.tmp-999999999-1-s-4")).unwrap();
        assert_eq!(node.read_meta_file("snapshots", "s-2").unwrap(), b"abc");
        for bad in ["../x", "..", ".hidden", "a/b", ""] {
            assert!(
                node.put_meta_file("snapshots", bad, &[b"x"]).is_err(),
                "{bad:?}"
            );
            assert!(node.read_meta_file(bad, "s-1").is_err(), "{bad:?}");
        }
        node.delete_meta_file("snapshots", "s-1").unwrap();
        node.delete_meta_file("snapshots", "s-1").unwrap();
        assert_eq!(node.list_meta_files("snapshots").unwrap().len(), 1);
        assert_eq!(node.list_meta_files("journal").unwrap(), vec![]);
        assert_eq!(node.probe("c"), NodeProbe::Healthy);
    }

    #[test]
    fn appends_overwrite_zeros_written_ahead_instead_of_growing_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let node = LocalDirNode::new("node-1", "r1", &dir.path().join("n1"));
        node.initialize("c").unwrap();
        let path = dir.path().join("n1/meta/journal/j-1");
        let first = node.append_meta_file("journal", "j-1", 0, b"head").unwrap();
        let room = fs::metadata(&path).unwrap().len();
        assert_eq!(first, room, "the fill is counted as written");
        assert!(room > 4);
        let mut at = 4;
        while at + 100 <= room {
            assert_eq!(
                node.append_meta_file("journal", "j-1", at, &[7; 100])
                    .unwrap(),
                100
            );
            at += 100;
        }
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            room,
            "no append grew it"
        );
        // The next one does, with room after it again.
        node.append_meta_file("journal", "j-1", at, &[8; 100])
            .unwrap();
        let grown = fs::read(&path).unwrap();
        assert!(grown.len() as u64 > at + 100);
        assert_eq!(&grown[..4], b"head");
        assert!(grown[4..at as usize].iter().all(|&b| b == 7));
        assert!(grown[at as usize..at as usize + 100]
            .iter()
            .all(|&b| b == 8));
        assert!(grown[at as usize + 100..].iter().all(|&b| b == 0));
    }

    #[test]
    fn shard_file_names_round_trip() {
        let k = ShardKey {
            chunk_id: 0x0123_4567_89ab_cdef,
            index: 17,
        };
        assert_eq!(ShardKey::parse_file_name(&k.file_name()), Some(k));
        assert_eq!(ShardKey::parse_file_name("garbage.shard"), None);
    }
}
