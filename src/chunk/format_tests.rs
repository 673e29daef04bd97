//! The shard format seen through the chunk store: new shards carry their
//! origin (v2), shards in the old format (v1) stay readable and verifiable,
//! and a rebuilt shard keeps its chunk's origin.

use std::sync::Arc;
use std::time::Duration;

use super::shard::{ShardHeader, ShardOrigin, HEADER_LEN_V2};
use super::{read_header, ChunkStore, WrittenChunk};
use crate::node::{MemoryNode, NodeBackend, ShardKey};

fn store() -> (ChunkStore, Vec<Arc<MemoryNode>>) {
    super::memory_test_store()
}

fn data() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect()
}

fn key(written: &WrittenChunk, index: usize) -> (usize, ShardKey) {
    let node = written.placement[index].expect("placed");
    let key = ShardKey {
        chunk_id: written.layout.chunk_id,
        index: index as u16,
    };
    (node, key)
}

#[test]
fn new_shards_carry_their_origin() {
    let (store, nodes) = store();
    let origin = ShardOrigin::new(12, 34, 5, 6_000_000, "dir/file");
    let written = store.write_chunk(data(), origin).unwrap();
    for i in 0..3 {
        let (node, key) = key(&written, i);
        let header = read_header(nodes[node].as_ref(), key).unwrap();
        assert_eq!(header.origin, Some(origin));
        assert_eq!(header.header_len(), HEADER_LEN_V2);
    }
}

#[test]
fn v1_shards_stay_readable_and_verifiable() {
    let (store, nodes) = store();
    let bytes = data();
    let written = store
        .write_chunk(bytes.clone(), ShardOrigin::new(1, 1, 0, 1, "x"))
        .unwrap();
    // Rewrite every shard as minigcs wrote them before v2: a 64-byte header.
    for i in 0..3 {
        let (node, key) = key(&written, i);
        let mut reader = nodes[node].open_shard(key).unwrap();
        let whole = reader.read_vec_at(0, reader.len() as usize).unwrap();
        let header = ShardHeader::decode(&whole).unwrap();
        let v1 = ShardHeader {
            origin: None,
            ..header
        }
        .encode();
        assert_eq!(v1.len(), 64);
        nodes[node]
            .put_shard(key, &[&v1, &whole[HEADER_LEN_V2..]])
            .unwrap();
        assert_eq!(read_header(nodes[node].as_ref(), key).unwrap().origin, None);
    }
    let back = store
        .read(&written.layout, &written.placement, 0, bytes.len())
        .unwrap();
    assert_eq!(&back[..], &bytes[..]);
    for i in 0..3 {
        let node = written.placement[i].unwrap();
        store.verify_shard(&written.layout, i, node).unwrap();
    }
    // A flipped payload byte in a v1 shard is still caught.
    let (node, k0) = key(&written, 0);
    nodes[node].corrupt(k0, 64 + 4 * 3 + 10);
    assert!(store.verify_shard(&written.layout, 0, node).is_err());
}

#[test]
fn a_rebuilt_shard_keeps_the_chunk_origin() {
    let (store, nodes) = store();
    let origin = ShardOrigin::new(7, 99, 2, 3_000_000, "a/b");
    let written = store.write_chunk(data(), origin).unwrap();
    let (node, k1) = key(&written, 1);
    nodes[node].delete_shard(k1).unwrap();
    store
        .rebuild(
            &written.layout,
            &written.placement,
            &[(1, node)],
            Duration::from_secs(10),
        )
        .unwrap();
    let header = read_header(nodes[node].as_ref(), k1).unwrap();
    assert_eq!(header.origin, Some(origin));
    store.verify_shard(&written.layout, 1, node).unwrap();
}
