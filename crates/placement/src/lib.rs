//! The autoplacer: chooses the nodes and storage pools of a resource's new replicas, or explains,
//! node by node and pool by pool, why it cannot.
//!
//! Owns LINSTOR's autoplacer semantics and the wording of its answers:
//!
//! 1. **Filter** (module `filter`). A node qualifies if it does not hold the resource yet, is in the
//!    node list (if one is given), is available, runs every layer of the stack (when its layers
//!    are known), carries none of the do-not-place-with resources and passes the
//!    replicas-on-same / replicas-on-different / x-replicas-on-different rules as far as the
//!    existing replicas already decide them (module `rules`). A storage pool of a qualifying node
//!    qualifies if it is diskful, in the storage pool list and provider list (if given), usable,
//!    and reports at least the requested free capacity.
//! 2. **Score**. A node's score is the free capacity of its best qualifying pool (LINSTOR's
//!    default `MaxFreeSpace` strategy); a node gets at most one replica, in that pool.
//! 3. **Select** (module `select`). The wanted number of nodes with the highest sum of scores that
//!    satisfies the rules among themselves (same value of every replicas-on-same key, distinct
//!    values of every replicas-on-different key, at most N per value of an x-replicas-on-different
//!    key), by a bounded branch-and-bound search. Ties go to the node, then pool, whose name sorts
//!    first; the answer depends only on the input, not on the order of the candidates.
//! 4. **Diskless on remaining**: when diskful replicas were added, every other available node
//!    that does not hold the resource and runs the layers gets a diskless replica in its diskless
//!    pool (the node list and the rules between replicas do not apply to diskless replicas).
//!
//! An unparsable do-not-place-with regex refuses the request (see [`Refusal::invalid_request`]),
//! even when there is nothing to add.
//!
//! When the wanted replicas cannot be placed, the [`Refusal`] lists every candidate node with the
//! precise reason it was not used, and prints as one readable explanation (module `explain`).
//!
//! Whether one pool can host a volume at all (its kind, the node's providers and layers, free
//! space) is decided by module [`hosting`], which resource creation on a named node shares.
//!
//! Does not own: the cluster state (the controller describes it as [`Candidate`]s, including
//! which nodes are available and which pools usable), checking the REST auto-select filter,
//! creating the resources, tiebreakers and quorum.
//!
//! Simplifications, on purpose: thin pools are compared by their reported free capacity like thick
//! ones (no oversubscription estimate); the only scoring strategy is free space; the
//! `AutoplaceTarget` property and the pre-select script are not supported; x-replicas-on-different
//! caps replicas per value without LINSTOR's preference for filling one value before the next.

mod explain;
mod filter;
pub mod hosting;
mod rules;
mod select;

use std::collections::{BTreeMap, BTreeSet};

use ferrite_types::{LayerKind, NodeName, ProviderKind, ResourceName, StorPoolName};
use serde::Serialize;

pub use select::SEARCH_STEP_BUDGET;

/// A node the autoplacer may choose, as the controller sees it now.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: NodeName,
    /// The node's properties (`Aux/rack` = `r1`, ...), for replicas-on-same/different.
    pub props: BTreeMap<String, String>,
    /// Why the node cannot take any replica at all (offline, being deleted, evicted), if so. A
    /// reason that does not name the node (as `'node1'`) is shown after "node 'node1' is
    /// unavailable: ".
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
    /// A reason that does not name the node is shown after "storage pool 'p' on 'node1' cannot be
    /// used: ".
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
///
/// The replicas-on-same/different and x-replicas-on-different rules apply to the diskful
/// replicas: the existing diskful ones (on nodes among the candidates, whose properties are
/// known) and the new ones. Diskless replicas hold no data and are not counted.
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
    /// Node property keys, `Key` or `Key=value`: every diskful replica's node has the same value
    /// (`value`, if given); a node without the key cannot take a replica.
    pub replicas_on_same: Vec<String>,
    /// Node property keys whose values differ between every two diskful replicas' nodes. Nodes
    /// without the key count as one more value ("unset"), as in LINSTOR. A `=value` part is
    /// ignored.
    pub replicas_on_different: Vec<String>,
    /// At most N diskful replicas per distinct value of the key (nodes without it share one
    /// "unset" value).
    pub x_replicas_on_different: BTreeMap<String, usize>,
    pub do_not_place_with: Vec<ResourceName>,
    /// A regular expression (case-insensitive, matching anywhere in the name, like a search):
    /// nodes holding a resource whose name matches are not chosen.
    pub do_not_place_with_regex: Option<String>,
    pub diskless_on_remaining: bool,
}

/// Where the new replicas go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// Best first.
    pub diskful: Vec<(NodeName, StorPoolName)>,
    /// By node name.
    pub diskless: Vec<(NodeName, StorPoolName)>,
}

