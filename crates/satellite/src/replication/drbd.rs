//! The kernel's DRBD 9 on this node, driven with drbd-utils as LINSTOR drives it.
//!
//! Each member's resource file is written to the resource-file directory
//! (`--drbd-resource-dir`, default [`DEFAULT_RESOURCE_DIR`]) as `<resource>.res`, and every
//! drbdadm command names that file (`-c`), so `/etc/drbd.d` needs no include. A changed file is
//! first written beside the old one (`<resource>.res.next`, fsynced); the commands run on it, and
//! only once `drbdadm adjust` applied it does it replace the old file (rename, then fsync of the
//! directory). A file whose content did not change is neither rewritten nor applied again.
//!
//! Apply, for a member whose file changed:
//!
//! ```text
//!   volumes that lose their disk ── detach, wipe-md   (with the previous file)
//!   new diskful volumes without metadata ── create-md (with the new file)
//!   drbdadm adjust ── rename the new file over the old one
//!   volumes that grew ── resize
//!   new zeroed volumes, on the lowest diskful node-id, once every diskful member is connected
//!   and Inconsistent ── new-current-uuid --clear-bitmap (no initial sync)
//! ```
//!
//! and `down` takes the resource down, wipes the metadata of its disks and removes the file.
//!
//! This node's `on` section is named by the host's name (`uname -n`), which drbdadm looks for;
//! peers by their node names. A dry run names this node by its node name too.
//!
//! With `--drbd-dry-run` (a host without DRBD), nothing is run: every drbdadm command is logged
//! (`would run`) and appended to [`DRY_RUN_LOG`] in the resource-file directory, the files are
//! written as for real, and the report says the layer is a dry run. Metadata is taken as missing
//! on every disk the driver has not created metadata on since it started.
//!
//! The state of the resources comes from one followed `drbdsetup events2 --timestamps
//! --statistics` stream and nothing else. [`DrbdDriver::follow_events`] starts a thread that
//! runs it for as long as the satellite runs, starting it again [`EVENT_RESTART`] after it
//! ended, and hands every line to the driver as a [`Feed`]; the driver, on the reconciler's
//! thread, is the one owner of the state and folds the lines into it
//! ([`ferrite_drbd::events::Stream`]) at the start of each pass. The thread tells the reconciler
//! after each burst of changes, so a resync's progress or a lost connection is reported without
//! waiting for a convergence pass.
//!
//! While no stream has listed its initial state (at start, and from the moment one ended until
//! its successor's `exists -`), the state is unknown, and reported so: role Unknown, disks
//! `Unknown`, no connections, and the reason as the report's error. Nothing stale is reported.
//! Meanwhile an unchanged file is not applied again, and a changed one is applied without the
//! shortcuts the state allows (no initial-sync skip; metadata asked of drbdmeta).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use ferrite_drbd::events::{DiskState, ReplicationState, Role as DrbdRole, State, Stream};
use ferrite_drbd::{DrbdOptions, DrbdVersions, ResourceFile, Section, commands, res_file};
use ferrite_proto::{
    PeerReport, PeerVolumeReport, ReplicatedVolumeReport, ReplicationEngine, ReplicationReport,
    ReplicationSpec, Role,
};
use ferrite_storage::{CommandLine, HostCommands};
use tracing::{info, warn};

use super::{FreshMetadata, Member, MemberVolume, ReplicationDriver};

/// Where the resource files are written unless `--drbd-resource-dir` says otherwise.
pub const DEFAULT_RESOURCE_DIR: &str = "/var/lib/ferrite.d";

/// The commands a dry run would have run, one per line, in the resource-file directory.
pub const DRY_RUN_LOG: &str = "dry-run-commands.log";

/// A disk's state while the kernel's state is not known (the controller's word for it).
pub const UNKNOWN: &str = "Unknown";

/// The suffix of a file written but not applied yet.
const NEXT_SUFFIX: &str = ".next";

/// DRBD's activity log: one stripe of 32 KiB, as LINSTOR creates it.
pub const AL_SIZE_KIB: u64 = 32;

/// DRBD's metadata superblock, and the alignment of the metadata area.
const MD_BLOCK_KIB: u64 = 4;

