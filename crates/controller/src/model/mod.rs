//! The cluster's desired state: the object graph the controller owns.
//!
//! The whole graph lives in memory (LINSTOR's model: nodes with their net interfaces and storage
//! pools, resource groups with volume groups, resource definitions with volume definitions and
//! resources; node and resource connections; the key-value store's instances). It changes only through [`Op`]s, which are first committed to the store and then
//! applied here, so memory never runs ahead of disk.
//!
//! What satellites report about the actual state is not here; see `crate::satellites`.
//!
//! Deletion is two-phase, as in LINSTOR: deleting a resource, a volume definition, a resource
//! definition or a resource's disk first marks it ([`ResourcePhase`], the `DELETE` flag); the
//! satellites concerned delete the backing volumes the marks name and confirm; only then does
//! the controller forget the object (`crate::app::deletions`). A node that is offline gets
//! the deletion when it comes back. Snapshots (`snapshots`) are kept beside the definitions,
//! keyed by resource and snapshot name, and are deleted the same way.

mod by_node;
mod derived;
mod load;
mod ops;
mod positions;
mod snapshots;
mod vec_map;

pub use derived::DerivedIndexes;
pub use load::{LoadError, ReadError};
pub use ops::Op;
pub use snapshots::{
    CutPhase, RestoreSource, RestoreVolume, RollbackState, Snapshot, SnapshotDefinition,
    SnapshotPhase, SnapshotVolumeDefinition,
};
pub use vec_map::VecMap;

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrite_types::rest::{AutoSelectFilter, Props};
use ferrite_types::{
    DEFAULT_DISKLESS_POOL, EncryptionType, LayerKind, NetInterfaceName, NodeName, NodeType,
    PROP_STOR_POOL_NAME, ProviderKind, ResourceGroupName, ResourceName, SnapshotName, StorPoolName,
    VolumeNumber,
};
use serde::{Deserialize, Serialize};

/// The whole desired state.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub cluster_id: String,
    /// The store revision this state corresponds to.
    pub revision: u64,
    /// The store's epoch: how many times it was restored from a backup.
    pub epoch: u64,
    pub props: Props,
    pub nodes: BTreeMap<NodeName, Node>,
    pub resource_groups: BTreeMap<ResourceGroupName, ResourceGroup>,
    pub resource_definitions: BTreeMap<ResourceName, ResourceDefinition>,
    /// Snapshot definitions (with their snapshots), by resource definition and snapshot name.
    pub snapshot_definitions: BTreeMap<(ResourceName, SnapshotName), SnapshotDefinition>,
    pub error_reports: BTreeMap<String, StoredErrorReport>,
    /// Key-value store instances, by upper-cased name.
    pub key_value_stores: BTreeMap<String, KeyValueStore>,
    /// Node connections with properties, by their nodes in sorted order.
    pub node_connections: BTreeMap<(NodeName, NodeName), Connection>,
    /// Resource connections with properties: the definition and its two nodes, sorted.
    pub resource_connections: BTreeMap<(ResourceName, NodeName, NodeName), Connection>,
    /// Indexes derived from the graph (`derived`): where the list of every resource passes
    /// each 64th definition (`positions`), for pages; which definitions have a resource on each
    /// node (`by_node`), for full states.
    pub derived: DerivedIndexes,
}

/// A key-value store instance: a property container clients keep their own data in
/// (LINSTOR's KVS; the Kubernetes and Proxmox drivers use it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValueStore {
    /// As the client spelled it; names are case-insensitive.
    pub name: String,
    #[serde(default)]
    pub props: Props,
}

/// The properties of the connection between two nodes, or between a definition's resources on
/// two nodes. `node_a` sorts before `node_b`: a connection is one object whichever way round a
/// client names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub node_a: NodeName,
    pub node_b: NodeName,
    #[serde(default)]
    pub props: Props,
}

impl Connection {
    /// The key of the connection between `a` and `b`, in sorted order.
    pub fn key(a: &NodeName, b: &NodeName) -> (NodeName, NodeName) {
        if a <= b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        }
    }
}

