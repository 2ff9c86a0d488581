//! ZFS and ZFS_THIN: backing volumes are zvols `<pool>/<resource>_<nnnnn>`, thick (with a
//! reservation) or sparse (`zfs create -s`). Their devices are `/dev/zvol/<pool>/<name>`.
//! Snapshots are ZFS snapshots `<pool>/<name>@<snapshot>`; a restore is a `zfs clone` of one
//! (so ZFS refuses to destroy that snapshot while the clone exists), a rollback is `zfs
//! rollback`, which fails if newer snapshots exist rather than destroying them.
//!
//! During a pass a dataset's zvols are listed once and answer every look-up of the pass
//! (`crate::listings`), instead of one `zfs list` per look-up; the ZFS and ZFS_THIN providers
//! share the listings, and any command that changes ZFS drops them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ferrite_types::{ProviderKind, SnapshotName};

use crate::listings::PassListings;
use crate::runner::{CommandError, CommandLine, CommandOutput, HostCommands};
use crate::{
    BackingVolume, BackingVolumeName, PoolCapacity, Provider, StorageError, first_line,
    snapshot_host_name, table_rows,
};

/// Zvol sizes are rounded up to a multiple of this (OpenZFS's default `volblocksize`), because
/// `zfs create -V` refuses sizes that are not a multiple of the block size.
pub const ZVOL_SIZE_GRANULE_KIB: u64 = 16;

/// Zvols in a zpool or dataset; thin (sparse) or thick.
pub struct ZfsProvider {
    runner: Arc<dyn HostCommands>,
    thin: bool,
    listings: Arc<PassListings<BackingVolume>>,
}

fn valid_dataset_name(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.ends_with('/')
        && !name.contains("//")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
}

fn round_up_to_granule(size_kib: u64) -> u64 {
    size_kib.div_ceil(ZVOL_SIZE_GRANULE_KIB) * ZVOL_SIZE_GRANULE_KIB
}

impl ZfsProvider {
    pub fn new(runner: Arc<dyn HostCommands>, thin: bool) -> Self {
        ZfsProvider {
            runner,
            thin,
            listings: Arc::default(),
        }
    }

    /// This provider, reading and dropping the datasets' listings with `other` (a ZFS and a
    /// ZFS_THIN pool may name the same dataset).
    pub fn sharing_listings_with(mut self, other: &ZfsProvider) -> Self {
        self.listings = other.listings.clone();
        self
    }

    /// Runs `command`; one that may change ZFS drops the listings read so far, whether it
    /// succeeded or not.
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
        self.listings.run(self.runner.as_ref(), command)
    }

    fn unusable(&self, pool: &str, reason: impl Into<String>) -> StorageError {
        StorageError::PoolUnusable {
            provider: self.kind(),
            pool: pool.to_string(),
            reason: reason.into(),
        }
    }

    fn dataset<'a>(&self, pool: &'a str) -> Result<&'a str, StorageError> {
        if valid_dataset_name(pool) {
            Ok(pool)
        } else {
            Err(self.unusable(
                pool,
                "not a zpool or dataset name (starts with a letter; letters, digits, '_', '-', '.', ':', '/')",
            ))
        }
    }

    fn pool_error(&self, pool: &str, error: CommandError) -> StorageError {
        if error.stderr().contains("does not exist") {
            self.unusable(pool, first_line(error.stderr()))
        } else {
            error.into()
        }
    }

    fn parse_bytes(command: &CommandLine, text: &str) -> Result<u64, StorageError> {
        text.parse::<u64>()
            .map_err(|_| StorageError::UnexpectedOutput {
                command: command.to_string(),
                reason: format!("'{text}' is not a number of bytes"),
            })
    }

    /// The zvols directly below `dataset`, listed once per pass (`crate::listings`).
    fn zvols(&self, dataset: &str) -> Result<Arc<[BackingVolume]>, StorageError> {
        if let Some(volumes) = self.listings.get(dataset) {
            return Ok(volumes);
        }
        let read = Instant::now();
        let command = CommandLine::query("zfs")
            .args(["list", "-H", "-p", "-t", "volume", "-d", "1"])
            .args(["-o", "name,volsize,used"])
            .arg(dataset);
        let output = self
            .run(&command)
            .map_err(|e| self.pool_error(dataset, e))?;
        let mut volumes = Vec::new();
        for row in table_rows(&output.stdout, '\t') {
            let [full_name, volsize, used] = row[..] else {
                return Err(StorageError::UnexpectedOutput {
                    command: command.to_string(),
                    reason: format!("expected 3 columns, got {row:?}"),
                });
            };
            let Some(short) = full_name
                .strip_prefix(dataset)
                .and_then(|rest| rest.strip_prefix('/'))
            else {
                continue;
            };
            let Some((resource, number)) = BackingVolumeName::parse(short) else {
                continue;
            };
            volumes.push(BackingVolume {
                name: BackingVolumeName::new(&resource, number),
                device_path: Some(PathBuf::from(format!("/dev/zvol/{full_name}"))),
                allocated_kib: Self::parse_bytes(&command, used)? / 1024,
                usable_kib: Self::parse_bytes(&command, volsize)? / 1024,
            });
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        let volumes: Arc<[BackingVolume]> = volumes.into();
        self.listings.keep(dataset, read, volumes.clone());
        Ok(volumes)
    }
}

