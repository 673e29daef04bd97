//! The types every layer speaks: an inode's attributes (`Inode`, `Kind`),
//! timestamps (`Nanos`, `now_nanos`), requested attribute changes
//! (`AttrChange`), rename modes (`RenameMode`), the root inode number and
//! the recorded health of a shard (`ShardState`) and `setxattr`'s mode
//! (`XattrWrite`), what a new node is to be (`NodeSpec`, `Owner`), a name
//! in a directory (`NameRef`), a page of a directory listing (`DirPage`) and
//! what an object upload asks for (`PutOptions`).
//! Front ends, the file service and the metadata database all use them, so
//! they live here rather than in `meta`: nothing in this module knows how
//! the values are stored, and it must not grow a dependency on any layer.

/// The inode number of the root directory.
pub const ROOT_INO: u64 = 1;

/// What an inode is. The discriminants are the codes stored in the
/// metadata database; they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    CharDevice = 5,
    BlockDevice = 6,
    Socket = 7,
}

/// Nanoseconds since the Unix epoch.
pub type Nanos = i64;

pub fn now_nanos() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub ino: u64,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (no file-type bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    pub rdev: u32,
    pub atime: Nanos,
    pub mtime: Nanos,
    pub ctime: Nanos,
    pub crtime: Nanos,
    pub target: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub version: u64,
    pub checksum: Option<String>,
    /// The hex MD5 of the content (S3's ETag), when known: the S3 view
    /// computes it lazily, as the SHA-256.
    pub md5: Option<String>,
    /// File bytes the chunks of a regular file hold (its holes hold none):
    /// what `st_blocks` counts. Derived from the chunk list, never stored.
    pub stored_bytes: u64,
}

impl Inode {
    pub fn new(kind: Kind, mode: u32, uid: u32, gid: u32) -> Inode {
        let now = now_nanos();
        Inode {
            ino: 0,
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            size: 0,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            target: None,
            content_type: None,
            version: 0,
            checksum: None,
            md5: None,
            stored_bytes: 0,
        }
    }
}

/// Changes to an inode's attributes; None = unchanged.
#[derive(Debug, Default, Clone)]
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Nanos>,
    pub mtime: Option<Nanos>,
    pub ctime: Option<Nanos>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    Replace,
    NoReplace,
    Exchange,
}

/// The recorded state of one shard. The discriminants are the stored codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    Ok = 0,
    Missing = 1,
    Corrupt = 2,
}

impl ShardState {
    /// The state stored as `code` (unknown codes read as missing).
    pub(crate) fn from_code(code: i64) -> ShardState {
        match code {
            0 => ShardState::Ok,
            2 => ShardState::Corrupt,
            _ => ShardState::Missing,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ShardState::Ok => "ok",
            ShardState::Missing => "missing",
            ShardState::Corrupt => "corrupt",
        }
    }
}

/// What `setxattr` may do: store whatever is there or not (no flag), only
/// create (`XATTR_CREATE`: an existing attribute is an error) or only
/// replace (`XATTR_REPLACE`: a missing one is an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrWrite {
    #[default]
    Upsert,
    CreateOnly,
    ReplaceOnly,
}

impl XattrWrite {
    /// The error for this mode when the attribute `exists` (or not), if any.
    pub fn refusal(self, exists: bool, name: &[u8]) -> Option<crate::error::Error> {
        let shown = || String::from_utf8_lossy(name).into_owned();
        match (self, exists) {
            (XattrWrite::CreateOnly, true) => Some(crate::error::Error::AlreadyExists(shown())),
            (XattrWrite::ReplaceOnly, false) => Some(crate::error::Error::NoAttribute(shown())),
            _ => None,
        }
    }
}

/// The owner of a new node: the creator's user and group (a setgid
/// directory passes on its group instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    /// Owned by root (user and group 0), as objects stored by key are.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };

    pub fn new(uid: u32, gid: u32) -> Owner {
        Owner { uid, gid }
    }
}

