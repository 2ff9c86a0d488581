//! The reconciler: the one owner of the node's desired state, the ledger of owned volumes and
//! the actual storage. It runs on its own thread and receives typed [`Event`]s; nothing else
//! touches storage, so no lock is needed and a long convergence never blocks the connection.
//!
//! ```text
//!   Apply(full | delta) ──▶ merge ──▶ persist desired-state.json ──▶ converge ──▶ Applied
//!   every interval      ──────────────────────────────────────────▶ converge ──▶ Report
//!                                                                          (if it changed)
//! ```
//!
//! Converging is level-triggered and idempotent: for each desired volume, create it if missing
//! (recording it in the ledger first), grow it if smaller than desired, activate it; then delete
//! owned volumes that are no longer desired. A pass over a converged node runs only queries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use ferrite_proto::{
    DesiredState, NodeReport, PoolReport, PoolSpec, ResourceSpec, SatelliteMessage, VolumeReport,
};
use ferrite_storage::{BackingVolume, ProviderSupport, Providers, StorageError};
use ferrite_types::{ProviderKind, ResourceName, VolumeNumber};
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, info_span, warn};

use crate::ledger::{Ledger, LedgerEntry, Progress, VolumeKey};
use crate::persist::{DESIRED_STATE_FILE, LEDGER_FILE, PersistError, StateDir};

/// How often the reconciler converges without being asked, to retry what failed and notice
/// what changed (a volume that vanished, a loop device detached, capacity).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(30);

/// A pool's capacity or a thin volume's allocation must change by at least this many percent
/// (of the total) before an unprompted report is sent for it.
pub const REPORT_CHANGE_PERCENT: u64 = 1;

/// DRBD's words for a volume's disk.
pub mod disk_state {
    pub const UP_TO_DATE: &str = "UpToDate";
    pub const DISKLESS: &str = "Diskless";
    pub const FAILED: &str = "Failed";
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
    /// A controller session started; unprompted reports go to `outbox` from now on.
    ControllerConnected {
        node_name: String,
        outbox: Outbox,
    },
    /// Converge now (as if the interval had passed).
    Converge,
    Shutdown,
}

/// `desired-state.json`.
#[derive(Debug, Serialize, Deserialize)]
struct PersistedDesiredState {
    format_version: u32,
    desired: DesiredState,
}

/// Why a volume is not as desired.
#[derive(Debug, thiserror::Error)]
enum VolumeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("could not record the volume in the ledger: {0}")]
    Ledger(#[from] PersistError),
    #[error(
        "a volume named '{name}' already exists in {kind} pool '{pool}', but this satellite did \
         not create it, so it leaves it alone; rename or remove it, or use another storage pool"
    )]
    NotOurs {
        name: String,
        kind: ProviderKind,
        pool: String,
    },
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

/// Applies a delta on top of `current`: pools replaced, changed resources replaced or added,
/// removed resources dropped. Resource names compare case-insensitively, as in LINSTOR.
fn merge(current: &DesiredState, delta: DesiredState) -> DesiredState {
    let key = |name: &str| name.to_ascii_uppercase();
    let removed: BTreeSet<String> = delta.removed_resources.iter().map(|n| key(n)).collect();
    let changed: BTreeMap<String, ResourceSpec> = delta
        .resources
        .into_iter()
        .map(|r| (key(&r.name), r))
        .collect();
    let mut resources: Vec<ResourceSpec> = current
        .resources
        .iter()
        .filter(|r| !removed.contains(&key(&r.name)) && !changed.contains_key(&key(&r.name)))
        .cloned()
        .collect();
    resources.extend(changed.into_values());
    resources.sort_by_key(|r| key(&r.name));
    DesiredState {
        generation: delta.generation,
        base_generation: None,
        storage_pools: delta.storage_pools,
        resources,
        removed_resources: Vec::new(),
    }
}

