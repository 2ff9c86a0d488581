//! The controller's store: SQLite in the data directory, WAL mode, versioned migrations.
//!
//! The store knows tables, keys and JSON rows; what the rows mean is the controller's business.
//! A [`Store::commit`] is one SQLite transaction: all of its changes land, with the revision
//! counter bumped, or none do. With `synchronous=FULL` a commit that returned is on disk, so an
//! acknowledged mutation survives `kill -9` and power loss alike. A store whose syncs are
//! deferred ([`Store::defer_syncs`], the controller's) commits into the WAL without syncing it
//! (SQLite's `synchronous=NORMAL`): the commit survives `kill -9` at once, and power loss once
//! a [`WalSync::sync`] begun after it has returned. One sync covers every commit before it, so
//! concurrent changes share it, and none waits for it under the lock that orders commits.
//!
//! Rows are never lost by accident:
//! - an update is an upsert (`ON CONFLICT DO UPDATE`), never SQLite's `REPLACE`, which deletes
//!   the old row first and with it, through foreign keys, its children;
//! - foreign keys are `ON DELETE RESTRICT`: a child is deleted only by its own [`Change::Delete`],
//!   and a commit that would orphan one fails whole;
//! - only the holder of the data directory's [`DataDirLock`] may open the store, and a commit
//!   reads and advances the revision inside its own `BEGIN IMMEDIATE` transaction, failing if
//!   anything else moved it.
//!
//! [`backup`] makes consistent copies of a running store and restores them, raising the
//! store's epoch so that satellites can tell a restored store from a stale copy.
//!
//! It does not cache, does not validate object contents and does not know about satellites.

pub mod backup;
mod lock;

pub use lock::{DataDirLock, LOCK_FILE, LockError};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params_from_iter};

/// Migrations, in order. `PRAGMA user_version` records how many have been applied.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial",
        include_str!("../migrations/0001_initial.sql"),
    ),
    (
        "0002_restrict_deletes",
        include_str!("../migrations/0002_restrict_deletes.sql"),
    ),
    (
        "0003_connections_and_key_value_stores",
        include_str!("../migrations/0003_connections_and_key_value_stores.sql"),
    ),
    (
        "0004_snapshots",
        include_str!("../migrations/0004_snapshots.sql"),
    ),
];

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
    SnapshotDefinitions,
    Snapshots,
    ErrorReports,
    KeyValueStores,
    NodeConnections,
    ResourceConnections,
}

impl Table {
    /// Every table, parents before children (the order rows are loaded in).
    pub const ALL: [Table; 14] = [
        Table::ControllerProps,
        Table::Nodes,
        Table::StoragePools,
        Table::ResourceGroups,
        Table::VolumeGroups,
        Table::ResourceDefinitions,
        Table::VolumeDefinitions,
        Table::Resources,
        Table::SnapshotDefinitions,
        Table::Snapshots,
        Table::ErrorReports,
        Table::KeyValueStores,
        Table::NodeConnections,
        Table::ResourceConnections,
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
            Table::SnapshotDefinitions => "snapshot_definitions",
            Table::Snapshots => "snapshots",
            Table::ErrorReports => "error_reports",
            Table::KeyValueStores => "key_value_stores",
            Table::NodeConnections => "node_connections",
            Table::ResourceConnections => "resource_connections",
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
            Table::SnapshotDefinitions => &["resource", "name"],
            Table::Snapshots => &["resource", "snapshot", "node"],
            Table::ErrorReports => &["id"],
            Table::KeyValueStores => &["name"],
            Table::NodeConnections => &["node_a", "node_b"],
            Table::ResourceConnections => &["resource", "node_a", "node_b"],
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
    /// Insert the row with this key, or update its data if it exists. Never touches another
    /// row.
    Put {
        table: Table,
        key: Vec<String>,
        data: String,
    },
    /// Delete the row with this key. A row that still has children cannot be deleted: the
    /// commit fails.
    Delete { table: Table, key: Vec<String> },
}

/// Everything in the store, as loaded at start-up.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: u64,
    /// How many times the store was restored from a backup.
    pub epoch: u64,
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
    #[error(
        "the store's revision moved from {expected} to {found} under this controller: another \
         process wrote to {path}; nothing was changed — stop every other writer and restart \
         the controller so it reloads the store"
    )]
    RevisionMoved {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error(
        "cannot sync {path} to disk: {source}; the commits since the last sync may not be on \
         disk (check the disk and the file system, then restart the controller)"
    )]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store {path} has no valid {key} in its meta table: {found:?}")]
    BadMeta {
        path: PathBuf,
        key: &'static str,
        found: Option<String>,
    },
    /// One change of a commit was refused (a foreign key, most often: a row written under a
    /// parent that is not there, or a parent deleted before its children); the whole commit
    /// was rolled back.
    #[error("{verb} of {table:?} row {key:?} was refused: {source}")]
    Change {
        verb: &'static str,
        table: Table,
        key: Vec<String>,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// The open store.
pub struct Store {
    path: PathBuf,
    connection: Connection,
    revision: u64,
    epoch: u64,
    /// Held for as long as the store is open.
    _lock: DataDirLock,
}

/// Opens a database file with the store's settings, migrates it and checks it.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = open_unchecked(path)?;
    check_integrity(&connection, path)?;
    Ok(connection)
}

