//! Snapshots of resource definitions: take (on one or several nodes, or for several resources at
//! once), list, delete, restore into a new resource definition, roll back, and clone a
//! resource definition through a snapshot.
//!
//! A snapshot is taken by the nodes when their desired state first holds it; whether it was
//! taken is what they report (`crate::reported::NodeRuntime::snapshots`), so the listing's
//! `SUCCESSFUL` flag is never a record that outlived the data. Deleting is two-phase as for
//! resources: marked, deleted by the nodes, confirmed, forgotten ([`finish`]).
//!
//! Every diskful replica of a replicated resource must capture the same write boundary, in use
//! or not: such a snapshot starts in [`CutPhase::Suspending`] and `crate::cut` drives it (every
//! member holds the resource's writes, then the diskful ones take it, then writes go on). It
//! needs every member's node online; otherwise it is refused and says why.
//!
//! A volume restored or rolled back from a snapshot of a replicated resource holds, after its
//! data, replication metadata that is not its own (the source member's, or its own from then):
//! its node replaces it before the engine runs the volume. Every diskful member restored by one
//! restore, or rolled back by one rollback, comes from the same successful cut, so they share
//! a fresh generation (`RestoreSource::generation`, `RollbackState::generation`) and start
//! UpToDate and in sync; a member placed later gets a full sync from them, and one whose
//! rollback did not complete gets just-created metadata (a full sync) or stays down. A
//! rollback of a replicated resource takes every member down first and is refused while one is
//! in use. A clone gets its source's layer stack and is complete once its replicas are.

use ferrite_proto::{NodeCommand, RollbackVolume};
use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, NodeName, ResourceName, SnapshotName, rest};

use super::placement::Runtime;
use super::{
    Context, Failure, Object, Operation, Plan, not_found, parse_name, resource_definitions,
};
use crate::model::{
    self, Cluster, CutPhase, Op, Resource, ResourceDefinition, ResourcePhase, RestoreSource,
    RestoreVolume, RollbackState, Snapshot, SnapshotDefinition, SnapshotPhase,
    SnapshotVolumeDefinition, VolumeDefinition,
};

const CREATE: Context = Context::new(Operation::Create, Object::Snapshot);
const MODIFY: Context = Context::new(Operation::Modify, Object::Snapshot);
const DELETE: Context = Context::new(Operation::Delete, Object::Snapshot);

/// LINSTOR's `FAIL_EXISTS_SNAPSHOT_DFN`.
pub const FAIL_EXISTS_SNAPSHOT_DFN: u64 = 514;
/// LINSTOR's `FAIL_NOT_FOUND_SNAPSHOT`.
pub const FAIL_NOT_FOUND_SNAPSHOT: u64 = 315;
/// LINSTOR's `FAIL_SNAPSHOT_NOT_UPTODATE`.
pub const FAIL_SNAPSHOT_NOT_UPTODATE: u64 = 979;
/// LINSTOR's `FAIL_SNAPSHOTS_NOT_SUPPORTED`.
pub const FAIL_SNAPSHOTS_NOT_SUPPORTED: u64 = 994;

/// The flag of a snapshot every node took.
pub const FLAG_SUCCESSFUL: &str = "SUCCESSFUL";
/// The flag of a snapshot a node could not take.
pub const FLAG_FAILED_DEPLOYMENT: &str = "FAILED_DEPLOYMENT";

/// The property of a snapshot volume that says how its node took it.
pub const PROP_SNAPSHOT_METHOD: &str = "Ferrite/SnapshotMethod";

fn find_definition<'a>(
    ctx: &Context,
    cluster: &'a Cluster,
    rd: &ResourceDefinition,
    snapshot: &str,
) -> Result<&'a SnapshotDefinition, Failure> {
    let name: SnapshotName = parse_name(ctx, code::FAIL_INVLD_SNAPSHOT_NAME, snapshot)?;
    cluster.snapshot_definition(&rd.name, &name).ok_or_else(|| {
        not_found(
            ctx,
            code::FAIL_NOT_FOUND_SNAPSHOT_DFN,
            "Snapshot definition",
            format!("{name}' of resource '{}", rd.name),
            format!(
                "List the snapshots with 'ferrite snapshot list -r {}'.",
                rd.name
            ),
        )
    })
}

/// Every node's report of the snapshot: `Ok(methods)` when each of its volumes is taken,
/// `Err(why)` when one failed or is not reported.
fn taken_on(
    runtime: &Runtime,
    definition: &SnapshotDefinition,
    snapshot: &Snapshot,
) -> Result<Vec<(u16, Option<String>)>, String> {
    match definition.cut {
        CutPhase::Abandoned => {
            return Err(
                "its cut was abandoned: not every replica is known to hold the same \
                        write boundary"
                    .to_string(),
            );
        }
        CutPhase::Suspending | CutPhase::Taking => {
            return Err("its cut is under way".to_string());
        }
        CutPhase::Done => {}
    }
    let Some(node) = runtime.get(&snapshot.node) else {
        return Err("its node has no satellite link".to_string());
    };
    let reports: Vec<_> = node
        .snapshot_volumes(
            definition.resource.as_str(),
            definition.name.as_str(),
            &snapshot.uuid,
        )
        .collect();
    let mut methods = Vec::new();
    for volume in &definition.volume_definitions {
        match reports
            .iter()
            .find(|r| r.volume_number == volume.number.get())
        {
            Some(report) => match &report.error {
                Some(error) => return Err(format!("volume {}: {error}", volume.number)),
                None => methods.push((volume.number.get(), report.method.clone())),
            },
            None => return Err(format!("volume {} is not reported yet", volume.number)),
        }
    }
    Ok(methods)
}

/// What one request asks to snapshot: a resource definition, a name, nodes.
struct Request<'a> {
    resource: &'a str,
    name: &'a str,
    nodes: &'a [String],
}

