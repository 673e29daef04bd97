//! The `minigcs` command line: parses arguments (clap), loads the config, and
//! dispatches to the daemon, the control client or the benchmark. The only
//! place that prints for humans.

use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use minigcs::config::Config;
use minigcs::control::{client, Request};
use minigcs::error::Error;

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

#[derive(Subcommand)]
enum Command {
    /// Mount the store at MOUNTPOINT and serve the HTTP API and control socket (foreground)
    Mount {
        /// Where to mount (created if missing; a stale mount there is cleared)
        mountpoint: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Serve the HTTP API and control socket without a mount (foreground)
    Serve {
        #[command(flatten)]
        config: ConfigArg,
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
        Command::Mount { mountpoint, config } => {
            init_logging("info");
            let config = match load_config(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            daemon_exit(minigcs::daemon::run(config, Some(&mountpoint)))
        }
        Command::Serve { config } => {
            init_logging("info");
            let config = match load_config(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            daemon_exit(minigcs::daemon::run(config, None))
        }
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
    let request = match &command {
        CtlCommand::Stats => Request::Stats,
        CtlCommand::Health => Request::Health,
        CtlCommand::Nodes => Request::Nodes,
        CtlCommand::Recover { node_id } => Request::Recover {
            node: node_id.clone(),
        },
        CtlCommand::Scrub { repair } => Request::Scrub { repair: *repair },
        CtlCommand::Metrics => Request::Metrics,
        CtlCommand::Info { path_or_key } => {
            let path = std::fs::canonicalize(path_or_key)
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
    match result {
        Ok(data) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&data).expect("json prints")
                );
            } else {
                print_human(&command, &data);
            }
            // `health` exits 0 whatever the state: the state is the answer.
            ExitCode::SUCCESS
        }
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

fn update_bar(bar: &Option<indicatif::ProgressBar>, p: &Value) {
    let done = p["done"].as_u64().unwrap_or(0);
    let total = p["total"].as_u64().unwrap_or(0);
    let bytes = p["bytes"].as_u64().unwrap_or(0);
    let rate = p["rate_bytes_per_sec"].as_f64().unwrap_or(0.0);
    let eta = p["eta_secs"]
        .as_f64()
        .map(|s| format!("ETA {s:.0}s"))
        .unwrap_or_default();
    let info = format!(
        "{}  {}/s  {eta}",
        human_bytes(bytes),
        human_bytes(rate as u64)
    );
    if let Some(b) = bar {
        b.set_message(p["phase"].as_str().unwrap_or("").to_string());
        b.set_length(total.max(done));
        b.set_position(done);
        b.set_prefix(info);
    }
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn print_human(command: &CtlCommand, d: &Value) {
    match command {
        CtlCommand::Health => {
            println!("status: {}  ({})", s(&d["status"]), s(&d["message"]));
            println!(
                "chunks missing shards: {}   shards to repair: {}",
                d["chunks_missing_shards"], d["repair_queue"]
            );
            let rows: Vec<Vec<String>> = d["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    vec![
                        s(&n["id"]),
                        s(&n["region"]),
                        s(&n["state"]),
                        s(&n["reason"]),
                    ]
                })
                .collect();
            table(&["NODE", "REGION", "STATE", "REASON"], &rows);
        }
        CtlCommand::Stats => {
            println!(
                "objects: {}   bytes: {} ({})   k={} m={} chunk_size={}",
                d["total_objects"],
                d["total_size"],
                human_bytes(d["total_size"].as_u64().unwrap_or(0)),
                d["k"],
                d["m"],
                human_bytes(d["chunk_size"].as_u64().unwrap_or(0))
            );
            let rows: Vec<Vec<String>> = d["node_stats"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, n)| {
                    vec![
                        id.clone(),
                        s(&n["region"]),
                        s(&n["state"]),
                        s(&n["shards"]),
                        human_bytes(n["bytes"].as_u64().unwrap_or(0)),
                        human_bytes(n["free_bytes"].as_u64().unwrap_or(0)),
                    ]
                })
                .collect();
            table(
                &["NODE", "REGION", "STATE", "SHARDS", "BYTES", "FREE"],
                &rows,
            );
            let rows: Vec<Vec<String>> = d["region_stats"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(r, v)| {
                    vec![
                        r.clone(),
                        s(&v["shards"]),
                        human_bytes(v["bytes"].as_u64().unwrap_or(0)),
                    ]
                })
                .collect();
            println!();
            table(&["REGION", "SHARDS", "BYTES"], &rows);
        }
        CtlCommand::Nodes => {
            let rows: Vec<Vec<String>> = d["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    vec![
                        s(&n["id"]),
                        s(&n["region"]),
                        s(&n["path"]),
                        s(&n["state"]),
                        s(&n["shards"]),
                        human_bytes(n["bytes"].as_u64().unwrap_or(0)),
                        human_bytes(n["free_bytes"].as_u64().unwrap_or(0)),
                    ]
                })
                .collect();
            table(
                &["NODE", "REGION", "PATH", "STATE", "SHARDS", "BYTES", "FREE"],
                &rows,
            );
        }
        CtlCommand::Recover { .. } => {
            println!("{}", s(&d["message"]));
            println!(
                "chunks: {} ({} failed)   shards rebuilt: {}   bytes rebuilt: {}   rate: {:.1} MB/s",
                d["chunks_total"],
                d["chunks_failed"],
                d["shards_rebuilt"],
                human_bytes(d["bytes_rebuilt"].as_u64().unwrap_or(0)),
                d["rebuild_rate_mb_per_sec"].as_f64().unwrap_or(0.0)
            );
            println!(
                "MTTR: {:.1} ms (detect→start {:.1} ms, start→done {:.1} ms)",
                d["mttr_ms"].as_f64().unwrap_or(0.0),
                d["detect_to_start_ms"].as_f64().unwrap_or(0.0),
                d["start_to_done_ms"].as_f64().unwrap_or(0.0)
            );
        }
        CtlCommand::Scrub { .. } => {
            println!(
                "chunks: {}   shards checked: {}   bytes verified: {}   corrupt: {}   missing: {}   repaired: {}",
                d["chunks_checked"],
                d["shards_checked"],
                human_bytes(d["bytes_checked"].as_u64().unwrap_or(0)),
                d["corrupt"],
                d["missing"],
                d["repaired"]
            );
            let rows: Vec<Vec<String>> = d["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    vec![
                        s(&p["chunk_id"]),
                        s(&p["shard_index"]),
                        s(&p["node"]),
                        s(&p["problem"]),
                        s(&p["repaired"]),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                table(&["CHUNK", "SHARD", "NODE", "PROBLEM", "REPAIRED"], &rows);
            }
        }
        CtlCommand::Metrics => {
            println!(
                "operations: {}   success rate: {:.3}   data: {:.1} MB   recoveries: {}   degraded reads: {}",
                d["total_operations"],
                d["overall_success_rate"].as_f64().unwrap_or(0.0),
                d["total_data_processed_mb"].as_f64().unwrap_or(0.0),
                d["total_recoveries"],
                d["degraded_reads"]
            );
            let rows: Vec<Vec<String>> = d["operation_summary"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(op, v)| {
                    let f = |k: &str| format!("{:.2}", v[k].as_f64().unwrap_or(0.0));
                    vec![
                        op.clone(),
                        s(&v["count"]),
                        f("success_rate"),
                        f("avg_duration_ms"),
                        f("p50_ms"),
                        f("p99_ms"),
                        f("max_duration_ms"),
                        f("avg_throughput_mbps"),
                    ]
                })
                .collect();
            table(
                &[
                    "OPERATION",
                    "COUNT",
                    "SUCCESS",
                    "AVG_MS",
                    "P50_MS",
                    "P99_MS",
                    "MAX_MS",
                    "MB/S",
                ],
                &rows,
            );
            let r = &d["recovery_summary"];
            if r["count"].as_u64().unwrap_or(0) > 0 {
                println!(
                    "recovery MTTR: avg {:.1} ms, min {:.1} ms, max {:.1} ms",
                    r["avg_mttr_ms"].as_f64().unwrap_or(0.0),
                    r["min_mttr_ms"].as_f64().unwrap_or(0.0),
                    r["max_mttr_ms"].as_f64().unwrap_or(0.0)
                );
            }
        }
        CtlCommand::Info { .. } => {
            println!("key:          {}", s(&d["key"]));
            println!(
                "size:         {} ({})",
                d["size"],
                human_bytes(d["size"].as_u64().unwrap_or(0))
            );
            println!("content type: {}", s(&d["content_type"]));
            println!("version:      {}", d["version"]);
            println!("sha256:       {}", s(&d["checksum"]));
            println!("created:      {}", s(&d["created_at"]));
            println!("updated:      {}", s(&d["updated_at"]));
            println!("healthy:      {}", d["healthy"]);
            let mut rows = Vec::new();
            for c in d["chunks"].as_array().into_iter().flatten() {
                for sh in c["shards"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        s(&c["index"]),
                        s(&c["chunk_id"]),
                        s(&sh["index"]),
                        s(&sh["node"]),
                        s(&sh["region"]),
                        s(&sh["state"]),
                    ]);
                }
            }
            if !rows.is_empty() {
                println!();
                table(&["CHUNK", "ID", "SHARD", "NODE", "REGION", "STATE"], &rows);
            }
        }
    }
}
