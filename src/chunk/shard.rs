//! The on-disk shard format. A shard file is self-describing:
//!
//! ```text
//! header             v1: 64 bytes, v2: 256 bytes (below)
//! block table        one CRC32C per payload block (BLOCK_SIZE bytes)
//! payload            the shard's bytes
//! ```
//!
//! Both header versions start with the same 60 bytes: magic "MGCSHRD1",
//! format version, shard index, k, m, chunk id, cluster tag (16 bytes),
//! chunk data length, payload length, block size. A v1 header ends with the
//! CRC32C of its first 60 bytes. A v2 header (what new writes use) records
//! its own length (bytes 56..60) and carries the chunk's *origin*, what it
//! takes to rebuild files when the metadata is gone (`minigcs fsck
//! --rebuild`): the inode (0 when not known yet: an API PUT gets its inode
//! at commit), a stamp, the chunk's index in the file, the file's size, and
//! the file's last known name (an object key or the file's entry name, cut
//! to `ORIGIN_NAME_MAX` bytes); it ends with the CRC32C of its first 252
//! bytes, so the checksum still covers the whole header.
//!
//! What the origin means: chunks are encoded before their commit (a file
//! written through the mount uploads each full chunk while writing goes on),
//! so the version and size a commit will give are not known yet. The stamp
//! is taken when the writer hands the chunk to the uploaders: nanoseconds
//! since the epoch, strictly increasing within a process (`next_stamp`), so
//! a later write of a file always carries a larger stamp. The size is the
//! file's size as the writer knew it at that moment (for a PUT: the bytes
//! received so far; for a file: its uncommitted size). The rule for a
//! rebuild is therefore "newest stamp wins": per file and chunk index the
//! chunk with the largest stamp is the file's content there, and the size
//! carried by the file's newest chunk is its size.
//!
//! A reader verifies the header, then only the blocks it reads, so a partial
//! read checks exactly what it returns and a swapped, truncated or zeroed
//! shard is caught. Old (v1) shards stay readable, verifiable and
//! repairable; only their origin is unknown. This module owns the byte
//! layout and nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"MGCSHRD1";
/// The format new shards are written in.
pub const FORMAT_VERSION: u16 = 2;
pub const HEADER_LEN_V1: usize = 64;
pub const HEADER_LEN_V2: usize = 256;
/// The longest header of any version: enough to read to decode any header.
pub const HEADER_LEN_MAX: usize = HEADER_LEN_V2;
pub const BLOCK_SIZE: usize = 64 * 1024;
/// Bytes of a file's name a v2 header keeps (longer names are cut at a
/// character boundary).
pub const ORIGIN_NAME_MAX: usize = 154;

/// Where a chunk came from, as its writer knew it when it encoded it (v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardOrigin {
    /// 0 when not known when the chunk was encoded (an API PUT).
    pub inode: u64,
    /// Order of writes: larger is newer (see the module comment).
    pub stamp: u64,
    pub chunk_index: u64,
    /// The file's size when the chunk was handed to the uploaders.
    pub file_size: u64,
    name_len: u8,
    name: [u8; ORIGIN_NAME_MAX],
}

impl Default for ShardOrigin {
    fn default() -> Self {
        ShardOrigin {
            inode: 0,
            stamp: 0,
            chunk_index: 0,
            file_size: 0,
            name_len: 0,
            name: [0; ORIGIN_NAME_MAX],
        }
    }
}

impl ShardOrigin {
    pub fn new(inode: u64, stamp: u64, chunk_index: u64, file_size: u64, name: &str) -> Self {
        let mut origin = ShardOrigin {
            inode,
            stamp,
            chunk_index,
            file_size,
            ..Default::default()
        };
        origin.set_name(name);
        origin
    }

    /// Keep `name`, cut to `ORIGIN_NAME_MAX` bytes at a character boundary.
    pub fn set_name(&mut self, name: &str) {
        let mut end = name.len().min(ORIGIN_NAME_MAX);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        self.name = [0; ORIGIN_NAME_MAX];
        self.name[..end].copy_from_slice(&name.as_bytes()[..end]);
        self.name_len = end as u8;
    }

    /// The file's last known name ("" when none was recorded).
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("")
    }
}

/// A stamp for a chunk handed to the uploaders now: nanoseconds since the
/// epoch, strictly larger than every stamp this process gave before.
pub fn next_stamp() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    pub shard_index: u16,
    pub k: u16,
    pub m: u16,
    pub chunk_id: u64,
    pub cluster_tag: [u8; 16],
    pub data_len: u64,
    pub payload_len: u32,
    /// None: a v1 header (written before origins were recorded).
    pub origin: Option<ShardOrigin>,
}

impl ShardHeader {
    pub fn block_count(&self) -> usize {
        (self.payload_len as usize).div_ceil(BLOCK_SIZE)
    }

