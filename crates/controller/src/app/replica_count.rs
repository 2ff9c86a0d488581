//! Keeping a resource group's definitions at its place count: `resource-group adjust`
//! (`adjustall`) and `resource-group modify --place-count N`.
//!
//! A definition with fewer diskful replicas than the place count gets the missing ones from the
//! autoplacer (with its explained refusals). One with more loses the surplus, chosen as
//! LINSTOR's auto-unplacer chooses: the replica that breaks most of the group's rules (node
//! list, storage pool list, provider list) or is not UpToDate goes first; among equals, the one
//! in the pool with the least free space, then by node name. A replica is never removed while
//! it is in use, while its node holds snapshots of it, or when it is the only UpToDate copy the
//! others need: it is skipped, and the answer says why. Diskless replicas (tiebreakers
//! included) and replicas being evacuated are not counted and never removed here.
//!
//! LINSTOR adds replicas in these calls too, but removes surplus replicas only in its periodic
//! `BalanceResources` task (hourly, after a grace period); Ferrite removes them in the call.
//! The whole call is planned at once: if one definition cannot be placed, nothing changes.

use ferrite_types::api_call_rc::code;
use ferrite_types::rest::AutoSelectFilter;
use ferrite_types::{ApiCallRc, NodeName};

use super::deletions::{self, Marked};
use super::placement::{self, DEFAULT_PLACE_COUNT, Runtime};
use super::{Context, Failure, Object, Operation, Plan};
use crate::model::{Cluster, Op, Resource, ResourceDefinition, ResourcePhase};

/// The replicas the place count counts: diskful, not being deleted or evacuated.
fn counted(rd: &ResourceDefinition) -> Vec<&Resource> {
    rd.resources
        .values()
        .filter(|r| r.holds_data() && !r.evacuating)
        .collect()
}

fn listed(list: &Option<Vec<String>>, value: &str) -> bool {
    list.as_ref()
        .is_none_or(|l| l.is_empty() || l.iter().any(|v| v.eq_ignore_ascii_case(value)))
}

/// How strongly `resource` should go first: one point per rule of `filter` it breaks, one if
/// it is not UpToDate.
fn unplace_score(
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    resource: &Resource,
    filter: &AutoSelectFilter,
) -> u32 {
    let mut score = 0;
    if !listed(&filter.node_name_list, resource.node.as_str()) {
        score += 1;
    }
    if !listed(&filter.storage_pool_list, resource.storage_pool.as_str()) {
        score += 1;
    }
    let provider = cluster
        .node(&resource.node)
        .and_then(|n| n.storage_pools.get(&resource.storage_pool))
        .map(|p| p.provider_kind.to_string());
    if let (Some(provider), Some(list)) = (provider, &filter.provider_list)
        && !list.is_empty()
        && !list.iter().any(|p| p.eq_ignore_ascii_case(&provider))
    {
        score += 1;
    }
    if deletions::not_up_to_date(rd, resource, runtime).is_some() {
        score += 1;
    }
    score
}

fn pool_free(cluster: &Cluster, runtime: &Runtime, resource: &Resource) -> u64 {
    cluster
        .node(&resource.node)
        .and_then(|n| n.storage_pools.get(&resource.storage_pool))
        .and_then(|pool| super::capacity::free_kib(cluster, runtime, &resource.node, pool))
        .unwrap_or(0)
}

/// Why `resource` may not be removed now, if so.
fn fixed(
    ctx: &Context,
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    resource: &Resource,
) -> Option<String> {
    let action = format!("remove resource '{}' on '{}'", rd.name, resource.node);
    let refusals = [
        super::resources::refuse_if_in_use(ctx, rd, resource, runtime, &action),
        super::snapshots::refuse_if_snapshots(ctx, cluster, rd, Some(&resource.node), "remove"),
        deletions::check_keeps_up_to_date_replica(ctx, rd, runtime, &resource.node, &action),
    ];
    refusals.into_iter().find_map(|r| {
        r.err().map(|f| {
            f.0.first()
                .map(|rc| match &rc.cause {
                    Some(cause) => format!("{} {cause}", rc.message),
                    None => rc.message.clone(),
                })
                .unwrap_or_default()
        })
    })
}

