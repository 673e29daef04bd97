//! Kernel cache invalidation for changes made outside the mount: the
//! service reports what the object API changed (`ChangeObserver`), and this
//! tells the kernel to drop its cached attributes, pages and names for them,
//! and the page-cache policy to stop keeping that file's cache. It holds no
//! reference to the service (the service holds it), and is detached when
//! the session ends so nothing is sent to a dead connection.

use fuser::{INodeNo, Notifier};
use parking_lot::Mutex;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::page_cache::PageCache;
use crate::service::{Change, ChangeObserver};

pub(super) struct Invalidator {
    notifier: Mutex<Option<Notifier>>,
    page_cache: Arc<PageCache>,
}

impl Invalidator {
    pub(super) fn new(notifier: Notifier, page_cache: Arc<PageCache>) -> Invalidator {
        Invalidator {
            notifier: Mutex::new(Some(notifier)),
            page_cache,
        }
    }

    /// Stop notifying (the session ended or is ending).
    pub(super) fn detach(&self) {
        self.notifier.lock().take();
    }
}

impl ChangeObserver for Invalidator {
    fn changed(&self, change: &Change) {
        // Clone out so a slow kernel call never holds our lock.
        let Some(notifier) = self.notifier.lock().clone() else {
            return;
        };
        // Errors are normal here: ENOENT when the kernel never saw the inode
        // or the name, ENODEV once unmounted.
        match change {
            Change::Inode(ino) => {
                self.page_cache.forget(*ino);
                if let Err(e) = notifier.inval_inode(INodeNo(*ino), 0, 0) {
                    log::debug!("invalidate inode {ino}: {e}");
                }
            }
            Change::Entry { parent, name } => {
                if let Err(e) = notifier.inval_entry(INodeNo(*parent), OsStr::from_bytes(name)) {
                    log::debug!(
                        "invalidate entry {parent}/{}: {e}",
                        String::from_utf8_lossy(name)
                    );
                }
            }
        }
    }
}
