//! The mount helper, `mount.fuse.minigcs` (and `mount.minigcs`): what
//! `mount -t fuse.minigcs SOURCE MNT -o OPTIONS`, `/etc/fstab` and systemd
//! `.mount` units run. mount(8) calls it as `mount.fuse.minigcs SOURCE MNT
//! [-s] [-f] [-n] [-v] [-o OPTIONS] [-t TYPE]`. It checks the options and
//! the config (so a bad one is reported at once), starts `minigcs mount` in
//! its own session with its output appended to a log file, waits until the
//! mount answers, and returns; or, when the daemon exits or does not answer
//! in time, stops it and returns the daemon's error. It owns only that
//! start-up; the daemon it starts is the ordinary `minigcs mount`. The
//! binary is the helper when invoked under a `mount.` name (`argv[0]`), as
//! `install-helper` links it.

pub mod install;

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::mount_options::{MountOptions, Reader};
use crate::mountinfo;

/// The file system type mount(8) knows minigcs by.
pub const FS_TYPE: &str = "fuse.minigcs";
/// The file names the helper is installed under.
pub const HELPER_NAMES: &[&str] = &["mount.fuse.minigcs", "mount.minigcs"];
/// How long the daemon may take to answer through its mount (a metadata
/// restore at start can take a while on a large store).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a daemon that did not come up is given to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// The log file's name beside the metadata database, unless `log=` says.
pub const DEFAULT_LOG_NAME: &str = "minigcs-mount.log";

/// Exit codes, as mount(8) documents them for itself and its helpers.
pub const EXIT_USAGE: u8 = 1;
pub const EXIT_MOUNT_FAILED: u8 = 32;

/// Why the helper stopped: its exit code and what to print on stderr (code
/// 0: the help text was asked for, to print on stdout).
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: format!(
            "{}\nusage: mount.fuse.minigcs SOURCE MOUNTPOINT [-o OPTIONS] [-s] [-f] [-n] [-v]\n\
             SOURCE: a minigcs config file, or a folder holding config.yaml",
            message.into()
        ),
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_MOUNT_FAILED,
        message: message.into(),
    }
}

/// Is this process the helper (invoked as `mount.…`)?
pub fn invoked_as_helper(argv0: &std::ffi::OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| HELPER_NAMES.contains(&n))
}

/// The command line mount(8) gives a helper.
#[derive(Debug, Default, PartialEq)]
struct HelperArgs {
    source: PathBuf,
    mountpoint: PathBuf,
    option_lists: Vec<String>,
    sloppy: bool,
    fake: bool,
    verbose: bool,
}

