//! Read data held in a pipe by reference to the page cache, copied out only as it is sent.
//!
//! A large read served from the page cache was copied three times: page cache to the engine's
//! buffer when the read ran, buffer to the socket when its reply was sent, socket to the
//! client. At queue depth 16 the replies of a burst of reads were sent after all of them were
//! read, so by the time the client copied a reply its bytes had left the CPU's caches, and the
//! client's one receiving thread ran at memory speed. When the volume's data is in a file's page
//! cache, the engine instead splices the range into a pipe when the read runs (the pipe then
//! references the cached pages; no byte moves), and the frontend copies it out through a small
//! buffer just before writing it to its socket ([`PipedData::read_into`]), so the client
//! receives bytes that are still in the caches. Splicing the pipe on into the socket copies
//! nothing in this process, but leaves the client copying cold pages, which measured slower
//! (docs/benchmarks.md, "Sequential reads").
//!
//! Pages referenced from a pipe are the page cache's own: a write to the same range after the
//! splice shows in what the client receives. That is within a block device's promise: the
//! reply is not complete until the client has received it, so such a write is concurrent with
//! the read, never ordered after it.
//!
//! Pipes are reused through a small pool: creating one and growing it to [`PIPE_BYTES`] costs
//! three system calls, and only a pipe known to be empty goes back.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The capacity asked of every pipe, and so the longest read that can travel in one: the
/// default `/proc/sys/fs/pipe-max-size`.
pub const PIPE_BYTES: usize = 1 << 20;

/// Empty pipes kept for reuse, at most: enough for a queue depth of 64 large reads.
const POOL_PIPES: usize = 64;

/// Pipes open at once, at most (in the pool and holding reads): each holds two descriptors, and
/// a process has a limited number. Past it, reads are copied the usual way.
pub const MAX_PIPES: usize = 256;

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

/// Pipes open now.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// A pipe of [`PIPE_BYTES`] capacity.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// An empty pipe from the pool, or a new one. Fails when [`MAX_PIPES`] are open or the
    /// system refuses a pipe of [`PIPE_BYTES`] (descriptors exhausted, or a user past
    /// `pipe-user-pages-soft`); callers then read the usual way.
    pub fn take() -> io::Result<Pipe> {
        if let Some(pipe) = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(pipe);
        }
        if OPEN.fetch_add(1, Ordering::AcqRel) >= MAX_PIPES {
            OPEN.fetch_sub(1, Ordering::AcqRel);
            return Err(io::Error::other(format!(
                "{MAX_PIPES} pipes are open already"
            )));
        }
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            OPEN.fetch_sub(1, Ordering::AcqRel);
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are new and owned by nobody else. From here
        // the pipe's drop closes them and counts it out.
        let pipe = unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        // SAFETY: F_SETPIPE_SZ only resizes the pipe's buffer.
        let size = unsafe {
            libc::fcntl(
                pipe.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_BYTES as libc::c_int,
            )
        };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        // Reading more than the pipe holds (a volume that put in fewer bytes than it said) fails
        // with EAGAIN instead of waiting forever.
        // SAFETY: F_SETFL only changes the descriptor's status flags.
        if unsafe { libc::fcntl(pipe.read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if (size as usize) < PIPE_BYTES {
            return Err(io::Error::other(format!(
                "the pipe got {size} bytes of buffer, not {PIPE_BYTES}"
            )));
        }
        Ok(pipe)
    }

    /// The end data is spliced into.
    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// The end data is read from.
    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Copies `data` (at most [`PIPE_BYTES`]) into the empty pipe: for a volume whose data is
    /// in its own memory rather than the page cache (test doubles).
    pub fn fill(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > PIPE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} bytes do not fit a pipe of {PIPE_BYTES}", data.len()),
            ));
        }
        let mut at = 0;
        while at < data.len() {
            // SAFETY: the slice from `at` is readable memory of the length passed.
            let written = unsafe {
                libc::write(
                    self.write.as_raw_fd(),
                    data[at..].as_ptr().cast(),
                    data.len() - at,
                )
            };
            if written < 0 {
                return Err(io::Error::last_os_error());
            }
            at += written as usize;
        }
        Ok(())
    }

    /// Gives an empty pipe back to the pool (only call it when every byte put in was taken
    /// out: a pipe with data left would hand them to the next read).
    fn give_back(self) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_PIPES {
            pool.push(self);
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A read's data waiting in a pipe: `len` bytes, of which `sent` were already taken out.
#[derive(Debug)]
pub struct PipedData {
    /// Always there until dropped.
    pipe: Option<Pipe>,
    len: usize,
    sent: usize,
}

impl PipedData {
    /// The data `pipe` holds: exactly `len` bytes, spliced in by the caller.
    pub fn new(pipe: Pipe, len: usize) -> PipedData {
        PipedData {
            pipe: Some(pipe),
            len,
            sent: 0,
        }
    }

    fn read_fd(&self) -> RawFd {
        self.pipe.as_ref().map_or(-1, Pipe::read_fd)
    }

    /// The read's length.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes not yet taken out.
    pub fn remaining(&self) -> usize {
        self.len - self.sent
    }

    /// Copies the next bytes, as many as fit in `buffer`, out of the pipe: the number copied
    /// (0 when none remain). Never blocks: the pipe holds every remaining byte.
    pub fn read_into(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let wanted = buffer.len().min(self.remaining());
        if wanted == 0 {
            return Ok(0);
        }
        // SAFETY: `buffer` is writable memory of at least `wanted` bytes.
        let read = unsafe { libc::read(self.read_fd(), buffer.as_mut_ptr().cast(), wanted) };
        match read {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the pipe ran dry {} bytes short", self.remaining()),
            )),
            read if read < 0 => Err(io::Error::last_os_error()),
            read => {
                self.sent += read as usize;
                Ok(read as usize)
            }
        }
    }

    /// Copies the remaining bytes out into memory (tests, and frontends that want them whole).
    pub fn read_to_vec(mut self) -> io::Result<Vec<u8>> {
        let mut data = vec![0u8; self.remaining()];
        let mut at = 0;
        while at < data.len() {
            at += self.read_into(&mut data[at..])?;
        }
        Ok(data)
    }
}

