//! Changes to the object graph, each with its row in the store.
//!
//! An [`Op`] is the unit both the store and the in-memory graph understand: the controller
//! turns every accepted request into ops, commits their [`Change`]s in one transaction, and only
//! then applies them to the [`Cluster`]. Children are stored in their own rows. Deleting a node,
//! resource group or resource definition deletes its configuration children (storage pools and
//! node connections, volume groups, volume definitions) with explicit row deletes, and deleting
//! a resource deletes its resource connections. No op deletes a resource but its own
//! [`Op::DeleteResource`], and the store refuses a commit that would leave a row without its
//! parent.

use std::collections::BTreeSet;

use ferrite_store::{Change, Table};
use ferrite_types::{
    NodeName, ResourceGroupName, ResourceName, SnapshotName, StorPoolName, VolumeNumber,
};

use super::{Connection, KeyValueStore};
use crate::satellites::desired;
use crate::satellites::inheritance::{self, Changed};
use ferrite_types::rest::Props;
use serde::Serialize;

use super::{
    Cluster, Node, Resource, ResourceDefinition, ResourceGroup, Snapshot, SnapshotDefinition,
    StoragePool, StoredErrorReport, VolumeDefinition, VolumeGroup,
};

/// One change to the object graph.
// Ops live for one request; boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Op {
    SetControllerProp {
        key: String,
        value: String,
    },
    DeleteControllerProp {
        key: String,
    },
    PutNode(Node),
    DeleteNode(NodeName),
    PutStoragePool {
        node: NodeName,
        pool: StoragePool,
    },
    DeleteStoragePool {
        node: NodeName,
        pool: StorPoolName,
    },
    PutResourceGroup(ResourceGroup),
    DeleteResourceGroup(ResourceGroupName),
    PutVolumeGroup {
        group: ResourceGroupName,
        volume_group: VolumeGroup,
    },
    DeleteVolumeGroup {
        group: ResourceGroupName,
        number: VolumeNumber,
    },
    PutResourceDefinition(ResourceDefinition),
    DeleteResourceDefinition(ResourceName),
    PutVolumeDefinition {
        resource: ResourceName,
        volume_definition: VolumeDefinition,
    },
    DeleteVolumeDefinition {
        resource: ResourceName,
        number: VolumeNumber,
    },
    PutResource {
        resource: ResourceName,
        placed: Resource,
    },
    DeleteResource {
        resource: ResourceName,
        node: NodeName,
    },
    /// Writes a snapshot definition; its snapshots are kept.
    PutSnapshotDefinition(SnapshotDefinition),
    /// Forgets a snapshot definition that has no snapshots left.
    DeleteSnapshotDefinition {
        resource: ResourceName,
        snapshot: SnapshotName,
    },
    PutSnapshot {
        resource: ResourceName,
        snapshot_name: SnapshotName,
        snapshot: Snapshot,
    },
    DeleteSnapshot {
        resource: ResourceName,
        snapshot: SnapshotName,
        node: NodeName,
    },
    PutErrorReport(StoredErrorReport),
    DeleteErrorReport(String),
    PutKeyValueStore(KeyValueStore),
    DeleteKeyValueStore(String),
    /// Nodes in sorted order (`Connection::key`).
    PutNodeConnection(Connection),
    DeleteNodeConnection {
        node_a: NodeName,
        node_b: NodeName,
    },
    /// Nodes in sorted order; both resources exist.
    PutResourceConnection {
        resource: ResourceName,
        connection: Connection,
    },
    DeleteResourceConnection {
        resource: ResourceName,
        node_a: NodeName,
        node_b: NodeName,
    },
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model objects always serialize")
}

impl Op {
    /// The store rows this op writes or deletes, on the graph *before* the op: a parent's
    /// deletion deletes its configuration children's rows first.
    pub fn to_changes(&self, cluster: &Cluster) -> Vec<Change> {
        let mut changes = Vec::new();
        match self {
            Op::DeleteNode(name) => {
                for (node_a, node_b) in cluster.node_connections.keys() {
                    if node_a == name || node_b == name {
                        changes.push(
                            Op::DeleteNodeConnection {
                                node_a: node_a.clone(),
                                node_b: node_b.clone(),
                            }
                            .to_change(),
                        );
                    }
                }
                if let Some(node) = cluster.nodes.get(name) {
                    for pool in node.storage_pools.keys() {
                        changes.push(
                            Op::DeleteStoragePool {
                                node: name.clone(),
                                pool: pool.clone(),
                            }
                            .to_change(),
                        );
                    }
                }
            }
            Op::DeleteResourceGroup(name) => {
                if let Some(group) = cluster.resource_groups.get(name) {
                    for number in group.volume_groups.keys() {
                        changes.push(
                            Op::DeleteVolumeGroup {
                                group: name.clone(),
                                number: *number,
                            }
                            .to_change(),
                        );
                    }
                }
            }
            Op::DeleteResourceDefinition(name) => {
                if let Some(rd) = cluster.resource_definitions.get(name) {
                    for number in rd.volume_definitions.keys() {
                        changes.push(
                            Op::DeleteVolumeDefinition {
                                resource: name.clone(),
                                number: *number,
                            }
                            .to_change(),
                        );
                    }
                }
            }
            Op::DeleteResource { resource, node } => {
                for (rd, node_a, node_b) in cluster.resource_connections.keys() {
                    if rd == resource && (node_a == node || node_b == node) {
                        changes.push(
                            Op::DeleteResourceConnection {
                                resource: rd.clone(),
                                node_a: node_a.clone(),
                                node_b: node_b.clone(),
                            }
                            .to_change(),
                        );
                    }
                }
            }
            _ => {}
        }
        changes.push(self.to_change());
        changes
    }