/// The ops that take one snapshot, after every check.
fn plan_snapshot(
    cluster: &Cluster,
    runtime: &Runtime,
    request: &Request,
    plan: &mut Plan,
) -> Result<(), Failure> {
    let ctx = &CREATE;
    let rd = resource_definitions::find(ctx, cluster, request.resource)?;
    let name = SnapshotName::new(request.name)
        .map_err(|e| ctx.invalid_name(code::FAIL_INVLD_SNAPSHOT_NAME, &e))?;
    if let Some(existing) = cluster.snapshot_definition(&rd.name, &name) {
        return Err(ctx
            .error(
                FAIL_EXISTS_SNAPSHOT_DFN,
                format!(
                    "A snapshot definition with the name '{}' already exists in resource definition '{}'.",
                    existing.name, rd.name
                ),
            )
            .correction("Choose another snapshot name, or delete the existing snapshot first.")
            .obj_ref("RscDfn", rd.name.as_str())
            .obj_ref("SnapshotName", existing.name.as_str())
            .into());
    }
    if rd.is_deleting() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!("Resource definition '{}' is being deleted.", rd.name),
            )
            .correction("A resource definition marked for deletion cannot take snapshots.")
            .into());
    }
    if rd.volume_definitions.is_empty() {
        return Err(ctx
            .error(
                code::FAIL_NOT_FOUND_VLM_DFN,
                format!(
                    "Resource definition '{}' has no volumes to snapshot.",
                    rd.name
                ),
            )
            .correction("Create a volume definition first.")
            .into());
    }
    if let Some(vd) = rd.volume_definitions.values().find(|v| v.is_deleting()) {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Volume definition {} of '{}' is being deleted; no snapshot can be taken meanwhile.",
                    vd.number, rd.name
                ),
            )
            .correction("Wait until the deletion is done.")
            .into());
    }
    let diskful: Vec<&Resource> = rd.resources.values().filter(|r| r.holds_data()).collect();
    let targets: Vec<&Resource> = if request.nodes.is_empty() {
        diskful.clone()
    } else {
        let mut targets = Vec::new();
        for node in request.nodes {
            let node_name: NodeName = parse_name(ctx, code::FAIL_INVLD_NODE_NAME, node)?;
            let Some(resource) = rd.resources.get(&node_name) else {
                return Err(ctx
                    .error(
                        code::FAIL_NOT_FOUND_RSC,
                        format!(
                            "Resource '{}' is not deployed on node '{node_name}'.",
                            rd.name
                        ),
                    )
                    .correction("A snapshot is taken on nodes that hold the resource's data.")
                    .into());
            };
            if !resource.holds_data() {
                return Err(ctx
                    .error(
                        code::FAIL_INVLD_REQUEST,
                        format!(
                            "Resource '{}' on node '{node_name}' has no disk to snapshot.",
                            rd.name
                        ),
                    )
                    .correction("Name nodes where the resource is diskful.")
                    .into());
            }
            if !targets.iter().any(|t: &&Resource| t.node == resource.node) {
                targets.push(resource);
            }
        }
        targets
    };
    if targets.is_empty() {
        return Err(ctx
            .error(
                code::FAIL_NOT_FOUND_RSC,
                format!(
                    "Resource '{}' has no diskful resource to snapshot.",
                    rd.name
                ),
            )
            .correction("Place the resource on a node with a storage pool first.")
            .into());
    }
    for resource in &targets {
        let pool = cluster
            .node(&resource.node)
            .and_then(|n| n.storage_pools.get(&resource.storage_pool));
        if let Some(pool) = pool
            && !pool.provider_kind.supports_snapshots()
        {
            return Err(ctx
                .error(
                    FAIL_SNAPSHOTS_NOT_SUPPORTED,
                    format!(
                        "Storage pool '{}' on node '{}' does not support snapshots.",
                        pool.name, resource.node
                    ),
                )
                .cause(format!(
                    "Its provider is {}; snapshots need FILE, FILE_THIN, LVM_THIN, ZFS or ZFS_THIN.",
                    pool.provider_kind
                ))
                .correction("Place the resource in a pool that supports snapshots.")
                .into());
        }
        if let Some(node) = runtime.get(&resource.node).filter(|r| r.is_online()) {
            let reported = node.volumes.get(rd.name.key());
            for vd in rd.volume_definitions.values() {
                let volume = reported.and_then(|v| v.get(&vd.number.get()));
                let ready = volume.is_some_and(|v| v.error.is_none() && v.disk_state == "UpToDate");
                if !ready {
                    return Err(ctx
                        .error(
                            FAIL_SNAPSHOT_NOT_UPTODATE,
                            format!(
                                "Cannot create snapshot '{name}' of resource '{}': volume {} on node '{}' is not UpToDate.",
                                rd.name, vd.number, resource.node
                            ),
                        )
                        .cause(match volume {
                            Some(v) => format!(
                                "Its node reports it {}{}.",
                                v.disk_state,
                                v.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                            ),
                            None => "Its node has not reported it yet.".to_string(),
                        })
                        .correction("Wait until the volume is UpToDate ('ferrite volume list'), or fix what its node reports.")
                        .obj_ref("Node", resource.node.as_str())
                        .into());
                }
            }
        }
        if !runtime.get(&resource.node).is_some_and(|r| r.is_online()) {
            return Err(ctx
                .error(
                    code::FAIL_NOT_CONNECTED,
                    format!(
                        "Cannot create snapshot '{name}' of resource '{}': node '{}' is not connected.",
                        rd.name, resource.node
                    ),
                )
                .cause("A snapshot is a point in time: a node that hears of it later would take a later one.")
                .correction("Bring the node online, or name only online nodes.")
                .obj_ref("Node", resource.node.as_str())
                .into());
        }
    }
    if rd.is_replicated() {
        check_write_boundary(ctx, rd, runtime)?;
    }
    let now = model::now_millis();
    let definition = SnapshotDefinition {
        resource: rd.name.clone(),
        name: name.clone(),
        uuid: model::new_uuid(),
        props: Default::default(),
        flags: Vec::new(),
        layer_stack: rd.resource_layers().to_vec(),
        resource_group: rd.resource_group.clone(),
        resource_definition_props: rd.props.clone(),
        volume_definitions: rd
            .volume_definitions
            .values()
            .map(|vd| SnapshotVolumeDefinition {
                number: vd.number,
                identity: vd.uuid.clone(),
                size_kib: vd.size_kib,
                props: vd.props.clone(),
            })
            .collect(),
        create_timestamp: now,
        // A replicated resource's snapshot waits for every member to hold its writes
        // (`crate::cut`); any other is taken when its nodes hear of it.
        cut: if rd.is_replicated() {
            CutPhase::Suspending
        } else {
            CutPhase::Done
        },
        snapshots: Default::default(),
    };
    plan.op(Op::PutSnapshotDefinition(definition));
    for resource in &targets {
        plan.op(Op::PutSnapshot {
            resource: rd.name.clone(),
            snapshot_name: name.clone(),
            snapshot: Snapshot {
                node: resource.node.clone(),
                uuid: model::new_uuid(),
                resource_uuid: resource.uuid.clone(),
                storage_pool: resource.storage_pool.clone(),
                create_timestamp: now,
                props: Default::default(),
                phase: SnapshotPhase::Active,
            },
        });
    }
    plan.reply(
        ctx.created(format!(
            "New snapshot '{name}' of resource '{}' registered.",
            rd.name
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("SnapshotName", name.as_str()),
    );
    Ok(())
}

/// Refuses a snapshot of a replicated resource unless every member's node is online: each must
/// hold the resource's writes for the cut (`crate::cut`).
fn check_write_boundary(
    ctx: &Context,
    rd: &ResourceDefinition,
    runtime: &Runtime,
) -> Result<(), Failure> {
    for member in rd.resources.values().filter(|r| !r.is_deleting()) {
        let report = runtime.get(&member.node);
        if !report.is_some_and(|r| r.is_online()) {
            return Err(ctx
                .error(
                    code::FAIL_NOT_CONNECTED,
                    format!(
                        "Cannot snapshot replicated resource '{}': node '{}' is not connected.",
                        rd.name, member.node
                    ),
                )
                .cause(
                    "Every member holds the resource's writes for the snapshot's cut, so that all \
                     replicas capture the same write boundary; an offline member cannot.",
                )
                .correction("Bring the node online and try again.")
                .obj_ref("Node", member.node.as_str())
                .into());
        }
    }
    Ok(())
}

/// `POST /v1/resource-definitions/{rd}/snapshots`.
pub fn create(
    cluster: &Cluster,
    runtime: &Runtime,
    resource: &str,
    body: &rest::Snapshot,
) -> Result<Plan, Failure> {
    let mut plan = Plan::new();
    plan_snapshot(
        cluster,
        runtime,
        &Request {
            resource,
            name: &body.name,
            nodes: &body.nodes,
        },
        &mut plan,
    )?;
    Ok(plan)
}

/// `POST /v1/actions/snapshot/multi`: one snapshot of each resource, all in one change, so
/// every node takes them in the same pass.
pub fn create_multi(
    cluster: &Cluster,
    runtime: &Runtime,
    body: &rest::CreateMultiSnapshotRequest,
) -> Result<Plan, Failure> {
    let ctx = &CREATE;
    if body.snapshots.is_empty() {
        return Err(ctx
            .error(code::FAIL_INVLD_REQUEST, "The request names no snapshot.")
            .cause("Its 'snapshots' list is empty.")
            .correction("Give at least one snapshot with its resource_name and name.")
            .into());
    }
    let mut plan = Plan::new();
    let mut seen: Vec<String> = Vec::new();
    for snapshot in &body.snapshots {
        if snapshot.resource_name.is_empty() {
            return Err(ctx
                .error(
                    code::FAIL_INVLD_RSC_NAME,
                    format!("Snapshot '{}' names no resource.", snapshot.name),
                )
                .cause("Its 'resource_name' is missing or empty.")
                .correction("Give every snapshot its resource_name.")
                .into());
        }
        let key = snapshot.resource_name.to_ascii_uppercase();
        if seen.contains(&key) {
            return Err(ctx.invalid(
                code::FAIL_INVLD_REQUEST,
                format!("Resource '{}' is named twice.", snapshot.resource_name),
                "Name each resource once.",
            ));
        }
        seen.push(key);
        plan_snapshot(
            cluster,
            runtime,
            &Request {
                resource: &snapshot.resource_name,
                name: &snapshot.name,
                nodes: &snapshot.nodes,
            },
            &mut plan,
        )?;
    }
    Ok(plan)
}

/// The answer entries once the nodes had their chance to take the snapshots `taken`: one
/// success per snapshot taken everywhere, saying how each node took it, or an error naming
/// the nodes that could not.
pub fn outcome(
    cluster: &Cluster,
    runtime: &Runtime,
    taken: &[(ResourceName, SnapshotName)],
) -> Vec<ApiCallRc> {
    let ctx = &CREATE;
    let mut entries = Vec::new();
    for (resource, name) in taken {
        let Some(definition) = cluster.snapshot_definition(resource, name) else {
            continue;
        };
        let mut methods = Vec::new();
        let mut failures = Vec::new();
        for snapshot in definition.snapshots.values() {
            match taken_on(runtime, definition, snapshot) {
                Ok(volumes) => {
                    let how: Vec<String> = volumes
                        .iter()
                        .filter_map(|(_, m)| m.clone())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    methods.push(format!("'{}' ({})", snapshot.node, how.join(", ")));
                }
                Err(why) => failures.push(format!("'{}': {why}", snapshot.node)),
            }
        }
        if failures.is_empty() {
            entries.push(
                ctx.success(
                    code::CREATED,
                    format!(
                        "Snapshot '{name}' of resource '{resource}' successfully taken on {}.",
                        methods.join(", ")
                    ),
                )
                .obj_ref("RscDfn", resource.as_str())
                .obj_ref("SnapshotName", name.as_str()),
            );
        } else {
            entries.push(
                ctx.error(
                    code::FAIL_UNKNOWN_ERROR,
                    format!(
                        "Snapshot '{name}' of resource '{resource}' was not taken on every node."
                    ),
                )
                .cause(failures.join("; "))
                .correction(format!(
                    "See the satellite's log for the cause, then delete the snapshot ('ferrite \
                     snapshot delete {resource} {name}') and take it again."
                ))
                .obj_ref("RscDfn", resource.as_str())
                .obj_ref("SnapshotName", name.as_str()),
            );
        }
    }
    entries
}

/// `DELETE /v1/resource-definitions/{rd}/snapshots/{snapshot}[?nodes=…]`: marks the snapshots
/// (all, or those of the nodes named); each node deletes them and confirms ([`finish`]).
pub fn delete(
    cluster: &Cluster,
    resource: &str,
    snapshot: &str,
    nodes: &[String],
) -> Result<Plan, Failure> {
    let ctx = &DELETE;
    let rd = resource_definitions::find(ctx, cluster, resource)?;
    let definition = find_definition(ctx, cluster, rd, snapshot)?;
    let mut chosen: Vec<&Snapshot> = Vec::new();
    if nodes.is_empty() {
        chosen.extend(definition.snapshots.values());
    } else {
        for node in nodes {
            let node_name: NodeName = parse_name(ctx, code::FAIL_INVLD_NODE_NAME, node)?;
            let Some(taken) = definition.snapshots.get(&node_name) else {
                return Err(not_found(
                    ctx,
                    FAIL_NOT_FOUND_SNAPSHOT,
                    "Snapshot",
                    format!(
                        "{}' of resource '{}' on node '{node_name}",
                        definition.name, rd.name
                    ),
                    "List the snapshots with 'ferrite snapshot list'.",
                ));
            };
            chosen.push(taken);
        }
    }
    let mut plan = Plan::new();
    let all = chosen.len() == definition.snapshots.len();
    if definition.snapshots.is_empty() {
        plan.op(Op::DeleteSnapshotDefinition {
            resource: rd.name.clone(),
            snapshot: definition.name.clone(),
        });
    }
    for taken in chosen.iter().filter(|s| !s.is_deleting()) {
        let mut marked = (*taken).clone();
        marked.phase = SnapshotPhase::Deleting;
        plan.op(Op::PutSnapshot {
            resource: rd.name.clone(),
            snapshot_name: definition.name.clone(),
            snapshot: marked,
        });
    }
    if all && !definition.is_deleting() && !definition.snapshots.is_empty() {
        let mut marked = definition.clone();
        marked.flags.push(model::FLAG_DELETE.to_string());
        plan.op(Op::PutSnapshotDefinition(marked));
    }
    plan.reply(
        ctx.deleted(format!(
            "Snapshot '{}' of resource '{}' marked for deletion.",
            definition.name, rd.name
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("SnapshotName", definition.name.as_str()),
    );
    plan.deletions.push(super::deletions::Marked::Snapshot {
        resource: rd.name.clone(),
        snapshot: definition.name.clone(),
        nodes: chosen.iter().map(|s| s.node.clone()).collect(),
    });
    Ok(plan)
}

/// Forgets every snapshot whose deletion its node confirmed, and every definition marked for
/// deletion whose last snapshot went. Part of `deletions::finish`.
pub fn finish(cluster: &Cluster, runtime: &Runtime, plan: &mut Plan) {
    for definition in cluster.snapshot_definitions.values() {
        let mut remaining = 0usize;
        for snapshot in definition.snapshots.values() {
            let confirmed = snapshot.is_deleting()
                && runtime.get(&snapshot.node).is_some_and(|r| {
                    r.deleted_snapshot(
                        definition.resource.as_str(),
                        definition.name.as_str(),
                        &snapshot.uuid,
                    )
                });
            if confirmed {
                plan.op(Op::DeleteSnapshot {
                    resource: definition.resource.clone(),
                    snapshot: definition.name.clone(),
                    node: snapshot.node.clone(),
                });
            } else {
                remaining += 1;
            }
        }
        if definition.is_deleting() && remaining == 0 {
            plan.op(Op::DeleteSnapshotDefinition {
                resource: definition.resource.clone(),
                snapshot: definition.name.clone(),
            });
        }
    }
}

/// The refusal of a change that would delete a resource's backing volumes while snapshots of
/// them exist on its node (LINSTOR refuses a definition with snapshots the same way).
pub fn refuse_if_snapshots(
    ctx: &Context,
    cluster: &Cluster,
    rd: &ResourceDefinition,
    node: Option<&NodeName>,
    action: &str,
) -> Result<(), Failure> {
    let names: Vec<String> = cluster
        .snapshots_of(&rd.name)
        .filter(|d| node.is_none_or(|n| d.snapshots.contains_key(n)))
        .map(|d| format!("'{}'", d.name))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let what = match node {
        None => format!("resource definition '{}'", rd.name),
        Some(node) => format!("resource '{}' on node '{node}'", rd.name),
    };
    Err(ctx
        .error(
            FAIL_EXISTS_SNAPSHOT_DFN,
            format!("Cannot {action} {what} because it has snapshots."),
        )
        .cause(format!("Snapshots: {}.", names.join(", ")))
        .correction(format!(
            "Delete the snapshots first ('ferrite snapshot delete {} <snapshot>').",
            rd.name
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .into())
}

/// The refusal of deleting volume definition `number` of `rd` while snapshots of its volume
/// exist: their deletion and a rollback to them need the volume, and a provider such as ZFS
/// cannot destroy a volume that has snapshots.
pub fn refuse_if_volume_has_snapshots(
    ctx: &Context,
    cluster: &Cluster,
    rd: &ResourceDefinition,
    vd: &crate::model::VolumeDefinition,
) -> Result<(), Failure> {
    let names: Vec<String> = cluster
        .snapshots_of(&rd.name)
        .filter(|d| {
            d.volume_definitions
                .iter()
                .any(|v| v.number == vd.number && v.identity == vd.uuid)
        })
        .map(|d| format!("'{}'", d.name))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(ctx
        .error(
            FAIL_EXISTS_SNAPSHOT_DFN,
            format!(
                "Cannot delete volume definition {} of '{}' because it has snapshots.",
                vd.number, rd.name
            ),
        )
        .cause(format!("Snapshots of the volume: {}.", names.join(", ")))
        .correction(format!(
            "Delete the snapshots first ('ferrite snapshot delete {} <snapshot>').",
            rd.name
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("VlmNr", vd.number.to_string())
        .into())
}

/// A restore's target: an existing resource definition without resources, with its volume
/// definitions (those it lacks are created from the snapshot's).
fn restore_target<'a>(
    ctx: &Context,
    cluster: &'a Cluster,
    definition: &SnapshotDefinition,
    to_resource: &str,
    plan: &mut Plan,
) -> Result<&'a ResourceDefinition, Failure> {
    let target = resource_definitions::find(ctx, cluster, to_resource)?;
    if target.name == definition.resource {
        return Err(ctx.invalid(
            code::FAIL_INVLD_RSC_NAME,
            format!(
                "Cannot restore snapshot '{}' into its own resource definition '{}'.",
                definition.name, target.name
            ),
            "Restore into a new resource definition, or roll the resource back ('ferrite snapshot rollback').",
        ));
    }
    if target.is_deleting() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!("Resource definition '{}' is being deleted.", target.name),
            )
            .correction("Restore into another resource definition.")
            .into());
    }
    // Replicated restored members start in sync (`RestoreSource::generation`): a larger
    // volume would hold, past the snapshot's data, what each member's backing volume held
    // there (the source's metadata), different on every member.
    let replicated = target.is_replicated() || target.default_stack_pending();
    for volume in &definition.volume_definitions {
        match target.volume_definitions.get(&volume.number) {
            Some(existing) if replicated && existing.size_kib > volume.size_kib => {
                return Err(ctx
                    .error(
                        code::FAIL_INVLD_VLM_SIZE,
                        format!(
                            "Volume definition {} of '{}' is larger than the snapshot's volume.",
                            volume.number, target.name
                        ),
                    )
                    .cause(format!(
                        "{} KiB, the snapshot's volume has {} KiB; the replicas of a replicated \
                         resource restored from a snapshot start in sync, which holds only for \
                         the snapshot's data.",
                        existing.size_kib, volume.size_kib
                    ))
                    .correction(
                        "Restore into a resource definition without volume definitions (they \
                         are created at the snapshot's sizes), then grow the volumes with \
                         'ferrite volume-definition set-size'.",
                    )
                    .into());
            }
            Some(existing) if existing.size_kib < volume.size_kib => {
                return Err(ctx
                    .error(
                        code::FAIL_INVLD_VLM_SIZE,
                        format!(
                            "Volume definition {} of '{}' is smaller than the snapshot's volume.",
                            volume.number, target.name
                        ),
                    )
                    .cause(format!(
                        "{} KiB, the snapshot's volume has {} KiB.",
                        existing.size_kib, volume.size_kib
                    ))
                    .correction("Restore into a resource definition without volume definitions.")
                    .into());
            }
            Some(_) => {}
            None => {
                plan.op(Op::PutVolumeDefinition {
                    resource: target.name.clone(),
                    volume_definition: VolumeDefinition {
                        number: volume.number,
                        uuid: model::new_uuid(),
                        size_kib: volume.size_kib,
                        props: volume.props.clone(),
                        flags: Vec::new(),
                        minor: None,
                    },
                })
                .reply(
                    Context::new(Operation::Create, Object::VolumeDefinition)
                        .created(format!(
                            "Volume definition {} of '{}' restored from snapshot '{}' of '{}'.",
                            volume.number, target.name, definition.name, definition.resource
                        ))
                        .obj_ref("RscDfn", target.name.as_str()),
                );
            }
        }
    }
    Ok(target)
}

/// `POST /v1/resource-definitions/{rd}/snapshot-restore-volume-definition/{snapshot}`.
pub fn restore_volume_definitions(
    cluster: &Cluster,
    resource: &str,
    snapshot: &str,
    body: &rest::SnapshotRestore,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Create, Object::VolumeDefinition);
    let rd = resource_definitions::find(ctx, cluster, resource)?;
    let definition = find_definition(ctx, cluster, rd, snapshot)?;
    let mut plan = Plan::new();
    let target = restore_target(ctx, cluster, definition, &body.to_resource, &mut plan)?;
    if plan.ops.is_empty() {
        plan.reply(ctx.warn(
            code::WARN_NO_EFFECT,
            format!(
                "Resource definition '{}' has every volume definition of snapshot '{}' already.",
                target.name, definition.name
            ),
        ));
    }
    Ok(plan)
}

/// `POST /v1/resource-definitions/{rd}/snapshot-restore-resource/{snapshot}`: the target
/// definition gets the snapshot's volume definitions it lacks and a resource on every node
/// named (all the snapshot's nodes by default), each created from that node's snapshot.
pub fn restore_resources(
    cluster: &Cluster,
    runtime: &Runtime,
    resource: &str,
    snapshot: &str,
    body: &rest::SnapshotRestore,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Create, Object::Resource);
    let rd = resource_definitions::find(ctx, cluster, resource)?;
    let definition = find_definition(ctx, cluster, rd, snapshot)?;
    if definition.is_deleting() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Snapshot '{}' of '{}' is being deleted.",
                    definition.name, rd.name
                ),
            )
            .correction("Restore from another snapshot.")
            .into());
    }
    for (from, to) in &body.stor_pool_rename {
        if !from.eq_ignore_ascii_case(to) {
            return Err(ctx.invalid(
                code::FAIL_INVLD_REQUEST,
                format!("Storage pool renaming ('{from}' to '{to}') is not supported."),
                "A snapshot is restored in the storage pool it is in; leave stor_pool_rename out.",
            ));
        }
    }
    let mut plan = Plan::new();
    let target = restore_target(ctx, cluster, definition, &body.to_resource, &mut plan)?;
    if !target.resources.is_empty() {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_RSC,
                format!(
                    "Resource definition '{}' already has resources; a snapshot is restored into one without.",
                    target.name
                ),
            )
            .correction("Restore into a new resource definition.")
            .into());
    }
    let chosen: Vec<&Snapshot> = if body.nodes.is_empty() {
        definition
            .snapshots
            .values()
            .filter(|s| !s.is_deleting())
            .collect()
    } else {
        let mut chosen = Vec::new();
        for node in &body.nodes {
            let node_name: NodeName = parse_name(ctx, code::FAIL_INVLD_NODE_NAME, node)?;
            match definition.snapshots.get(&node_name) {
                Some(s) if !s.is_deleting() => chosen.push(s),
                _ => {
                    return Err(not_found(
                        ctx,
                        FAIL_NOT_FOUND_SNAPSHOT,
                        "Snapshot",
                        format!(
                            "{}' of resource '{}' on node '{node_name}",
                            definition.name, rd.name
                        ),
                        "Restore on the nodes the snapshot was taken on ('ferrite snapshot list').",
                    ));
                }
            }
        }
        chosen
    };
    if chosen.is_empty() {
        return Err(ctx
            .error(
                FAIL_NOT_FOUND_SNAPSHOT,
                format!(
                    "Snapshot '{}' of '{}' is on no node.",
                    definition.name, rd.name
                ),
            )
            .correction("Restore from another snapshot.")
            .into());
    }
    for snapshot in &chosen {
        if let Err(why) = taken_on(runtime, definition, snapshot) {
            return Err(ctx
                .error(
                    FAIL_SNAPSHOT_NOT_UPTODATE,
                    format!(
                        "Snapshot '{}' of '{}' is not available on node '{}'.",
                        definition.name, rd.name, snapshot.node
                    ),
                )
                .cause(why)
                .correction(
                    "Restore on nodes where the snapshot was taken and whose satellite is online.",
                )
                .obj_ref("Node", snapshot.node.as_str())
                .into());
        }
    }
    // Every member restored here comes from the same successful cut (`taken_on` above), so
    // they share one generation and start in sync; the target has no other member, and one
    // placed later gets a full sync from them. A definition whose stack is still pending gets
    // it at this first placement (`app::engine`), a replication layer included.
    let generation = model::new_generation();
    for snapshot in &chosen {
        plan.op(Op::PutResource {
            resource: target.name.clone(),
            placed: Resource {
                node: snapshot.node.clone(),
                uuid: model::new_uuid(),
                props: Default::default(),
                diskless: false,
                storage_pool: snapshot.storage_pool.clone(),
                create_timestamp: model::now_millis(),
                phase: ResourcePhase::Active,
                node_id: None,
                port: None,
                tiebreaker: false,
                restore_from: Some(RestoreSource {
                    resource: rd.name.clone(),
                    snapshot: definition.name.clone(),
                    volumes: definition
                        .volume_definitions
                        .iter()
                        .map(|v| RestoreVolume {
                            number: v.number,
                            identity: v.identity.clone(),
                        })
                        .collect(),
                    generation: Some(generation),
                }),
                inactive: false,
                evacuating: false,
                evacuation_replaced: false,
            },
        })
        .reply(
            ctx.created(format!(
                "Resource '{}' on node '{}' restored from snapshot '{}' of '{}'.",
                target.name, snapshot.node, definition.name, rd.name
            ))
            .obj_ref("RscDfn", target.name.as_str())
            .obj_ref("Node", snapshot.node.as_str()),
        );
    }
    Ok(plan)
}

