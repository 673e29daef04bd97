//! Reading the journal back from the nodes and replaying it onto a copy of
//! the database (a restored snapshot, or an empty database when the store
//! never had a snapshot): `collect` lists the segments on every reachable
//! node, reads the copies of those that hold records past the base, keeps
//! per segment the copy with the most valid records (a torn tail or a bad
//! frame in one copy is supplied by another), and returns the records that
//! continue the base without a gap; `apply` replays them in one
//! transaction.
//!
//! Every node call runs on a thread of its own with a deadline: a hung node
//! folder costs one deadline and is skipped.

use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{parse_segment, parse_segment_name, JOURNAL_AREA};
use crate::error::{Error, Result};
use crate::meta::{self, ApplyReport, JournalRecord};
use crate::node::NodeBackend;
use crate::snapshot::restore::{answer, ask};

/// What the journal on the nodes holds past a base.
#[derive(Debug, Default)]
pub struct FoundJournal {
    /// The records that continue the base, in order, without a gap.
    pub records: Vec<JournalRecord>,
    /// Segments read, and the copies read of them.
    pub segments_read: usize,
    pub copies_read: usize,
    /// Copies passed over or cut short, with why.
    pub rejected: Vec<String>,
    /// Where the records stop continuing the base, when records exist
    /// beyond it (they cannot be applied).
    pub gap: Option<String>,
    /// The newest LSN seen in any copy.
    pub newest_lsn: u64,
    /// A segment holds the base's LSN or starts right after it: the
    /// journal continues the base (the records after it, if any, follow).
    pub reaches_base: bool,
    /// Nodes whose journal could not be listed (hung, unreadable): records
    /// only they hold may be missing.
    pub unreachable: Vec<String>,
}

impl FoundJournal {
    /// LSN of the last record that applies, or `base` when none does.
    pub fn last_lsn(&self, base: u64) -> u64 {
        self.records.last().map_or(base, |r| r.lsn)
    }

    /// One line for logs and `restore-meta`.
    pub fn describe(&self, base: u64) -> String {
        let mut out = match self.records.len() {
            0 => format!("no journal record after LSN {base}"),
            n => format!(
                "{n} journal record(s), LSN {} to {}",
                base + 1,
                self.last_lsn(base)
            ),
        };
        out.push_str(&format!(
            " ({} segment(s), {} copies read)",
            self.segments_read, self.copies_read
        ));
        if let Some(gap) = &self.gap {
            out.push_str(&format!("; {gap}"));
        }
        if !self.unreachable.is_empty() {
            out.push_str(&format!(
                "; not read (did not answer): {}",
                self.unreachable.join(", ")
            ));
        }
        out
    }
}

