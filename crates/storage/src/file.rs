//! FILE and FILE_THIN: backing volumes are files `<pool dir>/<resource>_<nnnnn>.img`, attached
//! as loop devices. A snapshot is a copy `<pool dir>/<resource>_<nnnnn>@<snapshot>.snap`: a
//! reflink copy (`cp --reflink=always`, which shares the blocks and is taken atomically) where
//! the file system has reflinks (btrfs, xfs), else a sparse copy (`cp --sparse=always`), which
//! reads the whole file while the volume may be written. A copy is written under a `.partial`
//! name and renamed when complete, so a snapshot that exists is whole.
//!
//! FILE preallocates the file (`fallocate`), FILE_THIN creates it sparse (`truncate`). Changes to
//! the host go through the runner (`fallocate`, `truncate`, `losetup`, `mv`, `rm`); sizes are
//! read with `stat` directly, the pool's capacity through the runner too
//! ([`HostCommands::file_system_capacity`], one `statvfs` on a real host).
//!
//! A directory is recognised by its marker file, [`MARKER_FILE`], which holds the mark the pool
//! was given when first used: a directory without it (an empty mount point whose file system is
//! not mounted yet) or with another mark (another disk mounted there) is not the pool. A file already attached is found with
//! `losetup --associated`, so attaching twice never creates a second loop device. During a
//! full reconcile pass ([`Provider::begin_pass`]) one `losetup --list` of every loop device
//! replaces the per-file query: with thousands of volumes, a query per volume (each scanning
//! every loop device) made a pass take minutes. Only every [`FULL_TABLE_EVERY`]th full pass
//! (and the first) reads it whatever happens; the others confirm each remembered device as a
//! pass over named volumes does (below), and read the table only at the first file that this
//! does not settle: reading it is one step, longer the more devices the host has, that the
//! slices of a pass cannot divide, and every delta waits behind it. Devices are matched by
//! the canonical path of their file; in a pass each pool directory is resolved once, not once
//! per file, and a volume's file is looked up once (`lstat`) for its size and the path its
//! devices are found by, unless it is a symbolic link. A pass over a few named volumes
//! ([`Provider::begin_scoped_pass`]) reads no such table, whose cost grows with the node: it
//! trusts the device a file was last seen attached to once the kernel confirms it
//! ([`HostCommands::loop_backing_file`], one small read), knows that a file it created in the
//! same pass has no device, and asks `losetup --associated` about any other file (once per
//! pass).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ferrite_types::ProviderKind;
use serde::Deserialize;

use ferrite_types::SnapshotName;

use crate::runner::{CommandLine, HostCommands};
use crate::{
    BackingVolume, BackingVolumeName, PoolCapacity, Provider, StorageError, snapshot_host_name,
};

/// The file name extension of backing files.
const IMAGE_EXTENSION: &str = "img";

/// The file name extension of snapshot files.
const SNAPSHOT_EXTENSION: &str = "snap";

/// What a copy that shares its blocks with the original is called in answers.
pub const REFLINK_COPY: &str = "reflink copy";
/// What a full (sparse) copy is called in answers.
pub const SPARSE_COPY: &str = "sparse copy";

/// The marker file in a pool directory; it holds the pool's mark on one line.
pub const MARKER_FILE: &str = ".ferrite-pool";

/// How many free loop devices an attach tries before it leaves the search to `losetup --find`
/// (each lost only to another process attaching at the same moment).
const LOOP_ATTACH_ATTEMPTS: usize = 8;

/// FILE (preallocated) or FILE_THIN (sparse) files in a directory.
pub struct FileProvider {
    runner: Arc<dyn HostCommands>,
    thin: bool,
    loop_table: Mutex<LoopTable>,
    /// What earlier passes learned of loop devices, for passes over named volumes.
    remembered: Mutex<Remembered>,
    /// Full passes begun, for [`FULL_TABLE_EVERY`].
    full_passes: std::sync::atomic::AtomicU64,
    /// In a pass (`Some`): the canonical path of each directory a backing file was looked up
    /// in ([`FileProvider::canonical`]).
    canonical_dirs: Mutex<Option<HashMap<PathBuf, PathBuf>>>,
}

/// The loop devices this provider saw, kept between passes. Never trusted without a check:
/// a device someone detached or attached to another file behind the satellite's back fails the
/// check, and the file is looked up again.
#[derive(Debug, Default)]
struct Remembered {
    /// The device each backing file (by canonical path) was last seen attached to.
    devices: HashMap<PathBuf, PathBuf>,
    /// Backing files known to have no loop device in the current pass: created by it (a file
    /// that did not exist before has none) or looked up. Own attaches take them out.
    unattached: HashSet<PathBuf>,
}

/// What the provider knows about attached loop devices.
#[derive(Debug, Default)]
enum LoopTable {
    /// Outside a pass: every lookup asks `losetup`.
    #[default]
    Unused,
    /// In a pass, not read yet.
    Unread,
    /// In a pass: device paths by the canonical path of their backing file, kept current with
    /// this provider's own attaches and detaches.
    Read(HashMap<PathBuf, Vec<PathBuf>>),
    /// In a pass over named volumes: each file's device from [`Remembered`], checked.
    Scoped,
    /// In a full pass between two reads of the whole table ([`FULL_TABLE_EVERY`]): each file's
    /// device from [`Remembered`], checked as in a scoped pass; the first file that is neither
    /// confirmed there nor known to have no device reads the whole table (then `Read`), so a
    /// pass reads it at most once, as before, and one over a node whose devices are all as
    /// remembered reads it not at all.
    Checked,
}

/// Every this many full passes, and at the first, the whole loop-device table is read even when
/// every remembered device is confirmed: the pass then sees what else the host has attached to
/// the pool's files. Between, a full pass checks each remembered device (one small read), which
/// the pass's slices divide, where reading the table is one step no slice budget divides and
/// grows with every loop device of the host.
pub const FULL_TABLE_EVERY: u64 = 10;

