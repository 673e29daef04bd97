//! A small LRU of whole decoded chunks, keyed by chunk id. Chunks are
//! immutable, so an entry never goes stale; the cache is bounded in bytes.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

pub struct ChunkCache {
    inner: Mutex<Inner>,
    capacity: u64,
}

struct Inner {
    map: HashMap<u64, Arc<Vec<u8>>>,
    order: VecDeque<u64>,
    bytes: u64,
}

impl ChunkCache {
    pub fn new(capacity: u64) -> ChunkCache {
        ChunkCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
            capacity,
        }
    }

    pub fn get(&self, chunk_id: u64) -> Option<Arc<Vec<u8>>> {
        let mut inner = self.inner.lock();
        let hit = inner.map.get(&chunk_id).cloned();
        if hit.is_some() {
            if let Some(pos) = inner.order.iter().position(|&c| c == chunk_id) {
                inner.order.remove(pos);
            }
            inner.order.push_back(chunk_id);
        }
        hit
    }

    pub fn contains(&self, chunk_id: u64) -> bool {
        self.inner.lock().map.contains_key(&chunk_id)
    }

    pub fn insert(&self, chunk_id: u64, data: Arc<Vec<u8>>) {
        let size = data.len() as u64;
        if size > self.capacity {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(old) = inner.map.insert(chunk_id, data) {
            inner.bytes -= old.len() as u64;
            if let Some(pos) = inner.order.iter().position(|&c| c == chunk_id) {
                inner.order.remove(pos);
            }
        }
        inner.bytes += size;
        inner.order.push_back(chunk_id);
        while inner.bytes > self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(d) = inner.map.remove(&old) {
                inner.bytes -= d.len() as u64;
            }
        }
    }

    pub fn remove(&self, chunk_id: u64) {
        let mut inner = self.inner.lock();
        if let Some(d) = inner.map.remove(&chunk_id) {
            inner.bytes -= d.len() as u64;
            if let Some(pos) = inner.order.iter().position(|&c| c == chunk_id) {
                inner.order.remove(pos);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recent_beyond_capacity() {
        let c = ChunkCache::new(10);
        c.insert(1, Arc::new(vec![0; 4]));
        c.insert(2, Arc::new(vec![0; 4]));
        assert!(c.get(1).is_some());
        c.insert(3, Arc::new(vec![0; 4]));
        assert!(c.get(2).is_none(), "2 was least recently used");
        assert!(c.get(1).is_some() && c.get(3).is_some());
    }
}
