//! What the S3 view relies on in the file service, tested on the service
//! directly: an upload records the MD5 of its bytes, a write through the
//! mount clears it and `md5_of` computes and stores it again; an upload
//! sets extended attributes under a prefix in the same transaction,
//! replacing those under the prefix and keeping the others; staged
//! multipart uploads keep their parts outside the namespace until completed
//! (the object is the parts in order, known by the ETag given; parts of
//! whole chunks move into it without a shard written) or aborted or swept
//! (their shards collected), and across a restart; removing a
//! top-level directory takes the empty directories in it and refuses one
//! that holds a file.

mod common;

use common::{committed_content, rw, TestStore};
use md5::{Digest, Md5};
use std::time::Duration;

use minigcs::error::Error;
use minigcs::model::{DirPage, PutOptions, XattrSet, XattrWrite, ROOT_INO};
use minigcs::service::Assembly;

const CS: u64 = 64 * 1024;

fn store() -> TestStore {
    TestStore::round_robin(3, 3, 2, 1, CS)
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn uploads_record_the_md5_and_mount_writes_clear_it_until_computed() {
    let ts = store();
    let svc = ts.service();
    let data = bytes(3 * CS as usize + 17, 1);
    let inode = svc
        .put_object("b/k.bin", &mut &data[..], PutOptions::default())
        .unwrap();
    assert_eq!(inode.md5.as_deref(), Some(md5_hex(&data).as_str()));
    // Rewrite the middle through a handle, as the mount does.
    let fh = svc.open_file(inode.ino, rw()).unwrap();
    svc.write(fh, 100, b"changed").unwrap();
    svc.release(fh).unwrap();
    let after = svc.resolve_key("b/k.bin").unwrap().unwrap();
    assert_eq!(
        after.md5, None,
        "a commit through the mount leaves the MD5 unknown"
    );
    let content = committed_content(svc, inode.ino);
    let (_, sum) = svc.md5_of(after).unwrap();
    assert_eq!(sum, md5_hex(&content));
    let stored = svc.resolve_key("b/k.bin").unwrap().unwrap();
    assert_eq!(
        stored.md5.as_deref(),
        Some(sum.as_str()),
        "computed once, then stored"
    );
}

#[test]
fn an_upload_replaces_the_attributes_under_its_prefix_and_keeps_the_others() {
    let ts = store();
    let svc = ts.service();
    let first = [
        (b"user.s3.meta.a".to_vec(), b"1".to_vec()),
        (b"user.s3.meta.b".to_vec(), b"2".to_vec()),
    ];
    let opts = |attrs| PutOptions {
        xattrs: Some(XattrSet {
            prefix: b"user.s3.meta.",
            attrs,
        }),
        ..PutOptions::default()
    };
    let inode = svc
        .put_object("b/m", &mut &b"one"[..], opts(&first))
        .unwrap();
    svc.set_xattr(inode.ino, b"user.other", b"kept", XattrWrite::Upsert)
        .unwrap();
    let second = [(b"user.s3.meta.c".to_vec(), b"3".to_vec())];
    let inode = svc
        .put_object("b/m", &mut &b"two"[..], opts(&second))
        .unwrap();
    let mut names = svc.list_xattrs(inode.ino).unwrap();
    names.sort();
    assert_eq!(
        names,
        vec![b"user.other".to_vec(), b"user.s3.meta.c".to_vec()]
    );
    assert_eq!(svc.get_xattr(inode.ino, b"user.s3.meta.c").unwrap(), b"3");
}

#[test]
fn a_staged_upload_becomes_its_parts_in_order_known_by_the_etag_given() {
    let ts = store();
    let svc = ts.service();
    let attrs = [(b"user.s3.meta.k".to_vec(), b"v".to_vec())];
    let set = XattrSet {
        prefix: b"user.s3.meta.",
        attrs: &attrs,
    };
    let id = svc
        .begin_upload("b/whole.bin", Some("text/plain"), set)
        .unwrap();
    let (p1, p2, p3) = (bytes(CS as usize + 5, 2), bytes(1000, 3), bytes(77, 4));
    for (n, p) in [(3, &p3), (1, &p1), (2, &p2)] {
        let part = svc.put_part(&id, n, &mut &p[..], None).unwrap();
        assert_eq!(part.md5, md5_hex(p));
        assert_eq!(part.size, p.len() as u64);
    }
    let parts = svc.staged_parts(&id).unwrap();
    assert_eq!(
        parts.iter().map(|p| p.number).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(svc.staged_uploads().unwrap().len(), 1);
    // Nothing of the upload is in the namespace.
    assert_eq!(root_names(svc), Vec::<Vec<u8>>::new());
    // Parts 1 and 3 only, in that order; part 1 is not whole chunks.
    let (inode, how) = svc.complete_upload(&id, &[1, 3], "etag-2", None).unwrap();
    assert_eq!(how, Assembly::Rewritten);
    assert_eq!(inode.md5.as_deref(), Some("etag-2"));
    assert_eq!(inode.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        committed_content(svc, inode.ino),
        [p1.clone(), p3.clone()].concat()
    );
    assert_eq!(svc.get_xattr(inode.ino, b"user.s3.meta.k").unwrap(), b"v");
    assert!(matches!(svc.staged_upload(&id), Err(Error::NotFound(_))));
    assert!(svc.staged_uploads().unwrap().is_empty());
    let info = svc.object_info("b/whole.bin").unwrap();
    assert_eq!(
        info.inode.checksum,
        Some(common::sha256_hex(&[p1, p3].concat()))
    );
}

fn root_names(svc: &minigcs::service::Service) -> Vec<Vec<u8>> {
    svc.list_dir(ROOT_INO, DirPage::new(None, 100))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn parts_of_whole_chunks_move_into_the_object_without_writing_a_shard() {
    let ts = store();
    let svc = ts.service();
    svc.make_top_dir(b"b").unwrap();
    let none = XattrSet {
        prefix: b"user.s3.meta.",
        attrs: &[],
    };
    let id = svc.begin_upload("b/moved.bin", None, none).unwrap();
    let (p1, p2, p3) = (
        bytes(2 * CS as usize, 5),
        bytes(2 * CS as usize, 6),
        bytes(CS as usize / 3, 7),
    );
    for (n, p) in [(1, &p1), (2, &p2), (3, &p3)] {
        svc.put_part(&id, n, &mut &p[..], None).unwrap();
    }
    // Part 2 again: the first copy's chunks go to the collection queue.
    svc.put_part(&id, 2, &mut &p2[..], None).unwrap();
    svc.collect_garbage().unwrap();
    let before = ts.all_shard_files();
    let twice = svc.complete_upload(&id, &[1, 2, 2], "etag-3", None);
    assert!(matches!(twice, Err(Error::InvalidArgument(_))));
    let (inode, how) = svc
        .complete_upload(&id, &[1, 2, 3], "etag-3", None)
        .unwrap();
    assert_eq!(how, Assembly::Moved);
    assert_eq!(ts.all_shard_files(), before, "no shard written or removed");
    let whole = [p1, p2, p3].concat();
    assert_eq!(committed_content(svc, inode.ino), whole);
    assert_eq!(inode.size, whole.len() as u64);
    assert_eq!(inode.checksum, None, "computed when first asked for");
    let info = svc.object_info("b/moved.bin").unwrap();
    assert_eq!(info.inode.checksum, Some(common::sha256_hex(&whole)));
    assert_eq!(info.chunks.len(), 5);
    assert_eq!(root_names(svc), vec![b"b".to_vec()]);
}

#[test]
fn parts_outlive_a_restart_and_aborted_ones_leave_no_shard() {
    let mut ts = store();
    let empty = ts.all_shard_files();
    let none = XattrSet {
        prefix: b"user.s3.meta.",
        attrs: &[],
    };
    let (p1, p2) = (bytes(CS as usize, 8), bytes(100, 9));
    let (kept, dropped) = {
        let svc = ts.service();
        let kept = svc.begin_upload("b/kept", None, none).unwrap();
        svc.put_part(&kept, 1, &mut &p1[..], None).unwrap();
        let dropped = svc.begin_upload("b/dropped", None, none).unwrap();
        svc.put_part(&dropped, 1, &mut &p1[..], None).unwrap();
        (kept, dropped)
    };
    let svc = ts.reopen();
    assert_eq!(svc.staged_uploads().unwrap().len(), 2);
    svc.put_part(&kept, 2, &mut &p2[..], None).unwrap();
    svc.abort_upload(&dropped).unwrap();
    let (inode, _) = svc.complete_upload(&kept, &[1, 2], "e-2", None).unwrap();
    assert_eq!(committed_content(svc, inode.ino), [p1, p2].concat());
    svc.delete_object("b/kept").unwrap();
    svc.collect_garbage().unwrap();
    assert_eq!(ts.all_shard_files(), empty);
}

#[test]
fn aborted_and_old_uploads_leave_nothing_and_bad_ids_name_nothing() {
    let ts = store();
    let svc = ts.service();
    let none = XattrSet {
        prefix: b"user.s3.meta.",
        attrs: &[],
    };
    let aborted = svc.begin_upload("b/x", None, none).unwrap();
    svc.put_part(&aborted, 1, &mut &b"part"[..], None).unwrap();
    svc.abort_upload(&aborted).unwrap();
    assert!(matches!(
        svc.staged_upload(&aborted),
        Err(Error::NotFound(_))
    ));
    let old = svc.begin_upload("b/y", None, none).unwrap();
    svc.put_part(&old, 1, &mut &b"part"[..], None).unwrap();
    assert_eq!(svc.sweep_uploads(Duration::from_secs(3600)).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(svc.sweep_uploads(Duration::from_millis(10)).unwrap(), 1);
    assert!(svc.staged_uploads().unwrap().is_empty());
    for bad in ["", "../x", "0123", &"g".repeat(32), &"A".repeat(32)] {
        assert!(
            matches!(svc.staged_upload(bad), Err(Error::NotFound(_))),
            "{bad:?}"
        );
        let put = svc.put_part(bad, 1, &mut &b"p"[..], None);
        assert!(matches!(put, Err(Error::NotFound(_))), "{bad:?}");
    }
}

#[test]
fn a_top_dir_goes_with_its_empty_directories_but_not_with_a_file() {
    let ts = store();
    let svc = ts.service();
    svc.make_top_dir(b"bucket").unwrap();
    svc.put_object("bucket/a/b/c", &mut &b"c"[..], PutOptions::default())
        .unwrap();
    assert!(matches!(
        svc.remove_top_dir(b"bucket"),
        Err(Error::NotEmpty(_))
    ));
    assert!(
        svc.resolve_key("bucket/a/b/c").unwrap().is_some(),
        "nothing removed"
    );
    svc.delete_object("bucket/a/b/c").unwrap();
    svc.remove_top_dir(b"bucket").unwrap();
    assert!(matches!(
        svc.lookup(ROOT_INO, b"bucket"),
        Err(Error::NotFound(_))
    ));
}