/// The checks every rollback passes: the snapshot is on every node with the resource's data,
/// each took it (of a successful cut), those nodes are online, and the volumes are the
/// snapshot's. Returns each diskful member with its node's snapshot.
fn check_rollback<'a>(
    ctx: &Context,
    runtime: &Runtime,
    rd: &'a ResourceDefinition,
    definition: &'a SnapshotDefinition,
    body: &rest::SnapshotRollback,
) -> Result<Vec<(&'a Resource, &'a Snapshot)>, Failure> {
    if let Some(strategy) = &body.zfs_rollback_strategy
        && !strategy.eq_ignore_ascii_case("rollback")
        && !strategy.eq_ignore_ascii_case("dynamic")
    {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            format!("ZFS rollback strategy '{strategy}' is not supported."),
            "Use 'rollback' (or 'dynamic'): 'zfs rollback', which fails if newer snapshots exist.",
        ));
    }
    if definition.is_deleting() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Snapshot '{}' of '{}' is being deleted.",
                    definition.name, rd.name
                ),
            )
            .into());
    }
    for volume in rd.volume_definitions.values() {
        if !definition
            .volume_definitions
            .iter()
            .any(|v| v.number == volume.number && v.identity == volume.uuid)
        {
            return Err(ctx
                .error(
                    code::FAIL_INVLD_REQUEST,
                    format!(
                        "Cannot roll back '{}' to snapshot '{}': volume definition {} was created after the snapshot.",
                        rd.name, definition.name, volume.number
                    ),
                )
                .correction("Delete the volume definitions added since, or restore into a new resource definition.")
                .into());
        }
    }
    // Nor may a volume the snapshot holds be gone: there is nothing to roll it back into.
    for volume in &definition.volume_definitions {
        let current = rd.volume_definitions.get(&volume.number);
        if current.is_none_or(|vd| vd.uuid != volume.identity || vd.is_deleting()) {
            return Err(ctx
                .error(
                    code::FAIL_INVLD_REQUEST,
                    format!(
                        "Cannot roll back '{}' to snapshot '{}': its volume {} is no longer a volume of the definition.",
                        rd.name, definition.name, volume.number
                    ),
                )
                .cause("The volume definition the snapshot was taken of was deleted (or is being deleted) since.")
                .correction("Restore the snapshot into a new resource definition ('ferrite snapshot restore').")
                .into());
        }
    }
    let mut members = Vec::new();
    for resource in rd.resources.values() {
        if resource.is_deleting() || resource.phase == ResourcePhase::DiskRemoving {
            return Err(ctx
                .error(
                    code::FAIL_IN_USE,
                    format!(
                        "Resource '{}' on node '{}' is being changed; roll back once it is done.",
                        rd.name, resource.node
                    ),
                )
                .into());
        }
        let must_act = !resource.diskless || rd.is_replicated();
        if must_act && !runtime.get(&resource.node).is_some_and(|r| r.is_online()) {
            return Err(ctx
                .error(
                    code::FAIL_NOT_CONNECTED,
                    format!(
                        "Cannot roll back '{}': node '{}' is not connected.",
                        rd.name, resource.node
                    ),
                )
                .cause(if rd.is_replicated() {
                    "Every member of a replicated resource is taken down for its rollback, diskless ones too."
                } else {
                    "Every node with the resource's data rolls it back."
                })
                .correction("Bring the node online and try again.")
                .obj_ref("Node", resource.node.as_str())
                .into());
        }
        if resource.diskless {
            continue;
        }
        let Some(taken) = definition.snapshots.get(&resource.node) else {
            return Err(ctx
                .error(
                    FAIL_NOT_FOUND_SNAPSHOT,
                    format!(
                        "Cannot roll back '{}': snapshot '{}' was not taken on node '{}'.",
                        rd.name, definition.name, resource.node
                    ),
                )
                .correction(
                    "Roll back to a snapshot taken on every node with a disk of the resource.",
                )
                .obj_ref("Node", resource.node.as_str())
                .into());
        };
        if taken.resource_uuid != resource.uuid {
            return Err(ctx
                .error(
                    code::FAIL_INVLD_REQUEST,
                    format!(
                        "Cannot roll back '{}' on node '{}': the resource there was placed after snapshot '{}'.",
                        rd.name, resource.node, definition.name
                    ),
                )
                .correction("Delete that replica (it gets its data from the others), or restore into a new resource definition.")
                .into());
        }
        if let Err(why) = taken_on(runtime, definition, taken) {
            return Err(ctx
                .error(
                    FAIL_SNAPSHOT_NOT_UPTODATE,
                    format!(
                        "Snapshot '{}' of '{}' is not available on node '{}'.",
                        definition.name, rd.name, resource.node
                    ),
                )
                .cause(why)
                .into());
        }
        members.push((resource, taken));
    }
    if members.is_empty() {
        return Err(ctx
            .error(
                code::FAIL_NOT_FOUND_RSC,
                format!("Resource '{}' has no disk to roll back.", rd.name),
            )
            .into());
    }
    Ok(members)
}

