//! The data I/O of one backing device through one io_uring: reads, writes (`RWF_DSYNC` for
//! FUA) and `fdatasync`, without a thread per request.
//!
//! Submissions are queued by the requests themselves (under a short lock) and handed to the
//! kernel by the ring's task once per burst: a frontend or peer connection that queues 32
//! writes from one socket read makes one `io_uring_enter`. Completions wake that task through an
//! eventfd on tokio's reactor; it completes every finished request at once. Compared with a
//! blocking-pool task per request this saves two thread wake-ups per I/O, which were most of
//! the engine's CPU on two cores.
//!
//! A small write that need not be durable, to a file opened without `O_DIRECT`, skips the
//! ring when nothing else is in flight on it: the caller copies it into the page cache
//! (`pwrite`) and has its outcome at once ([`INLINE_WRITE_BYTES`]). io_uring cannot write to
//! the page cache of an ext4 file or of a block device without possibly blocking, so it hands
//! every such write to one of its worker threads; at queue depth 1 that hand-off and the
//! completion's way back through the ring's task were the largest part of a replicated 4 KiB
//! write's latency. The cost of going inline is that the caller's thread waits for the copy; a
//! write goes inline only while the system's dirty memory is far below the point where the
//! kernel starts to throttle writers ([`crate::dirty`]), so that the thread is not paused. With
//! other operations in flight the ring's batching wins and is used.
//!
//! A read the page cache holds whole is copied by the caller (`preadv2` with `RWF_NOWAIT`)
//! without the ring: io_uring would do the same copy during submission, and then pass the
//! completion through the ring's task.
//!
//! A large read can instead be spliced into a pipe ([`Ring::read_piped`]): the pipe references
//! the page cache's pages and the NBD frontend splices them into its socket, so the daemon's
//! thread copies none of the bytes. The splice runs on one of io_uring's worker threads.
//!
//! What this module does not do: decide what to write (the activity log, bitmaps and ordering
//! are [`crate::backing`]'s), nor the metadata area's I/O (rare, synchronous, buffered).
//!
//! Each operation's buffer stays in the ring's table until the kernel is done with it, even
//! when the request that asked for it is dropped; the ring owns the data file, so its
//! descriptor stays open until every queued operation completed.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes};
use ferrite_block::{PIPE_BYTES, Pipe, PipedData};
use ferrite_nbd::{BufferPool, POOL_BYTES, PooledBuf};
use io_uring::{IoUring, opcode, squeue, types};
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, oneshot};
use tracing::{debug, error};

/// Submission queue entries: a burst of requests from every connection; a full queue is
/// submitted at once and filled again.
pub const RING_ENTRIES: u32 = 256;

/// The longest write that may skip the ring (see the module's header): a 4 KiB or 64 KiB
/// copy into the page cache costs microseconds; a larger one is worth the ring's hand-off.
pub const INLINE_WRITE_BYTES: usize = 64 << 10;

/// Whether a request enters the kernel at once (one `io_uring_enter` per request) or through
/// the ring's task (one per burst, a task switch later).
const SUBMIT_AT_ONCE: bool = true;

/// The engine's aligned buffers for data read from disk or received from peers: a fresh 1 MiB
/// allocation per request costs a page fault per 4 KiB (see `ferrite_nbd::BufferPool`).
pub fn buffers() -> &'static Arc<BufferPool> {
    static BUFFERS: std::sync::OnceLock<Arc<BufferPool>> = std::sync::OnceLock::new();
    BUFFERS.get_or_init(|| BufferPool::new(POOL_BYTES))
}

/// What the kernel reads from or writes into, kept until the operation completes.
enum Buffer {
    Read(PooledBuf),
    /// Only kept alive: the kernel reads from it.
    Write {
        _data: Bytes,
    },
    /// The pipe a splice fills, kept open until it completed.
    Pipe(Pipe),
    None,
}

