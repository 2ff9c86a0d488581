//! Snapshots (`/v1/view/snapshots`, `/v1/resource-definitions/{resource}/snapshots…`), restores,
//! rollbacks, `actions/snapshot/multi`, and clones of resource definitions.

use axum::extract::State;
use axum::http::StatusCode;
use ferrite_types::{ApiCallRc, rest};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path::{ResourceCloneParam, ResourceParam, SnapshotParam};
use super::query::{DeleteSnapshot, ListSnapshots, Query};
use super::response::{
    ApiPath as Path, ApiResponse, Conflict, Internal, Invalid, JsonBody, NotFound, TooLarge,
};
use crate::app::views::ListFilter;
use crate::app::{Failure, snapshots};
use crate::core::Controller;

pub fn routes() -> OpenApiRouter<Controller> {
    OpenApiRouter::new()
        .routes(routes!(view_snapshots))
        .routes(routes!(list_snapshots, create_snapshot))
        .routes(routes!(get_snapshot, delete_snapshot))
        .routes(routes!(restore_resource))
        .routes(routes!(restore_volume_definition))
        .routes(routes!(rollback))
        .routes(routes!(create_multi))
        .routes(routes!(clone_resource_definition))
        .routes(routes!(clone_status))
}

/// Lists every snapshot, with the state each node reports.
#[utoipa::path(get, path = "/v1/view/snapshots", tag = "snapshots", params(ListSnapshots),
    responses((status = 200, body = Vec<rest::Snapshot>), Invalid))]
async fn view_snapshots(State(ctl): State<Controller>, query: Query<ListSnapshots>) -> ApiResponse {
    ApiResponse::json(&ctl.read_with_runtime(|c, r| snapshots::list(c, r, &query.filter)))
}

/// Lists the snapshots of one resource definition.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/snapshots", tag = "snapshots",
    params(ResourceParam), responses((status = 200, body = Vec<rest::Snapshot>), Invalid, NotFound))]
async fn list_snapshots(State(ctl): State<Controller>, Path(name): Path<String>) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| {
        let ctx = crate::app::Context::new(
            crate::app::Operation::Modify,
            crate::app::Object::ResourceDefinition,
        );
        let rd = crate::app::resource_definitions::find(&ctx, c, &name)?;
        let filter = ListFilter {
            resources: vec![rd.name.to_string()],
            ..ListFilter::default()
        };
        Ok::<_, Failure>(snapshots::list(c, r, &filter))
    }))
}

/// Takes a snapshot of a resource definition on the nodes named (every diskful node by
/// default). Every replica of a replicated resource captures one write boundary, also while
/// it is in use.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/snapshots", tag = "snapshots",
    params(ResourceParam), request_body = rest::Snapshot,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_snapshot(
    State(ctl): State<Controller>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<rest::Snapshot>,
) -> ApiResponse {
    let result = ctl
        .take_snapshots(
            |c, r| snapshots::create(c, r, &name, &body),
            |c| taken(c, std::iter::once((name.as_str(), body.name.as_str()))),
        )
        .await;
    ApiResponse::entries(
        StatusCode::CREATED,
        with_outcome(&ctl, result, |c| {
            taken(c, std::iter::once((name.as_str(), body.name.as_str())))
        }),
    )
}

