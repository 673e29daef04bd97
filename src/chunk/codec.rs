//! Reed-Solomon encoding of one chunk into k data + m parity shards, using
//! `reed-solomon-erasure`. Systematic and contiguous: data shard i holds chunk
//! bytes [i·L, (i+1)·L) where L = ⌈len/k⌉ (the last one zero-padded), so a
//! healthy read copies bytes and never decodes. Reconstruction works on any
//! aligned byte range of the shards, which is what degraded range reads use.

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::error::{Error, Result};

pub struct Codec {
    pub k: usize,
    pub m: usize,
    rs: Option<ReedSolomon>,
}

impl Codec {
    pub fn new(k: usize, m: usize) -> Result<Codec> {
        if k == 0 || k + m > 256 {
            return Err(Error::InvalidArgument(format!("unsupported k={k} m={m}")));
        }
        let rs = if m == 0 {
            None
        } else {
            Some(ReedSolomon::new(k, m).map_err(|e| Error::Other(format!("codec: {e:?}")))?)
        };
        Ok(Codec { k, m, rs })
    }

    /// Bytes per shard for a chunk of `data_len` bytes.
    pub fn shard_len(&self, data_len: usize) -> usize {
        data_len.div_ceil(self.k).max(1)
    }

    /// Pad `chunk` to k·L bytes in place and compute the m parity shards.
    /// Data shard i is then `&chunk[i*L..(i+1)*L]`.
    pub fn encode(&self, chunk: &mut Vec<u8>) -> Result<Vec<Vec<u8>>> {
        let len = self.shard_len(chunk.len());
        chunk.resize(len * self.k, 0);
        let mut parity = vec![vec![0u8; len]; self.m];
        if let Some(rs) = &self.rs {
            let data: Vec<&[u8]> = chunk.chunks(len).collect();
            rs.encode_sep(&data, &mut parity)
                .map_err(|e| Error::Other(format!("encode: {e:?}")))?;
        }
        Ok(parity)
    }

    /// Given equal-length slices of some shards (None = missing), rebuild every
    /// missing shard. Needs at least k present.
    pub fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present < self.k {
            return Err(Error::Unavailable(format!(
                "only {present} of the {} shards needed are readable",
                self.k
            )));
        }
        if present == shards.len() {
            return Ok(());
        }
        match &self.rs {
            Some(rs) => rs
                .reconstruct(shards)
                .map_err(|e| Error::Other(format!("reconstruct: {e:?}"))),
            None => Err(Error::Unavailable(
                "m = 0: a missing shard cannot be rebuilt".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_reconstruct_any_m_missing() {
        for (k, m) in [(2, 1), (4, 2), (1, 2), (3, 0)] {
            let codec = Codec::new(k, m).unwrap();
            let original: Vec<u8> = (0..10_007u32).map(|i| (i * 31 + 7) as u8).collect();
            let mut chunk = original.clone();
            let parity = codec.encode(&mut chunk).unwrap();
            let l = codec.shard_len(original.len());
            let mut all: Vec<Vec<u8>> = chunk.chunks(l).map(|c| c.to_vec()).collect();
            all.extend(parity);
            for missing in 0..(k + m) {
                if m == 0 {
                    break;
                }
                let mut shards: Vec<Option<Vec<u8>>> = all.iter().cloned().map(Some).collect();
                for j in 0..m {
                    shards[(missing + j) % (k + m)] = None;
                }
                codec.reconstruct(&mut shards).unwrap();
                let joined: Vec<u8> = shards[..k]
                    .iter()
                    .flat_map(|s| s.clone().unwrap())
                    .collect();
                assert_eq!(&joined[..original.len()], &original[..]);
            }
        }
    }

    #[test]
    fn too_many_missing_is_an_error() {
        let codec = Codec::new(2, 1).unwrap();
        let mut shards = vec![Some(vec![1u8; 4]), None, None];
        assert!(matches!(
            codec.reconstruct(&mut shards),
            Err(Error::Unavailable(_))
        ));
    }
}
