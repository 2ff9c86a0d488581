//! The reconciler: the one owner of the node's desired state, the ledger of owned volumes, the
//! pool identities and the actual storage. It runs on its own thread and receives typed
//! [`Event`]s; nothing else touches storage, so no lock is needed and a long convergence never
//! blocks the connection.
//!
//! ```text
//!   Apply(full | delta) ──▶ prepare ──▶ check ──▶ take ──▶ persist (snapshot | journal) ──▶ converge ──▶ Applied
//!                                         │                       │          (a delta: only what it names)
//!                                         │                       └─ cannot persist: undo ─▶ NotApplied
//!                                         └─ older, conflicting, or dropping volumes ─────────▶ NotApplied
//!   Command(DeleteOrphan | RecreateMissing) ─────────▶ act ──▶ converge ──▶ Report, CommandDone
//!   every interval after the last full pass ──▶ converge a slice ─┬─▶ … the last slice ──▶ Report
//!                                                    ▲            │        (if it changed)
//!                                                    └── events ◀─┘ (taken between slices)
//! ```
//!
//! A delta converges the resources it names (and the snapshots it newly asks for); a full
//! state, a change of the pools, a command and the periodic pass ([`RECONCILE_INTERVAL`])
//! converge the whole node, except a full state asking for exactly what the node holds, on a
//! node without trouble (`untroubled`): that one, sent at every controller connection, is
//! answered from the last pass, and the checks skip looking up its volumes (the same content
//! wants the same volumes). So a delta costs the same on a node with a thousand resources as on
//! an empty one, and the periodic pass, which deltas do not postpone, still finds what changed
//! behind the satellite's back. That pass runs in slices ([`PASS_SLICE`]): the events that come
//! during it are taken between two slices, a delta converging within the pass (the providers
//! answer from the tables they read for it, kept current with what the reconciler does), so a
//! delta waits for a slice, not for a pass over every volume; the slice that reaches the last
//! resource does what needs all of them visited (orphans, outcomes of resources gone) and
//! reports. Deltas that keep coming (a node that falls behind) get no more than half of the
//! time: after a slice's worth of them, the pass gets a slice as long as they took, so it
//! still ends. A full pass asked for at once (a full state, a command) ends a sliced one.
//!
//! A delta is persisted the same way: one journal record with the resources it names
//! (`crate::desired`), and the ledger's changes likewise (`crate::ledger`), never the whole
//! file. What a pass found of each resource is kept ([`ResourceOutcome`]), and every report is
//! made from it: whole, or, for the answer to a delta, with the volumes of the named resources
//! only.
//!
//! The node's state is kept by resource key ([`NodeState`], `state`): a delta is made a
//! [`Change`], checked against the resources it names, and applied in place; what it replaced
//! ([`Undo`]) puts the state back if it cannot be persisted. The last report sent is kept by
//! parts (`sent`), and an answer replaces only the parts that changed. So the work a delta
//! does on the state, its check, its record and its report grows with what it names, not with
//! the node.
//!
//! Safety rules, each enforced here and tested in `reconciler_tests`:
//!
//! - A backing volume is deleted only when the desired state marks its volume (or resource) as
//!   `deleting` and names its identity, or by an operator's [`NodeCommand::DeleteOrphan`].
//!   A volume the state no longer mentions is kept and reported as an orphan.
//! - A state older than the applied one, a different state under the same stamp, and a state
//!   that stops wanting a volume the node holds without deleting it are refused (`checks`).
//!   Once the controller's full state was refused, its deltas are not taken either (their base
//!   is the controller's idea of the node, which is not the node's state) until a full state
//!   is.
//! - A volume this satellite created that has disappeared is reported missing, never created
//!   again behind the operator's back ([`NodeCommand::RecreateMissing`] allows it).
//! - A pool whose storage is not the one recorded (`crate::pools`) is left alone.
//! - A create that fails removes what it made, is reported, and is retried with backoff.
//! - A snapshot is taken only in the pass after the state that first holds it, never later;
//!   only snapshots in the ledger are deleted or rolled back to; a volume to be restored from
//!   a snapshot the node does not have is not created (`snapshots`).
//!
//! Converging is level-triggered and idempotent (`converge`); a pass over a converged node runs
//! only queries.
//!
//! A batch of deltas, a slice or the end of a pass that takes long is logged with where its
//! time went ([`SLOW_WORK`], [`SLOW_WORK_DEBUG`]; `docs/operations.md`).

mod checks;
mod commands;
mod converge;
mod intents;
mod sent;
mod snapshots;
mod state;

pub use state::{Change, NodeState, Undo};

use converge::{PassEnd, Visit};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use ferrite_proto::{
    DesiredState, HeldState, NodeCommand, NodeReport, PoolReport, PoolSpec, SatelliteMessage,
    Stamp, StateRefusal,
};
use ferrite_storage::{ProviderSupport, Providers};
use ferrite_types::{ProviderKind, ResourceName, VolumeNumber};
use tracing::{debug, error, info, info_span, warn};

use crate::desired::DesiredStateFile;
use crate::ledger::{Ledger, LedgerFile, VolumeKey};
use crate::persist::{DESIRED_STATE_FILE, LEDGER_FILE, PersistError, StateDir};
use crate::pools::PoolRegistry;
use crate::replication::ReplicationDriver;

/// How often the reconciler converges the whole node without being asked: the full pass that
/// retries what failed and notices what changed behind its back (a volume that vanished, a
/// loop device detached, capacity). A delta converges only the resources it names, so this
/// pass is what repairs drift elsewhere; deltas do not postpone it.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(30);

/// How far each wait for the next full pass strays from the interval, either way, as a share
/// of it (a tenth: 27–33 s of 30), drawn anew after every pass, so that passes that fell
/// together drift apart.
pub const PASS_SPREAD: f64 = 0.1;

/// The wait after a full pass: `interval` scaled by a factor drawn from
/// `1 ± PASS_SPREAD`.
fn spread_interval(interval: Duration) -> Duration {
    Duration::from_secs_f64(crate::spread::around(interval.as_secs_f64(), PASS_SPREAD))
}

/// The wait after a full pass the node did not time itself (the pass at start, for a full
/// state, for a command): drawn from half an interval to one and a half. Such a pass may have
/// come to every node at once (a rack after a power cut, an upgrade that restarted every
/// satellite, a controller that sent every node its full state), and the nodes then spread
/// their periodic passes over a whole interval at once, rather than passing and reporting at
/// the same moment for as long as [`PASS_SPREAD`] takes to part them (16 nodes on one host,
/// each pass 0.3 s of a core, would otherwise hold both cores of a small machine for seconds
/// every interval).
fn prompted_wait(interval: Duration) -> Duration {
    Duration::from_secs_f64(crate::spread::around(interval.as_secs_f64(), 0.5))
}

/// How long a slice of the periodic full pass runs before the reconciler takes the events
/// that came meanwhile (a delta waits for the slice under way, not for the whole pass: 0.2–0.4
/// s at 12,500 volumes). A slice visits at least one resource, so a pass always ends.
pub const PASS_SLICE: Duration = Duration::from_millis(5);