/// How the driver treats the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Runs drbdadm.
    Real,
    /// Writes the files, logs the commands, runs nothing.
    DryRun,
}

/// What was last applied for a resource.
#[derive(Debug, Clone)]
struct Applied {
    text: String,
    file: ResourceFile,
    usable_kib: BTreeMap<u16, u64>,
}

/// The kernel's DRBD on this node.
pub struct DrbdDriver {
    runner: Arc<dyn HostCommands>,
    dir: PathBuf,
    mode: Mode,
    applied: HashMap<String, Applied>,
    /// The kernel's state, folded from the followed events2 stream.
    stream: Stream,
    /// The lines of the followed stream, when one is followed ([`DrbdDriver::follow_events`]).
    feed: Option<Receiver<Feed>>,
    /// Disks this driver wrote metadata on, by resource, volume and device.
    metadata_created: BTreeSet<(String, u16, PathBuf)>,
    /// New zeroed volumes whose initial sync is to be skipped once their members are connected.
    skip_sync_pending: BTreeSet<(String, u16)>,
    /// New volumes not known to read zeros (thick) whose initial full sync is to be started,
    /// from this member, once their members are connected (`drbdadm primary --force`).
    full_sync_pending: BTreeSet<(String, u16)>,
    /// The name of this node's `on` section: drbdadm finds its own section by the host's name
    /// (`uname -n`); the node name when unset.
    local_host: Option<String>,
    /// drbd-utils' and the kernel module's versions: what the files may say.
    versions: DrbdVersions,
}

/// DRBD's internal metadata for a volume of `usable_kib` with `peer_slots` peers: the
/// superblock, the activity log and one bitmap per peer slot (a bit per 4 KiB), aligned to 4 KiB.
pub fn metadata_kib(usable_kib: u64, peer_slots: u8) -> u64 {
    let bits = usable_kib.div_ceil(4);
    let bitmap_bytes = bits.div_ceil(64) * 8 * u64::from(peer_slots);
    let bitmap_kib = bitmap_bytes.div_ceil(1024).div_ceil(MD_BLOCK_KIB) * MD_BLOCK_KIB;
    MD_BLOCK_KIB + AL_SIZE_KIB + bitmap_kib
}

impl DrbdDriver {
    pub fn new(runner: Arc<dyn HostCommands>, dir: PathBuf, mode: Mode) -> DrbdDriver {
        DrbdDriver {
            runner,
            dir,
            mode,
            applied: HashMap::new(),
            stream: Stream::default(),
            feed: None,
            metadata_created: BTreeSet::new(),
            skip_sync_pending: BTreeSet::new(),
            full_sync_pending: BTreeSet::new(),
            local_host: None,
            versions: DrbdVersions::default(),
        }
    }

    /// Writes files for drbd-utils and a kernel module of these versions (`drbdadm --version`);
    /// unknown versions get what every DRBD 9 takes.
    pub fn with_versions(mut self, versions: DrbdVersions) -> DrbdDriver {
        self.versions = versions;
        self
    }

    /// Names this node's `on` section `hostname` (the host's `uname -n`) rather than the node
    /// name, as LINSTOR does with the name a satellite reports: drbdadm must find it. Peers
    /// keep their node names; DRBD knows them by node-id and address.
    pub fn with_local_host(mut self, hostname: String) -> DrbdDriver {
        self.local_host = Some(hostname);
        self
    }

    /// Follows `drbdsetup events2` through the runner on threads of their own (see
    /// [`follow_events`]); its lines reach this driver at the start of each pass, and `notify`
    /// is called after each burst of them.
    pub fn follow_events(
        mut self,
        notify: impl Fn() -> bool + Send + 'static,
    ) -> std::io::Result<DrbdDriver> {
        let (sender, receiver) = std::sync::mpsc::channel();
        follow_events(self.runner.clone(), sender, notify)?;
        self.feed = Some(receiver);
        Ok(self)
    }

    /// Takes one piece of the followed stream (tests feed the driver directly).
    pub fn feed(&mut self, feed: Feed) {
        match feed {
            Feed::Started => self.stream.started(),
            Feed::Line(line) => {
                if let Err(e) = self.stream.line(&line) {
                    warn!(error = %e, "events2 line not understood");
                }
            }
            Feed::Ended(why) => self.stream.ended(why),
        }
    }

