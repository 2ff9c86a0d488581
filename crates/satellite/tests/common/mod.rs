//! The test harness: the real `ferrite-satellite` binary as a process, and a fake controller that
//! speaks ferrite-proto to it over TCP.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ferrite_proto::{
    ControllerMessage, DesiredState, FrameError, Frames, HeldState, PROTOCOL_VERSION, PoolSpec,
    ResourceSpec, SatelliteMessage, VolumeSpec, frames, read_frame, write_frame,
};
use ferrite_storage::{CommandLine, HostCommands, SystemCommands};
use ferrite_types::{LayerKind, ProviderKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long any single answer may take before a test fails.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the test can create loop devices. CI runs as root; elsewhere the test says why it
/// does nothing.
pub fn running_as_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping {test}: it needs root to create loop devices");
    }
    root
}

/// A free TCP port on 127.0.0.1 (free when asked; the satellite binds it right after).
fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// One satellite process with its own state directory and FILE_THIN pool directory. Killed
/// when dropped; every loop device over a file in its pool directory is detached.
pub struct SatelliteProcess {
    child: Option<Child>,
    pub address: SocketAddr,
    pub extra_args: Vec<String>,
    pub root: tempfile::TempDir,
}

impl SatelliteProcess {
    pub fn start(extra_args: &[&str]) -> SatelliteProcess {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("pool")).unwrap();
        std::fs::write(root.path().join("satellite.toml"), "").unwrap();
        let mut process = SatelliteProcess {
            child: None,
            address: free_address(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            root,
        };
        process.spawn();
        process
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn pool_dir(&self) -> PathBuf {
        self.root.path().join("pool")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("satellite.log")).unwrap_or_default()
    }

    #[allow(clippy::disallowed_types)] // starting the program under test, not a host command
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("satellite.log"))
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite-satellite"))
            .arg("--listen")
            .arg(self.address.to_string())
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--config")
            .arg(self.root.path().join("satellite.toml"))
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferrite-satellite");
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            if std::net::TcpStream::connect(self.address).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the satellite exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the satellite did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + ANSWER_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(status.success(), "exit status {status}:\n{}", self.log());
                    return;
                }
                assert!(Instant::now() < deadline, "no exit after SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn restart_after_kill_9(&mut self) {
        self.kill_9();
        self.spawn();
    }

    pub fn pool(&self) -> PoolSpec {
        PoolSpec {
            uuid: String::new(),
            name: "files".into(),
            provider_kind: ProviderKind::FileThin,
            pool_name: self.pool_dir().to_str().unwrap().into(),
            props: BTreeMap::new(),
        }
    }

    pub fn full_state(&self, generation: u64, resources: Vec<ResourceSpec>) -> DesiredState {
        DesiredState {
            epoch: 0,
            generation,
            base_generation: None,
            storage_pools: vec![
                self.pool(),
                PoolSpec {
                    uuid: String::new(),
                    name: "DfltDisklessStorPool".into(),
                    provider_kind: ProviderKind::Diskless,
                    pool_name: String::new(),
                    props: BTreeMap::new(),
                },
            ],
            resources,
            removed_resources: vec![],
        }
    }

    pub fn image(&self, backing_name: &str) -> PathBuf {
        self.pool_dir().join(format!("{backing_name}.img"))
    }
}

impl Drop for SatelliteProcess {
    fn drop(&mut self) {
        self.kill_9();
        detach_loop_devices_under(&self.pool_dir());
    }
}

/// Detaches every loop device whose backing file is under `dir`.
pub fn detach_loop_devices_under(dir: &Path) {
    for (device, file) in loop_devices() {
        if file.starts_with(dir) {
            let _ =
                SystemCommands::new().run(&CommandLine::new("losetup").args(["--detach", &device]));
        }
    }
}

/// Every loop device with a backing file, from the kernel's view in /sys.
pub fn loop_devices() -> Vec<(String, PathBuf)> {
    let mut devices = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return devices;
    };
    for entry in entries.flatten() {
        let backing = entry.path().join("loop/backing_file");
        if let Ok(text) = std::fs::read_to_string(&backing) {
            let file = text.trim().trim_end_matches(" (deleted)");
            devices.push((
                format!("/dev/{}", entry.file_name().to_string_lossy()),
                PathBuf::from(file),
            ));
        }
    }
    devices.sort();
    devices
}

/// The loop devices backed by `file`.
pub fn loop_devices_of(file: &Path) -> Vec<String> {
    loop_devices()
        .into_iter()
        .filter(|(_, backing)| backing == file)
        .map(|(device, _)| device)
        .collect()
}

/// Size of a block device in KiB, from /sys.
pub fn device_size_kib(device: &str) -> u64 {
    let name = device.trim_start_matches("/dev/");
    let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    sectors / 2
}

