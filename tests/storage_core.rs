//! Storage-core behaviour through the file service, with real local-directory
//! nodes in temporary folders: round trips of every size around the chunk
//! boundaries for several (k, m), node and region loss, corrupted shards,
//! crash leftovers, chunk collection, the mount-style file API, recovery and
//! the key rules. Run with `cargo test --release --test storage_core`.

mod common;

use common::{
    create_file, flip_last_byte, rw, seeded_bytes, sha256_hex, stream_object_digest, SeededReader,
    TestStore,
};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minigcs::error::Error;
use minigcs::meta::{AttrChange, ChunkRecord, ROOT_INO};
use minigcs::model::{Owner, PutOptions};
use minigcs::service::{OpenFlags, Service};

const CS: u64 = 64 * 1024;

/// Sizes around the chunk boundaries: 0, 1, chunk−1, chunk, chunk+1, 3.5 chunks.
fn boundary_sizes(cs: u64) -> Vec<usize> {
    let cs = cs as usize;
    vec![0, 1, cs - 1, cs, cs + 1, cs * 7 / 2]
}

fn put(service: &Service, key: &str, data: &[u8]) {
    let inode = service
        .put_object(key, &mut &data[..], PutOptions::default())
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    assert_eq!(inode.size, data.len() as u64, "{key}: size");
    assert_eq!(
        inode.checksum.as_deref(),
        Some(sha256_hex(data).as_str()),
        "{key}: checksum"
    );
}

fn get(service: &Arc<Service>, key: &str) -> Result<Vec<u8>, Error> {
    let snap = service.open_object(key)?;
    let data = snap.read(0, snap.inode.size as usize + 10)?;
    assert_eq!(
        data.len() as u64,
        snap.inode.size,
        "{key}: a full read returns the whole object"
    );
    Ok(data.to_vec())
}

/// The object at `key` reads back as `want` (`what` names the check).
fn assert_object(service: &Arc<Service>, key: &str, want: &[u8], what: &str) {
    assert_same(what, &get(service, key).unwrap(), want);
}

fn assert_same(key: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{key}: length");
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
        panic!("{key}: wrong bytes from offset {at}");
    }
}

/// The health report as the JSON the API and `ctl health` serve.
fn health_json(service: &Service) -> serde_json::Value {
    minigcs::report::to_value(&service.health_report().unwrap())
}

fn chunks(service: &Arc<Service>, key: &str) -> Vec<ChunkRecord> {
    service
        .object_info(key)
        .unwrap_or_else(|e| panic!("info {key}: {e}"))
        .chunks
}

/// Put one object of every boundary size; returns key → content.
fn put_boundary_objects(service: &Service, prefix: &str, cs: u64) -> BTreeMap<String, Vec<u8>> {
    let mut objects = BTreeMap::new();
    for (i, size) in boundary_sizes(cs).into_iter().enumerate() {
        let key = format!("{prefix}/obj-{size}.bin");
        let data = seeded_bytes(1000 + i as u64, size);
        put(service, &key, &data);
        objects.insert(key, data);
    }
    objects
}

fn assert_all_read_back(
    service: &Arc<Service>,
    objects: &BTreeMap<String, Vec<u8>>,
    context: &str,
) {
    for (key, want) in objects {
        let got = get(service, key).unwrap_or_else(|e| panic!("{context}: read {key}: {e}"));
        assert_same(&format!("{context}: {key}"), &got, want);
    }
}

fn combinations(n: usize, r: usize) -> Vec<Vec<usize>> {
    fn go(start: usize, n: usize, r: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == r {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, r, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, r, &mut Vec::new(), &mut out);
    out
}

// ------------------------------------------------------------ 1. round trips

#[test]
fn round_trip_boundary_sizes_for_every_code() {
    for (k, m) in [(2, 1), (4, 2), (1, 2), (3, 0)] {
        let store = TestStore::round_robin(k + m, 3, k, m, CS);
        let svc = store.service();
        let objects = put_boundary_objects(svc, &format!("rt/{k}-{m}"), CS);
        assert_all_read_back(svc, &objects, &format!("k={k} m={m}"));
        let regions = 3.min(k + m);
        let cap = (k + m).div_ceil(regions);
        for (key, data) in &objects {
            let cs = chunks(svc, key);
            assert_eq!(
                cs.len(),
                data.len().div_ceil(CS as usize),
                "{key}: chunk count"
            );
            for c in &cs {
                assert_eq!((c.layout.k as usize, c.layout.m as usize), (k, m));
                let nodes: Vec<usize> = c
                    .placement
                    .iter()
                    .map(|p| p.expect("every shard placed"))
                    .collect();
                let distinct: BTreeSet<usize> = nodes.iter().copied().collect();
                assert_eq!(distinct.len(), k + m, "{key}: shards on distinct nodes");
                let mut per_region = BTreeMap::new();
                for n in &nodes {
                    *per_region.entry(store.regions[*n].clone()).or_insert(0) += 1;
                }
                assert!(
                    per_region.values().all(|&c| c <= cap),
                    "{key}: region spread {per_region:?}"
                );
            }
        }
        // A restarted service (empty caches) reads the same bytes.
        let mut store = store;
        let svc = store.reopen().clone();
        assert_all_read_back(&svc, &objects, &format!("k={k} m={m} after restart"));
    }
}

#[test]
fn ranged_reads_at_chunk_boundaries() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    let size = (CS * 7 / 2) as usize;
    let data = seeded_bytes(42, size);
    put(svc, "ranges.bin", &data);
    let cs = CS as usize;
    let ranges = [
        (0, 1),
        (0, cs),
        (cs - 1, 1),
        (cs - 1, 2),
        (cs, 1),
        (cs, cs),
        (cs - 7, cs + 14),
        (2 * cs - 1, cs + 2),
        (cs / 2, 3 * cs),
        (3 * cs, cs / 2),
        (size - 1, 1),
        (size - 1, 100),
        (size, 10),
        (size + 5, 10),
        (12345, 0),
        (1, size),
    ];
    for (off, len) in ranges {
        // A fresh snapshot per range so no earlier read helps.
        let snap = svc.open_object("ranges.bin").unwrap();
        let got = snap.read(off as u64, len).unwrap();
        let end = (off + len).min(size);
        let want = if off >= size {
            &[][..]
        } else {
            &data[off..end]
        };
        assert_same(&format!("range {off}+{len}"), &got, want);
    }
    // Ranged reads straight from the chunk store: no cache involved.
    let c = &chunks(svc, "ranges.bin")[1];
    for (off, len) in [
        (0u64, 1usize),
        (CS / 2 - 1, 2),
        (CS - 1, 1),
        (CS - 1, 10),
        (0, cs),
    ] {
        let got = svc
            .chunk_store()
            .read(&c.layout, &c.placement, off, len)
            .unwrap();
        let start = cs + off as usize;
        let end = (start + len).min(2 * cs);
        assert_same(
            &format!("chunk 1 range {off}+{len}"),
            &got,
            &data[start..end],
        );
    }
}

