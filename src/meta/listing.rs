//! Object listing in key order: the regular files under a directory as
//! '/'-joined keys, sorted as bytes, from a lower bound and up to a limit,
//! without visiting what sorts before the bound (a keyset walk).
//!
//! Keys sort across directories, so a directory's entries are not taken in
//! plain name order: a directory `a` sorts as `a/`, after a file `a.txt`
//! (`.` < `/`) and before `a0`. Each directory is read in pages along the
//! (parent, name) primary key of `dentries`; a subdirectory waits in a small
//! heap until the page cursor has passed its sort key (`name/`), so entries
//! come out in key order while only the index is scanned. Resuming after a
//! key descends only into the directories that key names, starting each
//! scan at the key's component there; the directories whose sort key falls
//! between that component and the key (a name that is a prefix of it
//! followed by a byte below `/`) are found by point lookups.
//!
//! Each page is its own read, so a long listing never holds one snapshot.

use rusqlite::{params, Connection, OptionalExtension};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::ops::Bound;

use super::Meta;
use crate::error::Result;
use crate::model::Kind;

/// Entries read per query while walking a directory.
const PAGE: usize = 1000;

/// One entry waiting to come out of its directory, by sort key.
struct Pending {
    /// `name` for a file, `name/` for a directory.
    sort: Vec<u8>,
    /// A directory to descend into, with the bound inside it (None: all).
    dir: Option<(u64, Option<RelBound>)>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.sort == other.sort
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort.cmp(&other.sort)
    }
}

/// A lower bound on keys relative to one directory.
#[derive(Clone)]
struct RelBound {
    key: Vec<u8>,
    inclusive: bool,
}

/// One directory being walked.
struct Frame {
    dir: u64,
    /// Key prefix of its entries: "" or "a/b/".
    path: Vec<u8>,
    /// Every name still to read sorts after this one (or at it, when
    /// `from_inclusive`).
    from: Vec<u8>,
    from_inclusive: bool,
    /// Names equal to this are skipped (a file at an exclusive bound).
    skip_file: Option<Vec<u8>>,
    done: bool,
    pending: BinaryHeap<Reverse<Pending>>,
}

impl Frame {
    /// The next entry that can come out: nothing still unread sorts before it.
    fn ready(&mut self) -> Option<Pending> {
        let Reverse(top) = self.pending.peek()?;
        let unread_after = match (self.done, self.from_inclusive) {
            (true, _) => true,
            (false, true) => top.sort < self.from,
            (false, false) => top.sort <= self.from,
        };
        unread_after.then(|| self.pending.pop().expect("peeked").0)
    }
}

/// (name, ino, kind code, nlink) of a directory entry.
type EntryRow = (Vec<u8>, i64, i64, i64);

