//! A cluster of real Ferrite processes for tests and benchmarks.
//!
//! [`Cluster`] starts `ferrite-controller` and N `ferrite-satellite`s as child processes on
//! loopback, each satellite with its own state directory and a FILE_THIN pool directory, all
//! under one temporary directory. Tests talk to the controller over real HTTP ([`Rest`]), kill
//! processes with SIGKILL or stop the controller with SIGTERM, and restart them. Dropping the
//! cluster kills every process and detaches the loop devices its satellites attached, so a
//! failed test leaves nothing behind.
//!
//! [`ClusterState`] captures the desired state a client can read and compares two captures
//! object for object; [`AbsentSatellite`] holds an address for a node that stays OFFLINE.
//! [`data::Pattern`] puts known, self-describing data into volumes and checks every byte of
//! it, through a replicated volume's NBD export with [`nbd`]; [`mount::MountedImage`] is a small ext4 file system to put a pool on, unmount and fill.
//! [`compat::run_python_linstor`] runs a python-linstor suite of `tests/compat/` on a fresh cluster;
//! [`drbd::drbdadm_accepts`] has the real drbd-utils read a resource file as its node would.
//!
//! The binaries come from the cargo target directory of the running test (`cargo test
//! --workspace` builds them), or from `FERRITE_BIN_DIR`.

mod absent;
pub mod compat;
pub mod data;
pub mod drbd;
pub mod mount;
pub mod nbd;
mod process;
mod rest;
pub mod state;

pub use absent::AbsentSatellite;
pub use process::{
    Binaries, ControllerProcess, Finished, STOP_TIMEOUT, SatelliteProcess, free_port, is_root,
    kill_mirrord, node_address,
};
pub use rest::{Reply, Rest};
pub use state::{ClusterState, StateDiff};

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// A controller and its satellites.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub controller: ControllerProcess,
    pub satellites: Vec<SatelliteProcess>,
    pub binaries: Binaries,
}

impl Cluster {
    /// Starts a controller and `nodes` satellites named `node1`, `node2`, ... (not yet
    /// registered with the controller).
    pub fn start(nodes: usize) -> Result<Cluster> {
        Cluster::start_with(nodes, &[])
    }

    /// Like [`Cluster::start`], every satellite with `satellite_args` added to its flags (e.g.
    /// `--reconcile-interval 1`).
    pub fn start_with(nodes: usize, satellite_args: &[&str]) -> Result<Cluster> {
        let binaries = Binaries::locate()?;
        let dir = tempfile::Builder::new().prefix("ferrite-test-").tempdir()?;
        let controller = ControllerProcess::start(&binaries, dir.path())?;
        let satellite_args: Vec<String> = satellite_args.iter().map(|a| a.to_string()).collect();
        let mut satellites = Vec::new();
        for i in 1..=nodes {
            satellites.push(SatelliteProcess::start_with(
                &binaries,
                dir.path(),
                &format!("node{i}"),
                &satellite_args,
            )?);
        }
        Ok(Cluster {
            dir,
            controller,
            satellites,
            binaries,
        })
    }

    /// The REST client of the controller.
    pub fn rest(&self) -> Rest {
        self.controller.rest()
    }

    pub fn satellite(&self, name: &str) -> &SatelliteProcess {
        self.satellites
            .iter()
            .find(|s| s.name == name)
            .expect("no such satellite")
    }

    pub fn satellite_mut(&mut self, name: &str) -> &mut SatelliteProcess {
        self.satellites
            .iter_mut()
            .find(|s| s.name == name)
            .expect("no such satellite")
    }

    /// The FILE_THIN pool directory of a node (created on first use).
    pub fn pool_dir(&self, node: &str) -> PathBuf {
        let dir = self.dir.path().join("pools").join(node);
        std::fs::create_dir_all(&dir).expect("create pool dir");
        dir
    }

    /// Registers every satellite as a COMBINED node and gives each a FILE_THIN pool named
    /// `pool`; waits until all are online.
    pub fn register_nodes_with_pool(&self, pool: &str) -> Result<()> {
        self.register_nodes()?;
        for satellite in &self.satellites {
            self.create_storage_pool(
                &satellite.name,
                pool,
                "FILE_THIN",
                &self.pool_dir(&satellite.name),
            )?;
        }
        Ok(())
    }

    /// Registers every satellite as a COMBINED node, without storage pools; waits until all
    /// are online.
    pub fn register_nodes(&self) -> Result<()> {
        for satellite in &self.satellites {
            self.register_node(&satellite.name)?.expect_success()?;
        }
        self.wait_online(Duration::from_secs(20))
    }

