//! Concurrency tests of the file service over in-memory nodes with a gate:
//! a shard read of one chosen chunk, or every shard write, stops inside the
//! node until the test opens the gate. Events are ordered with channels; the
//! only timing is a generous bound that turns a hang into a failure.

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::posix::IfExists;
use super::{OpenFlags, Service};
use crate::config::Config;
use crate::error::Result;
use crate::meta::ROOT_INO;
use crate::metrics::Metrics;
use crate::model::{Owner, PutOptions};
use crate::node::{MemoryNode, NodeBackend, NodeProbe, ShardKey, ShardReader};

const CS: u64 = 64 * 1024;
/// Long enough for any slow machine; reached only when something hangs.
const HANG: Duration = Duration::from_secs(30);

struct Gate {
    /// Shard reads of this chunk stop at the gate (0: none).
    read_chunk: AtomicU64,
    /// Shard writes stop at the gate.
    block_puts: AtomicBool,
    entered: Sender<&'static str>,
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn new() -> (Arc<Gate>, Receiver<&'static str>) {
        let (entered, rx) = unbounded();
        let gate = Gate {
            read_chunk: AtomicU64::new(0),
            block_puts: AtomicBool::new(false),
            entered,
            open: Mutex::new(false),
            opened: Condvar::new(),
        };
        (Arc::new(gate), rx)
    }

    fn pass(&self, what: &'static str) {
        let _ = self.entered.send(what);
        let mut open = self.open.lock();
        while !*open {
            self.opened.wait(&mut open);
        }
    }

    fn release(&self) {
        *self.open.lock() = true;
        self.opened.notify_all();
    }
}

/// Opens the gate when a test ends, also when it fails.
struct Opener(Arc<Gate>);

impl Drop for Opener {
    fn drop(&mut self) {
        self.0.release();
    }
}

struct GatedNode {
    inner: MemoryNode,
    gate: Arc<Gate>,
}