    /// The one store row this op writes or deletes.
    fn to_change(&self) -> Change {
        let put = |table, key: Vec<String>, data: String| Change::Put { table, key, data };
        let delete = |table, key: Vec<String>| Change::Delete { table, key };
        match self {
            Op::SetControllerProp { key, value } => {
                put(Table::ControllerProps, vec![key.clone()], value.clone())
            }
            Op::DeleteControllerProp { key } => delete(Table::ControllerProps, vec![key.clone()]),
            Op::PutNode(node) => put(Table::Nodes, vec![node.name.key().into()], json(node)),
            Op::DeleteNode(name) => delete(Table::Nodes, vec![name.key().into()]),
            Op::PutStoragePool { node, pool } => put(
                Table::StoragePools,
                vec![node.key().into(), pool.name.key().into()],
                json(pool),
            ),
            Op::DeleteStoragePool { node, pool } => delete(
                Table::StoragePools,
                vec![node.key().into(), pool.key().into()],
            ),
            Op::PutResourceGroup(group) => put(
                Table::ResourceGroups,
                vec![group.name.key().into()],
                json(group),
            ),
            Op::DeleteResourceGroup(name) => delete(Table::ResourceGroups, vec![name.key().into()]),
            Op::PutVolumeGroup {
                group,
                volume_group,
            } => put(
                Table::VolumeGroups,
                vec![group.key().into(), volume_group.number.to_string()],
                json(volume_group),
            ),
            Op::DeleteVolumeGroup { group, number } => delete(
                Table::VolumeGroups,
                vec![group.key().into(), number.to_string()],
            ),
            Op::PutResourceDefinition(rd) => put(
                Table::ResourceDefinitions,
                vec![rd.name.key().into()],
                json(rd),
            ),
            Op::DeleteResourceDefinition(name) => {
                delete(Table::ResourceDefinitions, vec![name.key().into()])
            }
            Op::PutVolumeDefinition {
                resource,
                volume_definition,
            } => put(
                Table::VolumeDefinitions,
                vec![resource.key().into(), volume_definition.number.to_string()],
                json(volume_definition),
            ),
            Op::DeleteVolumeDefinition { resource, number } => delete(
                Table::VolumeDefinitions,
                vec![resource.key().into(), number.to_string()],
            ),
            Op::PutResource { resource, placed } => put(
                Table::Resources,
                vec![resource.key().into(), placed.node.key().into()],
                json(placed),
            ),
            Op::DeleteResource { resource, node } => delete(
                Table::Resources,
                vec![resource.key().into(), node.key().into()],
            ),
            Op::PutSnapshotDefinition(definition) => put(
                Table::SnapshotDefinitions,
                vec![
                    definition.resource.key().into(),
                    definition.name.key().into(),
                ],
                json(definition),
            ),
            Op::DeleteSnapshotDefinition { resource, snapshot } => delete(
                Table::SnapshotDefinitions,
                vec![resource.key().into(), snapshot.key().into()],
            ),
            Op::PutSnapshot {
                resource,
                snapshot_name,
                snapshot,
            } => put(
                Table::Snapshots,
                vec![
                    resource.key().into(),
                    snapshot_name.key().into(),
                    snapshot.node.key().into(),
                ],
                json(snapshot),
            ),
            Op::DeleteSnapshot {
                resource,
                snapshot,
                node,
            } => delete(
                Table::Snapshots,
                vec![
                    resource.key().into(),
                    snapshot.key().into(),
                    node.key().into(),
                ],
            ),
            Op::PutErrorReport(report) => {
                put(Table::ErrorReports, vec![report.id.clone()], json(report))
            }
            Op::DeleteErrorReport(id) => delete(Table::ErrorReports, vec![id.clone()]),
            Op::PutKeyValueStore(store) => put(
                Table::KeyValueStores,
                vec![store.name.to_uppercase()],
                json(store),
            ),
            Op::DeleteKeyValueStore(name) => {
                delete(Table::KeyValueStores, vec![name.to_uppercase()])
            }
            Op::PutNodeConnection(connection) => put(
                Table::NodeConnections,
                vec![
                    connection.node_a.key().into(),
                    connection.node_b.key().into(),
                ],
                json(connection),
            ),
            Op::DeleteNodeConnection { node_a, node_b } => delete(
                Table::NodeConnections,
                vec![node_a.key().into(), node_b.key().into()],
            ),
            Op::PutResourceConnection {
                resource,
                connection,
            } => put(
                Table::ResourceConnections,
                vec![
                    resource.key().into(),
                    connection.node_a.key().into(),
                    connection.node_b.key().into(),
                ],
                json(connection),
            ),
            Op::DeleteResourceConnection {
                resource,
                node_a,
                node_b,
            } => delete(
                Table::ResourceConnections,
                vec![
                    resource.key().into(),
                    node_a.key().into(),
                    node_b.key().into(),
                ],
            ),
        }
    }

