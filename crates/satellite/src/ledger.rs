//! The ledger of backing volumes this satellite created, and so may grow and delete.
//!
//! A volume is recorded *before* it is created, so a crash in the middle of a create still knows
//! the volume is ours. Anything not in the ledger (a user's LV in the same volume group, a file
//! someone put in the pool directory) is never touched, even if its name looks like ours.
//!
//! An entry records where the volume is ([`VolumeKey`]), the identity it was created for (its
//! volume definition's UUID) and its name on the node. Being in the ledger makes a volume ours;
//! it does not make it deletable: only a deletion the desired state asks for, naming that
//! identity, or an operator's command deletes it.
//!
//! Format 1 (before identities and case-folded names) is read as entries without identity,
//! named as their resource was spelled.
//!
//! Snapshots the satellite took are recorded the same way ([`SnapshotEntry`], written before
//! the snapshot is taken): only a recorded snapshot is ever deleted or rolled back to, and only
//! when the desired state or an operator's command names its UUID.
//!
//! On disk ([`LedgerFile`]): `ledger.json`, the snapshot, and `ledger.journal`, one record per
//! save with the entries that changed since the last (see `crate::journal`). A save is durable
//! when it returns, so the order the reconciler keeps (recorded before a create, removed after
//! the delete) holds on disk too. One change is saved late on purpose: that a volume was seen
//! to exist after its create waits for the ledger's next save (`Reconciler::mark_created`), so
//! an entry on disk that says `Creating` may be of a volume that exists; a restart looks. And
//! the volumes a batch of deltas creates are recorded together, in one save before the first
//! create (`crate::reconciler::intents`), rather than one save each. A `ledger.json` from
//! before the journal loads as it is.
//!
//! A ledger notes which entries its methods changed since it was last saved ([`Unsaved`]), so
//! a save compares only those with the file's and costs what changed, not the whole ledger. A
//! ledger that was loaded or made has no such note, and its first save compares everything.
//! Entries are kept in key order, and found by binary search; they are changed only through
//! the ledger's methods.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ferrite_storage::BackingVolumeName;
use ferrite_types::{ProviderKind, ResourceName, SnapshotName, VolumeNumber};
use serde::{Deserialize, Serialize};

use crate::journal::Journal;
use crate::persist::PersistError;

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
    /// The name a new volume at this place gets: case-folded.
    pub fn backing_name(&self) -> BackingVolumeName {
        BackingVolumeName::new(&self.resource, self.volume_number)
    }
}

impl std::fmt::Display for VolumeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} in {} pool '{}'",
            self.resource, self.volume_number, self.provider_kind, self.pool_name
        )
    }
}

/// How far the satellite got with a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// Recorded; the create command may or may not have run (or ran, and that was not saved
    /// yet).
    Creating,
    /// The volume was seen to exist.
    Created,
}

/// One owned volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    #[serde(flatten)]
    pub key: VolumeKey,
    /// The identity (volume definition UUID) it was created for; `None` for volumes created
    /// before identities, until the desired state that has them takes them over.
    #[serde(default)]
    pub identity: Option<String>,
    /// Its name on the node; `None` in format 1, where it was the resource name as spelled.
    #[serde(default)]
    pub backing_name: Option<String>,
    /// The placement it was created for: the resource's UUID on this node. A resource deleted
    /// (or forgotten with its node) and placed here again is another placement and never takes
    /// over the old volume's data. `None` for volumes created before placements were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// The storage pool (by its Ferrite name) the volume was created for; informational.
    pub storage_pool: String,
    pub progress: Progress,
    /// A replicated volume whose data came from a snapshot (a restore, a rollback): the
    /// replication metadata it holds is not its own, so its replication layer writes new
    /// metadata before it runs the volume. Recorded before the data is copied; kept once
    /// written, so the volume is never taken for one that reads as zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_metadata: Option<FreshMetadata>,
}

