//! The block-device frontend of `ferrite-mirrord`: one [`BlockDevices`] for the daemon (an nbd
//! device per volume where the kernel's nbd driver is loaded, else a FUSE file and a loop
//! device per volume, `crates/blockdev`), a device added for every volume of a
//! resource that comes up and removed when it goes down, and the poll that tells the engine
//! when a device is in use ([`DEVICE_USAGE_POLL`]) and when a poll found it unused, which
//! auto-demotion waits for ([`VolumeEngine::may_demote`]).
//!
//! Owned here: the daemon's `BlockDevices`, and the devices a forced `down` left attached
//! because they were still in use ("orphans": their I/O fails once the resource is down; each
//! is removed by the poll once nothing uses it). Not here: which volumes exist (the daemon's
//! table), nor what "in use" means to the engine ([`Volume::opened`]/[`Volume::closed`],
//! counted by [`VolumeEngine::sessions`]).
//!
//! One lock for all of it: adds, removes and the usage poll take turns. The poll opens each
//! device exclusively for a moment, and a removal opened at that moment would take the poll for
//! a user. Every call runs on a blocking thread: `losetup` and the nbd ioctls wait for the
//! kernel, and a detach flushes the device through the FUSE file (or the nbd socket) into the
//! engine, which needs the runtime's workers.
//!
//! [`Volume::opened`]: ferrite_block::Volume::opened
//! [`Volume::closed`]: ferrite_block::Volume::closed

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferrite_blockdev::{
    BlockDevError, BlockDevice, BlockDeviceConfig, BlockDevices, BlockFrontend,
};
use ferrite_storage::SystemCommands;
use ferrite_types::{ResourceName, VolumeNumber};
use tracing::{info, warn};

use crate::volume::VolumeEngine;

/// How often every device is checked for use (mounted, open exclusively), which the engine
/// hears as opened/closed (auto-demotion waits for it), and how soon an orphan that is no
/// longer used is removed. Each check holds the device exclusively for a moment: a `mount` or
/// `mkfs` starting at that very instant fails with `EBUSY`. Once a second makes that rare.
pub const DEVICE_USAGE_POLL: Duration = Duration::from_secs(1);

/// Whether the daemon gives volumes block devices (`--device-root`, `--no-block-devices`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockDeviceSetting {
    /// An nbd device, or a FUSE file and a loop device, per volume ([`BlockFrontend`]),
    /// linked as `<device_root>/<resource>/<volnr>`
    /// (and, where no DRBD module is loaded, `/dev/drbd/by-res/<resource>/<volnr>`, under the
    /// device root when it is not the default).
    Enabled {
        device_root: PathBuf,
        frontend: BlockFrontend,
    },
    /// NBD exports only.
    Disabled,
}

/// A volume's block device, or why it has none.
#[derive(Clone)]
pub enum VolumeDevice {
    Ready(Arc<BlockDevice<VolumeEngine>>),
    Unavailable(String),
}

impl VolumeDevice {
    pub fn ready(&self) -> Option<&Arc<BlockDevice<VolumeEngine>>> {
        match self {
            VolumeDevice::Ready(device) => Some(device),
            VolumeDevice::Unavailable(_) => None,
        }
    }
}

/// How a volume is used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeUsage {
    pub volume: u16,
    /// Its block device is mounted or open exclusively.
    pub device_in_use: bool,
    /// Sessions of other frontends: NBD clients.
    pub other_sessions: usize,
}

/// A device a removal refused, and why.
pub struct Refusal {
    pub message: String,
    /// The resource's devices after the refusal: the ones removed before it are added again.
    pub devices: BTreeMap<u16, VolumeDevice>,
}

type Key = (ResourceName, VolumeNumber);

struct Table {
    /// `None` once shut down.
    devices: Option<BlockDevices<VolumeEngine>>,
    /// The engine behind each device, told when a poll finds its device unused.
    engines: BTreeMap<Key, Arc<VolumeEngine>>,
    orphans: BTreeSet<Key>,
}

impl Table {
    fn added(&mut self, key: Key, engine: Arc<VolumeEngine>) {
        engine.set_polled(true);
        self.engines.insert(key, engine);
    }

