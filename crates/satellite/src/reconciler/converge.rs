//! One convergence pass: make the node's storage what the desired state says, and report it.
//!
//! A full pass visits every resource the state lists, at once or in slices ([`Visit::Full`])
//! between which the reconciler takes the deltas that came; a pass for a delta visits only the
//! resources the delta names ([`Visit::Named`]), and every other resource keeps what the last
//! pass that visited it found ([`ResourceOutcome`]). Pools, held writes and orphans are node-wide
//! and read in every pass (from memory and one `statvfs` per pool, nothing that grows with
//! the volumes). For each volume of each resource visited:
//!
//! - marked `deleting` → delete the backing volume of that identity (found through the
//!   ledger, wherever it is) and confirm it in `deleted_volumes`; a resource marked `deleting`
//!   whose every volume is gone is confirmed in `deleted_resources`;
//! - diskless → nothing to hold;
//! - wanted → create it if this satellite never made it, grow it if it is smaller than
//!   desired, activate it. A volume it made that is gone is reported missing, not re-created.
//!
//! Then every ledger entry that no wanted volume (of any resource, visited or not) uses and no
//! deletion names is an orphan: kept, reported, and logged once. Nothing is ever deleted for not being mentioned.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ferrite_proto::ReplicationEngine;
use ferrite_proto::{
    DeletedResource, DeletedVolume, NodeReport, OrphanReport, PoolSpec, ResourceSpec, VolumeReport,
    VolumeSpec,
};
use ferrite_storage::{BackingVolume, BackingVolumeName, StorageError};
use ferrite_types::{LayerKind, ProviderKind, ResourceName};
use tracing::{error, info, info_span, warn};

use super::sent::Unsent;
use super::{
    CreateFailure, NodeState, Reconciler, ResourceOutcome, disk_state, normalized_pool_name,
    pool_report, resource_key, unsupported, volume_key,
};
use crate::ledger::{FreshMetadata, LedgerEntry, Progress, VolumeKey};
use crate::persist::PersistError;
use crate::replication::{Member, MemberVolume};

/// Why a volume is not as desired.
#[derive(Debug, thiserror::Error)]
pub(super) enum VolumeError {
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
    #[error(
        "the name '{name}' in {kind} pool '{pool}' is taken by an earlier volume of the same \
         name ({earlier}), kept as an orphan; this volume is created once the orphan is removed \
         ('ferrite node orphans list' shows it, 'ferrite node orphans delete' removes it)"
    )]
    TakenByOrphan {
        name: String,
        kind: ProviderKind,
        pool: String,
        earlier: String,
    },
    #[error(
        "backing volume '{name}' in {kind} pool '{pool}' was created by this node but is \
         missing; it is not created again, which would hide the loss: if its storage comes back \
         it is used again; if its data is gone, create it anew and empty with 'ferrite volume \
         recreate-missing {node} {resource} {volume}'{lingering}"
    )]
    Missing {
        name: String,
        kind: ProviderKind,
        pool: String,
        node: String,
        resource: String,
        volume: u16,
        /// Where the data still is, if anywhere.
        lingering: String,
    },
    #[error("{0}")]
    RestoreSource(String),
    #[error(
        "creating the volume failed ({attempts} attempt(s)), last: {error}; the partial volume \
         was removed; next attempt in {} s",
        retry_in.as_secs()
    )]
    CreateFailed {
        attempts: u32,
        error: String,
        retry_in: Duration,
    },
}

/// A pool of the desired state, as this pass found it.
pub(super) struct PoolState<'a> {
    pub(super) spec: &'a PoolSpec,
    /// Why nothing may be done in it.
    pub(super) error: Option<String>,
}

/// Where a volume of a resource the node holds lives, as this pass found its pool: what the
/// pass does with it ([`Reconciler::converge_resource`]) and what it records ahead
/// (`Reconciler::record_intents`) both start from this.
pub(super) enum Place<'a, 'p> {
    /// The volume is deleted, or its resource is: its backing volume goes.
    Released,
    /// No backing volume is held: the resource is diskless, or its pool holds no devices.
    Diskless,
    /// Its storage pool is not among the node's.
    NoPool,
    /// In a pool that cannot be used now, and why.
    Unusable(&'a PoolState<'p>, &'a str),
    /// In a pool that can be used.
    Usable(&'a PoolState<'p>),
}

impl<'a, 'p> Place<'a, 'p> {
    /// Where `volume` of `resource` lives among `pools` (by upper-case name).
    pub(super) fn of(
        resource: &ResourceSpec,
        volume: &VolumeSpec,
        pools: &'a BTreeMap<String, PoolState<'p>>,
    ) -> Self {
        if resource.deletes(volume) {
            return Place::Released;
        }
        if resource.diskless {
            return Place::Diskless;
        }
        match pools.get(&volume.storage_pool.to_ascii_uppercase()) {
            None => Place::NoPool,
            Some(pool) if !pool.spec.provider_kind.has_backing_device() => Place::Diskless,
            Some(pool) => match &pool.error {
                Some(error) => Place::Unusable(pool, error),
                None => Place::Usable(pool),
            },
        }
    }
}

/// A volume that failed, for the report.
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

/// A volume without local storage (diskless, or whose backing volume is being removed).
fn without_disk(resource: &str, volume_number: u16, state: &str) -> VolumeReport {
    VolumeReport {
        resource: resource.to_string(),
        volume_number,
        device_path: None,
        allocated_size_kib: None,
        usable_size_kib: None,
        disk_state: state.to_string(),
        error: None,
    }
}

/// The wait before attempt `attempts + 1` of a failed create: `first`, doubling up to
/// `longest`.
fn create_backoff(attempts: u32, (first, longest): (Duration, Duration)) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(10);
    (first * factor).min(longest)
}

/// The replication engine of a stack, if it has one.
fn replication_engine(layers: &[LayerKind]) -> Option<ReplicationEngine> {
    layers.iter().find_map(|layer| match layer {
        LayerKind::Mirror => Some(ReplicationEngine::Mirror),
        LayerKind::Drbd => Some(ReplicationEngine::Drbd),
        LayerKind::Storage => None,
    })
}

