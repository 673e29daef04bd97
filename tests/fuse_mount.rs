//! The kernel path of the mount: a real FUSE mount of a fresh store in a temp
//! folder, exercised with std::fs and libc the way tools use a local disk.
//! Skips (with a message) where /dev/fuse is missing, unless
//! MINIGCS_REQUIRE_FUSE=1, where that is a failure.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minigcs::config::Config;
use minigcs::fuse::{self, MountHandle};
use minigcs::maint::Workers;
use minigcs::metrics::Metrics;
use minigcs::model::PutOptions;
use minigcs::service::Service;

const CHUNK: usize = 1024 * 1024;

/// Unmounts whatever happens (panics included): the handle first, then a
/// lazy unmount if the path is still a mount point.
struct MountGuard {
    handle: Option<MountHandle>,
    path: PathBuf,
}

impl MountGuard {
    fn unmount(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Err(e) = h.unmount() {
                eprintln!("unmount of {}: {e}", self.path.display());
            }
        }
        if is_mount_point(&self.path) {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// A store in a temp folder, mounted. Fields drop in order: unmount first,
/// then the folder goes.
struct Fixture {
    guard: MountGuard,
    service: Arc<Service>,
    workers: Workers,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn mnt(&self) -> &Path {
        &self.guard.path
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt().join(rel)
    }

    /// Unmount, close the store (its workers stopped: the store is
    /// locked until they let go), open it again from disk and mount it.
    fn remount(self) -> Fixture {
        let Fixture {
            mut guard,
            service,
            workers,
            dir,
        } = self;
        guard.unmount();
        service.shutdown();
        workers.stop(std::time::Duration::from_secs(10));
        drop(service);
        let (service, workers, handle) = open_and_mount(dir.path(), &guard.path);
        guard.handle = Some(handle);
        Fixture {
            guard,
            service,
            workers,
            dir,
        }
    }
}

fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var("MINIGCS_REQUIRE_FUSE").as_deref() == Ok("1") {
        panic!("MINIGCS_REQUIRE_FUSE=1 but /dev/fuse is missing");
    }
    eprintln!("skipping: /dev/fuse is missing (set MINIGCS_REQUIRE_FUSE=1 to make this a failure)");
    false
}

fn open_and_mount(root: &Path, mnt: &Path) -> (Arc<Service>, Workers, MountHandle) {
    let config = Config::for_test(root, &["a", "b", "c"], 2, 1, CHUNK as u64);
    let service = Service::open(Arc::new(config), Metrics::new(None)).expect("open store");
    let workers = service.start_workers();
    let handle = fuse::mount(service.clone(), mnt).expect("mount");
    (service, workers, handle)
}

fn setup() -> Option<Fixture> {
    if !fuse_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let (service, workers, handle) = open_and_mount(dir.path(), &mnt);
    assert!(
        is_mount_point(&mnt.canonicalize().unwrap()),
        "not mounted at {}",
        mnt.display()
    );
    Some(Fixture {
        guard: MountGuard {
            handle: Some(handle),
            path: mnt.canonicalize().unwrap(),
        },
        service,
        workers,
        dir,
    })
}

/// Deterministic, non-repeating bytes (so a misplaced block shows).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    minigcs::test_data::seeded_bytes(seed, len)
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// A libc return value as a result: negative means the error is in errno,
/// anything else is a count (bytes, or 0 for success).
fn checked<R: TryInto<usize>>(r: R) -> io::Result<usize> {
    r.try_into().map_err(|_| io::Error::last_os_error())
}

/// Open `path` as `options` say, write `data` and close it.
fn write_with(options: &OpenOptions, path: &Path, data: &[u8]) {
    let mut f = options.open(path).unwrap();
    f.write_all(data).unwrap();
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set_xattr(p: &Path, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
    let (p, n) = (cstr(p), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    checked(r).map(drop)
}

fn get_xattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let (p, n) = (cstr(p), CString::new(name).unwrap());
    // SAFETY: a size probe with a null buffer of length 0.
    let probe = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    let size = checked(probe)?;
    let mut buf = vec![0u8; size];
    if size > 0 {
        // A buffer one byte short must fail with ERANGE.
        // SAFETY: the buffer holds size - 1 bytes.
        let short = unsafe {
            libc::getxattr(
                p.as_ptr(),
                n.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len() - 1,
            )
        };
        assert_eq!(short, -1);
        assert_eq!(errno_of(&io::Error::last_os_error()), libc::ERANGE);
    }
    // SAFETY: the buffer holds buf.len() bytes.
    let n = checked(unsafe {
        libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })?;
    buf.truncate(n);
    Ok(buf)
}

fn list_xattrs(p: &Path) -> io::Result<Vec<String>> {
    let p = cstr(p);
    // SAFETY: a size probe with a null buffer.
    let size = checked(unsafe { libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0) })?;
    let mut buf = vec![0u8; size];
    // SAFETY: the buffer holds buf.len() bytes.
    let n = checked(unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(n);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

fn remove_xattr(p: &Path, name: &str) -> io::Result<()> {
    let (p, n) = (cstr(p), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings.
    checked(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) }).map(drop)
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let (a, b) = (cstr(from), cstr(to));
    // SAFETY: valid NUL-terminated paths; AT_FDCWD resolves them normally.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    checked(r).map(drop)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const SIZES: [usize; 6] = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK * 7 / 2];

#[test]
fn files_of_every_boundary_size_read_back_and_survive_a_remount() {
    let Some(fx) = setup() else { return };
    for (i, &size) in SIZES.iter().enumerate() {
        let data = pattern(size, i as u64 + 1);
        let path = fx.p(&format!("size-{size}"));
        fs::write(&path, &data).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            size as u64,
            "size {size}"
        );
        assert!(fs::read(&path).unwrap() == data, "content of size {size}");
    }
    // Written in odd-sized pieces (not aligned with pages or chunks).
    let data = pattern(CHUNK * 2 + 12345, 99);
    {
        let mut f = File::create(fx.p("pieces")).unwrap();
        for piece in data.chunks(77_777) {
            f.write_all(piece).unwrap();
        }
        f.sync_all().unwrap();
    }
    assert!(fs::read(fx.p("pieces")).unwrap() == data);
    // A read in the middle, across a chunk boundary.
    let f = File::open(fx.p("pieces")).unwrap();
    let mut buf = vec![0u8; 5000];
    f.read_exact_at(&mut buf, CHUNK as u64 - 2500).unwrap();
    assert!(buf[..] == data[CHUNK - 2500..CHUNK + 2500]);
    drop(f);

    let fx = fx.remount();
    for (i, &size) in SIZES.iter().enumerate() {
        let data = pattern(size, i as u64 + 1);
        assert!(
            fs::read(fx.p(&format!("size-{size}"))).unwrap() == data,
            "after remount, size {size}"
        );
    }
    assert!(fs::read(fx.p("pieces")).unwrap() == data);
}

#[test]
fn namespace_operations_behave_like_a_local_disk() {
    let Some(fx) = setup() else { return };
    fs::create_dir_all(fx.p("a/b/c")).unwrap();
    fs::write(fx.p("a/b/c/f.txt"), b"hello").unwrap();
    assert_eq!(names(&fx.p("a/b/c")), ["f.txt"]);
    assert_eq!(fs::metadata(fx.p("a")).unwrap().nlink(), 3);

    // rmdir of a non-empty directory
    let e = fs::remove_dir(fx.p("a/b")).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENOTEMPTY);
    // rename a file, then a whole directory
    fs::rename(fx.p("a/b/c/f.txt"), fx.p("a/g.txt")).unwrap();
    assert_eq!(fs::read(fx.p("a/g.txt")).unwrap(), b"hello");
    assert!(!fx.p("a/b/c/f.txt").exists());
    fs::write(fx.p("a/b/c/deep"), b"deep").unwrap();
    fs::rename(fx.p("a/b"), fx.p("moved")).unwrap();
    assert_eq!(fs::read(fx.p("moved/c/deep")).unwrap(), b"deep");
    assert_eq!(names(&fx.p("a")), ["g.txt"]);
    // rename over an existing file replaces it
    fs::write(fx.p("x"), b"x").unwrap();
    fs::write(fx.p("y"), b"yy").unwrap();
    fs::rename(fx.p("x"), fx.p("y")).unwrap();
    assert_eq!(fs::read(fx.p("y")).unwrap(), b"x");
    assert!(!fx.p("x").exists());
    // RENAME_NOREPLACE and RENAME_EXCHANGE
    fs::write(fx.p("x"), b"new x").unwrap();
    let e = renameat2(&fx.p("x"), &fx.p("y"), libc::RENAME_NOREPLACE).unwrap_err();
    assert_eq!(errno_of(&e), libc::EEXIST);
    renameat2(&fx.p("x"), &fx.p("y"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(fx.p("x")).unwrap(), b"x");
    assert_eq!(fs::read(fx.p("y")).unwrap(), b"new x");
    // unlink, then rmdir of emptied directories
    fs::remove_file(fx.p("moved/c/deep")).unwrap();
    fs::remove_dir(fx.p("moved/c")).unwrap();
    fs::remove_dir(fx.p("moved")).unwrap();
    assert_eq!(
        errno_of(&fs::metadata(fx.p("moved")).unwrap_err()),
        libc::ENOENT
    );
    let e = fs::remove_dir(fx.p("a/g.txt")).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENOTDIR);
    let e = fs::remove_file(fx.p("a")).unwrap_err();
    assert_eq!(errno_of(&e), libc::EISDIR);
    // names over 255 bytes
    let e = fs::write(fx.p(&"n".repeat(256)), b"").unwrap_err();
    assert_eq!(errno_of(&e), libc::ENAMETOOLONG);

    // hard links count
    fs::write(fx.p("orig"), b"linked").unwrap();
    fs::hard_link(fx.p("orig"), fx.p("a/link")).unwrap();
    assert_eq!(fs::metadata(fx.p("orig")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(fx.p("orig")).unwrap().ino(),
        fs::metadata(fx.p("a/link")).unwrap().ino()
    );
    fs::remove_file(fx.p("orig")).unwrap();
    assert_eq!(fs::metadata(fx.p("a/link")).unwrap().nlink(), 1);
    assert_eq!(fs::read(fx.p("a/link")).unwrap(), b"linked");

    // symlinks
    std::os::unix::fs::symlink("a/link", fx.p("sym")).unwrap();
    assert_eq!(fs::read_link(fx.p("sym")).unwrap(), Path::new("a/link"));
    assert!(fs::symlink_metadata(fx.p("sym"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(fx.p("sym")).unwrap(), b"linked");

    // chmod, utimens
    fs::set_permissions(fx.p("a/link"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(fx.p("a/link")).unwrap().mode() & 0o7777, 0o640);
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_500_000_000, 123_456_789);
    File::options()
        .write(true)
        .open(fx.p("a/link"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(fs::metadata(fx.p("a/link")).unwrap().modified().unwrap(), t);

    // O_EXCL and O_APPEND
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(fx.p("a/link"))
        .unwrap_err();
    assert_eq!(errno_of(&e), libc::EEXIST);
    write_with(OpenOptions::new().append(true), &fx.p("a/link"), b"+more");
    assert_eq!(fs::read(fx.p("a/link")).unwrap(), b"linked+more");
    // O_CREAT without O_EXCL on an existing file opens it (with O_TRUNC: empties it)
    let mut create_or_truncate = OpenOptions::new();
    create_or_truncate.write(true).create(true).truncate(true);
    write_with(&create_or_truncate, &fx.p("a/link"), b"again");
    assert_eq!(fs::read(fx.p("a/link")).unwrap(), b"again");

    // special files are metadata only
    let fifo = cstr(&fx.p("fifo"));
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::metadata(fx.p("fifo")).unwrap().file_type()
    ));

    // statfs
    let st = nix::sys::statvfs::statvfs(fx.mnt()).unwrap();
    assert!(st.blocks() > 0 && st.blocks_free() <= st.blocks());
    assert_eq!(st.name_max(), 255);

    // a listing after all that
    assert_eq!(names(fx.mnt()), ["a", "fifo", "sym", "x", "y"]);
    assert!(fx
        .service
        .metrics()
        .summary_json()
        .to_string()
        .contains("fuse_rename"));
}

#[test]
fn truncate_and_random_writes_match_a_reference() {
    let Some(fx) = setup() else { return };
    let path = fx.p("t");
    let mut reference = pattern(CHUNK * 2 + 100, 5);
    fs::write(&path, &reference).unwrap();
    // truncate down into the middle of a chunk, then up (zeros)
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(CHUNK as u64 + 10).unwrap();
    reference.truncate(CHUNK + 10);
    drop(f);
    assert!(fs::read(&path).unwrap() == reference);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(CHUNK as u64 * 3).unwrap();
    reference.resize(CHUNK * 3, 0);
    drop(f);
    assert_eq!(fs::metadata(&path).unwrap().len(), CHUNK as u64 * 3);
    assert!(fs::read(&path).unwrap() == reference);
    // random overwrites through one handle, some past the end
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut x = 12345u64;
    for i in 0..40 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (x >> 20) as usize % (CHUNK * 3 + 5000);
        let len = 1 + (x >> 40) as usize % 70_000;
        let piece = pattern(len, i + 100);
        f.write_all_at(&piece, off as u64).unwrap();
        if reference.len() < off + len {
            reference.resize(off + len, 0);
        }
        reference[off..off + len].copy_from_slice(&piece);
    }
    // read back through the same handle before it is committed
    let mut back = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut back).unwrap();
    assert!(back == reference, "read before commit");
    f.sync_all().unwrap();
    drop(f);
    assert!(fs::read(&path).unwrap() == reference, "read after commit");
    // fallocate extends the size
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    nix::fcntl::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), 0, CHUNK as i64 * 4).unwrap();
    drop(f);
    assert_eq!(fs::metadata(&path).unwrap().len(), CHUNK as u64 * 4);
}

