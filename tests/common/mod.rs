//! Shared helpers for the Rust integration tests that drive the file service
//! directly (no FUSE, no HTTP): a `TestStore` that builds a `Service` over
//! local-directory nodes in a fresh temporary folder (removed on drop, also
//! when a test panics), helpers that break nodes and shards the way a disk
//! would, and a seeded data generator that hashes what it produces so large
//! objects never have to be held in memory twice.

#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use minigcs::config::Config;
use minigcs::metrics::Metrics;
use minigcs::model::{Inode, Owner, ROOT_INO};
use minigcs::service::posix::IfExists;
use minigcs::service::{OpenFlags, Service};
use minigcs::test_data::SeededBytes;

/// Open flags for reading and writing (no append).
pub fn rw() -> OpenFlags {
    OpenFlags {
        read: true,
        write: true,
        append: false,
    }
}

/// The committed content of a file.
pub fn committed_content(svc: &Arc<Service>, ino: u64) -> Vec<u8> {
    let snap = svc.snapshot(ino).unwrap();
    snap.read(0, snap.inode.size as usize).unwrap().to_vec()
}

/// Create `name` in the root and open it for reading and writing (`O_CREAT |
/// O_EXCL`), owned by `owner`: (inode, handle).
pub fn create_file(svc: &Service, name: &[u8], mode: u32, owner: Owner) -> (Inode, u64) {
    let rw = OpenFlags {
        read: true,
        write: true,
        append: false,
    };
    let created = svc.create_or_open(ROOT_INO, name, mode, owner, rw, IfExists::Fail);
    created.unwrap()
}

/// A store in its own temporary folder: `<dir>/nodes/node-N` (N from 1),
/// `<dir>/meta.db`. The service is dropped before the folder is removed.
pub struct TestStore {
    service: Option<Arc<Service>>,
    pub regions: Vec<String>,
    pub k: usize,
    pub m: usize,
    pub chunk_size: u64,
    pub dir: tempfile::TempDir,
}

impl TestStore {
    /// One node per entry of `regions` (node-1 in `regions[0]`, …).
    pub fn new(regions: &[&str], k: usize, m: usize, chunk_size: u64) -> TestStore {
        let dir = tempfile::Builder::new()
            .prefix("minigcs-test-")
            .tempdir()
            .expect("create temp dir");
        TestStore::open_in(dir, regions, k, m, chunk_size)
    }

    /// A store over an existing folder (e.g. a copy of another store's).
    pub fn open_in(
        dir: tempfile::TempDir,
        regions: &[&str],
        k: usize,
        m: usize,
        chunk_size: u64,
    ) -> TestStore {
        let mut store = TestStore {
            service: None,
            regions: regions.iter().map(|r| r.to_string()).collect(),
            k,
            m,
            chunk_size,
            dir,
        };
        store.service = Some(store.open_service());
        store
    }

    /// `nodes` nodes spread round-robin over `regions` regions named r1, r2, ….
    pub fn round_robin(
        nodes: usize,
        regions: usize,
        k: usize,
        m: usize,
        chunk_size: u64,
    ) -> TestStore {
        let names: Vec<String> = (0..nodes)
            .map(|i| format!("r{}", i % regions + 1))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        TestStore::new(&refs, k, m, chunk_size)
    }

    fn open_service(&self) -> Arc<Service> {
        let regions: Vec<&str> = self.regions.iter().map(String::as_str).collect();
        let mut config =
            Config::for_test(self.dir.path(), &regions, self.k, self.m, self.chunk_size);
        // The tests damage and count shard files directly: every shard in
        // its own file (segments have their own tests).
        config.segments.max_shard = 0;
        Service::open(Arc::new(config), Metrics::new(None)).expect("open service")
    }

    pub fn service(&self) -> &Arc<Service> {
        self.service.as_ref().expect("service is open")
    }

