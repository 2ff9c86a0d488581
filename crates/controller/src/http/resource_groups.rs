//! `/v1/resource-groups`, their volume groups, and spawn.

use axum::extract::State;
use axum::http::StatusCode;
use ferrite_types::ApiCallRc;
use ferrite_types::VolumeNumber;
use ferrite_types::api_call_rc::code;
use ferrite_types::rest;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::{ResourceGroupParam, VolumeNumberParam};
use super::query::{ListResourceGroups, Query};
use super::response::{
    ApiPath as Path, ApiResponse, Conflict, Internal, Invalid, JsonBody, NotFound, TooLarge,
};
use crate::app::{self, Context, Object, Operation, resource_groups, views};
use crate::core::Controller;

pub fn routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::new()
        .routes(routes!(list_resource_groups, create_resource_group))
        .routes(routes!(
            get_resource_group,
            modify_resource_group,
            delete_resource_group
        ))
        .routes(routes!(spawn))
        .routes(routes!(adjust))
        .routes(routes!(adjust_all))
        .routes(routes!(list_volume_groups, create_volume_group))
        .routes(routes!(
            get_volume_group,
            modify_volume_group,
            delete_volume_group
        ))
}

/// Lists resource groups.
#[utoipa::path(get, path = "/v1/resource-groups", tag = "resource-groups", params(ListResourceGroups),
    responses((status = 200, body = Vec<rest::ResourceGroup>), Invalid))]
async fn list_resource_groups(
    State(ctl): State<Controller>,
    query: Query<ListResourceGroups>,
) -> ApiResponse {
    ApiResponse::json(&ctl.read(|c| views::resource_groups(c, &query.filter)))
}

/// Creates a resource group.
#[utoipa::path(post, path = "/v1/resource-groups", tag = "resource-groups", request_body = rest::ResourceGroup,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_resource_group(
    State(ctl): State<Controller>,
    JsonBody(body): JsonBody<rest::ResourceGroup>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, _| resource_groups::create(c, &body)).await,
    )
}

/// Shows one resource group.
#[utoipa::path(get, path = "/v1/resource-groups/{resource_group}", tag = "resource-groups",
    params(ResourceGroupParam),
    responses((status = 200, body = rest::ResourceGroup), Invalid, NotFound))]
async fn get_resource_group(
    State(ctl): State<Controller>,
    Path(group): Path<String>,
) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| {
        resource_groups::find(
            &Context::new(Operation::Modify, Object::ResourceGroup),
            c,
            &group,
        )
        .map(views::resource_group)
    }))
}

/// Brings every resource definition of the group to the group's place count (the body's
/// filter overrides the group's): missing replicas are placed, surplus diskful ones removed.
#[utoipa::path(post, path = "/v1/resource-groups/{resource_group}/adjust", tag = "resource-groups",
    params(ResourceGroupParam), request_body = Option<rest::ResourceGroupAdjust>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn adjust(
    State(ctl): State<Controller>,
    Path(group): Path<String>,
    JsonBody(body): JsonBody<rest::ResourceGroupAdjust>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resource_groups::adjust(c, r, &group, &body))
            .await,
    )
}

/// `adjust` of every resource group.
#[utoipa::path(post, path = "/v1/resource-groups/adjustall", tag = "resource-groups",
    request_body = Option<rest::ResourceGroupAdjust>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn adjust_all(
    State(ctl): State<Controller>,
    JsonBody(body): JsonBody<rest::ResourceGroupAdjust>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resource_groups::adjust_all(c, r, &body))
            .await,
    )
}

/// Modifies a resource group.
#[utoipa::path(put, path = "/v1/resource-groups/{resource_group}", tag = "resource-groups",
    params(ResourceGroupParam), request_body = Option<rest::ResourceGroupModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_resource_group(
    State(ctl): State<Controller>,
    Path(group): Path<String>,
    JsonBody(body): JsonBody<rest::ResourceGroupModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resource_groups::modify(c, r, &group, &body))
            .await,
    )
}