/// Takes one snapshot of each resource named, all in one change.
#[utoipa::path(post, path = "/v1/actions/snapshot/multi", tag = "snapshots",
    request_body = rest::CreateMultiSnapshotRequest,
    responses((status = 201, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn create_multi(
    State(ctl): State<Controller>,
    JsonBody(body): JsonBody<rest::CreateMultiSnapshotRequest>,
) -> ApiResponse {
    let result = ctl
        .take_snapshots(
            |c, r| snapshots::create_multi(c, r, &body),
            |c| {
                taken(
                    c,
                    body.snapshots
                        .iter()
                        .map(|s| (s.resource_name.as_str(), s.name.as_str())),
                )
            },
        )
        .await;
    ApiResponse::entries(
        StatusCode::CREATED,
        with_outcome(&ctl, result, |c| {
            taken(
                c,
                body.snapshots
                    .iter()
                    .map(|s| (s.resource_name.as_str(), s.name.as_str())),
            )
        }),
    )
}

/// The snapshots named, as they are in the graph.
fn taken<'a>(
    cluster: &crate::model::Cluster,
    names: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<(ferrite_types::ResourceName, ferrite_types::SnapshotName)> {
    names
        .filter_map(|(resource, snapshot)| {
            let resource = ferrite_types::ResourceName::new(resource).ok()?;
            let snapshot = ferrite_types::SnapshotName::new(snapshot).ok()?;
            cluster
                .snapshot_definition(&resource, &snapshot)
                .map(|d| (d.resource.clone(), d.name.clone()))
        })
        .collect()
}

/// The answer of a snapshot request, with what the nodes reported of each snapshot.
fn with_outcome(
    ctl: &Controller,
    result: Result<Vec<ApiCallRc>, Failure>,
    names: impl FnOnce(
        &crate::model::Cluster,
    ) -> Vec<(ferrite_types::ResourceName, ferrite_types::SnapshotName)>,
) -> Result<Vec<ApiCallRc>, Failure> {
    let mut entries = result?;
    entries.extend(ctl.read_with_runtime(|c, r| {
        let names = names(c);
        snapshots::outcome(c, r, &names)
    }));
    Ok(entries)
}

/// Shows one snapshot.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/snapshots/{snapshot}", tag = "snapshots",
    params(ResourceParam, SnapshotParam),
    responses((status = 200, body = rest::Snapshot), Invalid, NotFound))]
async fn get_snapshot(
    State(ctl): State<Controller>,
    Path((name, snapshot)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| snapshots::show(c, r, &name, &snapshot)))
}

/// Deletes a snapshot (on the nodes named, every node by default): each node deletes it and
/// confirms.
#[utoipa::path(delete, path = "/v1/resource-definitions/{resource}/snapshots/{snapshot}", tag = "snapshots",
    params(ResourceParam, SnapshotParam, DeleteSnapshot),
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Internal))]
async fn delete_snapshot(
    State(ctl): State<Controller>,
    Path((name, snapshot)): Path<(String, String)>,
    query: Query<DeleteSnapshot>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| snapshots::delete(c, &name, &snapshot, &query.filter.nodes))
            .await,
    )
}

/// Restores a snapshot into a resource definition without resources: its missing volume
/// definitions, and a resource on each node named (every node of the snapshot by default),
/// created from that node's snapshot.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/snapshot-restore-resource/{snapshot}",
    tag = "snapshots", params(ResourceParam, SnapshotParam), request_body = rest::SnapshotRestore,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn restore_resource(
    State(ctl): State<Controller>,
    Path((name, snapshot)): Path<(String, String)>,
    JsonBody(body): JsonBody<rest::SnapshotRestore>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, r| snapshots::restore_resources(c, r, &name, &snapshot, &body))
            .await,
    )
}

/// Restores a snapshot's volume definitions into a resource definition that lacks them.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/snapshot-restore-volume-definition/{snapshot}",
    tag = "snapshots", params(ResourceParam, SnapshotParam), request_body = rest::SnapshotRestore,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn restore_volume_definition(
    State(ctl): State<Controller>,
    Path((name, snapshot)): Path<(String, String)>,
    JsonBody(body): JsonBody<rest::SnapshotRestore>,
) -> ApiResponse {
    ApiResponse::entries(
        StatusCode::OK,
        ctl.mutate(|c, _| snapshots::restore_volume_definitions(c, &name, &snapshot, &body))
            .await,
    )
}

