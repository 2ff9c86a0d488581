//! Simulated satellites: in-process nodes that speak the real controller–satellite protocol
//! (`ferrite-proto`) on loopback ports, keep their desired state in memory and answer at once.
//!
//! They do what `ferrite-satellite` does on the wire and nothing on the host: the handshake
//! (`Hello` → `Welcome` with capabilities, or `Refused` for a wrong node name or version), a
//! full `ApplyState` replaces the state, a delta applies on top of the generation it was made
//! for (else `NeedFullState`), `Applied` carries every pool and, as the real satellite's does,
//! every volume after a full state and the volumes of the resources a delta named after a delta
//! (`only_resources`), `CheckPool` → `PoolChecked`, `Ping` → `Pong`.
//!
//! One difference, on purpose: a pool's free capacity is its size minus the sizes of the
//! volumes in it. A real FILE_THIN pool reports the file system's free space, which sparse
//! files barely touch, so four real pools on one file system look alike and the autoplacer's
//! name tiebreak decides; with this accounting the simulated cluster is filled evenly, as
//! a cluster of separate disks would be.
//!
//! The used capacity of each pool is a running total kept as states are applied, and the answer
//! to a delta is built from the named resources only, so it costs the same on a full node as on
//! an empty one. A volume keeps the loop device it was given when it was first held.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use ferrite_proto::{
    Capabilities, ControllerMessage, DeletedResource, DeletedVolume, DesiredState, FrameError,
    NodeReport, PROTOCOL_VERSION, PoolReport, PoolSpec, Refusal, ResourceSpec, SatelliteMessage,
    VolumeReport, frames, is_compatible, read_frame, write_frame,
};
use ferrite_types::{LayerKind, ProviderKind};
use tokio::net::{TcpListener, TcpStream};

/// The size of every simulated pool: 1 PiB, so 10,000 volumes of any test size fit.
pub const POOL_CAPACITY_KIB: u64 = 1 << 40;

/// What one simulated node has been told.
///
/// Everything a report sums is kept as a running total that `apply` updates for the resources
/// a state names, so an answer to a delta costs what the delta named, not the node's size.
#[derive(Debug, Default)]
struct NodeState {
    generation: Option<u64>,
    pools: Vec<PoolSpec>,
    /// Keyed by the upper-cased resource name, as the satellite compares names.
    resources: BTreeMap<String, HeldResource>,
    /// KiB held by the volumes in each pool, keyed by the upper-cased pool name.
    used_kib: BTreeMap<String, u64>,
    /// The next loop device number to hand out.
    next_device: u64,
}

/// A resource as the node holds it: its spec and, per volume that holds storage, the pool
/// it is in (upper-cased once, here) and the loop device it was given.
#[derive(Debug)]
struct HeldResource {
    spec: ResourceSpec,
    /// Keyed by volume number; only volumes the node holds storage for.
    held: BTreeMap<u16, HeldVolume>,
}

#[derive(Debug, Clone)]
struct HeldVolume {
    pool_key: String,
    size_kib: u64,
    device: u64,
}

impl NodeState {
    /// Takes a desired state; `false` if a delta does not fit.
    fn apply(&mut self, state: DesiredState) -> bool {
        match state.base_generation {
            None => {
                let kept: BTreeSet<String> = state
                    .resources
                    .iter()
                    .map(|r| r.name.to_ascii_uppercase())
                    .collect();
                let gone: Vec<String> = self
                    .resources
                    .keys()
                    .filter(|key| !kept.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    self.remove(&key);
                }
            }
            Some(base) if Some(base) == self.generation => {}
            Some(_) => return false,
        }
        for name in &state.removed_resources {
            self.remove(&name.to_ascii_uppercase());
        }
        for resource in state.resources {
            self.insert(resource);
        }
        self.pools = state.storage_pools;
        self.generation = Some(state.generation);
        true
    }

    /// Forgets a resource and releases what its volumes held.
    fn remove(&mut self, key: &str) -> Option<HeldResource> {
        let old = self.resources.remove(key)?;
        for volume in old.held.values() {
            if let Some(used) = self.used_kib.get_mut(&volume.pool_key) {
                *used = used.saturating_sub(volume.size_kib);
            }
        }
        Some(old)
    }

