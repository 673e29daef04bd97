//! The `segments:` section: which shards a local node keeps in append-only
//! segment files instead of one file each (`max_shard`, 0 = none), how big
//! each segment is, and how the segment cleaner reclaims dead space.

use serde::Deserialize;

use super::size;
use crate::node::segments::{
    SegmentSettings, DEFAULT_DEAD_FRACTION, DEFAULT_MAX_SHARD, DEFAULT_SEGMENT_BYTES,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SegmentsConfig {
    /// Shards of at most this many bytes go to segments; 0 turns them off.
    #[serde(deserialize_with = "size::u64_field")]
    pub max_shard: u64,
    /// Bytes of each segment file (pre-written whole before use).
    #[serde(deserialize_with = "size::u64_field")]
    pub segment_size: u64,
    /// The cleaner rewrites a sealed segment once this fraction of it is
    /// dead (removed or replaced entries, space never used).
    pub cleaner_dead_fraction: f64,
    /// Upper bound on the cleaner's copying in bytes per second; 0 = unlimited.
    #[serde(deserialize_with = "size::u64_field")]
    pub cleaner_rate_bytes_per_sec: u64,
    /// Seconds between cleaner passes.
    pub cleaner_interval_secs: u64,
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        SegmentsConfig {
            max_shard: DEFAULT_MAX_SHARD,
            segment_size: DEFAULT_SEGMENT_BYTES,
            cleaner_dead_fraction: DEFAULT_DEAD_FRACTION,
            cleaner_rate_bytes_per_sec: 16 * 1024 * 1024,
            cleaner_interval_secs: 30,
        }
    }
}

/// The keys of the section, for the loader's list of known keys.
pub const SEGMENTS_KEYS: &[&str] = &[
    "segments",
    "segments.max_shard",
    "segments.segment_size",
    "segments.cleaner_dead_fraction",
    "segments.cleaner_rate_bytes_per_sec",
    "segments.cleaner_interval_secs",
];

impl SegmentsConfig {
    /// (key, reason) of the first invalid value.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !(1 << 20..=1 << 30).contains(&self.segment_size) {
            return Some((
                "segments.segment_size",
                format!("must be 1 MiB..=1 GiB, got {}", self.segment_size),
            ));
        }
        if self.max_shard > self.segment_size / 4 {
            return Some((
                "segments.max_shard",
                format!(
                    "must be at most a quarter of segments.segment_size ({}), got {}",
                    self.segment_size / 4,
                    self.max_shard
                ),
            ));
        }
        if !(self.cleaner_dead_fraction > 0.0 && self.cleaner_dead_fraction <= 1.0) {
            return Some((
                "segments.cleaner_dead_fraction",
                format!("must be in (0, 1], got {}", self.cleaner_dead_fraction),
            ));
        }
        None
    }

    /// What each local node is told.
    pub fn settings(&self) -> SegmentSettings {
        SegmentSettings {
            max_shard: self.max_shard,
            segment_bytes: self.segment_size,
            dead_fraction: self.cleaner_dead_fraction,
        }
    }
}
