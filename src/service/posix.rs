//! POSIX rules that a local file system applies inside one operation and
//! that front ends must not assemble from several service calls: `open`
//! with `O_CREAT` on a name that may exist, an access ACL that sets the mode
//! bits, an empty ACL that removes one (there or not), and `fallocate` that
//! grows a file without ever shrinking it, punches holes or zeroes ranges. Each takes decoded arguments (no
//! libc flags, no errno) and is built on the public service API plus one
//! metadata transaction where one is needed (`meta::posix`); it owns no
//! state of its own.

use super::{OpenFlags, Service};
use crate::error::{Error, Result};
use crate::meta::posix::AccessAclChange;
use crate::model::{AttrChange, Inode, Kind, NodeSpec, Owner, XattrWrite};

/// The extended attribute that carries a file's POSIX access ACL.
pub const ACL_ACCESS_XATTR: &[u8] = b"system.posix_acl_access";

/// The extended attribute that carries a directory's default ACL (the ACL
/// its new entries inherit).
pub const ACL_DEFAULT_XATTR: &[u8] = b"system.posix_acl_default";

/// The version in the header of an ACL in the Linux xattr format.
const ACL_VERSION: u32 = 2;

/// An ACL with no entry: the 4-byte version header alone.
const EMPTY_ACL_LEN: usize = 4;

/// Largest ACL accepted (the limit of any extended attribute).
const MAX_ACL_BYTES: usize = 64 * 1024;

/// What `create_or_open` does when the name already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    /// `O_CREAT | O_EXCL`: fail with `AlreadyExists`.
    Fail,
    /// `O_CREAT`: open the file that is there.
    Open,
    /// `O_CREAT | O_TRUNC`: open it and empty it.
    Truncate,
}

/// What `fallocate` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocate {
    /// Mode 0: make sure `offset + len` bytes exist (the size grows, never
    /// shrinks; new bytes read as zeros).
    Extend,
    /// `FALLOC_FL_KEEP_SIZE`: reserve space past the end without changing
    /// the size. Chunks take space only when written, so nothing to do.
    KeepSize,
    /// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`: the range reads as
    /// zeros and its whole chunks stop taking space; the size stays.
    PunchHole,
    /// `FALLOC_FL_ZERO_RANGE`: the range reads as zeros (stored as a punched
    /// hole); without `keep_size` the file grows to cover it, as on Linux.
    ZeroRange { keep_size: bool },
}

impl Service {
    /// `open(parent/name, O_CREAT …)`: create a regular file with permission
    /// bits `mode` owned by `owner` (group inherited from a setgid directory)
    /// and open it, or, when the name exists, do what `if_exists` says
    /// (`IfExists::Fail` is `O_EXCL`). Whether the name exists is decided in
    /// the same metadata transaction that creates it.
    pub fn create_or_open(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        owner: Owner,
        flags: OpenFlags,
        if_exists: IfExists,
    ) -> Result<(Inode, u64)> {
        self.refuse_if_read_only("creating a file")?;
        let spec = NodeSpec::file(mode & 0o7777, owner);
        let template = self.namespace().template_in(parent, name, &spec)?;
        let (inode, created) = self.ctx.meta.create_or_lookup(parent, name, &template)?;
        if created {
            let fh = self.open_file(inode.ino, flags)?;
            return Ok((inode, fh));
        }
        if if_exists == IfExists::Fail {
            return Err(Error::AlreadyExists(String::from_utf8_lossy(name).into()));
        }
        // Opening checks the kind (a directory answers IsADirectory).
        let fh = self.open_file(inode.ino, flags)?;
        let opened = self.getattr(inode.ino).and_then(|current| {
            if if_exists == IfExists::Truncate && current.size > 0 {
                // Through the open state, like any truncation of an open
                // file: it commits with the handle's writes.
                self.setattr(inode.ino, &AttrChange::default(), Some(0))
            } else {
                Ok(current)
            }
        });
        match opened {
            Ok(inode) => Ok((inode, fh)),
            Err(e) => {
                let _ = self.release(fh);
                Err(e)
            }
        }
    }

    /// `setxattr` as a local POSIX file system does it: an access ACL goes
    /// through `set_access_acl` (it changes the mode); an ACL with no entry
    /// (the header alone, what `setfacl -b`/`-k` and `tar --acls` set)
    /// removes the ACL, and succeeds when there is none, as on ext4; a
    /// default ACL must be well formed; any other attribute is stored as it
    /// is.
    pub fn set_xattr_posix(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        mode: XattrWrite,
    ) -> Result<()> {
        let is_acl = name == ACL_ACCESS_XATTR || name == ACL_DEFAULT_XATTR;
        if is_acl && value.len() == EMPTY_ACL_LEN {
            if value != ACL_VERSION.to_le_bytes() {
                return Err(Error::InvalidArgument("malformed POSIX ACL".into()));
            }
            return self.remove_xattr_posix(ino, name);
        }
        if name == ACL_ACCESS_XATTR {
            self.set_access_acl(ino, value, mode).map(|_| ())
        } else {
            if name == ACL_DEFAULT_XATTR && acl_mode_bits(value).is_none() {
                return Err(Error::InvalidArgument("malformed POSIX ACL".into()));
            }
            self.set_xattr(ino, name, value, mode)
        }
    }

