//! Schema and migrations of the metadata database (PRAGMA user_version).

use rusqlite::Connection;

use crate::error::Result;

/// Each entry migrates from version i to i+1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE inodes(
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    nlink INTEGER NOT NULL,
    rdev INTEGER NOT NULL DEFAULT 0,
    atime INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    crtime INTEGER NOT NULL,
    target BLOB,
    content_type TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    checksum TEXT
);
CREATE TABLE dentries(
    parent INTEGER NOT NULL,
    name BLOB NOT NULL,
    ino INTEGER NOT NULL,
    PRIMARY KEY(parent, name)
) WITHOUT ROWID;
CREATE INDEX dentries_by_ino ON dentries(ino);
CREATE TABLE xattrs(
    ino INTEGER NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY(ino, name)
) WITHOUT ROWID;
-- A chunk belongs to (ino, idx) while live; ino NULL means superseded and
-- waiting for the collector to delete its shards.
CREATE TABLE chunks(
    chunk_id INTEGER PRIMARY KEY,
    ino INTEGER,
    idx INTEGER NOT NULL,
    data_len INTEGER NOT NULL,
    k INTEGER NOT NULL,
    m INTEGER NOT NULL
);
CREATE UNIQUE INDEX chunks_by_file ON chunks(ino, idx) WHERE ino IS NOT NULL;
CREATE INDEX chunks_dead ON chunks(chunk_id) WHERE ino IS NULL;
-- state: 0 ok, 1 missing (never written or lost), 2 corrupt
CREATE TABLE shards(
    chunk_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    node TEXT,
    state INTEGER NOT NULL,
    checksum INTEGER,
    PRIMARY KEY(chunk_id, idx)
) WITHOUT ROWID;
CREATE INDEX shards_by_node ON shards(node);
CREATE INDEX shards_unhealthy ON shards(state) WHERE state != 0;
CREATE TABLE recoveries(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    state TEXT NOT NULL,
    detected_ms INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    done_ms INTEGER,
    shards_total INTEGER NOT NULL DEFAULT 0,
    shards_done INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
"#,
    // The MD5 of a file's bytes (the S3 ETag of a single-part object),
    // recorded by uploads and computed lazily for files written otherwise.
    r#"
ALTER TABLE inodes ADD COLUMN md5 TEXT;
"#,
    // S3 multipart uploads in progress, outside the namespace. A part's
    // chunks are rows of `chunks` whose ino is the part's negative id (no
    // inode has one), so they are live, scrubbed and repaired like any
    // file's, and leave for the collection queue when the upload goes.
    r#"
CREATE TABLE uploads(
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    started INTEGER NOT NULL,
    content_type TEXT,
    xattr_prefix BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE upload_xattrs(
    upload TEXT NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY(upload, name)
) WITHOUT ROWID;
CREATE TABLE upload_parts(
    part_id INTEGER PRIMARY KEY AUTOINCREMENT,
    upload TEXT NOT NULL,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    mtime INTEGER NOT NULL
);
CREATE UNIQUE INDEX upload_parts_by_number ON upload_parts(upload, number);
"#,
];

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(crate::error::Error::Other(format!(
            "metadata schema version {version} is newer than this minigcs ({}); upgrade minigcs",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