    /// The nodes whose satellites must hear about this op, and which resource definition on
    /// them changed (`None`: only the node's pools). Computed on the graph *before* the op.
    ///
    /// A change to a replicated resource's membership — a member added, removed or toggled, a
    /// member's address changed — reaches every member, since each one's peers changed; a
    /// change to a resource connection reaches its two members.
    ///
    /// A change of DRBD options above the resource (`DrbdOptions/<Section>/*` of the
    /// controller, a node, a resource group or a volume group: see `desired::replication_spec`)
    /// reaches the members of replicated resources that inherit it: of every replicated
    /// resource for the controller, of the group's definitions for a group or volume group,
    /// the node's own for a node — each only if some part of its file reads that level for the
    /// option, with no nearer level setting it (`inheritance::reaches`, LINSTOR's chains).
    /// Other properties of these objects feed no satellite and reach none.
    pub fn touches(&self, cluster: &Cluster, out: &mut BTreeSet<(NodeName, Option<ResourceName>)>) {
        let all_nodes_of = |rd: &ResourceName, out: &mut BTreeSet<_>| {
            if let Some(definition) = cluster.resource_definitions.get(rd) {
                for node in definition.resources.keys() {
                    out.insert((node.clone(), Some(rd.clone())));
                }
            }
        };
        let replicated = |rd: &ResourceName| {
            cluster
                .resource_definitions
                .get(rd)
                .is_some_and(ResourceDefinition::is_replicated)
        };
        match self {
            Op::PutNode(node) => {
                out.insert((node.name.clone(), None));
                let changed =
                    changed_options(cluster.node(&node.name).map(|n| &n.props), &node.props);
                if !changed.is_empty() {
                    for (rd, resource) in cluster.resources_on_node(&node.name) {
                        if rd.is_replicated()
                            && inheritance::reaches(cluster, rd, resource, Changed::Node, &changed)
                        {
                            out.insert((node.name.clone(), Some(rd.name.clone())));
                        }
                    }
                }
                let moved = cluster.node(&node.name).is_some_and(|before| {
                    before.active_interface().map(|i| i.address)
                        != node.active_interface().map(|i| i.address)
                });
                if moved {
                    for (rd, _) in cluster.resources_on_node(&node.name) {
                        if rd.is_replicated() {
                            all_nodes_of(&rd.name, out);
                        }
                    }
                }
            }
            Op::PutStoragePool { node, .. } | Op::DeleteStoragePool { node, .. } => {
                out.insert((node.clone(), None));
            }
            Op::PutResourceDefinition(rd) => all_nodes_of(&rd.name, out),
            Op::DeleteResourceDefinition(rd)
            | Op::PutVolumeDefinition { resource: rd, .. }
            | Op::DeleteVolumeDefinition { resource: rd, .. } => all_nodes_of(rd, out),
            Op::PutResource { resource, placed } => {
                out.insert((placed.node.clone(), Some(resource.clone())));
                if replicated(resource) {
                    all_nodes_of(resource, out);
                }
            }
            Op::DeleteResource { resource, node } => {
                out.insert((node.clone(), Some(resource.clone())));
                if replicated(resource) {
                    all_nodes_of(resource, out);
                }
            }
            // A snapshot reaches its node with its resource.
            Op::PutSnapshot {
                resource, snapshot, ..
            } => {
                if cluster
                    .resource_definition(resource)
                    .is_some_and(|rd| rd.resources.contains_key(&snapshot.node))
                {
                    out.insert((snapshot.node.clone(), Some(resource.clone())));
                }
            }
            Op::DeleteSnapshot { resource, node, .. } => {
                if cluster
                    .resource_definition(resource)
                    .is_some_and(|rd| rd.resources.contains_key(node))
                {
                    out.insert((node.clone(), Some(resource.clone())));
                }
            }
            // A replicated resource's cut reaches every member, diskless ones included.
            Op::PutSnapshotDefinition(definition) => {
                if replicated(&definition.resource) {
                    all_nodes_of(&definition.resource, out);
                }
            }
            Op::DeleteSnapshotDefinition { .. } => {}
            Op::SetControllerProp { key, value } => {
                if cluster.props.get(key) != Some(value) {
                    controller_option_reach(cluster, key, out);
                }
            }
            Op::DeleteControllerProp { key } => {
                if cluster.props.contains_key(key) {
                    controller_option_reach(cluster, key, out);
                }
            }
            Op::PutResourceGroup(group) => {
                let before = cluster.resource_groups.get(&group.name).map(|g| &g.props);
                let changed = changed_options(before, &group.props);
                if !changed.is_empty() {
                    for rd in cluster.resource_definitions.values() {
                        if rd.resource_group == group.name && rd.is_replicated() {
                            for resource in rd.resources.values() {
                                if inheritance::reaches(
                                    cluster,
                                    rd,
                                    resource,
                                    Changed::ResourceGroup,
                                    &changed,
                                ) {
                                    out.insert((resource.node.clone(), Some(rd.name.clone())));
                                }
                            }
                        }
                    }
                }
            }
            Op::PutVolumeGroup {
                group,
                volume_group,
            } => {
                let before = cluster
                    .resource_groups
                    .get(group)
                    .and_then(|g| g.volume_groups.get(&volume_group.number))
                    .map(|vg| &vg.props);
                let changed = changed_options(before, &volume_group.props);
                volume_group_reach(cluster, group, volume_group.number, &changed, out);
            }
            Op::DeleteVolumeGroup { group, number } => {
                let empty = Default::default();
                let before = cluster
                    .resource_groups
                    .get(group)
                    .and_then(|g| g.volume_groups.get(number))
                    .map(|vg| &vg.props);
                let changed = changed_options(before, &empty);
                volume_group_reach(cluster, group, *number, &changed, out);
            }
            // A resource group goes only without definitions, a node only without resources.
            Op::DeleteNode(_)
            | Op::DeleteResourceGroup(_)
            | Op::PutErrorReport(_)
            | Op::DeleteErrorReport(_)
            | Op::PutKeyValueStore(_)
            | Op::DeleteKeyValueStore(_) => {}
            // A node connection's DRBD options are in the files of the resources the two
            // nodes share.
            Op::PutNodeConnection(Connection { node_a, node_b, .. })
            | Op::DeleteNodeConnection { node_a, node_b } => {
                for rd in cluster.resource_definitions.values() {
                    if rd.is_replicated()
                        && rd.resources.contains_key(node_a)
                        && rd.resources.contains_key(node_b)
                    {
                        out.insert((node_a.clone(), Some(rd.name.clone())));
                        out.insert((node_b.clone(), Some(rd.name.clone())));
                    }
                }
            }
            // The connection's DRBD options are in both members' files.
            Op::PutResourceConnection {
                resource,
                connection: Connection { node_a, node_b, .. },
            }
            | Op::DeleteResourceConnection {
                resource,
                node_a,
                node_b,
            } => {
                if replicated(resource)
                    && let Some(rd) = cluster.resource_definitions.get(resource)
                {
                    for node in [node_a, node_b] {
                        if rd.resources.contains_key(node) {
                            out.insert((node.clone(), Some(resource.clone())));
                        }
                    }
                }
            }
        }
    }

