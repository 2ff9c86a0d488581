//! Property tests: random clusters and requests, checked against the oracle in `common`.
//!
//! - a placement has exactly the wanted number of diskful replicas, on distinct nodes that do
//!   not hold the resource, each in the node's best pool, every node and pool passing every
//!   filter, and all of them together satisfying replicas-on-same/different and
//!   x-replicas-on-different with the existing replicas;
//! - its sum of free space is the best any valid selection reaches (brute force);
//! - a refusal happens exactly when no valid selection exists, says how many could be placed,
//!   and lists every candidate node;
//! - diskless-on-remaining covers exactly the other nodes that can take a diskless replica;
//! - the answer does not depend on the order of the candidates, and is the same every time.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use ferrite_placement::{Candidate, CandidatePool, ExistingReplica, Request, place};
use ferrite_types::{LayerKind, ProviderKind};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const POOLS: [&str; 3] = ["pool_a", "pool_b", "pool_c"];
const RESOURCES: [&str; 4] = ["r1", "r2", "db-1", "web"];
const PROVIDERS: [ProviderKind; 4] = [
    ProviderKind::Lvm,
    ProviderKind::LvmThin,
    ProviderKind::File,
    ProviderKind::FileThin,
];

fn arb_pool() -> impl Strategy<Value = CandidatePool> {
    (
        0..POOLS.len(),
        0..PROVIDERS.len(),
        prop::option::weighted(0.95, 0..100u64),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(name, kind, free, unusable)| CandidatePool {
            name: sp(POOLS[name]),
            provider_kind: PROVIDERS[kind],
            free_capacity_kib: free,
            total_capacity_kib: free.map(|f| f + 50),
            unusable: unusable.then(|| "pool reports an error".to_string()),
        })
}

fn arb_candidate(index: usize) -> impl Strategy<Value = Candidate> {
    (
        prop::option::weighted(0.85, 0..3u8),
        prop::option::weighted(0.85, 0..2u8),
        prop::bool::weighted(0.1),
        prop_oneof![
            1 => Just(None),
            3 => Just(Some(LayerKind::ALL.to_vec())),
            1 => Just(Some(vec![LayerKind::Mirror, LayerKind::Storage]))
        ],
        prop::collection::vec(prop::bool::weighted(0.08), RESOURCES.len()),
        prop::collection::vec(arb_pool(), 0..4),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            move |(rack, zone, offline, layers, holds, pools, dflt, second)| {
                let name = format!("node{index}");
                let mut props = BTreeMap::new();
                if let Some(rack) = rack {
                    props.insert("Aux/rack".to_string(), format!("r{rack}"));
                }
                if let Some(zone) = zone {
                    props.insert("Aux/zone".to_string(), format!("z{zone}"));
                }
                let mut seen = BTreeSet::new();
                let mut pools: Vec<CandidatePool> = pools
                    .into_iter()
                    .filter(|p| seen.insert(p.name.clone()))
                    .collect();
                if dflt {
                    pools.push(diskless_pool());
                }
                if second {
                    pools.push(pool("diskless2", ProviderKind::Diskless, None));
                }
                Candidate {
                    unavailable: offline.then(|| format!("node '{name}' is offline")),
                    node: n(&name),
                    props,
                    supported_layers: layers,
                    resources: RESOURCES
                        .iter()
                        .zip(holds)
                        .filter(|(_, h)| *h)
                        .map(|(r, _)| rn(r))
                        .collect(),
                    pools,
                }
            },
        )
}

fn arb_cluster() -> impl Strategy<Value = Vec<Candidate>> {
    (0..12usize).prop_flat_map(|count| (0..count).map(arb_candidate).collect::<Vec<_>>())
}

fn subset<T: Clone + std::fmt::Debug>(items: Vec<T>) -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec(any::<bool>(), items.len()).prop_map(move |keep| {
        items
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(i, _)| i.clone())
            .collect()
    })
}

