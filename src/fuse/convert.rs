//! Conversions between the kernel's vocabulary and the service's: `Error`
//! to errno (the only place errors become numbers for the kernel), inodes to
//! `FileAttr`, times to and from `SystemTime`, and the decoding of request
//! flags (mknod type bits, rename flags, open and create flags, fallocate
//! modes, lseek whence) into the service's types. Pure functions, no state.

use fuser::{Errno, FileAttr, FileType, INodeNo, RenameFlags, TimeOrNow};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::model::{now_nanos, Inode, Kind, RenameMode};
use crate::service::posix::{Allocate, IfExists};
use crate::service::sparse::Seek;
use crate::service::OpenFlags;

/// Reported `st_blksize`: tools size their buffers from it.
const BLKSIZE: u32 = 64 * 1024;

/// Error → errno.
pub(super) fn errno(e: &Error) -> Errno {
    if e.is_no_space() {
        return Errno::ENOSPC;
    }
    match e {
        Error::NotFound(_) => Errno::ENOENT,
        Error::AlreadyExists(_) => Errno::EEXIST,
        Error::NotADirectory(_) => Errno::ENOTDIR,
        Error::IsADirectory(_) => Errno::EISDIR,
        Error::NotEmpty(_) => Errno::ENOTEMPTY,
        Error::NameTooLong(_) => Errno::ENAMETOOLONG,
        Error::InvalidArgument(_) | Error::InvalidKey(_) => Errno::EINVAL,
        Error::PermissionDenied(_) => Errno::EPERM,
        Error::NoAttribute(_) => Errno::NO_XATTR,
        Error::TooLarge(_) => Errno::EFBIG,
        Error::NoSpace(_) => Errno::ENOSPC,
        // As a filesystem remounted read-only after an error (ext4's
        // errors=remount-ro): reads work, every change gets EROFS.
        Error::ReadOnly(_) | Error::ReadOnlyMode(_) => Errno::EROFS,
        Error::Unavailable(_)
        | Error::Corrupt(_)
        | Error::Io(_)
        | Error::Db(_)
        | Error::Other(_)
        | Error::UnknownNode(_)
        | Error::Config(_) => Errno::EIO,
    }
}

/// Map an error for `op`, logging the ones the user cannot fix (EIO class).
pub(super) fn fail(op: &str, e: &Error) -> Errno {
    let code = errno(e);
    if code == Errno::EIO {
        crate::warn_limited!(format!("fuse {op}"), "fuse {op}: {e}");
    } else {
        log::debug!("fuse {op}: {e}");
    }
    code
}

/// Map an error of a request on an inode the kernel got from us: an inode
/// that no longer exists is ESTALE (it lost its last name meanwhile, e.g. an
/// API PUT moved the name to a new inode), so the kernel looks the path up
/// again instead of reporting ENOENT for a name that exists.
pub(super) fn fail_on_inode(op: &str, e: &Error) -> Errno {
    match e {
        Error::NotFound(_) => {
            log::debug!("fuse {op}: {e} (stale inode)");
            Errno::ESTALE
        }
        _ => fail(op, e),
    }
}

pub(super) fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
    }
}

fn to_system_time(nanos: i64) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

pub(super) fn to_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    }
}

pub(super) fn time_or_now(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::SpecificTime(t) => to_nanos(t),
        TimeOrNow::Now => now_nanos(),
    }
}

