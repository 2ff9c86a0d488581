//! Local storage of a satellite: the backing volumes under a resource's STORAGE layer.
//!
//! A storage pool is a provider kind (`LVM`, `LVM_THIN`, `ZFS`, `ZFS_THIN`, `FILE`, `FILE_THIN`,
//! `DISKLESS`) and the place it allocates from (a volume group, `vg/thinpool`, a zpool or a
//! directory). Each kind is a [`Provider`]: it checks a pool, reads its capacity and its
//! identity (so a pool replaced by other storage is recognised), and looks up, creates, grows,
//! activates, renames and deletes backing volumes named as LINSTOR names them,
//! `<resource>_<volume number:05>`, with the resource name case-folded (resource names compare
//! case-insensitively, so `Web` and `web` are one name and must be one backing volume).
//!
//! Providers change the host only through [`HostCommands`], so every command line is logged and
//! golden-tested. This crate does not decide *which* volumes should exist or which of them the
//! satellite owns; that is the satellite's reconciler. [`detect_providers`] says which kinds this
//! host can run, and why not.
//!
//! Snapshots of a backing volume (FILE, FILE_THIN, LVM_THIN, ZFS, ZFS_THIN) are named after the
//! volume and the snapshot, case-folded, in a form no volume name has: a file
//! `<volume>@<snapshot>.snap` (a reflink copy where the file system has it, btrfs and xfs,
//! else a sparse copy), a thin LV `<volume>.<snapshot>`, a ZFS snapshot `<volume>@<snapshot>`.
//! They are taken, restored into a new volume, rolled back to and deleted; a provider without
//! snapshots says so.

mod capabilities;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod file;
#[cfg(test)]
mod golden_tests;
mod listings;
mod lvm;
pub mod physical;
pub mod runner;
mod zfs;

use std::path::PathBuf;
use std::sync::Arc;

use ferrite_types::{ProviderKind, ResourceName, SnapshotName, VolumeNumber};

pub use capabilities::{HostPaths, ProviderSupport, detect_providers};
pub use file::{FileProvider, MARKER_FILE, REFLINK_COPY, SPARSE_COPY};
pub use lvm::{LvmProvider, LvmThinProvider};
pub use runner::{CommandError, CommandLine, CommandOutput, HostCommands, SystemCommands};
pub use zfs::{ZVOL_SIZE_GRANULE_KIB, ZfsProvider};

/// The name of a backing volume: LINSTOR's `<resource>_<volume number:05>` with the resource
/// name in lower case, e.g. `web_00000` for `Web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackingVolumeName(String);

impl BackingVolumeName {
    pub fn new(resource: &ResourceName, volume: VolumeNumber) -> Self {
        BackingVolumeName(format!(
            "{}_{:05}",
            resource.as_str().to_ascii_lowercase(),
            volume.get()
        ))
    }

    /// The name with the resource name as spelled: what versions before case folding created,
    /// looked for when such volumes are renamed.
    pub fn as_spelled(resource: &ResourceName, volume: VolumeNumber) -> Self {
        BackingVolumeName(format!("{}_{:05}", resource.as_str(), volume.get()))
    }

    /// A name as recorded (e.g. in the satellite's ledger), if it has the shape of one.
    pub fn from_recorded(name: &str) -> Option<Self> {
        Self::parse(name).map(|_| BackingVolumeName(name.to_string()))
    }

