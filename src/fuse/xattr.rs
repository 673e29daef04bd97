//! Extended-attribute requests: decoding setxattr flags, the size-probe
//! protocol of getxattr/listxattr replies (size 0 asks how big; a buffer too
//! small is ERANGE), the NUL-separated name list without the virtual
//! placement attribute, and the xattr-specific errno (a value too large is
//! E2BIG, not EFBIG). What attributes mean is the service's business.

use fuser::{Errno, ReplyXattr};

use super::convert::fail;
use crate::error::Error;
use crate::model::XattrWrite;
use crate::service::Service;

/// setxattr flags → what the write may do; None when invalid.
pub(super) fn set_flags(flags: i32) -> Option<XattrWrite> {
    match flags {
        0 => Some(XattrWrite::Upsert),
        libc::XATTR_CREATE => Some(XattrWrite::CreateOnly),
        libc::XATTR_REPLACE => Some(XattrWrite::ReplaceOnly),
        _ => None,
    }
}

/// errno for a failed setxattr.
pub(super) fn set_error(e: &Error) -> Errno {
    match e {
        Error::TooLarge(_) => Errno::E2BIG,
        e => fail("setxattr", e),
    }
}

/// Answer an xattr read of `value` for a caller buffer of `size` bytes
/// (0 = "how big is it?").
pub(super) fn reply_value(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

/// The listxattr answer: names, each followed by a NUL. The virtual
/// placement attribute is readable by name only, never listed.
pub(super) fn name_list(names: &[Vec<u8>]) -> Vec<u8> {
    let mut buf = Vec::new();
    for n in names
        .iter()
        .filter(|n| n.as_slice() != Service::PLACEMENT_XATTR)
    {
        buf.extend_from_slice(n);
        buf.push(0);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setxattr_flags_are_checked() {
        assert_eq!(set_flags(0), Some(XattrWrite::Upsert));
        assert_eq!(set_flags(libc::XATTR_CREATE), Some(XattrWrite::CreateOnly));
        assert_eq!(
            set_flags(libc::XATTR_REPLACE),
            Some(XattrWrite::ReplaceOnly)
        );
        assert_eq!(set_flags(libc::XATTR_CREATE | libc::XATTR_REPLACE), None);
        assert_eq!(set_flags(0x100), None);
    }

    #[test]
    fn listed_names_skip_the_placement_attribute() {
        let names = vec![
            b"user.a".to_vec(),
            Service::PLACEMENT_XATTR.to_vec(),
            b"user.b".to_vec(),
        ];
        assert_eq!(name_list(&names), b"user.a\0user.b\0".to_vec());
    }
}