#[test]
fn streamed_100_mib_round_trip() {
    let mib = 1024 * 1024;
    let store = TestStore::round_robin(3, 3, 2, 1, mib);
    let svc = store.service();
    let size = 100 * mib;
    let mut reader = SeededReader::new(0x100, size);
    let started = Instant::now();
    let inode = svc
        .put_object("big/100mib.bin", &mut reader, PutOptions::default())
        .unwrap();
    let put_time = started.elapsed();
    let want = reader.hex_digest();
    assert_eq!(inode.size, size);
    assert_eq!(inode.checksum.as_deref(), Some(want.as_str()));
    assert_eq!(chunks(svc, "big/100mib.bin").len(), 100);
    let started = Instant::now();
    let (n, got) = stream_object_digest(svc, "big/100mib.bin", mib as usize);
    let get_time = started.elapsed();
    assert_eq!(n, size);
    assert_eq!(got, want, "100 MiB read back differs");
    // Unaligned pieces cross every chunk boundary.
    let (n, got) = stream_object_digest(svc, "big/100mib.bin", 700_001);
    assert_eq!((n, got), (size, want));
    eprintln!("100 MiB: put {put_time:?}, get {get_time:?}");
}

// ------------------------------------------------------------ 2. node loss

/// Data shard indexes of a chunk that hold at least one byte of its data.
fn data_shards_in_use(c: &ChunkRecord) -> Vec<usize> {
    let l = c.layout.shard_len() as u64;
    (0..c.layout.k as usize)
        .filter(|&s| (s as u64) * l < c.layout.data_len)
        .collect()
}

fn node_loss_scenarios(k: usize, m: usize) {
    let mut template = TestStore::round_robin(k + m, 3, k, m, CS);
    let objects = put_boundary_objects(template.service(), &format!("loss/{k}-{m}"), CS);
    let layouts: BTreeMap<String, Vec<ChunkRecord>> = objects
        .keys()
        .map(|key| (key.clone(), chunks(template.service(), key)))
        .collect();
    let n = k + m;

    for gone in combinations(n, m) {
        let svc = template.restart_without_nodes(&gone).clone();
        svc.chunk_store().probe_all();
        assert_all_read_back(
            &svc,
            &objects,
            &format!("k={k} m={m} nodes {gone:?} deleted"),
        );
        let health = health_json(&svc);
        assert_eq!(
            health["failed_nodes"].as_array().unwrap().len(),
            m,
            "{health}"
        );
        assert_eq!(health["status"], "degraded", "{health}");
        drop(svc);
        template.restore_nodes(&gone);
    }

    let mut errors = 0;
    for gone in combinations(n, m + 1) {
        let svc = template.restart_without_nodes(&gone).clone();
        for (key, want) in &objects {
            // Must fail exactly when a data shard holding bytes is lost.
            let needs_lost = layouts[key].iter().any(|c| {
                data_shards_in_use(c)
                    .iter()
                    .any(|&s| gone.contains(&c.placement[s].expect("placed")))
            });
            match get(&svc, key) {
                Ok(got) => {
                    assert!(
                        !needs_lost,
                        "k={k} m={m} nodes {gone:?} deleted: {key} read without its data shards"
                    );
                    assert_same(key, &got, want);
                }
                Err(Error::Unavailable(_)) => {
                    assert!(
                        needs_lost,
                        "k={k} m={m} nodes {gone:?}: {key} failed though its data shards survive"
                    );
                    errors += 1;
                }
                Err(e) => panic!(
                    "k={k} m={m} nodes {gone:?} deleted: {key}: expected Unavailable, got {e:?}"
                ),
            }
        }
        assert_eq!(health_json(&svc)["status"], "error");
        drop(svc);
        template.restore_nodes(&gone);
    }
    // The scenarios changed nothing: all nodes back, everything is intact.
    let svc = template.reopen().clone();
    assert_all_read_back(&svc, &objects, &format!("k={k} m={m} all nodes back"));
    let scrub = svc.scrub(false, &|_| {}).unwrap();
    assert!(scrub.problems.is_empty(), "{scrub:?}");
    assert!(
        errors > 0,
        "losing m+1 nodes never made anything unreadable"
    );
}

