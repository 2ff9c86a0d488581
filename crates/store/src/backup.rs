//! Backups of a running store, and restoring one.
//!
//! A backup is `VACUUM INTO` a new file: one read transaction, so the copy is consistent and
//! holds every committed change, those still in the WAL included (a plain `cp` of a running
//! store misses them). It is written next to its target and renamed into place only when
//! complete and on disk.
//!
//! A restore replaces the store of a stopped controller with a backup and raises the store's
//! epoch above both. Satellites refuse a desired state older than the one they applied; the
//! epoch is how a deliberate restore differs from a stale copy: a state of a higher epoch is
//! taken, and what it no longer mentions is kept on the nodes as orphans, never deleted. The
//! store that was replaced is kept beside it.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::{DATABASE_FILE, DataDirLock, SCHEMA_VERSION, StoreError, open_connection};

/// Why a backup or a restore failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the backup file must be an absolute path on the controller's host, not '{0}'")]
    RelativePath(PathBuf),
    #[error("'{0}' already exists; choose a new file name (a backup never overwrites a file)")]
    Exists(PathBuf),
    #[error("cannot write the backup {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the backup {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("'{path}' is not a usable Ferrite store backup: {reason}")]
    NotABackup { path: PathBuf, reason: String },
    #[error(
        "the backup {path} belongs to cluster {backup_cluster}, but this data directory holds \
         cluster {store_cluster}; restore a backup of this cluster, or restore into an empty \
         data directory"
    )]
    OtherCluster {
        path: PathBuf,
        backup_cluster: String,
        store_cluster: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// What a backup or restore captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub path: PathBuf,
    pub cluster_id: String,
    pub revision: u64,
    pub epoch: u64,
    pub bytes: u64,
}

/// The result of a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInfo {
    /// The backup that is now the store.
    pub restored: BackupInfo,
    /// The store's epoch from now on.
    pub epoch: u64,
    /// Where the replaced store was kept, if there was one.
    pub previous: Option<PathBuf>,
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Syncs a directory, so a rename in it is durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Reads the identity of a store file without changing it.
fn describe(path: &Path) -> Result<BackupInfo, BackupError> {
    let not_a_backup = |reason: String| BackupError::NotABackup {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::metadata(path)
        .map_err(|source| BackupError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| not_a_backup(e.to_string()))?;
    let quick: String = connection
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| not_a_backup(e.to_string()))?;
    if quick != "ok" {
        return Err(not_a_backup(format!("integrity check failed: {quick}")));
    }
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version < 1 || version as usize > SCHEMA_VERSION {
        return Err(not_a_backup(format!(
            "schema version {version}, this build reads 1..={SCHEMA_VERSION}"
        )));
    }
    let meta = |key: &str| -> Result<Option<String>, BackupError> {
        connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| not_a_backup(e.to_string()))
    };
    let number = |key: &str| -> Result<u64, BackupError> {
        match meta(key)? {
            None => Ok(0),
            Some(value) => value
                .parse()
                .map_err(|_| not_a_backup(format!("meta {key} is {value:?}"))),
        }
    };
    Ok(BackupInfo {
        path: path.to_path_buf(),
        cluster_id: meta("cluster_id")?
            .ok_or_else(|| not_a_backup("it has no cluster id".to_string()))?,
        revision: number("revision")?,
        epoch: number("epoch")?,
        bytes,
    })
}

