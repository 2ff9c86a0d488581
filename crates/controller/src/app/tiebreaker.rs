//! Quorum tiebreakers, as LINSTOR places them (`DrbdOptions/auto-add-quorum-tiebreaker`,
//! default true).
//!
//! A replicated resource with an even number of disks (2, 4, ...) loses quorum on both sides
//! when it splits in half; a diskless member on another node is the tiebreaker vote. The
//! controller adds one (flag `TIE_BREAKER`) when a replicated resource has an even number of
//! diskful members, at least two, and no other diskless member; and removes it (marks it for
//! deletion) when it is no longer wanted: a disk added or removed, a diskless member added, the
//! option switched off, or the quorum switched off (`DrbdOptions/Resource/quorum` = `off`).
//! Deleting the resource definition deletes its tiebreaker with the rest.
//!
//! [`complete`] runs on every plan before it is committed, on the definitions the plan
//! changes, so no path that changes a membership can forget the tiebreaker: a resource created,
//! deleted or toggled, a deletion a node confirmed. A change of the option itself on a resource
//! group or the controller takes effect at each definition's next change.
//!
//! The tiebreaker goes on a node that does not hold the resource, is online, is neither marked
//! for deletion nor being evacuated (nor deleted by the plan itself: a deletion that finishes
//! takes the node's last resource and the node in one plan), runs the resource's engine, has a diskless pool (the resource group's `storage_pool_diskless_list`
//! first, else `DfltDisklessStorPool`, else any) and is allowed by the group's node list and
//! do-not-place-with rules; among those, by a hash of the resource's name, so tiebreakers spread
//! over the nodes and the choice depends only on the cluster.
//!
//! A user's own diskless resource on the tiebreaker's node takes it over (`resources`): it
//! loses the flag and stays. A tiebreaker in use (promoted) is never removed; once its node
//! reports it in use, it loses the flag for good and stays as a diskless resource, as LINSTOR
//! turns a used tiebreaker into a `DRBD_DISKLESS` one ([`keep_used`]): the article mounts the
//! volume on its tiebreaker, makes it available on a fourth node, then toggles the tiebreaker's
//! node into a replica.

use std::collections::BTreeSet;

use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, NodeName, ResourceName, RetCode, StorPoolName};

use super::deletions::Marked;
use super::placement::Runtime;
use super::{Context, Object, Operation, Plan, engine};
use crate::model::{self, Cluster, Op, Resource, ResourceDefinition, ResourcePhase};

/// Switches automatic tiebreakers off when `false` (inherited: resource definition, resource
/// group, controller).
pub const PROP_AUTO_TIEBREAKER: &str = "DrbdOptions/auto-add-quorum-tiebreaker";

/// The quorum option, by its property key; `off` means no tiebreaker is wanted.
pub const PROP_QUORUM: &str = "DrbdOptions/Resource/quorum";

const CTX: Context = Context::new(Operation::Create, Object::Resource);
const DELETE: Context = Context::new(Operation::Delete, Object::Resource);

fn is_false(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "false" | "no" | "off" | "0"
    )
}

/// How the members of a definition count for quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Members {
    /// Members with local data, not being deleted.
    pub diskful: usize,
    /// Diskless members, not being deleted, that are not tiebreakers.
    pub diskless: usize,
    /// Tiebreakers, not being deleted.
    pub tiebreakers: usize,
}

impl Members {
    pub fn of(rd: &ResourceDefinition) -> Members {
        let mut members = Members {
            diskful: 0,
            diskless: 0,
            tiebreakers: 0,
        };
        for resource in rd.resources.values().filter(|r| !r.is_deleting()) {
            if resource.holds_data() {
                members.diskful += 1;
            } else if resource.tiebreaker {
                members.tiebreakers += 1;
            } else {
                members.diskless += 1;
            }
        }
        members
    }

    /// Every voting member.
    pub fn total(&self) -> usize {
        self.diskful + self.diskless + self.tiebreakers
    }
}

