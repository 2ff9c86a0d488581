//! The autoplacer. (Skeleton: the API below is the contract the controller codes against.)

use std::collections::BTreeMap;

use ferrite_types::{LayerKind, NodeName, ProviderKind, ResourceName, StorPoolName};
use serde::Serialize;

/// A node the autoplacer may choose, as the controller sees it now.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: NodeName,
    /// The node's properties (`Aux/rack` = `r1`, ...), for replicas-on-same/different.
    pub props: BTreeMap<String, String>,
    /// Why the node cannot take any replica at all (offline, being deleted, evicted), if so.
    pub unavailable: Option<String>,
    /// Layers the node's satellite runs; `None` while unknown (never connected).
    pub supported_layers: Option<Vec<LayerKind>>,
    /// Resource definitions that already have a resource on this node.
    pub resources: Vec<ResourceName>,
    pub pools: Vec<CandidatePool>,
}

/// A storage pool on a candidate node.
#[derive(Debug, Clone)]
pub struct CandidatePool {
    pub name: StorPoolName,
    pub provider_kind: ProviderKind,
    /// KiB; `None` while the satellite has not reported it.
    pub free_capacity_kib: Option<u64>,
    pub total_capacity_kib: Option<u64>,
    /// Why the pool cannot be used (the satellite reported an error, provider unsupported), if so.
    pub unusable: Option<String>,
}

/// A replica that already exists.
#[derive(Debug, Clone)]
pub struct ExistingReplica {
    pub node: NodeName,
    pub pool: StorPoolName,
    pub diskful: bool,
}

/// What to place.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub resource: Option<ResourceName>,
    /// The sum of the resource's volume sizes, KiB.
    pub size_kib: u64,
    /// Diskful replicas wanted in total, counting existing ones.
    pub place_count: usize,
    pub existing: Vec<ExistingReplica>,
    pub node_name_list: Vec<NodeName>,
    pub storage_pools: Vec<StorPoolName>,
    pub diskless_storage_pools: Vec<StorPoolName>,
    pub provider_list: Vec<ProviderKind>,
    pub layer_stack: Vec<LayerKind>,
    pub replicas_on_same: Vec<String>,
    pub replicas_on_different: Vec<String>,
    pub x_replicas_on_different: BTreeMap<String, usize>,
    pub do_not_place_with: Vec<ResourceName>,
    pub do_not_place_with_regex: Option<String>,
    pub diskless_on_remaining: bool,
}

/// Where the new replicas go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub diskful: Vec<(NodeName, StorPoolName)>,
    pub diskless: Vec<(NodeName, StorPoolName)>,
}

/// Why placement failed: every candidate and the reason it was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub wanted: usize,
    pub found: usize,
    pub rejections: Vec<Rejection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub node: NodeName,
    pub pool: Option<StorPoolName>,
    pub reason: String,
}

/// Chooses nodes and pools for `request` among `candidates`.
pub fn place(_request: &Request, _candidates: &[Candidate]) -> Result<Placement, Refusal> {
    todo!("autoplacer")
}