#[test]
fn any_m_nodes_lost_reads_identical_and_m_plus_1_is_an_error_k2_m1() {
    node_loss_scenarios(2, 1);
}

#[test]
fn any_m_nodes_lost_reads_identical_and_m_plus_1_is_an_error_k4_m2() {
    node_loss_scenarios(4, 2);
}

// ------------------------------------------------------------ 3. corruption

fn corruption_scenarios(k: usize, m: usize) {
    let store = TestStore::round_robin(k + m, 3, k, m, CS);
    let size = (CS * 5 / 2) as usize;
    for index in 0..k + m {
        let svc = store.service();
        let key = format!("corrupt/{k}-{m}/shard-{index}.bin");
        let data = seeded_bytes(500 + index as u64, size);
        put(svc, &key, &data);
        let recs = chunks(svc, &key);
        let mut flipped = BTreeSet::new();
        for c in &recs {
            let node = c.placement[index].unwrap();
            flip_last_byte(&store.shard_path(node, c.layout.chunk_id, index));
            flipped.insert((format!("{:016x}", c.layout.chunk_id), index));
        }
        let before = svc.metrics().degraded_reads();
        let got = get(svc, &key).unwrap_or_else(|e| panic!("shard {index} corrupt: {e}"));
        assert_same(&format!("shard {index} corrupt"), &got, &data);
        let after = svc.metrics().degraded_reads();
        if index < k {
            assert!(
                after >= before + recs.len() as u64,
                "data shard {index}: degraded reads {before} → {after}"
            );
        } else {
            assert_eq!(
                after, before,
                "parity shard {index}: a healthy read must not touch parity"
            );
        }

        let report = svc.scrub(false, &|_| {}).unwrap();
        let found: BTreeSet<(String, usize)> = report
            .problems
            .iter()
            .map(|p| {
                assert!(p.problem.to_string().starts_with("corrupt"), "{p:?}");
                assert!(!p.repaired);
                (p.chunk_id.clone(), p.shard_index)
            })
            .collect();
        assert_eq!(
            found, flipped,
            "scrub must report exactly the flipped shards"
        );
        assert_eq!((report.corrupt, report.missing), (recs.len() as u64, 0));

        let report = svc.scrub(true, &|_| {}).unwrap();
        assert_eq!(report.repaired, recs.len() as u64, "{report:?}");
        assert_eq!(report.unrepairable, 0);
        let report = svc.scrub(false, &|_| {}).unwrap();
        assert!(
            report.problems.is_empty() && report.corrupt + report.missing == 0,
            "{report:?}"
        );
        assert!(report.chunks_checked >= recs.len() as u64);
        assert!(svc
            .chunk_infos(&chunks(svc, &key))
            .iter()
            .all(|c| c.shards.iter().all(|s| s.healthy)));
    }
    // A restarted service reads every object without any reconstruction.
    let mut store = store;
    let svc = store.reopen().clone();
    for index in 0..k + m {
        let key = format!("corrupt/{k}-{m}/shard-{index}.bin");
        assert_object(&svc, &key, &seeded_bytes(500 + index as u64, size), &key);
    }
    assert_eq!(
        svc.metrics().degraded_reads(),
        0,
        "repaired shards still needed reconstruction"
    );
}

#[test]
fn flipped_byte_in_any_shard_reads_right_and_scrub_repairs_k2_m1() {
    corruption_scenarios(2, 1);
}

#[test]
fn flipped_byte_in_any_shard_reads_right_and_scrub_repairs_k4_m2() {
    corruption_scenarios(4, 2);
}

#[test]
fn corruption_beyond_m_is_an_error_not_wrong_bytes() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    let data = seeded_bytes(9, CS as usize);
    put(svc, "two-bad.bin", &data);
    let c = &chunks(svc, "two-bad.bin")[0];
    for index in [0, 2] {
        flip_last_byte(&store.shard_path(c.placement[index].unwrap(), c.layout.chunk_id, index));
    }
    match get(svc, "two-bad.bin") {
        Err(Error::Unavailable(_)) => {}
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("two of three shards corrupt, yet the read succeeded"),
    }
}

// ------------------------------------------------------------ 4. crash leftovers