    /// Splits a name such as `web_00000` into resource and volume number, if it has that shape.
    pub fn parse(name: &str) -> Option<(ResourceName, VolumeNumber)> {
        let (resource, number) = name.rsplit_once('_')?;
        if number.len() != 5 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number: u16 = number.parse().ok()?;
        Some((
            ResourceName::new(resource).ok()?,
            VolumeNumber::from(number),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BackingVolumeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A backing volume as it is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingVolume {
    pub name: BackingVolumeName,
    /// The block device, once the volume is active (a loop device for FILE, `/dev/vg/lv`, ...).
    pub device_path: Option<PathBuf>,
    /// Space the volume takes from its pool, in KiB (less than usable for thin volumes).
    pub allocated_kib: u64,
    /// Size of the block device, in KiB.
    pub usable_kib: u64,
}

/// A pool's capacity in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCapacity {
    pub total_kib: u64,
    pub free_kib: u64,
}

/// Why a storage operation failed. Each variant names the provider, pool or path involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{provider} pool '{pool}' is not usable: {reason}")]
    PoolUnusable {
        provider: ProviderKind,
        pool: String,
        reason: String,
    },
    #[error("could not {action} '{}': {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected output of `{command}`: {reason}")]
    UnexpectedOutput { command: String, reason: String },
    #[error("{provider} volume '{volume}' in pool '{pool}' does not exist")]
    VolumeMissing {
        provider: ProviderKind,
        pool: String,
        volume: BackingVolumeName,
    },
    #[error("DISKLESS pools hold no backing volumes")]
    Diskless,
    #[error("{provider} pools cannot take snapshots")]
    SnapshotsUnsupported { provider: ProviderKind },
    #[error(
        "snapshot '{snapshot}' of {provider} volume '{volume}' in pool '{pool}' does not exist"
    )]
    SnapshotMissing {
        provider: ProviderKind,
        pool: String,
        volume: BackingVolumeName,
        snapshot: String,
    },
    #[error("cannot create {provider} volume '{volume}' in pool '{pool}': it exists")]
    VolumeExists {
        provider: ProviderKind,
        pool: String,
        volume: BackingVolumeName,
    },
    #[error("cannot rename {provider} volume '{from}' to '{to}' in pool '{pool}': '{to}' exists")]
    RenameTargetExists {
        provider: ProviderKind,
        pool: String,
        from: BackingVolumeName,
        to: BackingVolumeName,
    },
}

/// One kind of storage provider. `pool` is the pool's backing location
/// (`StorDriver/StorPoolName`): a volume group, `vg/thinpool`, a zpool or a directory.
///
/// Every operation is idempotent where it can be: deleting a missing volume succeeds, activating
/// an active one changes nothing.
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Checks that the pool exists and is usable, and reads its capacity (`None` for DISKLESS).
    fn check_pool(&self, pool: &str) -> Result<Option<PoolCapacity>, StorageError>;

    /// Every volume in the pool whose name has the shape `<resource>_<nnnnn>`. This lists what
    /// exists; it does not say whom it belongs to.
    fn list_volumes(&self, pool: &str) -> Result<Vec<BackingVolume>, StorageError>;

    /// The volume, if it exists. Looks only; changes nothing.
    fn volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<Option<BackingVolume>, StorageError>;

    /// Creates a volume of at least `size_kib`. It is not activated yet.
    fn create_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError>;

    /// Grows a volume to at least `size_kib` (never shrinks), and its device with it.
    fn grow_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError>;

    /// Makes the volume's block device available (attaches a loop device for FILE) and returns
    /// the volume with its device path.
    fn activate_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<BackingVolume, StorageError>;

    /// Takes the volume's block device away and keeps the volume (a deactivated resource):
    /// FILE detaches its loop devices; LVM and ZFS volumes keep their device, which nothing
    /// above uses while the resource is inactive. A volume that does not exist is left alone.
    fn deactivate_volume(
        &self,
        _pool: &str,
        _name: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        Ok(())
    }

    /// Deactivates and deletes a volume. A volume that does not exist is already deleted.
    fn delete_volume(&self, pool: &str, name: &BackingVolumeName) -> Result<(), StorageError>;

    /// Renames a volume, active or not; fails without changing anything if `to` exists.
    fn rename_volume(
        &self,
        pool: &str,
        from: &BackingVolumeName,
        to: &BackingVolumeName,
    ) -> Result<(), StorageError>;

    /// What identifies the storage behind the pool: a FILE directory's marker, a volume group's
    /// UUID (and a thin pool's), a dataset's GUID. `None` when the pool carries no mark (a
    /// FILE directory without marker file) or has no storage (DISKLESS).
    fn pool_identity(&self, pool: &str) -> Result<Option<String>, StorageError>;

    /// Marks an unmarked pool with `mark` where the provider keeps marks (a FILE directory's
    /// marker file), and returns the pool's identity from now on. Providers whose storage has
    /// an identity of its own return that.
    fn mark_pool(&self, pool: &str, mark: &str) -> Result<Option<String>, StorageError> {
        let _ = mark;
        self.pool_identity(pool)
    }

    /// Devices that still hold a volume that is gone from its pool (a FILE volume's loop device
    /// keeps the deleted file's data until it is detached), so a report can say where the data
    /// still is. Empty for providers where nothing outlives the volume.
    fn lingering_devices(&self, pool: &str, name: &BackingVolumeName) -> Vec<PathBuf> {
        let _ = (pool, name);
        Vec::new()
    }

    /// Starts a reconcile pass: the provider may read host-wide tables once (e.g. every loop
    /// device) instead of once per volume, and trust them, with its own changes applied, until
    /// [`Provider::end_pass`]. Nothing outside the pass may rely on what it read.
    fn begin_pass(&self) {}

    /// Starts a reconcile pass over a few named volumes (a delta's): the provider reads no
    /// host-wide table whose cost grows with the number of volumes, and answers for each
    /// volume from what it asks about that volume, or from what it learned before and can
    /// confirm cheaply. Providers without such tables do what they do for a full pass.
    fn begin_scoped_pass(&self) {
        self.begin_pass()
    }

    /// Ends a reconcile pass; what was read for it is forgotten.
    fn end_pass(&self) {}

    /// Whether the provider takes snapshots.
    fn supports_snapshots(&self) -> bool {
        false
    }

    /// Whether the snapshot of `volume` exists.
    fn snapshot_exists(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<bool, StorageError> {
        let _ = (pool, volume, snapshot);
        Err(StorageError::SnapshotsUnsupported {
            provider: self.kind(),
        })
    }

    /// Takes a snapshot of `volume`; returns how (e.g. "reflink copy", "thin snapshot").
    fn create_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<String, StorageError> {
        let _ = (pool, volume, snapshot);
        Err(StorageError::SnapshotsUnsupported {
            provider: self.kind(),
        })
    }

    /// Deletes a snapshot; one that does not exist is already deleted.
    fn delete_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<(), StorageError> {
        let _ = (pool, volume, snapshot);
        Err(StorageError::SnapshotsUnsupported {
            provider: self.kind(),
        })
    }

    /// Creates the volume `target` (which must not exist) with the data of a snapshot of
    /// `volume`. It is not activated yet.
    fn restore_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
        target: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        let _ = (pool, volume, snapshot, target);
        Err(StorageError::SnapshotsUnsupported {
            provider: self.kind(),
        })
    }

    /// Gives `volume` the data of its snapshot again; what was written since is lost. The
    /// volume must not be in use.
    fn rollback_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<(), StorageError> {
        let _ = (pool, volume, snapshot);
        Err(StorageError::SnapshotsUnsupported {
            provider: self.kind(),
        })
    }
}

