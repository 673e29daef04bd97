//! What makes this process the one owner of a store before it touches it:
//! the check that no node folder holds the Python prototype's data (before
//! anything is written), the lock on the metadata database
//! (`<metadata.path>.lock`), the locks on the local node folders that
//! exist, and the start-up check that a new,
//! empty metadata database is not silently put over node folders that
//! already hold a store's shards. The locks themselves are
//! `crate::store_lock`; the folder locks live in `LocalDirNode`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::meta::RESCUED_INFIX;
use crate::node::prototype_folder::{prototype_data_in, refusal};
use crate::node::{identity_in, LocalDirNode, NodeBackend};
use crate::store_lock::StoreLock;

/// How long start-up waits for a node folder to answer its lock.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// Refuse a store whose node folders hold the MiniGCS Python prototype's
/// data (a configuration error naming the import command), before anything
/// is written anywhere. Each folder is looked at on its own thread, as for
/// the locks: returns which folders answered within `LOCK_PATIENCE` (one
/// that did not is hung and is not waited for again).
pub(crate) fn refuse_prototype_folders(config: &Config) -> Result<Vec<bool>> {
    let (answers, answered) = mpsc::channel();
    let mut answered_in_time = vec![false; config.nodes.len()];
    for (index, node) in config.nodes.iter().enumerate() {
        if node.s3.is_some() {
            // A bucket: no prototype folder there.
            answered_in_time[index] = true;
            continue;
        }
        let (folder, answers) = (node.storage_path.clone(), answers.clone());
        std::thread::Builder::new()
            .name("node-check".into())
            .spawn(move || {
                let _ = answers.send((index, prototype_data_in(&folder)));
            })?;
    }
    drop(answers);
    let deadline = Instant::now() + LOCK_PATIENCE;
    let mut refusals = Vec::new();
    while answered_in_time.contains(&false) {
        let patience = deadline.saturating_duration_since(Instant::now());
        let Ok((index, found)) = answered.recv_timeout(patience) else {
            break;
        };
        answered_in_time[index] = true;
        if let Some(found) = found {
            let node = &config.nodes[index];
            refusals.push((
                index,
                refusal(
                    &node.id,
                    &node.storage_path,
                    &found,
                    config.source.as_deref(),
                ),
            ));
        }
    }
    refusals.sort();
    match refusals.split_first() {
        None => Ok(answered_in_time),
        Some(((_, first), rest)) => {
            let mut message = first.clone();
            if !rest.is_empty() {
                let others: Vec<&str> = rest
                    .iter()
                    .map(|(i, _)| config.nodes[*i].id.as_str())
                    .collect();
                message.push_str(&format!(
                    " (the folders of {} hold prototype data too)",
                    others.join(", ")
                ));
            }
            Err(Error::Config(message))
        }
    }
}

/// Lock the metadata database of `config` (its folder is created if
/// missing). A second daemon gets an error naming the holder's pid.
pub(crate) fn lock_metadata(config: &Config) -> Result<StoreLock> {
    let db = &config.metadata.path;
    if let Some(parent) = db.parent() {
        std::fs::create_dir_all(parent)?;
    }
    StoreLock::acquire(&with_suffix(db, ".lock"))
        .map_err(|failure| failure.into_error(&format!("metadata database {}", db.display())))
}

/// The nodes `config` lists: buckets as they are, and local folders each
/// locked when it exists.
///
/// The folders are locked in parallel, each on its own thread: a folder on a
/// mount that stopped answering must not hang the start. One that does not
/// answer within `LOCK_PATIENCE` is left to the health probe, which takes
/// its lock once it answers (and reports it failed until then); so is one
/// that did not answer the prototype check (`answered[i]` false).
pub(crate) fn store_nodes(config: &Config, answered: &[bool]) -> Result<Vec<Arc<dyn NodeBackend>>> {
    let mut buckets: Vec<Option<Arc<dyn NodeBackend>>> = Vec::new();
    for n in &config.nodes {
        buckets.push(match &n.s3 {
            Some(_) => Some(crate::node::configured(n, &config.segments)?),
            None => None,
        });
    }
    let nodes: Vec<Arc<LocalDirNode>> = config
        .nodes
        .iter()
        .map(|n| {
            let node = LocalDirNode::new(&n.id, &n.region, &n.storage_path);
            Arc::new(node.with_segments(config.segments.settings()))
        })
        .collect();
    let (answers, locked_nodes) = mpsc::channel();
    let hung = |index: usize| !answered.get(index).copied().unwrap_or(true);
    let is_bucket = |index: usize| buckets[index].is_some();
    for (index, node) in nodes.iter().enumerate() {
        if hung(index) || is_bucket(index) {
            continue;
        }
        let (node, answers) = (node.clone(), answers.clone());
        std::thread::Builder::new()
            .name("node-lock".into())
            .spawn(move || {
                let _ = answers.send((index, node.lock_if_present()));
            })?;
    }
    drop(answers);
    let deadline = Instant::now() + LOCK_PATIENCE;
    let mut waiting: Vec<bool> = (0..nodes.len())
        .map(|i| !hung(i) && !is_bucket(i))
        .collect();
    // Every answer is awaited so that a refusal names the first node in
    // the config's order, whichever thread answered first.
    let mut refused: Option<(usize, Error)> = None;
    while waiting.contains(&true) {
        let patience = deadline.saturating_duration_since(Instant::now());
        let Ok((index, locked)) = locked_nodes.recv_timeout(patience) else {
            break;
        };
        waiting[index] = false;
        if let Err(e) = locked {
            if refused.as_ref().is_none_or(|(first, _)| index < *first) {
                refused = Some((index, e));
            }
        }
    }
    if let Some((_, e)) = refused {
        return Err(e);
    }
    let unanswered = (0..nodes.len()).filter(|&i| (waiting[i] || hung(i)) && !is_bucket(i));
    for node in unanswered.map(|i| &nodes[i]) {
        log::warn!(
            "node {}'s folder {} did not answer within {}s: starting without its lock (the health probe takes it once the folder answers)",
            node.id(),
            node.location(),
            LOCK_PATIENCE.as_secs()
        );
    }
    Ok(nodes
        .into_iter()
        .zip(buckets)
        .map(|(folder, bucket)| bucket.unwrap_or(folder as Arc<dyn NodeBackend>))
        .collect())
}