/// The replication metadata a volume restored or rolled back from a snapshot starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreshMetadata {
    /// The generation it starts UpToDate at, shared by every diskful member with the same
    /// data; `None`: just created, so it gets a full sync from a member with data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Written: the engine may run the volume, and it is never written again.
    #[serde(default)]
    pub written: bool,
}

impl LedgerEntry {
    /// The volume's name on the node.
    pub fn backing_name(&self) -> BackingVolumeName {
        self.backing_name
            .as_deref()
            .and_then(BackingVolumeName::from_recorded)
            .unwrap_or_else(|| {
                BackingVolumeName::as_spelled(&self.key.resource, self.key.volume_number)
            })
    }

    /// Whether this entry is the volume of `identity` ("" is a desired state from before
    /// identities, which matches an entry from before them).
    pub fn has_identity(&self, identity: &str) -> bool {
        self.identity.as_deref().unwrap_or("") == identity
    }

    /// Whether this entry is the volume of `identity` in the placement `placement` (the
    /// resource's UUID; "" from a state that does not say).
    pub fn belongs_to(&self, identity: &str, placement: &str) -> bool {
        self.has_identity(identity)
            && (placement.is_empty()
                || self
                    .placement
                    .as_deref()
                    .is_none_or(|mine| mine == placement))
    }
}

/// The persisted ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    /// Version of this file's format.
    #[serde(default = "format_version")]
    pub format_version: u32,
    /// In key order ([`Ledger::record`] and [`Ledger::remove`] keep it; read it, change it
    /// through them).
    #[serde(default)]
    pub volumes: Vec<LedgerEntry>,
    /// The snapshots this satellite took, one entry per snapshot volume, in the order of
    /// [`Ledger::record_snapshot`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotEntry>,
    /// What changed since the last save: bookkeeping, not content.
    #[serde(skip)]
    unsaved: Unsaved,
}

/// Two ledgers are equal when they hold the same entries, whatever they changed since a save.
impl PartialEq for Ledger {
    fn eq(&self, other: &Self) -> bool {
        self.format_version == other.format_version
            && self.volumes == other.volumes
            && self.snapshots == other.snapshots
    }
}

impl Eq for Ledger {}

/// The entries a ledger's methods changed since it was last saved.
#[derive(Debug, Clone, Default)]
enum Unsaved {
    /// Not known (a ledger loaded or made): a save compares every entry.
    #[default]
    Unknown,
    /// These volume keys and snapshot volumes (UUID, volume number), and no others.
    Known {
        volumes: BTreeSet<VolumeKey>,
        snapshots: BTreeSet<(String, VolumeNumber)>,
    },
}

impl Unsaved {
    fn nothing() -> Unsaved {
        Unsaved::Known {
            volumes: BTreeSet::new(),
            snapshots: BTreeSet::new(),
        }
    }

    fn volume(&mut self, key: &VolumeKey) {
        if let Unsaved::Known { volumes, .. } = self
            && !volumes.contains(key)
        {
            volumes.insert(key.clone());
        }
    }

    fn snapshot(&mut self, uuid: &str, volume_number: VolumeNumber) {
        if let Unsaved::Known { snapshots, .. } = self {
            snapshots.insert((uuid.to_string(), volume_number));
        }
    }
}

/// One snapshot volume this satellite took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// The volume it was taken of, where it lives.
    #[serde(flatten)]
    pub key: VolumeKey,
    pub snapshot: SnapshotName,
    /// The snapshot's UUID on this node: one deleted and taken again under the same name is
    /// another.
    pub uuid: String,
    /// The identity of the volume it was taken of.
    pub identity: String,
    /// The name of the volume it was taken of, on the node.
    pub volume_backing_name: String,
    /// How it was taken (e.g. "reflink copy").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub progress: Progress,
}

impl SnapshotEntry {
    pub fn volume_backing_name(&self) -> BackingVolumeName {
        BackingVolumeName::from_recorded(&self.volume_backing_name)
            .unwrap_or_else(|| self.key.backing_name())
    }
}

