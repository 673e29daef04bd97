//! A chunk's verified bytes as the shard reads delivered them: one piece per
//! data shard read, never copied into one buffer. A range inside one piece
//! is handed out without a copy (a reference-counted slice); only a range
//! that spans two pieces is copied, and only that range.

use bytes::{Bytes, BytesMut};

/// Bytes of one chunk (or of a range of it), in pieces.
#[derive(Clone, Debug, Default)]
pub struct ChunkBytes {
    pieces: Vec<Bytes>,
    len: usize,
}

impl ChunkBytes {
    pub fn from_pieces(pieces: Vec<Bytes>) -> ChunkBytes {
        let len = pieces.iter().map(Bytes::len).sum();
        ChunkBytes { pieces, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `[a, b)`, cut at the end: free within one piece, a copy of just
    /// the range across pieces.
    pub fn slice(&self, a: usize, b: usize) -> Bytes {
        let b = b.min(self.len);
        if a >= b {
            return Bytes::new();
        }
        let mut joined: Option<BytesMut> = None;
        let mut start = 0;
        for piece in &self.pieces {
            let end = start + piece.len();
            if end > a && start < b {
                let (from, to) = (a.max(start) - start, b.min(end) - start);
                if a >= start && b <= end {
                    return piece.slice(from..to);
                }
                joined
                    .get_or_insert_with(|| BytesMut::with_capacity(b - a))
                    .extend_from_slice(&piece[from..to]);
            }
            if end >= b {
                break;
            }
            start = end;
        }
        joined.map(BytesMut::freeze).unwrap_or_default()
    }

    /// All of it as one buffer (a copy only when there are several pieces).
    pub fn into_bytes(mut self) -> Bytes {
        match self.pieces.len() {
            0 => Bytes::new(),
            1 => self.pieces.pop().expect("one piece"),
            _ => self.slice(0, self.len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(sizes: &[usize]) -> (ChunkBytes, Vec<u8>) {
        let mut all = Vec::new();
        let mut parts = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let part: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            all.extend_from_slice(&part);
            parts.push(Bytes::from(part));
        }
        (ChunkBytes::from_pieces(parts), all)
    }

    #[test]
    fn every_range_matches_the_joined_bytes() {
        let (data, all) = pieces(&[5, 0, 7, 3]);
        assert_eq!(data.len(), 15);
        for a in 0..=16 {
            for b in 0..=17 {
                let want: &[u8] = if a < b.min(15) {
                    &all[a..b.min(15)]
                } else {
                    &[]
                };
                assert_eq!(&data.slice(a, b)[..], want, "range {a}..{b}");
            }
        }
        assert_eq!(&data.into_bytes()[..], &all[..]);
    }

    #[test]
    fn a_range_inside_one_piece_shares_its_memory() {
        let (data, _) = pieces(&[8, 8]);
        let inside = data.slice(9, 12);
        let piece = data.slice(8, 16);
        assert_eq!(inside.as_ptr(), piece[1..].as_ptr());
        assert!(ChunkBytes::default().into_bytes().is_empty());
    }
}