/// Rolls a resource back to a snapshot on every node with its data: what was written since is
/// lost. A replicated resource is taken down on every node first (refused while a member is in
/// use), rolled back, and brought up again with its replicas in sync, without a resync.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/snapshot-rollback/{snapshot}",
    tag = "snapshots", params(ResourceParam, SnapshotParam), request_body = Option<rest::SnapshotRollback>,
    responses((status = 200, body = Vec<ApiCallRc>), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn rollback(
    State(ctl): State<Controller>,
    Path((name, snapshot)): Path<(String, String)>,
    JsonBody(body): JsonBody<rest::SnapshotRollback>,
) -> ApiResponse {
    let result = if ctl.read(|c| snapshots::rollback_takes_down(c, &name)) {
        rollback_replicated(&ctl, &name, &snapshot, &body).await
    } else {
        let commands = ctl
            .read_with_runtime(|c, r| snapshots::rollback_commands(c, r, &name, &snapshot, &body));
        match commands {
            Ok(commands) => {
                let results = run_rollback(&ctl, commands).await;
                Ok(snapshots::rollback_answer(&name, &snapshot, results))
            }
            Err(failure) => Err(failure),
        }
    };
    ApiResponse::entries(StatusCode::OK, result)
}

async fn run_rollback(
    ctl: &Controller,
    commands: Vec<(ferrite_types::NodeName, ferrite_proto::NodeCommand)>,
) -> Vec<(ferrite_types::NodeName, Result<String, String>)> {
    let mut results = Vec::new();
    for (node, command) in commands {
        let done = ctl.satellites().command(&node, command).await;
        results.push((node, done));
    }
    results
}

/// A replicated resource's rollback, as LINSTOR does it: every member down, every diskful one
/// rolled back, every member up again (those whose rollback failed stay down).
async fn rollback_replicated(
    ctl: &Controller,
    name: &str,
    snapshot: &str,
    body: &rest::SnapshotRollback,
) -> Result<Vec<ApiCallRc>, Failure> {
    let down_before: Vec<ferrite_types::NodeName> = ctl.read(|c| {
        ferrite_types::ResourceName::new(name)
            .ok()
            .and_then(|n| c.resource_definition(&n))
            .and_then(|rd| {
                let state = rd.rollback.as_ref()?;
                Some(
                    rd.resources
                        .values()
                        .filter(|r| state.down.contains(&r.uuid))
                        .map(|r| r.node.clone())
                        .collect(),
                )
            })
            .unwrap_or_default()
    });
    let mut entries = ctl
        .mutate(|c, r| snapshots::rollback_begin(c, r, name, snapshot, body))
        .await?;
    let commands =
        ctl.read_with_runtime(|c, r| snapshots::rollback_commands(c, r, name, snapshot, body));
    let commands = match commands {
        Ok(commands) => commands,
        Err(mut failure) => {
            // Nothing was rolled back: the members come up as they were.
            match ctl
                .mutate(|c, _| snapshots::rollback_finish(c, name, &down_before))
                .await
            {
                Ok(more) => failure.0.extend(more),
                Err(more) => failure.0.extend(more.0),
            }
            return Err(failure);
        }
    };
    let results = run_rollback(ctl, commands).await;
    let failed: Vec<ferrite_types::NodeName> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| n.clone())
        .collect();
    entries.extend(snapshots::rollback_answer(name, snapshot, results));
    match ctl
        .mutate(|c, _| snapshots::rollback_finish(c, name, &failed))
        .await
    {
        Ok(more) => entries.extend(more),
        Err(more) => entries.extend(more.0),
    }
    Ok(entries)
}

/// Clones a resource definition with its volumes' current data: a snapshot of it, restored
/// into the clone on the same nodes, then deleted.
#[utoipa::path(post, path = "/v1/resource-definitions/{resource}/clone", tag = "resource-definitions",
    params(ResourceParam), request_body = rest::ResourceDefinitionCloneRequest,
    responses((status = 201, body = rest::ResourceDefinitionCloneStarted), Invalid, NotFound, Conflict, TooLarge, Internal))]
async fn clone_resource_definition(
    State(ctl): State<Controller>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<rest::ResourceDefinitionCloneRequest>,
) -> ApiResponse {
    match clone(&ctl, &name, &body).await {
        Ok(started) => ApiResponse::json_with_status(StatusCode::CREATED, &started),
        Err(failure) => ApiResponse::entries(StatusCode::CREATED, Err(failure)),
    }
}

