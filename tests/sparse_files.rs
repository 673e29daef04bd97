//! Sparse files, tested on the file service directly (no /dev/fuse): a
//! hole is a chunk with no data, so it costs nothing in the stored bytes
//! (`st_blocks`); SEEK_DATA/SEEK_HOLE find data and holes at chunk
//! granularity, writes still buffered in an open file included; punching a
//! hole drops the chunks it covers whole and writes zeros into the parts
//! of the chunks at its edges, keeping the size; zeroing a range does the
//! same and, without KEEP_SIZE, grows the file to cover it.

mod common;

use common::{committed_content, create_file, rw, seeded_bytes, TestStore};
use std::sync::Arc;

use minigcs::model::Owner;
use minigcs::service::posix::Allocate;
use minigcs::service::sparse::Seek;
use minigcs::service::Service;

const CS: u64 = 64 * 1024;

fn store() -> TestStore {
    TestStore::round_robin(3, 3, 2, 1, CS)
}

fn stored(svc: &Service, ino: u64) -> u64 {
    svc.getattr(ino).unwrap().stored_bytes
}

/// A file of 6 chunks where only chunk 1 (whole) and chunk 4 (its first
/// 1000 bytes) hold data; chunk 5 is a hole to the end (size 6 chunks).
/// Returns the inode, the handle (still open, writes committed) and the
/// expected content.
fn sparse_file(svc: &Arc<Service>) -> (u64, u64, Vec<u8>) {
    let (inode, fh) = create_file(svc, b"sparse", 0o644, Owner::new(0, 0));
    let mut want = vec![0u8; 6 * CS as usize];
    let one = seeded_bytes(1, CS as usize);
    let four = seeded_bytes(4, 1000);
    svc.write(fh, CS, &one).unwrap();
    svc.write(fh, 4 * CS, &four).unwrap();
    want[CS as usize..2 * CS as usize].copy_from_slice(&one);
    want[4 * CS as usize..4 * CS as usize + 1000].copy_from_slice(&four);
    svc.setattr(inode.ino, &Default::default(), Some(6 * CS))
        .unwrap();
    (inode.ino, fh, want)
}

#[test]
fn holes_take_no_stored_bytes_buffered_or_committed() {
    let store = store();
    let svc = store.service();
    let (ino, fh, want) = sparse_file(svc);
    // Still buffered in the open file.
    let attr = svc.getattr(ino).unwrap();
    assert_eq!((attr.size, attr.stored_bytes), (6 * CS, CS + 1000));
    svc.flush(fh).unwrap();
    assert_eq!(stored(svc, ino), CS + 1000);
    svc.release(fh).unwrap();
    let attr = svc.getattr(ino).unwrap();
    assert_eq!((attr.size, attr.stored_bytes), (6 * CS, CS + 1000));
    assert_eq!(committed_content(svc, ino), want);

    // A gigabyte of nothing stores nothing; a directory stores nothing.
    let (big, fh) = create_file(svc, b"hole", 0o644, Owner::new(0, 0));
    svc.release(fh).unwrap();
    svc.truncate(big.ino, 1 << 30).unwrap();
    let attr = svc.getattr(big.ino).unwrap();
    assert_eq!((attr.size, attr.stored_bytes), (1 << 30, 0));
}

#[test]
fn seek_finds_data_and_holes_including_buffered_writes() {
    let store = store();
    let svc = store.service();
    let (ino, fh, _) = sparse_file(svc);
    let seek = |offset, what| svc.seek(fh, offset, what).unwrap();
    for round in ["buffered", "committed"] {
        assert_eq!(seek(0, Seek::Data), Some(CS), "{round}");
        assert_eq!(seek(0, Seek::Hole), Some(0), "{round}");
        assert_eq!(seek(CS + 5, Seek::Hole), Some(2 * CS), "{round}");
        assert_eq!(seek(CS + 5, Seek::Data), Some(CS + 5), "{round}");
        assert_eq!(seek(2 * CS, Seek::Data), Some(4 * CS), "{round}");
        // Chunk 4 holds data (its first 1000 bytes): data to the chunk's end.
        assert_eq!(seek(4 * CS + 2000, Seek::Hole), Some(5 * CS), "{round}");
        assert_eq!(
            seek(5 * CS, Seek::Data),
            None,
            "{round}: no data after chunk 4"
        );
        assert_eq!(
            seek(6 * CS, Seek::Hole),
            None,
            "{round}: at the end is ENXIO"
        );
        svc.flush(fh).unwrap();
    }
    // A write into the hole, not yet flushed, is data at once.
    svc.write(fh, 5 * CS + 10, b"x").unwrap();
    assert_eq!(svc.seek(fh, 5 * CS, Seek::Data).unwrap(), Some(5 * CS));
    assert_eq!(svc.seek(fh, 5 * CS, Seek::Hole).unwrap(), Some(6 * CS));
    svc.release(fh).unwrap();
    let fh = svc.open_file(ino, rw()).unwrap();
    assert_eq!(svc.seek(fh, 2 * CS, Seek::Data).unwrap(), Some(4 * CS));
    svc.release(fh).unwrap();
}