/// Who learns the outcome: an awaiting request, or a function run by whoever reaps the
/// completion (no task switch: a peer's write is acknowledged from there).
enum Done {
    Wake(oneshot::Sender<Result<Completed, i32>>),
    Call(Box<dyn FnOnce(Result<Completed, i32>) + Send>),
}

/// What a write started with [`Ring::start_write`] runs when it completed: its outcome.
pub type WriteDone = Box<dyn FnOnce(io::Result<()>) + Send>;

struct Operation {
    buffer: Buffer,
    done: Done,
}

/// A finished operation: the bytes transferred and, for a read, the data (for a splice, the
/// pipe).
struct Completed {
    transferred: usize,
    data: Option<Bytes>,
    pipe: Option<Pipe>,
}

impl Operation {
    fn complete(self, result: i32) {
        let outcome = if result < 0 {
            Err(-result)
        } else {
            let transferred = result as usize;
            let (data, pipe) = match self.buffer {
                Buffer::Read(mut buffer) => {
                    // SAFETY: the kernel wrote `transferred` bytes at the start of the
                    // buffer's unwritten part (never more than the length it was given).
                    unsafe { buffer.advance_mut(transferred) };
                    (Some(buffer.freeze()), None)
                }
                Buffer::Pipe(pipe) => (None, Some(pipe)),
                Buffer::Write { .. } | Buffer::None => (None, None),
            };
            Ok(Completed {
                transferred,
                data,
                pipe,
            })
        };
        match self.done {
            Done::Wake(waiter) => {
                let _ = waiter.send(outcome);
            }
            Done::Call(call) => call(outcome),
        }
    }
}

struct State {
    ring: IoUring,
    operations: HashMap<u64, Operation>,
    next: u64,
}

