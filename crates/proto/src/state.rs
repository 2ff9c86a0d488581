//! Desired state (controller → satellite) and reports (satellite → controller).

use std::collections::BTreeMap;

use ferrite_types::{LayerKind, ProviderKind};
use serde::{Deserialize, Serialize};

/// Where a desired state stands in the controller's history: the store's epoch (raised by
/// every restore of a backup) and its revision. Stamps compare epoch first, so a restored
/// store's states, whose revisions start again from the backup's, are newer than anything the
/// store had before the restore, while a stale copy of a store is older than its original.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Stamp {
    pub epoch: u64,
    pub generation: u64,
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "generation {} (epoch {})", self.generation, self.epoch)
    }
}

/// The desired state a satellite holds, as its `Welcome` says: its stamp and the
/// [`content_digest`] of its pools and resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldState {
    pub stamp: Stamp,
    pub digest: String,
}

/// Compares two names of resources or pools as their upper-cased forms compare (names are
/// case-insensitive, as in LINSTOR), without allocating them: the order of a canonical state.
pub fn cmp_name_keys(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_uppercase())
        .cmp(b.bytes().map(|c| c.to_ascii_uppercase()))
}

/// What a node's desired state asks for, without its stamp: the SHA-256, in hex, of the JSON
/// of its pools in upper-cased name order, then of its resources in upper-cased name order
/// (each as it is, volumes in number order as both sides keep them). The controller computes
/// it of the full state it would send, the satellite of the state it holds; equal digests
/// mean the full state would change nothing but the stamp. A state whose order differs gets
/// another digest, and with it the full state: never the wrong answer, only the slower one.
pub fn content_digest<'a>(
    pools: impl IntoIterator<Item = &'a PoolSpec>,
    resources: impl IntoIterator<Item = &'a ResourceSpec>,
) -> String {
    let mut pools: Vec<&PoolSpec> = pools.into_iter().collect();
    pools.sort_by(|a, b| cmp_name_keys(&a.name, &b.name));
    let mut resources: Vec<&ResourceSpec> = resources.into_iter().collect();
    resources.sort_by(|a, b| cmp_name_keys(&a.name, &b.name));
    let mut digest = ContentDigest::new(pools.len(), resources.len());
    for pool in pools {
        digest.pool(pool);
    }
    for resource in resources {
        digest.resource(resource);
    }
    digest.finish()
}

/// [`content_digest`] fed one pool and one resource at a time, already in upper-cased name
/// order (pools first), so that a state need not be held whole to be digested: the controller
/// digests a node's resources as it makes them. Given the counts up front, it yields the same
/// digest as [`content_digest`] of the same pools and resources. Fed out of order, or other
/// counts than announced, it yields a text that is no digest (a satellite's digest is always
/// one, taken in order), so the full state is sent.
pub struct ContentDigest {
    out: std::io::BufWriter<Hashing>,
    written: bool,
    announced: (usize, usize),
    fed: (usize, usize),
    /// The last name fed, to check the order.
    last: String,
    in_order: bool,
}

