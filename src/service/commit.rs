//! Committing an open file (part of the writer; the protocol is in
//! writer.rs): capture under the state lock what to commit, wait for its
//! uploads and run the metadata transaction with no state lock held, then
//! settle — remove from the state exactly what was committed.

use std::sync::Arc;

use super::state::{let_go, Content, FileState, Slot, Truncation};
use super::upload::Upload;
use super::writer::OpenFile;
use super::Env;
use crate::error::{Error, Result};
use crate::meta::{FileCommit, Nanos};

/// What one commit takes: the slots it saw (by stamp), the truncation, and
/// the attributes at that moment.
struct Captured {
    /// (chunk index, slot stamp, its upload; None for a hole)
    slots: Vec<(u64, u64, Option<Arc<Upload>>)>,
    truncation: Option<Truncation>,
    size: u64,
    mtime: Nanos,
    ctime: Nanos,
    changes: u64,
}

impl FileState {
    /// Start uploading every buffer and note what is there to commit.
    fn capture(&mut self, env: &Env) -> Captured {
        self.spill(env.uploads);
        let slots = self
            .chunks
            .iter()
            .map(|(index, slot)| {
                let upload = match &slot.content {
                    Content::Stored(up) => Some(up.clone()),
                    _ => None,
                };
                (*index, slot.stamp, upload)
            })
            .collect();
        Captured {
            slots,
            truncation: self.truncation,
            size: self.size,
            mtime: self.mtime,
            ctime: self.ctime,
            changes: self.changes,
        }
    }

    /// After a successful commit: drop what it committed, keep what came
    /// later. Returns the committed slots (to let go of).
    fn settle(&mut self, done: &Captured) -> Vec<Slot> {
        let mut gone = Vec::new();
        for (index, stamp, _) in &done.slots {
            if self.chunks.get(index).is_some_and(|s| s.stamp == *stamp) {
                gone.extend(self.chunks.remove(index));
            }
        }
        if self.truncation == done.truncation {
            self.truncation = None;
        }
        if self.changes == done.changes {
            self.modified = false;
        }
        self.base += 1;
        gone
    }
}

impl OpenFile {
    /// Make everything written so far durable and visible: one metadata
    /// transaction, after every chunk it references is stored.
    pub fn commit(&self, env: &Env) -> Result<()> {
        let _one_commit = self.commit_lock.lock();
        let captured = {
            let mut st = self.state.lock();
            if !st.modified {
                return Ok(());
            }
            st.capture(env)
        };
        let mut chunks = Vec::new();
        let mut first_err = None;
        for (index, _, upload) in &captured.slots {
            if let Some(up) = upload {
                match up.wait() {
                    Ok(w) => chunks.push((*index, w)),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = first_err {
            self.drop_after_failure(env, captured);
            return Err(e);
        }
        let removed = captured
            .slots
            .iter()
            .filter(|(_, _, up)| up.is_none())
            .map(|(index, _, _)| *index)
            .collect();
        // The whole-file SHA-256 is computed when first asked for (info,
        // HTTP ETag): hashing inline would cost the writer a core.
        let commit = FileCommit {
            ino: self.ino,
            chunks,
            removed,
            drop_from: captured.truncation.map(|t| t.from),
            size: captured.size,
            mtime: captured.mtime,
            ctime: captured.ctime,
            checksum: None,
            md5: None,
            content_type: None,
        };
        match env.ctx.meta.commit_file(&commit) {
            Ok(outcome) => {
                for up in captured.slots.iter().filter_map(|(_, _, up)| up.as_ref()) {
                    up.mark_committed();
                }
                let gone = self.state.lock().settle(&captured);
                let_go(gone);
                // Only superseded chunks give the collector work; a burst of
                // commits coalesces into one pass.
                if outcome.superseded > 0 {
                    env.ctx.wake.collector.notify();
                }
                // Committed and visible; the close or fsync succeeds only
                // once it is on stable storage here and in the journal on
                // the nodes (a failure leaves it committed: the next fsync
                // tries again).
                env.ctx.meta.sync()
            }
            Err(Error::NotFound(_)) => {
                // The inode is gone (deleted through the API): drop the data.
                drop(captured);
                let gone = self.state.lock().take_all();
                let_go(gone);
                Ok(())
            }
            // Everything stays buffered for the next commit.
            Err(e) => Err(e),
        }
    }

    /// The data could not be made durable: fall back to the last committed
    /// version rather than commit a partial file, and count the failure so
    /// every handle hears of it.
    fn drop_after_failure(&self, env: &Env, captured: Captured) {
        drop(captured);
        let committed = env.ctx.committed_inode(self.ino).ok();
        let gone = {
            let mut st = self.state.lock();
            if let Some(inode) = committed {
                st.size = inode.size;
                st.mtime = inode.mtime;
            }
            st.failed_commits += 1;
            st.resets += 1;
            st.take_all()
        };
        let_go(gone);
    }
}