    /// Applies the op to the in-memory graph. The op was validated against this graph, so a
    /// missing parent here is a bug, reported by panic rather than silently ignored.
    pub fn apply(self, cluster: &mut Cluster) {
        cluster.derived.forget();
        match self {
            Op::SetControllerProp { key, value } => {
                cluster.props.insert(key, value);
            }
            Op::DeleteControllerProp { key } => {
                cluster.props.remove(&key);
            }
            Op::PutNode(mut node) => {
                if let Some(old) = cluster.nodes.remove(&node.name) {
                    node.storage_pools = old.storage_pools;
                }
                cluster.nodes.insert(node.name.clone(), node);
            }
            Op::DeleteNode(name) => {
                debug_assert!(
                    cluster.resources_on_node(&name).next().is_none(),
                    "node '{name}' deleted with resources; they must be deleted by their own ops"
                );
                cluster
                    .node_connections
                    .retain(|(a, b), _| a != &name && b != &name);
                cluster.nodes.remove(&name);
            }
            Op::PutStoragePool { node, pool } => {
                parent(cluster.nodes.get_mut(&node), "node", &node)
                    .storage_pools
                    .insert(pool.name.clone(), pool);
            }
            Op::DeleteStoragePool { node, pool } => {
                if let Some(node) = cluster.nodes.get_mut(&node) {
                    node.storage_pools.remove(&pool);
                }
            }
            Op::PutResourceGroup(mut group) => {
                if let Some(old) = cluster.resource_groups.remove(&group.name) {
                    group.volume_groups = old.volume_groups;
                }
                cluster.resource_groups.insert(group.name.clone(), group);
            }
            Op::DeleteResourceGroup(name) => {
                cluster.resource_groups.remove(&name);
            }
            Op::PutVolumeGroup {
                group,
                volume_group,
            } => {
                parent(
                    cluster.resource_groups.get_mut(&group),
                    "resource group",
                    &group,
                )
                .volume_groups
                .insert(volume_group.number, volume_group);
            }
            Op::DeleteVolumeGroup { group, number } => {
                if let Some(group) = cluster.resource_groups.get_mut(&group) {
                    group.volume_groups.remove(&number);
                }
            }
            Op::PutResourceDefinition(mut rd) => {
                if let Some(old) = cluster.resource_definitions.remove(&rd.name) {
                    rd.volume_definitions = old.volume_definitions;
                    rd.resources = old.resources;
                }
                cluster.resource_definitions.insert(rd.name.clone(), rd);
            }
            Op::DeleteResourceDefinition(name) => {
                debug_assert!(
                    cluster
                        .resource_definitions
                        .get(&name)
                        .is_none_or(|rd| rd.resources.is_empty()),
                    "resource definition '{name}' deleted with resources; they must be deleted by their own ops"
                );
                cluster.resource_definitions.remove(&name);
            }
            Op::PutVolumeDefinition {
                resource,
                volume_definition,
            } => {
                parent(
                    cluster.resource_definitions.get_mut(&resource),
                    "resource definition",
                    &resource,
                )
                .volume_definitions
                .insert(volume_definition.number, volume_definition);
            }
            Op::DeleteVolumeDefinition { resource, number } => {
                if let Some(rd) = cluster.resource_definitions.get_mut(&resource) {
                    rd.volume_definitions.remove(&number);
                }
            }
            Op::PutResource {
                resource,
                mut placed,
            } => {
                cluster.share_names(&mut placed);
                parent(
                    cluster.resource_definitions.get_mut(&resource),
                    "resource definition",
                    &resource,
                )
                .resources
                .insert(placed.node.clone(), placed);
            }
            Op::DeleteResource { resource, node } => {
                cluster
                    .resource_connections
                    .retain(|(rd, a, b), _| rd != &resource || (a != &node && b != &node));
                if let Some(rd) = cluster.resource_definitions.get_mut(&resource) {
                    rd.resources.remove(&node);
                }
            }
            Op::PutSnapshotDefinition(mut definition) => {
                let key = (definition.resource.clone(), definition.name.clone());
                if let Some(old) = cluster.snapshot_definitions.remove(&key) {
                    definition.snapshots = old.snapshots;
                }
                cluster.snapshot_definitions.insert(key, definition);
            }
            Op::DeleteSnapshotDefinition { resource, snapshot } => {
                debug_assert!(
                    cluster
                        .snapshot_definition(&resource, &snapshot)
                        .is_none_or(|d| d.snapshots.is_empty()),
                    "snapshot definition '{resource}/{snapshot}' deleted with snapshots"
                );
                cluster.snapshot_definitions.remove(&(resource, snapshot));
            }
            Op::PutSnapshot {
                resource,
                snapshot_name,
                snapshot,
            } => {
                parent(
                    cluster
                        .snapshot_definitions
                        .get_mut(&(resource.clone(), snapshot_name.clone())),
                    "snapshot definition",
                    &format!("{resource}/{snapshot_name}"),
                )
                .snapshots
                .insert(snapshot.node.clone(), snapshot);
            }
            Op::DeleteSnapshot {
                resource,
                snapshot,
                node,
            } => {
                if let Some(definition) =
                    cluster.snapshot_definitions.get_mut(&(resource, snapshot))
                {
                    definition.snapshots.remove(&node);
                }
            }
            Op::PutErrorReport(report) => {
                cluster.error_reports.insert(report.id.clone(), report);
            }
            Op::DeleteErrorReport(id) => {
                cluster.error_reports.remove(&id);
            }
            Op::PutKeyValueStore(store) => {
                cluster
                    .key_value_stores
                    .insert(store.name.to_uppercase(), store);
            }
            Op::DeleteKeyValueStore(name) => {
                cluster.key_value_stores.remove(&name.to_uppercase());
            }
            Op::PutNodeConnection(connection) => {
                cluster.node_connections.insert(
                    (connection.node_a.clone(), connection.node_b.clone()),
                    connection,
                );
            }
            Op::DeleteNodeConnection { node_a, node_b } => {
                cluster.node_connections.remove(&(node_a, node_b));
            }
            Op::PutResourceConnection {
                resource,
                connection,
            } => {
                cluster.resource_connections.insert(
                    (
                        resource,
                        connection.node_a.clone(),
                        connection.node_b.clone(),
                    ),
                    connection,
                );
            }
            Op::DeleteResourceConnection {
                resource,
                node_a,
                node_b,
            } => {
                cluster
                    .resource_connections
                    .remove(&(resource, node_a, node_b));
            }
        }
    }
}

