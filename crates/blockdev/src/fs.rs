//! The FUSE file system: one directory with one regular file per exported volume.
//!
//! Each file's size is its volume's size, and I/O on it becomes [`Volume`] calls: `read` →
//! [`Volume::read`], `write` → [`Volume::write`] (with FUA when the write carries
//! `O_SYNC`/`O_DSYNC`), `fsync` and `flush` (every `close`) → [`Volume::flush`],
//! `fallocate(PUNCH_HOLE)` → [`Volume::trim`], `fallocate(ZERO_RANGE)` →
//! [`Volume::write_zeroes`]. Every open gets `FOPEN_DIRECT_IO`, so the kernel keeps no page
//! cache of the file: a read always reaches the volume and sees what another node wrote.
//!
//! Threading: the kernel's requests are read by [`FUSE_READER_THREADS`] threads, each on its own
//! clone of the `/dev/fuse` descriptor (`FUSE_DEV_IOC_CLONE`). A reader never waits for a
//! volume: it starts the request as a task on the tokio runtime and reads the next one; the
//! task replies when the volume completes. So the loop device can keep many requests in flight
//! (asynchronous direct I/O, `FUSE_ASYNC_DIO`, up to [`MAX_BACKGROUND`]) with two threads.
//!
//! Files appear and disappear while the file system is mounted ([`FuseMount::add_file`],
//! [`FuseMount::remove_file`]). An open file keeps working after its name is removed, until it
//! is closed, like an unlinked file.
//!
//! This module knows nothing of loop devices or symlinks; `devices.rs` does.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes};
use ferrite_block::{AlignedBuf, BLOCK_SIZE, IoError, MAX_REQUEST_BYTES, Volume};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, Notifier, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, Session,
    SessionACL, SessionUnmounter, WriteFlags,
};
use tokio::runtime::Handle;

use crate::error::BlockDevError;

/// Threads reading requests from `/dev/fuse` (each on its own cloned descriptor). They only
/// parse a request and hand it to the runtime, so two keep up with many requests in flight.
pub const FUSE_READER_THREADS: usize = 2;

/// The largest read or write the kernel sends in one request: 1 MiB, the most the kernel
/// allows by default (`fs.fuse.max_pages_limit` = 256 pages).
pub const MAX_WRITE_BYTES: u32 = 1 << 20;

/// How many asynchronous requests (the loop device's direct I/O) the kernel keeps in flight
/// before it makes submitters wait. The kernel's default of 12 would cap the device's queue
/// depth below what a busy file system or a QD32 benchmark issues.
pub const MAX_BACKGROUND: u16 = 256;

/// How long the kernel may cache a name or a file's attributes. Short, because files come and
/// go with volumes (a removal also invalidates the name at once) and a volume may grow.
pub const ATTR_TTL: Duration = Duration::from_secs(1);

/// The permissions of the files and of the directory: the volumes' data is root's.
const FILE_PERMISSIONS: u16 = 0o600;
const DIRECTORY_PERMISSIONS: u16 = 0o700;

/// The first inode number given to a file; 1 is the root directory. Numbers are never reused
/// while the file system is mounted, so a volume exported again is a new file to the kernel.
const FIRST_FILE_INODE: u64 = 2;

/// `fallocate` modes, as the kernel passes them.
const FALLOC_KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
const FALLOC_PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
const FALLOC_ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;

/// How often a file was opened and closed through the file system. The loop device holds one
/// open for as long as it is attached, so `open_now` is 1 for an attached, unused device: these
/// counts are not "in use" (see `BlockDevice::is_in_use`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenCounts {
    /// Opens not closed yet.
    pub open_now: u64,
    /// Every open since the file was added.
    pub opens: u64,
    /// Every close (FUSE `release`) since the file was added.
    pub releases: u64,
}

/// One exported volume as a file.
pub struct ExportedFile<V> {
    inode: u64,
    name: String,
    volume: Arc<V>,
    opens: AtomicU64,
    releases: AtomicU64,
}