/// Whether automatic tiebreakers are on for `rd`.
pub fn enabled(cluster: &Cluster, rd: &ResourceDefinition) -> bool {
    !engine::inherited(cluster, rd, PROP_AUTO_TIEBREAKER).is_some_and(is_false)
        && !engine::inherited(cluster, rd, PROP_QUORUM)
            .is_some_and(|v| v.eq_ignore_ascii_case("off"))
}

/// Whether `rd`, as it is, wants a tiebreaker (whether or not it has one).
pub fn wanted(cluster: &Cluster, rd: &ResourceDefinition) -> bool {
    if !rd.is_replicated() || rd.is_deleting() || !enabled(cluster, rd) {
        return false;
    }
    let members = Members::of(rd);
    members.diskful >= 2 && members.diskful.is_multiple_of(2) && members.diskless == 0
}

/// `rd` as it will be after the plan's ops, or `None` if the plan deletes it.
pub fn projected(
    cluster: &Cluster,
    plan: &Plan,
    name: &ResourceName,
) -> Option<ResourceDefinition> {
    let mut scratch = Cluster::default();
    if let Some(rd) = cluster.resource_definition(name) {
        scratch
            .resource_definitions
            .insert(name.clone(), rd.clone());
    }
    for op in &plan.ops {
        let concerns = match op {
            Op::PutResourceDefinition(rd) => &rd.name == name,
            Op::DeleteResourceDefinition(rd)
            | Op::PutVolumeDefinition { resource: rd, .. }
            | Op::DeleteVolumeDefinition { resource: rd, .. }
            | Op::PutResource { resource: rd, .. }
            | Op::DeleteResource { resource: rd, .. } => rd == name,
            _ => false,
        };
        if concerns {
            op.clone().apply(&mut scratch);
        }
    }
    scratch.resource_definitions.remove(name)
}

/// A stable hash of a name (FNV-1a), so the choice among nodes does not depend on the process.
fn spread(name: &ResourceName) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.key().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as usize
}

/// Where a tiebreaker of `rd` can go: a node and its diskless pool; or why none qualifies.
pub fn choose_node(
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    leaving: &BTreeSet<NodeName>,
) -> Result<(NodeName, StorPoolName), Vec<String>> {
    let filter = cluster
        .resource_groups
        .get(&rd.resource_group)
        .map(|g| g.select_filter.clone())
        .unwrap_or_default();
    let node_list: Vec<NodeName> = filter
        .node_name_list
        .iter()
        .flatten()
        .filter_map(|n| n.parse().ok())
        .collect();
    let diskless_pools: Vec<StorPoolName> = filter
        .storage_pool_diskless_list
        .iter()
        .flatten()
        .filter_map(|p| p.parse().ok())
        .collect();
    let avoid: Vec<ResourceName> = filter
        .not_place_with_rsc
        .iter()
        .flatten()
        .filter_map(|r| r.parse().ok())
        .collect();
    let avoid_pattern = filter.not_place_with_rsc_regex.as_deref().and_then(|p| {
        regex::RegexBuilder::new(p)
            .case_insensitive(true)
            .build()
            .ok()
    });
    let mut eligible = Vec::new();
    let mut rejected = Vec::new();
    for node in cluster.nodes.values() {
        let name = &node.name;
        let why: Option<String> = if rd.resources.contains_key(name) {
            Some(format!("node '{name}' already has resource '{}'", rd.name))
        } else if node.is_deleting() || leaving.contains(name) {
            Some(format!("node '{name}' is being deleted"))
        } else if node.is_evacuating() {
            Some(format!("node '{name}' is being evacuated"))
        } else if !node.node_type.has_satellite() {
            Some(format!("node '{name}' has no satellite"))
        } else if !runtime.get(name).is_some_and(|r| r.is_online()) {
            Some(format!("node '{name}' is not online"))
        } else if !node_list.is_empty() && !node_list.contains(name) {
            Some(format!(
                "node '{name}' is not in the resource group's node list"
            ))
        } else if let Some(reason) = engine::node_refusal(cluster, runtime, rd, name) {
            Some(reason)
        } else if let Some(other) = avoid.iter().find(|r| {
            cluster
                .resource_definition(r)
                .is_some_and(|other| other.resources.contains_key(name))
        }) {
            Some(format!(
                "node '{name}' has resource '{other}' (do-not-place-with)"
            ))
        } else if let Some(pattern) = &avoid_pattern
            && let Some((other, _)) = cluster
                .resources_on_node(name)
                .find(|(other, _)| other.name != rd.name && pattern.is_match(other.name.as_str()))
        {
            Some(format!(
                "node '{name}' has resource '{}' (do-not-place-with pattern)",
                other.name
            ))
        } else {
            None
        };
        if let Some(why) = why {
            rejected.push(why);
            continue;
        }
        let usable = |pool: &&model::StoragePool| {
            pool.is_diskless()
                && runtime
                    .get(name)
                    .and_then(|r| r.pools.get(pool.name.key()))
                    .is_none_or(|p| p.errors.is_empty())
        };
        let pool = if diskless_pools.is_empty() {
            node.storage_pools
                .get(&model::default_diskless_pool())
                .filter(usable)
                .or_else(|| node.storage_pools.values().find(usable))
        } else {
            diskless_pools
                .iter()
                .find_map(|p| node.storage_pools.get(p).filter(usable))
        };
        match pool {
            Some(pool) => eligible.push((name.clone(), pool.name.clone())),
            None => rejected.push(format!("node '{name}' has no usable diskless storage pool")),
        }
    }
    if eligible.is_empty() {
        return Err(rejected);
    }
    let index = spread(&rd.name) % eligible.len();
    Ok(eligible.swap_remove(index))
}

