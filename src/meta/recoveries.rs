//! Recovery records: one row per node recovery with its progress (detected,
//! started, done, shards rebuilt, bytes, error). A row still 'running' at
//! startup is a recovery a crash interrupted, which the service resumes.
//! Rows change through buffered write transactions.

use rusqlite::params;

use super::{Durability, Meta};
use crate::error::Result;

impl Meta {
    /// Record a recovery of `node` that starts now; returns its id.
    pub fn start_recovery(&self, node: &str, detected_ms: i64, started_ms: i64) -> Result<i64> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            tx.execute(
                "INSERT INTO recoveries(node, state, detected_ms, started_ms) VALUES(?1, 'running', ?2, ?3)",
                params![node, detected_ms, started_ms],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn update_recovery(
        &self,
        id: i64,
        state: &str,
        total: u64,
        done: u64,
        bytes: u64,
        done_ms: Option<i64>,
        error: Option<&str>,
    ) -> Result<()> {
        self.db.write_transaction(Durability::Buffered, |tx| {
            tx.execute(
                "UPDATE recoveries SET state=?2, shards_total=?3, shards_done=?4, bytes=?5, done_ms=?6, error=?7 WHERE id=?1",
                params![id, state, total as i64, done as i64, bytes as i64, done_ms, error],
            )?;
            Ok(())
        })
    }

    /// Recoveries left 'running' by a crash: (id, node, detected_ms).
    pub fn interrupted_recoveries(&self) -> Result<Vec<(i64, String, i64)>> {
        self.db.read(|conn| {
            let mut st =
                conn.prepare("SELECT id, node, detected_ms FROM recoveries WHERE state='running'")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