/// Whether `resource` names a resource definition with a replication layer: its rollback
/// takes it down first ([`rollback_begin`]).
pub fn rollback_takes_down(cluster: &Cluster, resource: &str) -> bool {
    ResourceName::new(resource)
        .ok()
        .and_then(|name| cluster.resource_definition(&name))
        .is_some_and(ResourceDefinition::is_replicated)
}

/// The first step of rolling back a replicated resource (`POST …/snapshot-rollback/{snapshot}`),
/// as LINSTOR does it: after every check, and only while no member is in use, every member is
/// taken down (its node's desired state says `inactive`), so no engine runs on a volume while it
/// is rolled back. [`rollback_commands`] follows once they are down, then
/// [`rollback_finish`] brings them up again.
pub fn rollback_begin(
    cluster: &Cluster,
    runtime: &Runtime,
    resource: &str,
    snapshot: &str,
    body: &rest::SnapshotRollback,
) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let rd = resource_definitions::find(ctx, cluster, resource)?;
    let definition = find_definition(ctx, cluster, rd, snapshot)?;
    check_rollback(ctx, runtime, rd, definition, body)?;
    let already_down: &[String] = rd.rollback.as_ref().map_or(&[], |r| &r.down);
    for member in rd.resources.values() {
        if already_down.contains(&member.uuid) {
            continue;
        }
        let report = runtime
            .get(&member.node)
            .and_then(|n| n.replication.get(rd.name.key()));
        let in_use = match report {
            None if member.inactive => continue,
            None => Some("its engine has not reported whether it is in use".to_string()),
            Some(r) if r.in_use => Some("it is in use (opened)".to_string()),
            Some(r) if r.role == ferrite_proto::Role::Primary => Some("it is Primary".to_string()),
            Some(_) => None,
        };
        if let Some(why) = in_use {
            return Err(ctx
                .error(
                    code::FAIL_IN_USE,
                    format!(
                        "Cannot roll back replicated resource '{}' to snapshot '{}': {why} on node '{}'.",
                        rd.name, definition.name, member.node
                    ),
                )
                .cause(
                    "A rollback takes the resource down on every node and replaces its data; \
                     whoever uses it would lose the device under them.",
                )
                .correction(
                    "Stop using the resource on that node (unmount it, stop the VM, disconnect \
                     its NBD clients) and roll back again.",
                )
                .obj_ref("Node", member.node.as_str())
                .into());
        }
    }
    let mut marked = rd.clone();
    marked.rollback = Some(RollbackState {
        snapshot: definition.name.clone(),
        generation: model::new_generation(),
        down: rd.resources.values().map(|r| r.uuid.clone()).collect(),
    });
    let mut plan = Plan::new();
    plan.op(Op::PutResourceDefinition(marked)).reply(
        ctx.info(
            code::MODIFIED,
            format!(
                "Resource '{}' taken down on every node for its rollback to snapshot '{}'.",
                rd.name, definition.name
            ),
        )
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("SnapshotName", definition.name.as_str()),
    );
    Ok(plan)
}

/// The members of a replicated resource in rollback whose node does not report them down yet:
/// the engine still reports the resource, or the node could not take it down.
fn not_down(rd: &ResourceDefinition, runtime: &Runtime) -> Vec<String> {
    let mut up = Vec::new();
    for member in rd.resources.values() {
        let Some(node) = runtime.get(&member.node) else {
            up.push(format!("'{}': no satellite link", member.node));
            continue;
        };
        let failed_down = format!("resource '{}' is inactive, but", rd.name).to_lowercase();
        if let Some(error) = node
            .errors
            .iter()
            .find(|e| e.to_lowercase().starts_with(&failed_down))
        {
            up.push(format!("'{}': {error}", member.node));
        } else if node.replication.contains_key(rd.name.key()) {
            up.push(format!(
                "'{}': its replication engine still runs the resource",
                member.node
            ));
        }
    }
    up
}

