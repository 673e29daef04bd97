//! Restoring the metadata database from the snapshot copies on the nodes:
//! at start (`restore_at_start`: the database is missing, empty or fails
//! `PRAGMA quick_check`) and on demand (`restore_meta`, the `minigcs
//! restore-meta` command). Both find the newest snapshot with a copy that
//! passes its checksums and `PRAGMA integrity_check` (trying every copy of
//! it, then older snapshots), then put it in place: temp file, fsync,
//! rename, fsync of the folder. Whatever was at the path before (a corrupt
//! or empty file, a stale `-wal`/`-shm`) is moved aside, never deleted.
//!
//! Every node call runs on a thread of its own with a deadline: a hung node
//! folder costs one deadline and is skipped.

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{decode, parse_file_name, Manifest, SNAPSHOT_AREA};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::journal::replay::FoundJournal;
use crate::metrics::iso8601_from_nanos;
use crate::node::NodeBackend;
use crate::store_lock::StoreLock;

/// What the metadata database at a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseState {
    /// A database that holds a store and passes its check.
    Intact,
    Missing,
    /// An empty file, or a database that holds no store.
    Empty,
    /// Not a database SQLite can read, or its check found damage.
    Corrupt(String),
}

/// Look at the database at `path`: `PRAGMA quick_check` (or the slower
/// `integrity_check` when `thorough`) and whether it names a cluster.
pub fn database_state(path: &Path, thorough: bool) -> DatabaseState {
    match fs::metadata(path) {
        Err(_) => return DatabaseState::Missing,
        Ok(m) if m.len() == 0 => return DatabaseState::Empty,
        Ok(_) => {}
    }
    let examine = || -> rusqlite::Result<DatabaseState> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let check = if thorough {
            "PRAGMA integrity_check"
        } else {
            "PRAGMA quick_check"
        };
        let verdict: String = conn.query_row(check, [], |r| r.get(0))?;
        if verdict != "ok" {
            return Ok(DatabaseState::Corrupt(verdict));
        }
        let has_settings: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='settings'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if has_settings.is_none() {
            return Ok(DatabaseState::Empty);
        }
        let cluster: Option<String> = conn
            .query_row(
                "SELECT value FROM settings WHERE key='cluster_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match cluster {
            Some(_) => DatabaseState::Intact,
            None => DatabaseState::Empty,
        })
    };
    examine().unwrap_or_else(|e| DatabaseState::Corrupt(e.to_string()))
}

/// The snapshot a restore found and checked.
#[derive(Debug, Clone)]
pub struct FoundSnapshot {
    pub manifest: Manifest,
    /// The node the restored copy was read from.
    pub read_from: String,
    /// Every node listing a copy of this snapshot.
    pub holders: Vec<String>,
    /// Copies that failed a check, with why (newer or of this snapshot).
    pub rejected: Vec<String>,
}

impl FoundSnapshot {
    /// One line for logs and `restore-meta`.
    pub fn describe(&self) -> String {
        let m = &self.manifest;
        let age = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| (d.as_millis() as i64 - m.created_unix_ms).max(0) / 1000)
            .unwrap_or(0);
        format!(
            "snapshot #{} taken {} ({age} s ago): {} file(s), {} byte(s), database {} byte(s); copies on {}; read from {}",
            m.seq,
            iso8601_from_nanos(m.created_unix_ms.saturating_mul(1_000_000)),
            m.files,
            m.bytes,
            m.db_size,
            self.holders.join(", "),
            self.read_from,
        )
    }
}

/// Start `task` on `node` on a thread of its own; `answer` waits for it.
pub(crate) fn ask<T: Send + 'static>(
    node: &Arc<dyn NodeBackend>,
    task: impl FnOnce(&dyn NodeBackend) -> Result<T> + Send + 'static,
) -> mpsc::Receiver<Result<T>> {
    let (tx, rx) = mpsc::channel();
    let node = node.clone();
    let spawned = std::thread::Builder::new()
        .name("snapshot-io".into())
        .spawn(move || {
            let _ = tx.send(task(&*node));
        });
    if let Err(e) = spawned {
        let (tx, failed) = mpsc::channel();
        let _ = tx.send(Err(Error::Io(e)));
        return failed;
    }
    rx
}

