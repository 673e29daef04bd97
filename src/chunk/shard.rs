//! The on-disk shard format. A shard file is self-describing:
//!
//! ```text
//! header (64 bytes)  magic "MGCSHRD1", version, shard index, k, m, chunk id,
//!                    cluster tag (16 bytes), chunk data length, payload
//!                    length, block size, CRC32C of the header
//! block table        one CRC32C per payload block (BLOCK_SIZE bytes)
//! payload            the shard's bytes
//! ```
//!
//! A reader verifies the header, then only the blocks it reads, so a partial
//! read checks exactly what it returns and a swapped, truncated or zeroed
//! shard is caught. This module owns the byte layout and nothing else.

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"MGCSHRD1";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 64;
pub const BLOCK_SIZE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    pub shard_index: u16,
    pub k: u16,
    pub m: u16,
    pub chunk_id: u64,
    pub cluster_tag: [u8; 16],
    pub data_len: u64,
    pub payload_len: u32,
}

impl ShardHeader {
    pub fn block_count(&self) -> usize {
        (self.payload_len as usize).div_ceil(BLOCK_SIZE)
    }

    /// Offset of the payload in the shard file.
    pub fn payload_offset(&self) -> u64 {
        (HEADER_LEN + 4 * self.block_count()) as u64
    }

    pub fn file_len(&self) -> u64 {
        self.payload_offset() + self.payload_len as u64
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[10..12].copy_from_slice(&self.shard_index.to_le_bytes());
        h[12..14].copy_from_slice(&self.k.to_le_bytes());
        h[14..16].copy_from_slice(&self.m.to_le_bytes());
        h[16..24].copy_from_slice(&self.chunk_id.to_le_bytes());
        h[24..40].copy_from_slice(&self.cluster_tag);
        h[40..48].copy_from_slice(&self.data_len.to_le_bytes());
        h[48..52].copy_from_slice(&self.payload_len.to_le_bytes());
        h[52..56].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn decode(h: &[u8]) -> Result<ShardHeader> {
        if h.len() < HEADER_LEN {
            return Err(Error::Corrupt("shard header truncated".into()));
        }
        if &h[0..8] != MAGIC {
            return Err(Error::Corrupt("shard magic mismatch".into()));
        }
        let crc = u32::from_le_bytes(h[60..64].try_into().unwrap());
        if crc32c::crc32c(&h[0..60]) != crc {
            return Err(Error::Corrupt("shard header checksum mismatch".into()));
        }
        let u16_at = |i: usize| u16::from_le_bytes(h[i..i + 2].try_into().unwrap());
        if u16_at(8) != FORMAT_VERSION {
            return Err(Error::Corrupt(format!(
                "unknown shard format {}",
                u16_at(8)
            )));
        }
        let block = u32::from_le_bytes(h[52..56].try_into().unwrap());
        if block as usize != BLOCK_SIZE {
            return Err(Error::Corrupt(format!("unsupported block size {block}")));
        }
        Ok(ShardHeader {
            shard_index: u16_at(10),
            k: u16_at(12),
            m: u16_at(14),
            chunk_id: u64::from_le_bytes(h[16..24].try_into().unwrap()),
            cluster_tag: h[24..40].try_into().unwrap(),
            data_len: u64::from_le_bytes(h[40..48].try_into().unwrap()),
            payload_len: u32::from_le_bytes(h[48..52].try_into().unwrap()),
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
        }
    }

    #[test]
    fn header_round_trips_and_rejects_flipped_bits() {
        let h = header();
        let mut bytes = h.encode();
        assert_eq!(ShardHeader::decode(&bytes).unwrap(), h);
        bytes[17] ^= 1;
        assert!(ShardHeader::decode(&bytes).is_err());
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