#[derive(Deserialize)]
struct LoopList {
    #[serde(default)]
    loopdevices: Vec<LoopDevice>,
}

#[derive(Deserialize)]
struct LoopDevice {
    name: String,
    #[serde(default, rename = "back-file")]
    back_file: Option<String>,
}

impl FileProvider {
    pub fn new(runner: Arc<dyn HostCommands>, thin: bool) -> Self {
        FileProvider {
            runner,
            thin,
            loop_table: Mutex::new(LoopTable::Unused),
            remembered: Mutex::new(Remembered::default()),
            full_passes: std::sync::atomic::AtomicU64::new(0),
            canonical_dirs: Mutex::new(None),
        }
    }

    /// The canonical path of a file (`realpath`), or `None` when it has none (it does not
    /// exist). Loop devices are matched by it. `realpath` reads every component of the path
    /// (a `readlink` each, a dozen for a pool under /var/lib), once per volume, twice in a full
    /// pass: most of a pass's time on a node of thousands of volumes. In a pass, the
    /// directory's canonical path is resolved once and the file's name joined to it, unless
    /// the file is itself a symbolic link (one `lstat` tells).
    fn canonical(&self, path: &Path) -> Option<PathBuf> {
        let in_pass = self.canonical_dirs().is_some();
        if !in_pass {
            return std::fs::canonicalize(path).ok();
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_symlink() => self
                .canonical_in_directory(path)
                .or_else(|| std::fs::canonicalize(path).ok()),
            _ => std::fs::canonicalize(path).ok(),
        }
    }

    /// In a pass, the canonical path of `path`, a file known not to be a symbolic link: its
    /// directory's canonical path (resolved once per pass) joined with its name. `None` when
    /// the path has no plain directory and name, or the directory does not resolve.
    fn canonical_in_directory(&self, path: &Path) -> Option<PathBuf> {
        let (dir, name) = path
            .parent()
            .zip(path.file_name())
            .filter(|(dir, name)| !dir.as_os_str().is_empty() && *name != "." && *name != "..")?;
        let known = self
            .canonical_dirs()
            .as_ref()
            .and_then(|d| d.get(dir).cloned());
        let dir_path = match known {
            Some(known) => known,
            None => {
                let resolved = std::fs::canonicalize(dir).ok()?;
                if let Some(dirs) = self.canonical_dirs().as_mut() {
                    dirs.insert(dir.to_path_buf(), resolved.clone());
                }
                resolved
            }
        };
        Some(dir_path.join(name))
    }

    /// [`FileProvider::canonical`], or the path as given when it has none.
    fn canonical_or_given(&self, path: &Path) -> PathBuf {
        self.canonical(path).unwrap_or_else(|| path.to_path_buf())
    }

    fn canonical_dirs(&self) -> MutexGuard<'_, Option<HashMap<PathBuf, PathBuf>>> {
        self.canonical_dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn unusable(&self, pool: &str, reason: impl Into<String>) -> StorageError {
        StorageError::PoolUnusable {
            provider: self.kind(),
            pool: pool.to_string(),
            reason: reason.into(),
        }
    }

    /// The pool directory, which must be an absolute path (a relative one would depend on the
    /// satellite's working directory).
    fn directory(&self, pool: &str) -> Result<PathBuf, StorageError> {
        let dir = Path::new(pool);
        if !dir.is_absolute() {
            return Err(self.unusable(
                pool,
                "the directory must be an absolute path, e.g. /var/lib/ferrite/pool",
            ));
        }
        Ok(dir.to_path_buf())
    }

    /// The backing file of a volume.
    pub fn image_path(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<PathBuf, StorageError> {
        Ok(self
            .directory(pool)?
            .join(format!("{}.{IMAGE_EXTENSION}", name.as_str())))
    }

    /// The file of a snapshot of a volume.
    pub fn snapshot_path(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<PathBuf, StorageError> {
        Ok(self.directory(pool)?.join(format!(
            "{}@{}.{SNAPSHOT_EXTENSION}",
            volume.as_str(),
            snapshot_host_name(snapshot)
        )))
    }

    /// Copies `from` to `to` (a new file): a reflink copy where the file system has them, else
    /// a sparse copy. Returns which.
    fn copy(&self, from: &Path, to: &Path) -> Result<&'static str, StorageError> {
        let reflink = CommandLine::new("cp")
            .args(["--reflink=always", "--no-target-directory"])
            .arg(from.to_string_lossy())
            .arg(to.to_string_lossy());
        if self.runner.run(&reflink).is_ok() {
            return Ok(REFLINK_COPY);
        }
        self.runner.run(
            &CommandLine::new("cp")
                .args(["--sparse=always", "--no-target-directory"])
                .arg(from.to_string_lossy())
                .arg(to.to_string_lossy()),
        )?;
        Ok(SPARSE_COPY)
    }

    /// Copies `from` to a new file `to`: written under a `.partial` name, then renamed, so `to`
    /// exists only whole.
    fn copy_whole(&self, from: &Path, to: &Path) -> Result<&'static str, StorageError> {
        let partial = PathBuf::from(format!("{}.partial", to.display()));
        self.runner.run(
            &CommandLine::new("rm")
                .arg("--force")
                .arg(partial.to_string_lossy()),
        )?;
        let method = match self.copy(from, &partial) {
            Ok(method) => method,
            Err(e) => {
                let _ = self.runner.run(
                    &CommandLine::new("rm")
                        .arg("--force")
                        .arg(partial.to_string_lossy()),
                );
                return Err(e);
            }
        };
        self.runner.run(
            &CommandLine::new("mv")
                .args(["--no-clobber", "--no-target-directory"])
                .arg(partial.to_string_lossy())
                .arg(to.to_string_lossy()),
        )?;
        Ok(method)
    }

