//! Unit tests of the connection layer: reads on the reader pool never wait
//! behind the writer, see every write that returned before them, and cannot
//! write; every transaction that changes rows is journaled in order and
//! replays to the same database; a database file deleted or replaced under the process stops every
//! write (reads go on, a copy is saved); a new database asks before it
//! becomes a store.

use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::connections::{Durability, READER_POOL_SIZE};
use super::Meta;
use crate::model::{DirPage, Inode, Kind, ROOT_INO};

/// Generous bound for "did not block": far above any query's time, far
/// below a hang.
const PATIENCE: Duration = Duration::from_secs(20);

fn open_meta(dir: &tempfile::TempDir) -> Meta {
    let path = dir.path().join("meta").join("meta.db");
    let (meta, _, created) =
        Meta::open(&path, vec!["n1".into(), "n2".into()], None, || Ok(None)).unwrap();
    assert!(created);
    meta
}

fn file_template() -> Inode {
    Inode::new(Kind::File, 0o644, 0, 0)
}

#[test]
fn lookup_is_not_blocked_by_an_open_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(open_meta(&dir));
    let before = meta.create(ROOT_INO, b"before", &file_template()).unwrap();

    // A durable write transaction that stays open until released.
    let (entered_tx, entered_rx) = channel();
    let (release_tx, release_rx) = channel::<()>();
    let writer = {
        let meta = meta.clone();
        thread::spawn(move || {
            meta.db.write_transaction(Durability::Durable, |tx| {
                let ino = Meta::insert_inode(tx, &file_template())?;
                Meta::insert_dentry(tx, ROOT_INO, b"during", ino)?;
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(ino)
            })
        })
    };
    entered_rx.recv_timeout(PATIENCE).unwrap();

    // Reads from another thread while the writer holds its transaction.
    let (read_tx, read_rx) = channel();
    let reader = {
        let meta = meta.clone();
        thread::spawn(move || {
            let found = meta.lookup(ROOT_INO, b"before").unwrap();
            let attrs = meta.get_inode(before.ino).unwrap();
            let during = meta.lookup(ROOT_INO, b"during").unwrap();
            let listing = meta.list_dir(ROOT_INO, DirPage::new(None, 10)).unwrap();
            read_tx.send((found, attrs, during, listing)).unwrap();
        })
    };
    let reads = read_rx.recv_timeout(PATIENCE);
    // Release the writer whatever happened, so a failure cannot hang.
    release_tx.send(()).unwrap();
    let during_ino = writer.join().unwrap().unwrap();
    reader.join().unwrap();

    let (found, attrs, during, listing) =
        reads.expect("reads completed while the write transaction was open");
    assert_eq!(found.map(|i| i.ino), Some(before.ino));
    assert_eq!(attrs.map(|i| i.ino), Some(before.ino));
    assert!(during.is_none(), "an uncommitted entry is not visible");
    let names: Vec<&[u8]> = listing.iter().map(|(n, _)| n.as_slice()).collect();
    assert_eq!(names, vec![b"before".as_slice()]);

    // Once the write returned, every new read sees it, from any thread.
    let seen = {
        let meta = meta.clone();
        thread::spawn(move || meta.lookup(ROOT_INO, b"during").unwrap())
            .join()
            .unwrap()
    };
    assert_eq!(seen.map(|i| i.ino), Some(during_ino));
}

#[test]
fn a_create_is_visible_to_a_lookup_on_another_thread_right_after() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(open_meta(&dir));
    for i in 0..50u32 {
        let name = format!("f{i}").into_bytes();
        let created = meta.create(ROOT_INO, &name, &file_template()).unwrap();
        let looked_up = {
            let meta = meta.clone();
            thread::spawn(move || meta.lookup(ROOT_INO, &name).unwrap())
                .join()
                .unwrap()
        };
        assert_eq!(looked_up.map(|i| i.ino), Some(created.ino));
    }
}

#[test]
fn reads_beyond_the_pool_open_an_extra_reader_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open_meta(&dir);
    let created = meta.create(ROOT_INO, b"x", &file_template()).unwrap();
    // Nest reads so every pooled reader is busy when the innermost runs.
    fn nested(meta: &Meta, depth: usize, ino: u64) -> Option<Inode> {
        meta.db
            .read(|_| {
                Ok(if depth == 0 {
                    meta.get_inode(ino).unwrap()
                } else {
                    nested(meta, depth - 1, ino)
                })
            })
            .unwrap()
    }
    let found = nested(&meta, READER_POOL_SIZE, created.ino);
    assert_eq!(found.map(|i| i.ino), Some(created.ino));
    assert_eq!(meta.db.idle_reader_count(), READER_POOL_SIZE);
}

#[test]
fn readers_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open_meta(&dir);
    let attempt = meta.db.read(|conn| {
        conn.execute("UPDATE settings SET value='x' WHERE key='cluster_id'", [])?;
        Ok(())
    });
    assert!(attempt.is_err());
    // The failed read did not poison the pool.
    assert!(meta.lookup(ROOT_INO, b"nothing").unwrap().is_none());
}

