//! Snapshots on the node: taken once, when the desired state first holds them; kept while it
//! holds them; deleted when it marks them `deleting`; rolled back to on an operator's command.
//!
//! A snapshot is a point in time. The node takes one only in the pass right after a state that
//! newly holds it was applied, and only within [`SNAPSHOT_TAKE_DEADLINE_MS`] of the request;
//! a snapshot it could not take then (or never heard of in time) is reported failed, never
//! taken later. Every snapshot volume is recorded in the ledger before it is taken, so only
//! snapshots this satellite took are ever deleted or rolled back to.
//!
//! A snapshot of a replicated resource is one write boundary on every replica (the cut). The
//! controller asks every member to hold the resource's writes ([`ResourceSpec::suspend_io`]);
//! this node's engine holds them (`suspend-io`) and the report says so
//! ([`NodeReport::io_suspended`]). Only once every member holds does the controller let the
//! snapshot be taken ([`SnapshotCut::Take`]); then it lets the writes go on. A diskful member
//! takes a replicated resource's snapshot only while it holds the writes: right before the
//! backing volumes' snapshots it has the engine confirm the hold and flush, and again right
//! after; a hold that ended in between (its lease ran out) discards what was taken, since
//! writes may have crossed the cut. A hold ends when the state stops asking for it, or on this
//! node's own after [`SUSPEND_IO_LEASE_MS`], so applications never wait on a controller that
//! went away; a hold that lapsed is not taken up again until the state stops asking.

use std::collections::BTreeMap;

use ferrite_proto::{
    DeletedSnapshot, HeldIo, NodeReport, ReplicationEngine, ResourceSpec, RestoreSpec,
    RollbackVolume, SNAPSHOT_TAKE_DEADLINE_MS, SUSPEND_IO_LEASE_MS, SnapshotCut, SnapshotReport,
    SnapshotSpec,
};
use ferrite_storage::BackingVolumeName;
use ferrite_types::{ProviderKind, ResourceName, SnapshotName, VolumeNumber};
use tracing::{debug, error, info, warn};

use super::converge::PoolState;
use super::{Next, NodeState, Reconciler, normalized_pool_name, resource_key, unsupported};
use crate::ledger::{FreshMetadata, Progress, SnapshotEntry, VolumeKey};

/// This node's hold of a resource's writes for a snapshot's cut.
pub(super) struct Hold {
    engine: ReplicationEngine,
    since: std::time::Instant,
    /// Reported to the controller: another hold has another id.
    id: u64,
    /// The snapshots (UUIDs) whose cut was waiting when the hold began: the only ones it may
    /// take. A hold that began once the cut was under way (this satellite restarted) may have
    /// let writes through in between.
    cuts: std::collections::BTreeSet<String>,
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether one of `resources` holds snapshot `uuid` with its cut begun (a snapshot the node
/// knows of).
fn knows<'a>(resources: impl Iterator<Item = &'a ResourceSpec>, uuid: &str) -> bool {
    resources
        .flat_map(|r| r.snapshots.iter())
        .any(|s| s.cut != SnapshotCut::Wait && s.uuid == uuid)
}

impl Reconciler {
    /// Notes the snapshots `next` asks to take that the node's current state did not: the ones
    /// the next pass may take.
    ///
    /// For a change, only the snapshots of the resources it names can be new. The node's state
    /// is searched whole only for those not already known to the named resources as they were
    /// (a snapshot is normally one resource's): a delta costs what it names.
    pub(super) fn note_new_snapshots(&mut self, next: &Next) {
        let asked = |s: &&SnapshotSpec| !s.deleting && s.cut == SnapshotCut::Take;
        let current = self.desired.as_ref();
        let mut new = Vec::new();
        match next {
            Next::Whole(next) => {
                let known: std::collections::BTreeSet<&str> = current
                    .iter()
                    .flat_map(|d| d.resources())
                    .flat_map(|r| r.snapshots.iter())
                    .filter(|s| s.cut != SnapshotCut::Wait)
                    .map(|s| s.uuid.as_str())
                    .collect();
                for resource in next.resources() {
                    for snapshot in resource.snapshots.iter().filter(asked) {
                        if !known.contains(snapshot.uuid.as_str()) {
                            new.push(snapshot.uuid.clone());
                        }
                    }
                }
            }
            Next::Change(change) => {
                for resource in change.resources.values().flatten() {
                    for snapshot in resource.snapshots.iter().filter(asked) {
                        let named = change
                            .resources
                            .keys()
                            .filter_map(|key| current.and_then(|c| c.resource_by_key(key)));
                        if knows(named, &snapshot.uuid) {
                            continue;
                        }
                        if !knows(current.iter().flat_map(|c| c.resources()), &snapshot.uuid) {
                            new.push(snapshot.uuid.clone());
                        }
                    }
                }
            }
        }
        self.new_snapshots.extend(new);
    }

