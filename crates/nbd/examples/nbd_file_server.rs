//! Serves one file over NBD through ferrite-nbd, so the frontend alone can be measured against
//! `nbdkit file … cache=none` with the same client in the same run:
//!
//! ```text
//! cargo build --release -p ferrite-nbd --example nbd_file_server
//! target/release/examples/nbd_file_server --file /var/tmp/bench.img --size 4G --socket /tmp/nbd.sock &
//! /work/shared/bench/ceph-mini.sh bench nbd=/tmp/nbd.sock
//! /work/shared/bench/ceph-mini.sh bench nbdkit-file=/var/tmp/bench.img
//! ```
//!
//! The file is opened twice: with `O_DIRECT` for requests aligned to 4 KiB (no page cache
//! between the client and the disk), and buffered for the rare unaligned request. Aligned
//! reads and flushes go through one io_uring (`--io uring`, the default: no thread hop per
//! request, completions reaped by one task woken through an eventfd, the submissions of a burst
//! batched into one system call) or are `pread`/`fdatasync` on tokio's blocking pool
//! (`--io threads`). Writes are `pwrite` on the blocking pool either way (see
//! `FileVolume::write` for why), with `fdatasync` for FUA; TRIM punches a hole and
//! WRITE_ZEROES zeroes the range in place, also on the pool. `--null` does no I/O at
//! all, to measure the frontend alone against `nbdkit null`.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::{BufMut, Bytes};
use clap::Parser;
use ferrite_block::{ALIGNMENT, IoError, Volume};
use ferrite_nbd::{BufferPool, ExportConfig, ExportName, Server, ServerConfig};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// Serve a file over NBD (a benchmark of the ferrite-nbd frontend).
#[derive(Debug, Parser)]
struct Args {
    /// The file to serve.
    #[arg(long)]
    file: PathBuf,
    /// Create or resize the file to this size first (bytes, or with K, M, G, T).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// The unix socket to listen on.
    #[arg(long)]
    socket: PathBuf,
    /// Also listen on this TCP address (e.g. 127.0.0.1:10809).
    #[arg(long)]
    tcp: Option<String>,
    /// The export's name; the default export (empty name) unless set.
    #[arg(long, default_value = "")]
    export: String,
    #[arg(long)]
    read_only: bool,
    /// Use the page cache for every request (no O_DIRECT).
    #[arg(long)]
    buffered: bool,
    /// Threads running the request loops.
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
    /// Threads doing pread/pwrite at most (measured here at queue depth 32: 4 threads gave
    /// the most IOPS, 32 about 40 % fewer, at the same CPU).
    #[arg(long, default_value_t = 4)]
    io_threads: usize,
    /// How aligned requests reach the file.
    #[arg(long, value_enum, default_value_t = IoPath::Uring)]
    io: IoPath,
    /// Do no I/O at all: reads return zeroes, writes are dropped (the file only gives the
    /// size). Measures the frontend alone, against `nbdkit null SIZE`.
    #[arg(long)]
    null: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IoPath {
    /// One io_uring for the file.
    Uring,
    /// pread/pwrite on tokio's blocking pool.
    Threads,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 30),
        Some('T' | 't') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let number: u64 = digits.parse().map_err(|e| format!("{text:?}: {e}"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The two descriptors of the file.
struct Files {
    direct: File,
    buffered: File,
    size: u64,
}

/// A volume backed by a file.
struct FileVolume {
    files: Arc<Files>,
    /// Aligned reads and flushes go here when set.
    ring: Option<Arc<uring::Ring>>,
    /// Read buffers come from the server's pool.
    pool: Arc<BufferPool>,
    /// No I/O (`--null`).
    null: bool,
}

fn io_error(what: &str, offset: u64, error: std::io::Error) -> IoError {
    let message = format!("{what} at offset {offset}: {error}");
    match error.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => IoError::NoSpace(message),
        Some(libc::EINVAL) => IoError::Invalid(message),
        Some(libc::EROFS | libc::EPERM | libc::EACCES) => IoError::ReadOnly(message),
        _ => IoError::Io(message),
    }
}

fn errno_error(what: &str, offset: u64, errno: i32) -> IoError {
    io_error(what, offset, std::io::Error::from_raw_os_error(errno))
}

fn aligned(offset: u64, length: usize, address: usize) -> bool {
    offset.is_multiple_of(ALIGNMENT as u64)
        && length.is_multiple_of(ALIGNMENT)
        && address.is_multiple_of(ALIGNMENT)
}

impl Files {
    fn read(&self, pool: &Arc<BufferPool>, offset: u64, length: usize) -> Result<Bytes, IoError> {
        if !aligned(offset, length, 0) {
            let mut data = vec![0u8; length];
            self.buffered
                .read_exact_at(&mut data, offset)
                .map_err(|e| io_error("read", offset, e))?;
            return Ok(Bytes::from(data));
        }
        let mut buffer = pool.take(length);
        while buffer.len() < length {
            let done = buffer.len();
            let chunk = buffer.chunk_mut();
            // SAFETY: pread writes at most `length - done` bytes into the buffer's unwritten
            // tail, which has at least that much room; `advance_mut` then counts only what
            // it wrote.
            let read = unsafe {
                libc::pread(
                    self.direct.as_raw_fd(),
                    chunk.as_mut_ptr().cast(),
                    length - done,
                    (offset + done as u64) as libc::off_t,
                )
            };
            match read {
                0 => return Err(IoError::Io(format!("end of file at offset {offset}"))),
                read if read < 0 => {
                    let error = std::io::Error::last_os_error();
                    if error.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(io_error("read", offset, error));
                }
                // SAFETY: see above.
                read => unsafe { buffer.advance_mut(read as usize) },
            }
        }
        Ok(buffer.freeze())
    }

    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), IoError> {
        let file = if aligned(offset, data.len(), data.as_ptr() as usize) {
            &self.direct
        } else {
            &self.buffered
        };
        file.write_all_at(data, offset)
            .map_err(|e| io_error("write", offset, e))?;
        if fua {
            file.sync_data()
                .map_err(|e| io_error("fdatasync", offset, e))?;
        }
        Ok(())
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, length: u64) -> std::io::Result<()> {
        // SAFETY: a plain system call on a descriptor this struct owns.
        let result = unsafe {
            libc::fallocate(
                self.direct.as_raw_fd(),
                mode | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                length as libc::off_t,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn write_zeroes(&self, offset: u64, length: u64, fua: bool) -> Result<(), IoError> {
        if let Err(error) = self.fallocate(libc::FALLOC_FL_ZERO_RANGE, offset, length) {
            if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(io_error("zero range", offset, error));
            }
            self.fallocate(libc::FALLOC_FL_PUNCH_HOLE, offset, length)
                .map_err(|e| io_error("punch hole", offset, e))?;
        }
        if fua {
            self.direct
                .sync_data()
                .map_err(|e| io_error("fdatasync", offset, e))?;
        }
        Ok(())
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IoError> + Send + 'static,
) -> Result<T, IoError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| IoError::Io(format!("the I/O thread failed: {join}")))?
}

/// Zeroes for the null backend's reads (one request's worth at most).
static ZEROES: [u8; ferrite_block::MAX_REQUEST_BYTES as usize] =
    [0; ferrite_block::MAX_REQUEST_BYTES as usize];

impl Volume for FileVolume {
    fn size(&self) -> u64 {
        self.files.size
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, IoError> {
        if self.null {
            return Ok(Bytes::from_static(&ZEROES[..len as usize]));
        }
        if let Some(ring) = self
            .ring
            .as_ref()
            .filter(|_| aligned(offset, len as usize, 0))
        {
            let fd = self.files.direct.as_raw_fd();
            return ring
                .read(&self.pool, fd, offset, len as usize)
                .await
                .map_err(|errno| errno_error("read", offset, errno));
        }
        let files = Arc::clone(&self.files);
        let pool = Arc::clone(&self.pool);
        blocking(move || files.read(&pool, offset, len as usize)).await
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), IoError> {
        if self.null {
            return Ok(());
        }
        // Writes stay on the blocking pool even with io_uring: ext4 must update the file's
        // mtime on most writes, which it cannot do without blocking, so io_uring hands such
        // writes to its own workers, one at a time per file (measured: half the IOPS of
        // pwrite on the pool at queue depth 32).
        let files = Arc::clone(&self.files);
        blocking(move || files.write(offset, &data, fua)).await
    }

    async fn flush(&self) -> Result<(), IoError> {
        if self.null {
            return Ok(());
        }
        if let Some(ring) = &self.ring {
            let fd = self.files.direct.as_raw_fd();
            return ring
                .fdatasync(fd)
                .await
                .map_err(|errno| errno_error("fdatasync", 0, errno));
        }
        let files = Arc::clone(&self.files);
        blocking(move || {
            files
                .direct
                .sync_data()
                .map_err(|e| io_error("fdatasync", 0, e))
        })
        .await
    }

    async fn trim(&self, offset: u64, len: u64) -> Result<(), IoError> {
        if self.null {
            return Ok(());
        }
        let files = Arc::clone(&self.files);
        blocking(move || {
            files
                .fallocate(libc::FALLOC_FL_PUNCH_HOLE, offset, len)
                .map_err(|e| io_error("punch hole", offset, e))
        })
        .await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), IoError> {
        if self.null {
            return Ok(());
        }
        let files = Arc::clone(&self.files);
        blocking(move || files.write_zeroes(offset, len, fua)).await
    }
}

fn open(args: &Args) -> anyhow::Result<Files> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(!args.read_only)
        .create(args.size.is_some() && !args.read_only);
    let buffered = options
        .open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    if let Some(size) = args.size {
        buffered
            .set_len(size)
            .with_context(|| format!("resizing {} to {size} bytes", args.file.display()))?;
    }
    let size = buffered.metadata()?.len();
    let direct = if args.buffered {
        buffered.try_clone()?
    } else {
        let mut options = OpenOptions::new();
        options
            .read(true)
            .write(!args.read_only)
            .custom_flags(libc::O_DIRECT);
        match options.open(&args.file) {
            Ok(direct) => direct,
            Err(error) => {
                warn!(%error, "O_DIRECT is not available here; serving through the page cache");
                buffered.try_clone()?
            }
        }
    };
    Ok(Files {
        direct,
        buffered,
        size,
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let files = open(&args)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads)
        .max_blocking_threads(args.io_threads)
        .enable_all()
        .build()?
        .block_on(serve(args, files))
}

async fn serve(args: Args, files: Files) -> anyhow::Result<()> {
    let server = Server::new(ServerConfig::default());
    let size = files.size;
    let ring = match (args.io, args.null || args.buffered) {
        (IoPath::Uring, false) => match uring::Ring::start() {
            Ok(ring) => Some(ring),
            Err(error) => {
                warn!(%error, "io_uring is not available here; using the blocking pool");
                None
            }
        },
        _ => None,
    };
    server.add_export(
        ExportConfig::new(ExportName::new(args.export.clone())?)
            .read_only(args.read_only)
            .description(format!("{}", args.file.display())),
        Arc::new(FileVolume {
            files: Arc::new(files),
            ring,
            pool: server.buffer_pool(),
            null: args.null,
        }),
    )?;
    let _ = std::fs::remove_file(&args.socket);
    let unix = UnixListener::bind(&args.socket)
        .with_context(|| format!("binding {}", args.socket.display()))?;
    info!(file = %args.file.display(), size, socket = %args.socket.display(), io = ?args.io, null = args.null, "serving");
    let serving = server.clone();
    let mut listeners = vec![tokio::spawn(async move { serving.serve_unix(unix).await })];
    if let Some(address) = &args.tcp {
        let tcp = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        info!(%address, "serving over TCP");
        let serving = server.clone();
        listeners.push(tokio::spawn(async move { serving.serve_tcp(tcp).await }));
    }

    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    info!("stopping");
    server.shutdown();
    server.closed().await;
    for listener in listeners {
        let _ = listener.await;
    }
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}

/// One io_uring shared by every request of the file: submissions from the request loops (under
/// a short lock), completions reaped by one task woken through an eventfd. Each operation's
/// buffer lives in the ring's table until the kernel is done with it, even when the request
/// that asked for it is dropped.
mod uring {
    use std::collections::HashMap;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::{Arc, Mutex};

    use bytes::{BufMut, Bytes};
    use ferrite_nbd::{BufferPool, PooledBuf};
    use io_uring::{IoUring, opcode, squeue, types};
    use tokio::io::unix::AsyncFd;
    use tokio::sync::{Notify, oneshot};
    use tracing::error;

    /// Submission queue entries: one burst of requests from every connection; a full queue is
    /// submitted and filled again.
    const RING_ENTRIES: u32 = 512;

    /// What the kernel writes into or reads from, kept until the operation completes.
    enum Buffer {
        Read(PooledBuf),
        None,
    }

    struct Operation {
        buffer: Buffer,
        length: usize,
        done: oneshot::Sender<Result<Option<Bytes>, i32>>,
    }

    impl Operation {
        fn complete(self, result: i32) {
            let outcome = match (self.buffer, result) {
                (_, result) if result < 0 => Err(-result),
                (Buffer::Read(mut buffer), read) if read as usize == self.length => {
                    // SAFETY: the kernel wrote `read` bytes at the start of the buffer's
                    // unwritten part.
                    unsafe { buffer.advance_mut(read as usize) };
                    Ok(Some(buffer.freeze()))
                }
                (Buffer::None, done) if done as usize == self.length => Ok(None),
                // A short transfer on a file of the right size: report it as an I/O error.
                _ => Err(libc::EIO),
            };
            let _ = self.done.send(outcome);
        }
    }

    struct State {
        ring: IoUring,
        operations: HashMap<u64, Operation>,
        next: u64,
    }

    impl Drop for State {
        fn drop(&mut self) {
            // The kernel may still write into buffers of the table: wait for all of them.
            while !self.operations.is_empty() {
                if let Err(error) = self.ring.submit_and_wait(1) {
                    error!(%error, "waiting for io_uring completions");
                    std::mem::forget(std::mem::take(&mut self.operations));
                    return;
                }
                for completion in self.ring.completion() {
                    if let Some(operation) = self.operations.remove(&completion.user_data()) {
                        operation.complete(completion.result());
                    }
                }
            }
        }
    }

    pub struct Ring {
        state: Mutex<State>,
        eventfd: AsyncFd<OwnedFd>,
        submit_soon: Notify,
    }

    impl Ring {
        /// Sets up the ring and its reaper task (inside a tokio runtime).
        pub fn start() -> io::Result<Arc<Ring>> {
            let ring = IoUring::new(RING_ENTRIES)?;
            // SAFETY: eventfd returns a new descriptor or -1.
            let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh descriptor nobody else owns.
            let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
            ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
            // SAFETY: the OwnedFd keeps the descriptor open, and the same, for as long as the
            // AsyncFd owns it.
            let eventfd =
                unsafe { AsyncFd::register_with_interest(eventfd, tokio::io::Interest::READABLE) }
                    .map_err(|error| error.into_parts().1)?;
            let ring = Arc::new(Ring {
                state: Mutex::new(State {
                    ring,
                    operations: HashMap::new(),
                    next: 0,
                }),
                eventfd,
                submit_soon: Notify::new(),
            });
            tokio::spawn(Arc::clone(&ring).run());
            Ok(ring)
        }

        /// Submits what the request loops queued (once per burst: the loop that queued it runs
        /// to its next wait first) and reaps completions.
        async fn run(self: Arc<Ring>) {
            loop {
                tokio::select! {
                    biased;
                    ready = self.eventfd.readable() => {
                        let mut ready = match ready {
                            Ok(ready) => ready,
                            Err(error) => {
                                error!(%error, "the io_uring eventfd failed");
                                return;
                            }
                        };
                        ready.clear_ready();
                        let mut counter = [0u8; 8];
                        // SAFETY: reads 8 bytes into an 8-byte array; the eventfd is
                        // non-blocking, so it returns -1 (EAGAIN) once drained.
                        while unsafe {
                            libc::read(self.eventfd.as_raw_fd(), counter.as_mut_ptr().cast(), 8)
                        } == 8 {}
                        self.reap();
                    }
                    _ = self.submit_soon.notified() => {
                        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        if let Err(error) = state.ring.submit() {
                            error!(%error, "io_uring submit");
                        }
                    }
                }
            }
        }

        fn reap(&self) {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let State {
                ring, operations, ..
            } = &mut *state;
            let mut done = Vec::new();
            for completion in ring.completion() {
                if let Some(operation) = operations.remove(&completion.user_data()) {
                    done.push((operation, completion.result()));
                }
            }
            drop(state);
            for (operation, result) in done {
                operation.complete(result);
            }
        }

        /// Queues one operation; its buffer must be the one `entry` points into.
        async fn queue(
            &self,
            entry: squeue::Entry,
            buffer: Buffer,
            length: usize,
        ) -> Result<Option<Bytes>, i32> {
            let (done, outcome) = oneshot::channel();
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let id = state.next;
                state.next += 1;
                state.operations.insert(
                    id,
                    Operation {
                        buffer,
                        length,
                        done,
                    },
                );
                let entry = entry.user_data(id);
                loop {
                    // SAFETY: the entry's buffer is owned by the table until its completion.
                    if unsafe { state.ring.submission().push(&entry) }.is_ok() {
                        break;
                    }
                    if let Err(error) = state.ring.submit() {
                        state.operations.remove(&id);
                        return Err(error.raw_os_error().unwrap_or(libc::EIO));
                    }
                }
            }
            self.submit_soon.notify_one();
            outcome.await.unwrap_or(Err(libc::EIO))
        }

        pub async fn read(
            &self,
            pool: &Arc<BufferPool>,
            fd: RawFd,
            offset: u64,
            length: usize,
        ) -> Result<Bytes, i32> {
            let mut buffer = pool.take(length);
            let target = buffer.chunk_mut().as_mut_ptr();
            let entry = opcode::Read::new(types::Fd(fd), target, length as u32)
                .offset(offset)
                .build();
            let data = self.queue(entry, Buffer::Read(buffer), length).await?;
            Ok(data.unwrap_or_default())
        }

        pub async fn fdatasync(&self, fd: RawFd) -> Result<(), i32> {
            let entry = opcode::Fsync::new(types::Fd(fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build();
            self.queue(entry, Buffer::None, 0).await.map(|_| ())
        }
    }
}