#[test]
fn uncommitted_shards_are_invisible_and_swept_after_restart() {
    let mut store = TestStore::round_robin(3, 3, 2, 1, CS);
    let objects = put_boundary_objects(store.service(), "kept", CS);
    let committed_files = store.all_shard_files();

    // A crash between writing shards and committing: shards, no metadata.
    let mut orphan_files = Vec::new();
    let mut orphan_ids = Vec::new();
    for seed in 0..2 {
        let w = store
            .service()
            .chunk_store()
            .write_chunk(seeded_bytes(77 + seed, CS as usize + 3), Default::default())
            .unwrap();
        for (i, p) in w.placement.iter().enumerate() {
            let path = store.shard_path(p.unwrap(), w.layout.chunk_id, i);
            assert!(path.exists());
            orphan_files.push(path);
        }
        orphan_ids.push(w.layout.chunk_id);
    }
    store.close();
    store.age_shard_files(Duration::from_secs(10));
    let svc = store.reopen().clone();

    let (keys, truncated) = svc.list_objects("", None, None).unwrap();
    assert_eq!(keys, objects.keys().cloned().collect::<Vec<_>>());
    assert!(!truncated);
    for id in &orphan_ids {
        assert!(
            svc.chunk_layout(*id).unwrap().is_none(),
            "uncommitted chunk has metadata"
        );
    }

    // A write in flight in the new service must not be swept.
    let inflight = svc
        .chunk_store()
        .write_chunk(seeded_bytes(5, 100), Default::default())
        .unwrap();
    let freed = svc.sweep_orphans().unwrap();
    assert_eq!(freed, orphan_files.len());
    for f in &orphan_files {
        assert!(!f.exists(), "{} survived the sweep", f.display());
    }
    for (i, p) in inflight.placement.iter().enumerate() {
        assert!(
            store
                .shard_path(p.unwrap(), inflight.layout.chunk_id, i)
                .exists(),
            "an in-flight shard was swept"
        );
    }
    svc.chunk_store()
        .delete_chunk(&inflight.layout, &inflight.placement);
    assert_eq!(store.all_shard_files(), committed_files);
    assert_all_read_back(&svc, &objects, "after sweep");
    let report = svc.scrub(false, &|_| {}).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(svc.sweep_orphans().unwrap(), 0);
}

// ------------------------------------------------------------ 5. collection

#[test]
fn superseded_chunks_are_freed_after_commit() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    let v1 = seeded_bytes(1, (CS * 3) as usize);
    let v2 = seeded_bytes(2, (CS * 2 + 10) as usize);
    put(svc, "gc/obj.bin", &v1);
    let old_files = store.shard_files_of("gc/obj.bin");
    assert_eq!(old_files.len(), 9);

    // A reader of version 1 keeps its chunks alive across the overwrite.
    let reader = svc.open_object("gc/obj.bin").unwrap();
    put(svc, "gc/obj.bin", &v2);
    svc.collect_garbage().unwrap();
    assert!(
        old_files.iter().all(|f| f.exists()),
        "chunks of an open snapshot were freed"
    );
    assert_same(
        "v1 via old snapshot",
        &reader.read(0, v1.len()).unwrap(),
        &v1,
    );
    drop(reader);

    let freed = svc.collect_garbage().unwrap();
    assert_eq!(freed, 3);
    for f in &old_files {
        assert!(
            !f.exists(),
            "superseded shard {} still on disk",
            f.display()
        );
    }
    assert_object(svc, "gc/obj.bin", &v2, "v2");
    assert_eq!(
        store.all_shard_files().len(),
        9,
        "3 chunks × 3 shards of v2"
    );

    assert!(svc.delete_object("gc/obj.bin").unwrap());
    assert!(!svc.delete_object("gc/obj.bin").unwrap());
    assert!(matches!(get(svc, "gc/obj.bin"), Err(Error::NotFound(_))));
    svc.collect_garbage().unwrap();
    assert!(
        store.all_shard_files().is_empty(),
        "deleted object's shards remain"
    );
}

// ------------------------------------------------------------ 6. file API

fn read_handle(svc: &Arc<Service>, fh: u64, size: usize) -> Vec<u8> {
    svc.read(fh, 0, size + 100).unwrap().to_vec()
}

#[test]
fn file_api_random_writes_match_reference() {
    let mut store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service().clone();
    let (inode, fh) = create_file(&svc, b"random.bin", 0o644, Owner::new(1000, 1000));
    let mut reference: Vec<u8> = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xf11e);
    let span = (CS * 5) as usize;
    for round in 0..300 {
        let off = if round % 10 == 0 {
            // Straddle a chunk boundary.
            (rng.gen_range(1..5) * CS as usize).saturating_sub(rng.gen_range(1..100))
        } else {
            rng.gen_range(0..span)
        };
        let len = if round % 25 == 0 {
            rng.gen_range(CS as usize..2 * CS as usize)
        } else {
            rng.gen_range(1..5000)
        };
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        assert_eq!(svc.write(fh, off as u64, &bytes).unwrap(), len);
        if reference.len() < off + len {
            reference.resize(off + len, 0);
        }
        reference[off..off + len].copy_from_slice(&bytes);
        if round % 50 == 49 {
            // Read-your-writes through the handle, before any flush.
            let a = rng.gen_range(0..reference.len());
            let n = rng.gen_range(1..CS as usize * 2);
            let got = svc.read(fh, a as u64, n).unwrap();
            assert_same(
                "read before flush",
                &got,
                &reference[a..(a + n).min(reference.len())],
            );
            assert_eq!(svc.getattr(inode.ino).unwrap().size, reference.len() as u64);
        }
        if round == 150 {
            svc.flush(fh).unwrap();
            assert_object(&svc, "random.bin", &reference, "mid-way flush");
        }
    }
    svc.flush(fh).unwrap();
    assert_object(&svc, "random.bin", &reference, "after flush");
    assert_same(
        "handle after flush",
        &read_handle(&svc, fh, reference.len()),
        &reference,
    );
    svc.release(fh).unwrap();
    drop(svc);

    let svc = store.reopen().clone();
    assert_object(&svc, "random.bin", &reference, "after restart");
    let info = svc.object_info("random.bin").unwrap();
    assert_eq!(
        info.inode.checksum.as_deref(),
        Some(sha256_hex(&reference).as_str())
    );
    assert_eq!(info.inode.uid, 1000);
}

