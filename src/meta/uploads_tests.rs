//! Unit tests of the uploads' tables: a part's chunks are live while the
//! upload lasts and join the collection queue when the part is replaced or
//! the upload removed; completing moves the chosen parts' chunks into the
//! file at the given indexes, in one transaction that a part of another
//! upload rolls back whole; nothing of an upload is a name.

use super::{FileCommit, Meta, PartMove, PartRecord, UploadRecord};
use crate::chunk::{ChunkLayout, WrittenChunk};
use crate::error::Error;
use crate::model::{DirPage, Inode, Kind, ROOT_INO};

fn open_meta(dir: &tempfile::TempDir) -> Meta {
    let path = dir.path().join("meta.db");
    Meta::open(&path, vec!["n1".into(), "n2".into()], None, || Ok(None))
        .unwrap()
        .0
}

fn upload(meta: &Meta, id: &str, key: &str) {
    let record = UploadRecord {
        id: id.into(),
        key: key.into(),
        started: 1,
        content_type: None,
        xattr_prefix: b"user.s3.meta.".to_vec(),
    };
    let attrs = [(b"user.s3.meta.k".to_vec(), b"v".to_vec())];
    meta.create_upload(&record, &attrs).unwrap();
}

fn chunk(chunk_id: u64, data_len: u64) -> WrittenChunk {
    WrittenChunk {
        layout: ChunkLayout {
            chunk_id,
            k: 1,
            m: 1,
            data_len,
        },
        placement: vec![Some(0), Some(1)],
        checksums: vec![Some(1), Some(2)],
    }
}

fn part(number: u32, size: u64) -> PartRecord {
    PartRecord {
        part_id: 0,
        number,
        size,
        md5: format!("md5-{number}"),
        mtime: 1,
    }
}

fn commit(size: u64) -> FileCommit {
    FileCommit {
        ino: 0,
        chunks: Vec::new(),
        removed: Vec::new(),
        drop_from: None,
        size,
        mtime: 1,
        ctime: 1,
        checksum: None,
        md5: Some("etag-2".into()),
        content_type: None,
    }
}

fn dead_ids(meta: &Meta) -> Vec<u64> {
    let mut ids: Vec<u64> = meta
        .dead_chunks(100)
        .unwrap()
        .iter()
        .map(|c| c.layout.chunk_id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_replaced_part_and_a_removed_upload_send_their_chunks_to_collection() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open_meta(&dir);
    upload(&meta, "u1", "b/k");
    meta.record_part("u1", &part(1, 8), &[(0, chunk(10, 4)), (1, chunk(11, 4))])
        .unwrap();
    let replaced = meta.record_part("u1", &part(1, 3), &[(0, chunk(12, 3))]);
    assert_eq!(replaced.unwrap(), 2);
    assert_eq!(dead_ids(&meta), vec![10, 11]);
    let parts = meta.upload_parts("u1").unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].number, parts[0].size), (1, 3));
    let chunks = meta.part_chunks(parts[0].part_id).unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.layout.chunk_id).collect::<Vec<_>>(),
        vec![12]
    );
    // No name anywhere: the root stays empty.
    assert!(meta
        .list_dir(ROOT_INO, DirPage::new(None, 10))
        .unwrap()
        .is_empty());
    assert_eq!(meta.remove_upload("u1").unwrap(), 1);
    assert_eq!(dead_ids(&meta), vec![10, 11, 12]);
    assert!(meta.upload("u1").unwrap().is_none());
    assert!(meta.upload_xattrs("u1").unwrap().is_empty());
    assert!(matches!(meta.remove_upload("u1"), Err(Error::NotFound(_))));
    let late = meta.record_part("u1", &part(2, 1), &[(0, chunk(13, 1))]);
    assert!(matches!(late, Err(Error::NotFound(_))));
    assert_eq!(meta.chunk_by_id(13).unwrap().map(|c| c.0), None);
}

#[test]
fn completing_moves_the_chosen_parts_chunks_into_the_file_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open_meta(&dir);
    upload(&meta, "u1", "b/k");
    upload(&meta, "u2", "b/other");
    meta.record_part("u1", &part(1, 8), &[(0, chunk(10, 4)), (1, chunk(11, 4))])
        .unwrap();
    meta.record_part("u1", &part(2, 2), &[(0, chunk(12, 2))])
        .unwrap();
    meta.record_part("u1", &part(3, 2), &[(0, chunk(13, 2))])
        .unwrap();
    meta.record_part("u2", &part(1, 1), &[(0, chunk(20, 1))])
        .unwrap();
    let id_of = |upload: &str, number: u32| {
        meta.upload_parts(upload)
            .unwrap()
            .iter()
            .find(|p| p.number == number)
            .unwrap()
            .part_id
    };
    let template = Inode::new(Kind::File, 0o644, 0, 0);
    let path: [&[u8]; 2] = [b"b", b"k"];
    // A part of another upload: refused, nothing changed.
    let foreign = [PartMove {
        part_id: id_of("u2", 1),
        first_index: 0,
    }];
    let refused = meta.complete_upload("u1", &path, &template, commit(1), &foreign);
    assert!(matches!(refused, Err(Error::NotFound(_))));
    assert!(meta
        .list_dir(ROOT_INO, DirPage::new(None, 10))
        .unwrap()
        .is_empty());
    assert_eq!(meta.upload_parts("u1").unwrap().len(), 3);
    // Parts 1 and 3.
    let moves = [
        PartMove {
            part_id: id_of("u1", 1),
            first_index: 0,
        },
        PartMove {
            part_id: id_of("u1", 3),
            first_index: 2,
        },
    ];
    let (outcome, superseded) = meta
        .complete_upload("u1", &path, &template, commit(10), &moves)
        .unwrap();
    assert_eq!(superseded, 1, "part 2's chunk");
    assert_eq!(dead_ids(&meta), vec![12]);
    let ino = outcome.inode.ino;
    assert_eq!(outcome.inode.size, 10);
    assert_eq!(outcome.inode.md5.as_deref(), Some("etag-2"));
    let placed: Vec<(u64, u64)> = meta
        .chunks_of(ino)
        .unwrap()
        .iter()
        .map(|c| (c.idx, c.layout.chunk_id))
        .collect();
    assert_eq!(placed, vec![(0, 10), (1, 11), (2, 13)]);
    assert_eq!(
        meta.get_xattr(ino, b"user.s3.meta.k").unwrap(),
        Some(b"v".to_vec())
    );
    assert!(meta.upload("u1").unwrap().is_none());
    assert_eq!(meta.uploads().unwrap().len(), 1, "u2 stays");
    assert_eq!(meta.chunk_by_id(10).unwrap().unwrap().0, Some(ino));
}
