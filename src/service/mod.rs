//! The file service: the one place every front end calls, as a facade over
//! its owners. It speaks `Error`, never errno or HTTP status.
//!
//! - `context`: what everything shares (config, metadata, chunk store,
//!   metrics, cache, pins, wake-ups, shutdown, change observers);
//! - `wake`: one coalescing wake-up signal per background worker and the
//!   board where the workers publish their status;
//! - `handles`: the handle table (fh → handle, inode → open file), the
//!   operations by handle, and the lock order of the whole service;
//! - `writer` + `state` + `commit`: `OpenFile`, buffered writes, truncation,
//!   commits (new chunks visible in one metadata transaction after their
//!   shards are durable);
//! - `upload` + `uncommitted`: the write budget, the uploader pool, spilling,
//!   and the guard that deletes the shards of chunks never committed;
//! - `read` + `cache`: chunk spans, pins, snapshots, cached reads, read-ahead
//!   (on `pool`, like the uploaders);
//! - `sparse`: holes — stored bytes (`st_blocks`) and SEEK_DATA/SEEK_HOLE;
//! - `objects`: operations by key (the HTTP view); `namespace`: operations by
//!   inode (the mount's view); `keys`: key and name rules;
//! - `info`: chunk placement and object metadata as shown to users;
//! - `reports`: health, statistics, node list, object info and workers;
//! - `ownership`: the store's locks and the new-database check at start.
//!
//! Background care of the store (collection, repair, recovery, scrub, health
//! probes, orphan sweep) runs as workers in `crate::maint` over the shared
//! context; that module also adds the facade's maintenance methods
//! (`start_workers`, `recover_node`, `scrub`, `collect_garbage`, …).

mod budget;
mod cache;
mod commit;
mod context;
mod handles;
mod info;
mod keys;
mod multipart;
mod namespace;
mod objects;
mod ownership;
mod pool;
pub mod posix;
mod read;
mod reports;
pub mod sparse;
mod state;
mod uncommitted;
mod upload;
pub(crate) mod wake;
mod writer;

pub use crate::report::{
    ChunkInfo, Progress, RecoveryReport, ScrubProblem, ScrubReport, ShardInfo,
};
pub use budget::Budget;
pub use context::{Change, ChangeObserver};
pub use handles::OpenFlags;
pub use info::ObjectInfo;
pub use keys::{parse_key, validate_name, MAX_KEY_LEN, MAX_NAME_LEN};
pub use multipart::{Assembly, StagedPart, StagedUpload};
pub use namespace::FsStats;
pub use objects::{content_type_for, DEFAULT_CONTENT_TYPE};
pub use read::Snapshot;

use bytes::Bytes;
use std::io::Read;
use std::sync::Arc;

use crate::chunk::ChunkStore;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::{
    AttrChange, DirPage, Inode, NameRef, NodeSpec, ObjectStamp, Owner, PutOptions, RenameMode,
    XattrWrite, ROOT_INO,
};
use crate::node::NodeBackend;
pub(crate) use context::Context;
use handles::{HandleTable, Handles};
use namespace::Namespace;
use objects::Objects;
use read::Prefetcher;
use upload::UploadPipeline;

/// The virtual, read-only extended attribute holding a file's placement.
const PLACEMENT_XATTR: &[u8] = b"user.minigcs.placement";

/// The facade's parts, borrowed by the owners' operations.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub ctx: &'a Arc<Context>,
    pub files: &'a HandleTable,
    pub uploads: &'a UploadPipeline,
    pub prefetch: &'a Prefetcher,
}

/// Proof that a config's node folders were checked for the Python
/// prototype's data (`Service::check_node_folders`); which answered in time.
pub struct NodeFoldersChecked {
    answered: Vec<bool>,
}

pub struct Service {
    ctx: Arc<Context>,
    files: HandleTable,
    uploads: UploadPipeline,
    prefetch: Prefetcher,
}