#[test]
fn file_api_truncate_down_and_up_reads_zeros() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service().clone();
    let cs = CS as usize;
    let data = seeded_bytes(3, 3 * cs + 500);
    let (inode, fh) = create_file(&svc, b"t.bin", 0o600, Owner::ROOT);
    svc.write(fh, 0, &data).unwrap();
    svc.release(fh).unwrap();
    let mut reference = data.clone();
    assert_object(&svc, "t.bin", &reference, "written");

    // Closed file: each truncate commits at once.
    for size in [
        2 * cs + 10,
        cs + 100,
        3 * cs + 7,
        cs,
        4 * cs + 1,
        0,
        17,
        cs * 2,
    ] {
        let attrs = svc
            .setattr(inode.ino, &AttrChange::default(), Some(size as u64))
            .unwrap();
        assert_eq!(attrs.size, size as u64);
        reference.resize(size, 0);
        assert_object(&svc, "t.bin", &reference, &format!("truncate to {size}"));
    }
    assert!(reference[17..].iter().all(|&b| b == 0));

    // Open file: truncate, then write beyond, then commit on release.
    let fh = svc.open_file(inode.ino, rw()).unwrap();
    let fill = vec![0xabu8; cs];
    svc.write(fh, 0, &fill).unwrap();
    reference[..cs].copy_from_slice(&fill);
    svc.setattr(inode.ino, &AttrChange::default(), Some(100))
        .unwrap();
    reference.truncate(100);
    assert_same(
        "handle after truncate",
        &read_handle(&svc, fh, 100),
        &reference,
    );
    svc.write(fh, 2 * CS + 5, b"tail").unwrap();
    reference.resize(2 * cs + 5, 0);
    reference.extend_from_slice(b"tail");
    assert_same(
        "handle after extend",
        &read_handle(&svc, fh, reference.len()),
        &reference,
    );
    svc.release(fh).unwrap();
    assert_object(&svc, "t.bin", &reference, "committed after release");
}

#[test]
fn file_unlinked_while_open_stays_readable_then_is_purged() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service().clone();
    let cs = CS as usize;

    // Committed content, unlinked while a handle is open.
    let data = seeded_bytes(11, 2 * cs + 33);
    let (inode, fh) = create_file(&svc, b"gone.bin", 0o644, Owner::ROOT);
    svc.write(fh, 0, &data).unwrap();
    svc.flush(fh).unwrap();
    let files_with_it = store.all_shard_files().len();
    assert_eq!(files_with_it, 9);
    svc.unlink(ROOT_INO, b"gone.bin").unwrap();
    assert!(matches!(
        svc.lookup(ROOT_INO, b"gone.bin"),
        Err(Error::NotFound(_))
    ));
    assert!(svc.list_objects("", None, None).unwrap().0.is_empty());
    assert_same(
        "read via handle after unlink",
        &read_handle(&svc, fh, data.len()),
        &data,
    );
    svc.write(fh, 0, b"still writable").unwrap();
    let mut expect = data.clone();
    expect[..14].copy_from_slice(b"still writable");
    assert_same(
        "write after unlink",
        &read_handle(&svc, fh, data.len()),
        &expect,
    );
    svc.release(fh).unwrap();
    assert!(
        matches!(svc.getattr(inode.ino), Err(Error::NotFound(_))),
        "inode survives its last close"
    );
    svc.collect_garbage().unwrap();
    assert!(
        store.all_shard_files().is_empty(),
        "shards of the purged file remain: {:?}",
        store.all_shard_files()
    );

    // Never committed: full chunks already uploaded in the background.
    let data = seeded_bytes(12, 3 * cs + 1);
    let (inode, fh) = create_file(&svc, b"scratch.bin", 0o644, Owner::ROOT);
    svc.write(fh, 0, &data).unwrap();
    svc.unlink(ROOT_INO, b"scratch.bin").unwrap();
    assert_same(
        "uncommitted, unlinked",
        &read_handle(&svc, fh, data.len()),
        &data,
    );
    svc.release(fh).unwrap();
    assert!(matches!(svc.getattr(inode.ino), Err(Error::NotFound(_))));
    svc.collect_garbage().unwrap();
    assert!(
        store.all_shard_files().is_empty(),
        "uploaded chunks of a never-committed unlinked file remain: {} files",
        store.all_shard_files().len()
    );
}

// ------------------------------------------------------------ 7. node down

fn all_shards_healthy(svc: &Arc<Service>, key: &str, k: usize, m: usize) {
    let infos = svc.chunk_infos(&chunks(svc, key));
    for c in &infos {
        let nodes: BTreeSet<String> = c.shards.iter().filter_map(|s| s.node.clone()).collect();
        assert_eq!(
            nodes.len(),
            k + m,
            "{key} chunk {}: {:?}",
            c.chunk_id,
            c.shards
        );
        assert!(
            c.shards.iter().all(|s| s.healthy),
            "{key} chunk {}: {:?}",
            c.chunk_id,
            c.shards
        );
    }
}

