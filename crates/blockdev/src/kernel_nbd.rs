//! A volume's block device through the kernel's NBD driver: `/dev/nbdN` connected to this
//! process over a socket pair, as `nbd-client` connects it to a remote server.
//!
//! This process serves the volume on one end of the pair ([`ferrite_nbd::Server`]), does the
//! client's handshake on the other ([`ferrite_nbd::client::negotiate`]) and hands that end to
//! the driver with the ioctls of `<linux/nbd.h>`: the size in blocks, the transmission flags
//! the handshake returned, the socket, then `NBD_DO_IT`, which blocks in a thread of its own
//! for as long as the device is connected. `NBD_DISCONNECT` makes the driver send
//! `NBD_CMD_DISC`, after which `NBD_DO_IT` returns. No timeout is set: a volume whose I/O is
//! suspended (no quorum, a snapshot's cut) keeps its requests waiting instead of failing them.
//!
//! Owned here: finding a free device ([`free_devices`]), the ioctls, and the thread in
//! `NBD_DO_IT`. Not here: whether the device is in use (the same probes as for a loop device,
//! by device number), the symlinks, and the NBD server (`crate::devices`).
//!
//! Needs the `nbd` module loaded (`/sys/module/nbd`, `/dev/nbd0` …) and `CAP_SYS_ADMIN`.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferrite_nbd::client::ExportInfo;

/// Where the kernel shows its block devices and its loaded modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdPaths {
    /// Present while the `nbd` module is loaded.
    pub module: PathBuf,
    /// `/sys/block`, with an `nbdN` directory per device the module made.
    pub sys_block: PathBuf,
    /// `/dev`, with the device nodes.
    pub dev: PathBuf,
}

