//! The controller's store: SQLite in the data directory, WAL mode, versioned migrations.
//!
//! The store knows tables, keys and JSON rows; what the rows mean is the controller's business.
//! A [`Store::commit`] is one SQLite transaction: all of its changes land, with the revision
//! counter bumped, or none do. With `synchronous=FULL` a commit that returned is on disk, so an
//! acknowledged mutation survives `kill -9` and power loss alike.
//!
//! It does not cache, does not validate object contents and does not know about satellites.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params_from_iter};

/// Migrations, in order. `PRAGMA user_version` records how many have been applied.
const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_initial",
    include_str!("../migrations/0001_initial.sql"),
)];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The file name of the database inside the data directory.
pub const DATABASE_FILE: &str = "ferrite.db";

/// A table of the object graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    ControllerProps,
    Nodes,
    StoragePools,
    ResourceGroups,
    VolumeGroups,
    ResourceDefinitions,
    VolumeDefinitions,
    Resources,
    ErrorReports,
}

impl Table {
    /// Every table, parents before children (the order rows are loaded in).
    pub const ALL: [Table; 9] = [
        Table::ControllerProps,
        Table::Nodes,
        Table::StoragePools,
        Table::ResourceGroups,
        Table::VolumeGroups,
        Table::ResourceDefinitions,
        Table::VolumeDefinitions,
        Table::Resources,
        Table::ErrorReports,
    ];

    fn sql_name(self) -> &'static str {
        match self {
            Table::ControllerProps => "controller_props",
            Table::Nodes => "nodes",
            Table::StoragePools => "storage_pools",
            Table::ResourceGroups => "resource_groups",
            Table::VolumeGroups => "volume_groups",
            Table::ResourceDefinitions => "resource_definitions",
            Table::VolumeDefinitions => "volume_definitions",
            Table::Resources => "resources",
            Table::ErrorReports => "error_reports",
        }
    }

    /// The primary key's columns, parent first.
    fn key_columns(self) -> &'static [&'static str] {
        match self {
            Table::ControllerProps => &["key"],
            Table::Nodes | Table::ResourceGroups | Table::ResourceDefinitions => &["name"],
            Table::StoragePools => &["node", "name"],
            Table::VolumeGroups => &["resource_group", "volume_number"],
            Table::VolumeDefinitions => &["resource", "volume_number"],
            Table::Resources => &["resource", "node"],
            Table::ErrorReports => &["id"],
        }
    }
}

/// One row: its key (parent first) and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: Vec<String>,
    pub data: String,
}

/// One change of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert or replace the row with this key.
    Put {
        table: Table,
        key: Vec<String>,
        data: String,
    },
    /// Delete the row with this key (and, through foreign keys, its children).
    Delete { table: Table, key: Vec<String> },
}

/// Everything in the store, as loaded at start-up.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: u64,
    pub cluster_id: String,
    pub rows: BTreeMap<Table, Vec<Row>>,
}