/// Whether a new volume of the provider reads as zeros where nothing was written, so that
/// replicas created together are identical without an initial sync. A thick LVM volume keeps
/// whatever its extents held before.
fn reads_zeros(kind: ProviderKind) -> bool {
    matches!(
        kind,
        ProviderKind::LvmThin
            | ProviderKind::ZfsThin
            | ProviderKind::Zfs
            | ProviderKind::FileThin
            | ProviderKind::File
    )
}

/// A fresh mark for a pool the controller sent without UUID.
fn random_mark() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|_| format!("pool-{}", std::process::id()))
}

/// What a pass visits.
#[derive(Debug, Clone, Copy)]
pub(super) enum Visit<'a> {
    /// The full pass, or a slice of it: the resources after the one of key `after` (from the
    /// first for `None`) until `until` has passed, having visited at least one, or to the last
    /// for `None`. The slice that reaches the last resource ends the pass, and does what needs
    /// every resource visited: the outcomes of resources the state no longer lists are
    /// dropped, and the orphans are searched for across the whole ledger.
    Full {
        after: Option<&'a str>,
        until: Option<Instant>,
    },
    /// The resources these keys ([`resource_key`]) name: a delta's, or a command's.
    Named(&'a BTreeSet<String>),
}

/// How a pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PassEnd {
    /// It visited every resource it was to visit.
    Done,
    /// A slice of the full pass ran out of time; the next goes on after this key.
    After(String),
}

impl Reconciler {
    /// One pass over what `visit` says. The node-wide parts (pools, held writes, orphans) are
    /// read in every pass; a resource the pass does not visit keeps what the last pass that
    /// visited it found. Makes no report: [`Reconciler::assemble`] does.
    pub(super) fn converge_pass(&mut self, visit: Visit) -> PassEnd {
        let generation = self.generation();
        let had_state = self.desired.is_some();
        // Taken out for the pass rather than cloned: a pass over a few resources must not
        // cost a copy of the whole state. Nothing the pass calls reads `self.desired`.
        let desired = self.desired.take().unwrap_or_default();
        let end = self.converge_desired(&desired, visit, generation);
        if had_state {
            self.desired = Some(desired);
        }
        if matches!(visit, Visit::Full { .. }) && end == PassEnd::Done {
            // What waited to be saved is saved at least once a pass.
            self.persist_ledger_behind();
            self.last_full_pass = Some(Instant::now());
            // The wait for the next one is drawn again (`Reconciler::next_wait`); a pass at
            // once marks itself prompted after this.
            self.next_pass_after = None;
            self.pass_prompted = false;
        }
        end
    }

