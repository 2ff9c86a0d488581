//! The satellite's state directory: its files, written atomically, and the lock that keeps two
//! satellites from sharing one directory.
//!
//! Every file is JSON, replaced as a whole: written to a temporary file, synced, renamed over the
//! old one, and the directory synced, so after a crash a file is either the old or the new
//! version, never a mix. The desired state and the ledger, which change a little at a time, are
//! such a file (their snapshot) and a journal of the changes since (`crate::journal`).

use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Which controller and cluster the satellite serves.
pub const IDENTITY_FILE: &str = "identity.json";
/// The last desired state the controller sent: the snapshot; `desired-state.journal` holds the
/// deltas since.
pub const DESIRED_STATE_FILE: &str = "desired-state.json";
/// The backing volumes the satellite created and so owns: the snapshot; `ledger.journal` holds
/// the changes since.
pub const LEDGER_FILE: &str = "ledger.json";
/// The identity of every storage pool the satellite keeps volumes in.
pub const POOLS_FILE: &str = "pools.json";
/// Held locked (flock) while a satellite runs on this directory.
pub const LOCK_FILE: &str = "lock";

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("could not {action} '{}': {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state file '{}' is corrupt ({source}); restore it from a backup, or remove it if losing \
         its contents is acceptable",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "state journal '{}' is corrupt at byte {offset}: {reason}; it was intact when written, \
         so the disk or someone else changed it. Restore the state directory from a backup; \
         do not remove the journal, as the volumes it records would be forgotten",
        path.display()
    )]
    JournalCorrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "record {sequence} of state journal '{}' cannot be read ({source}): it is intact, so it \
         was written by another version or changed since; run the version that wrote it, or \
         restore the state directory from a backup",
        path.display()
    )]
    JournalRecord {
        path: PathBuf,
        sequence: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "another satellite is already running with state directory '{}'; give each satellite its \
         own --state-dir",
        path.display()
    )]
    Locked { path: PathBuf },
}

/// Wraps an I/O error with what was being done to which file.
pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PersistError {
    let path = path.to_path_buf();
    move |source| PersistError::Io {
        action,
        path,
        source,
    }
}

/// The state directory, locked for this process as long as the value lives.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates the directory if needed and locks it.
    pub fn open(path: &Path) -> Result<Self, PersistError> {
        std::fs::create_dir_all(path).map_err(io("create the state directory", path))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::WouldBlock {
                return Err(PersistError::Locked {
                    path: path.to_path_buf(),
                });
            }
            return Err(io("lock", &lock_path)(error));
        }
        Ok(StateDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads a JSON file; `None` if it does not exist.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, PersistError> {
        read_json(&self.file(name))
    }

    /// Replaces a JSON file atomically.
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), PersistError> {
        write_json_atomically(&self.file(name), value)
    }
}

/// Reads a JSON file; `None` if it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| PersistError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `value` as JSON to `path`: temporary file, fsync, rename, fsync of the directory.
pub fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), PersistError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| PersistError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{file_name}.tmp"));
    let mut file = File::create(&temporary).map_err(io("create", &temporary))?;
    file.write_all(&bytes).map_err(io("write", &temporary))?;
    file.sync_all().map_err(io("sync", &temporary))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io("rename a temporary file to", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the directory", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_files_whole() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.read::<Vec<u32>>("x.json").unwrap(), None);
        state.write("x.json", &vec![1, 2, 3]).unwrap();
        state.write("x.json", &vec![4]).unwrap();
        assert_eq!(state.read::<Vec<u32>>("x.json").unwrap(), Some(vec![4]));
        assert!(!dir.path().join(".x.json.tmp").exists());
    }

    #[test]
    fn corrupt_files_are_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("x.json"), b"{not json").unwrap();
        let err = state.read::<Vec<u32>>("x.json").unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
    }

    #[test]
    fn a_state_directory_serves_one_satellite() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateDir::open(dir.path()).unwrap();
        let err = StateDir::open(dir.path()).unwrap_err();
        assert!(matches!(err, PersistError::Locked { .. }), "{err}");
    }
}