/// `POST /v1/resource-definitions/{rd}/snapshot-rollback/{snapshot}`: the commands that roll
/// every node of the resource back to its snapshot. Refused unless the snapshot is on every
/// node with the resource's data, each took it, and the volumes are the snapshot's; for a
/// replicated resource, unless [`rollback_begin`] took every member down: each node then
/// writes new replication metadata, UpToDate at one generation they all share.
pub fn rollback_commands(
    cluster: &Cluster,
    runtime: &Runtime,
    resource: &str,
    snapshot: &str,
    body: &rest::SnapshotRollback,
) -> Result<Vec<(NodeName, NodeCommand)>, Failure> {
    let ctx = &MODIFY;
    let rd = resource_definitions::find(ctx, cluster, resource)?;
    let definition = find_definition(ctx, cluster, rd, snapshot)?;
    let members = check_rollback(ctx, runtime, rd, definition, body)?;
    let fresh_generation = if rd.is_replicated() {
        let Some(state) = rd
            .rollback
            .as_ref()
            .filter(|r| r.snapshot == definition.name && r.down.len() == rd.resources.len())
        else {
            return Err(ctx
                .error(
                    code::FAIL_IN_USE,
                    format!(
                        "Replicated resource '{}' is not down for its rollback to snapshot '{}'.",
                        rd.name, definition.name
                    ),
                )
                .correction("Roll back again: every member is taken down first.")
                .into());
        };
        let up = not_down(rd, runtime);
        if !up.is_empty() {
            return Err(ctx
                .error(
                    code::FAIL_IN_USE,
                    format!(
                        "Cannot roll back replicated resource '{}': not every member went down.",
                        rd.name
                    ),
                )
                .cause(up.join("; "))
                .correction(
                    "Fix what the nodes report and roll back again; nothing was rolled back.",
                )
                .into());
        }
        Some(state.generation)
    } else {
        None
    };
    Ok(members
        .into_iter()
        .map(|(resource, taken)| {
            (
                resource.node.clone(),
                NodeCommand::RollbackSnapshot {
                    resource: rd.name.to_string(),
                    resource_uuid: resource.uuid.clone(),
                    snapshot: definition.name.to_string(),
                    snapshot_uuid: taken.uuid.clone(),
                    volumes: definition
                        .volume_definitions
                        .iter()
                        .map(|v| RollbackVolume {
                            volume_number: v.number.get(),
                            identity: v.identity.clone(),
                        })
                        .collect(),
                    fresh_generation,
                },
            )
        })
        .collect())
}

/// The last step of rolling back a replicated resource: its members come up again, except
/// those on the nodes `down` (nodes that could not roll back, or, when the rollback was
/// abandoned before any node rolled back, those that were down before it began). The rolled-back ones start
/// UpToDate at the rollback's generation; a member that went down with its rollback half done
/// comes back with just-created metadata and a full sync from them.
pub fn rollback_finish(
    cluster: &Cluster,
    resource: &str,
    down: &[NodeName],
) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let rd = resource_definitions::find(ctx, cluster, resource)?;
    let mut plan = Plan::new();
    let Some(state) = &rd.rollback else {
        return Ok(plan);
    };
    let mut updated = rd.clone();
    let kept: Vec<String> = rd
        .resources
        .values()
        .filter(|r| down.contains(&r.node))
        .map(|r| r.uuid.clone())
        .collect();
    updated.rollback = (!kept.is_empty()).then(|| RollbackState {
        down: kept,
        ..state.clone()
    });
    plan.op(Op::PutResourceDefinition(updated));
    if down.is_empty() {
        plan.reply(
            ctx.info(
                code::MODIFIED,
                format!("Resource '{}' brought up again on every node.", rd.name),
            )
            .obj_ref("RscDfn", rd.name.as_str()),
        );
    } else {
        let nodes: Vec<String> = down.iter().map(|n| format!("'{n}'")).collect();
        plan.reply(
            ctx.warn(
                code::WARN_NOT_CONNECTED,
                format!(
                    "Resource '{}' stays down on {}: its rollback to snapshot '{}' did not complete there.",
                    rd.name,
                    nodes.join(", "),
                    state.snapshot
                ),
            )
            .correction(
                "Roll back again once the cause is fixed, or delete the resource on those nodes \
                 (a new replica gets its data from the others).",
            )
            .obj_ref("RscDfn", rd.name.as_str()),
        );
    }
    Ok(plan)
}

/// The name of the snapshot a clone is made through.
pub fn clone_snapshot_name() -> String {
    let short: String = model::new_uuid()
        .chars()
        .filter(|c| *c != '-')
        .take(12)
        .collect();
    format!("CF_{short}")
}

/// The first step of `POST /v1/resource-definitions/{rd}/clone`: checks the request and
/// creates the clone's definition (with the source's group, properties and stack unless the
/// request says otherwise). The snapshot it is made through and the restore follow.
pub fn clone_definition(
    cluster: &Cluster,
    source: &str,
    body: &rest::ResourceDefinitionCloneRequest,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Create, Object::ResourceDefinition);
    let rd = resource_definitions::find(ctx, cluster, source)?;
    let clone_name = match (&body.external_name, body.name.is_empty()) {
        (Some(external), true) => external.clone(),
        _ => body.name.clone(),
    };
    let name = ResourceName::new_checked(&clone_name)
        .map_err(|e| ctx.invalid_name(code::FAIL_INVLD_RSC_NAME, &e))?;
    if cluster.resource_definition(&name).is_some() {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_RSC_DFN,
                format!("Resource definition '{name}' already exists."),
            )
            .correction("Choose another name for the clone.")
            .into());
    }
    if !body.volume_passphrases.is_empty() {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            "Volume passphrases are not supported: Ferrite has no encryption layer.",
            "Leave volume_passphrases out.",
        ));
    }
    if !body.volume_sizes.is_empty() && body.volume_sizes.iter().any(|s| *s != 0) {
        return Err(ctx.invalid(
            code::FAIL_INVLD_VLM_SIZES,
            "Growing the clone's volumes is not supported yet.",
            "Clone at the source's sizes, then grow the volumes with 'ferrite volume-definition set-size'.",
        ));
    }
    let layer_stack = match &body.layer_list {
        Some(layers) if !layers.is_empty() => {
            super::placement::normalize_layers(ctx, layers.clone())?
        }
        _ => rd.resource_layers().to_vec(),
    };
    let group = match &body.resource_group {
        Some(group) => super::resource_groups::find(ctx, cluster, group)?
            .name
            .clone(),
        None => rd.resource_group.clone(),
    };
    let mut props = rd.props.clone();
    super::properties::check_all(ctx, &body.override_props)?;
    props.extend(body.override_props.clone());
    for key in &body.delete_props {
        props.remove(key);
    }
    for namespace in &body.delete_namespaces {
        let prefix = format!("{}/", namespace.trim_end_matches('/'));
        props.retain(|k, _| !k.starts_with(&prefix));
    }
    let clone = ResourceDefinition {
        name: name.clone(),
        uuid: model::new_uuid(),
        external_name: body.external_name.clone(),
        props,
        flags: Vec::new(),
        resource_group: group,
        layer_stack,
        secret: None,
        rollback: None,
        volume_definitions: Default::default(),
        resources: Default::default(),
    };
    let mut plan = Plan::new();
    plan.op(Op::PutResourceDefinition(clone)).reply(
        ctx.created(format!(
            "Resource definition '{name}' created as a clone of '{}'.",
            rd.name
        ))
        .obj_ref("RscDfn", name.as_str()),
    );
    Ok(plan)
}

/// `GET /v1/resource-definitions/{rd}/clone/{clone}`: `COMPLETE` once every volume of every
/// resource of the clone is reported created (and, for a replicated clone, its engine reports
/// every diskful replica UpToDate), `FAILED` when one failed, else `CLONING`.
pub fn clone_status(
    cluster: &Cluster,
    runtime: &Runtime,
    source: &str,
    clone: &str,
) -> Result<rest::ResourceDefinitionCloneStatus, Failure> {
    let ctx = &Context::new(Operation::Modify, Object::ResourceDefinition);
    resource_definitions::find(ctx, cluster, source)?;
    let clone = resource_definitions::find(ctx, cluster, clone)?;
    // The clone request places the clone's resources before it answers: a clone without
    // resources is one whose restore failed.
    if clone.resources.is_empty() {
        return Ok(rest::ResourceDefinitionCloneStatus {
            status: "FAILED".to_string(),
        });
    }
    let mut status = "COMPLETE";
    for resource in clone.resources.values().filter(|r| r.holds_data()) {
        for vd in clone.volume_definitions.values() {
            let report = runtime
                .get(&resource.node)
                .and_then(|r| r.volumes.get(clone.name.key()))
                .and_then(|v| v.get(&vd.number.get()));
            match report {
                Some(v) if v.error.is_some() => {
                    return Ok(rest::ResourceDefinitionCloneStatus {
                        status: "FAILED".to_string(),
                    });
                }
                Some(v) if v.disk_state == "UpToDate" => {}
                _ => status = "CLONING",
            }
        }
    }
    // A replicated clone is complete once its engine reports every diskful replica UpToDate,
    // what `resource-definition wait-sync` waits for.
    if status == "COMPLETE"
        && clone.is_replicated()
        && !super::sync_status::sync_status(cluster, runtime, clone.name.as_str())?.synced_on_all
    {
        status = "CLONING";
    }
    Ok(rest::ResourceDefinitionCloneStatus {
        status: status.to_string(),
    })
}

/// `GET /v1/view/snapshots` and `GET /v1/resource-definitions/{rd}/snapshots`.
pub fn list(
    cluster: &Cluster,
    runtime: &Runtime,
    filter: &super::views::ListFilter,
) -> Vec<rest::Snapshot> {
    let items = cluster
        .snapshot_definitions
        .values()
        .filter(|d| filter.resource(d.resource.as_str()))
        .filter(|d| filter.nodes.is_empty() || d.snapshots.keys().any(|n| filter.node(n.as_str())))
        .map(|d| view(runtime, d));
    filter.page_iter(items).collect()
}

