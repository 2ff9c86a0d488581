//! The node's desired state as the reconciler keeps it: [`NodeState`], its resources indexed
//! by [`resource_key`], so that a delta is applied in place at the cost of what it names.
//!
//! A delta ([`DesiredState`] with a base generation) is first made a [`Change`]: the stamp and
//! pools it brings and, for every resource it names, the spec it now has or `None` for a
//! removal. Applying a change returns an [`Undo`]: the previous stamp, pools and specs of the
//! resources it named, which puts the state back exactly as it was (what the reconciler does
//! when a batch of deltas cannot be persisted). The meaning is the one a merge of the delta
//! onto a copy of the whole state would have: pools replaced, named resources replaced, added
//! or dropped, every other resource kept as it was; a resource both removed and given by the
//! same delta is kept, as given.
//!
//! The order is the one of a whole state made canonical: resources by [`resource_key`], each
//! resource's volumes by number, pools by upper-cased name. On disk and on the wire the state
//! is the [`DesiredState`] it stands for ([`NodeState::serialize_desired`] writes exactly what
//! serializing that [`DesiredState`] would).

use std::collections::{BTreeMap, BTreeSet};

use ferrite_proto::{DesiredState, PoolSpec, ResourceSpec, Stamp};
use serde::{Serialize, Serializer};

use super::resource_key;

/// Compares two resource names as their [`resource_key`]s compare, without allocating them.
pub(crate) use ferrite_proto::cmp_name_keys as cmp_resource_keys;

/// A resource's volumes in number order, as a canonical state has them.
fn sort_volumes(resource: &mut ResourceSpec) {
    resource.volumes.sort_by_key(|v| v.volume_number);
}

/// Pools in upper-cased name order, as a canonical state has them.
fn sort_pools(pools: &mut [PoolSpec]) {
    pools.sort_by(|a, b| cmp_resource_keys(&a.name, &b.name));
}

/// The node's whole desired state: stamp, pools and resources by [`resource_key`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeState {
    pub epoch: u64,
    pub generation: u64,
    /// Every pool of the node, in upper-cased name order.
    pub storage_pools: Vec<PoolSpec>,
    /// Every resource of the node, by [`resource_key`].
    resources: BTreeMap<String, ResourceSpec>,
    /// The keys of the resources that ask for their writes held ([`asks_io_held`]): what every
    /// pass looks at, so it need not walk every resource.
    io_held: BTreeSet<String>,
}

/// Whether `resource` asks this node to hold its writes (for a snapshot's cut): it runs a
/// replication engine, is neither being deleted nor inactive, and says so.
pub fn asks_io_held(resource: &ResourceSpec) -> bool {
    resource.suspend_io
        && resource.replication.is_some()
        && !resource.deleting
        && !resource.inactive
}

/// A delta made ready to apply: the stamp and pools it brings (pools sorted) and each resource
/// it names by [`resource_key`], with its new spec (volumes sorted) or `None` when removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub epoch: u64,
    pub generation: u64,
    pub storage_pools: Vec<PoolSpec>,
    pub resources: BTreeMap<String, Option<ResourceSpec>>,
}

/// What a [`Change`] replaced: applied with [`NodeState::undo`], it puts the state back as it
/// was before the change (or before every change it was [`Undo::then`]-ed with).
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    epoch: u64,
    generation: u64,
    storage_pools: Vec<PoolSpec>,
    /// The previous spec of every resource a change named; `None`: it was not there.
    resources: BTreeMap<String, Option<ResourceSpec>>,
}

impl Change {
    /// The change a delta makes. A resource both removed and given is given; of two specs of
    /// one resource, the later counts.
    pub fn from_delta(delta: DesiredState) -> Change {
        let mut resources: BTreeMap<String, Option<ResourceSpec>> = delta
            .removed_resources
            .iter()
            .map(|name| (resource_key(name), None))
            .collect();
        for mut resource in delta.resources {
            sort_volumes(&mut resource);
            resources.insert(resource_key(&resource.name), Some(resource));
        }
        let mut storage_pools = delta.storage_pools;
        sort_pools(&mut storage_pools);
        Change {
            epoch: delta.epoch,
            generation: delta.generation,
            storage_pools,
            resources,
        }
    }