#[test]
fn every_changing_transaction_is_journaled_in_order_and_replays_to_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open_meta(&dir);
    let queue = meta.journal_records();
    // The new store's first transaction (cluster id, root) is record 1.
    assert_eq!(queue.last_lsn(), 1);
    let a = meta.create(ROOT_INO, b"a", &file_template()).unwrap();
    meta.set_xattr(a.ino, b"user.k", b"v", crate::model::XattrWrite::Upsert)
        .unwrap();
    // A transaction that changes nothing gets no record; neither does one
    // that fails (rolled back).
    meta.db
        .write_transaction(Durability::Buffered, |tx| {
            tx.execute("UPDATE inodes SET size=size WHERE ino=-1", [])?;
            Ok(())
        })
        .unwrap();
    let failed: crate::error::Result<()> = meta.db.write_transaction(Durability::Durable, |tx| {
        Meta::insert_inode(tx, &file_template())?;
        Err(crate::error::Error::Other("refused".into()))
    });
    assert!(failed.is_err());
    meta.rename(
        crate::model::NameRef::new(ROOT_INO, b"a"),
        crate::model::NameRef::new(ROOT_INO, b"b"),
        crate::model::RenameMode::Replace,
    )
    .unwrap();
    meta.sync().unwrap();
    let records = queue.take_all();
    let lsns: Vec<u64> = records.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, (1..=4).collect::<Vec<_>>());
    assert_eq!(queue.last_lsn(), 4);

    // Replayed onto an empty database, the records give the same rows.
    let copy = dir.path().join("replayed.db");
    let mut conn = rusqlite::Connection::open(&copy).unwrap();
    super::prepare_schema(&mut conn).unwrap();
    for record in &records {
        let report = super::apply_journal_record(&conn, record).unwrap();
        assert_eq!(
            report,
            super::ApplyReport::default(),
            "record {}",
            record.lsn
        );
    }
    assert_eq!(super::journal_lsn_of(&conn).unwrap(), 4);
    let dump = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut rows = Vec::new();
        for table in [
            "settings", "inodes", "dentries", "xattrs", "chunks", "shards",
        ] {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
                .unwrap();
            let columns = stmt.column_count();
            let mut q = stmt.query([]).unwrap();
            while let Some(row) = q.next().unwrap() {
                let values: Vec<String> = (0..columns)
                    .map(|c| format!("{:?}", row.get_ref(c).unwrap()))
                    .collect();
                rows.push(format!("{table}: {}", values.join(", ")));
            }
        }
        rows
    };
    let original = rusqlite::Connection::open(dir.path().join("meta").join("meta.db")).unwrap();
    assert_eq!(dump(&conn), dump(&original));
    assert!(dump(&conn)
        .iter()
        .any(|r| r.starts_with("dentries") && r.contains("98]")));
}

#[test]
fn a_deleted_database_refuses_writes_keeps_reads_and_saves_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open_meta(&dir);
    let kept = meta.create(ROOT_INO, b"kept", &file_template()).unwrap();
    assert!(meta.lost_reason().is_none());
    let path = dir.path().join("meta").join("meta.db");
    std::fs::remove_file(&path).unwrap();

    let refused = meta.create(ROOT_INO, b"after", &file_template());
    let Err(crate::error::Error::ReadOnly(reason)) = refused else {
        panic!("a write after the deletion must be refused, got {refused:?}");
    };
    assert!(reason.contains("was deleted"), "{reason}");
    assert_eq!(meta.lost_reason().as_deref(), Some(reason.as_str()));
    assert!(matches!(
        meta.check_writable(),
        Err(crate::error::Error::ReadOnly(_))
    ));
    // Reads go on from the open file.
    assert_eq!(
        meta.lookup(ROOT_INO, b"kept").unwrap().unwrap().ino,
        kept.ino
    );

    // The saved copy holds everything written before, and is a store.
    let copy = std::fs::read_dir(dir.path().join("meta"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("meta.db.rescued-"))
        .expect("a rescued copy next to the database");
    assert!(reason.contains(&copy.display().to_string()), "{reason}");
    std::fs::rename(&copy, &path).unwrap();
    let (reopened, _, created) = Meta::open(&path, vec!["n1".into(), "n2".into()], None, || {
        panic!("the copy is a store, not a new database")
    })
    .unwrap();
    assert!(!created);
    assert!(reopened.lookup(ROOT_INO, b"kept").unwrap().is_some());
    // Still refused: the copy is a file this process did not open.
    assert!(meta.create(ROOT_INO, b"late", &file_template()).is_err());
}

#[test]
fn a_replaced_database_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let meta = open_meta(&dir);
    let path = dir.path().join("meta").join("meta.db");
    let other = dir.path().join("other.db");
    std::fs::copy(&path, &other).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let reason = meta.lost_reason().expect("replacement noticed");
    assert!(reason.contains("was replaced"), "{reason}");
    assert!(meta.create(ROOT_INO, b"x", &file_template()).is_err());
}

#[test]
fn a_new_database_refused_by_its_caller_stays_new() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let ids = || vec!["n1".to_string()];
    let refused = Meta::open(&path, ids(), None, || {
        Err(crate::error::Error::Other("not now".into()))
    });
    assert!(refused.is_err());
    assert!(!path.exists(), "a refused new database leaves no file");
    let (_, id, created) = Meta::open(&path, ids(), None, || Ok(Some("c-1".into()))).unwrap();
    assert!(created, "asked again on the next open");
    assert_eq!(id, "c-1", "the proposed cluster id is adopted");
}