#[test]
fn write_with_a_node_down_then_recover_it() {
    let mut store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service().clone();
    let before = seeded_bytes(21, (CS * 7 / 2) as usize);
    put(&svc, "before.bin", &before);

    store.delete_node(1);
    svc.chunk_store().probe_all();
    let during = seeded_bytes(22, (CS * 7 / 2) as usize);
    put(&svc, "during.bin", &during);
    let during_chunks = chunks(&svc, "during.bin");
    for c in &during_chunks {
        assert_eq!(
            c.placement.iter().filter(|p| p.is_some()).count(),
            2,
            "k shards only"
        );
        assert!(
            !c.placement.contains(&Some(1)),
            "a shard went to the deleted node"
        );
    }
    let health = health_json(&svc);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["failed_nodes"], serde_json::json!(["node-2"]));
    // 4 chunks written before (a shard on the lost node) + 4 written during
    // (a shard never placed): 8 chunks, each lacking one shard.
    assert_eq!(health["chunks_missing_shards"], 8, "{health}");
    assert_eq!(health["shards_missing"], 8, "{health}");
    assert_object(&svc, "before.bin", &before, "before, node down");
    assert_object(&svc, "during.bin", &during, "during, node down");

    let report = svc.recover_node("node-2", &|_| {}).unwrap();
    assert_eq!(report.chunks_failed, 0, "{report:?}");
    assert!(report.shards_rebuilt >= 8, "{report:?}");
    for key in ["before.bin", "during.bin"] {
        all_shards_healthy(&svc, key, 2, 1);
    }
    let scrub = svc.scrub(false, &|_| {}).unwrap();
    assert!(scrub.problems.is_empty(), "{scrub:?}");
    assert_eq!(health_json(&svc)["status"], "healthy");

    // The rebuilt shards are real: lose another node, restart, read.
    store.delete_node(0);
    drop(svc);
    let svc = store.reopen().clone();
    assert_object(&svc, "before.bin", &before, "before, after recovery");
    assert_object(&svc, "during.bin", &during, "during, after recovery");
}

// ------------------------------------------------------------ 8. region loss

fn region_loss(nodes: usize, k: usize, m: usize) {
    let mut store = TestStore::round_robin(nodes, 3, k, m, CS);
    let ctx = format!("{nodes} nodes k={k} m={m}");
    let objects = put_boundary_objects(store.service(), "region", CS);
    let in_region = |r: &str, s: &TestStore| -> Vec<usize> {
        (0..s.node_count()).filter(|&i| s.regions[i] == r).collect()
    };

    let lost = in_region("r1", &store);
    for &i in &lost {
        store.delete_node(i);
    }
    let svc = store.service().clone();
    svc.chunk_store().probe_all();
    assert_all_read_back(&svc, &objects, &format!("{ctx}: region r1 lost"));
    assert_eq!(health_json(&svc)["status"], "degraded");
    for &i in &lost {
        let report = svc.recover_node(&TestStore::node_id(i), &|_| {}).unwrap();
        assert_eq!(report.chunks_failed, 0, "{ctx}: {report:?}");
    }
    let health = health_json(&svc);
    assert_eq!(health["status"], "healthy", "{ctx}: {health}");
    let scrub = svc.scrub(false, &|_| {}).unwrap();
    assert!(scrub.problems.is_empty(), "{ctx}: {scrub:?}");
    for key in objects.keys() {
        all_shards_healthy(&svc, key, k, m);
    }
    drop(svc);

    // After recovery another whole region can go.
    for i in in_region("r2", &store) {
        store.delete_node(i);
    }
    let svc = store.reopen().clone();
    assert_all_read_back(&svc, &objects, &format!("{ctx}: r1 recovered, r2 lost"));
}

#[test]
fn region_loss_three_single_node_regions_k2_m1() {
    region_loss(3, 2, 1);
}

#[test]
fn region_loss_six_nodes_k2_m1() {
    region_loss(6, 2, 1);
}

#[test]
fn region_loss_six_nodes_k4_m2() {
    region_loss(6, 4, 2);
}

// ------------------------------------------------------------ 9. keys

#[test]
fn invalid_keys_are_rejected() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    let long_key = "k".repeat(1025);
    let long_segment = format!("a/{}", "s".repeat(256));
    let bad = [
        "",
        "..",
        ".",
        "../x",
        "a/../b",
        "a/./b",
        "a//b",
        "a/",
        "/abs",
        "a\0b",
        &long_key,
        &long_segment,
    ];
    for key in bad {
        match svc.put_object(key, &mut &b"x"[..], PutOptions::default()) {
            Err(Error::InvalidKey(_)) => {}
            other => panic!("put {key:?}: expected InvalidKey, got {other:?}"),
        }
        assert!(
            matches!(svc.open_object(key), Err(Error::InvalidKey(_))),
            "open {key:?}"
        );
        assert!(
            matches!(svc.delete_object(key), Err(Error::InvalidKey(_))),
            "delete {key:?}"
        );
        assert!(
            matches!(svc.object_info(key), Err(Error::InvalidKey(_))),
            "info {key:?}"
        );
    }
    assert!(
        store.all_shard_files().is_empty(),
        "a rejected put left shards"
    );
    assert!(svc.list_objects("", None, None).unwrap().0.is_empty());

    // The limits themselves are fine.
    let max_segment = "m".repeat(255);
    put(svc, &max_segment, b"ok");
    let deep = format!("{}/{}", "d".repeat(255), "e".repeat(255));
    put(svc, &deep, b"deep");
    assert_eq!(get(svc, &deep).unwrap(), b"deep");
}

