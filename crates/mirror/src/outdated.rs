//! The members a Primary said it writes without, as one member of a resource recorded them,
//! and the file that keeps the record across a restart of `ferrite-mirrord`.
//!
//! A member that receives `Outdated{mask}` (docs/mirror.md, "Writing without a disk") records
//! each member named with the generations of each volume it may hold: every current, history
//! and bitmap UUID of its last State, of the sender's and of any Primary's. Cut off, it can only
//! be on one of them — on a generation a Primary announced, which the Primary announced here
//! too, before its `Outdated`; the generation the Primary writes without it starts only after
//! this member's answer. From then on this member refuses its promotion and does not take its
//! data for current: not for quorum, not to read from, not to promote itself on. The record
//! goes when the member shows up UpToDate on a generation outside the recorded ones on every
//! volume (it resynced: a resync target ends on its source's newest generation), or when a
//! Primary's set no longer names it. The member's own last known current UUID alone is not
//! enough: a member adopts a Primary's new generation without telling the others, and was then
//! taken for resynced when it came back on it.
//!
//! A diskless member (the tiebreaker) has nothing else that remembers it: were the record in
//! memory only, a restart would let the member left behind be promoted — or be taken for
//! current by the tiebreaker — with data that lacks the Primary's acknowledged writes. So the
//! record is written to `<state-dir>/outdated/<resource>.json` (temporary file, `fsync`,
//! rename, `fsync` of the directory) before the member answers the Primary, and read when the
//! resource comes up. A file that cannot be read keeps the resource down rather than forget.
//!
//! This module owns the record's rules and its file. It does not decide when a frame is
//! answered or what a peer may do (the resource actor, [`crate::resource`], does).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gi::{GenerationSet, Uuid};
use crate::wire::DiskState;

/// The version of the file's format.
pub const FORMAT_VERSION: u32 = 1;

/// The generations of one volume known when a member was recorded (values without the
/// Primary bit).
pub type KnownGenerations = BTreeSet<u64>;

/// The members recorded Outdated: by node-id, per volume, the generations known when it was
/// recorded. An empty map: none known (nothing seen since this member started); filled from
/// the member's next State.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutdatedMembers {
    members: BTreeMap<u8, BTreeMap<u16, KnownGenerations>>,
}

/// Every generation a set names: current, history and bitmap UUIDs (zeroes left out).
pub fn generations_in(set: &GenerationSet) -> impl Iterator<Item = u64> + '_ {
    std::iter::once(set.current)
        .chain(set.history.iter().copied())
        .chain(set.bitmap.iter().copied())
        .filter(|uuid| !uuid.is_zero())
        .map(Uuid::generation)
}

impl OutdatedMembers {
    pub fn contains(&self, node: u8) -> bool {
        self.members.contains_key(&node)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn nodes(&self) -> impl Iterator<Item = u8> + '_ {
        self.members.keys().copied()
    }

    /// Records `node` with the generations this member knows of, unless it is recorded already
    /// (the first record is the one that tells the old data apart). Returns whether the record
    /// changed.
    pub fn record(&mut self, node: u8, known: BTreeMap<u16, KnownGenerations>) -> bool {
        if self.members.contains_key(&node) {
            return false;
        }
        self.members.insert(node, known);
        true
    }

    /// A Primary's whole set: whom it no longer names is back in sync with it. Returns whether
    /// the record changed.
    pub fn retain_named(&mut self, named: &BTreeSet<u8>) -> bool {
        let before = self.members.len();
        self.members.retain(|id, _| named.contains(id));
        self.members.len() != before
    }

    /// A State from `node` (each volume's number, disk state and generations). Its record goes
    /// when every volume recorded is UpToDate on a current UUID outside the recorded
    /// generations. A record without generations takes this State's: whatever the member holds
    /// now, it is current only once it moves on from it. Returns whether the record changed.
    pub fn state_seen<'a>(
        &mut self,
        node: u8,
        volumes: impl IntoIterator<Item = (u16, DiskState, &'a GenerationSet)>,
    ) -> bool {
        let Some(recorded) = self.members.get_mut(&node) else {
            return false;
        };
        let volumes: BTreeMap<u16, (DiskState, &GenerationSet)> = volumes
            .into_iter()
            .map(|(volume, disk, generations)| (volume, (disk, generations)))
            .collect();
        if recorded.is_empty() {
            for (volume, (_, generations)) in &volumes {
                recorded.insert(*volume, generations_in(generations).collect());
            }
            return !recorded.is_empty();
        }
        let moved_on = recorded.iter().all(|(volume, known)| {
            volumes.get(volume).is_some_and(|(disk, generations)| {
                *disk == DiskState::UpToDate
                    && !generations.current.is_just_created()
                    && !known.contains(&generations.current.generation())
            })
        });
        if moved_on {
            self.members.remove(&node);
        }
        moved_on
    }
}

