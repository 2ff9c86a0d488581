//! The REST shapes of the object graph, merged with what satellites reported.
//!
//! Read paths only: nothing here changes state. `GET /v1/view/resources` over 20,000 resources
//! must answer in well under 250 ms, so views walk the graph once and look reports up by key.

use std::collections::BTreeMap;
use std::ops::Bound;

use ferrite_proto::{ReplicationReport, Role};
use ferrite_types::api_call_rc::code;
use ferrite_types::rest::{self, Props};
use ferrite_types::{ApiCallRc, ConnectionStatus, LayerKind, NodeName, ResourceName, RetCode};

use super::engine;
use super::placement::Runtime;
use crate::model::{
    Cluster, Node, Resource, ResourceDefinition, ResourceGroup, StoragePool, VolumeDefinition,
    VolumeGroup,
};
use crate::reported::ReportedVolume;
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

    /// Whether a definition is in a list of definitions.
    fn selects_definition(&self, rd: &ResourceDefinition) -> bool {
        self.resource(rd.name.as_str())
            && self.resource_group(rd.resource_group.as_str())
            && self.props(&rd.props)
    }

    /// Whether a resource of `rd` is in the view, the definition's name aside.
    fn selects(&self, placed: &Resource) -> bool {
        self.node(placed.node.as_str())
            && self.storage_pool(placed.storage_pool.as_str())
            && self.props(&placed.props)
    }

    /// Applies offset and limit.
    pub fn page<T>(&self, items: Vec<T>) -> Vec<T> {
        self.page_iter(items.into_iter()).collect()
    }

    /// The page of `items`: skips `offset`, then takes `limit` (0 = all).
    pub fn page_iter<T>(&self, items: impl Iterator<Item = T>) -> impl Iterator<Item = T> {
        items.skip(self.offset).take(self.page_size())
    }

    /// How many items a page holds at most.
    fn page_size(&self) -> usize {
        if self.limit == 0 {
            usize::MAX
        } else {
            self.limit
        }
    }
}

pub fn node(node: &Node, runtime: Option<&NodeRuntime>) -> rest::Node {
    let capabilities = runtime.and_then(|r| r.capabilities.as_ref());
    rest::Node {
        name: node.name.to_string(),
        node_type: node.node_type,
        flags: node.flags.clone(),
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
        // Groups stored before the filter was kept in LINSTOR's shape answer in it too.
        select_filter: super::placement::stored_shape(group.select_filter.clone()),
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

/// LINSTOR's defaults for a DRBD resource's metadata, which MIRROR keeps: peer slots (unless the
/// resource group sets them), activity-log stripes and stripe size, and the transport.
pub const DEFAULT_PEER_SLOTS: i32 = 7;
pub const AL_STRIPES: i32 = 1;
pub const AL_STRIPE_SIZE_KIB: i64 = 32;
pub const TRANSPORT_TYPE: &str = "IP";

/// A layer as LINSTOR's clients know it: the replication layer is DRBD whichever engine runs
/// it (golinstor cannot decode a layer type it does not know); `engine` fields name the engine.
pub fn linstor_layer(layer: LayerKind) -> LayerKind {
    if layer.is_replication() {
        LayerKind::Drbd
    } else {
        layer
    }
}

/// The engine of a replicated definition, as its DRBD-shaped data names it.
fn engine_field(cluster: &Cluster, rd: &ResourceDefinition) -> Option<String> {
    engine::effective(cluster, rd).map(|e| engine::name(e).to_string())
}

fn peer_slots(cluster: &Cluster, rd: &ResourceDefinition) -> i32 {
    cluster
        .resource_groups
        .get(&rd.resource_group)
        .and_then(|g| g.peer_slots)
        .unwrap_or(DEFAULT_PEER_SLOTS)
}

/// The replication layer's definition-wide data; `port` is a member's, in a resource's view.
fn drbd_resource_definition(
    cluster: &Cluster,
    rd: &ResourceDefinition,
    port: Option<u16>,
) -> rest::DrbdResourceDefinitionLayer {
    rest::DrbdResourceDefinitionLayer {
        resource_name_suffix: String::new(),
        peer_slots: Some(peer_slots(cluster, rd)),
        al_stripes: Some(AL_STRIPES),
        al_stripe_size_kib: Some(AL_STRIPE_SIZE_KIB),
        port: port.map(i32::from),
        transport_type: Some(TRANSPORT_TYPE.to_string()),
        secret: rd.secret.clone(),
        down: Some(false),
        engine: engine_field(cluster, rd),
    }
}

fn drbd_volume_definition(
    cluster: &Cluster,
    rd: &ResourceDefinition,
    vd: &VolumeDefinition,
) -> rest::DrbdVolumeDefinition {
    rest::DrbdVolumeDefinition {
        resource_name_suffix: String::new(),
        volume_number: Some(i32::from(vd.number.get())),
        minor_number: vd.minor.and_then(|m| i32::try_from(m).ok()),
        engine: engine_field(cluster, rd),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("REST shapes serialize")
}

pub fn volume_definition(
    cluster: &Cluster,
    rd: &ResourceDefinition,
    vd: &VolumeDefinition,
) -> rest::VolumeDefinition {
    rest::VolumeDefinition {
        volume_number: Some(i32::from(vd.number.get())),
        size_kib: vd.size_kib as i64,
        props: vd.props.clone(),
        flags: vd.flags.clone(),
        layer_data: rd
            .layer_stack
            .iter()
            .map(|l| rest::VolumeDefinitionLayer {
                layer_type: linstor_layer(*l),
                data: l
                    .is_replication()
                    .then(|| to_json(&drbd_volume_definition(cluster, rd, vd))),
            })
            .collect(),
        uuid: Some(vd.uuid.clone()),
    }
}

pub fn resource_definition(
    cluster: &Cluster,
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
                layer_type: linstor_layer(*l),
                data: l
                    .is_replication()
                    .then(|| to_json(&drbd_resource_definition(cluster, rd, None))),
            })
            .collect(),
        uuid: Some(rd.uuid.clone()),
        resource_group_name: Some(rd.resource_group.to_string()),
        volume_definitions: with_volumes.then(|| {
            rd.volume_definitions
                .values()
                .map(|vd| volume_definition(cluster, rd, vd))
                .collect()
        }),
    }
}

pub fn resource_definitions(
    cluster: &Cluster,
    filter: &ListFilter,
    with_volumes: bool,
) -> Vec<rest::ResourceDefinition> {
    filter
        .page_iter(
            cluster
                .resource_definitions
                .values()
                .filter(|rd| filter.selects_definition(rd)),
        )
        .map(|rd| resource_definition(cluster, rd, with_volumes))
        .collect()
}

/// Where a list of definitions sent in pieces (`resource_definitions_piece`) goes on: the last
/// definition sent, and how many the page has taken.
#[derive(Debug, Default)]
pub struct DefinitionCursor {
    last: Option<ResourceName>,
    taken: usize,
}

/// Hands `emit` the next piece of at most `most` definitions `filter` selects, after `cursor`,
/// and returns how many it handed; none once the list is complete. As for the resource view
/// (`next_resources`), each piece is one instant's and the next goes on by name.
pub fn resource_definitions_piece(
    cluster: &Cluster,
    filter: &ListFilter,
    with_volumes: bool,
    cursor: &mut DefinitionCursor,
    most: usize,
    mut emit: impl FnMut(rest::ResourceDefinition),
) -> usize {
    let wanted = most.min(filter.page_size().saturating_sub(cursor.taken));
    if wanted == 0 {
        return 0;
    }
    let selected = |rd: &&ResourceDefinition| filter.selects_definition(rd);
    let definitions: Box<dyn Iterator<Item = &ResourceDefinition>> = match &cursor.last {
        // The first piece: the offset is the page's.
        None => Box::new(filter.page_iter(cluster.resource_definitions.values().filter(selected))),
        Some(last) => Box::new(
            cluster
                .resource_definitions
                .range((Bound::Excluded(last.clone()), Bound::Unbounded))
                .map(|(_, rd)| rd)
                .filter(selected),
        ),
    };
    let mut handed = 0;
    let mut last = None;
    for rd in definitions.take(wanted) {
        emit(resource_definition(cluster, rd, with_volumes));
        last = Some(rd);
        handed += 1;
    }
    if let Some(rd) = last {
        cursor.last = Some(rd.name.clone());
    }
    cursor.taken += handed;
    handed
}