/// Inode → the kernel's attributes. A regular file's `st_blocks` counts
/// the bytes its chunks hold, so holes take none (as on a local disk).
pub(super) fn to_attr(i: &Inode) -> FileAttr {
    let used = match i.kind {
        Kind::File => i.stored_bytes,
        _ => i.size,
    };
    FileAttr {
        ino: INodeNo(i.ino),
        size: i.size,
        blocks: used.div_ceil(512),
        atime: to_system_time(i.atime),
        mtime: to_system_time(i.mtime),
        ctime: to_system_time(i.ctime),
        crtime: to_system_time(i.crtime),
        kind: file_type(i.kind),
        perm: (i.mode & 0o7777) as u16,
        nlink: i.nlink,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The kind of a node created by mknod, from the file-type bits of `mode`.
pub(super) fn mknod_kind(mode: u32) -> Option<Kind> {
    match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Some(Kind::File),
        libc::S_IFIFO => Some(Kind::Fifo),
        libc::S_IFCHR => Some(Kind::CharDevice),
        libc::S_IFBLK => Some(Kind::BlockDevice),
        libc::S_IFSOCK => Some(Kind::Socket),
        _ => None,
    }
}

/// rename(2) flags; None for RENAME_WHITEOUT and unknown flags.
pub(super) fn rename_mode(flags: RenameFlags) -> Option<RenameMode> {
    if flags.is_empty() {
        Some(RenameMode::Replace)
    } else if flags == RenameFlags::RENAME_NOREPLACE {
        Some(RenameMode::NoReplace)
    } else if flags == RenameFlags::RENAME_EXCHANGE {
        Some(RenameMode::Exchange)
    } else {
        None
    }
}

/// What an open for `flags` may do with the file.
pub(super) fn open_flags(flags: fuser::OpenFlags) -> OpenFlags {
    OpenFlags::from_libc(flags.0)
}

/// How a create request treats a name that exists (O_EXCL, O_TRUNC).
pub(super) fn if_exists(flags: i32) -> IfExists {
    if flags & libc::O_EXCL != 0 {
        IfExists::Fail
    } else if flags & libc::O_TRUNC != 0 {
        IfExists::Truncate
    } else {
        IfExists::Open
    }
}

/// A fallocate mode the service supports; None for the rest (collapse and
/// insert range, unshare, and a hole punched without KEEP_SIZE, which Linux
/// refuses too).
pub(super) fn allocate_mode(mode: i32) -> Option<Allocate> {
    const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
    const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
    const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;
    match mode {
        0 => Some(Allocate::Extend),
        KEEP_SIZE => Some(Allocate::KeepSize),
        m if m == PUNCH_HOLE | KEEP_SIZE => Some(Allocate::PunchHole),
        ZERO_RANGE => Some(Allocate::ZeroRange { keep_size: false }),
        m if m == ZERO_RANGE | KEEP_SIZE => Some(Allocate::ZeroRange { keep_size: true }),
        _ => None,
    }
}

/// What an lseek request looks for; None for whence values other than
/// SEEK_DATA and SEEK_HOLE (the kernel answers the others itself).
pub(super) fn seek_whence(whence: i32) -> Option<Seek> {
    match whence {
        libc::SEEK_DATA => Some(Seek::Data),
        libc::SEEK_HOLE => Some(Seek::Hole),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_errno_tools_expect() {
        assert_eq!(errno(&Error::NotFound("x".into())), Errno::ENOENT);
        assert_eq!(errno(&Error::NotEmpty("x".into())), Errno::ENOTEMPTY);
        assert_eq!(errno(&Error::NoAttribute("x".into())), Errno::ENODATA);
        assert_eq!(errno(&Error::Unavailable("x".into())), Errno::EIO);
        assert_eq!(errno(&Error::ReadOnly("x".into())), Errno::EROFS);
        let full = Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(errno(&full), Errno::ENOSPC);
    }

    #[test]
    fn times_round_trip_with_nanoseconds_and_before_the_epoch() {
        for n in [0i64, 1, 1_700_000_000_123_456_789, -1, -1_000_000_007] {
            assert_eq!(to_nanos(to_system_time(n)), n);
        }
    }

    #[test]
    fn attributes_follow_the_inode() {
        let mut i = Inode::new(Kind::File, 0o4755, 7, 8);
        i.ino = 42;
        i.size = 513;
        i.stored_bytes = 513;
        let a = to_attr(&i);
        assert_eq!(
            (a.ino, a.perm, a.uid, a.gid, a.blocks, a.kind),
            (INodeNo(42), 0o4755, 7, 8, 2, FileType::RegularFile)
        );
        // A sparse file: a GiB long, one chunk of 4 KiB stored.
        i.size = 1 << 30;
        i.stored_bytes = 4096;
        assert_eq!(to_attr(&i).blocks, 8);
    }

    #[test]
    fn mknod_and_rename_flags() {
        assert_eq!(mknod_kind(libc::S_IFIFO | 0o644), Some(Kind::Fifo));
        assert_eq!(mknod_kind(libc::S_IFREG | 0o644), Some(Kind::File));
        assert_eq!(mknod_kind(libc::S_IFDIR | 0o755), None);
        assert_eq!(
            rename_mode(RenameFlags::RENAME_EXCHANGE),
            Some(RenameMode::Exchange)
        );
        assert_eq!(rename_mode(RenameFlags::RENAME_WHITEOUT), None);
    }

    #[test]
    fn create_and_fallocate_flags() {
        let creat = libc::O_CREAT | libc::O_WRONLY;
        assert_eq!(if_exists(creat), IfExists::Open);
        assert_eq!(if_exists(creat | libc::O_TRUNC), IfExists::Truncate);
        assert_eq!(
            if_exists(creat | libc::O_EXCL | libc::O_TRUNC),
            IfExists::Fail
        );
        assert_eq!(allocate_mode(0), Some(Allocate::Extend));
        assert_eq!(
            allocate_mode(libc::FALLOC_FL_KEEP_SIZE),
            Some(Allocate::KeepSize)
        );
        assert_eq!(
            allocate_mode(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE),
            Some(Allocate::PunchHole)
        );
        assert_eq!(allocate_mode(libc::FALLOC_FL_PUNCH_HOLE), None);
        assert_eq!(
            allocate_mode(libc::FALLOC_FL_ZERO_RANGE),
            Some(Allocate::ZeroRange { keep_size: false })
        );
        assert_eq!(
            allocate_mode(libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE),
            Some(Allocate::ZeroRange { keep_size: true })
        );
        assert_eq!(allocate_mode(libc::FALLOC_FL_COLLAPSE_RANGE), None);
        assert_eq!(seek_whence(libc::SEEK_HOLE), Some(Seek::Hole));
        assert_eq!(seek_whence(libc::SEEK_DATA), Some(Seek::Data));
        assert_eq!(seek_whence(libc::SEEK_END), None);
    }
}
