//! The block devices of one process: for each exported volume either an nbd device connected to
//! this process (where the kernel's nbd driver is loaded, [`crate::kernel_nbd`]) or a FUSE file
//! with a loop device on it; and the stable symlinks that name it. [`BlockFrontend`] chooses.
//!
//! [`BlockDevices`] owns the FUSE mount (or the NBD server of the nbd devices) and every device;
//! the owner (the engine's frontend task) adds and removes volumes through it. Each device is
//! also handed out as an `Arc<`[`BlockDevice`]`>` so the engine can poll
//! [`BlockDevice::is_in_use`] from anywhere.
//!
//! Adding and removing block: they run `losetup` or the nbd ioctls and wait for the kernel (up
//! to [`DETACH_TIMEOUT`]), and a detach makes the kernel flush the volume through the FUSE file
//! or the nbd socket, which needs the runtime. Call them from a blocking thread
//! (`spawn_blocking`), never from one of the runtime's workers.
//!
//! Paths, with `<root>` the device root (default [`DEFAULT_DEVICE_ROOT`]):
//!
//! - `/dev/nbdN`: the nbd device; or, the FUSE + loop way,
//!   `<mountpoint>/<resource>_<volume number>`: the FUSE file, and `/dev/loopN`: the loop device,
//!   attached with `--direct-io=on`;
//! - `<root>/<resource>/<volume number>` → the device;
//! - `/dev/drbd/by-res/<resource>/<volume number>` → the device, the path DRBD's tools and
//!   plugins build, made where no DRBD module is loaded ([`DrbdLinks`]). With a device root
//!   other than the default, it is under that root instead,
//!   `<root>/drbd/by-res/<resource>/<volume number>`, so that several nodes run side by side
//!   on one machine ([`BlockDeviceConfig::drbd_by_res_dir`]).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrite_block::{IoError, PipedData, Volume};
use ferrite_nbd::client::ExportInfo;
use ferrite_nbd::{ExportConfig, ExportName, Server, ServerConfig};
use ferrite_storage::HostCommands;
use ferrite_types::{ResourceName, VolumeNumber};
use tokio::runtime::Handle;

use crate::error::{BlockDevError, InUseReason};
use crate::fs::{ExportedFile, FuseMount, OpenCounts, lazy_unmount};
use crate::kernel_nbd::{self, NbdConnection, NbdPaths};
use crate::loop_device::{self, DETACH_TIMEOUT, LoopDevice};

/// Where the symlinks to the devices go unless configured otherwise.
pub const DEFAULT_DEVICE_ROOT: &str = "/dev/ferrite";

/// The logical sector size of the loop devices unless configured otherwise: 512 bytes, what
/// most disks (and DRBD devices on them) show, so every guest and partitioning tool accepts
/// the device. A volume's size must be a multiple of it.
pub const DEFAULT_SECTOR_SIZE: u32 = 512;

/// How long a detached loop device may take to close its FUSE file, and how often that is
/// checked. The close follows the detach asynchronously (the kernel defers the last `fput`).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
const RELEASE_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// DRBD's directory of per-resource device names.
const DRBD_BY_RES: &str = "/dev/drbd/by-res";

/// Present when the DRBD kernel module is loaded.
const DRBD_MODULE: &str = "/sys/module/drbd";

/// Whether to make the `drbd/by-res/<resource>/<volume>` links
/// ([`BlockDeviceConfig::drbd_by_res_dir`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DrbdLinks {
    /// Only where no DRBD module is loaded (as the design says): with one loaded, DRBD's own
    /// devices own that name.
    #[default]
    WhenNoDrbdModule,
    Always,
    Never,
}

/// How volumes get their block devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlockFrontend {
    /// The kernel's nbd driver where it is loaded, else FUSE + loop.
    #[default]
    Auto,
    /// `/dev/nbdN` connected to this process; refused where the driver is not loaded.
    KernelNbd,
    /// A FUSE file behind a loop device, on any kernel with FUSE and loop.
    FuseLoop,
}

impl BlockFrontend {
    pub const NAMES: [&str; 3] = ["auto", "kernel-nbd", "fuse-loop"];

    pub fn as_str(self) -> &'static str {
        match self {
            BlockFrontend::Auto => "auto",
            BlockFrontend::KernelNbd => "kernel-nbd",
            BlockFrontend::FuseLoop => "fuse-loop",
        }
    }
}

impl std::fmt::Display for BlockFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BlockFrontend {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(BlockFrontend::Auto),
            "kernel-nbd" => Ok(BlockFrontend::KernelNbd),
            "fuse-loop" => Ok(BlockFrontend::FuseLoop),
            other => Err(format!(
                "unknown block device frontend {other:?}: use one of {}",
                BlockFrontend::NAMES.join(", ")
            )),
        }
    }
}

/// Where the block devices live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDeviceConfig {
    /// The directory the FUSE file system is mounted on (made if missing; FUSE + loop only).
    pub mountpoint: PathBuf,
    /// The directory of the stable symlinks.
    pub device_root: PathBuf,
    /// The devices' logical sector size (the nbd driver's block size).
    pub sector_size: u32,
    pub drbd_links: DrbdLinks,
    pub frontend: BlockFrontend,
    /// Where the kernel shows the nbd driver and its devices.
    pub nbd: NbdPaths,
}

