//! What can go wrong while exporting a volume as a block device, with the context an operator
//! needs: which volume, which device or path, which command and its output.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ferrite_storage::CommandError;
use ferrite_types::{ResourceName, VolumeNumber};

/// Why a block device could not be set up, queried or removed.
#[derive(Debug, thiserror::Error)]
pub enum BlockDevError {
    /// The FUSE file system could not be mounted (or its session not started).
    #[error("cannot mount the FUSE file system of the block devices at {mountpoint}: {source}")]
    Mount {
        mountpoint: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file or directory of the block devices could not be made, read or removed.
    #[error("cannot {action} {path}: {source}")]
    Path {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The volume is exported already; remove it first.
    #[error("volume {volume_number} of resource {resource} already has a block device ({device})")]
    AlreadyExported {
        resource: ResourceName,
        volume_number: VolumeNumber,
        device: PathBuf,
    },

    /// There is no block device for this volume.
    #[error("volume {volume_number} of resource {resource} has no block device")]
    NotExported {
        resource: ResourceName,
        volume_number: VolumeNumber,
    },

    /// A volume whose size the loop device cannot show.
    #[error(
        "volume {volume_number} of resource {resource} has {size} bytes, not a multiple of the \
         {sector_size}-byte sectors of its loop device"
    )]
    UnalignedSize {
        resource: ResourceName,
        volume_number: VolumeNumber,
        size: u64,
        sector_size: u32,
    },

    /// A host command (`losetup`) failed; the command error names the command line and stderr.
    #[error("cannot {action} for volume {volume_number} of resource {resource}: {source}")]
    Command {
        action: &'static str,
        resource: ResourceName,
        volume_number: VolumeNumber,
        #[source]
        source: Box<CommandError>,
    },

    /// The kernel's NBD driver was asked for (`kernel-nbd`) and cannot be used on this host.
    #[error("the kernel's nbd driver cannot give volumes block devices here: {reason}")]
    KernelNbdUnusable { reason: String },

    /// Connecting a volume to an nbd device failed: serving it, the handshake, or the driver.
    #[error(
        "cannot connect volume {volume_number} of resource {resource} to an nbd device: {reason}"
    )]
    KernelNbd {
        resource: ResourceName,
        volume_number: VolumeNumber,
        reason: String,
    },

    /// `losetup --show` did not print the device it attached.
    #[error("`losetup --find --show` for {file} printed no loop device: {stdout:?}")]
    NoLoopDevice { file: PathBuf, stdout: String },

    /// The device is in use; it was left as it is.
    #[error(
        "the block device {device} of volume {volume_number} of resource {resource} is in use \
         ({reason}); stop using it first"
    )]
    InUse {
        resource: ResourceName,
        volume_number: VolumeNumber,
        device: PathBuf,
        reason: InUseReason,
    },

    /// The loop device accepted the detach but still shows its backing file.
    #[error("{device} still has its backing file {} s after it was detached", timeout.as_secs())]
    DetachTimeout { device: PathBuf, timeout: Duration },
}

/// Why a device counts as in use, as found when it was about to be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InUseReason {
    /// A file system on it is mounted at these places.
    Mounted { mount_points: Vec<PathBuf> },
    /// Another block device is stacked on it (device mapper, md): the names under
    /// `/sys/block/<loop>/holders`.
    Held { holders: Vec<String> },
    /// Held exclusively by a process or the kernel (`mkfs`, a mount in another mount
    /// namespace): an exclusive open failed with `EBUSY`.
    Exclusive,
    /// Open (not exclusively) by these processes.
    OpenBy { processes: Vec<Opener> },
    /// Its FUSE file is open by something besides the loop device (a process that opened
    /// the file itself).
    FileOpen { descriptors: u64 },
}

/// A process that has a device open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opener {
    pub pid: u32,
    /// The process's name (`/proc/<pid>/comm`).
    pub command: String,
}

impl fmt::Display for InUseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InUseReason::Mounted { mount_points } => {
                let list: Vec<String> = mount_points
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                write!(f, "mounted on {}", list.join(", "))
            }
            InUseReason::Held { holders } => {
                write!(f, "held by the block device(s) {}", holders.join(", "))
            }
            InUseReason::Exclusive => f.write_str(
                "open exclusively (a mount in another namespace, mkfs or a similar tool)",
            ),
            InUseReason::OpenBy { processes } => {
                let list: Vec<String> = processes
                    .iter()
                    .map(|p| format!("{} (pid {})", p.command, p.pid))
                    .collect();
                write!(f, "open by {}", list.join(", "))
            }
            InUseReason::FileOpen { descriptors } => write!(
                f,
                "its FUSE file is open {descriptors} more time(s) besides the loop device's own open"
            ),
        }
    }
}
