//! Each filter, the scoring and tiebreak, the search and the refusal's wording, one behaviour
//! per test.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ferrite_placement::{Candidate, Refusal, place};
use ferrite_types::{LayerKind, ProviderKind};

fn refused(request: &ferrite_placement::Request, candidates: &[Candidate]) -> Refusal {
    match place(request, candidates) {
        Ok(placement) => panic!("expected a refusal, got {placement:?}"),
        Err(refusal) => refusal,
    }
}

fn reason_for(refusal: &Refusal, node: &str) -> Vec<String> {
    refusal
        .rejections
        .iter()
        .filter(|r| r.node == n(node))
        .map(|r| r.reason.clone())
        .collect()
}

#[test]
fn nothing_to_add_is_an_empty_placement() {
    let mut req = request(2, GIB);
    req.existing = vec![
        existing("node1", "pool_ssd", true),
        existing("node2", "pool_ssd", true),
    ];
    req.diskless_on_remaining = true;
    let cluster = [
        node("node1", 10 * GIB),
        node("node2", 10 * GIB),
        node("node3", 10 * GIB),
    ];
    assert_eq!(place(&req, &cluster).unwrap(), Default::default());
    req.place_count = 1;
    assert_eq!(
        place(&req, &cluster).unwrap(),
        Default::default(),
        "fewer than 0 to add"
    );
}

#[test]
fn places_on_the_nodes_with_most_free_space() {
    let cluster = [
        node("node1", 5 * GIB),
        node("node2", 9 * GIB),
        node("node3", 7 * GIB),
    ];
    let placement = place(&request(2, GIB), &cluster).unwrap();
    assert_eq!(nodes_of(&placement), ["node2:pool_ssd", "node3:pool_ssd"]);
    assert!(placement.diskless.is_empty());
}

#[test]
fn a_node_gets_one_replica_in_its_best_pool() {
    let cluster = [
        node("node1", 5 * GIB).with_pool(pool("pool_hdd", ProviderKind::Lvm, Some(50 * GIB))),
        node("node2", 9 * GIB),
    ];
    let placement = place(&request(2, GIB), &cluster).unwrap();
    assert_eq!(nodes_of(&placement), ["node1:pool_hdd", "node2:pool_ssd"]);
}

#[test]
fn ties_go_to_node_name_then_pool_name_whatever_the_candidate_order() {
    let cluster = vec![
        node("node3", GIB),
        node("node1", GIB).with_pool(pool("pool_aaa", ProviderKind::Lvm, Some(GIB))),
        node("node2", GIB),
    ];
    let placement = place(&request(2, 0), &cluster).unwrap();
    assert_eq!(nodes_of(&placement), ["node1:pool_aaa", "node2:pool_ssd"]);
    let mut reversed = cluster.clone();
    reversed.reverse();
    assert_eq!(place(&request(2, 0), &reversed).unwrap(), placement);
}

#[test]
fn the_existing_replicas_count_towards_the_place_count() {
    let mut req = request(3, GIB);
    req.existing = vec![
        existing("node1", "pool_ssd", true),
        existing("node2", "DfltDisklessStorPool", false),
    ];
    let cluster = [
        node("node1", 9 * GIB),
        node("node2", 9 * GIB),
        node("node3", 2 * GIB),
        node("node4", 3 * GIB),
    ];
    let placement = place(&req, &cluster).unwrap();
    assert_eq!(
        nodes_of(&placement),
        ["node4:pool_ssd", "node3:pool_ssd"],
        "node1 and node2 hold r1"
    );
}

#[test]
fn nodes_holding_the_resource_are_rejected() {
    let mut req = request(3, GIB);
    req.existing = vec![existing("node1", "pool_ssd", true)];
    let cluster = [
        node("node1", 9 * GIB),
        node("node2", 9 * GIB).holding("r1"),
        node("node3", 9 * GIB),
    ];
    let refusal = refused(&req, &cluster);
    assert_eq!((refusal.wanted, refusal.found), (2, 1));
    assert_eq!(
        reason_for(&refusal, "node1"),
        ["node 'node1' already has resource 'r1'"]
    );
    assert_eq!(
        reason_for(&refusal, "node2"),
        ["node 'node2' already has resource 'r1'"]
    );
    assert_eq!(
        reason_for(&refusal, "node3"),
        [
            "node 'node3' qualifies (storage pool 'pool_ssd', 9 GiB free), but only 1 node(s) qualify, 2 needed"
        ]
    );
}

