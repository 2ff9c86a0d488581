//! Size queries: how large a volume a resource group could still place, and the space report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AutoSelectFilter, lenient};
use crate::ApiCallRc;

/// `POST /v1/resource-groups/{rg}/query-size-info` and
/// `POST /v1/queries/resource-groups/query-all-size-info`: the group's filter, overridden by
/// this one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct QuerySizeInfoRequest {
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_object"
    )]
    pub select_filter: Option<AutoSelectFilter>,
    /// Accepted for LINSTOR's clients; Ferrite computes every answer afresh.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    pub ignore_cache_older_than_sec: Option<i32>,
}

/// One pool the next spawn would use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuerySizeInfoSpawnResult {
    pub node_name: String,
    pub stor_pool_name: String,
    pub stor_pool_oversubscription_ratio: f64,
    pub stor_pool_free_capacity_oversubscription_ratio: f64,
    pub stor_pool_total_capacity_oversubscription_ratio: f64,
}

/// What a group can still place, KiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuerySizeInfoSpaceInfo {
    /// The largest volume the next spawn could place: the least free space among the pools it
    /// would use; 0 when it cannot place.
    pub max_vlm_size_in_kib: i64,
    /// How much could be placed in all, `place_count` replicas at a time, in the pools the
    /// filter allows.
    pub available_size_in_kib: i64,
    /// The same for the pools' total capacity.
    pub capacity_in_kib: i64,
    pub default_max_oversubscription_ratio: f64,
    pub max_oversubscription_ratio: f64,
    pub max_free_capacity_oversubscription_ratio: f64,
    pub max_total_capacity_oversubscription_ratio: f64,
    pub next_spawn_result: Vec<QuerySizeInfoSpawnResult>,
}

/// The answer of `query-size-info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuerySizeInfoResponse {
    pub space_info: QuerySizeInfoSpaceInfo,
    /// Why the next spawn could not place, if it could not.
    pub reports: Vec<ApiCallRc>,
}

/// The answer of `query-all-size-info`: one entry per resource group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryAllSizeInfoResponse {
    pub result: BTreeMap<String, QuerySizeInfoResponse>,
    pub reports: Vec<ApiCallRc>,
}

/// One storage pool name a volume could be placed in, with the largest size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MaxVolumeSizeCandidate {
    pub storage_pool: String,
    pub max_volume_size_kib: i64,
    pub node_names: Vec<String>,
    pub all_thin: bool,
}

/// The answer of `GET /v1/resource-groups/{rg}/query-max-volume-size`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MaxVolumeSizes {
    pub candidates: Vec<MaxVolumeSizeCandidate>,
    pub default_max_oversubscription_ratio: f64,
}

/// The answer of `GET /v1/space-report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpaceReport {
    #[serde(rename = "reportText")]
    pub report_text: String,
}

/// The answer of `GET /v1/resource-definitions/{rd}/sync-status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SyncStatus {
    /// Every diskful replica of every volume is UpToDate (always, without a replication layer).
    pub synced_on_all: bool,
}