/// One snapshot definition in LINSTOR's shape.
pub fn view(runtime: &Runtime, definition: &SnapshotDefinition) -> rest::Snapshot {
    let mut all_taken = !definition.snapshots.is_empty();
    let mut any_failed = false;
    let snapshots = definition
        .snapshots
        .values()
        .map(|snapshot| {
            let reports: Vec<_> = runtime
                .get(&snapshot.node)
                .map(|r| {
                    r.snapshot_volumes(
                        definition.resource.as_str(),
                        definition.name.as_str(),
                        &snapshot.uuid,
                    )
                    .cloned()
                    .collect()
                })
                .unwrap_or_default();
            let volumes = definition
                .volume_definitions
                .iter()
                .map(|v| {
                    let report = reports.iter().find(|r| r.volume_number == v.number.get());
                    let state = match (snapshot.is_deleting(), report) {
                        (true, _) => "Deleting".to_string(),
                        (false, Some(r)) => match &r.error {
                            Some(e) => {
                                any_failed = true;
                                all_taken = false;
                                format!("Failed: {e}")
                            }
                            None => "Successful".to_string(),
                        },
                        (false, None) => {
                            all_taken = false;
                            "Incomplete".to_string()
                        }
                    };
                    let mut props = rest::Props::new();
                    if let Some(method) = report.and_then(|r| r.method.clone()) {
                        props.insert(PROP_SNAPSHOT_METHOD.to_string(), method);
                    }
                    rest::SnapshotVolumeNode {
                        uuid: None,
                        vlm_nr: i32::from(v.number.get()),
                        props,
                        snapshot_volume_props: Default::default(),
                        volume_props: Default::default(),
                        state: Some(state),
                    }
                })
                .collect();
            let mut flags = Vec::new();
            if snapshot.is_deleting() {
                flags.push(model::FLAG_DELETE.to_string());
            }
            rest::SnapshotNode {
                snapshot_name: definition.name.to_string(),
                node_name: snapshot.node.to_string(),
                create_timestamp: snapshot.create_timestamp,
                flags,
                uuid: Some(snapshot.uuid.clone()),
                snapshot_props: snapshot.props.clone(),
                resource_props: Default::default(),
                snapshot_volumes: volumes,
            }
        })
        .collect();
    let mut flags = Vec::new();
    if definition.is_deleting() {
        flags.push(model::FLAG_DELETE.to_string());
    } else if any_failed {
        flags.push(FLAG_FAILED_DEPLOYMENT.to_string());
    } else if all_taken {
        flags.push(FLAG_SUCCESSFUL.to_string());
    }
    rest::Snapshot {
        name: definition.name.to_string(),
        resource_name: definition.resource.to_string(),
        nodes: definition.snapshots.keys().map(|n| n.to_string()).collect(),
        props: definition.props.clone(),
        snapshot_definition_props: definition.props.clone(),
        resource_definition_props: definition.resource_definition_props.clone(),
        flags,
        volume_definitions: definition
            .volume_definitions
            .iter()
            .map(|v| rest::SnapshotVolumeDefinition {
                volume_number: i32::from(v.number.get()),
                size_kib: v.size_kib as i64,
                snapshot_volume_definition_props: Default::default(),
                volume_definition_props: v.props.clone(),
            })
            .collect(),
        uuid: Some(definition.uuid.clone()),
        snapshots,
    }
}

/// One snapshot, as `GET /v1/resource-definitions/{rd}/snapshots/{snapshot}` shows it.
pub fn show(
    cluster: &Cluster,
    runtime: &Runtime,
    resource: &str,
    snapshot: &str,
) -> Result<rest::Snapshot, Failure> {
    let ctx = &MODIFY;
    let rd = resource_definitions::find(ctx, cluster, resource)?;
    let definition = find_definition(ctx, cluster, rd, snapshot)?;
    Ok(view(runtime, definition))
}

