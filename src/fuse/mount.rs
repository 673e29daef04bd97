//! Mounting and unmounting: mount options, the session and its event loops
//! (`mount.threads` loops, each reading its own clone of the /dev/fuse
//! descriptor and serving one request at a time, so that many requests are
//! served at once), clearing a stale mount left by a daemon that died
//! ("Transport endpoint is not connected"), kernel tuning that only exists
//! after the mount (readahead), and an unmount that neither hangs nor waits
//! on a busy mount point (it is detached, its users let go later). Requests themselves are handled in `filesystem`.

use fuser::{Config as SessionConfig, MountOption, Session, SessionACL, SessionUnmounter};
use nix::mount::{umount2, MntFlags};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::filesystem::MiniFs;
use super::invalidate::Invalidator;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::mountinfo::top_mount_at;
use crate::node::own_mounts;
use crate::service::Service;

/// Largest read the kernel may ask for at once (matches max_write).
const MAX_READ_OPTION: &str = "max_read=1048576";
/// The file system type is `fuse.minigcs` (`mount -t fuse.minigcs`).
pub const SUBTYPE: &str = "minigcs";
/// Readahead asked of the kernel through sysfs, in KiB.
const READAHEAD_KB: u32 = 1024;
/// How long an unmount waits for the session to end once the kernel let go
/// of the mount (it ends at once; this only bounds a surprise).
const SESSION_END_WAIT: Duration = Duration::from_secs(2);
/// How long a detached mount's session is given to end (its last user may
/// just be letting go) before it is let go.
const DETACHED_END_WAIT: Duration = Duration::from_millis(100);

/// A live mount. Dropping it unmounts, like `unmount` but ignoring errors.
pub struct MountHandle {
    mountpoint: PathBuf,
    /// `st_dev` of the mounted root: identifies our mount in mountinfo.
    dev: Option<u64>,
    unmounter: Option<SessionUnmounter>,
    thread: Option<JoinHandle<()>>,
    finished: Arc<AtomicBool>,
    /// Set when this side ends the session: its end is then no failure.
    stopping: Arc<AtomicBool>,
    invalidator: Arc<Invalidator>,
    /// Keeps node folders from being written inside this mount until it ends.
    _own_mount: own_mounts::Registration,
}

impl MountHandle {
    /// Unmount (if still mounted) and wait for the session thread to end.
    pub fn unmount(mut self) -> Result<()> {
        self.shutdown()
    }

    /// True once the kernel session ended (e.g. someone ran `umount`).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// The absolute mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    fn wait_finished(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Whether our FUSE mount is still the one at the mount point.
    fn still_mounted(&self) -> bool {
        match top_mount_at(&self.mountpoint) {
            Some(m) => m.is_fuse() && self.dev.is_none_or(|d| m.dev == dev_pair(d)),
            None => false,
        }
    }

    /// Unmount and end the session. A mount still in use (an open file, a
    /// shell's working directory) cannot be unmounted; it is detached from
    /// the namespace at once instead, and its session thread is let go:
    /// its users keep the kernel connection until they let go or this
    /// process exits, which closes /dev/fuse (their next request then
    /// fails). Nothing waits for them, so a daemon stops at once.
    fn shutdown(&mut self) -> Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.invalidator.detach();
        self.stopping.store(true, Ordering::SeqCst);
        if !self.is_finished() {
            if let Some(mut u) = self.unmounter.take() {
                match u.unmount() {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        log::debug!("unmount of {}: {e}", self.mountpoint.display())
                    }
                    Err(e) => log::warn!("unmount of {}: {e}", self.mountpoint.display()),
                }
            }
            let wait = match self.still_mounted() {
                true => {
                    self.detach_busy();
                    DETACHED_END_WAIT
                }
                false => SESSION_END_WAIT,
            };
            if !self.wait_finished(wait) {
                // Only users of the detached mount keep the session alive.
                log::debug!(
                    "FUSE session of {} still has users; letting it go",
                    self.mountpoint.display()
                );
                drop(thread);
                return Ok(());
            }
        }
        thread
            .join()
            .map_err(|_| Error::Other("the FUSE session thread panicked".into()))?;
        log::info!("unmounted {}", self.mountpoint.display());
        Ok(())
    }

    /// Detach a mount that is still in use from the namespace.
    fn detach_busy(&self) {
        match umount2(&self.mountpoint, MntFlags::MNT_DETACH) {
            Ok(()) => log::info!(
                "{} was still in use (an open file or a working directory in it): detached it; \
                 what was written before the shutdown is stored, and its users get errors from now on",
                self.mountpoint.display()
            ),
            Err(e) => log::warn!("lazy unmount of {}: {e}", self.mountpoint.display()),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::warn!("{e}");
        }
    }
}

