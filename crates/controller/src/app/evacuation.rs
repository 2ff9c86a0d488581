//! `node evacuate` and `node restore`, as LINSTOR does them.
//!
//! Evacuating marks the node `EVACUATE` (the autoplacer no longer uses it) and, for each of
//! its resources:
//!
//! - a diskless one, one that is not UpToDate, or one whose definition has enough UpToDate
//!   replicas elsewhere (the place count) is deleted at once;
//! - a replicated diskful one is marked `EVACUATE` and gets a replacement from the autoplacer
//!   (the definition's place count plus one, on the allowed nodes); it is deleted by
//!   [`finish`] once every other diskful replica of its definition is UpToDate — the
//!   replacement has synced — and nothing uses it. When no replacement can be placed it stays,
//!   marked, until as many UpToDate replicas as the place count are elsewhere (another
//!   `node evacuate` tries the placement again);
//! - an unreplicated one stays, with LINSTOR's `WARN_NOT_EVACUATING`: its data cannot follow
//!   a replacement.
//!
//! A resource with snapshots on the node is never deleted by an evacuation, at once or by
//! [`finish`]: it stays marked until they are deleted, since their deletion reaches the node
//! through it (as `resource delete` refuses a resource with snapshots).
//!
//! `node restore` clears the node's flag and the marks of the resources not yet moved.

use ferrite_types::NodeName;
use ferrite_types::api_call_rc::code;
use ferrite_types::rest::{self, AutoSelectFilter};

use super::deletions::{self, Marked};
use super::placement::{self, DEFAULT_PLACE_COUNT, Runtime};
use super::{Context, Failure, Object, Operation, Plan, nodes};
use crate::model::{self, Cluster, Op, Resource, ResourceDefinition, ResourcePhase};

const MODIFY: Context = Context::new(Operation::Modify, Object::Node);

fn place_count(cluster: &Cluster, rd: &ResourceDefinition) -> usize {
    cluster
        .resource_groups
        .get(&rd.resource_group)
        .and_then(|g| g.select_filter.place_count)
        .unwrap_or(DEFAULT_PLACE_COUNT)
        .max(1) as usize
}

/// The diskful replicas of `rd` other than `node`'s that are UpToDate on an online node.
fn up_to_date_peers(rd: &ResourceDefinition, runtime: &Runtime, node: &NodeName) -> usize {
    rd.resources
        .values()
        .filter(|r| &r.node != node && !r.evacuating && !r.inactive)
        .filter(|r| deletions::not_up_to_date(rd, r, runtime).is_none())
        .count()
}

fn names(
    ctx: &Context,
    cluster: &Cluster,
    list: &Option<Vec<String>>,
) -> Result<Vec<NodeName>, Failure> {
    list.iter()
        .flatten()
        .map(|n| nodes::find(ctx, cluster, n).map(|node| node.name.clone()))
        .collect()
}