/// A snapshot's name on the host: case-folded, as volume names are.
pub fn snapshot_host_name(snapshot: &SnapshotName) -> String {
    snapshot.as_str().to_ascii_lowercase()
}

/// The DISKLESS provider: a pool with no volumes, for resources that reach their data over the
/// network.
#[derive(Debug, Default)]
pub struct DisklessProvider;

impl Provider for DisklessProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Diskless
    }
    fn check_pool(&self, _pool: &str) -> Result<Option<PoolCapacity>, StorageError> {
        Ok(None)
    }
    fn list_volumes(&self, _pool: &str) -> Result<Vec<BackingVolume>, StorageError> {
        Ok(Vec::new())
    }
    fn volume(
        &self,
        _pool: &str,
        _name: &BackingVolumeName,
    ) -> Result<Option<BackingVolume>, StorageError> {
        Ok(None)
    }
    fn create_volume(
        &self,
        _pool: &str,
        _name: &BackingVolumeName,
        _size_kib: u64,
    ) -> Result<(), StorageError> {
        Err(StorageError::Diskless)
    }
    fn grow_volume(
        &self,
        _pool: &str,
        _name: &BackingVolumeName,
        _size_kib: u64,
    ) -> Result<(), StorageError> {
        Err(StorageError::Diskless)
    }
    fn activate_volume(
        &self,
        _pool: &str,
        _name: &BackingVolumeName,
    ) -> Result<BackingVolume, StorageError> {
        Err(StorageError::Diskless)
    }
    fn delete_volume(&self, _pool: &str, _name: &BackingVolumeName) -> Result<(), StorageError> {
        Ok(())
    }
    fn rename_volume(
        &self,
        _pool: &str,
        _from: &BackingVolumeName,
        _to: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        Err(StorageError::Diskless)
    }
    fn pool_identity(&self, _pool: &str) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
}

/// How the providers run on this host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderOptions {
    /// Run LVM without device-mapper: volumes are created in the metadata only
    /// (`lvcreate --driverloaded n -an -Zn`), never activated.
    pub lvm_metadata_only: bool,
}

