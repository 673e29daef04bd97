//! A node that is a bucket (and optional prefix) on an object store: an S3
//! bucket in another region or provider, through the `object_store` crate
//! (retries with backoff, request timeouts, SigV4). Owns the node's object
//! layout and the bridge from the synchronous `NodeBackend` calls (made on
//! the node executors' threads, each with its deadline) to the crate's
//! async client, on one small runtime shared by every object-store node.
//!
//! Layout under the prefix:
//!
//! ```text
//! minigcs-node.json                 the identity, as in a node folder
//! shards/<chunk id hex>.<index>.shard
//! meta/<area>/<name>/<offset, 20 digits>
//! ```
//!
//! Object stores cannot append, so a metadata file is the run of its part
//! objects: an append at offset `at` stores one part named `at`, and a
//! whole write stores part 0 and then removes the others. A reader takes
//! parts in offset order while each starts where the previous one ended
//! (a part that starts inside the bytes already taken is a leftover of a
//! replaced file and is skipped; a gap ends the file).

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use super::{
    is_safe_meta_name, NodeBackend, NodeIdentity, NodeProbe, ShardKey, ShardReader, IDENTITY_FILE,
    META_FOLDER,
};
use crate::config::S3NodeConfig;
use crate::error::{Error, Result};

const SHARDS: &str = "shards";
/// Written and removed by a probe to see that the bucket takes writes.
const PROBE_OBJECT: &str = "minigcs-probe";

pub struct ObjectStoreNode {
    id: String,
    region: String,
    /// For humans: `s3://bucket/prefix` at the endpoint.
    location: String,
    store: Arc<dyn ObjectStore>,
    /// Every object of this node lives under it ("" for the bucket's top).
    prefix: String,
}