#[test]
fn punching_a_hole_drops_whole_chunks_zeroes_the_edges_and_keeps_the_size() {
    let store = store();
    let svc = store.service();
    let data = seeded_bytes(7, 4 * CS as usize + 300);
    let (inode, fh) = create_file(svc, b"f", 0o644, Owner::new(0, 0));
    svc.write(fh, 0, &data).unwrap();
    svc.release(fh).unwrap();
    let ino = inode.ino;
    let version = svc.getattr(ino).unwrap().version;

    // From the middle of chunk 0 to the middle of chunk 3: chunks 1 and 2
    // go, chunks 0 and 3 keep their other bytes.
    let (offset, len) = (CS / 2, 3 * CS - CS / 2 + 100);
    let attr = svc
        .fallocate(ino, offset, len, Allocate::PunchHole)
        .unwrap();
    let mut want = data.clone();
    want[offset as usize..(offset + len) as usize].fill(0);
    assert_eq!(attr.size, data.len() as u64, "the size is kept");
    assert!(
        svc.getattr(ino).unwrap().version > version,
        "committed at once"
    );
    assert_eq!(committed_content(svc, ino), want);
    // Chunk 0 now ends where the hole starts; chunk 3 (zeros written into
    // its head) and chunk 4 (300 bytes) are as long as before.
    assert_eq!(stored(svc, ino), CS / 2 + CS + 300);
    let fh = svc.open_file(ino, rw()).unwrap();
    assert_eq!(svc.seek(fh, CS / 2, Seek::Hole).unwrap(), Some(CS));
    assert_eq!(svc.seek(fh, CS, Seek::Data).unwrap(), Some(3 * CS));
    svc.release(fh).unwrap();

    // The tail chunk punched from its start to past the end: it goes, the
    // size stays.
    svc.fallocate(ino, 4 * CS, CS, Allocate::PunchHole).unwrap();
    want[4 * CS as usize..].fill(0);
    assert_eq!(committed_content(svc, ino), want);
    assert_eq!(stored(svc, ino), CS / 2 + CS);
    assert_eq!(svc.getattr(ino).unwrap().size, data.len() as u64);

    // Past the end: nothing changes.
    let before = svc.getattr(ino).unwrap();
    svc.fallocate(ino, 10 * CS, CS, Allocate::PunchHole)
        .unwrap();
    let after = svc.getattr(ino).unwrap();
    assert_eq!((after.size, after.version), (before.size, before.version));
}

#[test]
fn a_partial_punch_of_a_hole_leaves_it_a_hole() {
    let store = store();
    let svc = store.service();
    let (ino, fh, mut want) = sparse_file(svc);
    svc.release(fh).unwrap();
    // Inside chunk 2 (a hole) and the first half of chunk 4 (data).
    svc.fallocate(ino, 2 * CS + 10, 20, Allocate::PunchHole)
        .unwrap();
    svc.fallocate(ino, 4 * CS + 100, 200, Allocate::PunchHole)
        .unwrap();
    want[4 * CS as usize + 100..4 * CS as usize + 300].fill(0);
    assert_eq!(committed_content(svc, ino), want);
    assert_eq!(
        stored(svc, ino),
        CS + 1000,
        "no chunk was made for the hole"
    );
    // The rest of chunk 4's data: it ends at 100 bytes now.
    svc.fallocate(ino, 4 * CS + 100, CS, Allocate::PunchHole)
        .unwrap();
    want[4 * CS as usize + 100..5 * CS as usize].fill(0);
    assert_eq!(committed_content(svc, ino), want);
    assert_eq!(stored(svc, ino), CS + 100);
}

#[test]
fn punching_an_open_file_applies_to_its_buffered_writes() {
    let store = store();
    let svc = store.service();
    let (inode, fh) = create_file(svc, b"f", 0o644, Owner::new(0, 0));
    let data = seeded_bytes(9, 3 * CS as usize);
    svc.write(fh, 0, &data).unwrap();
    // Not flushed: the punch lands in the open file's state and commits
    // with it.
    svc.fallocate(inode.ino, CS, CS, Allocate::PunchHole)
        .unwrap();
    let mut want = data.clone();
    want[CS as usize..2 * CS as usize].fill(0);
    assert_eq!(svc.read(fh, 0, want.len()).unwrap(), want);
    assert_eq!(svc.getattr(inode.ino).unwrap().stored_bytes, 2 * CS);
    assert_eq!(svc.seek(fh, 0, Seek::Hole).unwrap(), Some(CS));
    svc.release(fh).unwrap();
    assert_eq!(committed_content(svc, inode.ino), want);
    assert_eq!(stored(svc, inode.ino), 2 * CS);
}

#[test]
fn zeroing_a_range_grows_the_file_unless_keep_size() {
    let store = store();
    let svc = store.service();
    let data = seeded_bytes(5, 2 * CS as usize);
    let (inode, fh) = create_file(svc, b"f", 0o644, Owner::new(0, 0));
    svc.write(fh, 0, &data).unwrap();
    svc.release(fh).unwrap();
    let ino = inode.ino;

    let keep = Allocate::ZeroRange { keep_size: true };
    let attr = svc.fallocate(ino, CS + 10, 2 * CS, keep).unwrap();
    assert_eq!(attr.size, 2 * CS, "KEEP_SIZE keeps the size");
    let mut want = data.clone();
    want[(CS + 10) as usize..].fill(0);
    assert_eq!(committed_content(svc, ino), want);
    assert_eq!(stored(svc, ino), CS + 10);

    let grow = Allocate::ZeroRange { keep_size: false };
    let attr = svc.fallocate(ino, CS / 2, 3 * CS, grow).unwrap();
    assert_eq!(attr.size, CS / 2 + 3 * CS, "grown to the end of the range");
    want.truncate(CS as usize / 2);
    want.resize((CS / 2 + 3 * CS) as usize, 0);
    assert_eq!(committed_content(svc, ino), want);
    assert_eq!(
        stored(svc, ino),
        CS / 2,
        "only chunk 0's first half holds data"
    );
}