/// A new tiebreaker of `rd` on `node`.
pub fn new_tiebreaker(node: &NodeName, pool: StorPoolName) -> Resource {
    Resource {
        node: node.clone(),
        uuid: model::new_uuid(),
        props: Default::default(),
        diskless: true,
        storage_pool: pool,
        create_timestamp: model::now_millis(),
        phase: ResourcePhase::Active,
        node_id: None,
        port: None,
        tiebreaker: true,
        restore_from: None,
        inactive: false,
        evacuating: false,
        evacuation_replaced: false,
    }
}

/// Adds or removes the tiebreakers of the definitions the plan changes.
pub fn complete(cluster: &Cluster, runtime: &Runtime, plan: &mut Plan) {
    let mut names: Vec<ResourceName> = Vec::new();
    let mut membership_changed: BTreeSet<ResourceName> = BTreeSet::new();
    let leaving: BTreeSet<NodeName> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::DeleteNode(node) => Some(node.clone()),
            _ => None,
        })
        .collect();
    for op in &plan.ops {
        let (name, membership) = match op {
            Op::PutResourceDefinition(rd) => (&rd.name, false),
            Op::PutResource { resource, .. } | Op::DeleteResource { resource, .. } => {
                (resource, true)
            }
            _ => continue,
        };
        if !names.contains(name) {
            names.push(name.clone());
        }
        if membership {
            membership_changed.insert(name.clone());
        }
    }
    for name in names {
        let Some(rd) = projected(cluster, plan, &name) else {
            continue;
        };
        if !rd.is_replicated() {
            continue;
        }
        let tiebreakers: Vec<&Resource> = rd
            .resources
            .values()
            .filter(|r| r.tiebreaker && !r.is_deleting())
            .collect();
        if wanted(cluster, &rd) {
            if !tiebreakers.is_empty() {
                continue;
            }
            match choose_node(cluster, runtime, &rd, &leaving) {
                Ok((node, pool)) => {
                    plan.op(Op::PutResource {
                        resource: rd.name.clone(),
                        placed: new_tiebreaker(&node, pool),
                    })
                    .reply(
                        CTX.info(
                            code::INFO_TIE_BREAKER_CREATED,
                            format!("Tie breaker resource '{}' created on {node}", rd.name),
                        )
                        .obj_ref("RscDfn", rd.name.as_str())
                        .obj_ref("Node", node.as_str()),
                    );
                }
                Err(reasons) if membership_changed.contains(&rd.name) => {
                    plan.reply(no_tiebreaker_warning(&rd, &reasons));
                }
                Err(_) => {}
            }
        } else {
            for tiebreaker in tiebreakers {
                if runtime
                    .get(&tiebreaker.node)
                    .is_some_and(|r| r.in_use(rd.name.as_str()))
                {
                    continue;
                }
                let mut marked = tiebreaker.clone();
                marked.phase = ResourcePhase::Deleting;
                plan.op(Op::PutResource {
                    resource: rd.name.clone(),
                    placed: marked,
                })
                .reply(
                    DELETE
                        .info(
                            code::INFO_TIE_BREAKER_DELETING,
                            format!(
                                "Tie breaker resource '{}' on {} is no longer needed; deleting it.",
                                rd.name, tiebreaker.node
                            ),
                        )
                        .obj_ref("RscDfn", rd.name.as_str())
                        .obj_ref("Node", tiebreaker.node.as_str()),
                );
                plan.deletions.push(Marked::Resource {
                    resource: rd.name.clone(),
                    node: tiebreaker.node.clone(),
                });
            }
        }
    }
}

