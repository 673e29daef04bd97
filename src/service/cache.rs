//! A small LRU of whole decoded chunks, keyed by chunk id, that loads each
//! chunk once: a reader (or the read-ahead) asking for a chunk that another
//! load is already fetching waits for that load instead of reading the same
//! shards again. Chunks are immutable, so an entry never goes stale; the
//! cache is bounded in bytes.

use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet, VecDeque};

use crate::chunk::ChunkBytes;
use crate::error::Result;

pub struct ChunkCache {
    inner: Mutex<Inner>,
    /// Signalled whenever a load ends (with or without data).
    load_ended: Condvar,
    capacity: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<u64, ChunkBytes>,
    /// Least recently used first.
    order: VecDeque<u64>,
    bytes: u64,
    /// Chunks being loaded right now.
    loading: HashSet<u64>,
}

impl Inner {
    fn touch(&mut self, chunk_id: u64) -> Option<ChunkBytes> {
        let hit = self.map.get(&chunk_id).cloned()?;
        if let Some(pos) = self.order.iter().position(|&c| c == chunk_id) {
            self.order.remove(pos);
        }
        self.order.push_back(chunk_id);
        Some(hit)
    }

    fn remove(&mut self, chunk_id: u64) {
        if let Some(d) = self.map.remove(&chunk_id) {
            self.bytes -= d.len() as u64;
            if let Some(pos) = self.order.iter().position(|&c| c == chunk_id) {
                self.order.remove(pos);
            }
        }
    }

    fn insert(&mut self, chunk_id: u64, data: ChunkBytes, capacity: u64) {
        let size = data.len() as u64;
        if size > capacity {
            return;
        }
        self.remove(chunk_id);
        self.map.insert(chunk_id, data);
        self.bytes += size;
        self.order.push_back(chunk_id);
        while self.bytes > capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(d) = self.map.remove(&old) {
                self.bytes -= d.len() as u64;
            }
        }
    }
}

/// Ends a load when dropped, even if the loader panicked.
struct Loading<'a> {
    cache: &'a ChunkCache,
    chunk_id: u64,
    data: Option<ChunkBytes>,
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        let mut inner = self.cache.inner.lock();
        inner.loading.remove(&self.chunk_id);
        if let Some(data) = self.data.take() {
            inner.insert(self.chunk_id, data, self.cache.capacity);
        }
        drop(inner);
        self.cache.load_ended.notify_all();
    }
}

impl ChunkCache {
    pub fn new(capacity: u64) -> ChunkCache {
        ChunkCache {
            inner: Mutex::default(),
            load_ended: Condvar::new(),
            capacity,
        }
    }

    pub fn get(&self, chunk_id: u64) -> Option<ChunkBytes> {
        self.inner.lock().touch(chunk_id)
    }

    /// Whether the chunk is cached or being loaded.
    pub fn has_or_loading(&self, chunk_id: u64) -> bool {
        let inner = self.inner.lock();
        inner.map.contains_key(&chunk_id) || inner.loading.contains(&chunk_id)
    }

    pub fn remove(&self, chunk_id: u64) {
        self.inner.lock().remove(chunk_id);
    }

    /// The cached chunk, or what `load` gives (then cached). A load of the
    /// same chunk already under way is waited for, not repeated; should it
    /// fail, the next caller loads again itself.
    pub fn get_or_load(
        &self,
        chunk_id: u64,
        load: impl FnOnce() -> Result<ChunkBytes>,
    ) -> Result<ChunkBytes> {
        let mut inner = self.inner.lock();
        loop {
            if let Some(hit) = inner.touch(chunk_id) {
                return Ok(hit);
            }
            if inner.loading.insert(chunk_id) {
                break;
            }
            self.load_ended.wait(&mut inner);
        }
        drop(inner);
        let mut loading = Loading {
            cache: self,
            chunk_id,
            data: None,
        };
        let data = load()?;
        loading.data = Some(data.clone());
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    fn chunk(n: usize, fill: u8) -> ChunkBytes {
        ChunkBytes::from_pieces(vec![Bytes::from(vec![fill; n])])
    }

    fn put(cache: &ChunkCache, id: u64, data: ChunkBytes) {
        cache.get_or_load(id, || Ok(data)).unwrap();
    }

    #[test]
    fn least_recently_used_chunks_leave_first() {
        let cache = ChunkCache::new(30);
        put(&cache, 1, chunk(10, 1));
        put(&cache, 2, chunk(10, 2));
        put(&cache, 3, chunk(10, 3));
        assert!(cache.get(1).is_some(), "1 is now the most recent");
        put(&cache, 4, chunk(10, 4));
        assert!(cache.get(2).is_none(), "2 was the least recently used");
        assert!(cache.get(1).is_some() && cache.get(3).is_some() && cache.get(4).is_some());
        put(&cache, 5, chunk(31, 5));
        assert!(
            cache.get(5).is_none(),
            "a chunk over the capacity is not kept"
        );
        cache.remove(4);
        assert!(!cache.has_or_loading(4));
    }

    #[test]
    fn concurrent_readers_of_one_chunk_load_it_once() {
        let cache = Arc::new(ChunkCache::new(1 << 20));
        let loads = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(8));
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (cache, loads, start) = (cache.clone(), loads.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    cache
                        .get_or_load(7, || {
                            loads.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(50));
                            Ok(chunk(100, 9))
                        })
                        .unwrap()
                })
            })
            .collect();
        for r in readers {
            assert_eq!(&r.join().unwrap().into_bytes()[..], &[9u8; 100][..]);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_load_lets_the_next_caller_load_again() {
        let cache = ChunkCache::new(1 << 20);
        let r = cache.get_or_load(1, || Err(Error::Unavailable("node down".into())));
        assert!(r.is_err());
        assert!(!cache.has_or_loading(1));
        let again = cache.get_or_load(1, || Ok(chunk(3, 1))).unwrap();
        assert_eq!(again.len(), 3);
        assert!(cache.get(1).is_some());
    }
}
