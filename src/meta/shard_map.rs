//! Shard placement and health: which node holds each shard of each chunk and
//! whether it is ok, missing or corrupt; the queries repair, recovery, scrub
//! and orphan sweeps page through; and the usage statistics derived from the
//! same tables (per-node shard bytes, object totals). State changes are
//! buffered write transactions; everything else reads on the reader pool.

use rusqlite::params;
use std::collections::{BTreeMap, HashSet};

use super::{Durability, Meta};
use crate::chunk::{ChunkLayout, Placement};
use crate::error::Result;
use crate::model::ShardState;

/// A live or dead chunk with its shard map.
#[derive(Debug, Clone)]
pub struct ChunkRecord {
    pub idx: u64,
    pub layout: ChunkLayout,
    pub placement: Placement,
    pub states: Vec<ShardState>,
    pub checksums: Vec<Option<u32>>,
}

impl ChunkRecord {
    pub fn healthy_shards(&self) -> usize {
        self.placement
            .iter()
            .zip(&self.states)
            .filter(|(p, s)| p.is_some() && **s == ShardState::Ok)
            .count()
    }
}

impl Meta {
    pub fn set_shard_state(&self, chunk_id: u64, idx: usize, state: ShardState) -> Result<bool> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE shards SET state=?3 WHERE chunk_id=?1 AND idx=?2 AND state != ?3",
                )?
                .execute(params![chunk_id as i64, idx as i64, state as i64])?;
            Ok(n > 0)
        })
    }

    /// Record a rebuilt shard. Returns false (changing nothing) when the
    /// chunk is no longer live: the caller then removes what it wrote.
    pub fn set_shard_ok(
        &self,
        chunk_id: u64,
        idx: usize,
        node: usize,
        checksum: u32,
    ) -> Result<bool> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE shards SET node=?3, state=0, checksum=?4 WHERE chunk_id=?1 AND idx=?2
                     AND EXISTS (SELECT 1 FROM chunks c WHERE c.chunk_id=?1 AND c.ino IS NOT NULL)",
                )?
                .execute(params![
                    chunk_id as i64,
                    idx as i64,
                    self.node_ids[node],
                    checksum as i64
                ])?;
            Ok(changed > 0)
        })
    }

    /// Mark every healthy shard on a node missing (the node was lost).
    pub fn mark_node_lost(&self, node: usize) -> Result<usize> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            Ok(tx.execute(
                "UPDATE shards SET state=1 WHERE node=?1 AND state=0",
                [&self.node_ids[node]],
            )?)
        })
    }

    /// Chunks (live or dead) with at least one shard not ok, read as one
    /// snapshot.
    pub fn chunks_needing_repair(&self, limit: usize) -> Result<Vec<(Option<u64>, ChunkRecord)>> {
        self.db.read(|conn| {
            let ids: Vec<i64> = {
                let mut st = conn.prepare_cached(
                    "SELECT DISTINCT s.chunk_id FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id
                     WHERE s.state != 0 AND c.ino IS NOT NULL LIMIT ?1",
                )?;
                let rows = st.query_map([limit as i64], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut out = Vec::new();
            for id in ids {
                if let Some(r) = self.chunk_by_id_in(conn, id as u64)? {
                    out.push(r);
                }
            }
            Ok(out)
        })
    }

    /// Health of the live chunks when the nodes `down` (indexes) are
    /// unreachable: (chunks lacking a healthy shard, shards not healthy,
    /// chunks with fewer than k healthy shards, i.e. unreadable).
    pub fn live_shard_health(&self, down: &[usize]) -> Result<(u64, u64, u64)> {
        let down_ids: Vec<&str> = down.iter().map(|&i| self.node_ids[i].as_str()).collect();
        let placeholders = vec!["?"; down_ids.len()].join(",");
        let healthy = if down_ids.is_empty() {
            "s.state = 0 AND s.node IS NOT NULL".to_string()
        } else {
            format!("s.state = 0 AND s.node IS NOT NULL AND s.node NOT IN ({placeholders})")
        };
        let sql = format!(
            "SELECT COUNT(*), COALESCE(SUM(total - good), 0), COALESCE(SUM(good < k), 0) FROM (
               SELECT c.k AS k, COUNT(*) AS total, SUM(CASE WHEN {healthy} THEN 1 ELSE 0 END) AS good
               FROM chunks c JOIN shards s ON s.chunk_id = c.chunk_id
               WHERE c.ino IS NOT NULL GROUP BY c.chunk_id
             ) WHERE good < total"
        );
        let (chunks, shards, unreadable): (i64, i64, i64) = self.db.read(|conn| {
            Ok(
                conn.query_row(&sql, rusqlite::params_from_iter(down_ids.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?,
            )
        })?;
        Ok((chunks as u64, shards as u64, unreadable as u64))
    }

    /// (live chunks with a shard not ok, shards not ok in live chunks).
    pub fn count_unhealthy_chunks(&self) -> Result<(u64, u64)> {
        let (chunks, shards): (i64, i64) = self.db.read(|conn| {
            let chunks = conn.query_row(
                "SELECT COUNT(DISTINCT s.chunk_id) FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id WHERE s.state != 0 AND c.ino IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            let shards = conn.query_row(
                "SELECT COUNT(*) FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id WHERE s.state != 0 AND c.ino IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            Ok((chunks, shards))
        })?;
        Ok((chunks as u64, shards as u64))
    }

    /// Live chunk ids in order, for scrub: pages after `after` (None: from
    /// the start). Ids are stored as i64, so the order is that of the signed
    /// values; pass back the last id of a page to get the next one.
    pub fn live_chunk_ids(&self, after: Option<u64>, limit: usize) -> Result<Vec<u64>> {
        self.db.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT chunk_id FROM chunks WHERE ino IS NOT NULL AND (?1 IS NULL OR chunk_id > ?1) ORDER BY chunk_id LIMIT ?2",
            )?;
            let rows = st.query_map(params![after.map(|a| a as i64), limit as i64], |r| {
                r.get::<_, i64>(0)
            })?;
            Ok(rows
                .map(|r| r.map(|i| i as u64))
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Live chunks that have a shard recorded on `node` (any state), for recovery.
    pub fn chunk_ids_on_node(&self, node: usize) -> Result<Vec<u64>> {
        self.db.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT s.chunk_id FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id WHERE s.node=?1 AND c.ino IS NOT NULL",
            )?;
            let rows = st.query_map([&self.node_ids[node]], |r| r.get::<_, i64>(0))?;
            Ok(rows
                .map(|r| r.map(|i| i as u64))
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Every (chunk_id, shard index) recorded on a node: for orphan sweeps.
    pub fn shard_keys_on_node(&self, node: usize) -> Result<HashSet<(u64, u16)>> {
        self.db.read(|conn| {
            let mut st = conn.prepare("SELECT chunk_id, idx FROM shards WHERE node=?1")?;
            let rows = st.query_map([&self.node_ids[node]], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u16))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    // ---------- statistics ----------

    /// (file count, total bytes of files).
    pub fn object_totals(&self) -> Result<(u64, u64)> {
        let (n, b): (i64, i64) = self.db.read(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM inodes WHERE kind=1 AND nlink > 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })?;
        Ok((n as u64, b as u64))
    }

    /// Per node id: (healthy shards, bytes of shard payload).
    pub fn node_usage(&self) -> Result<BTreeMap<String, (u64, u64)>> {
        self.db.read(|conn| {
            let mut st = conn.prepare(
                "SELECT s.node, COUNT(*), COALESCE(SUM((c.data_len + c.k - 1) / c.k), 0)
                 FROM shards s JOIN chunks c ON c.chunk_id=s.chunk_id
                 WHERE s.node IS NOT NULL AND s.state=0 GROUP BY s.node",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (node, n, b) = row?;
                out.insert(node, (n, b));
            }
            Ok(out)
        })
    }

    pub fn inode_count(&self) -> Result<u64> {
        self.db.read(|conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM inodes", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }
}