/// Feeds what serde_json writes to the hash.
struct Hashing(sha2::Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.0, bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ContentDigest {
    pub fn new(pools: usize, resources: usize) -> ContentDigest {
        use std::io::Write;
        // serde_json writes a value in many small pieces; the hash takes them in blocks.
        let mut out = std::io::BufWriter::with_capacity(
            64 * 1024,
            Hashing(<sha2::Sha256 as sha2::Digest>::new()),
        );
        let counts = format!("{pools} pools, {resources} resources\n");
        let written = out.write_all(counts.as_bytes()).is_ok();
        ContentDigest {
            out,
            written,
            announced: (pools, resources),
            fed: (0, 0),
            last: String::new(),
            in_order: true,
        }
    }

    fn follows(&mut self, name: &str, first: bool) {
        // Equal names keep their order, as the sort in `content_digest` keeps them (a node
        // has none: names are unique).
        if !first && cmp_name_keys(&self.last, name) == std::cmp::Ordering::Greater {
            self.in_order = false;
        }
        self.last.clear();
        self.last.push_str(name);
    }

    pub fn pool(&mut self, pool: &PoolSpec) {
        let first = self.fed.0 == 0;
        if self.fed.1 > 0 {
            self.in_order = false;
        }
        self.follows(&pool.name, first);
        self.fed.0 += 1;
        self.written &= serde_json::to_writer(&mut self.out, pool).is_ok();
    }

    pub fn resource(&mut self, resource: &ResourceSpec) {
        self.resource_as(&resource.name, resource);
    }

    /// [`ContentDigest::resource`] for a value that serializes exactly as the
    /// [`ResourceSpec`] named `name` it stands for (a view borrowing from the caller's data);
    /// anything else yields a digest of something else, and the full state is sent.
    pub fn resource_as<T: Serialize>(&mut self, name: &str, resource: &T) {
        let first = self.fed.1 == 0;
        self.follows(name, first);
        self.fed.1 += 1;
        self.written &= serde_json::to_writer(&mut self.out, resource).is_ok();
    }

    pub fn finish(self) -> String {
        if !self.in_order || self.fed != self.announced {
            return format!(
                "not canonical: {} of {} pools and {} of {} resources{}",
                self.fed.0,
                self.announced.0,
                self.fed.1,
                self.announced.1,
                if self.in_order { "" } else { ", out of order" }
            );
        }
        match self.out.into_inner() {
            Ok(hashing) if self.written => {
                format!("{:x}", sha2::Digest::finalize(hashing.0))
            }
            // Not reached: writing to the hash cannot fail, nor can encoding these types. A
            // digest nobody else computes makes the controller send the full state.
            _ => "unencodable".to_string(),
        }
    }
}

/// A node's desired state, stamped with a generation.
///
/// The generation is the controller store's revision of the change, so it only ever grows,
/// across controller restarts too; the epoch grows with every restore of the store.
///
/// Deletion is explicit: a backing volume is deleted only because a [`ResourceSpec`] or
/// [`VolumeSpec`] is marked `deleting` and names that volume's identity. A volume the state
/// simply no longer mentions is never deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    #[serde(default)]
    pub epoch: u64,
    pub generation: u64,
    /// `None`: this is the node's whole state. `Some(g)`: a delta on top of generation `g`.
    #[serde(default)]
    pub base_generation: Option<u64>,
    /// The node's storage pools, always all of them.
    pub storage_pools: Vec<PoolSpec>,
    /// Full state: every resource on the node. Delta: the resources that changed.
    pub resources: Vec<ResourceSpec>,
    /// Delta only: resources that are gone from the node.
    #[serde(default)]
    pub removed_resources: Vec<String>,
}

impl DesiredState {
    /// Whether this is a whole state rather than a delta.
    pub fn is_full(&self) -> bool {
        self.base_generation.is_none()
    }

    pub fn stamp(&self) -> Stamp {
        Stamp {
            epoch: self.epoch,
            generation: self.generation,
        }
    }
}

/// A storage pool as the satellite needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub name: String,
    /// The pool's UUID in the controller; a FILE pool's marker file records it, so a directory
    /// that is not the pool (a file system not mounted yet, another disk) is recognised.
    #[serde(default)]
    pub uuid: String,
    pub provider_kind: ProviderKind,
    /// What the provider allocates from (`StorDriver/StorPoolName`): a volume group, a
    /// `vg/thinpool`, a zpool or a directory. Empty for DISKLESS.
    pub pool_name: String,
    #[serde(default)]
    pub props: BTreeMap<String, String>,
}

/// A resource on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub name: String,
    /// The resource's UUID on this node: a resource deleted and created again has a new one.
    #[serde(default)]
    pub uuid: String,
    /// The layer stack, top first; always ends with STORAGE.
    pub layers: Vec<LayerKind>,
    /// No local disk: no volume of the resource is wanted on this node (a volume marked
    /// `deleting` may still have to be removed).
    pub diskless: bool,
    /// The resource is being deleted: delete the backing volume of every volume listed, then
    /// confirm with [`NodeReport::deleted_resources`].
    #[serde(default)]
    pub deleting: bool,
    /// Deactivated: the node keeps the resource's backing volumes (they are neither orphans
    /// nor deleted) but brings them down: no replication member, no block device.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inactive: bool,
    pub volumes: Vec<VolumeSpec>,
    /// The replication layer's data, when the stack has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<crate::ReplicationSpec>,
    /// The resource's snapshots on this node. A snapshot the node has not taken is taken when
    /// it first appears (a point in time is never taken later than asked: one that could not
    /// be taken then is reported failed); one marked `deleting` is deleted, then confirmed in
    /// [`NodeReport::deleted_snapshots`]. A snapshot the state no longer mentions is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotSpec>,
    /// Hold the resource's application writes on this node (its replication engine's
    /// `suspend-io`) while this is set: a snapshot's cut is being taken across the members, and
    /// every member, diskless ones included, holds before any takes its snapshot. Reported in
    /// [`NodeReport::io_suspended`] once held. The node ends a hold on its own after
    /// [`SUSPEND_IO_LEASE_MS`], so an application never waits on a controller that went away.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend_io: bool,
}

