//! `ferrite-mirrord` as a real process with both frontends against the real kernel (FUSE, loop
//! devices, ext4, as root): a volume's block device and its NBD export show the same bytes; a
//! mounted device keeps its resource up (`down` refuses and says where it is mounted); `down`
//! and SIGTERM remove the device, its links and its loop device; a file written through one
//! node's block device is read through the other node's NBD export, which then becomes
//! Primary.
//!
//! Each test makes its own state directories and device roots in a temporary directory. Where
//! `ferrite_blockdev::probe()` says the host cannot have block devices, or a tool is missing,
//! the test prints "SKIPPED" with the reason and passes.

mod ports;

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ferrite_block::AlignedBuf;
use ferrite_mirror::activity_log::AL_EXTENTS_DEFAULT;
use ferrite_mirror::backing::DEFAULT_PEER_SLOTS;
use ferrite_mirror::block_devices::BlockDeviceSetting;
use ferrite_mirror::config::{Options, PeerConfig, ResourceConfig, VolumeConfig};
use ferrite_mirror::control::{Client, ControlError, Paths, Reply, Request, ResourceEntry};
use ferrite_mirror::daemon::{Daemon, DaemonConfig, write_resource_file};
use ferrite_mirror::metadata::metadata_size;
use ferrite_nbd::protocol::{CMD_READ, CMD_WRITE};
use ferrite_nbd::testing::{RawClient, request};
use ferrite_storage::{CommandError, CommandLine, HostCommands, SystemCommands};
use ports::free_port;

const USABLE: u64 = 64 << 20;
const MIB: usize = 1 << 20;
/// How long a state the daemon reaches by itself may take (a poll of the devices, a demotion's
/// grace, a connection between two daemons).
const SETTLE: Duration = Duration::from_secs(10);
const TOOLS: [&str; 7] = [
    "mkfs.ext4",
    "debugfs",
    "e2fsck",
    "fsfreeze",
    "nbdcopy",
    "mount",
    "umount",
];