/// Keeps every tiebreaker whose node reports it in use as a diskless resource of its own: it
/// loses the flag, so it is no longer added or removed with the disks (LINSTOR does the same
/// when a tiebreaker is promoted). Looks only at what the online nodes report in use.
pub fn keep_used(cluster: &Cluster, runtime: &Runtime) -> Plan {
    let mut plan = Plan::new();
    let mut used: Vec<(&NodeName, &str)> = runtime
        .iter()
        .filter(|(_, reported)| reported.is_online())
        .flat_map(|(node, reported)| {
            reported
                .replication
                .values()
                .filter(|r| r.in_use)
                .map(move |r| (node, r.resource.as_str()))
        })
        .collect();
    used.sort();
    for (node, resource) in used {
        let Some(rd) = ResourceName::new(resource)
            .ok()
            .and_then(|name| cluster.resource_definition(&name))
        else {
            continue;
        };
        let Some(tiebreaker) = rd
            .resources
            .get(node)
            .filter(|r| r.tiebreaker && !r.is_deleting())
        else {
            continue;
        };
        let (op, reply) = super::resources::take_over_tiebreaker(&CTX, rd, tiebreaker, None);
        plan.op(op).reply(reply);
    }
    plan
}

fn no_tiebreaker_warning(rd: &ResourceDefinition, reasons: &[String]) -> ApiCallRc {
    ApiCallRc::new(
        RetCode::warn(code::WARN_NOT_ENOUGH_NODES_FOR_TIE_BREAKER)
            .with_context(CTX.operation.mask(), CTX.object.mask()),
        format!(
            "Resource '{}' has an even number of disks but no node can take a diskless tiebreaker: if half of its nodes fail, the other half loses quorum.",
            rd.name
        ),
    )
    .cause(if reasons.is_empty() {
        "The cluster has no other node.".to_string()
    } else {
        format!("Candidates: {}.", reasons.join("; "))
    })
    .correction(
        "Add a node with a diskless storage pool that runs the resource's engine, or add a \
         diskless resource or another disk yourself.",
    )
    .obj_ref("RscDfn", rd.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{commit, engines_runtime, replicated_group, spawn, tutorial_cluster};
    use crate::app::{resource_definitions, resources};
    use ferrite_types::LayerKind::Mirror;
    use ferrite_types::rest;

    fn rd<'a>(cluster: &'a Cluster, name: &str) -> &'a ResourceDefinition {
        &cluster.resource_definitions[&name.parse::<ResourceName>().unwrap()]
    }

    /// (node, diskful, tiebreaker) of every member not being deleted.
    fn members(cluster: &Cluster, name: &str) -> Vec<(String, bool, bool)> {
        rd(cluster, name)
            .resources
            .values()
            .filter(|r| !r.is_deleting())
            .map(|r| (r.node.to_string(), !r.diskless, r.tiebreaker))
            .collect()
    }

    /// The tutorial's nodes that hold no member of `web`.
    fn free_nodes(cluster: &Cluster) -> Vec<String> {
        ["node1", "node2", "node3", "node4"]
            .iter()
            .map(|n| n.to_string())
            .filter(|n| !members(cluster, "web").iter().any(|(m, _, _)| m == n))
            .collect()
    }

    fn tiebreakers(cluster: &Cluster, name: &str) -> Vec<String> {
        members(cluster, name)
            .into_iter()
            .filter(|(_, _, t)| *t)
            .map(|(n, _, _)| n)
            .collect()
    }

    fn create(node: &str, diskless: bool) -> Vec<rest::ResourceCreate> {
        vec![rest::ResourceCreate {
            resource: rest::Resource {
                node_name: node.into(),
                flags: if diskless {
                    vec!["DISKLESS".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            },
            ..Default::default()
        }]
    }

    /// `web` spawned with place count 2 on the tutorial's four MIRROR nodes.
    fn two_disks() -> (Cluster, Runtime) {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert!(
            replies
                .iter()
                .any(|r| r.ret_code().code() == code::INFO_TIE_BREAKER_CREATED),
            "{replies:?}"
        );
        let runtime = engines_runtime(&cluster, &[Mirror]);
        (cluster, runtime)
    }

    #[test]
    fn two_disks_get_a_diskless_tiebreaker_with_linstors_flag() {
        let (cluster, runtime) = two_disks();
        let members = members(&cluster, "web");
        assert_eq!(members.iter().filter(|(_, d, _)| *d).count(), 2);
        let tiebreakers = tiebreakers(&cluster, "web");
        assert_eq!(tiebreakers.len(), 1);
        let node: NodeName = tiebreakers[0].parse().unwrap();
        let tiebreaker = &rd(&cluster, "web").resources[&node];
        assert!(tiebreaker.diskless && tiebreaker.node_id.is_some() && tiebreaker.port.is_some());
        assert_eq!(tiebreaker.storage_pool, model::default_diskless_pool());
        let view = crate::app::views::resource(
            &cluster,
            rd(&cluster, "web"),
            tiebreaker,
            runtime.get(&node),
        );
        assert_eq!(
            view.resource.flags,
            vec!["DISKLESS", "DRBD_DISKLESS", model::FLAG_TIE_BREAKER]
        );
        // Three members: quorum options for the engine.
        let spec =
            crate::satellites::desired::resource_spec(&cluster, rd(&cluster, "web"), tiebreaker);
        let options = spec.replication.unwrap().options;
        assert_eq!(options["Resource/quorum"], "majority");
        assert_eq!(options["Resource/on-no-quorum"], "io-error");

        // A volume definition's DrbdOptions reach the engine for that volume only.
        let mut with_vd_options = cluster.clone();
        let name: ResourceName = "web".parse().unwrap();
        let definition = with_vd_options.resource_definitions.get_mut(&name).unwrap();
        let vd = definition.volume_definitions.values_mut().next().unwrap();
        vd.props
            .insert("DrbdOptions/Disk/disk-flushes".into(), "no".into());
        vd.props.insert("Aux/x".into(), "y".into());
        let number = vd.number.get();
        let spec = crate::satellites::desired::resource_spec(
            &with_vd_options,
            rd(&with_vd_options, "web"),
            tiebreaker,
        );
        let replication = spec.replication.unwrap();
        assert_eq!(
            replication.volume_options[&number],
            [("Disk/disk-flushes".to_string(), "no".to_string())].into()
        );
        assert!(!replication.options.contains_key("Disk/disk-flushes"));
    }

    #[test]
    fn a_third_disk_removes_the_tiebreaker_and_losing_it_brings_one_back() {
        let (mut cluster, runtime) = two_disks();
        let free = free_nodes(&cluster);
        let old_tiebreaker = tiebreakers(&cluster, "web")[0].clone();
        let (replies, deletions) = commit(&mut cluster, &runtime, |c, r| {
            resources::create(c, r, "web", &create(&free[0], false))
        });
        assert!(tiebreakers(&cluster, "web").is_empty(), "{replies:?}");
        assert!(
            replies
                .iter()
                .any(|r| r.ret_code().code() == code::INFO_TIE_BREAKER_DELETING)
        );
        assert!(deletions.contains(&Marked::Resource {
            resource: "web".parse().unwrap(),
            node: old_tiebreaker.parse().unwrap(),
        }));

        // Three disks, then one is deleted: two again, so a tiebreaker comes back, on the one
        // node that does not hold the resource (the old tiebreaker's and the deleted replica's
        // nodes still do until they confirm).
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            resources::delete(c, r, "web", &free[0], false)
        });
        assert_eq!(tiebreakers(&cluster, "web").len(), 0, "{replies:?}");
        assert!(
            replies
                .iter()
                .any(|r| r.ret_code().code() == code::WARN_NOT_ENOUGH_NODES_FOR_TIE_BREAKER),
            "every other node holds the resource: {replies:?}"
        );
        // Once the old tiebreaker's node confirmed its deletion, the next change places one.
        let name: ResourceName = "web".parse().unwrap();
        let node: NodeName = old_tiebreaker.parse().unwrap();
        Op::DeleteResource {
            resource: name.clone(),
            node,
        }
        .apply(&mut cluster);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let mut plan = Plan::new();
        plan.op(Op::PutResourceDefinition(rd(&cluster, "web").clone()));
        complete(&cluster, &runtime, &mut plan);
        assert!(plan.ops.iter().any(|op| matches!(op,
            Op::PutResource { placed, .. } if placed.tiebreaker && placed.node.as_str() == old_tiebreaker)));
    }

    /// Found by the restart model test: a node deleted with a replica on it, once it confirms,
    /// goes in the same plan as its last resource; the tiebreaker the two remaining disks then
    /// want must not go on that node (the store refused the plan — a resource on a node the
    /// plan deletes — and the deletion could never finish), nor on one marked for deletion or
    /// being evacuated.
    #[test]
    fn a_tiebreaker_never_goes_on_a_node_leaving_the_cluster() {
        use crate::app::{deletions, nodes};
        use ferrite_proto::{DeletedResource, NodeReport};
        use ferrite_types::ConnectionStatus;

        let (mut cluster, runtime) = two_disks();
        // Three disks: the tiebreaker goes once its node confirms.
        let free = free_nodes(&cluster);
        commit(&mut cluster, &runtime, |c, r| {
            resources::create(c, r, "web", &create(&free[0], false))
        });
        let old_tiebreaker: NodeName = cluster.resource_definitions[&"web".parse().unwrap()]
            .resources
            .values()
            .find(|r| r.tiebreaker)
            .map(|r| r.node.clone())
            .unwrap();
        Op::DeleteResource {
            resource: "web".parse().unwrap(),
            node: old_tiebreaker.clone(),
        }
        .apply(&mut cluster);
        assert!(tiebreakers(&cluster, "web").is_empty());

        // The old tiebreaker's node is offline; the third disk's node is deleted.
        let leaving: NodeName = free[0].parse().unwrap();
        let mut runtime = engines_runtime(&cluster, &[Mirror]);
        runtime.get_mut(&old_tiebreaker).unwrap().status = ConnectionStatus::Offline;
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            nodes::delete(c, r, leaving.as_str())
        });
        assert!(cluster.node(&leaving).unwrap().is_deleting(), "{replies:?}");
        assert!(tiebreakers(&cluster, "web").is_empty(), "{replies:?}");

        // It confirms: its replica and the node go together, and no tiebreaker takes its place
        // on it (the only other node without the resource is offline).
        let uuid = cluster.resource_definitions[&"web".parse().unwrap()].resources[&leaving]
            .uuid
            .clone();
        runtime.get_mut(&leaving).unwrap().absorb(NodeReport {
            deleted_resources: vec![DeletedResource {
                resource: "web".into(),
                uuid,
            }],
            ..Default::default()
        });
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| Ok(deletions::finish(c, r)));
        assert!(cluster.node(&leaving).is_none(), "{replies:?}");
        assert!(tiebreakers(&cluster, "web").is_empty(), "{replies:?}");
        assert!(
            replies
                .iter()
                .any(|r| r.ret_code().code() == code::WARN_NOT_ENOUGH_NODES_FOR_TIE_BREAKER),
            "{replies:?}"
        );

        // Nor on a node marked for deletion or being evacuated, online as it may be.
        let rd = rd(&cluster, "web").clone();
        let mut marked = cluster.clone();
        runtime.get_mut(&old_tiebreaker).unwrap().status = ConnectionStatus::Online;
        for flag in [model::FLAG_DELETE, model::FLAG_EVACUATE] {
            marked.nodes.get_mut(&old_tiebreaker).unwrap().flags = vec![flag.to_string()];
            let refused = choose_node(&marked, &runtime, &rd, &BTreeSet::new()).unwrap_err();
            assert!(
                refused
                    .iter()
                    .any(|why| why.contains(old_tiebreaker.as_str()) && why.contains("being")),
                "{flag}: {refused:?}"
            );
        }
        let (chosen, _) = choose_node(&cluster, &runtime, &rd, &BTreeSet::new()).unwrap();
        assert_eq!(chosen, old_tiebreaker);
    }

    #[test]
    fn one_disk_left_needs_no_tiebreaker() {
        let (mut cluster, runtime) = two_disks();
        let diskful: Vec<String> = members(&cluster, "web")
            .into_iter()
            .filter(|(_, d, _)| *d)
            .map(|(n, _, _)| n)
            .collect();
        commit(&mut cluster, &runtime, |c, r| {
            resources::delete(c, r, "web", &diskful[0], false)
        });
        assert!(tiebreakers(&cluster, "web").is_empty());
    }

    #[test]
    fn a_users_diskless_resource_takes_over_or_replaces_the_tiebreaker() {
        let (mut cluster, runtime) = two_disks();
        let tiebreaker = tiebreakers(&cluster, "web")[0].clone();
        // resource create --diskless on the tiebreaker's node: it stays, without the flag.
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            resources::create(c, r, "web", &create(&tiebreaker, true))
        });
        assert!(
            replies
                .iter()
                .any(|r| r.ret_code().code() == code::INFO_TIE_BREAKER_TAKEOVER)
        );
        assert!(tiebreakers(&cluster, "web").is_empty());
        assert!(members(&cluster, "web").contains(&(tiebreaker.clone(), false, false)));

        // Deleting that client with keep_tiebreaker turns it back into the tiebreaker.
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, deletions) = commit(&mut cluster, &runtime, |c, r| {
            resources::delete(c, r, "web", &tiebreaker, true)
        });
        assert!(deletions.is_empty(), "{replies:?}");
        assert_eq!(tiebreakers(&cluster, "web"), vec![tiebreaker.clone()]);

        // A diskless client on another node makes the tiebreaker unnecessary.
        let other = ["node1", "node2", "node3", "node4"]
            .iter()
            .find(|n| !members(&cluster, "web").iter().any(|(m, _, _)| m == *n))
            .unwrap()
            .to_string();
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| {
            resources::make_available(c, r, "web", &other, &rest::ResourceMakeAvailable::default())
        });
        assert!(tiebreakers(&cluster, "web").is_empty());
        assert!(members(&cluster, "web").contains(&(other, false, false)));
    }

    #[test]
    fn a_tiebreaker_its_node_uses_stays_as_a_diskless_resource() {
        let (mut cluster, mut runtime) = two_disks();
        let tiebreaker = tiebreakers(&cluster, "web")[0].clone();
        let node: NodeName = tiebreaker.parse().unwrap();
        // Nothing in use: nothing to keep.
        assert!(keep_used(&cluster, &runtime).ops.is_empty());
        // Its node reports it in use (mkfs and mount there, as in the article): it loses the
        // flag and stays.
        let reported = runtime.get_mut(&node).unwrap();
        reported.replication.get_mut("WEB").unwrap().in_use = true;
        let (replies, deletions) = commit(&mut cluster, &runtime, |c, r| Ok(keep_used(c, r)));
        assert!(deletions.is_empty(), "{replies:?}");
        assert!(
            replies
                .iter()
                .any(|r| r.ret_code().code() == code::INFO_TIE_BREAKER_TAKEOVER),
            "{replies:?}"
        );
        assert!(tiebreakers(&cluster, "web").is_empty());
        assert!(members(&cluster, "web").contains(&(tiebreaker.clone(), false, false)));
        assert!(keep_used(&cluster, &runtime).ops.is_empty(), "done once");
        // Made available on a fourth node, the former tiebreaker stays: it can then be made a
        // replica, as the article does.
        let other = ["node1", "node2", "node3", "node4"]
            .iter()
            .find(|n| !members(&cluster, "web").iter().any(|(m, _, _)| m == *n))
            .unwrap()
            .to_string();
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, deletions) = commit(&mut cluster, &runtime, |c, r| {
            resources::make_available(c, r, "web", &other, &rest::ResourceMakeAvailable::default())
        });
        assert!(deletions.is_empty(), "{replies:?}");
        let members = members(&cluster, "web");
        assert!(members.contains(&(tiebreaker, false, false)), "{members:?}");
        assert!(members.contains(&(other, false, false)), "{members:?}");
    }

    #[test]
    fn the_option_switches_tiebreakers_off_and_deleting_the_definition_takes_it_along() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        cluster
            .props
            .insert(PROP_AUTO_TIEBREAKER.into(), "false".into());
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(members(&cluster, "web").len(), 2);

        let (mut cluster, runtime) = two_disks();
        commit(&mut cluster, &runtime, |c, r| {
            resource_definitions::delete(c, r, "web")
        });
        assert!(
            rd(&cluster, "web")
                .resources
                .values()
                .all(|r| r.is_deleting())
        );
    }

    #[test]
    fn quorum_off_means_no_tiebreaker_and_no_quorum_defaults() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        let group: ferrite_types::ResourceGroupName = "my_ssd_group".parse().unwrap();
        cluster
            .resource_groups
            .get_mut(&group)
            .unwrap()
            .props
            .insert(PROP_QUORUM.into(), "off".into());
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert!(tiebreakers(&cluster, "web").is_empty());
        // A third member by hand: the user's quorum setting wins over the defaults.
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let free = ["node1", "node2", "node3", "node4"]
            .iter()
            .find(|n| !members(&cluster, "web").iter().any(|(m, _, _)| m == *n))
            .unwrap()
            .to_string();
        commit(&mut cluster, &runtime, |c, r| {
            resources::create(c, r, "web", &create(&free, false))
        });
        let rd = rd(&cluster, "web");
        let resource = rd.resources.values().next().unwrap();
        let options = crate::satellites::desired::resource_spec(&cluster, rd, resource)
            .replication
            .unwrap()
            .options;
        assert_eq!(options["Resource/quorum"], "off");
        assert_eq!(options["Resource/on-no-quorum"], "io-error");
    }
}