    pub fn stamp(&self) -> Stamp {
        Stamp {
            epoch: self.epoch,
            generation: self.generation,
        }
    }
}

impl Undo {
    /// One undo for this change and a `later` one: back to before this one.
    pub fn then(mut self, later: Undo) -> Undo {
        for (key, previous) in later.resources {
            self.resources.entry(key).or_insert(previous);
        }
        self
    }

    /// How many resources it puts back.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}

impl NodeState {
    /// The state a whole [`DesiredState`] describes. Of two resources whose names differ only
    /// in case (which a controller does not send: names are case-insensitive) the later counts.
    pub fn from_full(state: DesiredState) -> NodeState {
        let mut storage_pools = state.storage_pools;
        sort_pools(&mut storage_pools);
        let resources: BTreeMap<String, ResourceSpec> = state
            .resources
            .into_iter()
            .map(|mut resource| {
                sort_volumes(&mut resource);
                (resource_key(&resource.name), resource)
            })
            .collect();
        let io_held = resources
            .iter()
            .filter(|(_, r)| asks_io_held(r))
            .map(|(key, _)| key.clone())
            .collect();
        NodeState {
            epoch: state.epoch,
            generation: state.generation,
            storage_pools,
            resources,
            io_held,
        }
    }

    /// The whole [`DesiredState`] this stands for (a copy of everything).
    pub fn to_desired(&self) -> DesiredState {
        DesiredState {
            epoch: self.epoch,
            generation: self.generation,
            base_generation: None,
            storage_pools: self.storage_pools.clone(),
            resources: self.resources.values().cloned().collect(),
            removed_resources: Vec::new(),
        }
    }

    pub fn stamp(&self) -> Stamp {
        Stamp {
            epoch: self.epoch,
            generation: self.generation,
        }
    }

    /// Every resource, in [`resource_key`] order.
    pub fn resources(&self) -> impl DoubleEndedIterator<Item = &ResourceSpec> + Clone {
        self.resources.values()
    }

    /// Every resource with its [`resource_key`], in that order.
    pub fn resources_by_key(&self) -> impl Iterator<Item = (&String, &ResourceSpec)> {
        self.resources.iter()
    }

    /// The resources after the one of [`resource_key`] `after` (every one for `None`), with
    /// their keys, in that order: where a full pass visited in slices goes on.
    pub fn resources_after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a String, &'a ResourceSpec)> + 'a {
        use std::ops::Bound;
        let from = match after {
            Some(key) => Bound::Excluded(key.to_string()),
            None => Bound::Unbounded,
        };
        self.resources.range((from, Bound::Unbounded))
    }

    /// The resources that ask for their writes held ([`asks_io_held`]), in key order.
    pub fn resources_asking_io_held(&self) -> impl Iterator<Item = &ResourceSpec> {
        self.io_held
            .iter()
            .filter_map(|key| self.resources.get(key))
    }

    /// The resource of [`resource_key`] `key`.
    pub fn resource_by_key(&self, key: &str) -> Option<&ResourceSpec> {
        self.resources.get(key)
    }

    /// The resource called `name` (in any case).
    pub fn resource(&self, name: &str) -> Option<&ResourceSpec> {
        self.resources.get(&resource_key(name))
    }

    /// The digest of what the state asks for, without its stamp
    /// ([`ferrite_proto::content_digest`]).
    pub fn content_digest(&self) -> String {
        ferrite_proto::content_digest(&self.storage_pools, self.resources.values())
    }

    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Applies `change` in place; returns what puts the state back.
    pub fn apply(&mut self, change: Change) -> Undo {
        let mut undo = Undo {
            epoch: self.epoch,
            generation: self.generation,
            storage_pools: std::mem::replace(&mut self.storage_pools, change.storage_pools),
            resources: BTreeMap::new(),
        };
        self.epoch = change.epoch;
        self.generation = change.generation;
        for (key, spec) in change.resources {
            let previous = self.put(&key, spec);
            undo.resources.insert(key, previous);
        }
        undo
    }