/// `PUT /v1/nodes/{node}/evacuate`.
pub fn evacuate(
    cluster: &Cluster,
    runtime: &Runtime,
    node: &str,
    body: &rest::NodeEvacuate,
) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let current = nodes::find(ctx, cluster, node)?;
    if current.is_deleting() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Cannot evacuate node '{}': it is being deleted.",
                    current.name
                ),
            )
            .correction("Wait until its deletion finishes, or use 'ferrite node lost'.")
            .into());
    }
    let targets = names(ctx, cluster, &body.target)?;
    let excluded = names(ctx, cluster, &body.do_not_target)?;
    let allowed: Vec<String> = cluster
        .nodes
        .keys()
        .filter(|n| **n != current.name)
        .filter(|n| targets.is_empty() || targets.contains(n))
        .filter(|n| !excluded.contains(n))
        .map(|n| n.to_string())
        .collect();

    let mut plan = Plan::new();
    let mut flagged = current.clone();
    if !flagged.is_evacuating() {
        flagged.flags.push(model::FLAG_EVACUATE.to_string());
    }
    plan.op(Op::PutNode(flagged)).reply(
        ctx.modified(format!("Node '{}' is being evacuated.", current.name))
            .obj_ref("Node", current.name.as_str()),
    );
    let rsc_ctx = Context::new(Operation::Create, Object::Resource);
    let del_ctx = Context::new(Operation::Delete, Object::Resource);
    for (rd, resource) in cluster.resources_on_node(&current.name) {
        if resource.is_deleting() || (resource.evacuating && resource.evacuation_replaced) {
            continue;
        }
        if resource.holds_data() && !rd.is_replicated() {
            plan.reply(
                rsc_ctx
                    .warn(
                        code::WARN_NOT_EVACUATING,
                        format!(
                            "Resource '{}' cannot be evacuated as it is not replicated.",
                            rd.name
                        ),
                    )
                    .cause(format!(
                        "Its layer stack is {}: a new replica elsewhere would not get its data.",
                        super::resource_definitions::stack(rd.resource_layers())
                    ))
                    .correction("Copy its data elsewhere yourself, then delete it.")
                    .obj_ref("RscDfn", rd.name.as_str()),
            );
            continue;
        }
        let just_delete = !resource.holds_data()
            || deletions::not_up_to_date(rd, resource, runtime).is_some()
            || up_to_date_peers(rd, runtime, &resource.node) >= place_count(cluster, rd);
        if just_delete {
            let action = format!("delete resource '{}' on '{}'", rd.name, resource.node);
            let refused =
                super::resources::refuse_if_in_use(&del_ctx, rd, resource, runtime, &action)
                    .and_then(|_| {
                        deletions::check_keeps_up_to_date_replica(
                            &del_ctx,
                            rd,
                            runtime,
                            &resource.node,
                            &action,
                        )
                    })
                    .and_then(|_| {
                        // Its snapshots there need it: they are deleted through it.
                        super::snapshots::refuse_if_snapshots(
                            &del_ctx,
                            cluster,
                            rd,
                            Some(&resource.node),
                            "delete",
                        )
                    });
            match refused {
                Ok(()) => {
                    let mut marked = resource.clone();
                    marked.phase = ResourcePhase::Deleting;
                    plan.op(Op::PutResource {
                        resource: rd.name.clone(),
                        placed: marked,
                    })
                    .reply(
                        del_ctx
                            .deleted(format!(
                                "Resource '{}' on evacuated node '{}' marked for deletion.",
                                rd.name, resource.node
                            ))
                            .obj_ref("RscDfn", rd.name.as_str())
                            .obj_ref("Node", resource.node.as_str()),
                    );
                    plan.deletions.push(Marked::Resource {
                        resource: rd.name.clone(),
                        node: resource.node.clone(),
                    });
                }
                Err(failure) => {
                    // Kept, marked: it goes once it can (`finish`).
                    let mut marked = resource.clone();
                    marked.evacuating = true;
                    plan.op(Op::PutResource {
                        resource: rd.name.clone(),
                        placed: marked,
                    });
                    plan.replies.extend(failure.0.into_iter().map(|rc| {
                        rsc_ctx
                            .warn(code::WARN_NOT_EVACUATING, rc.message)
                            .cause(rc.cause.unwrap_or_default())
                            .correction("It is deleted once that no longer holds.")
                    }));
                }
            }
            continue;
        }
        let group_filter = cluster
            .resource_groups
            .get(&rd.resource_group)
            .map(|g| g.select_filter.clone())
            .unwrap_or_default();
        let filter = AutoSelectFilter {
            node_name_list: Some(allowed.clone()),
            additional_place_count: Some(1),
            diskless_on_remaining: Some(false),
            ..group_filter
        };
        let replacement = placement::validate_filter(&rsc_ctx, cluster, &filter)
            .and_then(|filter| placement::autoplace(&rsc_ctx, cluster, runtime, rd, &filter));
        let mut marked = resource.clone();
        marked.evacuating = true;
        marked.evacuation_replaced = replacement.is_ok();
        plan.op(Op::PutResource {
            resource: rd.name.clone(),
            placed: marked,
        });
        match replacement {
            Ok((ops, replies)) => {
                plan.ops.extend(ops);
                plan.replies.extend(replies);
            }
            Err(failure) => {
                let cause = failure
                    .0
                    .first()
                    .and_then(|rc| rc.cause.clone())
                    .unwrap_or_default();
                plan.reply(
                    rsc_ctx
                        .warn(
                            code::WARN_NOT_EVACUATING,
                            format!(
                                "Resource '{}' cannot be evacuated as no available storage pool was found.",
                                rd.name
                            ),
                        )
                        .cause(cause)
                        .correction(
                            "It stays marked EVACUATE; add a node or a pool and run 'ferrite node \
                             evacuate' again, or 'ferrite node restore' to keep it here.",
                        )
                        .obj_ref("RscDfn", rd.name.as_str()),
                );
            }
        }
    }
    Ok(plan)
}