    /// Takes, checks and deletes the snapshots of one resource of the desired state, and
    /// reports them.
    pub(super) fn converge_snapshots(
        &mut self,
        resource: &ResourceSpec,
        pools: &BTreeMap<String, PoolState>,
        report: &mut NodeReport,
    ) {
        let replicated = resource.replication.is_some();
        let mut taken_under_hold: Vec<(&SnapshotSpec, u16)> = Vec::new();
        for snapshot in &resource.snapshots {
            let Ok(name) = ResourceName::new(&resource.name) else {
                continue;
            };
            let place = pools
                .get(&snapshot.storage_pool.to_ascii_uppercase())
                .map(|pool| {
                    (
                        pool.spec.provider_kind,
                        normalized_pool_name(pool.spec.provider_kind, &pool.spec.pool_name),
                        pool.error.clone(),
                    )
                });
            if snapshot.deleting {
                self.delete_snapshot(&name, snapshot, report);
                continue;
            }
            let snapshot_name = SnapshotName::new(&snapshot.name);
            let take = self.new_snapshots.remove(&snapshot.uuid);
            // Never a cut that writes may cross.
            let hold = if take && replicated {
                Some(self.confirm_hold(resource, Some(&snapshot.uuid)))
            } else {
                None
            };
            for volume in &snapshot.volumes {
                if snapshot.cut == SnapshotCut::Wait {
                    report.snapshots.push(SnapshotReport {
                        resource: resource.name.clone(),
                        snapshot: snapshot.name.clone(),
                        uuid: snapshot.uuid.clone(),
                        volume_number: volume.volume_number,
                        method: None,
                        error: Some(
                            "waiting for every member to hold the resource's writes for the cut"
                                .to_string(),
                        ),
                    });
                    continue;
                }
                let outcome = match (&snapshot_name, &place) {
                    (Err(e), _) => Err(e.to_string()),
                    _ if snapshot.cut == SnapshotCut::Abandoned
                        && self
                            .ledger
                            .snapshot(&snapshot.uuid, volume.volume_number.into())
                            .is_none() =>
                    {
                        Err(
                            "not taken: the cut was abandoned, since not every member of the \
                             resource could hold its writes"
                                .to_string(),
                        )
                    }
                    _ if let Some(Err(why)) = &hold => Err(format!(
                        "not taken: the resource's writes are not held for the cut: {why}"
                    )),
                    (_, None) => Err(format!(
                        "storage pool '{}' is not among this node's storage pools",
                        snapshot.storage_pool
                    )),
                    (Ok(snapshot_name), Some((kind, location, pool_error))) => self
                        .ensure_snapshot(
                            &name,
                            &resource.uuid,
                            snapshot,
                            snapshot_name,
                            volume.volume_number,
                            &volume.identity,
                            (*kind, location, pool_error.as_deref()),
                            take,
                        ),
                };
                if take && hold.is_some() && outcome.is_ok() {
                    taken_under_hold.push((snapshot, volume.volume_number));
                }
                self.push_snapshot_report(
                    resource,
                    snapshot,
                    volume.volume_number,
                    outcome,
                    report,
                );
            }
        }
        if !taken_under_hold.is_empty()
            && let Err(why) = self.confirm_hold(resource, None)
        {
            self.discard_crossed_cuts(resource, &taken_under_hold, &why, report);
        }
    }

