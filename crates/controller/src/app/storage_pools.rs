//! Storage pools: create (after the satellite confirmed the backing pool is usable), modify,
//! delete.

use ferrite_proto::{Capabilities, PoolSpec};
use ferrite_types::api_call_rc::code;
use ferrite_types::rest;
use ferrite_types::{PROP_STOR_POOL_NAME, ProviderKind, StorPoolName};

use super::{Context, Failure, Object, Operation, Plan, nodes, not_found, parse_name, properties};
use crate::model::{self, Cluster, Node, Op, StoragePool};

const CREATE: Context = Context::new(Operation::Create, Object::StoragePool);
const MODIFY: Context = Context::new(Operation::Modify, Object::StoragePool);
const DELETE: Context = Context::new(Operation::Delete, Object::StoragePool);

/// Older clients name the backing pool with a provider-specific key; all mean
/// `StorDriver/StorPoolName`.
const LEGACY_POOL_KEYS: &[&str] = &[
    "StorDriver/LvmVg",
    "StorDriver/ThinPool",
    "StorDriver/ZPool",
    "StorDriver/ZPoolThin",
    "StorDriver/FileDir",
];

/// Finds a pool on a node or refuses.
pub fn find<'a>(ctx: &Context, node: &'a Node, pool: &str) -> Result<&'a StoragePool, Failure> {
    let name: StorPoolName = parse_name(ctx, code::FAIL_INVLD_STOR_POOL_NAME, pool)?;
    node.storage_pools.get(&name).ok_or_else(|| {
        not_found(
            ctx,
            code::FAIL_NOT_FOUND_STOR_POOL,
            "Storage pool",
            format!("{pool}' on node '{}", node.name),
            "Check the name with 'ferrite storage-pool list'.",
        )
    })
}

/// A request to create a pool, validated, before the satellite checked it.
#[derive(Debug, Clone)]
pub struct Checked {
    pub node: ferrite_types::NodeName,
    pub pool: StoragePool,
}

impl Checked {
    pub fn spec(&self) -> PoolSpec {
        PoolSpec {
            name: self.pool.name.to_string(),
            uuid: self.pool.uuid.clone(),
            provider_kind: self.pool.provider_kind,
            pool_name: self.pool.backing_pool_name().to_string(),
            props: self.pool.props.clone(),
        }
    }
}

fn check_backing_name(kind: ProviderKind, backing: &str) -> Result<(), String> {
    let simple = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
            && !s.starts_with('-')
    };
    match kind {
        ProviderKind::Diskless if backing.is_empty() => Ok(()),
        ProviderKind::Diskless => Err(format!(
            "a DISKLESS storage pool has no backing pool, but '{backing}' was given"
        )),
        ProviderKind::File | ProviderKind::FileThin => {
            if !backing.starts_with('/') {
                Err(format!("'{backing}' is not an absolute directory path"))
            } else if backing.chars().any(|c| c.is_control()) {
                Err(format!("'{backing}' contains control characters"))
            } else {
                Ok(())
            }
        }
        ProviderKind::Lvm => simple(backing)
            .then_some(())
            .ok_or_else(|| format!("'{backing}' is not a valid volume group name")),
        ProviderKind::LvmThin => match backing.split_once('/') {
            Some((vg, lv)) if simple(vg) && simple(lv) => Ok(()),
            _ => Err(format!(
                "'{backing}' is not of the form <volume group>/<thin pool>"
            )),
        },
        ProviderKind::Zfs | ProviderKind::ZfsThin => {
            let valid = !backing.is_empty()
                && !backing.starts_with('/')
                && backing.split('/').all(|part| {
                    !part.is_empty()
                        && part.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
                        })
                });
            valid
                .then_some(())
                .ok_or_else(|| format!("'{backing}' is not a valid zpool or dataset name"))
        }
    }
}

fn backing_hint(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Diskless => "nothing",
        ProviderKind::Lvm => "a volume group, e.g. 'vg_ssd'",
        ProviderKind::LvmThin => "a volume group and thin pool, e.g. 'vg_ssd/thin'",
        ProviderKind::Zfs | ProviderKind::ZfsThin => "a zpool, e.g. 'tank'",
        ProviderKind::File | ProviderKind::FileThin => {
            "an absolute directory, e.g. '/var/lib/ferrite/pools/ssd'"
        }
    }
}

