//! The background workers, driven for real by the file service (no FUSE):
//! superseded chunks lose their shards within a bounded time, a read that
//! finds a bad shard gets it repaired without anyone asking, writing new
//! files wakes neither the collector nor the health probe, a burst of
//! overwrites is collected in a few passes, shard files a crash left just
//! before a restart are swept by the sweep's second look, and `ctl workers` (the control
//! request and its typed report) lists every worker until shutdown stops
//! them all.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{flip_last_byte, TestStore};
use minigcs::control::{execute, Reply, Request};
use minigcs::model::{Owner, PutOptions};
use minigcs::report::{WorkerReport, WorkerState, WorkersReport};
use minigcs::service::posix::IfExists;
use minigcs::service::{OpenFlags, Service};

const CS: u64 = 64 * 1024;
/// How long a worker may take to act on a wake-up (generous for a slow
/// machine; the collector settles for 100 ms and polls every 2 s).
const BOUND: Duration = Duration::from_secs(10);
const WORKER_NAMES: [&str; 9] = [
    "collector",
    "repair",
    "recovery",
    "scrub",
    "health",
    "orphan-sweep",
    "meta-snapshot",
    "meta-journal",
    "seg-cleaner",
];

fn put(svc: &Service, key: &str, data: &[u8]) {
    svc.put_object(key, &mut &data[..], PutOptions::default())
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

fn worker(svc: &Service, name: &str) -> WorkerReport {
    svc.workers_report()
        .workers
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no worker named {name}"))
}

/// Wait until `done` holds, or fail after `BOUND` saying what was awaited.
fn within_bound(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < BOUND, "{what}: not within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// Write a new file through a handle, as the mount does, and close it.
fn write_new_file(svc: &Service, name: &str, data: &[u8]) {
    let (_, fh) = svc
        .create_or_open(
            minigcs::meta::ROOT_INO,
            name.as_bytes(),
            0o644,
            Owner::ROOT,
            OpenFlags {
                read: false,
                write: true,
                append: false,
            },
            IfExists::Fail,
        )
        .unwrap();
    svc.write(fh, 0, data).unwrap();
    svc.release(fh).unwrap();
}

#[test]
fn superseded_chunks_lose_their_shards_within_a_bounded_time() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    let workers = svc.start_workers();
    put(svc, "gc/obj.bin", &vec![1u8; (CS * 3) as usize]);
    let old = store.shard_files_of("gc/obj.bin");
    assert_eq!(old.len(), 9);
    put(svc, "gc/obj.bin", &vec![2u8; (CS + 5) as usize]);
    let took = within_bound("superseded shards deleted by the collector", || {
        old.iter().all(|f| !f.exists())
    });
    eprintln!("superseded shards gone after {took:?}");
    assert_eq!(store.all_shard_files().len(), 6, "2 chunks × 3 shards");
    within_bound("collector counts the freed chunks", || {
        worker(svc, "collector").done >= 3
    });
    assert!(workers.stop(BOUND).is_empty());
}

#[test]
fn a_bad_shard_found_by_a_read_is_repaired_without_being_asked() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    let workers = svc.start_workers();
    let data = vec![7u8; CS as usize];
    put(svc, "r/obj.bin", &data);
    let shard = store.shard_files_of("r/obj.bin")[0].clone();
    let good = std::fs::read(&shard).unwrap();
    flip_last_byte(&shard);
    let snap = svc.open_object("r/obj.bin").unwrap();
    assert_eq!(snap.read(0, data.len()).unwrap(), data, "degraded read");
    drop(snap);
    let took = within_bound("corrupt shard rebuilt by the repair worker", || {
        std::fs::read(&shard).is_ok_and(|b| b == good)
    });
    eprintln!("bad shard rebuilt after {took:?}");
    within_bound("repair worker counts the shard", || {
        worker(svc, "repair").done >= 1
    });
    assert!(workers.stop(BOUND).is_empty());
}

#[test]
fn writing_new_files_wakes_neither_the_collector_nor_the_health_probe() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    let workers = svc.start_workers();
    within_bound("collector's start-up pass", || {
        worker(svc, "collector").runs >= 1
    });
    let collector_runs = worker(svc, "collector").runs;
    let health_runs = worker(svc, "health").runs;
    let repair_runs = worker(svc, "repair").runs;
    let start = Instant::now();
    for i in 0..200 {
        write_new_file(svc, &format!("f{i}"), format!("file {i}\n").as_bytes());
        put(svc, &format!("api/f{i}"), b"small");
    }
    std::thread::sleep(Duration::from_millis(300));
    // Only the workers' own intervals may have run them (2 s; health 5 s).
    let intervals = (start.elapsed().as_secs() / 2) + 1;
    let ran = |name: &str, before: u64| worker(svc, name).runs - before;
    assert!(
        ran("collector", collector_runs) <= intervals,
        "400 new files ran the collector {} times",
        ran("collector", collector_runs)
    );
    assert!(ran("repair", repair_runs) <= intervals);
    assert!(ran("health", health_runs) <= intervals / 2 + 1);
    assert!(workers.stop(BOUND).is_empty());
}

