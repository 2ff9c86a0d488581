//! Snapshots: a snapshot definition (LINSTOR's `SnapshotDefinition`) is a named point in time of
//! a resource definition, with the volume definitions it had then; a [`Snapshot`] is that point
//! in time taken on one node, from the node's backing volumes.
//!
//! Like resources, a snapshot goes in two phases: deleting it marks it
//! ([`SnapshotPhase::Deleting`]); its node deletes the backing snapshots and confirms; then the
//! controller forgets it, and the definition with its last snapshot (`crate::app::snapshots`).
//! Whether a snapshot was taken is what its node reports, not a stored flag: a node that lost
//! a snapshot shows it failed rather than a record saying it succeeded.

use ferrite_types::rest::Props;
use ferrite_types::{
    LayerKind, NodeName, ResourceGroupName, ResourceName, SnapshotName, StorPoolName, VolumeNumber,
};
use serde::{Deserialize, Serialize};

use super::{FLAG_DELETE, VecMap, has_flag};

/// A snapshot definition: one point in time of a resource definition, on one or more nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotDefinition {
    pub resource: ResourceName,
    pub name: SnapshotName,
    pub uuid: String,
    #[serde(default)]
    pub props: Props,
    /// `DELETE` while its snapshots are being deleted.
    #[serde(default)]
    pub flags: Vec<String>,
    /// The resource definition's stack when the snapshot was taken; a restore gets it.
    pub layer_stack: Vec<LayerKind>,
    /// The resource definition's group and properties when the snapshot was taken.
    pub resource_group: ResourceGroupName,
    #[serde(default)]
    pub resource_definition_props: Props,
    /// The volume definitions when the snapshot was taken.
    pub volume_definitions: Vec<SnapshotVolumeDefinition>,
    /// Milliseconds since the epoch.
    pub create_timestamp: i64,
    /// Where the snapshot of a replicated resource is in its cut; `DONE` for others.
    #[serde(default)]
    pub cut: CutPhase,
    #[serde(skip)]
    pub snapshots: VecMap<NodeName, Snapshot>,
}

/// Where a snapshot of a replicated resource is in its cut: one write boundary on every
/// replica (see `crate::cut`).
///
/// ```text
///   SUSPENDING ──every member holds its writes──▶ TAKING ──nodes took it──▶ DONE
///        └──a member could not hold them (or the controller restarted)──▶ ABANDONED
/// ```
///
/// While `SUSPENDING` or `TAKING`, every member of the resource is asked to hold its writes;
/// the diskful members take the snapshot only at `TAKING`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CutPhase {
    Suspending,
    Taking,
    #[default]
    Done,
    Abandoned,
}

impl CutPhase {
    /// Whether the members are to hold the resource's writes.
    pub fn holds_writes(self) -> bool {
        matches!(self, CutPhase::Suspending | CutPhase::Taking)
    }
}

impl SnapshotDefinition {
    pub fn is_deleting(&self) -> bool {
        has_flag(&self.flags, FLAG_DELETE)
    }

    pub fn volume_definition(&self, number: VolumeNumber) -> Option<&SnapshotVolumeDefinition> {
        self.volume_definitions.iter().find(|v| v.number == number)
    }
}

/// A volume definition as it was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotVolumeDefinition {
    pub number: VolumeNumber,
    /// The volume definition's UUID: the identity of the backing volumes the snapshot was
    /// taken of.
    pub identity: String,
    pub size_kib: u64,
    #[serde(default)]
    pub props: Props,
}

/// Where a snapshot is in its life.
///
/// ```text
///   Active ──delete──▶ Deleting ──node confirms──▶ (forgotten)
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SnapshotPhase {
    #[default]
    Active,
    Deleting,
}

/// A snapshot definition taken on one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub node: NodeName,
    /// A snapshot deleted and taken again under the same name is another one.
    pub uuid: String,
    /// The UUID of the resource on the node whose volumes were snapshotted.
    pub resource_uuid: String,
    /// The storage pool its volumes are in (the resource's pool when it was taken).
    pub storage_pool: StorPoolName,
    /// Milliseconds since the epoch.
    pub create_timestamp: i64,
    #[serde(default)]
    pub props: Props,
    #[serde(default)]
    pub phase: SnapshotPhase,
}

impl Snapshot {
    pub fn is_deleting(&self) -> bool {
        self.phase == SnapshotPhase::Deleting
    }
}

/// Where a resource's volumes come from when they are first created on its node: a snapshot of
/// another resource definition on the same node (`snapshot-restore-resource`, `clone`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSource {
    pub resource: ResourceName,
    pub snapshot: SnapshotName,
    /// The identities of the volumes the snapshot was taken of, by volume number: recorded
    /// here so that the resource's desired state stays the same when the snapshot is deleted.
    #[serde(default)]
    pub volumes: Vec<RestoreVolume>,
    /// The replication generation the restored volumes start at when the definition is
    /// replicated: one per restore, so every diskful member restored by it — all from the same
    /// successful cut of the same snapshot, so with the same data — starts UpToDate and in sync
    /// with the others without a resync. A member placed later has no restore source and gets
    /// a full sync from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// A rollback of a replicated resource, while it is under way.
///
/// ```text
///   (none) ──rollback──▶ every member down ──nodes rolled back──▶ (none)
///                                              └─a node failed──▶ that node's member down
/// ```
///
/// A member named in `down` is kept down (its node's desired state says `inactive`), so no
/// engine runs on a volume while it is rolled back, and a member whose rollback failed does
/// not come back with data the others do not have. Another rollback ends it; a member placed
/// later (another UUID) is not held by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackState {
    pub snapshot: SnapshotName,
    /// The replication generation the rolled-back volumes start at (see
    /// [`RestoreSource::generation`]).
    pub generation: u64,
    /// The UUIDs of the members kept down.
    pub down: Vec<String>,
}

/// One volume of a [`RestoreSource`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreVolume {
    pub number: VolumeNumber,
    pub identity: String,
}
