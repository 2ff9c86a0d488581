//! The controller under test: a release-built `ferrite-controller` process of its own, so its
//! memory is its own, started and stopped with the clock running.
//!
//! A start is timed from just before `exec` to the first `200` of `GET /health` (the listener
//! is bound only after the store is loaded, so this is "ready"), then to the first complete
//! answer of `GET /v1/view/resources`, then to every node being ONLINE again.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrite_testkit::{Rest, free_port};
use serde_json::Value;

use crate::http::Reader;
use crate::procfs::{self, Memory};

/// How a running controller is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: graceful shutdown.
    Term,
    /// SIGKILL: a crash.
    Kill,
}

impl Stop {
    pub fn label(self) -> &'static str {
        match self {
            Stop::Term => "after SIGTERM",
            Stop::Kill => "after kill -9",
        }
    }
}

/// The timeline of one start.
#[derive(Debug, Clone, Copy)]
pub struct StartTiming {
    /// exec → first `200` from `/health`.
    pub health: Duration,
    /// exec → first complete `/v1/view/resources` answer.
    pub view: Duration,
    /// exec → every node ONLINE (its satellite has the full state again); `None` without nodes.
    pub online: Option<Duration>,
    /// What the controller logged as its store load time ("cluster loaded ... elapsed_ms").
    pub logged_load: Option<Duration>,
}

/// A `ferrite-controller` process on a free loopback port.
pub struct ControllerUnderTest {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    binary: PathBuf,
    log_dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl ControllerUnderTest {
    /// Prepares a controller with its data directory under `dir`; nothing runs yet.
    pub fn new(binary: &Path, dir: &Path) -> ControllerUnderTest {
        ControllerUnderTest {
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: dir.join("controller"),
            binary: binary.to_path_buf(),
            log_dir: dir.to_path_buf(),
            child: None,
            starts: 0,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn rest(&self) -> Rest {
        Rest::new(&self.url())
    }

    pub fn reader(&self) -> Reader {
        Reader::new(&self.url())
    }

    pub fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .context("the controller is not running")
    }

    pub fn memory(&self) -> Result<Memory> {
        Memory::of(self.pid()?)
    }

    pub fn cpu_seconds(&self) -> Result<f64> {
        procfs::cpu_seconds(self.pid()?)
    }

    /// The log of the current (or last) run.
    pub fn log(&self) -> PathBuf {
        self.log_dir
            .join(format!("controller-{}.log", self.starts.max(1)))
    }

    /// Starts the process and times it until it serves; `nodes` is how many nodes must come
    /// ONLINE before the start counts as complete.
    pub fn start(&mut self, nodes: usize) -> Result<StartTiming> {
        if self.child.is_some() {
            bail!("the controller is already running");
        }
        self.starts += 1;
        let log = File::create(self.log())
            .with_context(|| format!("creating {}", self.log().display()))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--config")
            .arg("/dev/null")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let started = Instant::now();
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", self.binary.display()))?,
        );

        // Polled every millisecond; a refused connection costs microseconds.
        let probe = Reader::with_timeout(&self.url(), Duration::from_secs(5));
        let deadline = started + Duration::from_secs(60);
        let health = loop {
            if probe.get("/health").is_ok_and(|f| f.status == 200) {
                break started.elapsed();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the controller exited with {status} while starting; see {}",
                    self.log().display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the controller did not answer /health within 60 s; see {}",
                    self.log().display()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.reader().measure("/v1/view/resources")?;
        let view = started.elapsed();
        let online = if nodes == 0 {
            None
        } else {
            self.wait_online(nodes, Duration::from_secs(300))?;
            Some(started.elapsed())
        };
        Ok(StartTiming {
            health,
            view,
            online,
            logged_load: self.logged_load(),
        })
    }

    /// Waits until `nodes` nodes are registered and ONLINE, polling every 5 ms.
    pub fn wait_online(&self, nodes: usize, timeout: Duration) -> Result<()> {
        let reader = self.reader();
        let deadline = Instant::now() + timeout;
        loop {
            let listed: Value = serde_json::from_slice(&reader.get_ok("/v1/nodes")?.body)?;
            let online = listed
                .as_array()
                .map(|n| {
                    n.iter()
                        .filter(|n| n["connection_status"] == "ONLINE")
                        .count()
                })
                .unwrap_or(0);
            if online >= nodes {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {online} of {nodes} nodes ONLINE after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The store load time from the controller's "cluster loaded" log line.
    fn logged_load(&self) -> Option<Duration> {
        let text = std::fs::read_to_string(self.log()).ok()?;
        let line = text.lines().find(|l| l.contains("cluster loaded"))?;
        let value = line.split("elapsed_ms=").nth(1)?;
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok().map(Duration::from_millis)
    }

    /// Stops the process; returns how long it took to exit.
    pub fn stop(&mut self, how: Stop) -> Result<Duration> {
        let mut child = self.child.take().context("the controller is not running")?;
        let signal = match how {
            Stop::Term => libc::SIGTERM,
            Stop::Kill => libc::SIGKILL,
        };
        let started = Instant::now();
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        if rc != 0 {
            bail!(
                "could not signal the controller: {}",
                std::io::Error::last_os_error()
            );
        }
        let deadline = started + Duration::from_secs(30);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the controller did not exit within 30 s of {how:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ControllerUnderTest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
