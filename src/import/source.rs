//! Reading a MiniGCS Python prototype install without changing a byte of
//! it: its `config.yaml` (node folders, relative to the install), its
//! `metadata.db` (tables `objects` and `shards`) and its shard files
//! `<node folder>/objects/<key>/shard_NNN`.
//!
//! The database is copied (with its `-wal` or `-journal` file, if any)
//! into a private temporary folder and opened there: SQLite may need to
//! roll back a hot journal or replay a WAL to read it consistently, which
//! writes, and it must never write into the prototype's folder. Shard
//! paths recorded in the database are used only when they are relative
//! and stay inside their node folder.

use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// A node of the prototype's config.
#[derive(Debug, Clone)]
pub struct PrototypeNode {
    pub id: String,
    /// Absolute (resolved against the install folder).
    pub folder: PathBuf,
}

/// One row of the prototype's `objects` table, as far as it could be read.
#[derive(Debug, Clone)]
pub struct PrototypeObject {
    pub key: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub version: Option<i64>,
    pub checksum: Option<String>,
    pub k: usize,
    pub m: usize,
    /// Where each shard was recorded: (node id, path inside the node folder).
    pub places: Vec<Vec<(String, String)>>,
    /// What makes the row itself unusable (a bad size, bad erasure params).
    pub defect: Option<String>,
}

/// A shard file found for an object: where, and on which node.
#[derive(Debug, Clone)]
pub struct FoundShard {
    pub path: PathBuf,
    pub node: String,
}

/// The prototype install being read.
pub struct PrototypeInstall {
    pub dir: PathBuf,
    pub nodes: Vec<PrototypeNode>,
    default_code: (usize, usize),
    db: rusqlite::Connection,
    /// The private copy of the database; removed when dropped.
    _copy: tempfile::TempDir,
}

#[derive(Deserialize, Default)]
struct PrototypeConfig {
    #[serde(default)]
    nodes: Vec<PrototypeNodeConfig>,
    #[serde(default)]
    erasure_coding: Option<PrototypeCode>,
}

#[derive(Deserialize)]
struct PrototypeNodeConfig {
    id: serde_yaml::Value,
    storage_path: Option<String>,
}

#[derive(Deserialize, Default)]
struct PrototypeCode {
    k: Option<usize>,
    m: Option<usize>,
}

/// A usage error about the install (exit 2).
fn bad_install(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "{}: {what} (PROTO_DIR is the prototype's working directory, holding its config.yaml and metadata.db)",
        dir.display()
    ))
}