    /// Records a snapshot volume's outcome in the report; a failure is kept as first seen.
    fn push_snapshot_report(
        &mut self,
        resource: &ResourceSpec,
        snapshot: &SnapshotSpec,
        volume_number: u16,
        outcome: Result<Option<String>, String>,
        report: &mut NodeReport,
    ) {
        let (method, error) = match outcome {
            Ok(method) => (method, None),
            Err(e) => {
                let first = self
                    .snapshot_failures
                    .entry((snapshot.uuid.clone(), volume_number))
                    .or_insert(e)
                    .clone();
                (None, Some(first))
            }
        };
        report.snapshots.push(SnapshotReport {
            resource: resource.name.clone(),
            snapshot: snapshot.name.clone(),
            uuid: snapshot.uuid.clone(),
            volume_number,
            method,
            error,
        });
    }

    /// Whether this node holds the resource's writes for the cut of `snapshot` (any, if `None`),
    /// with the engine's confirmation (which also flushes what it wrote).
    fn confirm_hold(
        &mut self,
        resource: &ResourceSpec,
        snapshot: Option<&str>,
    ) -> Result<(), String> {
        let Some(hold) = self.held_io.get(&resource.name) else {
            return Err("this node does not hold them".to_string());
        };
        if let Some(uuid) = snapshot
            && !hold.cuts.contains(uuid)
        {
            return Err(
                "this node's hold began after the cut was under way (it restarted), so writes \
                 may have crossed it"
                    .to_string(),
            );
        }
        let engine = resource.replication.as_ref().map(|r| r.engine);
        let driver = self
            .drivers
            .iter_mut()
            .find(|d| Some(d.engine()) == engine)
            .ok_or_else(|| "no replication engine runs the resource here".to_string())?;
        driver.confirm_suspended(&resource.name)
    }

    /// Snapshots taken while the hold of the resource's writes ended: writes may have crossed
    /// the cut, so they are deleted and reported failed.
    fn discard_crossed_cuts(
        &mut self,
        resource: &ResourceSpec,
        taken: &[(&SnapshotSpec, u16)],
        why: &str,
        report: &mut NodeReport,
    ) {
        let error =
            format!("not kept: the hold of the resource's writes ended during the cut ({why})");
        for (spec, volume_number) in taken {
            let number = VolumeNumber::from(*volume_number);
            if let Some(entry) = self.ledger.snapshot(&spec.uuid, number).cloned() {
                warn!(resource = %resource.name, snapshot = %spec.name, volume = volume_number, "discarding a snapshot whose cut writes may have crossed");
                match self.providers.get(entry.key.provider_kind).delete_snapshot(
                    &entry.key.pool_name,
                    &entry.volume_backing_name(),
                    &entry.snapshot,
                ) {
                    Ok(()) => {
                        self.ledger.remove_snapshot(&spec.uuid, number);
                        if let Err(e) = self.persist_ledger() {
                            error!(error = %e, "could not update the ledger");
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "could not delete the snapshot; it is reported failed")
                    }
                }
            }
            self.snapshot_failures
                .insert((spec.uuid.clone(), *volume_number), error.clone());
            for entry in report
                .snapshots
                .iter_mut()
                .filter(|r| r.uuid == spec.uuid && r.volume_number == *volume_number)
            {
                entry.method = None;
                entry.error = Some(error.clone());
            }
        }
    }

