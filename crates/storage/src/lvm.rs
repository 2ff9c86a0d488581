//! LVM and LVM_THIN: backing volumes are logical volumes `<resource>_<nnnnn>` in the volume
//! group named by the pool (LVM) or thin volumes in the thin pool `vg/thinpool` (LVM_THIN).
//!
//! During a pass a volume group's `lvs` listing is read once and answers every look-up of the
//! pass (`crate::listings`), instead of one `lvs` process per look-up; the LVM and LVM_THIN
//! providers share the listings, and any command that changes LVM drops them.
//!
//! In metadata-only mode (hosts without device-mapper) LVM volumes are created, grown and
//! removed in the volume group's metadata only (`--driverloaded n`, `-an`, `-Zn`); they have a
//! device path but no device. Thin volumes cannot be created that way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ferrite_types::{ProviderKind, SnapshotName};

use crate::listings::PassListings;
use crate::runner::{CommandError, CommandLine, HostCommands};
use crate::{
    BackingVolume, BackingVolumeName, PoolCapacity, Provider, StorageError, first_line,
    snapshot_host_name, table_rows,
};

/// Report options shared by every `lvs`/`vgs` call: no headings, KiB without unit suffix,
/// `;`-separated.
const REPORT_OPTIONS: [&str; 6] = [
    "--noheadings",
    "--nosuffix",
    "--units",
    "k",
    "--separator",
    ";",
];

/// Columns of `lvs` the providers read.
const LV_COLUMNS: &str = "lv_name,lv_size,data_percent,lv_attr,pool_lv";

/// Whether `name` is a valid volume group or logical volume name (and cannot be taken for an
/// option).
fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
}

/// Parses a size in KiB as LVM prints it with `--units k --nosuffix` (`8192.00`).
fn parse_kib(command: &CommandLine, text: &str) -> Result<u64, StorageError> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.round() as u64)
        .ok_or_else(|| StorageError::UnexpectedOutput {
            command: command.to_string(),
            reason: format!("'{text}' is not a size"),
        })
}

/// Parses a percentage column; empty (thick volumes) is `None`.
fn parse_percent(command: &CommandLine, text: &str) -> Result<Option<f64>, StorageError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<f64>()
        .map(Some)
        .map_err(|_| StorageError::UnexpectedOutput {
            command: command.to_string(),
            reason: format!("'{text}' is not a percentage"),
        })
}

/// One row of `lvs -o lv_name,lv_size,data_percent,lv_attr,pool_lv`.
struct LogicalVolume {
    name: String,
    size_kib: u64,
    data_percent: Option<f64>,
    attributes: String,
    /// The thin pool of a thin volume, else empty.
    thin_pool: String,
}

/// The commands both LVM providers share.
struct Lvm {
    runner: Arc<dyn HostCommands>,
    kind: ProviderKind,
    metadata_only: bool,
    listings: Arc<PassListings<LogicalVolume>>,
}

impl Lvm {
    /// Runs `command`; one that may change LVM drops the listings read so far, whether it
    /// succeeded or not.
    fn run(&self, command: &CommandLine) -> Result<crate::runner::CommandOutput, CommandError> {
        self.listings.run(self.runner.as_ref(), command)
    }

    fn unusable(&self, pool: &str, reason: impl Into<String>) -> StorageError {
        StorageError::PoolUnusable {
            provider: self.kind,
            pool: pool.to_string(),
            reason: reason.into(),
        }
    }

    /// Turns "Volume group "x" not found" into a pool error, anything else stays a command
    /// error.
    fn pool_error(&self, pool: &str, error: CommandError) -> StorageError {
        let stderr = error.stderr();
        if stderr.contains("not found") || stderr.contains("Failed to find") {
            self.unusable(pool, first_line(stderr))
        } else {
            error.into()
        }
    }

    /// A failed `lvcreate` of `name`: a volume of that name that exists already (made
    /// since it was looked up) is [`StorageError::VolumeExists`], so that the caller does not
    /// take it for a partial volume of its own and remove it.
    fn create_error(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        error: CommandError,
    ) -> StorageError {
        if error.stderr().contains("already exists") {
            StorageError::VolumeExists {
                provider: self.kind,
                pool: pool.to_string(),
                volume: name.clone(),
            }
        } else {
            self.pool_error(pool, error)
        }
    }

