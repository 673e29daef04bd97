//! The `minigcs` command line: parses arguments (clap), loads the config, and
//! dispatches to the daemon, the control client or the benchmark. The only
//! place that prints for humans (`ctl` tables are rendered from the typed
//! reports by `minigcs::control::print`). Output goes through `write_stdout`:
//! a reader that went away (`minigcs ctl … | head -1`) ends the process the
//! way it ends `ls` or `git`, by SIGPIPE, quietly (status 141 in a shell).

use clap::{Parser, Subcommand};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use minigcs::config::Config;
use minigcs::control::{client, print, Reply, Request};
use minigcs::error::Error;
use minigcs::report::Progress;

/// mimalloc instead of glibc malloc: the daemon frees chunk-sized buffers
/// from many threads (FUSE loops, uploaders, readers, the API runtime), and
/// glibc keeps such memory in per-thread arenas, so the resident size grew
/// with the history of the workload rather than with the configured budgets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "minigcs",
    version,
    about = "Erasure-coded, multi-region storage you use as a mounted directory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// Config file, or a folder holding config.yaml; relative paths in it
    /// resolve against its folder
    #[arg(
        short,
        long,
        env = "MINIGCS_CONFIG",
        default_value = "config.yaml",
        global = true
    )]
    config: PathBuf,
}

