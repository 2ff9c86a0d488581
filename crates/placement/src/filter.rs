//! The filters: which candidate nodes and storage pools may take a new diskful replica, and in
//! words why the others may not; and which diskless pool a node's diskless replica uses.
//!
//! Owns the per-node and per-pool checks and their wording. Whether a pool can host a volume at
//! all (its kind, the node's layers, free space) is decided by [`crate::hosting`], which resource
//! creation shares; the rules that depend on other replicas are evaluated in [`crate::rules`];
//! choosing among qualifying nodes is [`crate::select`]'s.

use std::collections::BTreeSet;

use ferrite_types::size::format_kib;
use ferrite_types::{DEFAULT_DISKLESS_POOL, NodeName, ResourceName, StorPoolName};
use regex::{Regex, RegexBuilder};

use crate::hosting::{self, Space, Unfit};
use crate::rules::Rules;
use crate::{Candidate, CandidatePool, Eligible, Rejection, Request};

/// The candidates sorted by node name, and the later entries of any node listed twice.
pub(crate) fn ordered(candidates: &[Candidate]) -> (Vec<&Candidate>, Vec<&Candidate>) {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| a.node.cmp(&b.node));
    let mut unique: Vec<&Candidate> = Vec::with_capacity(sorted.len());
    let mut duplicates = Vec::new();
    for candidate in sorted {
        match unique.last() {
            Some(last) if last.node == candidate.node => duplicates.push(candidate),
            _ => unique.push(candidate),
        }
    }
    (unique, duplicates)
}

/// `[a, b]`, for lists in reasons.
pub(crate) fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// A request, prepared for checking candidates against it.
pub(crate) struct Context<'a> {
    request: &'a Request,
    /// Nodes that already have the resource (existing replicas, diskful or not, and nodes whose
    /// resource list names it).
    holders: BTreeSet<&'a NodeName>,
    do_not_place_with_regex: Option<Regex>,
    pub rules: Rules,
}

impl<'a> Context<'a> {
    /// Fails with the reason when the request cannot be evaluated (an invalid regex).
    pub fn new(request: &'a Request, candidates: &[&'a Candidate]) -> Result<Self, String> {
        let do_not_place_with_regex = match &request.do_not_place_with_regex {
            None => None,
            Some(pattern) => Some(
                RegexBuilder::new(pattern)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| {
                        format!(
                            "the do-not-place-with regular expression '{pattern}' is invalid: {}",
                            one_line(&e.to_string())
                        )
                    })?,
            ),
        };
        let mut holders: BTreeSet<&NodeName> = request.existing.iter().map(|r| &r.node).collect();
        if let Some(resource) = &request.resource {
            holders.extend(
                candidates
                    .iter()
                    .filter(|c| c.resources.contains(resource))
                    .map(|c| &c.node),
            );
        }
        Ok(Self {
            request,
            holders,
            do_not_place_with_regex,
            rules: Rules::new(request, candidates),
        })
    }

    /// The node's best qualifying pool, or why the node (or each of its pools) does not qualify.
    pub fn check(&self, candidate: &'a Candidate) -> Result<Eligible<'a>, Vec<Rejection>> {
        let node = &candidate.node;
        let rejected = |pool: Option<&StorPoolName>, reason: String| Rejection {
            node: node.clone(),
            pool: pool.cloned(),
            reason,
        };
        if let Err(reason) = self.check_node(candidate) {
            return Err(vec![rejected(None, reason)]);
        }
        let mut pools: Vec<&CandidatePool> = candidate
            .pools
            .iter()
            .filter(|p| hosting::kind(p.provider_kind, false).is_ok())
            .collect();
        if pools.is_empty() {
            return Err(vec![rejected(
                None,
                format!("node '{node}' has no diskful storage pool"),
            )]);
        }
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        let mut best: Option<(&StorPoolName, u64)> = None;
        let mut rejections = Vec::new();
        for pool in pools {
            match self.check_pool(node, pool) {
                Ok(free) => {
                    if best.is_none_or(|(_, best_free)| free > best_free) {
                        best = Some((&pool.name, free));
                    }
                }
                Err(reason) => rejections.push(rejected(Some(&pool.name), reason)),
            }
        }
        match best {
            Some((pool, free_kib)) => Ok(Eligible {
                candidate,
                pool,
                free_kib,
            }),
            None => Err(rejections),
        }
    }

    fn holds_resource(&self, node: &NodeName) -> bool {
        self.holders.contains(node)
    }

    fn check_node(&self, candidate: &Candidate) -> Result<(), String> {
        let request = self.request;
        let node = &candidate.node;
        if self.holds_resource(node) {
            return Err(match &request.resource {
                Some(resource) => format!("node '{node}' already has resource '{resource}'"),
                None => format!("node '{node}' already has a replica of this resource"),
            });
        }
        if !request.node_name_list.is_empty() && !request.node_name_list.contains(node) {
            return Err(format!(
                "node '{node}' is not in the node list {}",
                list(&request.node_name_list)
            ));
        }
        if let Some(reason) = &candidate.unavailable {
            return Err(in_context(reason, node, || {
                format!("node '{node}' is unavailable")
            }));
        }
        self.check_layers(candidate)?;
        if let Some(resource) = request
            .do_not_place_with
            .iter()
            .find_map(|r| candidate.resources.iter().find(|held| *held == r))
        {
            return Err(format!(
                "node '{node}' has resource '{resource}', which must not share a node with this \
                 resource (do-not-place-with)"
            ));
        }
        if let Some(regex) = &self.do_not_place_with_regex
            && let Some(resource) = first_match(regex, &candidate.resources)
        {
            return Err(format!(
                "node '{node}' has resource '{resource}', which matches the do-not-place-with \
                 pattern '{}'",
                regex.as_str()
            ));
        }
        self.rules.check_node(node, &candidate.props)
    }

    fn check_layers(&self, candidate: &Candidate) -> Result<(), String> {
        hosting::layers(
            candidate.supported_layers.as_deref(),
            &self.request.layer_stack,
        )
        .map_err(|unfit| reason(&unfit, &candidate.node, None))
    }

    /// The pool's free capacity if it may take a diskful replica.
    fn check_pool(&self, node: &NodeName, pool: &CandidatePool) -> Result<u64, String> {
        let request = self.request;
        let name = &pool.name;
        if !request.storage_pools.is_empty() && !request.storage_pools.contains(name) {
            return Err(format!(
                "storage pool '{name}' on '{node}' is not in the storage pool list {}",
                list(&request.storage_pools)
            ));
        }
        if !request.provider_list.is_empty() && !request.provider_list.contains(&pool.provider_kind)
        {
            return Err(format!(
                "provider {} of storage pool '{name}' on '{node}' is not in the provider list {}",
                pool.provider_kind,
                list(&request.provider_list)
            ));
        }
        if let Some(reason) = &pool.unusable {
            return Err(in_context(reason, node, || {
                format!("storage pool '{name}' on '{node}' cannot be used")
            }));
        }
        let free = pool.free_capacity_kib;
        hosting::space(Space::Strict, pool.provider_kind, free, request.size_kib)
            .map_err(|unfit| reason(&unfit, node, Some(pool)))?;
        Ok(free.unwrap_or_default())
    }

    /// The pool for a diskless replica on `candidate`, if the node can take one: available, not
    /// holding the resource, running the layers, with a usable diskless pool (one of the
    /// requested diskless pools in their order, else `DfltDisklessStorPool`, else the first by
    /// name).
    pub fn diskless_pool<'c>(&self, candidate: &'c Candidate) -> Option<&'c StorPoolName> {
        if candidate.unavailable.is_some()
            || self.holds_resource(&candidate.node)
            || self.check_layers(candidate).is_err()
        {
            return None;
        }
        let mut usable: Vec<&StorPoolName> = candidate
            .pools
            .iter()
            .filter(|p| hosting::kind(p.provider_kind, true).is_ok() && p.unusable.is_none())
            .map(|p| &p.name)
            .collect();
        usable.sort();
        let wanted = &self.request.diskless_storage_pools;
        if !wanted.is_empty() {
            return wanted
                .iter()
                .find_map(|w| usable.iter().copied().find(|p| *p == w));
        }
        usable
            .iter()
            .copied()
            .find(|p| p.key() == DEFAULT_DISKLESS_POOL.to_ascii_uppercase())
            .or(usable.first().copied())
    }
}

