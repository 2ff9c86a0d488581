//! A volume in memory, for tests of the server and of anything that talks NBD: a `Vec` behind
//! a lock, with counters of what the frontend did to it (sessions, flushes, concurrent calls)
//! and three switches: one that holds every call until released, one that fails every call, and
//! one that answers large reads as piped data ([`Volume::read_piped`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use bytes::Bytes;
use ferrite_block::{IoError, Pipe, PipedData, Volume, check_range};
use tokio::sync::watch;

/// A volume of `size` bytes in memory.
pub struct MemoryVolume {
    data: RwLock<Vec<u8>>,
    held: watch::Sender<bool>,
    failure: Mutex<Option<IoError>>,
    sessions: AtomicUsize,
    sessions_opened: AtomicUsize,
    calls_in_flight: AtomicUsize,
    most_calls_in_flight: AtomicUsize,
    flushes: AtomicUsize,
    fua_writes: AtomicUsize,
    pipe_reads: AtomicBool,
    piped_reads: AtomicUsize,
}

impl MemoryVolume {
    pub fn new(size: usize) -> MemoryVolume {
        MemoryVolume::with_contents(vec![0; size])
    }

    pub fn with_contents(contents: Vec<u8>) -> MemoryVolume {
        MemoryVolume {
            data: RwLock::new(contents),
            held: watch::channel(false).0,
            failure: Mutex::new(None),
            sessions: AtomicUsize::new(0),
            sessions_opened: AtomicUsize::new(0),
            calls_in_flight: AtomicUsize::new(0),
            most_calls_in_flight: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
            fua_writes: AtomicUsize::new(0),
            pipe_reads: AtomicBool::new(false),
            piped_reads: AtomicUsize::new(0),
        }
    }

    /// A copy of the whole contents.
    pub fn contents(&self) -> Vec<u8> {
        self.data.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every call from now on waits (counted as in flight) until [`MemoryVolume::release`].
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Every call from now on fails with `error` (`None`: calls succeed again).
    pub fn fail_with(&self, error: Option<IoError>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Answers reads asked as piped data with a pipe (`false`, the default: with `None`).
    pub fn pipe_reads(&self, on: bool) {
        self.pipe_reads.store(on, Ordering::SeqCst);
    }

    /// Reads answered with a pipe.
    pub fn piped_reads(&self) -> usize {
        self.piped_reads.load(Ordering::SeqCst)
    }

    /// Sessions open now (`opened` minus `closed`).
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    /// Sessions ever opened.
    pub fn sessions_opened(&self) -> usize {
        self.sessions_opened.load(Ordering::SeqCst)
    }

    /// Calls running now.
    pub fn calls_in_flight(&self) -> usize {
        self.calls_in_flight.load(Ordering::SeqCst)
    }

    /// The most calls that ran at once.
    pub fn most_calls_in_flight(&self) -> usize {
        self.most_calls_in_flight.load(Ordering::SeqCst)
    }

    pub fn flushes(&self) -> usize {
        self.flushes.load(Ordering::SeqCst)
    }

    pub fn fua_writes(&self) -> usize {
        self.fua_writes.load(Ordering::SeqCst)
    }

    /// Counts the call, waits while held, and returns the injected failure, if any.
    async fn enter(&self) -> Result<CallGuard<'_>, IoError> {
        let now = self.calls_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_calls_in_flight.fetch_max(now, Ordering::SeqCst);
        let guard = CallGuard(self);
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|held| !*held).await;
        if let Some(error) = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(error);
        }
        Ok(guard)
    }

    fn size_u64(&self) -> u64 {
        self.data.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }
}

struct CallGuard<'a>(&'a MemoryVolume);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.calls_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Volume for MemoryVolume {
    fn size(&self) -> u64 {
        self.size_u64()
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, IoError> {
        let _call = self.enter().await?;
        check_range(self.size_u64(), offset, u64::from(len))?;
        let data = self.data.read().unwrap_or_else(|e| e.into_inner());
        let start = offset as usize;
        Ok(Bytes::copy_from_slice(&data[start..start + len as usize]))
    }

    async fn read_piped(&self, offset: u64, len: u32) -> Result<Option<PipedData>, IoError> {
        if !self.pipe_reads.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let _call = self.enter().await?;
        check_range(self.size_u64(), offset, u64::from(len))?;
        let mut pipe = Pipe::take().map_err(|e| IoError::Io(format!("no pipe: {e}")))?;
        {
            let data = self.data.read().unwrap_or_else(|e| e.into_inner());
            let start = offset as usize;
            pipe.fill(&data[start..start + len as usize])
                .map_err(|e| IoError::Io(format!("filling the pipe: {e}")))?;
        }
        self.piped_reads.fetch_add(1, Ordering::SeqCst);
        Ok(Some(PipedData::new(pipe, len as usize)))
    }

    async fn write(&self, offset: u64, bytes: Bytes, fua: bool) -> Result<(), IoError> {
        let _call = self.enter().await?;
        check_range(self.size_u64(), offset, bytes.len() as u64)?;
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let start = offset as usize;
        data[start..start + bytes.len()].copy_from_slice(&bytes);
        if fua {
            self.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), IoError> {
        let _call = self.enter().await?;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.write_zeroes(offset, len, false).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), IoError> {
        let _call = self.enter().await?;
        check_range(self.size_u64(), offset, len)?;
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let start = offset as usize;
        data[start..start + len as usize].fill(0);
        if fua {
            self.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn opened(&self) {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        self.sessions_opened.fetch_add(1, Ordering::SeqCst);
    }

    fn closed(&self) {
        self.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}