fn parse_args(args: &[OsString]) -> Result<HelperArgs, Failure> {
    let mut out = HelperArgs::default();
    let mut positional: Vec<PathBuf> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_string_lossy().into_owned();
        let value = |i: &mut usize| -> Result<String, Failure> {
            *i += 1;
            args.get(*i)
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or_else(|| usage(format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "-o" => out.option_lists.push(value(&mut i)?),
            o if o.starts_with("-o") => out.option_lists.push(o[2..].to_string()),
            "-t" => {
                let t = value(&mut i)?;
                if t != FS_TYPE && t != "minigcs" {
                    return Err(usage(format!("-t {t}: this helper mounts {FS_TYPE} only")));
                }
            }
            "-s" => out.sloppy = true,
            "-f" => out.fake = true,
            "-v" => out.verbose = true,
            // No /etc/mtab to write: the kernel's mount table is the only one.
            "-n" => {}
            "-h" | "--help" => {
                return Err(Failure {
                    code: 0,
                    ..usage("mount.fuse.minigcs: mounts a minigcs store (mount -t fuse.minigcs)")
                })
            }
            o if o.starts_with('-') && o.len() > 1 => {
                return Err(usage(format!("unknown argument {o}")))
            }
            _ => positional.push(PathBuf::from(&args[i])),
        }
        i += 1;
    }
    match <[PathBuf; 2]>::try_from(positional) {
        Ok([source, mountpoint]) => {
            out.source = source;
            out.mountpoint = mountpoint;
            Ok(out)
        }
        Err(p) => Err(usage(format!(
            "expected SOURCE and MOUNTPOINT, got {} argument(s)",
            p.len()
        ))),
    }
}

/// What a successful mount reports (printed with `-v`).
pub struct Mounted {
    pub pid: u32,
    pub log: PathBuf,
    pub mountpoint: PathBuf,
}

/// Run the helper with the arguments after `argv[0]`.
pub fn run(args: &[OsString]) -> Result<Option<Mounted>, Failure> {
    let args = parse_args(args)?;
    let options = MountOptions::parse(
        args.option_lists.iter().map(String::as_str),
        Reader::Helper,
        args.sloppy,
    )
    .map_err(|e| usage(e.to_string()))?;
    let source = absolute(options.config.as_deref().unwrap_or(&args.source))
        .map_err(|e| failed(format!("{}: {e}", args.source.display())))?;
    let mountpoint = absolute(&args.mountpoint)
        .map_err(|e| failed(format!("{}: {e}", args.mountpoint.display())))?;
    // The daemon checks all this again; doing it here reports a bad config
    // before anything starts.
    let mut config =
        Config::load(&crate::config::config_file(&source)).map_err(|e| failed(e.to_string()))?;
    options
        .apply(&mut config)
        .map_err(|e| failed(e.to_string()))?;
    config
        .check_mount_point(&mountpoint)
        .map_err(|e| failed(e.to_string()))?;
    if args.fake {
        return Ok(None);
    }
    let log_path = match &options.log {
        Some(p) => absolute(p).map_err(|e| failed(format!("log={}: {e}", p.display())))?,
        None => config
            .metadata
            .path
            .parent()
            .unwrap_or(Path::new("/"))
            .join(DEFAULT_LOG_NAME),
    };
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| {
            failed(format!(
                "cannot open the log file {}: {e}",
                log_path.display()
            ))
        })?;
    let start_offset = log.seek(SeekFrom::End(0)).unwrap_or(0);
    let daemon_options = options.for_daemon();
    let mut command = Command::new(
        std::env::current_exe()
            .map_err(|e| failed(format!("cannot find the minigcs binary: {e}")))?,
    );
    command.arg("mount").arg(&mountpoint).arg("-c").arg(&source);
    if !daemon_options.is_empty() {
        command.arg("-o").arg(&daemon_options);
    }
    let _ = writeln!(
        log,
        "=== {} mount.fuse.minigcs: minigcs mount {} -c {}{}",
        jiff::Timestamp::now(),
        mountpoint.display(),
        source.display(),
        if daemon_options.is_empty() {
            String::new()
        } else {
            format!(" -o {daemon_options}")
        }
    );
    let stderr = log
        .try_clone()
        .map_err(|e| failed(format!("log file: {e}")))?;
    // Its own session: no controlling terminal, no SIGHUP when the shell
    // that ran mount(8) goes; the working directory holds no mount busy.
    command
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr);
    // SAFETY: setsid is async-signal-safe and touches no memory; it runs in
    // the forked child before exec.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let before: Vec<u64> = mounts_at(&mountpoint).into_iter().collect();
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("cannot start minigcs: {e}")))?;
    match wait_until_mounted(&mut child, &mountpoint, &before) {
        Ok(()) => Ok(Some(Mounted {
            pid: child.id(),
            log: log_path,
            mountpoint,
        })),
        Err(why) => {
            let status = stop(&mut child);
            let said = daemon_output(&log_path, start_offset);
            Err(failed(format!(
                "{why}{status}\n{said}(log: {})",
                log_path.display()
            )))
        }
    }
}

/// Ids of the minigcs mounts at `mountpoint` now.
fn mounts_at(mountpoint: &Path) -> Vec<u64> {
    mountinfo::mounts()
        .into_iter()
        .filter(|m| m.mount_point == mountpoint && m.fstype == FS_TYPE)
        .map(|m| m.id)
        .collect()
}

