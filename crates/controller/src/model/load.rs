//! Rebuilding the object graph from the store at start-up.

use ferrite_store::{IntegrityCheck, Snapshot as StoreSnapshot, Store, StoreError, Table};
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

/// Why the graph could not be read from the store.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Row(#[from] LoadError),
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
        for table in Table::ALL {
            for row in snapshot.rows(table) {
                let key: Vec<&str> = row.key.iter().map(String::as_str).collect();
                cluster.absorb(table, &key, &row.data)?;
            }
        }
        Ok(cluster)
    }

    /// The graph as recorded in `store`, read row by row: no row is copied before it is
    /// decoded, and the rows are read while the store's integrity check runs beside them.
    /// A store that fails the check is refused even when its rows decoded.
    pub fn load(store: &Store, check: IntegrityCheck) -> Result<Cluster, ReadError> {
        let mut cluster = Cluster {
            cluster_id: store.cluster_id()?,
            revision: store.revision(),
            epoch: store.epoch(),
            ..Cluster::default()
        };
        let read = store
            .scan(|table, key, data| cluster.absorb(table, key, data).map_err(ReadError::from));
        check.wait()?;
        read?;
        Ok(cluster)
    }

    /// Adds one row to the graph; a row's parent comes before it ([`Table::ALL`]'s order).
    fn absorb(&mut self, table: Table, key: &[&str], data: &str) -> Result<(), LoadError> {
        let cluster = self;
        match table {
            Table::ControllerProps => {
                cluster.props.insert(key[0].to_string(), data.to_string());
            }
            Table::Nodes => {
                let node: Node = parse(Table::Nodes, key, data)?;
                cluster.nodes.insert(node.name.clone(), node);
            }
            Table::StoragePools => {
                let pool: StoragePool = parse(Table::StoragePools, key, data)?;
                let node = name::<NodeName>(Table::StoragePools, key, 0)?;
                owner(cluster.nodes.get_mut(&node), Table::StoragePools, key)?
                    .storage_pools
                    .insert(pool.name.clone(), pool);
            }
            Table::ResourceGroups => {
                let group: ResourceGroup = parse(Table::ResourceGroups, key, data)?;
                cluster.resource_groups.insert(group.name.clone(), group);
            }
            Table::VolumeGroups => {
                let volume_group: VolumeGroup = parse(Table::VolumeGroups, key, data)?;
                let group = name::<ResourceGroupName>(Table::VolumeGroups, key, 0)?;
                owner(
                    cluster.resource_groups.get_mut(&group),
                    Table::VolumeGroups,
                    key,
                )?
                .volume_groups
                .insert(volume_group.number, volume_group);
            }
            Table::ResourceDefinitions => {
                let rd: ResourceDefinition = parse(Table::ResourceDefinitions, key, data)?;
                cluster.resource_definitions.insert(rd.name.clone(), rd);
            }
            Table::VolumeDefinitions => {
                let vd: VolumeDefinition = parse(Table::VolumeDefinitions, key, data)?;
                let rd = name::<ResourceName>(Table::VolumeDefinitions, key, 0)?;
                owner(
                    cluster.resource_definitions.get_mut(&rd),
                    Table::VolumeDefinitions,
                    key,
                )?
                .volume_definitions
                .insert(vd.number, vd);
            }
            Table::Resources => {
                let resource: Resource = parse(Table::Resources, key, data)?;
                let rd = name::<ResourceName>(Table::Resources, key, 0)?;
                owner(
                    cluster.resource_definitions.get_mut(&rd),
                    Table::Resources,
                    key,
                )?
                .resources
                .insert(resource.node.clone(), resource);
            }
            Table::SnapshotDefinitions => {
                let definition: SnapshotDefinition = parse(Table::SnapshotDefinitions, key, data)?;
                cluster.snapshot_definitions.insert(
                    (definition.resource.clone(), definition.name.clone()),
                    definition,
                );
            }
            Table::Snapshots => {
                let taken: Snapshot = parse(Table::Snapshots, key, data)?;
                let rd = name::<ResourceName>(Table::Snapshots, key, 0)?;
                let snapshot_name = name::<SnapshotName>(Table::Snapshots, key, 1)?;
                owner(
                    cluster.snapshot_definitions.get_mut(&(rd, snapshot_name)),
                    Table::Snapshots,
                    key,
                )?
                .snapshots
                .insert(taken.node.clone(), taken);
            }
            Table::ErrorReports => {
                let report: StoredErrorReport = parse(Table::ErrorReports, key, data)?;
                cluster.error_reports.insert(report.id.clone(), report);
            }
            Table::KeyValueStores => {
                let store: KeyValueStore = parse(Table::KeyValueStores, key, data)?;
                cluster
                    .key_value_stores
                    .insert(store.name.to_uppercase(), store);
            }
            Table::NodeConnections => {
                let connection: Connection = parse(Table::NodeConnections, key, data)?;
                cluster.node_connections.insert(
                    Connection::key(&connection.node_a, &connection.node_b),
                    connection,
                );
            }
            Table::ResourceConnections => {
                let connection: Connection = parse(Table::ResourceConnections, key, data)?;
                let rd = name::<ResourceName>(Table::ResourceConnections, key, 0)?;
                let (node_a, node_b) = Connection::key(&connection.node_a, &connection.node_b);
                cluster
                    .resource_connections
                    .insert((rd, node_a, node_b), connection);
            }
        }
        Ok(())
    }
}

fn owned(key: &[&str]) -> Vec<String> {
    key.iter().map(|k| k.to_string()).collect()
}

fn parse<T: serde::de::DeserializeOwned>(
    table: Table,
    key: &[&str],
    data: &str,
) -> Result<T, LoadError> {
    serde_json::from_str(data).map_err(|e| LoadError {
        table,
        key: owned(key),
        reason: e.to_string(),
    })
}

fn name<T: std::str::FromStr>(table: Table, key: &[&str], index: usize) -> Result<T, LoadError>
where
    T::Err: std::fmt::Display,
{
    key[index].parse().map_err(|e: T::Err| LoadError {
        table,
        key: owned(key),
        reason: e.to_string(),
    })
}

fn owner<'a, T>(
    found: Option<&'a mut T>,
    table: Table,
    key: &[&str],
) -> Result<&'a mut T, LoadError> {
    found.ok_or_else(|| LoadError {
        table,
        key: owned(key),
        reason: "its parent object is missing".to_string(),
    })
}