    /// The kernel's state, when it is known (a stream listed it and still runs).
    fn state(&self) -> Option<&State> {
        self.stream.current()
    }

    fn file_path(&self, resource: &str) -> PathBuf {
        self.dir.join(res_file::file_name(resource))
    }

    fn next_path(&self, resource: &str) -> PathBuf {
        let mut name = res_file::file_name(resource);
        name.push_str(NEXT_SUFFIX);
        self.dir.join(name)
    }

    /// Runs a command that changes the kernel's state, or logs it in a dry run.
    fn execute(&self, command: CommandLine) -> Result<String, String> {
        match self.mode {
            Mode::Real => self
                .runner
                .run(&command)
                .map(|o| o.stdout)
                .map_err(|e| e.to_string()),
            Mode::DryRun => {
                info!(command = %command, "DRBD dry run: would run");
                let log = self.dir.join(DRY_RUN_LOG);
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .and_then(|mut f| writeln!(f, "{command}"))
                    .map_err(|e| format!("cannot append to {}: {e}", log.display()))?;
                Ok(String::new())
            }
        }
    }

    /// Whether `disk` holds DRBD metadata already.
    fn has_metadata(
        &self,
        file: &Path,
        resource: &str,
        volume: u16,
        disk: &Path,
    ) -> Result<bool, String> {
        if self
            .metadata_created
            .contains(&(resource.to_string(), volume, disk.to_path_buf()))
        {
            return Ok(true);
        }
        if self.mode == Mode::DryRun {
            return Ok(false);
        }
        // Attached: it has metadata, and drbdmeta would refuse to read it.
        if self
            .state()
            .and_then(|s| s.resources.get(resource))
            .and_then(|r| r.devices.get(&volume))
            .and_then(|d| d.disk)
            .is_some_and(|d| d != DiskState::Diskless)
        {
            return Ok(true);
        }
        let query = CommandLine::query(commands::DRBDADM)
            .arg("-c")
            .arg(file.to_string_lossy())
            .args(["--", "--force", "dump-md"])
            .arg(format!("{resource}/{volume}"));
        match self.runner.run(&query) {
            Ok(_) => Ok(true),
            Err(e) if e.stderr().contains("No valid meta data found") => Ok(false),
            Err(e) => Err(format!(
                "cannot tell whether {} has DRBD metadata: {e}",
                disk.display()
            )),
        }
    }