/// `PUT /v1/nodes/{node}/restore`: the node takes resources again; its resources not yet
/// moved stay.
pub fn restore(cluster: &Cluster, node: &str, body: &rest::NodeRestore) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let current = nodes::find(ctx, cluster, node)?;
    if body.delete_resources == Some(true) || body.delete_snapshots == Some(true) {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            "Restoring a node with delete_resources or delete_snapshots is not supported.",
            "Leave them out: the node's resources and snapshots are kept.",
        ));
    }
    if !current.is_evacuating() {
        return Err(ctx
            .error(
                code::FAIL_INVLD_REQUEST,
                format!("Node '{}' is neither evicted nor evacuated.", current.name),
            )
            .cause("'node restore' ends an evacuation; nothing was evacuated.")
            .correction("Nothing to do; 'ferrite node list' shows EVACUATE on evacuated nodes.")
            .into());
    }
    let mut plan = Plan::new();
    let mut restored = current.clone();
    restored
        .flags
        .retain(|f| !f.eq_ignore_ascii_case(model::FLAG_EVACUATE));
    plan.op(Op::PutNode(restored)).reply(
        ctx.modified(format!("Node '{}' restored.", current.name))
            .obj_ref("Node", current.name.as_str()),
    );
    for (rd, resource) in cluster.resources_on_node(&current.name) {
        if resource.evacuating && !resource.is_deleting() {
            let mut kept = resource.clone();
            kept.evacuating = false;
            kept.evacuation_replaced = false;
            plan.op(Op::PutResource {
                resource: rd.name.clone(),
                placed: kept,
            });
        }
    }
    Ok(plan)
}

/// Whether `resource`, marked `EVACUATE`, may go now: every other diskful replica of its
/// definition is UpToDate (there is at least one), nothing uses it, and either a replacement
/// was placed for it (and, UpToDate, is among those others) or the others are at least the
/// place count. Without that last rule a replica that could not be replaced went as soon as the
/// replicas it had left were UpToDate, which they already were: `node evacuate` then lowered
/// the definition's number of copies instead of keeping the replica marked, as it answered.
fn moved(
    cluster: &Cluster,
    rd: &ResourceDefinition,
    resource: &Resource,
    runtime: &Runtime,
) -> bool {
    let others: Vec<&Resource> = rd
        .resources
        .values()
        .filter(|r| r.node != resource.node && r.holds_data() && !r.evacuating)
        .collect();
    !others.is_empty()
        && others
            .iter()
            .all(|r| deletions::not_up_to_date(rd, r, runtime).is_none())
        && (resource.evacuation_replaced || others.len() >= place_count(cluster, rd))
        && !runtime
            .get(&resource.node)
            .is_some_and(|r| r.in_use(rd.name.as_str()))
}