impl Drop for State {
    fn drop(&mut self) {
        // The kernel may still use buffers of the table: wait for every operation.
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

struct Inner {
    // Dropped before `file`: waiting for the operations comes before closing the descriptor.
    state: Mutex<State>,
    eventfd: AsyncFd<OwnedFd>,
    submit_soon: Notify,
    stop: Notify,
    file: Arc<File>,
    /// The file goes through the page cache (opened without `O_DIRECT`): small writes may
    /// skip the ring.
    buffered: bool,
}

/// The ring of one backing device's data file. Dropping it ends its task; operations still
/// queued are waited for.
pub struct Ring {
    inner: Arc<Inner>,
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.inner.stop.notify_one();
    }
}

impl Ring {
    /// Sets up the ring for `file` and its task (inside a tokio runtime).
    pub fn start(file: Arc<File>) -> io::Result<Ring> {
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
        // SAFETY: F_GETFL only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        let buffered = flags >= 0 && flags & libc::O_DIRECT == 0;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                ring,
                operations: HashMap::new(),
                next: 0,
            }),
            eventfd,
            submit_soon: Notify::new(),
            stop: Notify::new(),
            file,
            buffered,
        });
        tokio::spawn(run(inner.clone()));
        Ok(Ring { inner })
    }

    /// Reads `length` bytes at `offset` into an aligned buffer of [`buffers`].
    pub async fn read(&self, offset: u64, length: usize) -> io::Result<Bytes> {
        let mut buffer = buffers().take(length);
        if self.inner.read_cached(offset, length, &mut buffer) {
            return Ok(buffer.freeze());
        }
        let target = buffer.chunk_mut().as_mut_ptr();
        let entry = opcode::Read::new(self.fd(), target, length as u32)
            .offset(offset)
            .build();
        let completed = self.inner.queue(entry, Buffer::Read(buffer)).await?;
        match completed.data {
            Some(data) if data.len() == length => Ok(data),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read {} of {length} bytes at {offset}",
                    completed.transferred
                ),
            )),
        }
    }

    /// Splices `length` bytes at `offset` (at most [`PIPE_BYTES`]) into a pipe: the pipe then
    /// references the page cache's pages, no byte is copied. `None` when the file bypasses the
    /// page cache (`O_DIRECT`: its cached pages may be stale) or no pipe can be had.
    pub async fn read_piped(&self, offset: u64, length: usize) -> io::Result<Option<PipedData>> {
        if !self.inner.buffered || length > PIPE_BYTES {
            return Ok(None);
        }
        let mut pipe = match Pipe::take() {
            Ok(pipe) => pipe,
            Err(error) => {
                debug!(%error, "no pipe for a read; it is copied");
                return Ok(None);
            }
        };
        let mut filled = 0;
        while filled < length {
            // io_uring runs a splice from a file on one of its worker threads, so a range that
            // is not cached is read from the disk there, never on the caller's thread.
            let entry = opcode::Splice::new(
                self.fd(),
                (offset + filled as u64) as i64,
                types::Fd(pipe.write_fd()),
                -1,
                (length - filled) as u32,
            )
            .build();
            let completed = self.inner.queue(entry, Buffer::Pipe(pipe)).await?;
            pipe = completed.pipe.expect("a splice completes with its pipe");
            if completed.transferred == 0 {
                // Past the end of the file; the pipe, not empty, is dropped.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("spliced {filled} of {length} bytes at {offset}"),
                ));
            }
            filled += completed.transferred;
        }
        Ok(Some(PipedData::new(pipe, length)))
    }

    /// Writes all of `data` (4 KiB-aligned in memory) at `offset`; `durable`: with
    /// `RWF_DSYNC`, on stable storage when it completes.
    pub async fn write(&self, mut offset: u64, mut data: Bytes, durable: bool) -> io::Result<()> {
        if let Some(outcome) = self.inner.write_inline(offset, &data, durable) {
            return outcome;
        }
        while !data.is_empty() {
            let entry = opcode::Write::new(self.fd(), data.as_ptr(), data.len() as u32)
                .offset(offset)
                .rw_flags(if durable { libc::RWF_DSYNC } else { 0 })
                .build();
            let completed = self
                .inner
                .queue(
                    entry,
                    Buffer::Write {
                        _data: data.clone(),
                    },
                )
                .await?;
            if completed.transferred == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            // A short write (rare with O_DIRECT: a full disk) goes on with the rest, which
            // then fails with the reason.
            let done = completed.transferred.min(data.len());
            offset += done as u64;
            data = data.slice(done..);
        }
        Ok(())
    }

    /// Starts writing all of `data` (4 KiB-aligned in memory) at `offset` (`durable`: with
    /// `RWF_DSYNC`) and returns; `then` gets the outcome when the kernel completed it, on the
    /// thread that reaps completions. A short write is reported as an error, not continued.
    pub fn start_write(&self, offset: u64, data: Bytes, durable: bool, then: WriteDone) {
        if let Some(outcome) = self.inner.write_inline(offset, &data, durable) {
            return then(outcome);
        }
        let length = data.len();
        let entry = opcode::Write::new(self.fd(), data.as_ptr(), length as u32)
            .offset(offset)
            .rw_flags(if durable { libc::RWF_DSYNC } else { 0 })
            .build();
        let done = Done::Call(Box::new(move |outcome: Result<Completed, i32>| {
            then(match outcome {
                Ok(completed) if completed.transferred == length => Ok(()),
                Ok(completed) => Err(io::Error::other(format!(
                    "wrote {} of {length} bytes at {offset}",
                    completed.transferred
                ))),
                Err(errno) => Err(io::Error::from_raw_os_error(errno)),
            })
        }));
        if let Err((error, Done::Call(then))) =
            self.inner.push(entry, Buffer::Write { _data: data }, done)
        {
            then(Err(error.raw_os_error().unwrap_or(libc::EIO)));
        }
    }

    /// `fdatasync` of the file.
    pub async fn sync(&self) -> io::Result<()> {
        let entry = opcode::Fsync::new(self.fd())
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        self.inner.queue(entry, Buffer::None).await.map(|_| ())
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.inner.file.as_raw_fd())
    }
}