impl PrototypeInstall {
    /// Open the install in `dir`: read its config, copy its database.
    pub fn open(dir: &Path) -> Result<PrototypeInstall> {
        let dir = std::path::absolute(dir)?;
        if !dir.is_dir() {
            return Err(bad_install(&dir, "not a folder"));
        }
        let config_path = dir.join("config.yaml");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| bad_install(&dir, format!("cannot read config.yaml: {e}")))?;
        let config: PrototypeConfig = serde_yaml::from_str(&text)
            .map_err(|e| bad_install(&dir, format!("config.yaml is not the prototype's: {e}")))?;
        if config.nodes.is_empty() {
            return Err(bad_install(&dir, "config.yaml lists no nodes"));
        }
        let mut nodes = Vec::new();
        for (i, node) in config.nodes.iter().enumerate() {
            let id = match &node.id {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Number(n) => n.to_string(),
                _ => {
                    return Err(bad_install(
                        &dir,
                        format!("config.yaml: nodes[{i}].id is not a name"),
                    ))
                }
            };
            let path = node
                .storage_path
                .clone()
                .unwrap_or_else(|| format!("./data/{id}"));
            nodes.push(PrototypeNode {
                folder: lexical_join(&dir, Path::new(&path)),
                id,
            });
        }
        let code = config.erasure_coding.unwrap_or_default();
        let default_code = (code.k.unwrap_or(2), code.m.unwrap_or(1));
        let database = dir.join("metadata.db");
        if !database.is_file() {
            return Err(bad_install(&dir, "no metadata.db"));
        }
        let copy = tempfile::Builder::new()
            .prefix("minigcs-import-")
            .tempdir()?;
        for suffix in ["", "-wal", "-journal"] {
            let from = dir.join(format!("metadata.db{suffix}"));
            if from.is_file() {
                std::fs::copy(&from, copy.path().join(format!("metadata.db{suffix}")))
                    .map_err(|e| Error::Other(format!("cannot copy {}: {e}", from.display())))?;
            }
        }
        let db = rusqlite::Connection::open(copy.path().join("metadata.db"))?;
        let has_objects: bool = db
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='objects'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| bad_install(&dir, format!("metadata.db is not readable: {e}")))?;
        if !has_objects {
            return Err(bad_install(&dir, "metadata.db has no table `objects`"));
        }
        Ok(PrototypeInstall {
            dir,
            nodes,
            default_code,
            db,
            _copy: copy,
        })
    }

    /// Every object the database lists, in key order.
    pub fn objects(&self) -> Result<Vec<PrototypeObject>> {
        let recorded = self.shards_table();
        let mut statement = self.db.prepare(
            "SELECT key, size, content_type, created_at, updated_at, version, checksum, shard_locations, erasure_params FROM objects ORDER BY key",
        )?;
        let rows = statement.query_map([], |row| {
            let text = |i: usize| -> rusqlite::Result<Option<String>> {
                Ok(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                    rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                    rusqlite::types::ValueRef::Real(f) => Some(f.to_string()),
                })
            };
            Ok((
                text(0)?.unwrap_or_default(),
                text(1)?,
                text(2)?,
                text(3)?,
                text(4)?,
                text(5)?,
                text(6)?,
                text(7)?,
                text(8)?,
            ))
        })?;
        let mut objects = Vec::new();
        for row in rows {
            let (
                key,
                size,
                content_type,
                created_at,
                updated_at,
                version,
                checksum,
                locations,
                code,
            ) = row?;
            let mut defects = Vec::new();
            let size = match size.as_deref().map(str::trim).map(str::parse::<u64>) {
                Some(Ok(size)) => size,
                _ => {
                    defects.push(format!("size {size:?} is not a byte count"));
                    0
                }
            };
            let version = version.and_then(|v| v.trim().parse::<i64>().ok());
            let (k, m) = match code.as_deref().map(parse_code) {
                None => self.default_code,
                Some(Ok(code)) => code,
                Some(Err(e)) => {
                    defects.push(e);
                    self.default_code
                }
            };
            let mut places: Vec<Vec<(String, String)>> = vec![Vec::new(); k + m];
            if let Some(list) = locations
                .as_deref()
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            {
                for (index, place) in list.as_array().into_iter().flatten().enumerate() {
                    let node = place.get("node_id").and_then(|v| v.as_str());
                    let path = place.get("shard_path").and_then(|v| v.as_str());
                    if let (Some(node), Some(path), Some(slot)) =
                        (node, path, places.get_mut(index))
                    {
                        slot.push((node.to_string(), path.to_string()));
                    }
                }
            }
            for (index, node, path) in recorded.get(&key).into_iter().flatten() {
                if let Some(slot) = places.get_mut(*index) {
                    slot.push((node.clone(), path.clone()));
                }
            }
            objects.push(PrototypeObject {
                key,
                size,
                content_type,
                created_at,
                updated_at,
                version,
                checksum,
                k,
                m,
                places,
                defect: (!defects.is_empty()).then(|| defects.join("; ")),
            });
        }
        Ok(objects)
    }

    /// The `shards` table by object key: (index, node id, shard path).
    /// Absent or unreadable, it adds nothing.
    fn shards_table(&self) -> HashMap<String, Vec<(usize, String, String)>> {
        let mut by_key: HashMap<String, Vec<(usize, String, String)>> = HashMap::new();
        let Ok(mut statement) = self
            .db
            .prepare("SELECT object_key, shard_index, node_id, shard_path FROM shards ORDER BY id")
        else {
            return by_key;
        };
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, Option<i64>>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        });
        for row in rows.into_iter().flatten().flatten() {
            if let (Some(key), Some(index), Some(node), Some(path)) = row {
                if let Ok(index) = usize::try_from(index) {
                    by_key.entry(key).or_default().push((index, node, path));
                }
            }
        }
        by_key
    }

    /// The files that may hold shard `index` of `object`, most likely
    /// first: where the database recorded it, then the prototype's own
    /// layout on the recorded nodes, then on every node. `object.key` must
    /// already be a valid minigcs key (no `..`, no absolute path).
    fn shard_candidates(&self, object: &PrototypeObject, index: usize) -> Vec<FoundShard> {
        let folder_of = |id: &str| self.nodes.iter().find(|n| n.id == id).map(|n| &n.folder);
        let conventional = Path::new("objects")
            .join(&object.key)
            .join(format!("shard_{index:03}"));
        let recorded = object
            .places
            .get(index)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut candidates: Vec<FoundShard> = Vec::new();
        let mut add = |path: PathBuf, node: &str| {
            if !candidates.iter().any(|c| c.path == path) {
                candidates.push(FoundShard {
                    path,
                    node: node.to_string(),
                });
            }
        };
        for (node, path) in recorded {
            if let (Some(folder), Some(inside)) = (folder_of(node), safe_relative(path)) {
                add(folder.join(inside), node);
            }
        }
        for (node, _) in recorded {
            if let Some(folder) = folder_of(node) {
                add(folder.join(&conventional), node);
            }
        }
        for node in &self.nodes {
            add(node.folder.join(&conventional), &node.id);
        }
        candidates
    }

    /// The file holding shard `index` of `object` with `len` bytes, or why
    /// there is none.
    pub fn locate_shard(
        &self,
        object: &PrototypeObject,
        index: usize,
        len: u64,
    ) -> std::result::Result<FoundShard, String> {
        let candidates = self.shard_candidates(object, index);
        let mut problems = Vec::new();
        for candidate in &candidates {
            match std::fs::metadata(&candidate.path) {
                Ok(meta) if meta.is_file() && meta.len() == len => return Ok(candidate.clone()),
                Ok(meta) if meta.is_file() => problems.push(format!(
                    "{} on {} has {} bytes, {len} expected",
                    self.shown(&candidate.path),
                    candidate.node,
                    meta.len()
                )),
                Ok(_) => problems.push(format!("{} is not a file", self.shown(&candidate.path))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!("{}: {e}", self.shown(&candidate.path))),
            }
        }
        if problems.is_empty() {
            let recorded = candidates
                .first()
                .map(|c| format!(" ({} on {})", self.shown(&c.path), c.node));
            problems.push(format!("not found{}", recorded.unwrap_or_default()));
        }
        Err(problems.join("; "))
    }

    /// Shard `index` of `object` read whole (`len` bytes), or why not.
    pub fn read_shard(
        &self,
        object: &PrototypeObject,
        index: usize,
        len: u64,
    ) -> std::result::Result<(FoundShard, Vec<u8>), String> {
        let found = self.locate_shard(object, index, len)?;
        let mut bytes = Vec::with_capacity(len as usize);
        File::open(&found.path)
            .and_then(|f| f.take(len + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("{} on {}: {e}", self.shown(&found.path), found.node))?;
        if bytes.len() as u64 != len {
            return Err(format!(
                "{} on {} changed while read ({} bytes)",
                self.shown(&found.path),
                found.node,
                bytes.len()
            ));
        }
        Ok((found, bytes))
    }

    /// A path as shown in reports: relative to the install when inside it.
    pub fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// `{"k": 2, "m": 1}` as the prototype recorded an object's code.
fn parse_code(text: &str) -> std::result::Result<(usize, usize), String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| format!("erasure_params {text:?} is not JSON"))?;
    let get = |name: &str| value.get(name).and_then(serde_json::Value::as_u64);
    match (get("k"), get("m")) {
        (Some(k), Some(m)) if k >= 1 && k + m <= 256 => Ok((k as usize, m as usize)),
        _ => Err(format!("erasure_params {text:?} is not a usable k and m")),
    }
}

