//! Controller-wide endpoints: version, properties, error reports, health, metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrite_types::ApiCallRc;
use ferrite_types::api_call_rc::code;
use ferrite_types::rest;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::{PropertyKeyParam, ReportIdParam};
use super::response::{
    ApiPath as Path, ApiResponse, Conflict, Internal, Invalid, JsonBody, NotFound, TooLarge,
};
use crate::app::{self, Context, Object, Operation, controller_props, error_reports};
use crate::core::Controller;

pub fn routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::new()
        .routes(routes!(version))
        .routes(routes!(list_properties, set_properties))
        .routes(routes!(list_error_reports))
        .routes(routes!(get_error_report, delete_error_report))
        .routes(routes!(backup_database))
        .routes(routes!(health))
        .routes(routes!(metrics))
        // Property keys contain '/', so the key is a wildcard segment; the OpenAPI document
        // lists the route through `super::ApiDoc`, as utoipa_axum cannot route a wildcard.
        .route(
            "/v1/controller/properties/{*key}",
            axum::routing::delete(delete_property),
        )
}

/// The controller's version and the REST API version clients gate features on.
#[utoipa::path(get, path = "/v1/controller/version", tag = "controller",
    responses((status = 200, body = rest::ControllerVersion)))]
async fn version() -> ApiResponse {
    ApiResponse::json(&rest::ControllerVersion {
        version: crate::VERSION.to_string(),
        git_hash: Some(
            option_env!("FERRITE_GIT_HASH")
                .unwrap_or("unknown")
                .to_string(),
        ),
        build_time: option_env!("FERRITE_BUILD_TIME")
            .unwrap_or("unknown")
            .to_string(),
        rest_api_version: ferrite_types::REST_API_VERSION.to_string(),
    })
}

/// Writes a consistent copy of the store (committed changes still in the WAL included) to a
/// new file on the controller's host. Restore it with `ferrite-controller --restore FILE`.
#[utoipa::path(post, path = "/v1/controller/backup/db", tag = "controller",
    request_body = rest::DatabaseBackupRequest,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, Conflict, TooLarge, Internal))]
async fn backup_database(
    State(ctl): State<Controller>,
    JsonBody(body): JsonBody<rest::DatabaseBackupRequest>,
) -> ApiResponse {
    let ctx = Context::new(Operation::Create, Object::Controller);
    let target = std::path::PathBuf::from(&body.backup_name);
    let result = match ctl.backup(target).await {
        Ok(info) => Ok(vec![ctx.created(format!(
            "Backup of the controller's store written to {} ({} bytes, revision {}, epoch {}).",
            info.path.display(),
            info.bytes,
            info.revision,
            info.epoch
        ))]),
        Err(e) => {
            use ferrite_store::backup::BackupError;
            let (status_code, correction) = match &e {
                BackupError::RelativePath(_) => (
                    code::FAIL_INVLD_REQUEST,
                    "Give an absolute path on the controller's host.",
                ),
                BackupError::Exists(_) => (
                    code::FAIL_INVLD_REQUEST,
                    "Choose a file name that does not exist yet.",
                ),
                _ => (
                    code::FAIL_UNKNOWN_ERROR,
                    "Check that the directory exists and is writable by the controller.",
                ),
            };
            Err(ctx
                .error(status_code, "The store could not be backed up.")
                .cause(e.to_string())
                .correction(correction)
                .into())
        }
    };
    ApiResponse::entries(StatusCode::CREATED, result)
}

/// Controller-wide properties.
#[utoipa::path(get, path = "/v1/controller/properties", tag = "controller",
    responses((status = 200, body = rest::schema::PropertyMap)))]
async fn list_properties(State(ctl): State<Controller>) -> ApiResponse {
    ApiResponse::json(&ctl.read(|c| c.props.clone()))
}

/// Sets or deletes controller properties.
#[utoipa::path(post, path = "/v1/controller/properties", tag = "controller",
    request_body = Option<rest::PropsModify>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn set_properties(
    State(ctl): State<Controller>,
    JsonBody(body): JsonBody<rest::PropsModify>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| controller_props::modify(c, &body)).await,
    )
}

/// Deletes a controller property.
#[utoipa::path(delete, path = "/v1/controller/properties/{key}", tag = "controller",
    params(PropertyKeyParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, Internal))]
pub(super) async fn delete_property(
    State(ctl): State<Controller>,
    Path(key): Path<String>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| controller_props::delete(c, &key)).await,
    )
}

/// Lists error reports (without their text).
#[utoipa::path(get, path = "/v1/error-reports", tag = "error-reports",
    responses((status = 200, body = Vec<rest::ErrorReport>)))]
async fn list_error_reports(State(ctl): State<Controller>) -> ApiResponse {
    ApiResponse::json(&ctl.read(|c| {
        c.error_reports
            .values()
            .map(|r| error_reports::view(r, false))
            .collect::<Vec<_>>()
    }))
}

/// Shows one error report with its text.
#[utoipa::path(get, path = "/v1/error-reports/{reportid}", tag = "error-reports", params(ReportIdParam),
    responses((status = 200, body = Vec<rest::ErrorReport>), Invalid, NotFound))]
async fn get_error_report(State(ctl): State<Controller>, Path(id): Path<String>) -> ApiResponse {
    ApiResponse::read(ctl.read(|c| {
        c.error_reports
            .get(&id)
            .map(|r| vec![error_reports::view(r, true)])
            .ok_or_else(|| report_not_found(&id))
    }))
}

/// Deletes an error report.
#[utoipa::path(delete, path = "/v1/error-reports/{reportid}", tag = "error-reports",
    params(ReportIdParam),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Internal))]
async fn delete_error_report(State(ctl): State<Controller>, Path(id): Path<String>) -> ApiResponse {
    let result = ctl
        .mutate(|c, _| {
            if !c.error_reports.contains_key(&id) {
                return Err(report_not_found(&id));
            }
            let mut plan = app::Plan::new();
            plan.op(crate::model::Op::DeleteErrorReport(id.clone()))
                .reply(
                    Context::new(Operation::Delete, Object::Controller)
                        .deleted(format!("Error report '{id}' deleted.")),
                );
            Ok(plan)
        })
        .await;
    ApiResponse::entries(StatusCode::OK, result)
}

fn report_not_found(id: &str) -> app::Failure {
    app::not_found(
        &Context::new(Operation::Delete, Object::Controller),
        code::FAIL_NOT_FOUND_ERROR_REPORT,
        "Error report",
        id,
        "List them with 'ferrite error-reports list'.",
    )
}

/// The answer of `GET /health`.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// `ok`, or what is wrong.
    status: &'static str,
}

/// 200 when the controller and its store work.
#[utoipa::path(get, path = "/health", tag = "controller",
    responses((status = 200, description = "healthy", body = Health),
              (status = 503, description = "the store does not answer", body = Health)))]
async fn health(State(ctl): State<Controller>) -> Response {
    let (status, health) = if ctl.store_healthy() {
        (StatusCode::OK, Health { status: "ok" })
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Health {
                status: "store unavailable",
            },
        )
    };
    let mut response = ApiResponse::json(&health).into_response();
    *response.status_mut() = status;
    response
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "controller",
    responses((status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text")))]
async fn metrics(State(ctl): State<Controller>) -> Response {
    let out = ctl.read_with_runtime(|cluster, runtime| ctl.metrics().exposition(cluster, runtime));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        out,
    )
        .into_response()
}