/// A node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub name: NodeName,
    pub uuid: String,
    pub node_type: NodeType,
    #[serde(default)]
    pub props: Props,
    pub net_interfaces: Vec<NetInterface>,
    /// The interface the controller reaches the satellite on.
    pub active_net_interface: NetInterfaceName,
    /// LINSTOR's node flags Ferrite keeps: `DELETE` (its resources are being deleted, then the
    /// node goes) and `EVACUATE` (its resources are being moved to other nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(skip)]
    pub storage_pools: BTreeMap<StorPoolName, StoragePool>,
}

/// LINSTOR's flag of a node whose resources are being moved elsewhere (`node evacuate`).
pub const FLAG_EVACUATE: &str = "EVACUATE";

impl Node {
    /// Whether it is marked for deletion: it goes once its last resource is deleted.
    pub fn is_deleting(&self) -> bool {
        has_flag(&self.flags, FLAG_DELETE)
    }

    /// Whether it is being evacuated: nothing new is placed on it.
    pub fn is_evacuating(&self) -> bool {
        has_flag(&self.flags, FLAG_EVACUATE)
    }
}

impl Node {
    pub fn net_interface(&self, name: &NetInterfaceName) -> Option<&NetInterface> {
        self.net_interfaces.iter().find(|n| &n.name == name)
    }

    pub fn active_interface(&self) -> Option<&NetInterface> {
        self.net_interface(&self.active_net_interface)
    }

    /// Where the controller dials the satellite.
    pub fn satellite_address(&self) -> Option<std::net::SocketAddr> {
        self.active_interface()
            .map(|i| std::net::SocketAddr::new(i.address, i.satellite_port))
    }
}

/// A node's network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetInterface {
    pub name: NetInterfaceName,
    pub uuid: String,
    pub address: IpAddr,
    pub satellite_port: u16,
    pub encryption: EncryptionType,
}

/// A storage pool on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoragePool {
    pub name: StorPoolName,
    pub uuid: String,
    pub provider_kind: ProviderKind,
    #[serde(default)]
    pub props: Props,
    #[serde(default)]
    pub shared_space: Option<String>,
    #[serde(default)]
    pub external_locking: bool,
}

impl StoragePool {
    /// What the provider allocates from: `StorDriver/StorPoolName`.
    pub fn backing_pool_name(&self) -> &str {
        self.props
            .get(PROP_STOR_POOL_NAME)
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn is_diskless(&self) -> bool {
        !self.provider_kind.has_backing_device()
    }
}

/// A resource group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceGroup {
    pub name: ResourceGroupName,
    pub uuid: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub props: Props,
    #[serde(default)]
    pub select_filter: AutoSelectFilter,
    #[serde(default)]
    pub peer_slots: Option<i32>,
    #[serde(skip)]
    pub volume_groups: BTreeMap<VolumeNumber, VolumeGroup>,
}

/// A volume group of a resource group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeGroup {
    pub number: VolumeNumber,
    pub uuid: String,
    #[serde(default)]
    pub props: Props,
    #[serde(default)]
    pub flags: Vec<String>,
}

/// A resource definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceDefinition {
    pub name: ResourceName,
    pub uuid: String,
    #[serde(default)]
    pub external_name: Option<String>,
    #[serde(default)]
    pub props: Props,
    #[serde(default)]
    pub flags: Vec<String>,
    pub resource_group: ResourceGroupName,
    /// Top first; ends with STORAGE. Empty for a definition created without a layer list (and
    /// whose resource group has none) that has not been placed yet: it gets LINSTOR's default
    /// when its first resources are placed (`crate::app::engine::complete`), which stores the
    /// stack chosen. LINSTOR stores such a definition the same way, so no marker is needed and
    /// the store's rows keep their shape.
    pub layer_stack: Vec<LayerKind>,
    /// The shared secret its replicated members authenticate each other with; allocated when
    /// the stack has a replication layer (`crate::app::allocation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A rollback of its replicated resource under way (`crate::app::snapshots`): the members
    /// it names are kept down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackState>,
    #[serde(skip)]
    pub volume_definitions: VecMap<VolumeNumber, VolumeDefinition>,
    #[serde(skip)]
    pub resources: VecMap<NodeName, Resource>,
}

/// LINSTOR's flag of an object marked for deletion.
pub const FLAG_DELETE: &str = "DELETE";

