//! The REST shapes of the object graph, merged with what satellites reported.
//!
//! Read paths only: nothing here changes state. `GET /v1/view/resources` over 20,000 resources
//! must answer in well under 250 ms, so views walk the graph once and look reports up by key.

use std::collections::BTreeMap;

use ferrite_types::api_call_rc::code;
use ferrite_types::rest::{self, Props};
use ferrite_types::{ApiCallRc, ConnectionStatus, LayerKind, NodeName, RetCode};
use serde_json::json;

use super::placement::Runtime;
use crate::model::{
    Cluster, Node, Resource, ResourceDefinition, ResourceGroup, StoragePool, VolumeDefinition,
    VolumeGroup,
};
use crate::satellites::NodeRuntime;

/// LINSTOR reports "infinite" capacity for diskless pools as `i64::MAX`.
const DISKLESS_CAPACITY: i64 = i64::MAX;

/// Filters and paging shared by list endpoints.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub nodes: Vec<String>,
    pub resources: Vec<String>,
    pub storage_pools: Vec<String>,
    pub resource_groups: Vec<String>,
    /// `Key=Value` (value must match) or `Key` (key must be set).
    pub props: Vec<String>,
    pub offset: usize,
    /// 0 means no limit.
    pub limit: usize,
}

impl ListFilter {
    fn matches(list: &[String], value: &str) -> bool {
        list.is_empty() || list.iter().any(|wanted| wanted.eq_ignore_ascii_case(value))
    }

    pub fn node(&self, name: &str) -> bool {
        Self::matches(&self.nodes, name)
    }

    pub fn resource(&self, name: &str) -> bool {
        Self::matches(&self.resources, name)
    }

    pub fn storage_pool(&self, name: &str) -> bool {
        Self::matches(&self.storage_pools, name)
    }

    pub fn resource_group(&self, name: &str) -> bool {
        Self::matches(&self.resource_groups, name)
    }

    pub fn props(&self, props: &Props) -> bool {
        self.props
            .iter()
            .all(|wanted| match wanted.split_once('=') {
                Some((key, value)) => props.get(key).is_some_and(|v| v == value),
                None => props.contains_key(wanted),
            })
    }

    /// Applies offset and limit.
    pub fn page<T>(&self, items: Vec<T>) -> Vec<T> {
        self.page_iter(items.into_iter()).collect()
    }

    /// The page of `items`: skips `offset`, then takes `limit` (0 = all).
    pub fn page_iter<T>(&self, items: impl Iterator<Item = T>) -> impl Iterator<Item = T> {
        let limit = if self.limit == 0 {
            usize::MAX
        } else {
            self.limit
        };
        items.skip(self.offset).take(limit)
    }
}

pub fn node(node: &Node, runtime: Option<&NodeRuntime>) -> rest::Node {
    let capabilities = runtime.and_then(|r| r.capabilities.as_ref());
    rest::Node {
        name: node.name.to_string(),
        node_type: node.node_type,
        flags: Vec::new(),
        props: node.props.clone(),
        net_interfaces: node
            .net_interfaces
            .iter()
            .map(|i| rest::NetInterface {
                name: i.name.to_string(),
                address: i.address.to_string(),
                satellite_port: Some(i32::from(i.satellite_port)),
                satellite_encryption_type: Some(i.encryption),
                is_active: Some(i.name == node.active_net_interface),
                uuid: Some(i.uuid.clone()),
            })
            .collect(),
        connection_status: Some(
            runtime
                .map(|r| r.status)
                .unwrap_or(ConnectionStatus::Offline),
        ),
        connection_status_reason: runtime
            .filter(|r| r.status != ConnectionStatus::Online)
            .and_then(|r| r.last_error.clone()),
        uuid: Some(node.uuid.clone()),
        storage_providers: capabilities.map(|c| c.storage_providers.clone()),
        resource_layers: capabilities.map(|c| c.resource_layers.clone()),
        unsupported_providers: capabilities.map(|c| {
            c.unsupported_providers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        }),
        unsupported_layers: capabilities.map(|c| {
            c.unsupported_layers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        }),
        eviction_timestamp: None,
    }
}

pub fn nodes(cluster: &Cluster, runtime: &Runtime, filter: &ListFilter) -> Vec<rest::Node> {
    let items = cluster
        .nodes
        .values()
        .filter(|n| filter.node(n.name.as_str()) && filter.props(&n.props))
        .map(|n| node(n, runtime.get(&n.name)))
        .collect();
    filter.page(items)
}