/// Brings `rd` to the place count of `filter` (merged and validated): the ops and answers.
pub fn adjust_definition(
    ctx: &Context,
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    filter: &AutoSelectFilter,
    plan: &mut Plan,
) -> Result<(), Failure> {
    if rd.is_deleting() {
        return Ok(());
    }
    let wanted = filter.place_count.unwrap_or(DEFAULT_PLACE_COUNT).max(0) as usize;
    let current = counted(rd);
    let rsc_ctx = Context::new(ctx.operation, Object::Resource);
    if current.len() < wanted {
        let mut exact = filter.clone();
        exact.place_count = Some(wanted as i32);
        exact.additional_place_count = None;
        let (ops, replies) = placement::autoplace(ctx, cluster, runtime, rd, &exact)?;
        plan.ops.extend(ops);
        plan.replies.extend(replies);
        return Ok(());
    }
    if current.len() == wanted {
        plan.reply(
            rsc_ctx
                .warn(
                    code::WARN_RSC_ALREADY_DEPLOYED,
                    format!(
                        "Resource '{}' was already deployed on {} nodes. Skipping.",
                        rd.name, wanted
                    ),
                )
                .details(format!(
                    "Used nodes: '{}'",
                    current
                        .iter()
                        .map(|r| r.node.as_str())
                        .collect::<Vec<_>>()
                        .join("', '")
                ))
                .obj_ref("RscDfn", rd.name.as_str()),
        );
        return Ok(());
    }
    // Surplus: remove the worst replicas one at a time, each decision on what is left.
    let mut remaining = rd.clone();
    let mut surplus = current.len() - wanted;
    let mut skipped: Vec<(NodeName, String)> = Vec::new();
    while surplus > 0 {
        let mut choices: Vec<&Resource> = counted(&remaining)
            .into_iter()
            .filter(|r| !skipped.iter().any(|(n, _)| n == &r.node))
            .collect();
        choices.sort_by(|a, b| {
            let score = |r: &Resource| unplace_score(cluster, runtime, rd, r, filter);
            score(b)
                .cmp(&score(a))
                .then_with(|| pool_free(cluster, runtime, a).cmp(&pool_free(cluster, runtime, b)))
                .then_with(|| a.node.cmp(&b.node))
        });
        let Some(choice) = choices.first().map(|r| (*r).clone()) else {
            break;
        };
        if let Some(why) = fixed(&rsc_ctx, cluster, runtime, &remaining, &choice) {
            skipped.push((choice.node.clone(), why));
            continue;
        }
        let mut marked = choice.clone();
        marked.phase = ResourcePhase::Deleting;
        if let Some(entry) = remaining.resources.get_mut(&choice.node) {
            entry.phase = ResourcePhase::Deleting;
        }
        plan.op(Op::PutResource {
            resource: rd.name.clone(),
            placed: marked,
        })
        .reply(
            Context::new(Operation::Delete, Object::Resource)
                .deleted(format!(
                    "Resource '{}' on node '{}' marked for deletion: the place count is {wanted}.",
                    rd.name, choice.node
                ))
                .obj_ref("RscDfn", rd.name.as_str())
                .obj_ref("Node", choice.node.as_str()),
        );
        plan.deletions.push(Marked::Resource {
            resource: rd.name.clone(),
            node: choice.node.clone(),
        });
        surplus -= 1;
    }
    if surplus > 0 {
        plan.reply(surplus_warning(&rsc_ctx, rd, wanted, &skipped));
    }
    Ok(())
}

