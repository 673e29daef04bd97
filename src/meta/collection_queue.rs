//! The collection queue: chunks a commit, truncation or purge superseded
//! (their `ino` is NULL) wait here until the collector has deleted their
//! shards from the nodes and forgets them. A chunk enters the queue in the
//! same transaction that removes it from its file, so a crash never loses
//! track of shards. Which chunks are still being read (pinned) is the
//! service's business, not this module's.

use super::shard_map::ChunkRecord;
use super::{Durability, Meta};
use crate::error::Result;

impl Meta {
    /// Superseded chunks waiting for their shards to be deleted.
    pub fn dead_chunks(&self, limit: usize) -> Result<Vec<ChunkRecord>> {
        self.db.read(|conn| {
            self.chunk_records(
                conn,
                "SELECT chunk_id, idx, data_len, k, m FROM chunks WHERE ino IS NULL LIMIT ?1",
                [limit as i64],
            )
        })
    }

    /// Drop the records of collected chunks (their shards are gone).
    pub fn forget_chunks(&self, ids: &[u64]) -> Result<()> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            for id in ids {
                tx.prepare_cached("DELETE FROM shards WHERE chunk_id=?1")?
                    .execute([*id as i64])?;
                tx.prepare_cached("DELETE FROM chunks WHERE chunk_id=?1 AND ino IS NULL")?
                    .execute([*id as i64])?;
            }
            Ok(())
        })
    }
}