/// A rule of [`hosting`] in the autoplacer's words.
fn reason(unfit: &Unfit, node: &NodeName, pool: Option<&CandidatePool>) -> String {
    let pool_name = pool.map(|p| p.name.to_string()).unwrap_or_default();
    match unfit {
        Unfit::WrongKind { pool_is_diskless } => format!(
            "storage pool '{pool_name}' on '{node}' is {}",
            if *pool_is_diskless {
                "diskless"
            } else {
                "diskful"
            }
        ),
        Unfit::ProviderUnsupported => format!(
            "node '{node}' cannot run provider {}",
            pool.map(|p| p.provider_kind.to_string())
                .unwrap_or_default()
        ),
        Unfit::LayersUnsupported(missing) => match missing.as_slice() {
            [layer] => format!("node '{node}' does not support layer {layer}"),
            layers => format!("node '{node}' does not support layers {}", list(layers)),
        },
        Unfit::CapacityUnknown => {
            format!("storage pool '{pool_name}' on '{node}' has not reported its free capacity yet")
        }
        Unfit::TooLittleSpace {
            free_kib,
            needed_kib,
        } => format!(
            "storage pool '{pool_name}' on '{node}' has {} free, {} needed",
            format_kib(*free_kib),
            format_kib(*needed_kib)
        ),
    }
}

fn first_match<'r>(regex: &Regex, resources: &'r [ResourceName]) -> Option<&'r ResourceName> {
    let mut matching: Vec<&ResourceName> = resources
        .iter()
        .filter(|r| regex.is_match(r.as_str()))
        .collect();
    matching.sort();
    matching.first().copied()
}

/// A reason given by the controller, used as it is when it names the node, else after `context`.
fn in_context(reason: &str, node: &NodeName, context: impl FnOnce() -> String) -> String {
    if reason.contains(&format!("'{node}'")) {
        reason.to_string()
    } else {
        format!("{}: {reason}", context())
    }
}

/// Regex errors come with a multi-line caret diagram; a reason is one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}
