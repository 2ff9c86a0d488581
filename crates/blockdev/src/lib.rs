//! The local block device of a volume on a host without the kernel's nbd or ublk driver: a FUSE
//! file per volume behind a loop device.
//!
//! One FUSE file system per process ([`fs`]) shows a regular file per exported volume whose
//! reads, writes, flushes, discards and zeroing are [`ferrite_block::Volume`] calls. A loop
//! device attached to the file with `--direct-io=on` makes it a block device, and symlinks give
//! it stable names ([`devices`]). Neither layer caches: the FUSE file is opened with
//! `FOPEN_DIRECT_IO` and the loop device does direct I/O, so a read right after another node's
//! write sees it.
//!
//! Owned here: the FUSE mount, the loop devices it attached, the symlinks it made, and the
//! answer to "is this device in use" ([`BlockDevice::is_in_use`]). Not here: which volumes to
//! export (the engine decides), replication, and the NBD frontend (`ferrite-nbd`).
//!
//! Needs root (`CAP_SYS_ADMIN`), `/dev/fuse`, `/dev/loop-control` and `losetup`; [`probe`]
//! says which is missing. `fuser` mounts with `mount(2)` itself as root, so neither libfuse nor
//! `fusermount3` is needed, at build time or at run time. Host commands go through
//! `ferrite_storage`'s runner, which logs every command line.

mod devices;
mod error;
pub mod fs;
mod loop_device;
mod probe;

pub use devices::{
    BlockDevice, BlockDeviceConfig, BlockDevices, DEFAULT_DEVICE_ROOT, DEFAULT_SECTOR_SIZE,
    DrbdLinks,
};
pub use error::{BlockDevError, InUseReason, Opener};
pub use fs::OpenCounts;
pub use loop_device::{DETACH_TIMEOUT, OPENER_GRACE};
pub use probe::{ProbePaths, probe, probe_with};
