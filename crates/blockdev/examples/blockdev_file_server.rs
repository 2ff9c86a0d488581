//! A file (or nothing) served as a block device through the FUSE + loop frontend, for
//! benchmarks: `scripts/bench-blockdev.sh` runs fio against the loop device and against the
//! raw file to see what the frontend costs.
//!
//! ```sh
//! blockdev_file_server --file /srv/bench.img --dir /run/bench   # prints /dev/loopN, runs until SIGINT/SIGTERM
//! blockdev_file_server --null 1073741824 --dir /run/bench       # a volume that stores nothing: the frontend alone
//! ```
//!
//! The file is read and written with O_DIRECT (`pread`/`pwrite` on tokio's blocking pool),
//! as the engine's local disk path would.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use ferrite_block::{AlignedBuf, IoError, Volume, check_range};
use ferrite_blockdev::{BlockDeviceConfig, BlockDevices, DrbdLinks};
use ferrite_storage::SystemCommands;
use ferrite_types::{ResourceName, VolumeNumber};

#[derive(Parser)]
struct Arguments {
    /// The backing file (its size is the volume's).
    #[arg(long, conflicts_with = "null")]
    file: Option<PathBuf>,
    /// A volume of this many bytes that stores nothing and reads zeroes.
    #[arg(long)]
    null: Option<u64>,
    /// A directory for the FUSE mount and the device links.
    #[arg(long)]
    dir: PathBuf,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Write the loop device's path here once it is ready.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// A file read and written with O_DIRECT.
struct FileVolume {
    file: Arc<File>,
    size: u64,
}

fn io_error(error: std::io::Error) -> IoError {
    match error.raw_os_error() {
        Some(libc::ENOSPC) => IoError::NoSpace(error.to_string()),
        _ => IoError::Io(error.to_string()),
    }
}

impl FileVolume {
    fn open(path: &PathBuf) -> Result<FileVolume> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata()?.len();
        Ok(FileVolume {
            file: Arc::new(file),
            size,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&File) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, IoError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || work(&file))
            .await
            .map_err(|e| IoError::Io(e.to_string()))?
            .map_err(io_error)
    }
}

impl Volume for FileVolume {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, IoError> {
        check_range(self.size, offset, u64::from(len))?;
        self.blocking(move |file| {
            let mut buf = AlignedBuf::zeroed(len as usize);
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from_owner(buf))
        })
        .await
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), IoError> {
        check_range(self.size, offset, data.len() as u64)?;
        self.blocking(move |file| {
            file.write_all_at(&data, offset)?;
            if fua {
                file.sync_data()?;
            }
            Ok(())
        })
        .await
    }

    async fn flush(&self) -> Result<(), IoError> {
        self.blocking(|file| file.sync_data()).await
    }

    async fn trim(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.write_zeroes(offset, len, false).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), IoError> {
        check_range(self.size, offset, len)?;
        self.blocking(move |file| {
            use std::os::fd::AsRawFd;
            let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
            // SAFETY: a plain syscall on an open descriptor.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, len as i64) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if fua {
                file.sync_data()?;
            }
            Ok(())
        })
        .await
    }
}

/// Stores nothing, reads zeroes.
struct NullVolume {
    size: u64,
}

impl Volume for NullVolume {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, IoError> {
        check_range(self.size, offset, u64::from(len))?;
        Ok(Bytes::from(vec![0; len as usize]))
    }

    async fn write(&self, offset: u64, data: Bytes, _fua: bool) -> Result<(), IoError> {
        check_range(self.size, offset, data.len() as u64)
    }

    async fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64) -> Result<(), IoError> {
        check_range(self.size, offset, len)
    }

    async fn write_zeroes(&self, offset: u64, len: u64, _fua: bool) -> Result<(), IoError> {
        check_range(self.size, offset, len)
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fuser=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let arguments = Arguments::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(arguments.workers)
        .enable_all()
        .build()?;
    match (&arguments.file, arguments.null) {
        (Some(path), _) => serve(&arguments, &runtime, Arc::new(FileVolume::open(path)?)),
        (None, Some(size)) => serve(&arguments, &runtime, Arc::new(NullVolume { size })),
        (None, None) => anyhow::bail!("give --file PATH or --null SIZE"),
    }
}

fn serve<V: Volume>(
    arguments: &Arguments,
    runtime: &tokio::runtime::Runtime,
    volume: Arc<V>,
) -> Result<()> {
    let mut config = BlockDeviceConfig::new(arguments.dir.join("fuse"));
    config.device_root = arguments.dir.join("dev");
    config.drbd_links = DrbdLinks::Never;
    let mut devices = BlockDevices::start(
        config,
        Arc::new(SystemCommands::new()),
        runtime.handle().clone(),
    )?;
    let resource = ResourceName::new("bench")?;
    let device = devices.add(&resource, VolumeNumber::from(0), volume)?;
    println!("{}", device.device().display());
    if let Some(ready) = &arguments.ready_file {
        std::fs::write(ready, device.device().to_string_lossy().as_bytes())?;
    }
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        anyhow::Ok(())
    })?;
    let errors = devices.shutdown();
    for error in &errors {
        eprintln!("{error}");
    }
    anyhow::ensure!(errors.is_empty(), "the block device was left behind");
    Ok(())
}