/// The ledger format this build writes.
pub const LEDGER_FORMAT: u32 = 2;

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
            format_version: LEDGER_FORMAT,
            volumes: Vec::new(),
            snapshots: Vec::new(),
            unsaved: Unsaved::Unknown,
        }
    }

    /// Brings a ledger read from disk to the current format: every entry names its volume
    /// explicitly, and the entries are in the order [`Ledger::record`] keeps.
    pub fn upgrade(mut self) -> Self {
        for entry in &mut self.volumes {
            if entry.backing_name.is_none() {
                entry.backing_name = Some(entry.backing_name().to_string());
            }
        }
        self.volumes.sort_by(|a, b| a.key.cmp(&b.key));
        self.snapshots.sort_by(snapshot_order);
        self.format_version = LEDGER_FORMAT;
        self.unsaved = Unsaved::Unknown;
        self
    }

    /// The entries of the resource whose key (its upper-cased name) is `resource_key`: one run,
    /// as entries are in key order and a key begins with the resource.
    pub fn entries_of(&self, resource_key: &str) -> &[LedgerEntry] {
        let start = self
            .volumes
            .partition_point(|e| e.key.resource.key() < resource_key);
        let len = self.volumes[start..].partition_point(|e| e.key.resource.key() == resource_key);
        &self.volumes[start..start + len]
    }

    /// Whether any volume was recorded before identities (format 1) and has not taken one yet.
    pub fn has_volumes_without_identity(&self) -> bool {
        self.volumes.iter().any(|e| e.identity.is_none())
    }

    /// Where the entry of `key` is, or would go.
    fn position(&self, key: &VolumeKey) -> Result<usize, usize> {
        self.volumes.binary_search_by(|entry| entry.key.cmp(key))
    }

    /// Where the snapshot volume is, or would go.
    fn snapshot_position(&self, uuid: &str, volume_number: VolumeNumber) -> Result<usize, usize> {
        self.snapshots.binary_search_by(|e| {
            (e.uuid.as_str(), e.key.volume_number).cmp(&(uuid, volume_number))
        })
    }

    /// The entry of `key`, to change (noted as changed).
    pub fn get_mut(&mut self, key: &VolumeKey) -> Option<&mut LedgerEntry> {
        let i = self.position(key).ok()?;
        self.unsaved.volume(key);
        Some(&mut self.volumes[i])
    }

    pub fn get(&self, key: &VolumeKey) -> Option<&LedgerEntry> {
        self.position(key).ok().map(|i| &self.volumes[i])
    }

    /// Whether the entry of `key` (or its absence) is as the last save left it: no method
    /// changed it since. False for a ledger loaded or made and not saved since.
    pub fn is_saved(&self, key: &VolumeKey) -> bool {
        matches!(&self.unsaved, Unsaved::Known { volumes, .. } if !volumes.contains(key))
    }

    /// Records (or updates) a volume.
    pub fn record(&mut self, entry: LedgerEntry) {
        self.unsaved.volume(&entry.key);
        match self.position(&entry.key) {
            Ok(i) => self.volumes[i] = entry,
            Err(i) => self.volumes.insert(i, entry),
        }
    }

    pub fn remove(&mut self, key: &VolumeKey) {
        if let Ok(i) = self.position(key) {
            self.unsaved.volume(key);
            self.volumes.remove(i);
        }
    }

    /// The snapshot volume of snapshot `uuid` taken of volume `volume_number`.
    pub fn snapshot(&self, uuid: &str, volume_number: VolumeNumber) -> Option<&SnapshotEntry> {
        self.snapshot_position(uuid, volume_number)
            .ok()
            .map(|i| &self.snapshots[i])
    }

    /// Records (or updates) a snapshot volume.
    pub fn record_snapshot(&mut self, entry: SnapshotEntry) {
        self.unsaved.snapshot(&entry.uuid, entry.key.volume_number);
        match self
            .snapshots
            .binary_search_by(|e| snapshot_order(e, &entry))
        {
            Ok(i) => self.snapshots[i] = entry,
            Err(i) => self.snapshots.insert(i, entry),
        }
    }

    pub fn remove_snapshot(&mut self, uuid: &str, volume_number: VolumeNumber) {
        if let Ok(i) = self.snapshot_position(uuid, volume_number) {
            self.unsaved.snapshot(uuid, volume_number);
            self.snapshots.remove(i);
        }
    }

    /// The owned volumes, grouped for lookups.
    pub fn by_key(&self) -> BTreeMap<VolumeKey, LedgerEntry> {
        self.volumes
            .iter()
            .map(|entry| (entry.key.clone(), entry.clone()))
            .collect()
    }
}