/// Asked before a new metadata database becomes a store. Node folders that
/// hold shards mean the store exists and its metadata is missing: refuse,
/// saying what happened and what to do, unless `accept_empty_metadata`.
/// Proposes the cluster id the node folders carry when they agree on one,
/// so that the new database adopts them instead of failing every node.
pub(crate) fn confirm_new_database(
    config: &Config,
    nodes: &[Arc<dyn NodeBackend>],
) -> Result<Option<String>> {
    let mut cluster_ids = BTreeSet::new();
    let mut holders = Vec::new();
    for node in nodes {
        let folder = config
            .nodes
            .iter()
            .find(|n| n.id == node.id() && n.s3.is_none())
            .map(|n| n.storage_path.as_path());
        if let Some(identity) = folder.and_then(|f| identity_in(f).ok()) {
            cluster_ids.insert(identity.cluster_id);
        }
        // Our own lock is held: listing may tidy temp files safely.
        let shards = node.list_shards().map(|s| s.len()).unwrap_or(0);
        if shards > 0 {
            holders.push(format!(
                "{} ({}): {shards} shard file(s)",
                node.id(),
                node.location()
            ));
        }
    }
    let adopt = match cluster_ids.len() {
        1 => cluster_ids.first().cloned(),
        _ => None,
    };
    if holders.is_empty() {
        return Ok(adopt);
    }
    let clusters = match cluster_ids.len() {
        0 => "an existing store".to_string(),
        _ => format!(
            "cluster {}",
            cluster_ids.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    if config.accept_empty_metadata {
        log::warn!(
            "starting an empty store over node folders holding shards of {clusters} ({}); shards no file refers to are deleted as orphans when a daemon starts",
            holders.join("; ")
        );
        return Ok(adopt);
    }
    let db = config.metadata.path.display();
    let mut todo = vec![format!(
        "if the database was moved or lives on a disk that is not mounted, put it back at {db} (see metadata.path in the config) and start again"
    )];
    if let Some(copy) = rescued_copies(&config.metadata.path).first() {
        todo.push(format!(
            "a copy saved when the database went missing is at {}: remove {db}-wal and {db}-shm if they are there and move the copy to {db} to go on from it",
            copy.display()
        ));
    }
    todo.push(
        "no node folder holds a valid metadata snapshot (meta/snapshots/), so there was nothing to restore automatically".into(),
    );
    todo.push(
        "as a last resort, `minigcs fsck --rebuild` recovers the files' contents from the shards alone into lost+found/".into(),
    );
    todo.push(
        "to start an empty store over these folders anyway (their shards are deleted), start with --accept-empty-metadata".into(),
    );
    Err(Error::Other(format!(
        "metadata missing for an existing store of {clusters}: the metadata database {db} is new (it did not exist or held no store), but the node folders hold shards:\n  {}\n\
         Starting would serve an empty store and delete those shards as orphans, so minigcs refuses to start. What to do:\n  - {}",
        holders.join("\n  "),
        todo.join(";\n  - "),
    )))
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Copies a daemon saved when it found the database deleted or replaced
/// (`<path>.rescued-<secs>`), newest first.
fn rescued_copies(db: &Path) -> Vec<PathBuf> {
    let (Some(folder), Some(name)) = (db.parent(), db.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}{RESCUED_INFIX}", name.to_string_lossy());
    let mut copies: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    copies.sort();
    copies.reverse();
    copies
}
