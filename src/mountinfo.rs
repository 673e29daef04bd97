//! Reading `/proc/self/mountinfo`: which file systems are mounted where, with
//! their device numbers and types. Used to recognise our own FUSE mount and
//! stale ones, and to keep path checks from touching FUSE mounts that may not
//! answer. Only reads; never mounts or stats anything.

use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo.
#[derive(Debug)]
pub struct MountEntry {
    pub dev: (u64, u64),
    pub mount_point: PathBuf,
    pub fstype: String,
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
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let _root = fields.next()?;
    let mount_point = unescape(fields.next()?);
    // Optional fields end at "-"; the file system type follows.
    let fstype = fields.skip_while(|f| *f != "-").nth(1)?.to_string();
    Some(MountEntry {
        dev: (major.parse().ok()?, minor.parse().ok()?),
        mount_point,
        fstype,
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
        assert_eq!(m.dev, (0, 52));
        assert_eq!(m.mount_point, PathBuf::from("/tmp/my mnt"));
        assert!(m.is_fuse());
        let m = parse_line("22 1 8:1 / / rw - ext4 /dev/sda1 rw").unwrap();
        assert_eq!(m.fstype, "ext4");
        assert!(!m.is_fuse());
    }
}
