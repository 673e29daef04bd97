//! The journal flusher: writes the metadata journal records of changes
//! that needed no sync (create, rename, chmod …) to the nodes within
//! `metadata.journal_flush_ms`, or at once when they pile up, so even
//! unacknowledged namespace changes reach the regions soon. Durable
//! operations do not wait for it: they write the records themselves
//! (`JournalWriter`, group commit).

use std::sync::Arc;
use std::time::Duration;

use super::{Step, WakeOn, Worker};
use crate::error::Result;
use crate::service::wake::WorkerStatus;
use crate::service::Context;

pub(super) struct JournalFlusher {
    pub(super) ctx: Arc<Context>,
}

impl Worker for JournalFlusher {
    fn name(&self) -> &'static str {
        "meta-journal"
    }

    fn wake_on(&self) -> WakeOn {
        let every = Duration::from_millis(self.ctx.config.metadata.journal_flush_ms.max(10));
        WakeOn::signal(&self.ctx.wake.journal).every(Some(every))
    }

    fn step(&mut self, status: &WorkerStatus) -> Result<Step> {
        self.ctx.journal.flush_all()?;
        let now = self.ctx.journal.status();
        let since = now
            .appended_bytes
            .saturating_sub(self.ctx.snapshots.state.lock().journal_bytes_at_snapshot);
        if since > self.ctx.config.metadata.journal_max_bytes {
            status.doing(format!(
                "{since} journal bytes since the last snapshot: taking one"
            ));
            super::snapshot::take(&self.ctx, false)?;
        }
        status.doing(format!(
            "journal on the nodes through LSN {} ({})",
            now.durable_lsn,
            match &now.active_segment {
                Some(name) => format!("{name} on {}", now.active_nodes.join(", ")),
                None => "no segment open".into(),
            }
        ));
        Ok(Step::Idle)
    }
}
