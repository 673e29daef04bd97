//! Directory handles: the listing an `opendir` sees is a snapshot taken then
//! (and again at a rewind), and readdir offsets are positions in it, so
//! entries added or removed during a pass are never skipped or repeated.
//! Also fills readdir and readdirplus replies from a snapshot. The service
//! only pages through a directory; handles and offsets exist for the kernel.

use fuser::{FileType, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::convert::{file_type, to_attr};
use super::TTL;
use crate::error::{Error, Result};
use crate::model::DirPage;
use crate::service::Service;

/// Directory entries fetched from the service per query when snapshotting.
const DIR_PAGE: usize = 1024;

/// One entry of a directory-handle snapshot.
pub(super) struct DirEntry {
    name: Vec<u8>,
    ino: u64,
    kind: FileType,
}

/// An open directory.
struct DirHandle {
    ino: u64,
    entries: Arc<Vec<DirEntry>>,
    /// True until the first readdir: an offset-0 readdir after that is a
    /// rewind and takes a new snapshot.
    fresh: bool,
}

/// The open directories of one mount, by handle.
pub(super) struct DirHandles {
    handles: Mutex<HashMap<u64, DirHandle>>,
    next: AtomicU64,
}

impl DirHandles {
    pub(super) fn new() -> DirHandles {
        DirHandles {
            handles: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    /// opendir: snapshot `ino` and return the new handle.
    pub(super) fn open(&self, service: &Service, ino: u64) -> Result<u64> {
        let entries = Arc::new(snapshot(service, ino)?);
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        let handle = DirHandle {
            ino,
            entries,
            fresh: true,
        };
        self.handles.lock().insert(fh, handle);
        Ok(fh)
    }

    pub(super) fn release(&self, fh: u64) {
        self.handles.lock().remove(&fh);
    }

    /// The entries of handle `fh`, re-snapshotted on a rewind. The handle
    /// lock is not held while listing or while the caller fills its reply.
    pub(super) fn entries(
        &self,
        service: &Service,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> Result<Arc<Vec<DirEntry>>> {
        {
            let mut handles = self.handles.lock();
            let d = handles
                .get_mut(&fh)
                .ok_or_else(|| Error::InvalidArgument(format!("unknown directory handle {fh}")))?;
            if d.ino != ino {
                return Err(Error::InvalidArgument(format!(
                    "directory handle {fh} is not for inode {ino}"
                )));
            }
            let rewind = offset == 0 && !d.fresh;
            d.fresh = false;
            if !rewind {
                return Ok(d.entries.clone());
            }
        }
        let entries = Arc::new(snapshot(service, ino)?);
        if let Some(d) = self.handles.lock().get_mut(&fh) {
            d.entries = entries.clone();
        }
        Ok(entries)
    }
}

/// A directory's entries, with "." and "..".
fn snapshot(service: &Service, ino: u64) -> Result<Vec<DirEntry>> {
    let mut entries = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = service.list_dir(ino, DirPage::new(after.as_deref(), DIR_PAGE))?;
        let full = page.len() == DIR_PAGE;
        after = page.last().map(|(n, _)| n.clone());
        entries.extend(page.into_iter().map(|(name, inode)| DirEntry {
            name,
            ino: inode.ino,
            kind: file_type(inode.kind),
        }));
        if !full {
            break;
        }
    }
    let parent = service.parent_of(ino)?;
    let mut out = Vec::with_capacity(entries.len() + 2);
    out.push(DirEntry {
        name: b".".to_vec(),
        ino,
        kind: FileType::Directory,
    });
    out.push(DirEntry {
        name: b"..".to_vec(),
        ino: parent,
        kind: FileType::Directory,
    });
    out.extend(entries);
    Ok(out)
}

/// Fill a readdir reply from position `offset` of a snapshot. An entry's
/// offset is the position after it.
pub(super) fn fill_readdir(reply: &mut ReplyDirectory, entries: &[DirEntry], offset: u64) {
    for (i, e) in entries.iter().enumerate().skip(offset as usize) {
        let name = OsStr::from_bytes(&e.name);
        if reply.add(INodeNo(e.ino), (i + 1) as u64, e.kind, name) {
            break;
        }
    }
}

/// Fill a readdirplus reply with fresh attributes (the snapshot may be
/// older than writes in progress); an entry gone since the snapshot is
/// skipped, and "." / ".." fall back to the directory itself.
pub(super) fn fill_readdirplus(
    reply: &mut ReplyDirectoryPlus,
    service: &Service,
    dir: u64,
    entries: &[DirEntry],
    offset: u64,
) {
    for (i, e) in entries.iter().enumerate().skip(offset as usize) {
        let inode = match service.getattr(e.ino) {
            Ok(inode) => inode,
            Err(_) if i < 2 => match service.getattr(dir) {
                Ok(inode) => inode,
                Err(_) => continue,
            },
            Err(_) => continue,
        };
        let name = OsStr::from_bytes(&e.name);
        let attr = to_attr(&inode);
        if reply.add(
            INodeNo(e.ino),
            (i + 1) as u64,
            name,
            &TTL,
            &attr,
            Generation(0),
        ) {
            break;
        }
    }
}
