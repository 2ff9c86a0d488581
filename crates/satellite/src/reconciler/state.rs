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

use std::cmp::Ordering;
use std::collections::BTreeMap;

use ferrite_proto::{DesiredState, PoolSpec, ResourceSpec, Stamp};
use serde::{Serialize, Serializer};

use super::resource_key;

/// Compares two resource names as their [`resource_key`]s compare, without allocating them.
pub(crate) fn cmp_resource_keys(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_uppercase())
        .cmp(b.bytes().map(|c| c.to_ascii_uppercase()))
}

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
        let resources = state
            .resources
            .into_iter()
            .map(|mut resource| {
                sort_volumes(&mut resource);
                (resource_key(&resource.name), resource)
            })
            .collect();
        NodeState {
            epoch: state.epoch,
            generation: state.generation,
            storage_pools,
            resources,
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

    /// The resource of [`resource_key`] `key`.
    pub fn resource_by_key(&self, key: &str) -> Option<&ResourceSpec> {
        self.resources.get(key)
    }

    /// The resource called `name` (in any case).
    pub fn resource(&self, name: &str) -> Option<&ResourceSpec> {
        self.resources.get(&resource_key(name))
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
            let previous = match spec {
                Some(spec) => self.resources.insert(key.clone(), spec),
                None => self.resources.remove(&key),
            };
            undo.resources.insert(key, previous);
        }
        undo
    }

    /// Puts back what `undo` recorded.
    pub fn undo(&mut self, undo: Undo) {
        self.epoch = undo.epoch;
        self.generation = undo.generation;
        self.storage_pools = undo.storage_pools;
        for (key, previous) in undo.resources {
            match previous {
                Some(spec) => self.resources.insert(key, spec),
                None => self.resources.remove(&key),
            };
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