/// The longest a node holds a resource's writes for a snapshot's cut (see
/// [`ResourceSpec::suspend_io`]).
pub const SUSPEND_IO_LEASE_MS: u64 = 60_000;

/// Where a snapshot of a replicated resource is in its cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotCut {
    /// Take it when it first appears (an unreplicated resource), or now: every member holds
    /// the resource's writes. A replicated resource's snapshot is taken only while this node
    /// holds them.
    #[default]
    Take,
    /// The members are being asked to hold the resource's writes: not yet.
    Wait,
    /// The cut was given up (a member could not hold its writes): never.
    Abandoned,
}

impl SnapshotCut {
    pub fn is_take(&self) -> bool {
        *self == SnapshotCut::Take
    }
}

/// A snapshot of a resource on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSpec {
    pub name: String,
    /// The snapshot's UUID on this node: one deleted and taken again has a new one.
    pub uuid: String,
    /// Delete its backing snapshots, then confirm.
    #[serde(default)]
    pub deleting: bool,
    /// The volumes it holds, by number, with the identities of the volumes they were taken of.
    pub volumes: Vec<SnapshotVolumeSpec>,
    /// The storage pool the snapshotted volumes are in.
    pub storage_pool: String,
    /// When the controller asked for it, milliseconds since the epoch. A node that first hears
    /// of a snapshot more than [`SNAPSHOT_TAKE_DEADLINE_MS`] later (it was offline) does not
    /// take it: the point in time has passed.
    pub requested_at_ms: i64,
    /// Whether to take it now (see [`SnapshotCut`]).
    #[serde(default, skip_serializing_if = "SnapshotCut::is_take")]
    pub cut: SnapshotCut,
}

/// How late after it was asked for a node may still take a snapshot (see
/// [`SnapshotSpec::requested_at_ms`]).
pub const SNAPSHOT_TAKE_DEADLINE_MS: i64 = 120_000;

/// A volume of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotVolumeSpec {
    pub volume_number: u16,
    /// The identity of the volume it is (to be) taken of.
    pub identity: String,
}

/// The snapshot a new volume is created from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSpec {
    pub resource: String,
    pub snapshot: String,
    pub volume_number: u16,
    /// The identity of the volume the snapshot was taken of.
    pub identity: String,
    /// For a replicated resource: the metadata restored with the data is the source's (its
    /// generations, bitmaps, node-ids), so the node writes new replication metadata on the
    /// restored volume before the engine first runs it, starting UpToDate at this generation.
    /// Every diskful member restored from the same cut of the same snapshot gets the same one:
    /// their data is identical, so they start in sync. A member that joins later has no
    /// restore source and gets a full sync from one of them. `None` for an unreplicated
    /// resource, or when the restored members' data may differ: just-created metadata then,
    /// so one member's data must reach the others by a full sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_generation: Option<u64>,
}

impl ResourceSpec {
    /// Whether the backing volume of `volume` is to be deleted.
    pub fn deletes(&self, volume: &VolumeSpec) -> bool {
        self.deleting || volume.deleting
    }

    /// Whether a backing volume is wanted for `volume`.
    pub fn wants_disk(&self, volume: &VolumeSpec) -> bool {
        !self.diskless && !self.deletes(volume)
    }
}

/// A volume of a resource on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub volume_number: u16,
    /// The volume's identity: its volume definition's UUID. A backing volume of the same name
    /// but another identity (left by an earlier definition of the same name) is never taken
    /// for this one.
    #[serde(default)]
    pub identity: String,
    /// Usable size in KiB.
    pub size_kib: u64,
    /// The storage pool the backing volume comes from (or, when `deleting`, is deleted from).
    pub storage_pool: String,
    /// Delete this volume's backing volume (its volume definition is being deleted, or the
    /// resource's disk is being removed), then confirm in [`NodeReport::deleted_volumes`].
    #[serde(default)]
    pub deleting: bool,
    /// The device minor of a replicated volume (cluster-wide, from 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<u32>,
    /// Create the backing volume from this snapshot on the node rather than empty. Without the
    /// snapshot nothing is created: an empty volume in place of restored data would hide the
    /// loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreSpec>,
}

/// What a satellite can run, and for what it cannot, why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub storage_providers: Vec<ProviderKind>,
    pub unsupported_providers: BTreeMap<ProviderKind, Vec<String>>,
    pub resource_layers: Vec<LayerKind>,
    pub unsupported_layers: BTreeMap<LayerKind, Vec<String>>,
    /// Layers the satellite runs as a dry run only (`--drbd-dry-run`): it writes their
    /// configuration and logs the commands it would run, but applies nothing. Never among
    /// `resource_layers`; the controller places such a layer only where it is asked for by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run_layers: Vec<LayerKind>,
}

