//! The daemon out of file descriptors (EMFILE): health probes keep the
//! nodes' last state instead of failing them, a read fails that request with
//! an error instead of reporting its shards missing or corrupt, and once
//! descriptors are free again everything reads back and nothing was queued
//! for repair. This file holds one test on purpose: it lowers the process's
//! descriptor limit, which no other test may share.
//! Run with `cargo test --release --test fd_exhaustion`.

mod common;

use common::{seeded_bytes, TestStore};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::fs::File;

use minigcs::chunk::NodeState;
use minigcs::error::Error;

/// Open /dev/null until the process is out of descriptors; the files stay
/// open until the result is dropped.
fn exhaust_descriptors() -> Vec<File> {
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return held,
            Err(e) => panic!("unexpected error while exhausting descriptors: {e}"),
        }
    }
}

#[test]
fn descriptor_exhaustion_fails_requests_but_never_nodes_or_shards() {
    let store = TestStore::new(&["a", "b", "c"], 2, 1, 64 * 1024);
    let svc = store.service().clone();
    let data = seeded_bytes(7, 300 * 1024);
    svc.put_object("obj", &mut &data[..], None, None).unwrap();
    // Opened, never read: no chunk of it is cached.
    let snap = svc.open_object("obj").unwrap();

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(1024), hard).unwrap();
    let held = exhaust_descriptors();

    let changed = svc.chunk_store().probe_all();
    let read = snap.read(0, data.len());
    let states: Vec<NodeState> = svc
        .chunk_store()
        .node_status()
        .iter()
        .map(|s| s.state)
        .collect();

    drop(held);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();

    assert!(
        changed.is_empty(),
        "probes changed node states: {changed:?}"
    );
    assert_eq!(states, [NodeState::Up; 3]);
    match read {
        Err(Error::Unavailable(why)) => assert!(why.contains("could not open"), "{why}"),
        Err(e) => panic!("a read without descriptors must fail as unavailable, got {e:?}"),
        Ok(got) => panic!("a read without descriptors returned {} bytes", got.len()),
    }
    let bad = svc.chunk_store().take_bad_shards();
    assert!(bad.is_empty(), "shards reported bad: {bad:?}");

    // Descriptors back: everything as before.
    assert_eq!(snap.read(0, data.len()).unwrap(), data);
    assert!(svc.chunk_store().probe_all().is_empty());
    let scrub = svc.scrub(false, &|_| {}).unwrap();
    assert!(scrub.problems.is_empty(), "{scrub:?}");
}