    /// Holds the writes of the resources whose state asks for it (a snapshot's cut), lets go of
    /// the others, ends holds older than the lease, and reports which it holds.
    pub(super) fn hold_io_for_cuts(&mut self, desired: &NodeState, report: &mut NodeReport) {
        let wanted: BTreeMap<&str, &ResourceSpec> = desired
            .resources_asking_io_held()
            .map(|r| (r.name.as_str(), r))
            .collect();
        let lease = std::time::Duration::from_millis(SUSPEND_IO_LEASE_MS);
        let held: Vec<(String, ReplicationEngine, std::time::Instant)> = self
            .held_io
            .iter()
            .map(|(name, hold)| (name.clone(), hold.engine, hold.since))
            .collect();
        for (name, engine, since) in held {
            let mut lapsed = since.elapsed() >= lease;
            if lapsed {
                warn!(resource = %name, lease_s = lease.as_secs(), "writes held for a snapshot's cut for the whole lease; resuming");
            } else if wanted.contains_key(name.as_str()) {
                // Still standing? A hold the engine let go (it restarted) is not reported as one.
                let confirmed = self
                    .drivers
                    .iter_mut()
                    .find(|d| d.engine() == engine)
                    .map(|d| d.confirm_suspended(&name));
                match confirmed {
                    Some(Ok(())) => {
                        // A cut that began while the hold stood may be taken under it too.
                        if let (Some(hold), Some(resource)) =
                            (self.held_io.get_mut(&name), wanted.get(name.as_str()))
                        {
                            hold.cuts.extend(
                                resource
                                    .snapshots
                                    .iter()
                                    .filter(|s| s.cut == SnapshotCut::Wait)
                                    .map(|s| s.uuid.clone()),
                            );
                        }
                        continue;
                    }
                    Some(Err(e)) => {
                        warn!(resource = %name, error = %e, "the hold of the writes for a snapshot's cut ended");
                        lapsed = true;
                    }
                    None => lapsed = true,
                }
            }
            if lapsed {
                self.lapsed_io.insert(name.clone());
            }
            self.held_io.remove(&name);
            if let Some(driver) = self.drivers.iter_mut().find(|d| d.engine() == engine) {
                match driver.resume_io(&name) {
                    Ok(()) => debug!(resource = %name, "writes resumed after the cut"),
                    Err(e) => {
                        error!(resource = %name, error = %e, "cannot resume the writes held for the cut");
                        report.errors.push(format!(
                            "resource '{name}': writes held for a snapshot's cut could not be resumed: {e}"
                        ));
                    }
                }
            }
        }
        self.lapsed_io
            .retain(|name| wanted.contains_key(name.as_str()));
        for (name, resource) in wanted {
            if self.held_io.contains_key(name) || self.lapsed_io.contains(name) {
                continue;
            }
            let Some(engine) = resource.replication.as_ref().map(|r| r.engine) else {
                continue;
            };
            let Some(driver) = self.drivers.iter_mut().find(|d| d.engine() == engine) else {
                report.errors.push(format!(
                    "resource '{name}': cannot hold its writes for a snapshot's cut: the {engine} \
                     engine does not run on this node"
                ));
                continue;
            };
            match driver.suspend_io(name) {
                Ok(()) => {
                    let hold = Hold {
                        engine,
                        since: std::time::Instant::now(),
                        id: ferrite_mirror::backing::random_u64(),
                        cuts: resource
                            .snapshots
                            .iter()
                            .filter(|s| s.cut == SnapshotCut::Wait)
                            .map(|s| s.uuid.clone())
                            .collect(),
                    };
                    info!(resource = %name, hold = hold.id, "writes held for a snapshot's cut");
                    self.held_io.insert(name.to_string(), hold);
                }
                Err(e) => {
                    error!(resource = %name, error = %e, "cannot hold the writes for a snapshot's cut");
                    report.errors.push(format!(
                        "resource '{name}': cannot hold its writes for a snapshot's cut: {e}"
                    ));
                }
            }
        }
        report.io_suspended = self
            .held_io
            .iter()
            .map(|(resource, hold)| HeldIo {
                resource: resource.clone(),
                hold: hold.id,
            })
            .collect();
    }