    fn converge_desired(
        &mut self,
        desired: &NodeState,
        visit: Visit,
        generation: Option<u64>,
    ) -> PassEnd {
        let mut node = NodeReport {
            generation,
            ..NodeReport::default()
        };

        // The pools are read once per full pass: its later slices take what the first read
        // (`vgs` is a process per pool; a pass in slices must not run it per slice). A delta
        // that changes the pools is converged at once, which ends a pass in slices.
        let read_already = match visit {
            Visit::Full { after: Some(_), .. } => self
                .slice_pools
                .take()
                .filter(|reports| reports.len() == desired.storage_pools.len()),
            _ => None,
        };
        let mut pools: BTreeMap<String, PoolState> = BTreeMap::new();
        for (i, pool) in desired.storage_pools.iter().enumerate() {
            let pool_report = match &read_already {
                Some(reports) => reports[i].clone(),
                None => self.read_pool(pool),
            };
            let error = (!pool_report.errors.is_empty()).then(|| pool_report.errors.join("; "));
            if let (Some(error), None) = (&error, &read_already) {
                warn!(node = %self.node_name, pool = %pool.name, %error, "storage pool not usable");
            }
            pools.insert(
                pool.name.to_ascii_uppercase(),
                PoolState { spec: pool, error },
            );
            node.storage_pools.push(pool_report);
        }
        if let Visit::Full { after: None, .. } = visit {
            self.migrate_names(&pools);
        }

        // The resources the pass may visit, with their keys, in `resource_key` order: every
        // one (from where a slice goes on), or those `Named` names that the state holds
        // (looked up, not searched for).
        let (candidates, until): (Box<dyn Iterator<Item = (&str, &ResourceSpec)>>, _) = match visit
        {
            Visit::Full { after, until } => {
                if after.is_none() && until.is_none() {
                    self.unsent = Unsent::All;
                }
                let all = desired.resources_after(after);
                (Box::new(all.map(|(key, r)| (key.as_str(), r))), until)
            }
            Visit::Named(names) => {
                for name in names {
                    self.unsent.note(name);
                }
                let named = names
                    .iter()
                    .filter_map(|key| Some((key.as_str(), desired.resource_by_key(key)?)));
                (Box::new(named), None)
            }
        };
        // A slice notes as unsent only the resources whose outcome it changed (a pass at once
        // notes them all), so the end of a pass over a converged node copies and sends nothing.
        let sliced =
            matches!(visit, Visit::Full { after, until } if after.is_some() || until.is_some());
        let mut before: Vec<Option<NodeReport>> = Vec::new();
        let mut visited: Vec<(&str, &ResourceSpec)> = Vec::new();
        if let Visit::Named(names) = visit {
            self.record_intents(desired, names, &pools);
        }
        let mut end = PassEnd::Done;
        for (key, resource) in candidates {
            if let (Some(until), Some((last, _))) = (until, visited.last())
                && Instant::now() >= until
            {
                end = PassEnd::After(last.to_string());
                break;
            }
            let mut outcome = ResourceOutcome::default();
            self.converge_resource(
                resource,
                &pools,
                &mut outcome.report,
                &mut outcome.in_use,
                &mut outcome.being_deleted,
            );
            let replaced = self.outcomes.insert(key.to_string(), outcome);
            if sliced {
                before.push(replaced.map(|o| o.report));
            }
            visited.push((key, resource));
        }
        self.withdraw_intents();
        let whole = matches!(visit, Visit::Full { .. }) && end == PassEnd::Done;
        // The keys whose outcome this pass may have changed, when it did not visit every one.
        let changed: Option<BTreeSet<String>> = match visit {
            Visit::Named(names) => Some(names.clone()),
            Visit::Full { .. } if whole => None,
            Visit::Full { .. } => Some(visited.iter().map(|(k, _)| k.to_string()).collect()),
        };
        // What was found of resources the state no longer lists goes with them.
        match visit {
            Visit::Full { .. } if whole => {
                let unsent = &mut self.unsent;
                self.outcomes.retain(|key, _| {
                    let listed = desired.resource_by_key(key).is_some();
                    if !listed && sliced {
                        unsent.note(key);
                    }
                    listed
                });
            }
            Visit::Full { .. } => {}
            Visit::Named(names) => {
                for name in names {
                    if desired.resource_by_key(name).is_none() {
                        self.outcomes.remove(name);
                    }
                }
            }
        }

        self.hold_io_for_cuts(desired, &mut node);
        for &(key, resource) in &visited {
            let mut outcome = self.outcomes.remove(key).unwrap_or_default();
            self.converge_snapshots(resource, &pools, &mut outcome.report);
            self.outcomes.insert(key.to_string(), outcome);
        }
        for (&(key, _), before) in visited.iter().zip(before) {
            if before.as_ref() != self.outcomes.get(key).map(|o| &o.report) {
                self.unsent.note(key);
            }
        }
        match &changed {
            None => {
                self.notable = self
                    .outcomes
                    .iter()
                    .filter(|(_, outcome)| outcome.is_notable())
                    .map(|(key, _)| key.clone())
                    .collect();
            }
            Some(keys) => {
                for key in keys {
                    if self.outcomes.get(key).is_some_and(|o| o.is_notable()) {
                        self.notable.insert(key.clone());
                    } else {
                        self.notable.remove(key);
                    }
                }
            }
        }
        let previous = std::mem::take(&mut self.node_outcome.orphans);
        node.orphans = match &changed {
            Some(keys) if self.orphans_known => self.orphans_after(desired, keys, previous),
            _ => {
                self.orphans_known = true;
                self.all_orphans(desired)
            }
        };
        debug_assert_eq!(
            node.orphans,
            self.all_orphans(desired),
            "the orphans found again for the named resources are those of a whole search"
        );
        self.log_orphans(&node.orphans);
        if self.storage_changed {
            // Capacity was read before volumes were created or deleted.
            for pool_report in &mut node.storage_pools {
                if let Some(spec) = desired
                    .storage_pools
                    .iter()
                    .find(|p| p.name == pool_report.name)
                {
                    let fresh = pool_report_of(self, spec);
                    pool_report.free_capacity_kib = fresh.free_capacity_kib;
                    pool_report.total_capacity_kib = fresh.total_capacity_kib;
                }
            }
            self.storage_changed = false;
        }
        // Kept for the slices to come, and refreshed by a delta's pass between two of them (so
        // the pass does not report capacity older than the delta's answer).
        let slices_to_come = match visit {
            Visit::Full { .. } => sliced && end != PassEnd::Done,
            Visit::Named(_) => self.slice_pools.is_some(),
        };
        self.slice_pools = slices_to_come.then(|| node.storage_pools.clone());
        self.node_outcome = node;
        end
    }

    /// `pool`'s report, read from its provider, with the errors that make it unusable (its
    /// storage is not the one recorded, `verify_pool`).
    fn read_pool(&mut self, pool: &PoolSpec) -> ferrite_proto::PoolReport {
        let mut pool_report = pool_report(&self.providers, &self.support, pool);
        if pool_report.errors.is_empty() && pool.provider_kind.has_backing_device() {
            let location = normalized_pool_name(pool.provider_kind, &pool.pool_name);
            let mark = if pool.uuid.is_empty() {
                random_mark()
            } else {
                pool.uuid.clone()
            };
            if let Err(e) = self.verify_pool(pool.provider_kind, &location, &mark) {
                pool_report.errors.push(e);
            }
        }
        pool_report
    }

