//! The local-directory node backend: one folder per node, shard files under
//! `shards/<2 hex>/`, written temp → fsync → rename → fsync(dir).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::{NodeBackend, NodeIdentity, NodeProbe, ShardKey, ShardReader, IDENTITY_FILE};
use crate::error::{Error, Result};

pub struct LocalDirNode {
    id: String,
    region: String,
    root: PathBuf,
    temp_counter: AtomicU64,
}

impl LocalDirNode {
    pub fn new(id: &str, region: &str, root: &Path) -> LocalDirNode {
        LocalDirNode {
            id: id.to_string(),
            region: region.to_string(),
            root: root.to_path_buf(),
            temp_counter: AtomicU64::new(0),
        }
    }

    fn shard_dir(&self, key: ShardKey) -> PathBuf {
        self.root
            .join("shards")
            .join(format!("{:02x}", key.chunk_id & 0xff))
    }

    fn shard_path(&self, key: ShardKey) -> PathBuf {
        self.shard_dir(key).join(key.file_name())
    }

    fn read_identity(&self) -> std::io::Result<NodeIdentity> {
        let text = fs::read(self.root.join(IDENTITY_FILE))?;
        serde_json::from_slice(&text)
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e.to_string()))
    }

    fn folder_is_empty(&self) -> std::io::Result<bool> {
        Ok(fs::read_dir(&self.root)?.next().is_none())
    }
}

fn fsync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

fn map_not_found(e: std::io::Error, what: &str) -> Error {
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
        if offset + buf.len() as u64 > self.len {
            return Err(Error::Corrupt(format!(
                "shard too short: wanted {} bytes at {offset}, shard has {}",
                buf.len(),
                self.len
            )));
        }
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }
}

impl NodeBackend for LocalDirNode {
    fn id(&self) -> &str {
        &self.id
    }

    fn region(&self) -> &str {
        &self.region
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn initialize(&self, cluster_id: &str) -> Result<()> {
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
                fs::create_dir_all(&self.root)?;
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
        fsync_dir(&self.root)?;
        if let Some(parent) = self.root.parent() {
            let _ = fsync_dir(parent);
        }
        Ok(())
    }

    fn probe(&self, cluster_id: &str) -> NodeProbe {
        let meta = match fs::metadata(&self.root) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return NodeProbe::Failed(format!("folder {} is missing", self.root.display()))
            }
            Err(e) => return NodeProbe::Failed(format!("folder {}: {e}", self.root.display())),
        };
        if !meta.is_dir() {
            return NodeProbe::Failed(format!("{} is not a folder", self.root.display()));
        }
        match self.read_identity() {
            Ok(found) => {
                if found.cluster_id != cluster_id || found.node_id != self.id {
                    return NodeProbe::Failed(format!(
                        "folder holds node {} of cluster {}, expected {} of {}",
                        found.node_id, found.cluster_id, self.id, cluster_id
                    ));
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return match self.folder_is_empty() {
                    Ok(true) => NodeProbe::Empty("folder is empty (new or replaced disk)".into()),
                    Ok(false) => NodeProbe::Failed("identity file is missing".into()),
                    Err(e) => NodeProbe::Failed(format!("folder unreadable: {e}")),
                };
            }
            Err(e) => return NodeProbe::Failed(format!("identity file unreadable: {e}")),
        }
        // Writability: create and remove a probe file. Root ignores mode bits,
        // so also refuse a folder whose owner permissions were removed.
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o700 == 0 {
            return NodeProbe::Failed("folder permissions deny access (mode 000)".into());
        }
        let probe = self.root.join(".probe");
        match File::create(&probe).and_then(|mut f| f.write_all(b"ok")) {
            Ok(()) => {
                let _ = fs::remove_file(&probe);
            }
            Err(e) => return NodeProbe::Failed(format!("folder not writable: {e}")),
        }
        if !self.root.join("shards").is_dir() {
            return NodeProbe::Failed("shards folder is missing".into());
        }
        NodeProbe::Healthy
    }

    fn put_shard(&self, key: ShardKey, parts: &[&[u8]]) -> Result<()> {
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
        let result = write();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                Error::NoSpace(format!("node {}", self.id))
            } else {
                Error::Io(e)
            }
        })
    }

    fn open_shard(&self, key: ShardKey) -> Result<Box<dyn ShardReader>> {
        let path = self.shard_path(key);
        let file = File::open(&path).map_err(|e| map_not_found(e, &path.display().to_string()))?;
        let len = file.metadata()?.len();
        Ok(Box::new(LocalShardReader { file, len }))
    }

    fn delete_shard(&self, key: ShardKey) -> Result<()> {
        match fs::remove_file(self.shard_path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io(e)),
        }
    }

    fn list_shards(&self) -> Result<Vec<(ShardKey, SystemTime)>> {
        let mut out = Vec::new();
        let shards = self.root.join("shards");
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
        Ok(out)
    }

    fn filesystem_id(&self) -> Option<u64> {
        fs::metadata(&self.root)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
    }

    fn capacity(&self) -> Result<(u64, u64)> {
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
    fn shard_file_names_round_trip() {
        let k = ShardKey {
            chunk_id: 0x0123_4567_89ab_cdef,
            index: 17,
        };
        assert_eq!(ShardKey::parse_file_name(&k.file_name()), Some(k));
        assert_eq!(ShardKey::parse_file_name("garbage.shard"), None);
    }
}
