//! Builders for candidates and requests, and an oracle: a deliberately plain restatement of the
//! placement rules, used to check `place()` from the outside.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use ferrite_placement::{Candidate, CandidatePool, ExistingReplica, Placement, Request};
use ferrite_types::{LayerKind, NodeName, ProviderKind, ResourceName, StorPoolName};

pub const GIB: u64 = 1024 * 1024;

pub fn n(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

pub fn sp(name: &str) -> StorPoolName {
    StorPoolName::new(name).unwrap()
}

pub fn rn(name: &str) -> ResourceName {
    ResourceName::new(name).unwrap()
}

pub fn pool(name: &str, kind: ProviderKind, free_kib: Option<u64>) -> CandidatePool {
    CandidatePool {
        name: sp(name),
        provider_kind: kind,
        free_capacity_kib: free_kib,
        total_capacity_kib: free_kib.map(|f| f * 2),
        unusable: None,
    }
}

pub fn diskless_pool() -> CandidatePool {
    pool("DfltDisklessStorPool", ProviderKind::Diskless, None)
}

/// An online node running every layer, with the default diskless pool and `pool_ssd` (LVM)
/// with `free_kib` free.
pub fn node(name: &str, free_kib: u64) -> Candidate {
    Candidate {
        node: n(name),
        props: BTreeMap::new(),
        unavailable: None,
        supported_layers: Some(LayerKind::ALL.to_vec()),
        resources: Vec::new(),
        pools: vec![
            diskless_pool(),
            pool("pool_ssd", ProviderKind::Lvm, Some(free_kib)),
        ],
    }
}

pub trait CandidateExt {
    fn prop(self, key: &str, value: &str) -> Self;
    fn with_pool(self, pool: CandidatePool) -> Self;
    fn holding(self, resource: &str) -> Self;
}

impl CandidateExt for Candidate {
    fn prop(mut self, key: &str, value: &str) -> Self {
        self.props.insert(key.to_string(), value.to_string());
        self
    }
    fn with_pool(mut self, pool: CandidatePool) -> Self {
        self.pools.push(pool);
        self
    }
    fn holding(mut self, resource: &str) -> Self {
        self.resources.push(rn(resource));
        self
    }
}

pub fn request(place_count: usize, size_kib: u64) -> Request {
    Request {
        resource: Some(rn("r1")),
        size_kib,
        place_count,
        layer_stack: vec![LayerKind::Drbd, LayerKind::Storage],
        ..Default::default()
    }
}

pub fn existing(node: &str, pool: &str, diskful: bool) -> ExistingReplica {
    ExistingReplica {
        node: n(node),
        pool: sp(pool),
        diskful,
    }
}

pub fn nodes_of(placement: &Placement) -> Vec<String> {
    placement
        .diskful
        .iter()
        .map(|(node, pool)| format!("{node}:{pool}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The oracle.

pub struct Oracle<'a> {
    pub request: &'a Request,
    pub candidates: BTreeMap<NodeName, &'a Candidate>,
    pub holders: BTreeSet<NodeName>,
    /// Existing diskful replicas' nodes that are candidates (their properties are known).
    pub existing_known: Vec<&'a Candidate>,
    pub wanted: usize,
    pub regex: Option<regex::Regex>,
}

impl<'a> Oracle<'a> {
    /// `None` when the request's regex is invalid.
    pub fn new(request: &'a Request, candidates: &'a [Candidate]) -> Option<Self> {
        let regex = match &request.do_not_place_with_regex {
            Some(p) => Some(
                regex::RegexBuilder::new(p)
                    .case_insensitive(true)
                    .build()
                    .ok()?,
            ),
            None => None,
        };
        let mut by_name = BTreeMap::new();
        for c in candidates {
            by_name.entry(c.node.clone()).or_insert(c);
        }
        let mut holders: BTreeSet<NodeName> =
            request.existing.iter().map(|r| r.node.clone()).collect();
        if let Some(resource) = &request.resource {
            for c in by_name.values() {
                if c.resources.contains(resource) {
                    holders.insert(c.node.clone());
                }
            }
        }
        let diskful: BTreeSet<&NodeName> = request
            .existing
            .iter()
            .filter(|r| r.diskful)
            .map(|r| &r.node)
            .collect();
        let existing_known = diskful
            .iter()
            .filter_map(|node| by_name.get(*node).copied())
            .collect();
        Some(Self {
            request,
            wanted: request.place_count.saturating_sub(diskful.len()),
            candidates: by_name,
            holders,
            existing_known,
            regex,
        })
    }

    pub fn node_ok(&self, c: &Candidate) -> bool {
        let r = self.request;
        !self.holders.contains(&c.node)
            && (r.node_name_list.is_empty() || r.node_name_list.contains(&c.node))
            && c.unavailable.is_none()
            && c.supported_layers
                .as_ref()
                .is_none_or(|s| r.layer_stack.iter().all(|l| s.contains(l)))
            && !c.resources.iter().any(|x| r.do_not_place_with.contains(x))
            && !self
                .regex
                .as_ref()
                .is_some_and(|re| c.resources.iter().any(|x| re.is_match(x.as_str())))
    }

    pub fn pool_ok(&self, p: &CandidatePool) -> bool {
        let r = self.request;
        p.provider_kind != ProviderKind::Diskless
            && (r.storage_pools.is_empty() || r.storage_pools.contains(&p.name))
            && (r.provider_list.is_empty() || r.provider_list.contains(&p.provider_kind))
            && p.unusable.is_none()
            && p.free_capacity_kib.is_some_and(|f| f >= r.size_kib)
    }

    /// The node's most free valid pool's free capacity, if the node and a pool are valid.
    pub fn best_free(&self, c: &Candidate) -> Option<u64> {
        if !self.node_ok(c) {
            return None;
        }
        c.pools
            .iter()
            .filter(|p| self.pool_ok(p))
            .map(|p| p.free_capacity_kib.unwrap())
            .max()
    }

    /// Whether the new replicas on `new` satisfy every rule together with the existing ones.
    pub fn rules_ok(&self, new: &[&Candidate]) -> bool {
        let r = self.request;
        let all: Vec<&Candidate> = self
            .existing_known
            .iter()
            .copied()
            .chain(new.iter().copied())
            .collect();
        let split = |e: &str| -> (String, Option<String>) {
            match e.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                None => (e.trim().to_string(), None),
            }
        };
        for entry in &r.replicas_on_same {
            let (key, value) = split(entry);
            let first = match &value {
                Some(v) => Some(v.clone()),
                None => all.first().and_then(|c| c.props.get(&key).cloned()),
            };
            if new.is_empty() {
                continue;
            }
            if first.is_none() || all.iter().any(|c| c.props.get(&key) != first.as_ref()) {
                return false;
            }
        }
        let mut limits: Vec<(String, usize)> = r
            .replicas_on_different
            .iter()
            .map(|e| (split(e).0, 1))
            .collect();
        limits.extend(
            r.x_replicas_on_different
                .iter()
                .map(|(k, v)| (k.trim().to_string(), *v)),
        );
        for (key, cap) in limits {
            for c in new {
                let value = c.props.get(&key);
                let count = all.iter().filter(|o| o.props.get(&key) == value).count();
                if count > cap {
                    return false;
                }
            }
        }
        true
    }

    /// The nodes that may take a diskful replica on their own, with their best free capacity.
    pub fn valid_nodes(&self) -> Vec<(&'a Candidate, u64)> {
        self.candidates
            .values()
            .filter_map(|c| self.best_free(c).map(|f| (*c, f)))
            .collect()
    }

    /// The highest sum of free capacities of `k` valid nodes that satisfy the rules together.
    pub fn best_sum(&self, k: usize) -> Option<u128> {
        let valid = self.valid_nodes();
        let mut best = None;
        let mut chosen = Vec::new();
        fn walk<'c>(
            oracle: &Oracle<'c>,
            valid: &[(&'c Candidate, u64)],
            start: usize,
            k: usize,
            chosen: &mut Vec<(&'c Candidate, u64)>,
            best: &mut Option<u128>,
        ) {
            if chosen.len() == k {
                let nodes: Vec<&Candidate> = chosen.iter().map(|(c, _)| *c).collect();
                if oracle.rules_ok(&nodes) {
                    let sum = chosen.iter().map(|(_, f)| *f as u128).sum();
                    if best.is_none_or(|b| sum > b) {
                        *best = Some(sum);
                    }
                }
                return;
            }
            for i in start..valid.len() {
                chosen.push(valid[i]);
                walk(oracle, valid, i + 1, k, chosen, best);
                chosen.pop();
            }
        }
        walk(self, &valid, 0, k, &mut chosen, &mut best);
        best
    }

    /// The pool a diskless replica on `c` may use, or `None`.
    pub fn diskless_ok(&self, c: &Candidate, pool: &StorPoolName) -> bool {
        let r = self.request;
        c.unavailable.is_none()
            && !self.holders.contains(&c.node)
            && c.supported_layers
                .as_ref()
                .is_none_or(|s| r.layer_stack.iter().all(|l| s.contains(l)))
            && c.pools.iter().any(|p| {
                &p.name == pool
                    && p.provider_kind == ProviderKind::Diskless
                    && p.unusable.is_none()
                    && (r.diskless_storage_pools.is_empty()
                        || r.diskless_storage_pools.contains(pool))
            })
    }

    pub fn can_be_diskless(&self, c: &Candidate) -> bool {
        c.pools.iter().any(|p| self.diskless_ok(c, &p.name))
    }
}