/// Clear a stale mount at `mountpoint`, create it if missing, then mount.
pub fn mount(service: Arc<Service>, mountpoint: &Path) -> Result<MountHandle> {
    let path = absolute(mountpoint)?;
    clear_stale(&path)?;
    let own_mount = own_mounts::register(&path);
    std::fs::create_dir_all(&path)
        .map_err(|e| with_context(e, &format!("cannot create mount point {}", path.display())))?;
    if !std::fs::metadata(&path)?.is_dir() {
        return Err(Error::NotADirectory(format!(
            "mount point {}",
            path.display()
        )));
    }

    let mut config = session_config(service.config());
    config
        .mount_options
        .push(MountOption::CUSTOM(MAX_READ_OPTION.into()));
    // Session::new mounts and answers the kernel's INIT (calling `init`).
    let attempt = |config: &SessionConfig| {
        let fs = MiniFs::new(service.clone());
        let page_cache = fs.page_cache();
        Session::new(fs, &path, config).map(|s| (s, page_cache))
    };
    let session = match attempt(&config) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            log::debug!("mount with {MAX_READ_OPTION} refused ({e}); mounting without it");
            config.mount_options.pop();
            attempt(&config)
        }
        other => other,
    };
    let (mut session, page_cache) = session.map_err(|e| {
        let hint = mount_failure_hint(&e);
        with_context(e, &format!("cannot mount FUSE at {}{hint}", path.display()))
    })?;

    let unmounter = session.unmount_callable();
    let invalidator = Arc::new(Invalidator::new(session.notifier(), page_cache));
    let finished = Arc::new(AtomicBool::new(false));
    let stopping = Arc::new(AtomicBool::new(false));
    let thread = {
        let invalidator = invalidator.clone();
        let finished = finished.clone();
        let stopping = stopping.clone();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("fuse-session".into())
            .spawn(move || {
                // Runs the event loops until the kernel connection ends; each
                // finishes the request it is serving first.
                match session.run() {
                    Err(e) if !stopping.load(Ordering::SeqCst) => {
                        log::error!("FUSE session at {shown} failed: {e}")
                    }
                    Err(e) => log::debug!("FUSE session at {shown} ended: {e}"),
                    Ok(()) => {}
                }
                invalidator.detach();
                finished.store(true, Ordering::SeqCst);
            })
            .map_err(|e| with_context(e, "cannot start the FUSE session thread"))?
    };
    let mut handle = MountHandle {
        mountpoint: path,
        dev: None,
        unmounter: Some(unmounter),
        thread: Some(thread),
        finished,
        stopping,
        invalidator: invalidator.clone(),
        _own_mount: own_mount,
    };
    service.add_observer(invalidator);

    // The first request through the mount: proves it answers, and names the
    // kernel connection for readahead tuning and a last-resort abort.
    match std::fs::metadata(&handle.mountpoint) {
        Ok(m) => {
            handle.dev = Some(m.dev());
            tune_readahead(m.dev());
        }
        Err(e) => {
            let msg = format!(
                "the mount at {} does not answer: {e}",
                handle.mountpoint.display()
            );
            drop(handle);
            return Err(Error::Other(msg));
        }
    }
    log::debug!("mounted {}", handle.mountpoint.display());
    Ok(handle)
}

