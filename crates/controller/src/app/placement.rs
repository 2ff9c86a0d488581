//! The controller's side of the autoplacer: validating auto-select filters, describing the
//! cluster to `ferrite-placement`, and turning its answer into resources or an explained
//! refusal.

use std::collections::BTreeMap;

use ferrite_placement::{Candidate, CandidatePool, ExistingReplica, Request, hosting};
use ferrite_types::api_call_rc::code;
use ferrite_types::rest::AutoSelectFilter;
use ferrite_types::{
    ApiCallRc, ConnectionStatus, LayerKind, NodeName, ProviderKind, ResourceName, StorPoolName,
};

use super::{Context, Failure, parse_name};
use crate::model::{self, Cluster, Op, Resource, ResourceDefinition};
use crate::reported::NodeRuntime;
pub use crate::reported::Runtime;

/// How many diskful replicas a resource gets when nobody says: LINSTOR's default.
pub const DEFAULT_PLACE_COUNT: i32 = 2;

/// The most replicas a resource can have (DRBD 9's limit; MIRROR keeps it).
pub const MAX_PLACE_COUNT: i32 = *ferrite_types::limits::PLACE_COUNT.end();

/// Validates a list of layer names and completes it: STORAGE last, at most one replication
/// layer above it.
pub fn layer_stack(ctx: &Context, names: &[String]) -> Result<Vec<LayerKind>, Failure> {
    let mut layers = Vec::with_capacity(names.len() + 1);
    for name in names {
        let layer: LayerKind = name
            .parse()
            .map_err(|e: ferrite_types::kinds::UnknownKind| {
                Failure::from(
                    ctx.error(
                        code::FAIL_INVLD_LAYER_KIND,
                        format!("Unknown layer '{name}'."),
                    )
                    .cause(e.to_string())
                    .correction(
                        "Use a layer list of DRBD or MIRROR followed by STORAGE, or STORAGE alone.",
                    ),
                )
            })?;
        layers.push(layer);
    }
    normalize_layers(ctx, layers)
}

/// The layer stack a new definition takes from a resource group's layer list: the list
/// completed and checked, or none (empty: the default, chosen at the first placement by
/// `engine::complete`) when the group has no list.
pub fn group_stack(ctx: &Context, filter: &AutoSelectFilter) -> Result<Vec<LayerKind>, Failure> {
    match filter.layer_stack.as_ref().filter(|l| !l.is_empty()) {
        Some(names) => layer_stack(ctx, names),
        None => Ok(Vec::new()),
    }
}