/// The most deltas taken together ([`Reconciler::apply_deltas`]): a bound on how long the
/// first of them waits for its answer.
pub const MAX_DELTAS_TOGETHER: usize = 32;

/// A batch of deltas, a slice of a pass or the end of a pass that takes at least this long is
/// logged (at `info`) with where its time went, as the controller logs a slow change: a
/// spawn waits for the slowest of its nodes. An LVM or ZFS create alone takes a good part
/// of a second, so less than this is normal on a real node.
pub const SLOW_WORK: Duration = Duration::from_secs(1);

/// The same, logged at `debug`: what a node of fast providers (files, a simulated host)
/// shows under load, to find where its spawns wait.
pub const SLOW_WORK_DEBUG: Duration = Duration::from_millis(20);

/// A pool's capacity or a thin volume's allocation must change by at least this many percent
/// (of the total) before an unprompted report is sent for it.
pub const REPORT_CHANGE_PERCENT: u64 = 1;

/// The first wait before a failed create is tried again; it doubles with every failure.
pub const CREATE_RETRY_MIN: Duration = Duration::from_secs(10);

/// The longest wait between attempts to create a volume.
pub const CREATE_RETRY_MAX: Duration = Duration::from_secs(600);

/// DRBD's words for a volume's disk.
pub mod disk_state {
    pub const UP_TO_DATE: &str = "UpToDate";
    pub const DISKLESS: &str = "Diskless";
    pub const FAILED: &str = "Failed";
    /// The volume's backing volume is being deleted, as the desired state asked.
    pub const DELETING: &str = "Deleting";
    /// The resource is deactivated: its backing volume is kept, its devices are down.
    pub const INACTIVE: &str = "Inactive";
}

/// Where the reconciler sends messages for the controller: the current session's outbox.
pub type Outbox = tokio::sync::mpsc::UnboundedSender<SatelliteMessage>;

/// What the reconciler is told.
#[derive(Debug)]
pub enum Event {
    /// A desired state from the controller; the answer (`Applied`, `NotApplied` or
    /// `NeedFullState`) goes to `reply`.
    Apply {
        state: DesiredState,
        reply: Outbox,
    },
    /// The node's full state at `stamp` is the one it holds, with `digest`
    /// (`ApplySameState`); answered as `Apply` is.
    ApplySame {
        stamp: Stamp,
        digest: String,
        reply: Outbox,
    },
    /// A controller of node registration `node_uuid` says Hello: which state does the node
    /// hold ([`Reconciler::held_state`]), for its `Welcome`?
    Held {
        node_uuid: String,
        reply: tokio::sync::oneshot::Sender<Option<HeldState>>,
    },
    /// A controller session started; unprompted reports go to `outbox` from now on.
    ControllerConnected {
        node_name: String,
        /// The node's UUID as the controller has it (empty from controllers that do not say).
        node_uuid: String,
        outbox: Outbox,
    },
    /// The controller session ended.
    ControllerLost,
    /// An operator's command; answered with `CommandDone` on `reply`.
    Command {
        request_id: u64,
        command: NodeCommand,
        reply: Outbox,
    },
    /// Converge now (as if the interval had passed): a full pass, in slices under
    /// [`Reconciler::run`].
    Converge,
    /// A replication engine's state of some resource changed: report it (no storage pass).
    ReplicationChanged,
    Shutdown,
}

/// Why a state is not taken.
enum NotTaken {
    /// A delta on a generation the node does not have, or from a controller whose full state
    /// the node refused.
    NeedFullState,
    /// The state of this generation fails a check.
    Refused(u64, StateRefusal),
}

/// A state made ready to take ([`Reconciler::prepare`]).
enum Next {
    /// The node's whole next state: a full state, or a delta that changes the pools.
    Whole(NodeState),
    /// A delta that leaves the pools as they are, to apply in place.
    Change(Change),
}

impl Next {
    fn generation(&self) -> u64 {
        match self {
            Next::Whole(state) => state.generation,
            Next::Change(change) => change.generation,
        }
    }
}

/// What taking a state replaced: put back when it cannot be persisted.
enum Replaced {
    /// The whole state before (`None`: the node had none).
    Whole(Option<NodeState>),
    /// What a change (or changes taken together) replaced.
    Change(Undo),
}

/// The [`resource_key`]s of `names`.
fn resource_keys(names: &[String]) -> BTreeSet<String> {
    names.iter().map(|n| resource_key(n)).collect()
}

/// A create that failed, and when to try again.
/// Where a full pass run in slices is: the key of the last resource it visited (none yet for
/// `None`). Keys, not positions: deltas between slices may add and remove resources, and one
/// added before the cursor was converged by its delta.
#[derive(Debug)]
struct SlicedPass {
    after: Option<String>,
}

#[derive(Debug, Clone)]
struct CreateFailure {
    attempts: u32,
    error: String,
    retry_at: Instant,
}

/// What the last pass that visited a resource found: its part of the node's report (volumes,
/// replication, deletions, errors, snapshots) and the ledger entries its volumes hold, so that
/// a pass over other resources still knows they are not orphans.
#[derive(Debug, Default)]
struct ResourceOutcome {
    report: NodeReport,
    in_use: BTreeSet<VolumeKey>,
    being_deleted: BTreeSet<VolumeKey>,
}

impl ResourceOutcome {
    /// Whether it has a part in every report, named or whole: errors or snapshots.
    fn is_notable(&self) -> bool {
        !self.report.errors.is_empty()
            || !self.report.snapshots.is_empty()
            || !self.report.deleted_snapshots.is_empty()
    }
}

/// The storage pool's report, as `CheckPool` and every convergence produce it.
pub fn pool_report(
    providers: &Providers,
    support: &ProviderSupport,
    pool: &PoolSpec,
) -> PoolReport {
    let mut report = PoolReport {
        name: pool.name.clone(),
        provider_kind: pool.provider_kind,
        free_capacity_kib: None,
        total_capacity_kib: None,
        errors: Vec::new(),
    };
    if !support.supports(pool.provider_kind) {
        report.errors.push(unsupported(pool.provider_kind, support));
        return report;
    }
    match providers
        .get(pool.provider_kind)
        .check_pool(&pool.pool_name)
    {
        Ok(Some(capacity)) => {
            report.free_capacity_kib = Some(capacity.free_kib);
            report.total_capacity_kib = Some(capacity.total_kib);
        }
        Ok(None) => {}
        Err(e) => report.errors.push(e.to_string()),
    }
    report
}

fn unsupported(kind: ProviderKind, support: &ProviderSupport) -> String {
    format!(
        "storage provider {kind} is not supported on this node: {}",
        support.reasons(kind).join("; ")
    )
}

/// Resource names compare case-insensitively, as in LINSTOR.
pub(crate) fn resource_key(name: &str) -> String {
    name.to_ascii_uppercase()
}

fn changed_noticeably(old: Option<u64>, new: Option<u64>, total: Option<u64>) -> bool {
    match (old, new) {
        (Some(old), Some(new)) => {
            let total = total.unwrap_or(0).max(1);
            old.abs_diff(new) * 100 >= total * REPORT_CHANGE_PERCENT
        }
        (old, new) => old != new,
    }
}

