//! Mount options as `mount(8)` and `/etc/fstab` write them (`-o
//! ro,allow_other,threads=4`): which ones minigcs honours, which ones belong
//! to `mount(8)` or systemd and are ignored, and the clear error for any
//! other. Used by `minigcs mount -o …` and by the mount helper
//! (`mount.fuse.minigcs`); only parses and applies to a `Config`, never
//! mounts anything.

use std::path::PathBuf;

use crate::config::Config;
use crate::error::{Error, Result};

/// Kernel mount flags passed on to the FUSE mount as they are.
pub const KERNEL_FLAGS: &[&str] = &[
    "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime", "sync", "async",
    "dirsync",
];

/// Options for `mount(8)`, the fstab or systemd, not for the file system:
/// accepted and ignored (as are `x-*` and `comment=*`).
const IGNORED: &[&str] = &[
    "defaults", "auto", "noauto", "_netdev", "nofail", "user", "nouser", "users", "owner", "group",
    "relatime", "loud", "silent",
];

/// What an option string asks for. `None` leaves the config as it is.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MountOptions {
    pub read_only: Option<bool>,
    pub allow_other: Option<bool>,
    pub threads: Option<usize>,
    pub memory_budget: Option<u64>,
    /// `config=PATH`: the config file or folder (the helper only).
    pub config: Option<PathBuf>,
    /// `log=PATH`: where the daemonised minigcs writes (the helper only).
    pub log: Option<PathBuf>,
    /// Kernel flags from `KERNEL_FLAGS`, in the order given.
    pub kernel_flags: Vec<String>,
    /// Options accepted but ignored (for the log).
    pub ignored: Vec<String>,
}

/// Who reads the options: the helper also takes `config=` and `log=`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reader {
    /// `minigcs mount -o …`
    Daemon,
    /// `mount.fuse.minigcs SOURCE MNT -o …`
    Helper,
}

