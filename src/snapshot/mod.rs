//! Metadata snapshots: the file format of one snapshot copy kept on the
//! nodes, its name, and what the daemon remembers about the newest one.
//!
//! A copy is `<node>/meta/snapshots/snapshot-<seq>-<unix secs>.mgsnap`
//! (journal segments will sit next to it in `<node>/meta/journal/`):
//!
//! ```text
//! "MGCSNAP1" | manifest length (u32 LE) | CRC32C of the manifest (u32 LE)
//! | manifest (JSON) | the SQLite database file, as it was
//! ```
//!
//! The manifest names the cluster, the snapshot's sequence number and time,
//! the database's size and SHA-256, and the files and bytes it describes.
//! `decode` accepts a copy only when every one of those checks holds, so a
//! torn or corrupted copy is never restored. Taking snapshots lives in
//! `crate::maint` (a worker); restoring them in `restore`.

pub mod restore;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The area of a node's `meta` folder that holds snapshot copies.
pub const SNAPSHOT_AREA: &str = "snapshots";
/// Format of the manifest and header.
pub const FORMAT: u32 = 1;
const MAGIC: &[u8; 8] = b"MGCSNAP1";
const NAME_PREFIX: &str = "snapshot-";
const NAME_SUFFIX: &str = ".mgsnap";
/// Longest manifest accepted (it is a few hundred bytes).
const MAX_MANIFEST: usize = 64 * 1024;

/// What a snapshot copy says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub cluster_id: String,
    /// Grows by one per snapshot of the store.
    pub seq: u64,
    /// When the copy of the database was taken, ms since the epoch.
    pub created_unix_ms: i64,
    /// Bytes of the database file that follows the manifest.
    pub db_size: u64,
    /// SHA-256 of those bytes, hex.
    pub db_sha256: String,
    /// Files (objects) in the namespace, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// The metadata journal LSN the database holds: a restore replays the
    /// journal records after it (0 in snapshots taken before the journal).
    #[serde(default)]
    pub journal_lsn: u64,
}

impl Manifest {
    /// The manifest of `database` (in memory).
    pub fn describe(database: &[u8], cluster_id: &str, seq: u64, created_unix_ms: i64) -> Manifest {
        Manifest {
            format: FORMAT,
            cluster_id: cluster_id.to_string(),
            seq,
            created_unix_ms,
            db_size: database.len() as u64,
            db_sha256: hex::encode(Sha256::digest(database)),
            files: 0,
            bytes: 0,
            journal_lsn: 0,
        }
    }

    /// The manifest of the database file at `path`, read in pieces.
    pub fn describe_file(
        path: &std::path::Path,
        cluster_id: &str,
        seq: u64,
        created_unix_ms: i64,
    ) -> Result<Manifest> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let db_size = std::io::copy(&mut file, &mut hasher)?;
        Ok(Manifest {
            db_size,
            db_sha256: hex::encode(hasher.finalize()),
            ..Manifest::describe(b"", cluster_id, seq, created_unix_ms)
        })
    }

    /// The name of this snapshot's copies on the nodes.
    pub fn file_name(&self) -> String {
        file_name(self.seq, self.created_unix_ms / 1000)
    }
}

/// `snapshot-<seq, 12 digits>-<unix secs>.mgsnap`: names sort by sequence.
pub fn file_name(seq: u64, unix_secs: i64) -> String {
    format!("{NAME_PREFIX}{seq:012}-{unix_secs}{NAME_SUFFIX}")
}

/// (sequence, unix seconds) of a snapshot copy's name.
pub fn parse_file_name(name: &str) -> Option<(u64, i64)> {
    let rest = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    let (seq, secs) = rest.split_once('-')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((seq.parse().ok()?, secs.parse().ok()?))
}

