//! The FUSE adapter: it turns kernel requests into file-service calls and
//! service results into replies, and nothing more. No rule about files,
//! versions, ACLs or durability lives here: those are the service's. It owns
//! only what exists because of the kernel:
//! - `filesystem`: the `fuser::Filesystem` (decode, dispatch, reply);
//! - `convert`: errno mapping (the only place errors become numbers),
//!   attributes and times, request-flag decoding;
//! - `dirs`: directory-handle snapshots and readdir offsets;
//! - `reply`: service results into replies or errnos, one path for all;
//! - `xattr`: the xattr reply protocol;
//! - `page_cache`: when an open may keep the kernel's page cache;
//! - `invalidate`: kernel cache invalidation for changes made through the
//!   object API;
//! - `mount`: mounting, the session and its event loops, stale-mount
//!   clearing, unmounting.

mod convert;
mod dirs;
mod filesystem;
mod invalidate;
mod mount;
mod page_cache;
mod reply;
mod xattr;

pub use mount::{mount, MountHandle};

use std::time::Duration;

/// How long the kernel may cache attributes and entries. The service tells
/// the kernel about changes made elsewhere, so this only bounds staleness if
/// a notification is lost.
const TTL: Duration = Duration::from_secs(1);