/// Why the record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OutdatedFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} (the members this one knows to be Outdated) is not valid: {reason}; it is not \
         ignored, since that could let a member with outdated data be promoted: restore it, or \
         remove it once every member is UpToDate"
    )]
    Invalid { path: PathBuf, reason: String },
}

/// The file as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    /// Node-id → volume → the generations known when it was recorded (16 hex digits each).
    outdated: BTreeMap<u8, BTreeMap<u16, Vec<String>>>,
}

/// Where a resource's record is kept. `None`: in memory only (tests of the engine alone).
#[derive(Debug, Clone)]
pub struct OutdatedFile {
    path: Option<PathBuf>,
}

impl OutdatedFile {
    pub fn at(path: impl Into<PathBuf>) -> OutdatedFile {
        OutdatedFile {
            path: Some(path.into()),
        }
    }

    /// No file: the record lives as long as the process.
    pub fn in_memory() -> OutdatedFile {
        OutdatedFile { path: None }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The record as last stored; empty when there is no file.
    pub fn load(&self) -> Result<OutdatedMembers, OutdatedFileError> {
        let Some(path) = &self.path else {
            return Ok(OutdatedMembers::default());
        };
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(OutdatedMembers::default());
            }
            Err(source) => {
                return Err(OutdatedFileError::Read {
                    path: path.clone(),
                    source,
                });
            }
        };
        let invalid = |reason: String| OutdatedFileError::Invalid {
            path: path.clone(),
            reason,
        };
        let on_disk: OnDisk = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        if on_disk.version != FORMAT_VERSION {
            return Err(invalid(format!(
                "format version {}, this ferrite-mirrord reads {FORMAT_VERSION}",
                on_disk.version
            )));
        }
        let mut members = BTreeMap::new();
        for (node, volumes) in on_disk.outdated {
            if usize::from(node) >= crate::gi::MAX_NODES {
                return Err(invalid(format!("node-id {node} is out of range 0-31")));
            }
            let mut known = BTreeMap::new();
            for (volume, uuids) in volumes {
                let mut generations = KnownGenerations::new();
                for uuid in uuids {
                    let value = u64::from_str_radix(&uuid, 16).map_err(|_| {
                        invalid(format!(
                            "node-id {node}, volume {volume}: '{uuid}' is not a UUID"
                        ))
                    })?;
                    generations.insert(Uuid::from_raw(value).generation());
                }
                known.insert(volume, generations);
            }
            members.insert(node, known);
        }
        Ok(OutdatedMembers { members })
    }

    /// Stores the record durably: once this returns, a restart finds it.
    pub fn store(&self, record: &OutdatedMembers) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let on_disk = OnDisk {
            version: FORMAT_VERSION,
            outdated: record
                .members
                .iter()
                .map(|(node, volumes)| {
                    let volumes = volumes
                        .iter()
                        .map(|(volume, known)| {
                            let uuids = known.iter().map(|value| format!("{value:016x}"));
                            (*volume, uuids.collect())
                        })
                        .collect();
                    (*node, volumes)
                })
                .collect(),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let temporary = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(&on_disk).expect("the record serializes"))?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// Removes the file (the resource is no longer on this node).
    pub fn remove(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENESIS: Uuid = Uuid::from_raw(0x0101_0202_0303_0404);
    const OLD: Uuid = Uuid::from_raw(0x1111_2222_3333_4444);
    const NEW: Uuid = Uuid::from_raw(0x5555_6666_7777_8888);

    /// A volume's generations: `current`, then `history`, newest first.
    fn set(current: Uuid, history: &[Uuid]) -> GenerationSet {
        let mut set = GenerationSet::just_created();
        set.current = current;
        for (slot, uuid) in set.history.iter_mut().zip(history) {
            *slot = *uuid;
        }
        set
    }

    fn known(volumes: &[(u16, &GenerationSet)]) -> BTreeMap<u16, KnownGenerations> {
        volumes
            .iter()
            .map(|(volume, set)| (*volume, generations_in(set).collect()))
            .collect()
    }

    #[test]
    fn a_record_goes_only_when_every_volume_is_up_to_date_on_a_generation_unknown_then() {
        let mut record = OutdatedMembers::default();
        // What this member knew when the Primary said it writes without node 1: the Primary
        // on OLD (after GENESIS), node 1's last State still on GENESIS — it adopted OLD since
        // without saying so.
        let primary = set(OLD, &[GENESIS]);
        assert!(record.record(1, known(&[(0, &primary), (1, &primary)])));
        assert!(
            !record.record(1, known(&[(0, &set(NEW, &[]))])),
            "the first record stays"
        );
        let up_to_date = |v0: &GenerationSet, v1: &GenerationSet| {
            [
                (0, DiskState::UpToDate, v0.clone()),
                (1, DiskState::UpToDate, v1.clone()),
            ]
        };
        let seen = |record: &mut OutdatedMembers, volumes: [(u16, DiskState, GenerationSet); 2]| {
            record.state_seen(1, volumes.iter().map(|(v, d, g)| (*v, *d, g)))
        };
        // Back on a generation known then, though it says UpToDate (it was cut off and never
        // heard): it stays Outdated — whether its last State said so or not.
        let on_old = set(OLD.with_primary(true), &[GENESIS]);
        assert!(!seen(&mut record, up_to_date(&on_old, &on_old)));
        assert!(!seen(&mut record, up_to_date(&set(GENESIS, &[]), &on_old)));
        // Resyncing: not yet.
        let on_new = set(NEW, &[OLD, GENESIS]);
        assert!(!seen(
            &mut record,
            [
                (0, DiskState::Inconsistent, on_new.clone()),
                (1, DiskState::UpToDate, on_new.clone())
            ]
        ));
        // One volume moved on, the other not.
        assert!(!seen(&mut record, up_to_date(&on_new, &on_old)));
        assert!(record.contains(1));
        // Both moved on.
        assert!(seen(&mut record, up_to_date(&on_new, &on_new)));
        assert!(!record.contains(1));
    }

    #[test]
    fn a_record_without_generations_takes_the_next_state_s() {
        let mut record = OutdatedMembers::default();
        record.record(2, BTreeMap::new());
        let on_old = set(OLD, &[GENESIS]);
        assert!(record.state_seen(2, [(0, DiskState::UpToDate, &on_old)]));
        assert!(record.contains(2), "filled, not dropped");
        assert!(!record.state_seen(2, [(0, DiskState::UpToDate, &on_old)]));
        assert!(!record.state_seen(2, [(0, DiskState::UpToDate, &set(GENESIS, &[]))]));
        assert!(record.state_seen(2, [(0, DiskState::UpToDate, &set(NEW, &[OLD]))]));
        assert!(record.is_empty());
    }

    #[test]
    fn a_primary_s_set_drops_whom_it_no_longer_names() {
        let mut record = OutdatedMembers::default();
        record.record(1, known(&[(0, &set(OLD, &[]))]));
        record.record(3, BTreeMap::new());
        assert!(!record.retain_named(&BTreeSet::from([1, 3])));
        assert!(record.retain_named(&BTreeSet::from([3])));
        assert_eq!(record.nodes().collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn the_file_round_trips_and_a_bad_one_is_an_error_not_an_empty_record() {
        let dir = tempfile::tempdir().unwrap();
        let file = OutdatedFile::at(dir.path().join("outdated").join("r0.json"));
        assert!(file.load().unwrap().is_empty(), "no file: nobody recorded");
        let mut record = OutdatedMembers::default();
        let primary = set(OLD.with_primary(true), &[GENESIS]);
        record.record(1, known(&[(0, &primary), (3, &set(NEW, &[]))]));
        record.record(4, BTreeMap::new());
        file.store(&record).unwrap();
        assert_eq!(file.load().unwrap(), record);
        assert_eq!(
            file.load().unwrap().members[&1][&0],
            BTreeSet::from([OLD.generation(), GENESIS.generation()]),
            "generations without the Primary bit"
        );
        file.store(&OutdatedMembers::default()).unwrap();
        assert!(file.load().unwrap().is_empty());

        let path = file.path().unwrap().to_path_buf();
        std::fs::write(
            &path,
            b"{\"version\":1,\"outdated\":{\"1\":{\"0\":[\"xyz\"]}}}",
        )
        .unwrap();
        let error = file.load().unwrap_err().to_string();
        assert!(error.contains("is not a UUID"), "{error}");
        std::fs::write(&path, b"{\"version\":7,\"outdated\":{}}").unwrap();
        let error = file.load().unwrap_err().to_string();
        assert!(error.contains("format version 7"), "{error}");
        std::fs::write(&path, b"{\"vers").unwrap();
        assert!(file.load().is_err());
        file.remove().unwrap();
        assert!(file.load().unwrap().is_empty());
        file.remove().unwrap();
    }
}