/// `report` with only the volumes of `resources` (compared case-insensitively, as resource
/// names are).
fn scoped(report: &NodeReport, resources: Vec<String>) -> NodeReport {
    let wanted: BTreeSet<String> = resources.iter().map(|r| r.to_ascii_uppercase()).collect();
    NodeReport {
        generation: report.generation,
        storage_pools: report.storage_pools.clone(),
        volumes: report
            .volumes
            .iter()
            .filter(|v| wanted.contains(&v.resource.to_ascii_uppercase()))
            .cloned()
            .collect(),
        only_resources: Some(resources),
        errors: report.errors.clone(),
    }
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

/// The owner of the node's storage state.
pub struct Reconciler {
    node_name: String,
    state_dir: Arc<StateDir>,
    providers: Arc<Providers>,
    support: ProviderSupport,
    desired: Option<DesiredState>,
    ledger: Ledger,
    controller: Option<Outbox>,
    last_sent: Option<NodeReport>,
    /// Whether this pass created, grew or deleted something (so capacity must be read again).
    storage_changed: bool,
}

impl Reconciler {
    /// Loads the persisted desired state and ledger. A corrupt file is an error, not an empty
    /// state: guessing could delete volumes.
    pub fn load(
        node_name: String,
        state_dir: Arc<StateDir>,
        providers: Arc<Providers>,
        support: ProviderSupport,
    ) -> Result<Self, PersistError> {
        let desired = state_dir
            .read::<PersistedDesiredState>(DESIRED_STATE_FILE)?
            .map(|p| p.desired);
        let ledger = state_dir.read::<Ledger>(LEDGER_FILE)?.unwrap_or_default();
        if let Some(desired) = &desired {
            info!(
                node = %node_name,
                generation = desired.generation,
                resources = desired.resources.len(),
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
            ledger,
            controller: None,
            last_sent: None,
            storage_changed: false,
        })
    }

    /// The generation of the desired state the node has.
    pub fn generation(&self) -> Option<u64> {
        self.desired.as_ref().map(|d| d.generation)
    }

    pub fn desired(&self) -> Option<&DesiredState> {
        self.desired.as_ref()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
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
            Event::ControllerConnected { node_name, outbox } => {
                self.node_name = node_name;
                self.controller = Some(outbox);
                self.last_sent = None;
            }
            Event::Converge => self.converge_and_report(),
            Event::Shutdown => return false,
        }
        true
    }

    /// Runs until `Shutdown` or until every sender is gone, converging every `interval`.
    /// Converges once right away, so a restarted satellite repairs the node without waiting for
    /// its controller.
    pub fn run(mut self, events: Receiver<Event>, interval: Duration) {
        self.converge_and_report();
        let mut next = Instant::now() + interval;
        loop {
            match events.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(event) => {
                    let is_apply = matches!(event, Event::Apply { .. });
                    if !self.handle(event) {
                        break;
                    }
                    if is_apply {
                        next = Instant::now() + interval;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.converge_and_report();
                    next = Instant::now() + interval;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        info!(node = %self.node_name, "reconciler stopped");
    }

    /// Takes a desired state: a full one replaces, a delta applies on top of the generation it
    /// was made for. The result is persisted before anything is done about it.
    pub fn apply(&mut self, state: DesiredState) -> SatelliteMessage {
        let span = info_span!(
            "apply",
            node = %self.node_name,
            generation = state.generation,
            base_generation = ?state.base_generation
        );
        let _entered = span.enter();
        // The answer to a delta reports the volumes of the resources it names; a full state is
        // answered with every volume.
        let scope: Option<Vec<String>> = state.base_generation.map(|_| {
            let named = state.resources.iter().map(|r| r.name.clone());
            named
                .chain(state.removed_resources.iter().cloned())
                .collect()
        });
        let next = match state.base_generation {
            None => state,
            Some(base) => match &self.desired {
                Some(current) if current.generation == base => merge(current, state),
                _ => {
                    info!(have_generation = ?self.generation(), "delta does not fit; asking for the full state");
                    return SatelliteMessage::NeedFullState {
                        have_generation: self.generation(),
                    };
                }
            },
        };
        if let Some(current) = self.generation()
            && next.generation < current
        {
            warn!(
                current,
                "the controller sent an older generation than the node has; taking it"
            );
        }
        let persisted = PersistedDesiredState {
            format_version: 1,
            desired: next,
        };
        if let Err(e) = self.state_dir.write(DESIRED_STATE_FILE, &persisted) {
            // Acting on a state that a restart would forget is worse than not acting: keep the
            // old state and say which generation the node is still at.
            error!(error = %e, "could not persist the desired state; it is not applied");
            let report = self.converge();
            self.last_sent = Some(report.clone());
            return SatelliteMessage::NotApplied {
                generation: persisted.desired.generation,
                reason: format!(
                    "could not persist desired state generation {}: {e}",
                    persisted.desired.generation
                ),
                report,
            };
        }
        let generation = persisted.desired.generation;
        self.desired = Some(persisted.desired);
        let report = self.converge();
        info!(
            volumes = report.volumes.len(),
            failed = report.volumes.iter().filter(|v| v.error.is_some()).count(),
            "applied"
        );
        let answer = match scope {
            None => report.clone(),
            Some(resources) => scoped(&report, resources),
        };
        self.last_sent = Some(report);
        SatelliteMessage::Applied {
            generation,
            report: answer,
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
            .is_none_or(|last| differs_noticeably(last, &report));
        if !worth_it {
            return;
        }
        if outbox
            .send(SatelliteMessage::Report {
                report: report.clone(),
            })
            .is_ok()
        {
            debug!(node = %self.node_name, "sent an unprompted report");
            self.last_sent = Some(report);
        } else {
            self.controller = None;
        }
    }

    fn persist_ledger(&self) -> Result<(), PersistError> {
        self.state_dir.write(LEDGER_FILE, &self.ledger)
    }

    /// Makes the node's storage match the desired state, and reports how it is.
    pub fn converge(&mut self) -> NodeReport {
        self.providers.begin_pass();
        let report = self.converge_pass();
        self.providers.end_pass();
        report
    }

    fn converge_pass(&mut self) -> NodeReport {
        let Some(desired) = self.desired.clone() else {
            // Never told anything: there is nothing to create and nothing may be deleted.
            return NodeReport::default();
        };
        let mut report = NodeReport {
            generation: Some(desired.generation),
            storage_pools: Vec::new(),
            volumes: Vec::new(),
            only_resources: None,
            errors: Vec::new(),
        };
        let mut pools: BTreeMap<String, (&PoolSpec, Option<String>)> = BTreeMap::new();
        for pool in &desired.storage_pools {
            let pool_report = pool_report(&self.providers, &self.support, pool);
            let error = (!pool_report.errors.is_empty()).then(|| pool_report.errors.join("; "));
            if let Some(error) = &error {
                warn!(node = %self.node_name, pool = %pool.name, %error, "storage pool not usable");
            }
            pools.insert(pool.name.to_ascii_uppercase(), (pool, error));
            report.storage_pools.push(pool_report);
        }

        // Volumes that are desired where they are, and desired volumes that are not in place
        // (yet): the ledger entries of both are kept. So a volume moving to another pool is
        // made there before its old backing volume goes, and never goes while the new one
        // fails.
        let mut wanted: BTreeSet<VolumeKey> = BTreeSet::new();
        let mut not_in_place: BTreeSet<(ResourceName, VolumeNumber)> = BTreeSet::new();

        for resource in &desired.resources {
            let span = info_span!("resource", node = %self.node_name, resource = %resource.name);
            let _entered = span.enter();
            let name = match ResourceName::new(&resource.name) {
                Ok(name) => name,
                Err(e) => {
                    for volume in &resource.volumes {
                        report.volumes.push(failed(
                            &resource.name,
                            volume.volume_number,
                            e.to_string(),
                        ));
                    }
                    continue;
                }
            };
            for volume in &resource.volumes {
                let number = VolumeNumber::from(volume.volume_number);
                let diskless = |report: &mut NodeReport| {
                    report.volumes.push(VolumeReport {
                        resource: resource.name.clone(),
                        volume_number: volume.volume_number,
                        device_path: None,
                        allocated_size_kib: None,
                        usable_size_kib: None,
                        disk_state: disk_state::DISKLESS.to_string(),
                        error: None,
                    });
                };
                if resource.diskless {
                    diskless(&mut report);
                    continue;
                }
                let Some((pool, pool_error)) = pools.get(&volume.storage_pool.to_ascii_uppercase())
                else {
                    not_in_place.insert((name.clone(), number));
                    report.volumes.push(failed(
                        &resource.name,
                        volume.volume_number,
                        format!(
                            "storage pool '{}' is not among this node's storage pools",
                            volume.storage_pool
                        ),
                    ));
                    continue;
                };
                if pool.provider_kind == ProviderKind::Diskless {
                    diskless(&mut report);
                    continue;
                }
                let key = VolumeKey {
                    resource: name.clone(),
                    volume_number: number,
                    provider_kind: pool.provider_kind,
                    pool_name: normalized_pool_name(pool.provider_kind, &pool.pool_name),
                };
                wanted.insert(key.clone());
                if let Some(error) = pool_error {
                    not_in_place.insert((name.clone(), number));
                    report.volumes.push(failed(
                        &resource.name,
                        volume.volume_number,
                        format!("storage pool '{}' is not usable: {error}", pool.name),
                    ));
                    continue;
                }
                let volume_report = match self.ensure_volume(&key, &pool.name, volume.size_kib) {
                    Ok(backing) => VolumeReport {
                        resource: resource.name.clone(),
                        volume_number: volume.volume_number,
                        device_path: backing
                            .device_path
                            .map(|p| p.to_string_lossy().into_owned()),
                        allocated_size_kib: Some(backing.allocated_kib),
                        usable_size_kib: Some(backing.usable_kib),
                        disk_state: disk_state::UP_TO_DATE.to_string(),
                        error: None,
                    },
                    Err(e) => {
                        not_in_place.insert((name.clone(), number));
                        warn!(volume = volume.volume_number, error = %e, "volume not as desired");
                        failed(&resource.name, volume.volume_number, e.to_string())
                    }
                };
                report.volumes.push(volume_report);
            }
        }

        report.errors = self.delete_unwanted(&wanted, &not_in_place);
        if self.storage_changed {
            // Capacity was read before volumes were created or deleted.
            report.storage_pools = desired
                .storage_pools
                .iter()
                .map(|pool| pool_report(&self.providers, &self.support, pool))
                .collect();
            self.storage_changed = false;
        }
        report
    }

    /// Creates, grows and activates one desired volume.
    fn ensure_volume(
        &mut self,
        key: &VolumeKey,
        storage_pool: &str,
        size_kib: u64,
    ) -> Result<BackingVolume, VolumeError> {
        let providers = self.providers.clone();
        let provider = providers.get(key.provider_kind);
        let name = key.backing_name();
        let pool = key.pool_name.as_str();
        if !self.support.supports(key.provider_kind) {
            return Err(StorageError::PoolUnusable {
                provider: key.provider_kind,
                pool: pool.to_string(),
                reason: unsupported(key.provider_kind, &self.support),
            }
            .into());
        }
        let existing = provider.volume(pool, &name)?;
        let owned = self.ledger.get(key).cloned();
        match (existing, owned) {
            (Some(_), None) => {
                return Err(VolumeError::NotOurs {
                    name: name.to_string(),
                    kind: key.provider_kind,
                    pool: pool.to_string(),
                });
            }
            (None, owned) => {
                match &owned {
                    None => {
                        // Write before acting: a crash during the create still leaves a record
                        // that this volume is ours.
                        self.ledger.record(LedgerEntry {
                            key: key.clone(),
                            storage_pool: storage_pool.to_string(),
                            progress: Progress::Creating,
                        });
                        if let Err(e) = self.persist_ledger() {
                            self.ledger.remove(key);
                            return Err(e.into());
                        }
                    }
                    Some(entry) if entry.progress == Progress::Created => {
                        warn!(volume = %name, pool, "a volume this satellite created has disappeared; creating it again");
                    }
                    Some(_) => {}
                }
                info!(volume = %name, pool, size_kib, kind = %key.provider_kind, "creating backing volume");
                self.storage_changed = true;
                provider.create_volume(pool, &name, size_kib)?;
                self.mark_created(key, storage_pool)?;
            }
            (Some(current), Some(entry)) => {
                if entry.progress == Progress::Creating {
                    info!(volume = %name, pool, "found a volume whose creation was interrupted; adopting it");
                    self.mark_created(key, storage_pool)?;
                }
                if current.usable_kib < size_kib {
                    info!(volume = %name, pool, from_kib = current.usable_kib, to_kib = size_kib, "growing backing volume");
                    self.storage_changed = true;
                    provider.grow_volume(pool, &name, size_kib)?;
                }
            }
        }
        Ok(provider.activate_volume(pool, &name)?)
    }

    fn mark_created(&mut self, key: &VolumeKey, storage_pool: &str) -> Result<(), PersistError> {
        self.ledger.record(LedgerEntry {
            key: key.clone(),
            storage_pool: storage_pool.to_string(),
            progress: Progress::Created,
        });
        self.persist_ledger()
    }

    /// Deletes the owned volumes that are no longer desired where they are. Only ledger entries
    /// are candidates, so nothing this satellite did not create is ever deleted. Returns what
    /// could not be deleted (retried at the next convergence).
    fn delete_unwanted(
        &mut self,
        wanted: &BTreeSet<VolumeKey>,
        not_in_place: &BTreeSet<(ResourceName, VolumeNumber)>,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let candidates: Vec<LedgerEntry> = self
            .ledger
            .volumes
            .iter()
            .filter(|entry| {
                !wanted.contains(&entry.key)
                    && !not_in_place
                        .contains(&(entry.key.resource.clone(), entry.key.volume_number))
            })
            .cloned()
            .collect();
        for entry in candidates {
            let key = &entry.key;
            let span = info_span!("resource", node = %self.node_name, resource = %key.resource);
            let _entered = span.enter();
            let name = key.backing_name();
            if !self.support.supports(key.provider_kind) {
                let why = unsupported(key.provider_kind, &self.support);
                warn!(volume = %name, pool = %key.pool_name, "cannot delete: {why}");
                errors.push(format!(
                    "volume '{name}' in pool '{}' is no longer desired but cannot be deleted: {why}",
                    key.pool_name
                ));
                continue;
            }
            info!(volume = %name, pool = %key.pool_name, kind = %key.provider_kind, "deleting backing volume that is no longer desired");
            self.storage_changed = true;
            match self
                .providers
                .get(key.provider_kind)
                .delete_volume(&key.pool_name, &name)
            {
                Ok(()) => {
                    self.ledger.remove(key);
                    if let Err(e) = self.persist_ledger() {
                        // The volume is gone; the stale entry is deleted again (a no-op) next
                        // time.
                        error!(volume = %name, error = %e, "could not update the ledger");
                    }
                }
                Err(e) => {
                    error!(volume = %name, error = %e, "could not delete backing volume; will retry");
                    errors.push(format!(
                        "volume '{name}' in pool '{}' is no longer desired but could not be deleted (retrying): {e}",
                        key.pool_name
                    ));
                }
            }
        }
        errors
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

fn failed(resource: &str, volume_number: u16, error: String) -> VolumeReport {
    VolumeReport {
        resource: resource.to_string(),
        volume_number,
        device_path: None,
        allocated_size_kib: None,
        usable_size_kib: None,
        disk_state: disk_state::FAILED.to_string(),
        error: Some(error),
    }
}