pub(crate) fn answer<T>(
    rx: &mpsc::Receiver<Result<T>>,
    node: &dyn NodeBackend,
    patience: Duration,
) -> Result<T> {
    rx.recv_timeout(patience).unwrap_or_else(|_| {
        Err(Error::Unavailable(format!(
            "node {} did not answer within {} s",
            node.id(),
            patience.as_secs()
        )))
    })
}

/// Find the newest snapshot with a copy that passes every check, and leave
/// its database at `temp` (fsynced). None when no node holds a valid copy.
pub fn fetch_newest(
    nodes: &[Arc<dyn NodeBackend>],
    cluster_id: Option<&str>,
    patience: Duration,
    temp: &Path,
) -> Result<Option<FoundSnapshot>> {
    // seq → nodes (index, file name) listing a copy
    let mut copies: BTreeMap<u64, Vec<(usize, String)>> = BTreeMap::new();
    let listings: Vec<_> = nodes
        .iter()
        .map(|n| ask(n, |node| node.list_meta_files(SNAPSHOT_AREA)))
        .collect();
    for (i, rx) in listings.iter().enumerate() {
        match answer(rx, &*nodes[i], patience) {
            Ok(files) => {
                for (name, _) in files {
                    if let Some((seq, _)) = parse_file_name(&name) {
                        copies.entry(seq).or_default().push((i, name));
                    }
                }
            }
            Err(e) => log::warn!("metadata snapshots on node {}: {e}", nodes[i].id()),
        }
    }
    let mut rejected = Vec::new();
    for (seq, holders) in copies.iter().rev() {
        for (i, name) in holders {
            let node = &nodes[*i];
            let name_owned = name.clone();
            let rx = ask(node, move |n| n.read_meta_file(SNAPSHOT_AREA, &name_owned));
            let checked = answer(&rx, &**node, patience).and_then(|copy| {
                let (manifest, database) = decode(&copy)?;
                if manifest.seq != *seq {
                    return Err(Error::Other(format!(
                        "copy named #{seq} holds snapshot #{}",
                        manifest.seq
                    )));
                }
                if let Some(wanted) = cluster_id {
                    if manifest.cluster_id != wanted {
                        return Err(Error::Other(format!(
                            "snapshot of cluster {:?}, not {wanted:?}",
                            manifest.cluster_id
                        )));
                    }
                }
                write_synced(temp, database)?;
                match database_state(temp, true) {
                    DatabaseState::Intact => Ok(manifest),
                    other => Err(Error::Other(format!("database in the copy: {other:?}"))),
                }
            });
            match checked {
                Ok(manifest) => {
                    return Ok(Some(FoundSnapshot {
                        manifest,
                        read_from: node.id().to_string(),
                        holders: holders
                            .iter()
                            .map(|(i, _)| nodes[*i].id().to_string())
                            .collect(),
                        rejected,
                    }))
                }
                Err(e) => {
                    let _ = fs::remove_file(temp);
                    log::warn!("metadata snapshot {name} on node {}: {e}", node.id());
                    rejected.push(format!("{name} on {}: {e}", node.id()));
                }
            }
        }
    }
    Ok(None)
}

/// A database rebuilt from the nodes: the newest valid snapshot (if any)
/// and the journal records after it.
#[derive(Debug)]
pub struct Rebuilt {
    pub snapshot: Option<FoundSnapshot>,
    /// The LSN the snapshot holds (0 without one).
    pub base_lsn: u64,
    pub journal: FoundJournal,
}

impl Rebuilt {
    /// Whether every record the journal holds was applied: nothing
    /// acknowledged is missing (without a gap, records missing at the end
    /// were never acknowledged).
    pub fn complete(&self) -> bool {
        self.journal.gap.is_none() && self.journal.unreachable.is_empty()
    }

