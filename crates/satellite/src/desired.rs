//! The desired state on disk: `desired-state.json`, the snapshot, and `desired-state.journal`,
//! one record per delta (or batch of deltas) taken, holding the resources it named as the node
//! now wants them (see `crate::journal`). So persisting a delta costs what it names, however
//! many resources the node holds. A full state is written as a new snapshot.
//!
//! A record is itself a delta ([`DesiredState`] with its resources and removals), replayed the
//! way the reconciler takes deltas ([`Change`], applied in place); loading gives the state the
//! reconciler had.
//! A `desired-state.json` from before the journal loads as it is.
//!
//! What the state means and when it is taken is the reconciler's; this module only keeps it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ferrite_proto::DesiredState;
use serde::{Deserialize, Serialize};

use crate::journal::Journal;
use crate::persist::PersistError;
use crate::reconciler::{Change, NodeState};

/// The format of `desired-state.json` this build writes.
pub const DESIRED_STATE_FORMAT: u32 = 2;

/// `desired-state.json` as written, borrowing the state (written as the [`DesiredState`] it
/// stands for).
#[derive(Serialize)]
struct PersistedDesiredStateRef<'a> {
    format_version: u32,
    node_uuid: &'a str,
    desired: &'a NodeState,
}

/// `desired-state.json`.
#[derive(Debug, Serialize, Deserialize)]
struct PersistedDesiredState {
    format_version: u32,
    /// The UUID of the node registration the state came from; a node registered anew (after
    /// `node lost`) has another, and its first state may leave the old volumes as orphans.
    #[serde(default)]
    node_uuid: String,
    desired: DesiredState,
}

/// One journal record: the state's new stamp and pools, the resources the deltas named as they
/// are now, and those they removed.
#[derive(Debug, Serialize, Deserialize)]
struct DesiredChange {
    node_uuid: String,
    delta: DesiredState,
}

/// The desired state as loaded: the state and the node registration it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistedState {
    pub desired: NodeState,
    pub node_uuid: String,
}

/// The desired state's snapshot and journal, open for writing.
#[derive(Debug)]
pub struct DesiredStateFile {
    journal: Journal,
}

impl DesiredStateFile {
    /// Loads the state at `path` (`desired-state.json`, and its journal); `None` if the node
    /// never had one.
    pub fn load(path: PathBuf) -> Result<(DesiredStateFile, Option<PersistedState>), PersistError> {
        let loaded = Journal::open::<PersistedDesiredState, DesiredChange>(path)?;
        let mut state = loaded.snapshot.map(|p| PersistedState {
            desired: NodeState::from_full(p.desired),
            node_uuid: p.node_uuid,
        });
        for change in loaded.records {
            let desired = match state.take() {
                Some(mut current) => {
                    current.desired.apply(Change::from_delta(change.delta));
                    current.desired
                }
                None => NodeState::from_full(change.delta),
            };
            state = Some(PersistedState {
                desired,
                node_uuid: change.node_uuid,
            });
        }
        Ok((
            DesiredStateFile {
                journal: loaded.journal,
            },
            state,
        ))
    }

    /// Makes the whole state `desired` durable, as a new snapshot.
    pub fn save_whole(&mut self, node_uuid: &str, desired: &NodeState) -> Result<(), PersistError> {
        self.journal.compact(&PersistedDesiredStateRef {
            format_version: DESIRED_STATE_FORMAT,
            node_uuid,
            desired,
        })
    }

    /// Makes `desired` durable where it differs from the state last saved only in the
    /// resources `named` (by `resource_key`), its stamp and its pools: one journal record, or a
    /// new snapshot when the journal has grown enough.
    pub fn save_named(
        &mut self,
        node_uuid: &str,
        desired: &NodeState,
        named: &BTreeSet<String>,
    ) -> Result<(), PersistError> {
        if self.journal.wants_compaction() {
            return self.save_whole(node_uuid, desired);
        }
        let mut resources = Vec::new();
        let mut removed_resources = Vec::new();
        for key in named {
            match desired.resource_by_key(key) {
                Some(resource) => resources.push(resource.clone()),
                None => removed_resources.push(key.clone()),
            }
        }
        self.journal.append(&DesiredChange {
            node_uuid: node_uuid.to_string(),
            delta: DesiredState {
                epoch: desired.epoch,
                generation: desired.generation,
                base_generation: None,
                storage_pools: desired.storage_pools.clone(),
                resources,
                removed_resources,
            },
        })
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }
}
