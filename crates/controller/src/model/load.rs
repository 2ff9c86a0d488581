//! Rebuilding the object graph from the store at start-up.

use ferrite_store::{Snapshot as StoreSnapshot, Table};
use ferrite_types::{NodeName, ResourceGroupName, ResourceName, SnapshotName};

use super::{
    Cluster, Connection, KeyValueStore, Node, Resource, ResourceDefinition, ResourceGroup,
    Snapshot, SnapshotDefinition, StoragePool, StoredErrorReport, VolumeDefinition, VolumeGroup,
};

/// A row the controller cannot make sense of. The store's foreign keys make orphans
/// impossible, so this means a hand-edited or corrupted database.
#[derive(Debug, thiserror::Error)]
#[error("store row {table:?} {key:?} is invalid: {reason}")]
pub struct LoadError {
    pub table: Table,
    pub key: Vec<String>,
    pub reason: String,
}

impl Cluster {
    /// The graph as recorded in `snapshot`.
    pub fn from_snapshot(snapshot: &StoreSnapshot) -> Result<Cluster, LoadError> {
        let mut cluster = Cluster {
            cluster_id: snapshot.cluster_id.clone(),
            revision: snapshot.revision,
            epoch: snapshot.epoch,
            ..Cluster::default()
        };
        for row in snapshot.rows(Table::ControllerProps) {
            cluster.props.insert(row.key[0].clone(), row.data.clone());
        }
        for row in snapshot.rows(Table::Nodes) {
            let node: Node = parse(Table::Nodes, &row.key, &row.data)?;
            cluster.nodes.insert(node.name.clone(), node);
        }
        for row in snapshot.rows(Table::StoragePools) {
            let pool: StoragePool = parse(Table::StoragePools, &row.key, &row.data)?;
            let node = name::<NodeName>(Table::StoragePools, &row.key, 0)?;
            owner(cluster.nodes.get_mut(&node), Table::StoragePools, &row.key)?
                .storage_pools
                .insert(pool.name.clone(), pool);
        }
        for row in snapshot.rows(Table::ResourceGroups) {
            let group: ResourceGroup = parse(Table::ResourceGroups, &row.key, &row.data)?;
            cluster.resource_groups.insert(group.name.clone(), group);
        }
        for row in snapshot.rows(Table::VolumeGroups) {
            let volume_group: VolumeGroup = parse(Table::VolumeGroups, &row.key, &row.data)?;
            let group = name::<ResourceGroupName>(Table::VolumeGroups, &row.key, 0)?;
            owner(
                cluster.resource_groups.get_mut(&group),
                Table::VolumeGroups,
                &row.key,
            )?
            .volume_groups
            .insert(volume_group.number, volume_group);
        }
        for row in snapshot.rows(Table::ResourceDefinitions) {
            let rd: ResourceDefinition = parse(Table::ResourceDefinitions, &row.key, &row.data)?;
            cluster.resource_definitions.insert(rd.name.clone(), rd);
        }
        for row in snapshot.rows(Table::VolumeDefinitions) {
            let vd: VolumeDefinition = parse(Table::VolumeDefinitions, &row.key, &row.data)?;
            let rd = name::<ResourceName>(Table::VolumeDefinitions, &row.key, 0)?;
            owner(
                cluster.resource_definitions.get_mut(&rd),
                Table::VolumeDefinitions,
                &row.key,
            )?
            .volume_definitions
            .insert(vd.number, vd);
        }
        for row in snapshot.rows(Table::Resources) {
            let resource: Resource = parse(Table::Resources, &row.key, &row.data)?;
            let rd = name::<ResourceName>(Table::Resources, &row.key, 0)?;
            owner(
                cluster.resource_definitions.get_mut(&rd),
                Table::Resources,
                &row.key,
            )?
            .resources
            .insert(resource.node.clone(), resource);
        }
        for row in snapshot.rows(Table::SnapshotDefinitions) {
            let definition: SnapshotDefinition =
                parse(Table::SnapshotDefinitions, &row.key, &row.data)?;
            cluster.snapshot_definitions.insert(
                (definition.resource.clone(), definition.name.clone()),
                definition,
            );
        }
        for row in snapshot.rows(Table::Snapshots) {
            let taken: Snapshot = parse(Table::Snapshots, &row.key, &row.data)?;
            let rd = name::<ResourceName>(Table::Snapshots, &row.key, 0)?;
            let snapshot_name = name::<SnapshotName>(Table::Snapshots, &row.key, 1)?;
            owner(
                cluster.snapshot_definitions.get_mut(&(rd, snapshot_name)),
                Table::Snapshots,
                &row.key,
            )?
            .snapshots
            .insert(taken.node.clone(), taken);
        }
        for row in snapshot.rows(Table::ErrorReports) {
            let report: StoredErrorReport = parse(Table::ErrorReports, &row.key, &row.data)?;
            cluster.error_reports.insert(report.id.clone(), report);
        }
        for row in snapshot.rows(Table::KeyValueStores) {
            let store: KeyValueStore = parse(Table::KeyValueStores, &row.key, &row.data)?;
            cluster
                .key_value_stores
                .insert(store.name.to_uppercase(), store);
        }
        for row in snapshot.rows(Table::NodeConnections) {
            let connection: Connection = parse(Table::NodeConnections, &row.key, &row.data)?;
            cluster.node_connections.insert(
                Connection::key(&connection.node_a, &connection.node_b),
                connection,
            );
        }
        for row in snapshot.rows(Table::ResourceConnections) {
            let connection: Connection = parse(Table::ResourceConnections, &row.key, &row.data)?;
            let rd = name::<ResourceName>(Table::ResourceConnections, &row.key, 0)?;
            let (node_a, node_b) = Connection::key(&connection.node_a, &connection.node_b);
            cluster
                .resource_connections
                .insert((rd, node_a, node_b), connection);
        }
        Ok(cluster)
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    table: Table,
    key: &[String],
    data: &str,
) -> Result<T, LoadError> {
    serde_json::from_str(data).map_err(|e| LoadError {
        table,
        key: key.to_vec(),
        reason: e.to_string(),
    })
}

fn name<T: std::str::FromStr>(table: Table, key: &[String], index: usize) -> Result<T, LoadError>
where
    T::Err: std::fmt::Display,
{
    key[index].parse().map_err(|e: T::Err| LoadError {
        table,
        key: key.to_vec(),
        reason: e.to_string(),
    })
}

fn owner<'a, T>(
    found: Option<&'a mut T>,
    table: Table,
    key: &[String],
) -> Result<&'a mut T, LoadError> {
    found.ok_or_else(|| LoadError {
        table,
        key: key.to_vec(),
        reason: "its parent object is missing".to_string(),
    })
}