fn surplus_warning(
    ctx: &Context,
    rd: &ResourceDefinition,
    wanted: usize,
    skipped: &[(NodeName, String)],
) -> ApiCallRc {
    let nodes: Vec<String> = rd
        .resources
        .values()
        .filter(|r| r.holds_data() && !r.evacuating)
        .map(|r| format!("'{}'", r.node))
        .collect();
    ctx.warn(
        code::WARN_RSC_ALREADY_DEPLOYED,
        format!(
            "The resource '{}' was already deployed on {} nodes: {}. The resource would have to \
             be deleted from nodes to reach the placement count.",
            rd.name,
            nodes.len(),
            nodes.join(", ")
        ),
    )
    .cause(format!(
        "Place count {wanted}; not removed: {}",
        skipped
            .iter()
            .map(|(node, why)| format!("'{node}': {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    ))
    .correction("Stop using the replica, delete its snapshots or wait until the others are UpToDate, then adjust again.")
    .obj_ref("RscDfn", rd.name.as_str())
}

/// Adjusts every definition of the group named `group` with its filter overridden by
/// `overrides`.
pub fn adjust_group(
    ctx: &Context,
    cluster: &Cluster,
    runtime: &Runtime,
    group: &ferrite_types::ResourceGroupName,
    filter: &AutoSelectFilter,
    plan: &mut Plan,
) -> Result<(), Failure> {
    for rd in cluster
        .resource_definitions
        .values()
        .filter(|rd| &rd.resource_group == group)
    {
        adjust_definition(ctx, cluster, runtime, rd, filter, plan)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::resource_groups;
    use crate::app::testing::{
        commit, engine_report, engines_runtime, replicated_group, spawn, tutorial_cluster,
    };
    use ferrite_types::LayerKind::Mirror;
    use ferrite_types::rest;

    fn group_place_count(count: i32) -> rest::ResourceGroupModify {
        rest::ResourceGroupModify {
            select_filter: Some(rest::AutoSelectFilter {
                place_count: Some(count),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn diskful_nodes(cluster: &Cluster, name: &str) -> Vec<String> {
        let rd = &cluster.resource_definitions[&name.parse().unwrap()];
        rd.resources
            .values()
            .filter(|r| r.holds_data())
            .map(|r| r.node.to_string())
            .collect()
    }

    #[test]
    fn modify_place_count_adds_and_removes_replicas() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["mirror", "storage"]);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(diskful_nodes(&cluster, "web").len(), 2);

        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            resource_groups::modify(c, r, "my_ssd_group", &group_place_count(3))
        });
        assert_eq!(diskful_nodes(&cluster, "web").len(), 3, "{replies:?}");

        // Down to one: the two surplus replicas are marked for deletion.
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, marked) = commit(&mut cluster, &runtime, |c, r| {
            resource_groups::modify(c, r, "my_ssd_group", &group_place_count(1))
        });
        assert_eq!(marked.len(), 2, "{replies:?}");
        assert_eq!(diskful_nodes(&cluster, "web").len(), 1);

        // Adjust at the place count: LINSTOR's "already deployed" warning.
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let plan = resource_groups::adjust(
            &cluster,
            &runtime,
            "my_ssd_group",
            &rest::ResourceGroupAdjust::default(),
        )
        .unwrap();
        assert!(plan.ops.is_empty());
        assert_eq!(
            plan.replies[0].ret_code().code(),
            code::WARN_RSC_ALREADY_DEPLOYED
        );
    }

    #[test]
    fn surplus_replicas_in_use_are_kept_and_rule_breakers_go_first() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["mirror", "storage"]);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| {
            resource_groups::adjust(
                c,
                r,
                "my_ssd_group",
                &rest::ResourceGroupAdjust {
                    select_filter: Some(rest::AutoSelectFilter {
                        place_count: Some(3),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
        });
        let nodes = diskful_nodes(&cluster, "web");
        assert_eq!(nodes.len(), 3);

        // One replica is in use; another breaks the node list.
        let mut runtime = engines_runtime(&cluster, &[Mirror]);
        let rd = cluster.resource_definitions[&"web".parse().unwrap()].clone();
        let busy: NodeName = nodes[0].parse().unwrap();
        let mut report = engine_report(&rd, &rd.resources[&busy]);
        report.in_use = true;
        runtime
            .get_mut(&busy)
            .unwrap()
            .absorb(ferrite_proto::NodeReport {
                only_resources: Some(vec![]),
                replication: vec![report],
                ..Default::default()
            });
        let allowed: Vec<String> = nodes[..2].to_vec();
        let filter = rest::AutoSelectFilter {
            place_count: Some(1),
            node_name_list: Some(allowed),
            ..Default::default()
        };
        let mut plan = Plan::new();
        let ctx = Context::new(Operation::Modify, Object::ResourceGroup);
        adjust_definition(&ctx, &cluster, &runtime, &rd, &filter, &mut plan).unwrap();
        let removed: Vec<String> = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::PutResource { placed, .. } if placed.is_deleting() => {
                    Some(placed.node.to_string())
                }
                _ => None,
            })
            .collect();
        // The rule breaker first, then the free one; the busy one stays, with the reason.
        assert_eq!(removed, [nodes[2].clone(), nodes[1].clone()]);
        assert!(
            !removed.contains(&nodes[0]),
            "the replica in use is never removed"
        );
        assert!(
            plan.replies
                .iter()
                .all(|r| !r.message.contains("already deployed"))
        );

        // Place count 0 with the busy one: two removed, the warning names why it stays.
        let filter = rest::AutoSelectFilter {
            place_count: Some(0),
            ..Default::default()
        };
        let mut plan = Plan::new();
        adjust_definition(&ctx, &cluster, &runtime, &rd, &filter, &mut plan).unwrap();
        let warning = plan.replies.last().unwrap();
        assert_eq!(warning.ret_code().code(), code::WARN_RSC_ALREADY_DEPLOYED);
        assert!(
            warning.cause.as_deref().unwrap().contains("in use"),
            "{warning:?}"
        );
    }

    #[test]
    fn an_unplaceable_adjust_changes_nothing() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["mirror", "storage"]);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let failure =
            resource_groups::modify(&cluster, &runtime, "my_ssd_group", &group_place_count(5))
                .unwrap_err();
        assert_eq!(failure.0[0].ret_code().code(), code::FAIL_NOT_ENOUGH_NODES);
        let failure = resource_groups::adjust(
            &cluster,
            &runtime,
            "no_such_group",
            &rest::ResourceGroupAdjust::default(),
        )
        .unwrap_err();
        assert_eq!(failure.0[0].ret_code().code(), code::FAIL_NOT_FOUND_RSC_GRP);
    }
}
