//! The block devices of one process: for each exported volume a FUSE file, a loop device on it
//! and the stable symlinks that name it.
//!
//! [`BlockDevices`] owns the FUSE mount and every device; the owner (the engine's frontend
//! task) adds and removes volumes through it. Each device is also handed out as an
//! `Arc<`[`BlockDevice`]`>` so the engine can poll [`BlockDevice::is_in_use`] from anywhere.
//!
//! Adding and removing block: they run `losetup` and wait for the kernel (up to
//! [`DETACH_TIMEOUT`]), and a detach makes the kernel flush the volume through the FUSE file,
//! which needs the runtime. Call them from a blocking thread (`spawn_blocking`), never from one
//! of the runtime's workers.
//!
//! Paths, with `<root>` the device root (default [`DEFAULT_DEVICE_ROOT`]):
//!
//! - `<mountpoint>/<resource>_<volume number>`: the FUSE file;
//! - `/dev/loopN`: the loop device, attached with `--direct-io=on`;
//! - `<root>/<resource>/<volume number>` → `/dev/loopN`;
//! - `/dev/drbd/by-res/<resource>/<volume number>` → `/dev/loopN`, the path DRBD's tools and
//!   plugins build, made where no DRBD module is loaded ([`DrbdLinks`]). With a device root
//!   other than the default, it is under that root instead,
//!   `<root>/drbd/by-res/<resource>/<volume number>`, so that several nodes run side by side
//!   on one machine ([`BlockDeviceConfig::drbd_by_res_dir`]).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrite_block::Volume;
use ferrite_storage::HostCommands;
use ferrite_types::{ResourceName, VolumeNumber};
use tokio::runtime::Handle;

use crate::error::{BlockDevError, InUseReason};
use crate::fs::{ExportedFile, FuseMount, OpenCounts, lazy_unmount};
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

/// Where the block devices live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDeviceConfig {
    /// The directory the FUSE file system is mounted on (made if missing).
    pub mountpoint: PathBuf,
    /// The directory of the stable symlinks.
    pub device_root: PathBuf,
    /// The loop devices' logical sector size.
    pub sector_size: u32,
    pub drbd_links: DrbdLinks,
}