/// The state of one volume as the satellite reported it.
struct VolumeFacts<'a> {
    report: Option<&'a ReportedVolume>,
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
            Some(report) => report.disk_state.to_string(),
            None if resource.diskless => "Diskless".to_string(),
            None => UNKNOWN_DISK_STATE.to_string(),
        }
    }

    /// The disk state of a replicated volume: the engine's word for it; without one, a
    /// failure of the backing volume, `Diskless` for a member without a disk, else `Unknown`
    /// (the backing volume existing says nothing of its data).
    fn replicated_disk_state(
        &self,
        resource: &Resource,
        engine: Option<&ferrite_proto::ReplicatedVolumeReport>,
    ) -> String {
        if !self.online {
            return UNKNOWN_DISK_STATE.to_string();
        }
        if let Some(volume) = engine {
            return volume.disk_state.clone();
        }
        match self.report {
            Some(report) if report.error.is_some() => report.disk_state.to_string(),
            _ if resource.diskless => "Diskless".to_string(),
            _ => UNKNOWN_DISK_STATE.to_string(),
        }
    }

    /// What is reported of the volume, if it is current.
    fn current(&self) -> Option<&ReportedVolume> {
        self.report.filter(|_| self.online)
    }
}

/// The layer tree of a resource, top first; the replication layer shows as DRBD.
fn layer_object(
    layers: &[LayerKind],
    storage_volumes: Vec<rest::StorageVolume>,
    drbd: Option<rest::DrbdResource>,
) -> rest::ResourceLayer {
    let mut object: Option<rest::ResourceLayer> = None;
    for layer in layers.iter().rev() {
        let children = object.take().into_iter().collect();
        let mut current = rest::ResourceLayer {
            children,
            resource_name_suffix: String::new(),
            layer_type: linstor_layer(*layer),
            drbd: None,
            storage: None,
        };
        match layer {
            LayerKind::Storage => {
                current.storage = Some(rest::StorageResource {
                    storage_volumes: storage_volumes.clone(),
                });
            }
            LayerKind::Drbd | LayerKind::Mirror => current.drbd = drbd.clone(),
        }
        object = Some(current);
    }
    object.expect("a resource's layers are never empty")
}

