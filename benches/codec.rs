//! Reed-Solomon codec cost, independent of the rest of minigcs.
//!
//! For each (k, m) in (2,1), (4,2), (8,3), (10,4) and each shard size in
//! 64 KiB, 256 KiB, 1 MiB this measures, with throughput counted over the k
//! data shards (k × shard size bytes):
//! - `encode`: computing the m parity shards
//!   (`reed_solomon_erasure::galois_8::ReedSolomon::encode`);
//! - `reconstruct_1`: rebuilding data shard 0 after it is lost
//!   (`reconstruct_data`, into a reused buffer, so no allocation is timed);
//! - `memcpy`: `copy_from_slice` of the same k × shard size bytes, the floor
//!   any codec path is compared against.
//!
//! Run with `cargo bench --bench codec` (a few minutes), or filter, e.g.
//! `cargo bench --bench codec -- 'rs_4\+2/encode'`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use minigcs::test_data::seeded_bytes;
use reed_solomon_erasure::galois_8::ReedSolomon;

const PARAMS: [(usize, usize); 4] = [(2, 1), (4, 2), (8, 3), (10, 4)];
const SHARD_SIZES: [usize; 3] = [64 << 10, 256 << 10, 1 << 20];

fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{}MiB", bytes >> 20)
    } else {
        format!("{}KiB", bytes >> 10)
    }
}

fn codec(c: &mut Criterion) {
    for (k, m) in PARAMS {
        let rs = ReedSolomon::new(k, m).expect("valid k, m");
        let mut group = c.benchmark_group(format!("rs_{k}+{m}"));
        for shard_len in SHARD_SIZES {
            let label = size_label(shard_len);
            group.throughput(Throughput::Bytes((k * shard_len) as u64));

            // k data shards with content, m zeroed parity shards.
            let mut shards: Vec<Vec<u8>> = (0..k + m)
                .map(|i| {
                    if i < k {
                        seeded_bytes(i as u64 + 1, shard_len)
                    } else {
                        vec![0u8; shard_len]
                    }
                })
                .collect();
            // Encode once up front: a filter may skip the encode benchmark,
            // and reconstruct needs valid parity.
            rs.encode(&mut shards).expect("encode");

            group.bench_function(BenchmarkId::new("encode", &label), |b| {
                b.iter(|| rs.encode(black_box(&mut shards)).expect("encode"))
            });

            // Reconstruct: shard 0 marked missing; its buffer is reused.
            let original0 = shards[0].clone();
            let mut marked: Vec<(Vec<u8>, bool)> =
                shards.iter().map(|s| (s.clone(), true)).collect();
            marked[0].1 = false;
            marked[0].0.fill(0);
            rs.reconstruct_data(&mut marked).expect("reconstruct");
            assert!(marked[0].0 == original0, "reconstruct gave wrong bytes");
            group.bench_function(BenchmarkId::new("reconstruct_1", &label), |b| {
                b.iter(|| {
                    // Left `false` by reconstruct_data, so shard 0 is rebuilt each time.
                    rs.reconstruct_data(black_box(&mut marked))
                        .expect("reconstruct")
                })
            });

            let src: Vec<u8> = shards[..k].concat();
            let mut dst = vec![0u8; src.len()];
            group.bench_function(BenchmarkId::new("memcpy", &label), |b| {
                b.iter(|| dst.copy_from_slice(black_box(&src)))
            });
            black_box(&dst);
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = codec
}
criterion_main!(benches);