#[test]
fn unavailable_nodes_are_rejected_with_their_reason() {
    let mut offline = node("node3", 9 * GIB);
    offline.unavailable = Some("node 'node3' is offline".into());
    let refusal = refused(
        &request(3, GIB),
        &[node("node1", GIB), node("node2", GIB), offline],
    );
    assert_eq!(reason_for(&refusal, "node3"), ["node 'node3' is offline"]);
}

#[test]
fn the_node_list_restricts_the_candidates() {
    let mut req = request(2, GIB);
    req.node_name_list = vec![n("node1"), n("node3")];
    let cluster = [
        node("node1", GIB),
        node("node2", 9 * GIB),
        node("node3", GIB),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node1:pool_ssd", "node3:pool_ssd"]
    );
    req.place_count = 3;
    let refusal = refused(&req, &cluster);
    assert_eq!(
        reason_for(&refusal, "node2"),
        ["node 'node2' is not in the node list [node1, node3]"]
    );
}

#[test]
fn nodes_must_run_every_layer_when_their_layers_are_known() {
    let mut no_drbd = node("node2", 9 * GIB);
    no_drbd.supported_layers = Some(vec![LayerKind::Mirror, LayerKind::Storage]);
    let mut unknown = node("node3", 9 * GIB);
    unknown.supported_layers = None;
    let cluster = [node("node1", GIB), no_drbd, unknown];
    assert_eq!(
        nodes_of(&place(&request(2, GIB), &cluster).unwrap()),
        ["node3:pool_ssd", "node1:pool_ssd"]
    );
    let refusal = refused(&request(3, GIB), &cluster);
    assert_eq!(
        reason_for(&refusal, "node2"),
        ["node 'node2' does not support layer DRBD"]
    );
}

#[test]
fn pools_outside_the_storage_pool_list_are_rejected() {
    let mut req = request(2, GIB);
    req.storage_pools = vec![sp("pool_ssd")];
    let cluster = [
        node("node1", 2 * GIB).with_pool(pool("pool_hdd", ProviderKind::Lvm, Some(90 * GIB))),
        node("node2", 2 * GIB),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node1:pool_ssd", "node2:pool_ssd"]
    );
    req.storage_pools = vec![sp("pool_hdd")];
    let refusal = refused(&req, &cluster);
    assert_eq!(
        reason_for(&refusal, "node2"),
        ["storage pool 'pool_ssd' on 'node2' is not in the storage pool list [pool_hdd]"]
    );
    assert_eq!(refusal.found, 1);
}

#[test]
fn pools_of_other_providers_are_rejected() {
    let mut req = request(2, GIB);
    req.provider_list = vec![ProviderKind::Lvm];
    let mut thin = node("node2", 9 * GIB);
    thin.pools[1].provider_kind = ProviderKind::FileThin;
    let refusal = refused(&req, &[node("node1", 9 * GIB), thin]);
    assert_eq!(
        reason_for(&refusal, "node2"),
        [
            "provider FILE_THIN of storage pool 'pool_ssd' on 'node2' is not in the provider list [LVM]"
        ]
    );
    let rejection = refusal
        .rejections
        .iter()
        .find(|r| r.node == n("node2"))
        .unwrap();
    assert_eq!(rejection.pool, Some(sp("pool_ssd")));
}

#[test]
fn pool_state_and_capacity_are_checked() {
    let mut unusable = node("node1", 9 * GIB);
    unusable.pools[1].unusable =
        Some("storage pool 'pool_ssd' on 'node1' has errors: vg missing".into());
    let mut unreported = node("node2", 9 * GIB);
    unreported.pools[1].free_capacity_kib = None;
    let small = node("node3", GIB);
    let mut diskless_only = node("node4", 9 * GIB);
    diskless_only.pools.truncate(1);
    let refusal = refused(
        &request(1, 2 * GIB),
        &[unusable, unreported, small, diskless_only],
    );
    assert_eq!((refusal.wanted, refusal.found), (1, 0));
    assert_eq!(
        reason_for(&refusal, "node1"),
        ["storage pool 'pool_ssd' on 'node1' has errors: vg missing"]
    );
    assert_eq!(
        reason_for(&refusal, "node2"),
        ["storage pool 'pool_ssd' on 'node2' has not reported its free capacity yet"]
    );
    assert_eq!(
        reason_for(&refusal, "node3"),
        ["storage pool 'pool_ssd' on 'node3' has 1 GiB free, 2 GiB needed"]
    );
    assert_eq!(
        reason_for(&refusal, "node4"),
        ["node 'node4' has no diskful storage pool"]
    );
}

