//! Timed GETs: the time until the whole body has arrived, with no JSON parsing on the clock.
//!
//! The testkit's `Rest` parses every answer and caps bodies at ureq's default 10 MB; a view of
//! 20,000 resources is larger than that, and its parse time is the client's, not the
//! controller's. So reads that are measured go through here, and those that only need the size
//! ([`Reader::measure`]) read the body through one fixed buffer: a view of 100,000 × 2 is 150 MiB,
//! and growing (and zero-filling) a vector of that size costs this machine's two cores, which
//! the controller under test shares, more than a third of a second.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// One GET's answer, whole.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A body read by [`Reader::measure`]: how long it took and how large it was.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub elapsed: Duration,
    pub size: usize,
}

/// The buffer [`Reader::measure`] reads through.
const MEASURE_BUFFER_BYTES: usize = 256 * 1024;

/// How much of a body [`Reader::measure`] keeps to quote in an error.
const ERROR_HEAD_BYTES: usize = 500;

/// Idle connections kept for the next request, as in the testkit's `Rest`: ureq's default of
/// three per host would make all but three of the clients sending at once connect anew.
const IDLE_CONNECTIONS: usize = 64;

/// A keep-alive connection to the controller, as a CLI or CSI driver holds one.
#[derive(Clone)]
pub struct Reader {
    base: String,
    agent: ureq::Agent,
}

impl Reader {
    pub fn new(base: &str) -> Reader {
        Self::with_timeout(base, Duration::from_secs(120))
    }

    pub fn with_timeout(base: &str, timeout: Duration) -> Reader {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_idle_connections(IDLE_CONNECTIONS)
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            .build()
            .new_agent();
        Reader {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// GETs `path` and reads the whole body.
    pub fn get(&self, path: &str) -> Result<Fetched> {
        let mut response = self.agent.get(format!("{}{path}", self.base)).call()?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()?;
        Ok(Fetched { status, body })
    }

    /// GETs `path` and fails unless it answers 200.
    pub fn get_ok(&self, path: &str) -> Result<Fetched> {
        let fetched = self.get(path)?;
        if fetched.status != 200 {
            bail!(
                "GET {path} answered {}: {}",
                fetched.status,
                String::from_utf8_lossy(&fetched.body[..fetched.body.len().min(500)])
            );
        }
        Ok(fetched)
    }

    /// GETs `path`, which must answer 200, and reads the whole body through a fixed buffer,
    /// keeping only its size: the time until the last byte has arrived.
    pub fn measure(&self, path: &str) -> Result<Measured> {
        let started = Instant::now();
        let mut response = self.agent.get(format!("{}{path}", self.base)).call()?;
        let status = response.status().as_u16();
        let mut body = response.body_mut().with_config().limit(u64::MAX).reader();
        let mut buffer = vec![0u8; MEASURE_BUFFER_BYTES];
        let mut head = Vec::new();
        let mut size = 0;
        loop {
            let read = body.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            if head.len() < ERROR_HEAD_BYTES {
                let take = read.min(ERROR_HEAD_BYTES - head.len());
                head.extend_from_slice(&buffer[..take]);
            }
            size += read;
        }
        let elapsed = started.elapsed();
        if status != 200 {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&head)
            );
        }
        Ok(Measured { elapsed, size })
    }

    /// GETs `path` `count` times in a row; returns the latencies and the last body's size.
    pub fn repeat(&self, path: &str, count: usize) -> Result<(Vec<Duration>, usize)> {
        let mut latencies = Vec::with_capacity(count);
        let mut size = 0;
        for _ in 0..count {
            let measured = self.measure(path)?;
            latencies.push(measured.elapsed);
            size = measured.size;
        }
        Ok((latencies, size))
    }

    /// GETs each of `paths` once, in order; returns the latencies and the largest body's size.
    pub fn each(&self, paths: &[String]) -> Result<(Vec<Duration>, usize)> {
        let mut latencies = Vec::with_capacity(paths.len());
        let mut size = 0;
        for path in paths {
            let measured = self.measure(path)?;
            latencies.push(measured.elapsed);
            size = size.max(measured.size);
        }
        Ok((latencies, size))
    }
}
