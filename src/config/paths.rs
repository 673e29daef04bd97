//! Where the configured folders and files really are relative to each other
//! and to the mount point. Two nodes in one folder, a node folder nested in
//! another, the metadata database or the control socket inside a node folder
//! would let one `rm -rf` take out two failure domains (or the database with
//! a node); anything of the store inside the mount point makes the daemon
//! write into itself. Paths are compared canonically (symlinks resolved,
//! missing tails appended to their longest existing ancestor), without ever
//! looking inside a FUSE mount, which may be stale or hung.

use std::path::{Component, Path, PathBuf};

use super::Config;
use crate::{mountinfo, realpath};

/// One configured path: its key, as written (made absolute), and where it really is.
struct Place {
    key: String,
    written: PathBuf,
    real: PathBuf,
}

impl Place {
    fn new(key: String, path: &Path, opaque: &[PathBuf]) -> Place {
        Place {
            key,
            written: without_dots(&realpath::absolute(path)),
            real: realpath::resolve(path, opaque),
        }
    }

    /// `key ("/real/path")`, with the written path too when symlinks moved it.
    fn describe(&self) -> String {
        if self.written == self.real {
            format!("{} ({:?})", self.key, self.real)
        } else {
            format!(
                "{} ({:?}, which is {:?})",
                self.key, self.written, self.real
            )
        }
    }
}

/// `path` without `.` components (`..` kept: only the resolver may apply it).
fn without_dots(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// FUSE mounts are never looked into: they may not answer.
fn opaque_folders() -> Vec<PathBuf> {
    mountinfo::fuse_mount_points()
}

fn node_places(config: &Config, opaque: &[PathBuf]) -> Vec<Place> {
    config
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.s3.is_none())
        .map(|(i, n)| Place::new(format!("nodes[{i}].storage_path"), &n.storage_path, opaque))
        .collect()
}

/// The files the daemon keeps beside the nodes.
fn file_places(config: &Config, opaque: &[PathBuf]) -> Vec<Place> {
    vec![
        Place::new("metadata.path".into(), &config.metadata.path, opaque),
        Place::new("control.socket".into(), &config.control.socket, opaque),
    ]
}

/// Problems with node folders and files among themselves, one sentence each.
pub(super) fn layout_problems(config: &Config) -> Vec<String> {
    let opaque = opaque_folders();
    let nodes = node_places(config, &opaque);
    let files = file_places(config, &opaque);
    let mut problems = Vec::new();
    // A folder listed twice is reported once, not again for each nesting.
    let mut repeated = vec![false; nodes.len()];
    for (j, later) in nodes.iter().enumerate() {
        for (i, earlier) in nodes[..j].iter().enumerate() {
            if repeated[i] {
                continue;
            }
            if later.real == earlier.real {
                repeated[j] = true;
                problems.push(format!(
                    "{} is the same folder as {}",
                    later.describe(),
                    earlier.key
                ));
                break;
            }
            let (inner, outer) = if later.real.starts_with(&earlier.real) {
                (later, earlier)
            } else if earlier.real.starts_with(&later.real) {
                (earlier, later)
            } else {
                continue;
            };
            problems.push(format!(
                "{} is inside {}",
                inner.describe(),
                outer.describe()
            ));
        }
    }
    let distinct_nodes = || {
        nodes
            .iter()
            .zip(&repeated)
            .filter(|(_, r)| !**r)
            .map(|(n, _)| n)
    };
    for file in &files {
        for node in distinct_nodes() {
            if file.real.starts_with(&node.real) {
                problems.push(format!("{} is inside {}", file.describe(), node.describe()));
            }
        }
    }
    if files[0].real == files[1].real {
        problems.push(format!(
            "{} is the same path as {}",
            files[1].describe(),
            files[0].key
        ));
    }
    problems
}

