//! `/v1/nodes`, their net interfaces and storage pools, and `/v1/view/storage-pools`.

use axum::extract::State;
use axum::http::StatusCode;
use ferrite_types::ApiCallRc;
use ferrite_types::api_call_rc::code;
use ferrite_types::rest;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::{NetInterfaceParam, NodeParam, StoragePoolParam};
use super::query::{ListNodeStoragePools, ListNodes, ListStoragePools, Query};
use super::response::{
    ApiPath as Path, ApiResponse, Conflict, Internal, Invalid, JsonBody, NotFound, TooLarge,
};
use crate::app::{self, Context, Failure, Object, Operation, storage_pools, views};
use crate::core::Controller;

pub fn routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::new()
        .routes(routes!(list_nodes, create_node))
        .routes(routes!(get_node, modify_node, delete_node))
        .routes(routes!(lost_node))
        .routes(routes!(evacuate_node))
        .routes(routes!(restore_node))
        .routes(routes!(reconnect_node))
        .routes(routes!(list_net_interfaces, create_net_interface))
        .routes(routes!(
            get_net_interface,
            modify_net_interface,
            delete_net_interface
        ))
        .routes(routes!(list_node_storage_pools, create_storage_pool))
        .routes(routes!(
            get_storage_pool,
            modify_storage_pool,
            delete_storage_pool
        ))
        .routes(routes!(view_storage_pools))
        .routes(routes!(list_orphans))
        .routes(routes!(delete_orphan))
        .routes(routes!(view_orphans))
}

/// Lists the orphans of a node: backing volumes it keeps that nothing wants and nobody asked
/// to delete (Ferrite's own endpoint).
#[utoipa::path(get, path = "/v1/nodes/{node}/orphans", tag = "nodes", params(NodeParam),
    responses((status = 200, body = Vec<rest::Orphan>), Invalid, NotFound))]
async fn list_orphans(State(ctl): State<Controller>, Path(node): Path<String>) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let found = app::nodes::find(&Context::new(Operation::Modify, Object::Node), c, &node)?;
        Ok(app::orphans::list(c, r, Some(&found.name)))
    }))
}

/// Lists the orphans of every node (Ferrite's own endpoint).
#[utoipa::path(get, path = "/v1/view/orphans", tag = "nodes",
    responses((status = 200, body = Vec<rest::Orphan>)))]
async fn view_orphans(State(ctl): State<Controller>) -> ApiResponse {
    ApiResponse::json(&ctl.read_with_runtime(|c, r| app::orphans::list(c, r, None)))
}

/// Deletes one orphan on its node, named exactly as listed (Ferrite's own endpoint). The only
/// way an orphan is ever deleted.
#[utoipa::path(post, path = "/v1/nodes/{node}/orphans/delete", tag = "nodes", params(NodeParam),
    request_body = rest::OrphanRef,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, TooLarge, Internal))]
async fn delete_orphan(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<rest::OrphanRef>,
) -> ApiResponse {
    let command = ctl.read_with_runtime(|c, r| app::orphans::delete_command(c, r, &node, &body));
    let result = match command {
        Ok((node, command)) => {
            let done = ctl.satellites().command(&node, command).await;
            app::orphans::command_answer(app::orphans::DELETE_CONTEXT, code::DELETED, &node, done)
        }
        Err(failure) => Err(failure),
    };
    ApiResponse::entries(StatusCode::OK, result)
}

/// Lists nodes.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", params(ListNodes),
    responses((status = 200, body = Vec<rest::Node>), Invalid))]
async fn list_nodes(State(ctl): State<Controller>, query: Query<ListNodes>) -> ApiResponse {
    ApiResponse::json(&ctl.read_with_runtime(|c, r| views::nodes(c, r, &query.filter)))
}

/// Registers a node; the controller then connects to its satellite.
#[utoipa::path(post, path = "/v1/nodes", tag = "nodes", request_body = rest::Node,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_node(
    State(ctl): State<Controller>,
    JsonBody(body): JsonBody<rest::Node>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, _| app::nodes::create(c, &body)).await,
    )
}

/// Shows one node.
#[utoipa::path(get, path = "/v1/nodes/{node}", tag = "nodes", params(NodeParam),
    responses((status = 200, body = rest::Node), Invalid, NotFound))]
async fn get_node(State(ctl): State<Controller>, Path(node): Path<String>) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let found = app::nodes::find(&Context::new(Operation::Modify, Object::Node), c, &node)?;
        Ok(views::node(found, r.get(&found.name)))
    }))
}

/// Modifies a node's type or properties.
#[utoipa::path(put, path = "/v1/nodes/{node}", tag = "nodes", params(NodeParam),
    request_body = Option<rest::NodeModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_node(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<rest::NodeModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| app::nodes::modify(c, &node, &body)).await,
    )
}

