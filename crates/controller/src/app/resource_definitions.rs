//! Resource definitions and their volume definitions; autoplacing a definition. Deleting either
//! marks it (see `deletions`). A definition created without a layer list, in a group without
//! one, stores an empty stack until its first placement chooses LINSTOR's default (`engine`).

use ferrite_types::api_call_rc::code;
use ferrite_types::rest;
use ferrite_types::size::check_size_kib;
use ferrite_types::{DEFAULT_RESOURCE_GROUP, ResourceGroupName, ResourceName, VolumeNumber};

use super::deletions::{self, Marked};
use super::placement::{self, Runtime};
use super::{
    Context, Failure, Object, Operation, Plan, engine, not_found, parse_name, properties,
    resource_groups,
};
use crate::model::{self, Cluster, Op, ResourceDefinition, ResourcePhase, VolumeDefinition};

const CREATE: Context = Context::new(Operation::Create, Object::ResourceDefinition);
const MODIFY: Context = Context::new(Operation::Modify, Object::ResourceDefinition);
const DELETE: Context = Context::new(Operation::Delete, Object::ResourceDefinition);
const VD_CREATE: Context = Context::new(Operation::Create, Object::VolumeDefinition);
const VD_MODIFY: Context = Context::new(Operation::Modify, Object::VolumeDefinition);
const VD_DELETE: Context = Context::new(Operation::Delete, Object::VolumeDefinition);

/// Volume definition flags Ferrite accepts from clients.
const VOLUME_DEFINITION_FLAGS: &[&str] = ferrite_types::kinds::VOLUME_FLAGS;

/// Finds a resource definition or refuses.
pub fn find<'a>(
    ctx: &Context,
    cluster: &'a Cluster,
    name: &str,
) -> Result<&'a ResourceDefinition, Failure> {
    let parsed: ResourceName = parse_name(ctx, code::FAIL_INVLD_RSC_NAME, name)?;
    cluster.resource_definition(&parsed).ok_or_else(|| {
        not_found(
            ctx,
            code::FAIL_NOT_FOUND_RSC_DFN,
            "Resource definition",
            name,
            "Check the name with 'ferrite resource-definition list'.",
        )
    })
}

/// Finds a volume definition or refuses.
pub fn find_volume<'a>(
    ctx: &Context,
    rd: &'a ResourceDefinition,
    number: i64,
) -> Result<&'a VolumeDefinition, Failure> {
    let number =
        VolumeNumber::new(number).map_err(|e| ctx.invalid_name(code::FAIL_INVLD_VLM_NR, &e))?;
    rd.volume_definitions.get(&number).ok_or_else(|| {
        not_found(
            ctx,
            code::FAIL_NOT_FOUND_VLM_DFN,
            "Volume definition",
            format!("{number}' of resource definition '{}", rd.name),
            format!(
                "List them with 'ferrite volume-definition list -r {}'.",
                rd.name
            ),
        )
    })
}

fn check_flags(ctx: &Context, flags: &[String]) -> Result<Vec<String>, Failure> {
    flags
        .iter()
        .map(|flag| {
            VOLUME_DEFINITION_FLAGS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(flag))
                .map(|k| k.to_string())
                .ok_or_else(|| {
                    ctx.invalid(
                        code::FAIL_INVLD_REQUEST,
                        format!("Unknown volume definition flag '{flag}'."),
                        format!("Known flags: {}.", VOLUME_DEFINITION_FLAGS.join(", ")),
                    )
                })
        })
        .collect()
}

fn size(ctx: &Context, size_kib: i64) -> Result<u64, Failure> {
    check_size_kib(size_kib).map_err(|e| {
        Failure::from(
            ctx.error(
                code::FAIL_INVLD_VLM_SIZE,
                format!("Invalid volume size {size_kib} KiB."),
            )
            .cause(e.to_string())
            .correction(e.correction()),
        )
    })
}