/// Mount options and event loops. `mount.threads` is how many requests are
/// served at once: that many event loops, each with its own clone of the
/// /dev/fuse descriptor (FUSE_DEV_IOC_CLONE), so the kernel hands requests
/// to whichever loop is free and each loop answers on its own descriptor.
///
/// `/proc/mounts` shows the mount as type `fuse.minigcs` with the config
/// (file or folder) as its source, so `findmnt -t fuse.minigcs -S CONFIG`
/// finds it. The subtype goes to the kernel as the `subtype=` option:
/// fuser's own mount(2) call drops `MountOption::Subtype` (fusermount3, used
/// without CAP_SYS_ADMIN, reads the option the same way).
fn session_config(config: &Config) -> SessionConfig {
    let mut session = SessionConfig::default();
    session.mount_options = vec![
        MountOption::FSName(mount_source(config)),
        MountOption::CUSTOM(format!("subtype={SUBTYPE}")),
        MountOption::DefaultPermissions,
    ];
    if config.read_only {
        session.mount_options.push(MountOption::RO);
    }
    session.mount_options.extend(
        config
            .mount
            .kernel_flags
            .iter()
            .filter_map(|f| kernel_flag(f)),
    );
    if config.mount.allow_other && nix::unistd::geteuid().is_root() {
        session.acl = SessionACL::All;
    }
    session.n_threads = Some(config.mount.threads.max(1));
    session.clone_fd = true;
    session
}

/// The `-o` kernel flags `crate::mount_options` accepts, as fuser's options.
fn kernel_flag(flag: &str) -> Option<MountOption> {
    Some(match flag {
        "dev" => MountOption::Dev,
        "nodev" => MountOption::NoDev,
        "suid" => MountOption::Suid,
        "nosuid" => MountOption::NoSuid,
        "exec" => MountOption::Exec,
        "noexec" => MountOption::NoExec,
        "atime" => MountOption::Atime,
        "noatime" => MountOption::NoAtime,
        "sync" => MountOption::Sync,
        "async" => MountOption::Async,
        "dirsync" => MountOption::DirSync,
        _ => return None,
    })
}

/// The mount's source in `/proc/mounts`: what the user named with `-c` (a
/// config file or the folder holding config.yaml), made absolute.
fn mount_source(config: &Config) -> String {
    match config.mount.source.as_ref().or(config.source.as_ref()) {
        Some(p) => p
            .canonicalize()
            .unwrap_or_else(|_| p.clone())
            .to_string_lossy()
            .into_owned(),
        None => SUBTYPE.into(),
    }
}

/// What a failed mount lacks, when the error alone does not say. fuser
/// mounts with mount(2) where it may (root with CAP_SYS_ADMIN) and otherwise
/// runs the fusermount3 helper, so "not found" means that /dev/fuse or that
/// helper is missing (typical of a container started without the device or
/// the capability: its image has no helper).
fn mount_failure_hint(e: &io::Error) -> &'static str {
    if e.kind() != io::ErrorKind::NotFound {
        ""
    } else if !Path::new("/dev/fuse").exists() {
        " (/dev/fuse is missing: is the fuse module loaded? A container needs --device /dev/fuse)"
    } else if !fusermount_installed() {
        " (mount(2) was refused and the fusermount3 helper is not installed: run as root with \
         CAP_SYS_ADMIN, in a container --cap-add SYS_ADMIN, or install fuse3)"
    } else {
        ""
    }
}

/// Whether fuser finds a fusermount helper (the places it looks).
fn fusermount_installed() -> bool {
    if std::env::var_os("FUSERMOUNT_PATH").is_some() {
        return true;
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&search)
        .chain(["/sbin", "/bin"].map(PathBuf::from))
        .any(|dir| {
            ["fusermount3", "fusermount"]
                .iter()
                .any(|name| dir.join(name).is_file())
        })
}

