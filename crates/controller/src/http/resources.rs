//! Resources of a definition: create, delete, toggle-disk (both forms), make-available, and
//! `/v1/view/resources`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferrite_types::api_call_rc::{code, mask};
use ferrite_types::rest::{self, ToggleDiskOperation};
use ferrite_types::{ApiCallRc, NodeName, RetCode, StorPoolName};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::{
    DisklessPoolParam, FromNodeParam, NodeParam, ResourceParam, StoragePoolParam, VolumeNumberParam,
};
use super::pieces;
use super::query::{DeleteResource, ListResources, Query};
use super::response::{
    ApiPath as Path, ApiResponse, Conflict, Internal, Invalid, JsonArrayBody, JsonBody, NotFound,
    TooLarge,
};
use crate::app::resources::{self, Toggle};
use crate::app::{self, Context, Object, Operation, resource_definitions, views};
use crate::core::Controller;

/// Resources per piece of a view answered in pieces (`pieces`): about 800 KiB of JSON, built
/// in milliseconds under the graph's read lock. A page of at most this many is answered whole.
const VIEW_PIECE: usize = 1_000;

pub fn routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::new()
        .routes(routes!(list_resources, create_resources))
        .routes(routes!(
            get_resource,
            create_resource_on_node,
            modify_resource,
            delete_resource
        ))
        .routes(routes!(list_volumes))
        .routes(routes!(get_volume))
        .routes(routes!(make_available))
        .routes(routes!(activate_resource))
        .routes(routes!(deactivate_resource))
        .routes(routes!(toggle_disk))
        .routes(routes!(toggle_diskful))
        .routes(routes!(toggle_diskful_pool))
        .routes(routes!(toggle_diskless))
        .routes(routes!(toggle_diskless_pool))
        .routes(routes!(migrate_disk))
        .routes(routes!(migrate_disk_pool))
        .routes(routes!(view_resources))
        .routes(routes!(recreate_missing_volume))
}

/// Creates a missing volume anew and empty: the node made it, it has disappeared, and its data
/// is accepted as lost (Ferrite's own endpoint). Without this, a node never creates again a
/// volume it made, so a storage that is only late (a file system not mounted yet) is found
/// again instead of hidden by an empty volume.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/resources/{node}/volumes/{volume_number}/recreate-missing",
    tag = "resources", params(ResourceParam, NodeParam, VolumeNumberParam),
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Internal))]
async fn recreate_missing_volume(
    State(ctl): State<Controller>,
    Path((name, node, number)): Path<(String, String, i64)>,
) -> ApiResponse {
    let command = ctl.read(|c| app::orphans::recreate_command(c, &name, &node, number));
    let result = match command {
        Ok((node, command)) => {
            let done = ctl.satellites().command(&node, command).await;
            app::orphans::command_answer(app::orphans::RECREATE_CONTEXT, code::CREATED, &node, done)
        }
        Err(failure) => Err(failure),
    };
    ApiResponse::entries(StatusCode::CREATED, result)
}

/// Lists the resources of a definition.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/resources", tag = "resources",
    params(ResourceParam), responses((status = 200, body = Vec<rest::ResourceWithVolumes>), Invalid, NotFound))]
async fn list_resources(State(ctl): State<Controller>, Path(name): Path<String>) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let rd = resource_definitions::find(
            &Context::new(Operation::Modify, Object::Resource),
            c,
            &name,
        )?;
        Ok(views::resources_of(c, r, rd, None))
    }))
}

/// Places a resource definition on the named nodes (an array; all or nothing).
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/resources", tag = "resources",
    params(ResourceParam), request_body = Vec<rest::ResourceCreate>,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_resources(
    State(ctl): State<Controller>,
    Path(name): Path<String>,
    JsonArrayBody(body): JsonArrayBody<rest::ResourceCreate>,
) -> ApiResponse {
    if let Err(refusal) = body
        .iter()
        .try_for_each(|element| names_match(&element.resource, &name, None))
    {
        return refusal;
    }
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, r| resources::create(c, r, &name, &body))
            .await,
    )
}

/// Shows one resource.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/resources/{node}", tag = "resources",
    params(ResourceParam, NodeParam), responses((status = 200, body = rest::ResourceWithVolumes), Invalid, NotFound))]
async fn get_resource(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let ctx = Context::new(Operation::Modify, Object::Resource);
        let rd = resource_definitions::find(&ctx, c, &name)?;
        let resource = resources::find(&ctx, c, rd, &node)?;
        Ok(views::resource(c, rd, resource, r.get(&resource.node)))
    }))
}

/// Places a resource definition on one node.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/resources/{node}", tag = "resources",
    params(ResourceParam, NodeParam), request_body = Option<rest::ResourceCreate>,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_resource_on_node(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
    JsonBody(mut body): JsonBody<rest::ResourceCreate>,
) -> ApiResponse {
    if let Err(refusal) = names_match(&body.resource, &name, Some(&node)) {
        return refusal;
    }
    body.resource.node_name = node;
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, r| resources::create(c, r, &name, std::slice::from_ref(&body)))
            .await,
    )
}