impl Inner {
    /// Writes `data` at `offset` with `pwrite` if it may skip the ring (see the module's
    /// header); `None` when it goes through the ring.
    fn write_inline(&self, offset: u64, data: &[u8], durable: bool) -> Option<io::Result<()>> {
        if durable || !self.buffered || data.len() > INLINE_WRITE_BYTES {
            return None;
        }
        if !self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .operations
            .is_empty()
        {
            return None;
        }
        if !crate::dirty::far_from_throttling() {
            return None;
        }
        let (mut offset, mut rest) = (offset, data);
        while !rest.is_empty() {
            let Ok(at) = libc::off_t::try_from(offset) else {
                return Some(Err(io::Error::from_raw_os_error(libc::EINVAL)));
            };
            // SAFETY: writes from `rest`, which lives through the call, to the ring's file.
            let written = unsafe {
                libc::pwrite(self.file.as_raw_fd(), rest.as_ptr().cast(), rest.len(), at)
            };
            match written {
                n if n > 0 => {
                    offset += n as u64;
                    rest = &rest[n as usize..];
                }
                0 => return Some(Err(io::ErrorKind::WriteZero.into())),
                _ => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Some(Err(error));
                    }
                }
            }
        }
        Some(Ok(()))
    }

    /// Reads `length` bytes at `offset` into `buffer` if the page cache holds all of them
    /// (`preadv2` with `RWF_NOWAIT`, which never waits for the disk): true when it did. Else
    /// the read goes through the ring, and `buffer` is left empty.
    fn read_cached(&self, offset: u64, length: usize, buffer: &mut PooledBuf) -> bool {
        if !self.buffered {
            return false;
        }
        let Ok(at) = libc::off_t::try_from(offset) else {
            return false;
        };
        let target = buffer.chunk_mut();
        if target.len() < length {
            return false;
        }
        let iov = libc::iovec {
            iov_base: target.as_mut_ptr().cast(),
            iov_len: length,
        };
        // SAFETY: the kernel writes at most `length` bytes into the buffer's unwritten part,
        // which has room for them and lives through the call.
        let read = unsafe { libc::preadv2(self.file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
        if read != length as isize {
            // Not all cached (or an error, which the ring's read meets again and reports).
            return false;
        }
        // SAFETY: the kernel wrote `length` bytes at the start of the unwritten part.
        unsafe { buffer.advance_mut(length) };
        true
    }

    /// Queues one operation and waits for it; its buffer must be the one `entry` points into.
    async fn queue(&self, entry: squeue::Entry, buffer: Buffer) -> io::Result<Completed> {
        let (done, outcome) = oneshot::channel();
        if let Err((error, _)) = self.push(entry, buffer, Done::Wake(done)) {
            return Err(error);
        }
        match outcome.await {
            Ok(Ok(completed)) => Ok(completed),
            Ok(Err(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Err(_) => Err(io::Error::other("the io_uring ended")),
        }
    }

    /// Queues one operation and submits it (or has the ring's task submit it, together with
    /// whatever else was queued meanwhile). Gives `done` back when it could not be queued.
    fn push(
        &self,
        entry: squeue::Entry,
        buffer: Buffer,
        done: Done,
    ) -> Result<(), (io::Error, Done)> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = state.next;
        state.next += 1;
        state.operations.insert(id, Operation { buffer, done });
        let entry = entry.user_data(id);
        loop {
            // SAFETY: the entry's buffer is owned by the table until its completion, and
            // the descriptor by `self.file`, which outlives the table.
            if unsafe { state.ring.submission().push(&entry) }.is_ok() {
                break;
            }
            if let Err(error) = state.ring.submit() {
                let operation = state.operations.remove(&id).expect("just inserted");
                return Err((error, operation.done));
            }
        }
        if SUBMIT_AT_ONCE {
            if let Err(error) = state.ring.submit() {
                debug!(%error, "io_uring submit; the ring's task tries again");
                drop(state);
                self.submit_soon.notify_one();
            }
        } else {
            drop(state);
            self.submit_soon.notify_one();
        }
        Ok(())
    }

    /// Completes every finished operation.
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

    fn submit(&self) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = state.ring.submit() {
            error!(%error, "io_uring submit");
        }
    }
}

/// The ring's task: submits what the requests queued (once per burst: the task that queued it
/// runs to its next wait first) and reaps completions, until the ring is dropped.
async fn run(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            biased;
            ready = inner.eventfd.readable() => {
                let mut ready = match ready {
                    Ok(ready) => ready,
                    Err(error) => {
                        error!(%error, "the io_uring eventfd failed");
                        return;
                    }
                };
                ready.clear_ready();
                let mut counter = [0u8; 8];
                // SAFETY: reads 8 bytes into an 8-byte array; the eventfd is non-blocking, so
                // it returns -1 (EAGAIN) once drained.
                while unsafe {
                    libc::read(inner.eventfd.as_raw_fd(), counter.as_mut_ptr().cast(), 8)
                } == 8 {}
                inner.reap();
            }
            _ = inner.submit_soon.notified() => inner.submit(),
            _ = inner.stop.notified() => {
                inner.submit();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};

    use super::*;

    /// A new file of `bytes` in `dir`, opened with `flags` (`O_DIRECT` or none).
    fn new_file(dir: &tempfile::TempDir, name: &str, bytes: u64, flags: i32) -> Arc<File> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(flags)
            .open(dir.path().join(name))
            .unwrap();
        file.set_len(bytes).unwrap();
        Arc::new(file)
    }

    fn direct_file(dir: &tempfile::TempDir, bytes: u64) -> Arc<File> {
        new_file(dir, "backing", bytes, libc::O_DIRECT)
    }

    fn pattern(seed: u8, len: usize) -> Bytes {
        let mut buffer = buffers().take(len);
        buffer.put_bytes(seed, len);
        buffer.freeze()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_reads_and_syncs_go_through_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let file = direct_file(&dir, 1 << 20);
        let ring = Ring::start(file.clone()).unwrap();
        ring.write(4096, pattern(7, 8192), false).await.unwrap();
        ring.write(65536, pattern(9, 4096), true).await.unwrap();
        ring.sync().await.unwrap();
        assert!(ring.read(4096, 8192).await.unwrap().iter().all(|b| *b == 7));
        assert!(
            ring.read(65536, 4096)
                .await
                .unwrap()
                .iter()
                .all(|b| *b == 9)
        );
        // What the ring wrote is on the file for anyone who reads it.
        let mut seen = ferrite_block::AlignedBuf::zeroed(4096);
        file.read_exact_at(&mut seen, 65536).unwrap();
        assert!(seen.iter().all(|b| *b == 9));
        // A read past the end is short: an error, not a short buffer.
        assert!(ring.read((1 << 20) - 4096, 8192).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_buffered_file_takes_small_writes_inline_and_large_or_durable_ones_through_the_ring()
    {
        let dir = tempfile::tempdir().unwrap();
        let file = new_file(&dir, "buffered", 8 << 20, 0);
        let ring = Arc::new(Ring::start(file.clone()).unwrap());
        assert!(ring.inner.buffered);
        // Small ones (inline when the ring is idle), one just past the inline limit, durable
        // ones, and many at once (some meeting others in flight), each at its own place.
        let sizes = [4096, INLINE_WRITE_BYTES, INLINE_WRITE_BYTES + 4096, 1 << 20];
        let mut writes = Vec::new();
        for (n, size) in sizes.iter().copied().cycle().take(24).enumerate() {
            let ring = ring.clone();
            writes.push(tokio::spawn(async move {
                let offset = (n as u64) * (256 << 10) % (7 << 20);
                let seed = n as u8 + 1;
                let durable = n % 5 == 0;
                ring.write(offset, pattern(seed, size.min(256 << 10)), durable)
                    .await
                    .unwrap();
                (offset, seed, size.min(256 << 10))
            }));
        }
        let mut done = Vec::new();
        for write in writes {
            done.push(write.await.unwrap());
        }
        let (then, outcome) = oneshot::channel();
        ring.start_write(
            7 << 20,
            pattern(99, 4096),
            false,
            Box::new(move |result| {
                let _ = then.send(result);
            }),
        );
        outcome.await.unwrap().unwrap();
        done.push((7 << 20, 99, 4096));
        for (offset, seed, length) in done {
            // Through the ring (the page cache holds it: the inline read) and from the file.
            let read = ring.read(offset, length).await.unwrap();
            assert!(read.iter().all(|b| *b == seed), "at {offset}");
            let mut seen = vec![0u8; length];
            file.read_exact_at(&mut seen, offset).unwrap();
            assert!(seen.iter().all(|b| *b == seed), "at {offset} in the file");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_buffered_file_reads_into_pipes_and_a_direct_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = new_file(&dir, "buffered", 0, 0);
        let contents: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 241) as u8).collect();
        file.write_all_at(&contents, 0).unwrap();
        let ring = Arc::new(Ring::start(file).unwrap());
        // Cached and not: the second half is dropped from the page cache first, so its splice
        // reads the disk (on io_uring's worker).
        // SAFETY: posix_fadvise only gives the kernel advice about the open file.
        let advice = unsafe {
            libc::posix_fadvise(
                ring.inner.file.as_raw_fd(),
                2 << 20,
                2 << 20,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        assert_eq!(advice, 0);
        let mut reads = Vec::new();
        for (offset, length) in [(0, PIPE_BYTES), (4096, 128 << 10), (3 << 20, PIPE_BYTES)] {
            let ring = ring.clone();
            reads.push(tokio::spawn(async move {
                let piped = ring.read_piped(offset, length).await.unwrap().unwrap();
                (offset, piped.read_to_vec().unwrap())
            }));
        }
        for read in reads {
            let (offset, data) = read.await.unwrap();
            let at = offset as usize;
            assert!(data == contents[at..at + data.len()], "at {offset}");
        }
        // Past the end: an error, and no pipe with a part of the data is reused.
        assert!(ring.read_piped((4 << 20) - 4096, 8192).await.is_err());
        let piped = ring.read_piped(8192, 4096).await.unwrap().unwrap();
        assert!(piped.read_to_vec().unwrap() == contents[8192..12288]);
        // Longer than a pipe, or a file that bypasses the page cache: no pipe.
        assert!(
            ring.read_piped(0, PIPE_BYTES + 4096)
                .await
                .unwrap()
                .is_none()
        );
        let direct = Ring::start(direct_file(&dir, 1 << 20)).unwrap();
        assert!(direct.read_piped(0, 1 << 20).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_started_write_reports_from_its_completion_and_dropped_requests_finish() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Ring::start(direct_file(&dir, 1 << 20)).unwrap();
        let (tx, rx) = oneshot::channel();
        ring.start_write(
            0,
            pattern(3, 4096),
            true,
            Box::new(move |result| {
                let _ = tx.send(result.is_ok());
            }),
        );
        assert!(rx.await.unwrap());
        // A misaligned O_DIRECT write fails, and says so through the same path.
        let (tx, rx) = oneshot::channel();
        ring.start_write(
            100,
            pattern(3, 4096),
            false,
            Box::new(move |result| {
                let _ = tx.send(result.is_ok());
            }),
        );
        assert!(!rx.await.unwrap());
        // Requests dropped while in flight keep their buffers until the kernel is done; the
        // ring then serves on, and dropping it waits for what is left.
        for i in 0..64u64 {
            let write = ring.write(i * 4096, pattern(5, 4096), false);
            drop(tokio::time::timeout(std::time::Duration::ZERO, write).await);
        }
        assert!(ring.read(0, 4096).await.is_ok());
        drop(ring);
    }
}
