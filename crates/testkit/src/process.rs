//! Child processes: where the binaries are, starting, killing, restarting.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::rest::Rest;

/// Paths of the Ferrite binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub controller: PathBuf,
    pub satellite: PathBuf,
    pub cli: PathBuf,
}

impl Binaries {
    /// `FERRITE_BIN_DIR`, else the target directory the running test binary lives in.
    pub fn locate() -> Result<Binaries> {
        let dir = match std::env::var_os("FERRITE_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let exe = std::env::current_exe()?;
                // target/<profile>/deps/<test> -> target/<profile>
                exe.parent()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf)
                    .context("locating the target directory")?
            }
        };
        let binaries = Binaries {
            controller: dir.join("ferrite-controller"),
            satellite: dir.join("ferrite-satellite"),
            cli: dir.join("ferrite"),
        };
        for path in [&binaries.controller, &binaries.satellite] {
            if !path.exists() {
                bail!(
                    "{} is missing; build the binaries first (cargo build --workspace --bins) or set FERRITE_BIN_DIR",
                    path.display()
                );
            }
        }
        Ok(binaries)
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether the tests run as root (loop devices need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(program)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

/// How long [`ControllerProcess::stop`] waits for the controller to exit after SIGTERM. It only
/// has to finish the requests in flight (each bounded by the apply timeout the tests give it)
/// and close the store.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn print_tail(name: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("---- last lines of {name} ({}) ----", log.display());
    for line in &lines[lines.len().saturating_sub(40)..] {
        eprintln!("{line}");
    }
}

/// `ferrite-controller` on a free port with its data directory.
pub struct ControllerProcess {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    binary: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    restarts: u32,
}

impl ControllerProcess {
    pub fn start(binaries: &Binaries, dir: &Path) -> Result<ControllerProcess> {
        Self::start_with(
            binaries,
            dir,
            &["--apply-timeout".to_string(), "10".to_string()],
        )
    }

    pub fn start_with(
        binaries: &Binaries,
        dir: &Path,
        extra_args: &[String],
    ) -> Result<ControllerProcess> {
        let mut controller = ControllerProcess {
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: dir.join("controller"),
            log: dir.join("controller.log"),
            binary: binaries.controller.clone(),
            extra_args: extra_args.to_vec(),
            child: None,
            restarts: 0,
        };
        controller.launch()?;
        Ok(controller)
    }

    fn launch(&mut self) -> Result<()> {
        let mut args = vec![
            "--listen".to_string(),
            self.listen.to_string(),
            "--data-dir".to_string(),
            self.data_dir.to_string_lossy().to_string(),
            "--config".to_string(),
            "/dev/null".to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        let log = self.current_log();
        self.child = Some(spawn(&self.binary, &args, &log)?);
        let rest = self.rest();
        crate::wait_until(Duration::from_secs(20), || {
            Ok(rest
                .get("/v1/controller/version")
                .is_ok_and(|r| r.status == 200))
        })
        .with_context(|| format!("controller did not come up; see {}", log.display()))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn rest(&self) -> Rest {
        Rest::new(&self.url())
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Stops the controller as an operator or systemd would: SIGTERM, then up to
    /// [`STOP_TIMEOUT`] for it to finish its requests and exit. Fails if it did not exit by
    /// itself in time (it is then killed) or exited with an error; either way it is gone when
    /// this returns. Stopping a controller that is not running does nothing.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: kill has no memory-safety preconditions; `pid` is our own child, not yet
        // reaped, so it cannot name another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "ferrite-controller exited with {status} after SIGTERM; see {}",
                        self.current_log().display()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "ferrite-controller did not exit within {STOP_TIMEOUT:?} of SIGTERM and was killed; see {}",
                    self.current_log().display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the controller (SIGKILL, as a crash would) and starts it again on the same port
    /// and data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.restarts += 1;
        self.launch()
    }

    /// Stops the controller cleanly ([`ControllerProcess::stop`]) and starts it again on the
    /// same port and data directory.
    pub fn restart_clean(&mut self) -> Result<()> {
        self.stop()?;
        self.restarts += 1;
        self.launch()
    }

    /// The log of the current (or last) run: `controller.log`, then `controller.N.log` after
    /// the Nth restart.
    pub fn current_log(&self) -> PathBuf {
        if self.restarts == 0 {
            self.log.clone()
        } else {
            self.log.with_extension(format!("{}.log", self.restarts))
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (it has neither crashed nor been killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    pub fn print_log_tail(&self) {
        print_tail("ferrite-controller", &self.current_log());
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `ferrite-satellite` for one node.
pub struct SatelliteProcess {
    pub name: String,
    pub address: SocketAddr,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
}

impl SatelliteProcess {
    pub fn start(binaries: &Binaries, dir: &Path, name: &str) -> Result<SatelliteProcess> {
        let mut satellite = SatelliteProcess {
            name: name.to_string(),
            address: SocketAddr::from(([127, 0, 0, 1], free_port())),
            state_dir: dir.join("satellites").join(name),
            log: dir.join(format!("satellite-{name}.log")),
            binary: binaries.satellite.clone(),
            child: None,
        };
        satellite.launch()?;
        Ok(satellite)
    }

    fn launch(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.state_dir)?;
        let args = vec![
            "--listen".to_string(),
            self.address.to_string(),
            "--state-dir".to_string(),
            self.state_dir.to_string_lossy().to_string(),
            "--node-name".to_string(),
            self.name.clone(),
            "--config".to_string(),
            "/dev/null".to_string(),
        ];
        self.child = Some(spawn(&self.binary, &args, &self.log)?);
        let address = self.address;
        crate::wait_until(Duration::from_secs(20), || {
            Ok(std::net::TcpStream::connect(address).is_ok())
        })
        .with_context(|| {
            format!(
                "satellite {} did not come up; see {}",
                self.name,
                self.log.display()
            )
        })
    }

    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    pub fn print_log_tail(&self) {
        print_tail(&format!("ferrite-satellite {}", self.name), &self.log);
    }
}

impl Drop for SatelliteProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
