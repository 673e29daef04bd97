//! The write-buffer memory budget: dirty chunk buffers take a permit of
//! `chunk_size` bytes; writers wait (after spilling) when the budget is spent,
//! which is the back-pressure that keeps memory bounded whatever the file size.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Duration;

pub struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
    limit: u64,
}

/// Bytes held against the budget; returned on drop.
pub struct Permit {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        *self.budget.used.lock() -= self.bytes;
        self.budget.freed.notify_all();
    }
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            used: Mutex::new(0),
            freed: Condvar::new(),
            limit,
        })
    }

    pub fn used(&self) -> u64 {
        *self.used.lock()
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn try_acquire(self: &Arc<Self>, bytes: u64) -> Option<Permit> {
        let mut used = self.used.lock();
        self.grant(&mut used, bytes)
    }

    /// Take `bytes` when they fit (an empty budget always grants one
    /// request, so a chunk larger than the whole budget still goes through).
    fn grant(self: &Arc<Self>, used: &mut u64, bytes: u64) -> Option<Permit> {
        if *used + bytes > self.limit && *used != 0 {
            return None;
        }
        *used += bytes;
        Some(Permit {
            budget: self.clone(),
            bytes,
        })
    }

    /// Wait up to `wait` for room; None when still full (the caller spills and retries).
    pub fn acquire_timeout(self: &Arc<Self>, bytes: u64, wait: Duration) -> Option<Permit> {
        let mut used = self.used.lock();
        if *used + bytes > self.limit && *used != 0 {
            self.freed.wait_for(&mut used, wait);
        }
        self.grant(&mut used, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_return_bytes_on_drop_and_limit_holds() {
        let b = Budget::new(10);
        let p1 = b.try_acquire(6).unwrap();
        assert!(b.try_acquire(6).is_none());
        assert!(b.acquire_timeout(6, Duration::from_millis(10)).is_none());
        drop(p1);
        assert_eq!(b.used(), 0);
        let _p2 = b.try_acquire(6).unwrap();
        assert_eq!(b.used(), 6);
    }
}