/// Whether `new` differs enough from the last report sent to be worth an unprompted report.
pub fn differs_noticeably(old: &NodeReport, new: &NodeReport) -> bool {
    if old.generation != new.generation
        || old.storage_pools.len() != new.storage_pools.len()
        || old.volumes.len() != new.volumes.len()
        || old.errors != new.errors
        || old.deleted_volumes != new.deleted_volumes
        || old.deleted_resources != new.deleted_resources
        || old.orphans != new.orphans
        || old.replication != new.replication
        || old.snapshots != new.snapshots
        || old.deleted_snapshots != new.deleted_snapshots
        || old.io_suspended != new.io_suspended
    {
        return true;
    }
    let pools = old
        .storage_pools
        .iter()
        .zip(&new.storage_pools)
        .any(|(a, b)| {
            a.name != b.name
                || a.errors != b.errors
                || a.total_capacity_kib != b.total_capacity_kib
                || changed_noticeably(
                    a.free_capacity_kib,
                    b.free_capacity_kib,
                    b.total_capacity_kib,
                )
        });
    let volumes = old.volumes.iter().zip(&new.volumes).any(|(a, b)| {
        a.resource != b.resource
            || a.volume_number != b.volume_number
            || a.device_path != b.device_path
            || a.usable_size_kib != b.usable_size_kib
            || a.disk_state != b.disk_state
            || a.error != b.error
            || changed_noticeably(
                a.allocated_size_kib,
                b.allocated_size_kib,
                b.usable_size_kib,
            )
    });
    pools || volumes
}

/// Where a piece of the reconciler's work spent its time, for the log of slow work
/// ([`SLOW_WORK`]).
struct WorkTiming {
    started: Instant,
    last: Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl WorkTiming {
    fn start() -> Self {
        let now = Instant::now();
        WorkTiming {
            started: now,
            last: now,
            laps: Vec::with_capacity(3),
        }
    }

    /// Ends the step `name`.
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.laps.push((name, now - self.last));
        self.last = now;
    }

    /// Logs the steps when the whole took [`SLOW_WORK_DEBUG`] or longer (at `info` from
    /// [`SLOW_WORK`]).
    fn log_if_slow(&self, node: &str, what: &str, deltas: usize) {
        let total = self.last - self.started;
        if total < SLOW_WORK_DEBUG {
            return;
        }
        let steps = self
            .laps
            .iter()
            .map(|(name, took)| format!("{name}_ms={}", took.as_millis()))
            .collect::<Vec<_>>()
            .join(" ");
        let total_ms = total.as_millis() as u64;
        if total >= SLOW_WORK {
            info!(node, deltas, total_ms, %steps, "{what}");
        } else {
            debug!(node, deltas, total_ms, %steps, "{what}");
        }
    }
}

/// The owner of the node's storage state.
pub struct Reconciler {
    node_name: String,
    state_dir: Arc<StateDir>,
    providers: Arc<Providers>,
    support: ProviderSupport,
    desired: Option<NodeState>,
    /// The node registration `desired` came from.
    desired_node_uuid: String,
    /// The node registration of the current controller session.
    session_node_uuid: String,
    ledger: Ledger,
    /// Where `desired` is kept: snapshot and journal (`crate::desired`).
    desired_file: DesiredStateFile,
    /// Where `ledger` is kept: snapshot and journal.
    ledger_file: LedgerFile,
    pools: PoolRegistry,
    controller: Option<Outbox>,
    /// The last report sent to the controller, by parts (`sent`).
    last_sent: Option<sent::Sent>,
    /// The last report sent in an earlier session, kept when a session starts: with `unsent`
    /// it still says which parts differ from what the passes found, so the first answer of the
    /// new session records only those instead of copying every part (`sent`).
    earlier_sent: Option<sent::Sent>,
    /// The resources whose part of `last_sent` may differ from what the passes found since.
    unsent: sent::Unsent,
    /// Whether this pass created, grew or deleted something (so capacity must be read again).
    storage_changed: bool,
    create_failures: HashMap<VolumeKey, CreateFailure>,
    /// [`CREATE_RETRY_MIN`] and [`CREATE_RETRY_MAX`]; shorter in tests.
    create_retry: (Duration, Duration),
    /// The orphans last logged, so each is logged once, not at every pass.
    logged_orphans: BTreeSet<String>,
    /// Whether the controller of this session is known to share the node's state: it sent a
    /// full state the node took. A delta is a change to the controller's idea of the node's
    /// state; after the node refused the controller's full state (a stale or diverged store),
    /// that idea is not the node's state even where the generations match, and no delta is
    /// taken until a full state is.
    in_sync: bool,
    /// The replication engines this node runs (see `crate::replication`).
    drivers: Vec<Box<dyn ReplicationDriver>>,
    /// Snapshots (by UUID) that the last applied state newly holds: the next pass takes them.
    new_snapshots: BTreeSet<String>,
    /// Why a snapshot volume (UUID, volume number) could not be taken, as first seen.
    snapshot_failures: HashMap<(String, u16), String>,
    /// The resources whose writes this node holds for a snapshot's cut (see `snapshots`).
    held_io: BTreeMap<String, snapshots::Hold>,
    /// Holds that ran out their lease while the state still asks for them: not taken up again
    /// until it stops asking.
    lapsed_io: BTreeSet<String>,
    /// What the passes found, per resource (by [`resource_key`]) of the desired state.
    outcomes: BTreeMap<String, ResourceOutcome>,
    /// The resources whose outcome [`ResourceOutcome::is_notable`]: what a report of named
    /// resources takes from every resource.
    notable: BTreeSet<String>,
    /// Whether `node_outcome`'s orphans were found by a full pass since the start (a pass over
    /// named resources looks again only at their ledger entries).
    orphans_known: bool,
    /// The node-wide part of the last pass's report: pools, orphans, held writes, and errors
    /// that belong to no one resource.
    node_outcome: NodeReport,
    /// The ledger holds changes not yet saved that may wait for the next save: volumes seen
    /// to exist ([`Reconciler::mark_created`]). Saved with the next change that is saved at
    /// once, at the end of a full pass, or when the reconciler stops.
    ledger_behind: bool,
    /// Whether the ledger may hold volumes without identity (recorded before identities, or
    /// created for a state that named none), which [`Reconciler::take_over_legacy_volumes`]
    /// looks for. False once a look found none and no such volume was recorded since, so a
    /// delta does not walk every entry of the ledger to learn that again.
    legacy_volumes: bool,
    /// The volumes recorded ahead for the pass under way, that it has not created yet
    /// (`intents`).
    intents: BTreeSet<VolumeKey>,
    /// When the last full pass ended.
    last_full_pass: Option<Instant>,
    /// How long after it the next one is due ([`Reconciler::next_wait`]), drawn when first
    /// asked after it.
    next_pass_after: Option<Duration>,
    /// Whether the last full pass was one the node did not time itself ([`prompted_wait`]).
    pass_prompted: bool,
    /// The periodic full pass under way in slices ([`PASS_SLICE`]), if one is.
    sliced_pass: Option<SlicedPass>,
    /// The pools as the first slice of that pass read them, for its later slices.
    slice_pools: Option<Vec<PoolReport>>,
    /// The content digest of `desired` and the stamp it was computed at (`held_digest`).
    digest_of_held: Option<(Stamp, String)>,
}