/// Gather the journal records after `base_lsn` from `nodes`.
pub fn collect(
    nodes: &[Arc<dyn NodeBackend>],
    cluster_id: Option<&str>,
    base_lsn: u64,
    patience: Duration,
) -> Result<FoundJournal> {
    // segment name → nodes holding a copy
    let mut holders: BTreeMap<(u64, u64), (String, Vec<usize>)> = BTreeMap::new();
    let mut unreachable = Vec::new();
    let listings: Vec<_> = nodes
        .iter()
        .map(|n| ask(n, |node| node.list_meta_files(JOURNAL_AREA)))
        .collect();
    for (i, rx) in listings.iter().enumerate() {
        match answer(rx, &*nodes[i], patience) {
            Ok(files) => {
                for (name, _) in files {
                    if let Some(key) = parse_segment_name(&name) {
                        holders.entry(key).or_insert((name, Vec::new())).1.push(i);
                    }
                }
            }
            Err(e) => {
                log::warn!("metadata journal on node {}: {e}", nodes[i].id());
                unreachable.push(nodes[i].id().to_string());
            }
        }
    }
    let mut found = FoundJournal {
        unreachable,
        ..FoundJournal::default()
    };
    let mut by_lsn: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let keys: Vec<(u64, u64)> = holders.keys().copied().collect();
    // Every segment is read (their total is bounded by the snapshots'
    // truncation): a segment's name says where it starts, only its records
    // say where it ends.
    for key in &keys {
        let (name, on) = &holders[key];
        let best = read_best_copy(nodes, on, name, cluster_id, patience, &mut found);
        found.segments_read += 1;
        if let Some(records) = best {
            let first = key.0;
            if first <= base_lsn + 1
                && (first == base_lsn + 1 || records.last().is_some_and(|r| r.lsn >= base_lsn))
            {
                found.reaches_base = true;
            }
            for record in records {
                found.newest_lsn = found.newest_lsn.max(record.lsn);
                if record.lsn > base_lsn {
                    by_lsn.entry(record.lsn).or_insert(record.changeset);
                }
            }
        }
    }
    if !found.reaches_base && base_lsn > 0 {
        // After every snapshot a segment holds its LSN or starts right
        // after it, and it is kept until an older snapshot covers it: none
        // reaching the base means journal copies were lost, and changes
        // after the base may be too.
        found.gap = Some(format!(
            "the journal on the nodes ends at LSN {}, before the base's LSN {base_lsn}: changes after the base may be missing",
            found.newest_lsn
        ));
    }
    for (next, (lsn, changeset)) in (base_lsn + 1..).zip(by_lsn) {
        if lsn != next {
            found.gap = Some(format!(
                "record {next} is on no node: records {lsn} to {} cannot be applied",
                found.newest_lsn
            ));
            break;
        }
        found.records.push(JournalRecord { lsn, changeset });
    }
    Ok(found)
}

/// Read every copy of one segment; the records of the copy with the most.
fn read_best_copy(
    nodes: &[Arc<dyn NodeBackend>],
    on: &[usize],
    name: &str,
    cluster_id: Option<&str>,
    patience: Duration,
    found: &mut FoundJournal,
) -> Option<Vec<JournalRecord>> {
    let reads: Vec<_> = on
        .iter()
        .map(|&i| {
            let name = name.to_string();
            (
                i,
                ask(&nodes[i], move |n| n.read_meta_file(JOURNAL_AREA, &name)),
            )
        })
        .collect();
    let mut best: Option<Vec<JournalRecord>> = None;
    for (i, rx) in reads {
        let id = nodes[i].id();
        let parsed = answer(&rx, &*nodes[i], patience).and_then(|bytes| parse_segment(&bytes));
        found.copies_read += 1;
        match parsed {
            Ok(segment) => {
                if let Some(wanted) = cluster_id {
                    if segment.header.cluster_id != wanted {
                        found.rejected.push(format!(
                            "{name} on {id}: journal of cluster {:?}",
                            segment.header.cluster_id
                        ));
                        continue;
                    }
                }
                if let Some(why) = &segment.stopped {
                    found.rejected.push(format!(
                        "{name} on {id}: read up to LSN {:?}, {why}",
                        segment.last_lsn()
                    ));
                }
                if best
                    .as_ref()
                    .is_none_or(|b| b.len() < segment.records.len())
                {
                    best = Some(segment.records);
                }
            }
            Err(e) => found.rejected.push(format!("{name} on {id}: {e}")),
        }
    }
    best
}

/// Replay `records` onto the database at `path` (its schema brought up to
/// this version first) in one transaction, then sync the file.
pub fn apply(path: &Path, records: &[JournalRecord]) -> Result<ApplyReport> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    meta::prepare_schema(&mut conn)?;
    let mut total = ApplyReport::default();
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for record in records {
        match meta::apply_journal_record(&conn, record) {
            Ok(report) => {
                total.replaced += report.replaced;
                total.missing += report.missing;
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(Error::Other(format!(
                    "replaying journal record {}: {e}",
                    record.lsn
                )));
            }
        }
    }
    conn.execute_batch("COMMIT")?;
    let lsn = meta::journal_lsn_of(&conn)?;
    if let Some(last) = records.last() {
        if lsn != last.lsn {
            return Err(Error::Other(format!(
                "after replaying the journal through record {} the database says LSN {lsn}",
                last.lsn
            )));
        }
    }
    drop(conn);
    std::fs::File::open(path)?.sync_all()?;
    Ok(total)
}