#[test]
fn thin_pools_are_judged_by_free_capacity() {
    let mut thin = node("node1", GIB);
    thin.pools[1].provider_kind = ProviderKind::LvmThin;
    let refusal = refused(&request(1, 2 * GIB), &[thin.clone()]);
    assert_eq!(
        reason_for(&refusal, "node1"),
        ["storage pool 'pool_ssd' on 'node1' has 1 GiB free, 2 GiB needed"]
    );
    assert!(place(&request(1, GIB), &[thin]).is_ok());
}

#[test]
fn a_pool_with_exactly_the_size_free_qualifies() {
    assert!(place(&request(1, 3 * GIB), &[node("node1", 3 * GIB)]).is_ok());
}

#[test]
fn do_not_place_with_keeps_away_from_named_resources() {
    let mut req = request(2, GIB);
    req.do_not_place_with = vec![rn("db1")];
    let cluster = [
        node("node1", 9 * GIB).holding("DB1"),
        node("node2", GIB),
        node("node3", GIB),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node2:pool_ssd", "node3:pool_ssd"]
    );
    req.place_count = 3;
    assert_eq!(
        reason_for(&refused(&req, &cluster), "node1"),
        [
            "node 'node1' has resource 'DB1', which must not share a node with this resource (do-not-place-with)"
        ]
    );
}

#[test]
fn do_not_place_with_regex_matches_case_insensitively_anywhere() {
    let mut req = request(3, GIB);
    req.do_not_place_with_regex = Some("^db-".into());
    let cluster = [
        node("node1", GIB).holding("DB-main"),
        node("node2", GIB).holding("web-db-1"),
        node("node3", GIB),
    ];
    let refusal = refused(&req, &cluster);
    assert_eq!(
        reason_for(&refusal, "node1"),
        ["node 'node1' has resource 'DB-main', which matches the do-not-place-with pattern '^db-'"]
    );
    assert!(
        reason_for(&refusal, "node2")[0].contains("qualifies"),
        "'^db-' does not match web-db-1"
    );
}

#[test]
fn an_invalid_regex_is_an_explained_refusal() {
    let mut req = request(2, GIB);
    req.do_not_place_with_regex = Some("db-(".into());
    let refusal = refused(&req, &[node("node1", GIB), node("node2", GIB)]);
    let invalid = refusal.invalid_request.clone().unwrap();
    assert!(
        invalid.starts_with("the do-not-place-with regular expression 'db-(' is invalid:"),
        "{invalid}"
    );
    assert!(!invalid.contains('\n'));
    assert_eq!(refusal.rejections.len(), 2);
    assert!(
        refusal.rejections[0]
            .reason
            .starts_with("node 'node1' was not considered: the do-not-place-with")
    );
    assert!(
        refusal
            .to_string()
            .starts_with("Cannot place resource 'r1': the do-not-place-with regular expression")
    );
    // Even with nothing to add, the request is wrong and says so.
    req.place_count = 0;
    assert!(place(&req, &[]).unwrap_err().invalid_request.is_some());
}

#[test]
fn replicas_on_same_rejects_nodes_lacking_the_key() {
    let mut req = request(2, GIB);
    req.replicas_on_same = vec!["Aux/rack".into()];
    let cluster = [
        node("node1", GIB).prop("Aux/rack", "r1"),
        node("node4", 9 * GIB),
    ];
    let refusal = refused(&req, &cluster);
    assert_eq!(
        reason_for(&refusal, "node4"),
        ["node 'node4' lacks property 'Aux/rack' required by replicas-on-same"]
    );
}

#[test]
fn replicas_on_same_picks_the_value_with_the_best_selection() {
    let mut req = request(2, GIB);
    req.replicas_on_same = vec!["Aux/rack".into()];
    // r1 has the single best node, r2 the best pair.
    let cluster = [
        node("node1", 10 * GIB).prop("Aux/rack", "r1"),
        node("node2", GIB).prop("Aux/rack", "r1"),
        node("node3", 8 * GIB).prop("Aux/rack", "r2"),
        node("node4", 7 * GIB).prop("Aux/rack", "r2"),
        node("node5", 9 * GIB).prop("Aux/rack", "r3"),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node3:pool_ssd", "node4:pool_ssd"]
    );
    req.place_count = 3;
    let refusal = refused(&req, &cluster);
    assert_eq!(refusal.found, 2);
    assert_eq!(
        reason_for(&refusal, "node5"),
        [
            "node 'node5' qualifies (storage pool 'pool_ssd', 9 GiB free), but only 1 qualifying node(s) share its Aux/rack=r3 (replicas-on-same), 3 needed"
        ]
    );
}