    /// Options that keep LVM away from device-mapper in metadata-only mode.
    fn driver_options(&self) -> &'static [&'static str] {
        if self.metadata_only {
            &["--driverloaded", "n"]
        } else {
            &[]
        }
    }

    /// `lvs` of a volume group, or of one LV (`vg/lv`). A volume group's listing is read once
    /// per pass (`crate::listings`).
    fn logical_volumes(
        &self,
        pool: &str,
        target: &str,
    ) -> Result<Arc<[LogicalVolume]>, StorageError> {
        let whole_group = !target.contains('/');
        if whole_group && let Some(volumes) = self.listings.get(target) {
            return Ok(volumes);
        }
        let read = Instant::now();
        let command = CommandLine::query("lvs")
            .args(REPORT_OPTIONS)
            .args(["--options", LV_COLUMNS])
            .arg(target);
        let output = self.run(&command).map_err(|e| self.pool_error(pool, e))?;
        let mut volumes = Vec::new();
        for row in table_rows(&output.stdout, ';') {
            let [name, size, percent, attributes, thin_pool] = row[..] else {
                return Err(StorageError::UnexpectedOutput {
                    command: command.to_string(),
                    reason: format!("expected 5 columns, got {row:?}"),
                });
            };
            volumes.push(LogicalVolume {
                name: name.to_string(),
                size_kib: parse_kib(&command, size)?,
                data_percent: parse_percent(&command, percent)?,
                attributes: attributes.to_string(),
                thin_pool: thin_pool.to_string(),
            });
        }
        let volumes: Arc<[LogicalVolume]> = volumes.into();
        if whole_group {
            self.listings.keep(target, read, volumes.clone());
        }
        Ok(volumes)
    }

    /// Renames a logical volume; refuses if the new name is taken.
    fn rename(
        &self,
        pool: &str,
        volume_group: &str,
        from: &BackingVolumeName,
        to: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        if self.find(pool, volume_group, to)?.is_some() {
            return Err(StorageError::RenameTargetExists {
                provider: self.kind,
                pool: pool.to_string(),
                from: from.clone(),
                to: to.clone(),
            });
        }
        let command = CommandLine::new("lvrename")
            .args(self.driver_options().iter().copied())
            .arg(volume_group)
            .arg(from.as_str())
            .arg(to.as_str());
        self.run(&command).map_err(|e| self.pool_error(pool, e))?;
        Ok(())
    }

    /// One UUID column (`vg_uuid`, `lv_uuid`) of a volume group or logical volume.
    fn uuid(
        &self,
        pool: &str,
        program: &str,
        column: &str,
        target: &str,
    ) -> Result<String, StorageError> {
        let command = CommandLine::query(program)
            .args(["--noheadings", "--options", column])
            .arg(target);
        let output = self.run(&command).map_err(|e| self.pool_error(pool, e))?;
        let uuid = output.stdout.trim();
        if uuid.is_empty() || uuid.contains(char::is_whitespace) {
            return Err(StorageError::UnexpectedOutput {
                command: command.to_string(),
                reason: format!("expected one UUID, got {uuid:?}"),
            });
        }
        Ok(uuid.to_string())
    }

    fn describe(&self, volume_group: &str, volume: &LogicalVolume) -> Option<BackingVolume> {
        let (resource, number) = BackingVolumeName::parse(&volume.name)?;
        let allocated_kib = match volume.data_percent {
            Some(percent) => (volume.size_kib as f64 * percent / 100.0).round() as u64,
            None => volume.size_kib,
        };
        Some(BackingVolume {
            name: BackingVolumeName::new(&resource, number),
            device_path: Some(PathBuf::from(format!(
                "/dev/{volume_group}/{}",
                volume.name
            ))),
            allocated_kib,
            usable_kib: volume.size_kib,
        })
    }

    /// Looks a volume up among the volume group's LVs (listing the group, so that a missing
    /// volume group is an error and a missing volume is `None`).
    fn find(
        &self,
        pool: &str,
        volume_group: &str,
        name: &BackingVolumeName,
    ) -> Result<Option<BackingVolume>, StorageError> {
        Ok(self
            .logical_volumes(pool, volume_group)?
            .iter()
            .find(|lv| lv.name == name.as_str())
            .and_then(|lv| self.describe(volume_group, lv)))
    }

    /// The volumes in `thin_pool` (thin volumes) or outside any thin pool (`""`, thick volumes).
    fn list(
        &self,
        pool: &str,
        volume_group: &str,
        thin_pool: &str,
    ) -> Result<Vec<BackingVolume>, StorageError> {
        let mut volumes: Vec<_> = self
            .logical_volumes(pool, volume_group)?
            .iter()
            .filter(|lv| lv.thin_pool == thin_pool)
            .filter_map(|lv| self.describe(volume_group, lv))
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    fn grow(
        &self,
        pool: &str,
        volume_group: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError> {
        let Some(current) = self.find(pool, volume_group, name)? else {
            return Err(StorageError::VolumeMissing {
                provider: self.kind,
                pool: pool.to_string(),
                volume: name.clone(),
            });
        };
        if current.usable_kib >= size_kib {
            return Ok(());
        }
        self.run(
            &CommandLine::new("lvextend")
                .args(self.driver_options().iter().copied())
                .args(["-L", &format!("{size_kib}k")])
                .arg(format!("{volume_group}/{name}")),
        )?;
        Ok(())
    }

    fn activate(
        &self,
        pool: &str,
        volume_group: &str,
        name: &BackingVolumeName,
    ) -> Result<BackingVolume, StorageError> {
        // LVs are activated on creation (or, in metadata-only mode, never).
        self.find(pool, volume_group, name)?
            .ok_or_else(|| StorageError::VolumeMissing {
                provider: self.kind,
                pool: pool.to_string(),
                volume: name.clone(),
            })
    }

    fn delete(
        &self,
        pool: &str,
        volume_group: &str,
        name: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        if self.find(pool, volume_group, name)?.is_none() {
            return Ok(());
        }
        self.run(
            &CommandLine::new("lvremove")
                .args(self.driver_options().iter().copied())
                .arg("-f")
                .arg(format!("{volume_group}/{name}")),
        )?;
        Ok(())
    }
}

/// Thick logical volumes in a volume group.
pub struct LvmProvider {
    lvm: Lvm,
}

impl LvmProvider {
    pub fn new(runner: Arc<dyn HostCommands>, metadata_only: bool) -> Self {
        LvmProvider {
            lvm: Lvm {
                runner,
                kind: ProviderKind::Lvm,
                metadata_only,
                listings: Arc::default(),
            },
        }
    }

    fn volume_group<'a>(&self, pool: &'a str) -> Result<&'a str, StorageError> {
        if valid_lvm_name(pool) {
            Ok(pool)
        } else {
            Err(self.lvm.unusable(
                pool,
                "not a volume group name (letters, digits, '+', '_', '.', '-'; not starting with '-')",
            ))
        }
    }
}

