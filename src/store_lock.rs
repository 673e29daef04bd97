//! One daemon per store: exclusive advisory locks (`flock`, `LOCK_EX |
//! LOCK_NB`) on `<metadata.path>.lock` next to the metadata database and on
//! every local node folder itself (a descriptor of the directory). The
//! holder writes its pid into the lock file (for a node folder, into
//! `minigcs-node.lock` inside it), so a second daemon can name it when it
//! is refused.
//!
//! Why not the database or identity files themselves: SQLite locks its
//! database with POSIX record locks, and a process that closes any
//! descriptor of that file loses all of them, so minigcs never opens the
//! database file itself; on NFS, Linux emulates `flock` with record locks,
//! which would collide with SQLite's. The identity file is replaced by
//! rename when a node is initialized, which would leave a lock on a
//! name-less file. A node folder is locked through a directory descriptor
//! because closing one never waits on its filesystem: closing a file makes
//! the kernel flush it first, which on a hung node folder (a frozen network
//! or FUSE mount) would keep the daemon from ever finishing its exit.
//!
//! The locks belong to the open file descriptions this module keeps open
//! (opened with `O_CLOEXEC`, so a child process never inherits them): they
//! end when the holder drops them or dies, `kill -9` included, and no stale
//! lock is ever left behind. The pid written is only read
//! while the lock is held, so a stale pid in an unlocked file means nothing.
//!
//! This module only locks; which paths make up a store is decided by the
//! service (metadata) and the local node backend (its folder).

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// An exclusive lock on one lock file, held until dropped.
#[derive(Debug)]
pub struct StoreLock {
    file: Flock<File>,
    path: PathBuf,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockFailure {
    /// Another open file description holds it: another daemon (or another
    /// store opened by this process). `pid` is what the holder wrote.
    Held { path: PathBuf, pid: Option<u32> },
    /// The lock file could not be created or opened (missing folder,
    /// permissions, read-only filesystem, …).
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl LockFailure {
    /// The error a daemon start-up reports: `what` names the locked part of
    /// the store (e.g. "metadata database /x/metadata.db").
    pub fn into_error(self, what: &str) -> Error {
        match self {
            LockFailure::Held { pid, .. } => Error::Other(format!(
                "store is in use: {what} is locked by {} (another minigcs daemon); stop it first",
                holder_text(pid)
            )),
            LockFailure::Io { path, error } => {
                Error::Other(format!("cannot lock {what} ({}): {error}", path.display()))
            }
        }
    }
}

/// "pid 1234", or what to say when the holder's pid is not readable.
pub fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "a process whose pid is not recorded".into(),
    }
}

impl StoreLock {
    /// Create `path` if needed (never its folder) and lock it exclusively
    /// without waiting; on success the file holds this process's pid.
    pub fn acquire(path: &Path) -> Result<StoreLock, LockFailure> {
        StoreLock::take(path, None)
    }

    /// Lock the folder `folder` itself (a descriptor of the directory) and
    /// write this process's pid into `pid_file` inside it. Closing a
    /// directory never waits on its filesystem, as closing a file does (the
    /// kernel flushes it first): a daemon whose node folder hangs can still
    /// exit.
    pub fn acquire_folder(folder: &Path, pid_file: &str) -> Result<StoreLock, LockFailure> {
        StoreLock::take(folder, Some(&folder.join(pid_file)))
    }

    /// Lock `path` (a lock file, created if needed; or, with a `pid_file`,
    /// an existing folder) and record the pid in the file or `pid_file`.
    fn take(path: &Path, pid_file: Option<&Path>) -> Result<StoreLock, LockFailure> {
        let io = |error: std::io::Error| LockFailure::Io {
            path: path.to_path_buf(),
            error,
        };
        // A lock file removed and created again between our open and our
        // flock would leave us holding a lock nobody else can see: retry
        // until the locked file is the one the path names.
        let mut replaced = 0;
        loop {
            // std opens with O_CLOEXEC: children never inherit the lock.
            let file = match pid_file {
                Some(_) => File::open(path),
                None => OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path),
            }
            .map_err(io)?;
            let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((file, Errno::EWOULDBLOCK)) => {
                    let pid = match pid_file {
                        Some(pid_file) => File::open(pid_file).ok().and_then(holder_pid),
                        None => holder_pid(file),
                    };
                    return Err(LockFailure::Held {
                        path: path.to_path_buf(),
                        pid,
                    });
                }
                Err((_, errno)) => return Err(io(errno.into())),
            };
            if !names_same_file(path, &locked) {
                replaced += 1;
                if replaced == 8 {
                    return Err(io(std::io::Error::other(
                        "the lock file keeps being replaced",
                    )));
                }
                continue;
            }
            match pid_file {
                Some(pid_file) => OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(pid_file)
                    .and_then(|mut f| write_pid(&mut f)),
                None => write_pid(&mut locked),
            }
            .map_err(io)?;
            return Ok(StoreLock {
                file: locked,
                path: path.to_path_buf(),
            });
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still names the locked file: false once the file,
    /// or the folder holding it, was deleted or replaced. A path that
    /// cannot be examined for another reason (permissions) still counts as
    /// ours: the lock is kept.
    pub fn is_current(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Err(e)
                if e.kind() != std::io::ErrorKind::NotFound
                    && e.raw_os_error() != Some(libc::ENOTDIR) =>
            {
                true
            }
            _ => names_same_file(&self.path, &self.file),
        }
    }
}

fn names_same_file(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(named), Ok(open)) => named.dev() == open.dev() && named.ino() == open.ino(),
        _ => false,
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
}

/// The pid the holder wrote. A holder that has just taken the lock may not
/// have written it yet: look again for a moment.
fn holder_pid(mut file: File) -> Option<u32> {
    for _ in 0..10 {
        let mut text = String::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text));
        if let Ok(pid) = text.trim().parse() {
            return Some(pid);
        }
        if read.is_err() {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db.lock");
        let first = StoreLock::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        match StoreLock::acquire(&path) {
            Err(LockFailure::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second lock must be refused, got {other:?}"),
        }
        let message = StoreLock::acquire(&path)
            .unwrap_err()
            .into_error("metadata database x")
            .to_string();
        assert!(
            message.contains(&format!("locked by pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        let again = StoreLock::acquire(&path).expect("free after the holder dropped it");
        assert!(again.is_current());
    }

    #[test]
    fn a_lock_on_a_deleted_file_is_no_longer_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.lock");
        let lock = StoreLock::acquire(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!lock.is_current());
        // A new file at the path is a new lock, free to take.
        let fresh = StoreLock::acquire(&path).unwrap();
        assert!(fresh.is_current());
    }

    #[test]
    fn a_missing_folder_is_an_io_failure_not_a_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("node.lock");
        assert!(matches!(
            StoreLock::acquire(&path),
            Err(LockFailure::Io { .. })
        ));
        assert!(!dir.path().join("absent").exists(), "never creates folders");
    }

    #[test]
    fn the_lock_is_not_inherited_by_child_processes() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let lock = StoreLock::acquire(&dir.path().join("x.lock")).unwrap();
        let flags =
            nix::fcntl::fcntl(lock.file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "lock fd must be close-on-exec");
    }
}