    /// Bytes of this header on disk.
    pub fn header_len(&self) -> usize {
        match self.origin {
            Some(_) => HEADER_LEN_V2,
            None => HEADER_LEN_V1,
        }
    }

    /// Bytes after the header: block table and payload.
    pub fn body_len(&self) -> u64 {
        (4 * self.block_count()) as u64 + self.payload_len as u64
    }

    /// Offset of the payload in the shard file.
    pub fn payload_offset(&self) -> u64 {
        (self.header_len() + 4 * self.block_count()) as u64
    }

    pub fn file_len(&self) -> u64 {
        self.header_len() as u64 + self.body_len()
    }

    /// Same chunk, shard and layout (the origin is not compared: a reader
    /// knows a shard by what the metadata says, not by its writer's view).
    pub fn same_identity(&self, other: &ShardHeader) -> bool {
        ShardHeader {
            origin: None,
            ..*self
        } == ShardHeader {
            origin: None,
            ..*other
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut h = vec![0u8; self.header_len()];
        h[0..8].copy_from_slice(MAGIC);
        let version: u16 = if self.origin.is_some() { 2 } else { 1 };
        h[8..10].copy_from_slice(&version.to_le_bytes());
        h[10..12].copy_from_slice(&self.shard_index.to_le_bytes());
        h[12..14].copy_from_slice(&self.k.to_le_bytes());
        h[14..16].copy_from_slice(&self.m.to_le_bytes());
        h[16..24].copy_from_slice(&self.chunk_id.to_le_bytes());
        h[24..40].copy_from_slice(&self.cluster_tag);
        h[40..48].copy_from_slice(&self.data_len.to_le_bytes());
        h[48..52].copy_from_slice(&self.payload_len.to_le_bytes());
        h[52..56].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        match &self.origin {
            None => {
                let crc = crc32c::crc32c(&h[0..60]);
                h[60..64].copy_from_slice(&crc.to_le_bytes());
            }
            Some(o) => {
                h[56..60].copy_from_slice(&(HEADER_LEN_V2 as u32).to_le_bytes());
                h[64..72].copy_from_slice(&o.inode.to_le_bytes());
                h[72..80].copy_from_slice(&o.stamp.to_le_bytes());
                h[80..88].copy_from_slice(&o.chunk_index.to_le_bytes());
                h[88..96].copy_from_slice(&o.file_size.to_le_bytes());
                h[96..98].copy_from_slice(&(o.name_len as u16).to_le_bytes());
                h[98..98 + ORIGIN_NAME_MAX].copy_from_slice(&o.name);
                let crc = crc32c::crc32c(&h[0..252]);
                h[252..256].copy_from_slice(&crc.to_le_bytes());
            }
        }
        h
    }

    /// Bytes of the header that starts `h` (which holds at least its first
    /// 10 bytes): v1 64, v2 256.
    pub fn encoded_len(h: &[u8]) -> Result<usize> {
        if h.len() < 10 || &h[0..8] != MAGIC {
            return Err(Error::Corrupt("shard magic mismatch".into()));
        }
        match u16::from_le_bytes(h[8..10].try_into().unwrap()) {
            1 => Ok(HEADER_LEN_V1),
            2 => Ok(HEADER_LEN_V2),
            v => Err(Error::Corrupt(format!("unknown shard format {v}"))),
        }
    }

    pub fn decode(h: &[u8]) -> Result<ShardHeader> {
        let len = Self::encoded_len(h)?;
        if h.len() < len {
            return Err(Error::Corrupt("shard header truncated".into()));
        }
        let crc = u32::from_le_bytes(h[len - 4..len].try_into().unwrap());
        if crc32c::crc32c(&h[0..len - 4]) != crc {
            return Err(Error::Corrupt("shard header checksum mismatch".into()));
        }
        let u16_at = |i: usize| u16::from_le_bytes(h[i..i + 2].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap());
        let block = u32_at(52);
        if block as usize != BLOCK_SIZE {
            return Err(Error::Corrupt(format!("unsupported block size {block}")));
        }
        let origin = if len == HEADER_LEN_V2 {
            if u32_at(56) as usize != HEADER_LEN_V2 {
                return Err(Error::Corrupt("shard header length mismatch".into()));
            }
            let name_len = u16_at(96) as usize;
            if name_len > ORIGIN_NAME_MAX {
                return Err(Error::Corrupt("shard origin name too long".into()));
            }
            let mut origin = ShardOrigin {
                inode: u64_at(64),
                stamp: u64_at(72),
                chunk_index: u64_at(80),
                file_size: u64_at(88),
                ..Default::default()
            };
            origin.name_len = name_len as u8;
            origin.name.copy_from_slice(&h[98..98 + ORIGIN_NAME_MAX]);
            Some(origin)
        } else {
            None
        };
        Ok(ShardHeader {
            shard_index: u16_at(10),
            k: u16_at(12),
            m: u16_at(14),
            chunk_id: u64_at(16),
            cluster_tag: h[24..40].try_into().unwrap(),
            data_len: u64_at(40),
            payload_len: u32_at(48),
            origin,
        })
    }
}

/// CRC32C of each payload block, little-endian, ready to write after the header.
pub fn block_table(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len().div_ceil(BLOCK_SIZE) * 4);
    for block in payload.chunks(BLOCK_SIZE) {
        out.extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
    }
    out
}