    /// Takes a new or changed resource; a volume it held before keeps its loop device.
    fn insert(&mut self, spec: ResourceSpec) {
        let key = spec.name.to_ascii_uppercase();
        let before = self.remove(&key).map(|r| r.held).unwrap_or_default();
        let mut held = BTreeMap::new();
        for volume in spec.volumes.iter().filter(|v| spec.wants_disk(v)) {
            let device = match before.get(&volume.volume_number) {
                Some(old) => old.device,
                None => {
                    self.next_device += 1;
                    self.next_device - 1
                }
            };
            let pool_key = volume.storage_pool.to_ascii_uppercase();
            *self.used_kib.entry(pool_key.clone()).or_default() += volume.size_kib;
            held.insert(
                volume.volume_number,
                HeldVolume {
                    pool_key,
                    size_kib: volume.size_kib,
                    device,
                },
            );
        }
        self.resources.insert(key, HeldResource { spec, held });
    }

    fn pool_report(pool: &PoolSpec, used_kib: u64) -> PoolReport {
        let diskless = pool.provider_kind == ProviderKind::Diskless;
        PoolReport {
            name: pool.name.clone(),
            provider_kind: pool.provider_kind,
            free_capacity_kib: (!diskless).then(|| POOL_CAPACITY_KIB.saturating_sub(used_kib)),
            total_capacity_kib: (!diskless).then_some(POOL_CAPACITY_KIB),
            errors: Vec::new(),
        }
    }

    /// The node as a converged satellite reports it: every pool, and the volumes of `only`
    /// (the resources a delta named), or of every resource for `None`.
    fn report(&self, only: Option<Vec<String>>) -> NodeReport {
        let mut report = NodeReport {
            generation: self.generation,
            storage_pools: self
                .pools
                .iter()
                .map(|p| {
                    let used = self.used_kib.get(&p.name.to_ascii_uppercase());
                    Self::pool_report(p, used.copied().unwrap_or(0))
                })
                .collect(),
            ..NodeReport::default()
        };
        match &only {
            None => {
                for resource in self.resources.values() {
                    self.report_resource(resource, &mut report);
                }
            }
            Some(names) => {
                let keys: BTreeSet<String> = names.iter().map(|n| n.to_ascii_uppercase()).collect();
                for key in &keys {
                    if let Some(resource) = self.resources.get(key) {
                        self.report_resource(resource, &mut report);
                    }
                }
            }
        }
        report.only_resources = only;
        report
    }

    /// Adds one resource's volumes and deletions to `report`.
    fn report_resource(&self, held: &HeldResource, report: &mut NodeReport) {
        let resource = &held.spec;
        if resource.deleting {
            report.deleted_resources.push(DeletedResource {
                resource: resource.name.clone(),
                uuid: resource.uuid.clone(),
            });
        }
        for volume in &resource.volumes {
            let diskless_volume = VolumeReport {
                resource: resource.name.clone(),
                volume_number: volume.volume_number,
                device_path: None,
                allocated_size_kib: None,
                usable_size_kib: None,
                disk_state: "Diskless".to_string(),
                error: None,
            };
            if resource.deletes(volume) {
                // Deleted as soon as asked: nothing is held for it.
                report.deleted_volumes.push(DeletedVolume {
                    resource: resource.name.clone(),
                    volume_number: volume.volume_number,
                    identity: volume.identity.clone(),
                });
                if !resource.deleting {
                    report.volumes.push(diskless_volume);
                }
                continue;
            }
            let in_diskless_pool = self.pools.iter().any(|p| {
                p.name.eq_ignore_ascii_case(&volume.storage_pool)
                    && p.provider_kind == ProviderKind::Diskless
            });
            match held.held.get(&volume.volume_number) {
                Some(disk) if !in_diskless_pool => report.volumes.push(VolumeReport {
                    device_path: Some(format!("/dev/loop{}", disk.device)),
                    allocated_size_kib: Some(0),
                    usable_size_kib: Some(volume.size_kib),
                    disk_state: "UpToDate".to_string(),
                    ..diskless_volume
                }),
                _ => report.volumes.push(diskless_volume),
            }
        }
    }
}

/// Counters of one simulated node.
#[derive(Debug, Default)]
pub struct NodeCounters {
    pub sessions: AtomicU64,
    pub applied: AtomicU64,
    pub full_states: AtomicU64,
    pub need_full_state: AtomicU64,
}