impl<V: Volume> ExportedFile<V> {
    /// The file's name in the mount directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn open_counts(&self) -> OpenCounts {
        // Releases first: a concurrent open between the two loads can then only make
        // `open_now` larger, never wrap below zero.
        let releases = self.releases.load(Ordering::Acquire);
        let opens = self.opens.load(Ordering::Acquire);
        OpenCounts {
            open_now: opens.saturating_sub(releases),
            opens,
            releases,
        }
    }

    fn attr(&self, created: SystemTime) -> FileAttr {
        let size = self.volume.size();
        FileAttr {
            ino: INodeNo(self.inode),
            size,
            blocks: size.div_ceil(512),
            atime: created,
            mtime: created,
            ctime: created,
            crtime: created,
            kind: FileType::RegularFile,
            perm: FILE_PERMISSIONS,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }
}

/// The names and open files, shared by the reader threads and the owner of the mount.
struct Shared<V> {
    /// Files by name, and their inode numbers.
    names: RwLock<BTreeMap<String, Arc<ExportedFile<V>>>>,
    inodes: RwLock<HashMap<u64, Arc<ExportedFile<V>>>>,
    /// Open files by handle: I/O goes through the handle, so it keeps working after the name
    /// is removed.
    handles: RwLock<HashMap<u64, Arc<ExportedFile<V>>>>,
    next_inode: AtomicU64,
    next_handle: AtomicU64,
    /// The time every attribute reports (the files have no times of their own).
    created: SystemTime,
}

impl<V: Volume> Shared<V> {
    fn by_inode(&self, inode: INodeNo) -> Option<Arc<ExportedFile<V>>> {
        read(&self.inodes).get(&inode.0).cloned()
    }

    fn by_handle(&self, handle: FileHandle) -> Option<Arc<ExportedFile<V>>> {
        read(&self.handles).get(&handle.0).cloned()
    }

    fn root_attr(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo::ROOT,
            size: 0,
            blocks: 0,
            atime: self.created,
            mtime: self.created,
            ctime: self.created,
            crtime: self.created,
            kind: FileType::Directory,
            perm: DIRECTORY_PERMISSIONS,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }
}

/// A poisoned lock only means a reader thread panicked while holding it; the maps themselves
/// are always consistent (every update is one insert or remove).
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn errno(error: &IoError) -> Errno {
    Errno::from_i32(error.errno())
}

/// The `fuser` file system: answers the kernel from [`Shared`] and runs I/O on the runtime.
struct VolumeFs<V> {
    shared: Arc<Shared<V>>,
    runtime: Handle,
}

