//! Two-phase deletion: what a deletion marks, when it is done, and what may not be removed.
//!
//! A request to delete a resource, a volume definition, a resource definition or a resource's
//! disk only marks the object (see `crate::model::ResourcePhase` and `FLAG_DELETE`). The marks
//! reach the satellites as explicit deletions naming each volume's identity; each satellite
//! deletes those backing volumes and confirms. [`finish`] turns confirmations into the final
//! ops: a confirmed resource is forgotten, a confirmed disk removal makes the resource
//! diskless, a volume definition confirmed on every node goes, and a definition marked for
//! deletion goes with its last resource. The controller runs it after every mutation that marks
//! something and whenever a satellite reports a confirmation, so a node that was offline
//! finishes its deletions when it comes back.
//!
//! [`check_keeps_up_to_date_replica`] refuses to remove the last copy of data that others still
//! need: removing a disk must leave an UpToDate replica on an online node. A member of a DRBD
//! resource on a node that only dry-runs DRBD (`--drbd-dry-run`) holds no DRBD data (nothing
//! ever ran), so removing it is never refused for that reason; real DRBD stays strict.

use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, NodeName, ResourceName, RetCode, SnapshotName, VolumeNumber};

use super::placement::Runtime;
use super::{Context, Failure, Plan};
use crate::model::{self, Cluster, Node, Op, Resource, ResourceDefinition, ResourcePhase};

/// Something a plan marked for deletion, for the answer once the controller tried to finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    Resource {
        resource: ResourceName,
        node: NodeName,
    },
    Disk {
        resource: ResourceName,
        node: NodeName,
    },
    VolumeDefinition {
        resource: ResourceName,
        number: VolumeNumber,
    },
    ResourceDefinition {
        resource: ResourceName,
    },
    /// A node marked for deletion: it goes with its last resource.
    Node {
        node: NodeName,
    },
    /// Snapshots of a snapshot definition on these nodes.
    Snapshot {
        resource: ResourceName,
        snapshot: ferrite_types::SnapshotName,
        nodes: Vec<NodeName>,
    },
}

impl Marked {
    /// Whether the deletion is done in `cluster`.
    pub fn is_done(&self, cluster: &Cluster) -> bool {
        let rd = |name: &ResourceName| cluster.resource_definitions.get(name);
        match self {
            Marked::Resource { resource, node } => {
                rd(resource).is_none_or(|rd| !rd.resources.contains_key(node))
            }
            Marked::Disk { resource, node } => rd(resource)
                .and_then(|rd| rd.resources.get(node))
                .is_none_or(|r| r.phase != ResourcePhase::DiskRemoving),
            Marked::VolumeDefinition { resource, number } => {
                rd(resource).is_none_or(|rd| !rd.volume_definitions.contains_key(number))
            }
            Marked::ResourceDefinition { resource } => rd(resource).is_none(),
            Marked::Node { node } => cluster.node(node).is_none(),
            Marked::Snapshot {
                resource,
                snapshot,
                nodes,
            } => cluster
                .snapshot_definition(resource, snapshot)
                .is_none_or(|d| nodes.iter().all(|n| !d.snapshots.contains_key(n))),
        }
    }