impl Default for NbdPaths {
    fn default() -> Self {
        NbdPaths {
            module: PathBuf::from("/sys/module/nbd"),
            sys_block: PathBuf::from("/sys/block"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// How long a connected device may take to show the process serving it
/// (`/sys/block/nbdN/pid`), and how long a disconnect may take to end `NBD_DO_IT`.
pub const NBD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const POLL_INTERVAL: Duration = Duration::from_millis(10);

// The ioctl requests of <linux/nbd.h>: _IO(0xab, n).
const NBD_SET_SOCK: libc::c_ulong = 0xab00;
const NBD_SET_BLKSIZE: libc::c_ulong = 0xab01;
const NBD_DO_IT: libc::c_ulong = 0xab03;
const NBD_CLEAR_SOCK: libc::c_ulong = 0xab04;
const NBD_CLEAR_QUE: libc::c_ulong = 0xab05;
const NBD_SET_SIZE_BLOCKS: libc::c_ulong = 0xab07;
const NBD_DISCONNECT: libc::c_ulong = 0xab08;
const NBD_SET_FLAGS: libc::c_ulong = 0xab0a;

/// Whether the kernel's NBD driver can give this host's volumes block devices; why not if it
/// cannot.
pub fn usable(paths: &NbdPaths) -> Result<(), String> {
    if !paths.module.exists() {
        return Err(format!(
            "the kernel's nbd driver is not loaded ({} is missing; modprobe nbd)",
            paths.module.display()
        ));
    }
    let devices = nbd_devices(&paths.sys_block);
    let Some(first) = devices.first() else {
        return Err(format!(
            "the nbd driver made no devices ({} has no nbdN; modprobe nbd nbds_max=16)",
            paths.sys_block.display()
        ));
    };
    let node = paths.dev.join(first);
    match std::fs::metadata(&node) {
        Ok(metadata) if std::os::unix::fs::FileTypeExt::is_block_device(&metadata.file_type()) => {
            Ok(())
        }
        Ok(_) => Err(format!("{} is not a block device", node.display())),
        Err(error) => Err(format!("{}: {error}", node.display())),
    }
}

/// How many nbd devices the driver made.
pub fn device_count(sys_block: &Path) -> usize {
    nbd_devices(sys_block).len()
}

/// Every `nbdN` under `sys_block`, by number.
fn nbd_devices(sys_block: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut numbered: Vec<(u32, String)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .filter_map(|name| Some((name.strip_prefix("nbd")?.parse().ok()?, name)))
        .collect();
    numbered.sort();
    numbered.into_iter().map(|(_, name)| name).collect()
}

/// The devices nobody serves, by number: no `pid` (no process in `NBD_DO_IT`) and a size of 0
/// (not set up by a tool that is about to connect it). Another tool can still take one between
/// this look and the connect; the connect then fails with `EBUSY` and the next one is tried.
pub fn free_devices(sys_block: &Path) -> Vec<String> {
    nbd_devices(sys_block)
        .into_iter()
        .filter(|name| {
            let dir = sys_block.join(name);
            let unserved = !dir.join("pid").exists();
            let empty = std::fs::read_to_string(dir.join("size")).is_ok_and(|s| s.trim() == "0");
            unserved && empty
        })
        .collect()
}

/// A device connected to a socket of this process.
#[derive(Debug)]
pub struct NbdConnection {
    /// `/dev/nbdN`.
    pub path: PathBuf,
    /// `nbdN`.
    pub name: String,
    pub rdev: u64,
    /// The open device the ioctls go to.
    device: File,
    /// The thread in `NBD_DO_IT`; `None` once it was waited for.
    serving: Option<JoinHandle<io::Result<()>>>,
    sys_block: PathBuf,
}

fn ioctl(device: &File, request: libc::c_ulong, argument: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the NBD ioctls take an integer argument (a size, a count, flags or a file
    // descriptor), never a pointer, and `device` is an open descriptor for the call's length.
    let result = unsafe { libc::ioctl(device.as_raw_fd(), request as _, argument) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Why a device could not be connected.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Someone else connected it first: try another device.
    #[error("{0} is already connected")]
    Busy(PathBuf),
    #[error("{action} {device}: {source}")]
    Device {
        action: &'static str,
        device: PathBuf,
        source: io::Error,
    },
}

impl NbdConnection {
    /// Connects the device `name` (under `paths`) to `socket`, the client's end of a
    /// connection that finished its handshake with `info`, with blocks of `block_size` bytes.
    pub fn connect(
        paths: &NbdPaths,
        name: &str,
        socket: OwnedFd,
        info: &ExportInfo,
        block_size: u32,
    ) -> Result<NbdConnection, ConnectError> {
        let path = paths.dev.join(name);
        let fail = |action, source: io::Error| {
            if source.raw_os_error() == Some(libc::EBUSY) {
                ConnectError::Busy(path.clone())
            } else {
                ConnectError::Device {
                    action,
                    device: path.clone(),
                    source,
                }
            }
        };
        let device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| fail("open", source))?;
        let rdev = std::os::unix::fs::MetadataExt::rdev(
            &device
                .metadata()
                .map_err(|source| fail("inspect", source))?,
        );
        let block_size = u64::from(block_size);
        ioctl(&device, NBD_SET_BLKSIZE, block_size as libc::c_ulong)
            .map_err(|source| fail("set the block size of", source))?;
        ioctl(
            &device,
            NBD_SET_SIZE_BLOCKS,
            (info.size / block_size) as libc::c_ulong,
        )
        .map_err(|source| fail("set the size of", source))?;
        ioctl(&device, NBD_CLEAR_SOCK, 0).map_err(|source| fail("clear the socket of", source))?;
        ioctl(&device, NBD_SET_FLAGS, libc::c_ulong::from(info.flags))
            .map_err(|source| fail("set the transmission flags of", source))?;
        ioctl(&device, NBD_SET_SOCK, socket.as_raw_fd() as libc::c_ulong)
            .map_err(|source| fail("give the socket to", source))?;

        let serving_device = device
            .try_clone()
            .map_err(|source| fail("duplicate the descriptor of", source))?;
        let thread_name = format!("nbd-do-it-{name}");
        let serving = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                // The socket lives until the driver let go of it.
                let _socket = socket;
                let served = ioctl(&serving_device, NBD_DO_IT, 0);
                let _ = ioctl(&serving_device, NBD_CLEAR_QUE, 0);
                let _ = ioctl(&serving_device, NBD_CLEAR_SOCK, 0);
                served
            })
            .map_err(|source| fail("start the thread serving", source))?;
        let connection = NbdConnection {
            path: path.clone(),
            name: name.to_string(),
            rdev,
            device,
            serving: Some(serving),
            sys_block: paths.sys_block.clone(),
        };
        connection.wait_served()?;
        Ok(connection)
    }

    /// Waits until the driver shows the device served, or `NBD_DO_IT` ended early.
    fn wait_served(&self) -> Result<(), ConnectError> {
        let pid = self.sys_block.join(&self.name).join("pid");
        let started = Instant::now();
        loop {
            if pid.exists() {
                return Ok(());
            }
            let ended = self.serving.as_ref().is_none_or(|t| t.is_finished());
            if ended || started.elapsed() >= NBD_CONNECT_TIMEOUT {
                return Err(ConnectError::Device {
                    action: "serve",
                    device: self.path.clone(),
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        if ended {
                            "NBD_DO_IT ended at once".to_string()
                        } else {
                            format!("no serving process shown after {NBD_CONNECT_TIMEOUT:?}")
                        },
                    ),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Disconnects the device: the driver sends `NBD_CMD_DISC` and `NBD_DO_IT` returns. The
    /// caller has flushed the device and holds it exclusively, so nothing is written after.
    pub fn disconnect(mut self) -> io::Result<()> {
        self.disconnect_inner()
    }

    fn disconnect_inner(&mut self) -> io::Result<()> {
        let Some(serving) = self.serving.take() else {
            return Ok(());
        };
        let sent = ioctl(&self.device, NBD_DISCONNECT, 0);
        let started = Instant::now();
        while !serving.is_finished() {
            if started.elapsed() >= NBD_CONNECT_TIMEOUT {
                // Left running: the thread ends with the process, or when the driver lets go.
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} still served {NBD_CONNECT_TIMEOUT:?} after NBD_DISCONNECT",
                        self.path.display()
                    ),
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        sent?;
        match serving.join() {
            Ok(Ok(())) => Ok(()),
            // NBD_DO_IT reports the end of a connection the server closed as an error.
            Ok(Err(error)) => {
                tracing::debug!(device = %self.path.display(), %error, "NBD_DO_IT ended");
                Ok(())
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for NbdConnection {
    fn drop(&mut self) {
        if let Err(error) = self.disconnect_inner() {
            tracing::error!(device = %self.path.display(), %error, "could not disconnect an nbd device");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sysfs(devices: &[(&str, &str, bool)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, size, served) in devices {
            let device = dir.path().join(name);
            std::fs::create_dir_all(&device).unwrap();
            std::fs::write(device.join("size"), format!("{size}\n")).unwrap();
            if *served {
                std::fs::write(device.join("pid"), "4242\n").unwrap();
            }
        }
        std::fs::create_dir_all(dir.path().join("loop0")).unwrap();
        dir
    }

    #[test]
    fn free_devices_are_the_unserved_empty_ones_by_number() {
        let sysfs = fake_sysfs(&[
            ("nbd10", "0", false),
            ("nbd2", "0", false),
            ("nbd0", "2048", true),
            ("nbd1", "2048", false),
            ("nbd3", "0", true),
        ]);
        assert_eq!(free_devices(sysfs.path()), ["nbd2", "nbd10"]);
    }

    #[test]
    fn a_host_without_the_driver_or_its_devices_says_what_to_load() {
        let sysfs = fake_sysfs(&[]);
        let paths = NbdPaths {
            module: sysfs.path().join("no-such-module"),
            sys_block: sysfs.path().to_path_buf(),
            dev: sysfs.path().to_path_buf(),
        };
        let reason = usable(&paths).unwrap_err();
        assert!(reason.contains("modprobe nbd"), "{reason}");

        let paths = NbdPaths {
            module: sysfs.path().to_path_buf(),
            ..paths
        };
        let reason = usable(&paths).unwrap_err();
        assert!(reason.contains("no nbdN"), "{reason}");

        // Devices in sysfs without a device node (a container without /dev/nbd*).
        let sysfs = fake_sysfs(&[("nbd0", "0", false)]);
        let paths = NbdPaths {
            module: sysfs.path().to_path_buf(),
            sys_block: sysfs.path().to_path_buf(),
            dev: sysfs.path().join("dev"),
        };
        let reason = usable(&paths).unwrap_err();
        assert!(reason.contains("nbd0"), "{reason}");
    }

    #[test]
    fn the_ioctl_numbers_are_those_of_linux_nbd_h() {
        // _IO(0xab, n) = 0xab << 8 | n.
        let io = |n: libc::c_ulong| (0xab << 8) | n;
        assert_eq!(NBD_SET_SOCK, io(0));
        assert_eq!(NBD_SET_BLKSIZE, io(1));
        assert_eq!(NBD_DO_IT, io(3));
        assert_eq!(NBD_CLEAR_SOCK, io(4));
        assert_eq!(NBD_CLEAR_QUE, io(5));
        assert_eq!(NBD_SET_SIZE_BLOCKS, io(7));
        assert_eq!(NBD_DISCONNECT, io(8));
        assert_eq!(NBD_SET_FLAGS, io(10));
    }
}