fn with_context(e: io::Error, what: &str) -> Error {
    Error::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// `path` made absolute without touching it (it may be a dead mount): the
/// parent is resolved through symlinks, the last component is kept.
fn absolute(path: &Path) -> Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut clean = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other.as_os_str()),
        }
    }
    if let (Some(parent), Some(name)) = (clean.parent(), clean.file_name()) {
        if let Ok(p) = parent.canonicalize() {
            return Ok(p.join(name));
        }
    }
    Ok(clean)
}

/// Stat that gives up after `timeout` (a hung FUSE daemon never answers).
fn stat_with_timeout(path: &Path, timeout: Duration) -> Option<io::Result<std::fs::Metadata>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let p = path.to_path_buf();
    std::thread::Builder::new()
        .name("mount-probe".into())
        .spawn(move || {
            // statfs first: the kernel answers `stat` from cached attributes
            // for a while after the daemon died, but always asks the daemon
            // for statfs, so a dead one shows up as ENOTCONN at once.
            let probe = match nix::sys::statvfs::statvfs(&p) {
                Err(nix::errno::Errno::ENOTCONN) => {
                    Err(io::Error::from_raw_os_error(libc::ENOTCONN))
                }
                _ => std::fs::metadata(&p),
            };
            let _ = tx.send(probe);
        })
        .ok()?;
    rx.recv_timeout(timeout).ok()
}

/// Detach a mount left by a daemon that is gone. A FUSE mount that still
/// answers belongs to a running daemon: refuse rather than stack on it.
fn clear_stale(path: &Path) -> Result<()> {
    for _ in 0..8 {
        let fuse_here = top_mount_at(path).is_some_and(|m| m.is_fuse());
        let stale = match stat_with_timeout(path, Duration::from_secs(5)) {
            Some(Err(e)) if e.raw_os_error() == Some(libc::ENOTCONN) => true,
            None if fuse_here => {
                log::warn!("the FUSE mount at {} does not answer", path.display());
                true
            }
            None => {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("mount point {} does not answer", path.display()),
                )))
            }
            Some(Ok(_)) if fuse_here => {
                return Err(Error::AlreadyExists(format!(
                    "{} is already a FUSE mount served by a running process; unmount it first",
                    path.display()
                )))
            }
            // Fine, or missing (created next), or an error create_dir_all
            // will report.
            Some(_) => return Ok(()),
        };
        if stale {
            log::warn!("clearing a stale mount at {}", path.display());
            umount2(path, MntFlags::MNT_DETACH).map_err(|e| {
                Error::Io(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("cannot clear the stale mount at {}: {e}", path.display()),
                ))
            })?;
        }
    }
    Err(Error::Other(format!(
        "{}: too many stacked stale mounts",
        path.display()
    )))
}

fn dev_pair(dev: u64) -> (u64, u64) {
    (libc::major(dev) as u64, libc::minor(dev) as u64)
}

/// Raise the kernel's readahead for this mount (the FUSE INIT reply cannot
/// go above the default 128 KiB). Best effort: needs root and sysfs.
fn tune_readahead(dev: u64) {
    let (major, minor) = dev_pair(dev);
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&path, READAHEAD_KB.to_string()) {
        Ok(()) => log::debug!("readahead set to {READAHEAD_KB} KiB via {path}"),
        Err(e) => log::debug!("cannot raise readahead via {path}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_handle_can_move_to_another_thread() {
        fn is_send<T: Send>() {}
        is_send::<MountHandle>();
    }

    #[test]
    fn absolute_paths_are_cleaned_without_touching_the_last_component() {
        let p = absolute(Path::new("/definitely/not/../here/./mnt")).unwrap();
        assert_eq!(p, PathBuf::from("/definitely/here/mnt"));
    }
}
