//! An object read straight from its prototype data shards, for the usual
//! case where all of them are there: the shard files in order, cut at the
//! object's size (the rest is the prototype's zero padding), hashed as
//! they go. At the end the SHA-256 is compared with the recorded one and a
//! mismatch is a read error, so the store, which keeps nothing of an upload
//! whose reader fails, never keeps wrong bytes. Memory stays at the
//! caller's buffer, whatever the object's size.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;

pub struct ShardStream {
    paths: Vec<PathBuf>,
    shard_len: u64,
    /// Object bytes not yet returned.
    left: u64,
    /// The shard being read and its bytes still to give.
    current: Option<(File, u64)>,
    next: usize,
    hasher: Sha256,
    expected: [u8; 32],
    /// Set when a shard could not be read or the digest did not match.
    failed: bool,
    finished: bool,
}

impl ShardStream {
    /// The object of `size` bytes held by the data shards at `paths`, each
    /// `shard_len` bytes, expected to hash to `expected`.
    pub fn new(paths: Vec<PathBuf>, shard_len: u64, size: u64, expected: [u8; 32]) -> ShardStream {
        ShardStream {
            paths,
            shard_len,
            left: size,
            current: None,
            next: 0,
            hasher: Sha256::new(),
            expected,
            failed: false,
            finished: false,
        }
    }

    /// Whether the bytes were wrong or a shard unreadable (rather than the
    /// store failing).
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn fail(&mut self, error: std::io::Error) -> std::io::Error {
        self.failed = true;
        error
    }
}

impl Read for ShardStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            if !self.finished {
                self.finished = true;
                let digest = std::mem::take(&mut self.hasher).finalize();
                if digest.as_slice() != self.expected {
                    return Err(self.fail(std::io::Error::new(
                        ErrorKind::InvalidData,
                        "the data shards do not match the recorded SHA-256",
                    )));
                }
            }
            return Ok(0);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.current.is_none() {
            let Some(path) = self.paths.get(self.next) else {
                return Err(self.fail(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the data shards end before the object's size",
                )));
            };
            let file = File::open(path).map_err(|e| self.fail(e))?;
            self.next += 1;
            self.current = Some((file, self.shard_len.min(self.left)));
        }
        let (file, remaining) = self.current.as_mut().expect("a shard is open");
        let want = (*remaining).min(buf.len() as u64) as usize;
        let read = loop {
            match file.read(&mut buf[..want]) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = match read {
            Ok(0) => {
                return Err(self.fail(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "a shard file is shorter than its size",
                )))
            }
            Ok(n) => n,
            Err(e) => return Err(self.fail(e)),
        };
        if let Some((_, remaining)) = self.current.as_mut() {
            *remaining -= n as u64;
            if *remaining == 0 {
                self.current = None;
            }
        }
        self.left -= n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards_of(dir: &std::path::Path, data: &[u8], k: usize) -> (Vec<PathBuf>, u64) {
        let len = data.len().div_ceil(k);
        let mut padded = data.to_vec();
        padded.resize(len * k, 0);
        let paths = (0..k)
            .map(|d| {
                let path = dir.join(format!("shard_{d:03}"));
                std::fs::write(&path, &padded[d * len..(d + 1) * len]).unwrap();
                path
            })
            .collect();
        (paths, len as u64)
    }

    #[test]
    fn streams_the_object_cut_at_its_size_and_checks_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let mut data: Vec<u8> = (0..10_001u32).map(|i| (i % 251) as u8).collect();
        data.extend([0, 0, 0]);
        let (paths, len) = shards_of(dir.path(), &data, 3);
        let sum: [u8; 32] = Sha256::digest(&data).into();
        let mut stream = ShardStream::new(paths.clone(), len, data.len() as u64, sum);
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        assert_eq!(out, data, "trailing zeros kept, padding dropped");
        assert!(!stream.failed());

        let mut wrong = ShardStream::new(paths, len, data.len() as u64, [0; 32]);
        let err = wrong.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(wrong.failed());
    }

    #[test]
    fn a_short_shard_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 100];
        let (paths, len) = shards_of(dir.path(), &data, 2);
        std::fs::write(&paths[1], [7u8; 10]).unwrap();
        let sum: [u8; 32] = Sha256::digest(&data).into();
        let mut stream = ShardStream::new(paths, len, 100, sum);
        assert!(stream.read_to_end(&mut Vec::new()).is_err());
        assert!(stream.failed());
    }
}