fn arb_request(nodes: usize) -> impl Strategy<Value = Request> {
    let names: Vec<String> = (0..nodes).map(|i| format!("node{i}")).collect();
    (
        (
            0..40u64,
            0..6usize,
            prop::collection::vec((0..nodes.max(1), any::<bool>()), 0..3),
            prop::option::weighted(0.15, subset(names)),
            prop::option::weighted(0.2, subset(POOLS.to_vec())),
            prop::option::weighted(0.15, subset(PROVIDERS.to_vec())),
            prop_oneof![
                Just(vec![LayerKind::Drbd, LayerKind::Storage]),
                Just(vec![LayerKind::Mirror, LayerKind::Storage]),
                Just(vec![LayerKind::Storage]),
                Just(vec![]),
            ],
        ),
        (
            prop::collection::vec(
                prop::sample::select(vec!["Aux/rack", "Aux/zone", "Aux/rack=r1"]),
                0..2,
            ),
            prop::collection::vec(prop::sample::select(vec!["Aux/rack", "Aux/zone"]), 0..2),
            prop::option::weighted(
                0.3,
                (
                    prop::sample::select(vec!["Aux/rack", "Aux/zone"]),
                    0..3usize,
                ),
            ),
            prop::option::weighted(0.2, subset(vec!["r2", "db-1"])),
            prop::option::weighted(0.2, prop::sample::select(vec!["^DB", "web", "("])),
            any::<bool>(),
            prop::option::weighted(0.2, Just(vec![sp("diskless2")])),
        ),
    )
        .prop_map(move |(first, second)| {
            let (size, place_count, existing, node_list, pools, providers, layers) = first;
            let (same, different, x, dnpw, regex, diskless, diskless_pools) = second;
            Request {
                resource: Some(rn("r1")),
                size_kib: size,
                place_count,
                existing: if nodes == 0 {
                    Vec::new()
                } else {
                    existing
                        .into_iter()
                        .map(|(i, diskful)| ExistingReplica {
                            node: n(&format!("node{i}")),
                            pool: sp("pool_a"),
                            diskful,
                        })
                        .collect()
                },
                node_name_list: node_list.unwrap_or_default().iter().map(|s| n(s)).collect(),
                storage_pools: pools.unwrap_or_default().iter().map(|s| sp(s)).collect(),
                diskless_storage_pools: diskless_pools.unwrap_or_default(),
                provider_list: providers.unwrap_or_default(),
                layer_stack: layers,
                replicas_on_same: same.into_iter().map(String::from).collect(),
                replicas_on_different: different.into_iter().map(String::from).collect(),
                x_replicas_on_different: x.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                do_not_place_with: dnpw.unwrap_or_default().iter().map(|s| rn(s)).collect(),
                do_not_place_with_regex: regex.map(String::from),
                diskless_on_remaining: diskless,
            }
        })
}

fn arb_case() -> impl Strategy<Value = (Vec<Candidate>, Request)> {
    arb_cluster().prop_flat_map(|cluster| {
        let nodes = cluster.len();
        (Just(cluster), arb_request(nodes))
    })
}

/// Nodes that are all available, with one pool each of ample space, spread over racks and
/// zones: every request exercises the rules between replicas and the search.
fn arb_rule_case() -> impl Strategy<Value = (Vec<Candidate>, Request)> {
    let cluster = (2..14usize).prop_flat_map(|count| {
        (0..count)
            .map(|i| {
                (
                    prop::option::weighted(0.9, 0..4u8),
                    prop::option::weighted(0.9, 0..3u8),
                    10..20u64,
                )
                    .prop_map(move |(rack, zone, free)| {
                        let mut c = node(&format!("node{i}"), free);
                        if let Some(rack) = rack {
                            c = c.prop("Aux/rack", &format!("r{rack}"));
                        }
                        if let Some(zone) = zone {
                            c = c.prop("Aux/zone", &format!("z{zone}"));
                        }
                        c
                    })
            })
            .collect::<Vec<_>>()
    });
    cluster.prop_flat_map(|cluster| {
        let nodes = cluster.len();
        let request = (
            1..7usize,
            prop::collection::vec((0..nodes, prop::bool::weighted(0.8)), 0..3),
            prop::collection::vec(
                prop::sample::select(vec!["Aux/rack", "Aux/zone", "Aux/zone=z1"]),
                0..2,
            ),
            prop::collection::vec(prop::sample::select(vec!["Aux/rack", "Aux/zone"]), 0..3),
            prop::collection::btree_map(
                prop::sample::select(vec!["Aux/rack", "Aux/zone"]),
                0..4usize,
                0..3,
            ),
            any::<bool>(),
        )
            .prop_map(|(place_count, existing_at, same, different, x, diskless)| {
                let mut req = request(place_count, 5);
                req.existing = existing_at
                    .into_iter()
                    .map(|(i, diskful)| existing(&format!("node{i}"), "pool_ssd", diskful))
                    .collect();
                req.replicas_on_same = same.into_iter().map(String::from).collect();
                req.replicas_on_different = different.into_iter().map(String::from).collect();
                req.x_replicas_on_different =
                    x.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                req.diskless_on_remaining = diskless;
                req
            });
        (Just(cluster), request)
    })
}