#[test]
fn a_file_cannot_be_a_directory() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    put(svc, "a.txt", b"file");
    assert!(
        svc.put_object("a.txt/b", &mut &b"x"[..], PutOptions::default())
            .is_err(),
        "a.txt/b under a file"
    );
    assert!(svc.open_object("a.txt/b").is_err());
    assert_eq!(get(svc, "a.txt").unwrap(), b"file");
    put(svc, "dir/inner", b"x");
    assert!(matches!(
        svc.put_object("dir", &mut &b"y"[..], PutOptions::default()),
        Err(Error::IsADirectory(_))
    ));
    assert!(matches!(
        svc.open_object("dir"),
        Err(Error::IsADirectory(_))
    ));
    assert_eq!(get(svc, "dir/inner").unwrap(), b"x");
    let (keys, _) = svc.list_objects("", None, None).unwrap();
    assert_eq!(keys, vec!["a.txt", "dir/inner"]);
    assert_eq!(
        store.all_shard_files().len(),
        6,
        "rejected puts left shards behind"
    );
}

#[test]
fn list_objects_prefix_sorted_paging() {
    let store = TestStore::round_robin(3, 3, 2, 1, CS);
    let svc = store.service();
    let keys = [
        "q", "p/b2", "pa", "p/b/d", "p/a", "p/b/c", "p/b/c2/x", "b", "a/z", "a/y/1",
    ];
    for k in keys {
        put(svc, k, k.as_bytes());
    }
    let mut all: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
    all.sort();
    let list = |prefix: &str, after: Option<&str>, limit: Option<usize>| {
        svc.list_objects(prefix, after, limit).unwrap()
    };
    assert_eq!(list("", None, None), (all.clone(), false));
    assert_eq!(
        list("p/", None, None).0,
        vec!["p/a", "p/b/c", "p/b/c2/x", "p/b/d", "p/b2"]
    );
    assert_eq!(
        list("p", None, None).0,
        vec!["p/a", "p/b/c", "p/b/c2/x", "p/b/d", "p/b2", "pa"]
    );
    assert_eq!(
        list("p/b", None, None).0,
        vec!["p/b/c", "p/b/c2/x", "p/b/d", "p/b2"]
    );
    assert_eq!(list("p/b/c", None, None).0, vec!["p/b/c", "p/b/c2/x"]);
    assert_eq!(list("a/y/", None, None).0, vec!["a/y/1"]);
    assert!(list("zzz", None, None).0.is_empty());
    assert!(list("nope/", None, None).0.is_empty());

    // Paging: limit + start_after walk the listing without gaps or repeats.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, truncated) = list("", after.as_deref(), Some(3));
        assert!(page.len() <= 3);
        paged.extend(page.iter().cloned());
        if !truncated {
            break;
        }
        after = page.last().cloned();
    }
    assert_eq!(paged, all);
    let (page, truncated) = list("p/", Some("p/b/c"), Some(2));
    assert_eq!(
        (page, truncated),
        (vec!["p/b/c2/x".to_string(), "p/b/d".to_string()], true)
    );
    // Deleted keys disappear from the listing.
    assert!(svc.delete_object("p/b/d").unwrap());
    assert_eq!(list("p/b/", None, None).0, vec!["p/b/c", "p/b/c2/x"]);
}

// ------------------------------------------- regressions from review

/// An API PUT over a file open in the mount behaves like `rename` of a new
/// file over it: the open handle keeps the old version whole (a collection
/// meanwhile frees none of it) and its later writes land in the old, now
/// nameless, file; the name holds exactly the PUT's bytes, with the old
/// file's mode and extended attributes; the old inode and its shards go at
/// its last close.
#[test]
fn put_over_an_open_file_is_a_rename_over_it() {
    let store = TestStore::new(&["a", "b", "c"], 2, 1, CS);
    let svc = store.service().clone();
    let old = seeded_bytes(1, (5 * CS) as usize);
    put(&svc, "log", &old);
    let old_ino = svc.resolve_key("log").unwrap().unwrap().ino;
    let chmod = AttrChange {
        mode: Some(0o600),
        ..Default::default()
    };
    svc.setattr(old_ino, &chmod, None).unwrap();
    svc.set_xattr(old_ino, b"user.tag", b"kept", Default::default())
        .unwrap();
    let append = OpenFlags {
        read: true,
        write: true,
        append: true,
    };
    let fh = svc.open_file(old_ino, append).unwrap();
    svc.write(fh, 0, b" and more").unwrap(); // buffered in the old file
    let new = b"fresh content from the API".to_vec();
    put(&svc, "log", &new);
    let now = svc.resolve_key("log").unwrap().unwrap();
    assert_ne!(now.ino, old_ino, "the name moved to a new inode");
    assert_eq!(now.mode, 0o600);
    assert_eq!(svc.get_xattr(now.ino, b"user.tag").unwrap(), b"kept");
    assert_eq!(svc.getattr(old_ino).unwrap().nlink, 0);
    svc.collect_garbage().unwrap();
    let mut old_whole = old.clone();
    old_whole.extend_from_slice(b" and more");
    assert!(
        read_handle(&svc, fh, old_whole.len()) == old_whole,
        "old version not whole"
    );
    assert_eq!(get(&svc, "log").unwrap(), new);
    svc.write(fh, 0, b"x").unwrap();
    svc.release(fh).unwrap();
    assert_eq!(get(&svc, "log").unwrap(), new);
    assert!(
        svc.getattr(old_ino).is_err(),
        "old inode freed at its last close"
    );
    assert!(
        svc.open_file(old_ino, append).is_err(),
        "no handle opens a freed inode"
    );
    svc.collect_garbage().unwrap();
    assert_eq!(get(&svc, "log").unwrap(), new);
    assert_eq!(store.all_shard_files().len(), 3, "old shards left behind");
}

