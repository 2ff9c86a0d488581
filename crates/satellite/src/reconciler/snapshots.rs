//! Snapshots on the node: taken once, when the desired state first holds them; kept while it
//! holds them; deleted when it marks them `deleting`; rolled back to on an operator's command.
//!
//! A snapshot is a point in time. The node takes one only in the pass right after a state that
//! newly holds it was applied, and only within [`SNAPSHOT_TAKE_DEADLINE_MS`] of the request;
//! a snapshot it could not take then (or never heard of in time) is reported failed, never
//! taken later. Every snapshot volume is recorded in the ledger before it is taken, so only
//! snapshots this satellite took are ever deleted or rolled back to.
//!
//! A diskful member of a replicated resource holds the resource's I/O while it takes the pass's
//! snapshots of it: engine `suspend_io` (`drbdadm suspend-io` with DRBD), the backing volumes'
//! snapshots, then `resume_io`, which runs whatever happened in between, even when suspending
//! failed. A snapshot whose I/O could not be suspended is not taken and reported failed.

use std::collections::BTreeMap;

use ferrite_proto::{
    DeletedSnapshot, DesiredState, NodeReport, ResourceSpec, RestoreSpec, RollbackVolume,
    SNAPSHOT_TAKE_DEADLINE_MS, SnapshotReport, SnapshotSpec,
};
use ferrite_storage::BackingVolumeName;
use ferrite_types::{ProviderKind, ResourceName, SnapshotName, VolumeNumber};
use tracing::{debug, error, info, warn};

use super::converge::PoolState;
use super::{Reconciler, normalized_pool_name, resource_key, unsupported};
use crate::ledger::{Progress, SnapshotEntry, VolumeKey};

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Reconciler {
    /// Notes the snapshots `next` holds that the node's current state did not: the ones the
    /// next pass may take.
    pub(super) fn note_new_snapshots(&mut self, next: &DesiredState) {
        let known: std::collections::BTreeSet<&str> = self
            .desired
            .iter()
            .flat_map(|d| d.resources.iter())
            .flat_map(|r| r.snapshots.iter())
            .map(|s| s.uuid.as_str())
            .collect();
        for resource in &next.resources {
            for snapshot in &resource.snapshots {
                if !snapshot.deleting && !known.contains(snapshot.uuid.as_str()) {
                    self.new_snapshots.insert(snapshot.uuid.clone());
                }
            }
        }
    }

    /// Takes, checks and deletes the snapshots of the desired state, and reports them.
    pub(super) fn converge_snapshots(
        &mut self,
        desired: &DesiredState,
        pools: &BTreeMap<String, PoolState>,
        report: &mut NodeReport,
    ) {
        for resource in &desired.resources {
            let suspended = self.suspend_for_snapshots(resource);
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
                for volume in &snapshot.volumes {
                    let outcome = match (&snapshot_name, &place) {
                        (Err(e), _) => Err(e.to_string()),
                        // Never a cut that writes may cross.
                        _ if take && let Some(Err(why)) = &suspended => Err(format!(
                            "not taken: I/O to the resource could not be suspended for the cut: {why}"
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
                    let (method, error) = match outcome {
                        Ok(method) => (method, None),
                        Err(e) => {
                            self.snapshot_failures
                                .entry((snapshot.uuid.clone(), volume.volume_number))
                                .or_insert_with(|| e.clone());
                            let first = self
                                .snapshot_failures
                                .get(&(snapshot.uuid.clone(), volume.volume_number))
                                .cloned()
                                .unwrap_or(e);
                            (None, Some(first))
                        }
                    };
                    report.snapshots.push(SnapshotReport {
                        resource: resource.name.clone(),
                        snapshot: snapshot.name.clone(),
                        uuid: snapshot.uuid.clone(),
                        volume_number: volume.volume_number,
                        method,
                        error,
                    });
                }
            }
            // Whatever happened to the snapshots, and even when suspending failed half-way.
            if suspended.is_some() {
                self.resume_after_snapshots(resource, report);
            }
        }
    }

    /// The replication engine of a diskful member of a replicated resource that has a snapshot
    /// to take in this pass.
    fn snapshot_engine(
        &mut self,
        resource: &ResourceSpec,
    ) -> Option<&mut Box<dyn crate::replication::ReplicationDriver>> {
        let engine = resource.replication.as_ref()?.engine;
        let takes = resource
            .snapshots
            .iter()
            .any(|s| !s.deleting && self.new_snapshots.contains(&s.uuid));
        if !takes || resource.diskless || resource.deleting {
            return None;
        }
        self.drivers.iter_mut().find(|d| d.engine() == engine)
    }

    /// Holds the resource's I/O for the snapshots of this pass (`suspend-io` with DRBD), when
    /// it is a replicated member with snapshots to take: `None` when nothing was suspended,
    /// else whether it was.
    fn suspend_for_snapshots(&mut self, resource: &ResourceSpec) -> Option<Result<(), String>> {
        let driver = self.snapshot_engine(resource)?;
        let outcome = driver.suspend_io(&resource.name);
        match &outcome {
            Ok(()) => {
                debug!(resource = %resource.name, "engine asked to hold I/O for the snapshot")
            }
            Err(e) => {
                error!(resource = %resource.name, error = %e, "cannot suspend I/O for the snapshot")
            }
        }
        Some(outcome)
    }

    fn resume_after_snapshots(&mut self, resource: &ResourceSpec, report: &mut NodeReport) {
        let Some(engine) = resource.replication.as_ref().map(|r| r.engine) else {
            return;
        };
        let Some(driver) = self.drivers.iter_mut().find(|d| d.engine() == engine) else {
            return;
        };
        match driver.resume_io(&resource.name) {
            Ok(()) => {
                debug!(resource = %resource.name, "engine asked to let I/O go on after the snapshot")
            }
            Err(e) => {
                error!(resource = %resource.name, error = %e, "cannot resume I/O after the snapshot");
                report.errors.push(format!(
                    "resource '{}': I/O suspended for a snapshot could not be resumed: {e}",
                    resource.name
                ));
            }
        }
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
    ) -> Result<String, String> {
        let mut done = Vec::new();
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
        Ok(format!(
            "rolled back volume(s) {} of '{resource}' to snapshot '{snapshot}'",
            done.join(", ")
        ))
    }
}