pub fn storage_pool(
    node: &Node,
    pool: &StoragePool,
    runtime: Option<&NodeRuntime>,
) -> rest::StoragePool {
    let report = runtime.and_then(|r| r.pools.get(pool.name.key()));
    let online = runtime.is_some_and(|r| r.status == ConnectionStatus::Online);
    let (free, total) = if pool.is_diskless() {
        (Some(DISKLESS_CAPACITY), Some(DISKLESS_CAPACITY))
    } else {
        match report.and_then(|r| r.free_capacity_kib.zip(r.total_capacity_kib)) {
            Some((free, total)) => (Some(free as i64), Some(total as i64)),
            None => (None, None),
        }
    };
    let mut reports: Vec<ApiCallRc> = report
        .map(|r| {
            r.errors
                .iter()
                .map(|e| {
                    ApiCallRc::new(
                        RetCode::error(code::FAIL_STOR_POOL_CONFIGURATION_ERROR),
                        e.clone(),
                    )
                    .obj_ref("StorPool", pool.name.as_str())
                    .obj_ref("Node", node.name.as_str())
                })
                .collect()
        })
        .unwrap_or_default();
    if !online && !pool.is_diskless() {
        reports.push(
            ApiCallRc::new(
                RetCode::warn(code::WARN_NOT_CONNECTED),
                format!(
                    "No active connection to satellite '{}'; capacity is not known.",
                    node.name
                ),
            )
            .obj_ref("Node", node.name.as_str()),
        );
    }
    let mut static_traits = BTreeMap::new();
    static_traits.insert(
        "Provisioning".to_string(),
        if pool.provider_kind.is_thin() {
            "Thin"
        } else {
            "Fat"
        }
        .to_string(),
    );
    static_traits.insert(
        "SupportsSnapshots".to_string(),
        pool.provider_kind.supports_snapshots().to_string(),
    );
    rest::StoragePool {
        storage_pool_name: pool.name.to_string(),
        node_name: Some(node.name.to_string()),
        provider_kind: pool.provider_kind,
        props: pool.props.clone(),
        static_traits,
        free_capacity: free,
        total_capacity: total,
        free_space_mgr_name: Some(
            pool.shared_space
                .clone()
                .unwrap_or_else(|| format!("{};{}", node.name, pool.name)),
        ),
        uuid: Some(pool.uuid.clone()),
        reports,
        supports_snapshots: Some(pool.provider_kind.supports_snapshots()),
        shared_space: pool.shared_space.clone(),
        external_locking: Some(pool.external_locking),
    }
}

pub fn storage_pools(
    cluster: &Cluster,
    runtime: &Runtime,
    filter: &ListFilter,
) -> Vec<rest::StoragePool> {
    let mut items = Vec::new();
    for node in cluster
        .nodes
        .values()
        .filter(|n| filter.node(n.name.as_str()))
    {
        for pool in node.storage_pools.values() {
            if filter.storage_pool(pool.name.as_str()) && filter.props(&pool.props) {
                items.push(storage_pool(node, pool, runtime.get(&node.name)));
            }
        }
    }
    filter.page(items)
}

pub fn resource_group(group: &ResourceGroup) -> rest::ResourceGroup {
    rest::ResourceGroup {
        name: group.name.to_string(),
        description: group.description.clone(),
        props: group.props.clone(),
        select_filter: group.select_filter.clone(),
        uuid: Some(group.uuid.clone()),
        peer_slots: group.peer_slots,
    }
}

pub fn resource_groups(cluster: &Cluster, filter: &ListFilter) -> Vec<rest::ResourceGroup> {
    let items = cluster
        .resource_groups
        .values()
        .filter(|g| filter.resource_group(g.name.as_str()) && filter.props(&g.props))
        .map(resource_group)
        .collect();
    filter.page(items)
}

pub fn volume_group(volume_group: &VolumeGroup) -> rest::VolumeGroup {
    rest::VolumeGroup {
        volume_number: Some(i32::from(volume_group.number.get())),
        props: volume_group.props.clone(),
        uuid: Some(volume_group.uuid.clone()),
        flags: volume_group.flags.clone(),
    }
}

pub fn volume_definition(rd: &ResourceDefinition, vd: &VolumeDefinition) -> rest::VolumeDefinition {
    rest::VolumeDefinition {
        volume_number: Some(i32::from(vd.number.get())),
        size_kib: vd.size_kib as i64,
        props: vd.props.clone(),
        flags: vd.flags.clone(),
        layer_data: rd
            .layer_stack
            .iter()
            .map(|l| rest::VolumeDefinitionLayer {
                layer_type: *l,
                data: None,
            })
            .collect(),
        uuid: Some(vd.uuid.clone()),
    }
}