/// Options of the daemons (`mount`, `serve`).
#[derive(clap::Args, Clone)]
struct DaemonArgs {
    /// Start even if the metadata database is new while the node folders
    /// hold shards of an existing store (its files are lost; they are
    /// deleted as orphans). Without it minigcs refuses to start (exit 1).
    #[arg(long)]
    accept_empty_metadata: bool,
    /// Serve the store read-only: the mount refuses changes (EROFS), the
    /// API answers 403 to uploads and deletes; reads, repair and recovery go on
    #[arg(long, visible_alias = "ro")]
    read_only: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the store at MOUNTPOINT and serve the HTTP API and control socket (foreground)
    Mount {
        /// Where to mount (created if missing; a stale mount there is cleared)
        mountpoint: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Mount options as mount(8) takes them, comma-separated: ro, rw,
        /// allow_other, threads=N, memory_budget=SIZE, nodev, noexec, …
        /// (fstab-only ones such as noauto, _netdev, x-systemd.* are ignored)
        #[arg(short = 'o', long = "options", value_name = "OPTIONS")]
        options: Vec<String>,
    },
    /// Serve the HTTP API and control socket without a mount (foreground)
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Talk to a running daemon over its control socket
    Ctl {
        #[command(flatten)]
        config: ConfigArg,
        /// Socket path (overrides control.socket from the config)
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        /// Print the reply's JSON `data` object instead of a table
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: CtlCommand,
    },
    /// Restore the metadata database from the newest valid snapshot kept on
    /// the nodes (only over a database that is missing, empty or corrupt)
    RestoreMeta {
        #[command(flatten)]
        config: ConfigArg,
        /// Write the restored database to PATH (a new file) instead of metadata.path
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
        /// Only print which snapshot would be restored (it is still verified)
        #[arg(long)]
        dry_run: bool,
    },
    /// Install the mount helper for `mount -t fuse.minigcs` and fstab:
    /// symbolic links mount.fuse.minigcs and mount.minigcs to this binary
    InstallHelper {
        /// Where to put them (mount(8) looks in /sbin)
        #[arg(long, value_name = "DIR", default_value = minigcs::mount_helper::install::DEFAULT_DIR)]
        dir: PathBuf,
        /// Remove the links instead
        #[arg(long)]
        remove: bool,
    },
    /// Benchmark a mounted directory (default: the current directory)
    Bench(minigcs::bench::BenchArgs),
    /// Move every object of a MiniGCS Python prototype install into this
    /// store (stop the daemon first); never modifies PROTO_DIR. Exit status
    /// 0 when every object is in the store, 1 when any is not
    ImportPrototype {
        /// The prototype's working directory, holding its config.yaml,
        /// metadata.db and (by default) its data/ node folders
        proto_dir: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check a stopped store's metadata against its nodes (exit 0 clean, 1
    /// problems); --rebuild recovers file contents from the shard headers
    /// alone into lost+found/
    Fsck {
        #[command(flatten)]
        config: ConfigArg,
        /// Recover every file the shard headers describe into lost+found/
        /// (creating the metadata database when it is missing)
        #[arg(long)]
        rebuild: bool,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Is a daemon there? Answers with its version
    Ping,
    /// Objects, bytes, shards per node and region, erasure-coding parameters
    Stats,
    /// Cluster health: node states and chunks missing shards. Exit status 0
    /// when healthy, 1 when degraded or in error
    Health,
    /// Node list: id, region, path, state, shards, bytes, free space
    Nodes,
    /// Rebuild every shard that belongs on NODE_ID (re-creating its folder if missing or empty)
    Recover {
        /// The node to rebuild, as `id` in the config's `nodes` list (e.g. node-2)
        node_id: String,
    },
    /// Verify every shard's checksums (parity too)
    Scrub {
        /// Rebuild the shards found bad
        #[arg(long)]
        repair: bool,
    },
    /// Operation and recovery metrics (same as GET /metrics/summary)
    Metrics,
    /// One object's metadata and where each shard of each chunk lives (a
    /// directory is reported as one, with its entry count)
    Info {
        /// An object key (docs/report.pdf) or a path inside the mount point
        /// (./mnt/docs/report.pdf)
        path_or_key: String,
    },
    /// Background workers: state, what each is doing, queue, items done, last error
    Workers,
    /// Write a snapshot of the metadata database to the nodes now
    Snapshot,
}

fn init_logging(default: &str) {
    // fuser warns that it could not unmount when the kernel already did
    // (`umount MNT`, which is how a mount is meant to end): not news. The
    // S3 protocol crate logs every refused request as an error and every
    // signature check as a span: the S3 front end reports what matters.
    let default = format!("{default},fuser::session=error,tracing::span=off,s3s=off");
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .init();
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    let file = minigcs::config::config_file(path);
    match Config::load(&file) {
        Ok(mut c) => {
            if file != path {
                c.mount.source = Some(path.to_path_buf());
            }
            for w in &c.warnings {
                log::warn!("{}: {w}", path.display());
            }
            Ok(c)
        }
        Err(e) => {
            complain(&format!("minigcs: {e}"));
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args
        .next()
        .is_some_and(|argv0| minigcs::mount_helper::invoked_as_helper(&argv0))
    {
        return mount_helper(&args.collect::<Vec<_>>());
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Mount {
            mountpoint,
            config,
            daemon,
            options,
        } => run_daemon(&config, &daemon, Some((&mountpoint, &options))),
        Command::Serve { config, daemon } => run_daemon(&config, &daemon, None),
        Command::InstallHelper { dir, remove } => install_helper(&dir, remove),
        Command::Ctl {
            config,
            socket,
            json,
            command,
        } => {
            init_logging("warn");
            let socket = match socket {
                Some(s) => s,
                None => match load_config(&config.config) {
                    Ok(c) => c.control.socket,
                    Err(code) => return code,
                },
            };
            ctl(&socket, json, command)
        }
        Command::ImportPrototype { proto_dir, config } => import_prototype(&proto_dir, &config),
        Command::Fsck {
            config,
            rebuild,
            json,
        } => fsck(&config, rebuild, json),
        Command::RestoreMeta {
            config,
            to,
            dry_run,
        } => {
            init_logging("warn");
            let config = match load_config(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match minigcs::snapshot::restore::restore_meta(&config, to.as_deref(), dry_run) {
                Ok(text) => match write_stdout(&format!("{text}\n")) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::from(1),
                },
                Err(e) => {
                    complain(&format!("minigcs restore-meta: {e}"));
                    ExitCode::from(1)
                }
            }
        }
        Command::Bench(args) => {
            init_logging("warn");
            match minigcs::bench::run(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    complain(&format!("minigcs bench: {e}"));
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `mount` (with its mount point and `-o` lists) or `serve`.
fn run_daemon(
    config: &ConfigArg,
    daemon: &DaemonArgs,
    mount: Option<(&PathBuf, &Vec<String>)>,
) -> ExitCode {
    init_logging("info");
    let mut config = match load_config(&config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    config.accept_empty_metadata = daemon.accept_empty_metadata;
    config.read_only = daemon.read_only;
    if let Some((_, lists)) = mount {
        let options = minigcs::mount_options::MountOptions::parse(
            lists.iter().map(String::as_str),
            minigcs::mount_options::Reader::Daemon,
            false,
        )
        .and_then(|o| {
            o.apply(&mut config)?;
            Ok(o)
        });
        match options {
            Ok(o) if !o.ignored.is_empty() => {
                log::debug!("mount options left to mount(8): {}", o.ignored.join(","))
            }
            Ok(_) => {}
            Err(e) => {
                complain(&format!("minigcs: {e}"));
                return ExitCode::from(2);
            }
        }
        // --read-only wins over a later -o rw.
        config.read_only |= daemon.read_only;
    }
    daemon_exit(minigcs::daemon::run(
        config,
        mount.map(|(m, _)| m.as_path()),
    ))
}

/// `mount.fuse.minigcs SOURCE MNT -o …`: quiet on success unless `-v`.
fn mount_helper(args: &[std::ffi::OsString]) -> ExitCode {
    init_logging("warn");
    let verbose = args.iter().any(|a| a == "-v");
    match minigcs::mount_helper::run(args) {
        Ok(Some(m)) if verbose => {
            complain(&format!(
                "minigcs mounted at {} (daemon pid {}, log {})",
                m.mountpoint.display(),
                m.pid,
                m.log.display()
            ));
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        // --help
        Err(f) if f.code == 0 => match write_stdout(&format!("{}\n", f.message)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(1),
        },
        Err(f) => {
            complain(&format!("mount.fuse.minigcs: {}", f.message.trim_end()));
            ExitCode::from(f.code)
        }
    }
}

fn install_helper(dir: &Path, remove: bool) -> ExitCode {
    init_logging("warn");
    let result = match remove {
        true => minigcs::mount_helper::install::remove(dir),
        false => std::env::current_exe()
            .map_err(|e| format!("cannot find this binary: {e}"))
            .and_then(|bin| minigcs::mount_helper::install::install(dir, &bin)),
    };
    match result {
        Ok(done) => {
            match write_stdout(&done.iter().map(|l| format!("{l}\n")).collect::<String>()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(1),
            }
        }
        Err(e) => {
            complain(&format!("minigcs install-helper: {e}"));
            ExitCode::from(1)
        }
    }
}

/// `import-prototype`: a progress bar while it runs, the table at the end.
fn import_prototype(proto_dir: &Path, config: &ConfigArg) -> ExitCode {
    init_logging("warn");
    let config = match load_config(&config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let bar = progress_bar(false);
    if let Some(b) = &bar {
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} importing [{bar:30}] {pos}/{len} objects  {msg}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
    }
    let result = minigcs::import::run(proto_dir, config, &mut |p| {
        if let Some(b) = &bar {
            b.set_length(p.total);
            b.set_position(p.done);
            b.set_message(p.key.clone());
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = match result {
        Ok(report) => report,
        Err(e) => return daemon_exit(Err(e)),
    };
    if let Err(e) = write_stdout(&report.render()) {
        complain(&format!(
            "minigcs import-prototype: cannot write the output: {e}"
        ));
        return ExitCode::from(1);
    }
    match report.complete() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    }
}

fn daemon_exit(r: Result<(), Error>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Config(e)) => {
            complain(&format!("minigcs: {e}"));
            ExitCode::from(2)
        }
        Err(e) => {
            complain(&format!("minigcs: {e}"));
            ExitCode::from(1)
        }
    }
}

fn fsck(config: &ConfigArg, rebuild: bool, json: bool) -> ExitCode {
    init_logging("warn");
    let config = match load_config(&config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let failed = |e: &dyn std::fmt::Display| {
        complain(&format!("minigcs fsck: {e}"));
        ExitCode::from(1)
    };
    let service = match minigcs::fsck::open_store(config, rebuild) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let (text, clean) = if rebuild {
        match minigcs::fsck::rebuild(&service) {
            Ok(r) if json => (to_json(&r), r.unrecovered.is_empty()),
            Ok(r) => (r.render(), r.unrecovered.is_empty()),
            Err(e) => return failed(&e),
        }
    } else {
        match minigcs::fsck::check(&service) {
            Ok(r) if json => (to_json(&r), r.is_clean()),
            Ok(r) => (r.render(), r.is_clean()),
            Err(e) => return failed(&e),
        }
    };
    service.shutdown();
    if let Err(e) = write_stdout(&text) {
        return failed(&format!("cannot write the output: {e}"));
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn to_json(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("json prints");
    text.push('\n');
    text
}

/// A message on stderr; a closed stderr is not worth a panic.
fn complain(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// Write all of `text` to stdout. A reader that went away ends the process
/// by SIGPIPE, as it ends `ls` or `git`; other errors are returned.
fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => die_of_broken_pipe(),
        other => other,
    }
}

/// Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE
/// instead of ending the process: restore the default action and raise it.
fn die_of_broken_pipe() -> ! {
    use nix::sys::signal::{raise, signal, SigHandler, Signal};
    // SAFETY: installs the default action (no handler code runs); nothing
    // else in this process changes the SIGPIPE disposition concurrently.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = raise(Signal::SIGPIPE);
    // SIGPIPE blocked by the parent: exit with the status a shell would show.
    std::process::exit(128 + libc::SIGPIPE)
}

fn ctl(socket: &Path, json: bool, command: CtlCommand) -> ExitCode {
    let request = match command {
        CtlCommand::Ping => Request::Ping,
        CtlCommand::Stats => Request::Stats,
        CtlCommand::Health => Request::Health,
        CtlCommand::Nodes => Request::Nodes,
        CtlCommand::Recover { node_id } => Request::Recover { node: node_id },
        CtlCommand::Scrub { repair } => Request::Scrub { repair },
        CtlCommand::Metrics => Request::Metrics,
        CtlCommand::Workers => Request::Workers,
        CtlCommand::Snapshot => Request::Snapshot,
        CtlCommand::Info { path_or_key } => {
            // Where the argument would be as a path (it need not exist): the
            // daemon turns a path inside its mount into a key.
            let path = minigcs::realpath::resolve(Path::new(&path_or_key), &[]);
            let path = Some(path.to_string_lossy().into_owned());
            Request::Info {
                key: path_or_key.trim_start_matches("./").to_string(),
                path,
            }
        }
    };
    let bar = progress_bar(json);
    let result = client::call(socket, &request, |p| update_bar(&bar, p));
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let failed = |e: &dyn std::fmt::Display| {
        complain(&format!("minigcs ctl: {e}"));
        ExitCode::from(1)
    };
    let data = match result {
        Ok(data) => data,
        Err(e) => return failed(&e),
    };
    // `health` answers with its exit status too: 0 only when healthy.
    let unhealthy =
        request == Request::Health && data.get("status").and_then(Value::as_str) != Some("healthy");
    let text = if json {
        // Exactly the `data` the daemon sent.
        let mut text = serde_json::to_string_pretty(&data).expect("json prints");
        text.push('\n');
        text
    } else {
        match Reply::decode(&request, data) {
            Ok(reply) => print::render(&reply),
            Err(e) => return failed(&e),
        }
    };
    if let Err(e) = write_stdout(&text) {
        return failed(&format!("cannot write the output: {e}"));
    }
    if unhealthy {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn progress_bar(json: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    Some(indicatif::ProgressBar::new(0))
}

/// The progress line's template and message: a bar while there is a known
/// amount of work, a count when the total is not known (`total` 0 with
/// chunks done, as scrub reports), and a plain "nothing to do" when the
/// operation found none (a bar would show full at 0/0).
fn progress_view(p: &Progress) -> (&'static str, String) {
    match (p.total, p.done) {
        (0, 0) => ("{spinner} {msg}", format!("{}: nothing to do", p.phase)),
        (0, _) => ("{spinner} {msg} {pos} chunks  {prefix}", p.phase.clone()),
        _ => (
            "{spinner} {msg} [{bar:30}] {pos}/{len} chunks  {prefix}",
            p.phase.clone(),
        ),
    }
}

fn update_bar(bar: &Option<indicatif::ProgressBar>, p: &Progress) {
    if let Some(b) = bar {
        let (template, message) = progress_view(p);
        b.set_style(
            indicatif::ProgressStyle::with_template(template)
                .expect("template")
                .progress_chars("=> "),
        );
        b.set_message(message);
        b.set_length(p.total.max(p.done));
        b.set_position(p.done);
        b.set_prefix(print::progress_detail(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument and subcommand under `cmd` explains itself in `--help`.
    fn assert_documented(cmd: &clap::Command, path: &str) {
        for arg in cmd.get_arguments() {
            if ["help", "version"].contains(&arg.get_id().as_str()) {
                continue;
            }
            assert!(
                arg.get_help()
                    .is_some_and(|h| !h.to_string().trim().is_empty()),
                "`{path}`: argument {} has no help text",
                arg.get_id()
            );
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            assert!(
                sub.get_about().is_some(),
                "`{path} {}` has no help text",
                sub.get_name()
            );
            assert_documented(sub, &format!("{path} {}", sub.get_name()));
        }
    }

    #[test]
    fn every_command_and_argument_has_help_text() {
        Cli::command().debug_assert();
        assert_documented(&Cli::command(), "minigcs");
    }

    #[test]
    fn ctl_options_go_before_or_after_the_subcommand() {
        let orders = [
            ["minigcs", "ctl", "-c", "x.yaml", "--json", "health"],
            ["minigcs", "ctl", "health", "-c", "x.yaml", "--json"],
            ["minigcs", "ctl", "--json", "health", "--config", "x.yaml"],
        ];
        for args in orders {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Ctl {
                config,
                json,
                command: CtlCommand::Health,
                ..
            } = cli.command
            else {
                panic!("{args:?} parsed as another command");
            };
            assert_eq!((config.config, json), (PathBuf::from("x.yaml"), true));
        }
    }

    #[test]
    fn progress_with_nothing_to_do_says_so_instead_of_a_full_bar() {
        let mut p = Progress {
            phase: "recover".into(),
            done: 0,
            total: 0,
            bytes: 0,
            rate_bytes_per_sec: 0.0,
            eta_secs: None,
        };
        let (template, message) = progress_view(&p);
        assert!(!template.contains("{bar"), "{template}");
        assert_eq!(message, "recover: nothing to do");
        p.done = 32; // scrub: chunks done, total not known
        let (template, message) = progress_view(&p);
        assert!(
            !template.contains("{bar") && template.contains("{pos}"),
            "{template}"
        );
        assert_eq!(message, "recover");
        p.total = 40;
        let (template, _) = progress_view(&p);
        assert!(template.contains("{bar:30}"), "{template}");
    }

    #[test]
    fn bench_sizes_take_suffixes() {
        let cli =
            Cli::try_parse_from(["minigcs", "bench", "--big-size", "1G", "--small-size", "4k"])
                .unwrap();
        let Command::Bench(args) = cli.command else {
            panic!("not bench");
        };
        assert_eq!((args.big_size, args.small_size), (1 << 30, 4096));
        assert_eq!(args.block_size, 1 << 20, "the default, 1M");
        let e = Cli::try_parse_from(["minigcs", "bench", "--big-size", "1Q"]).err();
        assert!(e.unwrap().to_string().contains("invalid size"));
    }

    #[test]
    fn ctl_help_and_ctl_help_command_print_help() {
        for args in [
            &["minigcs", "ctl", "help"][..],
            &["minigcs", "ctl", "help", "info"],
            &["minigcs", "help", "ctl"],
        ] {
            let e = Cli::try_parse_from(args)
                .err()
                .expect("help is not a command run");
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        }
    }
}