/// A whole-shard checksum recorded in metadata: CRC32C of the block table.
pub fn table_checksum(table: &[u8]) -> u32 {
    crc32c::crc32c(table)
}

/// Verify `data` (payload bytes starting at block `first_block`) against the table.
pub fn verify_blocks(table: &[u8], first_block: usize, data: &[u8]) -> Result<()> {
    for (i, block) in data.chunks(BLOCK_SIZE).enumerate() {
        let b = first_block + i;
        let want = table
            .get(b * 4..b * 4 + 4)
            .ok_or_else(|| Error::Corrupt("block table too short".into()))?;
        if crc32c::crc32c(block).to_le_bytes() != want {
            return Err(Error::Corrupt(format!("block {b} checksum mismatch")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ShardHeader {
        ShardHeader {
            shard_index: 2,
            k: 4,
            m: 2,
            chunk_id: 99,
            cluster_tag: [5; 16],
            data_len: 1000,
            payload_len: 250,
            origin: Some(ShardOrigin::new(42, 7, 3, 123_456, "docs/report.txt")),
        }
    }

    /// A v1 header laid out byte by byte as minigcs wrote it before v2.
    fn v1_bytes() -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[0..8].copy_from_slice(b"MGCSHRD1");
        h[8..10].copy_from_slice(&1u16.to_le_bytes());
        h[10..12].copy_from_slice(&2u16.to_le_bytes());
        h[12..14].copy_from_slice(&4u16.to_le_bytes());
        h[14..16].copy_from_slice(&2u16.to_le_bytes());
        h[16..24].copy_from_slice(&99u64.to_le_bytes());
        h[24..40].copy_from_slice(&[5; 16]);
        h[40..48].copy_from_slice(&1000u64.to_le_bytes());
        h[48..52].copy_from_slice(&250u32.to_le_bytes());
        h[52..56].copy_from_slice(&(64u32 * 1024).to_le_bytes());
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    #[test]
    fn v2_header_round_trips_and_rejects_flipped_bits() {
        let h = header();
        let mut bytes = h.encode();
        assert_eq!(bytes.len(), HEADER_LEN_V2);
        assert_eq!(ShardHeader::encoded_len(&bytes).unwrap(), HEADER_LEN_V2);
        let back = ShardHeader::decode(&bytes).unwrap();
        assert_eq!(back, h);
        let origin = back.origin.unwrap();
        assert_eq!(
            (
                origin.inode,
                origin.stamp,
                origin.chunk_index,
                origin.file_size
            ),
            (42, 7, 3, 123_456)
        );
        assert_eq!(origin.name(), "docs/report.txt");
        // The checksum covers the identity and the origin alike.
        for at in [17, 70, 100] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(ShardHeader::decode(&bad).is_err(), "flip at {at} unnoticed");
        }
        bytes.truncate(200);
        assert!(ShardHeader::decode(&bytes).is_err());
    }

    #[test]
    fn v1_header_stays_readable() {
        let bytes = v1_bytes();
        let h = ShardHeader::decode(&bytes).unwrap();
        assert_eq!(h.origin, None);
        assert_eq!(h.header_len(), HEADER_LEN_V1);
        assert!(h.same_identity(&header()));
        assert_eq!(h.file_len(), 64 + 4 + 250);
        // Written again without an origin, it is the same v1 bytes.
        assert_eq!(h.encode(), bytes);
        let mut bad = bytes.clone();
        bad[45] ^= 1;
        assert!(ShardHeader::decode(&bad).is_err());
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let name = "é".repeat(100);
        let o = ShardOrigin::new(1, 1, 0, 0, &name);
        assert_eq!(o.name(), "é".repeat(ORIGIN_NAME_MAX / 2));
        let o = ShardOrigin::new(1, 1, 0, 0, &format!("a{name}"));
        assert_eq!(o.name().len(), ORIGIN_NAME_MAX - 1);
    }

    #[test]
    fn stamps_only_grow() {
        let a = next_stamp();
        let b = next_stamp();
        assert!(b > a);
    }

    #[test]
    fn block_verification_catches_one_flipped_byte() {
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let table = block_table(&payload);
        assert_eq!(table.len(), 4 * 4);
        verify_blocks(&table, 0, &payload).unwrap();
        verify_blocks(&table, 1, &payload[BLOCK_SIZE..2 * BLOCK_SIZE]).unwrap();
        let mut bad = payload.clone();
        bad[150_000] ^= 0x10;
        assert!(verify_blocks(&table, 0, &bad).is_err());
    }
}