pub(crate) fn has_flag(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

impl ResourceDefinition {
    /// Whether it is marked for deletion: its resources are being deleted, then it goes.
    pub fn is_deleting(&self) -> bool {
        has_flag(&self.flags, FLAG_DELETE)
    }

    /// Whether its layer stack is still to be chosen: created without a layer list, never
    /// placed (see [`ResourceDefinition::layer_stack`]).
    pub fn default_stack_pending(&self) -> bool {
        self.layer_stack.is_empty()
    }

    /// The layers of its resources: the stack, or STORAGE alone while the default is pending.
    /// A definition's first placement chooses its stack in the plan that places it, so no
    /// resource meets a pending stack; a reader that asks anyway gets STORAGE, the layer every
    /// stack ends with, rather than no layer at all.
    pub fn resource_layers(&self) -> &[LayerKind] {
        if self.layer_stack.is_empty() {
            &[LayerKind::Storage]
        } else {
            &self.layer_stack
        }
    }

    /// Whether a replication layer is in the stack.
    pub fn is_replicated(&self) -> bool {
        self.layer_stack.iter().any(|l| l.is_replication())
    }

    /// The replication layer of the stack, if any.
    pub fn replication_layer(&self) -> Option<LayerKind> {
        self.layer_stack
            .iter()
            .copied()
            .find(|l| l.is_replication())
    }

    /// The sum of the volume sizes, KiB.
    pub fn total_size_kib(&self) -> u64 {
        self.volume_definitions.values().map(|v| v.size_kib).sum()
    }

    pub fn diskful_count(&self) -> usize {
        self.resources.values().filter(|r| !r.diskless).count()
    }
}

impl VolumeDefinition {
    /// Whether it is marked for deletion: its backing volumes are being deleted, then it goes.
    pub fn is_deleting(&self) -> bool {
        has_flag(&self.flags, FLAG_DELETE)
    }
}

/// A volume definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeDefinition {
    pub number: VolumeNumber,
    pub uuid: String,
    pub size_kib: u64,
    #[serde(default)]
    pub props: Props,
    #[serde(default)]
    pub flags: Vec<String>,
    /// The device minor of a replicated volume: cluster-wide, from 1000, as LINSTOR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<u32>,
}

/// Where a resource is in its life.
///
/// ```text
///   Active ──delete──▶ Deleting ──satellite confirms──▶ (forgotten)
///   Active ──toggle-disk --diskless──▶ DiskRemoving ──satellite confirms──▶ Active (diskless)
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourcePhase {
    #[default]
    Active,
    /// Marked for deletion: its node deletes its backing volumes, then it is forgotten.
    Deleting,
    /// Becoming diskless: its node deletes the backing volumes in `storage_pool`, then the
    /// resource moves to a diskless pool.
    DiskRemoving,
}

/// A resource: a resource definition placed on one node. Its volumes are the definition's
/// volume definitions, all in `storage_pool`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resource {
    pub node: NodeName,
    pub uuid: String,
    #[serde(default)]
    pub props: Props,
    /// No local disk; `storage_pool` is then a diskless pool, except while the disk is being
    /// removed, when it is the pool the disk is removed from.
    pub diskless: bool,
    pub storage_pool: StorPoolName,
    /// Milliseconds since the epoch.
    pub create_timestamp: i64,
    #[serde(default)]
    pub phase: ResourcePhase,
    /// Its node-id among the members of a replicated resource, 0–31.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u8>,
    /// The TCP port it listens on for its peers, unique on its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A diskless member the controller added so that a replicated resource with an even
    /// number of disks keeps quorum when one of them fails (LINSTOR's `TIE_BREAKER`); the
    /// controller removes it when it is no longer needed (`crate::app::tiebreaker`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tiebreaker: bool,
    /// The snapshot its volumes are created from on its node, when it was placed by a restore
    /// or a clone; a volume already created is never touched by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreSource>,
    /// Deactivated (LINSTOR's `INACTIVE`): its node keeps its volumes but brings them down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inactive: bool,
    /// Being moved off its node (LINSTOR's `EVACUATE`): deleted once its replacement is
    /// UpToDate (`crate::app::evacuation`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evacuating: bool,
    /// The evacuation placed a replacement for it. Without one it stays, marked, until enough
    /// UpToDate replicas are elsewhere (the place count), or `node restore`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evacuation_replaced: bool,
}