pub fn resource_definition(
    rd: &ResourceDefinition,
    with_volumes: bool,
) -> rest::ResourceDefinition {
    rest::ResourceDefinition {
        name: rd.name.to_string(),
        external_name: rd.external_name.clone(),
        props: rd.props.clone(),
        flags: rd.flags.clone(),
        layer_data: rd
            .layer_stack
            .iter()
            .map(|l| rest::ResourceDefinitionLayer {
                layer_type: *l,
                data: None,
            })
            .collect(),
        uuid: Some(rd.uuid.clone()),
        resource_group_name: Some(rd.resource_group.to_string()),
        volume_definitions: with_volumes.then(|| {
            rd.volume_definitions
                .values()
                .map(|vd| volume_definition(rd, vd))
                .collect()
        }),
    }
}

pub fn resource_definitions(
    cluster: &Cluster,
    filter: &ListFilter,
    with_volumes: bool,
) -> Vec<rest::ResourceDefinition> {
    let items = cluster
        .resource_definitions
        .values()
        .filter(|rd| {
            filter.resource(rd.name.as_str())
                && filter.resource_group(rd.resource_group.as_str())
                && filter.props(&rd.props)
        })
        .map(|rd| resource_definition(rd, with_volumes))
        .collect();
    filter.page(items)
}

/// The state of one volume as the satellite reported it.
struct VolumeFacts<'a> {
    report: Option<&'a ferrite_proto::VolumeReport>,
    /// Whether the node's satellite is connected and reporting, so its report is current.
    online: bool,
}

/// A volume's disk state while nothing current is known of it: its node is offline, so the
/// last report (say UpToDate) may no longer be true.
pub const UNKNOWN_DISK_STATE: &str = "Unknown";

impl VolumeFacts<'_> {
    fn disk_state(&self, resource: &Resource) -> String {
        match self.report {
            _ if !self.online => UNKNOWN_DISK_STATE.to_string(),
            Some(report) => report.disk_state.clone(),
            None if resource.diskless => "Diskless".to_string(),
            None => UNKNOWN_DISK_STATE.to_string(),
        }
    }

    /// What is reported of the volume, if it is current.
    fn current(&self) -> Option<&ferrite_proto::VolumeReport> {
        self.report.filter(|_| self.online)
    }
}

fn layer_object(
    layers: &[LayerKind],
    storage_volumes: Vec<rest::StorageVolume>,
) -> rest::ResourceLayer {
    let mut object: Option<rest::ResourceLayer> = None;
    for layer in layers.iter().rev() {
        let children = object.take().into_iter().collect();
        let mut current = rest::ResourceLayer {
            children,
            resource_name_suffix: String::new(),
            layer_type: *layer,
            drbd: None,
            mirror: None,
            storage: None,
        };
        match layer {
            LayerKind::Storage => {
                current.storage = Some(rest::StorageResource {
                    storage_volumes: storage_volumes.clone(),
                });
            }
            LayerKind::Drbd => {
                current.drbd = Some(
                    json!({ "connections": {}, "flags": [], "peer_slots": 7, "al_stripes": 1, "al_size": 32, "promotion_score": 0, "may_promote": false }),
                );
            }
            LayerKind::Mirror => current.mirror = Some(json!({ "connections": {} })),
        }
        object = Some(current);
    }
    object.expect("a layer stack is never empty")
}