/// What the engine reports of a member, condensed: whether it may become Primary now, and how
/// strongly (DRBD's `may_promote` and `promotion_score`). It may when it has quorum, no member
/// is Primary (itself included) and it reaches UpToDate data, locally or through a connected
/// peer. The score orders candidates as DRBD's does in spirit, not in its exact numbers: local
/// UpToDate data first, then the number of connected peers.
fn promotion(report: &ReplicationReport) -> (bool, i32) {
    let local =
        !report.volumes.is_empty() && report.volumes.iter().all(|v| v.disk_state == "UpToDate");
    let connected = report
        .peers
        .iter()
        .filter(|p| p.connection == "Connected")
        .count();
    let through_peer = report.peers.iter().any(|p| {
        p.connection == "Connected"
            && !p.volumes.is_empty()
            && p.volumes.iter().all(|v| v.peer_disk == "UpToDate")
    });
    let someone_primary =
        report.role == Role::Primary || report.peers.iter().any(|p| p.role == Role::Primary);
    let may = report.quorum && !someone_primary && (local || through_peer);
    let score = if may {
        10_000 + if local { 1_000 } else { 0 } + connected as i32
    } else {
        0
    };
    (may, score)
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
    let replicated = rd.is_replicated();
    let engine = engine_field(cluster, rd);
    // What the engine reports, only while it is current.
    let engine_report = runtime
        .filter(|_| online && replicated)
        .and_then(|r| r.replication(rd.name.as_str()));
    let mut volumes = Vec::with_capacity(rd.volume_definitions.len());
    let mut storage_volumes = Vec::with_capacity(rd.volume_definitions.len());
    let mut drbd_volumes = Vec::new();
    for vd in rd.volume_definitions.values() {
        let number = vd.number.get();
        let facts = VolumeFacts {
            report: runtime.and_then(|r| r.volumes.get(rd.name.key())?.get(&number)),
            online,
        };
        let report = facts.current();
        let backing_device = report.and_then(|r| r.device_path.as_deref().map(String::from));
        let allocated = report.and_then(|r| r.allocated_size_kib).map(|v| v as i64);
        let backing_usable = report.and_then(|r| r.usable_size_kib).map(|v| v as i64);
        let storage_volume = rest::StorageVolume {
            volume_number: i32::from(number),
            device_path: backing_device.clone(),
            allocated_size_kib: allocated,
            usable_size_kib: backing_usable,
            disk_state: Some(facts.disk_state(resource)),
        };
        let mut reports: Vec<ApiCallRc> = report
            .and_then(|r| r.error.as_deref())
            .map(|e| {
                vec![
                    ApiCallRc::new(RetCode::error(code::FAIL_UNKNOWN_ERROR), e)
                        .obj_ref("RscDfn", rd.name.as_str())
                        .obj_ref("Node", resource.node.as_str())
                        .obj_ref("VlmNr", vd.number.to_string()),
                ]
            })
            .unwrap_or_default();
        let (disk_state, device_path, usable, replication_states, drbd_data) = if replicated {
            let engine_volume =
                engine_report.and_then(|r| r.volumes.iter().find(|v| v.volume_number == number));
            let disk_state = facts.replicated_disk_state(resource, engine_volume);
            let device_path = engine_volume.and_then(|v| v.device_path.clone());
            let usable = engine_volume
                .and_then(|v| v.usable_size_kib)
                .map(|v| v as i64)
                .or(backing_usable);
            let replication_states: BTreeMap<String, rest::ReplicationState> = engine_report
                .into_iter()
                .flat_map(|r| &r.peers)
                .filter_map(|peer| {
                    let volume = peer.volumes.iter().find(|v| v.volume_number == number)?;
                    Some((
                        peer.node_name.clone(),
                        rest::ReplicationState {
                            replication_state: Some(volume.replication.clone()),
                            done_percentage: volume.done_percent,
                        },
                    ))
                })
                .collect();
            if let Some(error) = engine_report.and_then(|r| r.error.as_ref()) {
                reports.push(
                    ApiCallRc::new(RetCode::error(code::FAIL_UNKNOWN_ERROR), error.clone())
                        .obj_ref("RscDfn", rd.name.as_str())
                        .obj_ref("Node", resource.node.as_str())
                        .obj_ref("VlmNr", vd.number.to_string()),
                );
            }
            // The kernel's DRBD names its device by the minor; MIRROR's path depends on the
            // node's device root, so only its report gives it.
            let device_path = device_path.or_else(|| {
                (rd.replication_layer() == Some(LayerKind::Drbd))
                    .then_some(vd.minor)
                    .flatten()
                    .map(|minor| format!("/dev/drbd{minor}"))
            });
            let drbd_volume = rest::DrbdVolume {
                drbd_volume_definition: drbd_volume_definition(cluster, rd, vd),
                device_path: device_path.clone().unwrap_or_default(),
                backing_device: backing_device.clone().filter(|_| !resource.diskless),
                meta_disk: (!resource.diskless).then(|| "internal".to_string()),
                allocated_size_kib: allocated.filter(|_| !resource.diskless).unwrap_or(0),
                usable_size_kib: usable.unwrap_or(0),
                disk_state: Some(disk_state.clone()),
                nbd_uri: engine_volume.and_then(|v| v.nbd_uri.clone()),
                nbd_tcp_uri: engine_volume.and_then(|v| v.nbd_tcp_uri.clone()),
                engine: engine.clone(),
            };
            drbd_volumes.push(drbd_volume.clone());
            (
                disk_state,
                device_path,
                usable,
                replication_states,
                Some(drbd_volume),
            )
        } else {
            (
                facts.disk_state(resource),
                backing_device.clone(),
                backing_usable,
                BTreeMap::new(),
                None,
            )
        };
        let layer_data_list = rd
            .resource_layers()
            .iter()
            .map(|layer| rest::VolumeLayer {
                layer_type: linstor_layer(*layer),
                data: match (layer, &drbd_data) {
                    (LayerKind::Storage, _) => {
                        rest::VolumeLayerData::Storage(storage_volume.clone())
                    }
                    (LayerKind::Drbd | LayerKind::Mirror, Some(drbd)) => {
                        rest::VolumeLayerData::Drbd(drbd.clone())
                    }
                    (LayerKind::Drbd | LayerKind::Mirror, None) => {
                        rest::VolumeLayerData::Json(serde_json::Value::Null)
                    }
                },
            })
            .collect();
        storage_volumes.push(storage_volume);
        volumes.push(rest::Volume {
            volume_number: i32::from(number),
            storage_pool_name: Some(resource.storage_pool.to_string()),
            provider_kind: pool.map(|p| p.provider_kind),
            device_path,
            allocated_size_kib: allocated,
            usable_size_kib: usable,
            props: Props::new(),
            flags: Vec::new(),
            state: rest::VolumeState {
                disk_state: Some(disk_state),
                replication_states,
            },
            layer_data_list,
            uuid: None,
            reports,
        });
    }
    let drbd = replicated.then(|| {
        // The kernel's DRBD says both itself; MIRROR's are worked out here.
        let (may_promote, promotion_score) = engine_report
            .map(|r| match (r.may_promote, r.promotion_score) {
                (Some(may), Some(score)) => (may, i32::try_from(score).unwrap_or(i32::MAX)),
                _ => promotion(r),
            })
            .unzip();
        rest::DrbdResource {
            drbd_resource_definition: Some(drbd_resource_definition(cluster, rd, resource.port)),
            node_id: resource.node_id.map(i32::from),
            tcp_ports: resource.port.map(i32::from).into_iter().collect(),
            peer_slots: Some(peer_slots(cluster, rd)),
            al_stripes: Some(AL_STRIPES),
            al_size: Some(AL_STRIPE_SIZE_KIB * i64::from(AL_STRIPES)),
            flags: if resource.diskless {
                vec!["DISKLESS".to_string()]
            } else {
                Vec::new()
            },
            drbd_volumes,
            connections: engine_report
                .into_iter()
                .flat_map(|r| &r.peers)
                .map(|peer| {
                    (
                        peer.node_name.clone(),
                        rest::DrbdConnection {
                            connected: peer.connection == "Connected",
                            message: peer.connection.clone(),
                        },
                    )
                })
                .collect(),
            promotion_score,
            may_promote,
            engine: engine.clone(),
            role: engine_report.map(|r| format!("{:?}", r.role)),
            quorum: engine_report.map(|r| r.quorum),
        }
    });
    let in_use = if replicated {
        engine_report.map(|r| r.in_use)
    } else {
        Some(false)
    };
    rest::ResourceWithVolumes {
        resource: rest::Resource {
            name: rd.name.to_string(),
            node_name: resource.node.to_string(),
            props: resource.props.clone(),
            flags: resource.flags(),
            layer_object: Some(layer_object(rd.resource_layers(), storage_volumes, drbd)),
            state: Some(rest::ResourceState { in_use }),
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
    selected_resources(cluster, filter)
        .map(|(rd, placed)| resource(cluster, rd, placed, runtime.get(&placed.node)))
}

/// The (definition, resource) pairs of the page `filter` selects. Without a filter, the page
/// starts from the graph's index of positions, so a page far into the list costs what one at
/// its start does; a filter is applied before the offset, so it walks from the start.
fn selected_resources<'a>(
    cluster: &'a Cluster,
    filter: &'a ListFilter,
) -> Box<dyn Iterator<Item = (&'a ResourceDefinition, &'a Resource)> + 'a> {
    let unfiltered = filter.resources.is_empty()
        && filter.nodes.is_empty()
        && filter.storage_pools.is_empty()
        && filter.props.is_empty();
    if unfiltered {
        return Box::new(
            cluster
                .resources_from(filter.offset)
                .take(filter.page_size()),
        );
    }
    let selected = cluster
        .resource_definitions
        .values()
        .filter(|rd| filter.resource(rd.name.as_str()))
        .flat_map(|rd| rd.resources.values().map(move |placed| (rd, placed)))
        .filter(|(_, placed)| filter.selects(placed));
    Box::new(filter.page_iter(selected))
}

/// Where a view sent in pieces (`next_resources`) goes on: the last resource sent, by
/// definition and node, and how many the page has taken.
#[derive(Debug, Default)]
pub struct ViewCursor {
    last: Option<(ResourceName, NodeName)>,
    taken: usize,
}

