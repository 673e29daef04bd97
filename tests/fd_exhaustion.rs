//! The daemon out of file descriptors (EMFILE): health probes keep the
//! nodes' last state instead of failing them, a read fails that request with
//! an error instead of reporting its shards missing or corrupt, the accept
//! loops of the control socket and the HTTP API wait instead of spinning,
//! and once descriptors are free again everything reads back, nothing was
//! queued for repair and the waiting clients are served. This file holds
//! one test on purpose: it lowers the process's descriptor limit, which no
//! other test may share.
//! Run with `cargo test --release --test fd_exhaustion`.

mod common;

use common::{seeded_bytes, TestStore};
use nix::sys::resource::{getrlimit, getrusage, setrlimit, Resource, UsageWho};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use minigcs::chunk::NodeState;
use minigcs::error::Error;
use minigcs::model::PutOptions;
use minigcs::service::Service;

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

/// Run `open`, freeing one held descriptor before each attempt until it
/// no longer fails with EMFILE.
fn with_a_free_descriptor<T>(held: &mut Vec<File>, open: impl Fn() -> std::io::Result<T>) -> T {
    loop {
        held.pop().expect("a held descriptor to free");
        match open() {
            Ok(value) => return value,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => continue,
            Err(e) => panic!("client connect failed: {e}"),
        }
    }
}

#[test]
fn descriptor_exhaustion_fails_requests_but_never_nodes_shards_or_the_accept_loops() {
    let store = TestStore::new(&["a", "b", "c"], 2, 1, 64 * 1024);
    requests_fail_but_nodes_and_shards_stay(store.service());
    accept_loops_wait_and_serve_later(store.service(), store.dir.path());
}

fn requests_fail_but_nodes_and_shards_stay(svc: &Arc<Service>) {
    let data = seeded_bytes(7, 300 * 1024);
    svc.put_object("obj", &mut &data[..], PutOptions::default())
        .unwrap();
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

/// CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

fn accept_loops_wait_and_serve_later(svc: &Arc<Service>, dir: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let socket = dir.join("fd-test.sock");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let control = runtime
        .block_on(async { minigcs::control::bind(&socket) })
        .unwrap();
    runtime.spawn(minigcs::control::serve(
        svc.clone(),
        control,
        None,
        stopped(stop_rx.clone()),
    ));
    let http = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = http.local_addr().unwrap();
    runtime.spawn(minigcs::http::serve(svc.clone(), http, stopped(stop_rx)));

    // Out of descriptors but for two, which the clients take: the servers'
    // accepts then fail with EMFILE while the clients wait in the backlog.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(1024), hard).unwrap();
    let mut held = exhaust_descriptors();
    // The daemon's threads may take a free descriptor meanwhile: free one
    // more until each client has its socket.
    let mut ctl_client = with_a_free_descriptor(&mut held, || {
        std::os::unix::net::UnixStream::connect(&socket)
    });
    let mut http_client = with_a_free_descriptor(&mut held, || std::net::TcpStream::connect(addr));
    let cpu_before = cpu_seconds();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_seconds() - cpu_before;
    drop(held);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert!(
        cpu < 0.2,
        "{cpu:.2} CPU seconds in 2 s out of descriptors: an accept loop spins"
    );

    // Descriptors back: both clients are accepted and served.
    ctl_client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    ctl_client.write_all(b"{\"cmd\": \"ping\"}\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&ctl_client).read_line(&mut reply).unwrap();
    assert!(reply.contains("\"ok\":true"), "control reply: {reply}");
    http_client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    http_client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    http_client.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "HTTP reply: {response}"
    );
    let _ = stop_tx.send(true);
    runtime.shutdown_timeout(Duration::from_secs(5));
}
