//! The metadata journal on the nodes: every committed metadata transaction
//! (a changeset with its LSN, see `crate::meta`) is appended to a journal
//! segment kept on m+1 nodes spread over the regions, and fdatasynced
//! there before the operation it belongs to is acknowledged. With the
//! newest snapshot (`crate::snapshot`) it rebuilds the database when the
//! metadata disk is lost: recovery point zero.
//!
//! This file owns the on-node format; `writer` appends (group commit),
//! `replay` reads the copies back and applies them, `upkeep` truncates
//! after snapshots and repairs bad or missing copies.
//!
//! A segment is `<node>/meta/journal/journal-<first LSN>-<created ms>.mgjnl`:
//!
//! ```text
//! "MGCJNL01" | header length (u32 LE) | CRC32C of the header (u32 LE)
//! | header (JSON: format, cluster id, first LSN, creation time)
//! then frames, one per append:
//! "MGJF" | payload length (u32 LE) | CRC32C of the payload (u32 LE)
//! | payload: record count (u32 LE), then per record
//!   LSN (u64 LE) | changeset length (u32 LE) | changeset
//! ```
//!
//! A copy is read up to its first frame that is incomplete or fails its
//! checksum (a torn tail or a flipped bit): records after it in that copy
//! are ignored, and another copy of the segment supplies them. Zero bytes
//! after the last frame are no frame but room written ahead for appends
//! (a node may keep a segment longer than what was appended): the copy
//! ends there, intact.

pub mod replay;
pub mod upkeep;
pub mod writer;
#[cfg(test)]
mod writer_tests;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::meta::JournalRecord;

pub use writer::JournalWriter;

/// The area of a node's `meta` folder holding journal segments.
pub const JOURNAL_AREA: &str = "journal";
const FORMAT: u32 = 1;
const SEGMENT_MAGIC: &[u8; 8] = b"MGCJNL01";
const FRAME_MAGIC: &[u8; 4] = b"MGJF";
const NAME_PREFIX: &str = "journal-";
const NAME_SUFFIX: &str = ".mgjnl";
const MAX_HEADER: usize = 64 * 1024;

/// What a segment says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    pub format: u32,
    pub cluster_id: String,
    /// LSN of its first record.
    pub first_lsn: u64,
    pub created_unix_ms: u64,
}

/// The file name of a segment: sorts by first LSN, then creation time.
pub fn segment_name(first_lsn: u64, created_unix_ms: u64) -> String {
    format!("{NAME_PREFIX}{first_lsn:020}-{created_unix_ms:013}{NAME_SUFFIX}")
}

/// (first LSN, creation ms) of a segment file name; None for other files.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    let (lsn, ms) = rest.split_once('-')?;
    Some((lsn.parse().ok()?, ms.parse().ok()?))
}