impl<V: Volume> Filesystem for VolumeFs<V> {
    fn init(&mut self, _request: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(nearest) = config.set_max_write(MAX_WRITE_BYTES) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_background(MAX_BACKGROUND) {
            let _ = config.set_max_background(nearest);
        }
        let _ = config.set_congestion_threshold(MAX_BACKGROUND / 4 * 3);
        // Without asynchronous direct I/O the kernel waits for each of the loop device's
        // requests before it sends the next: queue depth 1.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO) {
            tracing::warn!(
                ?missing,
                "the kernel's FUSE lacks asynchronous direct I/O: the loop device will issue one request at a time"
            );
        }
        Ok(())
    }

    fn lookup(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent != INodeNo::ROOT {
            return reply.error(Errno::ENOENT);
        }
        let file = name
            .to_str()
            .and_then(|name| read(&self.shared.names).get(name).cloned());
        match file {
            Some(file) => reply.entry(&ATTR_TTL, &file.attr(self.shared.created), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(
        &self,
        _request: &Request,
        inode: INodeNo,
        handle: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        if inode == INodeNo::ROOT {
            return reply.attr(&ATTR_TTL, &self.shared.root_attr());
        }
        let file = handle
            .and_then(|handle| self.shared.by_handle(handle))
            .or_else(|| self.shared.by_inode(inode));
        match file {
            Some(file) => reply.attr(&ATTR_TTL, &file.attr(self.shared.created)),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// A file's size is its volume's: only a "change" to the same size (`O_TRUNC` of an empty
    /// request, `truncate` to the current size) succeeds. Other changes (times, modes) are
    /// accepted and not kept.
    fn setattr(
        &self,
        _request: &Request,
        inode: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        handle: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if inode == INodeNo::ROOT {
            return reply.attr(&ATTR_TTL, &self.shared.root_attr());
        }
        let file = handle
            .and_then(|handle| self.shared.by_handle(handle))
            .or_else(|| self.shared.by_inode(inode));
        let Some(file) = file else {
            return reply.error(Errno::ENOENT);
        };
        if size.is_some_and(|size| size != file.volume.size()) {
            tracing::debug!(file = %file.name, ?size, "refused to resize a volume's file");
            return reply.error(Errno::EPERM);
        }
        reply.attr(&ATTR_TTL, &file.attr(self.shared.created));
    }

    fn open(&self, request: &Request, inode: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(file) = self.shared.by_inode(inode) else {
            return reply.error(if inode == INodeNo::ROOT {
                Errno::EISDIR
            } else {
                Errno::ENOENT
            });
        };
        let handle = self.shared.next_handle.fetch_add(1, Ordering::Relaxed);
        file.opens.fetch_add(1, Ordering::AcqRel);
        tracing::debug!(file = %file.name, handle, pid = request.pid(), flags = format_args!("{:#o}", flags.0), "opened");
        write(&self.shared.handles).insert(handle, file);
        reply.opened(
            FileHandle(handle),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
        );
    }

    fn release(
        &self,
        _request: &Request,
        _inode: INodeNo,
        handle: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(file) = write(&self.shared.handles).remove(&handle.0) {
            file.releases.fetch_add(1, Ordering::AcqRel);
            tracing::debug!(file = %file.name, handle = handle.0, "closed");
        }
        reply.ok();
    }

    fn read(
        &self,
        _request: &Request,
        _inode: INodeNo,
        handle: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(file) = self.shared.by_handle(handle) else {
            return reply.error(Errno::EBADF);
        };
        let volume_size = file.volume.size();
        // Like a block device: a read at or past the end returns nothing, one across it is cut.
        let len = u64::from(size.min(MAX_REQUEST_BYTES)).min(volume_size.saturating_sub(offset));
        if len == 0 {
            return reply.data(&[]);
        }
        self.runtime.spawn(async move {
            match file.volume.read(offset, len as u32).await {
                Ok(data) => reply.data(&data),
                Err(error) => {
                    tracing::warn!(file = %file.name, offset, len, %error, "read failed");
                    reply.error(errno(&error));
                }
            }
        });
    }

    fn write(
        &self,
        _request: &Request,
        _inode: INodeNo,
        handle: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(file) = self.shared.by_handle(handle) else {
            return reply.error(Errno::EBADF);
        };
        // Like a block device: a write at the end fails with ENOSPC, one across it is cut.
        let room = file.volume.size().saturating_sub(offset);
        if room == 0 && !data.is_empty() {
            return reply.error(Errno::ENOSPC);
        }
        let len = (data.len() as u64).min(room) as usize;
        if len == 0 {
            return reply.written(0);
        }
        // The kernel's buffer is reused for the next request: the payload moves into memory
        // aligned for O_DIRECT, which the engine then shares with the disk and every peer.
        let mut payload = AlignedBuf::with_capacity(len);
        payload.put_slice(&data[..len]);
        let payload = Bytes::from_owner(payload);
        // The kernel adds O_DSYNC (and O_SYNC) to a write that must be durable when it returns.
        let fua = flags.0 & libc::O_DSYNC != 0;
        self.runtime.spawn(async move {
            match file.volume.write(offset, payload, fua).await {
                Ok(()) => reply.written(len as u32),
                Err(error) => {
                    tracing::warn!(file = %file.name, offset, len, fua, %error, "write failed");
                    reply.error(errno(&error));
                }
            }
        });
    }

    /// Every `close` of a descriptor: make what was written stable, so a closed file's data
    /// survives a crash (and errors reach `close`).
    fn flush(
        &self,
        _request: &Request,
        _inode: INodeNo,
        handle: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.flush_volume(handle, "flush", reply);
    }

    fn fsync(
        &self,
        _request: &Request,
        _inode: INodeNo,
        handle: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.flush_volume(handle, "fsync", reply);
    }

    fn fallocate(
        &self,
        _request: &Request,
        _inode: INodeNo,
        handle: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(file) = self.shared.by_handle(handle) else {
            return reply.error(Errno::EBADF);
        };
        let volume_size = file.volume.size();
        let Some(end) = offset.checked_add(length) else {
            return reply.error(Errno::EINVAL);
        };
        let keep_size = mode & FALLOC_KEEP_SIZE != 0;
        if end > volume_size && !keep_size {
            // The file cannot grow: the volume's size is fixed here.
            return reply.error(Errno::ENOSPC);
        }
        let length = end.min(volume_size).saturating_sub(offset);
        let operation = match mode & !FALLOC_KEEP_SIZE {
            // Allocation: a volume's blocks are always there.
            0 => return reply.ok(),
            FALLOC_PUNCH_HOLE if keep_size => Operation::Trim,
            FALLOC_ZERO_RANGE => Operation::Zeroes,
            _ => return reply.error(Errno::EOPNOTSUPP),
        };
        if length == 0 {
            return reply.ok();
        }
        self.runtime.spawn(async move {
            let result = match operation {
                Operation::Trim => file.volume.trim(offset, length).await,
                Operation::Zeroes => file.volume.write_zeroes(offset, length, false).await,
            };
            match result {
                Ok(()) => reply.ok(),
                Err(error) => {
                    tracing::warn!(file = %file.name, offset, length, ?operation, %error, "fallocate failed");
                    reply.error(errno(&error));
                }
            }
        });
    }

    fn opendir(&self, _request: &Request, inode: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if inode == INodeNo::ROOT {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::ENOTDIR);
        }
    }

    fn readdir(
        &self,
        _request: &Request,
        inode: INodeNo,
        _handle: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if inode != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (INodeNo::ROOT, FileType::Directory, ".".to_string()),
            (INodeNo::ROOT, FileType::Directory, "..".to_string()),
        ];
        entries.extend(read(&self.shared.names).values().map(|file| {
            (
                INodeNo(file.inode),
                FileType::RegularFile,
                file.name.clone(),
            )
        }));
        for (index, (inode, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(inode, index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _request: &Request, _inode: INodeNo, reply: ReplyStatfs) {
        let bytes: u64 = read(&self.shared.names)
            .values()
            .map(|file| file.volume.size())
            .sum();
        let files = read(&self.shared.names).len() as u64;
        // The loop device takes its discard granularity from the block size reported here.
        let block_size = u64::from(BLOCK_SIZE);
        reply.statfs(
            bytes / block_size,
            0,
            0,
            files,
            0,
            BLOCK_SIZE,
            255,
            BLOCK_SIZE,
        );
    }

    /// No extended attributes. ENOSYS (rather than the default's warning) makes the kernel
    /// stop asking, e.g. for `security.capability` before every write.
    fn getxattr(
        &self,
        _request: &Request,
        _inode: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _request: &Request, _inode: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _request: &Request,
        _inode: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _request: &Request, _inode: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    /// Only the owner (root) may use the mount at all, and may do anything: ENOSYS tells the
    /// kernel to stop asking.
    fn access(
        &self,
        _request: &Request,
        _inode: INodeNo,
        _mask: fuser::AccessFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn fsyncdir(
        &self,
        _request: &Request,
        _inode: INodeNo,
        _handle: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    /// Files are made by exporting volumes, never by `open(O_CREAT)`.
    fn create(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mknod(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn unlink(&self, _request: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }

    fn rmdir(&self, _request: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _new_parent: INodeNo,
        _new_name: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EPERM);
    }
}

#[derive(Debug, Clone, Copy)]
enum Operation {
    Trim,
    Zeroes,
}

impl<V: Volume> VolumeFs<V> {
    fn flush_volume(&self, handle: FileHandle, operation: &'static str, reply: ReplyEmpty) {
        let Some(file) = self.shared.by_handle(handle) else {
            return reply.error(Errno::EBADF);
        };
        self.runtime.spawn(async move {
            match file.volume.flush().await {
                Ok(()) => reply.ok(),
                Err(error) => {
                    tracing::warn!(file = %file.name, operation, %error, "flush failed");
                    reply.error(errno(&error));
                }
            }
        });
    }
}

/// The mounted file system: owns the mount and the session's threads. Dropping it unmounts.
pub struct FuseMount<V: Volume> {
    mountpoint: PathBuf,
    shared: Arc<Shared<V>>,
    notifier: Notifier,
    unmounter: SessionUnmounter,
    session: Option<JoinHandle<io::Result<()>>>,
}

impl<V: Volume> FuseMount<V> {
    /// Mounts an empty file system at `mountpoint` (an existing directory) and starts serving
    /// it; volume I/O runs on `runtime`.
    pub fn mount(mountpoint: &Path, runtime: Handle) -> Result<FuseMount<V>, BlockDevError> {
        let mount_error = |source| BlockDevError::Mount {
            mountpoint: mountpoint.to_path_buf(),
            source,
        };
        let shared = Arc::new(Shared {
            names: RwLock::new(BTreeMap::new()),
            inodes: RwLock::new(HashMap::new()),
            handles: RwLock::new(HashMap::new()),
            next_inode: AtomicU64::new(FIRST_FILE_INODE),
            next_handle: AtomicU64::new(1),
            created: SystemTime::now(),
        });
        let filesystem = VolumeFs {
            shared: shared.clone(),
            runtime,
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("ferrite".to_string()),
            MountOption::Subtype("ferrite-blockdev".to_string()),
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::NoExec,
            MountOption::NoAtime,
        ];
        config.acl = SessionACL::Owner;
        config.n_threads = Some(FUSE_READER_THREADS);
        config.clone_fd = true;
        let mut session = Session::new(filesystem, mountpoint, &config).map_err(mount_error)?;
        let notifier = session.notifier();
        let unmounter = session.unmount_callable();
        let session = std::thread::Builder::new()
            .name("blockdev-fuse".to_string())
            .spawn(move || session.run())
            .map_err(mount_error)?;
        tracing::info!(mountpoint = %mountpoint.display(), readers = FUSE_READER_THREADS, "mounted the block devices' FUSE file system");
        Ok(FuseMount {
            mountpoint: mountpoint.to_path_buf(),
            shared,
            notifier,
            unmounter,
            session: Some(session),
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The path of a file of this file system.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    /// Adds a file for `volume`; `None` if the name is taken.
    pub fn add_file(&self, name: &str, volume: Arc<V>) -> Option<Arc<ExportedFile<V>>> {
        let mut names = write(&self.shared.names);
        if names.contains_key(name) {
            return None;
        }
        let file = Arc::new(ExportedFile {
            inode: self.shared.next_inode.fetch_add(1, Ordering::Relaxed),
            name: name.to_string(),
            volume,
            opens: AtomicU64::new(0),
            releases: AtomicU64::new(0),
        });
        write(&self.shared.inodes).insert(file.inode, file.clone());
        names.insert(name.to_string(), file.clone());
        tracing::debug!(file = name, inode = file.inode, "added a volume's file");
        Some(file)
    }

    /// Removes a file's name; descriptors open on it keep working until they are closed.
    pub fn remove_file(&self, name: &str) -> Option<Arc<ExportedFile<V>>> {
        let file = write(&self.shared.names).remove(name)?;
        write(&self.shared.inodes).remove(&file.inode);
        // Drop the kernel's cached name now rather than after ATTR_TTL. ENOENT only means the
        // kernel had not cached it.
        if let Err(error) = self.notifier.inval_entry(INodeNo::ROOT, OsStr::new(name))
            && error.raw_os_error() != Some(libc::ENOENT)
        {
            tracing::debug!(file = name, %error, "could not invalidate the kernel's entry");
        }
        tracing::debug!(file = name, inode = file.inode, "removed a volume's file");
        Some(file)
    }

    /// Unmounts and waits for the session's threads. If something still has a file open
    /// (an attached loop device), the plain unmount fails with `EBUSY`: the file system is
    /// then detached lazily and keeps serving the open files until they are closed.
    pub fn unmount(mut self) -> Result<(), BlockDevError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), BlockDevError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match self.unmounter.unmount() {
            Ok(()) => {
                tracing::info!(mountpoint = %self.mountpoint.display(), "unmounted the block devices' FUSE file system");
                match session.join() {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(source)) => Err(BlockDevError::Mount {
                        mountpoint: self.mountpoint.clone(),
                        source,
                    }),
                    Err(_) => Err(BlockDevError::Mount {
                        mountpoint: self.mountpoint.clone(),
                        source: io::Error::other("the FUSE session thread panicked"),
                    }),
                }
            }
            Err(error) => {
                tracing::warn!(mountpoint = %self.mountpoint.display(), %error, "unmount failed; detaching the FUSE file system lazily, open files keep being served");
                lazy_unmount(&self.mountpoint).map_err(|source| BlockDevError::Mount {
                    mountpoint: self.mountpoint.clone(),
                    source,
                })
            }
        }
    }
}

impl<V: Volume> Drop for FuseMount<V> {
    fn drop(&mut self) {
        if let Err(error) = self.unmount_inner() {
            tracing::error!(%error, "could not unmount the block devices' FUSE file system");
        }
    }
}

/// `umount -l`: takes the mount out of the namespace now; the kernel ends it when the last
/// open file is closed.
pub(crate) fn lazy_unmount(mountpoint: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
