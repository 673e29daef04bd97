//! Reports about one object: `ctl info` and `GET /objects/{key}/info`
//! (`InfoReport`), and the `user.minigcs.placement` extended attribute
//! (`PlacementReport`). Both list every chunk with where each of its shards
//! lives and whether it is healthy.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::ShardState;

/// The state of one shard as `info` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ShardStatus {
    Ok,
    Missing,
    Corrupt,
    /// Recorded good, but its node is down.
    NodeDown,
}

impl ShardStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ShardStatus::Ok => "ok",
            ShardStatus::Missing => "missing",
            ShardStatus::Corrupt => "corrupt",
            ShardStatus::NodeDown => "node-down",
        }
    }
}

impl From<ShardState> for ShardStatus {
    fn from(state: ShardState) -> ShardStatus {
        match state {
            ShardState::Ok => ShardStatus::Ok,
            ShardState::Missing => ShardStatus::Missing,
            ShardState::Corrupt => ShardStatus::Corrupt,
        }
    }
}

/// One shard's placement and health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardInfo {
    /// Shard index: below k a data shard, from k on parity.
    pub index: usize,
    /// The node holding it; `null` when it has none.
    pub node: Option<String>,
    pub region: Option<String>,
    pub state: ShardStatus,
    /// Recorded good and on a node that is up.
    pub healthy: bool,
}

/// One chunk of a file and its shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChunkInfo {
    /// Position of the chunk in the file (0, 1, …).
    pub index: u64,
    /// 16 hex digits, as in shard file names.
    pub chunk_id: String,
    /// File bytes in this chunk.
    pub len: u64,
    pub k: u16,
    pub m: u16,
    pub shards: Vec<ShardInfo>,
}

/// `ctl info` and `GET /objects/{key}/info`: the prototype's keys (`key`,
/// `size`, `content_type`, `created_at`, `updated_at`, `version`,
/// `checksum`) plus the inode's kind and mode, and the chunk placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InfoReport {
    pub key: String,
    pub size: u64,
    /// As stored, else guessed from the name.
    pub content_type: String,
    /// ISO-8601 UTC with microseconds.
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
    /// SHA-256 of the content, hex; `null` for what is not a file.
    pub checksum: Option<String>,
    /// `file`, `dir`, `symlink`, …
    pub kind: String,
    /// Permission bits in octal, e.g. `644`.
    pub mode: String,
    pub nlink: u32,
    pub chunk_size: u64,
    pub chunks: Vec<ChunkInfo>,
    /// Every shard of every chunk is healthy.
    pub healthy: bool,
}

impl InfoReport {
    /// True when every shard of every chunk is healthy.
    pub fn all_healthy(chunks: &[ChunkInfo]) -> bool {
        chunks.iter().all(|c| c.shards.iter().all(|s| s.healthy))
    }
}

/// The `user.minigcs.placement` extended attribute of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementReport {
    pub size: u64,
    pub version: u64,
    /// The store's erasure-coding parameters (each chunk says its own too).
    pub k: usize,
    pub m: usize,
    pub chunks: Vec<ChunkInfo>,
}