impl Reconciler {
    /// Loads the persisted desired state, ledger and pool identities. A corrupt file is an
    /// error, not an empty state: guessing could delete volumes.
    pub fn load(
        node_name: String,
        state_dir: Arc<StateDir>,
        providers: Arc<Providers>,
        support: ProviderSupport,
    ) -> Result<Self, PersistError> {
        let (mut desired_file, persisted) =
            DesiredStateFile::load(state_dir.file(DESIRED_STATE_FILE))?;
        let (desired, desired_node_uuid) = match persisted {
            Some(p) => (Some(p.desired), p.node_uuid),
            None => (None, String::new()),
        };
        let (mut ledger_file, ledger) = LedgerFile::load(state_dir.file(LEDGER_FILE))?;
        // Every start folds the journals into the JSON files, so that those of a satellite that
        // started since its last change hold everything (for an operator reading or mending
        // them, and for a version without journals).
        if let Some(desired) = &desired
            && !desired_file.journal().is_empty()
        {
            desired_file.save_whole(&desired_node_uuid, desired)?;
        }
        ledger_file.fold_journal(&ledger)?;
        let pools = PoolRegistry::load(&state_dir)?;
        if let Some(desired) = &desired {
            info!(
                node = %node_name,
                generation = desired.generation,
                epoch = desired.epoch,
                resources = desired.resource_count(),
                owned_volumes = ledger.volumes.len(),
                "loaded the persisted desired state"
            );
        }
        Ok(Reconciler {
            node_name,
            state_dir,
            providers,
            support,
            desired,
            session_node_uuid: desired_node_uuid.clone(),
            desired_node_uuid,
            ledger,
            desired_file,
            ledger_file,
            pools,
            controller: None,
            last_sent: None,
            earlier_sent: None,
            unsent: sent::Unsent::default(),
            storage_changed: false,
            create_failures: HashMap::new(),
            create_retry: (CREATE_RETRY_MIN, CREATE_RETRY_MAX),
            logged_orphans: BTreeSet::new(),
            in_sync: false,
            drivers: Vec::new(),
            new_snapshots: BTreeSet::new(),
            snapshot_failures: HashMap::new(),
            held_io: BTreeMap::new(),
            lapsed_io: BTreeSet::new(),
            outcomes: BTreeMap::new(),
            notable: BTreeSet::new(),
            orphans_known: false,
            node_outcome: NodeReport::default(),
            ledger_behind: false,
            legacy_volumes: true,
            intents: BTreeSet::new(),
            last_full_pass: None,
            next_pass_after: None,
            pass_prompted: false,
            sliced_pass: None,
            slice_pools: None,
            digest_of_held: None,
        })
    }

    /// Lets the reconciler apply resources whose stack has `driver`'s replication layer.
    pub fn add_replication_driver(&mut self, driver: Box<dyn ReplicationDriver>) {
        self.drivers.retain(|d| d.engine() != driver.engine());
        self.drivers.push(driver);
    }

    /// Sets the first and longest wait before a failed create is tried again.
    pub fn set_create_retry(&mut self, first: Duration, longest: Duration) {
        self.create_retry = (first, longest);
    }

    /// The generation of the desired state the node has.
    pub fn generation(&self) -> Option<u64> {
        self.desired.as_ref().map(|d| d.generation)
    }

