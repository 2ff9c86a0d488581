//! Physical storage: what `GET /v1/physical-storage` answers from the satellites' lists of
//! unused disks, and the checks of `POST /v1/physical-storage/{node}` before its satellite
//! makes the device pool (the satellite runs `lsblk`, `pvcreate`, `vgcreate`, `lvcreate`,
//! `zpool`; see `ferrite_storage::physical`).

use std::collections::BTreeMap;

use ferrite_proto::{DevicePoolSpec, PhysicalDevice};
use ferrite_types::api_call_rc::code;
use ferrite_types::rest;
use ferrite_types::{NodeName, ProviderKind, StorPoolName};

use super::placement::Runtime;
use super::{Context, Failure, Object, Operation, nodes};
use crate::model::Cluster;

pub const CREATE: Context = Context::new(Operation::Create, Object::StoragePool);

/// The nodes asked for their disks: every node with a satellite that is online.
pub fn online_nodes(cluster: &Cluster, runtime: &Runtime) -> Vec<NodeName> {
    cluster
        .nodes
        .values()
        .filter(|n| n.node_type.has_satellite())
        .filter(|n| runtime.get(&n.name).is_some_and(|r| r.is_online()))
        .map(|n| n.name.clone())
        .collect()
}

/// A satellite's answer to `ListPhysicalStorage`.
pub fn parse_devices(answer: &str) -> Result<Vec<PhysicalDevice>, String> {
    serde_json::from_str(answer).map_err(|e| format!("the satellite's list is unreadable: {e}"))
}

pub fn node_view(device: &PhysicalDevice) -> rest::PhysicalStorageNode {
    rest::PhysicalStorageNode {
        size: device.size_bytes as i64,
        rotational: device.rotational,
        device: device.device.clone(),
        model: device.model.clone(),
        serial: device.serial.clone(),
        wwn: device.wwn.clone(),
    }
}

/// LINSTOR's grouping: by size and rotation, then by node.
pub fn grouped(per_node: &[(NodeName, Vec<PhysicalDevice>)]) -> Vec<rest::PhysicalStorage> {
    let mut groups: BTreeMap<(u64, bool), BTreeMap<String, Vec<rest::PhysicalStorageDevice>>> =
        BTreeMap::new();
    for (node, devices) in per_node {
        for device in devices {
            groups
                .entry((device.size_bytes, device.rotational))
                .or_default()
                .entry(node.to_string())
                .or_default()
                .push(rest::PhysicalStorageDevice {
                    device: device.device.clone(),
                    model: device.model.clone(),
                    serial: device.serial.clone(),
                    wwn: device.wwn.clone(),
                });
        }
    }
    groups
        .into_iter()
        .map(|((size, rotational), nodes)| rest::PhysicalStorage {
            size: size as i64,
            rotational,
            nodes,
        })
        .collect()
}

/// A checked `create-device-pool` request.
#[derive(Debug, Clone)]
pub struct DevicePoolRequest {
    pub node: NodeName,
    pub spec: DevicePoolSpec,
    /// The storage pool to create on it, if asked.
    pub storage_pool: Option<rest::StoragePool>,
}

fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
}

fn unsupported(what: &str) -> Failure {
    CREATE.invalid(
        code::FAIL_INVLD_REQUEST,
        format!("create-device-pool: {what} is not supported by Ferrite."),
        format!("Leave out {what}."),
    )
}

