//! `/v1/resource-definitions`, their volume definitions, and autoplace.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferrite_types::ApiCallRc;
use ferrite_types::rest;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::{ResourceParam, VolumeNumberParam};
use super::pieces;
use super::query::{ListResourceDefinitions, Query, ShowResourceDefinition};
use super::response::{
    ApiPath as Path, ApiResponse, Conflict, Internal, Invalid, JsonBody, NotFound, TooLarge,
};
use crate::app::{Context, Object, Operation, resource_definitions, views};
use crate::core::Controller;

/// Definitions per piece of a list answered in pieces (`pieces`); a page of at most this many
/// is answered whole.
const DEFINITION_PIECE: usize = 1_000;

pub fn routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::new()
        .routes(routes!(
            list_resource_definitions,
            create_resource_definition
        ))
        .routes(routes!(
            get_resource_definition,
            modify_resource_definition,
            delete_resource_definition
        ))
        .routes(routes!(autoplace))
        .routes(routes!(list_volume_definitions, create_volume_definition))
        .routes(routes!(
            get_volume_definition,
            modify_volume_definition,
            delete_volume_definition
        ))
}

/// Lists resource definitions.
#[utoipa::path(get, path = "/v1/resource-definitions", tag = "resource-definitions",
    params(ListResourceDefinitions),
    responses((status = 200, body = Vec<rest::ResourceDefinition>), Invalid))]
async fn list_resource_definitions(
    State(ctl): State<Controller>,
    query: Query<ListResourceDefinitions>,
) -> Response {
    let (filter, with_volumes) = (query.parsed.filter, query.parsed.with_volume_definitions);
    if filter.limit != 0 && filter.limit <= DEFINITION_PIECE {
        return ApiResponse::json(
            &ctl.read(|c| views::resource_definitions(c, &filter, with_volumes)),
        )
        .into_response();
    }
    let mut cursor = views::DefinitionCursor::default();
    pieces::json_array(move |out| {
        ctl.read(|c| {
            views::resource_definitions_piece(
                c,
                &filter,
                with_volumes,
                &mut cursor,
                DEFINITION_PIECE,
                |rd| out.push(&rd),
            )
        });
    })
}

/// Creates a resource definition.
#[utoipa::path(post, path = "/v1/resource-definitions", tag = "resource-definitions",
    request_body = rest::ResourceDefinitionCreate,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_resource_definition(
    State(ctl): State<Controller>,
    JsonBody(body): JsonBody<rest::ResourceDefinitionCreate>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, _| resource_definitions::create(c, &body))
            .await,
    )
}

/// Shows one resource definition.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}", tag = "resource-definitions",
    params(ResourceParam, ShowResourceDefinition),
    responses((status = 200, body = rest::ResourceDefinition), Invalid, NotFound))]
async fn get_resource_definition(
    State(ctl): State<Controller>,
    Path(name): Path<String>,
    query: Query<ShowResourceDefinition>,
) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| {
        resource_definitions::find(
            &Context::new(Operation::Modify, Object::ResourceDefinition),
            c,
            &name,
        )
        .map(|rd| views::resource_definition(c, rd, query.with_volume_definitions))
    }))
}

/// Modifies a resource definition.
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}", tag = "resource-definitions",
    params(ResourceParam), request_body = Option<rest::ResourceDefinitionModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_resource_definition(
    State(ctl): State<Controller>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<rest::ResourceDefinitionModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| resource_definitions::modify(c, &name, &body))
            .await,
    )
}

/// Deletes a resource definition and all its resources.
#[utoipa::path(delete, path = "/v1/resource-definitions/{resource}", tag = "resource-definitions",
    params(ResourceParam), responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn delete_resource_definition(
    State(ctl): State<Controller>,
    Path(name): Path<String>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resource_definitions::delete(c, r, &name))
            .await,
    )
}

/// Places a resource definition's replicas by its group's filter and the request's overrides.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/autoplace", tag = "resource-definitions",
    params(ResourceParam), request_body = Option<rest::AutoPlaceRequest>,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn autoplace(
    State(ctl): State<Controller>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<rest::AutoPlaceRequest>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, r| resource_definitions::autoplace(c, r, &name, &body))
            .await,
    )
}

/// Lists a resource definition's volume definitions.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/volume-definitions", tag = "resource-definitions",
    params(ResourceParam),
    responses((status = 200, body = Vec<rest::VolumeDefinition>), Invalid, NotFound))]
async fn list_volume_definitions(
    State(ctl): State<Controller>,
    Path(name): Path<String>,
) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| {
        let rd = resource_definitions::find(
            &Context::new(Operation::Modify, Object::VolumeDefinition),
            c,
            &name,
        )?;
        Ok(rd
            .volume_definitions
            .values()
            .map(|vd| views::volume_definition(c, rd, vd))
            .collect::<Vec<_>>())
    }))
}

/// Adds a volume definition; every resource of the definition gets the volume.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/volume-definitions", tag = "resource-definitions",
    params(ResourceParam), request_body = rest::VolumeDefinitionCreate,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_volume_definition(
    State(ctl): State<Controller>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<rest::VolumeDefinitionCreate>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::CREATED,
        ctl.mutate(|c, r| resource_definitions::create_volume(c, r, &name, &body))
            .await,
    )
}

/// Shows one volume definition.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/volume-definitions/{volume_number}", tag = "resource-definitions",
    params(ResourceParam, VolumeNumberParam),
    responses((status = 200, body = rest::VolumeDefinition), Invalid, NotFound))]
async fn get_volume_definition(
    State(ctl): State<Controller>,
    Path((name, number)): Path<(String, i64)>,
) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| {
        let ctx = Context::new(Operation::Modify, Object::VolumeDefinition);
        let rd = resource_definitions::find(&ctx, c, &name)?;
        resource_definitions::find_volume(&ctx, rd, number)
            .map(|vd| views::volume_definition(c, rd, vd))
    }))
}

/// Modifies a volume definition; a larger `size_kib` grows the volume on every node.
#[utoipa::path(put, path = "/v1/resource-definitions/{resource}/volume-definitions/{volume_number}", tag = "resource-definitions",
    params(ResourceParam, VolumeNumberParam), request_body = Option<rest::VolumeDefinitionModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn modify_volume_definition(
    State(ctl): State<Controller>,
    Path((name, number)): Path<(String, i64)>,
    JsonBody(body): JsonBody<rest::VolumeDefinitionModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| resource_definitions::modify_volume(c, r, &name, number, &body))
            .await,
    )
}

/// Deletes a volume definition and the volume on every node.
#[utoipa::path(delete, path = "/v1/resource-definitions/{resource}/volume-definitions/{volume_number}", tag = "resource-definitions",
    params(ResourceParam, VolumeNumberParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
async fn delete_volume_definition(
    State(ctl): State<Controller>,
    Path((name, number)): Path<(String, i64)>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| resource_definitions::delete_volume(c, &name, number))
            .await,
    )
}
