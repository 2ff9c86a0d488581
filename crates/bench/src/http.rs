//! Timed GETs: the time until the whole body has arrived, with no JSON parsing on the clock.
//!
//! The testkit's `Rest` parses every answer and caps bodies at ureq's default 10 MB; a view of
//! 20,000 resources is larger than that, and its parse time is the client's, not the
//! controller's. So reads that are measured go through here.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// One GET as measured.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub elapsed: Duration,
    pub body: Vec<u8>,
}

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
            .build()
            .new_agent();
        Reader {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// GETs `path` and reads the whole body.
    pub fn get(&self, path: &str) -> Result<Fetched> {
        let started = Instant::now();
        let mut response = self.agent.get(format!("{}{path}", self.base)).call()?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()?;
        Ok(Fetched {
            status,
            elapsed: started.elapsed(),
            body,
        })
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

    /// GETs `path` `count` times in a row; returns the latencies and the last body's size.
    pub fn repeat(&self, path: &str, count: usize) -> Result<(Vec<Duration>, usize)> {
        let mut latencies = Vec::with_capacity(count);
        let mut size = 0;
        for _ in 0..count {
            let fetched = self.get_ok(path)?;
            latencies.push(fetched.elapsed);
            size = fetched.body.len();
        }
        Ok((latencies, size))
    }

    /// GETs each of `paths` once, in order; returns the latencies and the largest body's size.
    pub fn each(&self, paths: &[String]) -> Result<(Vec<Duration>, usize)> {
        let mut latencies = Vec::with_capacity(paths.len());
        let mut size = 0;
        for path in paths {
            let fetched = self.get_ok(path)?;
            latencies.push(fetched.elapsed);
            size = size.max(fetched.body.len());
        }
        Ok((latencies, size))
    }
}