/// Checks `POST /v1/physical-storage/{node}` against the graph: nothing reaches the
/// satellite unless the whole request is valid.
pub fn check_create(
    cluster: &Cluster,
    runtime: &Runtime,
    node: &str,
    body: &rest::PhysicalStorageCreate,
) -> Result<DevicePoolRequest, Failure> {
    let ctx = &CREATE;
    let found = nodes::find(ctx, cluster, node)?;
    if !matches!(
        body.provider_kind,
        ProviderKind::Lvm | ProviderKind::LvmThin | ProviderKind::Zfs | ProviderKind::ZfsThin
    ) {
        return Err(ctx.invalid(
            code::FAIL_INVLD_PROVIDER,
            format!(
                "A device pool is LVM, LVM_THIN, ZFS or ZFS_THIN, not {}.",
                body.provider_kind
            ),
            "Use --provider-kind LVM, LVM_THIN, ZFS or ZFS_THIN.",
        ));
    }
    if body.device_paths.is_empty() {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            "create-device-pool needs at least one device.",
            "Name the disks, e.g. /dev/sdb ('ferrite physical-storage list' shows the unused ones).",
        ));
    }
    for path in &body.device_paths {
        let valid = path.starts_with("/dev/")
            && path.len() > 5
            && !path.contains("..")
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-.:+".contains(c));
        if !valid {
            return Err(ctx.invalid(
                code::FAIL_INVLD_REQUEST,
                format!("'{path}' is not a device path."),
                "Name each disk by its path under /dev, e.g. /dev/sdb.",
            ));
        }
    }
    let mut unique = body.device_paths.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != body.device_paths.len() {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            "A device is named twice.",
            "Name each disk once.",
        ));
    }
    let Some(pool_name) = body.pool_name.as_deref().filter(|p| !p.is_empty()) else {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            "create-device-pool needs a pool name.",
            "Give --pool-name: the volume group (LVM), thin pool (LVM_THIN) or zpool (ZFS) to create.",
        ));
    };
    if !valid_lvm_name(pool_name)
        || (body.provider_kind == ProviderKind::LvmThin && pool_name.len() > 55)
    {
        return Err(ctx.invalid(
            code::FAIL_INVLD_REQUEST,
            format!("'{pool_name}' is not a valid pool name."),
            "Use letters, digits and _ + . -, not starting with -, at most 64 characters.",
        ));
    }
    if body
        .raid_level
        .as_deref()
        .is_some_and(|r| !r.eq_ignore_ascii_case("JBOD"))
    {
        return Err(unsupported("a RAID level other than JBOD"));
    }
    if body.vdo_enable == Some(true) {
        return Err(unsupported("VDO"));
    }
    if body.sed == Some(true) {
        return Err(unsupported("SED"));
    }
    for (arguments, what) in [
        (&body.pv_create_arguments, "pv_create_arguments"),
        (&body.vg_create_arguments, "vg_create_arguments"),
        (&body.lv_create_arguments, "lv_create_arguments"),
        (&body.zpool_create_arguments, "zpool_create_arguments"),
    ] {
        if arguments.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(unsupported(what));
        }
    }
    let spec = DevicePoolSpec {
        provider_kind: body.provider_kind,
        devices: body.device_paths.clone(),
        pool_name: pool_name.to_string(),
    };
    let storage_pool = match &body.with_storage_pool {
        None => None,
        Some(with) => {
            let name: StorPoolName =
                super::parse_name(ctx, code::FAIL_INVLD_STOR_POOL_NAME, &with.name)?;
            if found.storage_pools.contains_key(&name) {
                return Err(ctx
                    .error(
                        code::FAIL_EXISTS_STOR_POOL,
                        format!(
                            "Storage pool '{name}' already exists on node '{}'.",
                            found.name
                        ),
                    )
                    .correction("Choose another storage pool name.")
                    .into());
            }
            // LINSTOR's naming, as the satellite makes it (`ferrite_storage::physical`).
            let backing = match spec.provider_kind {
                ProviderKind::LvmThin => format!("linstor_{0}/{0}", spec.pool_name),
                _ => spec.pool_name.clone(),
            };
            let mut props = with.props.clone();
            props.insert(ferrite_types::PROP_STOR_POOL_NAME.to_string(), backing);
            Some(rest::StoragePool {
                storage_pool_name: name.to_string(),
                node_name: Some(found.name.to_string()),
                provider_kind: body.provider_kind,
                props,
                static_traits: Default::default(),
                free_capacity: None,
                total_capacity: None,
                free_space_mgr_name: None,
                uuid: None,
                reports: Vec::new(),
                supports_snapshots: None,
                shared_space: with.shared_space.clone(),
                external_locking: with.external_locking,
            })
        }
    };
    if !found.node_type.has_satellite() {
        return Err(ctx
            .error(
                code::FAIL_INVLD_REQUEST,
                format!("Node '{}' has no satellite.", found.name),
            )
            .into());
    }
    if !runtime.get(&found.name).is_some_and(|r| r.is_online()) {
        return Err(ctx
            .error(
                code::FAIL_NOT_CONNECTED,
                format!("Node '{}' is not connected.", found.name),
            )
            .cause("Its satellite makes the device pool; it must be online.")
            .correction("Start the satellite, then try again.")
            .into());
    }
    Ok(DevicePoolRequest {
        node: found.name.clone(),
        spec,
        storage_pool,
    })
}