#[test]
fn xattrs_and_the_placement_attribute() {
    let Some(fx) = setup() else { return };
    let path = fx.p("x");
    fs::write(&path, pattern(CHUNK + 5, 1)).unwrap();
    assert_eq!(
        errno_of(&get_xattr(&path, "user.nope").unwrap_err()),
        libc::ENODATA
    );
    set_xattr(&path, "user.color", b"blue", 0).unwrap();
    assert_eq!(get_xattr(&path, "user.color").unwrap(), b"blue");
    let e = set_xattr(&path, "user.color", b"red", libc::XATTR_CREATE).unwrap_err();
    assert_eq!(errno_of(&e), libc::EEXIST);
    let e = set_xattr(&path, "user.shape", b"round", libc::XATTR_REPLACE).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENODATA);
    set_xattr(&path, "user.color", b"red", libc::XATTR_REPLACE).unwrap();
    set_xattr(&path, "user.empty", b"", 0).unwrap();
    assert_eq!(get_xattr(&path, "user.empty").unwrap(), b"");
    assert_eq!(list_xattrs(&path).unwrap(), ["user.color", "user.empty"]);
    // the virtual placement attribute: readable, not listed, read-only
    let placement = String::from_utf8(get_xattr(&path, "user.minigcs.placement").unwrap()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&placement).unwrap();
    assert_eq!(json["chunks"].as_array().unwrap().len(), 2, "{placement}");
    assert!(set_xattr(&path, "user.minigcs.placement", b"x", 0).is_err());
    remove_xattr(&path, "user.color").unwrap();
    assert_eq!(
        errno_of(&remove_xattr(&path, "user.color").unwrap_err()),
        libc::ENODATA
    );
    assert_eq!(list_xattrs(&path).unwrap(), ["user.empty"]);
    // on a directory too
    fs::create_dir(fx.p("d")).unwrap();
    set_xattr(&fx.p("d"), "user.tag", b"dir", 0).unwrap();
    assert_eq!(get_xattr(&fx.p("d"), "user.tag").unwrap(), b"dir");
}