    fn removed(&mut self, key: &Key) {
        if let Some(engine) = self.engines.remove(key) {
            engine.set_polled(false);
        }
        self.orphans.remove(key);
    }
}

enum State {
    Ready(Arc<Mutex<Table>>),
    /// Why no volume gets a block device on this host.
    Unavailable(String),
}

/// The daemon's block devices.
pub struct BlockDeviceFrontend {
    state: State,
}

impl BlockDeviceFrontend {
    /// Probes the host and mounts the FUSE file system at `mountpoint`. Where the host cannot
    /// give volumes block devices, or they are switched off, every volume says why instead.
    pub async fn start(setting: &BlockDeviceSetting, mountpoint: PathBuf) -> BlockDeviceFrontend {
        let unavailable = |reason: String| BlockDeviceFrontend {
            state: State::Unavailable(reason),
        };
        let (device_root, frontend) = match setting {
            BlockDeviceSetting::Disabled => {
                info!("block devices switched off: NBD exports only");
                return unavailable(
                    "block devices are switched off (ferrite-mirrord run --no-block-devices); \
                     use the NBD export"
                        .to_string(),
                );
            }
            BlockDeviceSetting::Enabled {
                device_root,
                frontend,
            } => (device_root.clone(), *frontend),
        };
        if let Err(reasons) = ferrite_blockdev::probe() {
            let reason = format!(
                "this host cannot give volumes block devices: {}; use the NBD export",
                reasons.join("; ")
            );
            warn!("{reason}");
            return unavailable(reason);
        }
        let mut config = BlockDeviceConfig::new(&mountpoint);
        config.device_root = device_root;
        config.frontend = frontend;
        let runtime = tokio::runtime::Handle::current();
        let started = tokio::task::spawn_blocking(move || {
            BlockDevices::start(config, Arc::new(SystemCommands::new()), runtime)
        })
        .await;
        match started {
            Ok(Ok(devices)) => {
                let config = devices.config();
                match config.frontend {
                    BlockFrontend::KernelNbd => info!(
                        device_root = %config.device_root.display(),
                        "block devices: an nbd device per volume, served by this daemon"
                    ),
                    _ => info!(
                        mountpoint = %config.mountpoint.display(),
                        device_root = %config.device_root.display(),
                        "block devices: a FUSE file and a loop device per volume"
                    ),
                }
                BlockDeviceFrontend {
                    state: State::Ready(Arc::new(Mutex::new(Table {
                        devices: Some(devices),
                        engines: BTreeMap::new(),
                        orphans: BTreeSet::new(),
                    }))),
                }
            }
            Ok(Err(error)) => {
                let reason = format!("{error}; use the NBD export");
                warn!("{reason}");
                unavailable(reason)
            }
            Err(error) => unavailable(format!("starting the block devices failed: {error}")),
        }
    }

    /// Why no volume gets a block device, if none does.
    pub fn unavailable(&self) -> Option<&str> {
        match &self.state {
            State::Ready(_) => None,
            State::Unavailable(reason) => Some(reason),
        }
    }

    /// Gives a volume its block device. An orphan of the same volume (left in use by a forced
    /// `down`) is removed first; while it is still used, the volume has no device and says so.
    pub async fn add(
        &self,
        resource: &str,
        volume: u16,
        engine: Arc<VolumeEngine>,
    ) -> VolumeDevice {
        let table = match &self.state {
            State::Ready(table) => table.clone(),
            State::Unavailable(reason) => return VolumeDevice::Unavailable(reason.clone()),
        };
        let name = match ResourceName::new(resource) {
            Ok(name) => name,
            Err(error) => {
                return VolumeDevice::Unavailable(format!(
                    "the block device's paths need a LINSTOR resource name: {error}; use the \
                     NBD export"
                ));
            }
        };
        let resource = resource.to_string();
        blocking(move || {
            let mut guard = lock(&table);
            let table = &mut *guard;
            let key = (name.clone(), VolumeNumber::from(volume));
            if table.devices.is_none() {
                return VolumeDevice::Unavailable("the daemon is shutting down".to_string());
            }
            if table.orphans.contains(&key) {
                let devices = table.devices.as_mut().expect("checked above");
                if let Err(error) = devices.remove(&key.0, key.1) {
                    return VolumeDevice::Unavailable(format!(
                        "the block device of the resource's previous run is still in use \
                         ({error}); `ferrite-mirrord up {resource}` again once it is free"
                    ));
                }
                table.removed(&key);
            }
            let devices = table.devices.as_mut().expect("checked above");
            match devices.add(&key.0, key.1, engine.clone()) {
                Ok(device) => {
                    table.added(key, engine);
                    VolumeDevice::Ready(device)
                }
                Err(error) => {
                    warn!(%resource, volume, %error, "no block device");
                    VolumeDevice::Unavailable(error.to_string())
                }
            }
        })
        .await
        .unwrap_or_else(VolumeDevice::Unavailable)
    }

