//! Metadata files of a local node folder (`<root>/meta/<area>/<name>`):
//! snapshot copies written whole (temp file, fsync, rename, fsync of the
//! folder) and journal segments appended to and fdatasynced. Only the
//! daemon holding the folder's lock tidies temp files a crash left.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::local::{fsync_dir, map_not_found, LocalDirNode};
use super::{is_safe_meta_name, own_mounts, IDENTITY_FILE, META_FOLDER};
use crate::error::{Error, Result};

/// Zero bytes written after an append that grows a metadata file, so the
/// appends after it do not grow the file (see `append_meta`).
const APPEND_FILL: usize = 256 * 1024;

impl LocalDirNode {
    /// `<root>/meta/<area>`, after checking both names are plain.
    fn meta_area(&self, area: &str, name: Option<&str>) -> Result<PathBuf> {
        own_mounts::refuse_inside(&self.root)?;
        if !is_safe_meta_name(area) || name.is_some_and(|n| !is_safe_meta_name(n)) {
            return Err(Error::InvalidArgument(format!(
                "bad metadata file name {area}/{}",
                name.unwrap_or("")
            )));
        }
        Ok(self.root.join(META_FOLDER).join(area))
    }

    /// Store `<meta>/<area>/<name>` durably: `fill` writes the temp file,
    /// then fsync, rename, fsync of the folder. Refused on a node folder
    /// that is not set up, so a missing or emptied folder is never
    /// re-created here: it stays a failed (or empty) node until recovered.
    fn write_meta_file(
        &self,
        area: &str,
        name: &str,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<()> {
        let dir = self.meta_area(area, Some(name))?;
        self.refuse_unset()?;
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{}-{n}-{name}", std::process::id()));
        let write = || -> std::io::Result<()> {
            self.make_meta_area(&dir)?;
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            fill(&mut f)?;
            f.sync_all()?;
            fs::rename(&tmp, dir.join(name))?;
            fsync_dir(&dir)
        };
        self.finish_write(&tmp, write())
    }

    /// Metadata files are written only into a folder that is set up.
    fn refuse_unset(&self) -> Result<()> {
        if self.root.join(IDENTITY_FILE).is_file() {
            return Ok(());
        }
        Err(Error::Unavailable(format!(
            "node {} is not set up at {}",
            self.id,
            self.root.display()
        )))
    }

    /// Create `<meta>/<area>` durably when it is not there yet.
    fn make_meta_area(&self, dir: &Path) -> std::io::Result<()> {
        if !dir.is_dir() {
            fs::create_dir_all(dir)?;
            fsync_dir(&self.root.join(META_FOLDER))?;
            fsync_dir(&self.root)?;
        }
        Ok(())
    }
    pub(super) fn put_meta(&self, area: &str, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.write_meta_file(area, name, |f| {
            for p in parts {
                f.write_all(p)?;
            }
            Ok(())
        })
    }

    pub(super) fn put_meta_from(
        &self,
        area: &str,
        name: &str,
        header: &[u8],
        body: &Path,
    ) -> Result<()> {
        self.write_meta_file(area, name, |f| {
            f.write_all(header)?;
            let copied = std::io::copy(&mut File::open(body)?, f)?;
            if copied != fs::metadata(body)?.len() {
                return Err(std::io::Error::other("the source changed while copied"));
            }
            Ok(())
        })
    }

    pub(super) fn list_meta(&self, area: &str) -> Result<Vec<(String, u64)>> {
        let dir = self.meta_area(area, None)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(".tmp-") {
                // A write a crash cut short (another process's pid). Only
                // the folder's lock holder tidies: `restore-meta` lists the
                // folders of a running daemon, whose writes are not leftovers.
                let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
                if pid != Some(std::process::id()) && self.holds_lock() {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            if is_safe_meta_name(&name) && entry.file_type()?.is_file() {
                out.push((name, entry.metadata()?.len()));
            }
        }
        Ok(out)
    }

    pub(super) fn read_meta(&self, area: &str, name: &str) -> Result<Vec<u8>> {
        let path = self.meta_area(area, Some(name))?.join(name);
        fs::read(&path).map_err(|e| map_not_found(e, &path.display().to_string()))
    }

    pub(super) fn delete_meta(&self, area: &str, name: &str) -> Result<()> {
        let dir = self.meta_area(area, Some(name))?;
        match fs::remove_file(dir.join(name)) {
            Ok(()) => fsync_dir(&dir).map_err(Error::Io),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Write `bytes` at `at` of `<meta>/<area>/<name>` (created when
    /// absent) and fdatasync it; a new file's folder entry is fsynced too.
    /// When the bytes reach past the end of the file, `APPEND_FILL` zero
    /// bytes are written after them in the same sync: the next appends then
    /// overwrite blocks the file already has, and their fdatasync writes
    /// only data, not the file's new size through the filesystem's journal
    /// (on ext4 about 0.2 ms instead of several). Refused on a node folder
    /// that is not set up, like `put_meta`. Returns the bytes written.
    pub(super) fn append_meta(&self, area: &str, name: &str, at: u64, bytes: &[u8]) -> Result<u64> {
        let dir = self.meta_area(area, Some(name))?;
        self.refuse_unset()?;
        let path = dir.join(name);
        let append = || -> std::io::Result<u64> {
            self.make_meta_area(&dir)?;
            let created = !path.exists();
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            let end = at + bytes.len() as u64;
            let mut written = bytes.len() as u64;
            if end > f.metadata()?.len() {
                let mut with_fill = Vec::with_capacity(bytes.len() + APPEND_FILL);
                with_fill.extend_from_slice(bytes);
                with_fill.resize(bytes.len() + APPEND_FILL, 0);
                f.write_all_at(&with_fill, at)?;
                written = with_fill.len() as u64;
            } else {
                f.write_all_at(bytes, at)?;
            }
            f.sync_data()?;
            if created {
                fsync_dir(&dir)?;
            }
            Ok(written)
        };
        append().map_err(|e| self.io_error(e))
    }
}
