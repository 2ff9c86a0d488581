//! The I/O interface between a volume and the frontends that expose it.
//!
//! A frontend (the NBD server, the FUSE file behind a loop device) turns its clients' requests
//! into calls on a [`Volume`]; the MIRROR engine implements it, so does any test double. The
//! frontends do not know about replication, and the engine does not know about NBD or FUSE.
//!
//! Write data travels as [`bytes::Bytes`] over an [`AlignedBuf`]: frontends receive a write's
//! payload straight into memory aligned for `O_DIRECT`, and the engine hands the same buffer to
//! the local disk write and to every peer's socket without copying it. A large read may travel
//! the other way without a copy too: as [`PipedData`], page-cache pages in a pipe that the
//! frontend splices into its socket ([`Volume::read_piped`]).

mod aligned;
mod pipe;

pub use aligned::{ALIGNMENT, AlignedBuf};
pub use pipe::{PIPE_BYTES, Pipe, PipedData};

use std::future::Future;

use bytes::Bytes;

/// The block size frontends advertise and align to.
pub const BLOCK_SIZE: u32 = 4096;

/// The largest single request a frontend passes on (larger client requests are refused or
/// split by the frontend).
pub const MAX_REQUEST_BYTES: u32 = 32 << 20;

/// Why a request failed, in terms every frontend can map to its own errors (NBD error codes,
/// errno).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// Another member writes the volume, or this member may not (no quorum with read-only
    /// policy): `EROFS`.
    #[error("the volume is read-only here: {0}")]
    ReadOnly(String),
    /// The data could not be read or written: `EIO`.
    #[error("I/O error: {0}")]
    Io(String),
    /// The backing store is full: `ENOSPC`.
    #[error("no space left on the backing store: {0}")]
    NoSpace(String),
    /// Out of range or misaligned: `EINVAL`.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The volume is going away: `ESHUTDOWN`.
    #[error("the volume is shutting down")]
    Shutdown,
}

impl IoError {
    /// The errno a kernel-facing frontend answers with.
    pub fn errno(&self) -> i32 {
        match self {
            IoError::ReadOnly(_) => libc::EROFS,
            IoError::Io(_) => libc::EIO,
            IoError::NoSpace(_) => libc::ENOSPC,
            IoError::Invalid(_) => libc::EINVAL,
            IoError::Shutdown => libc::ESHUTDOWN,
        }
    }
}

/// A volume as frontends see it. Requests may be issued concurrently and complete in any order;
/// a request issued after another completed is ordered after it (the only ordering a block
/// device promises).
pub trait Volume: Send + Sync + 'static {
    /// Usable size in bytes.
    fn size(&self) -> u64;

    /// Reads `len` bytes at `offset`.
    fn read(&self, offset: u64, len: u32) -> impl Future<Output = Result<Bytes, IoError>> + Send;

    /// Reads `len` bytes at `offset` (at most [`PIPE_BYTES`]) into a pipe, by reference to the
    /// page cache, for a frontend that splices them into its socket. `Ok(None)` when this
    /// volume cannot do that for this request (no page cache under it, data not local, no pipe
    /// to be had): the frontend then calls [`Volume::read`]. Errors are the read's.
    fn read_piped(
        &self,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Option<PipedData>, IoError>> + Send {
        let _ = (offset, len);
        std::future::ready(Ok(None))
    }

    /// Writes `data` at `offset`; with `fua` it is on stable storage (of every replica) when
    /// this completes.
    fn write(
        &self,
        offset: u64,
        data: Bytes,
        fua: bool,
    ) -> impl Future<Output = Result<(), IoError>> + Send;

    /// Completes when every write completed before it is on stable storage.
    fn flush(&self) -> impl Future<Output = Result<(), IoError>> + Send;

    /// The range's contents are no longer needed; reads of it return zeroes afterwards.
    fn trim(&self, offset: u64, len: u64) -> impl Future<Output = Result<(), IoError>> + Send;

    /// Writes zeroes over the range.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        fua: bool,
    ) -> impl Future<Output = Result<(), IoError>> + Send;

    /// A frontend session opened (an NBD client connected, the block device was opened) or
    /// closed; the engine uses these to know whether the volume is in use.
    fn opened(&self) {}
    fn closed(&self) {}
}

/// Checks that a request lies inside a volume of `size` bytes.
pub fn check_range(size: u64, offset: u64, len: u64) -> Result<(), IoError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(IoError::Invalid(format!(
            "{len} bytes at offset {offset} reach beyond the volume's {size} bytes"
        ))),
    }
}