/// A PUT over a name with another hard link: the other name keeps the old
/// content, as after a rename over one of the names.
#[test]
fn put_over_a_hard_link_leaves_the_other_name_alone() {
    let store = TestStore::new(&["a", "b", "c"], 2, 1, CS);
    let svc = store.service().clone();
    put(&svc, "one", b"shared");
    let ino = svc.resolve_key("one").unwrap().unwrap().ino;
    svc.link(ino, ROOT_INO, b"two").unwrap();
    put(&svc, "one", b"replaced");
    assert_eq!(get(&svc, "one").unwrap(), b"replaced");
    assert_eq!(get(&svc, "two").unwrap(), b"shared");
    assert_eq!(svc.getattr(ino).unwrap().nlink, 1);
}

/// A failed commit drops buffered data shared by every handle of the file:
/// each of those handles must hear of it once, not report success.
#[test]
fn failed_commit_is_reported_to_every_open_handle() {
    let store = TestStore::new(&["a", "b", "c"], 2, 1, CS);
    let svc = store.service().clone();
    put(&svc, "f", b"committed");
    let ino = svc.resolve_key("f").unwrap().unwrap().ino;
    let a = svc.open_file(ino, rw()).unwrap();
    let b = svc.open_file(ino, rw()).unwrap();
    svc.write(b, 0, &seeded_bytes(2, 1000)).unwrap();
    // Two of three nodes gone: fewer than k shards can be stored.
    store.delete_node(0);
    store.delete_node(1);
    svc.chunk_store().probe_all();
    assert!(svc.flush(a).is_err(), "the commit cannot be durable");
    assert!(
        svc.flush(b).is_err(),
        "b's data was dropped: b must hear of it"
    );
    assert!(svc.flush(b).is_ok(), "reported once");
    svc.release(a).unwrap();
    svc.release(b).unwrap();
}

/// Per node: (shard bytes, journal bytes, copy bytes, all bytes, stores) as
/// the statistics report them.
fn bytes_written(svc: &Service) -> BTreeMap<String, [u64; 5]> {
    let stats = svc.stats_report().unwrap();
    stats
        .node_stats
        .into_iter()
        .map(|(id, n)| {
            let s = n.stats;
            let figures = [
                s.shard_bytes_written,
                s.journal_bytes_written,
                s.copy_bytes_written,
                s.bytes_written,
                s.write_ops,
            ];
            (id, figures)
        })
        .collect()
}

/// The bytes-written counters count exactly what a put stores: k+m shard
/// files per chunk, each its header, block table and payload, the same
/// bytes that are on the nodes' disks afterwards; reads store nothing.
#[test]
fn bytes_written_to_nodes_count_every_shard_of_a_put() {
    use minigcs::chunk::shard::{BLOCK_SIZE, HEADER_LEN_V2};
    let store = TestStore::new(&["a", "b", "c"], 2, 1, CS);
    let svc = store.service().clone();
    let before = bytes_written(&svc);
    // Two whole chunks and a partial one.
    let data = seeded_bytes(21, 2 * CS as usize + 18_929);
    put(&svc, "counted.bin", &data);
    let after = bytes_written(&svc);

    let shard_file = |chunk_len: usize| {
        let payload = chunk_len.div_ceil(2);
        (HEADER_LEN_V2 + 4 * payload.div_ceil(BLOCK_SIZE) + payload) as u64
    };
    let per_chunk = [CS as usize, CS as usize, 18_929].map(shard_file);
    let expected: u64 = 3 * per_chunk.iter().sum::<u64>();
    let on_disk: u64 = store
        .shard_files_of("counted.bin")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(
        store.shard_files_of("counted.bin").len(),
        9,
        "3 chunks × (k+m)"
    );
    assert_eq!(on_disk, expected, "shard files of the layout computed here");

    let delta = |node: &str, i: usize| after[node][i] - before[node][i];
    let nodes: Vec<String> = after.keys().cloned().collect();
    assert_eq!(nodes.len(), 3);
    let shard_total: u64 = nodes.iter().map(|n| delta(n, 0)).sum();
    assert_eq!(shard_total, expected, "shard bytes counted = bytes stored");
    for n in &nodes {
        // 2+1 over three nodes: every chunk has one shard on each node.
        assert_eq!(delta(n, 0), per_chunk.iter().sum::<u64>(), "{n}");
        let [shards, journal, copies, all, stores] = after[n];
        assert_eq!(all, shards + journal + copies, "{n}: total is the sum");
        assert!(delta(n, 4) >= 3, "{n}: at least one store per chunk");
        assert!(stores >= 3, "{n}");
    }

    // Reading the object back stores nothing.
    let before_read = bytes_written(&svc);
    assert_eq!(get(&svc, "counted.bin").unwrap(), data);
    let after_read = bytes_written(&svc);
    for n in &nodes {
        assert_eq!(
            after_read[n][0], before_read[n][0],
            "{n}: a read stores no shard"
        );
    }
}
