//! Intents recorded ahead: the volumes a pass over named resources is about to create, saved
//! to the ledger in one synced record before the first of them is made.
//!
//! A volume is recorded before it is created (`crate::ledger`), and that record is synced. A
//! batch of deltas that places several resources on the node would pay one sync per volume,
//! one after the other, and every delta of the batch waits for all of them. Recorded ahead,
//! the batch pays one. The rule is unchanged: each entry is on disk before its volume is
//! made. `Reconciler::create` finds its entry saved and does not save it
//! again.
//!
//! Only what the pass will create is recorded ahead: a plain create (not a restore, which
//! records where its data comes from when it starts) of a volume that has an identity, in a
//! usable pool, with no ledger entry, no create failure waiting to be retried, and no volume
//! of that name in the pool (checked here as the create checks it, so a volume this satellite
//! did not make is never recorded as its own; the create does not look again). Which volumes
//! are wanted in which usable pool is decided as the pass decides it (`converge::Place`). An intent the pass did not act on (its
//! resource's member could not be sized, say) is withdrawn when the pass ends, and that
//! withdrawal saved, so the ledger does not keep an entry for a volume that was not made.
//! A satellite stopped between the record and the creates finds entries recorded as being
//! created, as after a create cut short, and looks: a volume still wanted is created, one no
//! longer wanted is reported as an orphan, and nothing is deleted.

use std::collections::{BTreeMap, BTreeSet};

use ferrite_types::ResourceName;
use tracing::{debug, warn};

use super::converge::{Place, PoolState};
use super::{NodeState, Reconciler, volume_key};
use crate::ledger::{LedgerEntry, Progress, VolumeKey};

impl Reconciler {
    /// Records, in one save, the volumes of the resources `names` (by resource key) that the
    /// pass about to run will create, when there are several; one is left to its create,
    /// which saves it as before.
    pub(super) fn record_intents(
        &mut self,
        desired: &NodeState,
        names: &BTreeSet<String>,
        pools: &BTreeMap<String, PoolState>,
    ) {
        let mut intents: Vec<LedgerEntry> = Vec::new();
        for resource in names.iter().filter_map(|key| desired.resource_by_key(key)) {
            // As `converge_resource` decides: an inactive resource is brought down, and
            // nothing of a stack this satellite cannot apply whole is made.
            if resource.inactive || !self.unapplied_layers(resource).is_empty() {
                continue;
            }
            let Ok(name) = ResourceName::new(&resource.name) else {
                continue;
            };
            for volume in &resource.volumes {
                // A restore records where its data comes from when it starts; a volume
                // without an identity is made by its own create.
                let Place::Usable(pool) = Place::of(resource, volume, pools) else {
                    continue;
                };
                if volume.restore_from.is_some() || volume.identity.is_empty() {
                    continue;
                }
                let key = volume_key(&name, volume.volume_number, pool.spec);
                if self.ledger.get(&key).is_some() || self.create_failures.contains_key(&key) {
                    continue;
                }
                let backing_name = key.backing_name();
                let absent = matches!(
                    self.providers
                        .get(pool.spec.provider_kind)
                        .volume(&key.pool_name, &backing_name),
                    Ok(None)
                );
                if !absent {
                    continue;
                }
                intents.push(LedgerEntry {
                    key,
                    identity: Some(volume.identity.clone()),
                    backing_name: Some(backing_name.to_string()),
                    placement: (!resource.uuid.is_empty()).then(|| resource.uuid.clone()),
                    storage_pool: pool.spec.name.clone(),
                    progress: Progress::Creating,
                    fresh_metadata: None,
                });
            }
        }
        if intents.len() < 2 {
            return;
        }
        let keys: BTreeSet<VolumeKey> = intents.iter().map(|e| e.key.clone()).collect();
        for entry in intents {
            self.ledger.record(entry);
        }
        match self.persist_ledger() {
            Ok(()) => {
                debug!(node = %self.node_name, volumes = keys.len(), "recorded the volumes to create in one save");
                self.intents = keys;
            }
            Err(e) => {
                // Each create records its own, and meets the same error.
                warn!(node = %self.node_name, error = %e, "could not record the volumes to create ahead");
                for key in &keys {
                    self.ledger.remove(key);
                }
            }
        }
    }

    /// Whether the entry `entry` is already on disk because it was recorded ahead; taken, so
    /// it is answered once.
    pub(super) fn take_intent(&mut self, entry: &LedgerEntry) -> bool {
        self.intents.remove(&entry.key)
            && self.ledger.get(&entry.key) == Some(entry)
            && self.ledger.is_saved(&entry.key)
    }

    /// Withdraws the intents the pass did not act on, and saves that.
    pub(super) fn withdraw_intents(&mut self) {
        let mut withdrawn = 0;
        for key in std::mem::take(&mut self.intents) {
            if self
                .ledger
                .get(&key)
                .is_some_and(|e| e.progress == Progress::Creating)
            {
                self.ledger.remove(&key);
                withdrawn += 1;
            }
        }
        if withdrawn == 0 {
            return;
        }
        debug!(node = %self.node_name, withdrawn, "withdrew volumes recorded ahead that the pass did not create");
        if let Err(e) = self.persist_ledger() {
            warn!(node = %self.node_name, error = %e, "could not save the withdrawal of volumes recorded ahead; the ledger on disk records them as being created until the next save");
            self.ledger_behind = true;
        }
    }
}
