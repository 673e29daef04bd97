//! An in-memory node backend: the test double for fault injection (fail a
//! node, hang it, corrupt a shard) without touching disks.

use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use super::{NodeBackend, NodeProbe, ShardKey, ShardReader};
use crate::error::{Error, Result};

/// Bytes of a shard and when they were stored.
type StoredShard = (Arc<Vec<u8>>, SystemTime);

pub struct MemoryNode {
    id: String,
    region: String,
    cluster: Mutex<Option<String>>,
    shards: Mutex<HashMap<ShardKey, StoredShard>>,
    /// Metadata files by (area, name).
    meta_files: Mutex<HashMap<(String, String), Vec<u8>>>,
    failed: AtomicBool,
    /// While true, every call waits (a hung mount or a dying disk).
    hung: Mutex<bool>,
    unhung: Condvar,
}

/// Memory nodes `node-1`, `node-2`, … one per region given, and the same
/// nodes as backends for a store.
pub fn memory_nodes(regions: &[&str]) -> (Vec<Arc<MemoryNode>>, Vec<Arc<dyn NodeBackend>>) {
    let nodes: Vec<Arc<MemoryNode>> = regions
        .iter()
        .enumerate()
        .map(|(i, region)| Arc::new(MemoryNode::new(&format!("node-{}", i + 1), region)))
        .collect();
    let backends = nodes
        .iter()
        .map(|n| n.clone() as Arc<dyn NodeBackend>)
        .collect();
    (nodes, backends)
}

impl MemoryNode {
    pub fn new(id: &str, region: &str) -> MemoryNode {
        MemoryNode {
            id: id.into(),
            region: region.into(),
            cluster: Mutex::new(None),
            shards: Mutex::new(HashMap::new()),
            meta_files: Mutex::new(HashMap::new()),
            failed: AtomicBool::new(false),
            hung: Mutex::new(false),
            unhung: Condvar::new(),
        }
    }

    /// Make every call wait until `set_hung(false)` (or let them go).
    pub fn set_hung(&self, hung: bool) {
        *self.hung.lock() = hung;
        if !hung {
            self.unhung.notify_all();
        }
    }

    fn wait_while_hung(&self) {
        let mut hung = self.hung.lock();
        while *hung {
            self.unhung.wait(&mut hung);
        }
    }

    /// Make every call fail (or work again).
    pub fn set_failed(&self, failed: bool) {
        self.failed.store(failed, Ordering::SeqCst);
    }

    /// Flip one byte of a stored metadata file.
    pub fn corrupt_meta_file(&self, area: &str, name: &str, offset: usize) {
        if let Some(data) = self
            .meta_files
            .lock()
            .get_mut(&(area.to_string(), name.to_string()))
        {
            data[offset] ^= 0xff;
        }
    }

    /// Flip one byte of a stored shard.
    pub fn corrupt(&self, key: ShardKey, offset: usize) {
        let mut shards = self.shards.lock();
        if let Some((data, _)) = shards.get_mut(&key) {
            let mut copy = (**data).clone();
            copy[offset] ^= 0xff;
            *data = Arc::new(copy);
        }
    }

    fn check(&self) -> Result<()> {
        self.wait_while_hung();
        if self.failed.load(Ordering::SeqCst) {
            Err(Error::Io(std::io::Error::other(format!(
                "node {} is failed",
                self.id
            ))))
        } else {
            Ok(())
        }
    }
}

struct MemoryShardReader(Arc<Vec<u8>>);

impl ShardReader for MemoryShardReader {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = offset as usize;
        let end = start + buf.len();
        if end > self.0.len() {
            return Err(Error::Corrupt("shard too short".into()));
        }
        buf.copy_from_slice(&self.0[start..end]);
        Ok(())
    }
}

impl NodeBackend for MemoryNode {
    fn put_meta_file(&self, area: &str, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.check()?;
        if self.cluster.lock().is_none() {
            return Err(Error::Other("node is not initialized".into()));
        }
        self.meta_files
            .lock()
            .insert((area.into(), name.into()), parts.concat());
        Ok(())
    }