/// One provider of every kind, sharing a runner.
pub struct Providers {
    runner: Arc<dyn HostCommands>,
    options: ProviderOptions,
    diskless: DisklessProvider,
    file: FileProvider,
    file_thin: FileProvider,
    lvm: LvmProvider,
    lvm_thin: LvmThinProvider,
    zfs: ZfsProvider,
    zfs_thin: ZfsProvider,
}

impl Providers {
    pub fn new(runner: Arc<dyn HostCommands>, options: ProviderOptions) -> Self {
        let lvm = LvmProvider::new(runner.clone(), options.lvm_metadata_only);
        let zfs = ZfsProvider::new(runner.clone(), false);
        Providers {
            runner: runner.clone(),
            options,
            diskless: DisklessProvider,
            file: FileProvider::new(runner.clone(), false),
            file_thin: FileProvider::new(runner.clone(), true),
            lvm_thin: LvmThinProvider::new(runner.clone()).sharing_listings_with(&lvm),
            lvm,
            zfs_thin: ZfsProvider::new(runner, true).sharing_listings_with(&zfs),
            zfs,
        }
    }

    /// The runner every provider runs its commands through.
    pub fn runner(&self) -> &dyn HostCommands {
        self.runner.as_ref()
    }

    pub fn options(&self) -> ProviderOptions {
        self.options
    }

    /// Every provider, for calls that go to all of them.
    fn all(&self) -> [&dyn Provider; 7] {
        [
            &self.diskless,
            &self.file,
            &self.file_thin,
            &self.lvm,
            &self.lvm_thin,
            &self.zfs,
            &self.zfs_thin,
        ]
    }

    /// [`Provider::begin_pass`] on every provider.
    pub fn begin_pass(&self) {
        self.all().iter().for_each(|p| p.begin_pass());
    }

    /// [`Provider::begin_scoped_pass`] on every provider.
    pub fn begin_scoped_pass(&self) {
        self.all().iter().for_each(|p| p.begin_scoped_pass());
    }

    /// [`Provider::end_pass`] on every provider.
    pub fn end_pass(&self) {
        self.all().iter().for_each(|p| p.end_pass());
    }

    pub fn get(&self, kind: ProviderKind) -> &dyn Provider {
        match kind {
            ProviderKind::Diskless => &self.diskless,
            ProviderKind::File => &self.file,
            ProviderKind::FileThin => &self.file_thin,
            ProviderKind::Lvm => &self.lvm,
            ProviderKind::LvmThin => &self.lvm_thin,
            ProviderKind::Zfs => &self.zfs,
            ProviderKind::ZfsThin => &self.zfs_thin,
        }
    }
}

/// Reads a `;`-separated table as LVM and ZFS print it with headings off, trimming each cell.
pub(crate) fn table_rows(stdout: &str, separator: char) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| line.split(separator).map(str::trim).collect())
        .collect()
}

/// The first non-empty line of a tool's error output, for short error reasons.
pub(crate) fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("(no error message)")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_volume_names_follow_linstor_case_folded() {
        let name = BackingVolumeName::new(&ResourceName::new("web").unwrap(), 3.into());
        assert_eq!(name.as_str(), "web_00003");
        let mixed = ResourceName::new("Web").unwrap();
        assert_eq!(BackingVolumeName::new(&mixed, 3.into()), name);
        assert_eq!(
            BackingVolumeName::as_spelled(&mixed, 3.into()).as_str(),
            "Web_00003"
        );
        assert!(BackingVolumeName::from_recorded("Web_00003").is_some());
        assert!(BackingVolumeName::from_recorded("../x_00001").is_none());
        let (resource, volume) = BackingVolumeName::parse("pvc-1_a_00012").unwrap();
        assert_eq!(resource.as_str(), "pvc-1_a");
        assert_eq!(volume.get(), 12);
        assert!(BackingVolumeName::parse("web_0001").is_none());
        assert!(BackingVolumeName::parse("web_0000x").is_none());
        assert!(BackingVolumeName::parse("lv_root").is_none());
        assert!(BackingVolumeName::parse("_00001").is_none());
    }

    #[test]
    fn tables_are_split_and_trimmed() {
        let rows = table_rows("  a;1.00;x\n\n  b;2;\n", ';');
        assert_eq!(rows, vec![vec!["a", "1.00", "x"], vec!["b", "2", ""]]);
    }
}