/// A node to create: what it is, its permission bits, its owner, a device
/// number (special files) and a target (symbolic links).
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec<'a> {
    pub kind: Kind,
    pub mode: u32,
    pub owner: Owner,
    pub rdev: u32,
    pub target: Option<&'a [u8]>,
}

impl NodeSpec<'_> {
    /// A regular file.
    pub fn file(mode: u32, owner: Owner) -> NodeSpec<'static> {
        NodeSpec {
            kind: Kind::File,
            mode,
            owner,
            rdev: 0,
            target: None,
        }
    }

    /// A directory.
    pub fn dir(mode: u32, owner: Owner) -> NodeSpec<'static> {
        NodeSpec {
            kind: Kind::Dir,
            ..NodeSpec::file(mode, owner)
        }
    }

    /// A symbolic link to `target` (permission bits 0777, as on Linux).
    pub fn symlink(target: &[u8], owner: Owner) -> NodeSpec<'_> {
        NodeSpec {
            kind: Kind::Symlink,
            target: Some(target),
            ..NodeSpec::file(0o777, owner)
        }
    }

    /// A special file (or a regular one, as `mknod` may create): a device
    /// number for character and block devices.
    pub fn special(kind: Kind, mode: u32, rdev: u32, owner: Owner) -> NodeSpec<'static> {
        NodeSpec {
            kind,
            rdev,
            ..NodeSpec::file(mode, owner)
        }
    }

    /// The inode to create in directory `dir`: a setgid directory passes on
    /// its group (and, to new directories, its setgid bit).
    pub fn template_in(&self, dir: &Inode) -> Inode {
        let Owner { uid, gid } = self.owner;
        let mut template = Inode::new(self.kind, self.mode, uid, gid);
        if dir.mode & libc::S_ISGID != 0 {
            template.gid = dir.gid;
            if self.kind == Kind::Dir {
                template.mode |= libc::S_ISGID;
            }
        }
        template.rdev = self.rdev;
        if let Some(t) = self.target {
            template.size = t.len() as u64;
            template.target = Some(t.to_vec());
        }
        template
    }
}

/// A name in a directory: the source or the target of a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRef<'a> {
    pub parent: u64,
    pub name: &'a [u8],
}

impl<'a> NameRef<'a> {
    pub fn new(parent: u64, name: &'a [u8]) -> NameRef<'a> {
        NameRef { parent, name }
    }
}

/// One page of a directory listing in name order: at most `limit` entries,
/// those after the name `after` (exclusive; `None` starts at the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirPage<'a> {
    pub after: Option<&'a [u8]>,
    pub limit: usize,
}

impl<'a> DirPage<'a> {
    pub fn new(after: Option<&'a [u8]>, limit: usize) -> DirPage<'a> {
        DirPage { after, limit }
    }
}

/// What an object upload asks for besides its bytes: a content type (None:
/// guessed from the key), a size limit (None: no limit) and extended
/// attributes to set with the content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions<'a> {
    pub content_type: Option<&'a str>,
    pub max_size: Option<u64>,
    /// Extended attributes the new content gets in the same transaction,
    /// replacing those under the set's prefix (None: an upload over an
    /// existing file keeps that file's attributes).
    pub xattrs: Option<XattrSet<'a>>,
    /// Recorded as the content's MD5 instead of the one computed: what an
    /// object assembled from parts is known by (S3's `md5-of-md5s-N`).
    pub etag: Option<&'a str>,
}

/// Extended attributes set together: every attribute whose name starts
/// with `prefix` is replaced by `attrs` (names include the prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XattrSet<'a> {
    pub prefix: &'a [u8],
    pub attrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// The history an object brings along when it is migrated into the store
/// (`minigcs import-prototype`): its content type, creation and last
/// modification times and version number, kept instead of the import's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStamp {
    /// None: guessed from the key, as for uploads.
    pub content_type: Option<String>,
    pub created: Nanos,
    pub updated: Nanos,
    /// At least 1.
    pub version: u64,
}
