//! The REST API: LINSTOR's v1 paths and JSON, routed with axum, documented with utoipa, and served
//! by `server`, which owns connections, request-head checks and the limits on slow clients.
//!
//! Every documented route is registered through `utoipa_axum` (the wildcard property route
//! through `ApiDoc`), so the OpenAPI document the controller serves (`GET /openapi.json`) is
//! generated from the same code that routes requests and cannot drift from it: query
//! parameters are parsed and documented from one table (`query`), path parameters carry their
//! names' schemas (`path`), error answers are listed per operation (`response::Invalid`, ...),
//! and the answers the HTTP server gives before any handler are added last. The committed copy
//! in `openapi/ferrite-controller.json` is checked against it by a test; schemathesis checks
//! the running controller against it (`crates/testkit/tests/schemathesis.rs`).

mod connections;
mod controller;
mod nodes;
mod path;
mod physical_storage;
mod pieces;
mod query;
mod resource_definitions;
mod resource_groups;
mod resources;
pub mod response;
pub mod server;
mod size_queries;
mod snapshots;
mod unserved;

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, RetCode};
use tracing::{Instrument, debug, info_span};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use self::response::ApiResponse;
use crate::core::Controller;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferrite controller",
        description = "LINSTOR-compatible REST API v1 of the Ferrite controller. Sizes are KiB. \
                       Mutating calls answer with a list of ApiCallRc entries.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "controller"), (name = "nodes"), (name = "storage-pools"), (name = "resource-groups"),
        (name = "resource-definitions"), (name = "resources"), (name = "snapshots"),
        (name = "error-reports")
    ),
    paths(controller::delete_property),
    // Error answers (`response::Invalid`, ...) refer to ApiCallRc by name, and the layer data
    // of volumes and definitions to the DRBD-layer and storage shapes.
    components(schemas(
        ApiCallRc,
        ferrite_types::rest::DrbdVolume,
        ferrite_types::rest::DrbdVolumeDefinition,
        ferrite_types::rest::DrbdResourceDefinitionLayer,
        ferrite_types::rest::StorageVolume
    ))
)]
struct ApiDoc;

/// Adds the answers the HTTP server gives before a request reaches any handler.
struct TransportAnswers;

impl utoipa::Modify for TransportAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let too_long = utoipa::openapi::ResponseBuilder::new()
            .description("The URL (path and query) is longer than the HTTP server reads (64 KiB).")
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .entry(StatusCode::URI_TOO_LONG.as_str().to_string())
                    .or_insert_with(|| too_long.clone().into());
            }
        }
    }
}

fn documented_routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(controller::routes())
        .merge(nodes::routes())
        .merge(resource_groups::routes())
        .merge(resource_definitions::routes())
        .merge(resources::routes())
        .merge(size_queries::routes())
        .merge(connections::routes())
        .merge(snapshots::routes())
        .merge(physical_storage::routes())
}

/// The OpenAPI document of the controller's REST API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = documented_routes().into_openapi();
    utoipa::Modify::modify(&TransportAnswers, &mut doc);
    doc.info.version = ferrite_types::REST_API_VERSION.to_string();
    doc
}

/// The OpenAPI document as committed: pretty JSON with a final newline.
pub fn openapi_json() -> String {
    let mut text = serde_json::to_string_pretty(&openapi()).expect("OpenAPI serializes");
    text.push('\n');
    text
}

/// The whole HTTP application.
pub fn router(controller: Controller) -> Router {
    let (router, _) = documented_routes().split_for_parts();
    let spec = openapi_json();
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    spec.clone(),
                )
            }),
        )
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(controller.clone(), observe))
        .with_state(controller)
}

async fn unknown_endpoint(request: Request) -> ApiResponse {
    if let Some(answer) = not_implemented(&request) {
        return answer;
    }
    ApiResponse::error(
        StatusCode::NOT_FOUND,
        ApiCallRc::new(
            RetCode::error(code::UNKNOWN_API_CALL),
            format!(
                "There is no REST endpoint {} {}.",
                request.method(),
                request.uri().path()
            ),
        )
        .correction("See GET /openapi.json for the endpoints this controller serves."),
    )
}

/// A path Ferrite serves with other methods answers 405, also where LINSTOR takes the method
/// (`PATCH /v1/error-reports`): the path exists, and the answer says which methods it takes.
async fn method_not_allowed(request: Request) -> ApiResponse {
    ApiResponse::error(
        StatusCode::METHOD_NOT_ALLOWED,
        ApiCallRc::new(
            RetCode::error(code::UNKNOWN_API_CALL),
            format!(
                "{} is not allowed on {}.",
                request.method(),
                request.uri().path()
            ),
        )
        .correction("See GET /openapi.json for the methods each endpoint takes."),
    )
}

/// 501 for a LINSTOR call Ferrite does not serve (`unserved`).
fn not_implemented(request: &Request) -> Option<ApiResponse> {
    let template = unserved::linstor_call(request.method().as_str(), request.uri().path())?;
    Some(ApiResponse::error(
        StatusCode::NOT_IMPLEMENTED,
        ApiCallRc::new(
            RetCode::error(code::FAIL_NOT_IMPLEMENTED),
            format!(
                "Ferrite does not implement LINSTOR's {} {template}.",
                request.method()
            ),
        )
        .cause(
            "The call belongs to a part of LINSTOR this controller does not have (schedules, \
             remotes and backups, external files, encryption, authentication, ...).",
        )
        .correction("See GET /openapi.json for the endpoints this controller serves."),
    ))
}

/// Logs and counts every request.
async fn observe(State(controller): State<Controller>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let span = info_span!("rest", %method, %path);
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        debug!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    controller
        .metrics()
        .record_request(method.as_str(), status.as_u16(), elapsed);
    response.into_response()
}