/// The bytes that go before the database in a copy.
pub fn encode_header(manifest: &Manifest) -> Vec<u8> {
    let json = serde_json::to_vec(manifest).expect("manifest serializes");
    let mut out = Vec::with_capacity(16 + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// The manifest and database of a whole copy, once every check holds:
/// magic, manifest checksum, format, database size and SHA-256.
pub fn decode(copy: &[u8]) -> Result<(Manifest, &[u8])> {
    let bad = |why: String| {
        Err(Error::Other(format!(
            "metadata snapshot copy is bad: {why}"
        )))
    };
    if copy.len() < 16 || &copy[..8] != MAGIC {
        return bad("not a minigcs snapshot (bad magic)".into());
    }
    let len = u32::from_le_bytes(copy[8..12].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(copy[12..16].try_into().expect("4 bytes"));
    if len > MAX_MANIFEST || copy.len() < 16 + len {
        return bad(format!("manifest length {len} does not fit the file"));
    }
    let json = &copy[16..16 + len];
    if crc32c::crc32c(json) != crc {
        return bad("manifest checksum mismatch".into());
    }
    let manifest: Manifest = match serde_json::from_slice(json) {
        Ok(m) => m,
        Err(e) => return bad(format!("manifest unreadable: {e}")),
    };
    if manifest.format != FORMAT {
        return bad(format!("unknown format {}", manifest.format));
    }
    let database = &copy[16 + len..];
    if database.len() as u64 != manifest.db_size {
        return bad(format!(
            "database is {} bytes, the manifest says {} (torn copy)",
            database.len(),
            manifest.db_size
        ));
    }
    if hex::encode(Sha256::digest(database)) != manifest.db_sha256 {
        return bad("database checksum mismatch".into());
    }
    Ok((manifest, database))
}

/// The newest snapshot as the daemon knows it: which nodes hold a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCopies {
    pub seq: u64,
    pub unix_secs: i64,
    /// Node ids holding a copy.
    pub nodes: Vec<String>,
}

/// What the daemon remembers about snapshots between steps.
#[derive(Debug, Default)]
pub struct SnapshotBook {
    pub state: Mutex<BookState>,
    /// Snapshots are taken one at a time.
    pub taking: Mutex<()>,
}

#[derive(Debug, Default, Clone)]
pub struct BookState {
    /// The nodes were looked at for existing snapshots.
    pub scanned: bool,
    pub newest: Option<SnapshotCopies>,
    /// The database's commit count when the newest snapshot was taken.
    pub taken_at_commit: Option<u64>,
    /// Journal LSNs of the snapshots taken by this daemon, oldest first
    /// (at most `metadata.snapshots_kept`): the journal before the oldest
    /// is no longer needed.
    pub recent_lsns: Vec<u64>,
    /// Journal bytes appended when the newest snapshot was taken.
    pub journal_bytes_at_snapshot: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_of(database: &[u8], seq: u64) -> Vec<u8> {
        let manifest = Manifest::describe(database, "cluster-1", seq, 1_700_000_000_000);
        [encode_header(&manifest), database.to_vec()].concat()
    }

    #[test]
    fn a_copy_round_trips_and_names_sort_by_sequence() {
        let copy = copy_of(b"SQLite format 3\0 and pages", 7);
        let (manifest, database) = decode(&copy).unwrap();
        assert_eq!(database, b"SQLite format 3\0 and pages");
        assert_eq!(manifest.seq, 7);
        assert_eq!(manifest.cluster_id, "cluster-1");
        assert_eq!(
            parse_file_name(&manifest.file_name()),
            Some((7, 1_700_000_000))
        );
        assert!(file_name(9, 5) < file_name(10, 1));
        assert_eq!(parse_file_name("snapshot-x-1.mgsnap"), None);
        assert_eq!(parse_file_name("other"), None);
    }

    #[test]
    fn every_corruption_or_truncation_is_rejected() {
        let copy = copy_of(&[42u8; 5000], 3);
        for at in [0, 9, 13, 20, copy.len() - 4000, copy.len() - 1] {
            let mut bad = copy.clone();
            bad[at] ^= 0x01;
            assert!(decode(&bad).is_err(), "flipped byte {at} was accepted");
        }
        assert!(decode(&copy[..copy.len() - 1]).is_err(), "torn copy");
        assert!(decode(&copy[..10]).is_err());
        assert!(decode(b"").is_err());
    }
}
