//! POSIX rules the file service applies on behalf of the mount, tested on the
//! service directly (no /dev/fuse): an access ACL sets the mode bits in the
//! same transaction that stores or drops it, an empty ACL removes one and
//! succeeds when there is none (as ext4), `O_CREAT` on an existing name
//! opens it (or refuses with `O_EXCL`, or empties it with `O_TRUNC`) and is
//! decided in one transaction, and `fallocate` grows a file without ever
//! shrinking it, through the open file's buffered state when it is open.

mod common;

use common::{committed_content, create_file, rw, seeded_bytes, TestStore};
use std::sync::Barrier;

use minigcs::error::Error;
use minigcs::model::{Kind, NodeSpec, Owner, XattrWrite, ROOT_INO};
use minigcs::service::posix::{Allocate, IfExists, ACL_ACCESS_XATTR, ACL_DEFAULT_XATTR};
use minigcs::service::Service;

const CS: u64 = 64 * 1024;

fn store() -> TestStore {
    TestStore::round_robin(3, 3, 2, 1, CS)
}

/// A file named `name` in the root holding `data`, committed; its inode.
fn file_with(svc: &Service, name: &[u8], data: &[u8]) -> u64 {
    let (inode, fh) = create_file(svc, name, 0o644, Owner::new(1000, 1000));
    svc.write(fh, 0, data).unwrap();
    svc.release(fh).unwrap();
    inode.ino
}

/// A directory owned by root and group `gid`.
fn dir_spec(mode: u32, gid: u32) -> NodeSpec<'static> {
    NodeSpec::dir(mode, Owner::new(0, gid))
}

/// `setxattr` of the access ACL, as the mount passes it on.
fn setxattr_acl(svc: &Service, ino: u64, value: &[u8], mode: XattrWrite) -> Result<(), Error> {
    svc.set_xattr_posix(ino, ACL_ACCESS_XATTR, value, mode)
}

/// Run `call` on `threads` threads released at the same moment; their
/// results in thread order.
fn at_once<T: Send>(threads: usize, call: impl Fn() -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    call()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Write `data` from offset 0 through a new handle, `block` bytes per
/// write (each write extends the file); the handle, still open.
fn write_in_blocks(svc: &Service, ino: u64, data: &[u8], block: usize) -> u64 {
    let fh = svc.open_file(ino, rw()).unwrap();
    for (i, piece) in data.chunks(block).enumerate() {
        svc.write(fh, (i * block) as u64, piece).unwrap();
    }
    fh
}

fn mode_of(svc: &Service, ino: u64) -> u32 {
    svc.getattr(ino).unwrap().mode
}

// ------------------------------------------------------------ ACL → mode

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// An access ACL in the Linux xattr format.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn minimal_acl(user: u16, group: u16, other: u16) -> Vec<u8> {
    let any = u32::MAX;
    acl(&[
        (USER_OBJ, user, any),
        (GROUP_OBJ, group, any),
        (OTHER, other, any),
    ])
}

/// user::rw-, user:1234:rwx, group::r--, mask::rw-, other::---
fn extended_acl() -> Vec<u8> {
    let any = u32::MAX;
    acl(&[
        (USER_OBJ, 6, any),
        (USER, 7, 1234),
        (GROUP_OBJ, 4, any),
        (MASK, 6, any),
        (OTHER, 0, any),
    ])
}

#[test]
fn a_minimal_acl_becomes_the_mode_and_is_not_stored() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"x");
    svc.setattr(
        ino,
        &minigcs::meta::AttrChange {
            mode: Some(0o4644),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    setxattr_acl(svc, ino, &minimal_acl(7, 5, 0), XattrWrite::Upsert).unwrap();
    // Permission bits from the ACL; the setuid bit stays.
    assert_eq!(mode_of(svc, ino), 0o4750);
    assert!(matches!(
        svc.get_xattr(ino, ACL_ACCESS_XATTR),
        Err(Error::NoAttribute(_))
    ));
    assert!(svc.list_xattrs(ino).unwrap().is_empty());
}

#[test]
fn an_extended_acl_is_stored_and_its_mask_gives_the_group_bits() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"x");
    let value = extended_acl();
    let inode = svc.set_access_acl(ino, &value, XattrWrite::Upsert).unwrap();
    assert_eq!(inode.mode, 0o660);
    assert_eq!(mode_of(svc, ino), 0o660);
    assert_eq!(svc.get_xattr(ino, ACL_ACCESS_XATTR).unwrap(), value);
    // Setting a minimal ACL again drops the stored one.
    setxattr_acl(svc, ino, &minimal_acl(6, 4, 4), XattrWrite::Upsert).unwrap();
    assert_eq!(mode_of(svc, ino), 0o644);
    assert!(svc.list_xattrs(ino).unwrap().is_empty());
}

