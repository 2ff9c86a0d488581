//! What each satellite should have: a node's slice of the object graph, in protocol terms.
//!
//! Deletions are explicit: a resource in phase `Deleting`, a volume definition flagged
//! `DELETE` and a resource whose disk is being removed are sent marked `deleting`, with the
//! identities (volume definition UUIDs) of the volumes to delete; a satellite deletes nothing
//! else.

use ferrite_proto::{
    ContentDigest, DesiredState, PeerSpec, PoolSpec, ReplicationEngine, ReplicationSpec,
    ResourceSpec, RestoreSpec, SnapshotCut, SnapshotSpec, SnapshotVolumeSpec, Stamp, VolumeSpec,
};
use ferrite_types::{LayerKind, NodeName, ResourceName};
use serde::Serialize;

use crate::model::{Cluster, CutPhase, Node, Resource, ResourceDefinition, ResourcePhase};

/// The node's whole desired state at the cluster's current revision.
pub fn full_state(cluster: &Cluster, node: &NodeName) -> DesiredState {
    let resources = cluster
        .resources_on_node_indexed(node)
        .into_iter()
        .map(|(rd, resource)| resource_spec(cluster, rd, resource))
        .collect();
    DesiredState {
        epoch: cluster.epoch,
        generation: cluster.revision,
        base_generation: None,
        storage_pools: cluster.node(node).map(pool_specs).unwrap_or_default(),
        resources,
        removed_resources: Vec::new(),
    }
}

/// The stamp [`full_state`] would carry.
pub fn full_state_stamp(cluster: &Cluster) -> Stamp {
    Stamp {
        epoch: cluster.epoch,
        generation: cluster.revision,
    }
}

/// The [`ferrite_proto::content_digest`] of what [`full_state`] would hold for `node`, made
/// one resource at a time: a node that holds its state (every node, when a controller
/// restarts) is sent only the stamp, and its 12,500 resources are never held at once. The
/// definitions come in name order, which is the digest's order.
pub fn full_state_digest(cluster: &Cluster, node: &NodeName) -> String {
    let pools = cluster.node(node).map(pool_specs).unwrap_or_default();
    let resources = cluster.resources_on_node_indexed(node);
    let mut digest = ContentDigest::new(pools.len(), resources.len());
    for pool in &pools {
        digest.pool(pool);
    }
    for (rd, resource) in resources {
        let view = SpecView::of(cluster, rd, resource);
        digest.resource_as(view.name, &view);
    }
    digest.finish()
}

/// The changes to `resources` on `node`, as a delta stamped with the cluster's revision. The
/// link fills in the base generation when it sends it.
pub fn delta_state<'a>(
    cluster: &Cluster,
    node: &NodeName,
    resources: impl IntoIterator<Item = &'a ResourceName>,
) -> DesiredState {
    let mut upserts = Vec::new();
    let mut removed = Vec::new();
    for name in resources {
        match cluster
            .resource_definition(name)
            .and_then(|rd| rd.resources.get(node).map(|r| (rd, r)))
        {
            Some((rd, resource)) => upserts.push(resource_spec(cluster, rd, resource)),
            None => removed.push(name.to_string()),
        }
    }
    DesiredState {
        epoch: cluster.epoch,
        generation: cluster.revision,
        base_generation: Some(0),
        storage_pools: cluster.node(node).map(pool_specs).unwrap_or_default(),
        resources: upserts,
        removed_resources: removed,
    }
}

fn pool_specs(node: &Node) -> Vec<PoolSpec> {
    node.storage_pools
        .values()
        .map(|pool| PoolSpec {
            name: pool.name.to_string(),
            uuid: pool.uuid.clone(),
            provider_kind: pool.provider_kind,
            pool_name: pool.backing_pool_name().to_string(),
            props: pool.props.clone(),
        })
        .collect()
}

/// The protocol's view of one resource on its node.
pub fn resource_spec(
    cluster: &Cluster,
    rd: &ResourceDefinition,
    resource: &Resource,
) -> ResourceSpec {
    SpecView::of(cluster, rd, resource).into_spec()
}

