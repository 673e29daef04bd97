//! Writing: a chunk is encoded once and its k+m shards are stored at once,
//! each on its node's executor with the write deadline. A shard whose node
//! fails or does not answer in time goes to another usable node, else it
//! stays missing (placement `None`) for the repair queue; the chunk needs
//! k durable shards (all of them when m = 0). Also storing one rebuilt shard.

use rand::Rng;
use std::sync::Arc;

use super::shard::{self, ShardHeader, ShardOrigin};
use super::{ChunkLayout, ChunkStore, NodeTask, WrittenChunk};
use crate::error::{Error, Result};
use crate::node::{NodeBackend, NodeOp, ShardKey};

/// A chunk after encoding: data shard i is `data[i·L..(i+1)·L]`, then the
/// parity shards. Shared by the store tasks of all its shards.
struct EncodedChunk {
    data: Vec<u8>,
    parity: Vec<Vec<u8>>,
    shard_len: usize,
}

/// One shard of an encoded chunk, as bytes a store task can own.
struct ShardOf(Arc<EncodedChunk>, usize);

impl AsRef<[u8]> for ShardOf {
    fn as_ref(&self) -> &[u8] {
        let ShardOf(chunk, i) = self;
        let l = chunk.shard_len;
        let k = chunk.data.len() / l;
        if *i < k {
            &chunk.data[i * l..(i + 1) * l]
        } else {
            &chunk.parity[i - k]
        }
    }
}

/// Store one shard (header, block table, payload) on a node; answers the
/// shard's checksum. Runs on the node's executor.
fn store_shard(
    node: &dyn NodeBackend,
    key: ShardKey,
    header: &[u8],
    payload: &[u8],
) -> Result<u32> {
    let table = shard::block_table(payload);
    node.put_shard(key, &[header, &table, payload])?;
    Ok(shard::table_checksum(&table))
}

impl ChunkStore {
    /// The task that stores shard `index` of a chunk.
    fn store_task(
        &self,
        layout: &ChunkLayout,
        index: usize,
        payload: impl AsRef<[u8]> + Send + 'static,
        origin: Option<ShardOrigin>,
    ) -> NodeTask<Result<u32>> {
        let header = ShardHeader {
            origin,
            ..self.header(layout, index)
        }
        .encode();
        let key = ShardKey {
            chunk_id: layout.chunk_id,
            index: index as u16,
        };
        Box::new(move |n| store_shard(n, key, &header, payload.as_ref()))
    }

    /// Store shard `index` on `node` and wait (write deadline); answers its
    /// checksum. A node that errs is probed; one that is late is failed.
    pub(super) fn write_shard(
        &self,
        node: usize,
        layout: &ChunkLayout,
        index: usize,
        payload: impl AsRef<[u8]> + Send + 'static,
        origin: Option<ShardOrigin>,
    ) -> Result<u32> {
        let task = self.store_task(layout, index, payload, origin);
        match self.call(node, NodeOp::Write, task) {
            Ok(answer) => answer.inspect_err(|e| self.on_io_error(node, e)),
            Err(late) => Err(self.late_error(node, &late)),
        }
    }

    /// Encode and store a new chunk, each shard's header carrying `origin`
    /// (v2). Succeeds once at least k shards are durable (all k when m = 0);
    /// shards that could not be placed are `None` in the placement and must
    /// be queued for repair by the caller.
    pub fn write_chunk(&self, mut data: Vec<u8>, origin: ShardOrigin) -> Result<WrittenChunk> {
        if data.is_empty() {
            return Err(Error::InvalidArgument("empty chunk".into()));
        }
        let chunk_id = loop {
            let id: u64 = rand::thread_rng().gen();
            if id != 0 {
                break id;
            }
        };
        let layout = ChunkLayout {
            chunk_id,
            k: self.k as u16,
            m: self.m as u16,
            data_len: data.len() as u64,
        };
        let codec = self.codec(self.k, self.m)?;
        let parity = codec.encode(&mut data)?;
        let chunk = Arc::new(EncodedChunk {
            data,
            parity,
            shard_len: layout.shard_len(),
        });
        let total = layout.shard_count();
        let mut placement = super::placement::place(&self.candidates(), total, chunk_id);
        let mut checksums: Vec<Option<u32>> = vec![None; total];
        let mut errors: Vec<Error> = Vec::new();
        let placed: Vec<(usize, usize)> = placement
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|node| (i, node)))
            .collect();
        let calls = placed
            .iter()
            .map(|&(i, node)| {
                (
                    node,
                    self.store_task(&layout, i, ShardOf(chunk.clone(), i), Some(origin)),
                )
            })
            .collect();
        let answers = self.call_each(NodeOp::Write, calls);
        for (&(i, node), (_, answer)) in placed.iter().zip(answers) {
            match answer {
                Ok(Ok(sum)) => checksums[i] = Some(sum),
                Ok(Err(e)) => {
                    self.on_io_error(node, &e);
                    placement[i] = None;
                    errors.push(e);
                }
                Err(late) => {
                    placement[i] = None;
                    errors.push(self.late_error(node, &late));
                }
            }
        }
        // Shards that failed or had no node: try other usable nodes once each.
        for i in 0..total {
            if checksums[i].is_some() {
                continue;
            }
            let used: Vec<usize> = placement.iter().flatten().copied().collect();
            for node in super::placement::order(&self.candidates(), chunk_id, &used) {
                match self.write_shard(node, &layout, i, ShardOf(chunk.clone(), i), Some(origin)) {
                    Ok(sum) => {
                        checksums[i] = Some(sum);
                        placement[i] = Some(node);
                        break;
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        let durable = checksums.iter().filter(|c| c.is_some()).count();
        let needed = if self.m == 0 { total } else { self.k };
        if durable < needed {
            self.delete_chunk(&layout, &placement);
            let detail = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            if errors.iter().any(|e| e.is_no_space()) {
                return Err(Error::NoSpace(format!(
                    "only {durable} of {total} shards could be stored: {detail}"
                )));
            }
            return Err(Error::Unavailable(format!(
                "only {durable} of {total} shards could be stored (need {needed}){}{detail}",
                if detail.is_empty() { "" } else { ": " }
            )));
        }
        if durable < total {
            crate::warn_limited!(
                "degraded write",
                "chunk {chunk_id:016x}: {} shard(s) could not be placed; queued for repair",
                total - durable
            );
        }
        Ok(WrittenChunk {
            layout,
            placement,
            checksums,
        })
    }
}