/// LINSTOR's flag of a deactivated resource.
pub const FLAG_INACTIVE: &str = "INACTIVE";

/// LINSTOR's flag of a diskless resource the controller placed for quorum.
pub const FLAG_TIE_BREAKER: &str = "TIE_BREAKER";

impl Resource {
    /// LINSTOR's flags for the resource, as clients expect them.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.diskless {
            flags.extend(["DISKLESS".to_string(), "DRBD_DISKLESS".to_string()]);
        }
        if self.tiebreaker {
            flags.push(FLAG_TIE_BREAKER.to_string());
        }
        if self.inactive {
            flags.push(FLAG_INACTIVE.to_string());
        }
        if self.evacuating {
            flags.push(FLAG_EVACUATE.to_string());
        }
        match self.phase {
            ResourcePhase::Active => {}
            ResourcePhase::Deleting => flags.push(FLAG_DELETE.to_string()),
            ResourcePhase::DiskRemoving => flags.push("DISK_REMOVING".to_string()),
        }
        flags
    }

    pub fn is_deleting(&self) -> bool {
        self.phase == ResourcePhase::Deleting
    }

    /// Whether it has (or is about to have) local data: diskful and not being deleted.
    pub fn holds_data(&self) -> bool {
        !self.diskless && self.phase == ResourcePhase::Active
    }
}

/// An error report kept by the controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredErrorReport {
    pub id: String,
    /// Milliseconds since the epoch.
    pub time: i64,
    pub module: String,
    pub message: String,
    pub text: String,
}

/// The smallest snapshot name, to start a range over one resource definition's snapshots:
/// names compare by their upper-cased key, whose first character is at least 'A' and whose
/// others are at least '-'.
fn min_snapshot_name() -> SnapshotName {
    SnapshotName::new("A-").expect("'A-' is a valid snapshot name")
}

/// The default diskless pool's name.
pub fn default_diskless_pool() -> StorPoolName {
    StorPoolName::new(DEFAULT_DISKLESS_POOL).expect("constant is a valid pool name")
}

/// A fresh random UUID, for the `uuid` fields clients show.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new replication generation: 64 random bits that every member restored or rolled back to
/// the same cut starts its metadata at (see `RestoreSource::generation`).
pub fn new_generation() -> u64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair();
    bits.0 ^ bits.1
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Cluster {
    /// Every reference to an object that is not in the graph, one line each: what the
    /// store's foreign keys refuse ([`Cluster::foreign_key_violations`]) and a definition
    /// naming a resource group that is gone. Empty for a graph the store would take. The unit
    /// tests check it after every plan they apply, so a plan whose ops come in an order the
    /// store refuses fails there, not at a commit in production.
    pub fn dangling_references(&self) -> Vec<String> {
        let mut found = Vec::new();
        for rd in self.resource_definitions.values() {
            if !self.resource_groups.contains_key(&rd.resource_group) {
                found.push(format!(
                    "resource definition '{}' names resource group '{}'",
                    rd.name, rd.resource_group
                ));
            }
        }
        found.extend(self.foreign_key_violations());
        found
    }

    /// The references the store's foreign keys hold that a child row's place in the graph
    /// does not already prove, one line each: a resource or a snapshot on a node that is gone,
    /// a snapshot of a definition that is gone, a connection whose node or resource is gone.
    /// (A pool, a volume group, a volume definition, a resource and a snapshot are put under
    /// their parent when the graph is loaded, and refused there without one.) The load checks
    /// these instead of SQLite's `foreign_key_check`.
    pub fn foreign_key_violations(&self) -> Vec<String> {
        let mut found = Vec::new();
        for rd in self.resource_definitions.values() {
            for resource in rd.resources.values() {
                if !self.nodes.contains_key(&resource.node) {
                    found.push(format!(
                        "resource '{}' is on node '{}'",
                        rd.name, resource.node
                    ));
                }
            }
        }
        for definition in self.snapshot_definitions.values() {
            if !self.resource_definitions.contains_key(&definition.resource) {
                found.push(format!(
                    "snapshot '{}' is of resource definition '{}'",
                    definition.name, definition.resource
                ));
            }
            for snapshot in definition.snapshots.values() {
                if !self.nodes.contains_key(&snapshot.node) {
                    found.push(format!(
                        "snapshot '{}' of '{}' is on node '{}'",
                        definition.name, definition.resource, snapshot.node
                    ));
                }
            }
        }
        for (node_a, node_b) in self.node_connections.keys() {
            for node in [node_a, node_b] {
                if !self.nodes.contains_key(node) {
                    found.push(format!(
                        "node connection {node_a}-{node_b} names node '{node}'"
                    ));
                }
            }
        }
        for (resource, node_a, node_b) in self.resource_connections.keys() {
            for node in [node_a, node_b] {
                let placed = self
                    .resource_definitions
                    .get(resource)
                    .is_some_and(|rd| rd.resources.contains_key(node));
                if !placed {
                    found.push(format!(
                        "resource connection {node_a}-{node_b} of '{resource}' names no resource on '{node}'"
                    ));
                }
            }
        }
        found
    }
}

