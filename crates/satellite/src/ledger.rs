//! The ledger of backing volumes this satellite created, and so may grow and delete.
//!
//! A volume is recorded *before* it is created, so a crash in the middle of a create still knows
//! the volume is ours. Anything not in the ledger (a user's LV in the same volume group, a file
//! someone put in the pool directory) is never touched, even if its name looks like ours.

use std::collections::BTreeMap;

use ferrite_storage::BackingVolumeName;
use ferrite_types::{ProviderKind, ResourceName, VolumeNumber};
use serde::{Deserialize, Serialize};

/// Identifies a backing volume: which resource volume it backs and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VolumeKey {
    pub resource: ResourceName,
    pub volume_number: VolumeNumber,
    pub provider_kind: ProviderKind,
    /// The pool's backing location (volume group, `vg/thinpool`, zpool, directory).
    pub pool_name: String,
}

impl VolumeKey {
    pub fn backing_name(&self) -> BackingVolumeName {
        BackingVolumeName::new(&self.resource, self.volume_number)
    }
}

/// How far the satellite got with a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// Recorded; the create command may or may not have run.
    Creating,
    /// The volume was seen to exist.
    Created,
}

/// One owned volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    #[serde(flatten)]
    pub key: VolumeKey,
    /// The storage pool (by its Ferrite name) the volume was created for; informational.
    pub storage_pool: String,
    pub progress: Progress,
}

/// The persisted ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Version of this file's format.
    #[serde(default = "format_version")]
    pub format_version: u32,
    #[serde(default)]
    pub volumes: Vec<LedgerEntry>,
}

fn format_version() -> u32 {
    1
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}

impl Ledger {
    pub fn new() -> Self {
        Ledger {
            format_version: format_version(),
            volumes: Vec::new(),
        }
    }

    pub fn get(&self, key: &VolumeKey) -> Option<&LedgerEntry> {
        self.volumes.iter().find(|entry| &entry.key == key)
    }

    /// Records (or updates) a volume.
    pub fn record(&mut self, entry: LedgerEntry) {
        match self.volumes.iter_mut().find(|e| e.key == entry.key) {
            Some(existing) => *existing = entry,
            None => {
                self.volumes.push(entry);
                self.volumes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
    }

    pub fn remove(&mut self, key: &VolumeKey) {
        self.volumes.retain(|entry| &entry.key != key);
    }

    /// The owned volumes, grouped for lookups.
    pub fn by_key(&self) -> BTreeMap<VolumeKey, LedgerEntry> {
        self.volumes
            .iter()
            .map(|entry| (entry.key.clone(), entry.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_files_are_readable_json() {
        let mut ledger = Ledger::new();
        ledger.record(LedgerEntry {
            key: VolumeKey {
                resource: ResourceName::new("web").unwrap(),
                volume_number: 0.into(),
                provider_kind: ProviderKind::FileThin,
                pool_name: "/srv/pool".into(),
            },
            storage_pool: "pool1".into(),
            progress: Progress::Creating,
        });
        let json = serde_json::to_value(&ledger).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "format_version": 1,
                "volumes": [{
                    "resource": "web",
                    "volume_number": 0,
                    "provider_kind": "FILE_THIN",
                    "pool_name": "/srv/pool",
                    "storage_pool": "pool1",
                    "progress": "creating"
                }]
            })
        );
        let back: Ledger = serde_json::from_value(json).unwrap();
        assert_eq!(back, ledger);
    }
}