#[test]
fn a_refused_acl_changes_neither_the_mode_nor_the_attribute() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"x");
    let value = extended_acl();
    svc.set_access_acl(ino, &value, XattrWrite::Upsert).unwrap();

    // XATTR_CREATE over a stored ACL.
    let r = setxattr_acl(svc, ino, &minimal_acl(7, 7, 7), XattrWrite::CreateOnly);
    assert!(matches!(r, Err(Error::AlreadyExists(_))), "{r:?}");
    assert_eq!(mode_of(svc, ino), 0o660);
    assert_eq!(svc.get_xattr(ino, ACL_ACCESS_XATTR).unwrap(), value);

    // Malformed (no "other" entry).
    let broken = acl(&[(USER_OBJ, 7, u32::MAX), (GROUP_OBJ, 7, u32::MAX)]);
    let r = setxattr_acl(svc, ino, &broken, XattrWrite::Upsert);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert_eq!(mode_of(svc, ino), 0o660);

    // XATTR_REPLACE when none is stored.
    let other = file_with(svc, b"g", b"y");
    let before = mode_of(svc, other);
    let r = setxattr_acl(svc, other, &minimal_acl(7, 0, 0), XattrWrite::ReplaceOnly);
    assert!(matches!(r, Err(Error::NoAttribute(_))), "{r:?}");
    assert_eq!(mode_of(svc, other), before);
}

#[test]
fn other_attributes_are_stored_as_they_are() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"x");
    svc.set_xattr_posix(ino, b"user.note", b"hello", XattrWrite::Upsert)
        .unwrap();
    assert_eq!(svc.get_xattr(ino, b"user.note").unwrap(), b"hello");
    assert_eq!(mode_of(svc, ino), 0o644);
}

/// A directory in the root; its inode.
fn dir_named(svc: &Service, name: &[u8]) -> u64 {
    svc.make_node(ROOT_INO, name, &dir_spec(0o755, 0))
        .unwrap()
        .ino
}

/// The ACL `setfacl -b`/`-k` and `tar --acls` set to mean "none": the
/// version header with no entry.
fn empty_acl() -> Vec<u8> {
    acl(&[])
}

#[test]
fn an_empty_default_acl_removes_it_and_succeeds_when_there_is_none() {
    // ext4 answers success both times; ENODATA made `tar --acls` warn.
    let store = store();
    let svc = store.service();
    let dir = dir_named(svc, b"d");
    svc.set_xattr_posix(dir, ACL_DEFAULT_XATTR, &empty_acl(), XattrWrite::Upsert)
        .unwrap();
    svc.remove_xattr_posix(dir, ACL_DEFAULT_XATTR).unwrap();
    assert!(svc.list_xattrs(dir).unwrap().is_empty());

    // A default ACL set, then emptied: gone.
    let default = minimal_acl(7, 5, 5);
    svc.set_xattr_posix(dir, ACL_DEFAULT_XATTR, &default, XattrWrite::Upsert)
        .unwrap();
    assert_eq!(svc.get_xattr(dir, ACL_DEFAULT_XATTR).unwrap(), default);
    svc.set_xattr_posix(dir, ACL_DEFAULT_XATTR, &empty_acl(), XattrWrite::Upsert)
        .unwrap();
    assert!(matches!(
        svc.get_xattr(dir, ACL_DEFAULT_XATTR),
        Err(Error::NoAttribute(_))
    ));
    // Set again and removed with removexattr: gone, and again is no error.
    svc.set_xattr_posix(dir, ACL_DEFAULT_XATTR, &default, XattrWrite::Upsert)
        .unwrap();
    svc.remove_xattr_posix(dir, ACL_DEFAULT_XATTR).unwrap();
    svc.remove_xattr_posix(dir, ACL_DEFAULT_XATTR).unwrap();
    assert!(svc.list_xattrs(dir).unwrap().is_empty());
    assert_eq!(
        mode_of(svc, dir),
        0o755,
        "the mode is not the default ACL's"
    );
}

