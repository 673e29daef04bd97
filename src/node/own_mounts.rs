//! The mount points this process serves over FUSE, and the rule that a node
//! folder resolving inside one is never used (written, read or even statfs-ed):
//! the daemon would wait on its own FUSE requests, which call back into the
//! node (a deadlock that even `kill -9` does not end until the connection is
//! aborted). Config validation refuses such layouts at
//! start; this guard covers folders that move under a running daemon (a
//! symlink re-pointed into the mount). Checking never looks inside a mount.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::error::{Error, Result};
use crate::realpath;

/// Canonical mount points of this process's live FUSE mounts.
static OWN_MOUNTS: RwLock<Vec<PathBuf>> = RwLock::new(Vec::new());

/// One registered mount point; dropping it ends the registration.
#[derive(Debug)]
pub struct Registration(PathBuf);

impl Drop for Registration {
    fn drop(&mut self) {
        let mut mounts = OWN_MOUNTS.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = mounts.iter().position(|m| *m == self.0) {
            mounts.remove(i);
        }
    }
}

/// Register `mount_point` (absolute) as served by this process, from before
/// the mount exists until the registration is dropped.
pub fn register(mount_point: &Path) -> Registration {
    let real = realpath::resolve(mount_point, &[mount_point.to_path_buf()]);
    OWN_MOUNTS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(real.clone());
    Registration(real)
}

/// Refuse `folder` if it resolves inside one of this process's own mounts.
pub fn refuse_inside(folder: &Path) -> Result<()> {
    let mounts = OWN_MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    if mounts.is_empty() {
        return Ok(());
    }
    let real = realpath::resolve(folder, &mounts);
    match mounts.iter().find(|m| real.starts_with(m)) {
        Some(m) => Err(Error::Other(format!(
            "node folder {} is inside this daemon's own mount at {}: not used",
            folder.display(),
            m.display()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_inside_a_registered_mount_are_refused_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mnt = root.join("mnt");
        std::fs::create_dir_all(root.join("mnt-2")).unwrap();
        std::os::unix::fs::symlink(mnt.join("n3"), root.join("link")).unwrap();
        let registration = register(&mnt);
        for inside in [mnt.join("n3"), mnt.clone(), root.join("link")] {
            let err = refuse_inside(&inside).unwrap_err().to_string();
            assert!(err.contains("own mount"), "{err}");
        }
        // A sibling sharing the name's prefix is not inside.
        refuse_inside(&root.join("mnt-2")).unwrap();
        drop(registration);
        refuse_inside(&mnt.join("n3")).unwrap();
    }
}
