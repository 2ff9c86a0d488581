//! Physical storage (`GET /v1/physical-storage`, `POST /v1/physical-storage/{node}`) and the
//! bodies of `node evacuate`, `node restore` and `resource-group adjust`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AutoSelectFilter, Props, lenient};
use crate::ProviderKind;

/// One unused disk of a node (`GET /v1/physical-storage/{node}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PhysicalStorageNode {
    /// Bytes.
    pub size: i64,
    pub rotational: bool,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
}

/// A disk as `GET /v1/physical-storage` groups them: by size and rotation, then by node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PhysicalStorageDevice {
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
}

/// Disks of one size and rotation, with the nodes that have them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PhysicalStorage {
    /// Bytes.
    pub size: i64,
    pub rotational: bool,
    pub nodes: BTreeMap<String, Vec<PhysicalStorageDevice>>,
}

/// The storage pool `create-device-pool --storage-pool` creates on the new device pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PhysicalStorageStoragePoolCreate {
    pub name: String,
    #[serde(skip_serializing_if = "Props::is_empty")]
    pub props: Props,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_space: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = super::schema::lenient_boolean)]
    pub external_locking: Option<bool>,
}

/// `POST /v1/physical-storage/{node}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PhysicalStorageCreate {
    pub provider_kind: ProviderKind,
    pub device_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raid_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = super::schema::lenient_boolean)]
    pub vdo_enable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdo_slab_size_kib: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdo_logical_size_kib: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_object"
    )]
    pub with_storage_pool: Option<PhysicalStorageStoragePoolCreate>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = super::schema::lenient_boolean)]
    pub sed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv_create_arguments: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vg_create_arguments: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lv_create_arguments: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zpool_create_arguments: Option<Vec<String>>,
}

/// `PUT /v1/nodes/{node}/evacuate`: where the node's resources may go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct NodeEvacuate {
    /// Nodes allowed as targets (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<String>>,
    /// Nodes not to use as targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub do_not_target: Option<Vec<String>>,
}

/// `PUT /v1/nodes/{node}/restore`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct NodeRestore {
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = super::schema::lenient_boolean)]
    pub delete_resources: Option<bool>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = super::schema::lenient_boolean)]
    pub delete_snapshots: Option<bool>,
}

/// `POST /v1/resource-groups/{rg}/adjust` and `POST /v1/resource-groups/adjustall`: the
/// group's filter, overridden by this one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ResourceGroupAdjust {
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_object"
    )]
    pub select_filter: Option<AutoSelectFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snap_names: Option<Vec<String>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = super::schema::lenient_boolean)]
    pub copy_all_snaps: Option<bool>,
}