/// Modifies a resource's properties.
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/resources/{node}", tag = "resources",
    params(ResourceParam, NodeParam), request_body = Option<rest::ResourceModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_resource(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
    JsonBody(body): JsonBody<rest::ResourceModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| resources::modify(c, &name, &node, &body))
            .await,
    )
}

/// Deletes a resource; the satellite deletes its backing volumes.
#[utoipa::path(delete, path = "/v1/resource-definitions/{resource}/resources/{node}", tag = "resources",
    params(ResourceParam, NodeParam, DeleteResource),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn delete_resource(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
    query: Query<DeleteResource>,
) -> ApiResponse {
    let keep_tiebreaker = query.keep_tiebreaker;
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resources::delete(c, r, &name, &node, keep_tiebreaker))
            .await,
    )
}

/// Lists the volumes of a resource.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/resources/{node}/volumes", tag = "resources",
    params(ResourceParam, NodeParam), responses((status = 200, body = Vec<rest::Volume>), Invalid, NotFound))]
async fn list_volumes(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let ctx = Context::new(Operation::Modify, Object::Volume);
        let rd = resource_definitions::find(&ctx, c, &name)?;
        let resource = resources::find(&ctx, c, rd, &node)?;
        Ok(views::resource(c, rd, resource, r.get(&resource.node)).volumes)
    }))
}

/// Shows one volume of a resource.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/resources/{node}/volumes/{volume_number}", tag = "resources",
    params(ResourceParam, NodeParam, VolumeNumberParam),
    responses((status = 200, body = rest::Volume), Invalid, NotFound))]
async fn get_volume(
    State(ctl): State<Controller>,
    Path((name, node, number)): Path<(String, String, i64)>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let ctx = Context::new(Operation::Modify, Object::Volume);
        let rd = resource_definitions::find(&ctx, c, &name)?;
        let resource = resources::find(&ctx, c, rd, &node)?;
        resource_definitions::find_volume(&ctx, rd, number)?;
        Ok(views::resource(c, rd, resource, r.get(&resource.node))
            .volumes
            .into_iter()
            .find(|v| i64::from(v.volume_number) == number)
            .expect("the volume definition exists"))
    }))
}

/// Activates a deactivated resource: its node brings its volumes up again.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/resources/{node}/activate", tag = "resources",
    params(ResourceParam, NodeParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn activate_resource(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resources::set_active(c, r, &name, &node, true))
            .await,
    )
}

/// Deactivates a resource (LINSTOR's `INACTIVE`): its node keeps its volumes but brings them
/// down. Refused while the resource is in use.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/resources/{node}/deactivate", tag = "resources",
    params(ResourceParam, NodeParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn deactivate_resource(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resources::set_active(c, r, &name, &node, false))
            .await,
    )
}

/// Makes a resource available on a node: diskless by default, diskful on request; nothing to do
/// if it is there already.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/resources/{node}/make-available", tag = "resources",
    params(ResourceParam, NodeParam), request_body = Option<rest::ResourceMakeAvailable>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn make_available(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
    JsonBody(body): JsonBody<rest::ResourceMakeAvailable>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resources::make_available(c, r, &name, &node, &body))
            .await,
    )
}

/// Refuses a resource body that names another resource or node than the path: the client
/// would not get what it asked for.
fn names_match(
    resource: &rest::Resource,
    path_resource: &str,
    path_node: Option<&str>,
) -> Result<(), ApiResponse> {
    let mismatch = |field: &str, body: &str, path: &str| {
        Err(ApiResponse::error(
            StatusCode::BAD_REQUEST,
            ApiCallRc::new(
                RetCode::error(code::FAIL_INVLD_REQUEST | mask::CRT | mask::RSC),
                format!("The body names {field} '{body}', the path '{path}'."),
            )
            .cause(format!("resource.{field} must name what the path names"))
            .correction(format!(
                "Leave resource.{field} out of the body or make it match the path."
            )),
        ))
    };
    if !resource.name.is_empty() && !resource.name.eq_ignore_ascii_case(path_resource) {
        return mismatch("name", &resource.name, path_resource);
    }
    if let Some(node) = path_node
        && !resource.node_name.is_empty()
        && !resource.node_name.eq_ignore_ascii_case(node)
    {
        return mismatch("node_name", &resource.node_name, node);
    }
    Ok(())
}

/// Refuses a malformed pool or node name in a toggle before anything looks at it, also where
/// the operation would not use it (a diskless resource asked to become diskless again).
fn check_toggle_names(toggle: &Toggle) -> Result<(), ApiResponse> {
    let ctx = Context::new(Operation::Modify, Object::Resource);
    let refuse = |failure: app::Failure| ApiResponse::entries(StatusCode::OK, Err(failure));
    if let Some(pool) = &toggle.storage_pool {
        app::parse_name::<StorPoolName>(&ctx, code::FAIL_INVLD_STOR_POOL_NAME, pool)
            .map_err(refuse)?;
    }
    if let Some(node) = &toggle.migrate_from {
        app::parse_name::<NodeName>(&ctx, code::FAIL_INVLD_NODE_NAME, node).map_err(refuse)?;
    }
    Ok(())
}

