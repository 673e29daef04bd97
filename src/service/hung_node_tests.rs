//! A node that hangs (every call waits, as on a frozen mount) costs an
//! operation at most its deadline: reads are rebuilt from the other shards,
//! writes succeed with the hung node's shard recorded missing and queued for
//! repair, health reports the node failed without waiting for it, and once
//! the node answers again it is up and everything is repaired. Each call runs
//! on its own thread with a generous bound, so a hang fails the test instead
//! of stalling it.

use crossbeam_channel::{unbounded, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Service;
use crate::chunk::NodeState;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::PutOptions;
use crate::node::{memory_nodes, MemoryNode};
use crate::report::HealthStatus;

const CS: u64 = 64 * 1024;
/// Far beyond any deadline these tests set; reached only when something hangs.
const BOUND: Duration = Duration::from_secs(30);

/// Nodes hung by a test are released when it ends, also when it fails.
struct Unhang(Vec<Arc<MemoryNode>>);

impl Drop for Unhang {
    fn drop(&mut self) {
        for n in &self.0 {
            n.set_hung(false);
        }
    }
}

fn service(node_timeout_ms: u64) -> (Arc<Service>, Unhang, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let regions = ["a", "b", "c"];
    let mut config = Config::for_test(dir.path(), &regions, 2, 1, CS);
    config.recovery.node_timeout_ms = node_timeout_ms;
    let (nodes, backends) = memory_nodes(&regions);
    let svc = Service::open_with_nodes(Arc::new(config), Metrics::new(None), backends).unwrap();
    (svc, Unhang(nodes), dir)
}

/// Run `f` on its own thread and wait for it at most `BOUND`.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx): (_, Receiver<T>) = unbounded();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{what} waited for the hung node"))
}

fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn read_all(svc: &Arc<Service>, key: &str) -> Vec<u8> {
    let snap = svc.open_object(key).unwrap();
    snap.read(0, snap.inode.size as usize + 1).unwrap().to_vec()
}

/// The node that holds data shard 0 of the object's last chunk.
fn last_data_node(svc: &Arc<Service>, key: &str) -> usize {
    let ino = svc.open_object(key).unwrap().inode.ino;
    let chunks = svc.ctx.meta.chunks_of(ino).unwrap();
    chunks.last().unwrap().placement[0].unwrap()
}

#[test]
fn a_hung_node_costs_at_most_a_deadline_and_everything_is_repaired_when_it_answers() {
    let (svc, unhang, _dir) = service(300);
    let before = pattern(5 * CS + 123, 1);
    svc.put_object("before", &mut &before[..], PutOptions::default())
        .unwrap();
    let hung = last_data_node(&svc, "before");
    unhang.0[hung].set_hung(true);

    // Reads rebuild from the other shards.
    let s = svc.clone();
    assert_eq!(bounded("a read", move || read_all(&s, "before")), before);

    // Health answers, naming the node and why.
    let s = svc.clone();
    let health = bounded("health", move || s.health_report()).unwrap();
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    assert_eq!(health.failed_nodes, vec![format!("node-{}", hung + 1)]);
    assert!(
        health.nodes[hung].reason.starts_with("timed out"),
        "{:?}",
        health.nodes[hung]
    );

    // Writes succeed without the hung node; its shards are queued for repair.
    let during = pattern(3 * CS + 7, 2);
    let s = svc.clone();
    let data = during.clone();
    bounded("a write", move || {
        s.put_object("during", &mut &data[..], PutOptions::default())
    })
    .unwrap();
    let ino = svc.open_object("during").unwrap().inode.ino;
    for rec in svc.ctx.meta.chunks_of(ino).unwrap() {
        assert!(!rec.placement.contains(&Some(hung)), "{:?}", rec.placement);
        assert_eq!(rec.placement.iter().flatten().count(), 2);
    }
    let s = svc.clone();
    let health = bounded("health", move || s.health_report()).unwrap();
    assert!(health.repair_queue > 0, "{health:?}");
    let s = svc.clone();
    bounded("statfs", move || s.fs_stats()).unwrap();
    let s = svc.clone();
    bounded("stats", move || s.stats_report()).unwrap();
    let s = svc.clone();
    assert_eq!(bounded("a read", move || read_all(&s, "during")), during);

    // The node answers again: it is probed up and everything is rebuilt.
    unhang.0[hung].set_hung(false);
    let give_up = Instant::now() + BOUND;
    loop {
        svc.chunk_store().probe_all();
        svc.repair_pending().unwrap();
        let health = svc.health_report().unwrap();
        if health.status == HealthStatus::Healthy && health.repair_queue == 0 {
            break;
        }
        assert!(Instant::now() < give_up, "never repaired: {health:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for rec in svc.ctx.meta.chunks_of(ino).unwrap() {
        assert_eq!(
            rec.placement.iter().flatten().count(),
            3,
            "{:?}",
            rec.placement
        );
    }
    assert_eq!(read_all(&svc, "during"), during);
    assert_eq!(read_all(&svc, "before"), before);
}

#[test]
fn a_slow_data_shard_is_hedged_without_waiting_for_its_deadline() {
    // A deadline far beyond the bound: only a hedged read can finish. The
    // last chunk is one byte: one data shard holds it, so the hedge must
    // ask two more shards to rebuild it without the slow one.
    let (svc, unhang, _dir) = service(BOUND.as_millis() as u64 * 4);
    let data = pattern(2 * CS + 1, 3);
    svc.put_object("slow", &mut &data[..], PutOptions::default())
        .unwrap();
    let slow = last_data_node(&svc, "slow");
    unhang.0[slow].set_hung(true);
    let s = svc.clone();
    assert_eq!(bounded("a hedged read", move || read_all(&s, "slow")), data);
    assert_eq!(
        svc.chunk_store().node_status()[slow].state,
        NodeState::Up,
        "a slow answer within the deadline is not a failure"
    );
}