impl BlockDeviceConfig {
    /// The defaults, with the FUSE file system at `mountpoint`.
    pub fn new(mountpoint: impl Into<PathBuf>) -> BlockDeviceConfig {
        BlockDeviceConfig {
            mountpoint: mountpoint.into(),
            device_root: PathBuf::from(DEFAULT_DEVICE_ROOT),
            sector_size: DEFAULT_SECTOR_SIZE,
            drbd_links: DrbdLinks::default(),
            frontend: BlockFrontend::default(),
            nbd: NbdPaths::default(),
        }
    }

    /// Where DRBD's names of the devices go: `/dev/drbd/by-res`, the directory DRBD's tools and
    /// plugins build their paths in, with the default device root; under the device root
    /// (`<root>/drbd/by-res`) when another one is set.
    pub fn drbd_by_res_dir(&self) -> PathBuf {
        if self.device_root == Path::new(DEFAULT_DEVICE_ROOT) {
            PathBuf::from(DRBD_BY_RES)
        } else {
            self.device_root.join("drbd/by-res")
        }
    }
}

/// What gives a volume its device node.
enum Attachment<V: Volume> {
    /// A loop device on the volume's FUSE file.
    Loop {
        device: LoopDevice,
        file_path: PathBuf,
        file: Arc<ExportedFile<V>>,
    },
    /// An nbd device connected to this process's NBD server; `None` once disconnected.
    KernelNbd {
        path: PathBuf,
        name: String,
        rdev: u64,
        export: ExportName,
        connection: Mutex<Option<NbdConnection>>,
    },
}

impl<V: Volume> Attachment<V> {
    /// `/dev/loopN` or `/dev/nbdN`.
    fn path(&self) -> &Path {
        match self {
            Attachment::Loop { device, .. } => &device.path,
            Attachment::KernelNbd { path, .. } => path,
        }
    }

    /// Its name under `/sys/block`.
    fn name(&self) -> &str {
        match self {
            Attachment::Loop { device, .. } => &device.name,
            Attachment::KernelNbd { name, .. } => name,
        }
    }

    fn rdev(&self) -> u64 {
        match self {
            Attachment::Loop { device, .. } => device.rdev,
            Attachment::KernelNbd { rdev, .. } => *rdev,
        }
    }
}

/// One volume's block device.
pub struct BlockDevice<V: Volume> {
    resource: ResourceName,
    volume_number: VolumeNumber,
    attachment: Attachment<V>,
    link: PathBuf,
    drbd_link: Option<PathBuf>,
    volume: Arc<V>,
    /// What the last probe found, so [`Volume::opened`]/[`Volume::closed`] are called once per
    /// change.
    reported_in_use: AtomicBool,
    /// Set once the device is detached: its loop device may then belong to someone else.
    removed: AtomicBool,
}

impl<V: Volume> BlockDevice<V> {
    pub fn resource(&self) -> &ResourceName {
        &self.resource
    }

    pub fn volume_number(&self) -> VolumeNumber {
        self.volume_number
    }

    /// The device, `/dev/nbdN` or `/dev/loopN`.
    pub fn device(&self) -> &Path {
        self.attachment.path()
    }

    /// Which way the device was made: [`BlockFrontend::KernelNbd`] or
    /// [`BlockFrontend::FuseLoop`].
    pub fn frontend(&self) -> BlockFrontend {
        match self.attachment {
            Attachment::Loop { .. } => BlockFrontend::FuseLoop,
            Attachment::KernelNbd { .. } => BlockFrontend::KernelNbd,
        }
    }

    /// The stable name, `<root>/<resource>/<volume number>`.
    pub fn path(&self) -> &Path {
        &self.link
    }

    /// DRBD's name, `/dev/drbd/by-res/<resource>/<volume number>` (under the device root when
    /// one is set), if it was made.
    pub fn drbd_path(&self) -> Option<&Path> {
        self.drbd_link.as_deref()
    }

    /// The FUSE file behind the loop device; `None` for an nbd device.
    pub fn file(&self) -> Option<&Path> {
        match &self.attachment {
            Attachment::Loop { file_path, .. } => Some(file_path),
            Attachment::KernelNbd { .. } => None,
        }
    }

    /// Whether requests reach the volume with no cache between: a loop device doing direct
    /// I/O on the FUSE file (it should; without it each request waits for the previous one),
    /// or an nbd device, always.
    pub fn direct_io(&self) -> bool {
        match &self.attachment {
            Attachment::Loop { device, .. } => device.direct_io,
            Attachment::KernelNbd { .. } => true,
        }
    }

    /// Opens and closes of the FUSE file (none for an nbd device). The loop device keeps one
    /// open while attached, so this is not usage; it shows whether anything else opened the
    /// file directly.
    pub fn open_counts(&self) -> OpenCounts {
        match &self.attachment {
            Attachment::Loop { file, .. } => file.open_counts(),
            Attachment::KernelNbd { .. } => OpenCounts::default(),
        }
    }