    /// Converges one resource of the desired state: its volumes, its replication member and
    /// its deletions. Its part of the report goes to `report`; the ledger entries its volumes
    /// hold go to `in_use` and `being_deleted`.
    fn converge_resource(
        &mut self,
        resource: &ResourceSpec,
        pools: &BTreeMap<String, PoolState>,
        report: &mut NodeReport,
        in_use: &mut BTreeSet<VolumeKey>,
        being_deleted: &mut BTreeSet<VolumeKey>,
    ) {
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
                return;
            }
        };
        let mut all_deleted = true;
        let engine = replication_engine(&resource.layers);
        let driver = self.driver_of(resource);
        if resource.inactive && !resource.deleting {
            self.bring_down(&name, resource, driver, pools, in_use, report);
            return;
        }
        let unapplied = self.unapplied_layers(resource);
        // The replication layer's member, filled while the volumes below are made ready.
        let mut member_volumes: Vec<MemberVolume> = Vec::new();
        // Why the member cannot be applied yet (a backing volume is not ready).
        let mut not_ready: Vec<String> = Vec::new();
        // Deletions wait until the layer above has released their volumes.
        let mut deletions: Vec<&VolumeSpec> = Vec::new();
        // The ledger keys of volumes that get fresh replication metadata in this pass.
        let mut fresh_keys: BTreeMap<u16, VolumeKey> = BTreeMap::new();
        // The volumes the member keeps: an engine's options can differ between volumes.
        let volume_numbers: Vec<u16> = resource
            .volumes
            .iter()
            .filter(|v| !resource.deletes(v))
            .map(|v| v.volume_number)
            .collect();
        for volume in &resource.volumes {
            if !unapplied.is_empty() && !resource.deletes(volume) && !resource.diskless {
                // Nothing of a stack this satellite cannot apply whole is made: an
                // unreplicated volume where a replicated one was asked for would be a lie.
                report.volumes.push(failed(
                    &resource.name,
                    volume.volume_number,
                    format!(
                        "this satellite does not apply the {} layer; nothing is created for this resource",
                        unapplied.join(", ")
                    ),
                ));
                not_ready.push(format!("volume {} is not made", volume.volume_number));
                continue;
            }
            let diskless_member = MemberVolume {
                number: volume.volume_number,
                minor: volume.minor,
                usable_kib: volume.size_kib,
                backing: None,
                new_volume: false,
                fresh_metadata: None,
            };
            let pool = match Place::of(resource, volume, pools) {
                Place::Released => {
                    deletions.push(volume);
                    if !resource.deleting {
                        let state = if resource.diskless {
                            // The member goes on without its disk (toggle-disk --diskless).
                            member_volumes.push(diskless_member);
                            disk_state::DISKLESS
                        } else {
                            disk_state::DELETING
                        };
                        report.volumes.push(without_disk(
                            &resource.name,
                            volume.volume_number,
                            state,
                        ));
                    }
                    continue;
                }
                Place::Diskless => {
                    member_volumes.push(diskless_member);
                    report.volumes.push(without_disk(
                        &resource.name,
                        volume.volume_number,
                        disk_state::DISKLESS,
                    ));
                    continue;
                }
                Place::NoPool => {
                    report.volumes.push(failed(
                        &resource.name,
                        volume.volume_number,
                        format!(
                            "storage pool '{}' is not among this node's storage pools",
                            volume.storage_pool
                        ),
                    ));
                    not_ready.push(format!("volume {} has no pool", volume.volume_number));
                    continue;
                }
                Place::Unusable(pool, error) => {
                    let key = volume_key(&name, volume.volume_number, pool.spec);
                    if self
                        .ledger
                        .get(&key)
                        .is_some_and(|e| e.belongs_to(&volume.identity, &resource.uuid))
                    {
                        in_use.insert(key);
                    }
                    report.volumes.push(failed(
                        &resource.name,
                        volume.volume_number,
                        format!("storage pool '{}' is not usable: {error}", pool.spec.name),
                    ));
                    not_ready.push(format!(
                        "volume {}'s pool is not usable",
                        volume.volume_number
                    ));
                    continue;
                }
                Place::Usable(pool) => pool,
            };
            let key = volume_key(&name, volume.volume_number, pool.spec);
            // A replicated volume's backing volume holds the engine's metadata too.
            let backing_spec = match (driver, &resource.replication) {
                (Some(index), Some(replication)) => {
                    match self.drivers[index].backing_kib(
                        volume.size_kib,
                        replication,
                        &volume_numbers,
                    ) {
                        Ok(size_kib) => VolumeSpec {
                            size_kib,
                            ..volume.clone()
                        },
                        Err(e) => {
                            report.volumes.push(failed(
                                &resource.name,
                                volume.volume_number,
                                e.clone(),
                            ));
                            not_ready.push(e);
                            continue;
                        }
                    }
                }
                _ => volume.clone(),
            };
            let replicated = driver.is_some() && resource.replication.is_some();
            let volume_report = match self.ensure_volume(
                &key,
                &backing_spec,
                &resource.uuid,
                &pool.spec.name,
                replicated,
            ) {
                Ok(backing) => {
                    // A volume whose data came from a snapshot never reads as zeros, and
                    // gets new replication metadata before its engine runs it.
                    let fresh = self.ledger.get(&key).and_then(|e| e.fresh_metadata);
                    let pending = fresh.filter(|f| !f.written);
                    if pending.is_some() {
                        fresh_keys.insert(volume.volume_number, key.clone());
                    }
                    in_use.insert(key);
                    match &backing.device_path {
                        Some(path) => member_volumes.push(MemberVolume {
                            number: volume.volume_number,
                            minor: volume.minor,
                            usable_kib: volume.size_kib,
                            backing: Some(path.clone()),
                            new_volume: reads_zeros(pool.spec.provider_kind) && fresh.is_none(),
                            fresh_metadata: pending,
                        }),
                        None => not_ready.push(format!(
                            "the backing volume of volume {} has no block device",
                            volume.volume_number
                        )),
                    }
                    VolumeReport {
                        resource: resource.name.clone(),
                        volume_number: volume.volume_number,
                        device_path: backing
                            .device_path
                            .map(|p| p.to_string_lossy().into_owned()),
                        allocated_size_kib: Some(backing.allocated_kib),
                        usable_size_kib: Some(backing.usable_kib),
                        disk_state: disk_state::UP_TO_DATE.to_string(),
                        error: None,
                    }
                }
                Err(e) => {
                    if self
                        .ledger
                        .get(&key)
                        .is_some_and(|entry| entry.belongs_to(&volume.identity, &resource.uuid))
                    {
                        in_use.insert(key);
                    }
                    warn!(volume = volume.volume_number, error = %e, "volume not as desired");
                    not_ready.push(format!(
                        "the backing volume of volume {} is not ready",
                        volume.volume_number
                    ));
                    failed(&resource.name, volume.volume_number, e.to_string())
                }
            };
            report.volumes.push(volume_report);
        }
        // The replication layer, top-down for what goes, after the storage for what comes.
        let released: Result<(), String> = match (driver, engine) {
            (Some(index), Some(engine)) => {
                let outcome = if resource.deleting {
                    self.drivers[index].down(&resource.name)
                } else if !not_ready.is_empty() {
                    Err(format!("not applied yet: {}", not_ready.join("; ")))
                } else if member_volumes.is_empty() {
                    Ok(())
                } else if let Some(replication) = &resource.replication {
                    let node_name = self.node_name.clone();
                    let member = Member {
                        resource: &resource.name,
                        node_name: &node_name,
                        replication,
                        volumes: std::mem::take(&mut member_volumes),
                    };
                    self.write_fresh_metadata(index, &member, &fresh_keys)
                        .and_then(|()| self.drivers[index].apply(&member))
                } else {
                    Err(
                        "the controller has not allocated its node-id, port and minors yet"
                            .to_string(),
                    )
                };
                if let Err(e) = &outcome {
                    warn!(%engine, error = %e, "replication layer not as desired");
                }
                if !resource.deleting {
                    report
                        .replication
                        .push(self.drivers[index].report(&resource.name, outcome.clone().err()));
                }
                outcome
            }
            _ => Ok(()),
        };
        for volume in deletions {
            if let (Err(why), Some(engine)) = (&released, engine) {
                all_deleted = false;
                report.errors.push(format!(
                    "the backing volume of volume {} of resource '{}' is not deleted yet: the \
                     {engine} layer has not released it ({why})",
                    volume.volume_number, resource.name
                ));
                continue;
            }
            match self.delete_named(&name, volume, &resource.uuid, being_deleted) {
                Ok(()) => report.deleted_volumes.push(DeletedVolume {
                    resource: resource.name.clone(),
                    volume_number: volume.volume_number,
                    identity: volume.identity.clone(),
                }),
                Err(e) => {
                    all_deleted = false;
                    report.errors.push(e);
                }
            }
        }
        if resource.deleting && all_deleted {
            report.deleted_resources.push(DeletedResource {
                resource: resource.name.clone(),
                uuid: resource.uuid.clone(),
            });
        }
    }

    /// A deactivated resource: its replication member goes down and its backing volumes lose
    /// their devices, but stay (they are in use, not orphans) until it is activated again.
    fn bring_down(
        &mut self,
        name: &ResourceName,
        resource: &ferrite_proto::ResourceSpec,
        driver: Option<usize>,
        pools: &BTreeMap<String, PoolState>,
        in_use: &mut BTreeSet<VolumeKey>,
        report: &mut NodeReport,
    ) {
        let mut errors = Vec::new();
        if let Some(index) = driver
            && let Err(e) = self.drivers[index].down(&resource.name)
        {
            errors.push(format!("the replication layer did not go down: {e}"));
        }
        for volume in &resource.volumes {
            let mut state = disk_state::INACTIVE;
            if let Place::Usable(pool) | Place::Unusable(pool, _) =
                Place::of(resource, volume, pools)
            {
                let key = volume_key(name, volume.volume_number, pool.spec);
                let entry = self
                    .ledger
                    .get(&key)
                    .filter(|e| e.belongs_to(&volume.identity, &resource.uuid))
                    .cloned();
                if let Some(entry) = entry {
                    in_use.insert(key.clone());
                    if errors.is_empty()
                        && let Err(e) = self
                            .providers
                            .get(key.provider_kind)
                            .deactivate_volume(&key.pool_name, &entry.backing_name())
                    {
                        errors.push(format!(
                            "volume {} keeps its device: {e}",
                            volume.volume_number
                        ));
                    }
                }
            } else if resource.diskless {
                state = disk_state::DISKLESS;
            }
            report
                .volumes
                .push(without_disk(&resource.name, volume.volume_number, state));
        }
        for error in errors {
            warn!(resource = %resource.name, %error, "deactivated resource not brought down");
            report.errors.push(format!(
                "resource '{}' is inactive, but {error}",
                resource.name
            ));
        }
    }

    /// Checks a pool's identity against the record (see `crate::pools`).
    fn verify_pool(
        &mut self,
        kind: ProviderKind,
        location: &str,
        mark: &str,
    ) -> Result<(), String> {
        let holds_volumes = self
            .ledger
            .volumes
            .iter()
            .any(|e| e.key.provider_kind == kind && e.key.pool_name == location);
        self.pools
            .verify(
                &self.state_dir,
                &self.providers,
                kind,
                location,
                mark,
                holds_volumes,
            )
            .map_err(|e| e.to_string())
    }

    /// Whether anything may be done at a place the ledger knows: the provider runs here, the
    /// pool answers and it is still the storage the volumes were created in.
    pub(super) fn place_usable(
        &mut self,
        kind: ProviderKind,
        location: &str,
    ) -> Result<(), String> {
        if !self.support.supports(kind) {
            return Err(unsupported(kind, &self.support));
        }
        self.providers
            .get(kind)
            .check_pool(location)
            .map_err(|e| e.to_string())?;
        self.verify_pool(kind, location, &random_mark())
    }

    /// Renames volumes made before names were case-folded (`Web_00000` → `web_00000`), in the
    /// pools of the desired state that are usable. A volume whose new name is taken keeps its
    /// old one; nothing is lost either way, the ledger knows each volume's name.
    fn migrate_names(&mut self, pools: &BTreeMap<String, PoolState>) {
        let usable: BTreeSet<(ProviderKind, String)> = pools
            .values()
            .filter(|p| p.error.is_none())
            .map(|p| {
                (
                    p.spec.provider_kind,
                    normalized_pool_name(p.spec.provider_kind, &p.spec.pool_name),
                )
            })
            .collect();
        let pending: Vec<LedgerEntry> = self
            .ledger
            .volumes
            .iter()
            .filter(|e| e.backing_name() != e.key.backing_name())
            .filter(|e| usable.contains(&(e.key.provider_kind, e.key.pool_name.clone())))
            .cloned()
            .collect();
        for entry in pending {
            let provider = self.providers.get(entry.key.provider_kind);
            let from = entry.backing_name();
            let to = entry.key.backing_name();
            let pool = entry.key.pool_name.as_str();
            match provider.volume(pool, &from) {
                Ok(Some(_)) => {}
                _ => continue,
            }
            match provider.rename_volume(pool, &from, &to) {
                Ok(()) => {
                    info!(%from, %to, pool, "renamed backing volume to its case-folded name");
                    self.storage_changed = true;
                    if let Some(e) = self.ledger.get_mut(&entry.key) {
                        e.backing_name = Some(to.to_string());
                    }
                    if let Err(e) = self.persist_ledger() {
                        error!(error = %e, "could not record the new name in the ledger");
                    }
                }
                Err(e) => warn!(%from, %to, pool, error = %e, "backing volume keeps its old name"),
            }
        }
    }

    /// Deletes the backing volume of `volume`'s identity, wherever the ledger has it. Done when
    /// no volume of that identity is left; a volume of another identity at the same place is
    /// not this one, and stays.
    fn delete_named(
        &mut self,
        resource: &ResourceName,
        volume: &VolumeSpec,
        placement: &str,
        being_deleted: &mut BTreeSet<VolumeKey>,
    ) -> Result<(), String> {
        let targets: Vec<LedgerEntry> = self
            .ledger
            .entries_of(resource.key())
            .iter()
            .filter(|e| {
                e.key.volume_number.get() == volume.volume_number
                    && e.belongs_to(&volume.identity, placement)
            })
            .cloned()
            .collect();
        let mut problems = Vec::new();
        for entry in targets {
            let key = &entry.key;
            let name = entry.backing_name();
            being_deleted.insert(key.clone());
            self.create_failures.remove(key);
            if let Err(why) = self.place_usable(key.provider_kind, &key.pool_name) {
                warn!(volume = %name, pool = %key.pool_name, "cannot delete: {why}");
                problems.push(format!(
                    "volume '{name}' in {} pool '{}' is to be deleted but cannot be yet: {why}",
                    key.provider_kind, key.pool_name
                ));
                continue;
            }
            info!(volume = %name, pool = %key.pool_name, kind = %key.provider_kind, identity = ?entry.identity, "deleting backing volume, as the desired state asks");
            self.storage_changed = true;
            match self
                .providers
                .get(key.provider_kind)
                .delete_volume(&key.pool_name, &name)
            {
                Ok(()) => {
                    being_deleted.remove(key);
                    self.ledger.remove(key);
                    if let Err(e) = self.persist_ledger() {
                        // The volume is gone; deleting it again next time is a no-op.
                        error!(volume = %name, error = %e, "could not update the ledger");
                    }
                }
                Err(e) => {
                    error!(volume = %name, error = %e, "could not delete backing volume; will retry");
                    problems.push(format!(
                        "volume '{name}' in {} pool '{}' could not be deleted (retrying): {e}",
                        key.provider_kind, key.pool_name
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The index of the replication driver `resource`'s layers ask for, if this satellite
    /// has it.
    pub(super) fn driver_of(&self, resource: &ResourceSpec) -> Option<usize> {
        let engine = replication_engine(&resource.layers)?;
        self.drivers.iter().position(|d| d.engine() == engine)
    }

    /// The layers of `resource`'s stack this satellite does not apply: any, and nothing of the
    /// resource is made.
    pub(super) fn unapplied_layers(&self, resource: &ResourceSpec) -> Vec<String> {
        let driver = self.driver_of(resource);
        resource
            .layers
            .iter()
            .filter(|layer| {
                !crate::capabilities::APPLIED_LAYERS.contains(layer)
                    || (Some(**layer) != Some(LayerKind::Storage) && driver.is_none())
            })
            .map(|layer| layer.to_string())
            .collect()
    }

    /// Creates, grows and activates one wanted volume.
    fn ensure_volume(
        &mut self,
        key: &VolumeKey,
        volume: &VolumeSpec,
        placement: &str,
        storage_pool: &str,
        replicated: bool,
    ) -> Result<BackingVolume, VolumeError> {
        let providers = self.providers.clone();
        let provider = providers.get(key.provider_kind);
        let pool = key.pool_name.as_str();
        if !self.support.supports(key.provider_kind) {
            return Err(StorageError::PoolUnusable {
                provider: key.provider_kind,
                pool: pool.to_string(),
                reason: unsupported(key.provider_kind, &self.support),
            }
            .into());
        }
        let name = match self.ledger.get(key).cloned() {
            Some(entry) if !entry.belongs_to(&volume.identity, placement) => {
                return Err(VolumeError::TakenByOrphan {
                    name: entry.backing_name().to_string(),
                    kind: key.provider_kind,
                    pool: pool.to_string(),
                    earlier: match (&entry.identity, &entry.placement) {
                        (Some(identity), _) if *identity != volume.identity => {
                            format!("identity {identity}")
                        }
                        (_, Some(earlier)) => {
                            format!("an earlier placement of this resource here ({earlier})")
                        }
                        _ => "created before volume identities".to_string(),
                    },
                });
            }
            Some(entry) => {
                let name = entry.backing_name();
                // Recorded ahead by this pass, after a lookup that found no volume of this
                // name: not looked up again (for LVM, one `lvs` per volume saved).
                let recorded_ahead =
                    entry.progress == Progress::Creating && self.intents.contains(key);
                let found = if recorded_ahead {
                    None
                } else {
                    provider.volume(pool, &name)?
                };
                match found {
                    None if entry.progress == Progress::Creating => {
                        self.create(key, volume, placement, storage_pool, &name, replicated)?;
                    }
                    None => {
                        let devices = provider.lingering_devices(pool, &name);
                        let lingering = if devices.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; its data is still readable from {} (a loop device that keeps the deleted file): copy it out before recreating, then detach it",
                                devices
                                    .iter()
                                    .map(|d| d.display().to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        };
                        return Err(VolumeError::Missing {
                            name: name.to_string(),
                            kind: key.provider_kind,
                            pool: pool.to_string(),
                            node: self.node_name.clone(),
                            resource: key.resource.to_string(),
                            volume: volume.volume_number,
                            lingering,
                        });
                    }
                    Some(current) => {
                        if entry.progress == Progress::Creating {
                            info!(volume = %name, pool, "found a volume recorded as being created (a create cut short, or one whose completion was not saved yet); adopting it");
                            // A restore cut short may have copied part of the data only: it
                            // is not taken for the snapshot's data, but resynced whole.
                            if let Some(fresh) = self
                                .ledger
                                .get_mut(key)
                                .and_then(|e| e.fresh_metadata.as_mut())
                                .filter(|f| !f.written && f.generation.is_some())
                            {
                                warn!(volume = %name, "its restore was interrupted: it gets just-created replication metadata and a full sync");
                                fresh.generation = None;
                            }
                            self.mark_created(key)?;
                        }
                        if current.usable_kib < volume.size_kib {
                            info!(volume = %name, pool, from_kib = current.usable_kib, to_kib = volume.size_kib, "growing backing volume");
                            self.storage_changed = true;
                            provider.grow_volume(pool, &name, volume.size_kib)?;
                        }
                    }
                }
                name
            }
            None => {
                let name = key.backing_name();
                if provider.volume(pool, &name)?.is_some() {
                    return Err(VolumeError::NotOurs {
                        name: name.to_string(),
                        kind: key.provider_kind,
                        pool: pool.to_string(),
                    });
                }
                self.create(key, volume, placement, storage_pool, &name, replicated)?;
                name
            }
        };
        Ok(provider.activate_volume(pool, &name)?)
    }

    /// Creates a volume: recorded first, then made; a failure removes what was made and waits
    /// before the next attempt. A volume of the name that appeared since the look-up (the
    /// provider says it exists) is someone else's: neither removed nor recorded.
    fn create(
        &mut self,
        key: &VolumeKey,
        volume: &VolumeSpec,
        placement: &str,
        storage_pool: &str,
        name: &BackingVolumeName,
        replicated: bool,
    ) -> Result<(), VolumeError> {
        if let Some(failure) = self.create_failures.get(key)
            && failure.retry_at > Instant::now()
        {
            return Err(VolumeError::CreateFailed {
                attempts: failure.attempts,
                error: failure.error.clone(),
                retry_in: failure.retry_at.saturating_duration_since(Instant::now()),
            });
        }
        // A restored volume needs its snapshot here; without it nothing is made.
        let source = match &volume.restore_from {
            Some(source) => Some(
                self.restore_source(key, source)
                    .map_err(VolumeError::RestoreSource)?,
            ),
            None => None,
        };
        // Write before acting: a crash during the create still leaves a record that this
        // volume is ours.
        self.legacy_volumes |= volume.identity.is_empty();
        let entry = LedgerEntry {
            key: key.clone(),
            identity: (!volume.identity.is_empty()).then(|| volume.identity.clone()),
            backing_name: Some(name.to_string()),
            placement: (!placement.is_empty()).then(|| placement.to_string()),
            storage_pool: storage_pool.to_string(),
            progress: Progress::Creating,
            fresh_metadata: match &volume.restore_from {
                Some(source) if replicated => Some(FreshMetadata {
                    generation: source.fresh_generation,
                    written: false,
                }),
                _ => None,
            },
        };
        if !self.take_intent(&entry) {
            self.ledger.record(entry);
            if let Err(e) = self.persist_ledger() {
                self.ledger.remove(key);
                return Err(e.into());
            }
        }
        let provider = self.providers.get(key.provider_kind);
        let pool = key.pool_name.as_str();
        info!(volume = %name, pool, size_kib = volume.size_kib, kind = %key.provider_kind, identity = %volume.identity, restore_from = ?volume.restore_from, "creating backing volume");
        self.storage_changed = true;
        let made = match &source {
            None => provider.create_volume(pool, name, volume.size_kib),
            Some((origin, snapshot)) => provider
                .restore_snapshot(pool, origin, snapshot, name)
                .and_then(|()| match provider.volume(pool, name)? {
                    Some(v) if v.usable_kib < volume.size_kib => {
                        provider.grow_volume(pool, name, volume.size_kib)
                    }
                    _ => Ok(()),
                }),
        };
        match made {
            Ok(()) => {
                self.create_failures.remove(key);
                self.mark_created(key)?;
                Ok(())
            }
            Err(StorageError::VolumeExists { .. }) => {
                // Made by someone else since it was looked up: not a partial volume of ours
                // to remove, and not ours to adopt.
                warn!(volume = %name, pool, "a volume of this name appeared in the pool while it was being created; it is left alone");
                self.ledger.remove(key);
                if let Err(e) = self.persist_ledger() {
                    error!(volume = %name, error = %e, "could not update the ledger");
                    self.ledger_behind = true;
                }
                Err(VolumeError::NotOurs {
                    name: name.to_string(),
                    kind: key.provider_kind,
                    pool: pool.to_string(),
                })
            }
            Err(e) => {
                let error = e.to_string();
                match provider.delete_volume(pool, name) {
                    Ok(()) => {
                        self.ledger.remove(key);
                        if let Err(e) = self.persist_ledger() {
                            error!(volume = %name, error = %e, "could not update the ledger");
                        }
                    }
                    Err(cleanup) => {
                        // The entry stays (creating), so the partial volume is still ours to
                        // clean up or complete at the next attempt.
                        error!(volume = %name, error = %cleanup, "could not remove a partially created volume");
                    }
                }
                let attempts = self.create_failures.get(key).map_or(0, |f| f.attempts) + 1;
                let wait = create_backoff(attempts, self.create_retry);
                error!(volume = %name, pool, attempts, %error, retry_in_s = wait.as_secs(), "creating backing volume failed");
                self.create_failures.insert(
                    key.clone(),
                    CreateFailure {
                        attempts,
                        error: error.clone(),
                        retry_at: Instant::now() + wait,
                    },
                );
                Err(VolumeError::CreateFailed {
                    attempts,
                    error,
                    retry_in: wait,
                })
            }
        }
    }

    /// Writes new replication metadata on the member's volumes that await it (restored or
    /// rolled back), then records it in the ledger: before the engine runs them, so a
    /// satellite that stops in between writes it again, never over a volume the engine ran.
    fn write_fresh_metadata(
        &mut self,
        driver: usize,
        member: &Member,
        keys: &BTreeMap<u16, VolumeKey>,
    ) -> Result<(), String> {
        for volume in &member.volumes {
            let (Some(fresh), Some(key)) = (volume.fresh_metadata, keys.get(&volume.number)) else {
                continue;
            };
            self.drivers[driver].write_fresh_metadata(member, volume, fresh)?;
            info!(resource = member.resource, volume = volume.number, generation = ?fresh.generation, "fresh replication metadata written over the snapshot's");
            if let Some(entry) = self.ledger.get_mut(key)
                && let Some(recorded) = entry.fresh_metadata.as_mut()
            {
                recorded.written = true;
            }
            self.persist_ledger().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Records that the volume at `key` was seen to exist. Saved with the next save, not
    /// now: a restart that finds the volume still recorded as being created looks for it and
    /// adopts it (or creates it, if the create never reached the disk), so the record buys
    /// nothing a crash could lose, and waiting spares a synced write per created volume. A
    /// restored volume is the exception, saved at once: recorded as being created, it would
    /// be taken for a restore cut short and synced whole from a peer.
    fn mark_created(&mut self, key: &VolumeKey) -> Result<(), PersistError> {
        let Some(entry) = self.ledger.get_mut(key) else {
            return Ok(());
        };
        entry.progress = Progress::Created;
        if entry.fresh_metadata.is_some() {
            return self.persist_ledger();
        }
        self.ledger_behind = true;
        Ok(())
    }

    /// Logs each orphan once, when it first appears, not at every pass.
    fn log_orphans(&mut self, orphans: &[OrphanReport]) {
        let now: BTreeSet<String> = orphans
            .iter()
            .map(|o| format!("{}:{}:{}", o.provider_kind, o.pool_name, o.backing_name))
            .collect();
        for orphan in orphans {
            let id = format!(
                "{}:{}:{}",
                orphan.provider_kind, orphan.pool_name, orphan.backing_name
            );
            if !self.logged_orphans.contains(&id) {
                warn!(
                    node = %self.node_name,
                    volume = %orphan.backing_name,
                    pool = %orphan.pool_name,
                    reason = %orphan.reason,
                    "orphaned backing volume kept; remove it with 'ferrite node orphans delete' if it is not needed"
                );
            }
        }
        self.logged_orphans = now;
    }
}

impl Reconciler {
    /// Every ledger entry that no resource's outcome holds (the entries wanted volumes use and
    /// deletions name, visited in this pass or not), with the reason, in ledger order.
    fn all_orphans(&self, desired: &NodeState) -> Vec<OrphanReport> {
        let held: BTreeSet<&VolumeKey> = self
            .outcomes
            .values()
            .flat_map(|o| o.in_use.iter().chain(&o.being_deleted))
            .collect();
        self.ledger
            .volumes
            .iter()
            .filter(|entry| !held.contains(&entry.key))
            .map(|entry| orphan_report(entry, desired))
            .collect()
    }

    /// The orphans after a pass over the resources `names` (by [`resource_key`]), from those
    /// before it (`previous`, whole): only the named resources' entries can have changed (a
    /// resource's outcome holds only its own volumes, a pass changes the ledger entries and
    /// the specs of the resources it visits, and every other change to the ledger is
    /// followed by a full pass), so only they are looked at again.
    fn orphans_after(
        &self,
        desired: &NodeState,
        names: &BTreeSet<String>,
        previous: Vec<OrphanReport>,
    ) -> Vec<OrphanReport> {
        let mut orphans: Vec<OrphanReport> = previous
            .into_iter()
            .filter(|o| !names.contains(&resource_key(&o.resource)))
            .collect();
        for key in names {
            let outcome = self.outcomes.get(key);
            for entry in self.ledger.entries_of(key) {
                let held = outcome.is_some_and(|o| {
                    o.in_use.contains(&entry.key) || o.being_deleted.contains(&entry.key)
                });
                if !held {
                    orphans.push(orphan_report(entry, desired));
                }
            }
        }
        // Ledger order: that of the entries' keys.
        orphans.sort_by_cached_key(|o| {
            (
                resource_key(&o.resource),
                o.volume_number,
                o.provider_kind,
                o.pool_name.clone(),
            )
        });
        orphans
    }
}

/// A ledger entry that nothing holds, reported with the reason.
fn orphan_report(entry: &LedgerEntry, desired: &NodeState) -> OrphanReport {
    let resource = desired.resource(entry.key.resource.as_str());
    let volume = resource.and_then(|r| {
        r.volumes
            .iter()
            .find(|v| v.volume_number == entry.key.volume_number.get())
    });
    let reason = match (resource, volume) {
            (None, _) => "its resource is not in this node's desired state".to_string(),
            (Some(_), None) => {
                "its volume is not among the resource's volumes in this node's desired state"
                    .to_string()
            }
            (Some(r), Some(_)) if r.diskless => "the resource is diskless on this node".to_string(),
            (Some(r), Some(v)) if entry.has_identity(&v.identity) && !entry.belongs_to(&v.identity, &r.uuid) => {
                "it belongs to an earlier placement of this resource on this node (the node was declared lost or the resource deleted and placed again); the resource placed now gets a volume of its own".to_string()
            }
            (Some(_), Some(v)) if !entry.has_identity(&v.identity) => format!(
                "it belongs to an earlier volume of the same name ({}); the volume wanted now has identity {}",
                entry
                    .identity
                    .as_deref()
                    .map(|i| format!("identity {i}"))
                    .unwrap_or_else(|| "created before volume identities".to_string()),
                v.identity
            ),
            (Some(_), Some(_)) => "the volume is wanted in another storage pool".to_string(),
        };
    OrphanReport {
        resource: entry.key.resource.to_string(),
        volume_number: entry.key.volume_number.get(),
        identity: entry.identity.clone(),
        provider_kind: entry.key.provider_kind,
        pool_name: entry.key.pool_name.clone(),
        storage_pool: entry.storage_pool.clone(),
        backing_name: entry.backing_name().to_string(),
        reason,
    }
}

fn pool_report_of(reconciler: &Reconciler, spec: &PoolSpec) -> ferrite_proto::PoolReport {
    pool_report(&reconciler.providers, &reconciler.support, spec)
}
