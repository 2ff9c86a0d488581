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

/// A free TCP port on 127.0.0.1 for a controller or satellite to listen on, below the kernel's
/// ephemeral range (32768 and up): a port taken with bind(0) and released can be taken by
/// another process's outgoing connection before the process under test binds it. Each test
/// process walks its own sequence through 10000–19999 (the MIRROR engine's tests use
/// 20000–31999), skipping ports that are taken.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = u64::from(std::process::id()) * 7919;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + ((base + n * 104_729) % 10_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A loopback address of its own for node `name` of the cluster in `dir`: replication ports
/// are allocated per node (7000, 7001, ...), so two nodes, or two clusters of tests running at
/// once, must not share an address. All of 127.0.0.0/8 is loopback on Linux.
pub fn node_address(dir: &Path, name: &str) -> std::net::IpAddr {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    let cluster = hasher.finish();
    let node: u8 = name
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0);
    std::net::IpAddr::from([
        127,
        1 + (cluster % 250) as u8,
        ((cluster >> 8) % 256) as u8,
        node.max(1),
    ])
}

/// Kills the MIRROR daemon a satellite started for its state directory `state_dir`, if one
/// runs: it lives in a session of its own and outlives the satellite by design, so a test
/// that is done with a node must end it.
pub fn kill_mirrord(state_dir: &Path) {
    let lock = state_dir.join("mirror").join("mirrord.lock");
    if let Some(pid) = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 1)
    {
        // SIGTERM first: the daemon removes its block devices and unmounts its FUSE file
        // system; SIGKILL if it does not end in time.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // SAFETY: as above; signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Whether the tests run as root (loop devices need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Starts `program` with its output going to `log`: a new file, or the end of an existing one
/// when `append` (so a restarted process's earlier runs stay readable).
fn spawn(program: &Path, args: &[String], log: &Path, append: bool) -> Result<Child> {
    let out = if append {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        use std::io::Write as _;
        writeln!(file, "---- {} {} ----", program.display(), args.join(" "))?;
        file
    } else {
        File::create(log).with_context(|| format!("creating {}", log.display()))?
    };
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
    print_last_lines(name, log, 40);
}

fn print_last_lines(name: &str, log: &Path, count: usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("---- last lines of {name} ({}) ----", log.display());
    for line in &lines[lines.len().saturating_sub(count)..] {
        eprintln!("{line}");
    }
}

/// A process that ran to its end: how it ended, what it printed, how long it took.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `program` with `args` until it exits, or kills it after `timeout` (an error).
fn run_to_end(program: &Path, args: &[String], timeout: Duration) -> Result<Finished> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    // Pipes are drained by threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<_>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<_>));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} {} did not exit within {timeout:?}; it was killed",
                program.display(),
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    })
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
        self.child = Some(spawn(&self.binary, &args, &log, false)?);
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

    /// Starts the controller again after [`ControllerProcess::stop`] or
    /// [`ControllerProcess::kill`], on the same port and data directory (whatever was done to
    /// that directory meanwhile, e.g. a restore). Fails if it is still running.
    pub fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("ferrite-controller is still running (pid {:?})", self.pid());
        }
        self.restarts += 1;
        self.launch()
    }

    /// Runs the controller binary once more on the same data directory with `args` (e.g. a
    /// second controller on another port, or `--restore FILE`) and waits up to `timeout` for it
    /// to exit. A run that does not exit in time is killed and is an error: every such run is
    /// expected to end by itself.
    pub fn run_once(&self, args: &[String], timeout: Duration) -> Result<Finished> {
        let mut all = vec![
            "--data-dir".to_string(),
            self.data_dir.to_string_lossy().to_string(),
            "--config".to_string(),
            "/dev/null".to_string(),
        ];
        all.extend(args.iter().cloned());
        run_to_end(&self.binary, &all, timeout)
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

/// `ferrite-satellite` for one node. Its log holds every run, each after a `----` line.
pub struct SatelliteProcess {
    pub name: String,
    pub address: SocketAddr,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    binary: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl SatelliteProcess {
    pub fn start(binaries: &Binaries, dir: &Path, name: &str) -> Result<SatelliteProcess> {
        Self::start_with(binaries, dir, name, &[])
    }

    /// Starts a satellite with more flags, e.g. `--reconcile-interval 1`; restarts keep them.
    pub fn start_with(
        binaries: &Binaries,
        dir: &Path,
        name: &str,
        extra_args: &[String],
    ) -> Result<SatelliteProcess> {
        let mut satellite = SatelliteProcess {
            name: name.to_string(),
            address: SocketAddr::new(node_address(dir, name), free_port()),
            state_dir: dir.join("satellites").join(name),
            log: dir.join(format!("satellite-{name}.log")),
            binary: binaries.satellite.clone(),
            extra_args: extra_args.to_vec(),
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
            // Block devices of its MIRROR volumes, apart from the other nodes' on this host.
            "--device-root".to_string(),
            self.state_dir.join("dev").to_string_lossy().to_string(),
            // Its DRBD resource files, apart from the other nodes' on this host.
            "--drbd-resource-dir".to_string(),
            self.drbd_resource_dir().to_string_lossy().to_string(),
        ];
        let args = [args, self.extra_args.clone()].concat();
        self.child = Some(spawn(&self.binary, &args, &self.log, true)?);
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

    /// Where the satellite writes its DRBD resource files (`--drbd-resource-dir`).
    pub fn drbd_resource_dir(&self) -> PathBuf {
        self.state_dir.join("drbd")
    }

    /// Kills the satellite if it runs, and starts it (again) on the same address and state
    /// directory.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    pub fn print_log_tail(&self) {
        print_tail(&format!("ferrite-satellite {}", self.name), &self.log);
    }

    /// The satellite's log and, when the node ran one, its `ferrite-mirrord`'s (the last 80
    /// lines: a replication failure is usually explained further back than a satellite's).
    pub fn print_logs_with_mirrord(&self) {
        self.print_log_tail();
        let log = self.state_dir.join("mirror").join("mirrord.log");
        if log.exists() {
            print_last_lines(&format!("ferrite-mirrord of {}", self.name), &log, 80);
        }
    }
}

impl Drop for SatelliteProcess {
    fn drop(&mut self) {
        self.kill();
        kill_mirrord(&self.state_dir);
    }
}
