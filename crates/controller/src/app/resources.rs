//! Resources: placing a definition on named nodes, deleting, toggling between diskful and
//! diskless, making a resource available on a node.

use ferrite_placement::hosting::{self, Space, Unfit};
use ferrite_types::api_call_rc::code;
use ferrite_types::rest::{self, ToggleDiskOperation};
use ferrite_types::{NodeName, PROP_RESOURCE_STOR_POOL, StorPoolName};

use super::deletions::{self, Marked};
use super::placement::{self, Runtime};
use super::{
    Context, Failure, Object, Operation, Plan, engine, nodes, not_found, parse_name, properties,
    resource_definitions, tiebreaker,
};
use crate::model::{self, Cluster, Node, Op, Resource, ResourceDefinition, ResourcePhase};

const CREATE: Context = Context::new(Operation::Create, Object::Resource);
const MODIFY: Context = Context::new(Operation::Modify, Object::Resource);
const DELETE: Context = Context::new(Operation::Delete, Object::Resource);

/// Resource flags a create request may carry, and whether each means diskless.
const CREATE_FLAGS: &[(&str, bool)] = &[("DISKLESS", true), ("DRBD_DISKLESS", true)];

/// Finds a resource or refuses.
pub fn find<'a>(
    ctx: &Context,
    cluster: &Cluster,
    rd: &'a ResourceDefinition,
    node: &str,
) -> Result<&'a Resource, Failure> {
    let name = nodes::find(ctx, cluster, node)?.name.clone();
    rd.resources.get(&name).ok_or_else(|| {
        not_found(
            ctx,
            code::FAIL_NOT_FOUND_RSC,
            "Resource",
            format!("{}' on node '{node}", rd.name),
            format!(
                "List where '{}' is with 'ferrite resource list -r {}'.",
                rd.name, rd.name
            ),
        )
    })
}

/// Chooses the storage pool for a resource of `rd` on `node`: the one asked for, else the first
/// of the group's pools the node has, else the node's only pool of the right kind.
fn choose_pool(
    ctx: &Context,
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    node: &Node,
    requested: Option<&str>,
    diskless: bool,
) -> Result<StorPoolName, Failure> {
    deletions::refuse_if_node_deleting(ctx, node, &format!("place '{}' there", rd.name))?;
    let kind_word = if diskless { "diskless" } else { "diskful" };
    let name: StorPoolName = match requested {
        Some(pool) => parse_name(ctx, code::FAIL_INVLD_STOR_POOL_NAME, pool)?,
        None => {
            let group_filter = cluster
                .resource_groups
                .get(&rd.resource_group)
                .map(|g| &g.select_filter);
            let preferred: Vec<String> = match group_filter {
                Some(f) if diskless => f.storage_pool_diskless_list.clone().unwrap_or_default(),
                Some(f) => f.storage_pools(),
                None => Vec::new(),
            };
            let from_group = preferred
                .iter()
                .filter_map(|p| p.parse::<StorPoolName>().ok())
                .find(|p| node.storage_pools.contains_key(p));
            let of_kind: Vec<&StorPoolName> = node
                .storage_pools
                .values()
                .filter(|p| p.is_diskless() == diskless)
                .map(|p| &p.name)
                .collect();
            match (from_group, of_kind.as_slice()) {
                (Some(pool), _) => pool,
                (None, _)
                    if diskless
                        && node
                            .storage_pools
                            .contains_key(&model::default_diskless_pool()) =>
                {
                    model::default_diskless_pool()
                }
                (None, [only]) => (*only).clone(),
                (None, []) => {
                    return Err(ctx
                        .error(
                            code::FAIL_NOT_FOUND_STOR_POOL,
                            format!("Node '{}' has no {kind_word} storage pool.", node.name),
                        )
                        .correction(format!(
                            "Create one with 'ferrite storage-pool create … {} …'.",
                            node.name
                        ))
                        .into());
                }
                (None, several) => {
                    return Err(ctx
                        .error(code::FAIL_NOT_FOUND_STOR_POOL, format!("No storage pool given for resource '{}' on node '{}'.", rd.name, node.name))
                        .cause(format!(
                            "The node has several {kind_word} pools ({}) and the resource group names none of them.",
                            several.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                        ))
                        .correction("Choose one with --storage-pool.")
                        .into());
                }
            }
        }
    };
    let Some(pool) = node.storage_pools.get(&name) else {
        return Err(not_found(
            ctx,
            code::FAIL_NOT_FOUND_STOR_POOL,
            "Storage pool",
            format!("{name}' on node '{}", node.name),
            format!(
                "List the pools of '{}' with 'ferrite storage-pool list -n {}'.",
                node.name, node.name
            ),
        ));
    };
    if let Err(Unfit::WrongKind { pool_is_diskless }) = hosting::kind(pool.provider_kind, diskless)
    {
        return Err(ctx
            .error(
                code::FAIL_INVLD_STOR_POOL_NAME,
                format!("Storage pool '{}' on '{}' is {}, but a {kind_word} resource needs a {kind_word} pool.", pool.name, node.name, if pool_is_diskless { "diskless" } else { "diskful" }),
            )
            .correction(format!("Choose a {kind_word} pool."))
            .into());
    }
    let report = runtime.get(&node.name);
    if let Some(caps) = report.and_then(|r| r.capabilities.as_ref()) {
        if hosting::provider(Some(&caps.storage_providers), pool.provider_kind).is_err() {
            return Err(ctx
                .error(
                    code::FAIL_STLT_DOES_NOT_SUPPORT_PROVIDER,
                    format!(
                        "Node '{}' cannot run storage provider {}.",
                        node.name, pool.provider_kind
                    ),
                )
                .cause(
                    caps.unsupported_providers
                        .get(&pool.provider_kind)
                        .map(|r| r.join("; "))
                        .unwrap_or_default(),
                )
                .into());
        }
        let stack: Vec<_> = rd
            .resource_layers()
            .iter()
            .copied()
            .filter(|l| !l.is_replication())
            .collect();
        if let Err(Unfit::LayersUnsupported(missing)) =
            hosting::layers(Some(&caps.resource_layers), &stack)
            && let Some(layer) = missing.first()
        {
            return Err(ctx
                .error(code::FAIL_STLT_DOES_NOT_SUPPORT_LAYER, format!("Node '{}' cannot run layer {layer} of resource '{}'.", node.name, rd.name))
                .cause(caps.unsupported_layers.get(layer).map(|r| r.join("; ")).unwrap_or_default())
                .correction("Place the resource on a node that supports its layer stack ('ferrite node info').")
                .into());
        }
    }
    if let Some(reason) = engine::node_refusal(cluster, runtime, rd, &node.name) {
        return Err(ctx
            .error(
                code::FAIL_STLT_DOES_NOT_SUPPORT_LAYER,
                format!(
                    "Node '{}' cannot run the replication of resource '{}'.",
                    node.name, rd.name
                ),
            )
            .cause(reason)
            .correction(
                "Place the resource on a node that runs its engine ('ferrite node info'), or \
                 choose the engine with the property Ferrite/ReplicationEngine before the \
                 resource's first placement.",
            )
            .into());
    }
    if !diskless {
        let free = super::capacity::free_kib(cluster, runtime, &node.name, pool);
        let needed = rd.total_size_kib();
        if let Err(Unfit::TooLittleSpace {
            free_kib: free,
            needed_kib: needed,
        }) = hosting::space(Space::Lenient, pool.provider_kind, free, needed)
        {
            return Err(ctx
                .error(
                    code::FAIL_NOT_ENOUGH_FREE_SPACE,
                    format!(
                        "Storage pool '{}' on node '{}' has too little free space for '{}'.",
                        pool.name, node.name, rd.name
                    ),
                )
                .cause(format!(
                    "{} are free, {} are needed.",
                    ferrite_types::size::format_kib(free),
                    ferrite_types::size::format_kib(needed)
                ))
                .correction("Choose another pool or node, or free space.")
                .into());
        }
    }
    Ok(pool.name.clone())
}