/// The (definition, resource) pairs of the next piece of at most `most` resources of the view
/// `filter` selects, after `cursor`, which moves past them; none once the view is complete.
/// The caller builds each with [`resource`], in any order or in parallel, under the same lock.
///
/// Each piece is built and serialized under the graph's read lock and sent without it, so the
/// view of 200,000 resources neither holds the lock nor exists whole as text. The view is
/// therefore not one instant's: a resource created or deleted while it is sent is in it or not
/// as the cursor had passed its place, and none is sent twice. Each resource is one instant's.
pub fn next_resources<'a>(
    cluster: &'a Cluster,
    filter: &'a ListFilter,
    cursor: &mut ViewCursor,
    most: usize,
) -> Vec<(&'a ResourceDefinition, &'a Resource)> {
    let wanted = most.min(filter.page_size().saturating_sub(cursor.taken));
    if wanted == 0 {
        return Vec::new();
    }
    let piece: Vec<_> = match &cursor.last {
        // The first piece: the offset is the page's, as for a view answered whole.
        None => selected_resources(cluster, filter).take(wanted).collect(),
        // Later pieces walk on by name from the last one sent: positions may have moved.
        Some((last_definition, last_node)) => cluster
            .resource_definitions
            .range(last_definition.clone()..)
            .filter(|(_, rd)| filter.resource(rd.name.as_str()))
            .flat_map(|(name, rd)| {
                rd.resources
                    .iter()
                    .filter(move |(node, _)| name != last_definition || *node > last_node)
                    .map(move |(_, placed)| (rd, placed))
            })
            .filter(|(_, placed)| filter.selects(placed))
            .take(wanted)
            .collect(),
    };
    if let Some((rd, placed)) = piece.last() {
        cursor.last = Some((rd.name.clone(), placed.node.clone()));
    }
    cursor.taken += piece.len();
    piece
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
    use crate::app::testing::{
        add_resource, commit, engines_runtime, replicated_group, spawn, tutorial_cluster,
    };
    use crate::model::Op;
    use ferrite_proto::{
        NodeReport, PeerReport, PeerVolumeReport, ReplicatedVolumeReport, ReplicationEngine,
        VolumeReport,
    };

    /// golinstor's types (`client/resource.go`, `client/resourcedefinition.go`), with its JSON
    /// types: a field of another type, or a layer type golinstor does not know, fails to
    /// decode as it would in Go. Unknown fields are ignored, as Go's decoder does.
    ///
    /// Go's decoder leaves a missing field at its zero value, hence `#[serde(default)]`.
    #[allow(dead_code)]
    mod golinstor {
        use std::collections::HashMap;

        use serde::Deserialize;
        use serde::de::Error as _;

        /// `devicelayerkind.DeviceLayerKind` values golinstor decodes layer data for.
        pub const LAYER_KINDS: &[&str] = &[
            "DRBD",
            "LUKS",
            "STORAGE",
            "NVME",
            "WRITECACHE",
            "CACHE",
            "BCACHE",
        ];

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct ResourceWithVolumes {
            pub name: String,
            pub node_name: String,
            pub flags: Vec<String>,
            pub layer_object: ResourceLayer,
            pub state: ResourceState,
            pub create_timestamp: i64,
            pub volumes: Vec<Volume>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct ResourceState {
            pub in_use: Option<bool>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct ResourceLayer {
            #[serde(default)]
            pub children: Vec<ResourceLayer>,
            pub resource_name_suffix: String,
            #[serde(rename = "type")]
            pub layer_type: String,
            pub drbd: Option<DrbdResource>,
            pub storage: Option<StorageResource>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct DrbdResource {
            pub drbd_resource_definition: DrbdResourceDefinitionLayer,
            pub node_id: i32,
            pub peer_slots: i32,
            pub al_stripes: i32,
            pub al_size: i64,
            pub flags: Vec<String>,
            pub drbd_volumes: Vec<DrbdVolume>,
            pub connections: HashMap<String, DrbdConnection>,
            pub promotion_score: i32,
            pub may_promote: bool,
            // Ferrite's addition, which Go ignores; read here to check it.
            pub engine: String,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct DrbdResourceDefinitionLayer {
            pub resource_name_suffix: String,
            pub peer_slots: i32,
            pub al_stripes: i32,
            pub al_stripe_size_kib: i64,
            pub port: Option<i32>,
            pub transport_type: String,
            pub secret: String,
            pub down: bool,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct DrbdVolume {
            pub drbd_volume_definition: DrbdVolumeDefinition,
            pub device_path: String,
            pub backing_device: Option<String>,
            pub meta_disk: Option<String>,
            pub allocated_size_kib: i64,
            pub usable_size_kib: i64,
            pub disk_state: String,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct DrbdVolumeDefinition {
            pub resource_name_suffix: String,
            pub volume_number: i32,
            pub minor_number: i32,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct DrbdConnection {
            pub connected: bool,
            pub message: String,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct StorageResource {
            pub storage_volumes: Vec<StorageVolume>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct StorageVolume {
            pub volume_number: i32,
            pub device_path: Option<String>,
            pub allocated_size_kib: Option<i64>,
            pub usable_size_kib: Option<i64>,
            pub disk_state: Option<String>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct Volume {
            pub volume_number: i32,
            pub storage_pool_name: String,
            pub provider_kind: String,
            pub device_path: String,
            pub allocated_size_kib: Option<i64>,
            pub usable_size_kib: Option<i64>,
            pub state: VolumeState,
            pub layer_data_list: Vec<VolumeLayer>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct VolumeState {
            pub disk_state: String,
            #[serde(default)]
            pub replication_states: HashMap<String, ReplicationState>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct ReplicationState {
            pub replication_state: String,
            pub done_percentage: Option<f64>,
        }

        /// `VolumeLayer.Data` is decoded by `type`.
        #[derive(Default)]
        pub struct VolumeLayer {
            pub layer_type: String,
            pub drbd: Option<DrbdVolume>,
            pub storage: Option<StorageVolume>,
        }

        impl<'de> Deserialize<'de> for VolumeLayer {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize, Default)]
                #[serde(default)]
                struct Raw {
                    #[serde(rename = "type")]
                    layer_type: String,
                    data: serde_json::Value,
                }
                let raw = Raw::deserialize(d)?;
                let err = |e: serde_json::Error| D::Error::custom(e);
                let mut layer = VolumeLayer {
                    layer_type: raw.layer_type.clone(),
                    drbd: None,
                    storage: None,
                };
                match raw.layer_type.as_str() {
                    "DRBD" => layer.drbd = Some(serde_json::from_value(raw.data).map_err(err)?),
                    "STORAGE" => {
                        layer.storage = Some(serde_json::from_value(raw.data).map_err(err)?)
                    }
                    other => return Err(D::Error::custom(format!("unknown layer type {other}"))),
                }
                Ok(layer)
            }
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct ResourceDefinition {
            pub name: String,
            pub layer_data: Vec<ResourceDefinitionLayer>,
            pub volume_definitions: Vec<VolumeDefinition>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct ResourceDefinitionLayer {
            #[serde(rename = "type")]
            pub layer_type: String,
            pub data: Option<DrbdResourceDefinitionLayer>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct VolumeDefinition {
            pub volume_number: i32,
            pub size_kib: u64,
            pub layer_data: Vec<VolumeDefinitionLayer>,
        }

        #[derive(Deserialize, Default)]
        #[serde(default)]
        pub struct VolumeDefinitionLayer {
            #[serde(rename = "type")]
            pub layer_type: String,
            pub data: Option<DrbdVolumeDefinition>,
        }
    }

    /// Every `"type"` in a JSON document.
    fn layer_types(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    if key == "type"
                        && let Some(text) = value.as_str()
                    {
                        out.push(text.to_string());
                    }
                    layer_types(value, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| layer_types(v, out)),
            _ => {}
        }
    }

    /// `web` on the tutorial's MIRROR nodes: two disks and a tiebreaker; the first disk's node
    /// is Primary and UpToDate, the second a SyncTarget at 43.2 %, the third offline. Also
    /// `later`, a definition without a layer list (nor one in its group) not placed yet.
    fn mirror_cluster() -> (Cluster, Runtime, Vec<NodeName>) {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        let runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        commit(&mut cluster, &runtime, |c, r| {
            crate::app::resource_groups::spawn(
                c,
                r,
                ferrite_types::DEFAULT_RESOURCE_GROUP,
                &rest::ResourceGroupSpawn {
                    resource_definition_name: "later".into(),
                    volume_sizes: vec![1 << 20],
                    definitions_only: true,
                    ..Default::default()
                },
            )
        });
        let rd = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        let mut diskful: Vec<NodeName> = rd
            .resources
            .values()
            .filter(|r| !r.diskless)
            .map(|r| r.node.clone())
            .collect();
        diskful.sort();
        let tiebreaker = rd
            .resources
            .values()
            .find(|r| r.tiebreaker)
            .unwrap()
            .node
            .clone();
        let mut runtime = engines_runtime(&cluster, &[LayerKind::Mirror]);
        let peer = |name: &NodeName, replication: &str, done: Option<f64>, disk: &str| PeerReport {
            node_name: name.to_string(),
            node_id: 0,
            connection: "Connected".into(),
            role: Role::Secondary,
            volumes: vec![PeerVolumeReport {
                volume_number: 0,
                replication: replication.into(),
                peer_disk: disk.into(),
                done_percent: done,
                out_of_sync_kib: 0,
            }],
        };
        let engine_report = |in_use: bool, disk: &str, peers: Vec<PeerReport>| ReplicationReport {
            resource: "web".into(),
            engine: ReplicationEngine::Mirror,
            role: if in_use {
                Role::Primary
            } else {
                Role::Secondary
            },
            in_use,
            quorum: true,
            volumes: vec![ReplicatedVolumeReport {
                volume_number: 0,
                minor: Some(1000),
                disk_state: disk.into(),
                device_path: Some("/dev/ferrite/web/0".into()),
                nbd_uri: Some("nbd+unix:///web/0?socket=/run/ferrite/web/0.nbd".into()),
                nbd_tcp_uri: None,
                usable_size_kib: Some(1 << 20),
            }],
            peers,
            error: None,
            may_promote: None,
            promotion_score: None,
        };
        let mut connecting = peer(&tiebreaker, "Off", None, "Diskless");
        connecting.connection = "Connecting".into();
        let reports = [
            (
                &diskful[0],
                engine_report(
                    true,
                    "UpToDate",
                    vec![
                        peer(&diskful[1], "SyncSource", Some(43.2), "Inconsistent"),
                        connecting,
                    ],
                ),
            ),
            (
                &diskful[1],
                engine_report(
                    false,
                    "Inconsistent",
                    vec![PeerReport {
                        role: Role::Primary,
                        ..peer(&diskful[0], "SyncTarget", Some(43.2), "UpToDate")
                    }],
                ),
            ),
        ];
        for (node, report) in reports {
            runtime.get_mut(node).unwrap().absorb(NodeReport {
                volumes: vec![VolumeReport {
                    resource: "web".into(),
                    volume_number: 0,
                    device_path: Some("/dev/loop7".into()),
                    allocated_size_kib: Some(4096),
                    usable_size_kib: Some((1 << 20) + 4096),
                    disk_state: "UpToDate".into(),
                    error: None,
                }],
                replication: vec![report],
                ..Default::default()
            });
        }
        runtime.get_mut(&tiebreaker).unwrap().status = ConnectionStatus::Offline;
        (
            cluster,
            runtime,
            vec![diskful[0].clone(), diskful[1].clone(), tiebreaker],
        )
    }

    #[test]
    fn a_drbd_resource_shows_what_the_kernel_reports() {
        use crate::app::testing::engine_report;
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd", "storage"]);
        let mut runtime = engines_runtime(&cluster, &[LayerKind::Drbd]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let rd = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        assert_eq!(rd.replication_layer(), Some(LayerKind::Drbd));
        let resource = rd.resources.values().find(|r| !r.diskless).unwrap();
        let peer = rd
            .resources
            .values()
            .find(|r| r.node != resource.node)
            .unwrap();
        let mut report = engine_report(rd, resource);
        report.engine = ReplicationEngine::Drbd;
        report.volumes[0].disk_state = "Inconsistent".into();
        report.volumes[0].device_path = Some("/dev/drbd1000".into());
        // What the kernel says of promotion wins over what the controller would work out.
        report.may_promote = Some(false);
        report.promotion_score = Some(10101);
        report.peers = vec![PeerReport {
            node_name: peer.node.to_string(),
            node_id: peer.node_id.unwrap(),
            connection: "StandAlone".into(),
            role: Role::Unknown,
            volumes: vec![PeerVolumeReport {
                volume_number: 0,
                replication: "Off".into(),
                peer_disk: "DUnknown".into(),
                done_percent: None,
                out_of_sync_kib: 4096,
            }],
        }];
        report.error = Some("split brain with a peer".into());
        let reported = runtime.get_mut(&resource.node).unwrap();
        reported.absorb(NodeReport {
            replication: vec![report],
            ..Default::default()
        });
        let view = super::resource(&cluster, rd, resource, runtime.get(&resource.node));
        let drbd = view
            .resource
            .layer_object
            .as_ref()
            .unwrap()
            .drbd
            .clone()
            .unwrap();
        assert_eq!(drbd.engine.as_deref(), Some("DRBD"));
        assert_eq!(drbd.may_promote, Some(false));
        assert_eq!(drbd.promotion_score, Some(10101));
        assert_eq!(drbd.node_id, resource.node_id.map(i32::from));
        let connection = &drbd.connections[peer.node.as_str()];
        assert!(!connection.connected);
        assert_eq!(connection.message, "StandAlone");
        let definition = drbd.drbd_resource_definition.as_ref().unwrap();
        assert!(definition.port.is_some() && definition.secret.is_some());
        assert_eq!(drbd.drbd_volumes[0].device_path, "/dev/drbd1000");
        assert_eq!(
            drbd.drbd_volumes[0].disk_state.as_deref(),
            Some("Inconsistent")
        );
        assert_eq!(
            view.volumes[0].state.disk_state.as_deref(),
            Some("Inconsistent")
        );
        assert_eq!(
            view.volumes[0].state.replication_states[peer.node.as_str()]
                .replication_state
                .as_deref(),
            Some("Off")
        );
        assert!(
            view.volumes[0]
                .reports
                .iter()
                .any(|r| r.message.contains("split brain")),
            "{:?}",
            view.volumes[0].reports
        );
    }

    #[test]
    fn a_mirror_resource_looks_like_drbd_to_golinstor() {
        let (cluster, runtime, nodes) = mirror_cluster();
        let views = resources(&cluster, &runtime, &ListFilter::default());
        let json = serde_json::to_value(&views).unwrap();
        let mut types = Vec::new();
        layer_types(&json, &mut types);
        assert!(
            types
                .iter()
                .all(|t| golinstor::LAYER_KINDS.contains(&t.as_str())),
            "{types:?}"
        );
        let decoded: Vec<golinstor::ResourceWithVolumes> = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| {
                panic!(
                    "golinstor cannot decode it: {e}
{json:#}"
                )
            });
        let by_node = |node: &NodeName| {
            decoded
                .iter()
                .find(|r| r.node_name == node.as_str())
                .unwrap()
        };

        // The Primary: in use, UpToDate, syncing its peer.
        let primary = by_node(&nodes[0]);
        assert_eq!(primary.name, "web");
        assert!(primary.create_timestamp > 0);
        assert_eq!(primary.state.in_use, Some(true));
        let layer = &primary.layer_object;
        assert_eq!(layer.layer_type, "DRBD");
        assert_eq!(layer.resource_name_suffix, "");
        assert_eq!(layer.children[0].layer_type, "STORAGE");
        let storage = layer.children[0].storage.as_ref().unwrap();
        assert_eq!(
            storage.storage_volumes[0].device_path.as_deref(),
            Some("/dev/loop7")
        );
        let drbd = layer.drbd.as_ref().unwrap();
        assert_eq!(drbd.engine, "MIRROR");
        assert!((0..=31).contains(&drbd.node_id));
        assert_eq!((drbd.peer_slots, drbd.al_stripes, drbd.al_size), (7, 1, 32));
        assert!(drbd.flags.is_empty());
        assert!(!drbd.may_promote, "it is Primary already");
        assert_eq!(drbd.promotion_score, 0);
        let definition = &drbd.drbd_resource_definition;
        assert_eq!(definition.resource_name_suffix, "");
        assert_eq!(definition.peer_slots, 7);
        assert_eq!(
            (definition.al_stripes, definition.al_stripe_size_kib),
            (1, 32)
        );
        assert_eq!(definition.transport_type, "IP");
        assert_eq!(definition.secret.len(), 20);
        assert!(!definition.down);
        assert!((7000..=7999).contains(&definition.port.unwrap()));
        let peer = drbd.connections[nodes[1].as_str()].connected;
        assert!(peer);
        let tiebreaker = &drbd.connections[nodes[2].as_str()];
        assert!(!tiebreaker.connected);
        assert_eq!(tiebreaker.message, "Connecting");
        let volume = &drbd.drbd_volumes[0];
        assert_eq!(volume.drbd_volume_definition.volume_number, 0);
        assert_eq!(volume.drbd_volume_definition.minor_number, 1000);
        assert_eq!(volume.drbd_volume_definition.resource_name_suffix, "");
        assert_eq!(volume.device_path, "/dev/ferrite/web/0");
        assert_eq!(volume.backing_device.as_deref(), Some("/dev/loop7"));
        assert_eq!(volume.meta_disk.as_deref(), Some("internal"));
        assert_eq!(volume.allocated_size_kib, 4096);
        assert_eq!(volume.usable_size_kib, 1 << 20);
        assert_eq!(volume.disk_state, "UpToDate");
        let volume = &primary.volumes[0];
        assert_eq!(volume.volume_number, 0);
        assert_eq!(volume.storage_pool_name, "pool_ssd");
        assert_eq!(volume.provider_kind, "FILE_THIN");
        assert_eq!(volume.device_path, "/dev/ferrite/web/0");
        assert_eq!(volume.allocated_size_kib, Some(4096));
        assert_eq!(volume.usable_size_kib, Some(1 << 20));
        assert_eq!(volume.state.disk_state, "UpToDate");
        let sync = &volume.state.replication_states[nodes[1].as_str()];
        assert_eq!(sync.replication_state, "SyncSource");
        assert_eq!(sync.done_percentage, Some(43.2));
        assert_eq!(volume.layer_data_list[0].layer_type, "DRBD");
        let data = volume.layer_data_list[0].drbd.as_ref().unwrap();
        assert_eq!(data.drbd_volume_definition.minor_number, 1000);
        assert_eq!(volume.layer_data_list[1].layer_type, "STORAGE");
        assert_eq!(
            volume.layer_data_list[1]
                .storage
                .as_ref()
                .unwrap()
                .volume_number,
            0
        );
        let raw = json
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["node_name"] == nodes[0].as_str())
            .unwrap();
        assert_eq!(
            raw["volumes"][0]["layer_data_list"][0]["data"]["nbd_uri"],
            "nbd+unix:///web/0?socket=/run/ferrite/web/0.nbd"
        );
        assert_eq!(raw["layer_object"]["drbd"]["role"], "Primary");

        // The SyncTarget: Inconsistent, its progress, not in use.
        let target = by_node(&nodes[1]);
        assert_eq!(target.state.in_use, Some(false));
        let volume = &target.volumes[0];
        assert_eq!(volume.state.disk_state, "Inconsistent");
        let sync = &volume.state.replication_states[nodes[0].as_str()];
        assert_eq!(sync.replication_state, "SyncTarget");
        assert_eq!(sync.done_percentage, Some(43.2));
        assert!(!target.layer_object.drbd.as_ref().unwrap().may_promote);

        // The tiebreaker's node is offline: nothing current is known of it.
        let tiebreaker = json
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["node_name"] == nodes[2].as_str())
            .unwrap();
        assert_eq!(
            tiebreaker["flags"],
            serde_json::json!(["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"])
        );
        assert!(tiebreaker["state"].get("in_use").is_none());
        assert_eq!(tiebreaker["volumes"][0]["state"]["disk_state"], "Unknown");
        assert_eq!(
            tiebreaker["layer_object"]["drbd"]["connections"],
            serde_json::json!({})
        );
        assert_eq!(
            tiebreaker["layer_object"]["drbd"]["flags"],
            serde_json::json!(["DISKLESS"])
        );
        let data = &tiebreaker["volumes"][0]["layer_data_list"][0]["data"];
        assert!(data["meta_disk"].is_null());
        // python-linstor reads these without a default.
        assert_eq!(data["device_path"], "");
        assert_eq!(data["allocated_size_kib"], 0);
        assert_eq!(data["usable_size_kib"], 0);
    }

    /// `tests/compat/drbd_shapes.py` reads the same answers with python-linstor's response
    /// classes, as the `linstor` client does; skipped where python-linstor is not installed
    /// (`scripts/setup.sh` installs it).
    #[test]
    fn python_linstor_reads_a_mirror_resource() {
        let python = |args: &[&str]| {
            std::process::Command::new("python3")
                .args(args)
                .output()
                .ok()
        };
        if !python(&["-c", "import linstor"]).is_some_and(|o| o.status.success()) {
            eprintln!("skipped: python-linstor is not installed");
            return;
        }
        let (cluster, runtime, _) = mirror_cluster();
        let dir = tempfile::tempdir().unwrap();
        let resources_json = dir.path().join("resources.json");
        let definitions_json = dir.path().join("definitions.json");
        let views = resources(&cluster, &runtime, &ListFilter::default());
        std::fs::write(&resources_json, serde_json::to_vec(&views).unwrap()).unwrap();
        let definitions = resource_definitions(&cluster, &ListFilter::default(), true);
        std::fs::write(&definitions_json, serde_json::to_vec(&definitions).unwrap()).unwrap();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/compat/drbd_shapes.py"
        );
        let output = python(&[
            script,
            resources_json.to_str().unwrap(),
            definitions_json.to_str().unwrap(),
        ])
        .expect("python3 runs");
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn a_diskless_member_has_a_device_and_may_promote_through_a_peer() {
        let (cluster, mut runtime, nodes) = mirror_cluster();
        let tiebreaker = &nodes[2];
        let reported = runtime.get_mut(tiebreaker).unwrap();
        reported.status = ConnectionStatus::Online;
        reported.absorb(NodeReport {
            replication: vec![ReplicationReport {
                resource: "web".into(),
                engine: ReplicationEngine::Mirror,
                role: Role::Secondary,
                in_use: false,
                quorum: true,
                volumes: vec![ReplicatedVolumeReport {
                    volume_number: 0,
                    minor: Some(1000),
                    disk_state: "Diskless".into(),
                    device_path: Some("/dev/ferrite/web/0".into()),
                    nbd_uri: None,
                    nbd_tcp_uri: None,
                    usable_size_kib: Some(1 << 20),
                }],
                peers: vec![PeerReport {
                    node_name: nodes[1].to_string(),
                    node_id: 1,
                    connection: "Connected".into(),
                    role: Role::Secondary,
                    volumes: vec![PeerVolumeReport {
                        volume_number: 0,
                        replication: "Established".into(),
                        peer_disk: "UpToDate".into(),
                        done_percent: None,
                        out_of_sync_kib: 0,
                    }],
                }],
                error: None,
                may_promote: None,
                promotion_score: None,
            }],
            ..Default::default()
        });
        let rd = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        let view = resource(
            &cluster,
            rd,
            &rd.resources[tiebreaker],
            runtime.get(tiebreaker),
        );
        let volume = &view.volumes[0];
        assert_eq!(volume.device_path.as_deref(), Some("/dev/ferrite/web/0"));
        assert_eq!(volume.state.disk_state.as_deref(), Some("Diskless"));
        assert_eq!(volume.allocated_size_kib, None);
        let drbd = view.resource.layer_object.unwrap().drbd.unwrap();
        assert_eq!(drbd.may_promote, Some(true));
        assert!(drbd.promotion_score.unwrap() > 0);
        assert_eq!(drbd.drbd_volumes[0].backing_device, None);
        assert_eq!(drbd.drbd_volumes[0].allocated_size_kib, 0);
        assert_eq!(drbd.drbd_volumes[0].device_path, "/dev/ferrite/web/0");
    }

    #[test]
    fn definitions_show_the_drbd_layer_with_the_engine() {
        let (cluster, _, _) = mirror_cluster();
        let json =
            serde_json::to_value(resource_definitions(&cluster, &ListFilter::default(), true))
                .unwrap();
        let decoded: Vec<golinstor::ResourceDefinition> =
            serde_json::from_value(json.clone()).unwrap();
        let web = decoded.iter().find(|rd| rd.name == "web").unwrap();
        assert_eq!(web.layer_data[0].layer_type, "DRBD");
        let data = web.layer_data[0].data.as_ref().unwrap();
        assert_eq!(data.secret.len(), 20);
        assert_eq!(data.port, None, "ports are per node");
        assert_eq!(web.layer_data[1].layer_type, "STORAGE");
        assert!(web.layer_data[1].data.is_none());
        let vd = &web.volume_definitions[0];
        assert_eq!((vd.volume_number, vd.size_kib), (0, 1 << 20));
        assert_eq!(vd.layer_data[0].layer_type, "DRBD");
        assert_eq!(vd.layer_data[0].data.as_ref().unwrap().minor_number, 1000);
        let raw = json
            .as_array()
            .unwrap()
            .iter()
            .find(|rd| rd["name"] == "web")
            .unwrap();
        assert_eq!(raw["layer_data"][0]["data"]["engine"], "MIRROR");
        assert_eq!(
            raw["volume_definitions"][0]["layer_data"][0]["data"]["engine"],
            "MIRROR"
        );
        let mut types = Vec::new();
        layer_types(&json, &mut types);
        assert!(!types.contains(&"MIRROR".to_string()), "{types:?}");
    }

    #[test]
    fn a_definition_without_layers_shows_none_until_placed_as_in_linstor() {
        // LINSTOR stores no layer stack for it and answers `"layer_data": []` for the
        // definition and its volume definitions; golinstor and python-linstor (drbd_data:
        // None) read that.
        let (cluster, _, _) = mirror_cluster();
        let json =
            serde_json::to_value(resource_definitions(&cluster, &ListFilter::default(), true))
                .unwrap();
        let raw = json
            .as_array()
            .unwrap()
            .iter()
            .find(|rd| rd["name"] == "later")
            .unwrap();
        assert_eq!(raw["layer_data"], serde_json::json!([]), "{raw}");
        assert_eq!(
            raw["volume_definitions"][0]["layer_data"],
            serde_json::json!([]),
            "{raw}"
        );
        let decoded: Vec<golinstor::ResourceDefinition> = serde_json::from_value(json).unwrap();
        let later = decoded.iter().find(|rd| rd.name == "later").unwrap();
        assert!(later.layer_data.is_empty());
        assert_eq!(later.volume_definitions[0].size_kib, 1 << 20);
        assert!(later.volume_definitions[0].layer_data.is_empty());
    }

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

    /// Which resources a view lists, in its order: (definition, node).
    fn listed(cluster: &Cluster, filter: &ListFilter) -> Vec<(String, String)> {
        resources(cluster, &Runtime::default(), filter)
            .into_iter()
            .map(|r| (r.resource.name, r.resource.node_name))
            .collect()
    }

    #[test]
    fn pages_of_the_resource_view_add_up_to_the_whole_in_its_order() {
        let mut cluster = tutorial_cluster();
        for (name, nodes) in [
            ("alpha", &["node1", "node2"][..]),
            ("bravo", &["node3"][..]),
            ("charlie", &["node1", "node2", "node4"][..]),
            ("delta", &["node2", "node4"][..]),
        ] {
            for node in nodes {
                add_resource(&mut cluster, name, node, "pool_ssd");
            }
        }
        let page = |offset, limit| ListFilter {
            offset,
            limit,
            ..ListFilter::default()
        };
        let whole = listed(&cluster, &ListFilter::default());
        assert_eq!(whole.len(), 8);
        let mut sorted = whole.clone();
        sorted.sort();
        assert_eq!(whole, sorted, "ordered by definition, then node");

        // Pages of every size, one after another, give the whole view once, in order.
        for limit in 1..=9 {
            let mut joined = Vec::new();
            for offset in (0..whole.len()).step_by(limit) {
                joined.extend(listed(&cluster, &page(offset, limit)));
            }
            assert_eq!(joined, whole, "limit {limit}");
        }
        // limit 0 is no limit; an offset at or past the end is an empty page.
        assert_eq!(listed(&cluster, &page(0, 0)), whole);
        assert_eq!(listed(&cluster, &page(5, 0)), whole[5..]);
        assert!(listed(&cluster, &page(8, 3)).is_empty());
        assert!(listed(&cluster, &page(1000, 0)).is_empty());
        assert_eq!(listed(&cluster, &page(7, 5)), whole[7..]);

        // Filters apply first; the page is taken from what they select.
        let on_node2 = |offset, limit| ListFilter {
            nodes: vec!["NODE2".into()],
            offset,
            limit,
            ..ListFilter::default()
        };
        let selected = listed(&cluster, &on_node2(0, 0));
        assert_eq!(
            selected,
            [("alpha", "node2"), ("charlie", "node2"), ("delta", "node2")]
                .map(|(r, n)| (r.to_string(), n.to_string()))
        );
        assert_eq!(listed(&cluster, &on_node2(1, 1)), selected[1..2]);
        assert!(listed(&cluster, &on_node2(3, 0)).is_empty());
        let of_charlie = ListFilter {
            resources: vec!["charlie".into()],
            offset: 1,
            limit: 5,
            ..ListFilter::default()
        };
        assert_eq!(listed(&cluster, &of_charlie), whole[4..6]);
    }

    /// The tutorial's cluster with 150 definitions `res000`…`res149`, each on one of node1–3 and
    /// every second one on node4 too: 225 resources, over two marks of the index of positions.
    fn resources_150() -> Cluster {
        let mut cluster = tutorial_cluster();
        for index in 0..150 {
            let name = format!("res{index:03}");
            add_resource(
                &mut cluster,
                &name,
                ["node1", "node2", "node3"][index % 3],
                "pool_ssd",
            );
            if index % 2 == 0 {
                add_resource(&mut cluster, &name, "node4", "pool_ssd");
            }
        }
        cluster
    }

    /// Pages far into the view start from the graph's index of positions (one mark per 64
    /// definitions); they must agree with the whole view at every offset, also after changes.
    #[test]
    fn pages_far_into_the_view_agree_with_the_whole_after_changes() {
        let mut cluster = resources_150();
        let page = |offset, limit| ListFilter {
            offset,
            limit,
            ..ListFilter::default()
        };
        let agree = |cluster: &Cluster| {
            let whole = listed(cluster, &ListFilter::default());
            for offset in 0..=whole.len() + 1 {
                let end = (offset + 3).min(whole.len());
                let expected = whole.get(offset..end).unwrap_or_default();
                assert_eq!(
                    listed(cluster, &page(offset, 3)),
                    expected,
                    "offset {offset}"
                );
                assert_eq!(
                    listed(cluster, &page(offset, 0)),
                    whole.get(offset..).unwrap_or_default(),
                    "offset {offset}, no limit"
                );
            }
            for limit in [1, 64, 100, 1000] {
                let mut joined = Vec::new();
                for offset in (0..whole.len()).step_by(limit) {
                    joined.extend(listed(cluster, &page(offset, limit)));
                }
                assert_eq!(joined, whole, "limit {limit}");
            }
            whole.len()
        };
        assert_eq!(agree(&cluster), 225);

        // Remove a definition near the start (its resources first) and one resource further on.
        let first: ResourceName = "res001".parse().unwrap();
        Op::DeleteResource {
            resource: first.clone(),
            node: "node2".parse().unwrap(),
        }
        .apply(&mut cluster);
        Op::DeleteResourceDefinition(first).apply(&mut cluster);
        Op::DeleteResource {
            resource: "res100".parse().unwrap(),
            node: "node4".parse().unwrap(),
        }
        .apply(&mut cluster);
        assert_eq!(agree(&cluster), 223);

        // Add a definition that sorts before every other, with one resource.
        let template = cluster
            .resource_definition(&"res002".parse().unwrap())
            .unwrap()
            .clone();
        let mut placed = template.resources.values().next().unwrap().clone();
        let mut early = template;
        early.name = "aaa".parse().unwrap();
        early.resources = Default::default();
        Op::PutResourceDefinition(early).apply(&mut cluster);
        placed.node = "node1".parse().unwrap();
        Op::PutResource {
            resource: "aaa".parse().unwrap(),
            placed,
        }
        .apply(&mut cluster);
        assert_eq!(agree(&cluster), 224);
        assert_eq!(listed(&cluster, &page(0, 1))[0].0, "aaa");
    }

    /// Calls `piece` (which hands at most `most` items to its argument and returns how many)
    /// until it hands none; the items joined.
    fn joined<T>(most: usize, mut piece: impl FnMut(&mut dyn FnMut(T)) -> usize) -> Vec<T> {
        let mut joined = Vec::new();
        loop {
            let before = joined.len();
            let handed = piece(&mut |item| joined.push(item));
            assert_eq!(handed, joined.len() - before);
            assert!(handed <= most);
            if handed == 0 {
                return joined;
            }
        }
    }

    /// [`next_resources`] with each resource built, as the view's handler builds them: hands
    /// `emit` the next piece of at most `most` resources of the view `filter` selects, after
    /// `cursor`, and returns how many it handed; none once the view is complete.
    fn resources_piece(
        cluster: &Cluster,
        runtime: &Runtime,
        filter: &ListFilter,
        cursor: &mut ViewCursor,
        most: usize,
        mut emit: impl FnMut(rest::ResourceWithVolumes),
    ) -> usize {
        let piece = next_resources(cluster, filter, cursor, most);
        for &(rd, placed) in &piece {
            emit(resource(cluster, rd, placed, runtime.get(&placed.node)));
        }
        piece.len()
    }

    /// Every piece of `filter`'s view, `most` at a time, joined.
    fn pieced(
        cluster: &Cluster,
        filter: &ListFilter,
        cursor: &mut ViewCursor,
        most: usize,
    ) -> Vec<(String, String)> {
        joined(most, |emit| {
            resources_piece(cluster, &Runtime::default(), filter, cursor, most, |r| {
                emit((r.resource.name, r.resource.node_name));
            })
        })
    }

    /// Pages every list answered in pieces is tried with: all, from an offset, a page larger
    /// than a piece, past the end.
    fn pages_to_try() -> Vec<ListFilter> {
        vec![
            ListFilter::default(),
            ListFilter {
                offset: 70,
                ..ListFilter::default()
            },
            ListFilter {
                offset: 3,
                limit: 101,
                ..ListFilter::default()
            },
            ListFilter {
                offset: 500,
                ..ListFilter::default()
            },
        ]
    }

    /// A view answered in pieces is the view answered whole, for every piece size, page and
    /// filter.
    #[test]
    fn a_view_in_pieces_is_the_view_answered_whole() {
        let cluster = resources_150();
        let mut filters = pages_to_try();
        filters.extend([
            ListFilter {
                nodes: vec!["NODE4".into()],
                offset: 2,
                ..ListFilter::default()
            },
            ListFilter {
                resources: vec!["res007".into(), "res008".into(), "res140".into()],
                ..ListFilter::default()
            },
            ListFilter {
                storage_pools: vec!["no_such_pool".into()],
                ..ListFilter::default()
            },
        ]);
        for filter in &filters {
            let whole = listed(&cluster, filter);
            for most in [1, 2, 7, 64, 1000] {
                let joined = pieced(&cluster, filter, &mut ViewCursor::default(), most);
                assert_eq!(joined, whole, "{filter:?}, {most} per piece");
            }
        }
    }

    /// Changes between pieces: what the cursor passed stays as sent, what lies ahead is seen as
    /// it is by then, and no resource is sent twice.
    #[test]
    fn a_view_in_pieces_goes_on_by_name_across_changes() {
        let mut cluster = tutorial_cluster();
        for (name, nodes) in [
            ("bravo", ["node1", "node2"]),
            ("delta", ["node2", "node4"]),
            ("foxtrot", ["node1", "node2"]),
        ] {
            for node in nodes {
                add_resource(&mut cluster, name, node, "pool_ssd");
            }
        }
        let filter = ListFilter::default();
        let mut cursor = ViewCursor::default();
        let first_three = ListFilter {
            limit: 3,
            ..ListFilter::default()
        };
        let first = pieced(&cluster, &first_three, &mut cursor, 3);
        assert_eq!(
            first,
            [("bravo", "node1"), ("bravo", "node2"), ("delta", "node2")]
                .map(|(r, n)| (r.to_string(), n.to_string()))
        );

        // Before the cursor: a new definition (positions shift by one) and a resource of the
        // definition the cursor is in; at the cursor: its resource deleted; after it: a new one.
        add_resource(&mut cluster, "alpha", "node1", "pool_ssd");
        add_resource(&mut cluster, "delta", "node1", "pool_ssd");
        Op::DeleteResource {
            resource: "delta".parse().unwrap(),
            node: "node2".parse().unwrap(),
        }
        .apply(&mut cluster);
        add_resource(&mut cluster, "delta", "node3", "pool_ssd");
        add_resource(&mut cluster, "echo", "node2", "pool_ssd");

        let rest = pieced(&cluster, &filter, &mut cursor, 2);
        assert_eq!(
            rest,
            [
                ("delta", "node3"),
                ("delta", "node4"),
                ("echo", "node2"),
                ("foxtrot", "node1"),
                ("foxtrot", "node2"),
            ]
            .map(|(r, n)| (r.to_string(), n.to_string()))
        );
        // The cursor has ended: it hands out nothing more.
        let handed = resources_piece(
            &cluster,
            &Runtime::default(),
            &filter,
            &mut cursor,
            2,
            |_| panic!("a resource after the end"),
        );
        assert_eq!(handed, 0);
    }

    /// Every piece of the list of definitions `filter` selects, `most` at a time, joined.
    fn definitions_pieced(
        cluster: &Cluster,
        filter: &ListFilter,
        cursor: &mut DefinitionCursor,
        most: usize,
    ) -> Vec<String> {
        joined(most, |emit| {
            resource_definitions_piece(cluster, filter, true, cursor, most, |rd| emit(rd.name))
        })
    }

    /// A list of definitions answered in pieces is the list answered whole, for every piece
    /// size, page and filter, and goes on by name across changes.
    #[test]
    fn a_list_of_definitions_in_pieces_is_the_list_answered_whole() {
        let mut cluster = tutorial_cluster();
        for index in 0..150 {
            add_resource(&mut cluster, &format!("res{index:03}"), "node1", "pool_ssd");
        }
        let names = |filter: &ListFilter| -> Vec<String> {
            resource_definitions(&cluster, filter, true)
                .into_iter()
                .map(|rd| rd.name)
                .collect()
        };
        let mut filters = pages_to_try();
        filters.push(ListFilter {
            resources: vec!["RES007".into(), "res140".into()],
            ..ListFilter::default()
        });
        for filter in &filters {
            let whole = names(filter);
            for most in [1, 2, 7, 64, 1000] {
                let joined =
                    definitions_pieced(&cluster, filter, &mut DefinitionCursor::default(), most);
                assert_eq!(joined, whole, "{filter:?}, {most} per piece");
            }
        }
        assert_eq!(names(&filters[2]).len(), 101);
        assert_eq!(names(&filters[2])[0], "res003");

        // Across changes: the cursor goes on after the last name sent.
        let mut cursor = DefinitionCursor::default();
        let first_two = ListFilter {
            limit: 2,
            ..ListFilter::default()
        };
        assert_eq!(
            definitions_pieced(&cluster, &first_two, &mut cursor, 2),
            ["res000", "res001"]
        );
        add_resource(&mut cluster, "aaa", "node1", "pool_ssd");
        Op::DeleteResource {
            resource: "res002".parse().unwrap(),
            node: "node1".parse().unwrap(),
        }
        .apply(&mut cluster);
        Op::DeleteResourceDefinition("res002".parse().unwrap()).apply(&mut cluster);
        let rest = definitions_pieced(&cluster, &ListFilter::default(), &mut cursor, 50);
        assert_eq!(rest.len(), 147);
        assert_eq!(rest[0], "res003");
    }
}
