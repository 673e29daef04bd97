//! Sparse files. A file's holes are chunks that hold no data: chunks absent
//! from the metadata once committed, and in an open file's state a hole
//! slot (a punched chunk), a chunk past a pending truncation or an empty
//! buffer. This module answers, for committed and still-buffered content
//! alike, what `st_blocks` counts (the file bytes its chunks hold, so a
//! 1 GiB hole costs nothing in `du`) and where data and holes are
//! (`SEEK_DATA`/`SEEK_HOLE`, at chunk granularity: a chunk that holds any
//! data is data, and the end of the file is a hole). Punching holes and
//! zeroing ranges is the writer's (`OpenFile::zero_range`); `posix` decides
//! which `fallocate` does what.

use std::collections::BTreeMap;

use super::state::{Content, FileState};
use super::writer::OpenFile;
use super::Service;
use crate::error::Result;

/// What `Service::seek` looks for from an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// `SEEK_DATA`: the next byte that is data.
    Data,
    /// `SEEK_HOLE`: the next byte in a hole (the end of the file counts).
    Hole,
}

/// Data length per chunk index, for the chunks that hold data.
pub(crate) type DataChunks = BTreeMap<u64, u64>;

impl FileState {
    /// The chunks that hold data now: the committed ones (`committed`:
    /// (index, length) from the metadata) with the uncommitted state laid
    /// over (buffers and uploads replace them, hole slots and a pending
    /// truncation remove them).
    pub(super) fn data_chunks(&self, committed: &[(u64, u64)]) -> DataChunks {
        let mut out = DataChunks::new();
        for &(index, len) in committed {
            let cut = self.truncation.is_some_and(|t| index >= t.from);
            if !cut && len > 0 && !self.chunks.contains_key(&index) {
                out.insert(index, len);
            }
        }
        for (index, slot) in &self.chunks {
            let len = match &slot.content {
                Content::Dirty { buf, .. } => buf.len() as u64,
                Content::Stored(up) => up.data_len(),
                Content::Hole => 0,
            };
            if len > 0 {
                out.insert(*index, len);
            }
        }
        out
    }
}

impl OpenFile {
    /// The file's size and data chunks as its readers see them now;
    /// `committed_size` is the size in the metadata (used when nothing is
    /// buffered).
    pub(super) fn data_view(
        &self,
        committed: &[(u64, u64)],
        committed_size: u64,
    ) -> (u64, DataChunks) {
        let st = self.state.lock();
        let size = if st.modified { st.size } else { committed_size };
        (size, st.data_chunks(committed))
    }
}

impl Service {
    /// `lseek(fd, offset, SEEK_DATA or SEEK_HOLE)` through handle `fh`, with
    /// the writes still buffered in the open file counted. None where Linux
    /// answers ENXIO: `offset` at or past the end of the file, or (for
    /// `Seek::Data`) no data at or after it.
    pub fn seek(&self, fh: u64, offset: u64, what: Seek) -> Result<Option<u64>> {
        let (handle, file) = self.files.file_of(fh)?;
        let committed = self.ctx.meta.chunk_lengths(handle.ino)?;
        let committed_size = self.ctx.committed_inode(handle.ino)?.size;
        let (size, data) = file.data_view(&committed, committed_size);
        Ok(seek_in(&data, size, self.ctx.chunk_size, offset, what))
    }
}

/// Where `what` is from `offset` in a file of `size` bytes whose chunks of
/// `chunk_size` bytes in `data` hold data.
fn seek_in(data: &DataChunks, size: u64, chunk_size: u64, offset: u64, what: Seek) -> Option<u64> {
    if offset >= size {
        return None;
    }
    let first = offset / chunk_size;
    match what {
        Seek::Data => data
            .range(first..)
            .next()
            .map(|(&index, _)| (index * chunk_size).max(offset))
            .filter(|&at| at < size),
        Seek::Hole => {
            let mut index = first;
            while data.contains_key(&index) {
                index += 1;
            }
            Some((index * chunk_size).max(offset).min(size))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: u64 = 100;

    fn data(indexes: &[u64]) -> DataChunks {
        indexes.iter().map(|&i| (i, CS)).collect()
    }

    #[test]
    fn data_and_holes_are_found_at_chunk_granularity() {
        // Chunks 0 and 3 hold data, 1 and 2 are a hole; the file ends in chunk 4.
        let d = data(&[0, 3]);
        let size = 450;
        assert_eq!(seek_in(&d, size, CS, 0, Seek::Data), Some(0));
        assert_eq!(seek_in(&d, size, CS, 42, Seek::Data), Some(42));
        assert_eq!(seek_in(&d, size, CS, 42, Seek::Hole), Some(100));
        assert_eq!(seek_in(&d, size, CS, 150, Seek::Data), Some(300));
        assert_eq!(seek_in(&d, size, CS, 150, Seek::Hole), Some(150));
        assert_eq!(seek_in(&d, size, CS, 310, Seek::Hole), Some(400));
        // Chunk 4 is a hole to the end: no data after 400, the hole is there.
        assert_eq!(seek_in(&d, size, CS, 400, Seek::Data), None);
        assert_eq!(seek_in(&d, size, CS, 420, Seek::Hole), Some(420));
        // At or past the end: ENXIO both ways.
        assert_eq!(seek_in(&d, size, CS, 450, Seek::Hole), None);
        assert_eq!(seek_in(&d, size, CS, 451, Seek::Data), None);
    }

    #[test]
    fn the_end_of_a_file_full_of_data_is_its_only_hole() {
        let d = data(&[0, 1, 2]);
        assert_eq!(seek_in(&d, 250, CS, 0, Seek::Hole), Some(250));
        assert_eq!(seek_in(&d, 250, CS, 249, Seek::Data), Some(249));
        let empty = data(&[]);
        assert_eq!(seek_in(&empty, 250, CS, 0, Seek::Data), None);
        assert_eq!(seek_in(&empty, 250, CS, 0, Seek::Hole), Some(0));
        assert_eq!(seek_in(&empty, 0, CS, 0, Seek::Hole), None);
    }
}