pub fn resource(name: &str, sizes_kib: &[u64]) -> ResourceSpec {
    ResourceSpec {
        replication: None,
        snapshots: Vec::new(),
        suspend_io: false,
        uuid: format!("rsc-{name}"),
        deleting: false,
        inactive: false,
        name: name.into(),
        layers: vec![LayerKind::Storage],
        diskless: false,
        volumes: sizes_kib
            .iter()
            .enumerate()
            .map(|(number, size)| VolumeSpec {
                minor: None,
                restore_from: None,
                identity: format!("vd-{name}-{number}"),
                deleting: false,
                volume_number: number as u16,
                size_kib: *size,
                storage_pool: "files".into(),
            })
            .collect(),
    }
}

/// The same resource, marked for deletion.
pub fn deleting(mut resource: ResourceSpec) -> ResourceSpec {
    resource.deleting = true;
    resource
}

pub fn diskless(name: &str) -> ResourceSpec {
    ResourceSpec {
        replication: None,
        snapshots: Vec::new(),
        suspend_io: false,
        uuid: String::new(),
        deleting: false,
        inactive: false,
        name: name.into(),
        layers: vec![LayerKind::Storage],
        diskless: true,
        volumes: vec![VolumeSpec {
            minor: None,
            restore_from: None,
            identity: String::new(),
            deleting: false,
            volume_number: 0,
            size_kib: 4096,
            storage_pool: "DfltDisklessStorPool".into(),
        }],
    }
}

/// A fake controller: one TCP connection speaking ferrite-proto.
pub struct Controller {
    pub stream: Frames<TcpStream>,
}

impl Controller {
    pub async fn connect(satellite: &SatelliteProcess) -> Controller {
        let stream = TcpStream::connect(satellite.address).await.unwrap();
        Controller {
            stream: frames(stream),
        }
    }

    pub async fn send(&mut self, message: &ControllerMessage) {
        write_frame(&mut self.stream, message).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
        self.stream.get_mut().flush().await.unwrap();
    }

    pub async fn recv(&mut self) -> SatelliteMessage {
        tokio::time::timeout(ANSWER_TIMEOUT, read_frame(&mut self.stream))
            .await
            .expect("an answer in time")
            .expect("a valid frame")
    }

    /// Waits for the satellite to close the connection.
    pub async fn expect_closed(&mut self) {
        let read = tokio::time::timeout(
            ANSWER_TIMEOUT,
            read_frame::<_, SatelliteMessage>(&mut self.stream),
        )
        .await
        .expect("the satellite closes the connection in time");
        match read {
            Err(FrameError::Closed) | Err(FrameError::Io(_)) => {}
            other => panic!("expected the connection to be closed, got {other:?}"),
        }
    }

    pub async fn hello_with(
        &mut self,
        protocol_version: u32,
        cluster: &str,
        node: &str,
    ) -> SatelliteMessage {
        self.send(&ControllerMessage::Hello {
            node_uuid: String::new(),
            protocol_version,
            cluster_id: cluster.into(),
            node_name: node.into(),
            controller_version: "test-controller".into(),
        })
        .await;
        self.recv().await
    }

    pub async fn hello(&mut self, cluster: &str, node: &str) -> SatelliteMessage {
        self.hello_with(PROTOCOL_VERSION, cluster, node).await
    }

    /// Connects and completes the handshake as `node1` of `cluster-a`.
    pub async fn session(satellite: &SatelliteProcess) -> Controller {
        Controller::session_holding(satellite).await.0
    }

    /// [`Controller::session`], with the state the `Welcome` says the node holds.
    pub async fn session_holding(satellite: &SatelliteProcess) -> (Controller, Option<HeldState>) {
        let mut controller = Controller::connect(satellite).await;
        match controller.hello("cluster-a", "node1").await {
            SatelliteMessage::Welcome { holds, .. } => (controller, holds),
            other => panic!("expected Welcome, got {other:?}\n{}", satellite.log()),
        }
    }

    /// Says the node's full state at `generation` is the one it holds, with `digest`; returns
    /// the answer (skipping unprompted reports).
    pub async fn apply_same(&mut self, generation: u64, digest: &str) -> SatelliteMessage {
        self.send(&ControllerMessage::ApplySameState {
            epoch: 0,
            generation,
            digest: digest.to_string(),
        })
        .await;
        loop {
            match self.recv().await {
                SatelliteMessage::Report { .. } => continue,
                other => return other,
            }
        }
    }

    /// Sends a state and returns the answer (skipping unprompted reports).
    pub async fn apply(&mut self, state: DesiredState) -> SatelliteMessage {
        self.send(&ControllerMessage::ApplyState(state)).await;
        loop {
            match self.recv().await {
                SatelliteMessage::Report { .. } => continue,
                other => return other,
            }
        }
    }
}

pub fn applied(message: SatelliteMessage) -> (u64, ferrite_proto::NodeReport) {
    match message {
        SatelliteMessage::Applied { generation, report } => (generation, report),
        other => panic!("expected Applied, got {other:?}"),
    }
}