/// Evacuates a node: its replicated resources get replacements elsewhere and are deleted once
/// those are in sync; the node takes no new resources (LINSTOR's `EVACUATE`).
#[utoipa::path(put, path = "/v1/nodes/{node}/evacuate", tag = "nodes", params(NodeParam),
    request_body = Option<rest::NodeEvacuate>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn evacuate_node(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<rest::NodeEvacuate>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| app::evacuation::evacuate(c, r, &node, &body))
            .await,
    )
}

/// Ends a node's evacuation: it takes resources again; those not yet moved stay.
#[utoipa::path(put, path = "/v1/nodes/{node}/restore", tag = "nodes", params(NodeParam),
    request_body = Option<rest::NodeRestore>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn restore_node(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<rest::NodeRestore>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| app::evacuation::restore(c, &node, &body))
            .await,
    )
}

/// Deletes a node: at once without resources, else marked, with its resources, until its
/// satellite confirms their deletion.
#[utoipa::path(delete, path = "/v1/nodes/{node}", tag = "nodes", params(NodeParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn delete_node(State(ctl): State<Controller>, Path(node): Path<String>) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| app::nodes::delete(c, r, &node)).await,
    )
}

/// Forgets a node that is gone for good, with its resources, without contacting it.
#[utoipa::path(delete, path = "/v1/nodes/{node}/lost", tag = "nodes", params(NodeParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn lost_node(State(ctl): State<Controller>, Path(node): Path<String>) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| app::nodes::lost(c, r, &node)).await,
    )
}

/// Drops and re-establishes the connection to a node's satellite.
#[utoipa::path(put, path = "/v1/nodes/{node}/reconnect", tag = "nodes", params(NodeParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound))]
async fn reconnect_node(State(ctl): State<Controller>, Path(node): Path<String>) -> ApiResponse {
    let ctx = Context::new(Operation::Modify, Object::Node);
    let found = ctl.read(|c| app::nodes::find(&ctx, c, &node).map(|n| n.name.clone()));
    let result = match found {
        Ok(name) => {
            ctl.satellites().reconnect(&name);
            Ok(vec![
                ctx.modified(format!("Reconnecting to node '{name}'."))
                    .obj_ref("Node", name.as_str()),
            ])
        }
        Err(failure) => Err(failure),
    };
    ApiResponse::entries(StatusCode::OK, result)
}

/// Lists a node's network interfaces.
#[utoipa::path(get, path = "/v1/nodes/{node}/net-interfaces", tag = "nodes", params(NodeParam),
    responses((status = 200, body = Vec<rest::NetInterface>), Invalid, NotFound))]
async fn list_net_interfaces(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let found = app::nodes::find(
            &Context::new(Operation::Modify, Object::NetInterface),
            c,
            &node,
        )?;
        Ok(views::node(found, r.get(&found.name)).net_interfaces)
    }))
}

/// Adds a network interface to a node.
#[utoipa::path(post, path = "/v1/nodes/{node}/net-interfaces", tag = "nodes", params(NodeParam),
    request_body = rest::NetInterface,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_net_interface(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<rest::NetInterface>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, _| app::nodes::create_net_interface(c, &node, &body))
            .await,
    )
}

/// Shows one network interface.
#[utoipa::path(get, path = "/v1/nodes/{node}/net-interfaces/{netif}", tag = "nodes", params(NodeParam, NetInterfaceParam),
    responses((status = 200, body = rest::NetInterface), Invalid, NotFound))]
async fn get_net_interface(
    State(ctl): State<Controller>,
    Path((node, netif)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let ctx = Context::new(Operation::Modify, Object::NetInterface);
        let found = app::nodes::find(&ctx, c, &node)?;
        views::node(found, r.get(&found.name))
            .net_interfaces
            .into_iter()
            .find(|i| i.name.eq_ignore_ascii_case(&netif))
            .ok_or_else(|| {
                app::not_found(
                    &ctx,
                    code::FAIL_NOT_FOUND_NET_IF,
                    "Network interface",
                    &netif,
                    "List them with 'ferrite node interface list'.",
                )
            })
    }))
}

/// Modifies a network interface; changing the active one reconnects the satellite.
#[utoipa::path(put, path = "/v1/nodes/{node}/net-interfaces/{netif}", tag = "nodes", params(NodeParam, NetInterfaceParam),
    request_body = rest::NetInterface,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_net_interface(
    State(ctl): State<Controller>,
    Path((node, netif)): Path<(String, String)>,
    JsonBody(body): JsonBody<rest::NetInterface>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| app::nodes::modify_net_interface(c, &node, &netif, &body))
            .await,
    )
}

/// Deletes a network interface that is not the active one.
#[utoipa::path(delete, path = "/v1/nodes/{node}/net-interfaces/{netif}", tag = "nodes", params(NodeParam, NetInterfaceParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn delete_net_interface(
    State(ctl): State<Controller>,
    Path((node, netif)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| app::nodes::delete_net_interface(c, &node, &netif))
            .await,
    )
}

