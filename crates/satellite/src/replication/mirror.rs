//! The MIRROR engine on this node: `ferrite-mirrord`, driven through its control socket.
//!
//! The satellite writes each member's configuration as a resource file in the daemon's state
//! directory (`<satellite state>/mirror/resources/<resource>.json`, what a `.res` file is to
//! DRBD) and asks the daemon to `up` it, which brings it up or adjusts it; `down` takes it down
//! and the file is removed. The files are the daemon's desired state: a daemon that restarts
//! brings every resource up from them without the satellite.
//!
//! The daemon runs apart from the satellite. When its socket does not answer, the satellite
//! starts it through the host's runner, in a session of its own, so it outlives a satellite restart (or a `kill -9` of
//! the satellite) and the data path goes on while the satellite is away. Its state-directory
//! lock keeps a second one off the directory.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferrite_mirror::backing::DEFAULT_PEER_SLOTS;
use ferrite_mirror::config::{Options, PeerConfig, ResourceConfig, VolumeConfig};
use ferrite_mirror::control::{Client, ControlError, Paths, Reply, Request, ResourceEntry};
use ferrite_mirror::daemon::{remove_resource_file, write_resource_file};
use ferrite_proto::{
    PeerReport, PeerVolumeReport, ReplicatedVolumeReport, ReplicationEngine, ReplicationReport,
    ReplicationSpec, Role,
};
use ferrite_storage::{CommandLine, HostCommands};
use tracing::{debug, info, warn};

use super::{FreshMetadata, Member, MemberVolume, ReplicationDriver};

/// How long a started daemon has to answer on its control socket.
pub const MIRRORD_START_TIMEOUT: Duration = Duration::from_secs(20);

/// The least time between two starts of the daemon: one that dies at once is not restarted in
/// a loop at every pass.
pub const MIRRORD_RESTART_BACKOFF: Duration = Duration::from_secs(10);

/// The sub-directory of the satellite's state directory the daemon uses.
pub const MIRROR_STATE_SUBDIR: &str = "mirror";

/// The daemon's log, in its state directory.
pub const MIRRORD_LOG_FILE: &str = "mirrord.log";

/// `ferrite-mirrord` of this node.
pub struct MirrorDriver {
    runner: std::sync::Arc<dyn HostCommands>,
    paths: Paths,
    program: PathBuf,
    device_root: Option<PathBuf>,
    /// Where the daemon also serves its NBD exports over TCP (`--nbd-tcp`), if anywhere.
    nbd_tcp: Option<std::net::SocketAddr>,
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    /// The daemon's resources as read at the start of this pass.
    entries: BTreeMap<String, ResourceEntry>,
    /// Why the daemon could not be read this pass.
    unreachable: Option<String>,
    /// The configuration last written for each resource.
    written: HashMap<String, ResourceConfig>,
    last_start: Option<Instant>,
    /// The control connections that hold resources' writes for a snapshot's cut, with the
    /// hold's epoch: the daemon keeps a hold while its connection is open.
    suspensions: HashMap<String, (Client, u64)>,
}