/// The answer of a rollback: one success per node that rolled back, one error per node that
/// could not.
pub fn rollback_answer(
    resource: &str,
    snapshot: &str,
    results: Vec<(NodeName, Result<String, String>)>,
) -> Vec<ApiCallRc> {
    let ctx = &MODIFY;
    let mut entries = Vec::new();
    let mut all = true;
    for (node, result) in results {
        match result {
            Ok(done) => entries.push(
                ctx.info(code::MODIFIED, format!("Node '{node}': {done}"))
                    .obj_ref("Node", node.as_str()),
            ),
            Err(why) => {
                all = false;
                entries.push(
                    ctx.error(
                        code::FAIL_UNKNOWN_ERROR,
                        format!("Node '{node}' could not roll back resource '{resource}' to snapshot '{snapshot}'."),
                    )
                    .cause(why)
                    .correction("Fix the cause on the node and roll back again.")
                    .obj_ref("Node", node.as_str()),
                );
            }
        }
    }
    if all {
        entries.push(
            ctx.modified(format!(
                "Successfully rolled back resource '{resource}' to snapshot '{snapshot}'."
            ))
            .obj_ref("RscDfn", resource)
            .obj_ref("SnapshotName", snapshot),
        );
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{
        add_resource, all_up_to_date, commit, engines_runtime, replicated_group, spawn,
        tutorial_cluster,
    };
    use ferrite_types::LayerKind;

    fn request(name: &str) -> rest::Snapshot {
        rest::Snapshot {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Creates the resource definition `name` a snapshot is restored into, with the layer stack
    /// `layers` (none: LINSTOR's default, chosen at its first placement).
    fn create_definition(
        cluster: &mut Cluster,
        runtime: &Runtime,
        name: &str,
        layers: &[LayerKind],
    ) {
        commit(cluster, runtime, |c, _| {
            crate::app::resource_definitions::create(
                c,
                &rest::ResourceDefinitionCreate {
                    resource_definition: rest::ResourceDefinition {
                        name: name.into(),
                        layer_data: layers
                            .iter()
                            .map(|layer| rest::ResourceDefinitionLayer {
                                layer_type: *layer,
                                data: None,
                            })
                            .collect(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
        });
    }

    /// A 2-replica MIRROR resource `web` with a tiebreaker, and a snapshot `snap1` of it whose
    /// cut is done and which every node reports taken.
    fn replicated_with_snapshot() -> (Cluster, Runtime) {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        let runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let mut runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        commit(&mut cluster, &runtime, |c, r| {
            create(c, r, "web", &request("snap1"))
        });
        let key = ("web".parse().unwrap(), "snap1".parse().unwrap());
        cluster.snapshot_definitions.get_mut(&key).unwrap().cut = CutPhase::Done;
        taken(&cluster, &mut runtime);
        (cluster, runtime)
    }

    fn rd<'a>(cluster: &'a Cluster, name: &str) -> &'a ResourceDefinition {
        &cluster.resource_definitions[&name.parse::<ResourceName>().unwrap()]
    }

    /// What `node`'s desired state says of `resource`.
    fn spec_on(cluster: &Cluster, node: &NodeName, resource: &str) -> ferrite_proto::ResourceSpec {
        crate::satellites::desired::full_state(cluster, node)
            .resources
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(resource))
            .unwrap()
    }

    /// Found by the restart model test (seed 22): an evacuation deleted a replica whose node
    /// held a snapshot of it, and the snapshot's deletion, which reaches a node only through
    /// the resource there, could never finish. Now the replica stays until its snapshots are
    /// deleted; a resource some path marked anyway stays as their carrier; and a lost node's
    /// snapshots are forgotten with it (the store refused to delete a node they referenced).
    #[test]
    fn a_snapshot_keeps_its_resource_on_the_node_until_it_is_deleted() {
        use crate::app::{deletions, evacuation, nodes};
        use ferrite_proto::{DeletedResource, DeletedSnapshot, NodeReport};

        let (mut cluster, runtime) = replicated_with_snapshot();
        let key = ("web".parse().unwrap(), "snap1".parse().unwrap());
        let holders: Vec<NodeName> = cluster.snapshot_definitions[&key]
            .snapshots
            .keys()
            .cloned()
            .collect();
        let [first, second] = &holders[..] else {
            panic!("snap1 is on {holders:?}");
        };

        // Evacuating the first holder places a replacement; once everything is in sync the
        // evacuated replica would go, but its snapshot holds it.
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            evacuation::evacuate(c, r, first.as_str(), &rest::NodeEvacuate::default())
        });
        assert_eq!(rd(&cluster, "web").diskful_count(), 3, "{replies:?}");
        let mut runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        taken(&cluster, &mut runtime);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| Ok(deletions::finish(c, r)));
        let kept = &rd(&cluster, "web").resources[first];
        assert!(kept.evacuating && !kept.is_deleting(), "{replies:?}");

        // A resource marked for deletion anyway, and confirmed, stays while the snapshot does;
        // once the snapshot's deletion is confirmed too, both go in one plan.
        let mut marked = kept.clone();
        marked.phase = ResourcePhase::Deleting;
        Op::PutResource {
            resource: "web".parse().unwrap(),
            placed: marked.clone(),
        }
        .apply(&mut cluster);
        runtime.get_mut(first).unwrap().absorb(NodeReport {
            deleted_resources: vec![DeletedResource {
                resource: "web".into(),
                uuid: marked.uuid.clone(),
            }],
            ..Default::default()
        });
        commit(&mut cluster, &runtime, |c, r| Ok(deletions::finish(c, r)));
        assert!(rd(&cluster, "web").resources.contains_key(first));
        commit(&mut cluster, &runtime, |c, _| {
            delete(c, "web", "snap1", &[first.to_string()])
        });
        let uuid = cluster.snapshot_definitions[&key].snapshots[first]
            .uuid
            .clone();
        // The node's next report confirms both: the resource is still marked in its state.
        runtime.get_mut(first).unwrap().absorb(NodeReport {
            deleted_resources: vec![DeletedResource {
                resource: "web".into(),
                uuid: marked.uuid.clone(),
            }],
            deleted_snapshots: vec![DeletedSnapshot {
                resource: "web".into(),
                snapshot: "snap1".into(),
                uuid,
            }],
            ..Default::default()
        });
        commit(&mut cluster, &runtime, |c, r| Ok(deletions::finish(c, r)));
        assert!(!rd(&cluster, "web").resources.contains_key(first));
        assert!(
            !cluster.snapshot_definitions[&key]
                .snapshots
                .contains_key(first)
        );

        // The second holder is lost: its snapshot is forgotten with it.
        runtime.get_mut(second).unwrap().status = ferrite_types::ConnectionStatus::Offline;
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            nodes::lost(c, r, second.as_str())
        });
        assert!(cluster.node(second).is_none(), "{replies:?}");
        assert!(
            cluster
                .snapshot_definitions
                .get(&key)
                .is_none_or(|d| d.snapshots.is_empty()),
            "{replies:?}"
        );
    }

    /// An evacuated replica held back by its snapshot goes in the same pass that forgets the
    /// snapshot, with no further report needed to get it moving.
    #[test]
    fn an_evacuated_replica_goes_with_its_last_snapshot() {
        use crate::app::{deletions, evacuation};
        use ferrite_proto::{DeletedSnapshot, NodeReport};

        let (mut cluster, runtime) = replicated_with_snapshot();
        let key = ("web".parse().unwrap(), "snap1".parse().unwrap());
        let first = cluster.snapshot_definitions[&key]
            .snapshots
            .keys()
            .next()
            .cloned()
            .unwrap();
        commit(&mut cluster, &runtime, |c, r| {
            evacuation::evacuate(c, r, first.as_str(), &rest::NodeEvacuate::default())
        });
        let mut runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        taken(&cluster, &mut runtime);
        commit(&mut cluster, &runtime, |c, r| Ok(deletions::finish(c, r)));
        assert!(!rd(&cluster, "web").resources[&first].is_deleting());

        commit(&mut cluster, &runtime, |c, _| {
            delete(c, "web", "snap1", &[first.to_string()])
        });
        let uuid = cluster.snapshot_definitions[&key].snapshots[&first]
            .uuid
            .clone();
        runtime.get_mut(&first).unwrap().absorb(NodeReport {
            deleted_snapshots: vec![DeletedSnapshot {
                resource: "web".into(),
                snapshot: "snap1".into(),
                uuid,
            }],
            ..Default::default()
        });
        let runtime = {
            // The engines still report every member UpToDate.
            let mut fresh = engines_runtime(&cluster, &[LayerKind::Mirror]);
            fresh.get_mut(&first).unwrap().deleted_snapshots =
                runtime[&first].deleted_snapshots.clone();
            fresh
        };
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| Ok(deletions::finish(c, r)));
        assert!(
            !cluster.snapshot_definitions[&key]
                .snapshots
                .contains_key(&first),
            "{replies:?}"
        );
        assert!(
            rd(&cluster, "web").resources[&first].is_deleting(),
            "{replies:?}"
        );
    }

    #[test]
    fn a_replicated_snapshot_restores_into_replicated_members_that_start_in_sync() {
        let (mut cluster, runtime) = replicated_with_snapshot();
        create_definition(&mut cluster, &runtime, "copy", &[]);
        let body = rest::SnapshotRestore {
            to_resource: "copy".into(),
            ..Default::default()
        };
        commit(&mut cluster, &runtime, |c, r| {
            restore_resources(c, r, "web", "snap1", &body)
        });
        let copy = rd(&cluster, "copy");
        assert_eq!(copy.layer_stack, [LayerKind::Mirror, LayerKind::Storage]);
        assert!(
            copy.volume_definitions
                .values()
                .all(|vd| vd.minor.is_some()),
            "the restored volume definitions get their minors with the stack chosen after them"
        );
        let diskful: Vec<&Resource> = copy.resources.values().filter(|r| !r.diskless).collect();
        assert_eq!(diskful.len(), 2, "every node of the snapshot");
        assert!(
            copy.resources.values().any(|r| r.tiebreaker),
            "two disks get a tiebreaker"
        );
        // Every restored member starts at one fresh generation, sent with its volumes: the same
        // cut on every node, so the same data.
        let generations: Vec<Option<u64>> = diskful
            .iter()
            .map(|r| r.restore_from.as_ref().unwrap().generation)
            .collect();
        assert!(generations[0].is_some());
        assert_eq!(generations[0], generations[1]);
        for member in copy.resources.values() {
            let spec = spec_on(&cluster, &member.node, "copy");
            assert!(spec.replication.is_some(), "a replicated member");
            let fresh: Vec<Option<u64>> = spec
                .volumes
                .iter()
                .map(|v| v.restore_from.as_ref().and_then(|s| s.fresh_generation))
                .collect();
            if member.diskless {
                assert!(
                    member.restore_from.is_none(),
                    "the tiebreaker restores nothing"
                );
            } else {
                assert_eq!(fresh, [generations[0]]);
            }
        }
        // Not another restore into it: a member restored later would start at another
        // generation on the same data, or the same one on other data.
        let err = restore_resources(&cluster, &runtime, "web", "snap1", &body).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_EXISTS_RSC);
        // A replica added later has no restore source: it is a full-sync target of the others.
        let node4: NodeName = "node4".parse().unwrap();
        commit(&mut cluster, &runtime, |c, r| {
            crate::app::resources::create(
                c,
                r,
                "copy",
                &[rest::ResourceCreate {
                    resource: rest::Resource {
                        node_name: "node4".into(),
                        props: [(
                            ferrite_types::PROP_RESOURCE_STOR_POOL.to_string(),
                            "pool_ssd".to_string(),
                        )]
                        .into(),
                        ..Default::default()
                    },
                    ..Default::default()
                }],
            )
        });
        let added = spec_on(&cluster, &node4, "copy");
        assert!(!added.diskless);
        assert!(added.volumes.iter().all(|v| v.restore_from.is_none()));
    }

    #[test]
    fn a_replicated_restore_into_a_larger_volume_definition_is_refused_and_changes_nothing() {
        let (mut cluster, runtime) = replicated_with_snapshot();
        create_definition(
            &mut cluster,
            &runtime,
            "copy",
            &[LayerKind::Mirror, LayerKind::Storage],
        );
        commit(&mut cluster, &runtime, |c, r| {
            crate::app::resource_definitions::create_volume(
                c,
                r,
                "copy",
                &rest::VolumeDefinitionCreate {
                    volume_definition: rest::VolumeDefinition {
                        size_kib: 2 << 20,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
        });
        let before = format!("{:?}", rd(&cluster, "copy"));
        let body = rest::SnapshotRestore {
            to_resource: "copy".into(),
            ..Default::default()
        };
        let err = restore_resources(&cluster, &runtime, "web", "snap1", &body).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_INVLD_VLM_SIZE);
        assert!(err.0[0].cause.as_deref().unwrap().contains("start in sync"));
        assert!(err.0[0].correction.as_deref().unwrap().contains("set-size"));
        assert_eq!(format!("{:?}", rd(&cluster, "copy")), before);
    }

    #[test]
    fn a_replicated_rollback_takes_every_member_down_first_and_is_refused_while_one_is_in_use() {
        let (mut cluster, mut runtime) = replicated_with_snapshot();
        let body = rest::SnapshotRollback::default();
        let web = rd(&cluster, "web").clone();
        let primary = web
            .resources
            .values()
            .find(|r| !r.diskless)
            .unwrap()
            .node
            .clone();
        // In use: refused, naming the node, and nothing changes.
        let report = runtime
            .get_mut(&primary)
            .unwrap()
            .replication
            .get_mut("WEB")
            .unwrap();
        report.in_use = true;
        report.role = ferrite_proto::Role::Primary;
        let err = rollback_begin(&cluster, &runtime, "web", "snap1", &body).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_IN_USE);
        assert!(
            err.0[0]
                .message
                .contains(&format!("in use (opened) on node '{primary}'")),
            "{}",
            err.0[0].message
        );
        assert!(err.0[0].correction.is_some());
        runtime
            .get_mut(&primary)
            .unwrap()
            .replication
            .get_mut("WEB")
            .unwrap()
            .in_use = false;
        let err = rollback_begin(&cluster, &runtime, "web", "snap1", &body).unwrap_err();
        assert!(
            err.0[0].message.contains("it is Primary"),
            "{}",
            err.0[0].message
        );
        runtime
            .get_mut(&primary)
            .unwrap()
            .replication
            .get_mut("WEB")
            .unwrap()
            .role = ferrite_proto::Role::Secondary;
        // Commands before every member is down: refused.
        let err = rollback_commands(&cluster, &runtime, "web", "snap1", &body).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_IN_USE);
        // Taken down: every member, the tiebreaker too, is inactive in its node's state.
        commit(&mut cluster, &runtime, |c, r| {
            rollback_begin(c, r, "web", "snap1", &body)
        });
        let state = rd(&cluster, "web").rollback.clone().unwrap();
        for member in web.resources.values() {
            assert!(spec_on(&cluster, &member.node, "web").inactive);
        }
        // Still running in an engine: not rolled back.
        let err = rollback_commands(&cluster, &runtime, "web", "snap1", &body).unwrap_err();
        assert!(err.0[0].cause.as_deref().unwrap().contains("still runs"));
        // Down everywhere: one command per disk, all with the rollback's generation.
        for member in web.resources.values() {
            runtime
                .get_mut(&member.node)
                .unwrap()
                .replication
                .remove("WEB");
        }
        let commands = rollback_commands(&cluster, &runtime, "web", "snap1", &body).unwrap();
        assert_eq!(commands.len(), 2);
        for (_, command) in &commands {
            let NodeCommand::RollbackSnapshot {
                fresh_generation, ..
            } = command
            else {
                panic!("{command:?}");
            };
            assert_eq!(*fresh_generation, Some(state.generation));
        }
        // A node that failed stays down; the others come up.
        commit(&mut cluster, &runtime, |c, _| {
            rollback_finish(c, "web", std::slice::from_ref(&primary))
        });
        for member in web.resources.values() {
            assert_eq!(
                spec_on(&cluster, &member.node, "web").inactive,
                member.node == primary
            );
        }
        commit(&mut cluster, &runtime, |c, _| {
            rollback_finish(c, "web", &[])
        });
        assert!(rd(&cluster, "web").rollback.is_none());
        for member in web.resources.values() {
            assert!(!spec_on(&cluster, &member.node, "web").inactive);
        }
    }

    #[test]
    fn a_clone_of_a_replicated_definition_keeps_its_stack_and_completes_once_in_sync() {
        let (mut cluster, mut runtime) = replicated_with_snapshot();
        commit(&mut cluster, &runtime, |c, _| {
            clone_definition(
                c,
                "web",
                &rest::ResourceDefinitionCloneRequest {
                    name: "web_clone".into(),
                    ..Default::default()
                },
            )
        });
        assert_eq!(
            rd(&cluster, "web_clone").layer_stack,
            rd(&cluster, "web").layer_stack
        );
        commit(&mut cluster, &runtime, |c, r| {
            restore_resources(
                c,
                r,
                "web",
                "snap1",
                &rest::SnapshotRestore {
                    to_resource: "web_clone".into(),
                    ..Default::default()
                },
            )
        });
        // Created, but its engine has not reported it yet: cloning still.
        let volumes = all_up_to_date(&cluster);
        for (node, reported) in &mut runtime {
            reported.volumes = volumes[node].volumes.clone();
        }
        let status = clone_status(&cluster, &runtime, "web", "web_clone").unwrap();
        assert_eq!(status.status, "CLONING");
        let runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        let status = clone_status(&cluster, &runtime, "web", "web_clone").unwrap();
        assert_eq!(status.status, "COMPLETE");
    }

    /// The runtime after every node of the snapshot reported it taken.
    fn taken(cluster: &Cluster, runtime: &mut Runtime) {
        for definition in cluster.snapshot_definitions.values() {
            for snapshot in definition.snapshots.values() {
                let node = runtime.get_mut(&snapshot.node).unwrap();
                for volume in &definition.volume_definitions {
                    node.snapshots.push(ferrite_proto::SnapshotReport {
                        resource: definition.resource.to_string(),
                        snapshot: definition.name.to_string(),
                        uuid: snapshot.uuid.clone(),
                        volume_number: volume.number.get(),
                        method: Some("reflink copy".into()),
                        error: None,
                    });
                }
            }
        }
    }

    #[test]
    fn a_snapshot_is_taken_on_every_diskful_node_and_blocks_the_definitions_deletion() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "web", "node1", "pool_ssd");
        add_resource(&mut cluster, "web", "node2", "pool_ssd");
        add_resource(&mut cluster, "web", "node3", "DfltDisklessStorPool");
        let mut runtime = all_up_to_date(&cluster);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            create(c, r, "web", &request("snap1"))
        });
        assert!(replies[0].message.contains("New snapshot 'snap1'"));
        let definition =
            &cluster.snapshot_definitions[&("web".parse().unwrap(), "snap1".parse().unwrap())];
        let nodes: Vec<String> = definition.snapshots.keys().map(|n| n.to_string()).collect();
        assert_eq!(nodes, ["node1", "node2"], "diskful nodes only");
        assert_eq!(view(&runtime, definition).flags, Vec::<String>::new());
        taken(&cluster, &mut runtime);
        let definition =
            &cluster.snapshot_definitions[&("web".parse().unwrap(), "snap1".parse().unwrap())];
        assert_eq!(view(&runtime, definition).flags, [FLAG_SUCCESSFUL]);

        // The same name again, a definition delete, a resource delete: refused as LINSTOR does.
        let again = create(&cluster, &runtime, "web", &request("SNAP1")).unwrap_err();
        assert_eq!(again.0[0].ret_code().code(), FAIL_EXISTS_SNAPSHOT_DFN);
        let err = resource_definitions::delete(&cluster, &runtime, "web").unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), FAIL_EXISTS_SNAPSHOT_DFN);
        assert_eq!(
            err.0[0].message,
            "Cannot delete resource definition 'web' because it has snapshots."
        );
        let err =
            crate::app::resources::delete(&cluster, &runtime, "web", "node1", false).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), FAIL_EXISTS_SNAPSHOT_DFN);
        // The diskless resource has no snapshot and may go.
        assert!(crate::app::resources::delete(&cluster, &runtime, "web", "node3", false).is_ok());
        // Nor may the volume the snapshot holds go (found by the restart model test, seed
        // 404: deleted, it left the snapshot nothing to roll back into, and the rollback
        // failed on the nodes with a 500).
        let err = resource_definitions::delete_volume(&cluster, "web", 0).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), FAIL_EXISTS_SNAPSHOT_DFN);
        assert!(err.0[0].message.contains("volume definition 0"), "{err:?}");
        // Had it gone (a store from before this check), the rollback is refused up front.
        let mut without_volume = cluster.clone();
        let web: ResourceName = "web".parse().unwrap();
        let definition_of_web = without_volume.resource_definitions.get_mut(&web).unwrap();
        let number = *definition_of_web.volume_definitions.keys().next().unwrap();
        definition_of_web.volume_definitions.remove(&number);
        let err = rollback_commands(
            &without_volume,
            &runtime,
            "web",
            "snap1",
            &rest::SnapshotRollback::default(),
        )
        .unwrap_err();
        assert!(
            err.0[0]
                .message
                .contains("no longer a volume of the definition"),
            "{err:?}"
        );

        // Deleting marks; the node's confirmation forgets.
        commit(&mut cluster, &runtime, |c, _| {
            delete(c, "web", "snap1", &[])
        });
        let definition =
            &cluster.snapshot_definitions[&("web".parse().unwrap(), "snap1".parse().unwrap())];
        assert!(definition.is_deleting());
        assert!(definition.snapshots.values().all(Snapshot::is_deleting));
        for snapshot in definition.snapshots.values() {
            runtime
                .get_mut(&snapshot.node)
                .unwrap()
                .deleted_snapshots
                .push(ferrite_proto::DeletedSnapshot {
                    resource: "web".into(),
                    snapshot: "snap1".into(),
                    uuid: snapshot.uuid.clone(),
                });
        }
        commit(&mut cluster, &runtime, |c, r| {
            Ok(crate::app::deletions::finish(c, r))
        });
        assert!(cluster.snapshot_definitions.is_empty());
        assert!(resource_definitions::delete(&cluster, &runtime, "web").is_ok());
    }

    #[test]
    fn a_replicated_resource_in_use_is_snapshotted_through_a_cut_on_every_member() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        let runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let mut runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        let web: ResourceName = "web".parse().unwrap();
        let rd = cluster.resource_definitions[&web].clone();
        let primary = rd
            .resources
            .values()
            .find(|r| r.holds_data())
            .unwrap()
            .node
            .clone();
        runtime
            .get_mut(&primary)
            .unwrap()
            .replication
            .get_mut("WEB")
            .unwrap()
            .in_use = true;
        // In use: taken all the same, through a cut.
        commit(&mut cluster, &runtime, |c, r| {
            create(c, r, "web", &request("snap1"))
        });
        let definition = cluster
            .snapshot_definition(&web, &"snap1".parse().unwrap())
            .unwrap();
        assert_eq!(definition.cut, CutPhase::Suspending);
        // Every member holds its writes, the diskless tiebreaker too; the diskful ones wait to
        // take it.
        assert!(
            rd.resources.values().any(|r| r.diskless),
            "a diskless member"
        );
        for member in rd.resources.values() {
            let state = crate::satellites::desired::full_state(&cluster, &member.node);
            let spec = state.resources.iter().find(|r| r.name == "web").unwrap();
            assert!(spec.suspend_io, "{} holds its writes", member.node);
            for snapshot in &spec.snapshots {
                assert_eq!(snapshot.cut, ferrite_proto::SnapshotCut::Wait);
            }
            assert_eq!(spec.snapshots.is_empty(), member.diskless);
        }
        // A member whose node does not report cannot hold its writes: refused.
        let mut runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        let member = rd.resources.keys().last().unwrap().clone();
        runtime.get_mut(&member).unwrap().status = ferrite_types::ConnectionStatus::Offline;
        let err = create(&cluster, &runtime, "web", &request("snap2")).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_NOT_CONNECTED);
        assert!(
            err.0[0]
                .cause
                .as_deref()
                .unwrap()
                .contains("same write boundary"),
            "the refusal says why"
        );
    }

    #[test]
    fn a_snapshot_whose_cut_was_abandoned_is_never_restored_from() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "web", "node1", "pool_ssd");
        add_resource(&mut cluster, "web", "node2", "pool_ssd");
        let mut runtime = all_up_to_date(&cluster);
        commit(&mut cluster, &runtime, |c, r| {
            create(c, r, "web", &request("snap1"))
        });
        taken(&cluster, &mut runtime);
        // Every node reports it taken, but a member did not hold its writes throughout.
        let key = ("web".parse().unwrap(), "snap1".parse().unwrap());
        cluster.snapshot_definitions.get_mut(&key).unwrap().cut = CutPhase::Abandoned;
        create_definition(&mut cluster, &runtime, "copy", &[]);
        let body = rest::SnapshotRestore {
            to_resource: "copy".into(),
            ..Default::default()
        };
        let err = restore_resources(&cluster, &runtime, "web", "snap1", &body).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), FAIL_SNAPSHOT_NOT_UPTODATE);
        assert!(
            err.0[0]
                .cause
                .as_deref()
                .is_some_and(|c| c.contains("cut was abandoned")),
            "{:?}",
            err.0[0]
        );
        let definition = &cluster.snapshot_definitions[&key];
        for snapshot in definition.snapshots.values() {
            assert!(taken_on(&runtime, definition, snapshot).is_err());
        }
    }

    #[test]
    fn restore_creates_resources_from_the_snapshot_on_its_nodes() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "web", "node1", "pool_ssd");
        add_resource(&mut cluster, "web", "node2", "pool_ssd");
        let mut runtime = all_up_to_date(&cluster);
        commit(&mut cluster, &runtime, |c, r| {
            create(c, r, "web", &request("snap1"))
        });
        let body = |to: &str| rest::SnapshotRestore {
            to_resource: to.into(),
            ..Default::default()
        };
        // Not taken yet: nothing to restore from.
        create_definition(&mut cluster, &runtime, "copy", &[]);
        let err = restore_resources(&cluster, &runtime, "web", "snap1", &body("copy")).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), FAIL_SNAPSHOT_NOT_UPTODATE);
        taken(&cluster, &mut runtime);
        commit(&mut cluster, &runtime, |c, r| {
            restore_resources(c, r, "web", "snap1", &body("copy"))
        });
        let copy = &cluster.resource_definitions[&"copy".parse::<ResourceName>().unwrap()];
        assert_eq!(copy.layer_stack, [LayerKind::Storage]);
        assert_eq!(copy.volume_definitions.len(), 1);
        assert_eq!(copy.resources.len(), 2);
        for resource in copy.resources.values() {
            let source = resource.restore_from.as_ref().unwrap();
            assert_eq!(source.resource.as_str(), "web");
            assert_eq!(source.snapshot.as_str(), "snap1");
        }
        // The volume spec of the restored resource names the snapshot and the source identity.
        let node1: NodeName = "node1".parse().unwrap();
        let spec = crate::satellites::desired::full_state(&cluster, &node1);
        let restored = spec.resources.iter().find(|r| r.name == "copy").unwrap();
        let source = restored.volumes[0].restore_from.as_ref().unwrap();
        let web = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        assert_eq!(
            source.identity,
            web.volume_definitions.values().next().unwrap().uuid
        );
        assert_ne!(
            restored.volumes[0].identity, source.identity,
            "a new volume"
        );
        // The restored resource's state does not change when the snapshot goes.
        let mut without = cluster.clone();
        without.snapshot_definitions.clear();
        let after = crate::satellites::desired::full_state(&without, &node1);
        let restored_after = after.resources.iter().find(|r| r.name == "copy").unwrap();
        assert_eq!(restored_after, restored);
        // A second restore into it, and a rollback of a restored resource to a snapshot it
        // does not have, are refused.
        let err = restore_resources(&cluster, &runtime, "web", "snap1", &body("copy")).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_EXISTS_RSC);
        let err = rollback_commands(
            &cluster,
            &runtime,
            "copy",
            "snap1",
            &rest::SnapshotRollback::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.0[0].ret_code().code(),
            code::FAIL_NOT_FOUND_SNAPSHOT_DFN
        );
        // Rollback of the source: one command per diskful node.
        let commands = rollback_commands(
            &cluster,
            &runtime,
            "web",
            "snap1",
            &rest::SnapshotRollback::default(),
        )
        .unwrap();
        assert_eq!(commands.len(), 2);
    }
}