fn new_resource(
    node: &NodeName,
    pool: StorPoolName,
    diskless: bool,
    props: rest::Props,
) -> Resource {
    Resource {
        node: node.clone(),
        uuid: model::new_uuid(),
        props,
        diskless,
        storage_pool: pool,
        create_timestamp: model::now_millis(),
        phase: ResourcePhase::Active,
        node_id: None,
        port: None,
        tiebreaker: false,
        restore_from: None,
        inactive: false,
        evacuating: false,
        evacuation_replaced: false,
    }
}

/// The layer stack a request's layer list asks of `rd`: its own when the list fits it (a
/// request's DRBD fits either engine); the list itself while `rd` has no resources yet (the
/// first placement sets the layers, as in LINSTOR); else a refusal.
pub fn requested_stack(
    ctx: &Context,
    rd: &ResourceDefinition,
    layers: Option<&Vec<ferrite_types::LayerKind>>,
) -> Result<Vec<ferrite_types::LayerKind>, Failure> {
    let Some(layers) = layers.filter(|l| !l.is_empty()) else {
        return Ok(rd.layer_stack.clone());
    };
    let layers = placement::normalize_layers(ctx, layers.clone())?;
    if engine::stacks_match(&layers, &rd.layer_stack) {
        return Ok(rd.layer_stack.clone());
    }
    if rd.resources.is_empty() {
        return Ok(layers);
    }
    Err(ctx
        .error(
            code::FAIL_INVLD_LAYER_STACK,
            format!(
                "Resource definition '{}' has the layer stack {}, not {}.",
                rd.name,
                resource_definitions::stack(&rd.layer_stack),
                resource_definitions::stack(&layers)
            ),
        )
        .correction("Leave out the layer list; every resource of a definition has the same layers.")
        .into())
}