/// One resource with its volumes.
pub fn resource(
    cluster: &Cluster,
    rd: &ResourceDefinition,
    resource: &Resource,
    runtime: Option<&NodeRuntime>,
) -> rest::ResourceWithVolumes {
    let node = cluster.node(&resource.node);
    let pool = node.and_then(|n| n.storage_pools.get(&resource.storage_pool));
    let online = runtime.is_some_and(|r| {
        matches!(
            r.status,
            ConnectionStatus::Online | ConnectionStatus::FullSyncFailed
        )
    });
    let mut volumes = Vec::with_capacity(rd.volume_definitions.len());
    let mut storage_volumes = Vec::with_capacity(rd.volume_definitions.len());
    for vd in rd.volume_definitions.values() {
        let facts = VolumeFacts {
            report: runtime.and_then(|r| r.volumes.get(rd.name.key())?.get(&vd.number.get())),
            online,
        };
        let disk_state = facts.disk_state(resource);
        let report = facts.current();
        let device_path = report.and_then(|r| r.device_path.clone());
        let allocated = report.and_then(|r| r.allocated_size_kib).map(|v| v as i64);
        let usable = report.and_then(|r| r.usable_size_kib).map(|v| v as i64);
        let storage_volume = rest::StorageVolume {
            volume_number: i32::from(vd.number.get()),
            device_path: device_path.clone(),
            allocated_size_kib: allocated,
            usable_size_kib: usable,
            disk_state: Some(disk_state.clone()),
        };
        let reports = report
            .and_then(|r| r.error.as_ref())
            .map(|e| {
                vec![
                    ApiCallRc::new(RetCode::error(code::FAIL_UNKNOWN_ERROR), e.clone())
                        .obj_ref("RscDfn", rd.name.as_str())
                        .obj_ref("Node", resource.node.as_str())
                        .obj_ref("VlmNr", vd.number.to_string()),
                ]
            })
            .unwrap_or_default();
        let layer_data_list = rd
            .layer_stack
            .iter()
            .map(|layer| rest::VolumeLayer {
                layer_type: *layer,
                data: match layer {
                    LayerKind::Storage => {
                        serde_json::to_value(&storage_volume).expect("serializable")
                    }
                    LayerKind::Drbd | LayerKind::Mirror => {
                        json!({ "drbd_volume_definition": { "volume_number": vd.number.get() } })
                    }
                },
            })
            .collect();
        storage_volumes.push(storage_volume);
        volumes.push(rest::Volume {
            volume_number: i32::from(vd.number.get()),
            storage_pool_name: Some(resource.storage_pool.to_string()),
            provider_kind: pool.map(|p| p.provider_kind),
            device_path,
            allocated_size_kib: allocated,
            usable_size_kib: usable,
            props: Props::new(),
            flags: Vec::new(),
            state: rest::VolumeState {
                disk_state: Some(disk_state),
                replication_states: BTreeMap::new(),
            },
            layer_data_list,
            uuid: None,
            reports,
        });
    }
    rest::ResourceWithVolumes {
        resource: rest::Resource {
            name: rd.name.to_string(),
            node_name: resource.node.to_string(),
            props: resource.props.clone(),
            flags: resource.flags(),
            layer_object: Some(layer_object(&rd.layer_stack, storage_volumes)),
            state: Some(rest::ResourceState {
                in_use: Some(false),
            }),
            uuid: Some(resource.uuid.clone()),
            create_timestamp: Some(resource.create_timestamp),
            effective_props: None,
        },
        volumes,
        shared_name: None,
    }
}

/// `GET /v1/view/resources`: every resource matching `filter`, ordered by resource then node.
pub fn resources(
    cluster: &Cluster,
    runtime: &Runtime,
    filter: &ListFilter,
) -> Vec<rest::ResourceWithVolumes> {
    resources_iter(cluster, runtime, filter).collect()
}

/// The page of resources `filter` selects, each built only when it is consumed: the full view
/// of 20,000 resources is serialized one resource at a time instead of built whole first.
pub fn resources_iter<'a>(
    cluster: &'a Cluster,
    runtime: &'a Runtime,
    filter: &'a ListFilter,
) -> impl Iterator<Item = rest::ResourceWithVolumes> + 'a {
    let selected = cluster
        .resource_definitions
        .values()
        .filter(|rd| filter.resource(rd.name.as_str()))
        .flat_map(|rd| rd.resources.values().map(move |placed| (rd, placed)))
        .filter(|(_, placed)| {
            filter.node(placed.node.as_str())
                && filter.storage_pool(placed.storage_pool.as_str())
                && filter.props(&placed.props)
        });
    filter
        .page_iter(selected)
        .map(|(rd, placed)| resource(cluster, rd, placed, runtime.get(&placed.node)))
}

/// The resources of one definition, optionally on one node.
pub fn resources_of(
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    node: Option<&NodeName>,
) -> Vec<rest::ResourceWithVolumes> {
    rd.resources
        .values()
        .filter(|r| node.is_none_or(|n| &r.node == n))
        .map(|r| resource(cluster, rd, r, runtime.get(&r.node)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::tutorial_cluster;

    #[test]
    fn a_node_that_is_not_online_says_why() {
        let cluster = tutorial_cluster();
        let model = cluster.nodes.values().next().expect("a node");
        let refusal = "the offered state differs from the one this node applied";
        let mut runtime = NodeRuntime {
            status: ConnectionStatus::FullSyncFailed,
            last_error: Some(refusal.to_string()),
            ..Default::default()
        };
        let view = node(model, Some(&runtime));
        assert_eq!(
            view.connection_status,
            Some(ConnectionStatus::FullSyncFailed)
        );
        assert_eq!(view.connection_status_reason.as_deref(), Some(refusal));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["connection_status_reason"], refusal);

        runtime.status = ConnectionStatus::Online;
        let view = node(model, Some(&runtime));
        assert_eq!(view.connection_status_reason, None);
        let json = serde_json::to_value(&view).unwrap();
        assert!(json.get("connection_status_reason").is_none(), "{json}");
        assert_eq!(node(model, None).connection_status_reason, None);
    }
}
