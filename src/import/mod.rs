//! `minigcs import-prototype`: moves every object of a MiniGCS Python
//! prototype install into a minigcs store, with its key, content type,
//! times and version, and never changes the prototype's folder.
//!
//! - `source` reads the install (config, a private copy of `metadata.db`,
//!   shard files);
//! - `prototype_code` is the prototype's own erasure code (encoder and a
//!   per-byte solver), `rebuild` turns the shards found into the object's
//!   bytes, trusting only bytes whose SHA-256 matches the recorded one;
//! - this module stores each object through the file service
//!   (`Service::import_object`), which refuses to replace an existing key,
//!   and reports what became of each object.
//!
//! The store is opened as a daemon opens it, so the import takes the
//! store's locks: it needs the daemon stopped, and a daemon started during
//! the import is refused. Each object is stored atomically (all of it or
//! nothing), so an interrupted import is simply run again: objects already
//! present with the same SHA-256 and version are skipped.

pub mod prototype_code;
pub(crate) mod rebuild;
mod source;
mod stream;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::meta::Kind;
use crate::metrics::Metrics;
use crate::model::{now_nanos, Nanos, ObjectStamp};
use crate::service::{parse_key, Service};
use rebuild::{rebuild, Rebuilt};
use source::{PrototypeInstall, PrototypeObject};
use stream::ShardStream;

/// What became of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored from its data shards as they were.
    Imported,
    /// Stored after rebuilding data shards from parity; what was done.
    Repaired(String),
    /// Already in the store with the same SHA-256 and version: skipped.
    AlreadyPresent,
    /// Its bytes cannot be recovered from the prototype's shards; why.
    Unrecoverable(String),
    /// Recoverable, but not stored (the key is taken, the store refused);
    /// why. Running the import again retries it.
    NotImported(String),
}