    /// One snapshot volume: taken now if `take` (its first pass), else checked.
    #[allow(clippy::too_many_arguments)]
    fn ensure_snapshot(
        &mut self,
        resource: &ResourceName,
        placement: &str,
        spec: &SnapshotSpec,
        snapshot: &SnapshotName,
        volume_number: u16,
        identity: &str,
        (kind, location, pool_error): (ProviderKind, &str, Option<&str>),
        take: bool,
    ) -> Result<Option<String>, String> {
        let number = VolumeNumber::from(volume_number);
        let provider = self.providers.clone();
        let provider = provider.get(kind);
        if let Some(entry) = self.ledger.snapshot(&spec.uuid, number).cloned() {
            let exists = provider
                .snapshot_exists(&entry.key.pool_name, &entry.volume_backing_name(), snapshot)
                .map_err(|e| e.to_string())?;
            return match (exists, entry.progress) {
                (true, Progress::Created) => Ok(entry.method.clone()),
                (true, Progress::Creating) => {
                    // Taken, but the satellite stopped before it recorded that.
                    let mut done = entry.clone();
                    done.progress = Progress::Created;
                    self.ledger.record_snapshot(done);
                    self.persist_ledger().map_err(|e| e.to_string())?;
                    Ok(entry.method.clone())
                }
                (false, Progress::Creating) => {
                    self.ledger.remove_snapshot(&spec.uuid, number);
                    self.persist_ledger().map_err(|e| e.to_string())?;
                    Err(
                        "taking it was interrupted (the satellite stopped); it was not taken"
                            .to_string(),
                    )
                }
                (false, Progress::Created) => Err(format!(
                    "snapshot '{snapshot}' of volume '{}' in {kind} pool '{}' was taken by this \
                     node but is missing",
                    entry.volume_backing_name(),
                    entry.key.pool_name
                )),
            };
        }
        if !take {
            return Err(
                "not taken: this node did not take it when it was asked for (it was offline or \
                 restarted in between), and a snapshot is never taken later than its point in time"
                    .to_string(),
            );
        }
        let late = now_ms().saturating_sub(spec.requested_at_ms);
        if late > SNAPSHOT_TAKE_DEADLINE_MS {
            return Err(format!(
                "not taken: this node heard of it {} s after it was asked for, later than the {} s \
                 a snapshot may be taken after its request",
                late / 1000,
                SNAPSHOT_TAKE_DEADLINE_MS / 1000
            ));
        }
        if let Some(error) = pool_error {
            return Err(format!("storage pool is not usable: {error}"));
        }
        if !self.support.supports(kind) {
            return Err(unsupported(kind, &self.support));
        }
        if !provider.supports_snapshots() {
            return Err(format!("{kind} pools cannot take snapshots"));
        }
        let key = VolumeKey {
            resource: resource.clone(),
            volume_number: number,
            provider_kind: kind,
            pool_name: location.to_string(),
        };
        let Some(volume) = self
            .ledger
            .get(&key)
            .filter(|e| e.belongs_to(identity, placement) && e.progress == Progress::Created)
            .cloned()
        else {
            return Err(format!(
                "volume {volume_number} of '{resource}' is not on this node in {kind} pool '{location}'"
            ));
        };
        let entry = SnapshotEntry {
            key: key.clone(),
            snapshot: snapshot.clone(),
            uuid: spec.uuid.clone(),
            identity: identity.to_string(),
            volume_backing_name: volume.backing_name().to_string(),
            method: None,
            progress: Progress::Creating,
        };
        // Write before acting: a snapshot taken is always one the ledger knows.
        self.ledger.record_snapshot(entry.clone());
        if let Err(e) = self.persist_ledger() {
            self.ledger.remove_snapshot(&spec.uuid, number);
            return Err(format!("could not record the snapshot in the ledger: {e}"));
        }
        self.storage_changed = true;
        info!(resource = %resource, volume = volume_number, %snapshot, pool = location, "taking snapshot");
        match provider.create_snapshot(location, &volume.backing_name(), snapshot) {
            Ok(method) => {
                let mut done = entry;
                done.progress = Progress::Created;
                done.method = Some(method.clone());
                self.ledger.record_snapshot(done);
                if let Err(e) = self.persist_ledger() {
                    error!(error = %e, "could not record the snapshot as taken");
                }
                Ok(Some(method))
            }
            Err(e) => {
                error!(resource = %resource, volume = volume_number, %snapshot, error = %e, "taking snapshot failed");
                if provider
                    .delete_snapshot(location, &volume.backing_name(), snapshot)
                    .is_ok()
                {
                    self.ledger.remove_snapshot(&spec.uuid, number);
                    let _ = self.persist_ledger();
                }
                Err(e.to_string())
            }
        }
    }

