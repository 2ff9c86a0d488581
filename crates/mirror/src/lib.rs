//! The MIRROR layer: synchronous replication of a resource's volumes between its members, with
//! DRBD 9's semantics, in user space. The design is in docs/mirror.md.
//!
//! Modules (one owner per piece of state):
//! - [`gi`]: generation identifiers and the handshake's decision table (pure);
//! - [`quorum`]: who may write (pure);
//! - [`bitmap`]: per-peer out-of-sync bitmaps;
//! - [`activity_log`]: the hot extents of a Primary;
//! - [`metadata`]: the on-disk metadata area at the end of a backing volume.

pub mod activity_log;
pub mod bitmap;
pub mod gi;
pub mod metadata;
pub mod quorum;
