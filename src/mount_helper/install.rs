//! `minigcs install-helper`: puts the mount helper where mount(8) looks for
//! it (`/sbin/mount.fuse.minigcs`, `/sbin/mount.minigcs`) as symbolic links
//! to this binary, or removes them. Only ever replaces or removes symbolic
//! links of those names: a regular file there is left alone (an error).

use std::path::{Path, PathBuf};

use super::HELPER_NAMES;

/// Where mount(8) looks for `mount.<type>` helpers.
pub const DEFAULT_DIR: &str = "/sbin";

/// What `install`/`remove` did, one line per file.
pub type Done = Vec<String>;

/// Link every helper name in `dir` to `binary`.
pub fn install(dir: &Path, binary: &Path) -> Result<Done, String> {
    let binary = binary
        .canonicalize()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let mut done = Vec::new();
    for name in HELPER_NAMES {
        let link = dir.join(name);
        refuse_non_link(&link)?;
        // A new link beside it, renamed over the old one: never a moment
        // without a helper.
        let temp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        std::os::unix::fs::symlink(&binary, &temp)
            .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
        if let Err(e) = std::fs::rename(&temp, &link) {
            let _ = std::fs::remove_file(&temp);
            return Err(format!("cannot install {}: {e}", link.display()));
        }
        done.push(format!("{} -> {}", link.display(), binary.display()));
    }
    Ok(done)
}

/// Remove the helper links from `dir` (those that are there).
pub fn remove(dir: &Path) -> Result<Done, String> {
    let mut done = Vec::new();
    for name in HELPER_NAMES {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            continue;
        }
        refuse_non_link(&link)?;
        std::fs::remove_file(&link)
            .map_err(|e| format!("cannot remove {}: {e}", link.display()))?;
        done.push(format!("removed {}", link.display()));
    }
    Ok(done)
}

fn refuse_non_link(path: &PathBuf) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_symlink() => Err(format!(
            "{} exists and is not a symbolic link; not touching it (remove it first)",
            path.display()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_links_both_names_replaces_links_and_leaves_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("minigcs");
        std::fs::write(&bin, "x").unwrap();
        let done = install(dir.path(), &bin).unwrap();
        assert_eq!(done.len(), 2);
        for name in HELPER_NAMES {
            let target = std::fs::read_link(dir.path().join(name)).unwrap();
            assert_eq!(target, bin.canonicalize().unwrap());
        }
        // Again: replaced, no temporary files left.
        install(dir.path(), &bin).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        assert_eq!(remove(dir.path()).unwrap().len(), 2);
        assert!(remove(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join("mount.minigcs"), "someone else's").unwrap();
        assert!(install(dir.path(), &bin)
            .unwrap_err()
            .contains("not a symbolic link"));
        assert!(remove(dir.path())
            .unwrap_err()
            .contains("not a symbolic link"));
    }
}