/// One simulated satellite.
pub struct SimulatedSatellite {
    pub name: String,
    pub address: SocketAddr,
    pub counters: Arc<NodeCounters>,
    state: Arc<Mutex<NodeState>>,
}

impl SimulatedSatellite {
    /// How many resources the node has been told about.
    pub fn resource_count(&self) -> usize {
        self.state.lock().expect("node state").resources.len()
    }

    /// How many of them are replicated (members of a MIRROR or DRBD resource).
    pub fn replicated_count(&self) -> usize {
        let state = self.state.lock().expect("node state");
        state
            .resources
            .values()
            .filter(|r| r.spec.replication.is_some())
            .count()
    }

    /// How many desired states it applied.
    pub fn applied(&self) -> u64 {
        self.counters.applied.load(Ordering::Relaxed)
    }
}

/// The simulated nodes and the runtime they run on.
pub struct SimulatedNodes {
    pub satellites: Vec<SimulatedSatellite>,
    runtime: tokio::runtime::Runtime,
}

impl SimulatedNodes {
    /// Starts `count` nodes named `sim1`, `sim2`, ... on free loopback ports, with the
    /// STORAGE layer only.
    pub fn start(count: usize) -> Result<SimulatedNodes> {
        Self::start_with(count, false)
    }

    /// Starts `count` nodes that also run the MIRROR layer: they take replicated resources as
    /// any other, and report no engine state.
    pub fn start_replicating(count: usize) -> Result<SimulatedNodes> {
        Self::start_with(count, true)
    }

    fn start_with(count: usize, replicating: bool) -> Result<SimulatedNodes> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("simulated-satellite")
            .enable_all()
            .build()?;
        let mut satellites = Vec::new();
        for i in 1..=count {
            let name = format!("sim{i}");
            let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
            let address = listener.local_addr()?;
            let state = Arc::new(Mutex::new(NodeState::default()));
            let counters = Arc::new(NodeCounters::default());
            runtime.spawn(serve(
                listener,
                replicating,
                name.clone(),
                state.clone(),
                counters.clone(),
            ));
            satellites.push(SimulatedSatellite {
                name,
                address,
                counters,
                state,
            });
        }
        Ok(SimulatedNodes {
            satellites,
            runtime,
        })
    }

    /// Stops every node (their connections close).
    pub fn shutdown(self) {
        self.runtime.shutdown_background();
    }
}

fn capabilities(replicating: bool) -> Capabilities {
    let mut resource_layers = vec![LayerKind::Storage];
    if replicating {
        resource_layers.push(LayerKind::Mirror);
    }
    Capabilities {
        storage_providers: vec![
            ProviderKind::Diskless,
            ProviderKind::File,
            ProviderKind::FileThin,
        ],
        unsupported_providers: BTreeMap::new(),
        resource_layers,
        unsupported_layers: BTreeMap::new(),
        dry_run_layers: Vec::new(),
    }
}

async fn serve(
    listener: TcpListener,
    replicating: bool,
    name: String,
    state: Arc<Mutex<NodeState>>,
    counters: Arc<NodeCounters>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        let state = state.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            if let Err(e) = session(stream, replicating, &name, &state, &counters).await
                && !matches!(e, FrameError::Closed)
            {
                eprintln!("simulated satellite {name}: session ended: {e}");
            }
        });
    }
}