impl ObjectStoreNode {
    pub fn new(
        id: &str,
        region: &str,
        location: String,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
    ) -> ObjectStoreNode {
        ObjectStoreNode {
            id: id.to_string(),
            region: region.to_string(),
            location,
            store,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    fn path(&self, rest: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rest)
        } else {
            ObjectPath::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn shard_path(&self, key: ShardKey) -> ObjectPath {
        self.path(&format!("{SHARDS}/{}", key.file_name()))
    }

    fn meta_dir(&self, area: &str, name: Option<&str>) -> Result<String> {
        if !is_safe_meta_name(area) || name.is_some_and(|n| !is_safe_meta_name(n)) {
            return Err(Error::InvalidArgument(format!(
                "bad metadata file name {area}/{}",
                name.unwrap_or("")
            )));
        }
        Ok(match name {
            Some(name) => format!("{META_FOLDER}/{area}/{name}"),
            None => format!("{META_FOLDER}/{area}"),
        })
    }

    fn part_path(&self, dir: &str, at: u64) -> ObjectPath {
        self.path(&format!("{dir}/{at:020}"))
    }

    /// Run one request of the object store client to its end.
    fn run<T: Send + 'static>(
        &self,
        what: String,
        request: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T> {
        block_on(request).map_err(|e| self.error(&what, e))
    }

    fn error(&self, what: &str, e: object_store::Error) -> Error {
        node_error(&self.id, &self.location, what, e)
    }

    fn read_identity(&self) -> Result<Option<NodeIdentity>> {
        let (store, path) = (self.store.clone(), self.path(IDENTITY_FILE));
        match self.run("reading the identity".into(), async move {
            store.get(&path).await?.bytes().await
        }) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("identity of node {}: {e}", self.id))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether any shard is stored under the prefix. (Metadata parts an
    /// append left after the bucket was emptied do not make it a foreign
    /// bucket: it is still empty, ready to be rebuilt.)
    fn holds_shards(&self) -> Result<bool> {
        let (store, prefix) = (self.store.clone(), self.path(SHARDS));
        self.run("listing".into(), async move {
            let mut listed = store.list(Some(&prefix));
            Ok(listed.try_next().await?.is_some())
        })
    }

    fn probe_bucket(&self, cluster_id: &str) -> Result<NodeProbe> {
        match self.read_identity()? {
            Some(found) => {
                if found.cluster_id != cluster_id || found.node_id != self.id {
                    return Ok(NodeProbe::Failed(format!(
                        "bucket holds node {} of cluster {}, expected {} of {}",
                        found.node_id, found.cluster_id, self.id, cluster_id
                    )));
                }
            }
            None => {
                return Ok(if self.holds_shards()? {
                    NodeProbe::Failed("identity object is missing".into())
                } else {
                    NodeProbe::Empty("bucket prefix is empty (new or replaced)".into())
                })
            }
        }
        let (store, path) = (self.store.clone(), self.path(PROBE_OBJECT));
        self.run("writing a probe object".into(), async move {
            store.put(&path, PutPayload::from_static(b"ok")).await?;
            store.delete(&path).await
        })?;
        Ok(NodeProbe::Healthy)
    }

    /// The part objects of one metadata file: (offset, size), by offset.
    fn parts(&self, dir: &str) -> Result<Vec<(u64, u64)>> {
        let store = self.store.clone();
        let prefix = self.path(dir);
        let mut parts: Vec<(u64, u64)> = self
            .run(format!("listing {dir}"), async move {
                store.list(Some(&prefix)).try_collect::<Vec<_>>().await
            })?
            .into_iter()
            .filter_map(|meta| {
                let at = meta.location.filename()?.parse::<u64>().ok()?;
                Some((at, meta.size))
            })
            .collect();
        parts.sort_unstable();
        Ok(parts)
    }
}

/// Per request: how long it may take (a shard is at most a chunk), how
/// long connecting may take, and how often and for how long a failed
/// request is retried; and the most one node call (its requests, retries
/// included) may run before it is abandoned. Node executors put their own,
/// shorter deadline on top: a call past that one counts as failed at once,
/// but its thread is busy (and the node refuses new work) until the call
/// ends, so the call itself must end soon after.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RETRIES: usize = 2;
const RETRY_FOR: Duration = Duration::from_secs(8);
const CALL_LIMIT: Duration = Duration::from_secs(12);

impl ObjectStoreNode {
    /// A node on an S3-compatible store, as a node's `s3:` block says.
    /// Path-style requests (what every S3-compatible server accepts); plain
    /// `http://` endpoints are allowed, for servers on a private network.
    pub fn s3(id: &str, region: &str, config: &S3NodeConfig) -> Result<ObjectStoreNode> {
        let keys = config
            .credentials()
            .map_err(|e| Error::Config(format!("node {id}: s3: {e}")))?;
        let endpoint = config.endpoint.clone();
        let client = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_allow_http(
                endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            );
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: RETRIES,
            retry_timeout: RETRY_FOR,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(config.region.as_deref().unwrap_or("us-east-1"))
            .with_access_key_id(keys.access_key)
            .with_secret_access_key(keys.secret_key)
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .map_err(|e| Error::Config(format!("node {id}: s3: {e}")))?;
        let location = format!(
            "s3://{}/{}{}",
            config.bucket,
            config.prefix.trim_matches('/'),
            endpoint.map(|e| format!(" at {e}")).unwrap_or_default()
        );
        Ok(ObjectStoreNode::new(
            id,
            region,
            location,
            Arc::new(store),
            &config.prefix,
        ))
    }
}

/// The parts that make up a file, by the rule in the module header, and
/// its length.
fn contiguous(parts: &[(u64, u64)]) -> (Vec<(u64, u64)>, u64) {
    let mut end = 0;
    let mut taken = Vec::new();
    for &(at, size) in parts {
        if at > end {
            break;
        }
        if at == end {
            taken.push((at, size));
            end += size;
        }
    }
    (taken, end)
}

/// An object store's answer as the node's error: an absent object is
/// `NotFound`; anything else (a refused or failed request, throttling, a
/// timeout, wrong keys) says nothing about the bytes stored, so it is an
/// I/O error of the node (the read path probes the node on those), never a
/// corrupt shard.
fn node_error(id: &str, location: &str, what: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound(format!("{what} on node {id}")),
        other => Error::Io(std::io::Error::other(format!(
            "node {id} ({location}): {what}: {other}"
        ))),
    }
}

/// The runtime every object-store node's requests run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()
            .expect("the object store runtime starts")
    })
}