    fn build(&self, member: &Member) -> Result<ResourceFile, String> {
        let spec = member.replication;
        let options = DrbdOptions::parse(&spec.options).map_err(|e| e.to_string())?;
        let diskless = member.volumes.iter().all(|v| v.backing.is_none());
        let volumes = member
            .volumes
            .iter()
            .map(|v: &MemberVolume| {
                let options = match spec.volume_options.get(&v.number) {
                    Some(options) => DrbdOptions::parse(options)
                        .map_err(|e| format!("volume {}: {e}", v.number))?
                        .only(Section::Disk),
                    None => DrbdOptions::default(),
                };
                Ok(res_file::Volume {
                    number: v.number,
                    minor: v
                        .minor
                        .ok_or_else(|| format!("volume {} has no minor allocated yet", v.number))?,
                    backing: v.backing.clone(),
                    options,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let file = ResourceFile {
            resource: member.resource.to_string(),
            local: res_file::Member {
                node_name: self
                    .local_host
                    .clone()
                    .unwrap_or_else(|| member.node_name.to_string()),
                node_id: spec.node_id,
                address: std::net::SocketAddr::new(spec.address, spec.port),
                diskless,
            },
            peers: spec
                .peers
                .iter()
                .map(|p| res_file::Member {
                    node_name: p.node_name.clone(),
                    node_id: p.node_id,
                    address: std::net::SocketAddr::new(p.address, p.port),
                    diskless: p.diskless,
                })
                .collect(),
            secret: spec.secret.clone(),
            volumes,
            options,
            versions: self.versions,
            // Only their `Net` and `PeerDevice` sections go into the connection's sections.
            connection_options: spec
                .connection_options
                .iter()
                .map(|(peer, options)| {
                    DrbdOptions::parse(options)
                        .map(|parsed| (peer.clone(), parsed))
                        .map_err(|e| format!("connection to '{peer}': {e}"))
                })
                .collect::<Result<BTreeMap<_, _>, String>>()?,
        };
        file.check().map_err(|e| e.to_string())?;
        Ok(file)
    }

    /// The previous file: what this driver applied, else what is on disk.
    fn previous(&mut self, resource: &str) -> Option<String> {
        if let Some(applied) = self.applied.get(resource) {
            return Some(applied.text.clone());
        }
        std::fs::read_to_string(self.file_path(resource)).ok()
    }

    fn write_next(&self, resource: &str, text: &str) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let next = self.next_path(resource);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&next)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| format!("cannot write {}: {e}", next.display()))?;
        Ok(next)
    }

    fn install(&self, resource: &str) -> Result<(), String> {
        let path = self.file_path(resource);
        std::fs::rename(self.next_path(resource), &path)
            .and_then(|()| std::fs::File::open(&self.dir)?.sync_all())
            .map_err(|e| format!("cannot replace {}: {e}", path.display()))
    }

    fn is_up(&self, resource: &str) -> bool {
        match self.mode {
            Mode::Real => self
                .state()
                .is_some_and(|s| s.resources.contains_key(resource)),
            Mode::DryRun => self.applied.contains_key(resource),
        }
    }

    /// Whether the initial sync of `volume` may be skipped now: this member has the lowest
    /// node-id of the diskful members and every diskful member is connected and Inconsistent.
    fn may_skip_sync(&self, file: &ResourceFile, volume: u16) -> bool {
        let diskful_peers: Vec<&res_file::Member> =
            file.peers.iter().filter(|p| !p.diskless).collect();
        if file.local.diskless || diskful_peers.iter().any(|p| p.node_id < file.local.node_id) {
            return false;
        }
        if self.mode == Mode::DryRun {
            return true;
        }
        let Some(resource) = self.state().and_then(|s| s.resources.get(&file.resource)) else {
            return false;
        };
        let local_inconsistent = resource
            .devices
            .get(&volume)
            .is_some_and(|d| d.disk == Some(DiskState::Inconsistent));
        local_inconsistent
            && diskful_peers.iter().all(|peer| {
                resource.connections.get(&peer.node_id).is_some_and(|c| {
                    c.peer_devices.get(&volume).is_some_and(|d| {
                        d.replication == Some(ReplicationState::Established)
                            && d.peer_disk == Some(DiskState::Inconsistent)
                    })
                })
            })
    }

    /// Resizes the volumes of an applied member whose backing volume grew, once each.
    fn resize_grown(&mut self, member: &Member) -> Result<(), String> {
        let resource = member.resource;
        let Some(applied) = self.applied.get(resource) else {
            return Ok(());
        };
        let grown: Vec<(u16, u64)> = member
            .volumes
            .iter()
            .filter(|v| {
                v.backing.is_some()
                    && applied
                        .usable_kib
                        .get(&v.number)
                        .is_some_and(|old| v.usable_kib > *old)
            })
            .map(|v| (v.number, v.usable_kib))
            .collect();
        for (volume, usable_kib) in grown {
            self.execute(commands::resize(
                &self.file_path(resource),
                resource,
                volume,
            ))?;
            if let Some(applied) = self.applied.get_mut(resource) {
                applied.usable_kib.insert(volume, usable_kib);
            }
        }
        // A volume new to the member starts at its size.
        if let Some(applied) = self.applied.get_mut(resource) {
            for v in &member.volumes {
                applied.usable_kib.entry(v.number).or_insert(v.usable_kib);
            }
        }
        Ok(())
    }

    fn skip_pending_syncs(&mut self, resource: &str) -> Result<(), String> {
        let Some(applied) = self.applied.get(resource) else {
            return Ok(());
        };
        let file = applied.file.clone();
        // A volume UpToDate here (synced from a peer, say) has no initial sync to start any
        // more: its entry goes, so that it cannot fire should every member be Inconsistent
        // some day.
        let up_to_date = |volume: u16| {
            self.state()
                .and_then(|s| s.resources.get(resource))
                .and_then(|r| r.devices.get(&volume))
                .is_some_and(|d| d.disk == Some(DiskState::UpToDate))
        };
        let settled: Vec<(String, u16)> = self
            .skip_sync_pending
            .iter()
            .chain(&self.full_sync_pending)
            .filter(|(r, v)| r == resource && up_to_date(*v))
            .cloned()
            .collect();
        for entry in settled {
            self.skip_sync_pending.remove(&entry);
            self.full_sync_pending.remove(&entry);
        }
        let pending: Vec<u16> = self
            .skip_sync_pending
            .iter()
            .filter(|(r, _)| r == resource)
            .map(|(_, v)| *v)
            .collect();
        for volume in pending {
            if self.may_skip_sync(&file, volume) {
                self.execute(commands::new_current_uuid_clear_bitmap(
                    &self.file_path(resource),
                    resource,
                    volume,
                ))?;
                info!(resource, volume, "new zeroed volume: initial sync skipped");
                self.skip_sync_pending
                    .remove(&(resource.to_string(), volume));
            }
        }
        // Thick volumes: the same member, under the same conditions (every diskful member
        // connected and Inconsistent), declares its data the first generation; the others get
        // a full sync from it, as LINSTOR starts it.
        let full: Vec<u16> = self
            .full_sync_pending
            .iter()
            .filter(|(r, v)| r == resource && self.may_skip_sync(&file, *v))
            .map(|(_, v)| *v)
            .collect();
        if !full.is_empty() {
            let path = self.file_path(resource);
            self.execute(commands::primary_force(&path, resource))?;
            self.execute(commands::secondary(&path, resource))?;
            info!(resource, volumes = ?full, "new volumes not known to be zeroed: UpToDate here, full initial sync to the others");
            for volume in full {
                self.full_sync_pending
                    .remove(&(resource.to_string(), volume));
            }
        }
        Ok(())
    }
}

fn role(role: Option<DrbdRole>) -> Role {
    match role {
        Some(DrbdRole::Primary) => Role::Primary,
        Some(DrbdRole::Secondary) => Role::Secondary,
        _ => Role::Unknown,
    }
}

impl ReplicationDriver for DrbdDriver {
    fn engine(&self) -> ReplicationEngine {
        ReplicationEngine::Drbd
    }

