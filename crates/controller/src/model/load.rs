//! Rebuilding the object graph from the store at start-up: SQLite reads the rows on the
//! caller's thread while a second thread decodes them into the graph, parents first, and the
//! store's integrity check runs beside both ([`Cluster::load`]).
//!
//! SQLite hands out each table's rows as it keeps them ([`Store::scan_as_stored`], a walk of
//! the table alone), which is mostly the order they were inserted in, parents' tables first.
//! The resource definitions, the most numerous parents, are staged in the order read
//! ([`Staged`]). Their children were mostly inserted in the same order as they were (a
//! definition, then its volume definitions and resources), so each child is put under its
//! parent by a cursor that moves forward; an index of the definitions in key order, made at
//! the first miss, finds the others. The map of definitions is built in one go at the end,
//! instead of a search of the map per row.

use ferrite_store::{IntegrityCheck, Store, StoreError, Table};
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
    /// The graph as recorded in `store`. SQLite reads the rows on this thread while a second
    /// one decodes them into the graph: the rows go across in batches, copied in the order
    /// read, so a row's parent is still absorbed before it. The store's integrity check runs
    /// beside both, and a store that fails it is refused even when its rows decoded.
    ///
    /// With a check of the pages only ([`Store::open_checking_pages_aside`]), the references
    /// the store's foreign keys hold are checked here, in the graph
    /// ([`Cluster::foreign_key_violations`]); a store with one is refused as corrupt, as
    /// SQLite's `foreign_key_check` would have it refused. (Checking them always costs a walk
    /// of the graph, a fraction of SQLite's look-up of every parent row.)
    pub fn load(store: &Store, check: IntegrityCheck) -> Result<Cluster, ReadError> {
        let mut cluster = Cluster {
            cluster_id: store.cluster_id()?,
            revision: store.revision(),
            epoch: store.epoch(),
            ..Cluster::default()
        };
        let read = read_pipelined(store, &mut cluster);
        check.wait()?;
        read?;
        let violations = cluster.foreign_key_violations();
        if !violations.is_empty() {
            return Err(StoreError::Corrupt {
                path: store.path().to_path_buf(),
                problems: violations.join("; "),
            }
            .into());
        }
        Ok(cluster)
    }

    /// Adds one row to the graph; a row's parent comes before it ([`Table::ALL`]'s order).
    /// Resource definitions and their children go to `staged` until [`Staged::finish`].
    fn absorb(
        &mut self,
        staged: &mut Staged,
        table: Table,
        key: &[&str],
        data: &str,
    ) -> Result<(), LoadError> {
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
                let rd: ResourceDefinition = parse(table, key, data)?;
                staged.add(table, key, rd)?;
            }
            Table::VolumeDefinitions => {
                let vd: VolumeDefinition = parse(table, key, data)?;
                staged
                    .parent(table, key)?
                    .volume_definitions
                    .insert(vd.number, vd);
            }
            Table::Resources => {
                let mut resource: Resource = parse(table, key, data)?;
                cluster.share_names(&mut resource);
                staged
                    .parent(table, key)?
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

/// The resource definitions read so far, in the order read, and where the last child found
/// its parent. A definition's row key is its name's key, so children find it by that.
#[derive(Default)]
struct Staged {
    definitions: Vec<ResourceDefinition>,
    /// The positions in `definitions` in the order of their keys: made when a child first
    /// does not find its parent near the cursor.
    by_key: Option<Vec<u32>>,
    /// The table whose rows the cursor follows, and the index it is at.
    cursor: Option<(Table, usize)>,
}

impl Staged {
    /// Stages a definition read from the row with `key`, which must be its name's.
    fn add(&mut self, table: Table, key: &[&str], rd: ResourceDefinition) -> Result<(), LoadError> {
        if rd.name.key() != key[0] {
            return Err(LoadError {
                table,
                key: owned(key),
                reason: format!(
                    "its key is not that of the name it holds, '{}' (key {})",
                    rd.name,
                    rd.name.key()
                ),
            });
        }
        self.definitions.push(rd);
        Ok(())
    }

    /// The definition whose key text is `key[0]`. Children mostly come in their parents'
    /// order, so the parent is usually at the cursor or just after it; the index in key order
    /// finds it otherwise, and a child with no parent is refused.
    fn parent(&mut self, table: Table, key: &[&str]) -> Result<&mut ResourceDefinition, LoadError> {
        let wanted = key[0];
        let from = match self.cursor {
            Some((of, at)) if of == table => at,
            _ => 0,
        };
        let near = self
            .definitions
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take(CURSOR_REACH)
            .position(|rd| rd.name.key() == wanted)
            .map(|i| from + i);
        let found = near.or_else(|| {
            let definitions = &self.definitions;
            let by_key = self
                .by_key
                .get_or_insert_with(|| positions_by_key(definitions));
            by_key
                .binary_search_by(|&at| definitions[at as usize].name.key().cmp(wanted))
                .ok()
                .map(|i| by_key[i] as usize)
        });
        // A row with no parent leaves the cursor where it was.
        let index = found.ok_or_else(|| LoadError {
            table,
            key: owned(key),
            reason: "its parent object is missing".to_string(),
        })?;
        self.cursor = Some((table, index));
        Ok(&mut self.definitions[index])
    }

    /// Puts the definitions into the graph, all at once. The map sorts what it is given, and
    /// a sort moves each definition many times: they are put in key order first by moving
    /// each once, along the cycles of their positions in key order.
    fn finish(mut self, cluster: &mut Cluster) {
        let mut order = self
            .by_key
            .take()
            .unwrap_or_else(|| positions_by_key(&self.definitions));
        permute(&mut self.definitions, &mut order);
        cluster.resource_definitions = self
            .definitions
            .into_iter()
            .map(|rd| (rd.name.clone(), rd))
            .collect();
    }
}

/// The positions of `definitions` in the order of their keys.
fn positions_by_key(definitions: &[ResourceDefinition]) -> Vec<u32> {
    let mut by_key: Vec<u32> = (0..definitions.len() as u32).collect();
    if !definitions.is_sorted_by(|a, b| a.name.key() <= b.name.key()) {
        by_key.sort_unstable_by(|&a, &b| {
            definitions[a as usize]
                .name
                .key()
                .cmp(definitions[b as usize].name.key())
        });
    }
    by_key
}

/// Reorders `items` so that the `i`-th is the one that was at `order[i]`, moving each item
/// once (`order` is a permutation, and is used up).
fn permute<T>(items: &mut [T], order: &mut [u32]) {
    for start in 0..items.len() {
        let mut at = start;
        // Along the cycle through `start`: each step puts the wanted item at `at`, and the
        // one it displaced where the next step takes from. Done positions point to themselves.
        while order[at] as usize != at {
            let from = order[at] as usize;
            order[at] = at as u32;
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// How many definitions from the cursor on a child's parent is looked for before a binary
/// search: its own parent's next sibling is the next definition, or one of the next few when
/// some have no children of that table.
const CURSOR_REACH: usize = 4;

/// Rows per batch handed from the reading thread to the decoding one: large enough that the
/// hand-over costs nothing per row, small enough that both threads start at once.
const ROWS_PER_BATCH: usize = 2048;

/// Batches read and not yet decoded: the reader runs at most this far ahead.
const BATCHES_AHEAD: usize = 4;

/// Rows copied out of SQLite's buffers: one text of every key part and data, and the spans.
#[derive(Default)]
struct RowBatch {
    text: String,
    rows: Vec<RowSpans>,
}

struct RowSpans {
    table: Table,
    /// The key parts (`width` of them), then the data, as ranges of [`RowBatch::text`].
    parts: [std::ops::Range<usize>; 4],
    width: usize,
}

impl RowBatch {
    fn push(&mut self, table: Table, key: &[&str], data: &str) {
        let mut parts: [std::ops::Range<usize>; 4] = Default::default();
        for (part, text) in parts.iter_mut().zip(key.iter().copied().chain([data])) {
            let start = self.text.len();
            self.text.push_str(text);
            *part = start..self.text.len();
        }
        self.rows.push(RowSpans {
            table,
            parts,
            width: key.len(),
        });
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn clear(&mut self) {
        self.text.clear();
        self.rows.clear();
    }

    /// Hands every row to `visit` in the order pushed.
    fn each<E>(
        &self,
        mut visit: impl FnMut(Table, &[&str], &str) -> Result<(), E>,
    ) -> Result<(), E> {
        for row in &self.rows {
            let mut key: [&str; 3] = [""; 3];
            for (part, range) in key.iter_mut().zip(&row.parts[..row.width]) {
                *part = &self.text[range.clone()];
            }
            visit(
                row.table,
                &key[..row.width],
                &self.text[row.parts[row.width].clone()],
            )?;
        }
        Ok(())
    }
}

/// Why the reading side of [`read_pipelined`] stopped early.
enum ScanStop {
    Store(StoreError),
    /// The decoding thread ended (its error is the one to report).
    DecoderGone,
}

impl From<StoreError> for ScanStop {
    fn from(error: StoreError) -> Self {
        ScanStop::Store(error)
    }
}

/// Reads every row of `store` into `cluster`: SQLite on this thread, decoding on another.
fn read_pipelined(store: &Store, cluster: &mut Cluster) -> Result<(), ReadError> {
    let (full, to_decode) = std::sync::mpsc::sync_channel::<RowBatch>(BATCHES_AHEAD);
    let (spent, reusable) = std::sync::mpsc::channel::<RowBatch>();
    std::thread::scope(|scope| {
        let decoder = std::thread::Builder::new()
            .name("store-load".into())
            .spawn_scoped(scope, move || -> Result<(), LoadError> {
                let mut staged = Staged::default();
                for mut batch in to_decode {
                    batch.each(|table, key, data| cluster.absorb(&mut staged, table, key, data))?;
                    batch.clear();
                    let _ = spent.send(batch);
                }
                staged.finish(cluster);
                Ok(())
            })
            .expect("a thread to decode the store's rows");
        let mut batch = RowBatch::default();
        let mut scanned = store.scan_as_stored(|table, key, data| -> Result<(), ScanStop> {
            batch.push(table, key, data);
            if batch.len() >= ROWS_PER_BATCH {
                let next = reusable.try_recv().unwrap_or_default();
                full.send(std::mem::replace(&mut batch, next))
                    .map_err(|_| ScanStop::DecoderGone)?;
            }
            Ok(())
        });
        if scanned.is_ok() && batch.len() > 0 && full.send(batch).is_err() {
            scanned = Err(ScanStop::DecoderGone);
        }
        drop(full);
        let decoded = match decoder.join() {
            Ok(decoded) => decoded,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        decoded?;
        match scanned {
            Ok(()) => Ok(()),
            Err(ScanStop::Store(error)) => Err(error.into()),
            Err(ScanStop::DecoderGone) => {
                unreachable!("the decoder ended early only with an error")
            }
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing;
    use ferrite_store::{Change, DataDirLock};

    /// Enough resources that their rows fill several batches of [`ROWS_PER_BATCH`].
    const RESOURCES: usize = 3 * ROWS_PER_BATCH;

    fn many_resources() -> Cluster {
        let mut cluster = testing::tutorial_cluster();
        for i in 0..RESOURCES {
            let node = format!("node{}", 1 + i % 3);
            testing::add_resource(&mut cluster, &format!("res{i:05}"), &node, "pool_ssd");
        }
        cluster
    }

    fn open_checking(dir: &std::path::Path) -> (Store, IntegrityCheck) {
        Store::open_checking_pages_aside(DataDirLock::acquire(dir).unwrap(), "test-cluster")
            .unwrap()
    }

    /// Each resource holds its node's own name and pool name, put or loaded, whatever
    /// spelling the resource was created with.
    #[test]
    fn resources_share_their_nodes_names_put_and_loaded() {
        fn assert_shared(cluster: &Cluster) {
            let mut resources = 0;
            for rd in cluster.resource_definitions.values() {
                for placed in rd.resources.values() {
                    let (node_name, node) = cluster.nodes.get_key_value(&placed.node).unwrap();
                    let (pool_name, _) = node
                        .storage_pools
                        .get_key_value(&placed.storage_pool)
                        .unwrap();
                    assert!(placed.node.shares_text_with(node_name), "{}", rd.name);
                    assert!(
                        placed.storage_pool.shares_text_with(pool_name),
                        "{}",
                        rd.name
                    );
                    assert_eq!(placed.node.as_str(), node_name.as_str());
                    resources += 1;
                }
            }
            assert_eq!(resources, 3);
        }
        let mut cluster = testing::tutorial_cluster();
        testing::add_resource(&mut cluster, "res0", "node1", "pool_ssd");
        testing::add_resource(&mut cluster, "res1", "NODE2", "POOL_SSD");
        testing::add_resource(&mut cluster, "res2", "Node3", "pool_ssd");
        assert_shared(&cluster);
        let dir = tempfile::tempdir().unwrap();
        assert_shared(&testing::reloaded(&cluster, dir.path()));
    }

    #[test]
    fn rows_across_many_batches_load_with_every_child_under_its_parent() {
        let cluster = many_resources();
        let dir = tempfile::tempdir().unwrap();
        let loaded = testing::reloaded(&cluster, dir.path());
        assert_same_definitions(&cluster, &loaded);
    }

    #[test]
    fn rows_stored_in_another_order_than_their_keys_load_the_same() {
        let cluster = many_resources();
        let dir = tempfile::tempdir().unwrap();
        testing::reloaded(&cluster, dir.path());
        // Definitions last to first, volume definitions odd rows after even ones, resources
        // in a scattered order: the foreign keys name the keys, not the rowids.
        let raw =
            rusqlite::Connection::open(dir.path().join(ferrite_store::DATABASE_FILE)).unwrap();
        raw.execute_batch(
            "UPDATE resource_definitions SET rowid = -rowid;
             UPDATE volume_definitions SET rowid = rowid + (rowid % 2) * 1000000;
             UPDATE resources SET rowid = -((rowid * 7919) % 100003) - 1000000;",
        )
        .unwrap();
        let first: String = raw
            .query_row(
                "SELECT name FROM resource_definitions ORDER BY rowid LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            first,
            format!("RES{:05}", RESOURCES - 1),
            "stored last to first"
        );
        drop(raw);
        let (store, check) = open_checking(dir.path());
        let loaded = Cluster::load(&store, check).unwrap();
        assert_same_definitions(&cluster, &loaded);
    }

    fn assert_same_definitions(cluster: &Cluster, loaded: &Cluster) {
        assert_eq!(loaded.nodes.len(), cluster.nodes.len());
        assert_eq!(loaded.resource_definitions.len(), RESOURCES);
        for (name, rd) in &cluster.resource_definitions {
            let back = &loaded.resource_definitions[name];
            assert_eq!(back.uuid, rd.uuid);
            assert_eq!(
                back.volume_definitions.keys().collect::<Vec<_>>(),
                rd.volume_definitions.keys().collect::<Vec<_>>()
            );
            let resources = |rd: &ResourceDefinition| {
                rd.resources
                    .values()
                    .map(|r| {
                        (
                            r.node.to_string(),
                            r.uuid.clone(),
                            r.storage_pool.to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(resources(back), resources(rd), "{name}");
        }
    }

    #[test]
    fn a_child_finds_its_parent_out_of_order_and_an_orphan_is_refused() {
        let mut source = testing::tutorial_cluster();
        // More definitions than the cursor looks ahead.
        for name in [
            "res_a", "res_b", "res_c", "res_d", "res_e", "res_f", "res_g", "res_h",
        ] {
            testing::add_resource(&mut source, name, "node1", "pool_ssd");
            testing::add_resource(&mut source, name, "node2", "pool_ssd");
        }
        let rds: Vec<&ResourceDefinition> = source.resource_definitions.values().collect();
        let mut loaded = Cluster::default();
        let mut staged = Staged::default();
        for rd in rds.iter().rev() {
            let row = serde_json::to_string(rd).unwrap();
            loaded
                .absorb(
                    &mut staged,
                    Table::ResourceDefinitions,
                    &[rd.name.key()],
                    &row,
                )
                .unwrap();
        }
        // The definitions were read last to first; the resources come from the first
        // definition to the last: the cursor never has the parent, the index finds it.
        for rd in &rds {
            for resource in rd.resources.values() {
                let row = serde_json::to_string(resource).unwrap();
                let key = [rd.name.key(), resource.node.key()];
                loaded
                    .absorb(&mut staged, Table::Resources, &key, &row)
                    .unwrap();
            }
        }
        let some_resource = rds[0].resources.values().next().unwrap();
        let row = serde_json::to_string(some_resource).unwrap();
        let orphan = loaded
            .absorb(&mut staged, Table::Resources, &["GHOST", "NODE1"], &row)
            .unwrap_err();
        assert_eq!(orphan.table, Table::Resources);
        assert_eq!(orphan.key, ["GHOST", "NODE1"]);
        assert_eq!(orphan.reason, "its parent object is missing");

        staged.finish(&mut loaded);
        assert_eq!(loaded.resource_definitions.len(), rds.len());
        for rd in &rds {
            let back = &loaded.resource_definitions[&rd.name];
            assert_eq!(
                back.resources.keys().collect::<Vec<_>>(),
                rd.resources.keys().collect::<Vec<_>>(),
                "{}",
                rd.name
            );
        }
    }

    #[test]
    fn a_permutation_puts_each_item_where_its_order_says() {
        // Identity, one cycle, fixed points among cycles, and scattered ones.
        let mut orders: Vec<Vec<u32>> = vec![
            vec![],
            vec![0, 1, 2],
            vec![1, 2, 3, 0],
            vec![0, 2, 1, 3, 5, 4, 6],
        ];
        for n in [10u32, 97, 1000] {
            orders.push((0..n).map(|i| (i * 7 + 3) % n).collect());
            orders.push((0..n).rev().collect());
        }
        for order in orders {
            let items: Vec<String> = (0..order.len()).map(|i| format!("item{i}")).collect();
            let wanted: Vec<String> = order.iter().map(|&at| items[at as usize].clone()).collect();
            let mut permuted = items.clone();
            permute(&mut permuted, &mut order.clone());
            assert_eq!(permuted, wanted, "{order:?}");
        }
    }

    #[test]
    fn a_definition_stored_under_another_key_than_its_names_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = testing::tutorial_cluster();
        testing::add_resource(&mut cluster, "web", "node1", "pool_ssd");
        testing::reloaded(&cluster, dir.path());
        let raw =
            rusqlite::Connection::open(dir.path().join(ferrite_store::DATABASE_FILE)).unwrap();
        raw.execute_batch(
            "PRAGMA foreign_keys = OFF;
             UPDATE resource_definitions SET name = 'WEB2' WHERE name = 'WEB';
             UPDATE resources SET resource = 'WEB2' WHERE resource = 'WEB';
             UPDATE volume_definitions SET resource = 'WEB2' WHERE resource = 'WEB';",
        )
        .unwrap();
        drop(raw);
        let (store, check) = open_checking(dir.path());
        match Cluster::load(&store, check) {
            Err(ReadError::Row(LoadError { table, key, reason })) => {
                assert_eq!(table, Table::ResourceDefinitions);
                assert_eq!(key, ["WEB2"]);
                assert!(reason.contains("'web' (key WEB)"), "{reason}");
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a definition under another key was loaded"),
        }
    }

    #[test]
    fn a_store_whose_rows_name_a_node_that_is_gone_is_refused_as_corrupt() {
        let mut cluster = testing::tutorial_cluster();
        testing::add_resource(&mut cluster, "web", "node1", "pool_ssd");
        let dir = tempfile::tempdir().unwrap();
        testing::reloaded(&cluster, dir.path());
        // A hand edit with foreign keys off: a second replica of `web`, on a node that is not
        // in the store.
        let raw =
            rusqlite::Connection::open(dir.path().join(ferrite_store::DATABASE_FILE)).unwrap();
        raw.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        let copied = raw
            .execute(
                "INSERT INTO resources (resource, node, data) \
                 SELECT resource, 'GHOST', replace(data, '\"node\":\"node1\"', '\"node\":\"ghost\"') \
                 FROM resources WHERE resource = 'WEB' AND node = 'NODE1'",
                [],
            )
            .unwrap();
        assert_eq!(copied, 1);
        drop(raw);

        let (store, check) = open_checking(dir.path());
        match Cluster::load(&store, check) {
            Err(ReadError::Store(StoreError::Corrupt { problems, .. })) => {
                assert!(
                    problems.contains("resource 'web' is on node 'ghost'"),
                    "{problems}"
                );
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a resource on a node that is gone was loaded"),
        }
    }

    /// A definition whose stored data is not JSON, at `name` among [`RESOURCES`] valid ones.
    fn store_with_a_broken_definition(dir: &std::path::Path, name: &str) {
        testing::reloaded(&many_resources(), dir);
        let mut store = Store::open(DataDirLock::acquire(dir).unwrap(), "test-cluster").unwrap();
        store
            .commit(&[Change::Put {
                table: Table::ResourceDefinitions,
                key: vec![name.to_string()],
                data: "{\"name\": \"half a row".to_string(),
            }])
            .unwrap();
    }

    #[test]
    fn a_row_that_does_not_decode_fails_the_load_wherever_it_lies() {
        // First: the decoder stops while the reader still has every batch to send. Last: the
        // reader has sent everything.
        for name in ["aaa-broken", "zzz-broken"] {
            let dir = tempfile::tempdir().unwrap();
            store_with_a_broken_definition(dir.path(), name);
            let (store, check) = open_checking(dir.path());
            match Cluster::load(&store, check) {
                Err(ReadError::Row(LoadError { table, key, reason })) => {
                    assert_eq!(table, Table::ResourceDefinitions);
                    assert_eq!(key, vec![name.to_string()]);
                    assert!(reason.contains("EOF"), "{reason}");
                }
                Err(other) => panic!("{name}: {other}"),
                Ok(_) => panic!("{name}: a row that does not decode was accepted"),
            }
        }
    }
}