impl BlockDeviceConfig {
    /// The defaults, with the FUSE file system at `mountpoint`.
    pub fn new(mountpoint: impl Into<PathBuf>) -> BlockDeviceConfig {
        BlockDeviceConfig {
            mountpoint: mountpoint.into(),
            device_root: PathBuf::from(DEFAULT_DEVICE_ROOT),
            sector_size: DEFAULT_SECTOR_SIZE,
            drbd_links: DrbdLinks::default(),
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

/// One volume's block device.
pub struct BlockDevice<V: Volume> {
    resource: ResourceName,
    volume_number: VolumeNumber,
    loop_device: LoopDevice,
    file_path: PathBuf,
    link: PathBuf,
    drbd_link: Option<PathBuf>,
    file: Arc<ExportedFile<V>>,
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

    /// The loop device, `/dev/loopN`.
    pub fn device(&self) -> &Path {
        &self.loop_device.path
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

    /// The FUSE file behind the loop device.
    pub fn file(&self) -> &Path {
        &self.file_path
    }

    /// Whether the loop device does direct I/O on the FUSE file (it should; without it each
    /// request waits for the previous one).
    pub fn direct_io(&self) -> bool {
        self.loop_device.direct_io
    }

    /// Opens and closes of the FUSE file. The loop device keeps one open while attached, so
    /// this is not usage; it shows whether anything else opened the file directly.
    pub fn open_counts(&self) -> OpenCounts {
        self.file.open_counts()
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
        let exclusive = match loop_device::open_exclusive(&self.loop_device.path) {
            Ok(Some(_probe)) => false,
            Ok(None) => true,
            Err(error) => {
                tracing::warn!(device = %self.loop_device.path.display(), %error, "cannot probe whether the block device is in use");
                false
            }
        };
        let in_use = exclusive || (count_shared && self.has_shared_openers());
        self.note_usage(in_use);
        in_use
    }

    fn has_shared_openers(&self) -> bool {
        let openers = loop_device::openers(self.loop_device.rdev);
        if !openers.is_empty() {
            tracing::debug!(device = %self.loop_device.path.display(), ?openers, "block device open without O_EXCL");
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
            tracing::info!(resource = %self.resource, volume = %self.volume_number, device = %self.loop_device.path.display(), "block device in use");
            self.volume.opened();
        } else if !in_use && was {
            tracing::info!(resource = %self.resource, volume = %self.volume_number, device = %self.loop_device.path.display(), "block device no longer in use");
            self.volume.closed();
        }
    }

    /// Why an exclusive open failed.
    fn busy_reason(&self) -> InUseReason {
        let mount_points = loop_device::mount_points(self.loop_device.rdev);
        if !mount_points.is_empty() {
            return InUseReason::Mounted { mount_points };
        }
        let holders = loop_device::holders(&self.loop_device.name);
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
    fuse: Option<FuseMount<V>>,
}

impl<V: Volume> BlockDevices<V> {
    /// Mounts the FUSE file system; volume I/O runs on `runtime`. A FUSE mount left at the
    /// mountpoint by a process that died is cleared first (its loop devices detached).
    pub fn start(
        config: BlockDeviceConfig,
        runner: Arc<dyn HostCommands>,
        runtime: Handle,
    ) -> Result<BlockDevices<V>, BlockDevError> {
        let mut config = config;
        config.mountpoint = resolved(&config.mountpoint)?;
        prepare_mountpoint(&config.mountpoint, runner.as_ref())?;
        let fuse = FuseMount::mount(&config.mountpoint, runtime)?;
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
            fuse: Some(fuse),
        })
    }

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

    fn fuse(&self) -> &FuseMount<V> {
        self.fuse
            .as_ref()
            .expect("the FUSE mount lives as long as the BlockDevices")
    }

    /// Exports `volume` as a block device: its FUSE file, a loop device and the symlinks.
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
                device: existing.loop_device.path.clone(),
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
        let file = self.fuse().add_file(&name, volume.clone()).ok_or_else(|| {
            BlockDevError::AlreadyExported {
                resource: resource.clone(),
                volume_number,
                device: self.fuse().path_of(&name),
            }
        })?;
        let file_path = self.fuse().path_of(&name);

        let command_error = |action, source| BlockDevError::Command {
            action,
            resource: resource.clone(),
            volume_number,
            source: Box::new(source),
        };
        let attached =
            loop_device::attach(self.runner.as_ref(), &file_path, self.config.sector_size);
        let loop_device = match attached {
            Ok(Ok(device)) => device,
            Ok(Err(stdout)) => {
                self.fuse().remove_file(&name);
                return Err(BlockDevError::NoLoopDevice {
                    file: file_path,
                    stdout,
                });
            }
            Err(source) => {
                self.fuse().remove_file(&name);
                return Err(command_error("attach a loop device", source));
            }
        };
        if !loop_device.direct_io {
            tracing::warn!(device = %loop_device.path.display(), "the loop device does not do direct I/O on the FUSE file: each request will wait for the previous one");
        }

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
            .try_for_each(|path| make_symlink(&loop_device.path, path));
        if let Err(error) = linked {
            remove_symlinks([Some(&link), drbd_link.as_ref()]);
            self.detach_after_failure(&loop_device);
            self.fuse().remove_file(&name);
            return Err(error);
        }

        tracing::info!(device = %loop_device.path.display(), link = %link.display(), file = %file_path.display(), direct_io = loop_device.direct_io, size, "block device ready");
        let device = Arc::new(BlockDevice {
            resource: resource.clone(),
            volume_number,
            loop_device,
            file_path,
            link,
            drbd_link,
            file,
            volume,
            reported_in_use: AtomicBool::new(false),
            removed: AtomicBool::new(false),
        });
        self.devices.insert(key, device.clone());
        Ok(device)
    }

    /// Undoes an attach whose symlinks failed; nobody can be using the device yet.
    fn detach_after_failure(&self, device: &LoopDevice) {
        match loop_device::open_exclusive(&device.path) {
            Ok(Some(exclusive)) => {
                if let Err(error) =
                    loop_device::detach(self.runner.as_ref(), device, exclusive, DETACH_TIMEOUT)
                {
                    tracing::error!(device = %device.path.display(), %error, "could not detach the loop device of a failed export");
                }
            }
            other => {
                tracing::error!(device = %device.path.display(), ?other, "could not open the loop device of a failed export to detach it");
            }
        }
    }

    /// Detaches the volume's loop device and removes its symlinks and FUSE file. A device in
    /// use (mounted, open exclusively, held by a stacked device or open by a process) is left
    /// as it is: [`BlockDevError::InUse`] says why.
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
        let in_use = |reason| BlockDevError::InUse {
            resource: resource.clone(),
            volume_number,
            device: device.loop_device.path.clone(),
            reason,
        };
        // Held from here to the detach, so nothing can mount the device in between.
        let exclusive = match loop_device::open_exclusive(&device.loop_device.path) {
            Ok(Some(exclusive)) => exclusive,
            Ok(None) => {
                device.note_usage(true);
                let reason = device.busy_reason();
                tracing::warn!(device = %device.loop_device.path.display(), %reason, "refused to remove a block device in use");
                return Err(in_use(reason));
            }
            Err(source) => {
                return Err(BlockDevError::Path {
                    action: "open exclusively",
                    path: device.loop_device.path.clone(),
                    source,
                });
            }
        };
        let processes = loop_device::lasting_openers(device.loop_device.rdev);
        if !processes.is_empty() {
            let reason = InUseReason::OpenBy { processes };
            tracing::warn!(device = %device.loop_device.path.display(), %reason, "refused to remove a block device in use");
            return Err(in_use(reason));
        }
        // The loop device holds one open of the file; any other is a user of the file itself.
        let others = device.file.open_counts().open_now.saturating_sub(1);
        if others > 0 {
            let reason = InUseReason::FileOpen {
                descriptors: others,
            };
            tracing::warn!(device = %device.loop_device.path.display(), %reason, "refused to remove a block device in use");
            return Err(in_use(reason));
        }
        match loop_device::detach(
            self.runner.as_ref(),
            &device.loop_device,
            exclusive,
            DETACH_TIMEOUT,
        ) {
            Ok(Ok(())) => {}
            Ok(Err(timeout)) => {
                return Err(BlockDevError::DetachTimeout {
                    device: device.loop_device.path.clone(),
                    timeout,
                });
            }
            Err(source) => {
                return Err(BlockDevError::Command {
                    action: "detach the loop device",
                    resource: resource.clone(),
                    volume_number,
                    source: Box::new(source),
                });
            }
        }
        // The kernel closes the file after the detach, a moment later; once it has, nothing
        // in the FUSE layer refers to the volume any more.
        let started = Instant::now();
        while device.file.open_counts().open_now > 0 {
            if started.elapsed() >= RELEASE_TIMEOUT {
                tracing::warn!(file = %device.file_path.display(), "the detached loop device has not closed its FUSE file yet");
                break;
            }
            std::thread::sleep(RELEASE_POLL_INTERVAL);
        }
        device.removed.store(true, Ordering::Release);
        device.note_usage(false);
        remove_symlinks([Some(&device.link), device.drbd_link.as_ref()]);
        self.fuse().remove_file(device.file.name());
        self.devices.remove(&key);
        tracing::info!(device = %device.loop_device.path.display(), "block device removed");
        Ok(())
    }

    /// Removes every device that is not in use, then unmounts the FUSE file system. Devices
    /// in use stay attached, and the file system is detached lazily so it keeps serving them
    /// while this process lives; the errors name them. Each of them is detached all the same,
    /// which the kernel defers to its last close (autoclear), and its links are removed: once
    /// its user lets go (after this process ended, its I/O fails), the loop device is free
    /// again, not left attached to a file system nobody serves.
    pub fn shutdown(mut self) -> Vec<BlockDevError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Vec<BlockDevError> {
        let mut errors = Vec::new();
        if self.fuse.is_none() {
            return errors;
        }
        let keys: Vec<_> = self.devices.keys().cloned().collect();
        for (resource, volume_number) in keys {
            if let Err(error) = self.remove(&resource, volume_number) {
                if let Some(device) = self.devices.remove(&(resource, volume_number)) {
                    self.detach_when_closed(&device);
                }
                errors.push(error);
            }
        }
        if let Some(fuse) = self.fuse.take()
            && let Err(error) = fuse.unmount()
        {
            errors.push(error);
        }
        errors
    }
}

impl<V: Volume> BlockDevices<V> {
    /// Detaches a device still in use at its last close (the kernel's autoclear) and removes
    /// its links, which would otherwise name a loop device that is given to someone else.
    fn detach_when_closed(&self, device: &BlockDevice<V>) {
        match self
            .runner
            .run(&loop_device::detach_command(&device.loop_device.path))
        {
            Ok(_) => {
                tracing::warn!(device = %device.loop_device.path.display(), "block device in use at shutdown: detached when its last user closes it");
            }
            Err(error) => {
                tracing::error!(device = %device.loop_device.path.display(), %error, "could not mark a block device in use for detaching at its last close");
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

#[cfg(test)]
mod tests {
    use super::*;

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