/// One resource on its node as [`resource_spec`] makes it, borrowing its names from the graph:
/// what the spec holds is decided here alone, and the view serializes as the spec it makes,
/// byte for byte (`a_spec_view_serializes_as_the_spec_it_makes`). So [`full_state_digest`]
/// hashes views, without making and dropping an owned spec per resource (at 12,500 resources a
/// node, a quarter of each digest's time).
#[derive(Serialize)]
struct SpecView<'a> {
    name: &'a str,
    uuid: &'a str,
    layers: &'a [LayerKind],
    diskless: bool,
    deleting: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    inactive: bool,
    volumes: Vec<VolumeView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<ReplicationSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    snapshots: Vec<SnapshotSpec>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    suspend_io: bool,
}

/// A [`VolumeSpec`] borrowing its names; see [`SpecView`].
#[derive(Serialize)]
struct VolumeView<'a> {
    volume_number: u16,
    identity: &'a str,
    size_kib: u64,
    storage_pool: &'a str,
    deleting: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    minor: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restore_from: Option<RestoreSpec>,
}

impl<'a> SpecView<'a> {
    fn of(cluster: &Cluster, rd: &'a ResourceDefinition, resource: &'a Resource) -> SpecView<'a> {
        let removing_disk = resource.phase == ResourcePhase::DiskRemoving;
        SpecView {
            name: rd.name.as_str(),
            uuid: &resource.uuid,
            layers: rd.resource_layers(),
            diskless: resource.diskless,
            deleting: resource.is_deleting(),
            inactive: (resource.inactive
                || rd
                    .rollback
                    .as_ref()
                    .is_some_and(|r| r.down.contains(&resource.uuid)))
                && !resource.is_deleting(),
            volumes: rd
                .volume_definitions
                .values()
                .map(|vd| VolumeView {
                    volume_number: vd.number.get(),
                    identity: &vd.uuid,
                    size_kib: vd.size_kib,
                    storage_pool: resource.storage_pool.as_str(),
                    deleting: vd.is_deleting() || removing_disk,
                    minor: vd.minor,
                    // Only the snapshot's volumes are restored; a volume definition added since
                    // gets an empty volume.
                    restore_from: resource.restore_from.as_ref().and_then(|source| {
                        let restored = source.volumes.iter().find(|v| v.number == vd.number)?;
                        Some(RestoreSpec {
                            resource: source.resource.to_string(),
                            snapshot: source.snapshot.to_string(),
                            volume_number: vd.number.get(),
                            identity: restored.identity.clone(),
                            fresh_generation: source.generation.filter(|_| rd.is_replicated()),
                        })
                    }),
                })
                .collect(),
            replication: replication_spec(cluster, rd, resource),
            snapshots: snapshot_specs(cluster, rd, resource),
            suspend_io: rd.is_replicated()
                && !resource.is_deleting()
                && !resource.inactive
                && cluster.snapshots_of(&rd.name).any(|d| d.cut.holds_writes()),
        }
    }

    fn into_spec(self) -> ResourceSpec {
        ResourceSpec {
            name: self.name.to_owned(),
            uuid: self.uuid.to_owned(),
            layers: self.layers.to_vec(),
            diskless: self.diskless,
            deleting: self.deleting,
            inactive: self.inactive,
            volumes: self
                .volumes
                .into_iter()
                .map(|v| VolumeSpec {
                    volume_number: v.volume_number,
                    identity: v.identity.to_owned(),
                    size_kib: v.size_kib,
                    storage_pool: v.storage_pool.to_owned(),
                    deleting: v.deleting,
                    minor: v.minor,
                    restore_from: v.restore_from,
                })
                .collect(),
            replication: self.replication,
            snapshots: self.snapshots,
            suspend_io: self.suspend_io,
        }
    }
}

