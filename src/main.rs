//! The `minigcs` command line: parses arguments (clap), loads the config, and
//! dispatches to the daemon, the control client or the benchmark. The only
//! place that prints for humans (`ctl` tables are rendered from the typed
//! reports by `minigcs::control::print`).

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use minigcs::config::Config;
use minigcs::control::{client, print, Reply, Request};
use minigcs::error::Error;
use minigcs::report::Progress;

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
    /// Config file (default: $MINIGCS_CONFIG, else ./config.yaml)
    #[arg(short, long, env = "MINIGCS_CONFIG", default_value = "config.yaml")]
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
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print the reply's JSON `data` object instead of a table
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: CtlCommand,
    },
    /// Benchmark a mounted directory (default: the current directory)
    Bench(minigcs::bench::BenchArgs),
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Objects, bytes, shards per node and region, erasure-coding parameters
    Stats,
    /// Cluster health: node states and chunks missing shards
    Health,
    /// Node list: id, region, path, state, shards, bytes, free space
    Nodes,
    /// Rebuild every shard that belongs on NODE_ID (re-creating its folder if missing or empty)
    Recover { node_id: String },
    /// Verify every shard's checksums (parity too)
    Scrub {
        /// Rebuild the shards found bad
        #[arg(long)]
        repair: bool,
    },
    /// Operation and recovery metrics (same as GET /metrics/summary)
    Metrics,
    /// One object's metadata and where each shard of each chunk lives
    Info {
        /// A path inside the mount or an object key
        path_or_key: String,
    },
    /// Background workers: state, what each is doing, queue, items done, last error
    Workers,
}

fn init_logging(default: &str) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .init();
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    match Config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                log::warn!("{}: {w}", path.display());
            }
            Ok(c)
        }
        Err(e) => {
            eprintln!("minigcs: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mount {
            mountpoint,
            config,
            daemon,
        } => run_daemon(&config, &daemon, Some(&mountpoint)),
        Command::Serve { config, daemon } => run_daemon(&config, &daemon, None),
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
        Command::Bench(args) => {
            init_logging("warn");
            match minigcs::bench::run(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("minigcs bench: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run_daemon(config: &ConfigArg, daemon: &DaemonArgs, mountpoint: Option<&Path>) -> ExitCode {
    init_logging("info");
    let mut config = match load_config(&config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    config.accept_empty_metadata = daemon.accept_empty_metadata;
    daemon_exit(minigcs::daemon::run(config, mountpoint))
}

fn daemon_exit(r: Result<(), Error>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Config(e)) => {
            eprintln!("minigcs: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("minigcs: {e}");
            ExitCode::from(1)
        }
    }
}

fn ctl(socket: &Path, json: bool, command: CtlCommand) -> ExitCode {
    let request = match command {
        CtlCommand::Stats => Request::Stats,
        CtlCommand::Health => Request::Health,
        CtlCommand::Nodes => Request::Nodes,
        CtlCommand::Recover { node_id } => Request::Recover { node: node_id },
        CtlCommand::Scrub { repair } => Request::Scrub { repair },
        CtlCommand::Metrics => Request::Metrics,
        CtlCommand::Workers => Request::Workers,
        CtlCommand::Info { path_or_key } => {
            let path = std::fs::canonicalize(&path_or_key)
                .ok()
                .map(|p| p.to_string_lossy().into_owned());
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
    let printed = result.and_then(|data| {
        if json {
            // Exactly the `data` the daemon sent.
            println!(
                "{}",
                serde_json::to_string_pretty(&data).expect("json prints")
            );
        } else {
            print!("{}", print::render(&Reply::decode(&request, data)?));
        }
        Ok(())
    });
    match printed {
        // `health` exits 0 whatever the state: the state is the answer.
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minigcs ctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn progress_bar(json: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} chunks  {prefix}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    Some(bar)
}

fn update_bar(bar: &Option<indicatif::ProgressBar>, p: &Progress) {
    if let Some(b) = bar {
        b.set_message(p.phase.clone());
        b.set_length(p.total.max(p.done));
        b.set_position(p.done);
        b.set_prefix(print::progress_detail(p));
    }
}