/// The tiebreaker on a node taken over by a user's request for a resource there, or by its
/// node's use of it (`tiebreaker::keep_used`): it loses its flag and stays, diskless or
/// (`disk`: in that pool) diskful.
pub(super) fn take_over_tiebreaker(
    ctx: &Context,
    rd: &ResourceDefinition,
    tiebreaker: &Resource,
    disk: Option<StorPoolName>,
) -> (Op, ferrite_types::ApiCallRc) {
    let mut updated = tiebreaker.clone();
    updated.tiebreaker = false;
    let how = match disk {
        Some(pool) => {
            updated.diskless = false;
            updated
                .props
                .insert(PROP_RESOURCE_STOR_POOL.to_string(), pool.to_string());
            updated.storage_pool = pool.clone();
            format!("a diskful resource in storage pool '{pool}'")
        }
        None => "a diskless resource".to_string(),
    };
    let reply = ctx
        .info(
            code::INFO_TIE_BREAKER_TAKEOVER,
            format!(
                "Tie breaker resource '{}' on '{}' taken over as {how}.",
                rd.name, tiebreaker.node
            ),
        )
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("Node", tiebreaker.node.as_str());
    (
        Op::PutResource {
            resource: rd.name.clone(),
            placed: updated,
        },
        reply,
    )
}

/// `POST /v1/resource-definitions/{rd}/resources`: all elements or none.
pub fn create(
    cluster: &Cluster,
    runtime: &Runtime,
    name: &str,
    body: &[rest::ResourceCreate],
) -> Result<Plan, Failure> {
    let ctx = &CREATE;
    let current = resource_definitions::find(ctx, cluster, name)?;
    if body.is_empty() {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            "No resource to create was given.",
            "Send an array with at least one resource.",
        ));
    }
    deletions::refuse_if_deleting(ctx, current, "create resources")?;
    let mut plan = Plan::new();
    // The definition as the request leaves it: a first placement may set its layers.
    let mut rd = current.clone();
    for element in body {
        let stack = requested_stack(ctx, &rd, element.layer_list.as_ref())?;
        if stack != rd.layer_stack {
            rd.layer_stack = stack;
        }
    }
    if rd.layer_stack != current.layer_stack {
        plan.op(Op::PutResourceDefinition(rd.clone()));
    }
    let rd = &rd;
    let mut seen: Vec<NodeName> = Vec::new();
    for element in body {
        let node = nodes::find(ctx, cluster, &element.resource.node_name)?;
        let existing = rd.resources.get(&node.name);
        if let Some(existing) = existing {
            deletions::refuse_if_resource_busy(ctx, rd, existing, "create it again")?;
        }
        let takes_over = existing.is_some_and(|e| e.tiebreaker) && !seen.contains(&node.name);
        if (existing.is_some() && !takes_over) || seen.contains(&node.name) {
            return Err(ctx
                .error(
                    code::FAIL_EXISTS_RSC,
                    format!(
                        "Resource '{}' on node '{}' already exists.",
                        rd.name, node.name
                    ),
                )
                .correction("Use 'ferrite resource toggle-disk' to change it, or delete it first.")
                .into());
        }
        let mut diskless = false;
        for flag in &element.resource.flags {
            match CREATE_FLAGS
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(flag))
            {
                Some((_, is_diskless)) => diskless |= is_diskless,
                None => {
                    return Err(ctx.invalid(
                        code::FAIL_INVLD_REQUEST,
                        format!("Unsupported resource flag '{flag}'."),
                        "Ferrite accepts DISKLESS and DRBD_DISKLESS when creating resources.",
                    ));
                }
            }
        }
        if element.drbd_client == Some(true) {
            return Err(ctx.invalid(
                code::FAIL_INVLD_LAYER_STACK,
                "DRBD client resources (diskless members without a quorum vote) are not supported.",
                "Leave out --drbd-client; a diskless resource votes like LINSTOR's diskless members.",
            ));
        }
        properties::check_all(ctx, &element.resource.props)?;
        let mut props = element.resource.props.clone();
        let requested = props.remove(PROP_RESOURCE_STOR_POOL);
        let pool = choose_pool(
            ctx,
            cluster,
            runtime,
            rd,
            node,
            requested.as_deref(),
            diskless,
        )?;
        seen.push(node.name.clone());
        if let Some(tiebreaker) = existing.filter(|_| takes_over) {
            let (op, reply) =
                take_over_tiebreaker(ctx, rd, tiebreaker, (!diskless).then(|| pool.clone()));
            plan.op(op).reply(reply);
            continue;
        }
        if !diskless {
            props.insert(PROP_RESOURCE_STOR_POOL.to_string(), pool.to_string());
        }
        plan.op(Op::PutResource {
            resource: rd.name.clone(),
            placed: new_resource(&node.name, pool, diskless, props),
        })
        .reply(
            ctx.created(format!(
                "Resource '{}' on node '{}' created.",
                rd.name, node.name
            ))
            .obj_ref("RscDfn", rd.name.as_str())
            .obj_ref("Node", node.name.as_str()),
        );
    }
    Ok(plan)
}

/// Refuses to leave `rd` with diskless resources but no diskful one: they would have no data to
/// reach.
fn check_keeps_a_disk(
    ctx: &Context,
    rd: &ResourceDefinition,
    losing: &NodeName,
    action: &str,
) -> Result<(), Failure> {
    let others: Vec<&Resource> = rd
        .resources
        .values()
        .filter(|r| &r.node != losing && !r.is_deleting())
        .collect();
    let diskful_left = others.iter().filter(|r| r.holds_data()).count();
    if diskful_left == 0 && !others.is_empty() {
        return Err(ctx
            .error(
                code::FAIL_INSUFFICIENT_REPLICA_COUNT,
                format!("Cannot {action}: it holds the last disk of '{}'.", rd.name),
            )
            .cause(format!(
                "The remaining resources ({}) are diskless and would have no data to reach.",
                others.iter().map(|r| r.node.to_string()).collect::<Vec<_>>().join(", ")
            ))
            .correction("Add a disk on another node first ('ferrite resource toggle-disk'), or delete the diskless resources.")
            .into());
    }
    Ok(())
}

