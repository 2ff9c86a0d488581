//! Simulated nodes: the real satellite (`ferrite_satellite::Satellite`: its server, reconciler,
//! persisted desired state and ledger) running in this process, one per node, each on a fake
//! host (`ferrite_storage::fake::FakeHost`) instead of the machine's storage. So the benchmark
//! measures the controller against the satellite's own protocol implementation, and what a
//! satellite costs per delta (journal records, synced; the ledger; a pass over what the delta
//! names) is the real one.
//!
//! Each node has a directory of its own under the phase's: `state` (the satellite's state
//! directory), `pool` (its FILE_THIN pool) and, when it runs DRBD, `drbd` (its resource files).
//! The fake host makes each volume a real sparse file in `pool`, attached to a simulated loop
//! device, and gives `pool` a simulated file system of [`POOL_CAPACITY_KIB`] whose free space
//! is its size less the sizes of the volumes in it: pools on one real file system would all
//! report that file system's free space, the autoplacer's tiebreak by name would decide, and
//! the cluster would not fill evenly as one of separate disks does. The fake host keeps no
//! record of command lines (`FakeHost::unrecorded`), which a long run would pile up.
//!
//! What the nodes offer: FILE, FILE_THIN and DISKLESS pools; the STORAGE layer, and, for
//! [`Layers::DrbdDryRun`], DRBD as a dry run (resource files written, drbdadm's command lines
//! logged, nothing run), which the controller uses for definitions that force DRBD with
//! `Ferrite/ReplicationEngine`. No MIRROR: the fake host starts no `ferrite-mirrord`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use ferrite_satellite::capabilities::LayerProbe;
use ferrite_satellite::config::SatelliteConfig;
use ferrite_satellite::{Host, Satellite};
use ferrite_storage::HostPaths;
use ferrite_storage::fake::FakeHost;
use ferrite_types::NodeName;

/// The size of every simulated pool: 1 PiB, so 100,000 volumes of any benchmark size fit.
pub const POOL_CAPACITY_KIB: u64 = 1 << 40;

/// The replication layers the nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layers {
    /// STORAGE only: every resource is an unreplicated volume.
    StorageOnly,
    /// STORAGE, and DRBD as a dry run.
    DrbdDryRun,
}

/// One simulated node.
pub struct SimulatedNode {
    pub name: String,
    /// Where its satellite listens.
    pub address: SocketAddr,
    /// Its FILE_THIN pool's directory.
    pub pool_dir: PathBuf,
    satellite: Satellite,
}

/// The simulated nodes and the runtime their satellites run on.
pub struct SimulatedNodes {
    pub nodes: Vec<SimulatedNode>,
    runtime: tokio::runtime::Runtime,
}

impl SimulatedNodes {
    /// Starts `count` nodes named `sim1`, `sim2`, ... on free loopback ports, each with its
    /// directory under `dir`.
    pub fn start(count: usize, dir: &Path, layers: Layers) -> Result<SimulatedNodes> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("simulated-satellite")
            .enable_all()
            .build()?;
        let mut nodes = Vec::new();
        for i in 1..=count {
            let name = format!("sim{i}");
            let node = runtime
                .block_on(start_node(&name, &dir.join(&name), layers))
                .with_context(|| format!("starting the satellite of simulated node {name}"))?;
            nodes.push(node);
        }
        Ok(SimulatedNodes { nodes, runtime })
    }

    /// Stops every satellite (their connections close, their state stays on disk).
    pub fn shutdown(self) {
        for node in self.nodes {
            self.runtime.block_on(node.satellite.shutdown());
        }
        self.runtime.shutdown_background();
    }
}