impl Meta {
    /// Keys of the regular files (with a link) under directory `dir`, whose
    /// own key is `base` ("" for the root), that start with `prefix` and sort
    /// after `after`, in byte order, at most `limit`. `prefix` must start
    /// with `base/` (or `base` be empty).
    pub fn files_in_key_order(
        &self,
        dir: u64,
        base: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut path = base.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ if prefix.is_empty() => Bound::Unbounded,
            _ => Bound::Included(prefix),
        };
        let bound = match lower {
            Bound::Unbounded => None,
            Bound::Included(k) | Bound::Excluded(k) => match k.strip_prefix(&path[..]) {
                Some(rel) => Some(RelBound {
                    key: rel.to_vec(),
                    inclusive: matches!(lower, Bound::Included(_)),
                }),
                None if k < &path[..] => None,
                None => return Ok(Vec::new()),
            },
        };
        let mut out = Vec::new();
        let mut stack = vec![self.frame(dir, path, bound)?];
        while let Some(top) = stack.last_mut() {
            if out.len() >= limit {
                break;
            }
            let Some(next) = top.ready() else {
                if top.done {
                    stack.pop();
                } else {
                    self.read_page(top)?;
                }
                continue;
            };
            let mut key = top.path.clone();
            key.extend_from_slice(&next.sort);
            // Past the prefix: so is everything after.
            if !(key.starts_with(prefix) || prefix.starts_with(&key)) {
                break;
            }
            match next.dir {
                None => out.push(key),
                Some((ino, bound)) => {
                    let frame = self.frame(ino, key, bound)?;
                    stack.push(frame);
                }
            }
        }
        Ok(out)
    }

    /// Start walking directory `dir` from `bound`.
    fn frame(&self, dir: u64, path: Vec<u8>, bound: Option<RelBound>) -> Result<Frame> {
        let mut frame = Frame {
            dir,
            path,
            from: Vec::new(),
            from_inclusive: false,
            skip_file: None,
            done: false,
            pending: BinaryHeap::new(),
        };
        let Some(bound) = bound else {
            return Ok(frame);
        };
        let (first, rest) = match bound.key.iter().position(|&b| b == b'/') {
            Some(i) => (&bound.key[..i], Some(&bound.key[i + 1..])),
            None => (&bound.key[..], None),
        };
        self.db.read(|conn| {
            // Directories named by a head of `first` followed by a byte below
            // '/' sort between `first` and the bound: wholly after it.
            for (i, &b) in first.iter().enumerate().skip(1) {
                if b < b'/' {
                    if let Some(ino) = Self::subdir_in(conn, dir, &first[..i])? {
                        frame.push_dir(&first[..i], ino, None);
                    }
                }
            }
            match rest {
                // The bound is inside directory `first` (if it is one); names
                // before `first/` sort before the bound.
                Some(rest) => {
                    if let Some(ino) = Self::subdir_in(conn, dir, first)? {
                        let inner = RelBound {
                            key: rest.to_vec(),
                            inclusive: bound.inclusive,
                        };
                        frame.push_dir(first, ino, Some(inner));
                    }
                    frame.from = [first, b"/"].concat();
                }
                None => {
                    frame.from = first.to_vec();
                    frame.from_inclusive = true;
                    if !bound.inclusive {
                        frame.skip_file = Some(first.to_vec());
                    }
                }
            }
            Ok(())
        })?;
        Ok(frame)
    }

    /// Read the next page of a directory's names into its heap.
    fn read_page(&self, frame: &mut Frame) -> Result<()> {
        let rows: Vec<EntryRow> = self.db.read(|conn| {
            let op = if frame.from_inclusive { ">=" } else { ">" };
            let mut st = conn.prepare_cached(&format!(
                "SELECT d.name, d.ino, i.kind, i.nlink FROM dentries d JOIN inodes i ON i.ino=d.ino
                 WHERE d.parent=?1 AND d.name {op} ?2 ORDER BY d.name LIMIT ?3"
            ))?;
            let rows = st.query_map(params![frame.dir as i64, frame.from, PAGE as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        frame.done = rows.len() < PAGE;
        for (name, ino, kind, nlink) in rows {
            if kind == Kind::Dir as i64 {
                frame.push_dir(&name, ino as u64, None);
            } else if kind == Kind::File as i64
                && nlink > 0
                && frame.skip_file.as_deref() != Some(&name[..])
            {
                frame.pending.push(Reverse(Pending {
                    sort: name.clone(),
                    dir: None,
                }));
            }
            frame.from = name;
            frame.from_inclusive = false;
        }
        Ok(())
    }

    /// The inode of subdirectory `name` of `dir`, if there is one.
    fn subdir_in(conn: &Connection, dir: u64, name: &[u8]) -> Result<Option<u64>> {
        let mut st = conn.prepare_cached(
            "SELECT d.ino FROM dentries d JOIN inodes i ON i.ino=d.ino
             WHERE d.parent=?1 AND d.name=?2 AND i.kind=?3",
        )?;
        Ok(st
            .query_row(params![dir as i64, name, Kind::Dir as i64], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(|ino| ino as u64))
    }
}

impl Frame {
    fn push_dir(&mut self, name: &[u8], ino: u64, bound: Option<RelBound>) {
        self.pending.push(Reverse(Pending {
            sort: [name, b"/"].concat(),
            dir: Some((ino, bound)),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Inode, ROOT_INO};

    /// Files whose keys stress the order: names that are heads of others
    /// followed by bytes below and above '/', at several depths.
    const KEYS: &[&str] = &[
        "a.txt", "a0", "a-", "a/b.c", "a/b-", "a/b/c", "a/b/d/e", "a/b/d0", "a!/z", "a-b/q",
        "a-b/qq/r", "b", "ab", "a/b!", "a/b/d/e!",
    ];

    fn tree() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let (meta, _, _) = Meta::open(&dir.path().join("meta.db"), vec!["n".into()], None, || {
            Ok(None)
        })
        .unwrap();
        for key in KEYS {
            let parts: Vec<&str> = key.split('/').collect();
            let mut at = ROOT_INO;
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                at = match meta.lookup(at, part.as_bytes()).unwrap() {
                    Some(found) => found.ino,
                    None => {
                        let kind = if last { Kind::File } else { Kind::Dir };
                        meta.create(at, part.as_bytes(), &Inode::new(kind, 0o755, 0, 0))
                            .unwrap()
                            .ino
                    }
                };
            }
        }
        // An empty directory, and one holding only a directory, list nothing.
        let new_dir = |parent, name: &[u8]| {
            meta.create(parent, name, &Inode::new(Kind::Dir, 0o755, 0, 0))
                .unwrap()
                .ino
        };
        let a = meta.lookup(ROOT_INO, b"a").unwrap().unwrap().ino;
        new_dir(a, b"b0");
        let holder = new_dir(ROOT_INO, b"a.d");
        new_dir(holder, b"inner");
        (dir, meta)
    }

    #[test]
    fn pages_follow_key_order_from_any_bound() {
        let (_dir, meta) = tree();
        let mut all: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
        all.sort();
        let mut bounds: Vec<String> = all.clone();
        bounds.extend(
            [
                "",
                "a",
                "a/",
                "a-",
                "a/b",
                "a/b/",
                "a.",
                "a/b/d",
                "a-b",
                "a-b/q/",
                "zz",
                "a!",
                " ",
                "a.d/inner",
                "a/b0",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        for prefix in [
            "", "a", "a/", "a/b", "a/b/", "a-", "a-b/q", "a/b/d/", "b", "c",
        ] {
            // As the service does: start at the deepest directory the
            // prefix names completely.
            let (dir, base) = match prefix.rfind('/') {
                Some(pos) => {
                    let parts: Vec<&[u8]> =
                        prefix[..pos].split('/').map(|p| p.as_bytes()).collect();
                    (meta.resolve(&parts).unwrap().unwrap().ino, &prefix[..pos])
                }
                None => (ROOT_INO, ""),
            };
            for after in bounds.iter().map(Some).chain([None]) {
                for limit in [1, 2, 3, 100] {
                    let want: Vec<String> = all
                        .iter()
                        .filter(|k| k.starts_with(prefix))
                        .filter(|k| after.is_none_or(|a| k.as_str() > a.as_str()))
                        .take(limit)
                        .cloned()
                        .collect();
                    let got: Vec<String> = meta
                        .files_in_key_order(
                            dir,
                            base.as_bytes(),
                            prefix.as_bytes(),
                            after.map(|a| a.as_bytes()),
                            limit,
                        )
                        .unwrap()
                        .into_iter()
                        .map(|k| String::from_utf8(k).unwrap())
                        .collect();
                    assert_eq!(got, want, "prefix {prefix:?} after {after:?} limit {limit}");
                }
            }
        }
    }
}
