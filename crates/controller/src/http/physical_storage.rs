//! `/v1/physical-storage`: the nodes' unused disks, and making a device pool of some.

use axum::extract::State;
use axum::http::StatusCode;
use ferrite_proto::NodeCommand;
use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, NodeName, rest};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::NodeParam;
use super::query::{ListPhysicalStorage, Query};
use super::response::{
    ApiPath as Path, ApiResponse, Conflict, Internal, Invalid, JsonBody, NotFound, TooLarge,
};
use crate::app::physical_storage::{self, CREATE};
use crate::app::{Context, Failure, Object, Operation, nodes};
use crate::core::Controller;

pub fn routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::new()
        .routes(routes!(list_physical_storage))
        .routes(routes!(node_physical_storage, create_device_pool))
}

/// Asks `node`'s satellite for its unused disks.
async fn devices_of(
    ctl: &Controller,
    node: &NodeName,
) -> Result<Vec<ferrite_proto::PhysicalDevice>, String> {
    let answer = ctl
        .satellites()
        .command(node, NodeCommand::ListPhysicalStorage)
        .await?;
    physical_storage::parse_devices(&answer)
}

/// The unused disks (no partitions, holders, file system or mount point; at least 1 GiB) of
/// every online node, grouped by size and rotation as LINSTOR groups them.
#[utoipa::path(get, path = "/v1/physical-storage", tag = "physical-storage", params(ListPhysicalStorage),
    responses((status = 200, body = Vec<rest::PhysicalStorage>), Invalid, Internal))]
async fn list_physical_storage(
    State(ctl): State<Controller>,
    query: Query<ListPhysicalStorage>,
) -> ApiResponse {
    let nodes = ctl.read_with_runtime(physical_storage::online_nodes);
    let mut per_node = Vec::new();
    for node in nodes {
        match devices_of(&ctl, &node).await {
            Ok(devices) => per_node.push((node, devices)),
            Err(why) => tracing::warn!(%node, %why, "physical storage not listed"),
        }
    }
    ApiResponse::json(&query.filter.page(physical_storage::grouped(&per_node)))
}

/// The unused disks of one node.
#[utoipa::path(get, path = "/v1/physical-storage/{node}", tag = "physical-storage", params(NodeParam),
    responses((status = 200, body = Vec<rest::PhysicalStorageNode>), Invalid, NotFound, Conflict, Internal))]
async fn node_physical_storage(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
) -> ApiResponse {
    let ctx = Context::new(Operation::Modify, Object::Node);
    let found = ctl.read(|c| nodes::find(&ctx, c, &node).map(|n| n.name.clone()));
    let node = match found {
        Ok(node) => node,
        Err(failure) => return ApiResponse::read::<()>(Err(failure)),
    };
    ApiResponse::read(
        devices_of(&ctl, &node)
            .await
            .map(|devices| {
                devices
                    .iter()
                    .map(physical_storage::node_view)
                    .collect::<Vec<_>>()
            })
            .map_err(|why| {
                Failure::from(
                    ctx.error(
                        code::FAIL_NOT_CONNECTED,
                        format!("Node '{node}' did not list its disks."),
                    )
                    .cause(why),
                )
            }),
    )
}

/// Makes a device pool on a node's unused disks: LVM (`pvcreate`, `vgcreate <pool>`),
/// LVM_THIN (the same in volume group `linstor_<pool>`, then the thin pool `<pool>`), ZFS and
/// ZFS_THIN (`zpool create <pool>`); with `with_storage_pool`, also a storage pool on it.
#[utoipa::path(post, path = "/v1/physical-storage/{node}", tag = "physical-storage", params(NodeParam),
    request_body = rest::PhysicalStorageCreate,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_device_pool(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<rest::PhysicalStorageCreate>,
) -> ApiResponse {
    ApiResponse::entries(StatusCode::CREATED, create(&ctl, &node, &body).await)
}

async fn create(
    ctl: &Controller,
    node: &str,
    body: &rest::PhysicalStorageCreate,
) -> Result<Vec<ApiCallRc>, Failure> {
    let request = ctl.read_with_runtime(|c, r| physical_storage::check_create(c, r, node, body))?;
    let made = ctl
        .satellites()
        .command(
            &request.node,
            NodeCommand::CreateDevicePool(request.spec.clone()),
        )
        .await
        .map_err(|why| {
            Failure::from(
                CREATE
                    .error(
                        code::FAIL_STOR_POOL_CONFIGURATION_ERROR,
                        format!(
                            "Device pool '{}' could not be created on node '{}'.",
                            request.spec.pool_name, request.node
                        ),
                    )
                    .cause(why)
                    .correction(
                        "See the cause; 'ferrite physical-storage list' shows the unused disks.",
                    ),
            )
        })?;
    let mut replies = vec![
        CREATE
            .created(format!(
                "Device pool '{made}' ({}) created on node '{}' from {}.",
                request.spec.provider_kind,
                request.node,
                request.spec.devices.join(", ")
            ))
            .obj_ref("Node", request.node.as_str()),
    ];
    if let Some(pool) = &request.storage_pool {
        replies.extend(
            super::nodes::create_storage_pool_checked(ctl, request.node.as_str(), pool).await?,
        );
    }
    Ok(replies)
}