impl Snapshot {
    pub fn rows(&self, table: Table) -> &[Row] {
        self.rows.get(&table).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the database {path} has schema version {found}, newer than this build's {supported}; \
         run a Ferrite version at least as new as the one that wrote it"
    )]
    TooNew {
        path: PathBuf,
        found: usize,
        supported: usize,
    },
    #[error("migration {name} failed: {source}")]
    Migration {
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("the database {path} failed its integrity check: {problems}")]
    Corrupt { path: PathBuf, problems: String },
    #[error("change to {table:?} has key {key:?}, but that table's key has {expected} parts")]
    BadKey {
        table: Table,
        key: Vec<String>,
        expected: usize,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// The open store.
pub struct Store {
    path: PathBuf,
    connection: Connection,
    revision: u64,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`, applies pending migrations and
    /// checks integrity. `new_cluster_id` names the cluster if the store is new.
    pub fn open(data_dir: &Path, new_cluster_id: &str) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut connection = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        migrate(&mut connection, &path)?;
        check_integrity(&connection, &path)?;

        let tx = connection.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('cluster_id', ?1)",
            [new_cluster_id],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', '0')",
            [],
        )?;
        tx.commit()?;
        let revision = read_meta(&connection, "revision")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Store {
            path,
            connection,
            revision,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The revision of the last commit (0 for a new store).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Reads everything.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let cluster_id = read_meta(&self.connection, "cluster_id")?.unwrap_or_default();
        let mut rows = BTreeMap::new();
        for table in Table::ALL {
            let keys = table.key_columns().join(", ");
            let sql = format!(
                "SELECT {keys}, data FROM {} ORDER BY {keys}",
                table.sql_name()
            );
            let mut statement = self.connection.prepare(&sql)?;
            let width = table.key_columns().len();
            let table_rows = statement
                .query_map([], |row| {
                    let mut key = Vec::with_capacity(width);
                    for i in 0..width {
                        let value: rusqlite::types::Value = row.get(i)?;
                        key.push(match value {
                            rusqlite::types::Value::Integer(n) => n.to_string(),
                            rusqlite::types::Value::Text(s) => s,
                            other => format!("{other:?}"),
                        });
                    }
                    Ok(Row {
                        key,
                        data: row.get(width)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.insert(table, table_rows);
        }
        Ok(Snapshot {
            revision: self.revision,
            cluster_id,
            rows,
        })
    }

    /// Applies `changes` in one transaction and returns the new revision. On error nothing
    /// is changed.
    pub fn commit(&mut self, changes: &[Change]) -> Result<u64, StoreError> {
        for change in changes {
            let (table, key) = match change {
                Change::Put { table, key, .. } | Change::Delete { table, key } => (table, key),
            };
            if key.len() != table.key_columns().len() {
                return Err(StoreError::BadKey {
                    table: *table,
                    key: key.clone(),
                    expected: table.key_columns().len(),
                });
            }
        }
        let revision = self.revision + 1;
        let tx = self.connection.transaction()?;
        for change in changes {
            match change {
                Change::Put { table, key, data } => {
                    let columns = table.key_columns();
                    let placeholders: Vec<String> =
                        (1..=columns.len() + 1).map(|i| format!("?{i}")).collect();
                    let sql = format!(
                        "INSERT OR REPLACE INTO {} ({}, data) VALUES ({})",
                        table.sql_name(),
                        columns.join(", "),
                        placeholders.join(", ")
                    );
                    let values = key
                        .iter()
                        .map(String::as_str)
                        .chain(std::iter::once(data.as_str()));
                    tx.prepare_cached(&sql)?.execute(params_from_iter(values))?;
                }
                Change::Delete { table, key } => {
                    let condition: Vec<String> = table
                        .key_columns()
                        .iter()
                        .enumerate()
                        .map(|(i, column)| format!("{column} = ?{}", i + 1))
                        .collect();
                    let sql = format!(
                        "DELETE FROM {} WHERE {}",
                        table.sql_name(),
                        condition.join(" AND ")
                    );
                    tx.prepare_cached(&sql)?
                        .execute(params_from_iter(key.iter()))?;
                }
            }
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'revision'",
            [revision.to_string()],
        )?;
        tx.commit()?;
        self.revision = revision;
        Ok(revision)
    }
}

fn read_meta(connection: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    let exists: Option<String> = connection
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    Ok(connection
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()?)
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current: usize =
        connection.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))? as usize;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = connection.transaction()?;
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration { name, source })?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)
            .map_err(|source| StoreError::Migration { name, source })?;
        tx.commit()
            .map_err(|source| StoreError::Migration { name, source })?;
        tracing::info!(migration = name, "applied store migration");
    }
    Ok(())
}

fn check_integrity(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let quick: String = connection.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    let mut problems = Vec::new();
    if quick != "ok" {
        problems.push(quick);
    }
    let mut statement = connection.prepare("PRAGMA foreign_key_check")?;
    let orphans = statement
        .query_map([], |row| {
            Ok(format!("orphan row in {}", row.get::<_, String>(0)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    problems.extend(orphans);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            problems: problems.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(table: Table, key: &[&str], data: &str) -> Change {
        Change::Put {
            table,
            key: key.iter().map(|k| k.to_string()).collect(),
            data: data.to_string(),
        }
    }

    #[test]
    fn commits_survive_reopen_and_bump_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), "cluster-a").unwrap();
        assert_eq!(store.revision(), 0);
        let rev = store
            .commit(&[
                put(Table::Nodes, &["NODE1"], r#"{"name":"node1"}"#),
                put(
                    Table::StoragePools,
                    &["NODE1", "POOL"],
                    r#"{"name":"pool"}"#,
                ),
            ])
            .unwrap();
        assert_eq!(rev, 1);
        drop(store);

        let store = Store::open(dir.path(), "cluster-b").unwrap();
        assert_eq!(store.revision(), 1);
        let snapshot = store.load().unwrap();
        assert_eq!(
            snapshot.cluster_id, "cluster-a",
            "the first cluster id sticks"
        );
        assert_eq!(snapshot.rows(Table::Nodes).len(), 1);
        assert_eq!(
            snapshot.rows(Table::StoragePools)[0].key,
            vec!["NODE1", "POOL"]
        );
    }

    #[test]
    fn a_failing_commit_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), "c").unwrap();
        let result = store.commit(&[
            put(Table::ResourceGroups, &["RG"], "{}"),
            // No such node: the foreign key refuses it, and the whole commit rolls back.
            put(Table::StoragePools, &["GHOST", "POOL"], "{}"),
        ]);
        assert!(result.is_err());
        assert_eq!(store.revision(), 0);
        assert!(store.load().unwrap().rows(Table::ResourceGroups).is_empty());
    }

    #[test]
    fn deleting_a_parent_cascades() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), "c").unwrap();
        store
            .commit(&[
                put(Table::ResourceGroups, &["RG"], "{}"),
                put(Table::ResourceDefinitions, &["R1"], "{}"),
                put(Table::VolumeDefinitions, &["R1", "0"], "{}"),
            ])
            .unwrap();
        store
            .commit(&[Change::Delete {
                table: Table::ResourceDefinitions,
                key: vec!["R1".into()],
            }])
            .unwrap();
        let snapshot = store.load().unwrap();
        assert!(snapshot.rows(Table::VolumeDefinitions).is_empty());
        assert_eq!(snapshot.rows(Table::ResourceGroups).len(), 1);
    }

    #[test]
    fn keys_of_the_wrong_width_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), "c").unwrap();
        let err = store
            .commit(&[put(Table::StoragePools, &["ONLY_ONE"], "{}")])
            .unwrap_err();
        assert!(matches!(err, StoreError::BadKey { .. }), "{err}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), "c").unwrap());
        let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let err = Store::open(dir.path(), "c").err().expect("must refuse");
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    }

    #[test]
    fn volume_numbers_load_as_text_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), "c").unwrap();
        store
            .commit(&[
                put(Table::ResourceGroups, &["RG"], "{}"),
                put(Table::VolumeGroups, &["RG", "7"], "{}"),
            ])
            .unwrap();
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.rows(Table::VolumeGroups)[0].key, vec!["RG", "7"]);
    }
}
