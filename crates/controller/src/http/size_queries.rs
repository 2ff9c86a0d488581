//! Size queries of resource groups, the space report (`app::size_info`) and the sync status
//! of a resource definition (`app::sync_status`).

use axum::extract::State;
use ferrite_types::rest;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::{ResourceGroupParam, ResourceParam};
use super::response::{ApiPath as Path, ApiResponse, Invalid, JsonBody, NotFound, TooLarge};
use crate::app::{size_info, sync_status};
use crate::core::Controller;

pub fn routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::new()
        .routes(routes!(query_size_info))
        .routes(routes!(query_all_size_info))
        .routes(routes!(query_max_volume_size))
        .routes(routes!(space_report))
        .routes(routes!(sync_status))
}

/// Whether every diskful replica of the definition is in sync.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/sync-status", tag = "resource-definitions",
    params(ResourceParam),
    responses((status = 200, body = rest::SyncStatus), Invalid, NotFound))]
async fn sync_status(State(ctl): State<Controller>, Path(resource): Path<String>) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| sync_status::sync_status(c, r, &resource)))
}

/// How large a volume the group can place now, and how much it can place in all.
#[utoipa::path(post, path = "/v1/resource-groups/{resource_group}/query-size-info", tag = "resource-groups",
    params(ResourceGroupParam), request_body = Option<rest::QuerySizeInfoRequest>,
    responses((status = 200, body = rest::QuerySizeInfoResponse), Invalid, NotFound, TooLarge))]
async fn query_size_info(
    State(ctl): State<Controller>,
    Path(group): Path<String>,
    JsonBody(body): JsonBody<rest::QuerySizeInfoRequest>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| size_info::query_size_info(c, r, &group, &body)))
}

/// `query-size-info` for every resource group.
#[utoipa::path(post, path = "/v1/queries/resource-groups/query-all-size-info", tag = "resource-groups",
    request_body = Option<rest::QuerySizeInfoRequest>,
    responses((status = 200, body = rest::QueryAllSizeInfoResponse), Invalid, TooLarge))]
async fn query_all_size_info(
    State(ctl): State<Controller>,
    JsonBody(body): JsonBody<rest::QuerySizeInfoRequest>,
) -> ApiResponse {
    ApiResponse::json(&ctl.read_with_runtime(|c, r| size_info::query_all_size_info(c, r, &body)))
}

/// The largest volume the group could place, per storage pool name.
#[utoipa::path(get, path = "/v1/resource-groups/{resource_group}/query-max-volume-size", tag = "resource-groups",
    params(ResourceGroupParam),
    responses((status = 200, body = rest::MaxVolumeSizes), Invalid, NotFound))]
async fn query_max_volume_size(
    State(ctl): State<Controller>,
    Path(group): Path<String>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| size_info::query_max_volume_size(c, r, &group)))
}

/// The space of every storage pool, as text.
#[utoipa::path(get, path = "/v1/space-report", tag = "controller",
    responses((status = 200, body = rest::SpaceReport)))]
async fn space_report(State(ctl): State<Controller>) -> ApiResponse {
    ApiResponse::json(&ctl.read_with_runtime(size_info::space_report))
}