impl Service {
    /// Open the store described by `config`: metadata, nodes (initialized
    /// on first start), chunk store.
    ///
    /// Node folders holding the Python prototype's data are refused first
    /// (a configuration error; nothing is written). Then the store is
    /// locked (metadata, then every node folder that exists): a store
    /// another daemon holds is an error naming its pid.
    pub fn open(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<Arc<Service>> {
        let checked = Self::check_node_folders(&config)?;
        Self::open_checked(config, metrics, checked)
    }

    /// The first step of `open`, for a caller that writes something of its
    /// own (the metrics CSV) before opening: refuse node folders that hold
    /// the Python prototype's data, before anything is written anywhere.
    pub fn check_node_folders(config: &Config) -> Result<NodeFoldersChecked> {
        Ok(NodeFoldersChecked {
            answered: ownership::refuse_prototype_folders(config)?,
        })
    }

    /// `open` after `check_node_folders`.
    pub fn open_checked(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        checked: NodeFoldersChecked,
    ) -> Result<Arc<Service>> {
        let metadata_lock = ownership::lock_metadata(&config)?;
        let nodes = ownership::store_nodes(&config, &checked.answered)?;
        let ctx = Context::open_locked(config, metrics, metadata_lock, nodes)?;
        Ok(Self::over(ctx))
    }

    /// Open with explicit node backends (tests use in-memory doubles).
    pub fn open_with_nodes(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        nodes: Vec<Arc<dyn NodeBackend>>,
    ) -> Result<Arc<Service>> {
        Ok(Self::over(Context::open(config, metrics, nodes)?))
    }

    fn over(ctx: Context) -> Arc<Service> {
        let ctx = Arc::new(ctx);
        Arc::new(Service {
            files: HandleTable::new(),
            uploads: UploadPipeline::new(&ctx),
            prefetch: Prefetcher::new(),
            ctx,
        })
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.ctx.config
    }

    pub fn chunk_store(&self) -> &Arc<ChunkStore> {
        &self.ctx.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.ctx.metrics
    }

    pub fn chunk_size(&self) -> u64 {
        self.ctx.chunk_size
    }

    pub fn add_observer(&self, observer: Arc<dyn ChangeObserver>) {
        self.ctx.add_observer(observer);
    }

    /// The shared context, for the background workers.
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    pub fn is_shutting_down(&self) -> bool {
        self.ctx.is_shutting_down()
    }

    fn env(&self) -> Env<'_> {
        Env {
            ctx: &self.ctx,
            files: &self.files,
            uploads: &self.uploads,
            prefetch: &self.prefetch,
        }
    }