    /// `removexattr` as a local POSIX file system does it: removing an ACL
    /// that is not there succeeds (ext4 removes ACLs without
    /// XATTR_REPLACE); any other missing attribute is `NoAttribute`.
    pub fn remove_xattr_posix(&self, ino: u64, name: &[u8]) -> Result<()> {
        match self.remove_xattr(ino, name) {
            Err(Error::NoAttribute(_)) if name == ACL_ACCESS_XATTR || name == ACL_DEFAULT_XATTR => {
                // The inode must still exist, as for any removal.
                self.getattr(ino).map(|_| ())
            }
            other => other,
        }
    }

    /// Set a file's access ACL (Linux xattr format). Without the kernel's
    /// own ACL support (FUSE_POSIX_ACL), `setfacl` and `cp -a` set an ACL
    /// where a local file system would also update the mode, so do what ext4
    /// does: the ACL's owner, group (or mask) and other permissions become
    /// the mode bits; a minimal ACL (one the mode expresses fully) is not
    /// kept, an extended one is stored. Mode and attribute change in one
    /// transaction. `mode` follows XATTR_CREATE and XATTR_REPLACE. Returns
    /// the updated inode.
    pub fn set_access_acl(&self, ino: u64, value: &[u8], mode: XattrWrite) -> Result<Inode> {
        if value.len() > MAX_ACL_BYTES {
            return Err(Error::TooLarge("xattr value over 64 KiB".into()));
        }
        let (permission_bits, minimal) = acl_mode_bits(value)
            .ok_or_else(|| Error::InvalidArgument("malformed POSIX ACL".into()))?;
        let change = AccessAclChange {
            name: ACL_ACCESS_XATTR,
            permission_bits,
            stored_value: (!minimal).then_some(value),
            mode,
        };
        self.ctx.meta.set_access_acl(ino, &change)
    }

    /// `fallocate(ino, offset, len)`. With `Allocate::Extend` the file ends
    /// at least at `offset + len` afterwards; a file already that long is
    /// left alone, so a growth never shrinks it. `PunchHole` and `ZeroRange`
    /// make the range read as zeros, dropping the chunks it covers whole
    /// (`sparse`). Returns the attributes.
    ///
    /// The growth compares and extends under the open file's write lock
    /// (`OpenFile::grow`): buffered writes stay and commit with the new
    /// size, a concurrent extending write is never cut back, and a file not
    /// open elsewhere commits the new size at once.
    pub fn fallocate(&self, ino: u64, offset: u64, len: u64, mode: Allocate) -> Result<Inode> {
        self.refuse_if_read_only("fallocate")?;
        if len == 0 {
            return Err(Error::InvalidArgument("fallocate of 0 bytes".into()));
        }
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= i64::MAX as u64)
            .ok_or_else(|| Error::TooLarge("fallocate past the largest file size".into()))?;
        let inode = self.getattr(ino)?;
        match inode.kind {
            Kind::File => {}
            Kind::Dir => return Err(Error::IsADirectory(format!("inode {ino}"))),
            _ => return Err(Error::InvalidArgument("fallocate of a special file".into())),
        }
        match mode {
            Allocate::KeepSize => return Ok(inode),
            Allocate::Extend if end <= inode.size => return Ok(inode),
            Allocate::Extend => self.namespace().grow(ino, end)?,
            Allocate::PunchHole => self.namespace().zero_range(ino, offset, end, false)?,
            Allocate::ZeroRange { keep_size } => {
                self.namespace().zero_range(ino, offset, end, !keep_size)?
            }
        }
        self.getattr(ino)
    }
}

/// The permission bits a POSIX ACL (Linux xattr format: u32 version 2, then
/// {u16 tag, u16 perm, u32 id} entries) implies, and whether it is minimal
/// (owner, group and other only). None when malformed.
pub fn acl_mode_bits(value: &[u8]) -> Option<(u32, bool)> {
    const USER_OBJ: u16 = 0x01;
    const USER: u16 = 0x02;
    const GROUP_OBJ: u16 = 0x04;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    if value.len() < 4
        || !(value.len() - 4).is_multiple_of(8)
        || u32::from_le_bytes(value[..4].try_into().ok()?) != ACL_VERSION
    {
        return None;
    }
    let (mut user, mut group, mut other, mut mask) = (None, None, None, None);
    let mut minimal = true;
    for e in value[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u32::from(u16::from_le_bytes([e[2], e[3]]) & 0o7);
        match tag {
            USER_OBJ => user = Some(perm),
            GROUP_OBJ => group = Some(perm),
            OTHER => other = Some(perm),
            MASK => mask = Some(perm),
            USER | GROUP => minimal = false,
            _ => return None,
        }
    }
    let group_bits = mask.or(group)?;
    if mask.is_some() {
        minimal = false;
    }
    Some(((user? << 6) | (group_bits << 3) | other?, minimal))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ACL in the Linux xattr format from (tag, perm) entries.
    fn acl(entries: &[(u16, u16)]) -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        v
    }

    #[test]
    fn acls_become_mode_bits() {
        assert_eq!(
            acl_mode_bits(&acl(&[(1, 7), (4, 5), (0x20, 5)])),
            Some((0o755, true))
        );
        assert_eq!(
            acl_mode_bits(&acl(&[(1, 6), (2, 6), (4, 4), (0x10, 6), (0x20, 0)])),
            Some((0o660, false))
        );
        assert_eq!(acl_mode_bits(&acl(&[(1, 7), (0x20, 5)])), None);
        assert_eq!(acl_mode_bits(b"\x02\x00"), None);
    }
}