#[test]
fn replicas_on_same_with_a_value_requires_it() {
    let mut req = request(1, GIB);
    req.replicas_on_same = vec!["Aux/rack=r2".into()];
    let cluster = [
        node("node1", 9 * GIB).prop("Aux/rack", "r1"),
        node("node2", GIB).prop("Aux/rack", "r2"),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node2:pool_ssd"]
    );
    req.place_count = 2;
    assert_eq!(
        reason_for(&refused(&req, &cluster), "node1"),
        ["node 'node1' has Aux/rack=r1, but replicas-on-same requires Aux/rack=r2 (as requested)"]
    );
}

#[test]
fn replicas_on_same_follows_the_existing_replicas() {
    let mut req = request(2, GIB);
    req.replicas_on_same = vec!["Aux/rack".into()];
    req.existing = vec![existing("node1", "pool_ssd", true)];
    let cluster = [
        node("node1", GIB).prop("Aux/rack", "r1"),
        node("node2", 9 * GIB).prop("Aux/rack", "r2"),
        node("node3", GIB).prop("Aux/rack", "r1"),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node3:pool_ssd"]
    );
    req.place_count = 3;
    assert_eq!(
        reason_for(&refused(&req, &cluster), "node2"),
        [
            "node 'node2' has Aux/rack=r2, but replicas-on-same requires Aux/rack=r1 (the value of the existing replica on 'node1')"
        ]
    );
}

#[test]
fn replicas_on_same_cannot_be_met_when_existing_replicas_differ() {
    let mut req = request(3, GIB);
    req.replicas_on_same = vec!["Aux/rack".into()];
    req.existing = vec![
        existing("node1", "pool_ssd", true),
        existing("node2", "pool_ssd", true),
    ];
    let cluster = [
        node("node1", GIB).prop("Aux/rack", "r1"),
        node("node2", GIB).prop("Aux/rack", "r2"),
        node("node3", GIB).prop("Aux/rack", "r1"),
    ];
    assert_eq!(
        reason_for(&refused(&req, &cluster), "node3"),
        [
            "node 'node3' cannot take a replica: replicas-on-same 'Aux/rack' cannot be satisfied because the existing replicas already differ: 'node1' has Aux/rack=r1, 'node2' has Aux/rack=r2"
        ]
    );
}

#[test]
fn replicas_on_different_spreads_over_values() {
    let mut req = request(2, GIB);
    req.replicas_on_different = vec!["Aux/rack".into()];
    let cluster = [
        node("node1", 9 * GIB).prop("Aux/rack", "r1"),
        node("node2", 8 * GIB).prop("Aux/rack", "r1"),
        node("node3", GIB).prop("Aux/rack", "r2"),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node1:pool_ssd", "node3:pool_ssd"]
    );
    req.place_count = 3;
    let refusal = refused(&req, &cluster);
    assert_eq!(refusal.found, 2);
    assert_eq!(
        reason_for(&refusal, "node2"),
        [
            "node 'node2' qualifies (storage pool 'pool_ssd', 8 GiB free), but the qualifying nodes have only 2 distinct unused value(s) of 'Aux/rack' [Aux/rack=r1, Aux/rack=r2], and replicas-on-different needs 3"
        ]
    );
}

#[test]
fn replicas_on_different_avoids_the_existing_replicas_values() {
    let mut req = request(2, GIB);
    req.replicas_on_different = vec!["Aux/rack".into()];
    req.existing = vec![existing("node1", "pool_ssd", true)];
    let cluster = [
        node("node1", GIB).prop("Aux/rack", "r1"),
        node("node2", 9 * GIB).prop("Aux/rack", "r1"),
        node("node3", GIB).prop("Aux/rack", "r2"),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node3:pool_ssd"]
    );
    req.place_count = 3;
    assert_eq!(
        reason_for(&refused(&req, &cluster), "node2"),
        [
            "node 'node2' has Aux/rack=r1, like the existing replica on 'node1' (replicas-on-different)"
        ]
    );
}