/// The order of the ledger's snapshot entries: by UUID, then volume number.
fn snapshot_order(a: &SnapshotEntry, b: &SnapshotEntry) -> Ordering {
    (a.uuid.as_str(), a.key.volume_number).cmp(&(b.uuid.as_str(), b.key.volume_number))
}

/// One change to the ledger, as the journal records it: an entry's new value, or its removal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerChange {
    Volume(LedgerEntry),
    VolumeRemoved(VolumeKey),
    Snapshot(SnapshotEntry),
    SnapshotRemoved {
        uuid: String,
        volume_number: VolumeNumber,
    },
}

impl Ledger {
    /// Applies a change read from the journal.
    pub fn apply(&mut self, change: LedgerChange) {
        match change {
            LedgerChange::Volume(entry) => self.record(entry),
            LedgerChange::VolumeRemoved(key) => self.remove(&key),
            LedgerChange::Snapshot(entry) => self.record_snapshot(entry),
            LedgerChange::SnapshotRemoved {
                uuid,
                volume_number,
            } => self.remove_snapshot(&uuid, volume_number),
        }
    }

    /// What changes `self` into `to`, both in [`Ledger::record`]'s order. Compares entries in
    /// memory; serializes and writes only what differs.
    pub fn changes_to(&self, to: &Ledger) -> Vec<LedgerChange> {
        let mut changes = Vec::new();
        diff_sorted(
            &self.volumes,
            &to.volumes,
            |a, b| a.key.cmp(&b.key),
            |entry, kept| {
                changes.push(if kept {
                    LedgerChange::Volume(entry.clone())
                } else {
                    LedgerChange::VolumeRemoved(entry.key.clone())
                })
            },
        );
        diff_sorted(
            &self.snapshots,
            &to.snapshots,
            snapshot_order,
            |entry, kept| {
                changes.push(if kept {
                    LedgerChange::Snapshot(entry.clone())
                } else {
                    LedgerChange::SnapshotRemoved {
                        uuid: entry.uuid.clone(),
                        volume_number: entry.key.volume_number,
                    }
                })
            },
        );
        changes
    }

    /// What changes `self` into `to` where `to` noted changes since its last save
    /// ([`Unsaved`]): the same as [`Ledger::changes_to`] when those notes are complete, at the
    /// cost of what they name. `None` if `to` has no such notes.
    fn changes_noted_in(&self, to: &Ledger) -> Option<Vec<LedgerChange>> {
        let Unsaved::Known { volumes, snapshots } = &to.unsaved else {
            return None;
        };
        let mut changes = Vec::new();
        for key in volumes {
            match (self.get(key), to.get(key)) {
                (Some(from), Some(entry)) if from == entry => {}
                (_, Some(entry)) => changes.push(LedgerChange::Volume(entry.clone())),
                (Some(_), None) => changes.push(LedgerChange::VolumeRemoved(key.clone())),
                (None, None) => {}
            }
        }
        for (uuid, volume_number) in snapshots {
            match (
                self.snapshot(uuid, *volume_number),
                to.snapshot(uuid, *volume_number),
            ) {
                (Some(from), Some(entry)) if from == entry => {}
                (_, Some(entry)) => changes.push(LedgerChange::Snapshot(entry.clone())),
                (Some(_), None) => changes.push(LedgerChange::SnapshotRemoved {
                    uuid: uuid.clone(),
                    volume_number: *volume_number,
                }),
                (None, None) => {}
            }
        }
        Some(changes)
    }
}

