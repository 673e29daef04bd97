//! The journal writer and replay over memory nodes: records of every
//! change reach m+1 nodes in distinct regions; a node failing an append
//! closes the segment and the same records go to a new one on healthy
//! nodes; replay from the nodes rebuilds the database even with one copy
//! of each segment corrupted, and a gap is reported, never papered over.

use std::sync::Arc;
use std::time::Duration;

use super::replay::{apply, collect};
use super::{JournalWriter, JOURNAL_AREA};
use crate::chunk::memory_test_store;
use crate::meta::{Meta, ROOT_INO};
use crate::model::{Inode, Kind};
use crate::node::NodeBackend;

const PATIENCE: Duration = Duration::from_secs(5);

fn file() -> Inode {
    Inode::new(Kind::File, 0o644, 0, 0)
}

fn names_in(meta_path: &std::path::Path) -> Vec<Vec<u8>> {
    let conn = rusqlite::Connection::open(meta_path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM dentries WHERE parent=?1 ORDER BY name")
        .unwrap();
    let names = stmt
        .query_map([ROOT_INO as i64], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|n| n.unwrap())
        .collect();
    names
}

/// A 2+1 store over three memory nodes, its metadata and a journal writer
/// attached to it.
struct Journaled {
    dir: tempfile::TempDir,
    db: std::path::PathBuf,
    store: Arc<crate::chunk::ChunkStore>,
    nodes: Vec<Arc<crate::node::MemoryNode>>,
    meta: Meta,
    writer: Arc<JournalWriter>,
}

fn journaled() -> Journaled {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    let (store, nodes) = memory_test_store();
    let store = Arc::new(store);
    let (meta, _, _) = Meta::open(
        &db,
        vec!["node-1".into(), "node-2".into(), "node-3".into()],
        Some("cluster-test"),
        || Ok(None),
    )
    .unwrap();
    let writer = Arc::new(JournalWriter::new(
        meta.journal_records(),
        store.clone(),
        Box::new(|| {}),
        Box::new(|| {}),
    ));
    meta.attach_journal(writer.clone());
    Journaled {
        dir,
        db,
        store,
        nodes,
        meta,
        writer,
    }
}

#[test]
fn records_reach_m_plus_one_nodes_survive_a_failed_node_and_replay() {
    let Journaled {
        dir,
        db,
        store,
        nodes,
        meta,
        writer,
    } = journaled();
    assert_eq!(writer.wanted_copies(), 2);

    meta.create(ROOT_INO, b"one", &file()).unwrap();
    meta.sync().unwrap();
    let status = writer.status();
    assert_eq!(status.durable_lsn, status.last_lsn);
    assert_eq!(status.active_nodes.len(), 2);
    let holders: Vec<usize> = (0..3)
        .filter(|&i| !nodes[i].list_meta_files(JOURNAL_AREA).unwrap().is_empty())
        .collect();
    assert_eq!(holders.len(), 2, "one segment on m+1 nodes");

    // A holder fails: the next append closes the segment and writes the
    // same records to a new one on the two healthy nodes.
    let failing = holders[0];
    nodes[failing].set_failed(true);
    meta.create(ROOT_INO, b"two", &file()).unwrap();
    meta.sync().unwrap();
    store.probe_all();
    meta.create(ROOT_INO, b"three", &file()).unwrap();
    meta.sync().unwrap();
    let status = writer.status();
    assert_eq!(status.durable_lsn, status.last_lsn);
    assert!(status.reduced_segments >= 1, "{status:?}");
    assert!(!status
        .active_nodes
        .contains(&nodes[failing].id().to_string()));
    assert_eq!(status.active_nodes.len(), 2);
    nodes[failing].set_failed(false);
    let wanted = names_in(&db);

    // Replayed from the nodes onto an empty database: the same names.
    let backends: Vec<Arc<dyn NodeBackend>> = nodes.iter().map(|n| n.clone() as _).collect();
    let found = collect(&backends, Some("cluster-test"), 0, PATIENCE).unwrap();
    assert_eq!(found.gap, None);
    assert_eq!(found.records.last().unwrap().lsn, status.last_lsn);
    let copy = dir.path().join("replayed.db");
    apply(&copy, &found.records).unwrap();
    assert_eq!(names_in(&copy), wanted);

    // Every copy of every segment on one node corrupted: the others serve.
    for (name, size) in nodes[holders[1]].list_meta_files(JOURNAL_AREA).unwrap() {
        nodes[holders[1]].corrupt_meta_file(JOURNAL_AREA, &name, size as usize - 3);
    }
    let found = collect(&backends, Some("cluster-test"), 0, PATIENCE).unwrap();
    assert_eq!(found.gap, None, "{:?}", found.rejected);
    assert_eq!(found.records.last().unwrap().lsn, status.last_lsn);
    assert!(!found.rejected.is_empty());

    // Another cluster's journal is never replayed.
    let other = collect(&backends, Some("other"), 0, PATIENCE).unwrap();
    assert!(other.records.is_empty());
}

#[test]
fn a_missing_record_is_a_gap_and_nothing_after_it_applies() {
    let Journaled {
        dir: _dir,
        nodes,
        meta,
        writer,
        ..
    } = journaled();
    meta.create(ROOT_INO, b"a", &file()).unwrap();
    meta.sync().unwrap();
    let before_gap = writer.status().last_lsn;
    // Records committed while no node could take them, then lost with the
    // process: the next records start a new segment after a hole.
    writer.close_segment();
    meta.create(ROOT_INO, b"lost", &file()).unwrap();
    meta.journal_records().take_all();
    meta.create(ROOT_INO, b"after", &file()).unwrap();
    meta.sync().unwrap();
    let backends: Vec<Arc<dyn NodeBackend>> = nodes.iter().map(|n| n.clone() as _).collect();
    let found = collect(&backends, Some("cluster-test"), 0, PATIENCE).unwrap();
    assert_eq!(found.records.last().unwrap().lsn, before_gap);
    let gap = found.gap.expect("a gap");
    assert!(
        gap.contains(&format!("record {} is on no node", before_gap + 1)),
        "{gap}"
    );
}

#[test]
fn copies_of_a_segment_opened_after_the_check_closed_the_active_one_are_left_alone() {
    let Journaled {
        dir: _dir,
        store,
        nodes,
        meta,
        writer,
        ..
    } = journaled();
    meta.create(ROOT_INO, b"a", &file()).unwrap();
    meta.sync().unwrap();
    let durable = writer.status().durable_lsn;
    // A segment an append opens while the check runs: its copies differ by
    // the frame in flight (here one copy is only a header).
    let later = super::segment_name(durable + 1, 9_999_999_999_999);
    let header = super::encode_segment_header(&super::SegmentHeader {
        format: super::FORMAT,
        cluster_id: "cluster-test".into(),
        first_lsn: durable + 1,
        created_unix_ms: 9_999_999_999_999,
    });
    let mut longer = header.clone();
    longer.extend(super::encode_frame(&[crate::meta::JournalRecord {
        lsn: durable + 1,
        changeset: vec![1, 2, 3],
    }]));
    nodes[0]
        .put_meta_file(JOURNAL_AREA, &later, &[&longer])
        .unwrap();
    nodes[1]
        .put_meta_file(JOURNAL_AREA, &later, &[&header])
        .unwrap();
    let checked = super::upkeep::check_copies(&store, &writer, true).unwrap();
    assert_eq!((checked.bad, checked.rewritten), (0, 0), "{checked:?}");
    assert_eq!(
        nodes[1].read_meta_file(JOURNAL_AREA, &later).unwrap(),
        header,
        "the short copy of a segment still being appended to is not rewritten"
    );
}