impl Provider for LvmProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Lvm
    }

    fn begin_pass(&self) {
        self.lvm.listings.begin();
    }

    fn end_pass(&self) {
        self.lvm.listings.end();
    }

    fn check_pool(&self, pool: &str) -> Result<Option<PoolCapacity>, StorageError> {
        let volume_group = self.volume_group(pool)?;
        let command = CommandLine::query("vgs")
            .args(REPORT_OPTIONS)
            .args(["--options", "vg_name,vg_size,vg_free"])
            .arg(volume_group);
        let output = self
            .lvm
            .run(&command)
            .map_err(|e| self.lvm.pool_error(pool, e))?;
        let rows = table_rows(&output.stdout, ';');
        let Some([_, size, free]) = rows.first().map(|row| &row[..]) else {
            return Err(StorageError::UnexpectedOutput {
                command: command.to_string(),
                reason: format!("expected one row of 3 columns, got {rows:?}"),
            });
        };
        Ok(Some(PoolCapacity {
            total_kib: parse_kib(&command, size)?,
            free_kib: parse_kib(&command, free)?,
        }))
    }

    fn list_volumes(&self, pool: &str) -> Result<Vec<BackingVolume>, StorageError> {
        let volume_group = self.volume_group(pool)?;
        self.lvm.list(pool, volume_group, "")
    }

    fn volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<Option<BackingVolume>, StorageError> {
        let volume_group = self.volume_group(pool)?;
        self.lvm.find(pool, volume_group, name)
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError> {
        let volume_group = self.volume_group(pool)?;
        let mut command = CommandLine::new("lvcreate");
        if self.lvm.metadata_only {
            command = command.args(["--driverloaded", "n", "-an", "-Zn"]);
        }
        command = command
            .args(["-L", &format!("{size_kib}k"), "-n", name.as_str(), "-y"])
            .arg(volume_group);
        self.lvm
            .run(&command)
            .map_err(|e| self.lvm.create_error(pool, name, e))?;
        Ok(())
    }

    fn grow_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError> {
        let volume_group = self.volume_group(pool)?;
        self.lvm.grow(pool, volume_group, name, size_kib)
    }

    fn activate_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<BackingVolume, StorageError> {
        let volume_group = self.volume_group(pool)?;
        self.lvm.activate(pool, volume_group, name)
    }

    fn delete_volume(&self, pool: &str, name: &BackingVolumeName) -> Result<(), StorageError> {
        let volume_group = self.volume_group(pool)?;
        self.lvm.delete(pool, volume_group, name)
    }

    fn rename_volume(
        &self,
        pool: &str,
        from: &BackingVolumeName,
        to: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        let volume_group = self.volume_group(pool)?;
        self.lvm.rename(pool, volume_group, from, to)
    }

    fn pool_identity(&self, pool: &str) -> Result<Option<String>, StorageError> {
        let volume_group = self.volume_group(pool)?;
        let uuid = self.lvm.uuid(pool, "vgs", "vg_uuid", volume_group)?;
        Ok(Some(format!("vg_uuid={uuid}")))
    }
}

