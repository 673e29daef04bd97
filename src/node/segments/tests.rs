//! Unit tests of the segment store, through the local node that uses it.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::node::{LocalDirNode, NodeBackend};

fn key(chunk_id: u64, index: u16) -> ShardKey {
    ShardKey { chunk_id, index }
}

fn small_segments() -> SegmentSettings {
    SegmentSettings {
        max_shard: 4096,
        segment_bytes: 64 * 1024,
        dead_fraction: 0.5,
    }
}

fn node_at(root: &Path, settings: SegmentSettings) -> LocalDirNode {
    let node = LocalDirNode::new("node-1", "r1", root).with_segments(settings);
    node.initialize("c").unwrap();
    node
}

/// The node closed and opened again, as at a daemon restart.
fn reopen(node: LocalDirNode, settings: SegmentSettings) -> LocalDirNode {
    let root = node.root.clone();
    node.release();
    drop(node);
    node_at(&root, settings)
}

fn content(k: ShardKey, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (k.chunk_id as usize * 31 + k.index as usize * 7 + i) as u8)
        .collect()
}

fn read_all(node: &dyn NodeBackend, k: ShardKey) -> Vec<u8> {
    let mut r = node.open_shard(k).unwrap();
    let len = r.len() as usize;
    r.read_vec_at(0, len).unwrap()
}

fn segment_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = fs::read_dir(root.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

#[test]
fn conformance_with_segments_and_with_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalDirNode::new("node-1", "r1", &dir.path().join("n1"));
    crate::node::conformance::run(&node);
    assert!(
        !segment_files(&node.root).is_empty(),
        "small shards went to segments"
    );
    // One shard of the suite above the threshold, one below.
    let mixed =
        LocalDirNode::new("node-1", "r1", &dir.path().join("n2")).with_segments(small_segments());
    crate::node::conformance::run(&mixed);
}

#[test]
fn concurrent_puts_share_syncs_and_all_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(node_at(&dir.path().join("n1"), small_segments()));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let node = node.clone();
            std::thread::spawn(move || {
                for i in 0..60u64 {
                    let k = key(t * 1000 + i, (i % 3) as u16);
                    node.put_shard(k, &[&content(k, 100 + (i as usize * 37) % 1500)])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let figures = node.segment_figures().unwrap();
    assert_eq!(figures.appends, 480);
    assert!(
        figures.syncs >= 1 && figures.syncs <= 480,
        "each put waited for at most one sync of its own: {figures:?}"
    );
    println!("{} appends, {} fdatasyncs", figures.appends, figures.syncs);
    let node = reopen(Arc::into_inner(node).unwrap(), small_segments());
    assert_eq!(node.list_shards().unwrap().len(), 480);
    for t in 0..8u64 {
        for i in 0..60u64 {
            let k = key(t * 1000 + i, (i % 3) as u16);
            assert_eq!(
                read_all(&node, k),
                content(k, 100 + (i as usize * 37) % 1500)
            );
        }
    }
    assert!(
        segment_files(&node.root).len() > 1,
        "the puts filled several segments"
    );
}

#[test]
fn a_torn_tail_is_ignored_at_reopen_and_never_read_as_entries() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_at(&dir.path().join("n1"), small_segments());
    for i in 0..5 {
        node.put_shard(key(i, 0), &[&content(key(i, 0), 1000)])
            .unwrap();
    }
    let store = node.segment_store(false).unwrap().unwrap();
    let (seg, end) = {
        let a = store.active.lock();
        (a.file.clone(), a.end)
    };
    drop(store);
    // A sixth entry cut short: its header and half its payload.
    let k = key(99, 0);
    let payload = content(k, 1000);
    let header = format::entry_header(
        &EntryHeader {
            kind: EntryKind::Put,
            key: k,
            len: 1000,
            seq: 1_000_000,
            mtime_ms: now_ms(),
        },
        &[&payload],
    );
    seg.write_all_at(&header, end).unwrap();
    seg.write_all_at(&payload[..500], end + ENTRY_HEADER_LEN)
        .unwrap();
    drop(seg);
    let node = reopen(node, small_segments());
    assert_eq!(node.list_shards().unwrap().len(), 5);
    assert!(matches!(node.open_shard(k), Err(Error::NotFound(_))));
    // Appends go to a new segment; everything reads back after another reopen.
    node.put_shard(key(6, 0), &[b"after the tear"]).unwrap();
    let node = reopen(node, small_segments());
    assert_eq!(read_all(&node, key(6, 0)), b"after the tear");
    for i in 0..5 {
        assert_eq!(read_all(&node, key(i, 0)), content(key(i, 0), 1000));
    }
    assert!(matches!(node.open_shard(k), Err(Error::NotFound(_))));
}

#[test]
fn a_damaged_entry_costs_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_at(&dir.path().join("n1"), small_segments());
    for i in 0..10 {
        node.put_shard(key(i, 0), &[&content(key(i, 0), 1000)])
            .unwrap();
    }
    // One byte of the fourth entry's payload flipped.
    let seg = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment_files(&node.root)[0])
        .unwrap();
    let at = FILE_HEADER_LEN + 3 * format::entry_len(1000) + ENTRY_HEADER_LEN + 500;
    let mut b = [0u8; 1];
    seg.read_exact_at(&mut b, at).unwrap();
    seg.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    let node = reopen(node, small_segments());
    assert!(matches!(
        node.open_shard(key(3, 0)),
        Err(Error::NotFound(_))
    ));
    for i in (0..10).filter(|&i| i != 3) {
        assert_eq!(read_all(&node, key(i, 0)), content(key(i, 0), 1000));
    }
    // Appends go on after the last good entry, never over it.
    node.put_shard(key(20, 0), &[b"later"]).unwrap();
    let node = reopen(node, small_segments());
    assert_eq!(read_all(&node, key(20, 0)), b"later");
    assert_eq!(read_all(&node, key(9, 0)), content(key(9, 0), 1000));
}