/// Writes a consistent copy of the store behind `connection` to `target`.
pub fn backup(connection: &Connection, target: &Path) -> Result<BackupInfo, BackupError> {
    if !target.is_absolute() {
        return Err(BackupError::RelativePath(target.to_path_buf()));
    }
    if target.symlink_metadata().is_ok() {
        return Err(BackupError::Exists(target.to_path_buf()));
    }
    let file_name = target
        .file_name()
        .ok_or_else(|| BackupError::RelativePath(target.to_path_buf()))?;
    let partial = target.with_file_name(format!(
        ".{}.partial-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&partial);
    let written = (|| -> Result<(), BackupError> {
        connection.execute("VACUUM INTO ?1", [partial.to_string_lossy()])?;
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(write_error(&partial))?;
        // A file that appeared meanwhile is not replaced: link fails if the target exists.
        std::fs::hard_link(&partial, target).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::Exists(target.to_path_buf())
            } else {
                BackupError::Write {
                    path: target.to_path_buf(),
                    source,
                }
            }
        })?;
        if let Some(dir) = target.parent() {
            sync_dir(dir).map_err(write_error(dir))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&partial);
    written?;
    describe(target)
}

/// Replaces the store in the locked (so stopped) data directory with `backup`, and raises the
/// epoch above both. The replaced store is kept as `ferrite.db.before-restore-<epoch>`.
pub fn restore(lock: &DataDirLock, backup: &Path) -> Result<RestoreInfo, BackupError> {
    let restored = describe(backup)?;
    let dir = lock.dir();
    let current_path = dir.join(DATABASE_FILE);
    let current = if current_path.exists() {
        // Opening and closing checkpoints the WAL into the file, so nothing committed is left
        // behind in a WAL that could be replayed onto the restored file.
        let connection = open_connection(&current_path)?;
        drop(connection);
        Some(describe(&current_path)?)
    } else {
        None
    };
    if let Some(current) = &current
        && current.cluster_id != restored.cluster_id
    {
        return Err(BackupError::OtherCluster {
            path: backup.to_path_buf(),
            backup_cluster: restored.cluster_id.clone(),
            store_cluster: current.cluster_id.clone(),
        });
    }
    let epoch = restored.epoch.max(current.as_ref().map_or(0, |c| c.epoch)) + 1;

    let incoming = dir.join(format!("{DATABASE_FILE}.restoring"));
    for stale in [incoming.clone(), wal_of(&incoming), shm_of(&incoming)] {
        let _ = std::fs::remove_file(stale);
    }
    std::fs::copy(backup, &incoming).map_err(write_error(&incoming))?;
    {
        let connection = open_connection(&incoming)?;
        connection.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [epoch.to_string()],
        )?;
    }
    std::fs::File::open(&incoming)
        .and_then(|f| f.sync_all())
        .map_err(write_error(&incoming))?;

    let previous = match current {
        Some(_) => {
            let kept = dir.join(format!("{DATABASE_FILE}.before-restore-{epoch}"));
            std::fs::rename(&current_path, &kept).map_err(write_error(&kept))?;
            for leftover in [wal_of(&current_path), shm_of(&current_path)] {
                let _ = std::fs::remove_file(leftover);
            }
            Some(kept)
        }
        None => None,
    };
    std::fs::rename(&incoming, &current_path).map_err(write_error(&current_path))?;
    sync_dir(dir).map_err(write_error(dir))?;
    tracing::info!(
        backup = %backup.display(),
        revision = restored.revision,
        epoch,
        "store restored from a backup"
    );
    Ok(RestoreInfo {
        restored,
        epoch,
        previous,
    })
}

fn wal_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", path.display()))
}

fn shm_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}-shm", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Change, Store, Table};

    fn put(table: Table, key: &str) -> Change {
        Change::Put {
            table,
            key: vec![key.to_string()],
            data: "{}".to_string(),
        }
    }

    #[test]
    fn a_backup_holds_what_is_still_in_the_wal_and_restores_with_a_higher_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut store = Store::open(DataDirLock::acquire(&data).unwrap(), "cluster-a").unwrap();
        store.commit(&[put(Table::Nodes, "N1")]).unwrap();
        assert!(wal_of(&data.join(DATABASE_FILE)).exists());
        let file = dir.path().join("backup.db");
        let info = store.backup(&file).unwrap();
        assert_eq!((info.revision, info.epoch), (1, 0));
        assert!(matches!(store.backup(&file), Err(BackupError::Exists(_))));
        assert!(matches!(
            store.backup(Path::new("relative.db")),
            Err(BackupError::RelativePath(_))
        ));
        store.commit(&[put(Table::Nodes, "N2")]).unwrap();
        drop(store);

        let lock = DataDirLock::acquire(&data).unwrap();
        let restored = restore(&lock, &file).unwrap();
        assert_eq!(restored.epoch, 1);
        assert!(restored.previous.as_ref().unwrap().exists());
        let store = Store::open(lock, "ignored").unwrap();
        assert_eq!((store.revision(), store.epoch()), (1, 1));
        let nodes = store.load().unwrap();
        assert_eq!(nodes.rows(Table::Nodes).len(), 1, "the backup's state");
    }

    #[test]
    fn a_backup_of_another_cluster_or_garbage_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other");
        let store = Store::open(DataDirLock::acquire(&other).unwrap(), "cluster-b").unwrap();
        let file = dir.path().join("other.db");
        store.backup(&file).unwrap();
        drop(store);

        let data = dir.path().join("data");
        let mut store = Store::open(DataDirLock::acquire(&data).unwrap(), "cluster-a").unwrap();
        store.commit(&[put(Table::Nodes, "N1")]).unwrap();
        drop(store);
        let lock = DataDirLock::acquire(&data).unwrap();
        assert!(matches!(
            restore(&lock, &file),
            Err(BackupError::OtherCluster { .. })
        ));
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, b"not a database at all").unwrap();
        assert!(matches!(
            restore(&lock, &garbage),
            Err(BackupError::NotABackup { .. })
        ));
        let store = Store::open(lock, "x").unwrap();
        assert_eq!(store.revision(), 1);
        assert_eq!(store.load().unwrap().rows(Table::Nodes).len(), 1);
    }
}