impl Outcome {
    /// The report section listing this outcome with its detail, if any.
    fn detail(&self) -> Option<(&'static str, &str)> {
        match self {
            Outcome::Repaired(what) => Some(("repaired from parity", what)),
            Outcome::Unrecoverable(why) => Some(("unrecoverable", why)),
            Outcome::NotImported(why) => Some(("not imported", why)),
            Outcome::Imported | Outcome::AlreadyPresent => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ObjectReport {
    pub key: String,
    pub size: u64,
    pub outcome: Outcome,
}

/// The result of an import run.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub prototype: PathBuf,
    pub objects: Vec<ObjectReport>,
}

/// Where an import run is, after each object.
#[derive(Debug, Clone)]
pub struct ImportProgress {
    pub done: u64,
    pub total: u64,
    pub key: String,
}

/// Import the prototype install in `proto_dir` into the store `config`
/// describes. Errors are about the run as a whole (bad install, store in
/// use); what happens to each object is in the report.
pub fn run(
    proto_dir: &Path,
    config: Config,
    progress: &mut dyn FnMut(&ImportProgress),
) -> Result<ImportReport> {
    let install = PrototypeInstall::open(proto_dir)?;
    keep_apart(&install, &config)?;
    let objects = install.objects()?;
    // Opened as a daemon opens it: the store's locks are taken here.
    let service = Service::open(Arc::new(config), Metrics::new(None))?;
    let total = objects.len() as u64;
    let mut reports = Vec::with_capacity(objects.len());
    for (done, object) in objects.iter().enumerate() {
        let outcome = import_one(&service, &install, object);
        reports.push(ObjectReport {
            key: object.key.clone(),
            size: object.size,
            outcome,
        });
        progress(&ImportProgress {
            done: done as u64 + 1,
            total,
            key: object.key.clone(),
        });
    }
    service.shutdown();
    Ok(ImportReport {
        prototype: install.dir.clone(),
        objects: reports,
    })
}

/// The store must not live in the prototype's folders (nor they in it):
/// the import would write into what it must leave untouched.
fn keep_apart(install: &PrototypeInstall, config: &Config) -> Result<()> {
    let real = |p: &Path| crate::realpath::resolve(p, &[]);
    let mut theirs = vec![("the prototype's folder".to_string(), real(&install.dir))];
    for node in &install.nodes {
        theirs.push((
            format!("prototype node {}'s folder", node.id),
            real(&node.folder),
        ));
    }
    let mut ours: Vec<(String, PathBuf)> = config
        .nodes
        .iter()
        .map(|n| {
            (
                format!("nodes[{}].storage_path", n.id),
                real(&n.storage_path),
            )
        })
        .collect();
    ours.push(("metadata.path".into(), real(&config.metadata.path)));
    for (our_key, our_path) in &ours {
        for (their_name, their_path) in &theirs {
            let metadata = our_key == "metadata.path";
            let overlaps =
                our_path.starts_with(their_path) || (!metadata && their_path.starts_with(our_path));
            if overlaps {
                return Err(Error::Config(format!(
                    "{our_key} ({}) overlaps {their_name} ({}): the import never writes into the prototype's folders; give minigcs new folders outside {}",
                    our_path.display(),
                    their_path.display(),
                    install.dir.display()
                )));
            }
        }
    }
    Ok(())
}

fn import_one(service: &Service, install: &PrototypeInstall, object: &PrototypeObject) -> Outcome {
    if let Some(defect) = &object.defect {
        return Outcome::Unrecoverable(format!("its metadata row is unusable: {defect}"));
    }
    if let Err(e) = parse_key(&object.key) {
        return Outcome::NotImported(format!("the key is not valid in minigcs: {e}"));
    }
    let checksum = match object.checksum.as_deref().map(parse_sha256) {
        Some(Some(sum)) => sum,
        _ => {
            return Outcome::Unrecoverable(format!(
                "no SHA-256 recorded to verify it against (checksum {:?})",
                object.checksum
            ))
        }
    };
    let stamp = stamp_of(object);
    match service.resolve_key(&object.key) {
        Ok(None) => {}
        Ok(Some(inode)) => {
            let same = inode.kind == Kind::File
                && inode.checksum.as_deref() == Some(hex::encode(checksum).as_str())
                && inode.version == stamp.version;
            return match same {
                true => Outcome::AlreadyPresent,
                false => Outcome::NotImported(format!(
                    "the store already holds a different {} at this key (version {}, SHA-256 {}); remove it and run the import again to bring the prototype's in",
                    if inode.kind == Kind::File { "object" } else { "directory or file" },
                    inode.version,
                    inode.checksum.as_deref().unwrap_or("unknown")
                )),
            };
        }
        Err(Error::NotADirectory(_)) => {
            return Outcome::NotImported("a folder of the key is a file in the store".to_string())
        }
        Err(e) => return Outcome::NotImported(format!("looking the key up failed: {e}")),
    }
    let (k, m) = (object.k, object.m);
    let shard_len = prototype_code::shard_size(object.size, k);
    // The usual case: every data shard is there; stream them, verified.
    let located: Vec<_> = match object.size {
        0 => Vec::new(),
        _ => (0..k)
            .map(|d| install.locate_shard(object, d, shard_len))
            .collect(),
    };
    if located.iter().all(|l| l.is_ok()) {
        let paths = located.into_iter().flatten().map(|f| f.path).collect();
        let mut stream = ShardStream::new(paths, shard_len, object.size, checksum);
        match service.import_object(&object.key, &mut stream, &stamp) {
            Ok(_) => return Outcome::Imported,
            // Wrong bytes (or a shard that could not be read): rebuild.
            Err(_) if stream.failed() => {}
            Err(e) => return Outcome::NotImported(format!("storing it failed: {e}")),
        }
    }
    let mut problems = Vec::new();
    let shards: Vec<Option<Vec<u8>>> = (0..k + m)
        .map(|s| match install.read_shard(object, s, shard_len) {
            Ok((_, bytes)) => Some(bytes),
            Err(problem) => {
                if object.size > 0 {
                    problems.push(format!("shard {s}: {problem}"));
                }
                None
            }
        })
        .collect();
    match rebuild(k, m, object.size, &checksum, &shards) {
        Rebuilt::Verified {
            data,
            rebuilt,
            damaged,
        } => {
            let mut reader: &[u8] = &data;
            if let Err(e) = service.import_object(&object.key, &mut reader as &mut dyn Read, &stamp)
            {
                return Outcome::NotImported(format!("storing it failed: {e}"));
            }
            if rebuilt.is_empty() {
                return Outcome::Imported;
            }
            let mut what = vec![format!(
                "rebuilt data shard{} {} from parity",
                if rebuilt.len() == 1 { "" } else { "s" },
                list(&rebuilt)
            )];
            if !damaged.is_empty() {
                what.push(format!("shard {} held wrong bytes", list(&damaged)));
            }
            what.extend(problems);
            Outcome::Repaired(what.join("; "))
        }
        Rebuilt::Failed(reason) => {
            let mut why = vec![reason];
            why.extend(problems);
            Outcome::Unrecoverable(why.join("; "))
        }
    }
}

fn list(indices: &[usize]) -> String {
    indices
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// 64 hex digits.
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// The object's history as minigcs keeps it. The prototype's times carry
/// no zone (Python's `isoformat()`): they are read as UTC; one that is
/// missing or unreadable becomes the import's time.
fn stamp_of(object: &PrototypeObject) -> ObjectStamp {
    let now = now_nanos();
    let created = object.created_at.as_deref().and_then(parse_time);
    let updated = object.updated_at.as_deref().and_then(parse_time);
    ObjectStamp {
        content_type: object.content_type.clone().filter(|c| !c.trim().is_empty()),
        created: created.or(updated).unwrap_or(now),
        updated: updated.or(created).unwrap_or(now),
        version: object.version.unwrap_or(1).max(1) as u64,
    }
}

/// An ISO-8601 time: with an offset as given, without one as UTC.
fn parse_time(text: &str) -> Option<Nanos> {
    let text = text.trim();
    let timestamp = match text.parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => format!("{text}Z").parse::<jiff::Timestamp>().ok()?,
    };
    i64::try_from(timestamp.as_nanosecond()).ok()
}

impl ImportReport {
    fn count(&self, wanted: fn(&Outcome) -> bool) -> usize {
        self.objects.iter().filter(|o| wanted(&o.outcome)).count()
    }

    /// Every object is in the store (imported now or before).
    pub fn complete(&self) -> bool {
        self.objects.iter().all(|o| {
            matches!(
                o.outcome,
                Outcome::Imported | Outcome::Repaired(_) | Outcome::AlreadyPresent
            )
        })
    }

    /// The closing table, for humans.
    pub fn render(&self) -> String {
        let rows = [
            ("imported", self.count(|o| matches!(o, Outcome::Imported))),
            (
                "repaired from parity",
                self.count(|o| matches!(o, Outcome::Repaired(_))),
            ),
            (
                "already present (skipped)",
                self.count(|o| matches!(o, Outcome::AlreadyPresent)),
            ),
            (
                "unrecoverable",
                self.count(|o| matches!(o, Outcome::Unrecoverable(_))),
            ),
            (
                "not imported",
                self.count(|o| matches!(o, Outcome::NotImported(_))),
            ),
        ];
        let mut out = format!(
            "{} object(s) in the prototype at {}\n",
            self.objects.len(),
            self.prototype.display()
        );
        for (name, count) in rows {
            out.push_str(&format!("  {name:<27} {count:>6}\n"));
        }
        for title in ["repaired from parity", "unrecoverable", "not imported"] {
            let lines: Vec<String> = self
                .objects
                .iter()
                .filter_map(|o| match o.outcome.detail() {
                    Some((t, detail)) if t == title => {
                        Some(format!("  {}  ({} bytes): {detail}", o.key, o.size))
                    }
                    _ => None,
                })
                .collect();
            if !lines.is_empty() {
                out.push_str(&format!("\n{title}:\n{}\n", lines.join("\n")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prototype_times_are_read_as_utc() {
        let micros = |t: &str| parse_time(t).map(|n| n / 1000);
        assert_eq!(micros("1970-01-01T00:00:01.500000"), Some(1_500_000));
        assert_eq!(micros("1970-01-01T00:00:01"), Some(1_000_000));
        assert_eq!(micros("1970-01-01T01:00:01+01:00"), Some(1_000_000));
        assert_eq!(micros("1970-01-01 00:00:02"), Some(2_000_000));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn checksums_must_be_sha256_hex() {
        let hex64 = "ab".repeat(32);
        assert_eq!(parse_sha256(&hex64), Some([0xab; 32]));
        assert_eq!(parse_sha256("abcd"), None);
        assert_eq!(parse_sha256(&"zz".repeat(32)), None);
    }
}
