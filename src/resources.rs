//! The process resources the daemon must not run out of, file descriptors
//! above all: raising the soft descriptor limit to the hard one at start,
//! the share of the limit the HTTP API may hold as connections (the store
//! keeps the rest for shard files, the database and the mount), telling the
//! daemon's own descriptor exhaustion (EMFILE/ENFILE) from a fault of what it
//! tried to open, and the growing pause an accept loop takes when accept
//! fails for a reason other than the one connection.

use std::io;
use std::time::Duration;

use crate::config::Config;

/// EMFILE (this process) or ENFILE (the whole system) is out of
/// descriptors: a fact about the daemon right now, never about the file or
/// folder it tried to open.
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The descriptor limit before and after [`raise_descriptor_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (what servers commonly
/// do: the soft default of 1024 is meant for interactive programs).
pub fn raise_descriptor_limit() -> io::Result<DescriptorLimit> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let mut limit = DescriptorLimit {
        soft_before: soft,
        soft,
        hard,
    };
    if soft >= hard {
        return Ok(limit);
    }
    // An unlimited hard limit is not a valid soft one on Linux: the kernel
    // caps descriptors at fs.nr_open.
    let target = if hard == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        hard
    };
    setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    limit.soft = target;
    Ok(limit)
}

/// The current soft descriptor limit.
pub fn descriptor_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

/// Descriptors kept for everything but HTTP connections, whatever the load:
/// the runtime, the database and its WAL files per pooled connection, the
/// control socket and its clients, the metrics file, the FUSE device, and
/// one shard file per shard of a chunk for every mount thread, repair
/// thread and background worker that may be reading or writing a chunk.
pub fn store_reserve(config: &Config) -> u64 {
    const BASE: u64 = 256;
    const WORKERS: u64 = 8;
    let shards = (config.k() + config.m()) as u64;
    let threads = config.mount.threads as u64 + config.recovery.parallelism as u64 + WORKERS;
    BASE + threads * shards
}

/// Descriptors one HTTP connection may hold: its socket, and while a GET
/// or PUT runs one shard file per shard of a chunk.
pub fn per_connection(config: &Config) -> u64 {
    1 + (config.k() + config.m()) as u64
}

/// How many HTTP connections fit in `limit` descriptors once `reserve` is
/// set aside and each connection may hold `per_connection`; at least 1.
pub fn connection_budget(limit: u64, reserve: u64, per_connection: u64) -> usize {
    let budget = limit.saturating_sub(reserve) / per_connection.max(1);
    usize::try_from(budget).unwrap_or(usize::MAX).max(1)
}

/// The pause between failed accepts: none when the failure concerned only
/// the connection being accepted (it was reset or aborted before we took
/// it), else [`AcceptBackoff::FIRST`], doubling up to
/// [`AcceptBackoff::LONGEST`] while failures go on, back to the first after
/// an accept succeeds.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    pub const FIRST: Duration = Duration::from_millis(10);
    pub const LONGEST: Duration = Duration::from_millis(500);

    pub fn new() -> AcceptBackoff {
        AcceptBackoff { next: Self::FIRST }
    }

    /// An accept succeeded.
    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }

    /// An accept failed with `e`: how long to wait before the next one.
    pub fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        if concerns_one_connection(e) {
            return None;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(Self::LONGEST);
        Some(pause)
    }

    /// [`AcceptBackoff::failed`], logging the failure of `what`: at debug
    /// when it concerned one connection, else as a warning at a bounded rate.
    pub fn failed_and_logged(&mut self, what: &str, e: &io::Error) -> Option<Duration> {
        let pause = self.failed(e);
        match pause {
            None => log::debug!("{what}: {e}"),
            Some(pause) => {
                crate::warn_limited!(what, "{what}: {e}; retrying in {}ms", pause.as_millis())
            }
        }
        pause
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

/// accept(2) errors about the pending connection, not the listener or the
/// process: the next accept may well succeed at once.
fn concerns_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn descriptor_exhaustion_is_emfile_or_enfile_only() {
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ENOENT
        )));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!is_fd_exhaustion(&io::Error::other("too many open files")));
    }

    #[test]
    fn exhaustion_backs_off_growing_and_resets_after_a_success() {
        let mut backoff = AcceptBackoff::new();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<Duration> = (0..10).map(|_| backoff.failed(&emfile).unwrap()).collect();
        assert_eq!(pauses[0], AcceptBackoff::FIRST);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]), "{pauses:?}");
        assert_eq!(pauses[1], AcceptBackoff::FIRST * 2);
        assert_eq!(*pauses.last().unwrap(), AcceptBackoff::LONGEST);
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), Some(AcceptBackoff::FIRST));
        let enfile = io::Error::from_raw_os_error(libc::ENFILE);
        assert_eq!(backoff.failed(&enfile), Some(AcceptBackoff::FIRST * 2));
    }

    #[test]
    fn a_connection_reset_before_accept_is_retried_at_once() {
        let mut backoff = AcceptBackoff::new();
        for errno in [
            libc::ECONNABORTED,
            libc::ECONNRESET,
            libc::EPROTO,
            libc::EINTR,
        ] {
            assert_eq!(
                backoff.failed(&io::Error::from_raw_os_error(errno)),
                None,
                "{errno}"
            );
        }
        // And they do not grow the pause of a later real failure.
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(backoff.failed(&emfile), Some(AcceptBackoff::FIRST));
    }

    #[test]
    fn the_connection_budget_leaves_the_store_its_reserve() {
        assert_eq!(connection_budget(20_000, 400, 4), 4900);
        assert_eq!(connection_budget(1024, 400, 4), 156);
        // A limit below the reserve still lets one connection in.
        assert_eq!(connection_budget(256, 400, 4), 1);
        assert_eq!(connection_budget(u64::MAX, 0, 0), usize::MAX);
    }

    #[test]
    fn the_reserve_grows_with_threads_and_shards() {
        let small = Config::for_test(Path::new("/t"), &["a", "b", "c"], 2, 1, 1024);
        let wide = Config::for_test(Path::new("/t"), &["a"; 14], 10, 4, 1024);
        assert!(store_reserve(&wide) > store_reserve(&small));
        assert_eq!(per_connection(&small), 4);
        assert_eq!(per_connection(&wide), 15);
    }

    #[test]
    fn raising_the_limit_never_lowers_it() {
        let before = descriptor_limit();
        let limit = raise_descriptor_limit().unwrap();
        assert_eq!(limit.soft_before, before);
        assert!(limit.soft >= before && limit.soft <= limit.hard.max(limit.soft));
        assert_eq!(descriptor_limit(), limit.soft);
    }
}
