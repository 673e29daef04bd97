//! `minigcs fsck`: the offline check of a store (no daemon running on it;
//! the store's locks are taken as a daemon takes them, so a running daemon
//! makes it refuse) and, with `--rebuild`, the last-resort recovery of file
//! contents from shard headers alone (`rebuild`). The check reads every
//! shard the metadata references and verifies it (missing, corrupt), counts
//! the chunks left with fewer than k good shards (lost), and lists the shard
//! files no metadata references (orphans). Owns the two reports and their
//! text rendering; the store work goes through the service.

mod rebuild;

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::service::Service;
pub use rebuild::{rebuild, RebuildReport};

/// A shard the metadata references that is not there or not right.
#[derive(Debug, Clone, Serialize)]
pub struct ShardProblem {
    pub chunk_id: String,
    pub shard_index: usize,
    pub node: Option<String>,
    pub problem: String,
}

/// A chunk with fewer than k good shards: its bytes are gone.
#[derive(Debug, Clone, Serialize)]
pub struct LostChunk {
    pub chunk_id: String,
    /// The file it belongs to (None: superseded, waiting for collection).
    pub inode: Option<u64>,
    pub index_in_file: u64,
    pub good_shards: usize,
    pub needed: usize,
}

/// The outcome of `minigcs fsck`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    pub chunks_checked: u64,
    pub shards_checked: u64,
    pub missing: u64,
    pub corrupt: u64,
    pub lost_chunks: Vec<LostChunk>,
    /// Shard files no metadata references, per node id.
    pub orphans: BTreeMap<String, u64>,
    /// Nodes that could not be listed.
    pub unlisted_nodes: Vec<String>,
    pub problems: Vec<ShardProblem>,
}

impl FsckReport {
    pub fn orphan_count(&self) -> u64 {
        self.orphans.values().sum()
    }

    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.corrupt == 0
            && self.lost_chunks.is_empty()
            && self.orphan_count() == 0
            && self.unlisted_nodes.is_empty()
    }

    /// A summary table, then the problems one a line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows = [
            ("chunks checked", self.chunks_checked.to_string()),
            ("shards checked", self.shards_checked.to_string()),
            ("missing shards", self.missing.to_string()),
            ("corrupt shards", self.corrupt.to_string()),
            (
                "lost chunks (< k good shards)",
                self.lost_chunks.len().to_string(),
            ),
            ("orphan shard files", self.orphan_count().to_string()),
            ("nodes not listed", self.unlisted_nodes.len().to_string()),
        ];
        for (what, n) in rows {
            let _ = writeln!(out, "{what:<32}{n:>10}");
        }
        for p in &self.problems {
            let _ = writeln!(
                out,
                "shard {} of chunk {} on {}: {}",
                p.shard_index,
                p.chunk_id,
                p.node.as_deref().unwrap_or("(no node)"),
                p.problem
            );
        }
        for c in &self.lost_chunks {
            let owner = match c.inode {
                Some(ino) => format!("inode {ino}"),
                None => "a superseded version".into(),
            };
            let _ = writeln!(
                out,
                "LOST chunk {} (index {} of {owner}): {} good shard(s), {} needed",
                c.chunk_id, c.index_in_file, c.good_shards, c.needed
            );
        }
        for (node, n) in &self.orphans {
            let _ = writeln!(out, "node {node}: {n} orphan shard file(s)");
        }
        for node in &self.unlisted_nodes {
            let _ = writeln!(out, "node {node}: its shard files could not be listed");
        }
        let _ = writeln!(
            out,
            "{}",
            if self.is_clean() {
                "clean"
            } else {
                "problems found"
            }
        );
        out
    }
}

/// Open the store for fsck: the metadata must exist (a check of a store
/// without metadata would check nothing: that is `--rebuild`'s job).
/// Takes the store's locks; a running daemon makes this fail.
pub fn open_store(mut config: Config, rebuilding: bool) -> Result<Arc<Service>> {
    if !rebuilding && !config.metadata.path.exists() {
        return Err(Error::Other(format!(
            "no metadata database at {}: nothing to check against. To recover file contents from the shards alone, run `minigcs fsck --rebuild`",
            config.metadata.path.display()
        )));
    }
    // `fsck --rebuild` is the sanctioned way to start a new database over
    // node folders that hold shards: it never deletes them.
    config.accept_empty_metadata = rebuilding;
    Service::open(Arc::new(config), Metrics::new(None))
}

/// Check the metadata against the nodes.
pub fn check(service: &Service) -> Result<FsckReport> {
    let ctx = service.context();
    let scrub = service.scrub(false, &|_| {})?;
    let mut report = FsckReport {
        chunks_checked: scrub.chunks_checked,
        shards_checked: scrub.shards_checked,
        missing: scrub.missing,
        corrupt: scrub.corrupt,
        ..Default::default()
    };
    let mut bad_per_chunk: BTreeMap<String, usize> = BTreeMap::new();
    for p in &scrub.problems {
        *bad_per_chunk.entry(p.chunk_id.clone()).or_default() += 1;
        report.problems.push(ShardProblem {
            chunk_id: p.chunk_id.clone(),
            shard_index: p.shard_index,
            node: p.node.clone(),
            problem: p.problem.to_string(),
        });
    }
    for (chunk_id, bad) in bad_per_chunk {
        let id = u64::from_str_radix(&chunk_id, 16).unwrap_or(0);
        let Some((inode, rec)) = ctx.meta.chunk_by_id(id)? else {
            continue;
        };
        let good = rec.layout.shard_count().saturating_sub(bad);
        if good < rec.layout.k as usize {
            report.lost_chunks.push(LostChunk {
                chunk_id,
                inode,
                index_in_file: rec.idx,
                good_shards: good,
                needed: rec.layout.k as usize,
            });
        }
    }
    let store = service.chunk_store();
    for (i, node) in store.nodes().iter().enumerate() {
        let known = ctx.meta.shard_keys_on_node(i)?;
        match node.list_shards() {
            Ok(files) => {
                let orphans = files
                    .iter()
                    .filter(|(key, _)| !known.contains(&(key.chunk_id, key.index)))
                    .count() as u64;
                if orphans > 0 {
                    report.orphans.insert(node.id().to_string(), orphans);
                }
            }
            Err(e) => {
                log::warn!("cannot list the shards of node {}: {e}", node.id());
                report.unlisted_nodes.push(node.id().to_string());
            }
        }
    }
    Ok(report)
}