impl Drop for PipedData {
    fn drop(&mut self) {
        if self.remaining() == 0
            && let Some(pipe) = self.pipe.take()
        {
            pipe.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    #[test]
    fn data_comes_out_as_it_went_in_in_pieces_of_any_size() {
        let data = pattern(PIPE_BYTES, 7);
        let mut pipe = Pipe::take().unwrap();
        pipe.fill(&data).unwrap();
        let mut piped = PipedData::new(pipe, data.len());
        let mut out = Vec::new();
        let mut piece = vec![0u8; 100_000];
        loop {
            let copied = piped.read_into(&mut piece).unwrap();
            if copied == 0 {
                break;
            }
            out.extend_from_slice(&piece[..copied]);
        }
        assert_eq!(piped.remaining(), 0);
        assert_eq!(out, data);
    }

    #[test]
    fn a_pipe_holding_fewer_bytes_than_said_fails_instead_of_waiting() {
        let mut pipe = Pipe::take().unwrap();
        pipe.fill(&pattern(4096, 1)).unwrap();
        let piped = PipedData::new(pipe, 8192);
        let error = piped.read_to_vec().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
    }

    #[test]
    fn only_drained_pipes_are_reused() {
        // A pipe dropped with data left is closed, so the next one taken is empty whatever the
        // pool holds.
        for round in 0..4u8 {
            let mut pipe = Pipe::take().unwrap();
            pipe.fill(&pattern(8192, round)).unwrap();
            let piped = PipedData::new(pipe, 8192);
            if round % 2 == 0 {
                drop(piped);
            } else {
                assert_eq!(piped.read_to_vec().unwrap(), pattern(8192, round));
            }
            let mut next = Pipe::take().unwrap();
            next.fill(&pattern(16, 9)).unwrap();
            let next = PipedData::new(next, 16);
            assert_eq!(next.read_to_vec().unwrap(), pattern(16, 9));
        }
    }

    #[test]
    fn more_than_a_pipe_holds_is_refused() {
        let mut pipe = Pipe::take().unwrap();
        let error = pipe.fill(&vec![0; PIPE_BYTES + 1]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