    /// Whether the device is open exclusively: mounted, a `mkfs` or `fsck` running, a device
    /// mapper or md device stacked on it. Cheap enough to poll (one `open` and `close`).
    ///
    /// Each change it observes is passed on as [`Volume::opened`] (unused → in use) or
    /// [`Volume::closed`] (in use → unused).
    ///
    /// Not detected: non-exclusive opens (`dd`, a VM's disk, `cat`), which
    /// [`BlockDevices::remove`] finds by scanning `/proc` before it detaches. The probe itself
    /// holds the device exclusively for the moment between its open and close: a mount
    /// starting at that instant fails with `EBUSY`.
    pub fn is_in_use(&self) -> bool {
        self.poll_usage(false)
    }

    /// [`BlockDevice::is_in_use`], and with `count_shared` also in use while a process other
    /// than this one holds the device open without `O_EXCL` (`dd`, a VM's disk), which the
    /// exclusive probe cannot see; udev's short probes excepted. That takes a scan of
    /// `/proc/*/fd`: the caller asks for it only where it matters (a volume that would be let go
    /// of when unused), not on every poll of every device.
    pub fn poll_usage(&self, count_shared: bool) -> bool {
        if self.removed.load(Ordering::Acquire) {
            return false;
        }
        let exclusive = match loop_device::open_exclusive(self.attachment.path()) {
            Ok(Some(_probe)) => false,
            Ok(None) => true,
            Err(error) => {
                tracing::warn!(device = %self.attachment.path().display(), %error, "cannot probe whether the block device is in use");
                false
            }
        };
        let in_use = exclusive || (count_shared && self.has_shared_openers());
        self.note_usage(in_use);
        in_use
    }

    fn has_shared_openers(&self) -> bool {
        let openers = loop_device::openers(self.attachment.rdev());
        if !openers.is_empty() {
            tracing::debug!(device = %self.attachment.path().display(), ?openers, "block device open without O_EXCL");
        }
        !openers.is_empty()
    }

    /// What the last poll told the volume: in use or not.
    pub fn reported_in_use(&self) -> bool {
        self.reported_in_use.load(Ordering::Acquire)
    }

    fn note_usage(&self, in_use: bool) {
        let was = self.reported_in_use.swap(in_use, Ordering::AcqRel);
        if in_use && !was {
            tracing::info!(resource = %self.resource, volume = %self.volume_number, device = %self.attachment.path().display(), "block device in use");
            self.volume.opened();
        } else if !in_use && was {
            tracing::info!(resource = %self.resource, volume = %self.volume_number, device = %self.attachment.path().display(), "block device no longer in use");
            self.volume.closed();
        }
    }

    /// Why an exclusive open failed.
    fn busy_reason(&self) -> InUseReason {
        let mount_points = loop_device::mount_points(self.attachment.rdev());
        if !mount_points.is_empty() {
            return InUseReason::Mounted { mount_points };
        }
        let holders = loop_device::holders(self.attachment.name());
        if !holders.is_empty() {
            return InUseReason::Held { holders };
        }
        InUseReason::Exclusive
    }
}

/// The block devices of this process. Dropping it is [`BlockDevices::shutdown`].
pub struct BlockDevices<V: Volume> {
    config: BlockDeviceConfig,
    runner: Arc<dyn HostCommands>,
    drbd_links: bool,
    devices: BTreeMap<(ResourceName, VolumeNumber), Arc<BlockDevice<V>>>,
    /// `None` only once shut down.
    frontend: Option<Frontend<V>>,
}

/// What serves the devices' I/O.
enum Frontend<V: Volume> {
    FuseLoop(FuseMount<V>),
    KernelNbd(NbdServing<V>),
}

/// The NBD server the nbd devices are connected to, one export per device.
struct NbdServing<V: Volume> {
    server: Server<Unsessioned<V>>,
    runtime: Handle,
}

impl<V: Volume> NbdServing<V> {
    /// A new connection to `export`, served here, with the client's handshake done on the
    /// other end: that end, in transmission and blocking, is what the nbd driver is given.
    fn kernel_side(&self, export: &ExportName) -> io::Result<(ExportInfo, OwnedFd)> {
        let (served, client) = std::os::unix::net::UnixStream::pair()?;
        self.runtime.block_on(async {
            served.set_nonblocking(true)?;
            client.set_nonblocking(true)?;
            let served = tokio::net::UnixStream::from_std(served)?;
            self.server
                .spawn_connection(served, format!("the nbd device of {export}"));
            let mut client = tokio::net::UnixStream::from_std(client)?;
            let info = tokio::time::timeout(
                NBD_HANDSHAKE_TIMEOUT,
                ferrite_nbd::client::negotiate(&mut client, export.as_str()),
            )
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the handshake timed out"))?
            .map_err(io::Error::other)?;
            let client = client.into_std()?;
            client.set_nonblocking(false)?;
            Ok((info, OwnedFd::from(client)))
        })
    }
}

/// How long the handshake on a new nbd device's socket may take.
const NBD_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A volume as the nbd device's NBD connection sees it: every request passes through, but the
/// connection is not a session. It lasts as long as the device; whether the device is in use
/// is what its probes find ([`BlockDevice::poll_usage`]), as for a loop device.
struct Unsessioned<V>(Arc<V>);

impl<V: Volume> Volume for Unsessioned<V> {
    fn size(&self) -> u64 {
        self.0.size()
    }