/// Walks two sorted lists: `change(element, true)` for each element of `to` that `from` lacks
/// or holds otherwise, `change(element, false)` for each element of `from` that `to` lacks.
fn diff_sorted<T: PartialEq>(
    from: &[T],
    to: &[T],
    order: impl Fn(&T, &T) -> Ordering,
    mut change: impl FnMut(&T, bool),
) {
    let (mut i, mut j) = (0, 0);
    while i < from.len() || j < to.len() {
        let step = match (from.get(i), to.get(j)) {
            (Some(a), Some(b)) => order(a, b),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match step {
            Ordering::Less => {
                change(&from[i], false);
                i += 1;
            }
            Ordering::Greater => {
                change(&to[j], true);
                j += 1;
            }
            Ordering::Equal => {
                if from[i] != to[j] {
                    change(&to[j], true);
                }
                i += 1;
                j += 1;
            }
        }
    }
}

/// The ledger on disk: snapshot and journal, and the ledger as they hold it, to write only
/// what changed.
#[derive(Debug)]
pub struct LedgerFile {
    journal: Journal,
    on_disk: Ledger,
}

impl LedgerFile {
    /// Loads the ledger at `path` (`ledger.json`, and its journal): empty if there is none.
    pub fn load(path: PathBuf) -> Result<(LedgerFile, Ledger), PersistError> {
        let loaded = Journal::open::<Ledger, Vec<LedgerChange>>(path)?;
        let mut ledger = loaded.snapshot.unwrap_or_default().upgrade();
        for change in loaded.records.into_iter().flatten() {
            ledger.apply(change);
        }
        let file = LedgerFile {
            journal: loaded.journal,
            on_disk: ledger.clone(),
        };
        Ok((file, ledger))
    }

    /// Writes `ledger` (the whole ledger, as loaded) as a new snapshot and empties the journal,
    /// when the journal holds anything.
    pub fn fold_journal(&mut self, ledger: &Ledger) -> Result<(), PersistError> {
        if self.journal.is_empty() {
            return Ok(());
        }
        let ledger = ledger.clone().upgrade();
        self.journal.compact(&ledger)?;
        self.on_disk = ledger;
        Ok(())
    }

    /// Makes `ledger` durable: its changes since the last save as one journal record (those
    /// it noted, or, without notes, whatever differs from the file), or the whole ledger as a
    /// new snapshot when the journal has grown enough. A failed save leaves the file at the
    /// last one, and the ledger's notes as they were.
    pub fn save(&mut self, ledger: &mut Ledger) -> Result<(), PersistError> {
        debug_assert!(ledger.volumes.is_sorted_by(|a, b| a.key < b.key));
        debug_assert!(
            ledger
                .snapshots
                .is_sorted_by(|a, b| snapshot_order(a, b) == Ordering::Less)
        );
        if self.journal.wants_compaction() {
            self.journal.compact(&*ledger)?;
            self.on_disk = ledger.clone();
            self.on_disk.unsaved = Unsaved::Unknown;
            ledger.unsaved = Unsaved::nothing();
            return Ok(());
        }
        let changes = match self.on_disk.changes_noted_in(ledger) {
            Some(changes) => changes,
            None => self.on_disk.changes_to(ledger),
        };
        if !changes.is_empty() {
            self.journal.append(&changes)?;
            for change in changes {
                self.on_disk.apply(change);
            }
        }
        ledger.unsaved = Unsaved::nothing();
        Ok(())
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
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
            identity: Some("9b5c-uuid".into()),
            backing_name: Some("web_00000".into()),
            placement: None,
            storage_pool: "pool1".into(),
            progress: Progress::Creating,
            fresh_metadata: None,
        });
        let json = serde_json::to_value(&ledger).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "format_version": 2,
                "volumes": [{
                    "resource": "web",
                    "volume_number": 0,
                    "provider_kind": "FILE_THIN",
                    "pool_name": "/srv/pool",
                    "identity": "9b5c-uuid",
                    "backing_name": "web_00000",
                    "storage_pool": "pool1",
                    "progress": "creating"
                }]
            })
        );
        let back: Ledger = serde_json::from_value(json).unwrap();
        assert_eq!(back, ledger);
    }

    #[test]
    fn a_format_1_ledger_keeps_its_names_as_spelled_and_has_no_identities() {
        let old = serde_json::json!({
            "format_version": 1,
            "volumes": [{
                "resource": "Web",
                "volume_number": 3,
                "provider_kind": "LVM",
                "pool_name": "vg0",
                "storage_pool": "lvm",
                "progress": "created"
            }]
        });
        let ledger = serde_json::from_value::<Ledger>(old).unwrap().upgrade();
        assert_eq!(ledger.format_version, LEDGER_FORMAT);
        let entry = &ledger.volumes[0];
        assert_eq!(entry.backing_name().as_str(), "Web_00003");
        assert_eq!(entry.identity, None);
        assert!(entry.has_identity(""));
        assert!(!entry.has_identity("some-uuid"));
    }

    fn entry(resource: &str, volume: u16, progress: Progress) -> LedgerEntry {
        LedgerEntry {
            key: VolumeKey {
                resource: ResourceName::new(resource).unwrap(),
                volume_number: volume.into(),
                provider_kind: ProviderKind::FileThin,
                pool_name: "/srv/pool".into(),
            },
            identity: Some(format!("{resource}-{volume}")),
            backing_name: Some(format!("{resource}_{volume:05}")),
            placement: None,
            storage_pool: "pool1".into(),
            progress,
            fresh_metadata: None,
        }
    }

    fn snapshot_of(resource: &str, uuid: &str) -> SnapshotEntry {
        let volume = entry(resource, 0, Progress::Created);
        SnapshotEntry {
            key: volume.key,
            snapshot: SnapshotName::new("snap").unwrap(),
            uuid: uuid.into(),
            identity: format!("{resource}-0"),
            volume_backing_name: format!("{resource}_00000"),
            method: None,
            progress: Progress::Creating,
        }
    }

    #[test]
    fn each_save_journals_what_changed_and_a_load_replays_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let (mut file, mut ledger) = LedgerFile::load(path.clone()).unwrap();
        for (i, name) in ["web", "db", "app", "cache"].iter().enumerate() {
            ledger.record(entry(name, 0, Progress::Creating));
            file.save(&mut ledger).unwrap();
            ledger
                .get_mut(&entry(name, 0, Progress::Creating).key)
                .unwrap()
                .progress = Progress::Created;
            file.save(&mut ledger).unwrap();
            ledger.record_snapshot(snapshot_of(name, &format!("uuid-{}", 9 - i)));
            file.save(&mut ledger).unwrap();
        }
        ledger.remove(&entry("db", 0, Progress::Created).key);
        ledger.remove_snapshot("uuid-8", 0.into());
        let before = file.journal().len();
        file.save(&mut ledger).unwrap();
        let record = file.journal().len() - before;
        // Two changes, a few hundred bytes: not the ledger.
        assert!(record < 400, "{record} bytes");
        // Nothing changed: nothing written.
        file.save(&mut ledger).unwrap();
        assert_eq!(file.journal().len() - before, record);
        drop(file);
        let (_, loaded) = LedgerFile::load(path).unwrap();
        assert_eq!(loaded, ledger);
        assert_eq!(loaded.volumes.len(), 3);
        assert_eq!(loaded.snapshots.len(), 3);
    }

    #[test]
    fn changes_between_two_ledgers_turn_one_into_the_other() {
        let mut from = Ledger::new();
        for name in ["ra", "rb", "rc", "rd"] {
            from.record(entry(name, 0, Progress::Created));
            from.record_snapshot(snapshot_of(name, &format!("u-{name}")));
        }
        let mut to = from.clone();
        to.remove(&entry("ra", 0, Progress::Created).key);
        to.record(entry("rb", 1, Progress::Creating));
        to.get_mut(&entry("rc", 0, Progress::Created).key)
            .unwrap()
            .progress = Progress::Creating;
        to.record(entry("re", 0, Progress::Created));
        to.remove_snapshot("u-rd", 0.into());
        to.record_snapshot(snapshot_of("re", "u-0"));
        let changes = from.changes_to(&to);
        assert_eq!(changes.len(), 6, "{changes:?}");
        let mut replayed = from.clone();
        for change in changes {
            replayed.apply(change);
        }
        assert_eq!(replayed, to);
    }

    /// Random changes through the ledger's methods, saved now and then: what a save finds from
    /// the ledger's notes is what comparing the whole ledger finds, and a load gives the
    /// ledger back.
    #[test]
    fn a_save_finds_from_the_notes_what_a_whole_comparison_finds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let (mut file, mut ledger) = LedgerFile::load(path.clone()).unwrap();
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut below = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let names = ["ra", "rb", "rc", "rd", "re", "rf"];
        for step in 0..400 {
            let name = names[below(names.len() as u64) as usize];
            let volume = below(2) as u16;
            let key = entry(name, volume, Progress::Creating).key;
            match below(7) {
                0 | 1 => ledger.record(entry(name, volume, Progress::Creating)),
                2 => ledger.remove(&key),
                3 => {
                    if let Some(e) = ledger.get_mut(&key) {
                        e.progress = Progress::Created;
                    }
                }
                4 => ledger.record_snapshot(snapshot_of(name, &format!("u-{name}-{volume}"))),
                5 => ledger.remove_snapshot(&format!("u-{name}-{volume}"), 0.into()),
                _ => {
                    let noted = file.on_disk.changes_noted_in(&ledger);
                    let whole = file.on_disk.changes_to(&ledger);
                    if let Some(noted) = noted {
                        assert_eq!(noted, whole, "step {step}");
                    }
                    file.save(&mut ledger).unwrap();
                    assert_eq!(file.on_disk, ledger, "step {step}");
                }
            }
        }
        file.save(&mut ledger).unwrap();
        drop(file);
        let (_, loaded) = LedgerFile::load(path).unwrap();
        assert_eq!(loaded, ledger);
    }

    #[test]
    fn a_resources_entries_are_one_run_whatever_the_case_of_its_name() {
        let mut ledger = Ledger::new();
        for (name, volume) in [
            ("rb", 0),
            ("RA", 1),
            ("ra", 0),
            ("Rc", 0),
            ("rA", 2),
            ("r_", 0),
        ] {
            ledger.record(entry(name, volume, Progress::Created));
        }
        let of = |key: &str| -> Vec<(String, u16)> {
            ledger
                .entries_of(key)
                .iter()
                .map(|e| (e.key.resource.to_string(), e.key.volume_number.get()))
                .collect()
        };
        // "RA" and "ra" are one resource: the later spelling of volume 0's entry is "ra".
        assert_eq!(
            of("RA"),
            [
                ("ra".to_string(), 0),
                ("RA".to_string(), 1),
                ("rA".to_string(), 2)
            ]
        );
        assert_eq!(of("RB"), [("rb".to_string(), 0)]);
        assert_eq!(of("R_"), [("r_".to_string(), 0)]);
        assert!(of("RD").is_empty());
        assert!(of("").is_empty());
    }
}