/// Poll until a new minigcs mount is at `mountpoint` and answers, while the
/// daemon lives.
fn wait_until_mounted(child: &mut Child, mountpoint: &Path, before: &[u64]) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("minigcs mount exited during start-up ({status})"));
        }
        if mounts_at(mountpoint).iter().any(|id| !before.contains(id)) {
            let left = deadline.saturating_duration_since(Instant::now());
            return match answers(mountpoint, left) {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(format!(
                    "the mount at {} does not answer: {e}",
                    mountpoint.display()
                )),
                None => Err(format!(
                    "the mount at {} did not answer within {} s",
                    mountpoint.display(),
                    START_TIMEOUT.as_secs()
                )),
            };
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "minigcs did not mount {} within {} s",
                mountpoint.display(),
                START_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `statfs` of the mount (always answered by the daemon, never from the
/// kernel's caches), given up after `timeout`.
fn answers(mountpoint: &Path, timeout: Duration) -> Option<Result<(), nix::Error>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let path = mountpoint.to_path_buf();
    std::thread::Builder::new()
        .name("mount-probe".into())
        .spawn(move || {
            let _ = tx.send(nix::sys::statvfs::statvfs(&path).map(|_| ()));
        })
        .ok()?;
    rx.recv_timeout(timeout).ok()
}

/// Stop a daemon that did not come up (SIGTERM, then SIGKILL), reaped; says
/// how it ended.
fn stop(child: &mut Child) -> String {
    if let Ok(Some(_)) = child.try_wait() {
        return String::new();
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return "; stopped it".into();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    "; killed it (it did not stop on SIGTERM)".into()
}

/// What the daemon wrote since `offset` that is not a plain progress line
/// (info/debug logging): its warnings and errors, and its final message.
fn daemon_output(log: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(log) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.take(1 << 20).read_to_string(&mut text);
    }
    let quiet = |l: &str| {
        l.starts_with("=== ")
            || [" INFO ", " DEBUG ", " TRACE "].iter().any(|level| {
                l.starts_with('[') && l.split(']').next().is_some_and(|h| h.contains(level))
            })
    };
    let mut out = String::new();
    for line in text.lines().filter(|l| !quiet(l)) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `path` made absolute against the working directory, the last component
/// kept as it is (it may be a mount that does not answer); the parent is
/// resolved through symlinks when it exists, as mountinfo shows it.
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    let clean: PathBuf = abs.components().collect();
    match (clean.parent(), clean.file_name()) {
        (Some(parent), Some(name)) => Ok(parent
            .canonicalize()
            .map(|p| p.join(name))
            .unwrap_or(clean.clone())),
        _ => Ok(clean),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn mount_8_helper_command_lines_parse() {
        let a = parse_args(&args(&[
            "/etc/m",
            "/mnt/x",
            "-s",
            "-n",
            "-v",
            "-o",
            "ro,threads=2",
            "-t",
            "fuse.minigcs",
        ]))
        .unwrap();
        assert_eq!(a.source, PathBuf::from("/etc/m"));
        assert_eq!(a.mountpoint, PathBuf::from("/mnt/x"));
        assert_eq!(a.option_lists, ["ro,threads=2"]);
        assert!(a.sloppy && a.verbose && !a.fake);
        let a = parse_args(&args(&["-f", "-orw", "s", "m"])).unwrap();
        assert!(a.fake);
        assert_eq!(a.option_lists, ["rw"]);
        for bad in [
            &["s"][..],
            &["s", "m", "x"],
            &["s", "m", "-o"],
            &["s", "m", "-t", "ext4"],
            &["s", "m", "-q"],
        ] {
            let e = parse_args(&args(bad)).unwrap_err();
            assert_eq!(e.code, EXIT_USAGE, "{bad:?}");
            assert!(e.message.contains("usage:"), "{}", e.message);
        }
    }

    #[test]
    fn the_helper_is_recognised_by_its_name() {
        assert!(invoked_as_helper("/sbin/mount.fuse.minigcs".as_ref()));
        assert!(invoked_as_helper("mount.minigcs".as_ref()));
        assert!(!invoked_as_helper("/usr/bin/minigcs".as_ref()));
        assert!(!invoked_as_helper("mount.fuse".as_ref()));
    }

    #[test]
    fn a_failed_start_reports_warnings_and_errors_not_progress() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "old run\n").unwrap();
        let offset = 8;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        write!(
            f,
            "=== header\n[2026-12-05T00:00:00.000Z INFO  minigcs::daemon] opening\n\
             [2026-12-05T00:00:00.000Z WARN  minigcs::daemon] odd\nminigcs: cannot listen on 127.0.0.1:1: in use\n"
        )
        .unwrap();
        let out = daemon_output(&log, offset);
        assert_eq!(
            out,
            "[2026-12-05T00:00:00.000Z WARN  minigcs::daemon] odd\nminigcs: cannot listen on 127.0.0.1:1: in use\n"
        );
    }
}