/// A snapshot's full name: `<pool>/<volume>@<snapshot>`.
fn zfs_snapshot(pool: &str, volume: &BackingVolumeName, snapshot: &SnapshotName) -> String {
    format!("{pool}/{volume}@{}", snapshot_host_name(snapshot))
}

impl Provider for ZfsProvider {
    fn kind(&self) -> ProviderKind {
        if self.thin {
            ProviderKind::ZfsThin
        } else {
            ProviderKind::Zfs
        }
    }

    fn begin_pass(&self) {
        self.listings.begin();
    }

    fn end_pass(&self) {
        self.listings.end();
    }

    fn check_pool(&self, pool: &str) -> Result<Option<PoolCapacity>, StorageError> {
        let dataset = self.dataset(pool)?;
        let command = CommandLine::query("zfs")
            .args(["get", "-H", "-p", "-o", "property,value", "available,used"])
            .arg(dataset);
        let output = self.run(&command).map_err(|e| self.pool_error(pool, e))?;
        let (mut available, mut used) = (None, None);
        for row in table_rows(&output.stdout, '\t') {
            match row[..] {
                ["available", value] => available = Some(Self::parse_bytes(&command, value)?),
                ["used", value] => used = Some(Self::parse_bytes(&command, value)?),
                _ => {}
            }
        }
        let (Some(available), Some(used)) = (available, used) else {
            return Err(StorageError::UnexpectedOutput {
                command: command.to_string(),
                reason: "expected the properties 'available' and 'used'".to_string(),
            });
        };
        Ok(Some(PoolCapacity {
            total_kib: (available + used) / 1024,
            free_kib: available / 1024,
        }))
    }

    fn list_volumes(&self, pool: &str) -> Result<Vec<BackingVolume>, StorageError> {
        Ok(self.zvols(self.dataset(pool)?)?.to_vec())
    }