/// Whether this host can run the test; says why not on stderr.
fn can_run(test: &str) -> bool {
    if let Err(reasons) = ferrite_blockdev::probe() {
        eprintln!(
            "SKIPPED {test}: this host cannot have block devices: {}",
            reasons.join("; ")
        );
        return false;
    }
    let runner = SystemCommands::new();
    for tool in TOOLS {
        let found = runner.run(&CommandLine::query("which").arg(tool)).is_ok();
        if !found {
            eprintln!("SKIPPED {test}: `{tool}` is not installed (scripts/setup.sh installs it)");
            return false;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    true
}

/// Runs a host command through the project's runner (which logs it); its stdout.
fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    SystemCommands::new()
        .run(&CommandLine::new(program).args(args.iter().copied()))
        .map(|output| output.stdout)
}

/// [`run`], tried again a few times: a `mkfs` or `mount` that starts in the moment the daemon's
/// usage poll holds the device exclusively fails with EBUSY (docs/blockdev.md, "In use").
fn run_retrying(program: &str, args: &[&str]) -> Result<String> {
    let mut attempts = 0;
    loop {
        match run(program, args) {
            Ok(stdout) => return Ok(stdout),
            Err(error) if attempts < 4 => {
                eprintln!("{program} failed, trying again: {error}");
                attempts += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// `len` bytes derived from `seed`, in a buffer fit for O_DIRECT.
fn pattern(seed: u64, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    buf
}

fn open_direct(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))
}

fn read_direct(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = AlignedBuf::zeroed(len);
    open_direct(path)?
        .read_exact_at(&mut buf, offset)
        .with_context(|| format!("reading {len} bytes at {offset} of {}", path.display()))?;
    Ok(buf.to_vec())
}

/// A file system mounted for a test; unmounted when dropped, also when the test fails.
struct Mounted {
    dir: PathBuf,
    mounted: bool,
}

impl Mounted {
    fn new(device: &Path, dir: &Path) -> Result<Mounted> {
        std::fs::create_dir_all(dir)?;
        run_retrying(
            "mount",
            &[&device.to_string_lossy(), &dir.to_string_lossy()],
        )?;
        Ok(Mounted {
            dir: dir.to_path_buf(),
            mounted: true,
        })
    }

    fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            run("umount", &[&self.dir.to_string_lossy()])?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted && self.unmount().is_err() {
            let _ = run("umount", &["-l", &self.dir.to_string_lossy()]);
        }
    }
}

/// One node: a `ferrite-mirrord run` process with its own state directory and device root.
struct Node {
    name: String,
    paths: Paths,
    device_root: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    backing: PathBuf,
    port: u16,
}

impl Node {
    fn new(dir: &Path, name: &str) -> Result<Node> {
        let root = dir.join(name);
        let backing = root.join("backing.img");
        std::fs::create_dir_all(&root)?;
        let size = USABLE + metadata_size(USABLE, DEFAULT_PEER_SLOTS, AL_EXTENTS_DEFAULT)?;
        File::create(&backing)?.set_len(size)?;
        Ok(Node {
            name: name.to_string(),
            paths: Paths::new(root.join("state")),
            device_root: root.join("dev"),
            log: root.join("mirrord.log"),
            child: None,
            backing,
            port: free_port(),
        })
    }

    /// Starts the daemon and waits until it answers.
    async fn start(&mut self) -> Result<()> {
        let log = File::create(&self.log)?;
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite-mirrord"))
            .arg("--state-dir")
            .arg(&self.paths.state_dir)
            .arg("run")
            .arg("--device-root")
            .arg(&self.device_root)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting ferrite-mirrord")?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            match Client::connect(&self.paths.control_socket()).await {
                Ok(_) => return Ok(()),
                Err(error) if started.elapsed() > SETTLE => {
                    bail!("ferrite-mirrord does not answer: {error}")
                }
                Err(_) => {
                    if let Some(Some(status)) =
                        self.child.as_mut().map(|c| c.try_wait().ok().flatten())
                    {
                        bail!("ferrite-mirrord exited with {status}: {}", self.log_text());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and its exit status.
    fn terminate(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("not running");
        };
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > SETTLE {
                let _ = child.kill();
                let _ = child.wait();
                bail!("ferrite-mirrord did not end within {SETTLE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn call(&self, request: Request) -> Result<Reply, ControlError> {
        Client::connect(&self.paths.control_socket())
            .await?
            .call(&request)
            .await
    }

    async fn up(&self, config: &ResourceConfig) -> Result<String> {
        write_resource_file(&self.paths, config)?;
        match self
            .call(Request::Up {
                resource: config.name.clone(),
            })
            .await?
        {
            Reply::Done { message } => Ok(message),
            other => bail!("up answered {other:?}"),
        }
    }

    async fn down(&self, resource: &str, force: bool) -> Result<String, ControlError> {
        match self
            .call(Request::Down {
                resource: resource.to_string(),
                force,
            })
            .await?
        {
            Reply::Done { message } => Ok(message),
            other => Err(ControlError::Garbled(format!("{other:?}"))),
        }
    }

    async fn entry(&self, resource: &str) -> Result<ResourceEntry> {
        match self
            .call(Request::Status {
                resource: Some(resource.to_string()),
            })
            .await?
        {
            Reply::Status { mut resources } if resources.len() == 1 => Ok(resources.remove(0)),
            other => bail!("status answered {other:?}"),
        }
    }

    /// Waits until the resource's entry satisfies `predicate`.
    async fn wait_for(
        &self,
        resource: &str,
        what: &str,
        predicate: impl Fn(&ResourceEntry) -> bool,
    ) -> Result<ResourceEntry> {
        let started = Instant::now();
        loop {
            let entry = self.entry(resource).await?;
            if predicate(&entry) {
                return Ok(entry);
            }
            if started.elapsed() > SETTLE {
                bail!("{}: {what}: not reached; now: {entry:#?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The member's configuration of `resource` with the given peers.
    fn config(&self, resource: &str, node_id: u8, peers: &[(&Node, u8)]) -> ResourceConfig {
        ResourceConfig {
            name: resource.to_string(),
            node_name: self.name.clone(),
            node_id,
            listen: format!("127.0.0.1:{}", self.port).parse().unwrap(),
            secret: "block-device-test".to_string(),
            peers: peers
                .iter()
                .map(|(peer, node_id)| PeerConfig {
                    node_name: peer.name.clone(),
                    node_id: *node_id,
                    address: format!("127.0.0.1:{}", peer.port).parse().unwrap(),
                    diskless: false,
                })
                .collect(),
            volumes: vec![VolumeConfig {
                number: 0,
                minor: Some(1000),
                usable_bytes: USABLE,
                backing: Some(self.backing.clone()),
                new_volume: true,
            }],
            // As LINSTOR sets it for two members.
            options: Options {
                quorum: "off".into(),
                ..Options::default()
            },
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(error) = self.terminate()
        {
            eprintln!("{}: {error}", self.name);
        }
    }
}

/// Volume 0's block device and NBD socket, from a status entry.
struct Frontends {
    device: PathBuf,
    drbd_device: Option<PathBuf>,
    loop_device: PathBuf,
    nbd_socket: PathBuf,
    nbd_uri: String,
}

fn frontends(entry: &ResourceEntry) -> Result<Frontends> {
    let frontend = entry
        .frontends
        .iter()
        .find(|f| f.volume == 0)
        .context("no frontend for volume 0")?;
    let device = frontend.device_path.clone().with_context(|| {
        format!(
            "volume 0 has no block device: {:?}",
            frontend.device_unavailable
        )
    })?;
    let nbd_socket = frontend
        .nbd_uri
        .strip_prefix("nbd+unix:///?socket=")
        .context("an NBD unix URI")?;
    Ok(Frontends {
        device: PathBuf::from(device),
        drbd_device: frontend.drbd_device_path.clone().map(PathBuf::from),
        loop_device: PathBuf::from(frontend.loop_device.clone().context("a loop device")?),
        nbd_socket: PathBuf::from(nbd_socket),
        nbd_uri: frontend.nbd_uri.clone(),
    })
}

/// Whether `loop_device` is attached to a file below `dir`.
fn attached_below(loop_device: &Path, dir: &Path) -> bool {
    let name = loop_device.file_name().unwrap().to_string_lossy();
    std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .is_ok_and(|file| Path::new(file.trim()).starts_with(dir))
}

fn is_mounted(dir: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(&*dir))
}

/// The bytes of a file in the ext4 image `image`, read by debugfs (not the kernel).
fn file_in_image(image: &Path, file: &str) -> Result<String> {
    Ok(run(
        "debugfs",
        &["-R", &format!("cat {file}"), &image.to_string_lossy()],
    )?)
}

fn mkfs(device: &Path) -> Result<()> {
    // Everything initialised now: no lazy zeroing writes later, no discard of the whole volume.
    run_retrying(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
            &device.to_string_lossy(),
        ],
    )?;
    Ok(())
}

fn write_file(path: &Path, content: &str) -> Result<()> {
    std::fs::write(path, content)?;
    File::open(path)?.sync_all()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_device_and_the_nbd_export_show_the_same_bytes_and_a_mounted_device_keeps_its_resource_up()
-> Result<()> {
    if !can_run("the_block_device_and_the_nbd_export_show_the_same_bytes") {
        return Ok(());
    }
    let dir = tempfile::tempdir_in("/var/tmp")?;
    let mut node = Node::new(dir.path(), "node0")?;
    node.start().await?;
    let config = node.config("r0", 0, &[]);
    let message = node.up(&config).await?;
    assert!(message.contains("1 with a block device"), "{message}");
    let entry = node
        .wait_for("r0", "UpToDate", |e| {
            e.status
                .as_ref()
                .is_some_and(|s| s.volumes[0].disk == "UpToDate")
        })
        .await?;
    let ends = frontends(&entry)?;

    // The paths: <device-root>/<resource>/<volnr> and DRBD's, both links to the loop device.
    assert_eq!(ends.device, node.device_root.join("r0/0"));
    assert_eq!(std::fs::read_link(&ends.device)?, ends.loop_device);
    if Path::new("/sys/module/drbd").exists() {
        assert_eq!(
            ends.drbd_device, None,
            "DRBD's devices own drbd/by-res here"
        );
    } else {
        let drbd = ends.drbd_device.clone().context("a drbd/by-res path")?;
        assert_eq!(drbd, node.device_root.join("drbd/by-res/r0/0"));
        assert_eq!(std::fs::read_link(&drbd)?, ends.loop_device);
    }
    let verbose = run(
        env!("CARGO_BIN_EXE_ferrite-mirrord"),
        &[
            "--state-dir",
            &node.paths.state_dir.to_string_lossy(),
            "status",
            "-v",
        ],
    )?;
    assert!(
        verbose.contains(&format!("device:{}", ends.device.display())),
        "{verbose}"
    );

    // Raw bytes, both ways: written through the block device, read through NBD (nbdcopy)...
    let through_device = pattern(1, MIB);
    open_direct(&ends.device)?.write_all_at(&through_device, 40 << 20)?;
    let image = dir.path().join("copy.img");
    run("nbdcopy", &[&ends.nbd_uri, &image.to_string_lossy()])?;
    let copied = std::fs::read(&image)?;
    assert!(copied[40 << 20..41 << 20] == through_device[..]);
    // ... and written through NBD, read through the block device.
    let (mut nbd, info) =
        RawClient::connect(tokio::net::UnixStream::connect(&ends.nbd_socket).await?, "").await?;
    assert_eq!(info.size, USABLE);
    let through_nbd = pattern(2, MIB);
    let reply = nbd
        .call(request(CMD_WRITE, 0, 1, 48 << 20, MIB as u32), &through_nbd)
        .await?;
    assert_eq!(reply.error, 0);
    drop(nbd);
    assert!(read_direct(&ends.device, 48 << 20, MIB)? == through_nbd[..]);

    // A file system made and written through the block device...
    mkfs(&ends.device)?;
    let mut mounted = Mounted::new(&ends.device, &dir.path().join("mnt"))?;
    let content = "written through the block device of r0/0\n";
    write_file(&mounted.dir.join("hello.txt"), content)?;
    let entry = node
        .wait_for("r0", "in use and Primary while mounted", |e| {
            e.status
                .as_ref()
                .is_some_and(|s| s.in_use && s.role == "Primary")
        })
        .await?;
    assert!(entry.status.unwrap().render(false).contains("open:yes"));
    // ... is read through NBD while mounted (frozen, so the image is consistent on the volume).
    run("fsfreeze", &["--freeze", &mounted.dir.to_string_lossy()])?;
    let copied = run("nbdcopy", &[&ends.nbd_uri, &image.to_string_lossy()]);
    run("fsfreeze", &["--unfreeze", &mounted.dir.to_string_lossy()])?;
    copied?;
    assert_eq!(file_in_image(&image, "/hello.txt")?, content);

    // A mounted device keeps its resource up, and says where it is mounted.
    let refused = node.down("r0", false).await.unwrap_err().to_string();
    assert!(
        refused.contains("is in use") && refused.contains(&*mounted.dir.to_string_lossy()),
        "{refused}"
    );
    let entry = node.entry("r0").await?;
    assert!(entry.status.is_some(), "still up: {entry:?}");
    assert_eq!(frontends(&entry)?.loop_device, ends.loop_device);
    assert!(ends.device.exists());

    // Unmounted, it goes down at once: links, loop device and FUSE file gone.
    mounted.unmount()?;
    let message = node.down("r0", false).await?;
    assert_eq!(message, "'r0' is down");
    assert!(
        !node.device_root.join("r0").exists(),
        "the resource's links"
    );
    assert!(!node.device_root.join("drbd/by-res/r0").exists());
    let fuse = node.paths.state_dir.join("blockdev");
    assert!(!attached_below(&ends.loop_device, &fuse));
    assert!(std::fs::read_dir(&fuse)?.next().is_none(), "no FUSE file");

    // Up again: the data is there, through a new device.
    node.up(&config).await?;
    let ends = frontends(&node.entry("r0").await?)?;
    assert_eq!(
        run(
            "debugfs",
            &["-R", "cat /hello.txt", &ends.device.to_string_lossy()]
        )?,
        content
    );

    // SIGTERM: the device goes before the resource, then the FUSE file system.
    let status = node.terminate()?;
    assert!(status.success(), "{status}: {}", node.log_text());
    assert!(!node.device_root.join("r0").exists());
    assert!(!attached_below(&ends.loop_device, &fuse));
    assert!(!is_mounted(&fuse), "the FUSE file system is unmounted");
    let log = node.log_text();
    let removed = log
        .rfind("block device removed")
        .with_context(|| format!("no device removed:\n{log}"))?;
    let down = log.rfind("resource down").context("resource down")?;
    assert!(removed < down, "the device goes first:\n{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_in_use_at_a_forced_down_or_at_sigterm_fails_its_io_and_is_freed_when_unmounted()
-> Result<()> {
    if !can_run(
        "a_device_in_use_at_a_forced_down_or_at_sigterm_fails_its_io_and_is_freed_when_unmounted",
    ) {
        return Ok(());
    }
    let dir = tempfile::tempdir_in("/var/tmp")?;
    let mut node = Node::new(dir.path(), "node0")?;
    node.start().await?;
    let config = node.config("r0", 0, &[]);
    node.up(&config).await?;
    let ends = frontends(
        &node
            .wait_for("r0", "UpToDate", |e| {
                e.status
                    .as_ref()
                    .is_some_and(|s| s.volumes[0].disk == "UpToDate")
            })
            .await?,
    )?;
    mkfs(&ends.device)?;
    let mut mounted = Mounted::new(&ends.device, &dir.path().join("mnt"))?;
    write_file(&mounted.dir.join("before.txt"), "before\n")?;

    let message = node.down("r0", true).await?;
    assert!(
        message.contains("left attached") && message.contains("mounted on"),
        "{message}"
    );
    // The engine is down: the device's I/O fails instead of reaching the disk unreplicated.
    let error = read_direct(&ends.device, 0, 4096).unwrap_err();
    assert!(
        format!("{error:#}").contains("Input/output error"),
        "{error:#}"
    );
    assert!(ends.device.exists(), "the device stays while mounted");

    // Unmounted, the next poll removes it; the resource comes up with a device again.
    mounted.unmount()?;
    let started = Instant::now();
    while ends.device.exists() {
        ensure!(
            started.elapsed() < SETTLE,
            "the left device was not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.up(&config).await?;
    let again = frontends(&node.entry("r0").await?)?;
    // What was synced before the forced down is there (the kernel replays the journal that the
    // failed unmount could not check-point).
    let mut mounted = Mounted::new(&again.device, &dir.path().join("mnt"))?;
    assert_eq!(
        std::fs::read_to_string(mounted.dir.join("before.txt"))?,
        "before\n"
    );

    // SIGTERM while mounted: the daemon ends all the same; the loop device is detached at its
    // last close (autoclear) and its links are gone, so nothing names it once it is reused.
    let status = node.terminate()?;
    assert!(status.success(), "{status}: {}", node.log_text());
    assert!(!node.device_root.join("r0").exists(), "the links");
    let name = again.loop_device.file_name().unwrap().to_string_lossy();
    let autoclear = std::fs::read_to_string(format!("/sys/block/{name}/loop/autoclear"))?;
    assert_eq!(autoclear.trim(), "1");
    mounted.unmount()?;
    let fuse = node.paths.state_dir.join("blockdev");
    let started = Instant::now();
    while attached_below(&again.loop_device, &fuse) {
        ensure!(started.elapsed() < SETTLE, "the loop device stays attached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!is_mounted(&fuse));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_through_one_node_s_block_device_is_read_through_the_other_s_nbd_export()
-> Result<()> {
    if !can_run(
        "a_file_written_through_one_node_s_block_device_is_read_through_the_other_s_nbd_export",
    ) {
        return Ok(());
    }
    let dir = tempfile::tempdir_in("/var/tmp")?;
    let mut a = Node::new(dir.path(), "node-a")?;
    let mut b = Node::new(dir.path(), "node-b")?;
    a.start().await?;
    b.start().await?;
    a.up(&a.config("r1", 0, &[(&b, 1)])).await?;
    b.up(&b.config("r1", 1, &[(&a, 0)])).await?;
    let connected = |e: &ResourceEntry| {
        e.status.as_ref().is_some_and(|s| {
            s.volumes[0].disk == "UpToDate"
                && s.peers.len() == 1
                && s.peers[0].connection == "Connected"
                && s.peers[0].volumes[0].peer_disk == "UpToDate"
        })
    };
    let on_a = frontends(&a.wait_for("r1", "connected", connected).await?)?;
    let on_b = frontends(&b.wait_for("r1", "connected", connected).await?)?;

    // Written through A's block device...
    mkfs(&on_a.device)?;
    let mut mounted = Mounted::new(&on_a.device, &dir.path().join("mnt"))?;
    let content = "written on node-a, read on node-b\n";
    write_file(&mounted.dir.join("hello.txt"), content)?;
    a.wait_for("r1", "A Primary and in use", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| s.role == "Primary" && s.in_use)
    })
    .await?;
    mounted.unmount()?;
    // ... A lets go (the poll sees the device closed, the role follows after its grace) ...
    a.wait_for("r1", "A Secondary once closed", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| s.role == "Secondary" && !s.in_use)
    })
    .await?;

    // ... and B reads it through its NBD export.
    let image = dir.path().join("copy.img");
    run("nbdcopy", &[&on_b.nbd_uri, &image.to_string_lossy()])?;
    assert_eq!(file_in_image(&image, "/hello.txt")?, content);

    // B writes through NBD (the last block, with the bytes it has): B becomes Primary ...
    let (mut nbd, _) =
        RawClient::connect(tokio::net::UnixStream::connect(&on_b.nbd_socket).await?, "").await?;
    let last = USABLE - 4096;
    let read = nbd.call(request(CMD_READ, 0, 1, last, 4096), &[]).await?;
    assert_eq!(read.error, 0);
    let reply = nbd
        .call(request(CMD_WRITE, 0, 2, last, 4096), &read.data)
        .await?;
    assert_eq!(reply.error, 0, "B's write");
    b.wait_for("r1", "B Primary while its NBD client is connected", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| s.role == "Primary" && s.in_use)
    })
    .await?;
    // ... and A's block device may read but not write meanwhile.
    assert!(read_direct(&on_a.device, last, 4096)? == read.data[..]);
    let mut block = AlignedBuf::zeroed(4096);
    block.copy_from_slice(&read.data);
    let refused = open_direct(&on_a.device)?.write_all_at(&block, last);
    assert!(refused.is_err(), "A wrote while B is Primary");
    drop(nbd);

    b.wait_for("r1", "B Secondary once its client left", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| s.role == "Secondary" && !s.in_use)
    })
    .await?;

    // A process that opens A's device without O_EXCL (as dd or a VM does) and writes: A
    // becomes Primary and stays Primary, in use, for as long as the device is open, though
    // the exclusive probe cannot see that user; it lets go once the device is closed.
    let shared = open_direct(&on_a.device)?;
    shared.write_all_at(&block, last)?;
    a.wait_for(
        "r1",
        "A Primary and in use while a process holds its device",
        |e| {
            e.status
                .as_ref()
                .is_some_and(|s| s.role == "Primary" && s.in_use)
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let entry = a.entry("r1").await?;
    assert!(
        entry
            .status
            .as_ref()
            .is_some_and(|s| s.role == "Primary" && s.in_use),
        "A demoted under a process holding its device: {entry:#?}"
    );
    drop(shared);
    a.wait_for("r1", "A Secondary once the device is closed", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| s.role == "Secondary" && !s.in_use)
    })
    .await?;
    for node in [&a, &b] {
        node.down("r1", false).await?;
    }
    assert!(a.terminate()?.success(), "{}", a.log_text());
    assert!(b.terminate()?.success(), "{}", b.log_text());
    assert!(!a.device_root.join("r1").exists() && !b.device_root.join("r1").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_block_devices_switched_off_every_volume_says_so_and_keeps_its_nbd_export()
-> Result<()> {
    // In process, no root needed: no FUSE mount, no loop device.
    let dir = tempfile::tempdir_in("/var/tmp")?;
    let node = Node::new(dir.path(), "node0")?;
    write_resource_file(&node.paths, &node.config("r0", 0, &[]))?;
    let (daemon, _listener) = Daemon::start(DaemonConfig {
        paths: node.paths.clone(),
        block_devices: BlockDeviceSetting::Disabled,
        nbd_tcp: None,
    })
    .await?;
    let Reply::Status { resources } = daemon
        .handle(Request::Status {
            resource: Some("r0".into()),
        })
        .await
    else {
        bail!("no status");
    };
    let frontend = &resources[0].frontends[0];
    assert_eq!(frontend.device_path, None);
    let reason = frontend.device_unavailable.as_deref().unwrap_or_default();
    assert!(reason.contains("--no-block-devices"), "{reason}");
    assert!(
        frontend.nbd_uri.ends_with("run/r0/0.nbd"),
        "{}",
        frontend.nbd_uri
    );
    assert!(
        !node.paths.block_device_mount().exists(),
        "no FUSE mount point"
    );
    assert!(matches!(
        daemon
            .handle(Request::Down {
                resource: "r0".into(),
                force: false
            })
            .await,
        Reply::Done { .. }
    ));
    daemon.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbd_over_tcp_is_served_on_loopback_only() -> Result<()> {
    let dir = tempfile::tempdir_in("/var/tmp")?;
    let node = Node::new(dir.path(), "node0")?;
    write_resource_file(&node.paths, &node.config("r0", 0, &[]))?;
    // Any address a peer could reach is refused, and nothing is made.
    let refused = Daemon::start(DaemonConfig {
        paths: node.paths.clone(),
        block_devices: BlockDeviceSetting::Disabled,
        nbd_tcp: Some("0.0.0.0:0".parse()?),
    })
    .await;
    let Err(error) = refused else {
        bail!("NBD on 0.0.0.0 was served");
    };
    let message = error.to_string();
    assert!(
        message.contains("no authentication") && message.contains("127.0.0.1:0"),
        "{message}"
    );
    assert!(!node.paths.control_socket().exists(), "nothing was made");
    // On loopback each volume is an export named <resource>/<volnr>, whose URI status gives.
    let (daemon, _listener) = Daemon::start(DaemonConfig {
        paths: node.paths.clone(),
        block_devices: BlockDeviceSetting::Disabled,
        nbd_tcp: Some("127.0.0.1:0".parse()?),
    })
    .await?;
    let Reply::Status { resources } = daemon
        .handle(Request::Status {
            resource: Some("r0".into()),
        })
        .await
    else {
        bail!("no status");
    };
    let uri = resources[0].frontends[0]
        .nbd_tcp_uri
        .clone()
        .unwrap_or_default();
    let address = uri
        .strip_prefix("nbd://")
        .and_then(|rest| rest.strip_suffix("/r0/0"))
        .context(format!("an NBD URI on TCP for r0/0: {uri}"))?;
    let address: std::net::SocketAddr = address.parse()?;
    assert!(address.ip().is_loopback() && address.port() != 0, "{uri}");
    // A real NBD client takes the URI as it is (scripts/setup.sh installs libnbd-bin).
    let info = tokio::process::Command::new("nbdinfo")
        .args(["--size", &uri])
        .output()
        .await
        .context("running nbdinfo")?;
    ensure!(
        info.status.success(),
        "nbdinfo --size {uri}: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    let size: u64 = String::from_utf8_lossy(&info.stdout).trim().parse()?;
    ensure!(size > 0, "export size {size}");
    daemon.shutdown().await;
    Ok(())
}