    /// Puts `spec` (or, for `None`, no resource) under `key`, keeping the index of those that
    /// ask for their writes held; returns what was there.
    fn put(&mut self, key: &str, spec: Option<ResourceSpec>) -> Option<ResourceSpec> {
        match &spec {
            Some(spec) if asks_io_held(spec) => self.io_held.insert(key.to_string()),
            _ => self.io_held.remove(key),
        };
        match spec {
            Some(spec) => self.resources.insert(key.to_string(), spec),
            None => self.resources.remove(key),
        }
    }

    /// Puts back what `undo` recorded.
    pub fn undo(&mut self, undo: Undo) {
        self.epoch = undo.epoch;
        self.generation = undo.generation;
        self.storage_pools = undo.storage_pools;
        for (key, previous) in undo.resources {
            self.put(&key, previous);
        }
    }

    /// Writes what serializing [`NodeState::to_desired`] would, without the copy.
    pub fn serialize_desired<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// [`DesiredState`]'s fields, in its order, borrowed.
        #[derive(Serialize)]
        struct DesiredStateRef<'a> {
            epoch: u64,
            generation: u64,
            base_generation: Option<u64>,
            storage_pools: &'a [PoolSpec],
            #[serde(serialize_with = "values")]
            resources: &'a BTreeMap<String, ResourceSpec>,
            removed_resources: [&'a str; 0],
        }
        fn values<S: Serializer>(
            resources: &&BTreeMap<String, ResourceSpec>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(resources.values())
        }
        DesiredStateRef {
            epoch: self.epoch,
            generation: self.generation,
            base_generation: None,
            storage_pools: &self.storage_pools,
            resources: &self.resources,
            removed_resources: [],
        }
        .serialize(serializer)
    }
}