    fn volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<Option<BackingVolume>, StorageError> {
        Ok(self
            .zvols(self.dataset(pool)?)?
            .iter()
            .find(|v| &v.name == name)
            .cloned())
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError> {
        let dataset = self.dataset(pool)?;
        let mut command = CommandLine::new("zfs").arg("create");
        if self.thin {
            command = command.arg("-s");
        }
        command = command
            .args(["-V", &format!("{}K", round_up_to_granule(size_kib))])
            .arg(format!("{dataset}/{name}"));
        self.run(&command).map_err(|e| {
            // Made by someone else since it was looked up: not a partial zvol to remove.
            if e.stderr().contains("already exists") {
                StorageError::VolumeExists {
                    provider: self.kind(),
                    pool: pool.to_string(),
                    volume: name.clone(),
                }
            } else {
                self.pool_error(pool, e)
            }
        })?;
        Ok(())
    }

    fn grow_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError> {
        let Some(current) = self.volume(pool, name)? else {
            return Err(StorageError::VolumeMissing {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: name.clone(),
            });
        };
        if current.usable_kib >= size_kib {
            return Ok(());
        }
        self.run(
            &CommandLine::new("zfs")
                .arg("set")
                .arg(format!("volsize={}K", round_up_to_granule(size_kib)))
                .arg(format!("{pool}/{name}")),
        )?;
        Ok(())
    }

    fn activate_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<BackingVolume, StorageError> {
        // The zfs module exposes every zvol as a device on its own.
        self.volume(pool, name)?
            .ok_or_else(|| StorageError::VolumeMissing {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: name.clone(),
            })
    }

    fn delete_volume(&self, pool: &str, name: &BackingVolumeName) -> Result<(), StorageError> {
        if self.volume(pool, name)?.is_none() {
            return Ok(());
        }
        self.run(
            &CommandLine::new("zfs")
                .arg("destroy")
                .arg(format!("{pool}/{name}")),
        )?;
        Ok(())
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
        let dataset = self.dataset(pool)?;
        let command = CommandLine::query("zfs")
            .args(["list", "-H", "-t", "snapshot", "-o", "name"])
            .arg(zfs_snapshot(dataset, volume, snapshot));
        match self.run(&command) {
            Ok(_) => Ok(true),
            Err(e) if e.stderr().contains("does not exist") => Ok(false),
            Err(e) => Err(self.pool_error(pool, e)),
        }
    }

    fn create_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<String, StorageError> {
        let dataset = self.dataset(pool)?;
        self.run(
            &CommandLine::new("zfs")
                .arg("snapshot")
                .arg(zfs_snapshot(dataset, volume, snapshot)),
        )
        .map_err(|e| self.pool_error(pool, e))?;
        Ok("zfs snapshot".to_string())
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
        let dataset = self.dataset(pool)?;
        self.run(
            &CommandLine::new("zfs")
                .arg("destroy")
                .arg(zfs_snapshot(dataset, volume, snapshot)),
        )?;
        Ok(())
    }

    fn restore_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
        target: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        let dataset = self.dataset(pool)?;
        if self.volume(pool, target)?.is_some() {
            return Err(StorageError::VolumeExists {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: target.clone(),
            });
        }
        self.run(
            &CommandLine::new("zfs")
                .arg("clone")
                .arg(zfs_snapshot(dataset, volume, snapshot))
                .arg(format!("{dataset}/{target}")),
        )
        .map_err(|e| self.pool_error(pool, e))?;
        Ok(())
    }

    fn rollback_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<(), StorageError> {
        let dataset = self.dataset(pool)?;
        self.run(
            &CommandLine::new("zfs")
                .arg("rollback")
                .arg(zfs_snapshot(dataset, volume, snapshot)),
        )
        .map_err(|e| self.pool_error(pool, e))?;
        Ok(())
    }

    fn rename_volume(
        &self,
        pool: &str,
        from: &BackingVolumeName,
        to: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        let dataset = self.dataset(pool)?;
        if self.volume(pool, to)?.is_some() {
            return Err(StorageError::RenameTargetExists {
                provider: self.kind(),
                pool: pool.to_string(),
                from: from.clone(),
                to: to.clone(),
            });
        }
        self.run(
            &CommandLine::new("zfs")
                .arg("rename")
                .arg(format!("{dataset}/{from}"))
                .arg(format!("{dataset}/{to}")),
        )
        .map_err(|e| self.pool_error(pool, e))?;
        Ok(())
    }

    fn pool_identity(&self, pool: &str) -> Result<Option<String>, StorageError> {
        let dataset = self.dataset(pool)?;
        let command = CommandLine::query("zfs")
            .args(["get", "-H", "-p", "-o", "value", "guid"])
            .arg(dataset);
        let output = self.run(&command).map_err(|e| self.pool_error(pool, e))?;
        let guid = output.stdout.trim();
        if guid.is_empty() || !guid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StorageError::UnexpectedOutput {
                command: command.to_string(),
                reason: format!("expected a GUID, got {guid:?}"),
            });
        }
        Ok(Some(format!("guid={guid}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_the_block_size() {
        assert_eq!(round_up_to_granule(1), 16);
        assert_eq!(round_up_to_granule(16), 16);
        assert_eq!(round_up_to_granule(1_048_577), 1_048_592);
    }

    #[test]
    fn dataset_names_cannot_be_options() {
        assert!(valid_dataset_name("tank"));
        assert!(valid_dataset_name("tank/ferrite"));
        assert!(!valid_dataset_name("-r"));
        assert!(!valid_dataset_name("tank/"));
        assert!(!valid_dataset_name("tank//x"));
        assert!(!valid_dataset_name("tank x"));
    }
}