/// Run `request` on the shared runtime and wait for it from this thread,
/// which may be any thread (a node executor, or a runtime's own).
fn block_on<T: Send + 'static>(
    request: impl Future<Output = object_store::Result<T>> + Send + 'static,
) -> object_store::Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let answer = match tokio::time::timeout(CALL_LIMIT, request).await {
            Ok(answer) => answer,
            Err(_) => Err(object_store::Error::Generic {
                store: "object store",
                source: format!("no answer within {} s", CALL_LIMIT.as_secs()).into(),
            }),
        };
        let _ = tx.send(answer);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(object_store::Error::Generic {
            store: "object store",
            source: "the request was dropped".into(),
        })
    })
}

/// A shard object read by ranged GETs.
struct ObjectShard {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    len: u64,
    node: String,
    location: String,
}

impl ShardReader for ObjectShard {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let got = self.read_vec_at(offset, buf.len())?;
        buf.copy_from_slice(&got);
        Ok(())
    }

    fn read_vec_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        super::check_shard_range(offset, len, self.len)?;
        let end = offset + len as u64;
        if len == 0 {
            return Ok(Vec::new());
        }
        let (store, path) = (self.store.clone(), self.path.clone());
        let got =
            block_on(async move { store.get_range(&path, offset..end).await }).map_err(|e| {
                node_error(
                    &self.node,
                    &self.location,
                    &format!("reading {}", self.path),
                    e,
                )
            })?;
        if got.len() != len {
            return Err(Error::Corrupt(format!(
                "shard {}: asked {len} bytes, got {}",
                self.path,
                got.len()
            )));
        }
        Ok(got.to_vec())
    }
}

impl NodeBackend for ObjectStoreNode {
    fn id(&self) -> &str {
        &self.id
    }

