//! Storage pools.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Props, schema};
use crate::api_call_rc::ApiCallRc;
use crate::kinds::ProviderKind;

/// A storage pool on one node. `POST /v1/nodes/{node}/storage-pools` takes it;
/// `GET /v1/view/storage-pools` returns a list with capacities filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "storage_pool_name": "pool_ssd",
    "provider_kind": "FILE_THIN",
    "props": {"StorDriver/StorPoolName": "/srv/ferrite/ssd"}
}))]
pub struct StoragePool {
    #[schema(value_type = crate::StorPoolName)]
    pub storage_pool_name: String,
    /// The node in the path; a request may leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::NodeName>)]
    pub node_name: Option<String>,
    pub provider_kind: ProviderKind,
    #[serde(default)]
    #[schema(schema_with = schema::props)]
    pub props: Props,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub static_traits: BTreeMap<String, String>,
    /// KiB, as last reported by the satellite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_capacity: Option<i64>,
    /// KiB, as last reported by the satellite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_capacity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_space_mgr_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Problems the satellite reported with this pool.
    #[serde(default)]
    pub reports: Vec<ApiCallRc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_snapshots: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_space: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_locking: Option<bool>,
}