    /// `POST /v1/nodes` for the satellite `name` at its address, as a COMBINED node; the
    /// controller's answer, whatever it is.
    pub fn register_node(&self, name: &str) -> Result<Reply> {
        let satellite = self.satellite(name);
        self.rest()
            .post(
                "/v1/nodes",
                &json!({
                    "name": satellite.name,
                    "type": "combined",
                    "net_interfaces": [{
                        "name": "default",
                        "address": satellite.address.ip().to_string(),
                        "satellite_port": satellite.address.port(),
                        "satellite_encryption_type": "plain",
                        "is_active": true
                    }]
                }),
            )
            .context("node create")
    }

    /// Creates storage pool `pool` of `provider_kind` (FILE, FILE_THIN) in directory `dir` on
    /// `node`; fails unless the controller accepts it.
    pub fn create_storage_pool(
        &self,
        node: &str,
        pool: &str,
        provider_kind: &str,
        dir: &Path,
    ) -> Result<()> {
        let reply = self.rest().post(
            &format!("/v1/nodes/{node}/storage-pools"),
            &json!({
                "storage_pool_name": pool,
                "provider_kind": provider_kind,
                "props": {"StorDriver/StorPoolName": dir.to_string_lossy()}
            }),
        )?;
        reply
            .expect_success()
            .with_context(|| format!("storage pool create {pool} on {node}"))?;
        Ok(())
    }

    /// Waits until every registered node is ONLINE.
    pub fn wait_online(&self, timeout: Duration) -> Result<()> {
        let rest = self.rest();
        wait_until(timeout, || {
            let nodes = rest.get("/v1/nodes")?.json;
            Ok(nodes.as_array().is_some_and(|n| {
                !n.is_empty() && n.iter().all(|n| n["connection_status"] == "ONLINE")
            }))
        })
        .context("waiting for every node to be ONLINE")
    }
}

/// Lazily unmounts every mount point under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|target| target.starts_with(&prefix))
        .collect();
    targets.sort_unstable_by_key(|t| std::cmp::Reverse(t.len()));
    for target in targets {
        let _ = std::process::Command::new("umount")
            .args(["-l", target])
            .status();
    }
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if std::time::Instant::now() > deadline {
            return Err(match last_error {
                Some(e) => e.context(format!("condition not met within {timeout:?}")),
                None => anyhow::anyhow!("condition not met within {timeout:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it has returned true on every poll for `steady` in a row, or `timeout`
/// passes. For a state read from a view that may lag behind what a test just did: a MIRROR
/// member's role reaches the controller about 100 ms after it changes, and it demotes 500 ms
/// after its last client, so a view read right after an NBD client left can still be the one
/// from before the client came.
pub fn wait_until_steady(
    timeout: Duration,
    steady: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let mut since: Option<std::time::Instant> = None;
    wait_until(timeout, || {
        if !check()? {
            since = None;
            return Ok(false);
        }
        Ok(since.get_or_insert_with(std::time::Instant::now).elapsed() >= steady)
    })
}

/// How long a MIRROR resource must be seen unused in a row before a test trusts it
/// ([`wait_until_steady`]).
pub const UNUSED_STEADY: Duration = Duration::from_millis(1500);

/// Loop devices whose backing file is under `dir`.
pub fn loop_devices_under(dir: &Path) -> Vec<String> {
    let Ok(output) = std::process::Command::new("losetup")
        .args(["--list", "--json"])
        .output()
    else {
        return Vec::new();
    };
    let parsed: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let prefix = dir.to_string_lossy().to_string();
    parsed["loopdevices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| {
            d["back-file"]
                .as_str()
                .is_some_and(|f| f.trim_end_matches(" (deleted)").starts_with(&prefix))
        })
        .filter_map(|d| d["name"].as_str().map(str::to_string))
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        self.controller.kill();
        for satellite in &mut self.satellites {
            satellite.kill();
            process::kill_mirrord(&satellite.state_dir);
        }
        if failing {
            self.controller.print_log_tail();
            for satellite in &self.satellites {
                satellite.print_log_tail();
            }
        }
        // A killed engine leaves its FUSE file system mounted under the cluster's directory.
        unmount_under(self.dir.path());
        for device in loop_devices_under(self.dir.path()) {
            let _ = std::process::Command::new("losetup")
                .args(["-d", &device])
                .status();
        }
    }
}