impl MirrorDriver {
    /// A driver for the daemon with its state in `state_dir`, started from `program` when it
    /// does not run.
    pub fn new(
        runner: std::sync::Arc<dyn HostCommands>,
        state_dir: PathBuf,
        program: PathBuf,
        device_root: Option<PathBuf>,
        nbd_tcp: Option<std::net::SocketAddr>,
    ) -> std::io::Result<MirrorDriver> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(MirrorDriver {
            runner,
            paths: Paths::new(state_dir),
            program,
            device_root,
            nbd_tcp,
            runtime,
            client: None,
            entries: BTreeMap::new(),
            unreachable: None,
            written: HashMap::new(),
            last_start: None,
            suspensions: HashMap::new(),
        })
    }

    /// Starts the daemon through the host's runner: in a session of its own, its output
    /// appended to its log.
    fn start_daemon(&mut self) -> Result<(), String> {
        if let Some(last) = self.last_start
            && last.elapsed() < MIRRORD_RESTART_BACKOFF
        {
            return Err(format!(
                "ferrite-mirrord was started {} s ago and does not answer; see {}",
                last.elapsed().as_secs(),
                self.paths.state_dir.join(MIRRORD_LOG_FILE).display()
            ));
        }
        self.last_start = Some(Instant::now());
        std::fs::create_dir_all(&self.paths.state_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.paths.state_dir.display()))?;
        let mut command = CommandLine::new(self.program.to_string_lossy())
            .arg("--state-dir")
            .arg(self.paths.state_dir.to_string_lossy())
            .arg("run");
        if let Some(root) = &self.device_root {
            command = command.arg("--device-root").arg(root.to_string_lossy());
        }
        if let Some(address) = self.nbd_tcp {
            command = command.arg("--nbd-tcp").arg(address.to_string());
        }
        let log = self.paths.state_dir.join(MIRRORD_LOG_FILE);
        let pid = self
            .runner
            .start_daemon(&command, &log)
            .map_err(|e| e.to_string())?;
        info!(pid, state_dir = %self.paths.state_dir.display(), "started ferrite-mirrord");
        Ok(())
    }

    /// A connection to the daemon, starting it when it does not run.
    fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.is_none() {
            let socket = self.paths.control_socket();
            let client = match self.runtime.block_on(Client::connect(&socket)) {
                Ok(client) => client,
                Err(ControlError::NotRunning { .. }) => {
                    self.start_daemon()?;
                    let deadline = Instant::now() + MIRRORD_START_TIMEOUT;
                    loop {
                        match self.runtime.block_on(Client::connect(&socket)) {
                            Ok(client) => break client,
                            Err(e) if Instant::now() >= deadline => {
                                return Err(format!(
                                    "ferrite-mirrord did not come up within {} s ({e}); see {}",
                                    MIRRORD_START_TIMEOUT.as_secs(),
                                    self.paths.state_dir.join(MIRRORD_LOG_FILE).display()
                                ));
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(100)),
                        }
                    }
                }
                Err(e) => return Err(e.to_string()),
            };
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Sends a request; a broken connection is dropped so the next call connects anew.
    fn call(&mut self, request: &Request) -> Result<Reply, String> {
        self.client()?;
        let client = self.client.as_mut().expect("connected above");
        match self.runtime.block_on(client.call(request)) {
            Ok(reply) => Ok(reply),
            Err(ControlError::Refused(message)) => Err(message),
            Err(e) => {
                self.client = None;
                Err(e.to_string())
            }
        }
    }

    /// The configuration the daemon is to run for `member`.
    fn config(&self, member: &Member) -> Result<ResourceConfig, String> {
        let spec = member.replication;
        let config = ResourceConfig {
            name: member.resource.to_string(),
            node_name: member.node_name.to_string(),
            node_id: spec.node_id,
            listen: std::net::SocketAddr::new(spec.address, spec.port),
            secret: spec.secret.clone(),
            peers: spec
                .peers
                .iter()
                .map(|peer| PeerConfig {
                    node_name: peer.node_name.clone(),
                    node_id: peer.node_id,
                    address: std::net::SocketAddr::new(peer.address, peer.port),
                    diskless: peer.diskless,
                })
                .collect(),
            volumes: member
                .volumes
                .iter()
                .map(|volume| VolumeConfig {
                    number: volume.number,
                    minor: volume.minor,
                    usable_bytes: volume.usable_kib * 1024,
                    backing: volume.backing.clone(),
                    new_volume: volume.new_volume,
                })
                .collect(),
            options: Options::from_drbd_options(&mirror_options(
                spec,
                &member.volumes.iter().map(|v| v.number).collect::<Vec<_>>(),
            ))?,
        };
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// The configuration in the resource file, if there is a readable one.
    fn written(&mut self, resource: &str) -> Option<&ResourceConfig> {
        if !self.written.contains_key(resource)
            && let Ok(config) = ResourceConfig::read(&self.paths.resource_file(resource))
        {
            self.written.insert(resource.to_string(), config);
        }
        self.written.get(resource)
    }
}

/// The DRBD options MIRROR runs a member with, one value per resource: the member's own
/// (`options`, the file's common sections), except where DRBD would use another value on every
/// volume (`Disk/*`, from `volume_options`) or on every connection (`Net/*` and
/// `PeerDevice/*`, from `connection_options`): then that value, as the kernel's DRBD would run
/// each of them. Where volumes or connections differ MIRROR, which has one value, keeps the
/// member's own.
pub fn mirror_options(spec: &ReplicationSpec, volumes: &[u16]) -> BTreeMap<String, String> {
    let mut options = spec.options.clone();
    // What each volume, resp. each connection, gets for an option: its own, else the member's.
    let uniform = |parts: Vec<Option<&BTreeMap<String, String>>>,
                   options: &mut BTreeMap<String, String>| {
        let names: std::collections::BTreeSet<&String> =
            parts.iter().flatten().flat_map(|p| p.keys()).collect();
        let mut agreed = Vec::new();
        for name in names {
            let mut values = parts
                .iter()
                .map(|part| part.and_then(|p| p.get(name)).or(options.get(name)));
            let first = values.next().flatten();
            if let Some(first) = first
                && values.all(|v| v == Some(first))
            {
                agreed.push((name.clone(), first.clone()));
            }
        }
        options.extend(agreed);
    };
    uniform(
        volumes
            .iter()
            .map(|number| spec.volume_options.get(number))
            .collect(),
        &mut options,
    );
    uniform(
        spec.peers
            .iter()
            .map(|peer| spec.connection_options.get(&peer.node_name))
            .collect(),
        &mut options,
    );
    options
}

fn role(word: &str) -> Role {
    match word {
        "Primary" => Role::Primary,
        "Secondary" => Role::Secondary,
        _ => Role::Unknown,
    }
}

impl ReplicationDriver for MirrorDriver {
    fn engine(&self) -> ReplicationEngine {
        ReplicationEngine::Mirror
    }

    fn backing_kib(
        &self,
        usable_kib: u64,
        replication: &ReplicationSpec,
        volumes: &[u16],
    ) -> Result<u64, String> {
        let options = Options::from_drbd_options(&mirror_options(replication, volumes))?;
        let metadata = ferrite_mirror::metadata::metadata_size(
            usable_kib * 1024,
            DEFAULT_PEER_SLOTS,
            options.al_extents,
        )
        .map_err(|e| e.to_string())?;
        Ok(usable_kib + metadata.div_ceil(1024))
    }

    fn begin_pass(&mut self) {
        self.entries.clear();
        self.unreachable = None;
        if self.client.is_none() && self.written.is_empty() && !self.paths.resources().exists() {
            // Nothing was ever configured here: no need to start the daemon yet.
            return;
        }
        match self.call(&Request::Status { resource: None }) {
            Ok(Reply::Status { resources }) => {
                self.entries = resources.into_iter().map(|e| (e.name.clone(), e)).collect();
            }
            Ok(other) => self.unreachable = Some(format!("unexpected answer {other:?}")),
            Err(e) => {
                warn!(error = %e, "cannot read the MIRROR resources' state");
                self.unreachable = Some(e);
            }
        }
    }

    fn apply(&mut self, member: &Member) -> Result<(), String> {
        let config = self.config(member)?;
        let changed = self.written(member.resource) != Some(&config);
        let running = self
            .entries
            .get(member.resource)
            .is_some_and(|e| e.status.is_some());
        if !changed && running {
            return Ok(());
        }
        if changed {
            write_resource_file(&self.paths, &config).map_err(|e| {
                format!(
                    "cannot write {}: {e}",
                    self.paths.resource_file(member.resource).display()
                )
            })?;
            self.written.insert(member.resource.to_string(), config);
            info!(resource = member.resource, "MIRROR configuration written");
        }
        match self.call(&Request::Up {
            resource: member.resource.to_string(),
        })? {
            Reply::Done { message } => {
                debug!(resource = member.resource, %message, "up");
                // The state the report shows is read again at the next pass; until then, the
                // resource is known to run.
                if let Ok(Reply::Status { resources }) = self.call(&Request::Status {
                    resource: Some(member.resource.to_string()),
                }) {
                    for entry in resources {
                        self.entries.insert(entry.name.clone(), entry);
                    }
                }
                Ok(())
            }
            other => Err(format!("unexpected answer to up: {other:?}")),
        }
    }

    fn write_fresh_metadata(
        &mut self,
        member: &Member,
        volume: &MemberVolume,
        fresh: FreshMetadata,
    ) -> Result<(), String> {
        let resource = member.resource;
        let path = volume
            .backing
            .as_deref()
            .ok_or_else(|| format!("volume {} of '{resource}' has no disk", volume.number))?;
        if self
            .entries
            .get(resource)
            .and_then(|e| e.status.as_ref())
            .is_some_and(|s| s.volumes.iter().any(|v| v.number == volume.number))
        {
            return Err(format!(
                "volume {} of '{resource}' runs in the MIRROR engine; its metadata is not replaced under it",
                volume.number
            ));
        }
        let options = Options::from_drbd_options(&member.replication.options)?;
        let outcome = ferrite_mirror::backing::write_fresh_metadata(
            path,
            volume.usable_kib * 1024,
            member.replication.node_id,
            options.al_extents,
            fresh.generation,
        )
        .map_err(|e| e.to_string())?;
        info!(resource, volume = volume.number, ?outcome, generation = ?fresh.generation, "fresh MIRROR metadata");
        Ok(())
    }

    fn down(&mut self, resource: &str) -> Result<(), String> {
        let configured = self.written(resource).is_some() || self.entries.contains_key(resource);
        if !configured && !self.paths.resource_file(resource).exists() {
            return Ok(());
        }
        if self.entries.contains_key(resource) || self.unreachable.is_some() {
            match self.call(&Request::Down {
                resource: resource.to_string(),
                force: false,
            })? {
                Reply::Done { message } => info!(resource, %message, "MIRROR resource down"),
                other => return Err(format!("unexpected answer to down: {other:?}")),
            }
        }
        remove_resource_file(&self.paths, resource).map_err(|e| {
            format!(
                "cannot remove {}: {e}",
                self.paths.resource_file(resource).display()
            )
        })?;
        self.written.remove(resource);
        self.entries.remove(resource);
        Ok(())
    }

    fn suspend_io(&mut self, resource: &str) -> Result<(), String> {
        self.client()?;
        let socket = self.paths.control_socket();
        let request = Request::SuspendIo {
            resource: resource.to_string(),
        };
        let (client, reply) = self.runtime.block_on(async {
            let mut client = Client::connect(&socket).await.map_err(|e| e.to_string())?;
            let reply = client.call(&request).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((client, reply))
        })?;
        match reply {
            Reply::Suspended { epoch, .. } => {
                info!(resource, epoch, "MIRROR I/O suspended for a snapshot's cut");
                self.suspensions
                    .insert(resource.to_string(), (client, epoch));
                Ok(())
            }
            other => Err(format!("unexpected answer to suspend-io: {other:?}")),
        }
    }

    fn confirm_suspended(&mut self, resource: &str) -> Result<(), String> {
        let Some((client, epoch)) = self.suspensions.get_mut(resource) else {
            return Err(format!("the I/O of '{resource}' is not held on this node"));
        };
        let held = *epoch;
        let request = Request::SuspendIo {
            resource: resource.to_string(),
        };
        match self.runtime.block_on(client.call(&request)) {
            Ok(Reply::Suspended { epoch, .. }) if epoch == held => Ok(()),
            Ok(other) => Err(format!(
                "the hold of '{resource}' (epoch {held}) ended; the daemon answered {other:?}"
            )),
            Err(e) => Err(format!("the hold of '{resource}' ended: {e}")),
        }
    }

    fn resume_io(&mut self, resource: &str) -> Result<(), String> {
        let Some((mut client, _)) = self.suspensions.remove(resource) else {
            return Ok(());
        };
        let request = Request::ResumeIo {
            resource: resource.to_string(),
        };
        // Closing the connection ends the hold too; the answer only confirms it.
        match self.runtime.block_on(client.call(&request)) {
            Ok(_) => {
                info!(resource, "MIRROR I/O resumed after a snapshot's cut");
                Ok(())
            }
            Err(e) => {
                warn!(resource, error = %e, "resume-io not confirmed; the hold ends with its connection");
                Ok(())
            }
        }
    }

    fn report(&self, resource: &str, error: Option<String>) -> ReplicationReport {
        let minors: BTreeMap<u16, Option<u32>> = self
            .written
            .get(resource)
            .map(|c| c.volumes.iter().map(|v| (v.number, v.minor)).collect())
            .unwrap_or_default();
        let mut report = ReplicationReport {
            resource: resource.to_string(),
            engine: ReplicationEngine::Mirror,
            role: Role::Unknown,
            in_use: false,
            quorum: false,
            volumes: Vec::new(),
            peers: Vec::new(),
            error,
            may_promote: None,
            promotion_score: None,
        };
        let Some(entry) = self.entries.get(resource) else {
            if report.error.is_none() {
                report.error = Some(match &self.unreachable {
                    Some(why) => format!("the MIRROR engine cannot be asked: {why}"),
                    None => "not up in the MIRROR engine".to_string(),
                });
            }
            return report;
        };
        let Some(status) = &entry.status else {
            if report.error.is_none() {
                report.error = Some(format!(
                    "the MIRROR engine cannot run it: {}",
                    entry.failure.as_deref().unwrap_or("no reason given")
                ));
            }
            return report;
        };
        report.role = role(&status.role);
        report.in_use = status.in_use;
        report.quorum = status.quorum;
        if report.error.is_none() {
            report.error = status.error.clone();
        }
        report.volumes = status
            .volumes
            .iter()
            .map(|volume| {
                let frontend = entry.frontends.iter().find(|f| f.volume == volume.number);
                ReplicatedVolumeReport {
                    volume_number: volume.number,
                    minor: minors.get(&volume.number).copied().flatten(),
                    disk_state: volume.disk.clone(),
                    device_path: frontend.and_then(|f| f.device_path.clone()),
                    nbd_uri: frontend.map(|f| f.nbd_uri.clone()),
                    nbd_tcp_uri: frontend.and_then(|f| f.nbd_tcp_uri.clone()),
                    usable_size_kib: Some(volume.usable_bytes / 1024),
                }
            })
            .collect();
        report.peers = status
            .peers
            .iter()
            .map(|peer| PeerReport {
                node_name: peer.node_name.clone(),
                node_id: peer.node_id,
                connection: peer.connection.clone(),
                role: role(&peer.role),
                volumes: peer
                    .volumes
                    .iter()
                    .map(|v| PeerVolumeReport {
                        volume_number: v.number,
                        replication: v.replication.clone(),
                        peer_disk: v.peer_disk.clone(),
                        done_percent: v.done_percent,
                        out_of_sync_kib: v.out_of_sync_kib,
                    })
                    .collect(),
            })
            .collect();
        report
    }
}

/// How long changes are gathered before the reconciler is told: a resync's progress or a
/// connection going through its states is one report, not ten.
pub const EVENT_COALESCE: Duration = Duration::from_millis(100);

/// How long the event watcher waits before it tries the daemon's socket again.
pub const EVENT_RETRY: Duration = Duration::from_secs(1);

/// Follows the daemon's event stream on a thread of its own and calls `notify` after each
/// burst of changes, for as long as `notify` returns true. It never starts the daemon; while
/// the daemon is not there it tries again every [`EVENT_RETRY`].
pub fn watch_events(
    state_dir: PathBuf,
    notify: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("mirror-events".to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    warn!(error = %e, "cannot follow the MIRROR engine's events");
                    return;
                }
            };
            let socket = Paths::new(state_dir).control_socket();
            runtime.block_on(async move {
                loop {
                    if let Ok(mut client) = Client::connect(&socket).await
                        && client.send(&Request::Events).await.is_ok()
                    {
                        debug!("following the MIRROR engine's events");
                        while let Ok(Some(_)) = client.next_event().await {
                            // Gather the rest of the burst, then report once.
                            let _ = tokio::time::timeout(EVENT_COALESCE, async {
                                while let Ok(Some(_)) = client.next_event().await {}
                            })
                            .await;
                            if !notify() {
                                return;
                            }
                        }
                    }
                    tokio::time::sleep(EVENT_RETRY).await;
                }
            });
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ferrite_proto::{PeerSpec, ReplicationEngine, ReplicationSpec};

    use super::mirror_options;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spec() -> ReplicationSpec {
        ReplicationSpec {
            engine: ReplicationEngine::Mirror,
            node_id: 0,
            address: "127.0.0.1".parse().unwrap(),
            port: 7000,
            secret: "s".into(),
            peers: ["node2", "node3"]
                .iter()
                .enumerate()
                .map(|(i, name)| PeerSpec {
                    node_name: name.to_string(),
                    node_id: i as u8 + 1,
                    address: "127.0.0.1".parse().unwrap(),
                    port: 7000,
                    diskless: false,
                })
                .collect(),
            options: map(&[
                ("Net/ping-timeout", "20"),
                ("PeerDevice/c-max-rate", "100M"),
                ("Disk/al-extents", "1237"),
            ]),
            volume_options: BTreeMap::new(),
            connection_options: BTreeMap::new(),
        }
    }

    #[test]
    fn mirror_runs_with_what_drbd_would_use_on_every_connection_and_every_volume() {
        let mut spec = spec();
        assert_eq!(mirror_options(&spec, &[0]), spec.options);
        // A group's ping-timeout, written in every connection, wins over the resource's.
        for peer in ["node2", "node3"] {
            spec.connection_options
                .insert(peer.into(), map(&[("Net/ping-timeout", "30")]));
        }
        // The resource's al-extents, written in every volume's disk section.
        for volume in [0, 1] {
            spec.volume_options
                .insert(volume, map(&[("Disk/al-extents", "6007")]));
        }
        let options = mirror_options(&spec, &[0, 1]);
        assert_eq!(options["Net/ping-timeout"], "30");
        assert_eq!(options["Disk/al-extents"], "6007");
        assert_eq!(options["PeerDevice/c-max-rate"], "100M");

        // Where connections differ, or a volume reads the member's own, MIRROR keeps the
        // member's own.
        spec.connection_options
            .insert("node3".into(), map(&[("PeerDevice/c-max-rate", "200M")]));
        let options = mirror_options(&spec, &[0, 1, 2]);
        assert_eq!(options["Net/ping-timeout"], "20");
        assert_eq!(options["PeerDevice/c-max-rate"], "100M");
        assert_eq!(options["Disk/al-extents"], "1237");
        spec.connection_options
            .insert("node2".into(), map(&[("PeerDevice/c-max-rate", "200M")]));
        assert_eq!(mirror_options(&spec, &[0])["PeerDevice/c-max-rate"], "200M");
    }
}