/// Opens a database file with the store's settings and migrates it, without the integrity
/// check.
fn open_unchecked(path: &Path) -> Result<Connection, StoreError> {
    let mut connection = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    migrate(&mut connection, path)?;
    connection
        .execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(connection)
}

fn meta_number(connection: &Connection, path: &Path, key: &'static str) -> Result<u64, StoreError> {
    let found = read_meta(connection, key)?;
    match &found {
        None => Ok(0),
        Some(value) => value.parse().map_err(|_| StoreError::BadMeta {
            path: path.to_path_buf(),
            key,
            found: found.clone(),
        }),
    }
}

/// The revision a commit starts from, read with a statement SQLite parses once per connection
/// (every commit asks; the store is migrated when opened, so its `meta` table exists).
fn stored_revision(connection: &Connection, path: &Path) -> Result<u64, StoreError> {
    let found: Option<String> = connection
        .prepare_cached("SELECT value FROM meta WHERE key = 'revision'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    match &found {
        None => Ok(0),
        Some(value) => value.parse().map_err(|_| StoreError::BadMeta {
            path: path.to_path_buf(),
            key: "revision",
            found: found.clone(),
        }),
    }
}

/// The integrity check of a store opened with [`Store::open_checking_aside`], running on a
/// connection and a thread of its own.
#[must_use = "a store is trusted only once its integrity check passed"]
pub struct IntegrityCheck {
    running: std::thread::JoinHandle<Result<(), StoreError>>,
}

/// What an [`IntegrityCheck`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckScope {
    /// `quick_check` and `foreign_key_check`.
    Full,
    /// `quick_check` only: the reader checks the references of what it read.
    Pages,
}

impl IntegrityCheck {
    fn start(path: PathBuf, scope: CheckScope) -> IntegrityCheck {
        let running = std::thread::Builder::new()
            .name("store-check".into())
            .spawn(move || {
                let connection =
                    Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                        .map_err(|source| StoreError::Open {
                            path: path.clone(),
                            source,
                        })?;
                connection.busy_timeout(std::time::Duration::from_secs(5))?;
                match scope {
                    CheckScope::Full => check_integrity(&connection, &path),
                    CheckScope::Pages => check_pages(&connection, &path),
                }
            })
            .expect("a thread for the store's integrity check");
        IntegrityCheck { running }
    }

    /// Waits for the check: `Err(StoreError::Corrupt)` if the database failed it.
    pub fn wait(self) -> Result<(), StoreError> {
        match self.running.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The order of the rows in a table's scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowOrder {
    /// By the table's key.
    Key,
    /// As SQLite keeps them.
    Stored,
}

/// Makes the store's commits durable, for a store whose syncs are deferred
/// ([`Store::defer_syncs`]): syncs the WAL file, which holds every commit not yet checkpointed
/// (a checkpoint syncs the WAL before it copies it to the database file, and the database file
/// after). Used from any thread, without the store.
#[derive(Debug)]
pub struct WalSync {
    path: PathBuf,
    file: std::fs::File,
}

impl WalSync {
    /// Syncs every commit that returned before this call began. An error means those commits
    /// may not be on disk, and it cannot be known which are: the caller must not act on them.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(|source| StoreError::Sync {
            path: self.path.clone(),
            source,
        })
    }
}