#[test]
fn an_empty_access_acl_removes_it_and_keeps_the_mode() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"x");
    svc.set_access_acl(ino, &extended_acl(), XattrWrite::Upsert)
        .unwrap();
    setxattr_acl(svc, ino, &empty_acl(), XattrWrite::Upsert).unwrap();
    assert!(svc.list_xattrs(ino).unwrap().is_empty());
    assert_eq!(mode_of(svc, ino), 0o660);
    setxattr_acl(svc, ino, &empty_acl(), XattrWrite::Upsert).unwrap();
    svc.remove_xattr_posix(ino, ACL_ACCESS_XATTR).unwrap();
}

#[test]
fn missing_ordinary_attributes_and_broken_acls_are_still_errors() {
    let store = store();
    let svc = store.service();
    let dir = dir_named(svc, b"d");
    let r = svc.remove_xattr_posix(dir, b"user.absent");
    assert!(matches!(r, Err(Error::NoAttribute(_))), "{r:?}");
    // A header with another version, and a default ACL with no "other".
    let r = svc.set_xattr_posix(dir, ACL_DEFAULT_XATTR, &[1, 0, 0, 0], XattrWrite::Upsert);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let broken = acl(&[(USER_OBJ, 7, u32::MAX), (GROUP_OBJ, 7, u32::MAX)]);
    let r = svc.set_xattr_posix(dir, ACL_DEFAULT_XATTR, &broken, XattrWrite::Upsert);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    // Removing an ACL of an inode that is gone is still NotFound.
    let r = svc.remove_xattr_posix(987_654, ACL_DEFAULT_XATTR);
    assert!(r.is_err(), "{r:?}");
}

// ------------------------------------------------------------ O_CREAT

#[test]
fn create_or_open_creates_a_missing_file_for_the_caller() {
    let store = store();
    let svc = store.service();
    let (inode, fh) = svc
        .create_or_open(
            ROOT_INO,
            b"new",
            0o640,
            Owner::new(1000, 2000),
            rw(),
            IfExists::Open,
        )
        .unwrap();
    assert_eq!(
        (inode.kind, inode.mode, inode.uid, inode.gid, inode.size),
        (Kind::File, 0o640, 1000, 2000, 0)
    );
    svc.write(fh, 0, b"data").unwrap();
    svc.release(fh).unwrap();
    assert_eq!(svc.lookup(ROOT_INO, b"new").unwrap().ino, inode.ino);
    assert_eq!(committed_content(svc, inode.ino), b"data");
}

#[test]
fn create_or_open_opens_an_existing_file_as_it_is() {
    let store = store();
    let svc = store.service();
    let data = seeded_bytes(1, 3 * CS as usize + 17);
    let ino = file_with(svc, b"f", &data);
    let (inode, fh) = svc
        .create_or_open(
            ROOT_INO,
            b"f",
            0o600,
            Owner::new(7, 7),
            rw(),
            IfExists::Open,
        )
        .unwrap();
    // The existing file, not one made from the new mode and owner.
    assert_eq!((inode.ino, inode.mode, inode.uid), (ino, 0o644, 1000));
    assert_eq!(inode.size, data.len() as u64);
    assert_eq!(svc.read(fh, 0, data.len()).unwrap(), data);
    svc.release(fh).unwrap();
    assert_eq!(committed_content(svc, ino), data);
}

#[test]
fn create_or_open_with_o_trunc_empties_an_existing_file() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", &seeded_bytes(2, 2 * CS as usize));
    let (inode, fh) = svc
        .create_or_open(ROOT_INO, b"f", 0o644, Owner::ROOT, rw(), IfExists::Truncate)
        .unwrap();
    assert_eq!((inode.ino, inode.size), (ino, 0));
    svc.write(fh, 0, b"fresh").unwrap();
    svc.release(fh).unwrap();
    assert_eq!(committed_content(svc, ino), b"fresh");
}

