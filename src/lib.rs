//! minigcs: erasure-coded, multi-region object storage used as a mounted
//! directory.
//!
//! ```text
//!  cp / cat / ls ──► fuse ───┐                       ┌─► meta (SQLite, WAL): namespace,
//!  curl / SDK ─────► http ───┤                       │      chunks, shard map, queues
//!  aws / boto3 ────► s3 ─────┼─► service (one Arc) ──┤
//!  minigcs ctl ────► control ┘                       └─► chunk (RS k+m, placement,
//!                                                          verified reads, repair) ─► node
//! ```
//!
//! Front ends translate (errno, HTTP status, JSON, S3 error codes); every rule about files,
//! versions and durability lives once, in `service`. `meta` never sees bytes;
//! `chunk` never sees paths or inodes. `daemon` builds everything and owns the
//! shutdown signal. `maint` runs the background workers (collection, repair,
//! node recovery, scrub, health probes, orphan sweep) over the service's
//! shared context. `report` holds the typed JSON documents (health, stats,
//! info, recovery, scrub, …) that the service builds and the front ends send;
//! `model` the neutral types every layer speaks (inodes, kinds, attribute
//! changes), so front ends never import `meta`. `store_lock` keeps a
//! second daemon off a store that one already serves. `resources` guards
//! the process's file descriptors (limit, exhaustion, accept back-off);
//! `ratelog` bounds log lines that can repeat. `import` migrates a Python
//! prototype install into a store through the file service. `fsck` checks a
//! stopped store and recovers files from shard headers alone.
//! `mount_options` reads `-o` option lists as mount(8) and fstab write them;
//! `mount_helper` is `mount.fuse.minigcs`, which starts the daemon in the
//! background for `mount -t fuse.minigcs` and waits until the mount answers.

pub mod bench;
pub mod chunk;
pub mod config;
pub mod control;
pub mod daemon;
pub mod error;
pub mod fsck;
pub mod fuse;
pub mod http;
pub mod import;
pub mod journal;
pub mod maint;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod mount_helper;
pub mod mount_options;
pub mod mountinfo;
pub mod node;
pub mod ratelog;
pub mod realpath;
pub mod report;
pub mod resources;
pub mod s3;
pub mod service;
pub mod snapshot;
pub mod store_lock;
pub mod test_data;
