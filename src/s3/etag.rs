//! ETags of files whose MD5 is not known yet (written through the mount,
//! not asked for since), and the background hashing that makes it known.
//!
//! A listing never reads file content: such a file is listed with a
//! provisional ETag, opaque like a multipart object's (`<32 hex>-1`, so
//! clients do not take it for an MD5) and different for every version of
//! the file, and its MD5 is computed in the background (one file at a
//! time, on a thread of its own) and stored, so that later listings show
//! it. HEAD and GET still compute the MD5 of the version they serve when it
//! is unknown, and accept the provisional ETag in `If-Match` and
//! `If-None-Match` as naming the same version.

use crossbeam_channel::{bounded, Sender, TrySendError};
use md5::{Digest, Md5};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::{Arc, Weak};

use crate::model::{Inode, Kind};
use crate::service::Service;

/// Files waiting for their MD5 at most; a listing finding the queue full
/// leaves the rest to a later listing.
const QUEUE: usize = 100_000;

/// The ETag of a version whose MD5 is not known: the MD5 of the version's
/// identity (inode, version, size, mtime), with S3's multipart suffix.
pub fn provisional(inode: &Inode) -> String {
    let identity = format!(
        "minigcs:{}:{}:{}:{}",
        inode.ino, inode.version, inode.size, inode.mtime
    );
    format!("{}-1", hex::encode(Md5::digest(identity.as_bytes())))
}

/// The ETag a listing shows for `inode`, and whether its MD5 is wanted.
pub fn listed(inode: &Inode) -> (String, bool) {
    match &inode.md5 {
        Some(m) => (m.clone(), false),
        None => (provisional(inode), true),
    }
}

/// Computes, in the background, the MD5 of files a listing found without one.
pub struct Md5Backfill {
    queue: Sender<u64>,
    /// Inodes queued and not done yet (each queued once).
    waiting: Arc<Mutex<HashSet<u64>>>,
}

impl Md5Backfill {
    /// Start the hashing thread. It holds the service weakly and stops
    /// when the backfill is dropped or the service shuts down. A thread
    /// that cannot start leaves MD5s to HEAD and GET.
    pub fn start(service: &Arc<Service>) -> Md5Backfill {
        let (queue, next) = bounded::<u64>(QUEUE);
        let waiting = Arc::new(Mutex::new(HashSet::new()));
        let (weak, done): (Weak<Service>, _) = (Arc::downgrade(service), waiting.clone());
        let started = std::thread::Builder::new()
            .name("s3-md5".into())
            .spawn(move || {
                for ino in next {
                    let Some(service) = weak.upgrade() else { break };
                    if service.is_shutting_down() {
                        break;
                    }
                    hash_one(&service, ino);
                    done.lock().remove(&ino);
                }
            });
        if let Err(e) = started {
            log::warn!("S3 API: no background MD5 thread ({e}): listings show provisional ETags until HEAD or GET");
        }
        Md5Backfill { queue, waiting }
    }

    /// Ask for the MD5s of these files (already asked: ignored).
    pub fn request(&self, inos: impl IntoIterator<Item = u64>) {
        let mut waiting = self.waiting.lock();
        for ino in inos {
            if !waiting.insert(ino) {
                continue;
            }
            match self.queue.try_send(ino) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    waiting.remove(&ino);
                    return;
                }
            }
        }
    }
}

fn hash_one(service: &Service, ino: u64) {
    let inode = match service.getattr(ino) {
        Ok(i) if i.kind == Kind::File && i.md5.is_none() => i,
        _ => return, // gone, or known meanwhile
    };
    if let Err(e) = service.md5_of(inode) {
        log::debug!("S3 API: computing the MD5 of inode {ino}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provisional_etag_is_no_md5_and_changes_with_the_version() {
        let mut inode = Inode::new(Kind::File, 0o644, 0, 0);
        inode.ino = 7;
        let first = provisional(&inode);
        assert_eq!(first.len(), 34);
        assert!(first.ends_with("-1"));
        assert_eq!(provisional(&inode), first);
        inode.version += 1;
        assert_ne!(provisional(&inode), first);
        assert_eq!(listed(&inode), (provisional(&inode), true));
        inode.md5 = Some("d41d8cd98f00b204e9800998ecf8427e".into());
        assert_eq!(
            listed(&inode),
            ("d41d8cd98f00b204e9800998ecf8427e".to_string(), false)
        );
    }
}