/// Marks for deletion every evacuated resource whose replacement is in sync and that has no
/// snapshot left on its node once `snapshots_going` (those the same plan deletes) are gone;
/// part of `deletions::finish`.
pub fn finish(
    cluster: &Cluster,
    runtime: &Runtime,
    snapshots_going: &deletions::SnapshotsGoing,
    plan: &mut Plan,
) {
    for node in cluster
        .nodes
        .values()
        .filter(|n| n.is_evacuating() || n.is_deleting())
    {
        for (rd, resource) in cluster.resources_on_node(&node.name) {
            if resource.evacuating
                && resource.phase == ResourcePhase::Active
                && moved(cluster, rd, resource, runtime)
                && !deletions::snapshot_stays(cluster, snapshots_going, rd, &node.name)
            {
                let mut marked = resource.clone();
                marked.phase = ResourcePhase::Deleting;
                plan.op(Op::PutResource {
                    resource: rd.name.clone(),
                    placed: marked,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{
        add_resource, apply, commit, engines_runtime, replicated_group, spawn, tutorial_cluster,
    };
    use ferrite_types::LayerKind::Mirror;

    #[test]
    fn evacuation_places_a_replacement_and_deletes_once_it_is_in_sync() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["mirror", "storage"]);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        add_resource(&mut cluster, "plain", "node1", "pool_ssd");
        let name: ferrite_types::ResourceName = "web".parse().unwrap();
        let source = cluster.resource_definitions[&name]
            .resources
            .values()
            .find(|r| r.holds_data())
            .unwrap()
            .node
            .clone();
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            evacuate(c, r, source.as_str(), &rest::NodeEvacuate::default())
        });
        assert!(cluster.node(&source).unwrap().is_evacuating());
        let rd = &cluster.resource_definitions[&name];
        assert!(rd.resources[&source].evacuating);
        assert!(
            rd.resources[&source]
                .flags()
                .contains(&"EVACUATE".to_string())
        );
        assert_eq!(
            rd.diskful_count(),
            3,
            "a replacement was placed: {replies:?}"
        );
        if source.as_str() == "node1" {
            assert!(
                replies
                    .iter()
                    .any(|r| r.ret_code().code() == code::WARN_NOT_EVACUATING)
            );
        }

        // The replacement has not synced: the evacuated replica stays.
        let mut runtime = engines_runtime(&cluster, &[Mirror]);
        let replacement = rd
            .resources
            .values()
            .find(|r| r.node != source && r.create_timestamp > 0 && r.holds_data())
            .map(|r| r.node.clone())
            .unwrap();
        runtime
            .get_mut(&replacement)
            .unwrap()
            .absorb(ferrite_proto::NodeReport {
                only_resources: Some(vec![]),
                replication: vec![],
                ..Default::default()
            });
        let mut plan = Plan::new();
        finish(&cluster, &runtime, &Vec::new(), &mut plan);
        if !plan.ops.is_empty() {
            // The replacement node may have been the one whose report is still complete.
            assert!(
                plan.ops.iter().all(
                    |op| matches!(op, Op::PutResource { placed, .. } if placed.node == source)
                )
            );
        }
        // In sync everywhere: it goes.
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let mut plan = Plan::new();
        finish(&cluster, &runtime, &Vec::new(), &mut plan);
        assert!(
            matches!(&plan.ops[..], [Op::PutResource { placed, .. }] if placed.node == source && placed.is_deleting())
        );
        apply(&mut cluster, plan);

        // Restore: the node takes resources again.
        let plan = restore(&cluster, source.as_str(), &rest::NodeRestore::default()).unwrap();
        apply(&mut cluster, plan);
        assert!(!cluster.node(&source).unwrap().is_evacuating());
        assert!(restore(&cluster, source.as_str(), &rest::NodeRestore::default()).is_err());
    }

    #[test]
    fn a_replica_that_could_not_be_replaced_stays_until_the_place_count_is_elsewhere() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["mirror", "storage"]);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let name: ferrite_types::ResourceName = "web".parse().unwrap();
        let holders: Vec<NodeName> = cluster.resource_definitions[&name]
            .resources
            .values()
            .filter(|r| r.holds_data())
            .map(|r| r.node.clone())
            .collect();
        assert_eq!(holders.len(), 2);
        let (source, other) = (&holders[0], &holders[1]);

        // The only allowed target already holds it: no replacement.
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            evacuate(
                c,
                r,
                source.as_str(),
                &rest::NodeEvacuate {
                    target: Some(vec![other.to_string()]),
                    do_not_target: None,
                },
            )
        });
        assert!(
            replies
                .iter()
                .any(|r| r.ret_code().code() == code::WARN_NOT_EVACUATING),
            "{replies:?}"
        );
        let kept = &cluster.resource_definitions[&name].resources[source];
        assert!(kept.evacuating && !kept.evacuation_replaced && !kept.is_deleting());

        // Every other replica is UpToDate, but one copy is fewer than the place count: it stays.
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let mut plan = Plan::new();
        finish(&cluster, &runtime, &Vec::new(), &mut plan);
        assert!(plan.ops.is_empty(), "{:?}", plan.ops);
        assert_eq!(cluster.resource_definitions[&name].diskful_count(), 2);

        // Evacuating again, with every node allowed: now it is replaced, and goes once the
        // replacement is UpToDate.
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            evacuate(c, r, source.as_str(), &rest::NodeEvacuate::default())
        });
        let rd = &cluster.resource_definitions[&name];
        assert!(rd.resources[source].evacuation_replaced, "{replies:?}");
        assert_eq!(rd.diskful_count(), 3);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let mut plan = Plan::new();
        finish(&cluster, &runtime, &Vec::new(), &mut plan);
        assert!(
            matches!(&plan.ops[..], [Op::PutResource { placed, .. }] if &placed.node == source && placed.is_deleting())
        );
    }

    #[test]
    fn bad_evacuation_targets_change_nothing() {
        let cluster = tutorial_cluster();
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let failure = evacuate(
            &cluster,
            &runtime,
            "node1",
            &rest::NodeEvacuate {
                target: Some(vec!["nowhere".into()]),
                do_not_target: None,
            },
        )
        .unwrap_err();
        assert_eq!(failure.0[0].ret_code().code(), code::FAIL_NOT_FOUND_NODE);
        assert!(evacuate(&cluster, &runtime, "ghost", &Default::default()).is_err());
    }
}