/// Completes and checks a layer stack.
pub fn normalize_layers(
    ctx: &Context,
    mut layers: Vec<LayerKind>,
) -> Result<Vec<LayerKind>, Failure> {
    if layers.last() != Some(&LayerKind::Storage) {
        layers.push(LayerKind::Storage);
    }
    let invalid = |cause: String| {
        Failure::from(
            ctx.error(code::FAIL_INVLD_LAYER_STACK, "Invalid layer stack.")
                .cause(cause)
                .correction("Use DRBD,STORAGE or MIRROR,STORAGE or STORAGE."),
        )
    };
    let storage_count = layers.iter().filter(|l| **l == LayerKind::Storage).count();
    if storage_count > 1 {
        return Err(invalid(
            "STORAGE must appear once, at the bottom".to_string(),
        ));
    }
    let replication = layers.iter().filter(|l| l.is_replication()).count();
    if replication > 1 {
        return Err(invalid(format!(
            "{} has more than one replication layer",
            layers
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    Ok(layers)
}

fn parse_names<T>(
    ctx: &Context,
    code_value: u64,
    values: &Option<Vec<String>>,
) -> Result<Vec<T>, Failure>
where
    T: std::str::FromStr<Err = ferrite_types::NameError>,
{
    values
        .iter()
        .flatten()
        .map(|v| parse_name(ctx, code_value, v))
        .collect()
}

/// Checks an auto-select filter against the cluster and returns it with canonical spellings.
/// A storage pool no node has is refused: the filter is about to place resources.
pub fn validate_filter(
    ctx: &Context,
    cluster: &Cluster,
    filter: &AutoSelectFilter,
) -> Result<AutoSelectFilter, Failure> {
    let mut unknown_pools = None;
    check_filter(ctx, cluster, filter, &mut unknown_pools)
}

/// Checks a resource group's filter as LINSTOR does: a storage pool no node has yet is
/// accepted (it may be created later) with a `WARN_NOT_FOUND` warning naming it. The filter
/// comes back in LINSTOR's shape (`stored_shape`).
pub fn validate_group_filter(
    ctx: &Context,
    cluster: &Cluster,
    filter: &AutoSelectFilter,
) -> Result<(AutoSelectFilter, Option<ApiCallRc>), Failure> {
    let mut unknown_pools = Some(Vec::new());
    let checked = stored_shape(check_filter(ctx, cluster, filter, &mut unknown_pools)?);
    let warning = unknown_pools.filter(|p| !p.is_empty()).map(|pools| {
        ctx.warn(
            code::WARN_NOT_FOUND,
            format!(
                "The following configured storage pools do not exist on any node:\n\t{}",
                pools.join("\n\t")
            ),
        )
        .cause("No node has a storage pool of that name yet.")
        .correction(
            "Create the pool with 'ferrite storage-pool create' before resources are placed \
             from this group, or check the name with 'ferrite storage-pool list'.",
        )
    });
    Ok((checked, warning))
}

/// A resource group's filter as LINSTOR keeps and answers it: a cleared list (`[]`) is no
/// list, and the pools are always in `storage_pool_list`, with `storage_pool` echoing the pool
/// when there is exactly one (clients that read only one of the two, such as Incus, which sums
/// the free space of every pool when the list is missing, see the same pools).
pub fn stored_shape(mut filter: AutoSelectFilter) -> AutoSelectFilter {
    fn clear(list: &mut Option<Vec<String>>) {
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    for list in [
        &mut filter.node_name_list,
        &mut filter.storage_pool_list,
        &mut filter.storage_pool_diskless_list,
        &mut filter.not_place_with_rsc,
        &mut filter.replicas_on_same,
        &mut filter.replicas_on_different,
        &mut filter.layer_stack,
        &mut filter.provider_list,
    ] {
        clear(list);
    }
    if filter
        .x_replicas_on_different_map
        .as_ref()
        .is_some_and(|m| m.is_empty())
    {
        filter.x_replicas_on_different_map = None;
    }
    if filter.not_place_with_rsc_regex.as_deref() == Some("") {
        filter.not_place_with_rsc_regex = None;
    }
    if filter.storage_pool.as_deref() == Some("") {
        filter.storage_pool = None;
    }
    if let Some(pool) = filter.storage_pool.take()
        && filter.storage_pool_list.is_none()
    {
        filter.storage_pool_list = Some(vec![pool]);
    }
    filter.storage_pool = match filter.storage_pool_list.as_deref() {
        Some([only]) => Some(only.clone()),
        _ => None,
    };
    filter
}

fn check_filter(
    ctx: &Context,
    cluster: &Cluster,
    filter: &AutoSelectFilter,
    unknown_pools: &mut Option<Vec<String>>,
) -> Result<AutoSelectFilter, Failure> {
    let mut out = filter.clone();
    for (field, value) in [
        ("place_count", filter.place_count),
        ("additional_place_count", filter.additional_place_count),
    ] {
        if let Some(count) = value {
            let min = if field == "place_count" { 1 } else { 0 };
            if !(min..=MAX_PLACE_COUNT).contains(&count) {
                return Err(ctx.invalid(
                    code::FAIL_INVLD_PLACE_COUNT,
                    format!("Invalid {field} {count}."),
                    format!("Give a {field} between {min} and {MAX_PLACE_COUNT}."),
                ));
            }
        }
    }
    let mut pool_lists = vec![
        ("storage_pool_list", &filter.storage_pool_list),
        (
            "storage_pool_diskless_list",
            &filter.storage_pool_diskless_list,
        ),
    ];
    let single = filter.storage_pool.clone().map(|p| vec![p]);
    pool_lists.push(("storage_pool", &single));
    for (_, list) in pool_lists {
        for pool in parse_names::<StorPoolName>(ctx, code::FAIL_INVLD_STOR_POOL_NAME, list)? {
            if !cluster.storage_pool_defined(&pool)
                && let Some(unknown) = unknown_pools.as_mut()
            {
                if !unknown.contains(&pool.to_string()) {
                    unknown.push(pool.to_string());
                }
            } else if !cluster.storage_pool_defined(&pool) {
                return Err(ctx
                    .error(code::FAIL_NOT_FOUND_STOR_POOL_DFN, format!("Storage pool '{pool}' not found."))
                    .cause("No node has a storage pool of that name.")
                    .correction("Create it with 'ferrite storage-pool create', or check the name with 'ferrite storage-pool list'.")
                    .into());
            }
        }
    }
    for node in parse_names::<NodeName>(ctx, code::FAIL_INVLD_NODE_NAME, &filter.node_name_list)? {
        if cluster.node(&node).is_none() {
            return Err(super::not_found(
                ctx,
                code::FAIL_NOT_FOUND_NODE,
                "Node",
                node,
                "Check the node list with 'ferrite node list'.",
            ));
        }
    }
    parse_names::<ResourceName>(ctx, code::FAIL_INVLD_RSC_NAME, &filter.not_place_with_rsc)?;
    if let Some(pattern) = &filter.not_place_with_rsc_regex
        && let Err(e) = regex::Regex::new(pattern)
    {
        return Err(ctx
            .error(
                code::FAIL_INVLD_CONF,
                format!("Invalid do-not-place-with regular expression '{pattern}'."),
            )
            .cause(e.to_string())
            .correction("Give a valid regular expression, e.g. 'db-.*'.")
            .into());
    }
    // An empty list is no layer list, as in LINSTOR: definitions get the default stack.
    if let Some(layers) = filter.layer_stack.as_ref().filter(|l| !l.is_empty()) {
        out.layer_stack = Some(
            layer_stack(ctx, layers)?
                .iter()
                .map(|l| l.as_str().to_string())
                .collect(),
        );
    }
    if let Some(providers) = &filter.provider_list {
        let mut canonical = Vec::new();
        for provider in providers {
            let kind: ProviderKind =
                provider
                    .parse()
                    .map_err(|e: ferrite_types::kinds::UnknownKind| {
                        Failure::from(
                            ctx.error(
                                code::FAIL_INVLD_PROVIDER,
                                format!("Unknown storage provider '{provider}'."),
                            )
                            .cause(e.to_string())
                            .correction("Use provider names as 'ferrite node info' lists them."),
                        )
                    })?;
            canonical.push(kind.as_str().to_string());
        }
        out.provider_list = Some(canonical);
    }
    for key in filter
        .replicas_on_same
        .iter()
        .flatten()
        .chain(filter.replicas_on_different.iter().flatten())
    {
        let name = key.split_once('=').map_or(key.as_str(), |(k, _)| k);
        super::properties::check_key(name).map_err(|cause| {
            Failure::from(
                ctx.error(
                    code::FAIL_INVLD_PROP,
                    format!("Invalid node property key '{key}'."),
                )
                .cause(cause)
                .correction(
                    "Name a node property key such as 'Aux/rack', optionally with '=value'.",
                ),
            )
        })?;
    }
    if let Some(map) = &filter.x_replicas_on_different_map {
        for (key, count) in map {
            if *count < 1 {
                return Err(ctx.invalid(
                    code::FAIL_INVLD_CONF,
                    format!("x-replicas-on-different for '{key}' is {count}."),
                    "Give at least 1 replica per value.",
                ));
            }
        }
    }
    if let Some(kind) = &filter.diskless_type
        && !kind.eq_ignore_ascii_case(ferrite_types::kinds::DISKLESS_TYPE)
    {
        return Err(ctx.invalid(
            code::FAIL_INVLD_CONF,
            format!("Unsupported diskless type '{kind}'."),
            "Use DRBD_DISKLESS (the default).",
        ));
    }
    Ok(out)
}

/// Why a node cannot take replicas at all, if so.
fn unavailable(node: &model::Node, runtime: Option<&NodeRuntime>) -> Option<String> {
    if !node.node_type.has_satellite() {
        return Some(format!(
            "node '{}' is a {} node without a satellite",
            node.name, node.node_type
        ));
    }
    if node.is_deleting() {
        return Some(format!("node '{}' is being deleted", node.name));
    }
    if node.is_evacuating() {
        return Some(format!("node '{}' is being evacuated", node.name));
    }
    match runtime {
        Some(r) if r.status == ConnectionStatus::Online => None,
        Some(r) => Some(format!(
            "node '{}' is {}{}",
            node.name,
            r.status,
            r.last_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )),
        None => Some(format!("node '{}' is OFFLINE", node.name)),
    }
}

/// The cluster as the autoplacer sees it.
/// Which resources on each node a placement needs to know of. Listing every resource of every
/// node costs as much as the cluster is large, so it is done only for a do-not-place-with
/// pattern; otherwise only the named resources are looked up.
pub enum ResourcesOfInterest<'a> {
    All,
    Named(&'a [ResourceName]),
}

pub fn candidates(
    cluster: &Cluster,
    runtime: &Runtime,
    interest: ResourcesOfInterest<'_>,
) -> Vec<Candidate> {
    cluster
        .nodes
        .values()
        .map(|node| {
            let report = runtime.get(&node.name);
            let capabilities = report.and_then(|r| r.capabilities.as_ref());
            let pools = node
                .storage_pools
                .values()
                .map(|pool| {
                    let pool_report = report.and_then(|r| r.pools.get(pool.name.key()));
                    let providers = capabilities.map(|c| c.storage_providers.as_slice());
                    let unusable = if hosting::provider(providers, pool.provider_kind).is_err() {
                        Some(format!(
                            "node '{}' cannot run provider {}",
                            node.name, pool.provider_kind
                        ))
                    } else if let Some(errors) = pool_report.map(|p| &p.errors)
                        && !errors.is_empty()
                    {
                        Some(format!(
                            "storage pool '{}' on '{}' has errors: {}",
                            pool.name,
                            node.name,
                            errors.join("; ")
                        ))
                    } else if pool_report.is_none() && !pool.is_diskless() {
                        Some(format!(
                            "the capacity of storage pool '{}' on '{}' is not known yet",
                            pool.name, node.name
                        ))
                    } else {
                        None
                    };
                    CandidatePool {
                        name: pool.name.clone(),
                        provider_kind: pool.provider_kind,
                        free_capacity_kib: super::capacity::free_kib(
                            cluster, runtime, &node.name, pool,
                        ),
                        total_capacity_kib: pool_report.and_then(|p| p.total_capacity_kib),
                        unusable,
                    }
                })
                .collect();
            Candidate {
                node: node.name.clone(),
                props: node.props.clone(),
                unavailable: unavailable(node, report),
                supported_layers: capabilities.map(|c| c.resource_layers.clone()),
                resources: match interest {
                    ResourcesOfInterest::All => cluster
                        .resources_on_node(&node.name)
                        .map(|(rd, _)| rd.name.clone())
                        .collect(),
                    ResourcesOfInterest::Named(names) => names
                        .iter()
                        .filter(|name| {
                            cluster
                                .resource_definition(name)
                                .is_some_and(|rd| rd.resources.contains_key(&node.name))
                        })
                        .cloned()
                        .collect(),
                },
                pools,
            }
        })
        .collect()
}

/// The autoplacer's request for a validated `filter`: no resource yet, no size, no existing
/// replica, no layer; callers fill in what they know.
pub fn filter_request(filter: &AutoSelectFilter, place_count: usize) -> Request {
    let names = |list: &Option<Vec<String>>| -> Vec<String> { list.clone().unwrap_or_default() };
    Request {
        resource: None,
        size_kib: 0,
        place_count,
        existing: Vec::new(),
        node_name_list: names(&filter.node_name_list)
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect(),
        storage_pools: filter
            .storage_pools()
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect(),
        diskless_storage_pools: names(&filter.storage_pool_diskless_list)
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect(),
        provider_list: names(&filter.provider_list)
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect(),
        layer_stack: Vec::new(),
        replicas_on_same: names(&filter.replicas_on_same),
        replicas_on_different: names(&filter.replicas_on_different),
        x_replicas_on_different: filter
            .x_replicas_on_different_map
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.max(1) as usize))
            .collect::<BTreeMap<_, _>>(),
        do_not_place_with: names(&filter.not_place_with_rsc)
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect(),
        do_not_place_with_regex: filter.not_place_with_rsc_regex.clone(),
        diskless_on_remaining: filter.diskless_on_remaining.unwrap_or(false),
    }
}

/// Places `rd` (as it will be after the plan's earlier ops) according to `filter` (merged and
/// validated). Returns the ops creating the new resources and the messages describing them.
pub fn autoplace(
    ctx: &Context,
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    filter: &AutoSelectFilter,
) -> Result<(Vec<Op>, Vec<ApiCallRc>), Failure> {
    let existing: Vec<ExistingReplica> = rd
        .resources
        .values()
        .map(|r| ExistingReplica {
            node: r.node.clone(),
            pool: r.storage_pool.clone(),
            diskful: !r.diskless,
        })
        .collect();
    let existing_diskful = existing.iter().filter(|r| r.diskful).count();
    let place_count = match (filter.additional_place_count, filter.place_count) {
        (Some(additional), _) => existing_diskful + additional.max(0) as usize,
        (None, Some(count)) => count.max(0) as usize,
        (None, None) => DEFAULT_PLACE_COUNT as usize,
    };
    let request = Request {
        resource: Some(rd.name.clone()),
        size_kib: rd.total_size_kib(),
        existing,
        // The replication layer is checked by the controller (`engine::node_refusal`, below):
        // which engine a node must run depends on the definition, not only on the stack.
        layer_stack: rd
            .resource_layers()
            .iter()
            .copied()
            .filter(|l| !l.is_replication())
            .collect(),
        ..filter_request(filter, place_count)
    };
    let named: Vec<ResourceName> = request
        .do_not_place_with
        .iter()
        .chain(request.resource.iter())
        .cloned()
        .collect();
    let interest = if request.do_not_place_with_regex.is_some() {
        ResourcesOfInterest::All
    } else {
        ResourcesOfInterest::Named(&named)
    };
    let mut candidates = candidates(cluster, runtime, interest);
    if rd.is_replicated() {
        for candidate in candidates.iter_mut().filter(|c| c.unavailable.is_none()) {
            candidate.unavailable =
                super::engine::node_refusal(cluster, runtime, rd, &candidate.node);
        }
    }
    let placement = ferrite_placement::place(&request, &candidates).map_err(|refusal| {
        let mut cause = String::new();
        for rejection in &refusal.rejections {
            cause.push_str("\n  - ");
            cause.push_str(&rejection.reason);
        }
        Failure::from(
            ctx.error(
                code::FAIL_NOT_ENOUGH_NODES,
                format!(
                    "Not enough available nodes to place resource '{}': {} diskful replica(s) wanted, {} possible.",
                    rd.name, refusal.wanted, refusal.found
                ),
            )
            .cause(format!("Candidates and why they were rejected:{cause}"))
            .correction("Add storage pools or free space on more nodes, relax the placement rules, or lower the place count.")
            .obj_ref("RscDfn", rd.name.as_str()),
        )
    })?;

    let mut ops = Vec::new();
    let mut replies = Vec::new();
    let rsc_ctx = Context::new(ctx.operation, super::Object::Resource);
    let now = model::now_millis();
    let mut place = |node: &NodeName, pool: &StorPoolName, diskless: bool| {
        ops.push(Op::PutResource {
            resource: rd.name.clone(),
            placed: Resource {
                node: node.clone(),
                uuid: model::new_uuid(),
                props: Default::default(),
                diskless,
                storage_pool: pool.clone(),
                create_timestamp: now,
                phase: Default::default(),
                node_id: None,
                port: None,
                tiebreaker: false,
                restore_from: None,
                inactive: false,
                evacuating: false,
                evacuation_replaced: false,
            },
        });
        replies.push(
            rsc_ctx
                .created(format!(
                    "Created {}resource '{}' on '{node}'{}",
                    if diskless { "diskless " } else { "" },
                    rd.name,
                    if diskless {
                        String::new()
                    } else {
                        format!(" in storage pool '{pool}'")
                    }
                ))
                .obj_ref("RscDfn", rd.name.as_str())
                .obj_ref("Node", node.as_str()),
        );
    };
    for (node, pool) in &placement.diskful {
        place(node, pool, false);
    }
    for (node, pool) in &placement.diskless {
        place(node, pool, true);
    }
    if placement.diskful.is_empty() && placement.diskless.is_empty() {
        replies.push(rsc_ctx.info(
            code::INFO_NOOP,
            format!("Resource '{}' already has {existing_diskful} diskful replica(s); nothing to place.", rd.name),
        ));
    } else {
        replies.push(
            rsc_ctx
                .created(format!(
                    "Resource '{}' successfully autoplaced on {} node(s)",
                    rd.name,
                    placement.diskful.len() + placement.diskless.len()
                ))
                .obj_ref("RscDfn", rd.name.as_str()),
        );
    }
    // A definition without a layer list learns whether it is replicated once its nodes are
    // known (`engine::complete`, which warns then).
    if !rd.is_replicated() && !rd.default_stack_pending() {
        replies.push(not_replicated_warning(&rsc_ctx, rd));
    }
    Ok((ops, replies))
}

/// The warning every placement of an unreplicated resource carries.
pub fn not_replicated_warning(ctx: &Context, rd: &ResourceDefinition) -> ApiCallRc {
    ctx.warn(
        code::WARN_NOT_REPLICATED,
        format!("Resource '{}' is not replicated: its layer stack is STORAGE only.", rd.name),
    )
    .cause("Without a replication layer (DRBD or MIRROR) each replica is an independent volume; writes on one node do not reach the others.")
    .correction("Give the resource group or definition a layer list with a replication layer (e.g. -l drbd,storage on hosts with DRBD 9).")
    .obj_ref("RscDfn", rd.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Object, Operation};

    const CTX: Context = Context::new(Operation::Create, Object::ResourceGroup);

    #[test]
    fn layer_stacks_are_completed_and_checked() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            layer_stack(&CTX, &names(&["drbd"])).unwrap(),
            vec![LayerKind::Drbd, LayerKind::Storage]
        );
        assert_eq!(
            layer_stack(&CTX, &names(&[])).unwrap(),
            vec![LayerKind::Storage]
        );
        assert_eq!(
            layer_stack(&CTX, &names(&["luks"])).unwrap_err().0[0]
                .ret_code()
                .code(),
            code::FAIL_INVLD_LAYER_KIND
        );
        assert_eq!(
            layer_stack(&CTX, &names(&["drbd", "mirror", "storage"]))
                .unwrap_err()
                .0[0]
                .ret_code()
                .code(),
            code::FAIL_INVLD_LAYER_STACK
        );
        assert_eq!(
            layer_stack(&CTX, &names(&["storage", "drbd"]))
                .unwrap_err()
                .0[0]
                .ret_code()
                .code(),
            code::FAIL_INVLD_LAYER_STACK
        );
    }

    #[test]
    fn filters_are_checked_against_the_cluster() {
        let cluster = crate::app::testing::tutorial_cluster();
        let ok = AutoSelectFilter {
            place_count: Some(2),
            storage_pool_list: Some(vec!["pool_ssd".into()]),
            provider_list: Some(vec!["file_thin".into()]),
            ..Default::default()
        };
        assert_eq!(
            validate_filter(&CTX, &cluster, &ok).unwrap().provider_list,
            Some(vec!["FILE_THIN".to_string()])
        );
        let code_of = |f: AutoSelectFilter| {
            validate_filter(&CTX, &cluster, &f).unwrap_err().0[0]
                .ret_code()
                .code()
        };
        assert_eq!(
            code_of(AutoSelectFilter {
                place_count: Some(0),
                ..Default::default()
            }),
            code::FAIL_INVLD_PLACE_COUNT
        );
        assert_eq!(
            code_of(AutoSelectFilter {
                place_count: Some(33),
                ..Default::default()
            }),
            code::FAIL_INVLD_PLACE_COUNT
        );
        assert_eq!(
            code_of(AutoSelectFilter {
                storage_pool_list: Some(vec!["nopool".into()]),
                ..Default::default()
            }),
            code::FAIL_NOT_FOUND_STOR_POOL_DFN
        );
        assert_eq!(
            code_of(AutoSelectFilter {
                provider_list: Some(vec!["SPDK".into()]),
                ..Default::default()
            }),
            code::FAIL_INVLD_PROVIDER
        );
        assert_eq!(
            code_of(AutoSelectFilter {
                not_place_with_rsc_regex: Some("(".into()),
                ..Default::default()
            }),
            code::FAIL_INVLD_CONF
        );
        assert_eq!(
            code_of(AutoSelectFilter {
                node_name_list: Some(vec!["node9".into()]),
                ..Default::default()
            }),
            code::FAIL_NOT_FOUND_NODE
        );
    }

    #[test]
    fn an_invalid_replicas_key_gets_a_cause_and_a_correction() {
        let cluster = crate::app::testing::tutorial_cluster();
        let filter = AutoSelectFilter {
            replicas_on_different: Some(vec!["Aux/ra ck=r1".into()]),
            ..Default::default()
        };
        let err = validate_filter(&CTX, &cluster, &filter).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_INVLD_PROP);
        assert!(err.0[0].cause.is_some());
        assert!(
            err.0[0]
                .correction
                .as_deref()
                .unwrap()
                .contains("'Aux/rack'")
        );
    }
}