impl Capabilities {
    pub fn supports_provider(&self, kind: ProviderKind) -> bool {
        self.storage_providers.contains(&kind)
    }

    pub fn supports_layer(&self, kind: LayerKind) -> bool {
        self.resource_layers.contains(&kind)
    }

    /// Whether the satellite runs `kind` as a dry run only.
    pub fn dry_runs_layer(&self, kind: LayerKind) -> bool {
        self.dry_run_layers.contains(&kind)
    }
}

/// The actual state of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The generation the satellite has converged to, if any.
    pub generation: Option<u64>,
    pub storage_pools: Vec<PoolReport>,
    pub volumes: Vec<VolumeReport>,
    /// `None`: `volumes` is every volume of the node. `Some(names)`: `volumes` holds only the
    /// volumes of these resources (those a delta changed or removed); the node's other volumes
    /// are as last reported. Keeps the answer to a delta small on a node with thousands of
    /// volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_resources: Option<Vec<String>>,
    /// Problems of the node that belong to no reported volume, e.g. a backing volume that is no
    /// longer desired but could not be deleted. The satellite keeps retrying them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Deletions the desired state asked for that are done: the volumes marked `deleting`
    /// whose backing volume (of that identity) no longer exists. Scoped like `volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_volumes: Vec<DeletedVolume>,
    /// Resources marked `deleting` that are completely gone from the node, by name and UUID.
    /// Scoped like `volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_resources: Vec<DeletedResource>,
    /// Backing volumes this satellite created that the desired state neither wants nor asks to
    /// delete. They are kept until an explicit command removes them. Always complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<OrphanReport>,
    /// The replication engine's view of each replicated resource. Scoped like `volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replication: Vec<crate::ReplicationReport>,
    /// Every snapshot volume of the desired state that is not being deleted: taken, or why
    /// not. Always complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotReport>,
    /// Snapshots marked `deleting` whose backing snapshots are all gone. Always complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_snapshots: Vec<DeletedSnapshot>,
    /// The resources whose writes this node holds for a snapshot's cut (see
    /// [`ResourceSpec::suspend_io`]). Always complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_suspended: Vec<HeldIo>,
}

/// A node's hold of a resource's writes for a snapshot's cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldIo {
    pub resource: String,
    /// Made by the node when the hold began. A hold that ended and began again (the satellite
    /// or the engine restarted, the lease ran out) has another: the controller keeps a cut only
    /// if every member held its writes under one hold from before the first snapshot to after
    /// the last.
    pub hold: u64,
}

/// A snapshot volume as it is on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReport {
    pub resource: String,
    pub snapshot: String,
    pub uuid: String,
    pub volume_number: u16,
    /// How it was taken, e.g. "reflink copy", "sparse copy", "thin snapshot".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Why it is not there, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A snapshot whose deletion on the node is done.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeletedSnapshot {
    pub resource: String,
    pub snapshot: String,
    pub uuid: String,
}

/// A deletion of a backing volume that is done.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeletedVolume {
    pub resource: String,
    pub volume_number: u16,
    pub identity: String,
}

/// A resource whose deletion on the node is done.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeletedResource {
    pub resource: String,
    pub uuid: String,
}

/// A backing volume that belongs to no wanted volume and whose deletion nobody asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanReport {
    pub resource: String,
    pub volume_number: u16,
    /// The identity it was created for; `None` for volumes created before identities existed.
    pub identity: Option<String>,
    pub provider_kind: ProviderKind,
    /// The pool's backing location (directory, volume group, ...).
    pub pool_name: String,
    /// The storage pool it was created in, by its Ferrite name.
    pub storage_pool: String,
    /// The backing volume's name on the node, e.g. `web_00000`.
    pub backing_name: String,
    /// Why it is an orphan, e.g. "its resource is not in the desired state".
    pub reason: String,
}

/// A storage pool's capacity, or what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolReport {
    pub name: String,
    pub provider_kind: ProviderKind,
    /// KiB; `None` when it could not be read (see `errors`) or for DISKLESS.
    pub free_capacity_kib: Option<u64>,
    pub total_capacity_kib: Option<u64>,
    /// Why the pool cannot be used, e.g. "volume group 'vg_ssd' not found".
    #[serde(default)]
    pub errors: Vec<String>,
}

