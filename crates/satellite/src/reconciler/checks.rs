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
//! A delta changes only the resources it names (applying it keeps the others as they were,
//! and a change of the pools makes the check whole), so its check looks at those resources
//! only: the node's state and the delta are compared through a [`View`] of each, of every
//! resource or of the named ones.

use std::collections::BTreeMap;

use ferrite_proto::{PoolSpec, ResourceSpec, Stamp, StateRefusal, VolumeSpec};
use ferrite_types::{ResourceName, VolumeNumber};
use tracing::{info, warn};

use super::state::cmp_resource_keys;
use super::{Next, NodeState, Reconciler, volume_key};
use crate::ledger::VolumeKey;

/// A volume held by the node: its place and the identity it has there.
struct Held {
    key: VolumeKey,
    identity: String,
}

/// What a check looks at of one state: its stamp, its pools and its resources, all of them or
/// those a delta names, in [`super::resource_key`] order.
struct View<'a> {
    stamp: Stamp,
    pools: &'a [PoolSpec],
    resources: Vec<&'a ResourceSpec>,
}

impl<'a> View<'a> {
    fn whole(state: &'a NodeState) -> View<'a> {
        View {
            stamp: state.stamp(),
            pools: &state.storage_pools,
            resources: state.resources().collect(),
        }
    }

    /// The node's state and `next`, as far as a check of `next` looks: whole, or for a change,
    /// the resources it names.
    fn pair(current: &'a NodeState, next: &'a Next) -> (View<'a>, View<'a>) {
        match next {
            Next::Whole(next) => (View::whole(current), View::whole(next)),
            Next::Change(change) => (
                View {
                    stamp: current.stamp(),
                    pools: &current.storage_pools,
                    resources: change
                        .resources
                        .keys()
                        .filter_map(|key| current.resource_by_key(key))
                        .collect(),
                },
                View {
                    stamp: change.stamp(),
                    pools: &change.storage_pools,
                    resources: change.resources.values().flatten().collect(),
                },
            ),
        }
    }

    /// Whether the two hold the same (stamps aside).
    fn same_content(&self, other: &View<'_>) -> bool {
        self.pools == other.pools && self.resources == other.resources
    }
}

/// The ledger places of the volumes `view` wants, with their identity and placement.
fn wanted_places(view: &View<'_>) -> Vec<(VolumeKey, String, String)> {
    let pools: BTreeMap<String, _> = view
        .pools
        .iter()
        .map(|p| (p.name.to_ascii_uppercase(), p))
        .collect();
    let mut places = Vec::new();
    for resource in &view.resources {
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

/// The spec of one volume in `view`, with its resource.
fn find_volume<'a>(
    view: &View<'a>,
    resource: &ResourceName,
    number: VolumeNumber,
) -> Option<(&'a ResourceSpec, &'a VolumeSpec)> {
    let resource = view
        .resources
        .binary_search_by(|r| cmp_resource_keys(&r.name, resource.as_str()))
        .ok()
        .map(|i| view.resources[i])?;
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

    /// The volumes the node holds for the current state (as far as `current` shows it):
    /// wanted by it and in the ledger with that identity.
    fn held(&self, current: &View<'_>) -> Vec<Held> {
        wanted_places(current)
            .into_iter()
            .filter(|(key, identity, placement)| {
                self.ledger
                    .get(key)
                    .is_some_and(|entry| entry.belongs_to(identity, placement))
            })
            .map(|(key, identity, _)| Held { key, identity })
            .collect()
    }

    /// Checks `next` against the applied state; a change only in the resources it names.
    /// Returns whether `next` asks for the pools and resources of the applied state.
    pub(super) fn check(&self, next: &Next) -> Result<bool, StateRefusal> {
        let Some(current) = &self.desired else {
            return Ok(false);
        };
        let (current, next) = View::pair(current, next);
        if next.stamp < current.stamp {
            return Err(StateRefusal::Older {
                offered: next.stamp,
                applied: current.stamp,
            });
        }
        let same_content = next.same_content(&current);
        if next.stamp == current.stamp && !same_content {
            return Err(StateRefusal::Conflicting { stamp: next.stamp });
        }
        // The volumes a state wants follow from its pools and resources alone, so a state with
        // the content of the applied one wants every volume the node holds for it: nothing to
        // look up (a restarted controller sends 12,500 of them to a node of that many).
        if same_content {
            return Ok(true);
        }
        let next_places: BTreeMap<VolumeKey, String> = wanted_places(&next)
            .into_iter()
            .map(|(key, identity, _)| (key, identity))
            .collect();
        let mut dropped = Vec::new();
        for held in self.held(&current) {
            let still_wanted = next_places
                .get(&held.key)
                .is_some_and(|identity| held.identity.is_empty() || *identity == held.identity);
            let deleted = find_volume(&next, &held.key.resource, held.key.volume_number)
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
            return Ok(false);
        }
        if next.stamp.epoch > current.stamp.epoch {
            warn!(volumes = ?dropped, epoch = next.stamp.epoch, "the controller's store was restored; volumes it does not know are kept as orphans");
            return Ok(false);
        }
        if self.reregistered() {
            warn!(volumes = ?dropped, "this node was registered anew; volumes of its previous registration are kept as orphans");
            return Ok(false);
        }
        Err(StateRefusal::DropsVolumes { volumes: dropped })
    }

    /// Gives volumes created before identities the identity of the volume `next` wants at
    /// their place, when the applied state wanted them there too: the same volume, now named.
    /// A volume nobody wanted at its place stays without identity, an orphan.
    pub(super) fn take_over_legacy_volumes(&mut self, next: &Next) {
        if !self.legacy_volumes {
            return;
        }
        let Some(current) = &self.desired else {
            return;
        };
        if !self.ledger.has_volumes_without_identity() {
            self.legacy_volumes = false;
            return;
        }
        let (current, next) = View::pair(current, next);
        let before: BTreeMap<VolumeKey, String> = wanted_places(&current)
            .into_iter()
            .map(|(key, identity, _)| (key, identity))
            .collect();
        let wanted = wanted_places(&next);
        let mut changed = false;
        for (key, identity, placement) in wanted {
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
