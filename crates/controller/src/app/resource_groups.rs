//! Resource groups, their volume groups, and spawning resource definitions from them. A spawned
//! definition takes the group's layer list; without one, its stack is chosen when it is placed
//! (`engine`).

use ferrite_types::api_call_rc::code;
use ferrite_types::rest;
use ferrite_types::size::check_size_kib;
use ferrite_types::{
    DEFAULT_RESOURCE_GROUP, LayerKind, ResourceGroupName, ResourceName, VolumeNumber,
};

use super::placement::{self, Runtime};
use super::{Context, Failure, Object, Operation, Plan, not_found, parse_name, properties};
use crate::model::{
    self, Cluster, Op, ResourceDefinition, ResourceGroup, VolumeDefinition, VolumeGroup,
};

const CREATE: Context = Context::new(Operation::Create, Object::ResourceGroup);
const MODIFY: Context = Context::new(Operation::Modify, Object::ResourceGroup);
const DELETE: Context = Context::new(Operation::Delete, Object::ResourceGroup);
const VG_CREATE: Context = Context::new(Operation::Create, Object::VolumeGroup);
const VG_MODIFY: Context = Context::new(Operation::Modify, Object::VolumeGroup);
const VG_DELETE: Context = Context::new(Operation::Delete, Object::VolumeGroup);

/// Volume group flags Ferrite knows.
const VOLUME_GROUP_FLAGS: &[&str] = ferrite_types::kinds::VOLUME_FLAGS;

/// Finds a resource group or refuses.
pub fn find<'a>(
    ctx: &Context,
    cluster: &'a Cluster,
    name: &str,
) -> Result<&'a ResourceGroup, Failure> {
    let parsed: ResourceGroupName = parse_name(ctx, code::FAIL_INVLD_RSC_GRP_NAME, name)?;
    cluster.resource_groups.get(&parsed).ok_or_else(|| {
        not_found(
            ctx,
            code::FAIL_NOT_FOUND_RSC_GRP,
            "Resource group",
            name,
            "Check the name with 'ferrite resource-group list'.",
        )
    })
}

fn find_volume_group<'a>(
    ctx: &Context,
    group: &'a ResourceGroup,
    number: i64,
) -> Result<&'a VolumeGroup, Failure> {
    let number =
        VolumeNumber::new(number).map_err(|e| ctx.invalid_name(code::FAIL_INVLD_VLM_NR, &e))?;
    group.volume_groups.get(&number).ok_or_else(|| {
        not_found(
            ctx,
            code::FAIL_NOT_FOUND_VLM_GRP,
            "Volume group",
            format!("{number}' of resource group '{}", group.name),
            format!("List them with 'ferrite volume-group list {}'.", group.name),
        )
    })
}

fn check_flags(ctx: &Context, flags: &[String]) -> Result<Vec<String>, Failure> {
    flags
        .iter()
        .map(|flag| {
            VOLUME_GROUP_FLAGS
                .iter()
                .find(|known| known.eq_ignore_ascii_case(flag))
                .map(|known| known.to_string())
                .ok_or_else(|| {
                    ctx.invalid(
                        code::FAIL_INVLD_REQUEST,
                        format!("Unknown volume group flag '{flag}'."),
                        format!("Known flags: {}.", VOLUME_GROUP_FLAGS.join(", ")),
                    )
                })
        })
        .collect()
}

fn check_description(ctx: &Context, description: &Option<String>) -> Result<(), Failure> {
    if let Some(text) = description
        && (text.chars().count() > ferrite_types::limits::MAX_DESCRIPTION_LEN
            || text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'))
    {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            "Invalid description.",
            "Give printable text of at most 4096 characters.",
        ));
    }
    Ok(())
}