/// Validates `POST /v1/nodes/{node}/storage-pools` against the graph and what the node's
/// satellite said it can run (`None` while unknown).
pub fn check_create(
    cluster: &Cluster,
    node: &str,
    body: &rest::StoragePool,
    capabilities: Option<&Capabilities>,
) -> Result<Checked, Failure> {
    let ctx = &CREATE;
    let node = nodes::find(ctx, cluster, node)?;
    let name: StorPoolName = parse_name(
        ctx,
        code::FAIL_INVLD_STOR_POOL_NAME,
        &body.storage_pool_name,
    )?;
    if node.storage_pools.contains_key(&name) {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_STOR_POOL,
                format!(
                    "Storage pool '{name}' already exists on node '{}'.",
                    node.name
                ),
            )
            .correction("Choose another name, or delete the existing pool first.")
            .into());
    }
    if let Some(node_name) = &body.node_name
        && !node_name.eq_ignore_ascii_case(node.name.as_str())
    {
        return Err(ctx
            .error(
                code::FAIL_INVLD_REQUEST,
                format!(
                    "The body names node '{node_name}', the path node '{}'.",
                    node.name
                ),
            )
            .correction("Leave node_name out of the body or make it match the path.")
            .into());
    }
    let kind = body.provider_kind;
    properties::check_all(ctx, &body.props)?;
    let mut props = body.props.clone();
    for legacy in LEGACY_POOL_KEYS {
        if let Some(value) = props.remove(*legacy) {
            props
                .entry(PROP_STOR_POOL_NAME.to_string())
                .or_insert(value);
        }
    }
    let backing = props.get(PROP_STOR_POOL_NAME).cloned().unwrap_or_default();
    if kind == ProviderKind::Diskless {
        if !backing.is_empty() {
            return Err(ctx.invalid(
                code::FAIL_INVLD_PROP,
                format!("A DISKLESS storage pool has no backing pool, but '{backing}' was given."),
                "Leave out the driver pool name for diskless pools.",
            ));
        }
    } else if backing.is_empty() {
        return Err(ctx.invalid(
            code::FAIL_INVLD_PROP,
            format!("Storage pool '{name}' of kind {kind} needs {PROP_STOR_POOL_NAME}."),
            format!("Give the pool to allocate from: {}.", backing_hint(kind)),
        ));
    } else if let Err(cause) = check_backing_name(kind, &backing) {
        return Err(ctx
            .error(
                code::FAIL_INVLD_PROP,
                format!("Invalid backing pool for storage pool '{name}'."),
            )
            .cause(cause)
            .correction(format!("Give {}.", backing_hint(kind)))
            .into());
    }
    if let Some(capabilities) = capabilities
        && !capabilities.supports_provider(kind)
    {
        let reasons = capabilities
            .unsupported_providers
            .get(&kind)
            .map(|r| r.join("; "))
            .unwrap_or_else(|| "the satellite does not list it".to_string());
        return Err(ctx
            .error(
                code::FAIL_STLT_DOES_NOT_SUPPORT_PROVIDER,
                format!("Node '{}' cannot run storage provider {kind}.", node.name),
            )
            .cause(reasons)
            .correction(format!(
                "Install what the provider needs on '{}', or use one of: {}.",
                node.name,
                capabilities
                    .storage_providers
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
    }
    Ok(Checked {
        node: node.name.clone(),
        pool: StoragePool {
            name,
            uuid: model::new_uuid(),
            provider_kind: kind,
            props,
            // `linstor storage-pool create --shared-space` sends `free_space_mgr_name`.
            shared_space: body
                .shared_space
                .clone()
                .or_else(|| body.free_space_mgr_name.clone())
                .filter(|s| !s.trim().is_empty()),
            external_locking: body.external_locking.unwrap_or(false),
        },
    })
}

/// Records a checked pool. `warnings` carries what the satellite check could not confirm.
pub fn create(
    cluster: &Cluster,
    checked: Checked,
    warnings: Vec<ferrite_types::ApiCallRc>,
) -> Result<Plan, Failure> {
    let ctx = &CREATE;
    let node = nodes::find(ctx, cluster, checked.node.as_str())?;
    if node.storage_pools.contains_key(&checked.pool.name) {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_STOR_POOL,
                format!(
                    "Storage pool '{}' already exists on node '{}'.",
                    checked.pool.name, node.name
                ),
            )
            .into());
    }
    let message = format!(
        "Storage pool '{}' created on node '{}'.",
        checked.pool.name, node.name
    );
    let reply = ctx
        .created(message)
        .obj_ref("StorPool", checked.pool.name.as_str())
        .obj_ref("Node", node.name.as_str());
    let mut plan = Plan::new();
    plan.op(Op::PutStoragePool {
        node: node.name.clone(),
        pool: checked.pool,
    })
    .reply(reply);
    plan.replies.extend(warnings);
    Ok(plan)
}