#[test]
fn tombstones_and_replacements_hold_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_at(&dir.path().join("n1"), small_segments());
    node.put_shard(key(1, 0), &[b"first"]).unwrap();
    node.put_shard(key(2, 0), &[b"doomed"]).unwrap();
    node.put_shard(key(1, 0), &[b"second"]).unwrap();
    node.delete_shard(key(2, 0)).unwrap();
    // A durable put after the tombstone makes it durable too.
    node.put_shard(key(3, 0), &[b"third"]).unwrap();
    let node = reopen(node, small_segments());
    assert_eq!(read_all(&node, key(1, 0)), b"second");
    assert!(matches!(
        node.open_shard(key(2, 0)),
        Err(Error::NotFound(_))
    ));
    let mut keys: Vec<_> = node
        .list_shards()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    assert_eq!(keys, vec![key(1, 0), key(3, 0)]);
    // Stored again after a removal: back.
    node.put_shard(key(2, 0), &[b"again"]).unwrap();
    let node = reopen(node, small_segments());
    assert_eq!(read_all(&node, key(2, 0)), b"again");
}

#[test]
fn the_cleaner_moves_live_entries_and_frees_segments_while_readers_read() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_at(&dir.path().join("n1"), small_segments());
    let keys: Vec<ShardKey> = (0..200).map(|i| key(i, 1)).collect();
    for k in &keys {
        node.put_shard(*k, &[&content(*k, 1500)]).unwrap();
    }
    let before = node.segment_figures().unwrap();
    assert!(before.segments >= 4, "{before:?}");
    // Keep one in ten; hold a reader open on a kept shard in the oldest segment.
    for k in keys.iter().filter(|k| k.chunk_id % 10 != 0) {
        node.delete_shard(*k).unwrap();
    }
    let mut early = node.open_shard(keys[0]).unwrap();
    let oldest = segment_files(&node.root)[0].clone();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (pass, paced, reads) = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                for k in keys.iter().filter(|k| k.chunk_id % 10 == 0) {
                    assert_eq!(read_all(&node, *k), content(*k, 1500));
                    reads += 1;
                }
            }
            reads
        });
        let mut paced = 0u64;
        let pass = node
            .clean_segments(&mut |bytes| paced += bytes, &|| false)
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (pass, paced, handle.join().unwrap())
    });
    assert!(reads > 0);
    assert!(pass.segments_cleaned >= 3, "{pass:?}");
    assert_eq!(pass.moved_bytes, paced);
    assert!(!oldest.exists(), "the oldest segment was removed");
    assert_eq!(early.read_vec_at(0, 1500).unwrap(), content(keys[0], 1500));
    let after = node.segment_figures().unwrap();
    assert!(after.segments < before.segments, "{before:?} → {after:?}");
    assert_eq!(after.reclaimed_bytes, pass.reclaimed_bytes);
    let node = reopen(node, small_segments());
    assert_eq!(node.list_shards().unwrap().len(), 20);
    for k in keys.iter().filter(|k| k.chunk_id % 10 == 0) {
        assert_eq!(read_all(&node, *k), content(*k, 1500));
    }
    for k in keys.iter().filter(|k| k.chunk_id % 10 != 0) {
        assert!(
            matches!(node.open_shard(*k), Err(Error::NotFound(_))),
            "{k:?} came back"
        );
    }
}