    fn region(&self) -> &str {
        &self.region
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn initialize(&self, cluster_id: &str) -> Result<()> {
        match self.read_identity()? {
            Some(found) if found.cluster_id != cluster_id || found.node_id != self.id => {
                Err(Error::Other(format!(
                    "{} belongs to node {} of cluster {}, not {} of {}",
                    self.location, found.node_id, found.cluster_id, self.id, cluster_id
                )))
            }
            Some(_) => Ok(()),
            None => {
                let identity = NodeIdentity {
                    cluster_id: cluster_id.to_string(),
                    node_id: self.id.clone(),
                    region: self.region.clone(),
                    format: 1,
                };
                let body = serde_json::to_vec_pretty(&identity).expect("identity serializes");
                let (store, path) = (self.store.clone(), self.path(IDENTITY_FILE));
                self.run("writing the identity".into(), async move {
                    store.put(&path, PutPayload::from(body)).await.map(|_| ())
                })
            }
        }
    }

    fn probe(&self, cluster_id: &str) -> NodeProbe {
        match self.probe_bucket(cluster_id) {
            Ok(probe) => probe,
            Err(e) => NodeProbe::Failed(e.to_string()),
        }
    }

    fn put_shard(&self, key: ShardKey, parts: &[&[u8]]) -> Result<()> {
        let payload: PutPayload = parts.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        let (store, path) = (self.store.clone(), self.shard_path(key));
        self.run(format!("storing shard {}", key.file_name()), async move {
            store.put(&path, payload).await.map(|_| ())
        })
    }

    fn open_shard(&self, key: ShardKey) -> Result<Box<dyn ShardReader>> {
        let (store, path) = (self.store.clone(), self.shard_path(key));
        let len = self
            .run(format!("shard {}", key.file_name()), async move {
                store.head(&path).await
            })?
            .size;
        Ok(Box::new(ObjectShard {
            store: self.store.clone(),
            path: self.shard_path(key),
            len,
            node: self.id.clone(),
            location: self.location.clone(),
        }))
    }

    fn delete_shard(&self, key: ShardKey) -> Result<()> {
        let (store, path) = (self.store.clone(), self.shard_path(key));
        match self.run(format!("removing shard {}", key.file_name()), async move {
            store.delete(&path).await
        }) {
            Err(Error::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    fn list_shards(&self) -> Result<Vec<(ShardKey, SystemTime)>> {
        let (store, prefix) = (self.store.clone(), self.path(SHARDS));
        let listed = self.run("listing shards".into(), async move {
            store.list(Some(&prefix)).try_collect::<Vec<_>>().await
        })?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let key = ShardKey::parse_file_name(meta.location.filename()?)?;
                Some((key, SystemTime::from(meta.last_modified)))
            })
            .collect())
    }

    fn capacity(&self) -> Result<(u64, u64)> {
        Err(Error::Other(format!(
            "node {} is an object store: it reports no capacity",
            self.id
        )))
    }

    fn put_meta_file(&self, area: &str, name: &str, parts: &[&[u8]]) -> Result<()> {
        let dir = self.meta_dir(area, Some(name))?;
        if self.read_identity()?.is_none() {
            return Err(Error::Unavailable(format!(
                "node {} is not set up",
                self.id
            )));
        }
        let payload: PutPayload = parts.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        let (store, path) = (self.store.clone(), self.part_path(&dir, 0));
        self.run(format!("storing {dir}"), async move {
            store.put(&path, payload).await.map(|_| ())
        })?;
        // Leftover parts of an earlier content go after the new part 0 is
        // in place: a reader skips any that start inside it meanwhile.
        for (at, _) in self.parts(&dir)?.into_iter().filter(|&(at, _)| at > 0) {
            let (store, path) = (self.store.clone(), self.part_path(&dir, at));
            match self.run(format!("removing an old part of {dir}"), async move {
                store.delete(&path).await
            }) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn append_meta_file(&self, area: &str, name: &str, at: u64, bytes: &[u8]) -> Result<u64> {
        let dir = self.meta_dir(area, Some(name))?;
        if at == 0 && self.read_identity()?.is_none() {
            return Err(Error::Unavailable(format!(
                "node {} is not set up",
                self.id
            )));
        }
        let payload = PutPayload::from(Bytes::copy_from_slice(bytes));
        let (store, path) = (self.store.clone(), self.part_path(&dir, at));
        self.run(format!("appending to {dir}"), async move {
            store.put(&path, payload).await.map(|_| ())
        })?;
        Ok(bytes.len() as u64)
    }

    fn list_meta_files(&self, area: &str) -> Result<Vec<(String, u64)>> {
        let dir = self.meta_dir(area, None)?;
        let (store, prefix) = (self.store.clone(), self.path(&dir));
        let listed = self.run(format!("listing {dir}"), async move {
            store.list(Some(&prefix)).try_collect::<Vec<_>>().await
        })?;
        let mut files: std::collections::BTreeMap<String, Vec<(u64, u64)>> = Default::default();
        for meta in listed {
            let mut segments: Vec<String> = meta
                .location
                .parts()
                .map(|p| p.as_ref().to_string())
                .collect();
            let (Some(part), Some(name)) = (segments.pop(), segments.pop()) else {
                continue;
            };
            if let (Ok(at), true) = (part.parse::<u64>(), is_safe_meta_name(&name)) {
                files.entry(name).or_default().push((at, meta.size));
            }
        }
        Ok(files
            .into_iter()
            .map(|(name, mut parts)| {
                parts.sort_unstable();
                (name, contiguous(&parts).1)
            })
            .collect())
    }

    fn read_meta_file(&self, area: &str, name: &str) -> Result<Vec<u8>> {
        let dir = self.meta_dir(area, Some(name))?;
        let (taken, len) = contiguous(&self.parts(&dir)?);
        if taken.is_empty() {
            return Err(Error::NotFound(format!("{area}/{name}")));
        }
        let mut out = Vec::with_capacity(len as usize);
        for (at, _) in taken {
            let (store, path) = (self.store.clone(), self.part_path(&dir, at));
            let bytes = self.run(format!("reading {dir}"), async move {
                store.get(&path).await?.bytes().await
            })?;
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    fn delete_meta_file(&self, area: &str, name: &str) -> Result<()> {
        let dir = self.meta_dir(area, Some(name))?;
        for (at, _) in self.parts(&dir)? {
            let (store, path) = (self.store.clone(), self.part_path(&dir, at));
            match self.run(format!("removing {dir}"), async move {
                store.delete(&path).await
            }) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn node(store: Arc<dyn ObjectStore>, prefix: &str) -> ObjectStoreNode {
        ObjectStoreNode::new("node-1", "r1", "memory://test".into(), store, prefix)
    }

    #[test]
    fn an_object_store_node_passes_conformance_with_and_without_a_prefix() {
        super::super::conformance::run(&node(Arc::new(InMemory::new()), ""));
        super::super::conformance::run(&node(Arc::new(InMemory::new()), "cluster/node-1/"));
    }

    #[test]
    fn nodes_under_two_prefixes_of_one_bucket_stay_apart() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (a, b) = (node(bucket.clone(), "a"), node(bucket.clone(), "b"));
        assert!(matches!(a.probe("c"), NodeProbe::Empty(_)));
        a.initialize("c").unwrap();
        assert_eq!(a.probe("c"), NodeProbe::Healthy);
        assert!(
            matches!(b.probe("c"), NodeProbe::Empty(_)),
            "b sees none of a"
        );
        // Another cluster's bucket is a failed node, never taken over.
        assert!(matches!(a.probe("other"), NodeProbe::Failed(_)));
        assert!(node(bucket, "a").initialize("other").is_err());
    }

    #[test]
    fn a_replaced_metadata_file_reads_as_its_new_content_while_old_parts_remain() {
        let n = node(Arc::new(InMemory::new()), "p");
        n.initialize("c").unwrap();
        n.append_meta_file("journal", "j", 0, b"head").unwrap();
        n.append_meta_file("journal", "j", 4, b"-one").unwrap();
        n.append_meta_file("journal", "j", 8, b"-two").unwrap();
        assert_eq!(n.read_meta_file("journal", "j").unwrap(), b"head-one-two");
        // A part past a gap (an append whose predecessor never landed) is
        // not part of the file.
        n.append_meta_file("journal", "k", 0, b"ab").unwrap();
        n.append_meta_file("journal", "k", 5, b"zz").unwrap();
        assert_eq!(n.read_meta_file("journal", "k").unwrap(), b"ab");
        // Part 0 replaced, an old part still there: skipped, as it starts
        // inside the new content.
        let payload = PutPayload::from_static(b"whole-new-content");
        let (store, path) = (n.store.clone(), n.part_path("meta/journal/j", 0));
        block_on(async move { store.put(&path, payload).await }).unwrap();
        assert_eq!(
            n.read_meta_file("journal", "j").unwrap(),
            b"whole-new-content"
        );
        n.put_meta_file("journal", "j", &[b"x", b"y"]).unwrap();
        assert_eq!(n.read_meta_file("journal", "j").unwrap(), b"xy");
        assert_eq!(n.parts("meta/journal/j").unwrap(), vec![(0, 2)]);
    }
}