impl NodeBackend for GatedNode {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn region(&self) -> &str {
        self.inner.region()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    fn initialize(&self, cluster_id: &str) -> Result<()> {
        self.inner.initialize(cluster_id)
    }
    fn probe(&self, cluster_id: &str) -> NodeProbe {
        self.inner.probe(cluster_id)
    }
    fn put_shard(&self, key: ShardKey, parts: &[&[u8]]) -> Result<()> {
        if self.gate.block_puts.load(Ordering::SeqCst) {
            self.gate.pass("put");
        }
        self.inner.put_shard(key, parts)
    }
    fn open_shard(&self, key: ShardKey) -> Result<Box<dyn ShardReader>> {
        if key.chunk_id == self.gate.read_chunk.load(Ordering::SeqCst) {
            self.gate.pass("read");
        }
        self.inner.open_shard(key)
    }
    fn delete_shard(&self, key: ShardKey) -> Result<()> {
        self.inner.delete_shard(key)
    }
    fn list_shards(&self) -> Result<Vec<(ShardKey, SystemTime)>> {
        self.inner.list_shards()
    }
    fn capacity(&self) -> Result<(u64, u64)> {
        self.inner.capacity()
    }
    fn put_meta_file(&self, area: &str, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner.put_meta_file(area, name, parts)
    }
    fn append_meta_file(&self, area: &str, name: &str, at: u64, bytes: &[u8]) -> Result<u64> {
        self.inner.append_meta_file(area, name, at, bytes)
    }
    fn list_meta_files(&self, area: &str) -> Result<Vec<(String, u64)>> {
        self.inner.list_meta_files(area)
    }
    fn read_meta_file(&self, area: &str, name: &str) -> Result<Vec<u8>> {
        self.inner.read_meta_file(area, name)
    }
    fn delete_meta_file(&self, area: &str, name: &str) -> Result<()> {
        self.inner.delete_meta_file(area, name)
    }
}

fn gated_service() -> (
    Arc<Service>,
    Arc<Gate>,
    Receiver<&'static str>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let regions = ["a", "b", "c"];
    let mut config = Config::for_test(dir.path(), &regions, 2, 1, CS);
    // Gated calls wait for the test, not for a node deadline.
    config.recovery.node_timeout_ms = HANG.as_millis() as u64 * 2;
    let (gate, entered) = Gate::new();
    let nodes = (0..regions.len())
        .map(|i| {
            Arc::new(GatedNode {
                inner: MemoryNode::new(&format!("node-{}", i + 1), regions[i]),
                gate: gate.clone(),
            }) as Arc<dyn NodeBackend>
        })
        .collect();
    let svc = Service::open_with_nodes(Arc::new(config), Metrics::new(None), nodes).unwrap();
    (svc, gate, entered, dir)
}

/// Run `f` on its own thread; its result arrives on the receiver.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

const READ_ONLY: OpenFlags = OpenFlags {
    read: true,
    write: false,
    append: false,
};

const READ_WRITE: OpenFlags = OpenFlags {
    read: true,
    write: true,
    append: false,
};

#[test]
fn readers_of_one_open_file_pass_a_reader_blocked_in_a_shard_read() {
    let (svc, gate, entered, _dir) = gated_service();
    let _opener = Opener(gate.clone());
    let data = pattern(2 * CS, 7);
    let ino = svc
        .put_object("f", &mut &data[..], PutOptions::default())
        .unwrap()
        .ino;
    let chunks = svc.ctx.meta.chunks_of(ino).unwrap();
    gate.read_chunk
        .store(chunks[1].layout.chunk_id, Ordering::SeqCst);
    let (a, b) = (
        svc.open_file(ino, READ_ONLY).unwrap(),
        svc.open_file(ino, READ_ONLY).unwrap(),
    );

    let s = svc.clone();
    let blocked = spawn(move || s.read(a, CS, CS as usize));
    assert_eq!(
        entered.recv_timeout(HANG),
        Ok("read"),
        "reader one reached the shards"
    );

    let s = svc.clone();
    let other = spawn(move || s.read(b, 0, CS as usize));
    let got = other
        .recv_timeout(HANG)
        .expect("a second reader waited for the first");
    assert_eq!(got.unwrap(), data[..CS as usize]);
    let s = svc.clone();
    let attrs = spawn(move || s.getattr(ino)).recv_timeout(HANG);
    assert_eq!(
        attrs.expect("getattr waited for a reader").unwrap().size,
        2 * CS
    );
    assert!(
        blocked.try_recv().is_err(),
        "reader one is still inside its shard read"
    );

    gate.release();
    let got = blocked.recv_timeout(HANG).unwrap().unwrap();
    assert_eq!(got, data[CS as usize..]);
    svc.release(a).unwrap();
    svc.release(b).unwrap();
}

#[test]
fn getattr_and_writes_do_not_wait_for_a_commit_in_flight() {
    let (svc, gate, entered, _dir) = gated_service();
    let _opener = Opener(gate.clone());
    let (inode, fh) = svc
        .create_or_open(
            ROOT_INO,
            b"w",
            0o644,
            Owner::ROOT,
            READ_WRITE,
            IfExists::Fail,
        )
        .unwrap();
    let head = pattern(CS / 2, 3);
    svc.write(fh, 0, &head).unwrap();

    gate.block_puts.store(true, Ordering::SeqCst);
    let s = svc.clone();
    let commit = spawn(move || s.flush(fh));
    assert_eq!(
        entered.recv_timeout(HANG),
        Ok("put"),
        "the commit's upload is storing"
    );

    let s = svc.clone();
    let attrs = spawn(move || s.getattr(inode.ino)).recv_timeout(HANG);
    assert_eq!(
        attrs.expect("getattr waited for the commit").unwrap().size,
        CS / 2
    );
    let s = svc.clone();
    let wrote = spawn(move || s.write(fh, 2 * CS, b"tail")).recv_timeout(HANG);
    assert_eq!(wrote.expect("a write waited for the commit").unwrap(), 4);
    assert!(
        commit.try_recv().is_err(),
        "the commit is still waiting for its upload"
    );

    gate.block_puts.store(false, Ordering::SeqCst);
    gate.release();
    commit.recv_timeout(HANG).unwrap().unwrap();
    // The write that landed during the commit is still buffered, not lost.
    assert_eq!(svc.getattr(inode.ino).unwrap().size, 2 * CS + 4);
    let committed = svc.snapshot(inode.ino).unwrap();
    assert_eq!(committed.inode.size, CS / 2);
    assert_eq!(committed.read(0, CS as usize).unwrap(), head);
    drop(committed);

    svc.release(fh).unwrap();
    let mut want = head.clone();
    want.resize(2 * CS as usize, 0);
    want.extend_from_slice(b"tail");
    let snap = svc.open_object("w").unwrap();
    assert_eq!(snap.read(0, want.len() + 10).unwrap(), want);
}

#[test]
fn a_new_metadata_database_over_nodes_holding_shards_is_refused_unless_accepted() {
    let regions = ["a", "b", "c"];
    let nodes: Vec<Arc<dyn NodeBackend>> = (0..regions.len())
        .map(|i| Arc::new(MemoryNode::new(&format!("node-{}", i + 1), regions[i])) as _)
        .collect();
    let first = tempfile::tempdir().unwrap();
    let config = Config::for_test(first.path(), &regions, 2, 1, CS);
    let svc =
        Service::open_with_nodes(Arc::new(config), Metrics::new(None), nodes.clone()).unwrap();
    svc.put_object("kept", &mut &pattern(CS * 2, 1)[..], PutOptions::default())
        .unwrap();
    drop(svc);

    // The same nodes under a metadata database that does not exist yet:
    // rebuilt from the metadata journal the nodes hold.
    let rebuilt_dir = tempfile::tempdir().unwrap();
    let config = Config::for_test(rebuilt_dir.path(), &regions, 2, 1, CS);
    let rebuilt =
        Service::open_with_nodes(Arc::new(config), Metrics::new(None), nodes.clone()).unwrap();
    assert!(
        rebuilt.resolve_key("kept").unwrap().is_some(),
        "rebuilt from the journal"
    );
    drop(rebuilt);

    // With every journal copy gone too, nothing says what the shards are.
    for node in &nodes {
        for (name, _) in node.list_meta_files(crate::journal::JOURNAL_AREA).unwrap() {
            node.delete_meta_file(crate::journal::JOURNAL_AREA, &name)
                .unwrap();
        }
    }
    let fresh = tempfile::tempdir().unwrap();
    let mut config = Config::for_test(fresh.path(), &regions, 2, 1, CS);
    let refused =
        Service::open_with_nodes(Arc::new(config.clone()), Metrics::new(None), nodes.clone());
    let message = refused.err().expect("refused").to_string();
    assert!(
        message.contains("metadata missing for an existing store")
            && message.contains("node-1")
            && message.contains("--accept-empty-metadata"),
        "{message}"
    );
    config.accept_empty_metadata = true;
    let svc = Service::open_with_nodes(Arc::new(config), Metrics::new(None), nodes).unwrap();
    assert!(svc.resolve_key("kept").unwrap().is_none(), "an empty store");
}

#[test]
fn a_read_only_daemon_refuses_every_change_and_still_reads() {
    let regions = ["a", "b", "c"];
    let nodes: Vec<Arc<dyn NodeBackend>> = (0..regions.len())
        .map(|i| Arc::new(MemoryNode::new(&format!("node-{}", i + 1), regions[i])) as _)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_test(dir.path(), &regions, 2, 1, CS);
    let content = pattern(CS + 7, 3);
    let svc = Service::open_with_nodes(Arc::new(config.clone()), Metrics::new(None), nodes.clone())
        .unwrap();
    let ino = svc
        .put_object("kept", &mut &content[..], PutOptions::default())
        .unwrap()
        .ino;
    svc.shutdown();
    drop(svc);

    config.read_only = true;
    let svc = Service::open_with_nodes(Arc::new(config), Metrics::new(None), nodes).unwrap();
    let refused = |r: Result<()>, what: &str| match r {
        Err(crate::error::Error::ReadOnlyMode(_)) => {}
        other => panic!("{what}: expected a read-only refusal, got {other:?}"),
    };
    refused(
        svc.put_object("new", &mut &b"x"[..], PutOptions::default())
            .map(drop),
        "put",
    );
    refused(svc.delete_object("kept").map(drop), "delete");
    refused(
        svc.make_node(
            ROOT_INO,
            b"d",
            &crate::model::NodeSpec::file(0o644, Owner::default()),
        )
        .map(drop),
        "create",
    );
    refused(svc.unlink(ROOT_INO, b"kept"), "unlink");
    refused(svc.truncate(ino, 0), "truncate");
    refused(svc.open_file(ino, READ_WRITE).map(drop), "open for writing");
    // Reads go on, and nothing changed.
    let fh = svc.open_file(ino, READ_ONLY).unwrap();
    assert_eq!(&svc.read(fh, 0, content.len()).unwrap()[..], &content[..]);
    svc.release(fh).unwrap();
    assert_eq!(svc.list_objects("", None, None).unwrap().0, ["kept"]);
}