    /// Checks whether each device is in use now (the engine hears of a change at once) and
    /// tells, per volume, whether its device is used and how many other sessions (NBD
    /// clients) its engine counts.
    pub async fn usage(
        &self,
        devices: &BTreeMap<u16, VolumeDevice>,
        engines: &BTreeMap<u16, Arc<VolumeEngine>>,
    ) -> Vec<VolumeUsage> {
        let devices = devices.clone();
        let engines = engines.clone();
        let table = match &self.state {
            State::Ready(table) => Some(table.clone()),
            State::Unavailable(_) => None,
        };
        blocking(move || {
            // Held while reading the counts: the poll cannot change them in between.
            let _table = table.as_ref().map(lock);
            engines
                .into_iter()
                .map(|(volume, engine)| {
                    let started = Instant::now();
                    let device_in_use = devices
                        .get(&volume)
                        .and_then(VolumeDevice::ready)
                        .is_some_and(|device| in_use_for(device, &engine));
                    if !device_in_use {
                        engine.checked_unused(started);
                    }
                    VolumeUsage {
                        volume,
                        device_in_use,
                        other_sessions: engine
                            .sessions()
                            .saturating_sub(usize::from(device_in_use)),
                    }
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Removes a resource's devices (before the resource goes down, so a detach's flush still
    /// reaches its peers). Without `force`, a device in use stops the removal: the devices
    /// removed before it are added again, and the refusal says which device is used and how.
    /// With `force`, a device in use stays attached as an orphan; the returned notes name it.
    pub async fn remove(
        &self,
        resource: &str,
        devices: BTreeMap<u16, VolumeDevice>,
        engines: &BTreeMap<u16, Arc<VolumeEngine>>,
        force: bool,
    ) -> Result<Vec<String>, Refusal> {
        let table = match &self.state {
            State::Ready(table) => table.clone(),
            State::Unavailable(_) => return Ok(Vec::new()),
        };
        let Ok(name) = ResourceName::new(resource) else {
            return Ok(Vec::new());
        };
        let engines = engines.clone();
        let outcome =
            blocking(move || remove_devices(&mut lock(&table), &name, &devices, &engines, force))
                .await;
        match outcome {
            Ok(outcome) => outcome,
            Err(message) => Ok(vec![message]),
        }
    }

    /// One round of the usage poll: every device checked (the engine hears each change), and
    /// every orphan no longer used removed.
    pub async fn poll(&self) {
        let State::Ready(table) = &self.state else {
            return;
        };
        let table = table.clone();
        let _ = blocking(move || {
            let mut guard = lock(&table);
            let table = &mut *guard;
            let Some(devices) = table.devices.as_mut() else {
                return;
            };
            let mut free = Vec::new();
            for device in devices.devices() {
                let key = (device.resource().clone(), device.volume_number());
                let started = Instant::now();
                let engine = table.engines.get(&key);
                if engine.map_or_else(|| device.is_in_use(), |e| in_use_for(device, e)) {
                    continue;
                }
                if let Some(engine) = engine {
                    engine.checked_unused(started);
                }
                if table.orphans.contains(&key) {
                    free.push(key);
                }
            }
            for key in free {
                let Some(devices) = table.devices.as_mut() else {
                    return;
                };
                match devices.remove(&key.0, key.1) {
                    Ok(()) | Err(BlockDevError::NotExported { .. }) => {
                        info!(resource = %key.0, volume = %key.1, "the block device left by a forced down is no longer used: removed");
                        table.removed(&key);
                    }
                    // Still open by a process (not exclusively): the next round tries again.
                    Err(error) => tracing::debug!(%error, "orphan still in use"),
                }
            }
        })
        .await;
    }

    /// Removes every device not in use and unmounts the FUSE file system (lazily, if devices
    /// in use are left: they keep working while this process lives). Returns what was left.
    pub async fn shutdown(&self) -> Vec<String> {
        let State::Ready(table) = &self.state else {
            return Vec::new();
        };
        let table = table.clone();
        blocking(move || {
            let devices = lock(&table).devices.take();
            match devices {
                Some(devices) => devices
                    .shutdown()
                    .into_iter()
                    .map(|error| error.to_string())
                    .collect(),
                None => Vec::new(),
            }
        })
        .await
        .unwrap_or_else(|message| vec![message])
    }
}

/// [`BlockDeviceFrontend::remove`], under the lock.
/// Polls whether the device is in use: held exclusively (mounted, `mkfs`), or, while its
/// volume is Primary with no other user, held open by another process without `O_EXCL` (`dd`,
/// a VM's disk). The exclusive probe cannot see the second kind; DRBD keeps such a user's node
/// Primary, and demoting under it would let another member become the writer while this
/// one's user still writes. The `/proc` scan that finds them runs only for such a volume.
fn in_use_for(device: &BlockDevice<VolumeEngine>, engine: &VolumeEngine) -> bool {
    let others = engine
        .sessions()
        .saturating_sub(usize::from(device.reported_in_use()));
    device.poll_usage(engine.view().primary && others == 0)
}

fn remove_devices(
    table: &mut Table,
    name: &ResourceName,
    devices: &BTreeMap<u16, VolumeDevice>,
    engines: &BTreeMap<u16, Arc<VolumeEngine>>,
    force: bool,
) -> Result<Vec<String>, Refusal> {
    let mut notes = Vec::new();
    let mut removed = Vec::new();
    for (volume, device) in devices {
        let Some(device) = device.ready() else {
            continue;
        };
        let key = (name.clone(), VolumeNumber::from(*volume));
        let Some(block_devices) = table.devices.as_mut() else {
            return Ok(notes);
        };
        match block_devices.remove(&key.0, key.1) {
            Ok(()) | Err(BlockDevError::NotExported { .. }) => {
                table.removed(&key);
                removed.push(*volume);
            }
            Err(error) if force => {
                warn!(resource = %name, volume, %error, "the resource goes down by force; its block device stays until it is no longer used, its I/O failing");
                let why = match &error {
                    BlockDevError::InUse { reason, .. } => reason.to_string(),
                    other => other.to_string(),
                };
                notes.push(format!(
                    "{} ({}) stays attached, its I/O failing, until nothing uses it: {why}",
                    device.path().display(),
                    device.device().display()
                ));
                table.orphans.insert(key);
            }
            Err(error) => {
                // Refused: what was removed before comes back, so the resource stays whole.
                let mut devices = devices.clone();
                for volume in removed {
                    let key = (name.clone(), VolumeNumber::from(volume));
                    let again = match (engines.get(&volume), table.devices.as_mut()) {
                        (Some(engine), Some(block_devices)) => {
                            match block_devices.add(&key.0, key.1, engine.clone()) {
                                Ok(device) => {
                                    table.added(key, engine.clone());
                                    VolumeDevice::Ready(device)
                                }
                                Err(error) => VolumeDevice::Unavailable(format!(
                                    "removed for a down that was then refused, and not added \
                                     again: {error}; `ferrite-mirrord up` the resource to retry"
                                )),
                            }
                        }
                        _ => VolumeDevice::Unavailable(
                            "removed for a down that was then refused".to_string(),
                        ),
                    };
                    devices.insert(volume, again);
                }
                return Err(Refusal {
                    message: error.to_string(),
                    devices,
                });
            }
        }
    }
    Ok(notes)
}

fn lock(table: &Arc<Mutex<Table>>) -> MutexGuard<'_, Table> {
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `work` on a blocking thread; a panic there becomes its message.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| format!("a block device operation failed: {error}"))
}