/// Deletes a resource group no definition uses.
#[utoipa::path(delete, path = "/v1/resource-groups/{resource_group}", tag = "resource-groups",
    params(ResourceGroupParam), responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn delete_resource_group(
    State(ctl): State<Controller>,
    Path(group): Path<String>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| resource_groups::delete(c, &group)).await,
    )
}

/// Creates a resource definition from the group's template and places it.
#[utoipa::path(post, path = "/v1/resource-groups/{resource_group}/spawn", tag = "resource-groups",
    params(ResourceGroupParam), request_body = rest::ResourceGroupSpawn,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn spawn(
    State(ctl): State<Controller>,
    Path(group): Path<String>,
    JsonBody(body): JsonBody<rest::ResourceGroupSpawn>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, r| resource_groups::spawn(c, r, &group, &body))
            .await,
    )
}

/// Lists a resource group's volume groups.
#[utoipa::path(get, path = "/v1/resource-groups/{resource_group}/volume-groups", tag = "resource-groups",
    params(ResourceGroupParam),
    responses((status = 200, body = Vec<rest::VolumeGroup>), Invalid, NotFound))]
async fn list_volume_groups(
    State(ctl): State<Controller>,
    Path(group): Path<String>,
) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| {
        let found = resource_groups::find(
            &Context::new(Operation::Modify, Object::VolumeGroup),
            c,
            &group,
        )?;
        Ok(found
            .volume_groups
            .values()
            .map(views::volume_group)
            .collect::<Vec<_>>())
    }))
}

/// Adds a volume group.
#[utoipa::path(post, path = "/v1/resource-groups/{resource_group}/volume-groups", tag = "resource-groups",
    params(ResourceGroupParam), request_body = Option<rest::VolumeGroup>,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_volume_group(
    State(ctl): State<Controller>,
    Path(group): Path<String>,
    JsonBody(body): JsonBody<rest::VolumeGroup>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, _| resource_groups::create_volume_group(c, &group, &body))
            .await,
    )
}

/// Shows one volume group.
#[utoipa::path(get, path = "/v1/resource-groups/{resource_group}/volume-groups/{volume_number}", tag = "resource-groups",
    params(ResourceGroupParam, VolumeNumberParam),
    responses((status = 200, body = rest::VolumeGroup), Invalid, NotFound))]
async fn get_volume_group(
    State(ctl): State<Controller>,
    Path((group, number)): Path<(String, i64)>,
) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| {
        let ctx = Context::new(Operation::Modify, Object::VolumeGroup);
        let found = resource_groups::find(&ctx, c, &group)?;
        VolumeNumber::new(number)
            .ok()
            .and_then(|n| found.volume_groups.get(&n))
            .map(views::volume_group)
            .ok_or_else(|| {
                app::not_found(
                    &ctx,
                    code::FAIL_NOT_FOUND_VLM_GRP,
                    "Volume group",
                    number,
                    "List them with 'ferrite volume-group list'.",
                )
            })
    }))
}

/// Modifies a volume group.
#[utoipa::path(put, path = "/v1/resource-groups/{resource_group}/volume-groups/{volume_number}", tag = "resource-groups",
    params(ResourceGroupParam, VolumeNumberParam), request_body = Option<rest::VolumeGroupModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_volume_group(
    State(ctl): State<Controller>,
    Path((group, number)): Path<(String, i64)>,
    JsonBody(body): JsonBody<rest::VolumeGroupModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| resource_groups::modify_volume_group(c, &group, number, &body))
            .await,
    )
}

/// Deletes a volume group.
#[utoipa::path(delete, path = "/v1/resource-groups/{resource_group}/volume-groups/{volume_number}", tag = "resource-groups",
    params(ResourceGroupParam, VolumeNumberParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn delete_volume_group(
    State(ctl): State<Controller>,
    Path((group, number)): Path<(String, i64)>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| resource_groups::delete_volume_group(c, &group, number))
            .await,
    )
}
