//! Answering the kernel: one path from a service result to a reply. A
//! result either fills its reply or becomes the errno of its operation
//! (`convert::fail`, which logs the ones the user cannot fix), whatever the
//! reply type; on top of that, the answers several requests share (an entry,
//! attributes, nothing) and the flags of an open or create reply.

use fuser::{
    Errno, FopenFlags, Generation, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
};

use super::convert::{fail, fail_on_inode, to_attr};
use super::TTL;
use crate::error::Result;
use crate::model::Inode;

/// A reply that can carry an errno (every fuser reply can; they share no
/// trait for it).
pub(super) trait ErrnoReply {
    fn errno(self, errno: Errno);
}

macro_rules! errno_replies {
    ($($reply:ty),* $(,)?) => {
        $(impl ErrnoReply for $reply {
            fn errno(self, errno: Errno) {
                self.error(errno)
            }
        })*
    };
}

errno_replies!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr,
);

/// Answer `reply` with `fill` on success, or with the errno for `op`.
pub(super) fn answer<T, R: ErrnoReply>(op: &str, r: Result<T>, reply: R, fill: impl FnOnce(R, T)) {
    match r {
        Ok(value) => fill(reply, value),
        Err(e) => reply.errno(fail(op, &e)),
    }
}

/// Like `answer`, for a request on an inode the kernel got from us: an
/// inode gone meanwhile answers ESTALE, so the kernel looks the path up again.
pub(super) fn answer_on_inode<T, R: ErrnoReply>(
    op: &str,
    r: Result<T>,
    reply: R,
    fill: impl FnOnce(R, T),
) {
    match r {
        Ok(value) => fill(reply, value),
        Err(e) => reply.errno(fail_on_inode(op, &e)),
    }
}

/// Answer with a directory entry for `inode`.
pub(super) fn entry(op: &str, r: Result<Inode>, reply: ReplyEntry) {
    answer(op, r, reply, |reply, inode| {
        reply.entry(&TTL, &to_attr(&inode), Generation(0))
    });
}

/// Answer with the attributes of `inode`.
pub(super) fn attr(op: &str, r: Result<Inode>, reply: ReplyAttr) {
    answer(op, r, reply, |reply, inode| {
        reply.attr(&TTL, &to_attr(&inode))
    });
}

/// Answer success with nothing to return.
pub(super) fn empty(op: &str, r: Result<()>, reply: ReplyEmpty) {
    answer(op, r, reply, |reply, ()| reply.ok());
}

/// FOPEN_KEEP_CACHE when the page cache may be kept.
pub(super) fn open_flags(keep_cache: bool) -> FopenFlags {
    if keep_cache {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}