    pub fn desired(&self) -> Option<&NodeState> {
        self.desired.as_ref()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn pool_registry(&self) -> &PoolRegistry {
        &self.pools
    }

    /// Handles one event. Returns false on `Shutdown`.
    pub fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Apply { state, reply } => {
                let answer = self.apply(state);
                if reply.send(answer).is_err() {
                    debug!("the session that sent the state has ended; the answer is dropped");
                }
            }
            Event::ApplySame {
                stamp,
                digest,
                reply,
            } => {
                let answer = self.apply_same(stamp, &digest);
                if reply.send(answer).is_err() {
                    debug!("the session that sent the state has ended; the answer is dropped");
                }
            }
            Event::Held { node_uuid, reply } => {
                let _ = reply.send(self.held_state(&node_uuid));
            }
            Event::ControllerConnected {
                node_name,
                node_uuid,
                outbox,
            } => {
                self.node_name = node_name;
                self.session_node_uuid = node_uuid;
                self.controller = Some(outbox);
                // Nothing is sent in this session yet; what the last one sent is kept aside.
                if let Some(sent) = self.last_sent.take() {
                    self.earlier_sent = Some(sent);
                }
                // A session starts with a full state; deltas build on it.
                self.in_sync = false;
            }
            Event::Command {
                request_id,
                command,
                reply,
            } => {
                let result = self.command(command);
                // The report of what the command did goes first: the controller takes it in
                // before the answer ends the operator's request, so a listing right after the
                // answer (of the orphans, say) already shows the result.
                self.converge_and_report();
                let _ = reply.send(SatelliteMessage::CommandDone { request_id, result });
            }
            Event::ControllerLost => {
                self.controller = None;
                // The next controller's Hello asks which state the node holds: its digest is
                // made now, while no controller waits for it (a restarted controller takes
                // its store's load to come back; then every node reconnects at once).
                let _ = self.held_digest();
            }
            Event::Converge => self.converge_and_report(),
            Event::ReplicationChanged => self.report_replication(),
            Event::Shutdown => return false,
        }
        true
    }

    /// Runs until `Shutdown` or until every sender is gone, converging every `interval`.
    /// Converges once right away, so a restarted satellite repairs the node without waiting for
    /// its controller. The periodic pass runs in slices ([`PASS_SLICE`]), and the events that
    /// come meanwhile are taken between them.
    pub fn run(mut self, events: Receiver<Event>, interval: Duration) {
        // A failed create is tried again at the next pass at the earliest.
        self.create_retry.0 = self.create_retry.0.min(interval);
        self.converge_and_report();
        // How long the events taken since the last slice of a pass took. Waiting events go
        // first, but for no longer than a slice; then the pass gets a slice as long as they
        // took. So a stream of deltas that never leaves the queue empty (a node that falls
        // behind) neither holds the pass back for ever nor is held back by it: each gets at
        // least half of the time.
        let mut since_slice = Duration::ZERO;
        loop {
            if self.sliced_pass.is_some() {
                if since_slice < PASS_SLICE {
                    match events.try_recv() {
                        Ok(event) => {
                            let taken = Instant::now();
                            if !self.take_event(event, &events) {
                                break;
                            }
                            since_slice += taken.elapsed();
                            continue;
                        }
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => break,
                    }
                }
                self.converge_slice(PASS_SLICE.max(since_slice));
                since_slice = Duration::ZERO;
                continue;
            }
            // About every `interval` after the last full pass ([`spread_interval`]), however
            // many deltas came in between (each converged only what it named).
            let after = self.next_wait(interval);
            let next = self.last_full_pass.unwrap_or_else(Instant::now) + after;
            // Due first: a node that never runs out of deltas still gets its full pass.
            if Instant::now() >= next {
                self.begin_sliced_pass();
                continue;
            }
            match events.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(event) => {
                    if !self.take_event(event, &events) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.begin_sliced_pass(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.stop();
    }

    /// What the reconciler does when it stops: saves what waited to be saved.
    pub(crate) fn stop(&mut self) {
        self.persist_ledger_behind();
        info!(node = %self.node_name, "reconciler stopped");
    }

    /// How long after the last full pass the next periodic one is due: drawn when first asked
    /// after a pass, wide after one the node did not time itself ([`prompted_wait`]), narrow
    /// after a periodic one ([`spread_interval`]).
    pub(crate) fn next_wait(&mut self, interval: Duration) -> Duration {
        if let Some(after) = self.next_pass_after {
            return after;
        }
        let after = if std::mem::take(&mut self.pass_prompted) {
            prompted_wait(interval)
        } else {
            spread_interval(interval)
        };
        self.next_pass_after = Some(after);
        after
    }

    /// Takes `event` in [`Reconciler::run`]: a delta with the deltas queued behind it, a
    /// request to converge as the start of a sliced pass, anything else as
    /// [`Reconciler::handle`] does. Returns false on `Shutdown`.
    fn take_event(&mut self, event: Event, events: &Receiver<Event>) -> bool {
        match event {
            Event::Apply { state, reply } if state.base_generation.is_some() => {
                // Deltas queued behind this one are taken with it.
                let mut deltas = vec![(state, reply)];
                let mut after = None;
                while deltas.len() < MAX_DELTAS_TOGETHER {
                    match events.try_recv() {
                        Ok(Event::Apply { state, reply }) if state.base_generation.is_some() => {
                            deltas.push((state, reply));
                        }
                        Ok(other) => {
                            after = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.apply_deltas(deltas);
                after.is_none_or(|event| self.take_event(event, events))
            }
            Event::Converge => {
                self.begin_sliced_pass();
                true
            }
            event => self.handle(event),
        }
    }

    /// Starts a full pass in slices (none if one is under way): the providers read their
    /// host-wide tables for it, and keep them current with what the reconciler does, until it
    /// ends. Deltas taken between its slices converge within it.
    pub fn begin_sliced_pass(&mut self) {
        if self.sliced_pass.is_some() {
            return;
        }
        self.providers.begin_pass();
        for driver in &mut self.drivers {
            driver.begin_pass();
        }
        self.sliced_pass = Some(SlicedPass { after: None });
    }

    /// Converges the next slice of the sliced pass under way, for about `budget`; the slice
    /// that ends the pass sends its report, as the periodic pass does. Returns whether a pass
    /// is still under way.
    pub fn converge_slice(&mut self, budget: Duration) -> bool {
        let Some(pass) = self.sliced_pass.take() else {
            return false;
        };
        let mut timing = WorkTiming::start();
        let until = Instant::now() + budget;
        let visit = Visit::Full {
            after: pass.after.as_deref(),
            until: Some(until),
        };
        let end = self.converge_pass(visit);
        timing.lap("converge");
        match end {
            PassEnd::After(key) => {
                self.sliced_pass = Some(SlicedPass { after: Some(key) });
                timing.log_if_slow(&self.node_name, "slow slice of a pass", 0);
                true
            }
            PassEnd::Done => {
                self.providers.end_pass();
                self.report_found_if_changed();
                timing.lap("report");
                timing.log_if_slow(&self.node_name, "slow end of a pass", 0);
                false
            }
        }
    }

    /// Makes `state` ready to take: a delta as a [`Change`] to the node's state, a full state
    /// (or a delta that changes the pools) whole; and checks it (`checks`). Returns it with,
    /// for a change, the resources it names, and whether it asks for the pools and resources
    /// of the applied state. Changes nothing.
    fn prepare(&self, state: DesiredState) -> Result<(Next, Option<Vec<String>>, bool), NotTaken> {
        // A delta converges the resources it names and is answered with their volumes; a full
        // state converges the whole node and is answered with every volume.
        let mut scope: Option<Vec<String>> = state.base_generation.map(|_| {
            let named = state.resources.iter().map(|r| r.name.clone());
            named
                .chain(state.removed_resources.iter().cloned())
                .collect()
        });
        let next = match state.base_generation {
            None => Next::Whole(NodeState::from_full(state)),
            Some(base) => match &self.desired {
                Some(current) if current.generation == base && self.in_sync => {
                    let change = Change::from_delta(state);
                    if change.storage_pools == current.storage_pools {
                        Next::Change(change)
                    } else {
                        // A change to the pools concerns every resource in them: such a state
                        // is checked and converged whole.
                        let mut whole = current.clone();
                        whole.apply(change);
                        Next::Whole(whole)
                    }
                }
                Some(current) if current.generation == base => {
                    info!(have_generation = ?self.generation(), "delta on a generation this controller's full state did not match; asking for the full state");
                    return Err(NotTaken::NeedFullState);
                }
                _ => {
                    info!(have_generation = ?self.generation(), "delta does not fit; asking for the full state");
                    return Err(NotTaken::NeedFullState);
                }
            },
        };
        if let Next::Whole(_) = next {
            scope = None;
        }
        let same_content = self
            .check(&next)
            .map_err(|refusal| NotTaken::Refused(next.generation(), refusal))?;
        Ok((next, scope, same_content))
    }

    /// Takes a prepared state as the node's: the snapshots it newly holds are noted. Returns
    /// the resources to converge (`scope` and those of the new snapshots, taken in the pass
    /// right after the state that first holds them) and what the state replaced.
    fn take(
        &mut self,
        next: Next,
        mut scope: Option<Vec<String>>,
    ) -> (Option<Vec<String>>, Replaced) {
        self.note_new_snapshots(&next);
        let replaced = match next {
            Next::Whole(next) => Replaced::Whole(self.desired.replace(next)),
            Next::Change(change) => match self.desired.as_mut() {
                Some(current) => Replaced::Change(current.apply(change)),
                // Not reached: a change is only made on top of a state.
                None => {
                    let mut state = NodeState::default();
                    state.apply(change);
                    Replaced::Whole(self.desired.replace(state))
                }
            },
        };
        if let Some(names) = scope.as_mut().filter(|_| !self.new_snapshots.is_empty()) {
            for resource in self.desired.iter().flat_map(|d| d.resources()) {
                if resource
                    .snapshots
                    .iter()
                    .any(|s| self.new_snapshots.contains(&s.uuid))
                {
                    names.push(resource.name.clone());
                }
            }
        }
        (scope, replaced)
    }

    /// Makes the node's state durable: whole (`named` `None`), or where it differs from the
    /// state last persisted, in the resources `named` (by [`resource_key`]), its stamp and
    /// pools.
    fn persist_desired(&mut self, named: Option<&BTreeSet<String>>) -> Result<(), PersistError> {
        let Some(desired) = &self.desired else {
            return Ok(());
        };
        match named {
            None => self
                .desired_file
                .save_whole(&self.session_node_uuid, desired),
            Some(named) => self
                .desired_file
                .save_named(&self.session_node_uuid, desired, named),
        }
    }

    /// After a state could not be persisted: back to the last one taken (what is on disk),
    /// by putting back what the states taken since `replaced`, and the snapshots noted before.
    fn restore_persisted(&mut self, replaced: Replaced, new_snapshots: BTreeSet<String>) {
        match replaced {
            Replaced::Whole(before) => self.desired = before,
            Replaced::Change(undo) => {
                if let Some(current) = self.desired.as_mut() {
                    current.undo(undo);
                }
            }
        }
        self.new_snapshots = new_snapshots;
    }

    /// Takes a desired state: a full one replaces, a delta applies on top of the generation it
    /// was made for. It is checked (`checks`) and persisted before anything is done about it.
    pub fn apply(&mut self, state: DesiredState) -> SatelliteMessage {
        let span = info_span!(
            "apply",
            node = %self.node_name,
            generation = state.generation,
            epoch = state.epoch,
            base_generation = ?state.base_generation
        );
        let _entered = span.enter();
        let full = state.base_generation.is_none();
        let (next, scope, same_content) = match self.prepare(state) {
            Ok(prepared) => prepared,
            Err(NotTaken::NeedFullState) => {
                return SatelliteMessage::NeedFullState {
                    have_generation: self.generation(),
                };
            }
            Err(NotTaken::Refused(generation, refusal)) => {
                warn!(%refusal, "refusing the desired state");
                if full && !refusal.is_transient() {
                    self.in_sync = false;
                }
                return self.not_applied(generation, refusal);
            }
        };
        let unchanged = full && same_content && self.untroubled();
        self.take_and_answer(next, scope, full, unchanged)
    }

    /// Takes the controller's word that the node's full state at `stamp` is the one it holds
    /// (`ApplySameState`, after a `Welcome` that gave `digest`): as a full state of the same
    /// content would be taken, without decoding and comparing 12,500 resources. A state that
    /// no longer has that digest, or that came from another registration of the node, is not
    /// taken: the answer asks for the full state.
    pub fn apply_same(&mut self, stamp: Stamp, digest: &str) -> SatelliteMessage {
        let span = info_span!(
            "apply_same",
            node = %self.node_name,
            generation = stamp.generation,
            epoch = stamp.epoch
        );
        let _entered = span.enter();
        let matches = self.desired_node_uuid == self.session_node_uuid
            && self.held_digest().is_some_and(|held| held == digest);
        let held = self.desired.as_ref().filter(|_| matches);
        let Some(held) = held else {
            info!(have_generation = ?self.generation(), "the controller's state is not the one this node holds; asking for the full state");
            return SatelliteMessage::NeedFullState {
                have_generation: self.generation(),
            };
        };
        // The content is the node's: of a full state's checks, only the stamp's is left.
        if stamp < held.stamp() {
            let refusal = StateRefusal::Older {
                offered: stamp,
                applied: held.stamp(),
            };
            warn!(%refusal, "refusing the desired state");
            self.in_sync = false;
            return self.not_applied(stamp.generation, refusal);
        }
        let restamp = Change {
            epoch: stamp.epoch,
            generation: stamp.generation,
            storage_pools: held.storage_pools.clone(),
            resources: BTreeMap::new(),
        };
        let unchanged = self.untroubled();
        let answer = self.take_and_answer(Next::Change(restamp), None, true, unchanged);
        // Taken, the content is the one digested under the stamp before: the digest goes on
        // under the new stamp instead of being made again at the next Hello.
        if let Some(held) = self.desired.as_ref().filter(|d| d.stamp() == stamp) {
            self.digest_of_held = Some((held.stamp(), digest.to_string()));
        }
        answer
    }

    /// Takes a state that passed its checks, persists it and answers: the tail of
    /// [`Self::apply`] and [`Self::apply_same`]. `full`: it is the node's whole state (`scope`
    /// `None`); `unchanged`: a whole state asking for what the node holds, on a node without
    /// trouble, answered from the last pass with only its stamp persisted.
    fn take_and_answer(
        &mut self,
        next: Next,
        scope: Option<Vec<String>>,
        full: bool,
        unchanged: bool,
    ) -> SatelliteMessage {
        let generation = next.generation();
        self.take_over_legacy_volumes(&next);
        // An unchanged state needs only its new stamp on disk.
        let named = if unchanged {
            Some(BTreeSet::new())
        } else {
            scope.as_deref().map(resource_keys)
        };
        let new_snapshots = self.new_snapshots.clone();
        let (scope, replaced) = self.take(next, scope);
        if let Err(e) = self.persist_desired(named.as_ref()) {
            // Acting on a state that a restart would forget is worse than not acting: keep the
            // old state and say which generation the node is still at.
            error!(error = %e, "could not persist the desired state; it is not applied");
            self.restore_persisted(replaced, new_snapshots);
            return self.not_applied(
                generation,
                StateRefusal::CannotPersist {
                    error: format!("generation {generation}: {e}"),
                },
            );
        }
        if full {
            self.in_sync = true;
        }
        self.desired_node_uuid = self.session_node_uuid.clone();
        let answer = match scope {
            None if unchanged => {
                debug!("the full state is the one the node holds; answered from the last pass");
                // What the last pass found is what this generation asks for: the report says
                // so, and the next pass finds nothing new to report for it.
                self.node_outcome.generation = Some(generation);
                let report = self.assemble(None);
                // The outcomes are the last pass's: only the parts noted since the last answer
                // need copying into the record of what was sent.
                self.sent_named();
                report
            }
            None => {
                // A new state may have removed the cause of a failed create.
                self.create_failures.clear();
                let report = self.converge();
                self.sent_whole();
                report
            }
            Some(names) => {
                let keys = resource_keys(&names);
                self.converge_named(&keys);
                self.sent_keys(&keys);
                NodeReport {
                    only_resources: Some(names),
                    ..self.assemble(Some(&keys))
                }
            }
        };
        info!(
            volumes = answer.volumes.len(),
            failed = answer.volumes.iter().filter(|v| v.error.is_some()).count(),
            orphans = answer.orphans.len(),
            scope = if answer.only_resources.is_some() {
                "named"
            } else {
                "node"
            },
            "applied"
        );
        SatelliteMessage::Applied {
            generation,
            report: answer,
        }
    }

    /// The state this node holds, as its `Welcome` to a controller of the node registration
    /// `node_uuid` says it: none when it holds none, or one of another registration (whose
    /// full state goes through the checks for a re-registered node).
    pub fn held_state(&mut self, node_uuid: &str) -> Option<HeldState> {
        if self.desired_node_uuid != node_uuid {
            return None;
        }
        let digest = self.held_digest()?;
        Some(HeldState {
            stamp: self.desired.as_ref()?.stamp(),
            digest,
        })
    }

    /// The content digest of the state the node holds, computed once per stamp: the node
    /// never holds two contents under one stamp (a different state under the applied stamp is
    /// refused, and an undo puts back the stamp with the content), so the `Welcome` and the
    /// `ApplySameState` after it hash the 12,500 resources of a large node once.
    fn held_digest(&mut self) -> Option<String> {
        let held = self.desired.as_ref()?;
        let stamp = held.stamp();
        match &self.digest_of_held {
            Some((of, digest)) if *of == stamp => Some(digest.clone()),
            _ => {
                let digest = held.content_digest();
                self.digest_of_held = Some((stamp, digest.clone()));
                Some(digest)
            }
        }
    }

    /// Whether the node is converged and without trouble: for the same node registration,
    /// after a full pass, with no failed create or snapshot, no error on a volume, pool or
    /// replication device, and no writes held for a cut. Then a full state asking for what the
    /// node already holds (which a controller sends at every connection, and a controller
    /// restart reconnects every node at once) is answered from the last pass instead of a pass
    /// over every volume; drift is still found by the periodic full pass, and a node with any
    /// trouble still gets the pass, so "fix it, then reconnect" retries at once.
    fn untroubled(&self) -> bool {
        self.desired_node_uuid == self.session_node_uuid
            && self.last_full_pass.is_some()
            && self.create_failures.is_empty()
            && self.snapshot_failures.is_empty()
            && self.new_snapshots.is_empty()
            && self.held_io.is_empty()
            && self.lapsed_io.is_empty()
            && self.node_outcome.errors.is_empty()
            && self
                .node_outcome
                .storage_pools
                .iter()
                .all(|p| p.errors.is_empty())
            && self.outcomes.values().all(|o| {
                o.report.errors.is_empty()
                    && o.report.volumes.iter().all(|v| v.error.is_none())
                    && o.report.replication.iter().all(|r| r.error.is_none())
            })
    }

    /// Takes deltas that arrived together (the controller pushes one per change, and several
    /// changes touch a node at once): each is made a change and checked on top of the one
    /// before, as if it came alone, and applied in place; those taken are persisted once and
    /// converged in one pass over the resources they name, and each is answered for itself. If
    /// they cannot be persisted, what they replaced is put back. A delta that does not fit, is
    /// refused or changes the pools ends the batch: it and those after it are applied one by
    /// one.
    pub fn apply_deltas(&mut self, deltas: Vec<(DesiredState, Outbox)>) {
        let span = info_span!("apply_deltas", node = %self.node_name, deltas = deltas.len());
        let _entered = span.enter();
        let new_snapshots = self.new_snapshots.clone();
        // What the taken deltas replaced, to put back if the batch cannot be persisted.
        let mut replaced: Option<Undo> = None;
        let mut taken: Vec<(u64, Vec<String>, Outbox)> = Vec::new();
        let mut rest: Vec<(DesiredState, Outbox)> = Vec::new();
        for (state, reply) in deltas {
            if !rest.is_empty() || state.base_generation.is_none() {
                rest.push((state, reply));
                continue;
            }
            let generation = state.generation;
            // A delta is small; the clone is what `apply` gets if this one is not taken here.
            match self.prepare(state.clone()) {
                Ok((next @ Next::Change(_), Some(scope), _)) => {
                    debug!(generation, "delta taken with others");
                    self.take_over_legacy_volumes(&next);
                    match self.take(next, Some(scope)) {
                        (scope, Replaced::Change(undo)) => {
                            replaced = Some(match replaced {
                                Some(earlier) => earlier.then(undo),
                                None => undo,
                            });
                            taken.push((generation, scope.unwrap_or_default(), reply));
                        }
                        // Not reached: a change replaces a change's worth.
                        (_, Replaced::Whole(before)) => {
                            self.desired = before;
                            rest.push((state, reply));
                        }
                    }
                }
                _ => rest.push((state, reply)),
            }
        }
        let named: BTreeSet<String> = taken
            .iter()
            .flat_map(|(_, names, _)| names.iter().map(|n| resource_key(n)))
            .collect();
        if !taken.is_empty() {
            let mut timing = WorkTiming::start();
            let persisted = self.persist_desired(Some(&named));
            timing.lap("persist");
            if let Err(e) = persisted {
                error!(error = %e, "could not persist the desired state; the deltas are not applied");
                if let Some(undo) = replaced {
                    self.restore_persisted(Replaced::Change(undo), new_snapshots);
                }
                let report = self.converge();
                self.sent_whole();
                for (generation, _, reply) in taken {
                    let _ = reply.send(SatelliteMessage::NotApplied {
                        generation,
                        refusal: StateRefusal::CannotPersist {
                            error: format!("generation {generation}: {e}"),
                        },
                        report: report.clone(),
                    });
                }
            } else {
                self.desired_node_uuid = self.session_node_uuid.clone();
                let all = named;
                self.converge_named(&all);
                timing.lap("converge");
                self.sent_keys(&all);
                info!(
                    deltas = taken.len(),
                    resources = all.len(),
                    "applied together"
                );
                let deltas = taken.len();
                for (generation, names, reply) in taken {
                    let keys = resource_keys(&names);
                    let report = NodeReport {
                        only_resources: Some(names),
                        ..self.assemble(Some(&keys))
                    };
                    if reply
                        .send(SatelliteMessage::Applied { generation, report })
                        .is_err()
                    {
                        debug!("the session that sent the state has ended; the answer is dropped");
                    }
                }
                timing.lap("answer");
                timing.log_if_slow(&self.node_name, "slow deltas", deltas);
            }
        }
        for (state, reply) in rest {
            let answer = self.apply(state);
            if reply.send(answer).is_err() {
                debug!("the session that sent the state has ended; the answer is dropped");
            }
        }
    }

    /// The answer to a state that was not taken; the node converges on what it has.
    fn not_applied(&mut self, generation: u64, refusal: StateRefusal) -> SatelliteMessage {
        let report = self.converge();
        self.sent_whole();
        SatelliteMessage::NotApplied {
            generation,
            refusal,
            report,
        }
    }

    fn converge_and_report(&mut self) {
        let report = self.converge();
        let Some(outbox) = &self.controller else {
            return;
        };
        let worth_it = self
            .last_sent
            .as_ref()
            .is_none_or(|last| differs_noticeably(&last.report(), &report));
        if !worth_it {
            return;
        }
        // `report` is what the passes found, as `sent_whole` records it.
        if outbox.send(SatelliteMessage::Report { report }).is_ok() {
            debug!(node = %self.node_name, "sent an unprompted report");
            self.sent_whole();
        } else {
            self.controller = None;
        }
    }

    /// Sends what the passes found when it differs noticeably from the last report sent
    /// (compared by the parts that changed, [`Reconciler::found_differs`]); records it by
    /// those parts.
    fn report_found_if_changed(&mut self) {
        if self.controller.is_none() || !self.found_differs() {
            return;
        }
        let report = self.assemble(None);
        let Some(outbox) = &self.controller else {
            return;
        };
        if outbox.send(SatelliteMessage::Report { report }).is_ok() {
            debug!(node = %self.node_name, "sent the report of a full pass");
            self.sent_named();
        } else {
            self.controller = None;
        }
    }

    /// Makes the ledger durable (what changed since the last time, those that waited
    /// included); done before a volume is acted on, and after it is deleted.
    fn persist_ledger(&mut self) -> Result<(), PersistError> {
        self.ledger_file.save(&mut self.ledger)?;
        self.ledger_behind = false;
        Ok(())
    }

    /// Saves the changes that waited ([`Reconciler::ledger_behind`]), if any. A failure is
    /// logged and left for the next save: the ledger on disk still says what a restart needs.
    pub(crate) fn persist_ledger_behind(&mut self) {
        if !self.ledger_behind {
            return;
        }
        if let Err(e) = self.persist_ledger() {
            warn!(node = %self.node_name, error = %e, "could not save the ledger; volumes seen to exist stay recorded as being created until the next save");
        }
    }

    /// Makes the node's storage match the desired state, and reports how it is: the full pass,
    /// at once. A sliced pass under way is over: this one visited what it had left.
    pub fn converge(&mut self) -> NodeReport {
        self.sliced_pass = None;
        self.providers.begin_pass();
        for driver in &mut self.drivers {
            driver.begin_pass();
        }
        let visit = Visit::Full {
            after: None,
            until: None,
        };
        self.converge_pass(visit);
        self.pass_prompted = true;
        self.providers.end_pass();
        self.assemble(None)
    }

    /// Makes the resources `keys` names (by [`resource_key`]) match the desired state; the
    /// others keep what the last pass found. The providers are asked about those resources'
    /// volumes only, never for host-wide tables, so the pass costs the same on a full node as
    /// on an empty one. Between the slices of a full pass, the providers answer from the
    /// tables they read for it, kept current with what the reconciler did since.
    fn converge_named(&mut self, keys: &BTreeSet<String>) {
        // A new state may have removed the cause of a failed create of these resources.
        self.create_failures
            .retain(|key, _| !keys.contains(&resource_key(key.resource.as_str())));
        let within_full_pass = self.sliced_pass.is_some();
        if !within_full_pass {
            self.providers.begin_scoped_pass();
        }
        for driver in &mut self.drivers {
            driver.begin_pass();
        }
        self.converge_pass(Visit::Named(keys));
        if !within_full_pass {
            self.providers.end_pass();
        }
    }

    /// The node's report from what the passes found: every resource's part (`only` `None`) or
    /// the volumes, replication and deletions of the resources `only` names. The node-wide
    /// lists (pools, errors, orphans, snapshots, held writes) are always whole: the controller
    /// replaces them with every report.
    fn assemble(&self, only: Option<&BTreeSet<String>>) -> NodeReport {
        let all = || self.outcomes.iter().map(|(key, o)| (key, &o.report));
        let Some(names) = only else {
            return sent::assemble(&self.node_outcome, all(), None);
        };
        // The named resources' parts, looked up, and the notable ones' errors and snapshots:
        // what `sent::assemble` takes from every part, without visiting every part.
        let node = &self.node_outcome;
        let mut report = sent::report_of_node(node);
        for part in names
            .iter()
            .filter_map(|key| self.outcomes.get(key))
            .map(|o| &o.report)
        {
            sent::add_resource_part(&mut report, part);
        }
        for part in self
            .notable
            .iter()
            .filter_map(|key| self.outcomes.get(key))
            .map(|o| &o.report)
        {
            sent::add_node_wide_part(&mut report, part);
        }
        report.errors.extend(node.errors.iter().cloned());
        debug_assert_eq!(
            report,
            sent::assemble(node, all(), Some(names)),
            "a report of named resources is the one made from every part"
        );
        report
    }
}

#[cfg(test)]
impl Reconciler {
    /// The last report sent (whole) and the report of what the passes found.
    pub(crate) fn last_sent_and_found(&self) -> (Option<NodeReport>, NodeReport) {
        (
            self.last_sent.as_ref().map(|sent| sent.report()),
            self.assemble(None),
        )
    }

    /// The digest of the state held, if it is made already for the state's stamp.
    pub(crate) fn digest_made(&self) -> Option<&str> {
        let stamp = self.desired.as_ref()?.stamp();
        self.digest_of_held
            .as_ref()
            .filter(|(of, _)| *of == stamp)
            .map(|(_, digest)| digest.as_str())
    }

    /// The resources noted as possibly differing from the last report sent (`None`: all).
    pub(crate) fn unsent_keys(&self) -> Option<Vec<String>> {
        match &self.unsent {
            sent::Unsent::Some(keys) => Some(keys.iter().cloned().collect()),
            sent::Unsent::All => None,
        }
    }
}

/// The ledger's key of volume `volume_number` of `resource` in `pool`.
fn volume_key(resource: &ResourceName, volume_number: u16, pool: &PoolSpec) -> VolumeKey {
    VolumeKey {
        resource: resource.clone(),
        volume_number: VolumeNumber::from(volume_number),
        provider_kind: pool.provider_kind,
        pool_name: normalized_pool_name(pool.provider_kind, &pool.pool_name),
    }
}

/// The pool's backing location as the ledger records it: a directory without trailing slashes,
/// so `/srv/pool/` and `/srv/pool` are the same place.
fn normalized_pool_name(kind: ProviderKind, pool_name: &str) -> String {
    match kind {
        ProviderKind::File | ProviderKind::FileThin if pool_name.len() > 1 => {
            pool_name.trim_end_matches('/').to_string()
        }
        _ => pool_name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits stay within a tenth of the interval either way, and differ from pass to pass, so
    /// nodes started together drift apart.
    #[test]
    fn the_wait_for_the_next_full_pass_strays_a_tenth_either_way() {
        let interval = RECONCILE_INTERVAL;
        let waits: Vec<Duration> = (0..1000).map(|_| spread_interval(interval)).collect();
        let (low, high) = (interval.mul_f64(0.9), interval.mul_f64(1.1));
        assert!(waits.iter().all(|w| (low..=high).contains(w)), "{waits:?}");
        let shortest = waits.iter().min().unwrap();
        let longest = waits.iter().max().unwrap();
        assert!(
            *longest - *shortest > interval.mul_f64(0.15),
            "spread over {shortest:?}..{longest:?} only"
        );
        let mean = waits.iter().sum::<Duration>() / waits.len() as u32;
        assert!(
            (mean.as_secs_f64() - interval.as_secs_f64()).abs() < interval.as_secs_f64() * 0.02,
            "a pass about every interval on average: {mean:?}"
        );
    }

    /// The periodic passes of nodes prompted together fall anywhere in a whole interval.
    #[test]
    fn a_prompted_pass_is_followed_by_a_wait_anywhere_in_a_whole_interval() {
        let interval = RECONCILE_INTERVAL;
        let waits: Vec<Duration> = (0..1000).map(|_| prompted_wait(interval)).collect();
        let (low, high) = (interval.mul_f64(0.5), interval.mul_f64(1.5));
        assert!(waits.iter().all(|w| (low..=high).contains(w)), "{waits:?}");
        // Every tenth of the interval holds some of them.
        let mut tenths = [0usize; 10];
        for wait in &waits {
            let at = (wait.as_secs_f64() - low.as_secs_f64()) / interval.as_secs_f64();
            tenths[((at * 10.0) as usize).min(9)] += 1;
        }
        assert!(tenths.iter().all(|&n| n > 40), "{tenths:?}");
    }
}
