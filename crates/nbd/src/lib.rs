//! An NBD server in front of a [`ferrite_block::Volume`]: how a volume of this node reaches
//! `qemu`, `nbdcopy`, fio's `nbd` engine or a kernel NBD client.
//!
//! - [`Server`] holds named exports ([`ExportConfig`] + `Arc<V: Volume>`), added and removed
//!   while it runs, and serves them on unix sockets and TCP listeners.
//! - The handshake is fixed newstyle (`NBD_OPT_GO`, `NBD_OPT_INFO`, `NBD_OPT_LIST`,
//!   `NBD_OPT_ABORT`, `NBD_OPT_EXPORT_NAME`); replies are simple (structured replies are
//!   refused, for now).
//! - [`client`]: the client's side of the handshake, up to transmission with `NBD_OPT_GO`, for
//!   a program that hands the socket to the kernel's NBD driver afterwards.
//! - Transmission: READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES (FUA, NO_HOLE), DISC; many
//!   requests in flight per connection, replies sent as volume calls complete, batched into
//!   vectored writes; write payloads land in aligned buffers and reach the volume without a
//!   copy, read data reaches the socket without one, and a large read the volume can hand over
//!   as page-cache pages in a pipe is copied only as it is sent (see `transmission`).
//!
//! Errors: a volume's [`ferrite_block::IoError`] becomes the NBD error value the spec names
//! (read-only → `NBD_EPERM`, since NBD has no `EROFS`; I/O → `NBD_EIO`; no space → `NBD_ENOSPC`;
//! invalid → `NBD_EINVAL`; shutdown → `NBD_ESHUTDOWN`). Requests beyond the end of the export
//! get `NBD_EINVAL` (read, trim) or `NBD_ENOSPC` (write, write-zeroes), as the spec asks. A
//! client that breaks the framing (bad magic, a write longer than 32 MiB, an oversized option,
//! unknown client flags) is disconnected with a logged reason.
//!
//! This crate knows nothing of replication: the volume does. Design: docs/mirror.md,
//! "Frontends", and docs/nbd.md.

pub mod client;
mod error;
mod export;
mod handshake;
mod pool;
pub mod protocol;
mod server;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod transmission;

pub use error::{ConnectionError, ServerError};
pub use export::{ExportConfig, ExportName};
pub use pool::{BufferPool, POOL_BYTES, PooledBuf};
pub use server::{ACCEPT_BACKOFF, HANDSHAKE_TIMEOUT, Server, ServerConfig, Transport};
pub use transmission::{
    CLOSE_TIMEOUT, DIRECT_PAYLOAD_BYTES, Limits, MAX_IN_FLIGHT_BYTES, MAX_IN_FLIGHT_REQUESTS,
    MAX_REPLY_BATCH, READ_BUFFER_BYTES,
};
