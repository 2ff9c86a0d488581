//! The local block device of a volume: an nbd device connected to this process where the
//! kernel's nbd driver is loaded ([`kernel_nbd`]), else a FUSE file per volume behind a loop
//! device. [`BlockFrontend`] chooses; `Auto` takes the driver where it is.
//!
//! FUSE + loop: one FUSE file system per process ([`fs`]) shows a regular file per exported
//! volume whose reads, writes, flushes, discards and zeroing are [`ferrite_block::Volume`]
//! calls. A loop device attached to the file with `--direct-io=on` makes it a block device.
//! Neither layer caches: the FUSE file is opened with `FOPEN_DIRECT_IO` and the loop device does
//! direct I/O, so a read right after another node's write sees it.
//!
//! Kernel nbd: the volume is an export of an NBD server owned here, and `/dev/nbdN` is given
//! the client's end of a socket pair after the handshake, as `nbd-client` gives it a remote
//! server's connection. Either way symlinks give the device stable names ([`devices`]).
//!
//! Owned here: the FUSE mount and the loop devices it attached, or the NBD server and the nbd
//! devices connected to it; the symlinks it made; and the answer to "is this device in use"
//! ([`BlockDevice::is_in_use`]). Not here: which volumes to
//! export (the engine decides), replication, and the NBD frontend (`ferrite-nbd`).
//!
//! Needs root (`CAP_SYS_ADMIN`), and the nbd driver, or `/dev/fuse`, `/dev/loop-control` and
//! `losetup`; [`probe`] says which is missing. `fuser` mounts with `mount(2)` itself as root, so neither libfuse nor
//! `fusermount3` is needed, at build time or at run time. Host commands go through
//! `ferrite_storage`'s runner, which logs every command line.

mod devices;
mod error;
pub mod fs;
pub mod kernel_nbd;
mod loop_device;
mod probe;

pub use devices::{
    BlockDevice, BlockDeviceConfig, BlockDevices, BlockFrontend, DEFAULT_DEVICE_ROOT,
    DEFAULT_SECTOR_SIZE, DrbdLinks,
};
pub use error::{BlockDevError, InUseReason, Opener};
pub use fs::OpenCounts;
pub use kernel_nbd::NbdPaths;
pub use loop_device::{DETACH_TIMEOUT, OPENER_GRACE};
pub use probe::{ProbePaths, probe, probe_with};