    /// The nodes whose confirmation is still missing.
    fn waiting_for(&self, cluster: &Cluster) -> Vec<NodeName> {
        if let Marked::Snapshot {
            resource,
            snapshot,
            nodes,
        } = self
        {
            return cluster
                .snapshot_definition(resource, snapshot)
                .map(|d| {
                    nodes
                        .iter()
                        .filter(|n| d.snapshots.contains_key(*n))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
        }
        if let Marked::Node { node } = self {
            return vec![node.clone()];
        }
        let Some(rd) = (match self {
            Marked::Node { .. } => None,
            Marked::Resource { resource, .. }
            | Marked::Disk { resource, .. }
            | Marked::VolumeDefinition { resource, .. }
            | Marked::ResourceDefinition { resource }
            | Marked::Snapshot { resource, .. } => cluster.resource_definitions.get(resource),
        }) else {
            return Vec::new();
        };
        match self {
            Marked::Resource { node, .. } | Marked::Disk { node, .. } | Marked::Node { node } => {
                vec![node.clone()]
            }
            Marked::VolumeDefinition { .. }
            | Marked::ResourceDefinition { .. }
            | Marked::Snapshot { .. } => rd.resources.keys().cloned().collect(),
        }
    }

    /// The answer for this deletion after the controller tried to finish it.
    pub fn outcome(&self, cluster: &Cluster, runtime: &Runtime) -> ApiCallRc {
        let (ctx, what) = match self {
            Marked::Resource { resource, node } => (
                Context::new(super::Operation::Delete, super::Object::Resource),
                format!("Resource '{resource}' on node '{node}'"),
            ),
            Marked::Disk { resource, node } => (
                Context::new(super::Operation::Modify, super::Object::Resource),
                format!("The disk of resource '{resource}' on node '{node}'"),
            ),
            Marked::VolumeDefinition { resource, number } => (
                Context::new(super::Operation::Delete, super::Object::VolumeDefinition),
                format!("Volume definition {number} of '{resource}'"),
            ),
            Marked::ResourceDefinition { resource } => (
                Context::new(super::Operation::Delete, super::Object::ResourceDefinition),
                format!("Resource definition '{resource}'"),
            ),
            Marked::Node { node } => (
                Context::new(super::Operation::Delete, super::Object::Node),
                format!("Node '{node}'"),
            ),
            Marked::Snapshot {
                resource, snapshot, ..
            } => (
                Context::new(super::Operation::Delete, super::Object::Snapshot),
                format!("Snapshot '{snapshot}' of resource '{resource}'"),
            ),
        };
        if self.is_done(cluster) {
            let verb = if matches!(self, Marked::Disk { .. }) {
                "removed"
            } else {
                "deleted"
            };
            return ctx.success(code::DELETED, format!("{what} {verb}."));
        }
        let waiting: Vec<String> = self
            .waiting_for(cluster)
            .iter()
            .map(|node| {
                let why = match runtime.get(node) {
                    None => "it has no satellite link".to_string(),
                    Some(r) if r.is_online() => match r.errors.first() {
                        Some(error) => format!("it reports: {error}"),
                        None => "it has not confirmed yet".to_string(),
                    },
                    Some(r) => format!(
                        "it is {}{}",
                        r.status,
                        r.last_error
                            .as_deref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ),
                };
                format!("'{node}': {why}")
            })
            .collect();
        ApiCallRc::new(
            RetCode::warn(code::WARN_NOT_CONNECTED)
                .with_context(ctx.operation.mask(), ctx.object.mask()),
            format!("{what} is marked for deletion; the deletion finishes once its nodes confirm."),
        )
        .cause(format!("Waiting for {}.", waiting.join("; ")))
        .correction(
            "Nothing is lost meanwhile: a node that comes back deletes what was marked. A node that \
             will never come back can be removed with 'ferrite node lost'.",
        )
    }
}

/// The ops that finish every deletion the satellites confirmed. Snapshots first: a resource
/// with a snapshot left on its node stays (marked) however its node answers, since the
/// snapshot's deletion reaches the node only through it; no path should mark such a
/// resource, and this keeps one that did from stranding the snapshot.
pub fn finish(cluster: &Cluster, runtime: &Runtime) -> Plan {
    let mut plan = Plan::new();
    super::snapshots::finish(cluster, runtime, &mut plan);
    let snapshots_going = snapshots_deleted_by(&plan);
    let snapshot_stays = |rd: &ResourceDefinition, node: &NodeName| {
        snapshot_stays(cluster, &snapshots_going, rd, node)
    };
    for rd in cluster.resource_definitions.values() {
        let mut remaining = 0usize;
        for resource in rd.resources.values() {
            let reported = runtime.get(&resource.node);
            match resource.phase {
                ResourcePhase::Deleting => {
                    if reported
                        .is_some_and(|r| r.deleted_resource(rd.name.as_str(), &resource.uuid))
                        && !snapshot_stays(rd, &resource.node)
                    {
                        plan.op(Op::DeleteResource {
                            resource: rd.name.clone(),
                            node: resource.node.clone(),
                        });
                    } else {
                        remaining += 1;
                    }
                }
                ResourcePhase::DiskRemoving => {
                    remaining += 1;
                    let all_gone = rd.volume_definitions.values().all(|vd| {
                        reported.is_some_and(|r| {
                            r.deleted_volume(rd.name.as_str(), vd.number.get(), &vd.uuid)
                        })
                    });
                    if all_gone {
                        plan.op(Op::PutResource {
                            resource: rd.name.clone(),
                            placed: without_disk(cluster, resource),
                        });
                    }
                }
                ResourcePhase::Active => remaining += 1,
            }
        }
        for vd in rd.volume_definitions.values().filter(|vd| vd.is_deleting()) {
            let confirmed_everywhere = rd.resources.values().all(|resource| {
                runtime
                    .get(&resource.node)
                    .is_some_and(|r| r.deleted_volume(rd.name.as_str(), vd.number.get(), &vd.uuid))
            });
            if confirmed_everywhere {
                plan.op(Op::DeleteVolumeDefinition {
                    resource: rd.name.clone(),
                    number: vd.number,
                });
            }
        }
        if rd.is_deleting() && remaining == 0 {
            plan.op(Op::DeleteResourceDefinition(rd.name.clone()));
        }
    }
    super::evacuation::finish(cluster, runtime, &snapshots_going, &mut plan);
    // A node marked for deletion goes with its last resource.
    for node in cluster.nodes.values().filter(|n| n.is_deleting()) {
        let left = cluster
            .resources_on_node(&node.name)
            .filter(|(rd, _)| {
                !plan.ops.iter().any(|op| {
                    matches!(op, Op::DeleteResource { resource, node: n }
                        if resource == &rd.name && n == &node.name)
                })
            })
            .count();
        if left == 0 {
            plan.op(Op::DeleteNode(node.name.clone()));
        }
    }
    plan
}

/// The snapshots a plan deletes, by definition, name and node.
pub type SnapshotsGoing = Vec<(ResourceName, SnapshotName, NodeName)>;

/// The snapshots `plan` deletes.
pub fn snapshots_deleted_by(plan: &Plan) -> SnapshotsGoing {
    plan.ops
        .iter()
        .filter_map(|op| match op {
            Op::DeleteSnapshot {
                resource,
                snapshot,
                node,
            } => Some((resource.clone(), snapshot.clone(), node.clone())),
            _ => None,
        })
        .collect()
}

/// Whether a snapshot of `rd` stays on `node` once the snapshots in `going` are deleted: then
/// the resource there must stay too, as the way the snapshot's deletion reaches the node.
pub fn snapshot_stays(
    cluster: &Cluster,
    going: &SnapshotsGoing,
    rd: &ResourceDefinition,
    node: &NodeName,
) -> bool {
    cluster.snapshots_on_node(&rd.name, node).any(|(d, _)| {
        !going
            .iter()
            .any(|(r, s, n)| r == &rd.name && s == &d.name && n == node)
    })
}

/// The resource once its disk is gone: in the node's diskless pool.
fn without_disk(cluster: &Cluster, resource: &Resource) -> Resource {
    let default = model::default_diskless_pool();
    let pool = cluster
        .node(&resource.node)
        .and_then(|node| {
            if node.storage_pools.contains_key(&default) {
                Some(default.clone())
            } else {
                node.storage_pools
                    .values()
                    .find(|p| p.is_diskless())
                    .map(|p| p.name.clone())
            }
        })
        .unwrap_or(default);
    let mut updated = resource.clone();
    updated.phase = ResourcePhase::Active;
    updated.diskless = true;
    updated.storage_pool = pool;
    updated
}

/// Why a resource's data cannot be counted on right now, or `None` if it can: its node is
/// online and every volume is reported UpToDate — by the replication engine when the resource
/// is replicated (a backing volume that exists says nothing of whether its data is current),
/// else by the storage layer.
pub(crate) fn not_up_to_date(
    rd: &ResourceDefinition,
    resource: &Resource,
    runtime: &Runtime,
) -> Option<String> {
    if !resource.holds_data() {
        return Some("it has no disk".to_string());
    }
    let Some(reported) = runtime.get(&resource.node).filter(|r| r.is_online()) else {
        return Some(format!("node '{}' is not online", resource.node));
    };
    let engine = rd
        .is_replicated()
        .then(|| reported.replication(rd.name.as_str()));
    for vd in rd.volume_definitions.values() {
        let number = vd.number.get();
        let state = match engine {
            Some(report) => report
                .and_then(|r| r.volumes.iter().find(|v| v.volume_number == number))
                .map(|v| v.disk_state.as_str()),
            None => reported
                .volumes
                .get(rd.name.key())
                .and_then(|volumes| volumes.get(&number))
                .map(|v| &*v.disk_state),
        };
        if state != Some("UpToDate") {
            return Some(format!(
                "volume {} on '{}' is {}",
                vd.number,
                resource.node,
                state.unwrap_or("not reported")
            ));
        }
    }
    None
}

/// Whether `node` runs the DRBD of `rd` only as a dry run: the definition is DRBD's and the
/// node dry-runs DRBD without supporting it. Its disk states (`DUnknown`) say nothing then.
fn dry_run(rd: &ResourceDefinition, node: &NodeName, runtime: &Runtime) -> bool {
    rd.replication_layer() == Some(ferrite_types::LayerKind::Drbd)
        && runtime
            .get(node)
            .and_then(|r| r.capabilities.as_ref())
            .is_some_and(|caps| {
                caps.dry_runs_layer(ferrite_types::LayerKind::Drbd)
                    && !caps.supports_layer(ferrite_types::LayerKind::Drbd)
            })
}

/// Refuses to remove the disk of `losing` (by deleting the resource, making it diskless or
/// declaring its node lost) when the other resources of `rd` still need data and none of them
/// has an UpToDate copy on an online node. Removing the last resource of a definition is fine:
/// nothing depends on it.
pub fn check_keeps_up_to_date_replica(
    ctx: &Context,
    rd: &ResourceDefinition,
    runtime: &Runtime,
    losing: &NodeName,
    action: &str,
) -> Result<(), Failure> {
    let Some(resource) = rd.resources.get(losing) else {
        return Ok(());
    };
    if !resource.holds_data() || rd.volume_definitions.is_empty() || dry_run(rd, losing, runtime) {
        return Ok(());
    }
    let others: Vec<&Resource> = rd
        .resources
        .values()
        .filter(|r| &r.node != losing && !r.is_deleting())
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    let reasons: Vec<String> = others
        .iter()
        .map(|r| not_up_to_date(rd, r, runtime).map(|why| format!("'{}': {why}", r.node)))
        .collect::<Option<Vec<String>>>()
        .unwrap_or_default();
    if reasons.is_empty() {
        // Some other resource is UpToDate on an online node.
        return Ok(());
    }
    Err(ctx
        .error(
            code::FAIL_INSUFFICIENT_REPLICA_COUNT,
            format!(
                "Cannot {action}: no other replica of '{}' is UpToDate on an online node.",
                rd.name
            ),
        )
        .cause(format!(
            "The resources that would remain ({}) still reach their data through a disk, and none has an UpToDate copy: {}.",
            others
                .iter()
                .map(|r| r.node.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            reasons.join("; ")
        ))
        .correction(
            "Bring a node with an UpToDate replica online first, or add a disk on another node \
             and wait until it is UpToDate. To remove everything, delete the resource definition.",
        )
        .into())
}

/// Refuses a change to a resource definition that is being deleted.
pub fn refuse_if_deleting(
    ctx: &Context,
    rd: &ResourceDefinition,
    action: &str,
) -> Result<(), Failure> {
    if rd.is_deleting() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Cannot {action}: resource definition '{}' is being deleted.",
                    rd.name
                ),
            )
            .cause("Its resources are deleted as their nodes confirm; then it is gone.")
            .correction(
                "Wait until 'ferrite resource-definition list' no longer shows it; a node that is \
                 offline for good can be removed with 'ferrite node lost'.",
            )
            .into());
    }
    Ok(())
}