impl Store {
    /// Stops syncing at each commit (SQLite's `synchronous=NORMAL`) and returns what syncs
    /// instead: a commit is then durable against power loss only once a [`WalSync::sync`] that
    /// began after it returned. The WAL, and the directory that holds it, are synced first,
    /// so what was committed before (by a process that crashed, say) is on disk before anything
    /// here acts on it.
    pub fn defer_syncs(&mut self) -> Result<WalSync, StoreError> {
        let wal = self.path.with_file_name(format!(
            "{}-wal",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let sync_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Sync { path, source }
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(&wal)
            .map_err(sync_error(&wal))?;
        file.sync_all().map_err(sync_error(&wal))?;
        if let Some(dir) = wal.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(sync_error(dir))?;
        }
        self.connection
            .execute_batch("PRAGMA synchronous = NORMAL;")?;
        Ok(WalSync { path: wal, file })
    }

    /// Opens (creating if needed) the store in the locked data directory, applies pending
    /// migrations and checks integrity. `new_cluster_id` names the cluster if the store is new.
    pub fn open(lock: DataDirLock, new_cluster_id: &str) -> Result<Store, StoreError> {
        let (store, check) = Store::open_checking_aside(lock, new_cluster_id)?;
        check.wait()?;
        Ok(store)
    }

    /// Opens the store as [`Store::open`] does, but runs the integrity check (`quick_check`
    /// and `foreign_key_check`, which read the whole file) on a second, read-only connection
    /// while the caller reads the rows: at start-up the two take about as long as each other.
    /// Nothing may be committed, and nothing read trusted, before [`IntegrityCheck::wait`]
    /// returned `Ok`.
    pub fn open_checking_aside(
        lock: DataDirLock,
        new_cluster_id: &str,
    ) -> Result<(Store, IntegrityCheck), StoreError> {
        Store::open_with_check(lock, new_cluster_id, CheckScope::Full)
    }

    /// [`Store::open_checking_aside`] with only `quick_check` aside: the foreign keys are not
    /// checked here, so the caller must check the references of every row it reads, as
    /// `foreign_key_check` would (the controller checks them in the graph it builds from the
    /// rows, which is cheaper than SQLite's look-up of every parent). Commits still enforce
    /// the foreign keys.
    pub fn open_checking_pages_aside(
        lock: DataDirLock,
        new_cluster_id: &str,
    ) -> Result<(Store, IntegrityCheck), StoreError> {
        Store::open_with_check(lock, new_cluster_id, CheckScope::Pages)
    }

    fn open_with_check(
        lock: DataDirLock,
        new_cluster_id: &str,
        scope: CheckScope,
    ) -> Result<(Store, IntegrityCheck), StoreError> {
        let path = lock.dir().join(DATABASE_FILE);
        let mut connection = open_unchecked(&path)?;

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
        let revision = meta_number(&connection, &path, "revision")?;
        let epoch = meta_number(&connection, &path, "epoch")?;
        // Started once the meta rows are committed, so the check reads what the store holds.
        let check = IntegrityCheck::start(path.clone(), scope);
        Ok((
            Store {
                path,
                connection,
                revision,
                epoch,
                _lock: lock,
            },
            check,
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The revision of the last commit (0 for a new store).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// How many times this store was restored from a backup.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Writes a consistent copy of the store, committed changes in the WAL included, to
    /// `target`, which must not exist yet. See [`backup::backup`].
    pub fn backup(&self, target: &Path) -> Result<backup::BackupInfo, backup::BackupError> {
        backup::backup(&self.connection, target)
    }

    /// The cluster's id, as recorded when the store was created.
    pub fn cluster_id(&self) -> Result<String, StoreError> {
        Ok(read_meta(&self.connection, "cluster_id")?.unwrap_or_default())
    }

    /// Reads everything.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let mut rows: BTreeMap<Table, Vec<Row>> = BTreeMap::new();
        self.scan(|table, key, data| -> Result<(), StoreError> {
            rows.entry(table).or_default().push(Row {
                key: key.iter().map(|k| k.to_string()).collect(),
                data: data.to_string(),
            });
            Ok(())
        })?;
        for table in Table::ALL {
            rows.entry(table).or_default();
        }
        Ok(Snapshot {
            revision: self.revision,
            epoch: self.epoch,
            cluster_id: self.cluster_id()?,
            rows,
        })
    }

    /// Hands every row to `visit`: table by table in [`Table::ALL`]'s order (parents first),
    /// each ordered by its key, the key's parts as text (volume numbers too) and the JSON
    /// data, both borrowed from SQLite's row buffer: nothing is copied that the visitor does
    /// not keep. The first error of `visit` ends the scan.
    pub fn scan<E: From<StoreError>>(
        &self,
        visit: impl FnMut(Table, &[&str], &str) -> Result<(), E>,
    ) -> Result<(), E> {
        self.scan_in(RowOrder::Key, visit)
    }

    /// [`Store::scan`], each table's rows in the order SQLite keeps them (by rowid, which is
    /// mostly the order they were inserted in) rather than by key: a walk of the table alone.
    /// In key order SQLite walks the key's index and looks each row up in the table, which
    /// takes a third longer.
    pub fn scan_as_stored<E: From<StoreError>>(
        &self,
        visit: impl FnMut(Table, &[&str], &str) -> Result<(), E>,
    ) -> Result<(), E> {
        self.scan_in(RowOrder::Stored, visit)
    }

    fn scan_in<E: From<StoreError>>(
        &self,
        order: RowOrder,
        mut visit: impl FnMut(Table, &[&str], &str) -> Result<(), E>,
    ) -> Result<(), E> {
        // Key parts that are numbers are written here; reused from row to row.
        let mut numbers: [String; 3] = Default::default();
        for table in Table::ALL {
            let columns = table.key_columns();
            let width = columns.len();
            let keys = columns.join(", ");
            let mut sql = format!("SELECT {keys}, data FROM {}", table.sql_name());
            if order == RowOrder::Key {
                write!(sql, " ORDER BY {keys}").expect("writing to a String");
            }
            let mut statement = self.connection.prepare(&sql).map_err(StoreError::from)?;
            let mut rows = statement.query([]).map_err(StoreError::from)?;
            while let Some(row) = rows.next().map_err(StoreError::from)? {
                let mut is_text = [false; 3];
                for (i, number) in numbers.iter_mut().enumerate().take(width) {
                    match row.get_ref(i).map_err(StoreError::from)? {
                        rusqlite::types::ValueRef::Text(_) => is_text[i] = true,
                        rusqlite::types::ValueRef::Integer(n) => {
                            number.clear();
                            write!(number, "{n}").expect("writing to a String");
                        }
                        other => {
                            number.clear();
                            write!(number, "{other:?}").expect("writing to a String");
                        }
                    }
                }
                let mut key: [&str; 3] = [""; 3];
                for (i, part) in key.iter_mut().enumerate().take(width) {
                    *part = if is_text[i] {
                        row.get_ref(i)
                            .and_then(|v| v.as_str().map_err(Into::into))
                            .map_err(StoreError::from)?
                    } else {
                        &numbers[i]
                    };
                }
                let data = row
                    .get_ref(width)
                    .and_then(|v| v.as_str().map_err(Into::into))
                    .map_err(StoreError::from)?;
                visit(table, &key[..width], data)?;
            }
        }
        Ok(())
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
        // IMMEDIATE takes the write lock now, so the revision read below cannot change before
        // this transaction commits.
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = stored_revision(&tx, &self.path)?;
        if found != self.revision {
            return Err(StoreError::RevisionMoved {
                path: self.path.clone(),
                expected: self.revision,
                found,
            });
        }
        let revision = found + 1;
        for change in changes {
            match change {
                Change::Put { table, key, data } => {
                    let columns = table.key_columns();
                    let placeholders: Vec<String> =
                        (1..=columns.len() + 1).map(|i| format!("?{i}")).collect();
                    let sql = format!(
                        "INSERT INTO {table} ({columns}, data) VALUES ({placeholders}) \
                         ON CONFLICT ({columns}) DO UPDATE SET data = excluded.data",
                        table = table.sql_name(),
                        columns = columns.join(", "),
                        placeholders = placeholders.join(", ")
                    );
                    let values = key
                        .iter()
                        .map(String::as_str)
                        .chain(std::iter::once(data.as_str()));
                    tx.prepare_cached(&sql)?
                        .execute(params_from_iter(values))
                        .map_err(|source| StoreError::Change {
                            verb: "the write",
                            table: *table,
                            key: key.clone(),
                            source,
                        })?;
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
                        .execute(params_from_iter(key.iter()))
                        .map_err(|source| StoreError::Change {
                            verb: "the deletion",
                            table: *table,
                            key: key.clone(),
                            source,
                        })?;
                }
            }
        }
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'revision'")?
            .execute([revision.to_string()])?;
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
    // Migrations rebuild tables, which foreign keys would refuse midway; the connection has
    // them off until every migration ran, and each migration checks every key before it
    // commits.
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = connection.transaction()?;
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration { name, source })?;
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
            .optional()
            .map_err(|source| StoreError::Migration { name, source })?;
        if let Some(table) = broken {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                problems: format!("migration {name} left orphan rows in {table}"),
            });
        }
        tx.pragma_update(None, "user_version", (index + 1) as i64)
            .map_err(|source| StoreError::Migration { name, source })?;
        tx.commit()
            .map_err(|source| StoreError::Migration { name, source })?;
        tracing::info!(migration = name, "applied store migration");
    }
    Ok(())
}