    fn backing_kib(
        &self,
        usable_kib: u64,
        _replication: &ReplicationSpec,
        _volumes: &[u16],
    ) -> Result<u64, String> {
        Ok(usable_kib + metadata_kib(usable_kib, commands::DEFAULT_PEER_SLOTS))
    }

    fn begin_pass(&mut self) {
        let Some(feed) = self.feed.take() else {
            return;
        };
        while let Ok(piece) = feed.try_recv() {
            self.feed(piece);
        }
        self.feed = Some(feed);
    }

    fn apply(&mut self, member: &Member) -> Result<(), String> {
        let resource = member.resource;
        let file = self.build(member)?;
        let text = file.render().map_err(|e| e.to_string())?;
        let previous = self.previous(resource);
        // While the kernel's state is unknown, an unchanged file is taken as applied: adjust
        // again would change nothing, and what to detach or sync cannot be told.
        let state_unknown = self.mode == Mode::Real && self.state().is_none();
        if previous.as_deref() == Some(text.as_str()) && (self.is_up(resource) || state_unknown) {
            self.resize_grown(member)?;
            return self.skip_pending_syncs(resource);
        }
        let current = self.file_path(resource);
        // Disks that go: detached and wiped with the file that still names them.
        let old_disks = previous
            .as_deref()
            .map(|old| res_file::local_disks(old, &file.local.node_name))
            .unwrap_or_default();
        let new_disks: BTreeMap<u16, PathBuf> = file
            .volumes
            .iter()
            .filter_map(|v| v.backing.clone().map(|b| (v.number, b)))
            .collect();
        for (volume, disk) in &old_disks {
            if new_disks.get(volume).map(|d| d.to_string_lossy()) == Some(disk.as_str().into()) {
                continue;
            }
            if self.is_up(resource) {
                self.execute(commands::detach(&current, resource, *volume))?;
            }
            self.execute(commands::wipe_md(&current, resource, *volume))?;
            self.metadata_created
                .retain(|(r, v, _)| !(r == resource && v == volume));
        }
        let next = self.write_next(resource, &text)?;
        for volume in &member.volumes {
            let Some(disk) = &volume.backing else {
                continue;
            };
            if old_disks
                .iter()
                .any(|(v, d)| *v == volume.number && Path::new(d) == disk.as_path())
                || self.has_metadata(&next, resource, volume.number, disk)?
            {
                continue;
            }
            self.execute(commands::create_md(
                &next,
                resource,
                volume.number,
                commands::DEFAULT_PEER_SLOTS,
            ))?;
            self.metadata_created
                .insert((resource.to_string(), volume.number, disk.clone()));
            let pending = if volume.new_volume {
                &mut self.skip_sync_pending
            } else {
                &mut self.full_sync_pending
            };
            pending.insert((resource.to_string(), volume.number));
        }
        self.execute(commands::adjust(&next, resource))?;
        self.install(resource)?;
        info!(resource, file = %current.display(), "DRBD resource file applied");
        let usable_kib = self
            .applied
            .get(resource)
            .map(|a| a.usable_kib.clone())
            .unwrap_or_else(|| {
                member
                    .volumes
                    .iter()
                    .map(|v| (v.number, v.usable_kib))
                    .collect()
            });
        self.applied.insert(
            resource.to_string(),
            Applied {
                text,
                file,
                usable_kib,
            },
        );
        self.resize_grown(member)?;
        self.skip_pending_syncs(resource)
    }