    /// Drop the service (like a daemon that stopped or crashed between
    /// operations) without opening a new one.
    pub fn close(&mut self) {
        if let Some(s) = self.service.take() {
            // Background helpers (read-ahead) may hold it for a moment.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while Arc::strong_count(&s) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(
                Arc::strong_count(&s),
                1,
                "something still holds the service"
            );
        }
    }

    /// Drop the service and open a new one on the same folder: a restart.
    /// The new service starts with empty caches and fresh node states.
    pub fn reopen(&mut self) -> &Arc<Service> {
        self.close();
        self.service = Some(self.open_service());
        self.service()
    }

    pub fn node_count(&self) -> usize {
        self.regions.len()
    }

    /// Folder of node `index` (0-based, as in placements): `nodes/node-{index+1}`.
    pub fn node_dir(&self, index: usize) -> PathBuf {
        self.dir
            .path()
            .join("nodes")
            .join(format!("node-{}", index + 1))
    }

    pub fn node_id(index: usize) -> String {
        format!("node-{}", index + 1)
    }

    /// Delete a node's folder with everything in it (a lost disk).
    pub fn delete_node(&self, index: usize) {
        std::fs::remove_dir_all(self.node_dir(index)).expect("delete node folder");
    }

    /// Restart the service with the folders of `nodes` (0-based) gone. For
    /// the store this is a deleted folder; the folders are parked outside
    /// the node tree so `restore_nodes` can put them back for the next
    /// scenario without rebuilding the whole store.
    pub fn restart_without_nodes(&mut self, nodes: &[usize]) -> &Arc<Service> {
        self.close();
        let parked = self.dir.path().join("parked");
        std::fs::create_dir_all(&parked).expect("create parking folder");
        for &i in nodes {
            std::fs::rename(self.node_dir(i), parked.join(Self::node_id(i)))
                .expect("park node folder");
        }
        self.reopen()
    }

    /// Close the service and bring back folders parked by `restart_without_nodes`
    /// (reopen the service afterwards).
    pub fn restore_nodes(&mut self, nodes: &[usize]) {
        self.close();
        let parked = self.dir.path().join("parked");
        for &i in nodes {
            std::fs::rename(parked.join(Self::node_id(i)), self.node_dir(i))
                .expect("restore node folder");
        }
    }

    /// Path of one shard file on node `node` (0-based).
    pub fn shard_path(&self, node: usize, chunk_id: u64, index: usize) -> PathBuf {
        self.node_dir(node)
            .join("shards")
            .join(format!("{:02x}", chunk_id & 0xff))
            .join(format!("{chunk_id:016x}.{index}.shard"))
    }

    /// The shard files of every chunk of object `key`, in chunk and shard order.
    pub fn shard_files_of(&self, key: &str) -> Vec<PathBuf> {
        let info = self.service().object_info(key).unwrap();
        info.chunks
            .iter()
            .flat_map(|c| {
                let id = c.layout.chunk_id;
                c.placement
                    .iter()
                    .enumerate()
                    .map(move |(i, p)| self.shard_path(p.unwrap(), id, i))
            })
            .collect()
    }

    /// Every shard file on node `node` (0-based), sorted.
    pub fn shard_files(&self, node: usize) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let shards = self.node_dir(node).join("shards");
        let Ok(dirs) = std::fs::read_dir(&shards) else {
            return out;
        };
        for d in dirs.flatten() {
            let Ok(entries) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".shard") {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    /// Every shard file on every node.
    pub fn all_shard_files(&self) -> Vec<PathBuf> {
        (0..self.node_count())
            .flat_map(|n| self.shard_files(n))
            .collect()
    }

    /// Set the modification time of every shard file `age` into the past, so
    /// a freshly opened service sees them as written before it started.
    pub fn age_shard_files(&self, age: Duration) {
        let when = SystemTime::now() - age;
        for path in self.all_shard_files() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open shard");
            f.set_modified(when).expect("set mtime");
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        // The service (and its SQLite handle) goes before the folder.
        self.service.take();
    }
}

/// Flip every bit of the last byte of a file (for a shard: its payload).
pub fn flip_last_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read file to corrupt");
    let last = bytes.last_mut().expect("file is not empty");
    *last ^= 0xff;
    std::fs::write(path, bytes).expect("write corrupted file");
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

// Not every test crate that includes this module uses it.
#[allow(unused_imports)]
pub use minigcs::test_data::seeded_bytes;

/// A reader producing `len` pseudo-random bytes from a seed (the stream of
/// [`seeded_bytes`]) and hashing them as it goes; `hex_digest` gives the
/// SHA-256 of everything produced.
pub struct SeededReader {
    bytes: SeededBytes,
    hasher: Sha256,
}

impl SeededReader {
    pub fn new(seed: u64, len: u64) -> SeededReader {
        SeededReader {
            bytes: SeededBytes::new(seed, len),
            hasher: Sha256::new(),
        }
    }

    /// SHA-256 (hex) of the bytes produced so far.
    pub fn hex_digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl Read for SeededReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.bytes.fill(buf);
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Read a whole object back in `piece`-sized ranged reads, hashing as it
/// goes; returns (bytes read, SHA-256 hex).
pub fn stream_object_digest(service: &Arc<Service>, key: &str, piece: usize) -> (u64, String) {
    let snap = service.open_object(key).expect("open object");
    let mut hasher = Sha256::new();
    let mut pos = 0u64;
    loop {
        let data = snap.read(pos, piece).expect("read piece");
        if data.is_empty() {
            break;
        }
        hasher.update(&data);
        pos += data.len() as u64;
    }
    (pos, hex::encode(hasher.finalize()))
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kb * 1024
}
