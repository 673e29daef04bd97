//! The page-cache policy of the mount: an open may keep what the kernel
//! cached of a file (FOPEN_KEEP_CACHE) only while the file is the version
//! the cache was filled from. This remembers, per inode, that version as far
//! as the adapter knows it: set at open, moved forward after our own commits
//! (the writes went through the cache), forgotten when a commit failed or
//! the object API changed the file. Only an optimisation: forgetting too
//! much costs a re-read, never a stale read.

use parking_lot::Mutex;
use std::collections::HashMap;

use crate::error::Result;
use crate::model::Inode;
use crate::service::Service;

/// Bound on the map (it is only an optimisation).
const MAX_CACHE_KEYS: usize = 100_000;

/// What the kernel's page cache of a file was filled from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CacheKey {
    version: u64,
    size: u64,
    mtime: i64,
}

impl CacheKey {
    fn of(i: &Inode) -> CacheKey {
        CacheKey {
            version: i.version,
            size: i.size,
            mtime: i.mtime,
        }
    }
}

/// Per inode, the version the kernel's page cache holds.
#[derive(Default)]
pub(super) struct PageCache {
    cached: Mutex<HashMap<u64, CacheKey>>,
}

impl PageCache {
    /// Whether an open may keep the page cache; remembers the current version.
    pub(super) fn keep_on_open(&self, inode: &Inode) -> bool {
        let key = CacheKey::of(inode);
        let mut cached = self.cached.lock();
        if cached.len() >= MAX_CACHE_KEYS && !cached.contains_key(&inode.ino) {
            cached.clear();
        }
        cached.insert(inode.ino, key) == Some(key)
    }

    /// Bookkeeping after a flush, fsync or release of `ino` that returned
    /// `outcome`. After our own successful commit the page cache holds what
    /// was committed (writes went through it): remember the new version.
    pub(super) fn after_commit(&self, service: &Service, ino: u64, outcome: &Result<()>) {
        if outcome.is_err() {
            return self.forget(ino);
        }
        match service.getattr(ino) {
            Ok(inode) => {
                let mut cached = self.cached.lock();
                if cached.contains_key(&ino) {
                    cached.insert(ino, CacheKey::of(&inode));
                }
            }
            Err(_) => self.forget(ino),
        }
    }

    /// The file changed behind the kernel's back: the next open drops the cache.
    pub(super) fn forget(&self, ino: u64) {
        self.cached.lock().remove(&ino);
    }
}