    fn write_fresh_metadata(
        &mut self,
        member: &Member,
        volume: &MemberVolume,
        fresh: FreshMetadata,
    ) -> Result<(), String> {
        let resource = member.resource;
        let disk = volume
            .backing
            .clone()
            .ok_or_else(|| format!("volume {} of '{resource}' has no disk", volume.number))?;
        let minor = volume
            .minor
            .ok_or_else(|| format!("volume {} has no minor allocated yet", volume.number))?;
        // create-md reads the volume from the resource file: the one about to be applied.
        let text = self.build(member)?.render().map_err(|e| e.to_string())?;
        let next = self.write_next(resource, &text)?;
        self.execute(commands::create_md(
            &next,
            resource,
            volume.number,
            commands::DEFAULT_PEER_SLOTS,
        ))?;
        if let Some(generation) = fresh.generation {
            self.execute(commands::set_gi(
                minor,
                &disk,
                member.replication.node_id,
                generation,
            ))?;
        }
        self.metadata_created
            .insert((resource.to_string(), volume.number, disk));
        info!(resource, volume = volume.number, generation = ?fresh.generation, "fresh DRBD metadata over restored data");
        Ok(())
    }

    fn down(&mut self, resource: &str) -> Result<(), String> {
        let path = self.file_path(resource);
        let Some(text) = self.previous(resource) else {
            return Ok(());
        };
        if let Some(state) = self.state().and_then(|s| s.resources.get(resource))
            && state.in_use()
        {
            return Err(format!(
                "DRBD resource '{resource}' is in use on this node (Primary or opened)"
            ));
        }
        let node = self
            .applied
            .get(resource)
            .map(|a| a.file.local.node_name.clone());
        // When the kernel's state could not be read, down is run anyway: it is harmless on a
        // resource that is not up, and the metadata must not be wiped under a running one.
        if self.is_up(resource) || self.mode == Mode::DryRun || self.state().is_none() {
            self.execute(commands::down(&path, resource))?;
        }
        let disks = match &node {
            Some(node) => res_file::local_disks(&text, node),
            // After a restart: the first `on` section is this node's (the file starts with it).
            None => text
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("on \"")
                        .map(|r| r.trim_end_matches('"').to_string())
                })
                .map(|node| res_file::local_disks(&text, &node))
                .unwrap_or_default(),
        };
        for (volume, _) in disks {
            self.execute(commands::wipe_md(&path, resource, volume))?;
        }
        std::fs::remove_file(&path)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        let _ = std::fs::remove_file(self.next_path(resource));
        self.applied.remove(resource);
        self.metadata_created.retain(|(r, _, _)| r != resource);
        self.skip_sync_pending.retain(|(r, _)| r != resource);
        self.full_sync_pending.retain(|(r, _)| r != resource);
        info!(resource, "DRBD resource down, metadata wiped, file removed");
        Ok(())
    }

    fn suspend_io(&mut self, resource: &str) -> Result<(), String> {
        self.execute(commands::suspend_io(&self.file_path(resource), resource))
            .map(drop)
    }

    fn resume_io(&mut self, resource: &str) -> Result<(), String> {
        self.execute(commands::resume_io(&self.file_path(resource), resource))
            .map(drop)
    }

    fn report(&self, resource: &str, error: Option<String>) -> ReplicationReport {
        let applied = self.applied.get(resource);
        let mut report = ReplicationReport {
            resource: resource.to_string(),
            engine: ReplicationEngine::Drbd,
            role: Role::Unknown,
            in_use: false,
            quorum: false,
            volumes: Vec::new(),
            peers: Vec::new(),
            error,
            may_promote: None,
            promotion_score: None,
        };
        let minors: BTreeMap<u16, u32> = applied
            .map(|a| a.file.volumes.iter().map(|v| (v.number, v.minor)).collect())
            .unwrap_or_default();
        let usable: BTreeMap<u16, u64> = applied.map(|a| a.usable_kib.clone()).unwrap_or_default();
        if self.mode == Mode::DryRun {
            let Some(applied) = applied else {
                return report;
            };
            report.role = Role::Secondary;
            report.volumes = applied
                .file
                .volumes
                .iter()
                .map(|v| ReplicatedVolumeReport {
                    volume_number: v.number,
                    minor: Some(v.minor),
                    disk_state: if applied.file.local.diskless {
                        "Diskless"
                    } else {
                        "DUnknown"
                    }
                    .to_string(),
                    device_path: Some(format!("/dev/drbd{}", v.minor)),
                    nbd_uri: None,
                    nbd_tcp_uri: None,
                    usable_size_kib: usable.get(&v.number).copied(),
                })
                .collect();
            report.peers = applied
                .file
                .peers
                .iter()
                .map(|p| PeerReport {
                    node_name: p.node_name.clone(),
                    node_id: p.node_id,
                    connection: "DryRun".to_string(),
                    role: Role::Unknown,
                    volumes: Vec::new(),
                })
                .collect();
            return report;
        }
        let Some(known) = self.state() else {
            // Unknown, not stale: what the file says, and nothing of the kernel's state.
            if let Some(applied) = applied {
                report.volumes = applied
                    .file
                    .volumes
                    .iter()
                    .map(|v| ReplicatedVolumeReport {
                        volume_number: v.number,
                        minor: Some(v.minor),
                        disk_state: UNKNOWN.to_string(),
                        device_path: Some(format!("/dev/drbd{}", v.minor)),
                        nbd_uri: None,
                        nbd_tcp_uri: None,
                        usable_size_kib: usable.get(&v.number).copied(),
                    })
                    .collect();
            }
            if report.error.is_none() {
                report.error = Some(format!(
                    "the DRBD state is unknown: {}",
                    self.stream.unknown_because().unwrap_or_default()
                ));
            }
            return report;
        };
        let Some(state) = known.resources.get(resource) else {
            if report.error.is_none() {
                report.error = Some("not up in the kernel's DRBD".to_string());
            }
            return report;
        };
        report.role = role(state.role);
        report.in_use = state.in_use();
        report.quorum = state.quorum();
        report.may_promote = state.may_promote;
        report.promotion_score = state.promotion_score;
        report.volumes = state
            .devices
            .iter()
            .map(|(number, device)| ReplicatedVolumeReport {
                volume_number: *number,
                minor: device.minor.or(minors.get(number).copied()),
                disk_state: device.disk.map_or("DUnknown", |d| d.as_str()).to_string(),
                device_path: device
                    .minor
                    .or(minors.get(number).copied())
                    .map(|m| format!("/dev/drbd{m}")),
                nbd_uri: None,
                nbd_tcp_uri: None,
                usable_size_kib: device.size_kib.or(usable.get(number).copied()),
            })
            .collect();
        let names: BTreeMap<u8, String> = applied
            .map(|a| {
                a.file
                    .peers
                    .iter()
                    .map(|p| (p.node_id, p.node_name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        report.peers = state
            .connections
            .iter()
            .map(|(node_id, connection)| PeerReport {
                node_name: connection
                    .peer_name
                    .clone()
                    .or_else(|| names.get(node_id).cloned())
                    .unwrap_or_default(),
                node_id: *node_id,
                connection: connection
                    .connection
                    .map_or("Unknown", |c| c.as_str())
                    .to_string(),
                role: role(connection.role),
                volumes: connection
                    .peer_devices
                    .iter()
                    .map(|(number, device)| PeerVolumeReport {
                        volume_number: *number,
                        replication: device.replication.map_or("Off", |r| r.as_str()).to_string(),
                        peer_disk: device
                            .peer_disk
                            .map_or("DUnknown", |d| d.as_str())
                            .to_string(),
                        done_percent: device.done_percent,
                        out_of_sync_kib: device.out_of_sync_kib.unwrap_or(0),
                    })
                    .collect(),
            })
            .collect();
        if report.error.is_none()
            && let Some((_, c)) = state.connections.iter().find(|(_, c)| c.split_brain)
        {
            report.error = Some(format!(
                "split brain with '{}': DRBD keeps the connection StandAlone until one side's data is discarded",
                c.peer_name.as_deref().unwrap_or("a peer")
            ));
        }
        report
    }
}

/// How long changes are gathered before the reconciler is told: a resync's progress or a
/// connection going through its states is one report, not ten.
pub const EVENT_COALESCE: Duration = Duration::from_millis(100);

/// How long the watcher waits before it starts `drbdsetup events2` again after it ended.
pub const EVENT_RESTART: Duration = Duration::from_secs(1);

/// A piece of the followed `drbdsetup events2` stream, as the follower hands it to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// A new stream started: its initial state comes next.
    Started,
    Line(String),
    /// The stream ended, with the reason.
    Ended(String),
}

/// Follows `drbdsetup events2 --timestamps --statistics` through the host's runner on threads
/// of their own: hands every line to `sender`, framed by [`Feed::Started`] and [`Feed::Ended`],
/// and calls `notify` after the initial state, after each burst of changes and when the stream
/// ended, for as long as `notify` returns true and `sender`'s receiver lives. A stream that
/// ends or cannot start is started again after [`EVENT_RESTART`].
pub fn follow_events(
    runner: Arc<dyn HostCommands>,
    sender: Sender<Feed>,
    notify: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (changed, receiver) = std::sync::mpsc::channel::<()>();
    let stop = Arc::new(AtomicBool::new(false));
    let reader_stop = stop.clone();
    std::thread::Builder::new()
        .name("drbd-events".to_string())
        .spawn(move || {
            while !reader_stop.load(Ordering::SeqCst) {
                if sender.send(Feed::Started).is_err() {
                    return;
                }
                let mut listed = false;
                let outcome = runner.follow(&commands::events2(), &mut |line| {
                    if line.trim().is_empty() {
                        return true;
                    }
                    if sender.send(Feed::Line(line.to_string())).is_err() {
                        return false;
                    }
                    // The initial dump is one burst; after it, every line is a change.
                    listed = listed || line.trim_end().ends_with("exists -");
                    if listed {
                        let _ = changed.send(());
                    }
                    !reader_stop.load(Ordering::SeqCst)
                });
                let why = match outcome {
                    Ok(()) => "drbdsetup events2 ended".to_string(),
                    Err(e) => format!("cannot follow drbdsetup events2: {e}"),
                };
                warn!(reason = %why, "DRBD state unknown until events2 runs again");
                if sender.send(Feed::Ended(why)).is_err() {
                    return;
                }
                let _ = changed.send(());
                std::thread::sleep(EVENT_RESTART);
            }
        })?;
    std::thread::Builder::new()
        .name("drbd-notify".to_string())
        .spawn(move || {
            while receiver.recv().is_ok() {
                let deadline = std::time::Instant::now() + EVENT_COALESCE;
                while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                    if receiver.recv_timeout(left).is_err() {
                        break;
                    }
                }
                if !notify() {
                    stop.store(true, Ordering::SeqCst);
                    return;
                }
            }
        })
}