    fn snapshot_missing(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> StorageError {
        StorageError::SnapshotMissing {
            provider: self.kind(),
            pool: pool.to_string(),
            volume: volume.clone(),
            snapshot: snapshot.to_string(),
        }
    }

    fn loop_table(&self) -> MutexGuard<'_, LoopTable> {
        self.loop_table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remembered(&self) -> MutexGuard<'_, Remembered> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches `image` to a free loop device and returns it. On a host that names a free device
    /// ([`HostCommands::free_loop_device`]) that device is given to `losetup`; one taken by
    /// another process meanwhile fails at once and another is asked for, up to
    /// [`LOOP_ATTACH_ATTEMPTS`] times, then `losetup --find` does it.
    fn attach_loop_device(&self, image: &Path) -> Result<PathBuf, StorageError> {
        let forget = || {
            // It may have attached before it failed: look the file up next time.
            if let Some(key) = self.canonical(image) {
                self.remembered().unattached.remove(&key);
            }
        };
        for _ in 0..LOOP_ATTACH_ATTEMPTS {
            let Some(device) = self.runner.free_loop_device() else {
                break;
            };
            let command = CommandLine::new("losetup")
                .arg(device.to_string_lossy())
                .arg(image.to_string_lossy());
            match self.runner.run(&command) {
                Ok(_) => return Ok(device),
                Err(e) if e.stderr().contains("Device or resource busy") => {
                    tracing::debug!(device = %device.display(), "loop device taken meanwhile; asking for another");
                }
                Err(e) => {
                    forget();
                    return Err(e.into());
                }
            }
        }
        let command = CommandLine::new("losetup")
            .args(["--find", "--show"])
            .arg(image.to_string_lossy());
        let output = self.runner.run(&command).inspect_err(|_| forget())?;
        let device = output.stdout.trim();
        if !device.starts_with("/dev/") {
            return Err(StorageError::UnexpectedOutput {
                command: command.to_string(),
                reason: format!("expected a device path, got {device:?}"),
            });
        }
        Ok(PathBuf::from(device))
    }

    /// The loop devices the file is attached to (normally one): from the pass's table in a full
    /// pass, from what is remembered and confirmed in a pass over named volumes, else asked of
    /// `losetup`.
    fn loop_devices(&self, image: &Path) -> Result<Vec<PathBuf>, StorageError> {
        self.loop_devices_by_key(image, None)
    }

    /// [`FileProvider::loop_devices`], with the image's canonical path when the caller has it
    /// ([`FileProvider::stat_and_key`]).
    fn loop_devices_by_key(
        &self,
        image: &Path,
        key: Option<PathBuf>,
    ) -> Result<Vec<PathBuf>, StorageError> {
        let mut table = self.loop_table();
        if matches!(*table, LoopTable::Unused) {
            drop(table);
            return self.query_loop_devices(image);
        }
        if matches!(*table, LoopTable::Scoped) {
            drop(table);
            return self.scoped_loop_devices(image, key);
        }
        let key = match (&*table, key) {
            (LoopTable::Checked, key) => {
                drop(table);
                let key = key.unwrap_or_else(|| self.canonical_or_given(image));
                if let Some(known) = self.confirmed_devices(&key) {
                    return Ok(known);
                }
                table = self.loop_table();
                key
            }
            (_, key) => key.unwrap_or_else(|| self.canonical_or_given(image)),
        };
        if matches!(*table, LoopTable::Unread | LoopTable::Checked) {
            *table = LoopTable::Read(self.read_loop_table()?);
        }
        let LoopTable::Read(devices) = &*table else {
            unreachable!("the table was read above")
        };
        Ok(devices.get(&key).cloned().unwrap_or_default())
    }

    /// The devices of the file of canonical path `key` as remembered, when that is known for
    /// sure: none for a file known to have none in this pass, or the remembered device once
    /// the kernel confirms it holds the file. `None` when only asking the host tells.
    fn confirmed_devices(&self, key: &Path) -> Option<Vec<PathBuf>> {
        let known = {
            let remembered = self.remembered();
            if remembered.unattached.contains(key) {
                return Some(Vec::new());
            }
            remembered.devices.get(key).cloned()?
        };
        // The kernel names the file a device holds; a deleted one reads "<path> (deleted)".
        self.runner
            .loop_backing_file(&known)
            .is_some_and(|file| Path::new(&file) == key)
            .then(|| vec![known])
    }

    /// [`FileProvider::loop_devices`] in a pass over named volumes.
    fn scoped_loop_devices(
        &self,
        image: &Path,
        key: Option<PathBuf>,
    ) -> Result<Vec<PathBuf>, StorageError> {
        let key = key.unwrap_or_else(|| self.canonical_or_given(image));
        if let Some(known) = self.confirmed_devices(&key) {
            return Ok(known);
        }
        let devices = self.query_loop_devices(image)?;
        let mut remembered = self.remembered();
        match devices.first() {
            Some(device) => {
                remembered.devices.insert(key, device.clone());
            }
            None => {
                remembered.devices.remove(&key);
                remembered.unattached.insert(key);
            }
        }
        Ok(devices)
    }

    /// Every attached loop device, by the canonical path of its backing file.
    fn read_loop_table(&self) -> Result<HashMap<PathBuf, Vec<PathBuf>>, StorageError> {
        let command =
            CommandLine::query("losetup").args(["--list", "--json", "--output", "NAME,BACK-FILE"]);
        let output = self.runner.run(&command)?;
        let mut table: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        if output.stdout.trim().is_empty() {
            return Ok(table);
        }
        let list: LoopList =
            serde_json::from_str(&output.stdout).map_err(|e| StorageError::UnexpectedOutput {
                command: command.to_string(),
                reason: e.to_string(),
            })?;
        for device in list.loopdevices {
            // A backing file that was deleted while attached reads "<path> (deleted)" and no
            // longer has a path to be found by.
            let Some(file) = device.back_file else {
                continue;
            };
            let Some(file) = self.canonical(Path::new(file.trim())) else {
                continue;
            };
            table
                .entry(file)
                .or_default()
                .push(PathBuf::from(device.name));
        }
        // The whole table is the truth: it replaces what earlier passes learned.
        self.remembered().devices = table
            .iter()
            .filter_map(|(file, devices)| Some((file.clone(), devices.first()?.clone())))
            .collect();
        Ok(table)
    }

    /// Keeps the pass's table and what is remembered current with an attach or a detach.
    fn note_loop_device(&self, image: &Path, device: &Path, attached: bool) {
        let key = self.canonical_or_given(image);
        if let LoopTable::Read(devices) = &mut *self.loop_table() {
            let entry = devices.entry(key.clone()).or_default();
            entry.retain(|d| d != device);
            if attached {
                entry.push(device.to_path_buf());
            }
        }
        let mut remembered = self.remembered();
        remembered.unattached.remove(&key);
        if attached {
            remembered.devices.insert(key, device.to_path_buf());
        } else if remembered.devices.get(&key).is_some_and(|d| d == device) {
            remembered.devices.remove(&key);
        }
    }

    /// Notes a backing file this provider just created, in a pass.
    fn note_created(&self, image: &Path) {
        if matches!(*self.loop_table(), LoopTable::Unused) {
            return;
        }
        if let Some(key) = self.canonical(image) {
            let mut remembered = self.remembered();
            remembered.devices.remove(&key);
            remembered.unattached.insert(key);
        }
    }

    /// Asks `losetup` which loop devices `image` is attached to.
    fn query_loop_devices(&self, image: &Path) -> Result<Vec<PathBuf>, StorageError> {
        let command = CommandLine::query("losetup")
            .args(["--list", "--json", "--output", "NAME", "--associated"])
            .arg(image.to_string_lossy());
        let output = self.runner.run(&command)?;
        if output.stdout.trim().is_empty() {
            return Ok(Vec::new());
        }
        let list: LoopList =
            serde_json::from_str(&output.stdout).map_err(|e| StorageError::UnexpectedOutput {
                command: command.to_string(),
                reason: e.to_string(),
            })?;
        Ok(list
            .loopdevices
            .into_iter()
            .map(|device| PathBuf::from(device.name))
            .collect())
    }

    /// [`FileProvider::stat`], and in a pass the key the image's loop devices are found by
    /// ([`FileProvider::canonical`]): for a file that is not a symbolic link, one `lstat` tells
    /// both, where `stat` and then `canonical` were two path lookups per volume, and a pass
    /// looks at every volume twice (`volume`, then `activate_volume`).
    fn stat_and_key(
        &self,
        image: &Path,
    ) -> Result<(Option<std::fs::Metadata>, Option<PathBuf>), StorageError> {
        let in_pass = self.canonical_dirs().is_some();
        if in_pass {
            match std::fs::symlink_metadata(image) {
                Ok(meta) if !meta.file_type().is_symlink() => {
                    let key = self.canonical_in_directory(image);
                    return Ok((Some(meta), key));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
                // A symbolic link (followed below), or an error `stat` reports as it does.
                _ => {}
            }
        }
        Ok((self.stat(image)?, None))
    }

    fn stat(&self, image: &Path) -> Result<Option<std::fs::Metadata>, StorageError> {
        match std::fs::metadata(image) {
            Ok(metadata) => Ok(Some(metadata)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StorageError::Io {
                action: "read the metadata of",
                path: image.to_path_buf(),
                source,
            }),
        }
    }

    fn describe(
        &self,
        name: &BackingVolumeName,
        metadata: &std::fs::Metadata,
        device_path: Option<PathBuf>,
    ) -> BackingVolume {
        BackingVolume {
            name: name.clone(),
            device_path,
            allocated_kib: metadata.blocks() * 512 / 1024,
            usable_kib: metadata.len() / 1024,
        }
    }

    /// Sets the file's size: preallocated for FILE, sparse for FILE_THIN. Creates the file if
    /// it does not exist.
    fn set_size(&self, image: &Path, size_kib: u64) -> Result<(), StorageError> {
        let bytes = (size_kib * 1024).to_string();
        let path = image.to_string_lossy();
        let command = if self.thin {
            CommandLine::new("truncate")
                .args(["--size", &bytes])
                .arg(path)
        } else {
            CommandLine::new("fallocate")
                .args(["--length", &bytes])
                .arg(path)
        };
        self.runner.run(&command)?;
        Ok(())
    }
}

impl Provider for FileProvider {
    fn kind(&self) -> ProviderKind {
        if self.thin {
            ProviderKind::FileThin
        } else {
            ProviderKind::File
        }
    }

    fn check_pool(&self, pool: &str) -> Result<Option<PoolCapacity>, StorageError> {
        let dir = self.directory(pool)?;
        match std::fs::metadata(&dir) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return Err(self.unusable(pool, format!("'{pool}' is not a directory"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.unusable(
                    pool,
                    format!("directory '{pool}' does not exist; create it first (mkdir -p {pool})"),
                ));
            }
            Err(e) => return Err(self.unusable(pool, format!("cannot read '{pool}': {e}"))),
        }
        let capacity =
            self.runner
                .file_system_capacity(&dir)
                .map_err(|source| StorageError::Io {
                    action: "read the file system capacity of",
                    path: dir.clone(),
                    source,
                })?;
        Ok(Some(capacity))
    }

    fn list_volumes(&self, pool: &str) -> Result<Vec<BackingVolume>, StorageError> {
        let dir = self.directory(pool)?;
        let entries = std::fs::read_dir(&dir).map_err(|source| StorageError::Io {
            action: "list",
            path: dir.clone(),
            source,
        })?;
        let mut volumes = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(stem) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(&format!(".{IMAGE_EXTENSION}")))
            else {
                continue;
            };
            let Some((resource, number)) = BackingVolumeName::parse(stem) else {
                continue;
            };
            let name = BackingVolumeName::new(&resource, number);
            if let Some(volume) = self.volume(pool, &name)? {
                volumes.push(volume);
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    fn volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<Option<BackingVolume>, StorageError> {
        let image = self.image_path(pool, name)?;
        let (Some(metadata), key) = self.stat_and_key(&image)? else {
            return Ok(None);
        };
        let device = self.loop_devices_by_key(&image, key)?.into_iter().next();
        Ok(Some(self.describe(name, &metadata, device)))
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError> {
        self.check_pool(pool)?;
        let image = self.image_path(pool, name)?;
        let existed = self.stat(&image)?.is_some();
        self.set_size(&image, size_kib)?;
        if !existed {
            self.note_created(&image);
        }
        Ok(())
    }

    fn grow_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
        size_kib: u64,
    ) -> Result<(), StorageError> {
        let image = self.image_path(pool, name)?;
        let Some(metadata) = self.stat(&image)? else {
            return Err(StorageError::VolumeMissing {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: name.clone(),
            });
        };
        if metadata.len() < size_kib * 1024 {
            self.set_size(&image, size_kib)?;
        }
        // Attached devices keep their old size until told to re-read it.
        for device in self.loop_devices(&image)? {
            self.runner.run(
                &CommandLine::new("losetup")
                    .arg("--set-capacity")
                    .arg(device.to_string_lossy()),
            )?;
        }
        Ok(())
    }

    fn activate_volume(
        &self,
        pool: &str,
        name: &BackingVolumeName,
    ) -> Result<BackingVolume, StorageError> {
        let image = self.image_path(pool, name)?;
        let (Some(metadata), key) = self.stat_and_key(&image)? else {
            return Err(StorageError::VolumeMissing {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: name.clone(),
            });
        };
        let device = match self.loop_devices_by_key(&image, key)?.into_iter().next() {
            Some(device) => device,
            None => {
                let device = self.attach_loop_device(&image)?;
                self.note_loop_device(&image, &device, true);
                device
            }
        };
        Ok(self.describe(name, &metadata, Some(device)))
    }

    fn rename_volume(
        &self,
        pool: &str,
        from: &BackingVolumeName,
        to: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        let source = self.image_path(pool, from)?;
        let target = self.image_path(pool, to)?;
        if self.stat(&target)?.is_some() {
            return Err(StorageError::RenameTargetExists {
                provider: self.kind(),
                pool: pool.to_string(),
                from: from.clone(),
                to: to.clone(),
            });
        }
        // An attached loop device follows the file: the kernel holds the file, not the name.
        self.runner.run(
            &CommandLine::new("mv")
                .args(["--no-clobber", "--no-target-directory"])
                .arg(source.to_string_lossy())
                .arg(target.to_string_lossy()),
        )?;
        if self.stat(&source)?.is_some() || self.stat(&target)?.is_none() {
            return Err(StorageError::UnexpectedOutput {
                command: format!("mv {} {}", source.display(), target.display()),
                reason: "the file was not renamed".to_string(),
            });
        }
        let mut table = self.loop_table();
        if matches!(*table, LoopTable::Read(_)) {
            // Keyed by the old path; read it again when next needed.
            *table = LoopTable::Unread;
        }
        drop(table);
        let mut remembered = self.remembered();
        for path in [&source, &target] {
            let key = self.canonical_or_given(path);
            remembered.devices.remove(&key);
            remembered.unattached.remove(&key);
        }
        Ok(())
    }

    fn pool_identity(&self, pool: &str) -> Result<Option<String>, StorageError> {
        self.check_pool(pool)?;
        let marker = self.directory(pool)?.join(MARKER_FILE);
        match std::fs::read_to_string(&marker) {
            Ok(text) => {
                let mark = text.trim();
                if mark.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(mark.to_string()))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StorageError::Io {
                action: "read the pool marker",
                path: marker,
                source,
            }),
        }
    }

    fn mark_pool(&self, pool: &str, mark: &str) -> Result<Option<String>, StorageError> {
        if let Some(existing) = self.pool_identity(pool)? {
            return Ok(Some(existing));
        }
        let dir = self.directory(pool)?;
        let marker = dir.join(MARKER_FILE);
        let partial = dir.join(format!("{MARKER_FILE}.partial"));
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io {
                action,
                path,
                source,
            }
        };
        {
            use std::io::Write as _;
            let mut file =
                std::fs::File::create(&partial).map_err(io("create the pool marker", &partial))?;
            writeln!(file, "{mark}").map_err(io("write the pool marker", &partial))?;
            file.sync_all()
                .map_err(io("write the pool marker", &partial))?;
        }
        std::fs::rename(&partial, &marker).map_err(io("write the pool marker", &marker))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &dir))?;
        Ok(Some(mark.to_string()))
    }

    fn lingering_devices(&self, pool: &str, name: &BackingVolumeName) -> Vec<PathBuf> {
        let Ok(image) = self.image_path(pool, name) else {
            return Vec::new();
        };
        let command =
            CommandLine::query("losetup").args(["--list", "--json", "--output", "NAME,BACK-FILE"]);
        let Ok(output) = self.runner.run(&command) else {
            return Vec::new();
        };
        let Ok(list) = serde_json::from_str::<LoopList>(&output.stdout) else {
            return Vec::new();
        };
        let deleted = format!("{} (deleted)", image.display());
        list.loopdevices
            .into_iter()
            .filter(|d| d.back_file.as_deref().map(str::trim) == Some(deleted.as_str()))
            .map(|d| PathBuf::from(d.name))
            .collect()
    }

    fn begin_pass(&self) {
        let passes = self
            .full_passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let remembers = !self.remembered().devices.is_empty();
        *self.loop_table() = if remembers && !passes.is_multiple_of(FULL_TABLE_EVERY) {
            LoopTable::Checked
        } else {
            LoopTable::Unread
        };
        self.remembered().unattached.clear();
        *self.canonical_dirs() = Some(HashMap::new());
    }

    fn begin_scoped_pass(&self) {
        *self.loop_table() = LoopTable::Scoped;
        self.remembered().unattached.clear();
        *self.canonical_dirs() = Some(HashMap::new());
    }

    fn end_pass(&self) {
        *self.loop_table() = LoopTable::Unused;
        self.remembered().unattached.clear();
        *self.canonical_dirs() = None;
    }

    fn supports_snapshots(&self) -> bool {
        true
    }

    fn snapshot_exists(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<bool, StorageError> {
        Ok(self
            .stat(&self.snapshot_path(pool, volume, snapshot)?)?
            .is_some())
    }

    fn create_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<String, StorageError> {
        let image = self.image_path(pool, volume)?;
        if self.stat(&image)?.is_none() {
            return Err(StorageError::VolumeMissing {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: volume.clone(),
            });
        }
        let target = self.snapshot_path(pool, volume, snapshot)?;
        if self.stat(&target)?.is_some() {
            return Err(StorageError::UnexpectedOutput {
                command: format!("stat {}", target.display()),
                reason: "the snapshot file exists already".to_string(),
            });
        }
        Ok(self.copy_whole(&image, &target)?.to_string())
    }

    fn delete_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<(), StorageError> {
        let target = self.snapshot_path(pool, volume, snapshot)?;
        if self.stat(&target)?.is_none() {
            return Ok(());
        }
        self.runner.run(
            &CommandLine::new("rm")
                .arg("--force")
                .arg(target.to_string_lossy()),
        )?;
        Ok(())
    }

    fn restore_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
        target: &BackingVolumeName,
    ) -> Result<(), StorageError> {
        let source = self.snapshot_path(pool, volume, snapshot)?;
        let Some(metadata) = self.stat(&source)? else {
            return Err(self.snapshot_missing(pool, volume, snapshot));
        };
        let image = self.image_path(pool, target)?;
        if self.stat(&image)?.is_some() {
            return Err(StorageError::VolumeExists {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: target.clone(),
            });
        }
        self.copy_whole(&source, &image)?;
        if !self.thin {
            // A thick volume owns its space: allocate the holes a copy leaves.
            self.set_size(&image, metadata.len() / 1024)?;
        }
        Ok(())
    }

    fn rollback_snapshot(
        &self,
        pool: &str,
        volume: &BackingVolumeName,
        snapshot: &SnapshotName,
    ) -> Result<(), StorageError> {
        let source = self.snapshot_path(pool, volume, snapshot)?;
        if self.stat(&source)?.is_none() {
            return Err(self.snapshot_missing(pool, volume, snapshot));
        }
        let image = self.image_path(pool, volume)?;
        let Some(current) = self.stat(&image)? else {
            return Err(StorageError::VolumeMissing {
                provider: self.kind(),
                pool: pool.to_string(),
                volume: volume.clone(),
            });
        };
        // The copy goes into the volume's own file (cp truncates and rewrites it), so a loop
        // device attached to it keeps serving it; its cached blocks are dropped afterwards.
        self.copy(&source, &image)?;
        // A volume grown since the snapshot keeps its size (the loop device has it).
        let restored = self.stat(&image)?.map_or(0, |m| m.len());
        if restored < current.len() || !self.thin {
            self.set_size(&image, restored.max(current.len()) / 1024)?;
        }
        for device in self.loop_devices(&image)? {
            self.runner.run(
                &CommandLine::new("blockdev")
                    .arg("--flushbufs")
                    .arg(device.to_string_lossy()),
            )?;
        }
        Ok(())
    }

    fn deactivate_volume(&self, pool: &str, name: &BackingVolumeName) -> Result<(), StorageError> {
        let image = self.image_path(pool, name)?;
        if self.stat(&image)?.is_none() {
            return Ok(());
        }
        self.detach(&image)
    }

    fn delete_volume(&self, pool: &str, name: &BackingVolumeName) -> Result<(), StorageError> {
        let image = self.image_path(pool, name)?;
        if self.stat(&image)?.is_none() {
            return Ok(());
        }
        self.detach(&image)?;
        self.runner.run(
            &CommandLine::new("rm")
                .arg("--force")
                .arg(image.to_string_lossy()),
        )?;
        Ok(())
    }
}