/// The DRBD options (property keys) whose value differs between `before` (`None`: a new
/// object) and `after`, of those the satellites' desired state carries.
fn changed_options<'a>(before: Option<&'a Props>, after: &'a Props) -> BTreeSet<&'a str> {
    let before_keys = before.into_iter().flat_map(|props| props.keys());
    after
        .keys()
        .chain(before_keys)
        .filter(|key| desired::replication_option(key).is_some())
        .filter(|key| before.and_then(|props| props.get(*key)) != after.get(*key))
        .map(String::as_str)
        .collect()
}

/// The members a change of the controller's property `key` reaches: every member of a
/// replicated resource that some part of its file reads the controller's value for
/// (`inheritance::reaches`). None when `key` is no DRBD option.
fn controller_option_reach(
    cluster: &Cluster,
    key: &str,
    out: &mut BTreeSet<(NodeName, Option<ResourceName>)>,
) {
    if desired::replication_option(key).is_none() {
        return;
    }
    let changed = BTreeSet::from([key]);
    for rd in cluster.resource_definitions.values() {
        if !rd.is_replicated() {
            continue;
        }
        for resource in rd.resources.values() {
            if inheritance::reaches(cluster, rd, resource, Changed::Controller, &changed) {
                out.insert((resource.node.clone(), Some(rd.name.clone())));
            }
        }
    }
}

/// The members a change of `changed` options on volume group `number` of `group` reaches:
/// those of the group's replicated definitions with that volume whose volume `disk` reads the
/// volume group's value (neither the resource nor the volume definition sets it).
fn volume_group_reach(
    cluster: &Cluster,
    group: &ResourceGroupName,
    number: VolumeNumber,
    changed: &BTreeSet<&str>,
    out: &mut BTreeSet<(NodeName, Option<ResourceName>)>,
) {
    if changed.is_empty() {
        return;
    }
    for rd in cluster.resource_definitions.values() {
        if &rd.resource_group != group || !rd.is_replicated() {
            continue;
        }
        for resource in rd.resources.values() {
            if inheritance::reaches(cluster, rd, resource, Changed::VolumeGroup(number), changed) {
                out.insert((resource.node.clone(), Some(rd.name.clone())));
            }
        }
    }
}

fn parent<'a, T, N: std::fmt::Display>(
    found: Option<&'a mut T>,
    kind: &str,
    name: &N,
) -> &'a mut T {
    found.unwrap_or_else(|| panic!("op applied without its parent {kind} '{name}'"))
}

#[cfg(test)]
mod tests {
    //! Which satellites hear about a change of the properties that feed their desired state
    //! (`DrbdOptions/*` at every level of LINSTOR's inheritance), and that what they hear
    //! carries the change.

    use std::collections::BTreeSet;

    use ferrite_types::rest::{self, PropsModify};
    use ferrite_types::{LayerKind, NodeName, ResourceName};

    use super::*;
    use crate::app::testing::{add_resource, apply, engines_runtime};
    use crate::app::{connections, controller_props, nodes, resource_definitions, resource_groups};

    type Touched = BTreeSet<(NodeName, Option<ResourceName>)>;

    fn cluster() -> Cluster {
        crate::app::testing::replicated_cluster()
    }

    fn touched_by(cluster: &Cluster, plan: &crate::app::Plan) -> Touched {
        let mut touched = Touched::new();
        for op in &plan.ops {
            op.touches(cluster, &mut touched);
        }
        touched
    }