    fn append_meta_file(&self, area: &str, name: &str, at: u64, bytes: &[u8]) -> Result<u64> {
        self.check()?;
        if !super::is_safe_meta_name(area) || !super::is_safe_meta_name(name) {
            return Err(Error::InvalidArgument(format!(
                "bad metadata file name {area}/{name}"
            )));
        }
        if self.cluster.lock().is_none() {
            return Err(Error::Other("node is not initialized".into()));
        }
        let mut files = self.meta_files.lock();
        let file = files.entry((area.into(), name.into())).or_default();
        file.resize(at as usize, 0);
        file.extend_from_slice(bytes);
        Ok(bytes.len() as u64)
    }

    fn list_meta_files(&self, area: &str) -> Result<Vec<(String, u64)>> {
        self.check()?;
        Ok(self
            .meta_files
            .lock()
            .iter()
            .filter(|((a, _), _)| a == area)
            .map(|((_, name), data)| (name.clone(), data.len() as u64))
            .collect())
    }

    fn read_meta_file(&self, area: &str, name: &str) -> Result<Vec<u8>> {
        self.check()?;
        self.meta_files
            .lock()
            .get(&(area.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("{area}/{name}")))
    }

    fn delete_meta_file(&self, area: &str, name: &str) -> Result<()> {
        self.check()?;
        self.meta_files
            .lock()
            .remove(&(area.to_string(), name.to_string()));
        Ok(())
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn region(&self) -> &str {
        &self.region
    }

    fn location(&self) -> String {
        format!("memory:{}", self.id)
    }

    fn initialize(&self, cluster_id: &str) -> Result<()> {
        self.check()?;
        let mut c = self.cluster.lock();
        match &*c {
            Some(existing) if existing != cluster_id => {
                Err(Error::Other(format!("node belongs to cluster {existing}")))
            }
            _ => {
                *c = Some(cluster_id.to_string());
                Ok(())
            }
        }
    }

    fn probe(&self, cluster_id: &str) -> NodeProbe {
        self.wait_while_hung();
        if self.failed.load(Ordering::SeqCst) {
            return NodeProbe::Failed("node is failed".into());
        }
        match &*self.cluster.lock() {
            Some(c) if c == cluster_id => NodeProbe::Healthy,
            Some(c) => NodeProbe::Failed(format!("node belongs to cluster {c}")),
            None => NodeProbe::Empty("never initialized".into()),
        }
    }

    fn put_shard(&self, key: ShardKey, parts: &[&[u8]]) -> Result<()> {
        self.check()?;
        let data: Vec<u8> = parts.concat();
        self.shards
            .lock()
            .insert(key, (Arc::new(data), SystemTime::now()));
        Ok(())
    }

    fn open_shard(&self, key: ShardKey) -> Result<Box<dyn ShardReader>> {
        self.check()?;
        let shards = self.shards.lock();
        let (data, _) = shards
            .get(&key)
            .ok_or_else(|| Error::NotFound(format!("shard {key:?} on {}", self.id)))?;
        Ok(Box::new(MemoryShardReader(data.clone())))
    }

    fn delete_shard(&self, key: ShardKey) -> Result<()> {
        self.check()?;
        self.shards.lock().remove(&key);
        Ok(())
    }

    fn list_shards(&self) -> Result<Vec<(ShardKey, SystemTime)>> {
        self.check()?;
        Ok(self
            .shards
            .lock()
            .iter()
            .map(|(k, (_, t))| (*k, *t))
            .collect())
    }

    fn capacity(&self) -> Result<(u64, u64)> {
        self.wait_while_hung();
        let used: u64 = self
            .shards
            .lock()
            .values()
            .map(|(d, _)| d.len() as u64)
            .sum();
        let total = 1 << 40;
        Ok((total, total - used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_node_passes_conformance() {
        let node = MemoryNode::new("node-1", "r1");
        super::super::conformance::run(&node);
    }
}