#[test]
fn the_cleaner_keeps_tombstones_that_still_hide_an_older_put() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_at(&dir.path().join("n1"), small_segments());
    let doomed = key(1, 0);
    // Segment A: the doomed shard among 41 live ones (never worth
    // cleaning; 42 entries fill it), the 42nd live one opens segment B.
    node.put_shard(doomed, &[&content(doomed, 1500)]).unwrap();
    for i in 0..42 {
        node.put_shard(key(100 + i, 0), &[&content(key(100 + i, 0), 1500)])
            .unwrap();
    }
    let oldest = segment_files(&node.root)[0].clone();
    assert_eq!(node.segment_figures().unwrap().segments, 2);
    // Segment B: the tombstone, among fillers removed again (all dead).
    node.delete_shard(doomed).unwrap();
    for i in 0..45 {
        node.put_shard(key(200 + i, 0), &[&content(key(200 + i, 0), 1500)])
            .unwrap();
    }
    for i in 0..45 {
        node.delete_shard(key(200 + i, 0)).unwrap();
    }
    for i in 0..45 {
        node.put_shard(key(300 + i, 0), &[&content(key(300 + i, 0), 1500)])
            .unwrap();
    }
    let pass = node.clean_segments(&mut |_| {}, &|| false).unwrap();
    assert!(pass.segments_cleaned >= 1, "{pass:?}");
    assert!(oldest.exists(), "the mostly live segment stays");
    let node = reopen(node, small_segments());
    assert!(
        matches!(node.open_shard(doomed), Err(Error::NotFound(_))),
        "a removed shard came back after its tombstone's segment was cleaned"
    );
    for i in 0..45 {
        assert!(node.open_shard(key(200 + i, 0)).is_err());
        assert_eq!(
            read_all(&node, key(300 + i, 0)),
            content(key(300 + i, 0), 1500)
        );
    }
    assert_eq!(node.list_shards().unwrap().len(), 42 + 45);
}

#[test]
fn a_store_of_shard_files_keeps_working_and_new_small_shards_go_to_segments() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("n1");
    let files_only = SegmentSettings {
        max_shard: 0,
        ..small_segments()
    };
    let old = node_at(&root, files_only);
    old.put_shard(key(1, 0), &[b"old small"]).unwrap();
    old.put_shard(key(2, 0), &[b"old kept"]).unwrap();
    assert!(old.shard_path(key(1, 0)).exists());
    let node = reopen(old, small_segments());
    assert_eq!(read_all(&node, key(1, 0)), b"old small");
    node.put_shard(key(3, 0), &[b"new small"]).unwrap();
    node.put_shard(key(4, 0), &[&vec![5u8; 10_000]]).unwrap();
    assert!(!node.shard_path(key(3, 0)).exists());
    assert!(
        node.shard_path(key(4, 0)).exists(),
        "large shards keep their own file"
    );
    // Stored again: the file gives way to the segment copy.
    node.put_shard(key(1, 0), &[b"new copy"]).unwrap();
    assert!(!node.shard_path(key(1, 0)).exists());
    let mut keys: Vec<_> = node
        .list_shards()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    assert_eq!(keys, vec![key(1, 0), key(2, 0), key(3, 0), key(4, 0)]);
    node.delete_shard(key(2, 0)).unwrap();
    assert!(!node.shard_path(key(2, 0)).exists());
    // Back to files only: what segments hold stays readable, and a large
    // copy of a key replaces its segment entry.
    let node = reopen(node, files_only);
    assert_eq!(read_all(&node, key(1, 0)), b"new copy");
    assert_eq!(read_all(&node, key(3, 0)), b"new small");
    node.put_shard(key(3, 0), &[b"now a file"]).unwrap();
    let node = reopen(node, files_only);
    assert_eq!(read_all(&node, key(3, 0)), b"now a file");
    assert_eq!(node.list_shards().unwrap().len(), 3);
}

