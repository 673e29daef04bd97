//! The one error type of minigcs. Every layer returns `Result<T>`; front ends
//! (FUSE, HTTP, control socket) translate an `Error` to errno, HTTP status or a
//! JSON message at their edge. Nothing here knows about errno or HTTP.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid key or name: {0}")]
    InvalidKey(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not a directory: {0}")]
    NotADirectory(String),
    #[error("is a directory: {0}")]
    IsADirectory(String),
    #[error("directory not empty: {0}")]
    NotEmpty(String),
    #[error("name too long: {0}")]
    NameTooLong(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("no attribute: {0}")]
    NoAttribute(String),
    #[error("no space left: {0}")]
    NoSpace(String),
    #[error("not enough healthy shards: {0}")]
    Unavailable(String),
    /// Writes are refused for good (until a restart); reads go on.
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    /// The daemon was started read-only (`--read-only`, `-o ro`): every
    /// change is refused, by choice rather than by failure.
    #[error("read-only mount: {0} refused (minigcs runs with --read-only / -o ro)")]
    ReadOnlyMode(String),
    #[error("corrupt shard: {0}")]
    Corrupt(String),
    #[error("unknown node: {0}")]
    UnknownNode(String),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("metadata database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when the failure is about the disk being full (mapped to ENOSPC / 507).
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::NoSpace(_) => true,
            Error::Io(e) => e.raw_os_error() == Some(libc::ENOSPC),
            _ => false,
        }
    }

    /// True when the daemon itself is out of file descriptors (EMFILE or
    /// ENFILE): a fact about the process now, not about what it touched.
    pub fn is_fd_exhaustion(&self) -> bool {
        match self {
            Error::Io(e) => crate::resources::is_fd_exhaustion(e),
            _ => false,
        }
    }
}
