//! Snapshots, restores, rollbacks and clones of resource definitions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Props, lenient, schema};
use crate::kinds::LayerKind;

/// A snapshot definition with its snapshots on each node (`GET /v1/view/snapshots`); also the
/// body of `POST …/snapshots`, where only `name` and `nodes` are read (and `resource_name` in
/// `actions/snapshot/multi`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"name": "snap1"}))]
pub struct Snapshot {
    #[schema(value_type = crate::SnapshotName)]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schema(value_type = crate::ResourceName)]
    pub resource_name: String,
    #[schema(value_type = Vec<crate::NodeName>)]
    pub nodes: Vec<String>,
    #[schema(schema_with = schema::props)]
    pub props: Props,
    #[schema(schema_with = schema::props)]
    pub snapshot_definition_props: Props,
    #[schema(schema_with = schema::props)]
    pub resource_definition_props: Props,
    /// `SUCCESSFUL` once every node took it, `FAILED_DEPLOYMENT` when a node could not,
    /// `DELETE` while it is being deleted.
    pub flags: Vec<String>,
    #[serde(deserialize_with = "lenient::objects")]
    pub volume_definitions: Vec<SnapshotVolumeDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(deserialize_with = "lenient::objects")]
    pub snapshots: Vec<SnapshotNode>,
}

/// A volume definition as it was when the snapshot was taken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SnapshotVolumeDefinition {
    #[schema(schema_with = schema::volume_number)]
    pub volume_number: i32,
    /// KiB.
    pub size_kib: i64,
    #[schema(schema_with = schema::props)]
    pub snapshot_volume_definition_props: Props,
    #[schema(schema_with = schema::props)]
    pub volume_definition_props: Props,
}

/// A snapshot on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SnapshotNode {
    #[schema(value_type = crate::SnapshotName)]
    pub snapshot_name: String,
    #[schema(value_type = crate::NodeName)]
    pub node_name: String,
    /// Milliseconds since the epoch.
    pub create_timestamp: i64,
    pub flags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[schema(schema_with = schema::props)]
    pub snapshot_props: Props,
    #[schema(schema_with = schema::props)]
    pub resource_props: Props,
    #[serde(deserialize_with = "lenient::objects")]
    pub snapshot_volumes: Vec<SnapshotVolumeNode>,
}

/// A snapshot volume on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SnapshotVolumeNode {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[schema(schema_with = schema::volume_number)]
    pub vlm_nr: i32,
    /// `Ferrite/SnapshotMethod`: how the node took it (e.g. `reflink copy`, `thin snapshot`).
    #[schema(schema_with = schema::props)]
    pub props: Props,
    #[schema(schema_with = schema::props)]
    pub snapshot_volume_props: Props,
    #[schema(schema_with = schema::props)]
    pub volume_props: Props,
    /// `Successful`, `Failed: <why>`, `Incomplete` (the node has not reported it) or
    /// `Deleting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// `POST /v1/actions/snapshot/multi`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"snapshots": [{"name": "snap1", "resource_name": "res1"}]}))]
pub struct CreateMultiSnapshotRequest {
    #[serde(deserialize_with = "lenient::objects")]
    pub snapshots: Vec<Snapshot>,
}

/// `POST …/snapshot-restore-resource/{snapshot}` and `…/snapshot-restore-volume-definition/…`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"to_resource": "res2"}))]
pub struct SnapshotRestore {
    #[schema(value_type = crate::ResourceName, required = true)]
    pub to_resource: String,
    #[schema(value_type = Vec<crate::NodeName>)]
    pub nodes: Vec<String>,
    /// Original storage pool name to the pool to restore into; Ferrite restores on the nodes
    /// and in the pools the snapshot is in, so only an empty map (or names mapped to
    /// themselves) is taken.
    pub stor_pool_rename: std::collections::BTreeMap<String, String>,
}

/// `POST …/snapshot-rollback/{snapshot}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SnapshotRollback {
    /// For ZFS pools: `rollback` (fails if newer snapshots exist), `clone` or `dynamic`;
    /// Ferrite runs `zfs rollback` and refuses `clone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(rollback|clone|dynamic)$")]
    pub zfs_rollback_strategy: Option<String>,
}

/// `POST /v1/resource-definitions/{rd}/clone`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"name": "res1-clone"}))]
pub struct ResourceDefinitionCloneRequest {
    #[schema(value_type = crate::ResourceName)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub use_zfs_clone: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_list: Option<Vec<LayerKind>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_passphrases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::ResourceGroupName>)]
    pub resource_group: Option<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(schema_with = schema::props)]
    pub override_props: Props,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = schema::property_keys)]
    pub delete_props: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = schema::property_namespaces)]
    pub delete_namespaces: Vec<String>,
    /// KiB per volume to grow the clone's volumes to; 0 keeps a volume's size.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_sizes: Vec<i64>,
}

/// The answer to a clone request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceDefinitionCloneStarted {
    /// Where the clone's status is read.
    pub location: String,
    pub source_name: String,
    pub clone_name: String,
    #[serde(default)]
    pub messages: Vec<crate::ApiCallRc>,
}

/// `GET /v1/resource-definitions/{rd}/clone/{clone}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceDefinitionCloneStatus {
    /// `CLONING` while volumes are copied, `COMPLETE` when every volume is there, `FAILED`
    /// when one could not be made.
    #[schema(pattern = "^(CLONING|COMPLETE|FAILED)$")]
    pub status: String,
}