    /// What was restored, for logs and `restore-meta`.
    pub fn describe(&self) -> String {
        let base = match &self.snapshot {
            Some(found) => found.describe(),
            None => "no snapshot (the journal from the store's first change)".into(),
        };
        format!(
            "{base}; then {}; the database is at LSN {}",
            self.journal.describe(self.base_lsn),
            self.journal.last_lsn(self.base_lsn)
        )
    }
}

/// Rebuild the database at `temp` from the newest valid snapshot on
/// `nodes` and the journal records after it (or from the journal alone
/// when it reaches back to the store's first change). None when the nodes
/// hold neither.
pub fn rebuild(
    nodes: &[Arc<dyn NodeBackend>],
    cluster_id: Option<&str>,
    patience: Duration,
    temp: &Path,
) -> Result<Option<Rebuilt>> {
    let snapshot = fetch_newest(nodes, cluster_id, patience, temp)?;
    let base_lsn = match snapshot {
        Some(_) => crate::meta::journal_lsn_of(&Connection::open(temp)?)?,
        None => 0,
    };
    let journal = crate::journal::replay::collect(nodes, cluster_id, base_lsn, patience)?;
    if snapshot.is_none() && journal.records.is_empty() {
        return Ok(None);
    }
    if snapshot.is_none() {
        let _ = fs::remove_file(temp);
    }
    let report = crate::journal::replay::apply(temp, &journal.records)?;
    if report.replaced + report.missing > 0 {
        // On the right base every change finds the rows it expects.
        log::warn!(
            "replaying the metadata journal onto {}: {} row(s) differed from what the journal expected and {} were missing (the journal's values were taken)",
            snapshot.as_ref().map_or("an empty database".to_string(), |s| format!("snapshot #{}", s.manifest.seq)),
            report.replaced,
            report.missing
        );
    }
    if journal.newest_lsn > journal.last_lsn(base_lsn) {
        // Records past a gap stay on the nodes (fsck --rebuild recovers
        // their files from the shards): new changes must not reuse their
        // LSNs, or a later catch-up or restore would mix the two.
        let conn = Connection::open(temp)?;
        conn.execute(
            "INSERT INTO settings(key, value) VALUES('journal_lsn', ?1)
             ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            [journal.newest_lsn.to_string()],
        )?;
        drop(conn);
        File::open(temp)?.sync_all()?;
    }
    match database_state(temp, true) {
        DatabaseState::Intact => Ok(Some(Rebuilt {
            snapshot,
            base_lsn,
            journal,
        })),
        other => {
            let _ = fs::remove_file(temp);
            Err(Error::Other(format!(
                "the database rebuilt from the snapshot and the journal fails its check: {other:?}"
            )))
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Move the database at `path` and its `-wal`/`-shm` aside (to
/// `<name>.replaced-<secs>…`), then rename the verified `temp` into place.
fn put_in_place(temp: &Path, path: &Path) -> Result<Vec<PathBuf>> {
    let secs = unix_secs();
    let mut moved = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let old = with_suffix(path, suffix);
        if old.exists() {
            let aside = with_suffix(path, &format!(".replaced-{secs}{suffix}"));
            fs::rename(&old, &aside)?;
            moved.push(aside);
        }
    }
    fs::rename(temp, path)?;
    if let Some(folder) = path.parent() {
        File::open(if folder.as_os_str().is_empty() {
            Path::new(".")
        } else {
            folder
        })?
        .sync_all()?;
    }
    Ok(moved)
}

/// Next to a database restored from a snapshot: says so, and keeps the
/// start-up orphan sweep off (shards of files written after the snapshot
/// are the only copy of those files) until `minigcs fsck --rebuild` has
/// recovered them into lost+found/ and removed it.
pub fn restored_marker(database: &Path) -> PathBuf {
    with_suffix(database, ".restored")
}

/// Leave the marker, holding what was restored (best effort: a marker that
/// cannot be written is logged, and this start skips the sweep anyway).
fn mark_restored(database: &Path, rebuilt: &Rebuilt) {
    let marker = restored_marker(database);
    let text = format!(
        "{}\nThe orphan sweep is off until `minigcs fsck --rebuild` recovers the files written after what was restored into lost+found/ (it removes this file).\n",
        rebuilt.describe()
    );
    if let Err(e) = fs::write(&marker, text) {
        log::error!("cannot write {}: {e}", marker.display());
    }
}

/// How long a restore waits for one node to list or read its copies.
fn patience(config: &Config) -> Duration {
    config.node_timeout() * 15
}

/// At start: when the database is missing, empty or fails `PRAGMA
/// quick_check`, rebuild it from the newest valid snapshot and the journal
/// on `nodes`. Returns what was restored, or None (database intact, or
/// nothing on the nodes: the start goes on as before, a new store or the
/// refusal over shards).
pub fn restore_at_start(
    config: &Config,
    nodes: &[Arc<dyn NodeBackend>],
) -> Result<Option<Rebuilt>> {
    let path = &config.metadata.path;
    let state = database_state(path, false);
    if state == DatabaseState::Intact {
        return Ok(None);
    }
    let temp = with_suffix(path, ".restoring");
    let rebuilt = rebuild(nodes, config.cluster.id.as_deref(), patience(config), &temp)?;
    let Some(rebuilt) = rebuilt else {
        if let DatabaseState::Corrupt(why) = &state {
            log::error!(
                "the metadata database {} fails its check ({why}) and no node holds a valid snapshot or journal to restore",
                path.display()
            );
        }
        return Ok(None);
    };
    let moved = put_in_place(&temp, path)?;
    let what = match &state {
        DatabaseState::Missing => "was missing".to_string(),
        DatabaseState::Empty => "held no store".to_string(),
        DatabaseState::Corrupt(why) => format!("failed its check ({why})"),
        DatabaseState::Intact => unreachable!("intact databases are not restored"),
    };
    let aside = match moved.is_empty() {
        true => String::new(),
        false => format!(
            "; what was there is kept at {}",
            moved
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    for rejected in rebuilt
        .journal
        .rejected
        .iter()
        .chain(rebuilt.snapshot.iter().flat_map(|s| s.rejected.iter()))
    {
        log::warn!("passed over while restoring the metadata: {rejected}");
    }
    if rebuilt.complete() {
        log::warn!(
            "the metadata database {} {what}: rebuilt it from {}{aside}. Every acknowledged change is back.",
            path.display(),
            rebuilt.describe(),
        );
    } else {
        mark_restored(path, &rebuilt);
        log::warn!(
            "the metadata database {} {what}: rebuilt it from {}{aside}. Changes after the gap are NOT recovered. The orphan sweep stays off so that the shards of files written since stay on the nodes: stop the daemon and run `minigcs fsck --rebuild` to recover those files into lost+found/ (that turns the sweep back on; {} says so meanwhile).",
            path.display(),
            rebuilt.describe(),
            restored_marker(path).display()
        );
    }
    Ok(Some(rebuilt))
}

/// At start, with an intact database: bring it level with the journal on
/// `nodes`. Records after the database's LSN (written to the nodes but
/// lost locally, e.g. by a power cut before the WAL reached the disk) are
/// replayed into it. Returns why a snapshot must be taken before anything
/// is acknowledged, when the journal cannot continue from this database:
/// it ends before the database's LSN (records committed but never written
/// out, a crash before the periodic flush), has a gap, or the database
/// predates the journal (LSN 0 in a store that holds files).
pub fn catch_up_at_start(
    config: &Config,
    nodes: &[Arc<dyn NodeBackend>],
) -> Result<Option<String>> {
    let path = &config.metadata.path;
    if database_state(path, false) != DatabaseState::Intact {
        return Ok(None);
    }
    let conn = Connection::open(path)?;
    let db_lsn = crate::meta::journal_lsn_of(&conn)?;
    if db_lsn == 0 {
        let files: i64 =
            conn.query_row("SELECT COUNT(*) FROM inodes WHERE kind=1", [], |r| r.get(0))?;
        return Ok((files > 0).then(|| {
            "the database predates the metadata journal: a snapshot anchors the journal".to_string()
        }));
    }
    // Only this store's journal continues this database.
    let cluster: String = conn.query_row(
        "SELECT value FROM settings WHERE key='cluster_id'",
        [],
        |r| r.get(0),
    )?;
    drop(conn);
    // Every start comes here: a hung node costs two deadlines, not the
    // long patience of a restore (its copies are on other nodes too).
    let journal =
        crate::journal::replay::collect(nodes, Some(&cluster), db_lsn, config.node_timeout() * 2)?;
    if !journal.records.is_empty() {
        let report = crate::journal::replay::apply(path, &journal.records)?;
        log::warn!(
            "the metadata database {} was behind the journal on the nodes: replayed {} (rows that differed: {}, missing: {})",
            path.display(),
            journal.describe(db_lsn),
            report.replaced,
            report.missing
        );
    }
    if let Some(gap) = journal.gap {
        return Ok(Some(format!(
            "the journal on the nodes does not continue the database: {gap}"
        )));
    }
    if !journal.reaches_base {
        return Ok(Some(format!(
            "the journal on the nodes ends at LSN {}, the database is at LSN {db_lsn} (changes committed but not yet written out when the daemon stopped)",
            journal.newest_lsn
        )));
    }
    Ok(None)
}

/// `minigcs restore-meta`: restore the newest valid snapshot to
/// `metadata.path` (only when that database is missing, empty or corrupt)
/// or to `to` (a new file); with `dry_run`, only say what would be
/// restored. Returns the text to print.
pub fn restore_meta(config: &Config, to: Option<&Path>, dry_run: bool) -> Result<String> {
    let target = to.unwrap_or(&config.metadata.path).to_path_buf();
    // Reading node folders needs no lock; replacing metadata.path does.
    let _lock = match (to, dry_run) {
        (None, false) => Some(StoreLock::acquire(&with_suffix(&target, ".lock")).map_err(
            |failure| failure.into_error(&format!("metadata database {}", target.display())),
        )?),
        _ => None,
    };
    if !dry_run {
        match (to, database_state(&target, false)) {
            (None, DatabaseState::Intact) => {
                return Err(Error::Other(format!(
                    "the metadata database {} is intact (it holds a store and passes its check): restore-meta only replaces a database that is missing, empty or corrupt. To look at a snapshot, restore it next to it with --to PATH",
                    target.display()
                )))
            }
            (Some(_), DatabaseState::Missing) | (None, _) => {}
            (Some(_), _) => {
                if fs::metadata(&target).map(|m| m.len() > 0).unwrap_or(false) {
                    return Err(Error::Other(format!(
                        "{} already exists: --to writes a new file only",
                        target.display()
                    )));
                }
            }
        }
    }
    let nodes: Vec<Arc<dyn NodeBackend>> = config
        .nodes
        .iter()
        .map(|n| crate::node::configured(n, &config.segments))
        .collect::<Result<_>>()?;
    if let Some(folder) = target.parent().filter(|f| !f.as_os_str().is_empty()) {
        fs::create_dir_all(folder)?;
    }
    let temp = with_suffix(&target, &format!(".restoring-{}", std::process::id()));
    let rebuilt = rebuild(
        &nodes,
        config.cluster.id.as_deref(),
        patience(config),
        &temp,
    )?;
    let Some(rebuilt) = rebuilt else {
        return Err(Error::NotFound(
            "no node holds a valid metadata snapshot or journal (looked in meta/snapshots/ and meta/journal/ of every node folder)"
                .into(),
        ));
    };
    let mut out = rebuilt.describe();
    for rejected in rebuilt
        .snapshot
        .iter()
        .flat_map(|s| s.rejected.iter())
        .chain(rebuilt.journal.rejected.iter())
    {
        out.push_str(&format!("\nskipped a bad copy: {rejected}"));
    }
    let coverage = match rebuilt.complete() {
        true => "every change the journal holds is in it",
        false => "changes after the gap in the journal are not in it",
    };
    if dry_run {
        let _ = fs::remove_file(&temp);
        out.push_str(&format!(
            "\ndry run: would restore it to {}; {coverage}",
            target.display()
        ));
        return Ok(out);
    }
    let moved = put_in_place(&temp, &target)?;
    out.push_str(&format!("\nrestored to {}; {coverage}", target.display()));
    if to.is_none() && !rebuilt.complete() {
        mark_restored(&target, &rebuilt);
        out.push_str(
            "\nfiles written after the gap: `minigcs fsck --rebuild` recovers them from their shards into lost+found/ (the orphan sweep stays off until it has run)",
        );
    }
    for aside in moved {
        out.push_str(&format!("\nmoved aside: {}", aside.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::MemoryNode;
    use crate::snapshot::{encode_header, Manifest};

    fn database_bytes(dir: &Path, cluster: &str, marker: &str) -> Vec<u8> {
        let path = dir.join(format!("{marker}.db"));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT);
             INSERT INTO settings VALUES('cluster_id', '{cluster}');
             INSERT INTO settings VALUES('marker', '{marker}');"
        ))
        .unwrap();
        drop(conn);
        fs::read(&path).unwrap()
    }

    fn store(node: &MemoryNode, database: &[u8], seq: u64) -> String {
        let manifest = Manifest::describe(database, "c1", seq, 1_700_000_000_000 + seq as i64);
        let name = manifest.file_name();
        node.put_meta_file(SNAPSHOT_AREA, &name, &[&encode_header(&manifest), database])
            .unwrap();
        name
    }

    fn marker(path: &Path) -> String {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT value FROM settings WHERE key='marker'", [], |r| {
                r.get(0)
            })
            .unwrap()
    }

    #[test]
    fn the_newest_valid_copy_wins_and_a_corrupt_copy_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Arc<MemoryNode>> = (0..3)
            .map(|i| Arc::new(MemoryNode::new(&format!("n{i}"), &format!("r{i}"))))
            .collect();
        for n in &nodes {
            n.initialize("c1").unwrap();
        }
        let old = database_bytes(dir.path(), "c1", "old");
        let new = database_bytes(dir.path(), "c1", "new");
        store(&nodes[0], &old, 1);
        store(&nodes[1], &old, 1);
        let newest = store(&nodes[0], &new, 2);
        store(&nodes[2], &new, 2);
        // The first copy of the newest snapshot is corrupt: the other is used.
        nodes[0].corrupt_meta_file(SNAPSHOT_AREA, &newest, 200);
        let backends: Vec<Arc<dyn NodeBackend>> = nodes
            .iter()
            .map(|n| n.clone() as Arc<dyn NodeBackend>)
            .collect();
        let temp = dir.path().join("restored.db");
        let found = fetch_newest(&backends, Some("c1"), Duration::from_secs(5), &temp)
            .unwrap()
            .expect("a valid copy");
        assert_eq!(found.manifest.seq, 2);
        assert_eq!(found.read_from, "n2");
        assert_eq!(found.holders, vec!["n0", "n2"]);
        assert_eq!(found.rejected.len(), 1, "{:?}", found.rejected);
        assert_eq!(marker(&temp), "new");

        // Every copy of #2 bad: #1 is restored.
        nodes[2].corrupt_meta_file(SNAPSHOT_AREA, &newest, 20);
        let found = fetch_newest(&backends, Some("c1"), Duration::from_secs(5), &temp)
            .unwrap()
            .unwrap();
        assert_eq!(found.manifest.seq, 1);
        assert_eq!(marker(&temp), "old");

        // Another cluster's snapshots are never restored.
        assert!(
            fetch_newest(&backends, Some("other"), Duration::from_secs(5), &temp)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn database_states_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        assert_eq!(database_state(&path, false), DatabaseState::Missing);
        fs::write(&path, b"").unwrap();
        assert_eq!(database_state(&path, false), DatabaseState::Empty);
        fs::write(&path, database_bytes(dir.path(), "c1", "x")).unwrap();
        assert_eq!(database_state(&path, true), DatabaseState::Intact);
        fs::write(&path, vec![0x5a; 8192]).unwrap();
        assert!(matches!(
            database_state(&path, false),
            DatabaseState::Corrupt(_)
        ));
    }
}
