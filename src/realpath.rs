//! Where a path really is, for comparing folders: symlinks resolved one
//! component at a time like `realpath`, but a path that does not exist yet is
//! still answered (its longest existing ancestor resolved, the rest appended
//! as written), and "opaque" folders — mount points that may be stale or hung,
//! such as FUSE mounts — are never looked into: a path reaching one goes on
//! lexically from there. Nothing here creates or changes a file.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up (as the kernel's ELOOP limit).
const MAX_SYMLINKS: usize = 40;

/// `path` made absolute against the current directory without touching it.
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// The canonical form of `path`: absolute, symlinks resolved, `.` and `..`
/// applied. Components inside one of `opaque` (absolute, canonical paths) are
/// never stat-ed, nor is the opaque folder itself; from there on, and after
/// the first component that does not exist or cannot be read, the rest is
/// appended as written.
pub fn resolve(path: &Path, opaque: &[PathBuf]) -> PathBuf {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front(&mut pending, &absolute(path));
    let mut out = PathBuf::from("/");
    let mut lexical = false;
    let mut symlinks = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            out.pop();
            continue;
        }
        let next = out.join(&name);
        if lexical || opaque.contains(&next) {
            out = next;
            lexical = true;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() && symlinks < MAX_SYMLINKS => {
                symlinks += 1;
                match std::fs::read_link(&next) {
                    Ok(target) => {
                        if target.is_absolute() {
                            out = PathBuf::from("/");
                        }
                        push_front(&mut pending, &target);
                    }
                    Err(_) => {
                        out = next;
                        lexical = true;
                    }
                }
            }
            Ok(_) => out = next,
            Err(_) => {
                out = next;
                lexical = true;
            }
        }
    }
    out
}

/// Queue `path`'s components before what is pending (`.` dropped, `..` kept).
fn push_front(pending: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => pending.push_front(n.to_os_string()),
            Component::ParentDir => pending.push_front("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn existing_paths_resolve_like_canonicalize() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("a/b");
        std::fs::create_dir_all(&real).unwrap();
        symlink(&real, dir.path().join("link")).unwrap();
        symlink("a/./b/..", dir.path().join("rel")).unwrap();
        let canon = |p: &Path| p.canonicalize().unwrap();
        for p in [
            dir.path().join("a/b"),
            dir.path().join("link"),
            dir.path().join("link/../b/."),
            dir.path().join("rel/b"),
        ] {
            assert_eq!(resolve(&p, &[]), canon(&p), "{}", p.display());
        }
    }

    #[test]
    fn missing_tails_are_appended_to_the_resolved_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        symlink(root.join("real"), root.join("link")).unwrap();
        assert_eq!(
            resolve(&root.join("link/not/yet/../there"), &[]),
            root.join("real/not/there")
        );
    }

    #[test]
    fn opaque_folders_are_not_looked_into() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("mnt/x")).unwrap();
        symlink("/elsewhere", root.join("mnt/x/link")).unwrap();
        // Without the opaque list the symlink is followed ...
        assert_eq!(
            resolve(&root.join("mnt/x/link"), &[]),
            PathBuf::from("/elsewhere")
        );
        // ... with it, nothing inside the mount point is read.
        assert_eq!(
            resolve(&root.join("mnt/x/link"), &[root.join("mnt")]),
            root.join("mnt/x/link")
        );
    }

    #[test]
    fn symlink_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        symlink(root.join("b"), root.join("a")).unwrap();
        symlink(root.join("a"), root.join("b")).unwrap();
        let _ = resolve(&root.join("a/x"), &[]);
    }
}
