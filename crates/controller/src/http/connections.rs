//! `/v1/node-connections`, `/v1/resource-definitions/{rd}/resource-connections` and
//! `/v1/key-value-store` (`app::connections`, `app::key_value_stores`).

use axum::extract::State;
use axum::http::StatusCode;
use ferrite_types::ApiCallRc;
use ferrite_types::rest::{self, PropsModify};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::{InstanceParam, NodeAParam, NodeBParam, ResourceParam};
use super::query::{ListNodeConnections, Query};
use super::response::{
    ApiPath as Path, ApiResponse, Conflict, Internal, Invalid, JsonBody, NotFound, TooLarge,
};
use crate::app::{connections, key_value_stores};
use crate::core::Controller;

pub fn routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::new()
        .routes(routes!(list_node_connections))
        .routes(routes!(modify_node_connection))
        .routes(routes!(list_resource_connections))
        .routes(routes!(
            show_resource_connection,
            modify_resource_connection
        ))
        .routes(routes!(list_key_value_stores))
        .routes(routes!(
            show_key_value_store,
            modify_key_value_store,
            delete_key_value_store
        ))
}

/// Lists node connections with properties.
#[utoipa::path(get, path = "/v1/node-connections", tag = "nodes", params(ListNodeConnections),
    responses((status = 200, body = Vec<rest::NodeConnection>), Invalid, NotFound))]
async fn list_node_connections(
    State(ctl): State<Controller>,
    query: Query<ListNodeConnections>,
) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| {
        connections::list_node_connections(c, query.node_a.as_deref(), query.node_b.as_deref())
    }))
}

/// Sets or deletes properties of the connection between two nodes.
#[utoipa::path(put, path = "/v1/node-connections/{node_a}/{node_b}", tag = "nodes",
    params(NodeAParam, NodeBParam), request_body = Option<PropsModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_node_connection(
    State(ctl): State<Controller>,
    Path((node_a, node_b)): Path<(String, String)>,
    JsonBody(body): JsonBody<PropsModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| connections::modify_node_connection(c, &node_a, &node_b, &body))
            .await,
    )
}

/// Lists a resource definition's resource connections with properties.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/resource-connections",
    tag = "resource-definitions", params(ResourceParam),
    responses((status = 200, body = Vec<rest::ResourceConnection>), Invalid, NotFound))]
async fn list_resource_connections(
    State(ctl): State<Controller>,
    Path(resource): Path<String>,
) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| connections::list_resource_connections(c, &resource)))
}

/// Shows the connection between a definition's resources on two nodes.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/resource-connections/{node_a}/{node_b}",
    tag = "resource-definitions", params(ResourceParam, NodeAParam, NodeBParam),
    responses((status = 200, body = Vec<rest::ResourceConnection>), Invalid, NotFound))]
async fn show_resource_connection(
    State(ctl): State<Controller>,
    Path((resource, node_a, node_b)): Path<(String, String, String)>,
) -> ApiResponse {
    ApiResponse::read(
        ctl.read(|c| connections::show_resource_connection(c, &resource, &node_a, &node_b)),
    )
}

/// Sets or deletes properties of the connection between a definition's resources on two nodes.
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/resource-connections/{node_a}/{node_b}",
    tag = "resource-definitions", params(ResourceParam, NodeAParam, NodeBParam),
    request_body = Option<PropsModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_resource_connection(
    State(ctl): State<Controller>,
    Path((resource, node_a, node_b)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<PropsModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| {
            connections::modify_resource_connection(c, &resource, &node_a, &node_b, &body)
        })
        .await,
    )
}

/// Lists the key-value store's instances.
#[utoipa::path(get, path = "/v1/key-value-store", tag = "controller",
    responses((status = 200, body = Vec<rest::KeyValueStore>)))]
async fn list_key_value_stores(State(ctl): State<Controller>) -> ApiResponse {
    ApiResponse::json(&ctl.read(key_value_stores::list))
}

/// Shows one key-value store instance (a list of one, as LINSTOR answers).
#[utoipa::path(get, path = "/v1/key-value-store/{instance}", tag = "controller",
    params(InstanceParam),
    responses((status = 200, body = Vec<rest::KeyValueStore>), Invalid, NotFound))]
async fn show_key_value_store(
    State(ctl): State<Controller>,
    Path(instance): Path<String>,
) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| key_value_stores::show(c, &instance)))
}

/// Sets or deletes keys of a key-value store instance, creating it if needed.
#[utoipa::path(put, path = "/v1/key-value-store/{instance}", tag = "controller",
    params(InstanceParam), request_body = Option<PropsModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_key_value_store(
    State(ctl): State<Controller>,
    Path(instance): Path<String>,
    JsonBody(body): JsonBody<PropsModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| key_value_stores::modify(c, &instance, &body))
            .await,
    )
}

/// Deletes a key-value store instance.
#[utoipa::path(delete, path = "/v1/key-value-store/{instance}", tag = "controller",
    params(InstanceParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn delete_key_value_store(
    State(ctl): State<Controller>,
    Path(instance): Path<String>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| key_value_stores::delete(c, &instance))
            .await,
    )
}