#[test]
fn create_or_open_with_o_excl_refuses_an_existing_name() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"keep me");
    let r = svc.create_or_open(ROOT_INO, b"f", 0o644, Owner::ROOT, rw(), IfExists::Fail);
    assert!(matches!(r, Err(Error::AlreadyExists(_))), "{r:?}");
    assert_eq!(committed_content(svc, ino), b"keep me");
    assert_eq!(
        svc.statistics_open_files(),
        0,
        "a refused open left a handle"
    );
}

#[test]
fn create_or_open_of_a_directory_name_is_refused() {
    let store = store();
    let svc = store.service();
    svc.make_node(ROOT_INO, b"d", &dir_spec(0o755, 0)).unwrap();
    let r = svc.create_or_open(ROOT_INO, b"d", 0o644, Owner::ROOT, rw(), IfExists::Open);
    assert!(matches!(r, Err(Error::IsADirectory(_))), "{r:?}");
    assert_eq!(svc.statistics_open_files(), 0);
}

#[test]
fn a_file_created_in_a_setgid_directory_takes_its_group() {
    let store = store();
    let svc = store.service();
    let mode = 0o2775;
    let dir = svc
        .make_node(ROOT_INO, b"shared", &dir_spec(mode, 77))
        .unwrap();
    let (inode, fh) = svc
        .create_or_open(
            dir.ino,
            b"f",
            0o644,
            Owner::new(1000, 1000),
            rw(),
            IfExists::Open,
        )
        .unwrap();
    svc.release(fh).unwrap();
    assert_eq!((inode.uid, inode.gid), (1000, 77));
}

#[test]
fn concurrent_opens_with_o_creat_agree_on_one_file() {
    let store = store();
    let svc = store.service();
    const THREADS: usize = 8;
    let results = at_once(THREADS, || {
        svc.create_or_open(ROOT_INO, b"race", 0o644, Owner::ROOT, rw(), IfExists::Open)
    });
    let inos: Vec<u64> = results
        .into_iter()
        .map(|r| {
            let (inode, fh) = r.expect("every O_CREAT open succeeds");
            svc.release(fh).unwrap();
            inode.ino
        })
        .collect();
    assert!(inos.iter().all(|&i| i == inos[0]), "{inos:?}");

    // With O_EXCL exactly one wins.
    let results = at_once(THREADS, || {
        svc.create_or_open(ROOT_INO, b"excl", 0o644, Owner::ROOT, rw(), IfExists::Fail)
    });
    let mut wins = 0;
    for r in results {
        match r {
            Ok((_, fh)) => {
                wins += 1;
                svc.release(fh).unwrap();
            }
            Err(Error::AlreadyExists(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(wins, 1);
}

// ------------------------------------------------------------ fallocate

#[test]
fn fallocate_grows_a_file_with_zeros() {
    let store = store();
    let svc = store.service();
    let data = seeded_bytes(3, 1000);
    let ino = file_with(svc, b"f", &data);
    let version = svc.getattr(ino).unwrap().version;
    let end = 3 * CS + 5;
    let inode = svc.fallocate(ino, CS, end - CS, Allocate::Extend).unwrap();
    assert_eq!(inode.size, end);
    let after = svc.getattr(ino).unwrap();
    assert_eq!(after.size, end);
    assert!(after.version > version, "the growth was not committed");
    let got = committed_content(svc, ino);
    assert_eq!(&got[..1000], &data[..]);
    assert!(got[1000..].iter().all(|&b| b == 0));
}

#[test]
fn fallocate_never_shrinks_a_file() {
    let store = store();
    let svc = store.service();
    let data = seeded_bytes(4, 2 * CS as usize + 99);
    let ino = file_with(svc, b"f", &data);
    let before = svc.getattr(ino).unwrap();
    let inode = svc.fallocate(ino, 0, 100, Allocate::Extend).unwrap();
    assert_eq!(inode.size, data.len() as u64);
    let after = svc.getattr(ino).unwrap();
    assert_eq!((after.size, after.version), (before.size, before.version));
    assert_eq!(committed_content(svc, ino), data);
}

#[test]
fn fallocate_keep_size_leaves_the_size() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"short");
    let inode = svc.fallocate(ino, 0, 10 * CS, Allocate::KeepSize).unwrap();
    assert_eq!(inode.size, 5);
    assert_eq!(svc.getattr(ino).unwrap().size, 5);
    assert_eq!(committed_content(svc, ino), b"short");
}

#[test]
fn fallocate_refuses_empty_ranges_and_directories() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"x");
    let r = svc.fallocate(ino, 0, 0, Allocate::Extend);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let r = svc.fallocate(ino, u64::MAX - 1, 10, Allocate::Extend);
    assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
    let r = svc.fallocate(ROOT_INO, 0, 10, Allocate::Extend);
    assert!(matches!(r, Err(Error::IsADirectory(_))), "{r:?}");
}