/// Why placement failed: every candidate and the reason it was rejected.
///
/// `Display` (and [`Refusal::summary`]) gives the whole explanation in readable lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", self.summary())]
pub struct Refusal {
    /// New diskful replicas wanted (the place count minus the existing diskful replicas).
    pub wanted: usize,
    /// How many of them could have been placed.
    pub found: usize,
    /// Every candidate node at least once (sorted by node name), and each of its pools that was
    /// the reason.
    pub rejections: Vec<Rejection>,
    /// The resource placed, if the request named it.
    pub resource: Option<ResourceName>,
    /// The request's criteria, one readable phrase each (`storage pools [pool_ssd]`, ...).
    pub criteria: Vec<String>,
    /// Why the request itself is invalid (an unparsable do-not-place-with regex), if so; then
    /// no node was considered.
    pub invalid_request: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub node: NodeName,
    pub pool: Option<StorPoolName>,
    pub reason: String,
}

/// A node that passed the filters, with its best pool.
#[derive(Debug, Clone)]
pub(crate) struct Eligible<'a> {
    pub candidate: &'a Candidate,
    pub pool: &'a StorPoolName,
    pub free_kib: u64,
}

impl Eligible<'_> {
    pub(crate) fn node(&self) -> &NodeName {
        &self.candidate.node
    }
}

/// Chooses nodes and pools for `request` among `candidates`.
///
/// Nothing to add (the existing diskful replicas reach the place count) is an empty placement.
// A refusal is large, but made once per placement request: boxing it would cost the callers more
// than the bytes it saves.
#[allow(clippy::result_large_err)]
pub fn place(request: &Request, candidates: &[Candidate]) -> Result<Placement, Refusal> {
    let existing_diskful: BTreeSet<&NodeName> = request
        .existing
        .iter()
        .filter(|r| r.diskful)
        .map(|r| &r.node)
        .collect();
    let wanted = request.place_count.saturating_sub(existing_diskful.len());
    let (candidates, duplicates) = filter::ordered(candidates);

    let context = match filter::Context::new(request, &candidates) {
        Ok(context) => context,
        Err(invalid) => {
            let mut rejections: Vec<Rejection> = candidates
                .iter()
                .chain(&duplicates)
                .map(|c| Rejection {
                    node: c.node.clone(),
                    pool: None,
                    reason: format!("node '{}' was not considered: {invalid}", c.node),
                })
                .collect();
            rejections.sort_by(|a, b| a.node.cmp(&b.node));
            return Err(Refusal {
                wanted,
                found: 0,
                rejections,
                resource: request.resource.clone(),
                criteria: explain::criteria(request, existing_diskful.len()),
                invalid_request: Some(invalid),
            });
        }
    };
    if wanted == 0 {
        tracing::debug!(
            resource = ?request.resource,
            existing = existing_diskful.len(),
            place_count = request.place_count,
            "placement: nothing to add"
        );
        return Ok(Placement::default());
    }

    let mut rejections = Vec::new();
    let mut eligible = Vec::new();
    for candidate in &candidates {
        match context.check(candidate) {
            Ok(best) => eligible.push(best),
            Err(mut rejected) => rejections.append(&mut rejected),
        }
    }
    rejections.extend(duplicates.iter().map(|c| Rejection {
        node: c.node.clone(),
        pool: None,
        reason: format!(
            "node '{}' is listed more than once among the candidates; only its first entry was \
             considered",
            c.node
        ),
    }));
    eligible.sort_by(|a, b| {
        b.free_kib
            .cmp(&a.free_kib)
            .then_with(|| a.node().cmp(b.node()))
            .then_with(|| a.pool.cmp(b.pool))
    });

    match select::select(&eligible, &context.rules, wanted) {
        select::Outcome::Chosen(chosen) => {
            let diskful: Vec<(NodeName, StorPoolName)> = chosen
                .iter()
                .map(|&i| (eligible[i].node().clone(), eligible[i].pool.clone()))
                .collect();
            let diskless = if request.diskless_on_remaining {
                let taken: BTreeSet<&NodeName> = diskful.iter().map(|(n, _)| n).collect();
                candidates
                    .iter()
                    .filter(|c| !taken.contains(&c.node))
                    .filter_map(|c| {
                        context
                            .diskless_pool(c)
                            .map(|p| (c.node.clone(), p.clone()))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            tracing::debug!(
                resource = ?request.resource,
                diskful = ?diskful,
                diskless = diskless.len(),
                "placement chosen"
            );
            Ok(Placement { diskful, diskless })
        }
        select::Outcome::Short { found, reasons } => {
            rejections.extend(eligible.iter().zip(reasons).map(|(e, reason)| Rejection {
                node: e.node().clone(),
                pool: None,
                reason,
            }));
            // Stable: a node's own rejections keep their order (node first, then its pools).
            rejections.sort_by(|a, b| a.node.cmp(&b.node));
            let refusal = Refusal {
                wanted,
                found,
                rejections,
                resource: request.resource.clone(),
                criteria: explain::criteria(request, existing_diskful.len()),
                invalid_request: None,
            };
            tracing::debug!(resource = ?request.resource, wanted, found, "placement refused");
            Err(refusal)
        }
    }
}