#[test]
fn a_burst_of_overwrites_is_collected_in_a_few_passes() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    for i in 0..100 {
        put(svc, &format!("b/f{i}"), b"first");
    }
    let workers = svc.start_workers();
    within_bound("collector's start-up pass", || {
        worker(svc, "collector").runs >= 1
    });
    let before = worker(svc, "collector");
    let start = Instant::now();
    for i in 0..100 {
        put(svc, &format!("b/f{i}"), b"second");
    }
    within_bound("the 100 superseded chunks collected", || {
        worker(svc, "collector").done >= before.done + 100
    });
    let passes = worker(svc, "collector").runs - before.runs;
    // One pass per settle time (100 ms) or interval (2 s) at most.
    let most = start.elapsed().as_millis() as u64 / 100 + 2;
    assert!(passes <= most, "{passes} passes for one burst");
    assert!(passes < 100, "{passes} passes for 100 overwrites");
    assert_eq!(store.all_shard_files().len(), 300);
    assert!(workers.stop(BOUND).is_empty());
}

#[test]
fn ctl_workers_lists_every_worker_until_shutdown_stops_them() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc: &Arc<Service> = store.service();
    assert!(
        svc.workers_report().workers.is_empty(),
        "no workers before they start"
    );
    let workers = svc.start_workers();
    within_bound("orphan sweep done", || {
        worker(svc, "orphan-sweep").state == WorkerState::Stopped
    });

    // The control request, its JSON and the typed reply ctl decodes.
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let data = execute(svc, Request::Workers, None, &tx).unwrap();
    let Reply::Workers(report) = Reply::decode(&Request::Workers, data.clone()).unwrap() else {
        panic!("workers request decoded as another reply");
    };
    let names: Vec<&str> = report.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, WORKER_NAMES);
    for w in &data["workers"].as_array().unwrap()[..] {
        for field in [
            "name",
            "state",
            "doing",
            "queue",
            "done",
            "runs",
            "last_run",
            "last_error",
            "last_error_at",
        ] {
            assert!(w.get(field).is_some(), "{field} missing from {w}");
        }
        assert!(["idle", "running", "stopped"].contains(&w["state"].as_str().unwrap()));
    }
    let sweep = &report.workers[5];
    assert!(sweep.last_run.is_some() && sweep.last_error.is_none());
    assert_eq!(
        report.workers[3].doing,
        "periodic scrub off (recovery.scrub_interval_secs: 0)"
    );
    let json: WorkersReport = serde_json::from_value(data).unwrap();
    assert_eq!(json.workers.len(), WORKER_NAMES.len());

    assert!(workers.stop(BOUND).is_empty(), "every worker stops");
    assert!(svc.is_shutting_down());
    for w in svc.workers_report().workers {
        assert_eq!(
            w.state,
            WorkerState::Stopped,
            "{} still {:?}",
            w.name,
            w.state
        );
    }
}

#[test]
fn orphans_written_just_before_a_restart_are_swept_by_a_second_look() {
    let mut store = TestStore::round_robin(3, 3, 2, 1, CS);
    put(store.service(), "kept", &vec![5u8; CS as usize + 100]);
    let committed = store.all_shard_files();
    // A write a crash cut short right before a quick restart: shards stored,
    // no metadata, files younger than the start-up pass's grace time.
    let cut_short = store
        .service()
        .chunk_store()
        .write_chunk(vec![7u8; 1000], Default::default())
        .unwrap();
    let orphans: Vec<_> = (cut_short.placement.iter().enumerate())
        .map(|(i, p)| store.shard_path(p.unwrap(), cut_short.layout.chunk_id, i))
        .collect();
    // The crash came a second before the restart.
    let crashed_at = SystemTime::now() - Duration::from_secs(1);
    for f in &orphans {
        let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
        file.set_modified(crashed_at).unwrap();
    }
    let svc = store.reopen().clone();
    // A write of the new service, in flight (neither committed nor pinned).
    let inflight = svc
        .chunk_store()
        .write_chunk(vec![9u8; 1000], Default::default())
        .unwrap();
    let workers = svc.start_workers();
    within_bound("start-up pass spares the young files", || {
        worker(&svc, "orphan-sweep").doing.contains("looking again")
    });
    for f in &orphans {
        assert!(f.exists(), "{} swept within the grace time", f.display());
    }
    within_bound("second look frees the young orphans", || {
        orphans.iter().all(|f| !f.exists())
    });
    within_bound("orphan sweep done", || {
        worker(&svc, "orphan-sweep").state == WorkerState::Stopped
    });
    assert_eq!(
        worker(&svc, "orphan-sweep").doing,
        "start-up sweep freed 3 orphan shard file(s)"
    );
    for (i, p) in inflight.placement.iter().enumerate() {
        let path = store.shard_path(p.unwrap(), inflight.layout.chunk_id, i);
        assert!(path.exists(), "an in-flight shard was swept");
    }
    svc.chunk_store()
        .delete_chunk(&inflight.layout, &inflight.placement);
    assert_eq!(store.all_shard_files(), committed);
    let kept = svc.open_object("kept").unwrap();
    assert_eq!(
        kept.read(0, CS as usize + 200).unwrap().to_vec(),
        vec![5u8; CS as usize + 100]
    );
    assert!(workers.stop(BOUND).is_empty());
}
