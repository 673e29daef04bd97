//! Invariant 5 (memory stays bounded by configuration, whatever the file
//! size): a 1 GiB object is put from a generating reader and read back
//! streaming with the default 4 MiB chunks, and the process's peak resident
//! set (VmHWM) must stay under 200 MiB. This is the only test in this file so
//! the figure belongs to it alone (each integration test file is its own
//! process). Run with `cargo test --release --test memory_bound -- --nocapture`.

mod common;

use common::{peak_rss_bytes, stream_object_digest, SeededReader, TestStore};
use std::time::Instant;

use minigcs::model::PutOptions;

#[test]
fn one_gib_put_and_get_stay_under_200_mib_peak_rss() {
    const MIB: u64 = 1024 * 1024;
    const SIZE: u64 = 1024 * MIB;
    let store = TestStore::round_robin(3, 3, 2, 1, minigcs::config::DEFAULT_CHUNK_SIZE);
    assert_eq!(store.chunk_size, 4 * MIB);
    let svc = store.service();

    let started = Instant::now();
    let mut reader = SeededReader::new(0x1_0000_0000, SIZE);
    let inode = svc
        .put_object("big/1gib.bin", &mut reader, PutOptions::default())
        .unwrap();
    let put_secs = started.elapsed().as_secs_f64();
    let want = reader.hex_digest();
    assert_eq!(inode.size, SIZE);
    assert_eq!(inode.checksum.as_deref(), Some(want.as_str()));
    let after_put = peak_rss_bytes();

    let started = Instant::now();
    let (n, got) = stream_object_digest(svc, "big/1gib.bin", (4 * MIB) as usize);
    let get_secs = started.elapsed().as_secs_f64();
    assert_eq!(n, SIZE);
    assert_eq!(got, want, "1 GiB read back differs");

    let peak = peak_rss_bytes();
    eprintln!(
        "1 GiB: put {put_secs:.1} s ({:.0} MB/s), get {get_secs:.1} s ({:.0} MB/s); peak RSS (VmHWM) after put {:.1} MiB, after get {:.1} MiB",
        SIZE as f64 / 1e6 / put_secs,
        SIZE as f64 / 1e6 / get_secs,
        after_put as f64 / MIB as f64,
        peak as f64 / MIB as f64
    );
    assert!(
        peak < 200 * MIB,
        "peak RSS {:.1} MiB is over 200 MiB",
        peak as f64 / MIB as f64
    );
}