/// `POST /v1/resource-definitions`.
pub fn create(cluster: &Cluster, body: &rest::ResourceDefinitionCreate) -> Result<Plan, Failure> {
    let ctx = &CREATE;
    let spec = &body.resource_definition;
    let name = ResourceName::new_checked(&spec.name)
        .map_err(|e| ctx.invalid_name(code::FAIL_INVLD_RSC_NAME, &e))?;
    if let Some(existing) = cluster.resource_definition(&name) {
        if existing.is_deleting() {
            return Err(ctx
                .error(
                    code::FAIL_EXISTS_RSC_DFN,
                    format!(
                        "Resource definition '{}' is still being deleted.",
                        existing.name
                    ),
                )
                .cause(format!(
                    "Its resources on {} have not confirmed their deletion yet; a new definition of \
                     the same name must not meet the old volumes.",
                    existing
                        .resources
                        .keys()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .correction(
                    "Wait until the nodes confirm, or choose another name. A node that is \
                     offline for good can be removed with 'ferrite node lost'.",
                )
                .into());
        }
        return Err(ctx
            .error(
                code::FAIL_EXISTS_RSC_DFN,
                format!("Resource definition '{}' already exists.", existing.name),
            )
            .correction("Choose another name, or delete the existing definition first.")
            .into());
    }
    let group_name = spec
        .resource_group_name
        .clone()
        .unwrap_or_else(|| DEFAULT_RESOURCE_GROUP.to_string());
    let group = resource_groups::find(ctx, cluster, &group_name)?;
    properties::check_all(ctx, &spec.props)?;
    let layer_stack = if spec.layer_data.is_empty() {
        placement::group_stack(ctx, &group.select_filter)?
    } else {
        placement::normalize_layers(ctx, spec.layer_data.iter().map(|l| l.layer_type).collect())?
    };
    let rd = ResourceDefinition {
        name: name.clone(),
        uuid: model::new_uuid(),
        external_name: spec.external_name.clone(),
        props: spec.props.clone(),
        flags: Vec::new(),
        resource_group: group.name.clone(),
        layer_stack,
        secret: None,
        rollback: None,
        volume_definitions: Default::default(),
        resources: Default::default(),
    };
    let mut plan = Plan::new();
    plan.op(Op::PutResourceDefinition(rd)).reply(
        ctx.created(format!("Resource definition '{name}' created."))
            .obj_ref("RscDfn", name.as_str()),
    );
    Ok(plan)
}

/// `PUT /v1/resource-definitions/{rd}`.
pub fn modify(
    cluster: &Cluster,
    name: &str,
    body: &rest::ResourceDefinitionModify,
) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let current = find(ctx, cluster, name)?;
    deletions::refuse_if_deleting(ctx, current, "modify it")?;
    let edited = properties::edit(
        ctx,
        &current.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    let mut updated = current.clone();
    updated.props = edited.props;
    if let Some(group) = &body.resource_group {
        let group: ResourceGroupName = resource_groups::find(ctx, cluster, group)?.name.clone();
        updated.resource_group = group;
    }
    // An empty list changes nothing, as in LINSTOR.
    if let Some(layers) = body.layer_stack.as_ref().filter(|l| !l.is_empty()) {
        let layers = placement::normalize_layers(ctx, layers.clone())?;
        if !engine::stacks_match(&layers, &current.layer_stack) {
            if !current.resources.is_empty() {
                return Err(ctx
                    .error(
                        code::FAIL_IN_USE,
                        format!(
                            "The layer stack of '{}' cannot change while it has resources.",
                            current.name
                        ),
                    )
                    .correction("Delete its resources first.")
                    .into());
            }
            updated.layer_stack = layers;
        }
    }
    // The engine of a placed definition is fixed: a setting that asks for another is refused.
    if let Some(engine) = current
        .replication_layer()
        .filter(|_| !current.resources.is_empty())
    {
        let asked = match engine::setting(cluster, &updated) {
            engine::Setting::Auto => None,
            engine::Setting::Drbd => Some(ferrite_types::LayerKind::Drbd),
            engine::Setting::Mirror => Some(ferrite_types::LayerKind::Mirror),
        };
        if let Some(asked) = asked.filter(|a| *a != engine) {
            return Err(ctx
                .error(
                    code::FAIL_IN_USE,
                    format!(
                        "Resource definition '{}' is replicated by {engine}; its engine cannot become {asked} while it has resources.",
                        current.name
                    ),
                )
                .cause(format!("{} takes effect at a definition's first placement.", engine::PROP_REPLICATION_ENGINE))
                .correction("Delete its resources first, or leave the property out (auto).")
                .into());
        }
    }
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    if engine::effective(cluster, &updated) == Some(ferrite_types::LayerKind::Mirror) {
        plan.replies.extend(engine::ignored_options_note(
            ctx,
            body.override_props.keys(),
            &format!("resource definition '{}'", current.name),
        ));
    }
    plan.op(Op::PutResourceDefinition(updated)).reply(
        ctx.modified(format!("Resource definition '{}' modified.", current.name))
            .obj_ref("RscDfn", current.name.as_str()),
    );
    Ok(plan)
}

/// `DELETE /v1/resource-definitions/{rd}`: marks the definition and all its resources for
/// deletion; once every node confirmed, it is gone (`deletions`).
pub fn delete(cluster: &Cluster, runtime: &Runtime, name: &str) -> Result<Plan, Failure> {
    let ctx = &DELETE;
    let current = match find(ctx, cluster, name) {
        Err(failure) if super::is_not_found(&failure, code::FAIL_NOT_FOUND_RSC_DFN) => {
            return Ok(super::nothing_to_delete(
                ctx,
                format!("Resource definition '{name}' not found."),
                format!("Resource definition '{name}' does not exist; nothing was deleted."),
            ));
        }
        found => found?,
    };
    let mut plan = Plan::new();
    let marked = Marked::ResourceDefinition {
        resource: current.name.clone(),
    };
    if current.is_deleting() {
        plan.deletions.push(marked);
        return Ok(plan);
    }
    super::snapshots::refuse_if_snapshots(ctx, cluster, current, None, "delete")?;
    for resource in current.resources.values().filter(|r| !r.is_deleting()) {
        super::resources::refuse_if_in_use(
            ctx,
            current,
            resource,
            runtime,
            &format!("delete resource definition '{}'", current.name),
        )?;
    }
    if current.resources.is_empty() {
        plan.op(Op::DeleteResourceDefinition(current.name.clone()))
            .reply(
                ctx.deleted(format!("Resource definition '{}' deleted.", current.name))
                    .obj_ref("RscDfn", current.name.as_str()),
            );
        return Ok(plan);
    }
    let rsc_ctx = Context::new(Operation::Delete, Object::Resource);
    for resource in current.resources.values().filter(|r| !r.is_deleting()) {
        let mut marked_resource = resource.clone();
        marked_resource.phase = ResourcePhase::Deleting;
        plan.op(Op::PutResource {
            resource: current.name.clone(),
            placed: marked_resource,
        })
        .reply(
            rsc_ctx
                .deleted(format!(
                    "Resource '{}' on node '{}' marked for deletion.",
                    current.name, resource.node
                ))
                .obj_ref("RscDfn", current.name.as_str())
                .obj_ref("Node", resource.node.as_str()),
        );
    }
    let mut updated = current.clone();
    updated.flags.push(model::FLAG_DELETE.to_string());
    plan.op(Op::PutResourceDefinition(updated)).reply(
        ctx.deleted(format!(
            "Resource definition '{}' marked for deletion.",
            current.name
        ))
        .obj_ref("RscDfn", current.name.as_str()),
    );
    plan.deletions.push(marked);
    Ok(plan)
}

/// Whether every diskful resource's pool has room for `extra_kib` more.
fn check_room(
    ctx: &Context,
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    extra_kib: u64,
) -> Result<(), Failure> {
    for resource in rd.resources.values().filter(|r| !r.diskless) {
        let pool = cluster
            .node(&resource.node)
            .and_then(|n| n.storage_pools.get(&resource.storage_pool));
        let Some(pool) = pool else { continue };
        if pool.provider_kind.is_thin() {
            continue;
        }
        let free = super::capacity::free_kib(cluster, runtime, &resource.node, pool);
        if let Some(free) = free
            && free < extra_kib
        {
            return Err(ctx
                .error(
                    code::FAIL_NOT_ENOUGH_FREE_SPACE,
                    format!(
                        "Storage pool '{}' on node '{}' has too little free space.",
                        pool.name, resource.node
                    ),
                )
                .cause(format!(
                    "{} are free, {} are needed.",
                    ferrite_types::size::format_kib(free),
                    ferrite_types::size::format_kib(extra_kib)
                ))
                .correction("Free space in that pool or move the resource.")
                .into());
        }
    }
    Ok(())
}

/// `POST /v1/resource-definitions/{rd}/volume-definitions`.
pub fn create_volume(
    cluster: &Cluster,
    runtime: &Runtime,
    name: &str,
    body: &rest::VolumeDefinitionCreate,
) -> Result<Plan, Failure> {
    let ctx = &VD_CREATE;
    let rd = find(ctx, cluster, name)?;
    deletions::refuse_if_deleting(ctx, rd, "add a volume definition")?;
    let spec = &body.volume_definition;
    let number = match spec.volume_number {
        Some(n) => VolumeNumber::new(i64::from(n))
            .map_err(|e| ctx.invalid_name(code::FAIL_INVLD_VLM_NR, &e))?,
        None => {
            resource_groups::next_free(rd.volume_definitions.keys().copied()).ok_or_else(|| {
                Failure::from(ctx.error(
                    code::FAIL_POOL_EXHAUSTED_VLM_NR,
                    "No free volume number left.",
                ))
            })?
        }
    };
    if rd.volume_definitions.contains_key(&number) {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_VLM_DFN,
                format!(
                    "Volume definition {number} of '{}' already exists.",
                    rd.name
                ),
            )
            .correction("Choose another volume number, or leave it out to take the next free one.")
            .into());
    }
    let size_kib = size(ctx, spec.size_kib)?;
    properties::check_all(ctx, &spec.props)?;
    let flags = check_flags(ctx, &spec.flags)?;
    check_room(ctx, cluster, runtime, rd, size_kib)?;
    let vd = VolumeDefinition {
        number,
        uuid: model::new_uuid(),
        size_kib,
        props: spec.props.clone(),
        flags,
        // Checked for range at the edge and for uniqueness by `allocation`.
        minor: body.drbd_minor_number.and_then(|m| u32::try_from(m).ok()),
    };
    let mut plan = Plan::new();
    plan.op(Op::PutVolumeDefinition {
        resource: rd.name.clone(),
        volume_definition: vd,
    })
    .reply(
        ctx.created(format!(
            "Volume definition with number '{number}' created in resource definition '{}'.",
            rd.name
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("VlmNr", number.to_string()),
    );
    Ok(plan)
}

/// `PUT /v1/resource-definitions/{rd}/volume-definitions/{nr}`: properties and growing.
pub fn modify_volume(
    cluster: &Cluster,
    runtime: &Runtime,
    name: &str,
    number: i64,
    body: &rest::VolumeDefinitionModify,
) -> Result<Plan, Failure> {
    let ctx = &VD_MODIFY;
    let rd = find(ctx, cluster, name)?;
    deletions::refuse_if_deleting(ctx, rd, "modify a volume definition")?;
    let current = find_volume(ctx, rd, number)?;
    if current.is_deleting() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Cannot modify volume definition {} of '{}': it is being deleted.",
                    current.number, rd.name
                ),
            )
            .correction("Wait until its nodes confirm the deletion.")
            .into());
    }
    let edited = properties::edit(
        ctx,
        &current.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    let mut updated = current.clone();
    updated.props = edited.props;
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    if let Some(flags) = &body.flags {
        updated.flags = check_flags(ctx, flags)?;
    }
    if let Some(new_size) = body.size_kib {
        let new_size = size(ctx, new_size)?;
        if new_size < current.size_kib {
            return Err(ctx
                .error(code::FAIL_INVLD_VLM_SIZE, format!("Volume {} of '{}' cannot shrink.", current.number, rd.name))
                .cause(format!(
                    "It is {} and {} was asked for; shrinking a volume under a file system destroys data.",
                    ferrite_types::size::format_kib(current.size_kib),
                    ferrite_types::size::format_kib(new_size)
                ))
                .correction("Give a size at least as large as the current one.")
                .into());
        }
        if new_size == current.size_kib {
            plan.reply(ctx.warn(
                code::WARN_VLMDFN_RESIZE_SAME_SIZE,
                format!(
                    "Volume {} of '{}' already has that size.",
                    current.number, rd.name
                ),
            ));
        } else {
            check_room(ctx, cluster, runtime, rd, new_size - current.size_kib)?;
            updated.size_kib = new_size;
        }
    }
    plan.op(Op::PutVolumeDefinition {
        resource: rd.name.clone(),
        volume_definition: updated,
    })
    .reply(
        ctx.modified(format!(
            "Volume definition {} of '{}' modified.",
            current.number, rd.name
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("VlmNr", current.number.to_string()),
    );
    Ok(plan)
}

/// `DELETE /v1/resource-definitions/{rd}/volume-definitions/{nr}`: marks the volume for
/// deletion on every node; once they confirm, the definition goes (`deletions`).
pub fn delete_volume(cluster: &Cluster, name: &str, number: i64) -> Result<Plan, Failure> {
    let ctx = &VD_DELETE;
    let rd = find(ctx, cluster, name)?;
    let current = match find_volume(ctx, rd, number) {
        Err(failure) if super::is_not_found(&failure, code::FAIL_NOT_FOUND_VLM_DFN) => {
            return Ok(super::nothing_to_delete(
                ctx,
                format!(
                    "Volume definition {number} of resource definition '{}' not found.",
                    rd.name
                ),
                format!(
                    "Resource definition '{}' has no volume {number}; nothing was deleted.",
                    rd.name
                ),
            ));
        }
        found => found?,
    };
    let mut plan = Plan::new();
    let marked = Marked::VolumeDefinition {
        resource: rd.name.clone(),
        number: current.number,
    };
    if current.is_deleting() {
        plan.deletions.push(marked);
        return Ok(plan);
    }
    super::snapshots::refuse_if_volume_has_snapshots(ctx, cluster, rd, current)?;
    if rd.resources.is_empty() {
        plan.op(Op::DeleteVolumeDefinition {
            resource: rd.name.clone(),
            number: current.number,
        })
        .reply(
            ctx.deleted(format!(
                "Volume definition {} of '{}' deleted.",
                current.number, rd.name
            ))
            .obj_ref("RscDfn", rd.name.as_str())
            .obj_ref("VlmNr", current.number.to_string()),
        );
        return Ok(plan);
    }
    let mut updated = current.clone();
    updated.flags.push(model::FLAG_DELETE.to_string());
    plan.op(Op::PutVolumeDefinition {
        resource: rd.name.clone(),
        volume_definition: updated,
    })
    .reply(
        ctx.deleted(format!(
            "Volume definition {} of '{}' marked for deletion.",
            current.number, rd.name
        ))
        .obj_ref("RscDfn", rd.name.as_str())
        .obj_ref("VlmNr", current.number.to_string()),
    );
    plan.deletions.push(marked);
    Ok(plan)
}

/// `POST /v1/resource-definitions/{rd}/autoplace`.
pub fn autoplace(
    cluster: &Cluster,
    runtime: &Runtime,
    name: &str,
    body: &rest::AutoPlaceRequest,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Create, Object::Resource);
    let rd = find(ctx, cluster, name)?;
    deletions::refuse_if_deleting(ctx, rd, "place it")?;
    let group = cluster.resource_groups.get(&rd.resource_group);
    let mut overrides = body.select_filter.clone();
    if body.diskless_on_remaining.is_some() {
        overrides.diskless_on_remaining = body.diskless_on_remaining;
    }
    let base = group.map(|g| g.select_filter.clone()).unwrap_or_default();
    let filter = placement::validate_filter(ctx, cluster, &base.overridden_by(&overrides))?;
    let mut rd_for_placement = rd.clone();
    if let Some(layers) = body.layer_list.as_ref().filter(|l| !l.is_empty()) {
        let layers = placement::normalize_layers(ctx, layers.clone())?;
        if !engine::stacks_match(&layers, &rd.layer_stack) {
            if !rd.resources.is_empty() {
                return Err(ctx
                    .error(
                        code::FAIL_INVLD_LAYER_STACK,
                        format!(
                            "'{}' already has resources with the layer stack {}.",
                            rd.name,
                            stack(&rd.layer_stack)
                        ),
                    )
                    .correction("Leave out the layer list, or delete the existing resources first.")
                    .into());
            }
            rd_for_placement.layer_stack = layers;
        }
    }
    let mut plan = Plan::new();
    if rd_for_placement.layer_stack != rd.layer_stack {
        let mut updated = rd.clone();
        updated.layer_stack = rd_for_placement.layer_stack.clone();
        plan.op(Op::PutResourceDefinition(updated));
    }
    let (ops, replies) = placement::autoplace(ctx, cluster, runtime, &rd_for_placement, &filter)?;
    plan.ops.extend(ops);
    plan.replies.extend(replies);
    Ok(plan)
}

/// A layer stack as `DRBD,STORAGE`.
pub fn stack(layers: &[ferrite_types::LayerKind]) -> String {
    layers
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{add_resource, apply, tutorial_cluster};

    #[test]
    fn create_uses_the_default_group_and_leaves_the_layers_to_the_first_placement() {
        let mut cluster = tutorial_cluster();
        let body: rest::ResourceDefinitionCreate =
            serde_json::from_str(r#"{"resource_definition": {"name": "R2"}}"#).unwrap();
        let plan = create(&cluster, &body).unwrap();
        apply(&mut cluster, plan);
        let rd = cluster.resource_definition(&"r2".parse().unwrap()).unwrap();
        assert_eq!(rd.resource_group.as_str(), DEFAULT_RESOURCE_GROUP);
        assert!(rd.default_stack_pending(), "{:?}", rd.layer_stack);
        assert_eq!(
            create(&cluster, &body).unwrap_err().0[0].ret_code().code(),
            code::FAIL_EXISTS_RSC_DFN
        );
    }

    #[test]
    fn volumes_grow_but_never_shrink() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res1", "node1", "pool_ssd");
        let grow = rest::VolumeDefinitionModify {
            size_kib: Some(2 << 20),
            ..Default::default()
        };
        let plan = modify_volume(&cluster, &Runtime::new(), "res1", 0, &grow).unwrap();
        apply(&mut cluster, plan);
        assert_eq!(
            cluster
                .resource_definition(&"res1".parse().unwrap())
                .unwrap()
                .total_size_kib(),
            2 << 20
        );
        let shrink = rest::VolumeDefinitionModify {
            size_kib: Some(1 << 20),
            ..Default::default()
        };
        let err = modify_volume(&cluster, &Runtime::new(), "res1", 0, &shrink).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_INVLD_VLM_SIZE);
        let negative = rest::VolumeDefinitionModify {
            size_kib: Some(-1),
            ..Default::default()
        };
        assert!(modify_volume(&cluster, &Runtime::new(), "res1", 0, &negative).is_err());
    }

    #[test]
    fn delete_marks_the_resources_and_goes_when_they_are_gone() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res1", "node1", "pool_ssd");
        add_resource(&mut cluster, "res1", "node2", "pool_ssd");
        let plan = delete(&cluster, &Runtime::new(), "res1").unwrap();
        assert_eq!(plan.ops.len(), 3, "two resources and the definition marked");
        apply(&mut cluster, plan);
        let rd = &cluster.resource_definitions[&"res1".parse().unwrap()];
        assert!(rd.is_deleting());
        assert!(rd.resources.values().all(|r| r.is_deleting()));
        // Creating it again meanwhile is refused, with the reason.
        let again = rest::ResourceDefinitionCreate {
            resource_definition: rest::ResourceDefinition {
                name: "RES1".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = create(&cluster, &again).unwrap_err();
        assert!(err.0[0].message.contains("still being deleted"), "{err:?}");
        // Both nodes confirm: the resources and then the definition go.
        let mut runtime = Runtime::new();
        for (node, resource) in &rd.resources {
            let mut reported = crate::reported::NodeRuntime::default();
            reported.absorb(ferrite_proto::NodeReport {
                deleted_resources: vec![ferrite_proto::DeletedResource {
                    resource: "res1".into(),
                    uuid: resource.uuid.clone(),
                }],
                ..Default::default()
            });
            runtime.insert(node.clone(), reported);
        }
        let plan = crate::app::deletions::finish(&cluster, &runtime);
        apply(&mut cluster, plan);
        assert!(cluster.resource_definitions.is_empty());
    }
}