impl Cluster {
    pub fn node(&self, name: &NodeName) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn resource_definition(&self, name: &ResourceName) -> Option<&ResourceDefinition> {
        self.resource_definitions.get(name)
    }

    /// Every resource on `node`, with its definition.
    pub fn resources_on_node<'a>(
        &'a self,
        node: &'a NodeName,
    ) -> impl Iterator<Item = (&'a ResourceDefinition, &'a Resource)> + 'a {
        self.resource_definitions
            .values()
            .filter_map(move |rd| rd.resources.get(node).map(|r| (rd, r)))
    }

    /// Makes `placed`'s node and pool names clones of the names its node holds, so the
    /// 12,500 resources of a node at 100,000 × 2 share the text of its name and of its pool's
    /// instead of holding a copy each. Then the walks that compare them (a node's resources
    /// for its digest, the view's look-ups) find them equal at once and read text that is in
    /// the CPU's cache, not one fresh line per resource; the graph is smaller too. A name its
    /// node does not hold (a pool not defined there) is kept as it is.
    pub fn share_names(&self, placed: &mut Resource) {
        let Some((node_name, node)) = self.nodes.get_key_value(&placed.node) else {
            return;
        };
        placed.node = node_name.clone();
        if let Some((pool_name, _)) = node.storage_pools.get_key_value(&placed.storage_pool) {
            placed.storage_pool = pool_name.clone();
        }
    }

    /// Whether any resource uses `pool` on `node`.
    pub fn pool_in_use(&self, node: &NodeName, pool: &StorPoolName) -> Vec<ResourceName> {
        self.resources_on_node(node)
            .filter(|(_, r)| &r.storage_pool == pool)
            .map(|(rd, _)| rd.name.clone())
            .collect()
    }

    /// The snapshot definitions of a resource definition.
    pub fn snapshots_of<'a>(
        &'a self,
        resource: &ResourceName,
    ) -> impl Iterator<Item = &'a SnapshotDefinition> + 'a {
        let resource = resource.clone();
        self.snapshot_definitions
            .range((resource.clone(), min_snapshot_name())..)
            .take_while(move |((r, _), _)| *r == resource)
            .map(|(_, definition)| definition)
    }

    pub fn snapshot_definition(
        &self,
        resource: &ResourceName,
        snapshot: &SnapshotName,
    ) -> Option<&SnapshotDefinition> {
        self.snapshot_definitions
            .get(&(resource.clone(), snapshot.clone()))
    }

    /// The snapshots of `resource` taken on `node`, with their definitions.
    pub fn snapshots_on_node<'a>(
        &'a self,
        resource: &ResourceName,
        node: &'a NodeName,
    ) -> impl Iterator<Item = (&'a SnapshotDefinition, &'a Snapshot)> + 'a {
        self.snapshots_of(resource)
            .filter_map(move |d| d.snapshots.get(node).map(|s| (d, s)))
    }

    /// Whether a storage pool of this name exists on any node.
    pub fn storage_pool_defined(&self, pool: &StorPoolName) -> bool {
        self.nodes
            .values()
            .any(|n| n.storage_pools.contains_key(pool))
    }
}