async fn start_node(name: &str, dir: &Path, layers: Layers) -> Result<SimulatedNode> {
    let state_dir = dir.join("state");
    let pool_dir = dir.join("pool");
    let host_dir = dir.join("host");
    for d in [&state_dir, &pool_dir, &host_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // The loop driver's control device, as the provider detection looks for it; device-mapper
    // and ZFS stay missing, so LVM and ZFS pools are not offered.
    let loop_control = host_dir.join("loop-control");
    std::fs::write(&loop_control, b"")?;
    let host = Arc::new(FakeHost::unrecorded());
    host.simulate_file_system(&pool_dir, POOL_CAPACITY_KIB);
    let paths = HostPaths {
        loop_control,
        device_mapper_control: host_dir.join("device-mapper-control"),
        zfs_control: host_dir.join("zfs"),
    };
    let layers_probe = LayerProbe {
        proc_drbd: host_dir.join("proc-drbd"),
        sys_drbd_version: host_dir.join("sys-drbd-version"),
        // Never the machine's ferrite-mirrord: this host cannot start it.
        mirrord: None,
        satellite_dir: None,
        search_path: None,
        ..LayerProbe::default()
    };
    let mut config = SatelliteConfig::new("127.0.0.1:0".parse()?, state_dir);
    config.node_name = Some(NodeName::new(name)?);
    config.drbd_resource_dir = dir.join("drbd");
    config.drbd_dry_run = layers == Layers::DrbdDryRun;
    if config.drbd_dry_run {
        std::fs::create_dir_all(&config.drbd_resource_dir)?;
    }
    let satellite = Satellite::start(
        config,
        Host {
            runner: host,
            paths,
            layers: layers_probe,
        },
    )
    .await?;
    Ok(SimulatedNode {
        name: name.to_string(),
        address: satellite.local_addr(),
        pool_dir,
        satellite,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ferrite_proto::{
        ControllerMessage, DesiredState, PROTOCOL_VERSION, PoolSpec, ResourceSpec,
        SatelliteMessage, VolumeSpec, frames, read_frame, write_frame,
    };
    use ferrite_types::{LayerKind, ProviderKind};
    use tokio::net::TcpStream;

    use super::*;

    /// A node answers the controller's protocol with its own satellite: the capabilities of
    /// `layers`, and a pool whose free capacity is its simulated size less its volumes.
    fn answers_with_the_real_satellite(layers: Layers) {
        let dir = tempfile::tempdir().unwrap();
        let nodes = SimulatedNodes::start(1, dir.path(), layers).unwrap();
        let node = &nodes.nodes[0];
        let (address, pool_dir) = (node.address, node.pool_dir.clone());
        let (capabilities, report) = nodes.runtime.block_on(async move {
            let mut stream = frames(TcpStream::connect(address).await.unwrap());
            let hello = ControllerMessage::Hello {
                node_uuid: String::new(),
                protocol_version: PROTOCOL_VERSION,
                cluster_id: "bench".into(),
                node_name: "sim1".into(),
                controller_version: "test".into(),
            };
            write_frame(&mut stream, &hello).await.unwrap();
            let SatelliteMessage::Welcome { capabilities, .. } =
                read_frame(&mut stream).await.unwrap()
            else {
                panic!("expected Welcome");
            };
            let volume = VolumeSpec {
                minor: None,
                restore_from: None,
                identity: String::new(),
                deleting: false,
                volume_number: 0,
                size_kib: 4096,
                storage_pool: "bench_pool".into(),
            };
            let state = DesiredState {
                epoch: 0,
                generation: 1,
                base_generation: None,
                storage_pools: vec![PoolSpec {
                    uuid: String::new(),
                    name: "bench_pool".into(),
                    provider_kind: ProviderKind::FileThin,
                    pool_name: pool_dir.display().to_string(),
                    props: BTreeMap::new(),
                }],
                resources: vec![ResourceSpec {
                    replication: None,
                    snapshots: Vec::new(),
                    suspend_io: false,
                    uuid: String::new(),
                    deleting: false,
                    inactive: false,
                    name: "bench00000".into(),
                    layers: vec![LayerKind::Storage],
                    diskless: false,
                    volumes: vec![volume],
                }],
                removed_resources: vec![],
            };
            write_frame(&mut stream, &ControllerMessage::ApplyState(state))
                .await
                .unwrap();
            loop {
                match read_frame(&mut stream).await.unwrap() {
                    SatelliteMessage::Applied { report, .. } => break (capabilities, report),
                    SatelliteMessage::Report { .. } => continue,
                    other => panic!("expected Applied, got {other:?}"),
                }
            }
        });
        nodes.shutdown();
        assert!(capabilities.supports_provider(ProviderKind::FileThin));
        assert!(!capabilities.supports_layer(LayerKind::Mirror));
        assert_eq!(
            capabilities.dry_run_layers.contains(&LayerKind::Drbd),
            layers == Layers::DrbdDryRun
        );
        assert_eq!(report.volumes.len(), 1);
        assert_eq!(report.volumes[0].disk_state, "UpToDate");
        assert_eq!(
            report.storage_pools[0].free_capacity_kib,
            Some(POOL_CAPACITY_KIB - 4096)
        );
        assert!(dir.path().join("sim1/state").is_dir());
    }

    #[test]
    fn a_storage_node_answers_with_the_real_satellite() {
        answers_with_the_real_satellite(Layers::StorageOnly);
    }

    #[test]
    fn a_drbd_dry_run_node_offers_drbd_as_a_dry_run() {
        answers_with_the_real_satellite(Layers::DrbdDryRun);
    }
}
