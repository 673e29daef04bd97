//! Recognizing a node folder of the MiniGCS Python prototype, so that
//! minigcs never writes into one (no lock file, no identity file, no
//! shards): the prototype's data is migrated with `minigcs
//! import-prototype` instead. A prototype node folder holds
//! `node_metadata.json` or shard files `objects/<key>/shard_NNN`; minigcs's
//! own folders hold neither. Only looks; never creates or changes a file.

use std::path::{Path, PathBuf};

/// The file the prototype keeps at the top of each node folder.
pub const PROTOTYPE_NODE_FILE: &str = "node_metadata.json";

/// Entries of `objects/` looked at, at most, for a shard file.
const SCAN_LIMIT: usize = 10_000;

/// The prototype's data found in `folder` (a path inside it), if any.
pub fn prototype_data_in(folder: &Path) -> Option<PathBuf> {
    let marker = folder.join(PROTOTYPE_NODE_FILE);
    if marker.is_file() {
        return Some(marker);
    }
    let objects = folder.join("objects");
    if !objects.is_dir() {
        return None;
    }
    let mut pending = vec![objects];
    let mut seen = 0;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > SCAN_LIMIT {
                return None;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if is_shard_name(&entry.file_name().to_string_lossy()) {
                return Some(entry.path());
            }
        }
    }
    None
}

/// `shard_000`, `shard_001`, … as the prototype names shard files.
fn is_shard_name(name: &str) -> bool {
    name.strip_prefix("shard_")
        .is_some_and(|n| n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The prototype's working directory a node folder belongs to, if it can
/// be told: the nearest folder above it holding `config.yaml` and
/// `metadata.db` (node folders are `./data/node-N` there by default).
pub fn prototype_install_of(folder: &Path) -> Option<PathBuf> {
    let folder = lexically_normal(&std::path::absolute(folder).ok()?);
    folder
        .ancestors()
        .skip(1)
        .take(3)
        .find(|dir| dir.join("config.yaml").is_file() && dir.join("metadata.db").is_file())
        .map(Path::to_path_buf)
}

/// `path` without `.` components and with `..` applied, as written (no
/// symlink resolved), so that it reads as the user wrote it.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Why minigcs will not use `folder` as node `node_id`'s folder, and how to
/// migrate instead. `found` is what `prototype_data_in` returned, `config`
/// the config file in use (if known).
pub fn refusal(node_id: &str, folder: &Path, found: &Path, config: Option<&Path>) -> String {
    let install = prototype_install_of(folder)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/path/to/prototype".into());
    let config = config
        .map(|c| c.display().to_string())
        .unwrap_or_else(|| "config.yaml".into());
    let folder =
        std::path::absolute(folder).map_or_else(|_| folder.to_path_buf(), |f| lexically_normal(&f));
    let found =
        std::path::absolute(found).map_or_else(|_| found.to_path_buf(), |f| lexically_normal(&f));
    format!(
        "node {node_id}'s folder {} holds data of the MiniGCS Python prototype ({}); minigcs does not write into it. \
         To migrate that data: stop the prototype, point this config's nodes at new, empty folders, \
         and run `minigcs import-prototype {install} -c {config}`",
        folder.display(),
        found.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prototype_folders_are_recognized_and_minigcs_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node-1");
        std::fs::create_dir_all(node.join("shards/00")).unwrap();
        std::fs::write(node.join("minigcs-node.json"), "{}").unwrap();
        assert_eq!(prototype_data_in(&node), None);
        assert_eq!(prototype_data_in(&dir.path().join("absent")), None);

        std::fs::create_dir_all(node.join("objects/a/b.txt")).unwrap();
        assert_eq!(prototype_data_in(&node), None, "an empty objects folder");
        std::fs::write(node.join("objects/a/b.txt/shard_001"), "x").unwrap();
        assert_eq!(
            prototype_data_in(&node),
            Some(node.join("objects/a/b.txt/shard_001"))
        );

        let other = dir.path().join("node-2");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join(PROTOTYPE_NODE_FILE), "{}").unwrap();
        assert_eq!(
            prototype_data_in(&other),
            Some(other.join(PROTOTYPE_NODE_FILE))
        );
    }

    #[test]
    fn the_refusal_names_the_install_and_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("data/node-1");
        std::fs::create_dir_all(&node).unwrap();
        std::fs::write(dir.path().join("config.yaml"), "nodes: []").unwrap();
        std::fs::write(dir.path().join("metadata.db"), "").unwrap();
        let text = refusal(
            "node-1",
            &node,
            &node.join(PROTOTYPE_NODE_FILE),
            Some(Path::new("/etc/minigcs.yaml")),
        );
        assert!(
            text.contains(&format!(
                "minigcs import-prototype {} -c /etc/minigcs.yaml",
                dir.path().display()
            )),
            "{text}"
        );
        assert!(is_shard_name("shard_000") && !is_shard_name("shard_x"));
    }
}
