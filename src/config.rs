//! Loading and validating `config.yaml`. Owns the configuration types, their
//! defaults, the resolution of relative paths against the config file's folder,
//! and the messages that name the offending key. It reads the file once; it
//! never writes node folders or the metadata database (`paths` only looks
//! where configured paths lead, `depth` bounds the YAML nesting before parsing,
//! `keys` tells typos of known keys from keys this version does not use,
//! `size` reads byte sizes such as `4MiB`).

use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
pub use s3::S3Config;
pub use s3_node::{S3Credentials, S3NodeConfig};
pub use segments::SegmentsConfig;

mod depth;
mod keys;
mod paths;
mod s3;
mod s3_node;
mod segments;
pub mod size;

pub const DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
pub struct NodeConfig {
    pub id: String,
    pub region: String,
    /// The node's folder; empty for a node that is a bucket (`s3`).
    #[serde(default)]
    pub storage_path: PathBuf,
    /// `storage_path` as written in the file, before it was resolved
    /// against the config file's folder (`/cluster/stats` shows it).
    #[serde(skip)]
    pub storage_path_as_written: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// A bucket on an S3-compatible store instead of a folder.
    #[serde(default)]
    pub s3: Option<S3NodeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ErasureCodingConfig {
    pub k: i64,
    pub m: i64,
    #[serde(deserialize_with = "size::i64_field")]
    pub chunk_size: i64,
    pub block_size: Option<i64>,
}

impl Default for ErasureCodingConfig {
    fn default() -> Self {
        ErasureCodingConfig {
            k: 2,
            m: 1,
            chunk_size: DEFAULT_CHUNK_SIZE as i64,
            block_size: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ReplicationConfig {
    pub factor: Option<i64>,
    pub regions: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ApiConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    #[serde(deserialize_with = "size::u64_field")]
    pub max_file_size: u64,
    pub auth_token: Option<String>,
    /// Connections served at once; more are answered 503 and closed. The
    /// daemon lowers it to what its descriptor limit allows.
    pub max_connections: usize,
    /// Seconds a connection has to deliver a complete request head (from
    /// opening, or from the first byte of the next request).
    pub header_timeout_secs: u64,
    /// Seconds a connection may sit idle between requests, or stall mid
    /// transfer with no byte moving either way, before it is closed.
    pub idle_timeout_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 8000,
            max_file_size: 104_857_600,
            auth_token: None,
            max_connections: 1024,
            header_timeout_secs: 20,
            idle_timeout_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub output_file: PathBuf,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            output_file: PathBuf::from("metrics.csv"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RecoveryConfig {
    /// Seconds one shard read/write of a recovery may take before it counts as failed.
    pub timeout: u64,
    /// How many times a failing chunk repair is retried before recovery reports it.
    pub retry_attempts: u32,
    /// Rebuild a failed node automatically when its folder comes back empty.
    pub auto: bool,
    pub health_interval_secs: u64,
    /// Background scrub period; 0 turns it off.
    pub scrub_interval_secs: u64,
    /// Upper bound on recovery/scrub bandwidth in bytes per second; 0 = unlimited.
    #[serde(deserialize_with = "size::u64_field")]
    pub rate_limit_bytes_per_sec: u64,
    /// Chunks repaired in parallel.
    pub parallelism: usize,
    /// Milliseconds a node may take to answer a shard read before it counts
    /// as failed for that read (and is marked failed until a probe finds it
    /// answering); writes get twice this, listings fifteen times.
    pub node_timeout_ms: u64,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            timeout: 30,
            retry_attempts: 3,
            auto: true,
            health_interval_secs: 5,
            scrub_interval_secs: 0,
            rate_limit_bytes_per_sec: 0,
            parallelism: 8,
            node_timeout_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MetadataConfig {
    pub path: PathBuf,
    /// Seconds between metadata snapshots to the nodes (taken only when
    /// the database changed); 0 turns periodic snapshots off.
    pub snapshot_interval_secs: u64,
    /// Snapshots each node keeps (the newest ones).
    pub snapshots_kept: usize,
    /// Milliseconds within which changes that needed no sync (create,
    /// rename, chmod …) are written to the metadata journal on the nodes;
    /// durable operations write theirs at once.
    pub journal_flush_ms: u64,
    /// Journal bytes written since the newest snapshot past which a
    /// snapshot is taken (and the journal it covers dropped).
    #[serde(deserialize_with = "size::u64_field")]
    pub journal_max_bytes: u64,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            path: PathBuf::from("./data/metadata.db"),
            snapshot_interval_secs: 300,
            snapshots_kept: 2,
            journal_flush_ms: 1000,
            journal_max_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ControlConfig {
    pub socket: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from("./data/minigcs.sock"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MountConfig {
    /// Let other users use the mount (kernel permission checks apply).
    pub allow_other: bool,
    /// Bytes of dirty write buffers held in memory before writers wait.
    #[serde(deserialize_with = "size::u64_field")]
    pub memory_budget: u64,
    /// FUSE worker threads.
    pub threads: usize,
    /// What `/proc/mounts` shows as the mount's source (the config file or
    /// the folder holding it, as the user named it); set from the command
    /// line, never a config-file key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Kernel mount flags asked for with `-o` (`dev`, `nosuid`, `noexec`,
    /// `noatime`, `sync`, …), as `crate::mount_options` accepted them.
    #[serde(skip)]
    pub kernel_flags: Vec<String>,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            allow_other: true,
            memory_budget: 64 * 1024 * 1024,
            threads: 8,
            source: None,
            kernel_flags: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ClusterConfig {
    pub id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub nodes: Vec<NodeConfig>,
    #[serde(default)]
    pub erasure_coding: ErasureCodingConfig,
    #[serde(default)]
    pub replication: ReplicationConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub s3: S3Config,
    #[serde(default)]
    pub segments: SegmentsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub recovery: RecoveryConfig,
    #[serde(default)]
    pub metadata: MetadataConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub mount: MountConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Warnings found while loading (unknown keys, ignored prototype keys).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The file this was loaded from, if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Start even when the metadata database is new but the node folders
    /// hold shards (`--accept-empty-metadata`; never a config-file key).
    #[serde(skip)]
    pub accept_empty_metadata: bool,
    /// Serve the store read-only (`--read-only`, `-o ro`; never a
    /// config-file key): no upload, delete or change through any front end.
    #[serde(skip)]
    pub read_only: bool,
}

/// Every key the loader understands, as dotted paths; `nodes.*` applies to each node.
const KNOWN_KEYS: &[&str] = &[
    "nodes",
    "nodes.*.id",
    "nodes.*.region",
    "nodes.*.storage_path",
    "nodes.*.host",
    "nodes.*.port",
    "erasure_coding",
    "erasure_coding.k",
    "erasure_coding.m",
    "erasure_coding.chunk_size",
    "erasure_coding.block_size",
    "replication",
    "replication.factor",
    "replication.regions",
    "api",
    "api.enabled",
    "api.host",
    "api.port",
    "api.max_file_size",
    "api.auth_token",
    "api.max_connections",
    "api.header_timeout_secs",
    "api.idle_timeout_secs",
    "metrics",
    "metrics.enabled",
    "metrics.output_file",
    "recovery",
    "recovery.timeout",
    "recovery.retry_attempts",
    "recovery.auto",
    "recovery.health_interval_secs",
    "recovery.scrub_interval_secs",
    "recovery.rate_limit_bytes_per_sec",
    "recovery.parallelism",
    "recovery.node_timeout_ms",
    "metadata",
    "metadata.path",
    "metadata.snapshot_interval_secs",
    "metadata.snapshots_kept",
    "metadata.journal_flush_ms",
    "metadata.journal_max_bytes",
    "control",
    "control.socket",
    "mount",
    "mount.allow_other",
    "mount.memory_budget",
    "mount.threads",
    "cluster",
    "cluster.id",
];

/// The config file `-c PATH` names: PATH itself, or `PATH/config.yaml` when
/// PATH is a folder (as `mount -t fuse.minigcs FOLDER MNT` gives it).
pub fn config_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("config.yaml")
    } else {
        path.to_path_buf()
    }
}

impl Config {
    /// Load, resolve and validate a config file. Errors name the key and reason.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let base = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Config::parse(&text, &base)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parse YAML text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        depth::check(text).map_err(Error::Config)?;
        let value: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| Error::Config(format!("config is not valid YAML: {e}")))?;
        if !value.is_mapping() {
            return Err(Error::Config(
                "config must be a YAML mapping with at least a `nodes` list".into(),
            ));
        }
        let known: Vec<&str> = KNOWN_KEYS
            .iter()
            .chain(s3::S3_KEYS)
            .chain(s3_node::S3_NODE_KEYS)
            .chain(segments::SEGMENTS_KEYS)
            .copied()
            .collect();
        let unknown = keys::unknown_keys(&value, &known);
        let typos: Vec<String> = unknown
            .iter()
            .filter_map(|key| {
                let suggestion = key.suggestion.as_ref()?;
                Some(format!(
                    "unknown key {}: did you mean {suggestion}?",
                    key.path
                ))
            })
            .collect();
        if !typos.is_empty() {
            return Err(Error::Config(typos.join("; ")));
        }
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path.is_empty() || path == "." {
                Error::Config(format!("invalid config: {inner}"))
            } else {
                Error::Config(format!("{path}: {inner}"))
            }
        })?;
        for key in unknown {
            config
                .warnings
                .push(format!("unknown config key `{}` is ignored", key.path));
        }
        if config.erasure_coding.block_size.is_some() {
            config.warnings.push(
                "erasure_coding.block_size is a prototype key and is ignored; use erasure_coding.chunk_size".into(),
            );
        }
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    /// Relative paths resolve against `base`, written without `.`
    /// components or doubled slashes (`/srv/x/data/node-1`, never
    /// `/srv/x/./data/node-1`); `..` is kept, since only the file system
    /// knows where it leads through a symlink.
    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            let joined = match p.is_relative() {
                true => base.join(&*p),
                false => p.clone(),
            };
            *p = without_cur_dir(&joined);
        };
        let is_folder =
            |n: &&mut NodeConfig| n.s3.is_none() && !n.storage_path.as_os_str().is_empty();
        for node in self.nodes.iter_mut().filter(is_folder) {
            node.storage_path_as_written = node.storage_path.display().to_string();
            resolve(&mut node.storage_path);
        }
        resolve(&mut self.metadata.path);
        resolve(&mut self.control.socket);
        resolve(&mut self.metrics.output_file);
    }

    fn validate(&mut self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("{key} {why}")));
        if self.nodes.is_empty() {
            return bad("nodes", "must list at least one node, got none".into());
        }
        if !(1..=100).contains(&self.metadata.snapshots_kept) {
            return bad(
                "metadata.snapshots_kept",
                format!("must be 1-100, got {}", self.metadata.snapshots_kept),
            );
        }
        if !(10..=60_000).contains(&self.metadata.journal_flush_ms) {
            return bad(
                "metadata.journal_flush_ms",
                format!("must be 10-60000, got {}", self.metadata.journal_flush_ms),
            );
        }
        if self.metadata.journal_max_bytes < 1024 * 1024 {
            return bad(
                "metadata.journal_max_bytes",
                format!(
                    "must be at least 1 MiB, got {}",
                    self.metadata.journal_max_bytes
                ),
            );
        }
        let mut ids = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id.is_empty()
                || node.id.len() > 64
                || !node
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return bad(
                    &format!("nodes[{i}].id"),
                    format!(
                        "must be 1-64 characters of [A-Za-z0-9._-], got {:?}",
                        node.id
                    ),
                );
            }
            if !ids.insert(node.id.clone()) {
                return bad(
                    &format!("nodes[{i}].id"),
                    format!("must be unique, {:?} appears twice", node.id),
                );
            }
            if node.region.is_empty() {
                return bad(&format!("nodes[{i}].region"), "must not be empty".into());
            }
            match (&node.s3, node.storage_path.as_os_str().is_empty()) {
                (Some(_), false) => {
                    return bad(
                        &format!("nodes[{i}]"),
                        "has both storage_path and s3: a node is a folder or a bucket".into(),
                    )
                }
                (None, true) => {
                    return bad(
                        &format!("nodes[{i}].storage_path"),
                        "is missing (or give the node an s3 bucket)".into(),
                    )
                }
                (Some(s3), true) => {
                    if let Some((key, why)) = s3.problem() {
                        return bad(&format!("nodes[{i}].s3.{key}"), why);
                    }
                }
                (None, false) => {}
            }
        }
        let buckets: Vec<(usize, &S3NodeConfig)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.s3.as_ref().map(|s3| (i, s3)))
            .collect();
        for (pos, &(i, a)) in buckets.iter().enumerate() {
            if let Some(&(j, _)) = buckets[pos + 1..].iter().find(|(_, b)| a.overlaps(b)) {
                return bad(
                    &format!("nodes[{j}].s3"),
                    format!("stores into the objects of nodes[{i}].s3 (same bucket, a prefix inside the other)"),
                );
            }
        }
        let ec = &self.erasure_coding;
        if ec.k < 1 {
            return bad("erasure_coding.k", format!("must be ≥ 1, got {}", ec.k));
        }
        if ec.m < 0 {
            return bad("erasure_coding.m", format!("must be ≥ 0, got {}", ec.m));
        }
        if ec.k + ec.m > 256 {
            return bad(
                "erasure_coding",
                format!("k+m must be ≤ 256, got {}", ec.k + ec.m),
            );
        }
        if (ec.k + ec.m) as usize > self.nodes.len() {
            return bad(
                "erasure_coding",
                format!(
                    "k+m = {} needs at least that many nodes, the config lists {}",
                    ec.k + ec.m,
                    self.nodes.len()
                ),
            );
        }
        if ec.chunk_size < 1 || ec.chunk_size > 256 * 1024 * 1024 {
            return bad(
                "erasure_coding.chunk_size",
                format!(
                    "must be between 1 and 268435456 bytes, got {}",
                    ec.chunk_size
                ),
            );
        }
        if let Some(regions) = &self.replication.regions {
            for (i, node) in self.nodes.iter().enumerate() {
                if !regions.contains(&node.region) {
                    return bad(
                        &format!("nodes[{i}].region"),
                        format!(
                            "{:?} is not listed in replication.regions {:?}",
                            node.region, regions
                        ),
                    );
                }
            }
        }
        let region_count = self.regions().len();
        if let Some(factor) = self.replication.factor {
            if factor < 1 {
                return bad("replication.factor", format!("must be ≥ 1, got {factor}"));
            }
            if factor as usize > region_count {
                self.warnings.push(format!(
                    "replication.factor is {factor} but only {region_count} regions hold nodes"
                ));
            }
        }
        if self.api.host.is_empty() {
            return bad("api.host", "must not be empty".into());
        }
        if let Some((key, why)) = self.s3.problem() {
            return bad(key, why);
        }
        if let Some((key, why)) = self.segments.problem() {
            return bad(key, why);
        }
        if self.api.max_file_size == 0 {
            return bad("api.max_file_size", "must be > 0".into());
        }
        if !(1..=1_000_000).contains(&self.api.max_connections) {
            return bad(
                "api.max_connections",
                format!("must be 1..=1000000, got {}", self.api.max_connections),
            );
        }
        for (key, secs) in [
            ("api.header_timeout_secs", self.api.header_timeout_secs),
            ("api.idle_timeout_secs", self.api.idle_timeout_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                return bad(key, format!("must be 1..=86400 seconds, got {secs}"));
            }
        }
        if self.mount.memory_budget < self.chunk_size() * 2 {
            return bad(
                "mount.memory_budget",
                format!(
                    "must be at least two chunks ({} bytes), got {}",
                    self.chunk_size() * 2,
                    self.mount.memory_budget
                ),
            );
        }
        if self.mount.threads == 0 || self.mount.threads > 256 {
            return bad(
                "mount.threads",
                format!("must be 1..=256, got {}", self.mount.threads),
            );
        }
        if self.recovery.parallelism == 0 {
            return bad("recovery.parallelism", "must be ≥ 1, got 0".into());
        }
        if self.recovery.timeout == 0 {
            return bad("recovery.timeout", "must be ≥ 1 second, got 0".into());
        }
        if self.recovery.node_timeout_ms == 0 {
            return bad("recovery.node_timeout_ms", "must be ≥ 1, got 0".into());
        }
        if self.recovery.health_interval_secs == 0 {
            return bad("recovery.health_interval_secs", "must be ≥ 1, got 0".into());
        }
        let problems = paths::layout_problems(self);
        if !problems.is_empty() {
            return Err(Error::Config(problems.join("; ")));
        }
        // Losing the region with most shards must not lose more than m shards.
        let per_region = self.max_shards_per_region();
        if per_region > ec.m as usize {
            self.warnings.push(format!(
                "losing one region can lose {per_region} shards of a chunk but m = {}: a region outage makes data unreadable",
                ec.m
            ));
        }
        Ok(())
    }

    /// Refuse a mount point that holds a node folder, the metadata, the
    /// control socket or the metrics file, or lies inside a node folder.
    /// `mount_point` may not exist yet or be a stale mount; it is not touched.
    pub fn check_mount_point(&self, mount_point: &Path) -> Result<()> {
        let problems = paths::mount_point_problems(self, mount_point);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("; ")))
        }
    }

    pub fn k(&self) -> usize {
        self.erasure_coding.k as usize
    }

    /// `recovery.node_timeout_ms`: one unit of every node operation's deadline.
    pub fn node_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.recovery.node_timeout_ms)
    }

    pub fn m(&self) -> usize {
        self.erasure_coding.m as usize
    }

    pub fn chunk_size(&self) -> u64 {
        self.erasure_coding.chunk_size as u64
    }

    /// Region names in first-appearance order.
    pub fn regions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in &self.nodes {
            if !out.contains(&n.region) {
                out.push(n.region.clone());
            }
        }
        out
    }

    /// Shards of one chunk a single region holds at most under even placement.
    pub fn max_shards_per_region(&self) -> usize {
        let total = self.k() + self.m();
        let regions = self.regions();
        let mut counts: Vec<usize> = regions
            .iter()
            .map(|r| self.nodes.iter().filter(|n| &n.region == r).count())
            .collect();
        // Fill round-robin, as placement does.
        let mut placed = vec![0usize; counts.len()];
        let mut left = total;
        while left > 0 {
            let mut progressed = false;
            for (i, c) in counts.iter_mut().enumerate() {
                if left > 0 && *c > 0 {
                    *c -= 1;
                    placed[i] += 1;
                    left -= 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        placed.into_iter().max().unwrap_or(0)
    }

    /// A config for tests and tools: nodes under `root`, given regions per node.
    pub fn for_test(root: &Path, regions: &[&str], k: usize, m: usize, chunk_size: u64) -> Config {
        let mut yaml = String::from("nodes:\n");
        for (i, r) in regions.iter().enumerate() {
            yaml.push_str(&format!(
                "  - id: node-{}\n    region: {r}\n    storage_path: nodes/node-{}\n",
                i + 1,
                i + 1
            ));
        }
        yaml.push_str(&format!(
            "erasure_coding:\n  k: {k}\n  m: {m}\n  chunk_size: {chunk_size}\nmetadata:\n  path: meta.db\ncontrol:\n  socket: ctl.sock\nmetrics:\n  enabled: false\nmount:\n  memory_budget: {}\n",
            (chunk_size * 8).max(16 * 1024 * 1024)
        ));
        Config::parse(&yaml, root).expect("test config is valid")
    }
}

/// `path` with its `.` components dropped (`a/./b` → `a/b`, `./a` → `a`);
/// `Path::components` already folds repeated slashes.
fn without_cur_dir(path: &Path) -> PathBuf {
    let clean: PathBuf = path
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    match clean.as_os_str().is_empty() {
        true => PathBuf::from("."),
        false => clean,
    }
}

#[cfg(test)]
mod tests;