/// The resource's snapshots on its node.
fn snapshot_specs(
    cluster: &Cluster,
    rd: &ResourceDefinition,
    resource: &Resource,
) -> Vec<SnapshotSpec> {
    cluster
        .snapshots_on_node(&rd.name, &resource.node)
        .map(|(definition, snapshot)| SnapshotSpec {
            name: definition.name.to_string(),
            uuid: snapshot.uuid.clone(),
            deleting: snapshot.is_deleting(),
            volumes: definition
                .volume_definitions
                .iter()
                .map(|v| SnapshotVolumeSpec {
                    volume_number: v.number.get(),
                    identity: v.identity.clone(),
                })
                .collect(),
            storage_pool: snapshot.storage_pool.to_string(),
            requested_at_ms: snapshot.create_timestamp,
            cut: match definition.cut {
                CutPhase::Suspending => SnapshotCut::Wait,
                CutPhase::Taking | CutPhase::Done => SnapshotCut::Take,
                CutPhase::Abandoned => SnapshotCut::Abandoned,
            },
        })
        .collect()
}

pub use super::inheritance::{DRBD_OPTIONS_PREFIX, replication_option};

/// From this many voting members (diskless tiebreakers and clients included), with at least
/// two disks, a replicated resource gets quorum options unless the user set them: what
/// LINSTOR's auto-quorum sets (`quorum majority`, `on-no-quorum io-error`).
pub const QUORUM_MIN_MEMBERS: usize = 3;

/// The options auto-quorum sets, by their DRBD names.
pub const QUORUM_DEFAULTS: [(&str, &str); 2] = [
    ("Resource/quorum", "majority"),
    ("Resource/on-no-quorum", "io-error"),
];