#[test]
fn replicas_on_different_counts_nodes_without_the_key_as_one_value() {
    let mut req = request(2, GIB);
    req.replicas_on_different = vec!["Aux/rack".into()];
    let cluster = [
        node("node1", 9 * GIB),
        node("node2", 9 * GIB),
        node("node3", GIB).prop("Aux/rack", "r1"),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node1:pool_ssd", "node3:pool_ssd"]
    );
}

#[test]
fn x_replicas_on_different_caps_replicas_per_value() {
    let mut req = request(3, GIB);
    req.x_replicas_on_different.insert("Aux/zone".into(), 2);
    let cluster = [
        node("node1", 9 * GIB).prop("Aux/zone", "z1"),
        node("node2", 8 * GIB).prop("Aux/zone", "z1"),
        node("node3", 7 * GIB).prop("Aux/zone", "z1"),
        node("node4", GIB).prop("Aux/zone", "z2"),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node1:pool_ssd", "node2:pool_ssd", "node4:pool_ssd"]
    );
    req.place_count = 4;
    let refusal = refused(&req, &cluster);
    assert_eq!(refusal.found, 3);
    assert!(
        reason_for(&refusal, "node3")[0].ends_with(
            "but x-replicas-on-different 'Aux/zone' 2 leaves room for only 3 more replica(s) on the qualifying nodes [Aux/zone=z1: 2, Aux/zone=z2: 1], 4 needed"
        ),
        "{:?}",
        reason_for(&refusal, "node3")
    );
    // Existing replicas use up their value's room.
    req.place_count = 4;
    req.existing = vec![
        existing("node1", "pool_ssd", true),
        existing("node2", "pool_ssd", true),
    ];
    let refusal = refused(&req, &cluster);
    assert_eq!((refusal.wanted, refusal.found), (2, 1));
    assert_eq!(
        reason_for(&refusal, "node3"),
        [
            "node 'node3' has Aux/zone=z1, which already holds 2 replica(s) (on 'node1', 'node2'), the most x-replicas-on-different allows (2 per value)"
        ]
    );
}

#[test]
fn the_search_backtracks_when_the_greedy_choice_is_a_dead_end() {
    let mut req = request(2, GIB);
    req.replicas_on_different = vec!["Aux/rack".into()];
    req.x_replicas_on_different.insert("Aux/zone".into(), 1);
    let cluster = [
        node("node1", 10 * GIB)
            .prop("Aux/rack", "r1")
            .prop("Aux/zone", "z1"),
        node("node2", 9 * GIB)
            .prop("Aux/rack", "r1")
            .prop("Aux/zone", "z2"),
        node("node3", 8 * GIB)
            .prop("Aux/rack", "r2")
            .prop("Aux/zone", "z1"),
    ];
    assert_eq!(
        nodes_of(&place(&req, &cluster).unwrap()),
        ["node2:pool_ssd", "node3:pool_ssd"]
    );
}

#[test]
fn diskless_on_remaining_covers_every_other_available_node() {
    let mut req = request(1, GIB);
    req.diskless_on_remaining = true;
    req.existing = vec![];
    let mut offline = node("node4", GIB);
    offline.unavailable = Some("node 'node4' is offline".into());
    let mut no_drbd = node("node5", GIB);
    no_drbd.supported_layers = Some(vec![LayerKind::Storage]);
    let cluster = [
        node("node1", 9 * GIB),
        node("node2", GIB),
        node("node3", GIB).holding("r1"),
        offline,
        no_drbd,
        node("node6", GIB).with_pool(pool("diskless2", ProviderKind::Diskless, None)),
    ];
    let placement = place(&req, &cluster).unwrap();
    assert_eq!(nodes_of(&placement), ["node1:pool_ssd"]);
    assert_eq!(
        placement.diskless,
        vec![
            (n("node2"), sp("DfltDisklessStorPool")),
            (n("node6"), sp("DfltDisklessStorPool"))
        ]
    );
    req.diskless_storage_pools = vec![sp("diskless2")];
    assert_eq!(
        place(&req, &cluster).unwrap().diskless,
        vec![(n("node6"), sp("diskless2"))]
    );
}