/// `PUT /v1/nodes/{node}/storage-pools/{pool}`: properties only; the backing pool cannot
/// change under existing volumes.
pub fn modify(
    cluster: &Cluster,
    node: &str,
    pool: &str,
    body: &rest::PropsModify,
) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let node = nodes::find(ctx, cluster, node)?;
    let current = find(ctx, node, pool)?;
    let edited = properties::edit(
        ctx,
        &current.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    if edited.props.get(PROP_STOR_POOL_NAME) != current.props.get(PROP_STOR_POOL_NAME) {
        let users = cluster.pool_in_use(&node.name, &current.name);
        if !users.is_empty() {
            return Err(ctx
                .error(
                    code::FAIL_IN_USE,
                    format!(
                        "The backing pool of '{}' on '{}' cannot change while it holds volumes.",
                        current.name, node.name
                    ),
                )
                .cause(format!(
                    "Resources in the pool: {}.",
                    users
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .correction("Move or delete those resources first.")
                .into());
        }
        if let Some(backing) = edited.props.get(PROP_STOR_POOL_NAME)
            && let Err(cause) = check_backing_name(current.provider_kind, backing)
        {
            return Err(ctx
                .error(code::FAIL_INVLD_PROP, "Invalid backing pool.")
                .cause(cause)
                .correction(format!("Give {}.", backing_hint(current.provider_kind)))
                .into());
        }
    }
    let mut updated = current.clone();
    updated.props = edited.props;
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    plan.op(Op::PutStoragePool {
        node: node.name.clone(),
        pool: updated,
    })
    .reply(
        ctx.modified(format!(
            "Storage pool '{}' on node '{}' modified.",
            current.name, node.name
        ))
        .obj_ref("StorPool", current.name.as_str())
        .obj_ref("Node", node.name.as_str()),
    );
    Ok(plan)
}

/// `DELETE /v1/nodes/{node}/storage-pools/{pool}`: only an unused pool.
pub fn delete(cluster: &Cluster, node: &str, pool: &str) -> Result<Plan, Failure> {
    let ctx = &DELETE;
    let node = nodes::find(ctx, cluster, node)?;
    let current = match find(ctx, node, pool) {
        Err(failure) if super::is_not_found(&failure, code::FAIL_NOT_FOUND_STOR_POOL) => {
            return Ok(super::nothing_to_delete(
                ctx,
                format!(
                    "Deletion of storage pool '{pool}' on node '{}' had no effect.",
                    node.name
                ),
                format!(
                    "Storage pool '{pool}' on node '{}' does not exist.",
                    node.name
                ),
            ));
        }
        found => found?,
    };
    let users = cluster.pool_in_use(&node.name, &current.name);
    if !users.is_empty() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Storage pool '{}' on node '{}' is in use.",
                    current.name, node.name
                ),
            )
            .cause(format!(
                "Resources in the pool: {}.",
                users
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .correction(
                "Delete those resources, or move them with 'ferrite resource toggle-disk', first.",
            )
            .into());
    }
    let mut plan = Plan::new();
    plan.op(Op::DeleteStoragePool {
        node: node.name.clone(),
        pool: current.name.clone(),
    })
    .reply(
        ctx.deleted(format!(
            "Storage pool '{}' on node '{}' deleted.",
            current.name, node.name
        ))
        .obj_ref("StorPool", current.name.as_str())
        .obj_ref("Node", node.name.as_str()),
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::tutorial_cluster;

    fn body(name: &str, kind: ProviderKind, backing: &str) -> rest::StoragePool {
        rest::StoragePool {
            storage_pool_name: name.into(),
            node_name: None,
            provider_kind: kind,
            props: if backing.is_empty() {
                Default::default()
            } else {
                [(PROP_STOR_POOL_NAME.to_string(), backing.to_string())].into()
            },
            static_traits: Default::default(),
            free_capacity: None,
            total_capacity: None,
            free_space_mgr_name: None,
            uuid: None,
            reports: vec![],
            supports_snapshots: None,
            shared_space: None,
            external_locking: None,
        }
    }

    #[test]
    fn create_validates_name_backing_and_node() {
        let cluster = tutorial_cluster();
        assert!(
            check_create(
                &cluster,
                "node1",
                &body("pool_hdd", ProviderKind::Lvm, "vg_hdd"),
                None
            )
            .is_ok()
        );
        let code_of = |r: Result<Checked, Failure>| r.unwrap_err().0[0].ret_code().code();
        assert_eq!(
            code_of(check_create(
                &cluster,
                "node9",
                &body("p1x", ProviderKind::Lvm, "vg"),
                None
            )),
            code::FAIL_NOT_FOUND_NODE
        );
        assert_eq!(
            code_of(check_create(
                &cluster,
                "node1",
                &body("pool_ssd", ProviderKind::Lvm, "vg"),
                None
            )),
            code::FAIL_EXISTS_STOR_POOL
        );
        assert_eq!(
            code_of(check_create(
                &cluster,
                "node1",
                &body("p", ProviderKind::Lvm, "vg"),
                None
            )),
            code::FAIL_INVLD_STOR_POOL_NAME
        );
        assert_eq!(
            code_of(check_create(
                &cluster,
                "node1",
                &body("pool2", ProviderKind::Lvm, ""),
                None
            )),
            code::FAIL_INVLD_PROP
        );
        assert_eq!(
            code_of(check_create(
                &cluster,
                "node1",
                &body("pool2", ProviderKind::FileThin, "relative/dir"),
                None
            )),
            code::FAIL_INVLD_PROP
        );
        assert_eq!(
            code_of(check_create(
                &cluster,
                "node1",
                &body("pool2", ProviderKind::LvmThin, "novgslash"),
                None
            )),
            code::FAIL_INVLD_PROP
        );
    }

    #[test]
    fn unsupported_providers_are_refused_with_the_satellites_reason() {
        let cluster = tutorial_cluster();
        let mut caps = Capabilities {
            storage_providers: vec![ProviderKind::FileThin],
            ..Default::default()
        };
        caps.unsupported_providers
            .insert(ProviderKind::Zfs, vec!["zfs: command not found".into()]);
        let err = check_create(
            &cluster,
            "node1",
            &body("tank", ProviderKind::Zfs, "tank"),
            Some(&caps),
        )
        .unwrap_err();
        assert_eq!(
            err.0[0].ret_code().code(),
            code::FAIL_STLT_DOES_NOT_SUPPORT_PROVIDER
        );
        assert_eq!(err.0[0].cause.as_deref(), Some("zfs: command not found"));
    }

    #[test]
    fn shared_space_comes_from_either_field() {
        let cluster = tutorial_cluster();
        let mut b = body("pool_san", ProviderKind::Lvm, "vg_san");
        b.free_space_mgr_name = Some("san1".into());
        let checked = check_create(&cluster, "node1", &b, None).unwrap();
        assert_eq!(checked.pool.shared_space.as_deref(), Some("san1"));
        b.shared_space = Some("san2".into());
        let checked = check_create(&cluster, "node1", &b, None).unwrap();
        assert_eq!(checked.pool.shared_space.as_deref(), Some("san2"));
    }

    #[test]
    fn legacy_keys_become_stor_pool_name() {
        let cluster = tutorial_cluster();
        let mut b = body("pool_lvm", ProviderKind::Lvm, "");
        b.props.insert("StorDriver/LvmVg".into(), "vg1".into());
        let checked = check_create(&cluster, "node1", &b, None).unwrap();
        assert_eq!(checked.pool.backing_pool_name(), "vg1");
    }

    #[test]
    fn modify_refuses_an_invalid_backing_pool_with_a_correction() {
        let cluster = tutorial_cluster();
        let body = rest::PropsModify {
            override_props: [(PROP_STOR_POOL_NAME.to_string(), "relative".to_string())].into(),
            ..Default::default()
        };
        let err = modify(&cluster, "node1", "pool_ssd", &body).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_INVLD_PROP);
        assert!(err.0[0].cause.as_deref().unwrap().contains("absolute"));
        assert!(
            err.0[0]
                .correction
                .as_deref()
                .unwrap()
                .contains("absolute directory")
        );
    }

    #[test]
    fn delete_refuses_pools_in_use() {
        let mut cluster = tutorial_cluster();
        crate::app::testing::add_resource(&mut cluster, "res1", "node1", "pool_ssd");
        let err = delete(&cluster, "node1", "pool_ssd").unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_IN_USE);
        assert!(delete(&cluster, "node2", "pool_ssd").is_ok());
    }
}