/// `POST /v1/resource-groups`.
pub fn create(cluster: &Cluster, body: &rest::ResourceGroup) -> Result<Plan, Failure> {
    let ctx = &CREATE;
    let name: ResourceGroupName = parse_name(ctx, code::FAIL_INVLD_RSC_GRP_NAME, &body.name)?;
    if let Some(existing) = cluster.resource_groups.get(&name) {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_RSC_GRP,
                format!("Resource group '{}' already exists.", existing.name),
            )
            .correction("Choose another name, or modify the existing group.")
            .into());
    }
    check_description(ctx, &body.description)?;
    properties::check_all(ctx, &body.props)?;
    let (select_filter, unknown_pools) =
        placement::validate_group_filter(ctx, cluster, &body.select_filter)?;
    let group = ResourceGroup {
        name: name.clone(),
        uuid: model::new_uuid(),
        description: body.description.clone(),
        props: body.props.clone(),
        select_filter,
        peer_slots: body.peer_slots,
        volume_groups: Default::default(),
    };
    let mut plan = Plan::new();
    plan.replies.extend(unknown_pools);
    plan.op(Op::PutResourceGroup(group)).reply(
        ctx.created(format!("New resource group '{name}' created."))
            .obj_ref("RscGrp", name.as_str()),
    );
    Ok(plan)
}

/// `PUT /v1/resource-groups/{rg}`.
pub fn modify(
    cluster: &Cluster,
    runtime: &Runtime,
    group: &str,
    body: &rest::ResourceGroupModify,
) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let current = find(ctx, cluster, group)?;
    check_description(ctx, &body.description)?;
    let edited = properties::edit(
        ctx,
        &current.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    let mut updated = current.clone();
    updated.props = edited.props;
    if let Some(description) = &body.description {
        updated.description = Some(description.clone());
    }
    let mut unknown_pools = None;
    if let Some(filter) = &body.select_filter {
        let (checked, warning) = placement::validate_group_filter(
            ctx,
            cluster,
            &current.select_filter.overridden_by(filter),
        )?;
        updated.select_filter = checked;
        unknown_pools = warning;
    }
    if body.peer_slots.is_some() {
        updated.peer_slots = body.peer_slots;
    }
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    plan.replies.extend(unknown_pools);
    let forces_mirror = updated
        .props
        .get(super::engine::PROP_REPLICATION_ENGINE)
        .and_then(|v| super::engine::Setting::parse(v))
        == Some(super::engine::Setting::Mirror);
    let has_mirror = forces_mirror
        || cluster.resource_definitions.values().any(|rd| {
            rd.resource_group == current.name
                && super::engine::effective(cluster, rd) == Some(LayerKind::Mirror)
        });
    if has_mirror {
        plan.replies.extend(super::engine::ignored_options_note(
            ctx,
            body.override_props.keys(),
            &format!("resource group '{}'", current.name),
        ));
    }
    let place_count_changed = body
        .select_filter
        .as_ref()
        .is_some_and(|f| f.place_count.is_some());
    let filter = updated.select_filter.clone();
    plan.op(Op::PutResourceGroup(updated)).reply(
        ctx.modified(format!("Resource group '{}' modified.", current.name))
            .obj_ref("RscGrp", current.name.as_str()),
    );
    if place_count_changed {
        let placement_filter = placement::validate_filter(ctx, cluster, &filter)?;
        super::replica_count::adjust_group(
            ctx,
            cluster,
            runtime,
            &current.name,
            &placement_filter,
            &mut plan,
        )?;
    }
    Ok(plan)
}

/// `POST /v1/resource-groups/{rg}/adjust`: brings every definition of the group to its place
/// count, with the group's filter overridden by the body's (`replica_count`).
pub fn adjust(
    cluster: &Cluster,
    runtime: &Runtime,
    group: &str,
    body: &rest::ResourceGroupAdjust,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Create, Object::Resource);
    let current = find(ctx, cluster, group)?;
    let mut plan = Plan::new();
    adjust_one(ctx, cluster, runtime, current, body, &mut plan)?;
    Ok(plan)
}

/// `POST /v1/resource-groups/adjustall`: `adjust` of every resource group.
pub fn adjust_all(
    cluster: &Cluster,
    runtime: &Runtime,
    body: &rest::ResourceGroupAdjust,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Create, Object::Resource);
    let mut plan = Plan::new();
    for group in cluster.resource_groups.values() {
        adjust_one(ctx, cluster, runtime, group, body, &mut plan)?;
    }
    Ok(plan)
}

fn adjust_one(
    ctx: &Context,
    cluster: &Cluster,
    runtime: &Runtime,
    group: &ResourceGroup,
    body: &rest::ResourceGroupAdjust,
    plan: &mut Plan,
) -> Result<(), Failure> {
    let merged = match &body.select_filter {
        Some(overrides) => group.select_filter.overridden_by(overrides),
        None => group.select_filter.clone(),
    };
    let filter = placement::validate_filter(ctx, cluster, &merged)?;
    super::replica_count::adjust_group(ctx, cluster, runtime, &group.name, &filter, plan)
}

