//! `minigcs bench`: a benchmark of a mounted directory with ordinary file
//! I/O: big-file sequential write (ending with fsync) and cold read, small
//! files written and read, stat and readdir rates. It works on any directory,
//! so the same figures can be taken on a raw folder or a passthrough mount
//! for comparison (scripts/bench.sh does that).

use serde::Serialize;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::size;
use crate::error::{Error, Result};
use crate::test_data::seeded_bytes;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Directory to benchmark (default: the current directory)
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Size of the big-file test, split over --threads files (a byte
    /// count, or with a K, M, G or T suffix: powers of 1024)
    #[arg(long, default_value = "1G", value_parser = size::parse_arg)]
    pub big_size: u64,
    /// Parallel big-file writers/readers
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// I/O block size for big files (e.g. 1M, 64K)
    #[arg(long, default_value = "1M", value_parser = size::parse_arg_usize)]
    pub block_size: usize,
    /// Number of small files
    #[arg(long, default_value_t = 10_000)]
    pub small_count: usize,
    /// Size of each small file (e.g. 4096, 4K)
    #[arg(long, default_value = "4K", value_parser = size::parse_arg_usize)]
    pub small_size: usize,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
    /// Do not try to drop the page cache before reads
    #[arg(long)]
    pub no_drop_caches: bool,
    /// Keep the files written
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub ms_per_op: f64,
    pub seconds: f64,
}

fn drop_caches(enabled: bool) -> bool {
    if !enabled {
        return false;
    }
    nix::unistd::sync();
    fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn bar(len: u64, what: &str, quiet: bool) -> indicatif::ProgressBar {
    // Nothing to do shows no bar (it would be full at 0/0).
    if quiet || len == 0 {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg:>18} [{bar:30}] {percent:>3}% {elapsed}")
            .expect("template")
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// Run the benchmark and print the table (or JSON).
pub fn run(args: &BenchArgs) -> Result<()> {
    let results = measure(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results).expect("json"));
    } else {
        println!(
            "{:<28} {:>12} {:<8} {:>10}",
            "BENCHMARK", "VALUE", "UNIT", "MS/OP"
        );
        for r in &results {
            println!(
                "{:<28} {:>12.1} {:<8} {:>10.3}",
                r.name, r.value, r.unit, r.ms_per_op
            );
        }
    }
    Ok(())
}

pub fn measure(args: &BenchArgs) -> Result<Vec<BenchResult>> {
    if args.threads == 0 || args.block_size == 0 {
        return Err(Error::InvalidArgument(
            "--threads and --block-size must be > 0".into(),
        ));
    }
    let root = args
        .path
        .join(format!(".minigcs-bench-{}", std::process::id()));
    fs::create_dir_all(&root)?;
    let quiet = args.json;
    let result = (|| {
        let mut out = Vec::new();
        out.extend(big_files(args, &root, quiet)?);
        out.extend(small_files(args, &root, quiet)?);
        Ok(out)
    })();
    if !args.keep {
        let _ = fs::remove_dir_all(&root);
    }
    result
}

/// Run `work(t)` for t in 0..threads, each on its own thread, and wait for
/// all of them; the first error (or a panic of a `role` thread) is returned.
fn on_threads(threads: usize, role: &str, work: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    std::thread::scope(|s| {
        let work = &work;
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || work(t))).collect();
        for h in handles {
            h.join()
                .map_err(|_| Error::Other(format!("{role} panicked")))??;
        }
        Ok(())
    })
}