/// The replication layer's data for `resource`: its node-id and port, the secret, every other
/// member that is not being deleted, and the `DrbdOptions/*` properties after LINSTOR's
/// inheritance (`super::inheritance`): the member's own (`options`, completed with
/// [`QUORUM_DEFAULTS`] for resources of [`QUORUM_MIN_MEMBERS`] or more), each volume's `Disk`
/// options (`volume_options`) and each connection's `Net` and `PeerDevice` options
/// (`connection_options`), each whole, as the file's section gets them, and left out when no
/// level sets any. `None` when the stack has no replication layer, or while something is not
/// allocated yet.
///
/// Every property read here must reach the satellites when it changes: `Op::touches` names
/// the members each level's change reaches (`inheritance::reaches`).
fn replication_spec(
    cluster: &Cluster,
    rd: &ResourceDefinition,
    resource: &Resource,
) -> Option<ReplicationSpec> {
    use super::inheritance::{CONNECTION_NET, Levels, MEMBER, VOLUME_DISK};

    let engine = match rd.replication_layer()? {
        LayerKind::Mirror => ReplicationEngine::Mirror,
        LayerKind::Drbd => ReplicationEngine::Drbd,
        LayerKind::Storage => return None,
    };
    let address_of = |node: &NodeName| -> Option<std::net::IpAddr> {
        cluster.node(node)?.active_interface().map(|i| i.address)
    };
    let peers: Vec<(&NodeName, PeerSpec)> = rd
        .resources
        .values()
        .filter(|peer| peer.node != resource.node && !peer.is_deleting())
        .filter_map(|peer| {
            Some((
                &peer.node,
                PeerSpec {
                    node_name: peer.node.to_string(),
                    node_id: peer.node_id?,
                    address: address_of(&peer.node)?,
                    port: peer.port?,
                    diskless: !peer.holds_data(),
                },
            ))
        })
        .collect();
    let member = Levels::member(cluster, rd, resource);
    let mut options = member.resolve(MEMBER, None);
    let members = crate::app::tiebreaker::Members::of(rd);
    if members.total() >= QUORUM_MIN_MEMBERS && members.diskful >= 2 {
        for (name, value) in QUORUM_DEFAULTS {
            options
                .entry(name.to_string())
                .or_insert_with(|| value.to_string());
        }
    }
    let volume_options = rd
        .volume_definitions
        .values()
        .filter_map(|vd| {
            let options = member
                .with_volume(cluster, rd, vd)
                .resolve(VOLUME_DISK, Some(&["Disk"]));
            (!options.is_empty()).then(|| (vd.number.get(), options))
        })
        .collect();
    let connection_options = peers
        .iter()
        .filter_map(|(peer, spec)| {
            let levels = member.with_connection(cluster, rd, &resource.node, peer);
            let mut options = levels.resolve(CONNECTION_NET, Some(&["Net"]));
            options.extend(levels.resolve(levels.peer_device_chain(), Some(&["PeerDevice"])));
            (!options.is_empty()).then(|| (spec.node_name.clone(), options))
        })
        .collect();
    Some(ReplicationSpec {
        engine,
        node_id: resource.node_id?,
        address: address_of(&resource.node)?,
        port: resource.port?,
        secret: rd.secret.clone()?,
        peers: peers.into_iter().map(|(_, spec)| spec).collect(),
        options,
        volume_options,
        connection_options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{add_resource, replicated_cluster, tutorial_cluster};

    /// The digest made one resource at a time is the digest of the full state, so a node that
    /// holds its state is recognised; the satellite computes the latter.
    #[test]
    fn the_digest_made_resource_by_resource_is_that_of_the_full_state() {
        let mut cluster = tutorial_cluster();
        // Spellings whose upper-cased order differs from their own.
        for (i, name) in ["web", "DB", "alpha", "Zeta", "b_2", "B_1"]
            .iter()
            .enumerate()
        {
            add_resource(&mut cluster, name, ["node1", "node2"][i % 2], "pool_ssd");
            add_resource(&mut cluster, name, "node3", "pool_ssd");
        }
        let nodes: Vec<NodeName> = cluster.nodes.keys().cloned().collect();
        for node in &nodes {
            let full = full_state(&cluster, node);
            let whole = ferrite_proto::content_digest(&full.storage_pools, &full.resources);
            assert_eq!(full_state_digest(&cluster, node), whole, "{node}");
            assert_eq!(full.stamp(), full_state_stamp(&cluster));
        }
    }

    /// Replicated members (with their replication spec, minors and a tiebreaker) digest as
    /// their full state does too.
    #[test]
    fn replicated_members_digest_as_their_full_state() {
        let cluster = replicated_cluster();
        let mut replicated = 0;
        for node in cluster.nodes.keys() {
            let full = full_state(&cluster, node);
            replicated += full
                .resources
                .iter()
                .filter(|r| r.replication.is_some())
                .count();
            let whole = ferrite_proto::content_digest(&full.storage_pools, &full.resources);
            assert_eq!(full_state_digest(&cluster, node), whole, "{node}");
        }
        assert_eq!(replicated, 6, "two definitions, three members each");
    }

    /// Every field a spec can carry, set and unset: a view serializes as the spec it makes.
    #[test]
    fn a_spec_view_serializes_as_the_spec_it_makes() {
        let layers = [LayerKind::Drbd, LayerKind::Storage];
        let view = |set: bool| SpecView {
            name: "Web",
            uuid: "u-1",
            layers: &layers,
            diskless: set,
            deleting: set,
            inactive: set,
            volumes: vec![
                VolumeView {
                    volume_number: 0,
                    identity: "vd-0",
                    size_kib: 4096,
                    storage_pool: "pool_ssd",
                    deleting: set,
                    minor: set.then_some(1000),
                    restore_from: set.then(|| RestoreSpec {
                        resource: "src".into(),
                        snapshot: "snap".into(),
                        volume_number: 0,
                        identity: "vd-src".into(),
                        fresh_generation: Some(7),
                    }),
                },
                VolumeView {
                    volume_number: 1,
                    identity: "vd-1",
                    size_kib: 8192,
                    storage_pool: "pool_ssd",
                    deleting: false,
                    minor: None,
                    restore_from: None,
                },
            ],
            replication: None,
            snapshots: if set {
                vec![SnapshotSpec {
                    name: "snap".into(),
                    uuid: "s-1".into(),
                    deleting: true,
                    volumes: vec![SnapshotVolumeSpec {
                        volume_number: 0,
                        identity: "vd-0".into(),
                    }],
                    storage_pool: "pool_ssd".into(),
                    requested_at_ms: 1,
                    cut: SnapshotCut::Wait,
                }]
            } else {
                Vec::new()
            },
            suspend_io: set,
        };
        for set in [true, false] {
            let text = serde_json::to_string(&view(set)).unwrap();
            assert_eq!(
                text,
                serde_json::to_string(&view(set).into_spec()).unwrap(),
                "fields set: {set}"
            );
        }
    }
}