/// `path` when it is relative and never leaves its folder (no `..`, no root).
fn safe_relative(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!clean.as_os_str().is_empty()).then_some(clean)
}

/// `path` resolved against `base` without touching the filesystem.
fn lexical_join(base: &Path, path: &Path) -> PathBuf {
    let mut out = if path.is_absolute() {
        PathBuf::new()
    } else {
        base.to_path_buf()
    };
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_paths_never_leave_their_folder() {
        assert_eq!(
            safe_relative("objects/a/shard_000"),
            Some(PathBuf::from("objects/a/shard_000"))
        );
        assert_eq!(
            safe_relative("./objects/a"),
            Some(PathBuf::from("objects/a"))
        );
        assert_eq!(safe_relative("../x"), None);
        assert_eq!(safe_relative("objects/../../x"), None);
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative(""), None);
    }

    #[test]
    fn codes_and_folders_are_read_as_the_prototype_wrote_them() {
        assert_eq!(parse_code(r#"{"k": 2, "m": 1}"#), Ok((2, 1)));
        assert!(parse_code(r#"{"k": 0, "m": 1}"#).is_err());
        assert!(parse_code("nonsense").is_err());
        assert_eq!(
            lexical_join(Path::new("/p"), Path::new("./data/node-1")),
            PathBuf::from("/p/data/node-1")
        );
        assert_eq!(
            lexical_join(Path::new("/p"), Path::new("/abs")),
            PathBuf::from("/abs")
        );
    }
}
