//! Reading `/proc/self/mountinfo`: which file systems are mounted where, with
//! their device numbers and types. Used to recognise our own FUSE mount and
//! stale ones, to tell when a mount started by the mount helper is up, and
//! to keep path checks from touching FUSE mounts that may not answer. Only
//! reads; never mounts or stats anything.

use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo.
#[derive(Debug)]
pub struct MountEntry {
    /// The mount's unique id (first field).
    pub id: u64,
    pub dev: (u64, u64),
    pub mount_point: PathBuf,
    /// `fuse.minigcs` for a minigcs mount (plain `fuse` from older ones).
    pub fstype: String,
    /// What was mounted: for minigcs, its config file or folder.
    pub source: String,
}

impl MountEntry {
    pub fn is_fuse(&self) -> bool {
        self.fstype.starts_with("fuse")
    }
}

/// Every mount this process sees, in mount order (empty if /proc is absent).
pub fn mounts() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| text.lines().filter_map(parse_line).collect())
        .unwrap_or_default()
}

/// The topmost mount at exactly `path`, if any.
pub fn top_mount_at(path: &Path) -> Option<MountEntry> {
    mounts().into_iter().rev().find(|m| m.mount_point == path)
}

/// Mount points of every FUSE file system (answering or not).
pub fn fuse_mount_points() -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(MountEntry::is_fuse)
        .map(|m| m.mount_point)
        .collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let mut fields = line.split(' ');
    let id = fields.next()?.parse().ok()?;
    let _parent = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let _root = fields.next()?;
    let mount_point = unescape(fields.next()?);
    // Optional fields end at "-"; the file system type follows.
    let mut rest = fields.skip_while(|f| *f != "-").skip(1);
    let fstype = rest.next()?.to_string();
    let source = unescape(rest.next().unwrap_or_default())
        .to_string_lossy()
        .into_owned();
    Some(MountEntry {
        id,
        dev: (major.parse().ok()?, minor.parse().ok()?),
        mount_point,
        fstype,
        source,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_escapes_and_optional_fields() {
        let m = parse_line(
            "36 35 0:52 / /tmp/my\\040mnt rw,nosuid shared:1 master:2 - fuse minigcs rw,user_id=0",
        )
        .unwrap();
        assert_eq!((m.id, m.dev), (36, (0, 52)));
        assert_eq!(m.mount_point, PathBuf::from("/tmp/my mnt"));
        assert_eq!(m.source, "minigcs");
        assert!(m.is_fuse());
        // What minigcs mounts show now: its own type and the config as source.
        let m = parse_line(
            "41 35 0:60 / /srv/data rw,nosuid,nodev - fuse.minigcs /etc/my\\040store/config.yaml rw",
        )
        .unwrap();
        assert!(m.is_fuse(), "stale-mount clearing must still see it");
        assert_eq!(m.fstype, "fuse.minigcs");
        assert_eq!(m.source, "/etc/my store/config.yaml");
        let m = parse_line("22 1 8:1 / / rw - ext4 /dev/sda1 rw").unwrap();
        assert_eq!(m.fstype, "ext4");
        assert!(!m.is_fuse());
    }
}