#[test]
fn an_unlinked_file_stays_usable_through_its_open_handles() {
    let Some(fx) = setup() else { return };
    let data = pattern(CHUNK * 2 + 3, 7);
    fs::write(fx.p("gone"), &data).unwrap();
    let mut reader = File::open(fx.p("gone")).unwrap();
    let writer = OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.p("gone"))
        .unwrap();
    fs::remove_file(fx.p("gone")).unwrap();
    assert!(!fx.p("gone").exists());
    assert!(names(fx.mnt()).is_empty());
    let mut back = Vec::new();
    reader.read_to_end(&mut back).unwrap();
    assert!(back == data);
    writer.write_all_at(b"still here", 10).unwrap();
    writer.sync_all().unwrap();
    let mut buf = [0u8; 10];
    writer.read_exact_at(&mut buf, 10).unwrap();
    assert_eq!(&buf, b"still here");
    drop(reader);
    drop(writer);
    assert!(!fx.p("gone").exists());
}

#[test]
fn changes_through_the_object_api_show_in_the_mount() {
    let Some(fx) = setup() else { return };
    fx.service
        .put_object("api/one.txt", &mut &b"first"[..], PutOptions::default())
        .unwrap();
    assert_eq!(fs::read(fx.p("api/one.txt")).unwrap(), b"first");
    // the kernel has the content cached now; the API replaces it
    let mut f = File::open(fx.p("api/one.txt")).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    drop(f);
    fx.service
        .put_object(
            "api/one.txt",
            &mut &b"second version"[..],
            PutOptions::default(),
        )
        .unwrap();
    assert_eq!(fs::read(fx.p("api/one.txt")).unwrap(), b"second version");
    fx.service.delete_object("api/one.txt").unwrap();
    assert!(!fx.p("api/one.txt").exists());
}

