//! What the block device tests share: an in-memory volume that counts what it is asked, a
//! guard that unmounts a file system even when a test panics, and the check that the host can
//! run them at all.

#![allow(dead_code)] // each test file uses its own part

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use ferrite_block::{AlignedBuf, IoError, Volume, check_range};
use ferrite_blockdev::{BlockDeviceConfig, BlockDevices, BlockFrontend, DrbdLinks};
use ferrite_storage::{CommandLine, HostCommands, SystemCommands};

/// Whether the host can run these tests: root and /dev/fuse. When not, says so on stderr and
/// the test returns early.
pub fn can_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let reason = if !root {
        Some("not root (mounting FUSE and attaching loop devices need root)")
    } else if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if !Path::new("/dev/loop-control").exists() {
        Some("/dev/loop-control is missing")
    } else {
        None
    };
    if let Some(reason) = reason {
        eprintln!("SKIPPED {test}: {reason}");
        return false;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fuser=warn".into()),
        )
        .with_test_writer()
        .try_init();
    true
}

/// What a [`MemoryVolume`] was asked to do.
#[derive(Debug, Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub fua_writes: AtomicU64,
    pub flushes: AtomicU64,
    pub trims: AtomicU64,
    pub zeroes: AtomicU64,
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    in_flight: AtomicU64,
    /// The most requests that were in the volume at once.
    pub max_in_flight: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

/// A volume in memory. Optionally slow (every request sleeps) to show how many are in flight,
/// and optionally failing with a given error.
pub struct MemoryVolume {
    data: Mutex<Vec<u8>>,
    pub counters: Counters,
    delay: Option<Duration>,
    failing: Mutex<Option<IoError>>,
}

impl MemoryVolume {
    pub fn new(size: usize) -> Arc<MemoryVolume> {
        Self::with_delay(size, None)
    }

    pub fn with_delay(size: usize, delay: Option<Duration>) -> Arc<MemoryVolume> {
        Arc::new(MemoryVolume {
            data: Mutex::new(vec![0; size]),
            counters: Counters::default(),
            delay,
            failing: Mutex::new(None),
        })
    }

    /// Every request fails with `error` from now on (`None`: they succeed again).
    pub fn fail_with(&self, error: Option<IoError>) {
        *self.failing.lock().unwrap() = error;
    }

    /// A copy of the bytes at `offset`.
    pub fn snapshot(&self, offset: usize, len: usize) -> Vec<u8> {
        self.data.lock().unwrap()[offset..offset + len].to_vec()
    }

    /// The whole volume, e.g. to inspect a file system image.
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    async fn enter(&self) -> Result<InFlight<'_>, IoError> {
        if let Some(error) = self.failing.lock().unwrap().clone() {
            return Err(error);
        }
        let now = self.counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let guard = InFlight(&self.counters);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        Ok(guard)
    }
}

struct InFlight<'a>(&'a Counters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Volume for MemoryVolume {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, IoError> {
        let _in_flight = self.enter().await?;
        check_range(self.size(), offset, u64::from(len))?;
        self.counters.reads.fetch_add(1, Ordering::SeqCst);
        let data = self.data.lock().unwrap();
        Ok(Bytes::copy_from_slice(
            &data[offset as usize..offset as usize + len as usize],
        ))
    }

    async fn write(&self, offset: u64, payload: Bytes, fua: bool) -> Result<(), IoError> {
        let _in_flight = self.enter().await?;
        check_range(self.size(), offset, payload.len() as u64)?;
        self.counters.writes.fetch_add(1, Ordering::SeqCst);
        if fua {
            self.counters.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        let mut data = self.data.lock().unwrap();
        data[offset as usize..offset as usize + payload.len()].copy_from_slice(&payload);
        Ok(())
    }

    async fn flush(&self) -> Result<(), IoError> {
        let _in_flight = self.enter().await?;
        self.counters.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64) -> Result<(), IoError> {
        let _in_flight = self.enter().await?;
        check_range(self.size(), offset, len)?;
        self.counters.trims.fetch_add(1, Ordering::SeqCst);
        let mut data = self.data.lock().unwrap();
        data[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }

    async fn write_zeroes(&self, offset: u64, len: u64, _fua: bool) -> Result<(), IoError> {
        let _in_flight = self.enter().await?;
        check_range(self.size(), offset, len)?;
        self.counters.zeroes.fetch_add(1, Ordering::SeqCst);
        let mut data = self.data.lock().unwrap();
        data[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }

    fn opened(&self) {
        self.counters.opened.fetch_add(1, Ordering::SeqCst);
    }

    fn closed(&self) {
        self.counters.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A node's block devices in a temporary directory: the FUSE mount and the device root.
/// (Fields drop in order: the devices and their mount go before the directory is removed.)
pub struct Node {
    pub devices: BlockDevices<MemoryVolume>,
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn start(runtime: &tokio::runtime::Runtime) -> Result<Node> {
        let dir = tempfile::Builder::new()
            .prefix("ferrite-blockdev-test")
            .tempdir()?;
        let devices = BlockDevices::start(config(dir.path()), host(), runtime.handle().clone())?;
        Ok(Node { devices, dir })
    }
}

/// The FUSE mount at `<dir>/fuse`, the links under `<dir>/dev`, DRBD's links too.
pub fn config(dir: &Path) -> BlockDeviceConfig {
    let mut config = BlockDeviceConfig::new(dir.join("fuse"));
    // These tests are about the FUSE + loop way, also on a host with the nbd driver.
    config.frontend = BlockFrontend::FuseLoop;
    config.device_root = dir.join("dev");
    config.drbd_links = DrbdLinks::Always;
    config
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub fn host() -> Arc<dyn HostCommands> {
    Arc::new(SystemCommands::new())
}

/// Runs a host command through the project's runner (which logs it).
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let command = CommandLine::new(program).args(args.iter().copied());
    let output = SystemCommands::new()
        .run(&command)
        .with_context(|| format!("running {command}"))?;
    Ok(output.stdout)
}

/// A file system mounted for a test; unmounted when dropped, also when the test panics.
pub struct Mounted {
    pub dir: PathBuf,
    mounted: bool,
}

impl Mounted {
    pub fn new(device: &Path, dir: &Path) -> Result<Mounted> {
        std::fs::create_dir_all(dir)?;
        run(
            "mount",
            &[&device.to_string_lossy(), &dir.to_string_lossy()],
        )?;
        Ok(Mounted {
            dir: dir.to_path_buf(),
            mounted: true,
        })
    }

    pub fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            run("umount", &[&self.dir.to_string_lossy()])?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted && run("umount", &[&self.dir.to_string_lossy()]).is_err() {
            let _ = run("umount", &["--lazy", &self.dir.to_string_lossy()]);
        }
    }
}

/// Opens a block device or file for direct I/O.
pub fn open_direct(path: &Path, extra_flags: i32) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT | extra_flags)
        .open(path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))
}

/// `len` bytes derived from `seed`, different for every seed and offset.
pub fn pattern(seed: u64, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    buf
}

pub fn write_direct(file: &File, offset: u64, data: &AlignedBuf) -> Result<()> {
    file.write_all_at(data, offset)
        .with_context(|| format!("writing {} bytes at {offset}", data.len()))
}

pub fn read_direct(file: &File, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = AlignedBuf::zeroed(len);
    file.read_exact_at(&mut buf, offset)
        .with_context(|| format!("reading {len} bytes at {offset}"))?;
    Ok(buf.to_vec())
}