/// Refuses a new resource on a node marked for deletion: the node goes with its last resource,
/// so one placed now would hold it back, and its satellite may be gone for good.
pub fn refuse_if_node_deleting(ctx: &Context, node: &Node, action: &str) -> Result<(), Failure> {
    if node.is_deleting() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!("Cannot {action}: node '{}' is being deleted.", node.name),
            )
            .cause("The node goes once its satellite confirms that its resources are deleted.")
            .correction(
                "Place the resource on another node; a node that is offline for good can be \
                 removed with 'ferrite node lost'.",
            )
            .into());
    }
    Ok(())
}

/// Refuses a change to a resource that is being deleted or losing its disk.
pub fn refuse_if_resource_busy(
    ctx: &Context,
    rd: &ResourceDefinition,
    resource: &Resource,
    action: &str,
) -> Result<(), Failure> {
    let busy = match resource.phase {
        ResourcePhase::Active => return Ok(()),
        ResourcePhase::Deleting => "is being deleted",
        ResourcePhase::DiskRemoving => "is removing its disk",
    };
    Err(ctx
        .error(
            code::FAIL_IN_USE,
            format!(
                "Cannot {action}: resource '{}' on node '{}' {busy}.",
                rd.name, resource.node
            ),
        )
        .cause(format!(
            "Node '{}' has not confirmed it yet.",
            resource.node
        ))
        .correction(
            "Wait until the node confirms ('ferrite resource list' shows the state); a node that \
             is offline for good can be removed with 'ferrite node lost'.",
        )
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{add_resource, apply, tutorial_cluster};
    use crate::reported::NodeRuntime;
    use ferrite_proto::{DeletedResource, DeletedVolume, NodeReport, VolumeReport};
    use ferrite_types::ConnectionStatus;

    fn online(report: NodeReport) -> NodeRuntime {
        let mut runtime = NodeRuntime {
            status: ConnectionStatus::Online,
            ..Default::default()
        };
        runtime.absorb(report);
        runtime
    }

    fn up_to_date(resource: &str) -> VolumeReport {
        VolumeReport {
            resource: resource.into(),
            volume_number: 0,
            device_path: None,
            allocated_size_kib: None,
            usable_size_kib: Some(1024),
            disk_state: "UpToDate".into(),
            error: None,
        }
    }

    #[test]
    fn a_marked_resource_goes_only_when_its_node_confirms_that_resource() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res", "node1", "pool_ssd");
        add_resource(&mut cluster, "res", "node2", "pool_ssd");
        let name: ResourceName = "res".parse().unwrap();
        let node1: NodeName = "node1".parse().unwrap();
        let mut marked = cluster.resource_definitions[&name].resources[&node1].clone();
        marked.phase = ResourcePhase::Deleting;
        let uuid = marked.uuid.clone();
        Op::PutResource {
            resource: name.clone(),
            placed: marked,
        }
        .apply(&mut cluster);

        let mut runtime = Runtime::new();
        assert!(
            finish(&cluster, &runtime).ops.is_empty(),
            "nothing confirmed"
        );
        // A confirmation for another incarnation of the resource does not count.
        runtime.insert(
            node1.clone(),
            online(NodeReport {
                deleted_resources: vec![DeletedResource {
                    resource: "res".into(),
                    uuid: "some-other-uuid".into(),
                }],
                ..Default::default()
            }),
        );
        assert!(finish(&cluster, &runtime).ops.is_empty());
        runtime.insert(
            node1.clone(),
            online(NodeReport {
                deleted_resources: vec![DeletedResource {
                    resource: "RES".into(),
                    uuid,
                }],
                ..Default::default()
            }),
        );
        let plan = finish(&cluster, &runtime);
        assert!(matches!(&plan.ops[..], [Op::DeleteResource { node, .. }] if node == &node1));
        apply(&mut cluster, plan);
        assert!(
            Marked::Resource {
                resource: name.clone(),
                node: node1
            }
            .is_done(&cluster)
        );
        assert_eq!(cluster.resource_definitions[&name].resources.len(), 1);
    }

    #[test]
    fn a_disk_removal_finishes_diskless_and_a_volume_definition_goes_when_all_confirm() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res", "node1", "pool_ssd");
        add_resource(&mut cluster, "res", "node2", "pool_ssd");
        let name: ResourceName = "res".parse().unwrap();
        let node1: NodeName = "node1".parse().unwrap();
        let node2: NodeName = "node2".parse().unwrap();
        let mut removing = cluster.resource_definitions[&name].resources[&node1].clone();
        removing.phase = ResourcePhase::DiskRemoving;
        removing.diskless = true;
        Op::PutResource {
            resource: name.clone(),
            placed: removing,
        }
        .apply(&mut cluster);
        let vd =
            cluster.resource_definitions[&name].volume_definitions[&VolumeNumber::from(0)].clone();
        let confirmed = || {
            online(NodeReport {
                deleted_volumes: vec![DeletedVolume {
                    resource: "res".into(),
                    volume_number: 0,
                    identity: vd.uuid.clone(),
                }],
                ..Default::default()
            })
        };
        let mut runtime = Runtime::new();
        runtime.insert(node1.clone(), confirmed());
        let plan = finish(&cluster, &runtime);
        apply(&mut cluster, plan);
        let after = &cluster.resource_definitions[&name].resources[&node1];
        assert_eq!(after.phase, ResourcePhase::Active);
        assert!(after.diskless);
        assert_eq!(after.storage_pool, model::default_diskless_pool());

        // The volume definition marked for deletion: node1 confirmed, node2 not yet.
        let mut marked = vd.clone();
        marked.flags.push(model::FLAG_DELETE.into());
        Op::PutVolumeDefinition {
            resource: name.clone(),
            volume_definition: marked,
        }
        .apply(&mut cluster);
        assert!(finish(&cluster, &runtime).ops.is_empty());
        runtime.insert(node2, confirmed());
        let plan = finish(&cluster, &runtime);
        assert!(matches!(&plan.ops[..], [Op::DeleteVolumeDefinition { .. }]));
    }

    #[test]
    fn a_replicated_resource_counts_the_engines_disk_state_not_the_backing_volumes() {
        use crate::app::testing::{commit, engines_runtime, replicated_group, spawn};
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        let runtime = engines_runtime(&cluster, &[ferrite_types::LayerKind::Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let rd = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        let mut diskful: Vec<NodeName> = rd
            .resources
            .values()
            .filter(|r| r.holds_data())
            .map(|r| r.node.clone())
            .collect();
        diskful.sort();
        let ctx = Context::new(
            super::super::Operation::Delete,
            super::super::Object::Resource,
        );
        let mut runtime = engines_runtime(&cluster, &[ferrite_types::LayerKind::Mirror]);
        check_keeps_up_to_date_replica(&ctx, rd, &runtime, &diskful[0], "delete it").unwrap();
        // The other replica's backing volume is there, but its data is being resynchronised.
        runtime
            .get_mut(&diskful[1])
            .unwrap()
            .replication
            .get_mut("WEB")
            .unwrap()
            .volumes[0]
            .disk_state = "Inconsistent".into();
        let err = check_keeps_up_to_date_replica(&ctx, rd, &runtime, &diskful[0], "delete it")
            .unwrap_err();
        let cause = err.0[0].cause.clone().unwrap_or_default();
        assert!(cause.contains("is Inconsistent"), "{cause}");
    }

    #[test]
    fn a_dry_run_drbd_member_is_never_kept_for_its_data_but_real_drbd_is() {
        use crate::app::testing::{commit, engines_runtime, replicated_group, spawn};
        use ferrite_types::LayerKind;
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd", "storage"]);
        let real = engines_runtime(&cluster, &[LayerKind::Drbd]);
        commit(&mut cluster, &real, |c, r| spawn(c, r, "web"));
        let rd = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        assert_eq!(rd.replication_layer(), Some(LayerKind::Drbd));
        let diskful: Vec<NodeName> = rd
            .resources
            .values()
            .filter(|r| r.holds_data())
            .map(|r| r.node.clone())
            .collect();
        let ctx = Context::new(
            super::super::Operation::Delete,
            super::super::Object::Resource,
        );
        // Every disk as a dry run reports it: DUnknown.
        let unknown = |runtime: &mut Runtime| {
            for reported in runtime.values_mut() {
                if let Some(report) = reported.replication.get_mut("WEB") {
                    for volume in &mut report.volumes {
                        volume.disk_state = "DUnknown".into();
                    }
                }
            }
        };
        let mut real = engines_runtime(&cluster, &[LayerKind::Drbd]);
        unknown(&mut real);
        let err =
            check_keeps_up_to_date_replica(&ctx, rd, &real, &diskful[0], "delete it").unwrap_err();
        assert!(
            err.0[0]
                .cause
                .clone()
                .unwrap_or_default()
                .contains("DUnknown"),
            "{err:?}"
        );
        let mut dry = engines_runtime(&cluster, &[LayerKind::Mirror]);
        for reported in dry.values_mut() {
            reported.capabilities.as_mut().unwrap().dry_run_layers = vec![LayerKind::Drbd];
        }
        unknown(&mut dry);
        check_keeps_up_to_date_replica(&ctx, rd, &dry, &diskful[0], "delete it").unwrap();
    }

    #[test]
    fn the_last_up_to_date_replica_on_an_online_node_cannot_go() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res", "node1", "pool_ssd");
        add_resource(&mut cluster, "res", "node2", "pool_ssd");
        let rd = &cluster.resource_definitions[&"res".parse::<ResourceName>().unwrap()];
        let ctx = Context::new(
            super::super::Operation::Delete,
            super::super::Object::Resource,
        );
        let node1: NodeName = "node1".parse().unwrap();
        let node2: NodeName = "node2".parse().unwrap();
        let mut runtime = Runtime::new();
        runtime.insert(
            node1.clone(),
            online(NodeReport {
                volumes: vec![up_to_date("res")],
                ..Default::default()
            }),
        );
        // node2 is offline: node1 holds the only copy anyone can reach.
        let err =
            check_keeps_up_to_date_replica(&ctx, rd, &runtime, &node1, "delete it").unwrap_err();
        let cause = err.0[0].cause.clone().unwrap_or_default();
        assert!(cause.contains("node 'node2' is not online"), "{cause}");
        // node2 online and UpToDate: fine.
        runtime.insert(
            node2.clone(),
            online(NodeReport {
                volumes: vec![up_to_date("res")],
                ..Default::default()
            }),
        );
        check_keeps_up_to_date_replica(&ctx, rd, &runtime, &node1, "delete it").unwrap();
    }
}