/// Problems with the store's paths and the mount point `mount_point` (which
/// may not exist yet, or be a stale mount).
pub(super) fn mount_point_problems(config: &Config, mount_point: &Path) -> Vec<String> {
    let mut opaque = opaque_folders();
    let mount = realpath::resolve(mount_point, &opaque);
    opaque.push(mount.clone());
    let shown = mount.display();
    let mut problems = Vec::new();
    for node in node_places(config, &opaque) {
        if node.real == mount {
            problems.push(format!("{} is the mount point", node.describe()));
        } else if node.real.starts_with(&mount) {
            problems.push(format!(
                "{} is inside the mount point {shown}",
                node.describe()
            ));
        } else if mount.starts_with(&node.real) {
            problems.push(format!(
                "the mount point {shown} is inside {}",
                node.describe()
            ));
        }
    }
    let mut files = file_places(config, &opaque);
    if config.metrics.enabled {
        files.push(Place::new(
            "metrics.output_file".into(),
            &config.metrics.output_file,
            &opaque,
        ));
    }
    for file in files {
        if file.real.starts_with(&mount) {
            problems.push(format!(
                "{} is inside the mount point {shown}",
                file.describe()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    /// A 3-node config under `root` with the given node folders and files.
    fn yaml(nodes: [&str; 3], metadata: &str, socket: &str) -> String {
        let mut text = String::from("nodes:\n");
        for (i, path) in nodes.iter().enumerate() {
            text.push_str(&format!(
                "  - id: node-{i}\n    region: r{i}\n    storage_path: \"{path}\"\n"
            ));
        }
        text.push_str(&format!(
            "metadata:\n  path: \"{metadata}\"\ncontrol:\n  socket: \"{socket}\"\n"
        ));
        text
    }

    fn parse(root: &Path, text: &str) -> Result<Config, String> {
        Config::parse(text, root).map_err(|e| e.to_string())
    }

    fn rejected(root: &Path, text: &str, expected: &[&str]) {
        let err = parse(root, text).expect_err("layout must be rejected");
        for part in expected {
            assert!(err.contains(part), "{err:?} lacks {part:?}");
        }
    }

    fn tempdir() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        (dir, root)
    }

    #[test]
    fn sibling_folders_and_shared_name_prefixes_are_accepted() {
        let (_dir, root) = tempdir();
        let text = yaml(
            ["data/node-1", "data/node-10", "data/node-1x/../node-2"],
            "data/metadata.db",
            "data/minigcs.sock",
        );
        parse(&root, &text).unwrap();
        // Folders that exist, and a metadata file beside (not in) a node.
        std::fs::create_dir_all(root.join("data/node-1")).unwrap();
        std::fs::create_dir_all(root.join("data/node-10")).unwrap();
        parse(&root, &text).unwrap();
        let c = parse(&root, &text).unwrap();
        c.check_mount_point(&root.join("mnt")).unwrap();
        c.check_mount_point(&root.join("data/node-1-mnt")).unwrap();
    }

    #[test]
    fn two_nodes_in_one_folder_are_rejected_naming_both_keys() {
        let (_dir, root) = tempdir();
        let text = yaml(["data/n", "./data/n/", "data/m"], "meta.db", "ctl.sock");
        let shown = root.join("data/n");
        rejected(
            &root,
            &text,
            &[&format!(
                "nodes[1].storage_path ({shown:?}) is the same folder as nodes[0].storage_path"
            )],
        );
    }

    #[test]
    fn the_same_folder_through_a_symlink_is_rejected() {
        let (_dir, root) = tempdir();
        std::fs::create_dir_all(root.join("disk/n")).unwrap();
        std::os::unix::fs::symlink(root.join("disk"), root.join("link")).unwrap();
        let text = yaml(["disk/n", "m", "link/n"], "meta.db", "ctl.sock");
        rejected(
            &root,
            &text,
            &[
                "nodes[2].storage_path",
                "which is",
                "is the same folder as nodes[0].storage_path",
            ],
        );
        // A folder that does not exist yet under a symlinked parent, too.
        let text = yaml(
            ["disk/new/n", "m", "link/new/n/deeper"],
            "meta.db",
            "ctl.sock",
        );
        rejected(
            &root,
            &text,
            &["nodes[2].storage_path", "is inside nodes[0].storage_path"],
        );
    }

    #[test]
    fn nested_node_folders_are_rejected_either_way_round() {
        let (_dir, root) = tempdir();
        let text = yaml(["a/n1", "a/n1/n2", "b"], "meta.db", "ctl.sock");
        rejected(
            &root,
            &text,
            &["nodes[1].storage_path", "is inside nodes[0].storage_path"],
        );
        let text = yaml(["a/n1/n2", "b", "a/n1"], "meta.db", "ctl.sock");
        rejected(
            &root,
            &text,
            &["nodes[0].storage_path", "is inside nodes[2].storage_path"],
        );
    }

    #[test]
    fn metadata_or_socket_inside_a_node_folder_is_rejected() {
        let (_dir, root) = tempdir();
        let text = yaml(["n1", "n2", "n3"], "n2/metadata.db", "ctl.sock");
        rejected(
            &root,
            &text,
            &["metadata.path", "is inside nodes[1].storage_path"],
        );
        let text = yaml(["n1", "n2", "n3"], "meta.db", "n3/sub/ctl.sock");
        rejected(
            &root,
            &text,
            &["control.socket", "is inside nodes[2].storage_path"],
        );
        let text = yaml(["n1", "n2", "n3"], "same", "same");
        rejected(
            &root,
            &text,
            &["control.socket", "is the same path as metadata.path"],
        );
    }

    #[test]
    fn anything_of_the_store_inside_the_mount_point_is_rejected() {
        let (_dir, root) = tempdir();
        let good = yaml(["n1", "n2", "n3"], "meta.db", "ctl.sock");
        let c = parse(&root, &good).unwrap();
        let err = c.check_mount_point(&root).unwrap_err().to_string();
        for key in [
            "nodes[0].storage_path",
            "nodes[2].storage_path",
            "metadata.path",
            "control.socket",
        ] {
            assert!(
                err.contains(&format!("{key} (")) && err.contains("inside the mount point"),
                "{err}"
            );
        }
        // The mount point may not exist yet; a node folder inside it is
        // found all the same, also through a symlink to the mount point.
        let mnt = root.join("mnt");
        let c = parse(&root, &yaml(["mnt/n1", "n2", "n3"], "meta.db", "ctl.sock")).unwrap();
        let err = c.check_mount_point(&mnt).unwrap_err().to_string();
        let expected = format!(
            "nodes[0].storage_path ({:?}) is inside the mount point {}",
            mnt.join("n1"),
            mnt.display()
        );
        assert!(err.contains(&expected), "{err}");
        std::fs::create_dir(&mnt).unwrap();
        std::os::unix::fs::symlink(&mnt, root.join("to-mnt")).unwrap();
        let c = parse(
            &root,
            &yaml(["to-mnt/n1", "n2", "n3"], "meta.db", "ctl.sock"),
        )
        .unwrap();
        let err = c.check_mount_point(&mnt).unwrap_err().to_string();
        assert!(err.contains("nodes[0].storage_path"), "{err}");
        let err = c
            .check_mount_point(&root.join("to-mnt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodes[0].storage_path"), "{err}");
        // A node folder that is the mount point.
        let err = c
            .check_mount_point(&root.join("n2"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nodes[1].storage_path") && err.contains("is the mount point"),
            "{err}"
        );
    }

    #[test]
    fn a_mount_point_inside_a_node_folder_is_rejected() {
        let (_dir, root) = tempdir();
        let c = parse(&root, &yaml(["n1", "n2", "n3"], "meta.db", "ctl.sock")).unwrap();
        let err = c
            .check_mount_point(&root.join("n3/mnt"))
            .unwrap_err()
            .to_string();
        let expected = format!(
            "the mount point {} is inside nodes[2].storage_path",
            root.join("n3/mnt").display()
        );
        assert!(err.contains(&expected), "{err}");
    }

    #[test]
    fn metrics_file_inside_the_mount_point_is_rejected_only_when_enabled() {
        let (_dir, root) = tempdir();
        let text = yaml(["n1", "n2", "n3"], "meta.db", "ctl.sock");
        let on = format!("{text}metrics:\n  enabled: true\n  output_file: mnt/m.csv\n");
        let off = format!("{text}metrics:\n  enabled: false\n  output_file: mnt/m.csv\n");
        let err = parse(&root, &on)
            .unwrap()
            .check_mount_point(&root.join("mnt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.output_file"), "{err}");
        parse(&root, &off)
            .unwrap()
            .check_mount_point(&root.join("mnt"))
            .unwrap();
    }
}
