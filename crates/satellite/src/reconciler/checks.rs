//! What a new desired state must satisfy before the node takes it.
//!
//! The satellite is the last line of defence for the data on its node: a controller with a
//! stale copy of its store, two controllers writing, or a bug that loses rows must not make it
//! delete or forget a volume. So a state is refused ([`StateRefusal`]) when
//!
//! - its stamp is older than the applied one (`Older`);
//! - its stamp equals the applied one but its content differs (`Conflicting`);
//! - it stops wanting a volume the node holds without marking it for deletion
//!   (`DropsVolumes`) — unless it comes from a newer epoch (a restored store) or from a new
//!   registration of the node (after `node lost`): then such volumes are kept as orphans.
//!
//! A delta changes only the resources it names (the merge keeps the others as they were, and
//! a change of the pools makes the check whole), so its check looks at those resources only.

use std::collections::{BTreeMap, BTreeSet};

use ferrite_proto::{DesiredState, ResourceSpec, StateRefusal, VolumeSpec};
use ferrite_types::{ResourceName, VolumeNumber};
use tracing::{info, warn};

use super::{Reconciler, resource_key, volume_key};
use crate::ledger::VolumeKey;

/// A volume held by the node: its place and the identity it has there.
struct Held {
    key: VolumeKey,
    identity: String,
}

/// The ledger places of the volumes `state` wants, with their identity and placement: of every
/// resource, or of those `scope` names (by [`resource_key`]).
fn wanted_places(
    state: &DesiredState,
    scope: Option<&BTreeSet<String>>,
) -> Vec<(VolumeKey, String, String)> {
    let pools: BTreeMap<String, _> = state
        .storage_pools
        .iter()
        .map(|p| (p.name.to_ascii_uppercase(), p))
        .collect();
    let mut places = Vec::new();
    let resources = state
        .resources
        .iter()
        .filter(|r| scope.is_none_or(|names| names.contains(&resource_key(&r.name))));
    for resource in resources {
        let Ok(name) = ResourceName::new(&resource.name) else {
            continue;
        };
        for volume in resource.volumes.iter().filter(|v| resource.wants_disk(v)) {
            let Some(pool) = pools.get(&volume.storage_pool.to_ascii_uppercase()) else {
                continue;
            };
            if !pool.provider_kind.has_backing_device() {
                continue;
            }
            places.push((
                volume_key(&name, volume.volume_number, pool),
                volume.identity.clone(),
                resource.uuid.clone(),
            ));
        }
    }
    places
}

/// The spec of one volume in `state`, with its resource.
fn find_volume<'a>(
    state: &'a DesiredState,
    resource: &ResourceName,
    number: VolumeNumber,
) -> Option<(&'a ResourceSpec, &'a VolumeSpec)> {
    // A state's resources are in `resource_key` order (`canonical`).
    let wanted = resource_key(resource.as_str());
    let resource = state
        .resources
        .binary_search_by(|r| resource_key(&r.name).cmp(&wanted))
        .ok()
        .map(|i| &state.resources[i])?;
    let volume = resource
        .volumes
        .iter()
        .find(|v| v.volume_number == number.get())?;
    Some((resource, volume))
}

impl Reconciler {
    /// Whether the node was registered anew since it took its current state.
    fn reregistered(&self) -> bool {
        !self.desired_node_uuid.is_empty()
            && !self.session_node_uuid.is_empty()
            && self.desired_node_uuid != self.session_node_uuid
    }

    /// The volumes the node holds for the current state: wanted by it and in the ledger with
    /// that identity.
    fn held(&self, current: &DesiredState, scope: Option<&BTreeSet<String>>) -> Vec<Held> {
        wanted_places(current, scope)
            .into_iter()
            .filter(|(key, identity, placement)| {
                self.ledger
                    .get(key)
                    .is_some_and(|entry| entry.belongs_to(identity, placement))
            })
            .map(|(key, identity, _)| Held { key, identity })
            .collect()
    }

    /// Checks `next` against the applied state; for a delta, `scope` names the resources it
    /// changes (by [`resource_key`]).
    pub(super) fn check(
        &self,
        next: &DesiredState,
        scope: Option<&BTreeSet<String>>,
    ) -> Result<(), StateRefusal> {
        let Some(current) = &self.desired else {
            return Ok(());
        };
        if next.stamp() < current.stamp() {
            return Err(StateRefusal::Older {
                offered: next.stamp(),
                applied: current.stamp(),
            });
        }
        if next.stamp() == current.stamp() && next != current {
            return Err(StateRefusal::Conflicting {
                stamp: next.stamp(),
            });
        }
        let next_places: BTreeMap<VolumeKey, String> = wanted_places(next, scope)
            .into_iter()
            .map(|(key, identity, _)| (key, identity))
            .collect();
        let mut dropped = Vec::new();
        for held in self.held(current, scope) {
            let still_wanted = next_places
                .get(&held.key)
                .is_some_and(|identity| held.identity.is_empty() || *identity == held.identity);
            let deleted = find_volume(next, &held.key.resource, held.key.volume_number)
                .is_some_and(|(resource, volume)| {
                    resource.deletes(volume)
                        && (held.identity.is_empty() || volume.identity == held.identity)
                });
            if !still_wanted && !deleted {
                dropped.push(format!(
                    "volume {}/{} ({})",
                    held.key.resource,
                    held.key.volume_number,
                    self.ledger
                        .get(&held.key)
                        .map(|e| e.backing_name().to_string())
                        .unwrap_or_default()
                ));
            }
        }
        if dropped.is_empty() {
            return Ok(());
        }
        if next.epoch > current.epoch {
            warn!(volumes = ?dropped, epoch = next.epoch, "the controller's store was restored; volumes it does not know are kept as orphans");
            return Ok(());
        }
        if self.reregistered() {
            warn!(volumes = ?dropped, "this node was registered anew; volumes of its previous registration are kept as orphans");
            return Ok(());
        }
        Err(StateRefusal::DropsVolumes { volumes: dropped })
    }

    /// Gives volumes created before identities the identity of the volume `next` wants at
    /// their place, when the applied state wanted them there too: the same volume, now named.
    /// A volume nobody wanted at its place stays without identity, an orphan.
    pub(super) fn take_over_legacy_volumes(
        &mut self,
        next: &DesiredState,
        scope: Option<&BTreeSet<String>>,
    ) {
        let Some(current) = &self.desired else {
            return;
        };
        let before: BTreeMap<VolumeKey, String> = wanted_places(current, scope)
            .into_iter()
            .map(|(key, identity, _)| (key, identity))
            .collect();
        let mut changed = false;
        for (key, identity, placement) in wanted_places(next, scope) {
            if identity.is_empty() || !before.contains_key(&key) {
                continue;
            }
            if let Some(entry) = self.ledger.get_mut(&key)
                && entry.identity.is_none()
            {
                info!(volume = %key, %identity, "volume created before identities takes its volume definition's identity");
                entry.identity = Some(identity);
                if entry.placement.is_none() && !placement.is_empty() {
                    entry.placement = Some(placement);
                }
                changed = true;
            }
        }
        if changed && let Err(e) = self.persist_ledger() {
            warn!(error = %e, "could not record volume identities; trying again with the next state");
        }
    }
}