#[test]
fn a_wiped_folder_is_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("n1");
    let node = node_at(&root, small_segments());
    node.put_shard(key(1, 0), &[b"gone with the disk"]).unwrap();
    fs::remove_dir_all(&root).unwrap();
    assert!(node.open_shard(key(1, 0)).is_err());
    assert!(
        node.put_shard(key(2, 0), &[b"x"]).is_err(),
        "no folder, no store"
    );
    fs::create_dir(&root).unwrap();
    node.initialize("c").unwrap();
    assert!(node.list_shards().unwrap().is_empty());
    node.put_shard(key(2, 0), &[b"fresh"]).unwrap();
    assert_eq!(read_all(&node, key(2, 0)), b"fresh");
}

/// Figures for the README, not a check: `cargo test --release --lib
/// segments::tests::measure -- --ignored --nocapture` (in `target/`, or in
/// `$SEGMENT_MEASURE_DIR`). Five interleaved rounds of each way to store a
/// 2 KiB shard durably, the median round printed (the disk is shared).
#[test]
#[ignore]
fn measure_sync_cost_and_scan_time() {
    use std::time::Instant;
    let base = std::env::var("SEGMENT_MEASURE_DIR").unwrap_or_else(|_| "target".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let node = node_at(&dir.path().join("n1"), SegmentSettings::default());
    node.put_shard(key(0, 0), &[b"warm"]).unwrap();
    let files = node_at(
        &dir.path().join("n2"),
        SegmentSettings {
            max_shard: 0,
            ..SegmentSettings::default()
        },
    );
    // Appends into fallocate'd (unwritten) space, for comparison: each
    // write lands in a new 4 KiB block, so each converts an extent.
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("falloc"))
        .unwrap();
    nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::fcntl::FallocateFlags::empty(),
        0,
        64 << 20,
    )
    .unwrap();
    f.sync_all().unwrap();
    let per_round = 200u64;
    let mut rounds: [Vec<f64>; 3] = Default::default();
    let mut next = 1u64;
    let mut block = 0u64;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..per_round {
            node.put_shard(key(next, 0), &[&[7u8; 2048]]).unwrap();
            next += 1;
        }
        rounds[0].push(t.elapsed().as_secs_f64() * 1000.0 / per_round as f64);
        let t = Instant::now();
        for _ in 0..per_round {
            files.put_shard(key(next, 0), &[&[7u8; 2048]]).unwrap();
            next += 1;
        }
        rounds[1].push(t.elapsed().as_secs_f64() * 1000.0 / per_round as f64);
        let t = Instant::now();
        for _ in 0..per_round {
            f.write_all_at(&[7u8; 2096], block * 4096).unwrap();
            f.sync_data().unwrap();
            block += 1;
        }
        rounds[2].push(t.elapsed().as_secs_f64() * 1000.0 / per_round as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [seg, file, falloc] = &mut rounds;
    println!(
        "durable 2 KiB store, median of 5 rounds of {per_round}: segment append {:.3} ms, own file {:.3} ms, append into fallocate'd space {:.3} ms",
        median(seg),
        median(file),
        median(falloc)
    );
    let store = node.segment_store(false).unwrap().unwrap();
    for i in 0..100_000u64 {
        let h = EntryHeader {
            kind: EntryKind::Put,
            key: key(1_000_000 + i, 1),
            len: 2048,
            seq: store.next_seq.fetch_add(1, Ordering::Relaxed),
            mtime_ms: now_ms(),
        };
        store.append(&h, &[&[1u8; 2048]], None).unwrap();
    }
    drop(store);
    let node = reopen(node, SegmentSettings::default());
    let t = Instant::now();
    let listed = node.list_shards().unwrap().len();
    println!(
        "open + scan of {listed} entries: {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