/// The thin LV of a snapshot: `<volume>.<snapshot>`, a name no volume has (resource names hold
/// no '.').
fn thin_snapshot_name(volume: &BackingVolumeName, snapshot: &SnapshotName) -> String {
    format!("{volume}.{}", snapshot_host_name(snapshot))
}

/// Thin volumes in a thin pool `vg/thinpool`.
pub struct LvmThinProvider {
    lvm: Lvm,
}

impl LvmThinProvider {
    pub fn new(runner: Arc<dyn HostCommands>) -> Self {
        LvmThinProvider {
            lvm: Lvm {
                runner,
                kind: ProviderKind::LvmThin,
                metadata_only: false,
                listings: Arc::default(),
            },
        }
    }

    /// This provider, reading and dropping the volume groups' listings with `thick` (both
    /// list the same groups, and a change by one must not leave the other's listing stale).
    pub fn sharing_listings_with(mut self, thick: &LvmProvider) -> Self {
        self.lvm.listings = thick.lvm.listings.clone();
        self
    }

    /// Splits `vg/thinpool`.
    fn split<'a>(&self, pool: &'a str) -> Result<(&'a str, &'a str), StorageError> {
        match pool.split_once('/') {
            Some((volume_group, thin_pool))
                if valid_lvm_name(volume_group) && valid_lvm_name(thin_pool) =>
            {
                Ok((volume_group, thin_pool))
            }
            _ => Err(self.lvm.unusable(
                pool,
                "an LVM_THIN pool is named <volume group>/<thin pool>, e.g. vg_ssd/thinpool",
            )),
        }
    }
}