/// A volume of a resource as it is on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeReport {
    pub resource: String,
    pub volume_number: u16,
    /// The block device, e.g. `/dev/loop3` or `/dev/vg/r_00000`.
    pub device_path: Option<String>,
    pub allocated_size_kib: Option<u64>,
    pub usable_size_kib: Option<u64>,
    /// DRBD's vocabulary: UpToDate, Diskless, Failed, ...
    pub disk_state: String,
    /// Why the volume is not as desired, if it is not.
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_serialize_with_string_keys() {
        let mut caps = Capabilities {
            storage_providers: vec![ProviderKind::File],
            resource_layers: vec![LayerKind::Storage],
            ..Default::default()
        };
        caps.unsupported_providers.insert(
            ProviderKind::Zfs,
            vec!["zfs: command not found".to_string()],
        );
        let json = serde_json::to_value(&caps).unwrap();
        assert_eq!(
            json["unsupported_providers"]["ZFS"][0],
            "zfs: command not found"
        );
        let back: Capabilities = serde_json::from_value(json).unwrap();
        assert_eq!(back, caps);
    }

    fn resource(name: &str, size_kib: u64) -> ResourceSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "uuid": format!("uuid-{name}"), "layers": ["STORAGE"], "diskless": false,
            "volumes": [{"volume_number": 0, "identity": "vd", "size_kib": size_kib, "storage_pool": "pool"}]
        }))
        .unwrap()
    }

    fn pool(name: &str) -> PoolSpec {
        PoolSpec {
            name: name.into(),
            uuid: format!("uuid-{name}"),
            provider_kind: ProviderKind::FileThin,
            pool_name: format!("/srv/{name}"),
            props: BTreeMap::new(),
        }
    }

    /// The digest of the pools `b`, `A` and the resources `web`, `DB` below, as protocol 8
    /// defined it.
    const PINNED_DIGEST: &str = "c90f8bb04e9596de1bd985d5d264c8d022444c40d761bcc5019c17c9c0d29cdf";

    #[test]
    fn the_digest_fed_in_order_is_the_digest_of_the_whole_state() {
        let pools = [pool("A"), pool("b")];
        let resources = [resource("DB", 1024), resource("web", 4096)];
        let mut fed = ContentDigest::new(2, 2);
        pools.iter().for_each(|p| fed.pool(p));
        resources.iter().for_each(|r| fed.resource(r));
        assert_eq!(fed.finish(), content_digest(&pools, &resources));

        // Out of order, a count that was not announced, a pool after a resource: no digest.
        let mut reversed = ContentDigest::new(2, 2);
        pools.iter().for_each(|p| reversed.pool(p));
        resources.iter().rev().for_each(|r| reversed.resource(r));
        let unordered = reversed.finish();
        assert!(unordered.starts_with("not canonical"), "{unordered}");
        let mut short = ContentDigest::new(2, 3);
        pools.iter().for_each(|p| short.pool(p));
        resources.iter().for_each(|r| short.resource(r));
        assert!(short.finish().starts_with("not canonical"));
        let mut mixed = ContentDigest::new(2, 2);
        mixed.pool(&pools[0]);
        mixed.resource(&resources[0]);
        mixed.pool(&pools[1]);
        mixed.resource(&resources[1]);
        assert!(mixed.finish().starts_with("not canonical"));
    }

    #[test]
    fn the_content_digest_ignores_order_by_name_and_sees_every_field() {
        let pools = [pool("b"), pool("A")];
        let resources = [resource("web", 4096), resource("DB", 1024)];
        let digest = content_digest(&pools, &resources);
        assert_eq!(digest.len(), 64, "{digest}");
        // The same content in another order: the same digest.
        let reordered = [resources[1].clone(), resources[0].clone()];
        assert_eq!(content_digest(pools.iter().rev(), &reordered), digest);
        // Any field changed, a resource or pool more or less: another digest.
        let mut grown = resources.clone();
        grown[0].volumes[0].size_kib += 1;
        assert_ne!(content_digest(&pools, &grown), digest);
        let mut deleting = resources.clone();
        deleting[1].deleting = true;
        assert_ne!(content_digest(&pools, &deleting), digest);
        assert_ne!(content_digest(&pools, &resources[..1]), digest);
        assert_ne!(content_digest(&pools[..1], &resources), digest);
        // Pinned: peers of other versions compute it too, and must agree.
        assert_eq!(digest, PINNED_DIGEST);
        // A resource's name moved to a pool's place does not collide.
        assert_ne!(
            content_digest(&[] as &[PoolSpec], &resources),
            content_digest(&pools, &[] as &[ResourceSpec])
        );
    }
}