impl Serialize for NodeState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_desired(serializer)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ferrite_proto::VolumeSpec;
    use ferrite_types::{LayerKind, ProviderKind};

    use super::*;

    /// The merge the reconciler had before states were kept by key: copy every resource the
    /// delta does not name, add those it gives, and sort the whole (`canonical`). Kept here
    /// only, as the reference the in-place merge is held to.
    fn reference_merge(current: &DesiredState, delta: DesiredState) -> DesiredState {
        let removed: BTreeSet<String> = delta
            .removed_resources
            .iter()
            .map(|n| resource_key(n))
            .collect();
        let changed: BTreeMap<String, ResourceSpec> = delta
            .resources
            .into_iter()
            .map(|r| (resource_key(&r.name), r))
            .collect();
        let mut resources: Vec<ResourceSpec> = current
            .resources
            .iter()
            .filter(|r| {
                !removed.contains(&resource_key(&r.name))
                    && !changed.contains_key(&resource_key(&r.name))
            })
            .cloned()
            .collect();
        resources.extend(changed.into_values());
        reference_canonical(DesiredState {
            epoch: delta.epoch,
            generation: delta.generation,
            base_generation: None,
            storage_pools: delta.storage_pools,
            resources,
            removed_resources: Vec::new(),
        })
    }

    fn reference_canonical(mut state: DesiredState) -> DesiredState {
        state.resources.sort_by_key(|r| resource_key(&r.name));
        for resource in &mut state.resources {
            resource.volumes.sort_by_key(|v| v.volume_number);
        }
        state
            .storage_pools
            .sort_by_key(|p| p.name.to_ascii_uppercase());
        state.base_generation = None;
        state.removed_resources.clear();
        state
    }

    /// A small deterministic generator (xorshift), so a failure can be replayed by its seed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        /// One of a few names, in a random case.
        fn name(&mut self) -> String {
            let base = [
                "web", "db", "Cache", "logs", "r1", "r2", "r10", "a_b", "x-y", "zz",
            ][self.below(10) as usize];
            base.chars()
                .map(|c| {
                    if self.below(2) == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect()
        }

        fn resource(&mut self, name: String) -> ResourceSpec {
            let volumes = (0..self.below(4))
                .map(|_| volume(self.below(5) as u16, 1024 * (1 + self.below(3))))
                .collect();
            // Some ask for their writes held (replicated, suspend_io), some only nearly.
            let replication = (self.below(2) == 0).then(|| ferrite_proto::ReplicationSpec {
                engine: ferrite_proto::ReplicationEngine::Mirror,
                node_id: 0,
                address: std::net::IpAddr::from([127, 0, 0, 1]),
                port: 7000,
                secret: "s".into(),
                peers: Vec::new(),
                options: BTreeMap::new(),
                volume_options: BTreeMap::new(),
                connection_options: BTreeMap::new(),
            });
            ResourceSpec {
                deleting: self.below(4) == 0,
                suspend_io: self.below(2) == 0,
                replication,
                ..resource(&name, volumes)
            }
        }

        fn pools(&mut self) -> Vec<PoolSpec> {
            let mut pools: Vec<PoolSpec> = ["b", "A", "c"]
                .iter()
                .filter(|_| self.below(3) != 0)
                .map(|n| pool(n))
                .collect();
            if self.below(2) == 0 {
                pools.reverse();
            }
            pools
        }

        fn delta(&mut self, generation: u64) -> DesiredState {
            DesiredState {
                epoch: 1,
                generation,
                base_generation: Some(generation - 1),
                storage_pools: self.pools(),
                resources: (0..self.below(4))
                    .map(|_| {
                        let name = self.name();
                        self.resource(name)
                    })
                    .collect(),
                removed_resources: (0..self.below(3)).map(|_| self.name()).collect(),
            }
        }
    }

    fn volume(number: u16, size_kib: u64) -> VolumeSpec {
        VolumeSpec {
            minor: None,
            restore_from: None,
            volume_number: number,
            identity: format!("id-{number}"),
            size_kib,
            storage_pool: "A".into(),
            deleting: false,
        }
    }

    fn resource(name: &str, volumes: Vec<VolumeSpec>) -> ResourceSpec {
        ResourceSpec {
            replication: None,
            snapshots: Vec::new(),
            suspend_io: false,
            name: name.into(),
            uuid: format!("uuid-{name}"),
            layers: vec![LayerKind::Storage],
            diskless: false,
            deleting: false,
            inactive: false,
            volumes,
        }
    }

    fn pool(name: &str) -> PoolSpec {
        PoolSpec {
            name: name.into(),
            uuid: String::new(),
            provider_kind: ProviderKind::FileThin,
            pool_name: format!("/pools/{name}"),
            props: BTreeMap::new(),
        }
    }

    fn full(generation: u64, resources: Vec<ResourceSpec>) -> DesiredState {
        DesiredState {
            epoch: 1,
            generation,
            base_generation: None,
            storage_pools: vec![pool("A")],
            resources,
            removed_resources: Vec::new(),
        }
    }

    fn delta(generation: u64, resources: Vec<ResourceSpec>, removed: &[&str]) -> DesiredState {
        DesiredState {
            base_generation: Some(generation - 1),
            removed_resources: removed.iter().map(|n| n.to_string()).collect(),
            ..full(generation, resources)
        }
    }

    /// The names and first volume sizes, in order.
    fn held(state: &NodeState) -> Vec<(String, u64)> {
        state
            .resources()
            .map(|r| (r.name.clone(), r.volumes.first().map_or(0, |v| v.size_kib)))
            .collect()
    }

    fn held_of(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn deltas_add_replace_and_remove_by_case_insensitive_name() {
        let mut state = NodeState::from_full(full(
            1,
            vec![
                resource("web", vec![volume(0, 1)]),
                resource("DB", vec![volume(0, 2)]),
            ],
        ));
        let before = state.clone();
        let undo = state.apply(Change::from_delta(delta(
            2,
            vec![
                resource("Web", vec![volume(0, 10)]),
                resource("app", vec![volume(0, 3)]),
            ],
            &["db"],
        )));
        assert_eq!(state.generation, 2);
        assert_eq!(held(&state), held_of(&[("app", 3), ("Web", 10)]));
        assert_eq!(state.resource("WEB").unwrap().name, "Web");
        assert!(state.resource("db").is_none());
        assert_eq!(undo.len(), 3);
        state.undo(undo);
        assert_eq!(state, before);
    }

    #[test]
    fn a_resource_removed_and_given_again_is_kept_as_given() {
        // In one delta: given wins over removed.
        let mut state = NodeState::from_full(full(1, vec![resource("web", vec![volume(0, 1)])]));
        state.apply(Change::from_delta(delta(
            2,
            vec![resource("WEB", vec![volume(0, 5)])],
            &["web"],
        )));
        assert_eq!(held(&state), held_of(&[("WEB", 5)]));

        // In one batch: removed by one delta, given again by the next; one undo for both
        // puts back the resource as it was before the first.
        let before = state.clone();
        let first = state.apply(Change::from_delta(delta(3, Vec::new(), &["Web"])));
        assert!(state.resource("web").is_none());
        let second = state.apply(Change::from_delta(delta(
            4,
            vec![resource("web", vec![volume(0, 7)])],
            &[],
        )));
        assert_eq!(held(&state), held_of(&[("web", 7)]));
        state.undo(first.then(second));
        assert_eq!(state, before);
    }

    #[test]
    fn a_full_state_after_deltas_replaces_everything() {
        let mut state = NodeState::from_full(full(1, vec![resource("a", vec![volume(0, 1)])]));
        state.apply(Change::from_delta(delta(
            2,
            vec![resource("b", vec![volume(0, 2)])],
            &[],
        )));
        let whole = full(
            3,
            vec![
                resource("c", vec![volume(1, 3), volume(0, 4)]),
                resource("B", vec![volume(0, 5)]),
            ],
        );
        let state = NodeState::from_full(whole.clone());
        assert_eq!(state.to_desired(), reference_canonical(whole));
        assert_eq!(held(&state), held_of(&[("B", 5), ("c", 4)]));
    }

    #[test]
    fn the_state_is_written_as_the_desired_state_it_stands_for() {
        let state = NodeState::from_full(full(
            4,
            vec![
                resource("b", vec![volume(1, 3), volume(0, 4)]),
                resource("A", Vec::new()),
            ],
        ));
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            serde_json::to_string(&state.to_desired()).unwrap()
        );
        let read: DesiredState = serde_json::from_str(&serde_json::to_string(&state).unwrap())
            .expect("reads back as a desired state");
        assert_eq!(NodeState::from_full(read), state);
    }

    /// On random states and deltas, applying in place gives what the old merge gave, a batch's
    /// undo puts back the state before the batch, and each delta's undo the one before it.
    #[test]
    fn in_place_deltas_equal_the_reference_merge_on_random_deltas() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            // A whole state holds one resource per name (the controller's names are
            // case-insensitive), in any order and case.
            let mut names: BTreeMap<String, String> = BTreeMap::new();
            for _ in 0..rng.below(8) {
                let name = rng.name();
                names.entry(resource_key(&name)).or_insert(name);
            }
            let mut resources: Vec<ResourceSpec> =
                names.into_values().map(|n| rng.resource(n)).collect();
            if rng.below(2) == 0 {
                resources.reverse();
            }
            let whole = DesiredState {
                storage_pools: rng.pools(),
                ..full(1, resources)
            };
            let mut reference = reference_canonical(whole.clone());
            let mut state = NodeState::from_full(whole);
            assert_eq!(state.to_desired(), reference, "seed {seed}");
            let start = state.clone();
            let mut batch: Option<Undo> = None;
            for generation in 2..(2 + rng.below(12)) {
                let delta = rng.delta(generation);
                reference = reference_merge(&reference, delta.clone());
                let before = state.clone();
                let undo = state.apply(Change::from_delta(delta));
                assert_eq!(
                    state.to_desired(),
                    reference,
                    "seed {seed} generation {generation}"
                );
                // The index of those asking for held writes too.
                assert_eq!(
                    state,
                    NodeState::from_full(reference.clone()),
                    "seed {seed} generation {generation}"
                );
                let mut undone = state.clone();
                undone.undo(undo.clone());
                assert_eq!(undone, before, "seed {seed} generation {generation}");
                batch = Some(match batch {
                    Some(earlier) => earlier.then(undo),
                    None => undo,
                });
            }
            if let Some(batch) = batch {
                state.undo(batch);
            }
            assert_eq!(state, start, "seed {seed}");
        }
    }
}