/// Lists a node's storage pools.
#[utoipa::path(get, path = "/v1/nodes/{node}/storage-pools", tag = "storage-pools",
    params(NodeParam, ListNodeStoragePools),
    responses((status = 200, body = Vec<rest::StoragePool>), Invalid, NotFound))]
async fn list_node_storage_pools(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
    query: Query<ListNodeStoragePools>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let found = app::nodes::find(
            &Context::new(Operation::Create, Object::StoragePool),
            c,
            &node,
        )?;
        let mut filter = query.filter.clone();
        filter.nodes = vec![found.name.to_string()];
        Ok(views::storage_pools(c, r, &filter))
    }))
}

/// Creates a storage pool on a node, after its satellite confirmed the backing pool is usable.
#[utoipa::path(post, path = "/v1/nodes/{node}/storage-pools", tag = "storage-pools", params(NodeParam),
    request_body = rest::StoragePool,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_storage_pool(
    State(ctl): State<Controller>,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<rest::StoragePool>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::CREATED,
        create_storage_pool_checked(&ctl, &node, &body).await,
    )
}

pub(super) async fn create_storage_pool_checked(
    ctl: &Controller,
    node: &str,
    body: &rest::StoragePool,
) -> Result<Vec<ApiCallRc>, Failure> {
    let ctx = Context::new(Operation::Create, Object::StoragePool);
    let checked = ctl.read_with_runtime(|c, r| {
        let capabilities = app::nodes::find(&ctx, c, node)
            .ok()
            .and_then(|n| r.get(&n.name))
            .and_then(|n| n.capabilities.as_ref());
        storage_pools::check_create(c, node, body, capabilities)
    })?;
    let mut warnings = Vec::new();
    match ctl.satellites().check_pool(&checked.node, checked.spec()).await {
        Ok(report) if report.errors.is_empty() => {}
        Ok(report) => {
            return Err(ctx
                .error(
                    code::FAIL_STOR_POOL_CONFIGURATION_ERROR,
                    format!("Storage pool '{}' cannot be used on node '{}'.", checked.pool.name, checked.node),
                )
                .cause(report.errors.join("; "))
                .correction(format!(
                    "Create the backing pool '{}' on '{}' first, or name an existing one.",
                    checked.pool.backing_pool_name(),
                    checked.node
                ))
                .into());
        }
        Err(reason) => warnings.push(
            ctx.warn(
                code::WARN_NOT_CONNECTED,
                format!("Storage pool '{}' on '{}' could not be checked: {reason}.", checked.pool.name, checked.node),
            )
            .correction("The satellite checks the pool when it connects; watch 'ferrite storage-pool list' for errors.")
            .obj_ref("Node", checked.node.as_str()),
        ),
    }
    ctl.mutate(move |c, _| storage_pools::create(c, checked, warnings))
        .await
}

/// Shows one storage pool.
#[utoipa::path(get, path = "/v1/nodes/{node}/storage-pools/{storagepool}", tag = "storage-pools",
    params(NodeParam, StoragePoolParam),
    responses((status = 200, body = rest::StoragePool), Invalid, NotFound))]
async fn get_storage_pool(
    State(ctl): State<Controller>,
    Path((node, pool)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let ctx = Context::new(Operation::Modify, Object::StoragePool);
        let found = app::nodes::find(&ctx, c, &node)?;
        let found_pool = storage_pools::find(&ctx, found, &pool)?;
        Ok(views::storage_pool(found, found_pool, r.get(&found.name)))
    }))
}

/// Modifies a storage pool's properties.
#[utoipa::path(put, path = "/v1/nodes/{node}/storage-pools/{storagepool}", tag = "storage-pools",
    params(NodeParam, StoragePoolParam), request_body = Option<rest::PropsModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_storage_pool(
    State(ctl): State<Controller>,
    Path((node, pool)): Path<(String, String)>,
    JsonBody(body): JsonBody<rest::PropsModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| storage_pools::modify(c, &node, &pool, &body))
            .await,
    )
}

/// Deletes an unused storage pool.
#[utoipa::path(delete, path = "/v1/nodes/{node}/storage-pools/{storagepool}", tag = "storage-pools",
    params(NodeParam, StoragePoolParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn delete_storage_pool(
    State(ctl): State<Controller>,
    Path((node, pool)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| storage_pools::delete(c, &node, &pool))
            .await,
    )
}

/// Lists the storage pools of every node, with capacities.
#[utoipa::path(get, path = "/v1/view/storage-pools", tag = "storage-pools", params(ListStoragePools),
    responses((status = 200, body = Vec<rest::StoragePool>), Invalid))]
async fn view_storage_pools(
    State(ctl): State<Controller>,
    query: Query<ListStoragePools>,
) -> ApiResponse {
    ApiResponse::json(&ctl.read_with_runtime(|c, r| views::storage_pools(c, r, &query.filter)))
}
