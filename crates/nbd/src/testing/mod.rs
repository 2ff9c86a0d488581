//! Test doubles for anything that serves or consumes NBD: [`MemoryVolume`], a volume in memory
//! with counters and switches, and [`RawClient`], a bare client that puts exactly the requested
//! bytes on the wire. Built for this crate's tests and with the `testing` feature.

mod client;
mod memory;

pub use client::{
    ExportInfo, RawClient, SimpleReply, info_request, read_option_reply, request, send_option,
    start_handshake,
};
pub use memory::MemoryVolume;