fn check(cluster: Vec<Candidate>, req: Request) -> Result<(), TestCaseError> {
    let result = place(&req, &cluster);

    // Deterministic, and independent of the candidates' order.
    prop_assert_eq!(&place(&req, &cluster), &result);
    let mut reversed = cluster.clone();
    reversed.reverse();
    prop_assert_eq!(&place(&req, &reversed), &result);

    let Some(oracle) = Oracle::new(&req, &cluster) else {
        let refusal = result.expect_err("an invalid regex must be refused");
        prop_assert!(refusal.invalid_request.is_some());
        prop_assert_eq!(refusal.rejections.len(), cluster.len());
        return Ok(());
    };
    let wanted = oracle.wanted;
    match result {
        Ok(placement) => {
            prop_assert_eq!(placement.diskful.len(), wanted);
            let mut used = BTreeSet::new();
            let mut chosen = Vec::new();
            let mut sum = 0u128;
            for (node, pool) in &placement.diskful {
                prop_assert!(used.insert(node.clone()), "{} chosen twice", node);
                prop_assert!(!oracle.holders.contains(node), "{} already holds r1", node);
                let candidate = oracle.candidates[node];
                prop_assert!(oracle.node_ok(candidate), "{} fails a node filter", node);
                let p = candidate
                    .pools
                    .iter()
                    .find(|p| &p.name == pool)
                    .expect("pool exists");
                prop_assert!(
                    oracle.pool_ok(p),
                    "{} on {} fails a pool filter",
                    pool,
                    node
                );
                prop_assert_eq!(
                    p.free_capacity_kib,
                    oracle.best_free(candidate),
                    "not the node's best pool"
                );
                sum += p.free_capacity_kib.unwrap() as u128;
                chosen.push(candidate);
            }
            prop_assert!(
                oracle.rules_ok(&chosen),
                "the rules are broken by {:?}",
                placement.diskful
            );
            if wanted > 0 {
                prop_assert_eq!(Some(sum), oracle.best_sum(wanted), "not the best selection");
            }

            if req.diskless_on_remaining && wanted > 0 {
                for (node, pool) in &placement.diskless {
                    prop_assert!(used.insert(node.clone()), "{} placed twice", node);
                    prop_assert!(
                        oracle.diskless_ok(oracle.candidates[node], pool),
                        "diskless {} on {}",
                        pool,
                        node
                    );
                }
                for candidate in oracle.candidates.values() {
                    if !used.contains(&candidate.node) {
                        prop_assert!(
                            !oracle.can_be_diskless(candidate),
                            "{} left out of diskless-on-remaining",
                            candidate.node
                        );
                    }
                }
                let names: Vec<_> = placement.diskless.iter().map(|(n, _)| n.clone()).collect();
                let mut sorted = names.clone();
                sorted.sort();
                prop_assert_eq!(names, sorted);
            } else {
                prop_assert!(placement.diskless.is_empty());
            }
        }
        Err(refusal) => {
            prop_assert!(refusal.invalid_request.is_none());
            prop_assert!(wanted > 0);
            prop_assert_eq!(refusal.wanted, wanted);
            prop_assert_eq!(
                oracle.best_sum(wanted),
                None,
                "a valid selection exists: {}",
                refusal
            );
            let found = (1..wanted)
                .rev()
                .find(|&k| oracle.best_sum(k).is_some())
                .unwrap_or(0);
            prop_assert_eq!(refusal.found, found);
            let listed: BTreeSet<_> = refusal.rejections.iter().map(|r| r.node.clone()).collect();
            let candidates: BTreeSet<_> = cluster.iter().map(|c| c.node.clone()).collect();
            prop_assert_eq!(listed, candidates);
            for rejection in &refusal.rejections {
                prop_assert!(!rejection.reason.is_empty() && !rejection.reason.contains('\n'));
                prop_assert!(
                    rejection.reason.contains(&format!("'{}'", rejection.node)),
                    "the reason names its node: {}",
                    rejection.reason
                );
            }
            let order: Vec<_> = refusal.rejections.iter().map(|r| r.node.clone()).collect();
            let mut sorted = order.clone();
            sorted.sort();
            prop_assert_eq!(order, sorted);
            let summary = refusal.summary();
            // The headline, the criteria, then one line per rejection under a heading (or
            // one saying there are no candidates).
            let rejection_lines = if refusal.rejections.is_empty() {
                1
            } else {
                1 + refusal.rejections.len()
            };
            prop_assert_eq!(summary.lines().count(), 2 + rejection_lines, "{}", summary);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_clusters_and_requests((cluster, req) in arb_case()) {
        check(cluster, req)?;
    }

    #[test]
    fn rules_between_replicas((cluster, req) in arb_rule_case()) {
        check(cluster, req)?;
    }
}