/// Refuses to remove `resource` while its engine reports it in use (Primary: an NBD client,
/// a mounted or open block device): removing it would pull the device from under its user.
pub fn refuse_if_in_use(
    ctx: &Context,
    rd: &ResourceDefinition,
    resource: &Resource,
    runtime: &Runtime,
    action: &str,
) -> Result<(), Failure> {
    if !runtime
        .get(&resource.node)
        .is_some_and(|r| r.in_use(rd.name.as_str()))
    {
        return Ok(());
    }
    Err(ctx
        .error(
            code::FAIL_IN_USE,
            format!(
                "Cannot {action}: resource '{}' is in use on node '{}'.",
                rd.name, resource.node
            ),
        )
        .cause(format!(
            "Its replication engine reports it Primary on '{}': a file system is mounted on it, \
             a program has its device open, or an NBD client is connected.",
            resource.node
        ))
        .correction(format!(
            "Stop using it on '{}' first (unmount it, stop the VM or the NBD client).",
            resource.node
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("Node", resource.node.as_str())
        .into())
}

/// `DELETE /v1/resource-definitions/{rd}/resources/{node}`: marks the resource for deletion;
/// its node deletes its volumes and confirms, then it is forgotten (`deletions`).
///
/// With `keep_tiebreaker` (LINSTOR's `?keep_tiebreaker=true`, which its Kubernetes driver sends
/// when it detaches a volume), a diskless resource whose definition then needs a tiebreaker
/// stays as that tiebreaker instead of being deleted.
pub fn delete(
    cluster: &Cluster,
    runtime: &Runtime,
    name: &str,
    node: &str,
    keep_tiebreaker: bool,
) -> Result<Plan, Failure> {
    let ctx = &DELETE;
    let rd = resource_definitions::find(ctx, cluster, name)?;
    let resource = find(ctx, cluster, rd, node)?;
    let mut plan = Plan::new();
    let marked = Marked::Resource {
        resource: rd.name.clone(),
        node: resource.node.clone(),
    };
    if resource.is_deleting() {
        plan.deletions.push(marked);
        return Ok(plan);
    }
    let action = format!("delete resource '{}' on '{}'", rd.name, resource.node);
    refuse_if_in_use(ctx, rd, resource, runtime, &action)?;
    if !resource.diskless {
        super::snapshots::refuse_if_snapshots(ctx, cluster, rd, Some(&resource.node), "delete")?;
    }
    if keep_tiebreaker && !resource.holds_data() && resource.phase == ResourcePhase::Active {
        let mut without = rd.clone();
        without.resources.remove(&resource.node);
        let other_tiebreaker = without
            .resources
            .values()
            .any(|r| r.tiebreaker && !r.is_deleting());
        if tiebreaker::wanted(cluster, &without) && !other_tiebreaker {
            let mut kept = resource.clone();
            kept.tiebreaker = true;
            plan.op(Op::PutResource {
                resource: rd.name.clone(),
                placed: kept,
            })
            .reply(
                ctx.info(
                    code::INFO_TIE_BREAKER_TAKEOVER,
                    format!(
                        "Resource '{}' on node '{}' is kept as the tie breaker of its quorum.",
                        rd.name, resource.node
                    ),
                )
                .obj_ref("RscDfn", rd.name.as_str())
                .obj_ref("Node", resource.node.as_str()),
            );
            return Ok(plan);
        }
    }
    if !resource.diskless {
        check_keeps_a_disk(ctx, rd, &resource.node, &action)?;
    }
    deletions::check_keeps_up_to_date_replica(ctx, rd, runtime, &resource.node, &action)?;
    let mut marked_resource = resource.clone();
    marked_resource.phase = ResourcePhase::Deleting;
    plan.op(Op::PutResource {
        resource: rd.name.clone(),
        placed: marked_resource,
    })
    .reply(
        ctx.deleted(format!(
            "Resource '{}' on node '{}' marked for deletion.",
            rd.name, resource.node
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("Node", resource.node.as_str()),
    );
    plan.deletions.push(marked);
    Ok(plan)
}

/// `PUT /v1/resource-definitions/{rd}/resources/{node}/activate` (`active`) and
/// `…/deactivate`: sets or clears LINSTOR's `INACTIVE` flag. The node keeps an inactive
/// resource's volumes but brings them down (no replication member, no device). A resource in
/// use is not deactivated; one already in the asked state answers `INFO_NOOP`.
pub fn set_active(
    cluster: &Cluster,
    runtime: &Runtime,
    name: &str,
    node: &str,
    active: bool,
) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let rd = resource_definitions::find(ctx, cluster, name)?;
    let resource = find(ctx, cluster, rd, node)?;
    let verb = if active { "activate" } else { "deactivate" };
    deletions::refuse_if_resource_busy(ctx, rd, resource, &format!("{verb} it"))?;
    let mut plan = Plan::new();
    if resource.inactive != active {
        plan.reply(
            ctx.info(
                code::INFO_NOOP,
                format!("Resource is already {verb}d. Noop",),
            )
            .obj_ref("RscDfn", rd.name.as_str())
            .obj_ref("Node", resource.node.as_str()),
        );
        return Ok(plan);
    }
    if !active {
        refuse_if_in_use(
            ctx,
            rd,
            resource,
            runtime,
            &format!("deactivate resource '{}' on '{}'", rd.name, resource.node),
        )?;
    }
    let mut updated = resource.clone();
    updated.inactive = !active;
    plan.op(Op::PutResource {
        resource: rd.name.clone(),
        placed: updated,
    })
    .reply(
        ctx.modified(format!(
            "Resource '{}' on node '{}' {verb}d.",
            rd.name, resource.node
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("Node", resource.node.as_str()),
    );
    Ok(plan)
}

/// `PUT /v1/resource-definitions/{rd}/resources/{node}`.
pub fn modify(
    cluster: &Cluster,
    name: &str,
    node: &str,
    body: &rest::ResourceModify,
) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let rd = resource_definitions::find(ctx, cluster, name)?;
    let resource = find(ctx, cluster, rd, node)?;
    deletions::refuse_if_resource_busy(ctx, rd, resource, "modify it")?;
    if body.drbd_client.is_some() {
        return Err(ctx.invalid(
            code::FAIL_INVLD_LAYER_STACK,
            "DRBD client resources (diskless members without a quorum vote) are not supported.",
            "Leave out drbd_client.",
        ));
    }
    if body.drbd_tiebreaker.is_some() && !rd.is_replicated() {
        return Err(ctx.invalid(
            code::FAIL_INVLD_LAYER_STACK,
            format!(
                "Resource '{}' has no replication layer, so no tiebreaker.",
                rd.name
            ),
            "Leave out drbd_tiebreaker.",
        ));
    }
    if body.drbd_tiebreaker == Some(true) && resource.holds_data() {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            format!(
                "Resource '{}' on '{}' cannot be a tiebreaker: it has a disk.",
                rd.name, resource.node
            ),
            "Only a diskless member of a replicated resource can be its tiebreaker.",
        ));
    }
    let edited = properties::edit(
        ctx,
        &resource.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    if edited.props.get(PROP_RESOURCE_STOR_POOL) != resource.props.get(PROP_RESOURCE_STOR_POOL) {
        return Err(ctx.invalid(
            code::FAIL_INVLD_PROP,
            format!(
                "The storage pool of '{}' on '{}' cannot be changed by a property.",
                rd.name, resource.node
            ),
            "Use 'ferrite resource toggle-disk' to move the disk.",
        ));
    }
    let mut updated = resource.clone();
    updated.props = edited.props;
    if let Some(tiebreaker) = body.drbd_tiebreaker {
        updated.tiebreaker = tiebreaker;
    }
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    if engine::effective(cluster, rd) == Some(ferrite_types::LayerKind::Mirror) {
        plan.replies.extend(engine::ignored_options_note(
            ctx,
            body.override_props.keys(),
            &format!("resource '{}' on '{}'", rd.name, resource.node),
        ));
    }
    plan.op(Op::PutResource {
        resource: rd.name.clone(),
        placed: updated,
    })
    .reply(
        ctx.modified(format!(
            "Resource '{}' on node '{}' modified.",
            rd.name, resource.node
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("Node", resource.node.as_str()),
    );
    Ok(plan)
}

/// A toggle-disk request, from the JSON body (API 1.28) or the legacy URL forms.
#[derive(Debug, Clone)]
pub struct Toggle {
    pub operation: ToggleDiskOperation,
    pub storage_pool: Option<String>,
    pub migrate_from: Option<String>,
}

/// `PUT /v1/resource-definitions/{rd}/resources/{node}/toggle-disk[...]`.
pub fn toggle_disk(
    cluster: &Cluster,
    runtime: &Runtime,
    name: &str,
    node: &str,
    toggle: &Toggle,
) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let rd = resource_definitions::find(ctx, cluster, name)?;
    let resource = find(ctx, cluster, rd, node)?;
    let node = nodes::find(ctx, cluster, node)?;
    deletions::refuse_if_deleting(ctx, rd, "toggle a disk")?;
    deletions::refuse_if_resource_busy(ctx, rd, resource, "toggle its disk")?;
    let mut plan = Plan::new();
    match toggle.operation {
        ToggleDiskOperation::IntoDrbdClient => {
            return Err(ctx.invalid(
                code::FAIL_INVLD_LAYER_STACK,
                "Turning a resource into a DRBD client needs the DRBD layer.",
                "Use --diskless instead.",
            ));
        }
        ToggleDiskOperation::IntoDrbdDiskful => {
            if !resource.diskless {
                plan.reply(ctx.warn(
                    code::WARN_RSC_ALREADY_HAS_DISK,
                    format!(
                        "Resource '{}' on '{}' already has a disk.",
                        rd.name, node.name
                    ),
                ));
                return Ok(plan);
            }
            if toggle.migrate_from.is_some() && !rd.is_replicated() {
                return Err(ctx
                    .error(code::FAIL_INVLD_LAYER_STACK, format!("Cannot migrate the disk of '{}': it is not replicated.", rd.name))
                    .cause("Migration copies the data through the replication layer, and the layer stack is STORAGE only; the new disk would start empty.")
                    .correction("Use a resource with a replication layer, or copy the data yourself.")
                    .into());
            }
            let pool = choose_pool(
                ctx,
                cluster,
                runtime,
                rd,
                node,
                toggle.storage_pool.as_deref(),
                false,
            )?;
            let mut updated = resource.clone();
            updated.diskless = false;
            updated.tiebreaker = false;
            updated.storage_pool = pool.clone();
            updated
                .props
                .insert(PROP_RESOURCE_STOR_POOL.to_string(), pool.to_string());
            plan.op(Op::PutResource {
                resource: rd.name.clone(),
                placed: updated,
            })
            .reply(
                ctx.modified(format!(
                    "Added disk on '{}' in storage pool '{pool}'",
                    node.name
                ))
                .obj_ref("RscDfn", rd.name.as_str())
                .obj_ref("Node", node.name.as_str()),
            );
            if !rd.is_replicated() {
                plan.reply(placement::not_replicated_warning(ctx, rd));
            }
            if let Some(from) = &toggle.migrate_from {
                let old = find(ctx, cluster, rd, from)?;
                if !old.holds_data() {
                    return Err(ctx.invalid(
                        code::FAIL_INVLD_REQUEST,
                        format!(
                            "Resource '{}' on '{}' has no disk to migrate.",
                            rd.name, old.node
                        ),
                        "Name a node with a disk in --migrate-from.",
                    ));
                }
                let mut marked = old.clone();
                marked.phase = ResourcePhase::Deleting;
                plan.op(Op::PutResource {
                    resource: rd.name.clone(),
                    placed: marked,
                })
                .reply(
                    DELETE
                        .deleted(format!(
                            "Resource '{}' on node '{}' marked for deletion.",
                            rd.name, old.node
                        ))
                        .obj_ref("RscDfn", rd.name.as_str())
                        .obj_ref("Node", old.node.as_str()),
                );
                plan.deletions.push(Marked::Resource {
                    resource: rd.name.clone(),
                    node: old.node.clone(),
                });
            }
        }
        ToggleDiskOperation::IntoDrbdDiskless => {
            if resource.diskless {
                plan.reply(ctx.warn(
                    code::WARN_RSC_ALREADY_DISKLESS,
                    format!(
                        "Resource '{}' on '{}' is already diskless.",
                        rd.name, node.name
                    ),
                ));
                return Ok(plan);
            }
            let others_diskful = rd
                .resources
                .values()
                .filter(|r| r.node != resource.node && r.holds_data())
                .count();
            if others_diskful == 0 {
                return Err(ctx
                    .error(code::FAIL_INSUFFICIENT_REPLICA_COUNT, format!("Cannot remove the disk of '{}' on '{}': it is the last one.", rd.name, node.name))
                    .cause("A diskless resource reaches its data on other nodes, and no other node has a disk.")
                    .correction("Add a disk on another node first.")
                    .into());
            }
            deletions::check_keeps_up_to_date_replica(
                ctx,
                rd,
                runtime,
                &resource.node,
                &format!("remove the disk of '{}' on '{}'", rd.name, node.name),
            )?;
            super::snapshots::refuse_if_snapshots(
                ctx,
                cluster,
                rd,
                Some(&resource.node),
                "remove the disk of",
            )?;
            let pool = choose_pool(
                ctx,
                cluster,
                runtime,
                rd,
                node,
                toggle.storage_pool.as_deref(),
                true,
            )?;
            let mut updated = resource.clone();
            updated.diskless = true;
            updated.props.remove(PROP_RESOURCE_STOR_POOL);
            if rd.volume_definitions.is_empty() {
                updated.storage_pool = pool;
            } else {
                // The disk is deleted from the pool it is in; once the node confirms, the
                // resource moves to the diskless pool (`deletions::finish`).
                updated.phase = ResourcePhase::DiskRemoving;
                plan.deletions.push(Marked::Disk {
                    resource: rd.name.clone(),
                    node: node.name.clone(),
                });
            }
            plan.op(Op::PutResource {
                resource: rd.name.clone(),
                placed: updated,
            })
            .reply(
                ctx.modified(format!("Removing disk on '{}'", node.name))
                    .obj_ref("RscDfn", rd.name.as_str())
                    .obj_ref("Node", node.name.as_str()),
            );
        }
    }
    Ok(plan)
}

/// `POST /v1/resource-definitions/{rd}/resources/{node}/make-available`.
pub fn make_available(
    cluster: &Cluster,
    runtime: &Runtime,
    name: &str,
    node: &str,
    body: &rest::ResourceMakeAvailable,
) -> Result<Plan, Failure> {
    let ctx = &CREATE;
    let rd = resource_definitions::find(ctx, cluster, name)?;
    let node = nodes::find(ctx, cluster, node)?;
    deletions::refuse_if_deleting(ctx, rd, "make it available")?;
    let diskful = body.diskful.unwrap_or(false);
    if let Some(existing) = rd.resources.get(&node.name) {
        deletions::refuse_if_resource_busy(ctx, rd, existing, "make it available")?;
        if existing.tiebreaker && !diskful {
            let (op, reply) = take_over_tiebreaker(ctx, rd, existing, None);
            let mut plan = Plan::new();
            plan.op(op).reply(reply);
            return Ok(plan);
        }
        if diskful && existing.diskless {
            let toggle = Toggle {
                operation: ToggleDiskOperation::IntoDrbdDiskful,
                storage_pool: None,
                migrate_from: None,
            };
            return toggle_disk(cluster, runtime, name, node.name.as_str(), &toggle);
        }
        let mut plan = Plan::new();
        plan.reply(ctx.info(
            code::INFO_RSC_ALREADY_EXISTS,
            format!(
                "Resource '{}' is already available on '{}'.",
                rd.name, node.name
            ),
        ));
        return Ok(plan);
    }
    let mut plan = Plan::new();
    let stack = requested_stack(ctx, rd, body.layer_list.as_ref())?;
    let mut with_stack = rd.clone();
    if stack != rd.layer_stack {
        with_stack.layer_stack = stack;
        plan.op(Op::PutResourceDefinition(with_stack.clone()));
    }
    let rd = &with_stack;
    let pool = choose_pool(ctx, cluster, runtime, rd, node, None, !diskful)?;
    let mut props = rest::Props::new();
    if diskful {
        props.insert(PROP_RESOURCE_STOR_POOL.to_string(), pool.to_string());
    }
    plan.op(Op::PutResource {
        resource: rd.name.clone(),
        placed: new_resource(&node.name, pool, !diskful, props),
    })
    .reply(
        ctx.created(format!(
            "Resource '{}' made available on node '{}'{}.",
            rd.name,
            node.name,
            if diskful { "" } else { " (diskless)" }
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("Node", node.name.as_str()),
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{add_resource, all_up_to_date, apply, tutorial_cluster};

    fn create_body(node: &str, flags: &[&str], pool: Option<&str>) -> Vec<rest::ResourceCreate> {
        let mut resource = rest::Resource {
            node_name: node.into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        };
        if let Some(pool) = pool {
            resource
                .props
                .insert(PROP_RESOURCE_STOR_POOL.into(), pool.into());
        }
        vec![rest::ResourceCreate {
            resource,
            ..Default::default()
        }]
    }

    #[test]
    fn diskless_create_and_toggle_like_the_tutorial() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res", "node1", "pool_ssd");
        add_resource(&mut cluster, "res", "node2", "pool_ssd");
        let runtime = Runtime::new();
        let plan = create(
            &cluster,
            &runtime,
            "res",
            &create_body("node4", &["DISKLESS"], None),
        )
        .unwrap();
        apply(&mut cluster, plan);
        let rd = cluster
            .resource_definition(&"res".parse().unwrap())
            .unwrap();
        let on4 = &rd.resources[&"node4".parse().unwrap()];
        assert!(on4.diskless);
        assert_eq!(on4.storage_pool, model::default_diskless_pool());

        let into_diskful = Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskful,
            storage_pool: Some("pool_ssd".into()),
            migrate_from: None,
        };
        let plan = toggle_disk(&cluster, &runtime, "res", "node4", &into_diskful).unwrap();
        apply(&mut cluster, plan);
        // Removing a disk needs another UpToDate replica on an online node.
        let runtime = all_up_to_date(&cluster);
        let into_diskless = Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskless,
            storage_pool: None,
            migrate_from: None,
        };
        let plan = toggle_disk(&cluster, &runtime, "res", "node1", &into_diskless).unwrap();
        apply(&mut cluster, plan);
        let rd = cluster
            .resource_definition(&"res".parse().unwrap())
            .unwrap();
        let on1 = &rd.resources[&"node1".parse().unwrap()];
        assert!(on1.diskless);
        assert_eq!(
            on1.phase,
            ResourcePhase::DiskRemoving,
            "until node1 confirms"
        );
        assert!(!rd.resources[&"node4".parse().unwrap()].diskless);
        // node1 holds no data any more: deleting it needs nothing of the others.
        let plan = delete(&cluster, &runtime, "res", "node1", false).unwrap();
        assert_eq!(plan.deletions.len(), 1);
        let plan = delete(&cluster, &runtime, "res", "node2", false).unwrap();
        assert_eq!(plan.deletions.len(), 1);
        apply(&mut cluster, plan);
        let rd = cluster
            .resource_definition(&"res".parse().unwrap())
            .unwrap();
        assert_eq!(rd.resources.len(), 3, "marked, not forgotten");
        assert!(rd.resources[&"node2".parse().unwrap()].is_deleting());
    }

    #[test]
    fn what_a_primary_uses_cannot_be_deleted_but_the_rest_changes_around_it() {
        use crate::app::testing::{commit, engines_runtime, replicated_group, spawn};
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        cluster.props.insert(
            crate::app::tiebreaker::PROP_AUTO_TIEBREAKER.into(),
            "false".into(),
        );
        let runtime = engines_runtime(&cluster, &[ferrite_types::LayerKind::Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let rd =
            &cluster.resource_definitions[&"web".parse::<ferrite_types::ResourceName>().unwrap()];
        let mut placed: Vec<String> = rd.resources.keys().map(|n| n.to_string()).collect();
        placed.sort();
        let (primary, secondary) = (placed[0].clone(), placed[1].clone());
        let others: Vec<String> = ["node1", "node2", "node3", "node4"]
            .iter()
            .map(|n| n.to_string())
            .filter(|n| !placed.contains(n))
            .collect();
        // Every member UpToDate; the engine on `primary` reports it Primary and in use.
        let reports = |cluster: &Cluster, in_use: bool| {
            let mut runtime = engines_runtime(cluster, &[ferrite_types::LayerKind::Mirror]);
            let node: NodeName = primary.parse().unwrap();
            let report = runtime
                .get_mut(&node)
                .unwrap()
                .replication
                .get_mut("WEB")
                .unwrap();
            report.in_use = in_use;
            report.role = ferrite_proto::Role::Primary;
            runtime
        };
        let runtime = reports(&cluster, true);
        let err = delete(&cluster, &runtime, "web", &primary, false).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_IN_USE);
        assert!(
            err.0[0]
                .message
                .contains(&format!("in use on node '{primary}'"))
        );
        assert!(err.0[0].cause.as_deref().unwrap().contains("Primary"));
        let err = crate::app::resource_definitions::delete(&cluster, &runtime, "web").unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_IN_USE);

        // Diskless access, a new disk, a disk removed and a replica deleted elsewhere all go.
        commit(&mut cluster, &runtime, |c, r| {
            create(c, r, "web", &create_body(&others[0], &["DISKLESS"], None))
        });
        let runtime = reports(&cluster, true);
        commit(&mut cluster, &runtime, |c, r| {
            make_available(
                c,
                r,
                "web",
                &others[1],
                &rest::ResourceMakeAvailable::default(),
            )
        });
        let into_diskful = Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskful,
            storage_pool: Some("pool_ssd".into()),
            migrate_from: None,
        };
        let runtime = reports(&cluster, true);
        commit(&mut cluster, &runtime, |c, r| {
            toggle_disk(c, r, "web", &others[0], &into_diskful)
        });
        let into_diskless = Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskless,
            storage_pool: None,
            migrate_from: None,
        };
        let runtime = reports(&cluster, true);
        commit(&mut cluster, &runtime, |c, r| {
            toggle_disk(c, r, "web", &secondary, &into_diskless)
        });
        let runtime = reports(&cluster, true);
        commit(&mut cluster, &runtime, |c, r| {
            delete(c, r, "web", &others[1], false)
        });
        // Once the Primary is done, its replica can go.
        delete(&cluster, &reports(&cluster, false), "web", &primary, false).unwrap();
    }

    #[test]
    fn the_last_disk_is_protected() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res", "node1", "pool_ssd");
        add_resource(&mut cluster, "res", "node2", "DfltDisklessStorPool");
        let runtime = Runtime::new();
        let err = delete(&cluster, &runtime, "res", "node1", false).unwrap_err();
        assert_eq!(
            err.0[0].ret_code().code(),
            code::FAIL_INSUFFICIENT_REPLICA_COUNT
        );
        let into_diskless = Toggle {
            operation: ToggleDiskOperation::IntoDrbdDiskless,
            storage_pool: None,
            migrate_from: None,
        };
        let err = toggle_disk(&cluster, &runtime, "res", "node1", &into_diskless).unwrap_err();
        assert_eq!(
            err.0[0].ret_code().code(),
            code::FAIL_INSUFFICIENT_REPLICA_COUNT
        );
    }

    #[test]
    fn create_refuses_duplicates_unknown_flags_and_wrong_pools() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res", "node1", "pool_ssd");
        let runtime = Runtime::new();
        let code_of = |r: Result<Plan, Failure>| r.unwrap_err().0[0].ret_code().code();
        assert_eq!(
            code_of(create(
                &cluster,
                &runtime,
                "res",
                &create_body("node1", &[], None)
            )),
            code::FAIL_EXISTS_RSC
        );
        assert_eq!(
            code_of(create(
                &cluster,
                &runtime,
                "res",
                &create_body("node2", &["NVME_INITIATOR"], None)
            )),
            code::FAIL_INVLD_REQUEST
        );
        assert_eq!(
            code_of(create(
                &cluster,
                &runtime,
                "res",
                &create_body("node2", &[], Some("nope_pool"))
            )),
            code::FAIL_NOT_FOUND_STOR_POOL
        );
        assert_eq!(
            code_of(create(
                &cluster,
                &runtime,
                "res",
                &create_body("node2", &[], Some("DfltDisklessStorPool"))
            )),
            code::FAIL_INVLD_STOR_POOL_NAME
        );
        assert_eq!(
            code_of(create(
                &cluster,
                &runtime,
                "res",
                &create_body("node9", &[], None)
            )),
            code::FAIL_NOT_FOUND_NODE
        );
        assert_eq!(
            code_of(create(
                &cluster,
                &runtime,
                "nores",
                &create_body("node2", &[], None)
            )),
            code::FAIL_NOT_FOUND_RSC_DFN
        );
        // Two elements for one node: all or nothing.
        let mut twice = create_body("node2", &[], None);
        twice.extend(create_body("node2", &[], None));
        assert_eq!(
            code_of(create(&cluster, &runtime, "res", &twice)),
            code::FAIL_EXISTS_RSC
        );
    }
}