    fn read(
        &self,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<bytes::Bytes, IoError>> + Send {
        self.0.read(offset, len)
    }

    fn read_piped(
        &self,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Option<PipedData>, IoError>> + Send {
        self.0.read_piped(offset, len)
    }

    fn write(
        &self,
        offset: u64,
        data: bytes::Bytes,
        fua: bool,
    ) -> impl Future<Output = Result<(), IoError>> + Send {
        self.0.write(offset, data, fua)
    }

    fn flush(&self) -> impl Future<Output = Result<(), IoError>> + Send {
        self.0.flush()
    }

    fn trim(&self, offset: u64, len: u64) -> impl Future<Output = Result<(), IoError>> + Send {
        self.0.trim(offset, len)
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        fua: bool,
    ) -> impl Future<Output = Result<(), IoError>> + Send {
        self.0.write_zeroes(offset, len, fua)
    }
}

impl<V: Volume> BlockDevices<V> {
    /// Chooses the frontend ([`BlockDeviceConfig::frontend`]) and starts it: the NBD server of
    /// the nbd devices, or the FUSE file system (a FUSE mount left at the mountpoint by a
    /// process that died is cleared first, its loop devices detached). Volume I/O runs on
    /// `runtime`.
    pub fn start(
        config: BlockDeviceConfig,
        runner: Arc<dyn HostCommands>,
        runtime: Handle,
    ) -> Result<BlockDevices<V>, BlockDevError> {
        let mut config = config;
        let kernel_nbd = match config.frontend {
            BlockFrontend::FuseLoop => false,
            BlockFrontend::KernelNbd => {
                kernel_nbd::usable(&config.nbd)
                    .map_err(|reason| BlockDevError::KernelNbdUnusable { reason })?;
                true
            }
            BlockFrontend::Auto => match kernel_nbd::usable(&config.nbd) {
                Ok(()) => true,
                Err(reason) => {
                    tracing::info!(%reason, "block devices through FUSE + loop");
                    false
                }
            },
        };
        let frontend = if kernel_nbd {
            config.frontend = BlockFrontend::KernelNbd;
            Frontend::KernelNbd(NbdServing {
                server: Server::new(ServerConfig::default()),
                runtime,
            })
        } else {
            config.frontend = BlockFrontend::FuseLoop;
            config.mountpoint = resolved(&config.mountpoint)?;
            prepare_mountpoint(&config.mountpoint, runner.as_ref())?;
            Frontend::FuseLoop(FuseMount::mount(&config.mountpoint, runtime)?)
        };
        let drbd_links = match config.drbd_links {
            DrbdLinks::Always => true,
            DrbdLinks::Never => false,
            DrbdLinks::WhenNoDrbdModule => {
                let loaded = Path::new(DRBD_MODULE).exists();
                if loaded {
                    tracing::info!(
                        "the DRBD module is loaded: no drbd/by-res links, DRBD's devices own that name"
                    );
                }
                !loaded
            }
        };
        Ok(BlockDevices {
            config,
            runner,
            drbd_links,
            devices: BTreeMap::new(),
            frontend: Some(frontend),
        })
    }

    /// The configuration in use; its `frontend` is the one chosen (never `Auto`).
    pub fn config(&self) -> &BlockDeviceConfig {
        &self.config
    }

    pub fn get(
        &self,
        resource: &ResourceName,
        volume_number: VolumeNumber,
    ) -> Option<&Arc<BlockDevice<V>>> {
        self.devices.get(&(resource.clone(), volume_number))
    }

    /// Every device, by resource and volume number.
    pub fn devices(&self) -> impl Iterator<Item = &Arc<BlockDevice<V>>> {
        self.devices.values()
    }

    fn frontend(&self) -> &Frontend<V> {
        self.frontend
            .as_ref()
            .expect("the frontend lives as long as the BlockDevices")
    }

    /// Exports `volume` as a block device: an nbd device, or its FUSE file and a loop device;
    /// and the symlinks.
    pub fn add(
        &mut self,
        resource: &ResourceName,
        volume_number: VolumeNumber,
        volume: Arc<V>,
    ) -> Result<Arc<BlockDevice<V>>, BlockDevError> {
        let span =
            tracing::info_span!("blockdev_add", resource = %resource, volume = %volume_number);
        let _entered = span.enter();
        let key = (resource.clone(), volume_number);
        if let Some(existing) = self.devices.get(&key) {
            return Err(BlockDevError::AlreadyExported {
                resource: resource.clone(),
                volume_number,
                device: existing.device().to_path_buf(),
            });
        }
        let size = volume.size();
        if !size.is_multiple_of(u64::from(self.config.sector_size)) {
            return Err(BlockDevError::UnalignedSize {
                resource: resource.clone(),
                volume_number,
                size,
                sector_size: self.config.sector_size,
            });
        }
        let name = format!("{}_{}", resource.as_str(), volume_number);
        let attachment = match self.frontend() {
            Frontend::FuseLoop(fuse) => {
                self.attach_loop(fuse, resource, volume_number, &name, &volume)?
            }
            Frontend::KernelNbd(serving) => {
                self.attach_nbd(serving, resource, volume_number, &name, &volume)?
            }
        };

        let link = self
            .config
            .device_root
            .join(resource.as_str())
            .join(volume_number.to_string());
        let drbd_link = self.drbd_links.then(|| {
            self.config
                .drbd_by_res_dir()
                .join(resource.as_str())
                .join(volume_number.to_string())
        });
        let linked = std::iter::once(&link)
            .chain(drbd_link.as_ref())
            .try_for_each(|path| make_symlink(attachment.path(), path));
        if let Err(error) = linked {
            remove_symlinks([Some(&link), drbd_link.as_ref()]);
            self.detach_after_failure(attachment);
            return Err(error);
        }

        tracing::info!(device = %attachment.path().display(), link = %link.display(), frontend = %self.config.frontend, size, "block device ready");
        let device = Arc::new(BlockDevice {
            resource: resource.clone(),
            volume_number,
            attachment,
            link,
            drbd_link,
            volume,
            reported_in_use: AtomicBool::new(false),
            removed: AtomicBool::new(false),
        });
        self.devices.insert(key, device.clone());
        Ok(device)
    }

    /// The volume's FUSE file and a loop device attached to it.
    fn attach_loop(
        &self,
        fuse: &FuseMount<V>,
        resource: &ResourceName,
        volume_number: VolumeNumber,
        name: &str,
        volume: &Arc<V>,
    ) -> Result<Attachment<V>, BlockDevError> {
        let file =
            fuse.add_file(name, volume.clone())
                .ok_or_else(|| BlockDevError::AlreadyExported {
                    resource: resource.clone(),
                    volume_number,
                    device: fuse.path_of(name),
                })?;
        let file_path = fuse.path_of(name);
        let attached =
            loop_device::attach(self.runner.as_ref(), &file_path, self.config.sector_size);
        let loop_device = match attached {
            Ok(Ok(device)) => device,
            Ok(Err(stdout)) => {
                fuse.remove_file(name);
                return Err(BlockDevError::NoLoopDevice {
                    file: file_path,
                    stdout,
                });
            }
            Err(source) => {
                fuse.remove_file(name);
                return Err(BlockDevError::Command {
                    action: "attach a loop device",
                    resource: resource.clone(),
                    volume_number,
                    source: Box::new(source),
                });
            }
        };
        if !loop_device.direct_io {
            tracing::warn!(device = %loop_device.path.display(), "the loop device does not do direct I/O on the FUSE file: each request will wait for the previous one");
        }
        tracing::debug!(file = %file_path.display(), device = %loop_device.path.display(), "loop device attached to the FUSE file");
        Ok(Attachment::Loop {
            device: loop_device,
            file_path,
            file,
        })
    }

    /// An nbd device connected to a new export of the volume on this process's NBD server.
    fn attach_nbd(
        &self,
        serving: &NbdServing<V>,
        resource: &ResourceName,
        volume_number: VolumeNumber,
        name: &str,
        volume: &Arc<V>,
    ) -> Result<Attachment<V>, BlockDevError> {
        let failed = |reason: String| BlockDevError::KernelNbd {
            resource: resource.clone(),
            volume_number,
            reason,
        };
        let export = ExportName::new(name).map_err(|error| failed(error.to_string()))?;
        serving
            .server
            .add_export(
                ExportConfig::new(export.clone())
                    .description(format!("volume {volume_number} of {resource}")),
                Arc::new(Unsessioned(volume.clone())),
            )
            .map_err(|error| failed(error.to_string()))?;
        match self.connect_nbd(serving, &export) {
            Ok(connection) => {
                tracing::debug!(device = %connection.path.display(), %export, "nbd device connected");
                Ok(Attachment::KernelNbd {
                    path: connection.path.clone(),
                    name: connection.name.clone(),
                    rdev: connection.rdev,
                    export,
                    connection: Mutex::new(Some(connection)),
                })
            }
            Err(reason) => {
                let _ = serving.server.remove_export(&export);
                Err(failed(reason))
            }
        }
    }

    /// Handshakes on a new connection to `export` and gives it to the first free nbd device.
    fn connect_nbd(
        &self,
        serving: &NbdServing<V>,
        export: &ExportName,
    ) -> Result<NbdConnection, String> {
        let (info, socket) = serving
            .kernel_side(export)
            .map_err(|error| format!("the handshake with the volume's export failed: {error}"))?;
        let free = kernel_nbd::free_devices(&self.config.nbd.sys_block);
        if free.is_empty() {
            return Err(format!(
                "every nbd device is in use (raise the driver's nbds_max, {} has {} devices)",
                self.config.nbd.sys_block.display(),
                kernel_nbd::device_count(&self.config.nbd.sys_block)
            ));
        }
        for name in free {
            let socket = socket
                .try_clone()
                .map_err(|error| format!("cannot duplicate the socket: {error}"))?;
            match NbdConnection::connect(
                &self.config.nbd,
                &name,
                socket,
                &info,
                self.config.sector_size,
            ) {
                Ok(connection) => return Ok(connection),
                Err(kernel_nbd::ConnectError::Busy(device)) => {
                    tracing::debug!(device = %device.display(), "nbd device taken meanwhile; trying the next one");
                }
                Err(error) => return Err(error.to_string()),
            }
        }
        Err("every free nbd device was taken meanwhile".to_string())
    }

    /// Undoes an attach whose symlinks failed; nobody can be using the device yet.
    fn detach_after_failure(&self, attachment: Attachment<V>) {
        match attachment {
            Attachment::Loop {
                device,
                file_path: _,
                file,
            } => {
                match loop_device::open_exclusive(&device.path) {
                    Ok(Some(exclusive)) => {
                        if let Err(error) = loop_device::detach(
                            self.runner.as_ref(),
                            &device,
                            exclusive,
                            DETACH_TIMEOUT,
                        ) {
                            tracing::error!(device = %device.path.display(), %error, "could not detach the loop device of a failed export");
                        }
                    }
                    other => {
                        tracing::error!(device = %device.path.display(), ?other, "could not open the loop device of a failed export to detach it");
                    }
                }
                if let Frontend::FuseLoop(fuse) = self.frontend() {
                    fuse.remove_file(file.name());
                }
            }
            Attachment::KernelNbd {
                path,
                export,
                connection,
                ..
            } => {
                let connection = connection.into_inner().unwrap_or_else(|e| e.into_inner());
                if let Some(connection) = connection
                    && let Err(error) = connection.disconnect()
                {
                    tracing::error!(device = %path.display(), %error, "could not disconnect the nbd device of a failed export");
                }
                if let Frontend::KernelNbd(serving) = self.frontend() {
                    let _ = serving.server.remove_export(&export);
                }
            }
        }
    }

    /// Detaches the volume's device and removes its symlinks (and its FUSE file or NBD
    /// export). A device in use (mounted, open exclusively, held by a stacked device or open by
    /// a process) is left as it is: [`BlockDevError::InUse`] says why.
    pub fn remove(
        &mut self,
        resource: &ResourceName,
        volume_number: VolumeNumber,
    ) -> Result<(), BlockDevError> {
        let span =
            tracing::info_span!("blockdev_remove", resource = %resource, volume = %volume_number);
        let _entered = span.enter();
        let key = (resource.clone(), volume_number);
        let Some(device) = self.devices.get(&key).cloned() else {
            return Err(BlockDevError::NotExported {
                resource: resource.clone(),
                volume_number,
            });
        };
        let path = device.device().to_path_buf();
        let in_use = |reason| BlockDevError::InUse {
            resource: resource.clone(),
            volume_number,
            device: path.clone(),
            reason,
        };
        // Held from here to the detach, so nothing can mount the device in between.
        let exclusive = match loop_device::open_exclusive(&path) {
            Ok(Some(exclusive)) => exclusive,
            Ok(None) => {
                device.note_usage(true);
                let reason = device.busy_reason();
                tracing::warn!(device = %path.display(), %reason, "refused to remove a block device in use");
                return Err(in_use(reason));
            }
            Err(source) => {
                return Err(BlockDevError::Path {
                    action: "open exclusively",
                    path,
                    source,
                });
            }
        };
        let processes = loop_device::lasting_openers(device.attachment.rdev());
        if !processes.is_empty() {
            let reason = InUseReason::OpenBy { processes };
            tracing::warn!(device = %path.display(), %reason, "refused to remove a block device in use");
            return Err(in_use(reason));
        }
        match &device.attachment {
            Attachment::Loop {
                device: loop_device,
                file_path,
                file,
            } => {
                // The loop device holds one open of the file; any other is a user of the file.
                let others = file.open_counts().open_now.saturating_sub(1);
                if others > 0 {
                    let reason = InUseReason::FileOpen {
                        descriptors: others,
                    };
                    tracing::warn!(device = %path.display(), %reason, "refused to remove a block device in use");
                    return Err(in_use(reason));
                }
                self.detach_loop(resource, volume_number, loop_device, exclusive)?;
                // The kernel closes the file after the detach, a moment later; once it has,
                // nothing in the FUSE layer refers to the volume any more.
                let started = Instant::now();
                while file.open_counts().open_now > 0 {
                    if started.elapsed() >= RELEASE_TIMEOUT {
                        tracing::warn!(file = %file_path.display(), "the detached loop device has not closed its FUSE file yet");
                        break;
                    }
                    std::thread::sleep(RELEASE_POLL_INTERVAL);
                }
                if let Frontend::FuseLoop(fuse) = self.frontend() {
                    fuse.remove_file(file.name());
                }
            }
            Attachment::KernelNbd {
                export, connection, ..
            } => {
                // A writer that closed the device may have left dirty pages in its cache: they
                // go to the volume now, while the device is still connected.
                exclusive.sync_all().map_err(|source| BlockDevError::Path {
                    action: "flush",
                    path: path.clone(),
                    source,
                })?;
                disconnect_once(connection).map_err(|source| BlockDevError::Path {
                    action: "disconnect",
                    path: path.clone(),
                    source,
                })?;
                drop(exclusive);
                if let Frontend::KernelNbd(serving) = self.frontend() {
                    let _ = serving.server.remove_export(export);
                }
            }
        }
        device.removed.store(true, Ordering::Release);
        device.note_usage(false);
        remove_symlinks([Some(&device.link), device.drbd_link.as_ref()]);
        self.devices.remove(&key);
        tracing::info!(device = %path.display(), "block device removed");
        Ok(())
    }

    /// Detaches a loop device while `exclusive` holds it.
    fn detach_loop(
        &self,
        resource: &ResourceName,
        volume_number: VolumeNumber,
        device: &LoopDevice,
        exclusive: std::fs::File,
    ) -> Result<(), BlockDevError> {
        match loop_device::detach(self.runner.as_ref(), device, exclusive, DETACH_TIMEOUT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(timeout)) => Err(BlockDevError::DetachTimeout {
                device: device.path.clone(),
                timeout,
            }),
            Err(source) => Err(BlockDevError::Command {
                action: "detach the loop device",
                resource: resource.clone(),
                volume_number,
                source: Box::new(source),
            }),
        }
    }

    /// Removes every device that is not in use, then stops the frontend. Devices in use stay:
    /// a loop device is detached at its last close (autoclear) and the FUSE file system is
    /// detached lazily so it keeps serving them while this process lives; an nbd device is
    /// disconnected, since nothing serves it once this process ends. The errors name them,
    /// and their links are removed.
    pub fn shutdown(mut self) -> Vec<BlockDevError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Vec<BlockDevError> {
        let mut errors = Vec::new();
        if self.frontend.is_none() {
            return errors;
        }
        let keys: Vec<_> = self.devices.keys().cloned().collect();
        for (resource, volume_number) in keys {
            if let Err(error) = self.remove(&resource, volume_number) {
                if let Some(device) = self.devices.remove(&(resource, volume_number)) {
                    self.let_go_in_use(&device);
                }
                errors.push(error);
            }
        }
        match self.frontend.take() {
            Some(Frontend::FuseLoop(fuse)) => {
                if let Err(error) = fuse.unmount() {
                    errors.push(error);
                }
            }
            Some(Frontend::KernelNbd(serving)) => serving.server.shutdown(),
            None => {}
        }
        errors
    }
}

impl<V: Volume> BlockDevices<V> {
    /// At shutdown, lets go of a device still in use and removes its links, which would
    /// otherwise name a device that is given to someone else: a loop device is detached at its
    /// last close (the kernel's autoclear); an nbd device is disconnected now (its I/O fails
    /// from here, as it would once this process ended).
    fn let_go_in_use(&self, device: &BlockDevice<V>) {
        match &device.attachment {
            Attachment::Loop {
                device: loop_device,
                ..
            } => match self
                .runner
                .run(&loop_device::detach_command(&loop_device.path))
            {
                Ok(_) => {
                    tracing::warn!(device = %loop_device.path.display(), "block device in use at shutdown: detached when its last user closes it");
                }
                Err(error) => {
                    tracing::error!(device = %loop_device.path.display(), %error, "could not mark a block device in use for detaching at its last close");
                }
            },
            Attachment::KernelNbd {
                path, connection, ..
            } => {
                tracing::error!(device = %path.display(), "nbd device in use at shutdown: disconnected, its I/O fails from here");
                if let Err(error) = disconnect_once(connection) {
                    tracing::error!(device = %path.display(), %error, "could not disconnect an nbd device at shutdown");
                }
            }
        }
        device.removed.store(true, Ordering::Release);
        remove_symlinks([Some(&device.link), device.drbd_link.as_ref()]);
    }
}

impl<V: Volume> Drop for BlockDevices<V> {
    fn drop(&mut self) {
        for error in self.shutdown_inner() {
            tracing::error!(%error, "block device left behind at shutdown");
        }
    }
}

/// `path` with its parent directory resolved (made if missing), the way the kernel shows
/// mount points and loop devices' backing files. The last component is kept: it may be a
/// dead FUSE mount, which cannot be resolved.
fn resolved(path: &Path) -> Result<PathBuf, BlockDevError> {
    let path_error = |action, source| BlockDevError::Path {
        action,
        path: path.to_path_buf(),
        source,
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(path_error(
            "mount on",
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory below another"),
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::fs::create_dir_all(parent).map_err(|source| path_error("create", source))?;
    let parent = parent
        .canonicalize()
        .map_err(|source| path_error("resolve", source))?;
    Ok(parent.join(name))
}

/// Makes `mountpoint` a directory to mount on. A FUSE file system left there by a process
/// that died answers `ENOTCONN`: its loop devices are detached (deferred by the kernel while
/// something still has them open) and it is unmounted lazily.
fn prepare_mountpoint(mountpoint: &Path, runner: &dyn HostCommands) -> Result<(), BlockDevError> {
    let path_error = |action, source| BlockDevError::Path {
        action,
        path: mountpoint.to_path_buf(),
        source,
    };
    match std::fs::metadata(mountpoint) {
        Ok(_) if loop_device::is_mount_point(mountpoint) => Err(BlockDevError::Mount {
            mountpoint: mountpoint.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something is mounted there already (another ferrite-mirrord?)",
            ),
        }),
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(path_error(
            "mount on",
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        )),
        Err(error) if error.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(mountpoint = %mountpoint.display(), "clearing a FUSE file system left by a process that ended");
            for device in stale_loop_devices(mountpoint) {
                tracing::warn!(device = %device.display(), "detaching a loop device of the stale FUSE file system");
                if let Err(error) = runner.run(&loop_device::detach_command(&device)) {
                    tracing::error!(device = %device.display(), %error, "could not detach a stale loop device");
                }
            }
            lazy_unmount(mountpoint).map_err(|source| path_error("unmount", source))?;
            Ok(())
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(mountpoint).map_err(|source| path_error("create", source))
        }
        Err(source) => Err(path_error("inspect", source)),
    }
}

/// Loop devices whose backing file lies under `mountpoint`.
fn stale_loop_devices(mountpoint: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .filter(|name| name.starts_with("loop"))
        .filter(|name| {
            loop_device::backing_file(name).is_some_and(|file| file.starts_with(mountpoint))
        })
        .map(|name| Path::new("/dev").join(name))
        .collect()
}

/// Points `link` at `target`, replacing whatever was there (a link left by a crash) atomically.
fn make_symlink(target: &Path, link: &Path) -> Result<(), BlockDevError> {
    let path_error = |action, path: &Path, source| BlockDevError::Path {
        action,
        path: path.to_path_buf(),
        source,
    };
    let parent = link.parent().expect("a device link has a parent directory");
    std::fs::create_dir_all(parent).map_err(|source| path_error("create", parent, source))?;
    let file_name = link
        .file_name()
        .expect("a device link has a name")
        .to_string_lossy();
    let temporary = parent.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary)
        .map_err(|source| path_error("create the symlink", &temporary, source))?;
    std::fs::rename(&temporary, link).map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        path_error("create the symlink", link, source)
    })
}