#[test]
fn growing_an_open_file_keeps_its_buffered_writes() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"");
    let fh = svc.open_file(ino, rw()).unwrap();
    let tail = seeded_bytes(5, 3000);
    let tail_at = 2 * CS;
    svc.write(fh, tail_at, &tail).unwrap();
    let buffered_end = tail_at + tail.len() as u64;

    // Shorter than what is buffered: nothing changes.
    let inode = svc.fallocate(ino, 0, CS, Allocate::Extend).unwrap();
    assert_eq!(inode.size, buffered_end);
    // Longer: the open file grows, its buffered bytes stay.
    let end = 4 * CS;
    let inode = svc.fallocate(ino, 0, end, Allocate::Extend).unwrap();
    assert_eq!(inode.size, end);
    assert_eq!(svc.read(fh, tail_at, tail.len()).unwrap(), tail);
    svc.release(fh).unwrap();

    let got = committed_content(svc, ino);
    assert_eq!(got.len() as u64, end);
    assert_eq!(&got[tail_at as usize..buffered_end as usize], &tail[..]);
    assert!(got[..tail_at as usize].iter().all(|&b| b == 0));
    assert!(got[buffered_end as usize..].iter().all(|&b| b == 0));
}

#[test]
fn a_concurrent_writers_bytes_survive_growth() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"");
    const BLOCK: usize = 4096;
    const BLOCKS: usize = 96; // 6 chunks, written while the file grows
    let written = seeded_bytes(6, BLOCK * BLOCKS);
    let final_end = 16 * CS;
    std::thread::scope(|s| {
        let writer = s.spawn(|| write_in_blocks(svc, ino, &written, BLOCK));
        // Grow past everything the writer writes, in steps, meanwhile.
        let start = (BLOCK * BLOCKS) as u64 + 1;
        let steps = 200;
        for step in 1..=steps {
            let end = start + (final_end - start) * step / steps;
            svc.fallocate(ino, 0, end, Allocate::Extend).unwrap();
        }
        let fh = writer.join().unwrap();
        svc.release(fh).unwrap();
    });
    let got = committed_content(svc, ino);
    assert_eq!(got.len() as u64, final_end);
    assert_eq!(
        &got[..written.len()],
        &written[..],
        "the writer's bytes were lost"
    );
    assert!(got[written.len()..].iter().all(|&b| b == 0));
}

#[test]
fn growth_racing_an_extending_writer_never_cuts_it_back() {
    let store = store();
    let svc = store.service();
    let ino = file_with(svc, b"f", b"");
    const BLOCK: usize = 4096;
    const BLOCKS: usize = 160; // 10 chunks, each write extends the file
    let written = seeded_bytes(7, BLOCK * BLOCKS);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let fh = write_in_blocks(svc, ino, &written, BLOCK);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            fh
        });
        // Grow to one byte past the size just seen: the writer extends the
        // file meanwhile, so a growth decided on a stale size must not cut
        // its bytes back.
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let seen = svc.getattr(ino).unwrap().size;
            svc.fallocate(ino, 0, seen + 1, Allocate::Extend).unwrap();
        }
        let fh = writer.join().unwrap();
        svc.release(fh).unwrap();
    });
    let got = committed_content(svc, ino);
    assert!(
        got.len() == written.len() || got.len() == written.len() + 1,
        "size {} after writing {} bytes",
        got.len(),
        written.len()
    );
    assert_eq!(
        &got[..written.len()],
        &written[..],
        "the writer's bytes were cut back"
    );
}