    /// Every member of the named definitions.
    fn members(cluster: &Cluster, names: &[&str]) -> Touched {
        names
            .iter()
            .flat_map(|name| {
                let rd = &cluster.resource_definitions[&name.parse::<ResourceName>().unwrap()];
                rd.resources
                    .keys()
                    .map(|node| (node.clone(), Some(rd.name.clone())))
            })
            .collect()
    }

    fn set(key: &str, value: &str) -> PropsModify {
        PropsModify {
            override_props: [(key.to_string(), value.to_string())].into(),
            ..Default::default()
        }
    }

    /// The replication data of `resource` on each of its members.
    fn specs(cluster: &Cluster, resource: &str) -> Vec<ferrite_proto::ReplicationSpec> {
        let rd = &cluster.resource_definitions[&resource.parse::<ResourceName>().unwrap()];
        rd.resources
            .values()
            .map(|r| {
                crate::satellites::desired::resource_spec(cluster, rd, r)
                    .replication
                    .expect("allocated")
            })
            .collect()
    }

    #[test]
    fn a_controller_drbd_option_reaches_every_member_of_every_replicated_resource() {
        let mut cluster = cluster();
        let plan =
            controller_props::modify(&cluster, &set("DrbdOptions/PeerDevice/c-max-rate", "200M"))
                .unwrap();
        assert_eq!(
            touched_by(&cluster, &plan),
            members(&cluster, &["web", "db"])
        );
        apply(&mut cluster, plan);
        for spec in specs(&cluster, "web")
            .into_iter()
            .chain(specs(&cluster, "db"))
        {
            assert_eq!(spec.options["PeerDevice/c-max-rate"], "200M");
        }

        // Deleting it reaches the same members, and takes it out of their options.
        let plan = controller_props::delete(&cluster, "DrbdOptions/PeerDevice/c-max-rate").unwrap();
        assert_eq!(
            touched_by(&cluster, &plan),
            members(&cluster, &["web", "db"])
        );
        apply(&mut cluster, plan);
        for spec in specs(&cluster, "web") {
            assert!(!spec.options.contains_key("PeerDevice/c-max-rate"));
        }
    }

    #[test]
    fn a_controller_property_that_feeds_no_satellite_reaches_none() {
        let cluster = cluster();
        for key in [
            "Aux/rack",
            "DrbdOptions/auto-add-quorum-tiebreaker",
            "Ferrite/ReplicationEngine",
        ] {
            let value = if key.starts_with("Ferrite") {
                "drbd"
            } else {
                "False"
            };
            let plan = controller_props::modify(&cluster, &set(key, value)).unwrap();
            assert_eq!(touched_by(&cluster, &plan), Touched::new(), "{key}");
        }
    }

