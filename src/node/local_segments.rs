//! Where a local node keeps each shard: small ones (up to
//! `SegmentSettings::max_shard`) in the segment store under
//! `<node>/segments/`, larger ones in their own files under `shards/` as
//! before. Both layouts are read, so a store written before segments keeps
//! working; a shard stored again moves to the layout its size calls for
//! (a segment copy wins over a file of the same key). The store is opened
//! on first use and opened anew when the folder was deleted and created
//! again.

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;

use super::local::{fsync_dir, LocalDirNode};
use super::segments::{folder_identity, SegmentSettings, SegmentStore};
use crate::error::{Error, Result};

/// The folder of a local node that holds its segment files.
pub const SEGMENTS_FOLDER: &str = "segments";

impl LocalDirNode {
    /// Keep small shards in segments as `settings` says (the default keeps
    /// shards up to 256 KiB there; `max_shard` 0 keeps every shard in its
    /// own file).
    pub fn with_segments(mut self, settings: SegmentSettings) -> LocalDirNode {
        self.segment_settings = settings;
        self
    }

    pub(super) fn segments_dir(&self) -> PathBuf {
        self.root.join(SEGMENTS_FOLDER)
    }

    /// The segment store of the folder as it is now; None when the folder
    /// has no segments folder and `create` is false. With `create`, a
    /// folder that is set up (its `shards` folder exists) gets one.
    pub(super) fn segment_store(&self, create: bool) -> Result<Option<Arc<SegmentStore>>> {
        let dir = self.segments_dir();
        let identity = match folder_identity(&dir) {
            Ok(identity) => identity,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                *self.segments.lock() = None;
                if !create {
                    return Ok(None);
                }
                if !self.root.join("shards").is_dir() {
                    return Err(Error::Io(std::io::Error::new(
                        ErrorKind::NotFound,
                        format!("node {} is not set up at {}", self.id, self.root.display()),
                    )));
                }
                match fs::create_dir(&dir) {
                    Ok(()) => fsync_dir(&self.root).map_err(|e| self.io_error(e))?,
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(self.io_error(e)),
                }
                folder_identity(&dir)?
            }
            Err(e) => return Err(self.io_error(e)),
        };
        let mut held = self.segments.lock();
        if let Some(store) = held.as_ref() {
            if store.identity() == identity {
                return Ok(Some(store.clone()));
            }
        }
        let owner = self.holds_lock();
        if owner {
            SegmentStore::remove_leftovers(&dir);
        }
        let store = SegmentStore::open(&dir, self.segment_settings)?;
        if owner && self.segment_settings.max_shard > 0 {
            store.prepare_ahead();
        }
        *held = Some(store.clone());
        Ok(Some(store))
    }

    /// Store a small shard in the segment store; a copy in its own file
    /// (from before segments) is removed once the new one is durable.
    pub(super) fn put_small_shard(&self, key: super::ShardKey, parts: &[&[u8]]) -> Result<()> {
        let store = self
            .segment_store(true)?
            .expect("a segment store is created on demand");
        store.put(key, parts)?;
        match fs::remove_file(self.shard_path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error(e)),
        }
    }

    /// Segment figures, when the store is open (no I/O: reports must
    /// answer even when the node does not; none while it is being opened).
    pub fn segment_figures(&self) -> Option<super::segments::SegmentFigures> {
        let held = self.segments.try_lock()?;
        held.as_ref().map(|s| s.figures())
    }
}
