//! The MIRROR layer: synchronous replication of a resource's volumes between its members, with
//! DRBD 9's semantics, in user space. The design is in docs/mirror.md.
//!
//! Modules (one owner per piece of state):
//! - [`gi`]: generation identifiers and the handshake's decision table (pure);
//! - [`quorum`]: who may write (pure);
//! - [`outdated`]: the members a Primary wrote without, as a member recorded them, and the file
//!   that keeps the record across restarts;
//! - [`bitmap`]: per-peer out-of-sync bitmaps;
//! - [`activity_log`]: the hot extents of a Primary;
//! - [`metadata`]: the on-disk metadata area at the end of a backing volume;
//! - [`backing`]: a volume's backing store: data I/O and its metadata in memory;
//! - [`uring`]: the io_uring a backing store's data I/O goes through;
//! - [`dirty`]: whether the kernel may throttle a buffered writer now;
//! - [`wire`]: the peer protocol's frames and their codec;
//! - [`config`]: a resource's configuration as the satellite writes it;
//! - [`control`]: the daemon's control socket (requests, replies, the client);
//! - [`daemon`]: `ferrite-mirrord`: the node's resources, their frontends, the control socket;
//! - [`block_devices`]: the daemon's block devices (a FUSE file and a loop device per volume)
//!   and the poll that tells the engine when one is in use;
//! - [`conflict`]: overlapping writes of a volume, serialized in submission order;
//! - [`volume`]: a volume's I/O path (protocol C writes, reads, flushes);
//! - [`outbox`]: the sending side of a peer connection: frames in order, written at once when
//!   alone, else batched;
//! - [`peer`]: one connection to one peer: handshake, authentication, framed send and receive;
//! - [`peer_ack`]: which of a Primary's writes reached every disk, as a Secondary knows it;
//! - [`resource`]: the owner of one resource's state machine (roles, quorum, peers, resync);
//! - [`status`]: what a member reports about a resource (`drbdsetup status`'s words);
//! - [`suspend`]: a resource's writes held on this member for a snapshot's cut.

pub mod activity_log;
pub mod backing;
pub mod bitmap;
pub mod block_devices;
pub mod config;
pub mod conflict;
pub mod control;
pub mod daemon;
pub mod dirty;
pub mod gi;
pub mod metadata;
pub mod outbox;
pub mod outdated;
pub mod peer;
pub mod peer_ack;
pub mod quorum;
pub mod resource;
pub mod resync_watch;
pub mod status;
pub mod suspend;
pub mod uring;
pub mod volume;
pub mod wire;