/// One controller session: handshake, then answer every message in order.
async fn session(
    stream: TcpStream,
    replicating: bool,
    name: &str,
    state: &Mutex<NodeState>,
    counters: &NodeCounters,
) -> Result<(), FrameError> {
    let _ = stream.set_nodelay(true);
    let mut stream = frames(stream);
    let hello: ControllerMessage = read_frame(&mut stream).await?;
    let ControllerMessage::Hello {
        protocol_version,
        node_name,
        ..
    } = hello
    else {
        return Ok(());
    };
    let refusal = if !is_compatible(protocol_version) {
        Some(Refusal::VersionMismatch {
            controller: protocol_version,
            satellite_min: ferrite_proto::MIN_PROTOCOL_VERSION,
            satellite_max: PROTOCOL_VERSION,
        })
    } else if !node_name.eq_ignore_ascii_case(name) {
        Some(Refusal::NodeNameMismatch {
            controller: node_name,
            satellite: name.to_string(),
        })
    } else {
        None
    };
    if let Some(reason) = refusal {
        return write_frame(&mut stream, &SatelliteMessage::Refused { reason }).await;
    }
    counters.sessions.fetch_add(1, Ordering::Relaxed);
    let welcome = SatelliteMessage::Welcome {
        protocol_version: PROTOCOL_VERSION,
        node_name: name.to_string(),
        hostname: format!("{name}.simulated"),
        satellite_version: env!("CARGO_PKG_VERSION").to_string(),
        capabilities: capabilities(replicating),
    };
    write_frame(&mut stream, &welcome).await?;
    loop {
        let message: ControllerMessage = read_frame(&mut stream).await?;
        let answer = match message {
            ControllerMessage::Ping => SatelliteMessage::Pong,
            ControllerMessage::CheckPool { request_id, pool } => SatelliteMessage::PoolChecked {
                request_id,
                report: NodeState::pool_report(&pool, 0),
            },
            ControllerMessage::ApplyState(desired) => {
                let full = desired.is_full();
                let generation = desired.generation;
                let only: Option<Vec<String>> = (!full).then(|| {
                    let named = desired.resources.iter().map(|r| r.name.clone());
                    named
                        .chain(desired.removed_resources.iter().cloned())
                        .collect()
                });
                let mut node = state.lock().expect("node state");
                if node.apply(desired) {
                    counters.applied.fetch_add(1, Ordering::Relaxed);
                    if full {
                        counters.full_states.fetch_add(1, Ordering::Relaxed);
                    }
                    SatelliteMessage::Applied {
                        generation,
                        report: node.report(only),
                    }
                } else {
                    counters.need_full_state.fetch_add(1, Ordering::Relaxed);
                    SatelliteMessage::NeedFullState {
                        have_generation: node.generation,
                    }
                }
            }
            ControllerMessage::Command { request_id, .. } => SatelliteMessage::CommandDone {
                request_id,
                result: Err("a simulated satellite holds no volumes".to_string()),
            },
            ControllerMessage::Hello { .. } => return Ok(()),
        };
        write_frame(&mut stream, &answer).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_proto::VolumeSpec;

    fn resource(name: &str, size_kib: u64) -> ResourceSpec {
        ResourceSpec {
            replication: None,
            snapshots: Vec::new(),
            suspend_io: false,
            uuid: String::new(),
            deleting: false,
            inactive: false,
            name: name.to_string(),
            layers: vec![LayerKind::Storage],
            diskless: false,
            volumes: vec![VolumeSpec {
                minor: None,
                restore_from: None,
                identity: String::new(),
                deleting: false,
                volume_number: 0,
                size_kib,
                storage_pool: "pool".to_string(),
            }],
        }
    }

    fn pool() -> PoolSpec {
        PoolSpec {
            uuid: String::new(),
            name: "pool".to_string(),
            provider_kind: ProviderKind::FileThin,
            pool_name: "/srv/pool".to_string(),
            props: BTreeMap::new(),
        }
    }

    #[test]
    fn deltas_apply_on_their_base_only_and_capacity_follows_volumes() {
        let mut node = NodeState::default();
        assert!(node.apply(DesiredState {
            epoch: 0,
            generation: 5,
            base_generation: None,
            storage_pools: vec![pool()],
            resources: vec![resource("a", 100)],
            removed_resources: vec![],
        }));
        assert!(node.apply(DesiredState {
            epoch: 0,
            generation: 6,
            base_generation: Some(5),
            storage_pools: vec![pool()],
            resources: vec![resource("b", 50)],
            removed_resources: vec!["A".to_string()],
        }));
        assert!(!node.apply(DesiredState {
            epoch: 0,
            generation: 8,
            base_generation: Some(7),
            storage_pools: vec![pool()],
            resources: vec![],
            removed_resources: vec![],
        }));
        let report = node.report(None);
        assert_eq!(report.generation, Some(6));
        assert_eq!(report.volumes.len(), 1);
        assert_eq!(report.volumes[0].resource, "b");
        assert_eq!(
            report.storage_pools[0].free_capacity_kib,
            Some(POOL_CAPACITY_KIB - 50)
        );
    }

    /// The used capacity per pool counted from scratch, to check the running totals against.
    fn recount(node: &NodeState) -> BTreeMap<String, u64> {
        let mut used = BTreeMap::new();
        for resource in node.resources.values().map(|r| &r.spec) {
            for volume in resource.volumes.iter().filter(|v| resource.wants_disk(v)) {
                *used
                    .entry(volume.storage_pool.to_ascii_uppercase())
                    .or_default() += volume.size_kib;
            }
        }
        used
    }

    fn delta(generation: u64, resources: Vec<ResourceSpec>, removed: &[&str]) -> DesiredState {
        DesiredState {
            epoch: 0,
            generation,
            base_generation: Some(generation - 1),
            storage_pools: vec![pool()],
            resources,
            removed_resources: removed.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn running_totals_equal_a_recount_after_adds_changes_and_removals() {
        let mut node = NodeState::default();
        let in_pool = |name: &str, size_kib: u64, pool: &str| {
            let mut r = resource(name, size_kib);
            r.volumes[0].storage_pool = pool.to_string();
            r
        };
        let mut steps = vec![DesiredState {
            epoch: 0,
            generation: 1,
            base_generation: None,
            storage_pools: vec![pool()],
            resources: vec![resource("a", 100), in_pool("b", 200, "Other")],
            removed_resources: vec![],
        }];
        // Added, grown, moved between pools (spelled differently), made diskless, deleted,
        // removed (by another spelling), and a full state that drops some and keeps others.
        steps.push(delta(
            2,
            vec![resource("c", 300), in_pool("d", 1, "POOL")],
            &[],
        ));
        steps.push(delta(3, vec![resource("A", 150)], &[]));
        steps.push(delta(4, vec![in_pool("c", 300, "other")], &[]));
        let mut diskless = resource("d", 1);
        diskless.diskless = true;
        steps.push(delta(5, vec![diskless], &[]));
        let mut deleting = resource("b", 200);
        deleting.deleting = true;
        let mut volume_deleting = resource("e", 70);
        volume_deleting.volumes[0].deleting = true;
        steps.push(delta(6, vec![deleting, volume_deleting], &[]));
        steps.push(delta(7, vec![resource("f", 40)], &["B", "e", "missing"]));
        steps.push(DesiredState {
            epoch: 0,
            generation: 8,
            base_generation: None,
            storage_pools: vec![pool()],
            resources: vec![resource("a", 150), resource("g", 5)],
            removed_resources: vec![],
        });
        steps.push(delta(9, vec![in_pool("h", 9, "other")], &["a"]));
        for state in steps {
            let generation = state.generation;
            assert!(node.apply(state), "generation {generation}");
            let counted = recount(&node);
            for (pool, used) in &node.used_kib {
                assert_eq!(
                    counted.get(pool).copied().unwrap_or(0),
                    *used,
                    "pool {pool} after generation {generation}"
                );
            }
            for (pool, used) in &counted {
                assert_eq!(node.used_kib.get(pool), Some(used), "pool {pool}");
            }
        }
        assert_eq!(node.used_kib.get("POOL"), Some(&5));
        assert_eq!(node.used_kib.get("OTHER"), Some(&9));
    }

    #[test]
    fn a_delta_is_answered_with_what_it_named_and_devices_stay() {
        let mut node = NodeState::default();
        assert!(node.apply(DesiredState {
            epoch: 0,
            generation: 1,
            base_generation: None,
            storage_pools: vec![pool()],
            resources: vec![resource("a", 100), resource("b", 200)],
            removed_resources: vec![],
        }));
        let before = node.report(None);
        assert!(node.apply(delta(2, vec![resource("c", 10), resource("B", 250)], &[])));
        let report = node.report(Some(vec!["c".to_string(), "B".to_string()]));
        let named: Vec<&str> = report.volumes.iter().map(|v| v.resource.as_str()).collect();
        assert_eq!(named, ["B", "c"]);
        assert_eq!(report.only_resources.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            report.storage_pools[0].free_capacity_kib,
            Some(POOL_CAPACITY_KIB - 360)
        );
        // A changed resource keeps its device; a new one gets one of its own.
        assert_eq!(report.volumes[0].device_path, before.volumes[1].device_path);
        let devices: BTreeSet<_> = node
            .report(None)
            .volumes
            .into_iter()
            .map(|v| v.device_path)
            .collect();
        assert_eq!(devices.len(), 3);
    }
}