/// `quick_check`: the pages and the b-trees are sound.
fn check_pages(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let quick: String = connection.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if quick == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            problems: quick,
        })
    }
}

fn check_integrity(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut problems = Vec::new();
    match check_pages(connection, path) {
        Ok(()) => {}
        Err(StoreError::Corrupt {
            problems: found, ..
        }) => problems.push(found),
        Err(other) => return Err(other),
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

    fn delete(table: Table, key: &[&str]) -> Change {
        Change::Delete {
            table,
            key: key.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn open(dir: &Path, cluster: &str) -> Store {
        Store::open(DataDirLock::acquire(dir).unwrap(), cluster).unwrap()
    }

    /// A parent of every kind with a child of every kind.
    fn family() -> Vec<Change> {
        vec![
            put(Table::Nodes, &["N1"], r#"{"v":1}"#),
            put(Table::StoragePools, &["N1", "SP"], "{}"),
            put(Table::ResourceGroups, &["RG"], r#"{"v":1}"#),
            put(Table::VolumeGroups, &["RG", "0"], "{}"),
            put(Table::ResourceDefinitions, &["R1"], r#"{"v":1}"#),
            put(Table::VolumeDefinitions, &["R1", "0"], "{}"),
            put(Table::Resources, &["R1", "N1"], "{}"),
        ]
    }

    fn counts(store: &Store) -> Vec<usize> {
        let snapshot = store.load().unwrap();
        Table::ALL.iter().map(|t| snapshot.rows(*t).len()).collect()
    }

    /// [`family`], then a definition whose key sorts before the family's, with two volumes.
    fn family_and_a_later_definition(dir: &Path) -> Store {
        let mut store = open(dir, "c");
        store.commit(&family()).unwrap();
        store
            .commit(&[
                put(Table::ResourceDefinitions, &["R0"], r#"{"v":0}"#),
                put(Table::VolumeDefinitions, &["R0", "7"], "{}"),
                put(Table::VolumeDefinitions, &["R0", "12"], "{}"),
            ])
            .unwrap();
        store
    }

    /// Every row a scan in `order` hands out: table, key parts, data.
    fn scanned(store: &Store, order: RowOrder) -> Vec<(Table, Vec<String>, String)> {
        let mut rows = Vec::new();
        store
            .scan_in(order, |table, key, data| -> Result<(), StoreError> {
                rows.push((
                    table,
                    key.iter().map(|k| k.to_string()).collect(),
                    data.to_string(),
                ));
                Ok(())
            })
            .unwrap();
        rows
    }

    #[test]
    fn a_scan_hands_out_every_row_in_order_as_load_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = family_and_a_later_definition(dir.path());
        let scanned = scanned(&store, RowOrder::Key);
        let snapshot = store.load().unwrap();
        let loaded: Vec<(Table, Vec<String>, String)> = Table::ALL
            .iter()
            .flat_map(|t| {
                snapshot
                    .rows(*t)
                    .iter()
                    .map(|r| (*t, r.key.clone(), r.data.clone()))
            })
            .collect();
        assert_eq!(scanned, loaded);
        // Volume numbers are numbers in SQLite, text in the key, in numeric order.
        let volumes: Vec<&[String]> = scanned
            .iter()
            .filter(|(t, ..)| *t == Table::VolumeDefinitions)
            .map(|(_, k, _)| k.as_slice())
            .collect();
        assert_eq!(volumes, [["R0", "7"], ["R0", "12"], ["R1", "0"]]);
        assert_eq!(snapshot.cluster_id, "c");
    }

    #[test]
    fn a_scan_as_stored_hands_out_the_same_rows_table_by_table_in_insertion_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = family_and_a_later_definition(dir.path());
        let by_key = scanned(&store, RowOrder::Key);
        let as_stored = scanned(&store, RowOrder::Stored);
        let tables = |rows: &[(Table, Vec<String>, String)]| {
            let mut tables: Vec<Table> = rows.iter().map(|(t, ..)| *t).collect();
            tables.dedup();
            tables
        };
        assert_eq!(
            tables(&as_stored),
            tables(&by_key),
            "parents first, as by key"
        );
        let definitions: Vec<&str> = as_stored
            .iter()
            .filter(|(t, ..)| *t == Table::ResourceDefinitions)
            .map(|(_, k, _)| k[0].as_str())
            .collect();
        assert_eq!(definitions, ["R1", "R0"], "in the order inserted");
        let (mut sorted, mut expected) = (as_stored.clone(), by_key.clone());
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn a_scan_stops_at_the_visitors_first_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c");
        store.commit(&family()).unwrap();
        let mut seen = 0;
        let result = store.scan(|table, _, _| {
            seen += 1;
            if table == Table::ResourceGroups {
                Err(StoreError::BadMeta {
                    path: PathBuf::new(),
                    key: "test",
                    found: None,
                })
            } else {
                Ok(())
            }
        });
        assert!(matches!(result, Err(StoreError::BadMeta { .. })));
        assert_eq!(seen, 3, "a node, its pool, then the group that failed");
    }

    #[test]
    fn an_orphan_row_fails_the_check_whether_it_runs_aside_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c");
        store.commit(&family()).unwrap();
        drop(store);
        // A hand edit with foreign keys off.
        let raw = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        raw.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        raw.execute(
            "INSERT INTO resources (resource, node, data) VALUES ('GHOST', 'N1', '{}')",
            [],
        )
        .unwrap();
        drop(raw);

        let (store, check) =
            Store::open_checking_aside(DataDirLock::acquire(dir.path()).unwrap(), "c").unwrap();
        // The rows can be read meanwhile; only the check says whether to trust them.
        assert_eq!(store.load().unwrap().rows(Table::Resources).len(), 2);
        let err = check.wait().unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { problems, .. } if problems.contains("resources")),
            "{err}"
        );
        drop(store);
        let err = Store::open(DataDirLock::acquire(dir.path()).unwrap(), "c")
            .err()
            .expect("a corrupt store is refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn a_store_with_deferred_syncs_commits_into_the_wal_and_syncs_it_from_another_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "cluster-a");
        let synchronous = |store: &Store| -> i64 {
            store
                .connection
                .query_row("PRAGMA synchronous", [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(synchronous(&store), 2, "FULL: each commit is synced");
        let wal = store.defer_syncs().unwrap();
        assert_eq!(synchronous(&store), 1, "NORMAL: the WAL is synced apart");
        let revision = store
            .commit(&[put(Table::Nodes, &["NODE1"], r#"{"name":"node1"}"#)])
            .unwrap();
        assert_eq!(revision, 1);
        std::thread::spawn(move || wal.sync())
            .join()
            .unwrap()
            .unwrap();
        drop(store);

        let store = open(dir.path(), "cluster-b");
        assert_eq!(store.revision(), 1);
        assert_eq!(store.load().unwrap().rows(Table::Nodes).len(), 1);
        assert_eq!(
            synchronous(&store),
            2,
            "deferring is not a property of the file"
        );
    }

    #[test]
    fn commits_survive_reopen_and_bump_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "cluster-a");
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

        let store = open(dir.path(), "cluster-b");
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
    fn updating_a_parent_keeps_every_child() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c");
        store.commit(&family()).unwrap();
        let before = counts(&store);
        store
            .commit(&[
                put(Table::Nodes, &["N1"], r#"{"v":2}"#),
                put(Table::ResourceGroups, &["RG"], r#"{"v":2}"#),
                put(Table::ResourceDefinitions, &["R1"], r#"{"v":2}"#),
            ])
            .unwrap();
        drop(store);
        let store = open(dir.path(), "c");
        assert_eq!(counts(&store), before, "no child row may go");
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.rows(Table::Nodes)[0].data, r#"{"v":2}"#);
        assert_eq!(
            snapshot.rows(Table::ResourceDefinitions)[0].data,
            r#"{"v":2}"#
        );
    }

    #[test]
    fn a_parent_with_children_cannot_be_deleted_and_the_commit_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c");
        store.commit(&family()).unwrap();
        let before = counts(&store);
        for (table, key) in [
            (Table::Nodes, vec!["N1"]),
            (Table::ResourceGroups, vec!["RG"]),
            (Table::ResourceDefinitions, vec!["R1"]),
        ] {
            let err = store
                .commit(&[
                    put(Table::ControllerProps, &["Aux/x"], "1"),
                    delete(table, &key),
                ])
                .unwrap_err();
            assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        }
        assert_eq!(counts(&store), before);
        assert_eq!(store.revision(), 1);
        // Children first, then the parents: fine.
        store
            .commit(&[
                delete(Table::Resources, &["R1", "N1"]),
                delete(Table::VolumeDefinitions, &["R1", "0"]),
                delete(Table::ResourceDefinitions, &["R1"]),
                delete(Table::StoragePools, &["N1", "SP"]),
                delete(Table::Nodes, &["N1"]),
                delete(Table::VolumeGroups, &["RG", "0"]),
                delete(Table::ResourceGroups, &["RG"]),
            ])
            .unwrap();
        assert!(counts(&store).iter().all(|n| *n == 0));
    }

    #[test]
    fn connections_hold_their_nodes_and_resources_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c");
        store.commit(&family()).unwrap();
        store
            .commit(&[
                put(Table::Nodes, &["N2"], "{}"),
                put(Table::Resources, &["R1", "N2"], "{}"),
                put(Table::NodeConnections, &["N1", "N2"], r#"{"p":1}"#),
                put(
                    Table::ResourceConnections,
                    &["R1", "N1", "N2"],
                    r#"{"p":2}"#,
                ),
                put(Table::KeyValueStores, &["KV"], r#"{"p":3}"#),
            ])
            .unwrap();
        for (table, key) in [
            (Table::Nodes, vec!["N2"]),
            (Table::Resources, vec!["R1", "N2"]),
        ] {
            let deletes: Vec<Change> = match table {
                Table::Nodes => vec![
                    delete(Table::ResourceConnections, &["R1", "N1", "N2"]),
                    delete(Table::Resources, &["R1", "N2"]),
                    delete(table, &key),
                ],
                _ => vec![delete(table, &key)],
            };
            let err = store.commit(&deletes).unwrap_err();
            assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        }
        // A connection to a resource that does not exist is refused.
        assert!(
            store
                .commit(&[put(Table::ResourceConnections, &["R1", "N1", "N9"], "{}")])
                .is_err()
        );
        drop(store);
        let store = open(dir.path(), "c");
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.rows(Table::NodeConnections)[0].data, r#"{"p":1}"#);
        assert_eq!(
            snapshot.rows(Table::ResourceConnections)[0].key,
            vec!["R1", "N1", "N2"]
        );
        assert_eq!(snapshot.rows(Table::KeyValueStores)[0].key, vec!["KV"]);
    }

    #[test]
    fn a_failing_commit_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c");
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
    fn a_revision_moved_by_another_writer_fails_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c");
        store.commit(&[put(Table::Nodes, &["N1"], "{}")]).unwrap();
        // Something that ignores the lock writes to the file.
        let intruder = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        intruder
            .execute("UPDATE meta SET value = '7' WHERE key = 'revision'", [])
            .unwrap();
        let err = store
            .commit(&[put(Table::Nodes, &["N2"], "{}")])
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::RevisionMoved {
                    expected: 1,
                    found: 7,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(store.load().unwrap().rows(Table::Nodes).len(), 1);
    }

    #[test]
    fn a_version_1_store_migrates_with_every_row_and_loses_its_cascades() {
        let dir = tempfile::tempdir().unwrap();
        {
            let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            connection.execute_batch(MIGRATIONS[0].1).unwrap();
            connection.pragma_update(None, "user_version", 1).unwrap();
            connection
                .execute_batch(
                    "INSERT INTO meta VALUES ('cluster_id', 'old'), ('revision', '5');
                     INSERT INTO nodes VALUES ('N1', '{}');
                     INSERT INTO storage_pools VALUES ('N1', 'SP', '{}');
                     INSERT INTO resource_groups VALUES ('RG', '{}');
                     INSERT INTO volume_groups VALUES ('RG', 0, '{}');
                     INSERT INTO resource_definitions VALUES ('R1', '{}');
                     INSERT INTO volume_definitions VALUES ('R1', 0, '{}');
                     INSERT INTO resources VALUES ('R1', 'N1', '{}');",
                )
                .unwrap();
        }
        let mut store = open(dir.path(), "new");
        assert_eq!((store.revision(), store.epoch()), (5, 0));
        let before = counts(&store);
        assert_eq!(before.iter().sum::<usize>(), 7);
        assert!(
            store
                .commit(&[delete(Table::ResourceDefinitions, &["R1"])])
                .is_err()
        );
        store
            .commit(&[put(Table::ResourceDefinitions, &["R1"], r#"{"v":2}"#)])
            .unwrap();
        assert_eq!(counts(&store), before);
    }

    #[test]
    fn a_resource_definition_with_snapshots_cannot_be_deleted_and_snapshots_need_their_node() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c1");
        store.commit(&family()).unwrap();
        store
            .commit(&[
                put(Table::SnapshotDefinitions, &["R1", "S1"], r#"{"v":1}"#),
                put(Table::Snapshots, &["R1", "S1", "N1"], "{}"),
            ])
            .unwrap();
        // Neither the definition nor the node can go while the snapshot rows point at them.
        for parent in [
            vec![
                delete(Table::Resources, &["R1", "N1"]),
                delete(Table::VolumeDefinitions, &["R1", "0"]),
                delete(Table::ResourceDefinitions, &["R1"]),
            ],
            vec![
                delete(Table::Resources, &["R1", "N1"]),
                delete(Table::StoragePools, &["N1", "SP"]),
                delete(Table::Nodes, &["N1"]),
            ],
            vec![delete(Table::SnapshotDefinitions, &["R1", "S1"])],
        ] {
            assert!(store.commit(&parent).is_err());
        }
        // A snapshot without its definition cannot be written.
        assert!(
            store
                .commit(&[put(Table::Snapshots, &["R1", "GHOST", "N1"], "{}")])
                .is_err()
        );
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.rows(Table::SnapshotDefinitions).len(), 1);
        assert_eq!(
            snapshot.rows(Table::Snapshots)[0].key,
            vec!["R1", "S1", "N1"]
        );
        // Updating the definition keeps its snapshots; deleting child then parent works.
        store
            .commit(&[put(Table::SnapshotDefinitions, &["R1", "S1"], r#"{"v":2}"#)])
            .unwrap();
        assert_eq!(store.load().unwrap().rows(Table::Snapshots).len(), 1);
        store
            .commit(&[
                delete(Table::Snapshots, &["R1", "S1", "N1"]),
                delete(Table::SnapshotDefinitions, &["R1", "S1"]),
            ])
            .unwrap();
        assert!(store.load().unwrap().rows(Table::Snapshots).is_empty());
    }

    #[test]
    fn keys_of_the_wrong_width_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c");
        let err = store
            .commit(&[put(Table::StoragePools, &["ONLY_ONE"], "{}")])
            .unwrap_err();
        assert!(matches!(err, StoreError::BadKey { .. }), "{err}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), "c"));
        let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let err = Store::open(DataDirLock::acquire(dir.path()).unwrap(), "c")
            .err()
            .expect("must refuse");
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    }

    #[test]
    fn volume_numbers_load_as_text_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c");
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