impl Provider for LvmThinProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::LvmThin
    }

    fn begin_pass(&self) {
        self.lvm.listings.begin();
    }

    fn end_pass(&self) {
        self.lvm.listings.end();
    }

    fn check_pool(&self, pool: &str) -> Result<Option<PoolCapacity>, StorageError> {
        let (volume_group, thin_pool) = self.split(pool)?;
        let rows = self.lvm.logical_volumes(pool, pool)?;
        let Some(thin) = rows.iter().find(|lv| lv.name == thin_pool) else {
            return Err(self.lvm.unusable(
                pool,
                format!("thin pool '{thin_pool}' not found in volume group '{volume_group}'"),
            ));
        };
        if !thin.attributes.starts_with('t') {
            return Err(self.lvm.unusable(
                pool,
                format!(
                    "'{pool}' is a logical volume but not a thin pool (attributes {})",
                    thin.attributes
                ),
            ));
        }
        let used = thin.data_percent.unwrap_or(0.0).clamp(0.0, 100.0);
        let used_kib = (thin.size_kib as f64 * used / 100.0).round() as u64;
        Ok(Some(PoolCapacity {
            total_kib: thin.size_kib,
            free_kib: thin.size_kib.saturating_sub(used_kib),
        }))
    }

    fn list_volumes(&self, pool: &str) -> Result<Vec<BackingVolume>, StorageError> {
        let (volume_group, thin_pool) = self.split(pool)?;
        self.lvm.list(pool, volume_group, thin_pool)
    }

    fn volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<Option<BackingVolume>, StorageError> {
        let (volume_group, _) = self.split(pool)?;
        self.lvm.find(pool, volume_group, name)
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError> {
        self.split(pool)?;
        let command = CommandLine::new("lvcreate")
            .args(["-V", &format!("{size_kib}k"), "-T", pool])
            .args(["-n", name.as_str(), "-y"]);
        self.lvm
            .run(&command)
            .map_err(|e| self.lvm.create_error(pool, name, e))?;
        Ok(())
    }

    fn grow_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError> {
        let (volume_group, _) = self.split(pool)?;
        self.lvm.grow(pool, volume_group, name, size_kib)
    }

    fn activate_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<BackingVolume, StorageError> {
        let (volume_group, _) = self.split(pool)?;
        self.lvm.activate(pool, volume_group, name)
    }

    fn delete_volume(&self, pool: &str, name: &BackingVolumeName) -> Result<(), StorageError> {
        let (volume_group, _) = self.split(pool)?;
        self.lvm.delete(pool, volume_group, name)
    }

    fn rename_volume(
        &self,
        pool: &str,
        from: &BackingVolumeName,
        to: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        let (volume_group, _) = self.split(pool)?;
        self.lvm.rename(pool, volume_group, from, to)
    }

    fn supports_snapshots(&self) -> bool {
        true
    }

    fn snapshot_exists(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<bool, StorageError> {
        let (volume_group, _) = self.split(pool)?;
        let name = thin_snapshot_name(volume, snapshot);
        Ok(self
            .lvm
            .logical_volumes(pool, volume_group)?
            .iter()
            .any(|lv| lv.name == name))
    }

    fn create_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<String, StorageError> {
        let (volume_group, _) = self.split(pool)?;
        // A thin snapshot needs no size; it is skipped at activation until asked for.
        let command = CommandLine::new("lvcreate")
            .args(["--snapshot", "--setactivationskip", "y", "--name"])
            .arg(thin_snapshot_name(volume, snapshot))
            .arg(format!("{volume_group}/{volume}"))
            .arg("-y");
        self.lvm
            .run(&command)
            .map_err(|e| self.lvm.pool_error(pool, e))?;
        Ok("thin snapshot".to_string())
    }

    fn delete_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<(), StorageError> {
        if !self.snapshot_exists(pool, volume, snapshot)? {
            return Ok(());
        }
        let (volume_group, _) = self.split(pool)?;
        self.lvm
            .run(&CommandLine::new("lvremove").arg("-f").arg(format!(
                "{volume_group}/{}",
                thin_snapshot_name(volume, snapshot)
            )))?;
        Ok(())
    }

    fn restore_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
        target: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        let (volume_group, _) = self.split(pool)?;
        if !self.snapshot_exists(pool, volume, snapshot)? {
            return Err(StorageError::SnapshotMissing {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: volume.clone(),
                snapshot: snapshot.to_string(),
            });
        }
        // A thin snapshot of the snapshot, activated like any volume.
        let command = CommandLine::new("lvcreate")
            .args(["--snapshot", "--setactivationskip", "n", "--name"])
            .arg(target.as_str())
            .arg(format!(
                "{volume_group}/{}",
                thin_snapshot_name(volume, snapshot)
            ))
            .arg("-y");
        self.lvm
            .run(&command)
            .map_err(|e| self.lvm.pool_error(pool, e))?;
        Ok(())
    }

    fn rollback_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<(), StorageError> {
        let (volume_group, _) = self.split(pool)?;
        if !self.snapshot_exists(pool, volume, snapshot)? {
            return Err(StorageError::SnapshotMissing {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: volume.clone(),
                snapshot: snapshot.to_string(),
            });
        }
        // A new thin volume from the snapshot takes the volume's place; the snapshot stays.
        let replacement = format!("{volume}+rollback");
        self.lvm.run(
            &CommandLine::new("lvcreate")
                .args(["--snapshot", "--setactivationskip", "n", "--name"])
                .arg(&replacement)
                .arg(format!(
                    "{volume_group}/{}",
                    thin_snapshot_name(volume, snapshot)
                ))
                .arg("-y"),
        )?;
        self.lvm.run(
            &CommandLine::new("lvremove")
                .arg("-f")
                .arg(format!("{volume_group}/{volume}")),
        )?;
        self.lvm.run(
            &CommandLine::new("lvrename")
                .arg(volume_group)
                .arg(&replacement)
                .arg(volume.as_str()),
        )?;
        Ok(())
    }

    fn pool_identity(&self, pool: &str) -> Result<Option<String>, StorageError> {
        let (volume_group, _) = self.split(pool)?;
        let vg_uuid = self.lvm.uuid(pool, "vgs", "vg_uuid", volume_group)?;
        let lv_uuid = self.lvm.uuid(pool, "lvs", "lv_uuid", pool)?;
        Ok(Some(format!("vg_uuid={vg_uuid} lv_uuid={lv_uuid}")))
    }
}