/// `DELETE /v1/resource-groups/{rg}`: not the default group, not while definitions use it.
pub fn delete(cluster: &Cluster, group: &str) -> Result<Plan, Failure> {
    let ctx = &DELETE;
    let current = match find(ctx, cluster, group) {
        Err(failure) if super::is_not_found(&failure, code::FAIL_NOT_FOUND_RSC_GRP) => {
            return Ok(super::nothing_to_delete(
                ctx,
                format!("Resource group '{group}' not found."),
                format!("Resource group '{group}' does not exist; nothing was deleted."),
            ));
        }
        found => found?,
    };
    if current
        .name
        .as_str()
        .eq_ignore_ascii_case(DEFAULT_RESOURCE_GROUP)
    {
        return Err(ctx.invalid(
            code::FAIL_IN_USE,
            format!("The default resource group '{DEFAULT_RESOURCE_GROUP}' cannot be deleted."),
            "Resource definitions without a group belong to it.",
        ));
    }
    let users: Vec<String> = cluster
        .resource_definitions
        .values()
        .filter(|rd| rd.resource_group == current.name)
        .map(|rd| rd.name.to_string())
        .collect();
    if !users.is_empty() {
        return Err(ctx
            .error(code::FAIL_IN_USE, format!("Resource group '{}' still has {} resource definition(s).", current.name, users.len()))
            .cause(format!("Resource definitions in the group: {}.", users.join(", ")))
            .correction("Delete them, or move them to another group with 'ferrite resource-definition modify --resource-group'.")
            .into());
    }
    let mut plan = Plan::new();
    plan.op(Op::DeleteResourceGroup(current.name.clone()))
        .reply(
            ctx.deleted(format!("Resource group '{}' deleted.", current.name))
                .obj_ref("RscGrp", current.name.as_str()),
        );
    Ok(plan)
}

/// `POST /v1/resource-groups/{rg}/volume-groups`.
pub fn create_volume_group(
    cluster: &Cluster,
    group: &str,
    body: &rest::VolumeGroup,
) -> Result<Plan, Failure> {
    let ctx = &VG_CREATE;
    let current = find(ctx, cluster, group)?;
    let number = match body.volume_number {
        Some(n) => VolumeNumber::new(i64::from(n))
            .map_err(|e| ctx.invalid_name(code::FAIL_INVLD_VLM_NR, &e))?,
        None => next_free(current.volume_groups.keys().copied()).ok_or_else(|| {
            Failure::from(ctx.error(
                code::FAIL_POOL_EXHAUSTED_VLM_NR,
                "No free volume number left.",
            ))
        })?,
    };
    if current.volume_groups.contains_key(&number) {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_VLM_GRP,
                format!(
                    "Volume group {number} of resource group '{}' already exists.",
                    current.name
                ),
            )
            .correction("Choose another volume number, or leave it out to take the next free one.")
            .into());
    }
    properties::check_all(ctx, &body.props)?;
    let flags = check_flags(ctx, &body.flags)?;
    let mut plan = Plan::new();
    plan.op(Op::PutVolumeGroup {
        group: current.name.clone(),
        volume_group: VolumeGroup {
            number,
            uuid: model::new_uuid(),
            props: body.props.clone(),
            flags,
        },
    })
    .reply(
        ctx.created(format!(
            "New volume group with number '{number}' of resource group '{}' created.",
            current.name
        ))
        .obj_ref("RscGrp", current.name.as_str())
        .obj_ref("VlmNr", number.to_string()),
    );
    Ok(plan)
}