    /// Deletes the snapshot volumes of a snapshot marked `deleting` that the ledger has, and
    /// confirms once none is left.
    fn delete_snapshot(
        &mut self,
        resource: &ResourceName,
        spec: &SnapshotSpec,
        report: &mut NodeReport,
    ) {
        self.new_snapshots.remove(&spec.uuid);
        let entries: Vec<SnapshotEntry> = self
            .ledger
            .snapshots
            .iter()
            .filter(|e| e.uuid == spec.uuid)
            .cloned()
            .collect();
        let mut all_gone = true;
        for entry in entries {
            if let Err(why) = self.place_usable(entry.key.provider_kind, &entry.key.pool_name) {
                all_gone = false;
                report.errors.push(format!(
                    "snapshot '{}' of '{resource}' is to be deleted but cannot be yet: {why}",
                    spec.name
                ));
                continue;
            }
            info!(resource = %resource, snapshot = %entry.snapshot, volume = %entry.key.volume_number, "deleting snapshot, as the desired state asks");
            self.storage_changed = true;
            match self.providers.get(entry.key.provider_kind).delete_snapshot(
                &entry.key.pool_name,
                &entry.volume_backing_name(),
                &entry.snapshot,
            ) {
                Ok(()) => {
                    self.ledger
                        .remove_snapshot(&entry.uuid, entry.key.volume_number);
                    if let Err(e) = self.persist_ledger() {
                        error!(error = %e, "could not update the ledger");
                    }
                }
                Err(e) => {
                    all_gone = false;
                    warn!(error = %e, "could not delete snapshot; will retry");
                    report.errors.push(format!(
                        "snapshot '{}' of '{resource}' could not be deleted (retrying): {e}",
                        spec.name
                    ));
                }
            }
        }
        if all_gone {
            self.snapshot_failures
                .retain(|(uuid, _), _| uuid != &spec.uuid);
            report.deleted_snapshots.push(DeletedSnapshot {
                resource: resource.to_string(),
                snapshot: spec.name.clone(),
                uuid: spec.uuid.clone(),
            });
        }
    }

    /// The snapshot a new volume at `key` is restored from: one this node took, in the same
    /// pool.
    pub(super) fn restore_source(
        &self,
        key: &VolumeKey,
        source: &RestoreSpec,
    ) -> Result<(BackingVolumeName, SnapshotName), String> {
        self.ledger
            .snapshots
            .iter()
            .find(|e| {
                resource_key(e.key.resource.as_str()) == resource_key(&source.resource)
                    && e.snapshot.as_str().eq_ignore_ascii_case(&source.snapshot)
                    && e.key.volume_number.get() == source.volume_number
                    && e.identity == source.identity
                    && e.progress == Progress::Created
            })
            .map(|e| {
                if e.key.provider_kind != key.provider_kind || e.key.pool_name != key.pool_name {
                    Err(format!(
                        "snapshot '{}' of '{}' is in {} pool '{}', not in the pool the volume is \
                         wanted in ({} pool '{}')",
                        source.snapshot,
                        source.resource,
                        e.key.provider_kind,
                        e.key.pool_name,
                        key.provider_kind,
                        key.pool_name
                    ))
                } else {
                    Ok((e.volume_backing_name(), e.snapshot.clone()))
                }
            })
            .unwrap_or_else(|| {
                Err(format!(
                    "snapshot '{}' of '{}' (volume {}) is not on this node; nothing is created, \
                     since an empty volume would stand for restored data",
                    source.snapshot, source.resource, source.volume_number
                ))
            })
    }