/// The bytes a new segment starts with.
pub fn encode_segment_header(header: &SegmentHeader) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("a segment header serializes");
    let mut out = Vec::with_capacity(16 + json.len());
    out.extend_from_slice(SEGMENT_MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// One append: `records` (in LSN order) as a checksummed frame.
pub fn encode_frame(records: &[JournalRecord]) -> Vec<u8> {
    let body: usize = records.iter().map(|r| 12 + r.changeset.len()).sum();
    let mut payload = Vec::with_capacity(4 + body);
    payload.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for record in records {
        payload.extend_from_slice(&record.lsn.to_le_bytes());
        payload.extend_from_slice(&(record.changeset.len() as u32).to_le_bytes());
        payload.extend_from_slice(&record.changeset);
    }
    let mut out = Vec::with_capacity(12 + payload.len());
    out.extend_from_slice(FRAME_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// One copy of a segment as read back.
#[derive(Debug, Clone)]
pub struct ParsedSegment {
    pub header: SegmentHeader,
    /// Every record of the valid frames, in order.
    pub records: Vec<JournalRecord>,
    /// Why reading stopped before the end of the copy (None: it did not).
    pub stopped: Option<String>,
}

impl ParsedSegment {
    /// LSN of its last valid record.
    pub fn last_lsn(&self) -> Option<u64> {
        self.records.last().map(|r| r.lsn)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Read a segment copy: its header must be intact (else an error); frames
/// are taken up to the first one that is incomplete, fails its checksum,
/// or does not continue the LSN order.
pub fn parse_segment(bytes: &[u8]) -> Result<ParsedSegment> {
    let bad = |why: &str| Error::Corrupt(format!("journal segment: {why}"));
    if bytes.len() < 16 || &bytes[..8] != SEGMENT_MAGIC {
        return Err(bad("not a minigcs journal segment"));
    }
    let len = u32_at(bytes, 8).unwrap_or(0) as usize;
    let crc = u32_at(bytes, 12).unwrap_or(0);
    let json = bytes
        .get(16..16 + len)
        .filter(|_| len <= MAX_HEADER)
        .ok_or_else(|| bad("header cut short"))?;
    if crc32c::crc32c(json) != crc {
        return Err(bad("header checksum mismatch"));
    }
    let header: SegmentHeader =
        serde_json::from_slice(json).map_err(|e| bad(&format!("header: {e}")))?;
    if header.format != FORMAT {
        return Err(bad(&format!("unknown format {}", header.format)));
    }
    let mut records = Vec::new();
    let mut at = 16 + len;
    let mut stopped = None;
    let mut next = header.first_lsn;
    // Nodes write zeros ahead of the appends (see
    // `NodeBackend::append_meta_file`): a tail of zeros is the end.
    while at < bytes.len() && bytes[at..].iter().any(|&b| b != 0) {
        match parse_frame(bytes, at, next) {
            Ok((frame, end)) => {
                next = frame.last().map_or(next, |r| r.lsn + 1);
                records.extend(frame);
                at = end;
            }
            Err(why) => {
                stopped = Some(format!("at byte {at}: {why}"));
                break;
            }
        }
    }
    Ok(ParsedSegment {
        header,
        records,
        stopped,
    })
}

/// The frame at `at`, whose first record must have LSN `expect`; returns
/// its records and where the next frame starts.
fn parse_frame(
    bytes: &[u8],
    at: usize,
    expect: u64,
) -> std::result::Result<(Vec<JournalRecord>, usize), String> {
    if bytes.get(at..at + 4) != Some(FRAME_MAGIC) {
        return Err("no frame mark".into());
    }
    let len = u32_at(bytes, at + 4).ok_or("frame header cut short")? as usize;
    let crc = u32_at(bytes, at + 8).ok_or("frame header cut short")?;
    let payload = bytes
        .get(at + 12..at + 12 + len)
        .ok_or("frame cut short (torn append)")?;
    if crc32c::crc32c(payload) != crc {
        return Err("frame checksum mismatch".into());
    }
    let count = u32_at(payload, 0).ok_or("empty frame")? as usize;
    let mut records = Vec::with_capacity(count.min(4096));
    let mut pos = 4;
    let mut next = expect;
    for _ in 0..count {
        let lsn = u64_at(payload, pos).ok_or("record cut short")?;
        let size = u32_at(payload, pos + 8).ok_or("record cut short")? as usize;
        let changeset = payload
            .get(pos + 12..pos + 12 + size)
            .ok_or("record cut short")?;
        if lsn != next {
            return Err(format!("record LSN {lsn} where {next} was due"));
        }
        records.push(JournalRecord {
            lsn,
            changeset: changeset.to_vec(),
        });
        next = lsn + 1;
        pos += 12 + size;
    }
    Ok((records, at + 12 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lsn: u64) -> JournalRecord {
        JournalRecord {
            lsn,
            changeset: vec![lsn as u8; lsn as usize % 7 + 1],
        }
    }

    fn segment(first: u64, frames: &[&[u64]]) -> Vec<u8> {
        let mut out = encode_segment_header(&SegmentHeader {
            format: FORMAT,
            cluster_id: "c1".into(),
            first_lsn: first,
            created_unix_ms: 5,
        });
        for frame in frames {
            let records: Vec<_> = frame.iter().map(|&l| record(l)).collect();
            out.extend(encode_frame(&records));
        }
        out
    }

    #[test]
    fn names_round_trip_and_sort_by_lsn() {
        let a = segment_name(9, 1_700_000_000_000);
        let b = segment_name(10, 1_600_000_000_000);
        assert_eq!(parse_segment_name(&a), Some((9, 1_700_000_000_000)));
        assert!(a < b);
        assert!(crate::node::is_safe_meta_name(&a));
        assert_eq!(parse_segment_name("snapshot-1-2.mgsnap"), None);
    }

    #[test]
    fn frames_read_back_in_order() {
        let bytes = segment(3, &[&[3, 4], &[5], &[6, 7, 8]]);
        let parsed = parse_segment(&bytes).unwrap();
        assert_eq!(parsed.records, (3..=8).map(record).collect::<Vec<_>>());
        assert_eq!(parsed.stopped, None);
        assert_eq!(parsed.last_lsn(), Some(8));
    }

    #[test]
    fn a_torn_or_flipped_frame_ends_the_copy_there() {
        let whole = segment(1, &[&[1, 2], &[3], &[4, 5]]);
        // Torn: the last frame cut in the middle.
        let torn = &whole[..whole.len() - 3];
        let parsed = parse_segment(torn).unwrap();
        assert_eq!(parsed.last_lsn(), Some(3));
        assert!(parsed.stopped.unwrap().contains("cut short"));
        // A flipped bit in the second frame: only the first is kept.
        let first_frame_end = segment(1, &[&[1, 2]]).len();
        let mut flipped = whole.clone();
        flipped[first_frame_end + 14] ^= 0x10;
        let parsed = parse_segment(&flipped).unwrap();
        assert_eq!(parsed.last_lsn(), Some(2));
        assert!(parsed.stopped.unwrap().contains("checksum"));
        // A broken header: not a segment at all.
        let mut header = whole;
        header[20] ^= 1;
        assert!(parse_segment(&header).is_err());
    }

    #[test]
    fn zeros_written_ahead_end_a_copy_intact_but_a_torn_frame_before_them_does_not() {
        let whole = segment(1, &[&[1, 2], &[3]]);
        let mut ahead = whole.clone();
        ahead.resize(whole.len() + 4096, 0);
        let parsed = parse_segment(&ahead).unwrap();
        assert_eq!(parsed.last_lsn(), Some(3));
        assert_eq!(parsed.stopped, None, "a zero tail is room, not damage");
        // An append torn inside the room written ahead: part of its frame
        // reached the disk, the rest is still zeros.
        let next = segment(1, &[&[1, 2], &[3], &[4, 5]]);
        let mut torn = next[..next.len() - 5].to_vec();
        torn.resize(next.len() + 4096, 0);
        let parsed = parse_segment(&torn).unwrap();
        assert_eq!(parsed.last_lsn(), Some(3));
        assert!(parsed.stopped.unwrap().contains("checksum"));
    }

    #[test]
    fn a_gap_in_the_lsn_order_ends_the_copy() {
        let bytes = segment(1, &[&[1, 2], &[4]]);
        let parsed = parse_segment(&bytes).unwrap();
        assert_eq!(parsed.last_lsn(), Some(2));
        assert!(parsed.stopped.unwrap().contains("LSN 4 where 3"));
    }
}