/// `PUT /v1/resource-groups/{rg}/volume-groups/{nr}`.
pub fn modify_volume_group(
    cluster: &Cluster,
    group: &str,
    number: i64,
    body: &rest::VolumeGroupModify,
) -> Result<Plan, Failure> {
    let ctx = &VG_MODIFY;
    let current_group = find(ctx, cluster, group)?;
    let current = find_volume_group(ctx, current_group, number)?;
    let edited = properties::edit(
        ctx,
        &current.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    let mut updated = current.clone();
    updated.props = edited.props;
    if let Some(flags) = &body.flags {
        updated.flags = check_flags(ctx, flags)?;
    }
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    plan.op(Op::PutVolumeGroup {
        group: current_group.name.clone(),
        volume_group: updated,
    })
    .reply(
        ctx.modified(format!(
            "Volume group {} of resource group '{}' modified.",
            current.number, current_group.name
        ))
        .obj_ref("RscGrp", current_group.name.as_str()),
    );
    Ok(plan)
}

/// `DELETE /v1/resource-groups/{rg}/volume-groups/{nr}`.
pub fn delete_volume_group(cluster: &Cluster, group: &str, number: i64) -> Result<Plan, Failure> {
    let ctx = &VG_DELETE;
    let current_group = find(ctx, cluster, group)?;
    let current = find_volume_group(ctx, current_group, number)?;
    let mut plan = Plan::new();
    plan.op(Op::DeleteVolumeGroup {
        group: current_group.name.clone(),
        number: current.number,
    })
    .reply(
        ctx.deleted(format!(
            "Volume group {} of resource group '{}' deleted.",
            current.number, current_group.name
        ))
        .obj_ref("RscGrp", current_group.name.as_str()),
    );
    Ok(plan)
}

/// The lowest volume number not in `used`.
pub fn next_free(used: impl Iterator<Item = VolumeNumber>) -> Option<VolumeNumber> {
    let used: std::collections::BTreeSet<u16> = used.map(VolumeNumber::get).collect();
    (0..=u16::MAX)
        .find(|n| !used.contains(n))
        .map(VolumeNumber::from)
}

/// `POST /v1/resource-groups/{rg}/spawn`: a resource definition with one volume per volume
/// group, placed by the group's filter (with the request's overrides). All or nothing: if
/// placement fails, no definition is created.
pub fn spawn(
    cluster: &Cluster,
    runtime: &Runtime,
    group: &str,
    body: &rest::ResourceGroupSpawn,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Create, Object::ResourceDefinition);
    let group = find(ctx, cluster, group)?;
    let name: ResourceName = ResourceName::new_checked(&body.resource_definition_name)
        .map_err(|e| ctx.invalid_name(code::FAIL_INVLD_RSC_NAME, &e))?;
    if let Some(existing) = cluster.resource_definition(&name) {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_RSC_DFN,
                format!("Resource definition '{}' already exists.", existing.name),
            )
            .correction("Choose another name, or delete the existing definition first.")
            .into());
    }
    properties::check_all(ctx, &body.resource_definition_props)?;
    let mut sizes = Vec::with_capacity(body.volume_sizes.len());
    for size in &body.volume_sizes {
        sizes.push(check_size_kib(*size).map_err(|e| {
            Failure::from(
                ctx.error(
                    code::FAIL_INVLD_VLM_SIZE,
                    format!("Invalid volume size {size} KiB."),
                )
                .cause(e.to_string())
                .correction(e.correction()),
            )
        })?);
    }
    let mut plan = Plan::new();
    let volume_groups: Vec<&VolumeGroup> = group.volume_groups.values().collect();
    if volume_groups.is_empty() {
        plan.reply(ctx.info(
            code::INFO_NOOP,
            format!("Resource group '{}' has no volume groups; spawning in partial mode, one volume per given size.", group.name),
        ));
    } else if sizes.len() > volume_groups.len()
        || (!body.partial && sizes.len() != volume_groups.len())
    {
        return Err(ctx
            .error(
                code::FAIL_INVLD_VLM_SIZES,
                format!(
                    "Resource group '{}' has {} volume group(s), but {} volume size(s) were given.",
                    group.name,
                    volume_groups.len(),
                    sizes.len()
                ),
            )
            .correction("Give one size per volume group, or use --partial to create only the first volumes.")
            .into());
    }

    let filter_overrides = body.select_filter.clone().unwrap_or_default();
    let filter = placement::validate_filter(
        ctx,
        cluster,
        &group.select_filter.overridden_by(&filter_overrides),
    )?;
    let layer_stack = placement::group_stack(ctx, &filter)?;

    let mut rd = ResourceDefinition {
        name: name.clone(),
        uuid: model::new_uuid(),
        external_name: body.resource_definition_external_name.clone(),
        props: body.resource_definition_props.clone(),
        flags: Vec::new(),
        resource_group: group.name.clone(),
        layer_stack,
        secret: None,
        rollback: None,
        volume_definitions: Default::default(),
        resources: Default::default(),
    };
    plan.op(Op::PutResourceDefinition(rd.clone())).reply(
        ctx.created(format!("Resource definition '{name}' created."))
            .obj_ref("RscDfn", name.as_str()),
    );
    let vd_ctx = Context::new(Operation::Create, Object::VolumeDefinition);
    for (index, size_kib) in sizes.iter().enumerate() {
        let (number, flags) = match volume_groups.get(index) {
            Some(vg) => (vg.number, vg.flags.clone()),
            None => (VolumeNumber::from(index as u16), Vec::new()),
        };
        let vd = VolumeDefinition {
            number,
            uuid: model::new_uuid(),
            size_kib: *size_kib,
            props: Default::default(),
            flags,
            minor: None,
        };
        rd.volume_definitions.insert(number, vd.clone());
        plan.op(Op::PutVolumeDefinition { resource: name.clone(), volume_definition: vd }).reply(
            vd_ctx
                .created(format!("Volume definition with number '{number}' created in resource definition '{name}'."))
                .obj_ref("RscDfn", name.as_str())
                .obj_ref("VlmNr", number.to_string()),
        );
    }
    if !body.definitions_only {
        let (ops, replies) = placement::autoplace(ctx, cluster, runtime, &rd, &filter)?;
        plan.ops.extend(ops);
        plan.replies.extend(replies);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{apply, tutorial_cluster};

    #[test]
    fn create_with_place_count_as_string() {
        let mut cluster = tutorial_cluster();
        let body: rest::ResourceGroup = serde_json::from_str(
            r#"{"name":"fast","select_filter":{"place_count":"3","storage_pool_list":["pool_ssd"]}}"#,
        )
        .unwrap();
        let plan = create(&cluster, &body).unwrap();
        apply(&mut cluster, plan);
        let group = cluster
            .resource_groups
            .get(&"FAST".parse().unwrap())
            .unwrap();
        assert_eq!(group.select_filter.place_count, Some(3));
    }

    #[test]
    fn volume_groups_take_the_next_free_number() {
        let mut cluster = tutorial_cluster();
        let plan =
            create_volume_group(&cluster, "my_ssd_group", &rest::VolumeGroup::default()).unwrap();
        apply(&mut cluster, plan);
        let group = cluster
            .resource_groups
            .get(&"my_ssd_group".parse().unwrap())
            .unwrap();
        assert_eq!(
            group
                .volume_groups
                .keys()
                .map(|n| n.get())
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
        let dup = create_volume_group(
            &cluster,
            "my_ssd_group",
            &rest::VolumeGroup {
                volume_number: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(
            dup.unwrap_err().0[0].ret_code().code(),
            code::FAIL_EXISTS_VLM_GRP
        );
    }

    #[test]
    fn spawn_needs_one_size_per_volume_group() {
        let cluster = tutorial_cluster();
        let body = rest::ResourceGroupSpawn {
            resource_definition_name: "r1".into(),
            volume_sizes: vec![1024, 2048],
            ..Default::default()
        };
        let err = spawn(&cluster, &Runtime::new(), "my_ssd_group", &body).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_INVLD_VLM_SIZES);
        let zero = rest::ResourceGroupSpawn {
            resource_definition_name: "r1".into(),
            volume_sizes: vec![0],
            ..Default::default()
        };
        assert_eq!(
            spawn(&cluster, &Runtime::new(), "my_ssd_group", &zero)
                .unwrap_err()
                .0[0]
                .ret_code()
                .code(),
            code::FAIL_INVLD_VLM_SIZE
        );
    }

    #[test]
    fn spawn_definitions_only_creates_rd_and_vds() {
        let mut cluster = tutorial_cluster();
        let body = rest::ResourceGroupSpawn {
            resource_definition_name: "r1".into(),
            volume_sizes: vec![2 << 20],
            definitions_only: true,
            ..Default::default()
        };
        let plan = spawn(&cluster, &Runtime::new(), "my_ssd_group", &body).unwrap();
        apply(&mut cluster, plan);
        let rd = cluster.resource_definition(&"r1".parse().unwrap()).unwrap();
        assert_eq!(rd.volume_definitions.len(), 1);
        assert!(rd.default_stack_pending(), "{:?}", rd.layer_stack);
        assert!(rd.resources.is_empty());
    }
}