async fn toggle(ctl: &Controller, name: &str, node: &str, toggle: Toggle) -> ApiResponse {
    if let Err(refusal) = check_toggle_names(&toggle) {
        return refusal;
    }
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resources::toggle_disk(c, r, name, node, &toggle))
            .await,
    )
}

/// Turns a resource diskful or diskless (API 1.28 body form).
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk", tag = "resources",
    params(ResourceParam, NodeParam), request_body = rest::ToggleDiskRequest,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn toggle_disk(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
    JsonBody(body): JsonBody<rest::ToggleDiskRequest>,
) -> ApiResponse {
    let request = Toggle {
        operation: body.operation,
        storage_pool: body.storage_pool,
        migrate_from: body.migrate_from,
    };
    toggle(&ctl, &name, &node, request).await
}

/// Gives a diskless resource a disk in the default pool (legacy URL form).
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk/diskful", tag = "resources",
    params(ResourceParam, NodeParam), responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn toggle_diskful(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
) -> ApiResponse {
    toggle(
        &ctl,
        &name,
        &node,
        Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskful,
            storage_pool: None,
            migrate_from: None,
        },
    )
    .await
}

/// Gives a diskless resource a disk in the named pool (legacy URL form).
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk/diskful/{storagepool}", tag = "resources",
    params(ResourceParam, NodeParam, StoragePoolParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn toggle_diskful_pool(
    State(ctl): State<Controller>,
    Path((name, node, pool)): Path<(String, String, String)>,
) -> ApiResponse {
    toggle(
        &ctl,
        &name,
        &node,
        Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskful,
            storage_pool: Some(pool),
            migrate_from: None,
        },
    )
    .await
}

/// Removes a resource's disk (legacy URL form).
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk/diskless", tag = "resources",
    params(ResourceParam, NodeParam), responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn toggle_diskless(
    State(ctl): State<Controller>,
    Path((name, node)): Path<(String, String)>,
) -> ApiResponse {
    toggle(
        &ctl,
        &name,
        &node,
        Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskless,
            storage_pool: None,
            migrate_from: None,
        },
    )
    .await
}

/// Removes a resource's disk, into the named diskless pool (legacy URL form).
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk/diskless/{disklesspool}", tag = "resources",
    params(ResourceParam, NodeParam, DisklessPoolParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn toggle_diskless_pool(
    State(ctl): State<Controller>,
    Path((name, node, pool)): Path<(String, String, String)>,
) -> ApiResponse {
    toggle(
        &ctl,
        &name,
        &node,
        Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskless,
            storage_pool: Some(pool),
            migrate_from: None,
        },
    )
    .await
}

/// Moves a disk from another node to this one (legacy URL form).
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/resources/{node}/migrate-disk/{fromnode}", tag = "resources",
    params(ResourceParam, NodeParam, FromNodeParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn migrate_disk(
    State(ctl): State<Controller>,
    Path((name, node, from)): Path<(String, String, String)>,
) -> ApiResponse {
    toggle(
        &ctl,
        &name,
        &node,
        Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskful,
            storage_pool: None,
            migrate_from: Some(from),
        },
    )
    .await
}

/// Moves a disk from another node to this one, into the named pool (legacy URL form).
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/resources/{node}/migrate-disk/{fromnode}/{storagepool}", tag = "resources",
    params(ResourceParam, NodeParam, FromNodeParam, StoragePoolParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn migrate_disk_pool(
    State(ctl): State<Controller>,
    Path((name, node, from, pool)): Path<(String, String, String, String)>,
) -> ApiResponse {
    toggle(
        &ctl,
        &name,
        &node,
        Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskful,
            storage_pool: Some(pool),
            migrate_from: Some(from),
        },
    )
    .await
}

/// Lists every resource with its volumes (`resource list` and `volume list`).
#[utoipa::path(get, path = "/v1/view/resources", tag = "resources", params(ListResources),
    responses((status = 200, body = Vec<rest::ResourceWithVolumes>), Invalid))]
async fn view_resources(State(ctl): State<Controller>, query: Query<ListResources>) -> Response {
    let filter = query.parsed.filter;
    if filter.limit != 0 && filter.limit <= VIEW_PIECE {
        return ctl
            .read_with_runtime(|c, r| ApiResponse::json_array(views::resources_iter(c, r, &filter)))
            .into_response();
    }
    let mut cursor = views::ViewCursor::default();
    pieces::json_array(move |out| {
        ctl.read_with_runtime(|c, r| {
            let piece = views::next_resources(c, &filter, &mut cursor, VIEW_PIECE);
            out.push_built(&piece, |&(rd, placed)| {
                views::resource(c, rd, placed, r.get(&placed.node))
            });
        });
    })
}