impl FileProvider {
    /// Detaches every loop device of `image`.
    fn detach(&self, image: &Path) -> Result<(), StorageError> {
        for device in self.loop_devices(image)? {
            self.runner.run(
                &CommandLine::new("losetup")
                    .arg("--detach")
                    .arg(device.to_string_lossy()),
            )?;
            self.note_loop_device(image, &device, false);
        }
        Ok(())
    }
}

/// Size and free space (for unprivileged users, as `df` shows it) of the file system holding
/// `dir`.
pub(crate) fn statvfs(dir: &Path) -> std::io::Result<PoolCapacity> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stats` points to writable memory of
    // the right type; statvfs initialises it when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    let fragment = stats.f_frsize;
    Ok(PoolCapacity {
        total_kib: stats.f_blocks * fragment / 1024,
        free_kib: stats.f_bavail * fragment / 1024,
    })
}

#[cfg(test)]
mod loop_attach_tests {
    use std::sync::Mutex;

    use super::*;
    use crate::runner::{CommandError, CommandOutput, ExitReason};

    /// Hands out `free` devices in turn; `losetup DEVICE FILE` fails with `busy` for the devices
    /// in `taken`, and `--find` answers `/dev/loop3`.
    struct Host {
        free: Mutex<Vec<&'static str>>,
        taken: Vec<&'static str>,
        other_error: bool,
        ran: Mutex<Vec<String>>,
    }

    impl Host {
        fn new(free: &[&'static str], taken: &[&'static str]) -> Host {
            Host {
                free: Mutex::new(free.iter().rev().copied().collect()),
                taken: taken.to_vec(),
                other_error: false,
                ran: Mutex::new(Vec::new()),
            }
        }

        fn failed(command: &CommandLine, stderr: &str) -> CommandError {
            CommandError::Failed {
                command: command.to_string(),
                exit: ExitReason::Code(1),
                stdout: String::new(),
                stderr: stderr.to_string(),
            }
        }
    }

    impl HostCommands for Host {
        fn free_loop_device(&self) -> Option<PathBuf> {
            self.free.lock().unwrap().pop().map(PathBuf::from)
        }

        fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
            self.ran.lock().unwrap().push(command.to_string());
            let device = command.args.first().map(String::as_str).unwrap_or("");
            if device == "--find" {
                return Ok(CommandOutput::stdout("/dev/loop3\n"));
            }
            if self.other_error {
                return Err(Host::failed(command, "losetup: /x.img: No such file"));
            }
            if self.taken.contains(&device) {
                return Err(Host::failed(
                    command,
                    &format!(
                        "losetup: {device}: failed to set up loop device: Device or resource busy"
                    ),
                ));
            }
            Ok(CommandOutput::stdout(""))
        }
    }

    fn attach(host: Host) -> (Result<PathBuf, StorageError>, Vec<String>) {
        let host = Arc::new(host);
        let provider = FileProvider::new(host.clone(), true);
        let result = provider.attach_loop_device(Path::new("/pool/a.img"));
        let ran = host.ran.lock().unwrap().clone();
        (result, ran)
    }

    #[test]
    fn a_device_taken_meanwhile_is_followed_by_another_at_once() {
        let (device, ran) = attach(Host::new(&["/dev/loop7", "/dev/loop8"], &["/dev/loop7"]));
        assert_eq!(device.unwrap(), PathBuf::from("/dev/loop8"));
        assert_eq!(
            ran,
            [
                "losetup /dev/loop7 /pool/a.img",
                "losetup /dev/loop8 /pool/a.img"
            ]
        );
    }

    #[test]
    fn without_a_named_device_losetup_finds_one() {
        let (device, ran) = attach(Host::new(&[], &[]));
        assert_eq!(device.unwrap(), PathBuf::from("/dev/loop3"));
        assert_eq!(ran, ["losetup --find --show /pool/a.img"]);

        let busy = ["/dev/loop1"; LOOP_ATTACH_ATTEMPTS];
        let (device, ran) = attach(Host::new(&busy, &["/dev/loop1"]));
        assert_eq!(device.unwrap(), PathBuf::from("/dev/loop3"));
        assert_eq!(ran.len(), LOOP_ATTACH_ATTEMPTS + 1, "{ran:?}");
    }

    #[test]
    fn another_failure_is_returned_without_trying_again() {
        let mut host = Host::new(&["/dev/loop7", "/dev/loop8"], &[]);
        host.other_error = true;
        let (result, ran) = attach(host);
        assert!(
            result.unwrap_err().to_string().contains("No such file"),
            "the cause is kept"
        );
        assert_eq!(ran, ["losetup /dev/loop7 /pool/a.img"]);
    }

    #[test]
    fn a_pass_resolves_paths_as_realpath_does() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, root.path().join("pool")).unwrap();
        std::fs::write(real.join("a.img"), b"").unwrap();
        std::fs::write(real.join("target.img"), b"").unwrap();
        std::os::unix::fs::symlink(real.join("target.img"), real.join("link.img")).unwrap();
        let provider = FileProvider::new(Arc::new(Host::new(&[], &[])), true);
        let names = [
            "a.img",
            "link.img",
            "missing.img",
            "./a.img",
            "../real/a.img",
        ];
        let paths: Vec<PathBuf> = names
            .iter()
            .map(|name| root.path().join("pool").join(name))
            .collect();
        let expected: Vec<Option<PathBuf>> = paths
            .iter()
            .map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let outside: Vec<Option<PathBuf>> = paths.iter().map(|p| provider.canonical(p)).collect();
        provider.begin_pass();
        // Twice: the second time from the directory already resolved.
        for _ in 0..2 {
            let inside: Vec<Option<PathBuf>> =
                paths.iter().map(|p| provider.canonical(p)).collect();
            assert_eq!(inside, expected);
        }
        provider.end_pass();
        assert_eq!(outside, expected);
        assert_eq!(
            expected[1],
            Some(real.canonicalize().unwrap().join("target.img"))
        );
        assert_eq!(expected[2], None);
    }
}

#[cfg(test)]
mod pass_lookup_tests {
    use std::sync::Mutex;

    use super::*;
    use crate::runner::{CommandError, CommandOutput};

    /// Answers `losetup --list` with `table` (device, backing file), and the kernel's name of
    /// a device's file from it, and records what ran.
    struct Host {
        table: Mutex<Vec<(String, String)>>,
        ran: Mutex<Vec<String>>,
    }

    impl Host {
        fn new(table: Vec<(String, String)>) -> Host {
            Host {
                table: Mutex::new(table),
                ran: Mutex::new(Vec::new()),
            }
        }

        /// How many times the whole table was read.
        fn tables_read(&self) -> usize {
            let ran = self.ran.lock().unwrap();
            ran.iter().filter(|c| c.contains("NAME,BACK-FILE")).count()
        }
    }

    impl HostCommands for Host {
        fn loop_backing_file(&self, device: &Path) -> Option<String> {
            let table = self.table.lock().unwrap();
            let (_, file) = table.iter().find(|(name, _)| Path::new(name) == device)?;
            std::fs::canonicalize(file)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        }

        fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
            self.ran.lock().unwrap().push(command.to_string());
            let associated = command.args.iter().position(|a| a == "--associated");
            let table = self.table.lock().unwrap();
            let devices: Vec<serde_json::Value> = table
                .iter()
                .filter(|(_, file)| {
                    associated.is_none_or(|at| {
                        std::fs::canonicalize(&command.args[at + 1]).ok()
                            == std::fs::canonicalize(file).ok()
                    })
                })
                .map(|(name, file)| serde_json::json!({"name": name, "back-file": file}))
                .collect();
            Ok(CommandOutput::stdout(
                serde_json::json!({ "loopdevices": devices }).to_string(),
            ))
        }
    }

    /// In a pass, a volume's file is looked at once (one `lstat` gives its metadata and, with
    /// its directory resolved once, the path its loop devices are found by); the answers are
    /// those of `stat` and `realpath`: through a pool directory reached by a symbolic link, for
    /// a file that is itself a symbolic link, for a file without a device and for none.
    #[test]
    fn a_pass_finds_each_volume_and_its_device_as_outside_one() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&real).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        let pool_link = root.path().join("pool");
        std::os::unix::fs::symlink(&real, &pool_link).unwrap();
        let pool = pool_link.to_str().unwrap();
        let name = |resource: &str| {
            BackingVolumeName::new(
                &resource.parse().unwrap(),
                ferrite_types::VolumeNumber::from(0),
            )
        };
        let (attached, linked, bare, missing) = (
            name("attached"),
            name("linked"),
            name("bare"),
            name("missing"),
        );
        let paths = FileProvider::new(Arc::new(Host::new(Vec::new())), true);
        let image = |name: &BackingVolumeName| paths.image_path(pool, name).unwrap();
        std::fs::write(image(&attached), vec![0u8; 8192]).unwrap();
        std::fs::write(image(&bare), vec![0u8; 4096]).unwrap();
        let target = elsewhere.join("target.img");
        std::fs::write(&target, vec![0u8; 12288]).unwrap();
        std::os::unix::fs::symlink(&target, image(&linked)).unwrap();
        let table = vec![
            (
                "/dev/loop1".to_string(),
                real.join(image(&attached).file_name().unwrap())
                    .to_string_lossy()
                    .into_owned(),
            ),
            (
                "/dev/loop2".to_string(),
                target.to_string_lossy().into_owned(),
            ),
        ];
        let host = Arc::new(Host::new(table));
        let provider = FileProvider::new(host.clone(), true);
        let look = |provider: &FileProvider| {
            [&attached, &linked, &bare, &missing]
                .map(|name| {
                    provider
                        .volume(pool, name)
                        .unwrap()
                        .map(|v| (v.usable_kib, v.device_path))
                })
                .to_vec()
        };
        let outside = look(&provider);
        assert_eq!(
            outside,
            vec![
                Some((8, Some(PathBuf::from("/dev/loop1")))),
                Some((12, Some(PathBuf::from("/dev/loop2")))),
                Some((4, None)),
                None,
            ]
        );
        provider.begin_pass();
        assert_eq!(look(&provider), outside, "in a pass");
        assert_eq!(look(&provider), outside, "in a pass, the directory known");
        let activated = provider.activate_volume(pool, &attached).unwrap();
        assert_eq!(activated.device_path, Some(PathBuf::from("/dev/loop1")));
        provider.end_pass();
        provider.begin_scoped_pass();
        assert_eq!(look(&provider), outside, "in a pass over named volumes");
        provider.end_pass();
        let ran = host.ran.lock().unwrap().clone();
        assert_eq!(host.tables_read(), 1, "one table per pass: {ran:?}");
        assert!(
            !ran.iter()
                .any(|c| c.starts_with("losetup /dev") || c.contains("--find")),
            "nothing attached: {ran:?}"
        );
    }

    /// A full pass between two reads of the whole table confirms each remembered device with the
    /// kernel and reads no table; the first file that leaves it unsure (no device remembered, or
    /// one that holds another file now) reads the table once for the rest of the pass; every
    /// [`FULL_TABLE_EVERY`]th pass reads it anyway.
    #[test]
    fn full_passes_between_table_reads_confirm_what_they_remember() {
        let pool = tempfile::tempdir().unwrap();
        let pool = pool.path().canonicalize().unwrap();
        let name = |resource: &str| {
            BackingVolumeName::new(
                &resource.parse().unwrap(),
                ferrite_types::VolumeNumber::from(0),
            )
        };
        let (web, db) = (name("web"), name("db"));
        let file = |name: &BackingVolumeName| pool.join(format!("{name}.img"));
        std::fs::write(file(&web), vec![0u8; 4096]).unwrap();
        std::fs::write(file(&db), vec![0u8; 4096]).unwrap();
        let device = |n: u32, name: &BackingVolumeName| {
            (
                format!("/dev/loop{n}"),
                file(name).to_string_lossy().into_owned(),
            )
        };
        let host = Arc::new(Host::new(vec![device(1, &web)]));
        let provider = FileProvider::new(host.clone(), true);
        let pool = pool.to_str().unwrap();
        let device_of =
            |name: &BackingVolumeName| provider.volume(pool, name).unwrap().unwrap().device_path;
        let pass = |look: &dyn Fn()| {
            provider.begin_pass();
            look();
            provider.end_pass();
        };

        pass(&|| assert_eq!(device_of(&web), Some(PathBuf::from("/dev/loop1"))));
        assert_eq!(host.tables_read(), 1, "the first pass reads the table");
        pass(&|| assert_eq!(device_of(&web), Some(PathBuf::from("/dev/loop1"))));
        assert_eq!(host.tables_read(), 1, "loop1 is confirmed, no table read");
        pass(&|| {
            assert_eq!(device_of(&db), None);
            assert_eq!(device_of(&db), None);
            assert_eq!(device_of(&web), Some(PathBuf::from("/dev/loop1")));
        });
        assert_eq!(
            host.tables_read(),
            2,
            "db, never seen attached, reads it once"
        );
        // Behind the satellite's back, web moves to loop7 and loop1 takes db.
        *host.table.lock().unwrap() = vec![device(7, &web), device(1, &db)];
        pass(&|| {
            assert_eq!(device_of(&web), Some(PathBuf::from("/dev/loop7")));
            assert_eq!(device_of(&db), Some(PathBuf::from("/dev/loop1")));
        });
        assert_eq!(
            host.tables_read(),
            3,
            "loop1 holds another file: the table, once"
        );
        for _ in 4..FULL_TABLE_EVERY {
            pass(&|| {
                assert_eq!(device_of(&web), Some(PathBuf::from("/dev/loop7")));
                assert_eq!(device_of(&db), Some(PathBuf::from("/dev/loop1")));
            });
        }
        assert_eq!(host.tables_read(), 3, "both confirmed since");
        pass(&|| assert_eq!(device_of(&web), Some(PathBuf::from("/dev/loop7"))));
        assert_eq!(
            host.tables_read(),
            4,
            "pass 11, ten after the first, reads it anyway"
        );
    }
}