#[test]
fn a_refusal_explains_every_node_in_readable_lines() {
    let mut req = request(3, 2 * GIB);
    req.storage_pools = vec![sp("pool_ssd")];
    let mut offline = node("node3", 9 * GIB);
    offline.unavailable = Some("node 'node3' is offline".into());
    let cluster = [node("node2", GIB), node("node1", 9 * GIB), offline];
    let refusal = refused(&req, &cluster);
    assert_eq!(
        refusal.to_string(),
        "Cannot place 3 new diskful replica(s) of resource 'r1': only 1 can be placed.\n\
         Criteria: 3 diskful replica(s) in total, 0 existing; 2 GiB free in one storage pool; \
         layers [DRBD, STORAGE]; storage pools [pool_ssd].\n\
         Why each node was not used:\n\
         \x20 - node 'node1' qualifies (storage pool 'pool_ssd', 9 GiB free), but only 1 node(s) qualify, 3 needed\n\
         \x20 - storage pool 'pool_ssd' on 'node2' has 1 GiB free, 2 GiB needed\n\
         \x20 - node 'node3' is offline"
    );
    let json = serde_json::to_value(&refusal).unwrap();
    assert_eq!(json["rejections"][1]["pool"], "pool_ssd");
    assert_eq!(
        refused(&request(1, GIB), &[]).summary(),
        "Cannot place 1 new diskful replica(s) of resource 'r1': none can be placed.\n\
         Criteria: 1 diskful replica(s) in total, 0 existing; 1 GiB free in one storage pool; \
         layers [DRBD, STORAGE].\nThere are no candidate nodes."
    );
}

#[test]
fn a_node_listed_twice_is_considered_once() {
    let cluster = [node("node1", 9 * GIB), node("node1", 9 * GIB)];
    let refusal = refused(&request(2, GIB), &cluster);
    assert_eq!(refusal.found, 1);
    assert!(
        reason_for(&refusal, "node1")
            .iter()
            .any(|r| r.contains("listed more than once"))
    );
}

/// Hundreds of nodes with every rule active stay fast, and the answer is valid and optimal
/// where the greedy choice is (one replicas-on-different key).
#[test]
fn hundreds_of_nodes_stay_fast() {
    let cluster: Vec<Candidate> = (0..400)
        .map(|i| {
            node(&format!("node{i:03}"), ((i as u64 * 7919) % 1000 + 1) * GIB)
                .prop("Aux/rack", &format!("r{}", i % 20))
                .prop("Aux/zone", &format!("z{}", i % 3))
                .prop("Aux/site", &format!("s{}", i % 2))
        })
        .collect();
    let mut req = request(6, GIB);
    req.replicas_on_different = vec!["Aux/rack".into()];
    req.x_replicas_on_different.insert("Aux/zone".into(), 2);
    req.replicas_on_same = vec!["Aux/site".into()];
    let started = Instant::now();
    let placement = place(&req, &cluster).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(placement.diskful.len(), 6);
    let oracle = Oracle::new(&req, &cluster).unwrap();
    let chosen: Vec<&Candidate> = placement
        .diskful
        .iter()
        .map(|(node, _)| *oracle.candidates.get(node).unwrap())
        .collect();
    assert!(oracle.rules_ok(&chosen));
    // Infeasible at scale: the refusal comes as fast.
    // Per site: 10 racks, 3 zones of at most 2 replicas each.
    req.place_count = 7;
    let refusal = refused(&req, &cluster);
    assert_eq!(refusal.found, 6);
    assert_eq!(refusal.rejections.len(), 400);
    assert!(
        refusal.rejections[0]
            .reason
            .contains("leaves room for only 6 more replica(s)"),
        "{}",
        refusal.rejections[0].reason
    );
    let elapsed = elapsed + started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

#[test]
fn rules_that_pass_one_by_one_but_not_together_are_named() {
    // Every two nodes share one of the three keys, although each key has two values.
    let mut req = request(2, GIB);
    req.replicas_on_different = vec!["Aux/rack".into(), "Aux/zone".into(), "Aux/site".into()];
    let cluster = [
        node("node1", GIB)
            .prop("Aux/rack", "r1")
            .prop("Aux/zone", "z1")
            .prop("Aux/site", "s1"),
        node("node2", GIB)
            .prop("Aux/rack", "r1")
            .prop("Aux/zone", "z2")
            .prop("Aux/site", "s2"),
        node("node3", GIB)
            .prop("Aux/rack", "r2")
            .prop("Aux/zone", "z1")
            .prop("Aux/site", "s2"),
    ];
    let refusal = refused(&req, &cluster);
    assert_eq!(refusal.found, 1);
    assert_eq!(
        reason_for(&refusal, "node3"),
        [
            "node 'node3' qualifies (storage pool 'pool_ssd', 1 GiB free), but no 2 qualifying nodes together satisfy replicas-on-different 'Aux/rack' and replicas-on-different 'Aux/zone' and replicas-on-different 'Aux/site'"
        ]
    );
}