#[test]
fn object_api_updates_while_the_mount_reads_do_not_deadlock() {
    let Some(fx) = setup() else { return };
    let size = CHUNK * 3 / 2;
    let content = move |file: usize, version: usize| pattern(size, (file * 1000 + version) as u64);
    for f in 0..4 {
        let mut data = &content(f, 0)[..];
        fx.service
            .put_object(&format!("c/f{f}"), &mut data, PutOptions::default())
            .unwrap();
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut readers = Vec::new();
    for r in 0..2 {
        let (done, mnt, tx) = (done.clone(), fx.mnt().to_path_buf(), tx.clone());
        readers.push(std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let data = fs::read(mnt.join(format!("c/f{}", (reads + r) % 4))).unwrap();
                assert_eq!(data.len(), size);
                reads += 1;
            }
            tx.send(reads).unwrap();
        }));
    }
    let writer = {
        let (service, done) = (fx.service.clone(), done.clone());
        std::thread::spawn(move || {
            for v in 1..=20 {
                let f = v % 4;
                let mut data = &content(f, v)[..];
                service
                    .put_object(&format!("c/f{f}"), &mut data, PutOptions::default())
                    .unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let timeout = std::time::Duration::from_secs(120);
    for _ in 0..2 {
        let reads = rx
            .recv_timeout(timeout)
            .expect("readers finished (no deadlock)");
        assert!(reads > 0);
    }
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    // Every file now reads as its last version through the mount.
    for f in 0..4 {
        let last = (1..=20).filter(|v| v % 4 == f).max().unwrap();
        assert!(
            fs::read(fx.p(&format!("c/f{f}"))).unwrap() == content(f, last),
            "file {f}"
        );
    }
}

#[test]
fn a_large_directory_lists_every_entry_exactly_once() {
    let Some(fx) = setup() else { return };
    let dir = fx.p("many");
    fs::create_dir(&dir).unwrap();
    let n = 1100; // more than one page of the service's listing
    for i in 0..n {
        File::create(dir.join(format!("entry-{i:05}"))).unwrap();
    }
    let listed = names(&dir);
    assert_eq!(listed.len(), n);
    let expected: Vec<String> = (0..n).map(|i| format!("entry-{i:05}")).collect();
    assert_eq!(listed, expected);
    // `ls -l` style: every entry with its attributes.
    for e in fs::read_dir(&dir).unwrap().take(5) {
        let e = e.unwrap();
        assert!(e.metadata().unwrap().is_file());
    }
    // Removing entries while a listing is in progress neither fails nor
    // repeats names.
    let mut seen = std::collections::HashSet::new();
    for (i, e) in fs::read_dir(&dir).unwrap().enumerate() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(seen.insert(name), "repeated entry");
        if i == 10 {
            fs::remove_file(dir.join("entry-01000")).unwrap();
        }
    }
    assert_eq!(names(&dir).len(), n - 1);
}
