//! The on-disk format of segment files: a checksummed file header, then
//! entries back to back, each a checksummed entry header (magic, kind,
//! shard key, payload length, sequence number, modification time, CRC-32C
//! of header and payload) followed by its payload. The rest of a segment is
//! zeros (it is pre-written whole), so a scan ends at the first header that
//! is all zeros or does not check out; this module also owns that scan.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};

use crate::node::ShardKey;

/// First bytes of every segment file.
pub(super) const FILE_MAGIC: &[u8; 8] = b"MGCSSEG1";
/// Bytes of the file header; entries start here.
pub(super) const FILE_HEADER_LEN: u64 = 64;
/// First bytes of every entry header ("MGSE").
const ENTRY_MAGIC: u32 = 0x4553_474d;
/// Bytes of an entry header; the payload follows.
pub(super) const ENTRY_HEADER_LEN: u64 = 48;
/// Where the CRC sits in an entry header (it covers the header with this
/// field zeroed, then the payload).
const CRC_AT: usize = 40;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// The shard's bytes.
    Put = 1,
    /// The shard was removed (no payload).
    Tombstone = 2,
}

/// One entry's header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EntryHeader {
    pub kind: EntryKind,
    pub key: ShardKey,
    pub len: u32,
    /// Per-node order of writes: of two entries for one key, the higher wins.
    pub seq: u64,
    /// When the shard was stored (milliseconds since the epoch); a copy
    /// made by the cleaner keeps it.
    pub mtime_ms: u64,
}

/// The file header of segment `id`.
pub(super) fn file_header(id: u64) -> [u8; FILE_HEADER_LEN as usize] {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(FILE_MAGIC);
    h[8..16].copy_from_slice(&id.to_le_bytes());
    h[16..20].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The segment id a file header names, if it checks out.
pub(super) fn parse_file_header(h: &[u8]) -> Option<u64> {
    if h.len() < 24 || &h[..8] != FILE_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(h[20..24].try_into().ok()?);
    if crc32c::crc32c(&h[..20]) != crc {
        return None;
    }
    Some(u64::from_le_bytes(h[8..16].try_into().ok()?))
}

/// The header bytes of an entry whose payload is `parts`, CRC included.
pub(super) fn entry_header(h: &EntryHeader, parts: &[&[u8]]) -> [u8; ENTRY_HEADER_LEN as usize] {
    let mut b = [0u8; ENTRY_HEADER_LEN as usize];
    b[..4].copy_from_slice(&ENTRY_MAGIC.to_le_bytes());
    b[4] = h.kind as u8;
    b[8..16].copy_from_slice(&h.key.chunk_id.to_le_bytes());
    b[16..18].copy_from_slice(&h.key.index.to_le_bytes());
    b[20..24].copy_from_slice(&h.len.to_le_bytes());
    b[24..32].copy_from_slice(&h.seq.to_le_bytes());
    b[32..40].copy_from_slice(&h.mtime_ms.to_le_bytes());
    let mut crc = crc32c::crc32c(&b);
    for p in parts {
        crc = crc32c::crc32c_append(crc, p);
    }
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decode an entry header; None when it is not one (zeros, garbage, an
/// unknown kind). The CRC is checked by the caller, with the payload.
fn parse_entry_header(b: &[u8; ENTRY_HEADER_LEN as usize]) -> Option<(EntryHeader, u32)> {
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    if u32_at(0) != ENTRY_MAGIC {
        return None;
    }
    let kind = match b[4] {
        1 => EntryKind::Put,
        2 => EntryKind::Tombstone,
        _ => return None,
    };
    let header = EntryHeader {
        kind,
        key: ShardKey {
            chunk_id: u64_at(8),
            index: u16::from_le_bytes([b[16], b[17]]),
        },
        len: u32_at(20),
        seq: u64_at(24),
        mtime_ms: u64_at(32),
    };
    if kind == EntryKind::Tombstone && header.len != 0 {
        return None;
    }
    Some((header, u32_at(CRC_AT)))
}

/// How a scan of one segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ScanEnd {
    /// Where the next entry would go: the end of the last good entry.
    pub end: u64,
    /// Whether everything after `end` is zeros: appending may continue
    /// there. False after a torn or corrupt entry (or stray bytes), whose
    /// remains must never be read as entries again.
    pub clean_tail: bool,
    /// Corrupt entries stepped over: one whose CRC fails but whose end is
    /// followed by a good entry (a damaged byte, not a torn tail).
    pub skipped: u64,
}

/// Read the entries of the segment file `file` (of `size` bytes) in order,
/// calling `visit(offset of the entry, header)` for each whole entry whose
/// CRC checks out. The scan stops at the first header that is zeros or bad,
/// or whose payload is cut short: a torn tail. An entry that fails its CRC
/// is stepped over when a good entry follows it (only that entry is lost);
/// otherwise it is the torn tail.
pub(super) fn scan(
    file: &File,
    size: u64,
    mut visit: impl FnMut(u64, &EntryHeader),
) -> std::io::Result<ScanEnd> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(FILE_HEADER_LEN))?;
    let mut at = FILE_HEADER_LEN;
    let mut payload = Vec::new();
    // A corrupt entry not yet known to be followed by a good one.
    let mut bad_at: Option<u64> = None;
    let mut skipped = 0;
    let torn = |bad: u64, skipped: u64| ScanEnd {
        end: bad,
        clean_tail: false,
        skipped,
    };
    loop {
        if at + ENTRY_HEADER_LEN > size {
            if let Some(bad) = bad_at {
                return Ok(torn(bad, skipped));
            }
            return Ok(ScanEnd {
                end: at,
                clean_tail: rest_is_zero(&mut reader, size - at)?,
                skipped,
            });
        }
        let mut hb = [0u8; ENTRY_HEADER_LEN as usize];
        reader.read_exact(&mut hb)?;
        let parsed = parse_entry_header(&hb);
        let good = parsed.and_then(|(h, crc)| {
            if at + ENTRY_HEADER_LEN + h.len as u64 > size {
                return None;
            }
            Some((h, crc))
        });
        let Some((h, crc)) = good else {
            if let Some(bad) = bad_at {
                return Ok(torn(bad, skipped));
            }
            let zero = hb.iter().all(|&b| b == 0)
                && rest_is_zero(&mut reader, size - at - ENTRY_HEADER_LEN)?;
            return Ok(ScanEnd {
                end: at,
                clean_tail: zero,
                skipped,
            });
        };
        payload.resize(h.len as usize, 0);
        reader.read_exact(&mut payload)?;
        let mut zeroed = hb;
        zeroed[CRC_AT..CRC_AT + 4].fill(0);
        let computed = crc32c::crc32c_append(crc32c::crc32c(&zeroed), &payload);
        if computed != crc {
            if let Some(bad) = bad_at {
                return Ok(torn(bad, skipped));
            }
            bad_at = Some(at);
        } else {
            if bad_at.take().is_some() {
                skipped += 1;
            }
            visit(at, &h);
        }
        at += ENTRY_HEADER_LEN + h.len as u64;
    }
}

/// Whether the next `len` bytes of `reader` are all zeros.
fn rest_is_zero(reader: &mut impl Read, len: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        match reader.read_exact(&mut buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(true),
            Err(e) => return Err(e),
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        left -= n as u64;
    }
    Ok(true)
}

/// Bytes an entry with a payload of `len` bytes takes.
pub(super) fn entry_len(len: u64) -> u64 {
    ENTRY_HEADER_LEN + len
}
