//! What the service tells about a file's chunks: placement and shard health
//! (for `info`, the HTTP API and the read-only placement xattr) and the
//! object metadata the API shows.

use super::Service;
use crate::chunk::NodeState;
use crate::error::{Error, Result};
use crate::meta::{ChunkRecord, Inode, Kind, ShardState};
use crate::report::{ChunkInfo, PlacementReport, ShardInfo, ShardStatus};

/// An object's metadata, as the API and `ctl info` show it.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: String,
    pub inode: Inode,
    pub chunks: Vec<ChunkRecord>,
}

impl Service {
    /// Placement and health of each chunk, for humans and JSON.
    pub fn chunk_infos(&self, chunks: &[ChunkRecord]) -> Vec<ChunkInfo> {
        let status = self.ctx.store.node_status();
        chunks
            .iter()
            .map(|c| ChunkInfo {
                index: c.idx,
                chunk_id: format!("{:016x}", c.layout.chunk_id),
                len: c.layout.data_len,
                k: c.layout.k,
                m: c.layout.m,
                shards: c
                    .placement
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let node_up = p.map(|n| status[n].state == NodeState::Up).unwrap_or(false);
                        let state = if p.is_some() && !node_up && c.states[i] == ShardState::Ok {
                            ShardStatus::NodeDown
                        } else {
                            ShardStatus::from(c.states[i])
                        };
                        ShardInfo {
                            index: i,
                            node: p.map(|n| self.ctx.store.nodes()[n].id().to_string()),
                            region: p.map(|n| self.ctx.store.node_region(n).to_string()),
                            healthy: node_up && c.states[i] == ShardState::Ok,
                            state,
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// The placement xattr: size, version, k, m and every chunk's shards.
    pub(super) fn placement_xattr(&self, ino: u64) -> Result<Vec<u8>> {
        let inode = self.ctx.committed_inode(ino)?;
        if inode.kind != Kind::File {
            return Err(Error::NoAttribute("placement exists on files only".into()));
        }
        let chunks = self.ctx.meta.chunks_of(ino)?;
        let placement = PlacementReport {
            size: inode.size,
            version: inode.version,
            k: self.ctx.store.k(),
            m: self.ctx.store.m(),
            chunks: self.chunk_infos(&chunks),
        };
        Ok(crate::report::to_value(&placement).to_string().into_bytes())
    }
}