async fn clone(
    ctl: &Controller,
    source: &str,
    body: &rest::ResourceDefinitionCloneRequest,
) -> Result<rest::ResourceDefinitionCloneStarted, Failure> {
    let mut messages = ctl
        .mutate(|c, _| snapshots::clone_definition(c, source, body))
        .await?;
    let clone_name = ctl.read(|c| {
        c.resource_definitions
            .values()
            .find(|rd| {
                rd.name.as_str().eq_ignore_ascii_case(&body.name)
                    || (body.name.is_empty()
                        && rd.external_name.is_some()
                        && rd.external_name == body.external_name)
            })
            .map(|rd| rd.name.to_string())
            .unwrap_or_else(|| body.name.clone())
    });
    let source_name = ctl.read(|c| {
        ferrite_types::ResourceName::new(source)
            .ok()
            .and_then(|n| c.resource_definition(&n).map(|rd| rd.name.to_string()))
            .unwrap_or_else(|| source.to_string())
    });
    let snapshot = snapshots::clone_snapshot_name();
    let request = rest::Snapshot {
        name: snapshot.clone(),
        ..rest::Snapshot::default()
    };
    let mut failed: Option<Failure> = None;
    match ctl
        .take_snapshots(
            |c, r| snapshots::create(c, r, &source_name, &request),
            |c| {
                taken(
                    c,
                    std::iter::once((source_name.as_str(), request.name.as_str())),
                )
            },
        )
        .await
    {
        Ok(entries) => {
            messages.extend(entries);
            let taken = ctl.read_with_runtime(|c, r| {
                let names = taken(
                    c,
                    std::iter::once((source_name.as_str(), snapshot.as_str())),
                );
                snapshots::outcome(c, r, &names)
            });
            if taken.iter().any(|e| e.ret_code().is_error()) {
                failed = Some(Failure(taken));
            } else {
                messages.extend(taken);
                let restore = rest::SnapshotRestore {
                    to_resource: clone_name.clone(),
                    ..rest::SnapshotRestore::default()
                };
                match ctl
                    .mutate(|c, r| {
                        snapshots::restore_resources(c, r, &source_name, &snapshot, &restore)
                    })
                    .await
                {
                    Ok(more) => messages.extend(more),
                    Err(failure) => failed = Some(failure),
                }
            }
            // The snapshot served its purpose (or failed); it goes either way.
            match ctl
                .mutate(|c, _| snapshots::delete(c, &source_name, &snapshot, &[]))
                .await
            {
                Ok(more) => messages.extend(more),
                Err(failure) => messages.extend(failure.0),
            }
        }
        Err(failure) => failed = Some(failure),
    }
    if let Some(mut failure) = failed {
        // The clone's definition is empty still: it goes, so the name can be used again.
        if let Err(more) = ctl
            .mutate(|c, r| crate::app::resource_definitions::delete(c, r, &clone_name))
            .await
        {
            failure.0.extend(more.0);
        }
        return Err(failure);
    }
    Ok(rest::ResourceDefinitionCloneStarted {
        location: format!("/v1/resource-definitions/{source_name}/clone/{clone_name}"),
        source_name,
        clone_name,
        messages,
    })
}

/// The state of a clone: `CLONING`, `COMPLETE` or `FAILED`.
#[utoipa::path(get, path = "/v1/resource-definitions/{resource}/clone/{resourceClone}",
    tag = "resource-definitions", params(ResourceParam, ResourceCloneParam),
    responses((status = 200, body = rest::ResourceDefinitionCloneStatus), Invalid, NotFound))]
async fn clone_status(
    State(ctl): State<Controller>,
    Path((name, clone)): Path<(String, String)>,
) -> ApiResponse {
    ApiResponse::read(ctl.read_with_runtime(|c, r| snapshots::clone_status(c, r, &name, &clone)))
}