    fn objects(&self) -> Objects<'_> {
        Objects(self.env())
    }

    fn namespace(&self) -> Namespace<'_> {
        Namespace(self.env())
    }

    fn handles(&self) -> Handles<'_> {
        Handles(self.env())
    }

    // ------------------------------------------------------ objects by key

    /// Resolve an object key to its inode (any kind).
    pub fn resolve_key(&self, key: &str) -> Result<Option<Inode>> {
        self.objects().resolve(key)
    }

    /// Store an object from a stream (bounded memory; visible only once
    /// every chunk is durable; a failing reader leaves nothing behind).
    pub fn put_object(&self, key: &str, reader: &mut dyn Read, opts: PutOptions) -> Result<Inode> {
        self.refuse_if_read_only("an upload")?;
        // Refused before any byte is stored when the metadata is lost.
        self.ctx.meta.check_writable()?;
        self.objects().put(key, reader, opts)
    }

    /// Store an object migrated from elsewhere with its own history (times,
    /// version, content type), as `put_object` otherwise. The key must be
    /// free: an existing name is `AlreadyExists`, never replaced.
    pub fn import_object(
        &self,
        key: &str,
        reader: &mut dyn Read,
        stamp: &ObjectStamp,
    ) -> Result<Inode> {
        self.ctx.meta.check_writable()?;
        self.objects().put_stamped(key, reader, stamp)
    }

    /// Store a copy of the current version of `from` at `to`, as a PUT of
    /// its bytes would (`opts` as for `put_object`).
    pub fn copy_object(&self, from: &str, to: &str, opts: PutOptions) -> Result<Inode> {
        self.ctx.meta.check_writable()?;
        self.objects().copy(from, to, opts)
    }

    /// The hex MD5 of a file's committed content (computed and stored when
    /// unknown), with the inode as read then.
    pub fn md5_of(&self, inode: Inode) -> Result<(Inode, String)> {
        self.objects().md5_of(inode)
    }

    /// Capture the committed version of a file for reading.
    pub fn snapshot(&self, ino: u64) -> Result<Snapshot> {
        Snapshot::capture(&self.ctx, ino)
    }

    pub fn open_object(&self, key: &str) -> Result<Snapshot> {
        self.objects().open(key)
    }

    /// Delete an object; Ok(false) when it did not exist.
    pub fn delete_object(&self, key: &str) -> Result<bool> {
        self.refuse_if_read_only("a delete")?;
        self.objects().delete(key)
    }

    /// Keys of files under `prefix`, sorted; (keys, truncated).
    pub fn list_objects(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(Vec<String>, bool)> {
        self.objects().list(prefix, start_after, limit)
    }

    /// Metadata, chunks and placement of a file (SHA-256 computed if unknown).
    pub fn object_info(&self, key: &str) -> Result<ObjectInfo> {
        let inode = self
            .resolve_key(key)?
            .ok_or_else(|| Error::NotFound(key.to_string()))?;
        self.info_of(key.to_string(), inode)
    }

    pub fn info_of(&self, key: String, inode: Inode) -> Result<ObjectInfo> {
        self.objects().info_of(key, inode)
    }

    /// Make the top-level directory `name` (an S3 bucket), as root, mode
    /// 0755; the mount's kernel caches learn of the new name.
    pub fn make_top_dir(&self, name: &[u8]) -> Result<Inode> {
        self.ctx.meta.check_writable()?;
        let made =
            self.namespace()
                .make_node(ROOT_INO, name, &NodeSpec::dir(0o755, Owner::ROOT))?;
        self.ctx.notify(&[Change::Entry {
            parent: ROOT_INO,
            name: name.to_vec(),
        }]);
        Ok(made)
    }

    /// Remove the top-level directory `name` (an S3 bucket) when it holds
    /// no file: directories left empty inside it (by deleting the files
    /// under them) go with it. NotEmpty when anything but a directory is
    /// found. The mount's kernel caches forget them.
    pub fn remove_top_dir(&self, name: &[u8]) -> Result<()> {
        self.ctx.meta.check_writable()?;
        let dir = self.namespace().lookup(ROOT_INO, name)?;
        if dir.kind != crate::model::Kind::Dir {
            return Err(Error::NotADirectory(String::from_utf8_lossy(name).into()));
        }
        self.remove_empty_dirs_in(dir.ino, name)?;
        self.namespace().rmdir(ROOT_INO, name)?;
        self.ctx.notify(&[
            Change::Entry {
                parent: ROOT_INO,
                name: name.to_vec(),
            },
            Change::Inode(dir.ino),
        ]);
        Ok(())
    }

    /// Remove the directories under `dir` that hold nothing but empty
    /// directories, deepest first; NotEmpty at the first other entry.
    fn remove_empty_dirs_in(&self, dir: u64, shown: &[u8]) -> Result<()> {
        // Each page is removed before the next is read: read from the start.
        loop {
            let entries = self.list_dir(dir, DirPage::new(None, 1000))?;
            if entries.is_empty() {
                return Ok(());
            }
            for (name, inode) in entries {
                if inode.kind != crate::model::Kind::Dir {
                    return Err(Error::NotEmpty(String::from_utf8_lossy(shown).into()));
                }
                self.remove_empty_dirs_in(inode.ino, shown)?;
                self.namespace().rmdir(dir, &name)?;
                self.ctx.notify(&[
                    Change::Entry { parent: dir, name },
                    Change::Inode(inode.ino),
                ]);
            }
        }
    }

    // --------------------------------------------------- namespace by inode

    /// Attributes, including uncommitted size/times of a file open for writing.
    pub fn getattr(&self, ino: u64) -> Result<Inode> {
        self.namespace().getattr(ino)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Inode> {
        self.namespace().lookup(parent, name)
    }

    /// Create a directory, file, symlink or special file (setgid directories
    /// pass on their group).
    pub fn make_node(&self, parent: u64, name: &[u8], spec: &NodeSpec) -> Result<Inode> {
        self.refuse_if_read_only("creating a file or folder")?;
        self.namespace().make_node(parent, name, spec)
    }

    /// Make every namespace change so far durable (fsync of a directory).
    pub fn sync_metadata(&self) -> Result<()> {
        self.ctx.meta.sync()
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        self.namespace().readlink(ino)
    }

    pub fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<Inode> {
        self.refuse_if_read_only("a hard link")?;
        self.namespace().link(ino, new_parent, new_name)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.refuse_if_read_only("removing a file")?;
        self.namespace().unlink(parent, name)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.refuse_if_read_only("removing a folder")?;
        self.namespace().rmdir(parent, name)
    }

    /// Move `from` to `to` (replacing, refusing to replace or exchanging
    /// an existing target, as `mode` says).
    pub fn rename(&self, from: NameRef, to: NameRef, mode: RenameMode) -> Result<()> {
        self.refuse_if_read_only("a rename")?;
        self.namespace().rename(from, to, mode)
    }

    /// chmod/chown/utimens/truncate. `size` truncates or extends.
    pub fn setattr(&self, ino: u64, change: &AttrChange, size: Option<u64>) -> Result<Inode> {
        self.refuse_if_read_only("changing attributes")?;
        self.namespace().setattr(ino, change, size)
    }

    pub fn list_dir(&self, ino: u64, page: DirPage) -> Result<Vec<(Vec<u8>, Inode)>> {
        self.namespace().list_dir(ino, page)
    }

    pub fn parent_of(&self, ino: u64) -> Result<u64> {
        self.namespace().parent_of(ino)
    }

    // xattrs: `user.minigcs.placement` is virtual and read-only.
    pub const PLACEMENT_XATTR: &'static [u8] = PLACEMENT_XATTR;

    pub fn get_xattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        match name == PLACEMENT_XATTR {
            true => self.placement_xattr(ino),
            false => self.namespace().get_xattr(ino, name),
        }
    }

    pub fn set_xattr(&self, ino: u64, name: &[u8], value: &[u8], mode: XattrWrite) -> Result<()> {
        self.refuse_if_read_only("setting an extended attribute")?;
        self.namespace().set_xattr(ino, name, value, mode)
    }

    pub fn list_xattrs(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        self.namespace().list_xattrs(ino)
    }

    pub fn remove_xattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        self.refuse_if_read_only("removing an extended attribute")?;
        self.namespace().remove_xattr(ino, name)
    }

    /// Capacity of the distinct filesystems under the nodes, scaled by k/(k+m).
    pub fn fs_stats(&self) -> Result<FsStats> {
        self.namespace().fs_stats()
    }

    // ---------------------------------------------------- files by handle

    /// Open a file; returns the handle.
    pub fn open_file(&self, ino: u64, flags: OpenFlags) -> Result<u64> {
        if flags.write {
            // As a read-only filesystem: refused at open, not at close.
            self.refuse_if_read_only("opening a file for writing")?;
            self.ctx.meta.check_writable()?;
        }
        self.handles().open(ino, flags)
    }

    /// Write bytes at `offset` (at the end for O_APPEND handles).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        self.handles().write(fh, offset, data)
    }

    /// Read up to `len` bytes at `offset`; sequential readers get read-ahead.
    pub fn read(&self, fh: u64, offset: u64, len: usize) -> Result<Bytes> {
        self.handles().read(fh, offset, len)
    }

    /// Truncate or extend a file; commits at once unless the file is open.
    pub fn truncate(&self, ino: u64, size: u64) -> Result<()> {
        self.refuse_if_read_only("a truncate")?;
        self.namespace().truncate(ino, size)
    }

    /// Make everything written so far durable and visible (flush/fsync).
    pub fn flush(&self, fh: u64) -> Result<()> {
        self.handles().flush(fh)
    }

    /// fsync: like flush, and also makes metadata-only changes (create,
    /// chmod, rename) durable when there was no content to commit.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        self.handles().fsync(fh)
    }

    /// Close a handle: commit pending writes, report whether they are durable.
    pub fn release(&self, fh: u64) -> Result<()> {
        self.handles().release(fh)
    }

    pub fn statistics_open_files(&self) -> usize {
        self.files.open_file_count()
    }

    /// Whether the daemon runs read-only (`--read-only`, `-o ro`).
    pub fn is_read_only(&self) -> bool {
        self.ctx.config.read_only
    }

    /// In read-only mode every change of content or namespace, from any
    /// front end, is refused. Maintenance that keeps what is stored safe
    /// (repair, recovery, scrub, collection, snapshots) is not a change.
    pub(crate) fn refuse_if_read_only(&self, what: &str) -> Result<()> {
        match self.is_read_only() {
            true => Err(Error::ReadOnlyMode(what.to_string())),
            false => Ok(()),
        }
    }

    /// Stop accepting work: commit every open file.
    pub fn shutdown(&self) {
        self.ctx.begin_shutdown();
        self.handles().commit_all();
        // Namespace changes since the last durable operation.
        if let Err(e) = self.ctx.journal.flush_all() {
            log::warn!("metadata journal at shutdown: {e}");
        }
        self.ctx.metrics.flush();
    }
}

#[cfg(test)]
mod hung_node_tests;
#[cfg(test)]
mod tests;