fn big_files(args: &BenchArgs, root: &Path, quiet: bool) -> Result<Vec<BenchResult>> {
    let per_file = args.big_size / args.threads as u64;
    let block = seeded_bytes(7, args.block_size);
    let mib = (per_file * args.threads as u64) as f64 / (1024.0 * 1024.0);
    let b = bar(per_file * args.threads as u64, "big write", quiet);
    let start = Instant::now();
    on_threads(args.threads, "writer", |t| {
        let mut f = File::create(root.join(format!("big-{t}")))?;
        let mut left = per_file;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
            b.inc(n as u64);
        }
        f.sync_all()?;
        Ok(())
    })?;
    let write_secs = start.elapsed().as_secs_f64();
    b.finish_and_clear();
    let cold = drop_caches(!args.no_drop_caches);
    let b = bar(per_file * args.threads as u64, "big read", quiet);
    let start = Instant::now();
    on_threads(args.threads, "reader", |t| {
        let mut f = File::open(root.join(format!("big-{t}")))?;
        let mut buf = vec![0u8; args.block_size];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            b.inc(n as u64);
        }
    })?;
    let read_secs = start.elapsed().as_secs_f64();
    b.finish_and_clear();
    for t in 0..args.threads {
        let _ = fs::remove_file(root.join(format!("big-{t}")));
    }
    let blocks = (per_file * args.threads as u64)
        .div_ceil(args.block_size as u64)
        .max(1) as f64;
    Ok(vec![
        BenchResult {
            name: "big write (+fsync)".into(),
            value: mib / write_secs,
            unit: "MiB/s".into(),
            ms_per_op: write_secs * 1000.0 / blocks,
            seconds: write_secs,
        },
        BenchResult {
            name: if cold {
                "big read (cold)".into()
            } else {
                "big read (cache not dropped)".into()
            },
            value: mib / read_secs,
            unit: "MiB/s".into(),
            ms_per_op: read_secs * 1000.0 / blocks,
            seconds: read_secs,
        },
    ])
}

fn small_files(args: &BenchArgs, root: &Path, quiet: bool) -> Result<Vec<BenchResult>> {
    let dir = root.join("small");
    fs::create_dir_all(&dir)?;
    let content = seeded_bytes(11, args.small_size);
    let n = args.small_count;
    let rate = |name: &str, secs: f64, unit: &str| BenchResult {
        name: name.into(),
        value: n as f64 / secs,
        unit: unit.into(),
        ms_per_op: secs * 1000.0 / n.max(1) as f64,
        seconds: secs,
    };
    let mut out = Vec::new();
    let b = bar(n as u64, "small write", quiet);
    let start = Instant::now();
    for i in 0..n {
        let mut f = File::create(dir.join(format!("f{i:06}")))?;
        f.write_all(&content)?;
        drop(f);
        b.inc(1);
    }
    out.push(rate(
        "small write (create+close)",
        start.elapsed().as_secs_f64(),
        "files/s",
    ));
    b.finish_and_clear();
    drop_caches(!args.no_drop_caches);
    let b = bar(n as u64, "small read", quiet);
    let start = Instant::now();
    let mut buf = Vec::with_capacity(args.small_size);
    for i in 0..n {
        buf.clear();
        File::open(dir.join(format!("f{i:06}")))?.read_to_end(&mut buf)?;
        if buf.len() != args.small_size {
            return Err(Error::Other(format!(
                "f{i:06} read back {} bytes, wrote {}",
                buf.len(),
                args.small_size
            )));
        }
        b.inc(1);
    }
    out.push(rate("small read", start.elapsed().as_secs_f64(), "files/s"));
    b.finish_and_clear();
    let start = Instant::now();
    for i in 0..n {
        fs::metadata(dir.join(format!("f{i:06}")))?;
    }
    out.push(rate("stat", start.elapsed().as_secs_f64(), "ops/s"));
    let start = Instant::now();
    let mut listed = 0usize;
    let rounds = 10;
    for _ in 0..rounds {
        listed += fs::read_dir(&dir)?.count();
    }
    let secs = start.elapsed().as_secs_f64();
    out.push(BenchResult {
        name: "readdir".into(),
        value: listed as f64 / secs,
        unit: "entries/s".into(),
        ms_per_op: secs * 1000.0 / rounds as f64,
        seconds: secs,
    });
    let start = Instant::now();
    for i in 0..n {
        fs::remove_file(dir.join(format!("f{i:06}")))?;
    }
    out.push(rate("unlink", start.elapsed().as_secs_f64(), "ops/s"));
    Ok(out)
}