    /// An operator's rollback: every volume named goes back to the snapshot this node took.
    pub(super) fn rollback(
        &mut self,
        resource: &str,
        resource_uuid: &str,
        snapshot: &str,
        snapshot_uuid: &str,
        volumes: &[RollbackVolume],
        fresh_generation: Option<u64>,
    ) -> Result<String, String> {
        if fresh_generation.is_some() {
            // A replicated resource: the engine must not run on the volumes while they are
            // rolled back; the controller brings every member down first.
            let down = self
                .desired
                .as_ref()
                .and_then(|d| d.resource(resource))
                .is_some_and(|r| r.inactive);
            if !down {
                return Err(format!(
                    "replicated resource '{resource}' is not down on node '{}'; its replication \
                     member is brought down before a rollback",
                    self.node_name
                ));
            }
        }
        let mut done = Vec::new();
        let mut rolled_back = Vec::new();
        for volume in volumes {
            let number = VolumeNumber::from(volume.volume_number);
            let entry = self
                .ledger
                .snapshot(snapshot_uuid, number)
                .filter(|e| e.progress == Progress::Created && e.identity == volume.identity)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "node '{}' has no snapshot '{snapshot}' of volume {} of '{resource}'",
                        self.node_name, volume.volume_number
                    )
                })?;
            let owned = self
                .ledger
                .get(&entry.key)
                .is_some_and(|e| e.belongs_to(&volume.identity, resource_uuid));
            if !owned {
                return Err(format!(
                    "volume {} of '{resource}' on node '{}' is not the volume the snapshot was taken of",
                    volume.volume_number, self.node_name
                ));
            }
            self.place_usable(entry.key.provider_kind, &entry.key.pool_name)?;
            if fresh_generation.is_some() {
                // Before the data changes: whatever happens next, the metadata rolled back
                // with it (this node's, from the snapshot) is never run, and until the whole
                // rollback is done the volume counts as holding no data (a full sync).
                if let Some(owned) = self.ledger.get_mut(&entry.key) {
                    owned.fresh_metadata = Some(FreshMetadata {
                        generation: None,
                        written: false,
                    });
                }
                self.persist_ledger().map_err(|e| e.to_string())?;
                rolled_back.push(entry.key.clone());
            }
            info!(%resource, %snapshot, volume = volume.volume_number, "rolling back to snapshot, as the operator asked");
            self.storage_changed = true;
            self.providers
                .get(entry.key.provider_kind)
                .rollback_snapshot(
                    &entry.key.pool_name,
                    &entry.volume_backing_name(),
                    &entry.snapshot,
                )
                .map_err(|e| e.to_string())?;
            done.push(volume.volume_number.to_string());
        }
        if let Some(generation) = fresh_generation {
            // Every volume holds the snapshot's data: it starts UpToDate at the generation
            // every member rolled back to the same cut shares.
            for key in &rolled_back {
                if let Some(owned) = self.ledger.get_mut(key) {
                    owned.fresh_metadata = Some(FreshMetadata {
                        generation: Some(generation),
                        written: false,
                    });
                }
            }
            self.persist_ledger().map_err(|e| e.to_string())?;
        }
        Ok(format!(
            "rolled back volume(s) {} of '{resource}' to snapshot '{snapshot}'",
            done.join(", ")
        ))
    }
}