    #[test]
    fn an_option_set_nearer_the_resource_shadows_the_controllers_and_the_groups() {
        let mut cluster = cluster();
        let plan = resource_definitions::modify(
            &cluster,
            "db",
            &rest::ResourceDefinitionModify {
                override_props: [(
                    "DrbdOptions/Net/max-buffers".to_string(),
                    "4000".to_string(),
                )]
                .into(),
                ..Default::default()
            },
        )
        .unwrap();
        apply(&mut cluster, plan);
        let plan = controller_props::modify(&cluster, &set("DrbdOptions/Net/max-buffers", "8000"))
            .unwrap();
        assert_eq!(touched_by(&cluster, &plan), members(&cluster, &["web"]));
        apply(&mut cluster, plan);
        let plan = resource_groups::modify(
            &cluster,
            &engines_runtime(&cluster, &[LayerKind::Drbd]),
            "my_ssd_group",
            &rest::ResourceGroupModify {
                override_props: [(
                    "DrbdOptions/Net/max-buffers".to_string(),
                    "9000".to_string(),
                )]
                .into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(touched_by(&cluster, &plan), members(&cluster, &["web"]));
        apply(&mut cluster, plan);
        for spec in specs(&cluster, "web") {
            assert_eq!(spec.options["Net/max-buffers"], "9000");
        }
        for spec in specs(&cluster, "db") {
            assert_eq!(spec.options["Net/max-buffers"], "4000");
        }
        // The same value again changes nothing, and reaches nobody.
        let plan = controller_props::modify(&cluster, &set("DrbdOptions/Net/max-buffers", "8000"))
            .unwrap();
        assert_eq!(touched_by(&cluster, &plan), Touched::new());
    }

    #[test]
    fn a_resource_groups_drbd_option_reaches_the_members_of_its_definitions_only() {
        let mut cluster = cluster();
        // `other` is replicated too, in the default group.
        add_resource(&mut cluster, "other", "node1", "pool_ssd");
        add_resource(&mut cluster, "other", "node2", "pool_ssd");
        let other: ResourceName = "other".parse().unwrap();
        cluster
            .resource_definitions
            .get_mut(&other)
            .unwrap()
            .layer_stack = vec![LayerKind::Drbd, LayerKind::Storage];
        let runtime = engines_runtime(&cluster, &[LayerKind::Drbd]);
        let modify = |cluster: &Cluster, key: &str, value: &str| {
            resource_groups::modify(
                cluster,
                &runtime,
                "my_ssd_group",
                &rest::ResourceGroupModify {
                    override_props: [(key.to_string(), value.to_string())].into(),
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let plan = modify(&cluster, "DrbdOptions/Resource/quorum", "off");
        assert_eq!(
            touched_by(&cluster, &plan),
            members(&cluster, &["web", "db"])
        );
        apply(&mut cluster, plan);
        for spec in specs(&cluster, "web") {
            assert_eq!(spec.options["Resource/quorum"], "off", "over auto-quorum's");
        }
        // A group property that feeds no satellite reaches none.
        let plan = modify(&cluster, "Aux/rack", "r1");
        assert_eq!(touched_by(&cluster, &plan), Touched::new());

        // The controller's reaches `other` as well.
        let plan = controller_props::modify(&cluster, &set("DrbdOptions/Net/max-buffers", "8000"))
            .unwrap();
        assert_eq!(
            touched_by(&cluster, &plan),
            members(&cluster, &["web", "db", "other"])
        );
    }

    #[test]
    fn a_volume_groups_drbd_option_reaches_the_volumes_of_its_groups_definitions() {
        let mut cluster = cluster();
        let plan = resource_groups::modify_volume_group(
            &cluster,
            "my_ssd_group",
            0,
            &rest::VolumeGroupModify {
                override_props: [(
                    "DrbdOptions/Disk/al-extents".to_string(),
                    "6007".to_string(),
                )]
                .into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            touched_by(&cluster, &plan),
            members(&cluster, &["web", "db"])
        );
        apply(&mut cluster, plan);
        for spec in specs(&cluster, "web") {
            assert_eq!(spec.volume_options[&0]["Disk/al-extents"], "6007");
        }
        // The volume definition's own wins.
        let web: ResourceName = "web".parse().unwrap();
        let vd = cluster
            .resource_definitions
            .get_mut(&web)
            .unwrap()
            .volume_definitions
            .values_mut()
            .next()
            .unwrap();
        vd.props
            .insert("DrbdOptions/Disk/al-extents".into(), "1237".into());
        for spec in specs(&cluster, "web") {
            assert_eq!(spec.volume_options[&0]["Disk/al-extents"], "1237");
        }
    }

    #[test]
    fn a_nodes_drbd_option_reaches_its_own_replicated_resources() {
        let mut cluster = cluster();
        let web: ResourceName = "web".parse().unwrap();
        let node = cluster.resource_definitions[&web]
            .resources
            .keys()
            .next()
            .unwrap()
            .clone();
        let plan = nodes::modify(
            &cluster,
            node.as_str(),
            &rest::NodeModify {
                override_props: [(
                    "DrbdOptions/Net/max-epoch-size".to_string(),
                    "4000".to_string(),
                )]
                .into(),
                ..Default::default()
            },
        )
        .unwrap();
        let expected: Touched = cluster
            .resources_on_node(&node)
            .filter(|(rd, _)| rd.is_replicated())
            .map(|(rd, _)| (node.clone(), Some(rd.name.clone())))
            .chain([(node.clone(), None)])
            .collect();
        assert_eq!(touched_by(&cluster, &plan), expected);
        apply(&mut cluster, plan);
        for (rd, resource) in cluster.resources_on_node(&node) {
            if let Some(spec) =
                crate::satellites::desired::resource_spec(&cluster, rd, resource).replication
            {
                assert_eq!(spec.options["Net/max-epoch-size"], "4000");
            }
        }
    }

    /// The members of `web` by node, and the node of each.
    fn web_nodes(cluster: &Cluster) -> Vec<NodeName> {
        cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()]
            .resources
            .keys()
            .cloned()
            .collect()
    }

    fn web_mut(cluster: &mut Cluster) -> &mut crate::model::ResourceDefinition {
        cluster
            .resource_definitions
            .get_mut(&"web".parse::<ResourceName>().unwrap())
            .unwrap()
    }

    fn web_spec(cluster: &Cluster, node: &NodeName) -> ferrite_proto::ReplicationSpec {
        let rd = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        crate::satellites::desired::resource_spec(cluster, rd, &rd.resources[node])
            .replication
            .unwrap()
    }

    #[test]
    fn a_resources_disk_option_wins_over_its_volume_definitions_and_its_volume_groups() {
        let mut cluster = cluster();
        let nodes = web_nodes(&cluster);
        let key = "DrbdOptions/Disk/al-extents";
        cluster
            .resource_groups
            .values_mut()
            .find(|g| g.name.as_str() == "my_ssd_group")
            .unwrap()
            .volume_groups
            .values_mut()
            .next()
            .unwrap()
            .props
            .insert(key.into(), "1000".into());
        let web = web_mut(&mut cluster);
        web.props.insert(key.into(), "4000".into());
        web.volume_definitions
            .values_mut()
            .next()
            .unwrap()
            .props
            .insert(key.into(), "2000".into());
        web.resources
            .get_mut(&nodes[0])
            .unwrap()
            .props
            .insert(key.into(), "3000".into());
        let volume = |node: &NodeName, cluster: &Cluster| {
            web_spec(cluster, node).volume_options[&0]["Disk/al-extents"].clone()
        };
        assert_eq!(volume(&nodes[0], &cluster), "3000", "the resource's");
        assert_eq!(
            volume(&nodes[1], &cluster),
            "2000",
            "the volume definition's"
        );
        assert_eq!(
            web_spec(&cluster, &nodes[1]).options["Disk/al-extents"],
            "4000"
        );

        // The volume group's reaches only the members that read it.
        let plan = resource_groups::modify_volume_group(
            &cluster,
            "my_ssd_group",
            0,
            &rest::VolumeGroupModify {
                override_props: [(key.to_string(), "1100".to_string())].into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            touched_by(&cluster, &plan),
            members(&cluster, &["db"]),
            "web's members read the volume definition's"
        );
        web_mut(&mut cluster)
            .volume_definitions
            .values_mut()
            .next()
            .unwrap()
            .props
            .remove(key);
        let plan = resource_groups::modify_volume_group(
            &cluster,
            "my_ssd_group",
            0,
            &rest::VolumeGroupModify {
                override_props: [(key.to_string(), "1100".to_string())].into(),
                ..Default::default()
            },
        )
        .unwrap();
        let touched = touched_by(&cluster, &plan);
        let web: ResourceName = "web".parse().unwrap();
        assert!(!touched.contains(&(nodes[0].clone(), Some(web.clone()))));
        assert!(touched.contains(&(nodes[1].clone(), Some(web.clone()))));
        apply(&mut cluster, plan);
        assert_eq!(volume(&nodes[0], &cluster), "3000");
        assert_eq!(
            volume(&nodes[1], &cluster),
            "1100",
            "the volume group's over the definition's"
        );
    }

    #[test]
    fn in_a_connection_the_definition_group_and_controller_win_over_the_resource_for_net() {
        let mut cluster = cluster();
        let nodes = web_nodes(&cluster);
        let key = "DrbdOptions/Net/max-buffers";
        web_mut(&mut cluster)
            .resources
            .get_mut(&nodes[0])
            .unwrap()
            .props
            .insert(key.into(), "2000".into());
        let spec = web_spec(&cluster, &nodes[0]);
        assert_eq!(spec.options["Net/max-buffers"], "2000");
        assert!(spec.connection_options.is_empty());

        // The controller's reaches that member too: it is written in every connection.
        let plan = controller_props::modify(&cluster, &set(key, "8000")).unwrap();
        assert_eq!(
            touched_by(&cluster, &plan),
            members(&cluster, &["web", "db"])
        );
        apply(&mut cluster, plan);
        let spec = web_spec(&cluster, &nodes[0]);
        assert_eq!(
            spec.options["Net/max-buffers"], "2000",
            "the resource's, in `net`"
        );
        for peer in &nodes[1..] {
            assert_eq!(
                spec.connection_options[peer.as_str()]["Net/max-buffers"],
                "8000",
                "the controller's, in each connection's `net`, which DRBD takes"
            );
        }

        // A node connection is under the definition, over the group and the controller.
        let pair = crate::model::Connection::key(&nodes[0], &nodes[1]);
        cluster.node_connections.insert(
            pair.clone(),
            crate::model::Connection {
                node_a: pair.0.clone(),
                node_b: pair.1.clone(),
                props: [(key.to_string(), "5000".to_string())].into(),
            },
        );
        let spec = web_spec(&cluster, &nodes[0]);
        assert_eq!(
            spec.connection_options[nodes[1].as_str()]["Net/max-buffers"],
            "5000"
        );
        web_mut(&mut cluster)
            .props
            .insert(key.into(), "4000".into());
        let spec = web_spec(&cluster, &nodes[0]);
        assert_eq!(
            spec.connection_options[nodes[1].as_str()]["Net/max-buffers"],
            "4000"
        );
        assert_eq!(
            spec.connection_options[nodes[2].as_str()]["Net/max-buffers"],
            "4000"
        );
        // Now nothing above the definition reaches web.
        let plan = controller_props::modify(&cluster, &set(key, "9000")).unwrap();
        assert_eq!(touched_by(&cluster, &plan), members(&cluster, &["db"]));
    }

    #[test]
    fn a_resource_connection_takes_a_connections_peer_device_options_from_it_the_definition_and_the_group()
     {
        let mut cluster = cluster();
        let nodes = web_nodes(&cluster);
        let rate = "DrbdOptions/PeerDevice/c-max-rate";
        cluster.props.insert(rate.into(), "100M".into());
        web_mut(&mut cluster)
            .resources
            .get_mut(&nodes[0])
            .unwrap()
            .props
            .insert("DrbdOptions/PeerDevice/resync-rate".into(), "40960".into());
        let spec = web_spec(&cluster, &nodes[0]);
        for peer in &nodes[1..] {
            assert_eq!(
                spec.connection_options[peer.as_str()],
                [
                    ("PeerDevice/c-max-rate".to_string(), "100M".to_string()),
                    ("PeerDevice/resync-rate".to_string(), "40960".to_string()),
                ]
                .into(),
                "without a resource connection, the member's own"
            );
        }
        let plan = connections::modify_resource_connection(
            &cluster,
            "web",
            nodes[0].as_str(),
            nodes[1].as_str(),
            &set("DrbdOptions/Net/ping-timeout", "20"),
        )
        .unwrap();
        apply(&mut cluster, plan);
        let spec = web_spec(&cluster, &nodes[0]);
        assert_eq!(
            spec.connection_options[nodes[1].as_str()],
            [("Net/ping-timeout".to_string(), "20".to_string())].into(),
            "with one, neither the controller's nor the resource's"
        );
        assert_eq!(spec.connection_options[nodes[2].as_str()].len(), 2);
        // The group's is in the resource connection's chain.
        cluster
            .resource_groups
            .values_mut()
            .find(|g| g.name.as_str() == "my_ssd_group")
            .unwrap()
            .props
            .insert(rate.into(), "200M".into());
        let spec = web_spec(&cluster, &nodes[0]);
        assert_eq!(
            spec.connection_options[nodes[1].as_str()]["PeerDevice/c-max-rate"],
            "200M"
        );
        // A controller change reaches the connection that reads it, not the one that does not.
        cluster.props.remove(rate);
        let plan =
            controller_props::modify(&cluster, &set("DrbdOptions/PeerDevice/c-fill-target", "1M"))
                .unwrap();
        assert!(
            touched_by(&cluster, &plan).contains(&(nodes[0].clone(), Some("web".parse().unwrap())))
        );
    }
}