/// Removes device links and their resource directories once empty. Failures are logged: a
/// leftover link is overwritten when the volume is exported again.
fn remove_symlinks<'a>(links: impl IntoIterator<Item = Option<&'a PathBuf>>) {
    for link in links.into_iter().flatten() {
        match std::fs::remove_file(link) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(link = %link.display(), %error, "could not remove a device link");
            }
        }
        // The resource's directory goes with its last volume; ENOTEMPTY means it had more.
        if let Some(parent) = link.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Disconnects an nbd device's connection unless that was done before: the connection is
/// taken, so a second call finds none.
fn disconnect_once(connection: &Mutex<Option<NbdConnection>>) -> std::io::Result<()> {
    let taken = connection.lock().unwrap_or_else(|e| e.into_inner()).take();
    taken.map_or(Ok(()), NbdConnection::disconnect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_nbd::protocol::{
        CMD_FLUSH, CMD_READ, CMD_WRITE, REQUEST_HEADER_LEN, RequestHeader, SIMPLE_REPLY_MAGIC,
        TRANSMISSION_SEND_FLUSH, TRANSMISSION_SEND_FUA, TRANSMISSION_SEND_TRIM,
    };
    use ferrite_nbd::testing::MemoryVolume;
    use std::io::{Read, Write};

    /// What the nbd driver does on the socket it is given: requests with no handshake, simple
    /// replies back. Everything up to the ioctls runs here; the driver does not (this host has
    /// no nbd module).
    #[test]
    fn the_socket_given_to_the_driver_is_in_transmission_and_holds_no_session() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let volume = Arc::new(MemoryVolume::new(1 << 20));
        let serving = NbdServing {
            server: Server::new(ServerConfig::default()),
            runtime: runtime.handle().clone(),
        };
        let export = ExportName::new("web_0").unwrap();
        serving
            .server
            .add_export(
                ExportConfig::new(export.clone()),
                Arc::new(Unsessioned(volume.clone())),
            )
            .unwrap();
        let (info, socket) = serving.kernel_side(&export).unwrap();
        assert_eq!(info.size, 1 << 20);
        let wanted = TRANSMISSION_SEND_FLUSH | TRANSMISSION_SEND_FUA | TRANSMISSION_SEND_TRIM;
        assert_eq!(info.flags & wanted, wanted, "flags {:#x}", info.flags);

        let mut socket = std::os::unix::net::UnixStream::from(socket);
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut call = |command: u16, cookie: u64, offset: u64, length: u32, payload: &[u8]| {
            let header = RequestHeader {
                flags: 0,
                command,
                cookie,
                offset,
                length,
            };
            let encoded: [u8; REQUEST_HEADER_LEN] = header.encode();
            socket.write_all(&encoded).unwrap();
            socket.write_all(payload).unwrap();
            let mut reply = [0u8; 16];
            socket.read_exact(&mut reply).unwrap();
            assert_eq!(reply[0..4], SIMPLE_REPLY_MAGIC.to_be_bytes());
            assert_eq!(reply[4..8], [0; 4], "error of command {command}");
            assert_eq!(reply[8..16], cookie.to_be_bytes());
            let mut data = vec![
                0u8;
                if command == CMD_READ {
                    length as usize
                } else {
                    0
                }
            ];
            socket.read_exact(&mut data).unwrap();
            data
        };
        let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        call(CMD_WRITE, 1, 8192, 4096, &pattern);
        call(CMD_FLUSH, 2, 0, 0, &[]);
        assert_eq!(call(CMD_READ, 3, 8192, 4096, &[]), pattern);
        assert_eq!(volume.contents()[8192..12288], pattern[..]);
        assert_eq!(volume.flushes(), 1);
        assert_eq!(
            volume.sessions_opened(),
            0,
            "the device's connection is no session: usage is what the device's probes find"
        );
    }

    #[test]
    fn drbd_s_names_go_where_drbd_s_tools_look_unless_another_root_is_set() {
        let config = BlockDeviceConfig::new("/run/ferrite/blockdev");
        assert_eq!(config.drbd_by_res_dir(), Path::new("/dev/drbd/by-res"));
        let side_by_side = BlockDeviceConfig {
            device_root: PathBuf::from("/tmp/demo/node2/dev"),
            ..config
        };
        assert_eq!(
            side_by_side.drbd_by_res_dir(),
            Path::new("/tmp/demo/node2/dev/drbd/by-res")
        );
    }
}
