//! Rate-limited logging for lines that can repeat without bound: accept
//! failures, per-request errors, node state flapping, failed repairs. Each
//! line carries a key; at most [`LINES_PER_WINDOW`] lines per key are written
//! per [`WINDOW`], and the first line of the next window is preceded by one
//! saying how many were dropped. A flood therefore costs a few lines per key
//! every ten seconds instead of one per event. Use [`warn_limited!`] (or
//! [`log_limited!`] for another level); the bookkeeping lives in
//! [`RateLimiter`].

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines written per key and window before the rest are dropped.
pub const LINES_PER_WINDOW: u32 = 5;
/// The length of one window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Keys tracked at once; past this, expired windows are forgotten, and if
/// none has expired the line is written untracked.
const MAX_KEYS: usize = 4096;

/// Whether to write one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it; `dropped_before` lines of this key were dropped in the
    /// window that just ended (say so first when it is not 0).
    Log { dropped_before: u64 },
    /// Drop it (counted for the next window's summary).
    Drop,
}

/// Per-key windows: how many lines were written and dropped since the
/// window started.
pub struct RateLimiter {
    lines_per_window: u32,
    window: Duration,
    keys: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    written: u32,
    dropped: u64,
}

impl RateLimiter {
    pub fn new(lines_per_window: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            lines_per_window: lines_per_window.max(1),
            window,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Decide for one line of `key` at `now`.
    pub fn admit_at(&self, key: &str, now: Instant) -> Admit {
        let mut keys = self.keys.lock();
        if let Some(w) = keys.get_mut(key) {
            if now.saturating_duration_since(w.started) < self.window {
                if w.written < self.lines_per_window {
                    w.written += 1;
                    return Admit::Log { dropped_before: 0 };
                }
                w.dropped += 1;
                return Admit::Drop;
            }
            let dropped_before = w.dropped;
            *w = Window::open(now);
            return Admit::Log { dropped_before };
        }
        if keys.len() >= MAX_KEYS {
            let window = self.window;
            keys.retain(|_, w| now.saturating_duration_since(w.started) < window);
            if keys.len() >= MAX_KEYS {
                return Admit::Log { dropped_before: 0 };
            }
        }
        keys.insert(key.to_owned(), Window::open(now));
        Admit::Log { dropped_before: 0 }
    }

    /// Decide for one line of `key` now.
    pub fn admit(&self, key: &str) -> Admit {
        self.admit_at(key, Instant::now())
    }
}

impl Window {
    fn open(now: Instant) -> Window {
        Window {
            started: now,
            written: 1,
            dropped: 0,
        }
    }
}

/// The daemon-wide limiter the logging macros use.
pub fn global() -> &'static RateLimiter {
    static GLOBAL: OnceLock<RateLimiter> = OnceLock::new();
    GLOBAL.get_or_init(|| RateLimiter::new(LINES_PER_WINDOW, WINDOW))
}

/// `log_limited!(level, key, "format", args…)`: log like `log::log!`, at
/// most [`LINES_PER_WINDOW`] lines per `key` (a `&str` or `String`) per
/// [`WINDOW`].
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $key:expr, $($arg:tt)+) => {{
        let level: ::log::Level = $level;
        if ::log::log_enabled!(level) {
            let key_value = $key;
            let key: &str = ::core::convert::AsRef::<str>::as_ref(&key_value);
            if let $crate::ratelog::Admit::Log { dropped_before } = $crate::ratelog::global().admit(key) {
                if dropped_before > 0 {
                    ::log::log!(
                        level,
                        "{dropped_before} more \"{key}\" line(s) were suppressed in the last {}s",
                        $crate::ratelog::WINDOW.as_secs()
                    );
                }
                ::log::log!(level, $($arg)+);
            }
        }
    }};
}

/// `warn_limited!(key, "format", args…)`: [`log_limited!`] at warn level.
#[macro_export]
macro_rules! warn_limited {
    ($key:expr, $($arg:tt)+) => {
        $crate::log_limited!(::log::Level::Warn, $key, $($arg)+)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_the_first_lines_then_one_summary_per_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let decisions: Vec<Admit> = (0..1000)
            .map(|i| limiter.admit_at("accept", t0 + Duration::from_millis(i)))
            .collect();
        let written = decisions.iter().filter(|a| **a != Admit::Drop).count();
        assert_eq!(written, 3);
        assert!(decisions[..3]
            .iter()
            .all(|a| *a == Admit::Log { dropped_before: 0 }));
        // The first line of the next window reports what the last one dropped.
        assert_eq!(
            limiter.admit_at("accept", t0 + Duration::from_secs(10)),
            Admit::Log {
                dropped_before: 997
            }
        );
        assert_eq!(
            limiter.admit_at("accept", t0 + Duration::from_secs(11)),
            Admit::Log { dropped_before: 0 }
        );
    }

    #[test]
    fn keys_are_limited_independently() {
        let limiter = RateLimiter::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(
            limiter.admit_at("node node-1", t0),
            Admit::Log { dropped_before: 0 }
        );
        assert_eq!(limiter.admit_at("node node-1", t0), Admit::Drop);
        assert_eq!(
            limiter.admit_at("node node-2", t0),
            Admit::Log { dropped_before: 0 }
        );
    }

    #[test]
    fn a_quiet_key_is_never_limited() {
        let limiter = RateLimiter::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..20 {
            assert_eq!(
                limiter.admit_at("health", t0 + Duration::from_secs(i)),
                Admit::Log { dropped_before: 0 }
            );
        }
    }

    #[test]
    fn too_many_keys_forget_expired_windows_and_never_drop_new_keys() {
        let limiter = RateLimiter::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            limiter.admit_at(&format!("k{i}"), t0);
        }
        // Table full of live windows: a new key is still written.
        assert_eq!(
            limiter.admit_at("new", t0),
            Admit::Log { dropped_before: 0 }
        );
        // Once they expire the table is trimmed and the key tracked again.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            limiter.admit_at("new", later),
            Admit::Log { dropped_before: 0 }
        );
        assert_eq!(limiter.admit_at("new", later), Admit::Drop);
        assert_eq!(limiter.keys.lock().len(), 1);
    }

    #[test]
    fn the_macros_accept_str_and_string_keys() {
        warn_limited!("test-key", "a warning {}", 1);
        let node = "node-1";
        log_limited!(log::Level::Info, format!("node {node}"), "state {}", "up");
    }
}