impl MountOptions {
    /// Parse a comma-separated option list (several lists may be given, as
    /// repeated `-o`). With `sloppy` (mount's `-s`), unknown options are
    /// ignored instead of refused.
    pub fn parse<'a>(
        lists: impl IntoIterator<Item = &'a str>,
        reader: Reader,
        sloppy: bool,
    ) -> Result<MountOptions> {
        let mut out = MountOptions::default();
        for option in lists.into_iter().flat_map(|l| l.split(',')) {
            let option = option.trim();
            if option.is_empty() {
                continue;
            }
            if let Err(e) = out.take(option, reader) {
                match e {
                    Error::InvalidArgument(_) if sloppy => out.ignored.push(option.to_string()),
                    other => return Err(other),
                }
            }
        }
        Ok(out)
    }

    fn take(&mut self, option: &str, reader: Reader) -> Result<()> {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (option, None),
        };
        let bad_value = |why: &str| Error::Config(format!("mount option {option}: {why}"));
        match (name, value) {
            ("ro", None) => self.read_only = Some(true),
            ("rw", None) => self.read_only = Some(false),
            ("allow_other", None) => self.allow_other = Some(true),
            // Always on: the kernel checks permissions against the modes.
            ("default_permissions", None) => {}
            ("threads", Some(v)) => match v.parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => self.threads = Some(n),
                _ => return Err(bad_value("must be 1..=256 (FUSE requests served at once)")),
            },
            ("memory_budget", Some(v)) => match crate::config::size::parse(v) {
                Ok(n) => self.memory_budget = Some(n),
                Err(e) => return Err(bad_value(&e)),
            },
            ("config", Some(v)) | ("log", Some(v)) if reader == Reader::Helper => {
                if v.is_empty() {
                    return Err(bad_value("needs a path"));
                }
                let slot = if name == "config" {
                    &mut self.config
                } else {
                    &mut self.log
                };
                *slot = Some(PathBuf::from(v));
            }
            ("config", Some(_)) | ("log", Some(_)) => {
                return Err(bad_value(
                    "only the mount helper (mount -t fuse.minigcs) takes it; use -c CONFIG, \
                     and redirect stderr for a log",
                ))
            }
            ("accept_empty_metadata", _) => {
                return Err(bad_value(
                    "not accepted as a mount option: it deletes the shards of an existing store; \
                     run `minigcs mount --accept-empty-metadata` once by hand if you mean it",
                ))
            }
            (flag, None) if KERNEL_FLAGS.contains(&flag) => {
                self.kernel_flags.push(flag.to_string())
            }
            (word, None) if IGNORED.contains(&word) => self.ignored.push(option.to_string()),
            (word, _) if word.starts_with("x-") || word == "comment" => {
                self.ignored.push(option.to_string())
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown mount option {option} (minigcs takes ro, rw, allow_other, \
                     default_permissions, threads=N, memory_budget=SIZE, config=PATH, log=PATH, \
                     the kernel flags {}, and ignores {}, x-* and comment=*)",
                    KERNEL_FLAGS.join(", "),
                    IGNORED.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// Apply to a loaded config. `memory_budget` is checked against the
    /// config's chunk size here (at least two chunks, as the key).
    pub fn apply(&self, config: &mut Config) -> Result<()> {
        if let Some(ro) = self.read_only {
            config.read_only = ro;
        }
        if let Some(a) = self.allow_other {
            config.mount.allow_other = a;
        }
        if let Some(t) = self.threads {
            config.mount.threads = t;
        }
        if let Some(b) = self.memory_budget {
            if b < config.chunk_size() * 2 {
                return Err(Error::Config(format!(
                    "mount option memory_budget={b}: must be at least two chunks ({} bytes)",
                    config.chunk_size() * 2
                )));
            }
            config.mount.memory_budget = b;
        }
        config.mount.kernel_flags = self.kernel_flags.clone();
        Ok(())
    }

    /// The options to hand on to `minigcs mount -o` (the helper's own,
    /// `config=` and `log=`, and the ignored ones left out).
    pub fn for_daemon(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        match self.read_only {
            Some(true) => out.push("ro".into()),
            Some(false) => out.push("rw".into()),
            None => {}
        }
        if self.allow_other == Some(true) {
            out.push("allow_other".into());
        }
        if let Some(t) = self.threads {
            out.push(format!("threads={t}"));
        }
        if let Some(b) = self.memory_budget {
            out.push(format!("memory_budget={b}"));
        }
        out.extend(self.kernel_flags.iter().cloned());
        out.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, reader: Reader) -> Result<MountOptions> {
        MountOptions::parse([s], reader, false)
    }

    #[test]
    fn fstab_options_parse_and_mount_and_systemd_ones_are_ignored() {
        let o = parse(
            "defaults,_netdev,noauto,nofail,x-systemd.automount,x-systemd.requires=network.target,\
             ro,allow_other,default_permissions,threads=4,memory_budget=128M,nodev,noexec,\
             config=/etc/minigcs,log=/var/log/m.log",
            Reader::Helper,
        )
        .unwrap();
        assert_eq!(o.read_only, Some(true));
        assert_eq!(o.allow_other, Some(true));
        assert_eq!(o.threads, Some(4));
        assert_eq!(o.memory_budget, Some(128 << 20));
        assert_eq!(o.config, Some(PathBuf::from("/etc/minigcs")));
        assert_eq!(o.log, Some(PathBuf::from("/var/log/m.log")));
        assert_eq!(o.kernel_flags, ["nodev", "noexec"]);
        assert_eq!(o.ignored.len(), 6);
        assert_eq!(
            o.for_daemon(),
            "ro,allow_other,threads=4,memory_budget=134217728,nodev,noexec"
        );
        // The last of ro/rw wins, as in mount(8).
        assert_eq!(
            parse("ro,rw", Reader::Daemon).unwrap().read_only,
            Some(false)
        );
        assert_eq!(parse("", Reader::Daemon).unwrap(), MountOptions::default());
    }

    #[test]
    fn unknown_and_bad_options_are_clear_errors() {
        let e = parse("rw,frobnicate", Reader::Helper)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown mount option frobnicate"), "{e}");
        // mount -s (sloppy): unknown ones are ignored instead.
        let o = MountOptions::parse(["rw,frobnicate"], Reader::Helper, true).unwrap();
        assert_eq!(o.ignored, ["frobnicate"]);
        for (opt, says) in [
            ("threads=0", "1..=256"),
            ("threads=many", "1..=256"),
            ("memory_budget=lots", "memory_budget=lots"),
            ("config=", "needs a path"),
            ("accept_empty_metadata", "deletes the shards"),
        ] {
            let e = parse(opt, Reader::Helper).unwrap_err().to_string();
            assert!(e.contains(says), "{opt}: {e}");
            // Even sloppy mounts refuse a known option with a bad value.
            assert!(MountOptions::parse([opt], Reader::Helper, true).is_err());
        }
        let e = parse("config=/x", Reader::Daemon).unwrap_err().to_string();
        assert!(e.contains("only the mount helper"), "{e}");
    }

    #[test]
    fn options_apply_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_test(dir.path(), &["r1", "r2", "r3"], 2, 1, 1 << 20);
        let o = parse("ro,threads=3,nosuid,memory_budget=8M", Reader::Daemon).unwrap();
        o.apply(&mut config).unwrap();
        assert!(config.read_only);
        assert_eq!(config.mount.threads, 3);
        assert_eq!(config.mount.memory_budget, 8 << 20);
        assert_eq!(config.mount.kernel_flags, ["nosuid"]);
        let small = parse("memory_budget=1M", Reader::Daemon).unwrap();
        let e = small.apply(&mut config).unwrap_err().to_string();
        assert!(e.contains("at least two chunks"), "{e}");
    }
}
