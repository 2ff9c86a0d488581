//! Tests of the generation identifiers: scenarios from DRBD's documentation, and a model of a
//! cluster whose members write, partition and reconnect, checked against the true lineage of
//! the data.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn node(id: u32) -> NodeId {
    NodeId::new(id).unwrap()
}

fn mask(ids: &[u32]) -> NodeMask {
    ids.iter().map(|id| node(*id)).collect()
}

fn uuid(n: u64) -> Uuid {
    Uuid::new_generation(n << 8)
}

/// A set on generation `current` (day 0 after a skipped initial sync).
fn day0(current: Uuid) -> GenerationSet {
    let mut set = GenerationSet::just_created();
    set.accept_skip_initial_sync(current).unwrap();
    set
}

fn check_symmetric(a: &GenerationSet, a_id: NodeId, b: &GenerationSet, b_id: NodeId) -> Decision {
    let ab = decide(a, a_id, b, b_id);
    let ba = decide(b, b_id, a, a_id);
    assert_eq!(ba, ab.mirrored(), "asymmetric: {a:?} vs {b:?}");
    ab
}

// ---------------------------------------------------------------------------------------------
// Values

#[test]
fn uuid_equality_ignores_the_primary_bit() {
    let u = uuid(7);
    assert_eq!(u, u.with_primary(true));
    assert!(u.with_primary(true).is_primary());
    assert!(!u.is_primary());
    assert_ne!(u.raw(), u.with_primary(true).raw());
    assert_eq!(format!("{}", Uuid::from_raw(0xAB)), "00000000000000AB");
}

#[test]
fn new_generations_are_never_reserved_values() {
    for random in [0, 1, 4, 5, u64::MAX, 0x8000_0000_0000_0004] {
        let u = Uuid::new_generation(random);
        assert!(!u.is_just_created(), "{random:#x} gave {u}");
        assert!(!u.is_primary());
    }
}

#[test]
fn node_ids_stop_at_31() {
    assert_eq!(NodeId::new(31).unwrap().get(), 31);
    assert_eq!(NodeId::new(32), Err(InvalidNodeId(32)));
    assert_eq!(
        InvalidNodeId(40).to_string(),
        "node-id 40 is out of range (0-31)"
    );
    assert_eq!(
        mask(&[0, 3, 31])
            .iter()
            .map(NodeId::get)
            .collect::<Vec<_>>(),
        vec![0, 3, 31]
    );
    assert_eq!(mask(&[0, 3, 31]).len(), 3);
}

#[test]
fn unknown_flag_bits_are_refused() {
    assert_eq!(GiFlags::from_bits(1 << 1), Ok(GiFlags::CRASHED_PRIMARY));
    assert_eq!(GiFlags::from_bits(1 << 20), Err(1 << 20));
}

#[test]
fn history_keeps_the_newest_32() {
    let mut set = day0(uuid(1));
    for n in 2..50 {
        set.start_new_generation(node(0), uuid(n), mask(&[1]))
            .unwrap();
        set.mark_in_sync_with(node(1));
    }
    assert_eq!(set.current, uuid(49));
    assert_eq!(set.history[0], uuid(48));
    assert_eq!(
        set.history[HISTORY_UUIDS - 1],
        uuid(48 - HISTORY_UUIDS as u64 + 1)
    );
    assert!(!set.in_history(uuid(1)));
}

#[test]
fn decision_reads_like_drbd() {
    let d = Decision {
        outcome: Outcome::SyncTarget(ResyncKind::Bitmap),
        rule: Rule::BitmapPeer,
    };
    assert_eq!(d.to_string(), "sync-target (bitmap) by rule=bitmap-peer");
    assert_eq!(
        d.mirrored().to_string(),
        "sync-source (bitmap) by rule=bitmap-self"
    );
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[test]
fn fresh_resource() {
    let a = GenerationSet::just_created();
    let b = GenerationSet::just_created();
    let d = check_symmetric(&a, node(0), &b, node(1));
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::NoSync,
            rule: Rule::JustCreatedBoth
        }
    );

    // A forced promotion gives node 0 data; node 1 gets a full sync.
    let mut a = a;
    assert!(
        a.start_new_generation(node(0), uuid(1), mask(&[1]))
            .unwrap()
    );
    let d = check_symmetric(&a, node(0), &b, node(1));
    assert_eq!(d.outcome, Outcome::SyncSource(ResyncKind::Full));
    assert_eq!(d.rule, Rule::JustCreatedPeer);
}

#[test]
fn skipping_the_initial_sync() {
    let mut a = GenerationSet::just_created();
    a.new_current_uuid_clear_bitmap(node(0), uuid(1)).unwrap();
    let mut b = GenerationSet::just_created();
    b.accept_skip_initial_sync(a.current).unwrap();
    let d = check_symmetric(&a, node(0), &b, node(1));
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::NoSync,
            rule: Rule::EqualCurrent
        }
    );
    assert!(a.is_day0() && b.is_day0());
    // Only a volume without data may adopt a generation this way.
    assert_eq!(
        b.accept_skip_initial_sync(uuid(2)),
        Err(GiError::NotJustCreated { current: uuid(1) })
    );
    assert!(matches!(
        a.new_current_uuid_clear_bitmap(node(0), Uuid::JUST_CREATED),
        Err(GiError::ReservedUuid { .. })
    ));
}

#[test]
fn peer_restart_is_a_bitmap_resync_toward_it() {
    let (a_id, b_id) = (node(0), node(1));
    let mut a = day0(uuid(1));
    let mut b = day0(uuid(1));
    a.set_primary(true);
    // B restarts; A's first write after losing it starts a new generation.
    let mut trigger = NewGenerationTrigger::default();
    trigger.peer_lost(true);
    assert!(
        trigger
            .before_write(&mut a, a_id, uuid(2), mask(&[1]))
            .unwrap()
    );
    assert!(!trigger.is_pending());
    assert_eq!(a.bitmap_uuid(b_id), uuid(1));
    assert!(a.current.is_primary());
    // Later writes do not start another.
    assert!(
        !trigger
            .before_write(&mut a, a_id, uuid(3), mask(&[1]))
            .unwrap()
    );
    assert!(!a.start_new_generation(a_id, uuid(3), mask(&[1])).unwrap());

    let d = check_symmetric(&a, a_id, &b, b_id);
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::SyncSource(ResyncKind::Bitmap),
            rule: Rule::BitmapSelf
        }
    );

    let start = b.current;
    b.finish_resync_as_target(b_id, a_id, &a, start, NodeMask::EMPTY);
    assert!(a.finish_resync_as_source(b_id));
    assert_eq!(b.current, a.current);
    assert!(!b.current.is_primary(), "the target keeps its own role bit");
    let d = check_symmetric(&a, a_id, &b, b_id);
    assert_eq!(d.outcome, Outcome::NoSync);
}

#[test]
fn promotion_with_a_connected_peer_on_day0_rotates_once() {
    // DRBD retires the day-0 UUID on the first write of a Primary, even with every peer there.
    let mut a = day0(uuid(1));
    let mut b = day0(uuid(1));
    let mut trigger = NewGenerationTrigger::default();
    trigger.promoted();
    assert!(
        trigger
            .before_write(&mut a, node(0), uuid(2), NodeMask::EMPTY)
            .unwrap()
    );
    b.adopt_new_current(node(1), node(0), a.current, NodeMask::EMPTY)
        .unwrap();
    assert_eq!(
        check_symmetric(&a, node(0), &b, node(1)).outcome,
        Outcome::NoSync
    );
    assert!(a.in_history(uuid(1)) && b.in_history(uuid(1)));
    // Not day 0 any more: promotion again with everybody connected changes nothing.
    trigger.promoted();
    assert!(
        !trigger
            .before_write(&mut a, node(0), uuid(3), NodeMask::EMPTY)
            .unwrap()
    );
}

#[test]
fn primary_crash_without_writes_on_the_survivor() {
    let mut a = day0(uuid(1));
    let b = day0(uuid(1));
    a.flags.insert(GiFlags::CRASHED_PRIMARY);
    let d = check_symmetric(&a, node(0), &b, node(1));
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::SyncTarget(ResyncKind::Bitmap),
            rule: Rule::CrashedPrimary
        }
    );
    a.finish_resync_as_target(node(0), node(1), &b, a.current, NodeMask::EMPTY);
    assert!(!a.flags.contains(GiFlags::CRASHED_PRIMARY));
    assert_eq!(
        check_symmetric(&a, node(0), &b, node(1)).outcome,
        Outcome::NoSync
    );
}

#[test]
fn primary_crash_and_the_survivor_took_over() {
    let (a_id, b_id) = (node(0), node(1));
    let mut a = day0(uuid(1));
    let mut b = day0(uuid(1));
    a.flags.insert(GiFlags::CRASHED_PRIMARY);
    // B is promoted with A unreachable and writes.
    assert!(b.start_new_generation(b_id, uuid(2), mask(&[0])).unwrap());
    let d = check_symmetric(&a, a_id, &b, b_id);
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::SyncTarget(ResyncKind::Bitmap),
            rule: Rule::BitmapPeer
        }
    );
}

#[test]
fn both_crashed_as_primary_lower_node_id_is_source() {
    let mut a = day0(uuid(1));
    let mut b = day0(uuid(1));
    a.flags.insert(GiFlags::CRASHED_PRIMARY);
    b.flags.insert(GiFlags::CRASHED_PRIMARY);
    let d = check_symmetric(&a, node(2), &b, node(5));
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::SyncSource(ResyncKind::Bitmap),
            rule: Rule::BothOff
        }
    );
}

#[test]
fn primary_that_lost_quorum_is_the_target() {
    let mut a = day0(uuid(1));
    let b = day0(uuid(1));
    a.flags.insert(GiFlags::PRIMARY_LOST_QUORUM);
    let d = check_symmetric(&a, node(0), &b, node(1));
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::SyncTarget(ResyncKind::Bitmap),
            rule: Rule::LostQuorum
        }
    );
}

#[test]
fn both_wrote_while_partitioned_is_a_split_brain() {
    let (a_id, b_id) = (node(0), node(1));
    let mut a = day0(uuid(1));
    let mut b = day0(uuid(1));
    a.start_new_generation(a_id, uuid(2), mask(&[1])).unwrap();
    b.start_new_generation(b_id, uuid(3), mask(&[0])).unwrap();
    let d = check_symmetric(&a, a_id, &b, b_id);
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::SplitBrain(SplitBrainKind::CommonParent),
            rule: Rule::BitmapBoth
        }
    );
    // Nobody discards: still refused. B discards: B is a bitmap target.
    assert_eq!(d.resolve_split_brain(false, false), d);
    assert_eq!(d.resolve_split_brain(true, true), d);
    let resolved = d.resolve_split_brain(false, true);
    assert_eq!(resolved.outcome, Outcome::SyncSource(ResyncKind::Bitmap));
    assert_eq!(resolved.rule, Rule::BitmapBoth);

    // B adopts A's data; its own generation 3 is forgotten, not kept as an "ancestor".
    b.flags.insert(GiFlags::DISCARD_MY_DATA);
    b.finish_resync_as_target(b_id, a_id, &a, b.current, NodeMask::EMPTY);
    assert!(!b.flags.contains(GiFlags::DISCARD_MY_DATA));
    assert!(!b.knows_ancestor(uuid(3)));
    assert_eq!(check_symmetric(&a, a_id, &b, b_id).outcome, Outcome::NoSync);
}

#[test]
fn diverged_generations_share_only_history() {
    // A and B split at 1, each wrote twice with other peers gone, and their bitmap UUIDs toward
    // each other moved on: only the histories still share 1.
    let (a_id, b_id) = (node(0), node(1));
    let mut a = day0(uuid(1));
    let mut b = day0(uuid(1));
    a.start_new_generation(a_id, uuid(2), mask(&[1, 2]))
        .unwrap();
    b.start_new_generation(b_id, uuid(3), mask(&[0, 2]))
        .unwrap();
    a.bitmap[b_id.index()] = uuid(20);
    b.bitmap[a_id.index()] = uuid(30);
    let d = check_symmetric(&a, a_id, &b, b_id);
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::SplitBrain(SplitBrainKind::Diverged),
            rule: Rule::HistoryBoth
        }
    );
    assert_eq!(
        d.resolve_split_brain(true, false).outcome,
        Outcome::SyncTarget(ResyncKind::Full)
    );
}

#[test]
fn strangers_are_unrelated() {
    let a = day0(uuid(1));
    let b = day0(uuid(2));
    let d = check_symmetric(&a, node(0), &b, node(1));
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::Unrelated,
            rule: Rule::UnrelatedData
        }
    );
    assert_eq!(
        d.resolve_split_brain(true, false),
        d,
        "unrelated data is never resolved"
    );
}

#[test]
fn full_resync_after_a_history_match() {
    // A moved through generations 2 and 3 while B was away; A's bitmap UUID toward B was later
    // cleared (B resynced from a third member, then went away again at generation 1's
    // successor chain): B's current is only in A's history.
    let (a_id, b_id) = (node(0), node(1));
    let mut a = day0(uuid(1));
    let b = day0(uuid(1));
    a.start_new_generation(a_id, uuid(2), mask(&[1])).unwrap();
    a.mark_in_sync_with(b_id);
    assert!(a.in_history(uuid(1)));
    let d = check_symmetric(&a, a_id, &b, b_id);
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::SyncSource(ResyncKind::Full),
            rule: Rule::HistorySelf
        }
    );
}

#[test]
fn bitmap_of_another_node() {
    // Three members at 1. C leaves; A writes (2) with B connected. B leaves too; A writes (3).
    // C comes back to B: B's bitmap toward C says 1, C's current: bitmap-self.
    // C comes back to A instead: A's bitmap toward C is 1 as well: bitmap-self.
    // B comes back to ... a node that only has C's slot at 2 — build it directly.
    let (a_id, b_id, c_id) = (node(0), node(1), node(2));
    let mut a = day0(uuid(1));
    let mut b = day0(uuid(1));
    let c = day0(uuid(1));
    a.start_new_generation(a_id, uuid(2), mask(&[2])).unwrap();
    b.adopt_new_current(b_id, a_id, uuid(2), mask(&[2]))
        .unwrap();
    assert_eq!(b.bitmap_uuid(c_id), uuid(1));
    a.start_new_generation(a_id, uuid(3), mask(&[1, 2]))
        .unwrap();
    assert_eq!(a.bitmap_uuid(b_id), uuid(2));
    assert_eq!(
        a.bitmap_uuid(c_id),
        uuid(1),
        "an older bitmap UUID keeps counting"
    );

    // B (at 2) meets a node D that knows 2 only as its bitmap UUID toward B's neighbour A.
    let d_id = node(3);
    let mut d = day0(uuid(1));
    d.bitmap[a_id.index()] = uuid(2);
    d.current = uuid(9);
    d.history[0] = uuid(2);
    let decision = check_symmetric(&b, b_id, &d, d_id);
    assert_eq!(
        decision,
        Decision {
            outcome: Outcome::SyncTarget(ResyncKind::OtherBitmap { via: a_id }),
            rule: Rule::BitmapPeerOther
        }
    );
    let _ = c;
}

#[test]
fn a_stale_bitmap_uuid_is_learnt_from_a_peer_in_sync() {
    // A and Y write generation 1 while X is away (A's slot toward X: 0 → 1 at generation 2).
    // X resyncs from Y while A is alone and idle. Y comes back to A: same generation, and Y's
    // slot toward X is zero, so A learns X is on its generation. Then A's next write with X
    // away must start a new generation, or a later handshake with X (which wrote on its own)
    // would take A's writes for the older side.
    let (a_id, x_id, y_id) = (node(0), node(1), node(2));
    let mut a = day0(uuid(1));
    let mut x = day0(uuid(1));
    let mut y = day0(uuid(1));
    a.start_new_generation(a_id, uuid(2), mask(&[1])).unwrap();
    y.adopt_new_current(y_id, a_id, uuid(2), mask(&[1]))
        .unwrap();
    // X resyncs from Y.
    assert_eq!(
        check_symmetric(&y, y_id, &x, x_id).outcome,
        Outcome::SyncSource(ResyncKind::Bitmap)
    );
    let start = x.current;
    x.finish_resync_as_target(x_id, y_id, &y, start, NodeMask::EMPTY);
    y.finish_resync_as_source(x_id);
    // Y and A reconnect: same generation; A learns about X.
    assert_eq!(check_symmetric(&a, a_id, &y, y_id).outcome, Outcome::NoSync);
    assert_eq!(a.learn_in_sync_peers(a_id, y_id, &y), mask(&[1]));
    assert!(a.bitmap_uuid(x_id).is_zero());
    // Now A writes with X away: a new generation.
    assert!(a.start_new_generation(a_id, uuid(3), mask(&[1])).unwrap());
    // X writes on its own.
    assert!(
        x.start_new_generation(x_id, uuid(4), mask(&[0, 2]))
            .unwrap()
    );
    let d = check_symmetric(&a, a_id, &x, x_id);
    assert!(matches!(d.outcome, Outcome::SplitBrain(_)), "{d}");
}

#[test]
fn the_newest_side_of_a_resync_chain_keeps_tracking() {
    // A at 2 with a slot toward C at 1. B resyncs from A; C is behind A, so B's slot toward C
    // counts from B's old generation (1) — the blocks the resync wrote are what changed.
    let (a_id, b_id, c_id) = (node(0), node(1), node(2));
    let mut a = day0(uuid(1));
    let mut b = day0(uuid(1));
    let c = day0(uuid(1));
    a.start_new_generation(a_id, uuid(2), mask(&[1, 2]))
        .unwrap();
    let start = b.current;
    let finished = b.finish_resync_as_target(b_id, a_id, &a, start, NodeMask::EMPTY);
    assert!(finished.tracking.contains(c_id));
    assert!(finished.cleared.contains(a_id));
    assert_eq!(b.bitmap_uuid(c_id), uuid(1));
    let d = check_symmetric(&b, b_id, &c, c_id);
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::SyncSource(ResyncKind::Bitmap),
            rule: Rule::BitmapSelf
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Properties on constructed sets

/// Sets that share `common` history and then diverge: each side made its own generations.
fn arb_divergent() -> impl Strategy<Value = (GenerationSet, GenerationSet)> {
    (1usize..6, 1usize..6, 1usize..6, any::<u64>(), any::<bool>()).prop_map(
        |(common, left, right, seed, keep_bitmaps)| {
            let mut next = seed | 1;
            let mut fresh = || {
                next = next
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                Uuid::new_generation(next)
            };
            let mut a = day0(fresh());
            let a_id = node(0);
            for _ in 1..common {
                a.start_new_generation(a_id, fresh(), mask(&[5])).unwrap();
                a.mark_in_sync_with(node(5));
            }
            let mut b = a.clone();
            for _ in 0..left {
                a.start_new_generation(a_id, fresh(), mask(&[1])).unwrap();
                if !keep_bitmaps {
                    a.mark_in_sync_with(node(1));
                }
            }
            for _ in 0..right {
                b.start_new_generation(node(1), fresh(), mask(&[0]))
                    .unwrap();
                if !keep_bitmaps {
                    b.mark_in_sync_with(node(0));
                }
            }
            (a, b)
        },
    )
}

fn arb_set() -> impl Strategy<Value = GenerationSet> {
    // A small alphabet (0 = unused), so that matches happen.
    let values = proptest::collection::vec(0u64..12, 1 + MAX_NODES + HISTORY_UUIDS);
    (values, 0u32..4).prop_map(|(values, flags)| {
        let to_uuid = |v: u64| if v == 0 { Uuid::ZERO } else { uuid(v) };
        let mut set = GenerationSet::just_created();
        set.current = to_uuid(values[0]);
        for (slot, v) in set.bitmap.iter_mut().zip(&values[1..]) {
            *slot = to_uuid(*v);
        }
        for (slot, v) in set.history.iter_mut().zip(&values[1 + MAX_NODES..]) {
            *slot = to_uuid(*v);
        }
        if flags & 1 != 0 {
            set.flags.insert(GiFlags::CRASHED_PRIMARY);
        }
        if flags & 2 != 0 {
            set.flags.insert(GiFlags::PRIMARY_LOST_QUORUM);
        }
        set
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Divergent histories always give a split brain or unrelated data, never a resync or
    /// "in sync", whichever side asks.
    #[test]
    fn no_silent_merge((a, b) in arb_divergent()) {
        let d = check_symmetric(&a, node(0), &b, node(1));
        prop_assert!(
            matches!(d.outcome, Outcome::SplitBrain(_) | Outcome::Unrelated),
            "divergent sets decided {}", d
        );
    }

    /// Any pair of sets, even ones no transition produces: the rule and the outcome agree, and
    /// the table never claims sync between different generations.
    #[test]
    fn rules_and_outcomes_agree(a in arb_set(), b in arb_set(), ids in (0u32..32, 0u32..32)) {
        prop_assume!(ids.0 != ids.1);
        let d = decide(&a, node(ids.0), &b, node(ids.1));
        let expected = match d.rule {
            Rule::JustCreatedBoth | Rule::EqualCurrent => Some(Outcome::NoSync),
            Rule::JustCreatedSelf | Rule::HistoryPeer => Some(Outcome::SyncTarget(ResyncKind::Full)),
            Rule::JustCreatedPeer | Rule::HistorySelf => Some(Outcome::SyncSource(ResyncKind::Full)),
            Rule::BitmapPeer => Some(Outcome::SyncTarget(ResyncKind::Bitmap)),
            Rule::BitmapSelf => Some(Outcome::SyncSource(ResyncKind::Bitmap)),
            Rule::BitmapBoth => Some(Outcome::SplitBrain(SplitBrainKind::CommonParent)),
            Rule::HistoryBoth => Some(Outcome::SplitBrain(SplitBrainKind::Diverged)),
            Rule::UnrelatedData => Some(Outcome::Unrelated),
            _ => None,
        };
        if let Some(expected) = expected {
            prop_assert_eq!(d.outcome, expected);
        }
        if d.outcome == Outcome::NoSync {
            prop_assert_eq!(a.current, b.current);
        }
        if a.current != b.current && !a.current.is_just_created() && !b.current.is_just_created() {
            prop_assert!(!matches!(d.rule, Rule::EqualCurrent | Rule::CrashedPrimary | Rule::BothOff | Rule::LostQuorum));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster model

/// One step of the model.
#[derive(Debug, Clone)]
enum Event {
    /// Regroup the members: member i joins group `groups[i] % 3`; members of a group are all
    /// connected to each other, and to nobody else.
    Partition(Vec<u8>),
    /// Member i writes (it is Primary of its group; the model ignores quorum on purpose, so
    /// that split brains happen).
    Write(usize),
    /// Member i writes, then crashes as Primary: alone, with the crashed-primary flag.
    Crash(usize),
}

struct Cluster {
    ids: Vec<NodeId>,
    sets: Vec<GenerationSet>,
    group: Vec<u8>,
    /// The data each member holds: the last write it has (`None`: no data yet). Every write
    /// reaches every member of the writer's group, as protocol C does.
    data: Vec<Option<u64>>,
    /// The true lineage of the data: write → the write it was made on top of.
    parent: HashMap<u64, u64>,
    next_write: u64,
    next_random: u64,
    split_brains: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Relation {
    BothEmpty,
    LeftEmpty,
    RightEmpty,
    Equal,
    LeftOlder,
    RightOlder,
    Divergent,
}

impl Cluster {
    fn new(ids: Vec<NodeId>, skip_initial_sync: bool, seed: u64) -> Self {
        let n = ids.len();
        let mut cluster = Cluster {
            ids,
            sets: vec![GenerationSet::just_created(); n],
            group: vec![0; n],
            data: vec![None; n],
            parent: HashMap::new(),
            next_write: 1,
            next_random: seed,
            split_brains: 0,
        };
        let first = cluster.fresh_uuid();
        cluster.data[0] = Some(0);
        if skip_initial_sync {
            let me = cluster.ids[0];
            cluster.sets[0]
                .new_current_uuid_clear_bitmap(me, first)
                .unwrap();
            for i in 1..n {
                cluster.sets[i].accept_skip_initial_sync(first).unwrap();
                cluster.data[i] = Some(0);
            }
        } else {
            // A forced promotion of member 0; the others get a full sync when they connect.
            let me = cluster.ids[0];
            let others: NodeMask = cluster.ids[1..].iter().copied().collect();
            assert!(
                cluster.sets[0]
                    .start_new_generation(me, first, others)
                    .unwrap()
            );
            cluster.reconcile();
        }
        cluster
    }

    fn fresh_uuid(&mut self) -> Uuid {
        // splitmix64
        self.next_random = self.next_random.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.next_random;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Uuid::new_generation(z ^ (z >> 31))
    }

    fn members_of(&self, group: u8) -> Vec<usize> {
        (0..self.ids.len())
            .filter(|i| self.group[*i] == group)
            .collect()
    }

    fn absent_from(&self, i: usize) -> NodeMask {
        (0..self.ids.len())
            .filter(|j| self.group[*j] != self.group[i])
            .map(|j| self.ids[j])
            .collect()
    }

    fn is_ancestor(&self, older: u64, newer: u64) -> bool {
        let mut at = newer;
        while let Some(parent) = self.parent.get(&at) {
            if *parent == older {
                return true;
            }
            at = *parent;
        }
        false
    }

    /// How the data of members a and b relate, by the true lineage of writes (not by what the
    /// generation sets say).
    fn relation(&self, a: usize, b: usize) -> Relation {
        let (da, db) = match (self.data[a], self.data[b]) {
            (None, None) => return Relation::BothEmpty,
            (None, Some(_)) => return Relation::LeftEmpty,
            (Some(_), None) => return Relation::RightEmpty,
            (Some(da), Some(db)) => (da, db),
        };
        if da == db {
            Relation::Equal
        } else if self.is_ancestor(da, db) {
            Relation::LeftOlder
        } else if self.is_ancestor(db, da) {
            Relation::RightOlder
        } else {
            Relation::Divergent
        }
    }

    fn apply(&mut self, event: &Event) -> Result<(), TestCaseError> {
        match event {
            Event::Partition(groups) => {
                for (i, g) in groups.iter().enumerate().take(self.ids.len()) {
                    self.group[i] = g % 3;
                }
                self.reconcile_checked()?;
            }
            Event::Write(i) => self.write(*i % self.ids.len())?,
            Event::Crash(i) => {
                let i = *i % self.ids.len();
                self.write(i)?;
                if !self.sets[i].current.is_just_created() {
                    self.sets[i].flags.insert(GiFlags::CRASHED_PRIMARY);
                }
                self.group[i] = 10 + i as u8;
            }
        }
        Ok(())
    }

    fn write(&mut self, writer: usize) -> Result<(), TestCaseError> {
        if self.sets[writer].current.is_just_created() {
            return Ok(()); // no data: it cannot be Primary
        }
        let absent = self.absent_from(writer);
        let new = self.fresh_uuid();
        let old = self.sets[writer].current;
        let me = self.ids[writer];
        let write = self.next_write;
        self.next_write += 1;
        let before = self.data[writer];
        self.parent
            .insert(write, before.expect("a writer has data"));
        for j in self.members_of(self.group[writer]) {
            prop_assert_eq!(self.data[j], before, "group members hold the same data");
            self.data[j] = Some(write);
        }
        if self.sets[writer]
            .start_new_generation(me, new, absent)
            .unwrap()
        {
            for j in self.members_of(self.group[writer]) {
                if j == writer {
                    continue;
                }
                prop_assert_eq!(self.sets[j].current, old, "group members are in sync");
                let id = self.ids[j];
                self.sets[j].adopt_new_current(id, me, new, absent).unwrap();
            }
        }
        Ok(())
    }

    fn reconcile(&mut self) {
        self.reconcile_checked().unwrap();
    }

    /// Every group hand-shakes pair by pair until all its members are on one generation.
    fn reconcile_checked(&mut self) -> Result<(), TestCaseError> {
        let groups: Vec<u8> = {
            let mut g = self.group.clone();
            g.sort();
            g.dedup();
            g
        };
        for group in groups {
            let members = self.members_of(group);
            let mut rounds = 0;
            'again: loop {
                rounds += 1;
                prop_assert!(rounds < 200, "group {} does not converge", group);
                for (x, &a) in members.iter().enumerate() {
                    for &b in &members[x + 1..] {
                        if self.handshake(a, b, &members)? {
                            continue 'again;
                        }
                    }
                }
                break;
            }
            // Converged: one generation, and everybody learnt who is in sync.
            for &a in &members {
                prop_assert_eq!(self.sets[a].current, self.sets[members[0]].current);
                for &b in &members {
                    if a != b {
                        let (a_id, b_id) = (self.ids[a], self.ids[b]);
                        let peer = self.sets[b].clone();
                        self.sets[a].learn_in_sync_peers(a_id, b_id, &peer);
                    }
                }
            }
        }
        Ok(())
    }

    /// One handshake between members a and b; returns whether anything changed.
    fn handshake(&mut self, a: usize, b: usize, members: &[usize]) -> Result<bool, TestCaseError> {
        let (a_id, b_id) = (self.ids[a], self.ids[b]);
        let ab = decide(&self.sets[a], a_id, &self.sets[b], b_id);
        let ba = decide(&self.sets[b], b_id, &self.sets[a], a_id);
        prop_assert_eq!(
            ba,
            ab.mirrored(),
            "asymmetric decision between {} and {}",
            a_id,
            b_id
        );

        let relation = self.relation(a, b);
        match relation {
            Relation::Divergent => prop_assert!(
                matches!(ab.outcome, Outcome::SplitBrain(_) | Outcome::Unrelated),
                "silent merge of divergent data: {}",
                ab
            ),
            // Older data on the same generation would be resynced only if the bitmaps happen
            // to cover it: the generations must tell the two apart.
            Relation::LeftOlder | Relation::LeftEmpty => prop_assert!(
                matches!(ab.outcome, Outcome::SyncTarget(_)),
                "the older side is not the target: {} ({:?})",
                ab,
                relation
            ),
            Relation::RightOlder | Relation::RightEmpty => prop_assert!(
                matches!(ab.outcome, Outcome::SyncSource(_)),
                "the newer side is not the source: {} ({:?})",
                ab,
                relation
            ),
            Relation::Equal => prop_assert!(
                matches!(
                    ab.outcome,
                    Outcome::NoSync
                        | Outcome::SyncSource(ResyncKind::Bitmap)
                        | Outcome::SyncTarget(ResyncKind::Bitmap)
                ),
                "equal generations: {}",
                ab
            ),
            Relation::BothEmpty => prop_assert_eq!(ab.outcome, Outcome::NoSync),
        }

        // The operator keeps one generation for the whole group: the one the member with the
        // lowest node-id holding either side's generation has; the other side discards.
        let lowest_holder = |x: usize| {
            members
                .iter()
                .filter(|m| self.sets[**m].current == self.sets[x].current)
                .map(|m| self.ids[*m])
                .min()
        };
        let victim_is_a = lowest_holder(a) > lowest_holder(b);
        let decision = match ab.outcome {
            Outcome::NoSync => {
                // The model's bitmaps toward each other are empty once the generations agree.
                let changed_a = self.sets[a].mark_in_sync_with(b_id);
                let changed_b = self.sets[b].mark_in_sync_with(a_id);
                return Ok(changed_a || changed_b);
            }
            Outcome::SplitBrain(_) => {
                self.split_brains += 1;
                ab.resolve_split_brain(victim_is_a, !victim_is_a)
            }
            Outcome::Unrelated => {
                // The operator recreates the metadata of every member on the losing side.
                let loser = self.sets[if victim_is_a { a } else { b }].current;
                for m in members {
                    if self.sets[*m].current == loser {
                        self.sets[*m] = GenerationSet::just_created();
                        self.data[*m] = None;
                    }
                }
                return Ok(true);
            }
            _ => ab,
        };
        let (source, target) = match decision.outcome {
            Outcome::SyncSource(_) => (a, b),
            Outcome::SyncTarget(_) => (b, a),
            other => panic!("resolution left {other:?}"),
        };
        let on_source_current: NodeMask = members
            .iter()
            .filter(|m| {
                **m != source
                    && **m != target
                    && self.sets[**m].current == self.sets[source].current
            })
            .map(|m| self.ids[*m])
            .collect();
        let source_set = self.sets[source].clone();
        let start = self.sets[target].current;
        let (s_id, t_id) = (self.ids[source], self.ids[target]);
        self.sets[target].finish_resync_as_target(
            t_id,
            s_id,
            &source_set,
            start,
            on_source_current,
        );
        self.sets[source].finish_resync_as_source(t_id);
        self.data[target] = self.data[source];
        Ok(true)
    }
}

fn arb_event(n: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => proptest::collection::vec(0u8..3, n).prop_map(Event::Partition),
        4 => (0..n).prop_map(Event::Write),
        1 => (0..n).prop_map(Event::Crash),
    ]
}

fn arb_cluster_run() -> impl Strategy<Value = (Vec<NodeId>, bool, u64, Vec<Event>)> {
    (2usize..=5).prop_flat_map(|n| {
        (
            proptest::sample::subsequence((0..MAX_NODES as u32).collect::<Vec<_>>(), n)
                .prop_shuffle()
                .prop_map(|ids| ids.into_iter().map(node).collect::<Vec<_>>()),
            any::<bool>(),
            any::<u64>(),
            proptest::collection::vec(arb_event(n), 1..24),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Members write, partition, crash and reconnect at random. At every handshake both sides
    /// reach mirrored decisions; divergent data is never merged silently; the older side is
    /// always the target; and every group converges on one generation.
    #[test]
    fn cluster_model((ids, skip, seed, events) in arb_cluster_run()) {
        let mut cluster = Cluster::new(ids, skip, seed);
        for event in &events {
            cluster.apply(event)?;
        }
        // Heal: everybody in one group, everybody converges.
        let everyone = vec![0; cluster.ids.len()];
        cluster.apply(&Event::Partition(everyone))?;
        let first = cluster.sets[0].current;
        for set in &cluster.sets {
            prop_assert_eq!(set.current, first);
        }
    }
}

#[test]
fn the_model_meets_split_brains() {
    // Two members, partitioned, both write: the model must see (and resolve) a split brain.
    let mut cluster = Cluster::new(vec![node(0), node(1)], true, 7);
    cluster.apply(&Event::Partition(vec![0, 1])).unwrap();
    cluster.apply(&Event::Write(0)).unwrap();
    cluster.apply(&Event::Write(1)).unwrap();
    cluster.apply(&Event::Partition(vec![0, 0])).unwrap();
    assert_eq!(cluster.split_brains, 1);
    assert_eq!(cluster.sets[0].current, cluster.sets[1].current);
}

/// Runs that once broke the model (the proptest regression file replays them too; these name
/// what each one caught).
#[test]
fn model_regressions() {
    let runs: [(&[u32], Vec<Event>); 3] = [
        // A resync target lost its old generation from the history: a false split brain.
        (
            &[0, 3, 18, 26],
            vec![
                Event::Partition(vec![0, 1, 1, 0]),
                Event::Write(1),
                Event::Partition(vec![2, 2, 0, 0]),
                Event::Partition(vec![1, 0, 0, 2]),
                Event::Write(1),
            ],
        ),
        // Without learning third parties' sync from a peer on the same generation, a write
        // without a new generation was later overwritten by the "newer" side (silent loss).
        (
            &[3, 20, 31],
            vec![
                Event::Partition(vec![1, 0, 0]),
                Event::Write(1),
                Event::Partition(vec![2, 0, 2]),
                Event::Partition(vec![0, 2, 2]),
                Event::Write(1),
                Event::Partition(vec![0, 0, 0]),
            ],
        ),
        // Unrelated data resolved one member at a time never converged.
        (
            &[4, 30, 3],
            vec![
                Event::Partition(vec![0, 1, 0]),
                Event::Write(1),
                Event::Partition(vec![1, 0, 0]),
                Event::Write(0),
                Event::Partition(vec![1, 1, 0]),
                Event::Partition(vec![0, 0, 0]),
            ],
        ),
    ];
    for (ids, events) in runs {
        let mut cluster = Cluster::new(ids.iter().map(|id| node(*id)).collect(), false, 0);
        for event in &events {
            cluster.apply(event).unwrap();
        }
    }
}

fn side(primary: bool, has_writer: bool, out_of_sync_toward_other: bool) -> HandshakeSide {
    HandshakeSide {
        primary,
        has_writer,
        out_of_sync_toward_other,
    }
}

proptest! {
    /// Reconciling is symmetric (each side decides alone and both agree), resyncs only when a
    /// side holds bits toward the other, and never makes a Primary, or the only side that
    /// applies a Primary's writes, the target.
    #[test]
    fn reconciling_agrees_on_both_sides_and_keeps_the_writer_as_source(
        a in (any::<bool>(), any::<bool>(), any::<bool>()),
        b in (any::<bool>(), any::<bool>(), any::<bool>()),
        a_id in 0u32..32,
        b_id in 0u32..32,
    ) {
        prop_assume!(a_id != b_id && !(a.0 && b.0));
        let (a, b) = (side(a.0, a.1 || a.0, a.2), side(b.0, b.1 || b.0, b.2));
        let equal = Decision::new(Outcome::NoSync, Rule::EqualCurrent);
        let mine = reconcile(equal, a, node(a_id), b, node(b_id));
        let theirs = reconcile(equal, b, node(b_id), a, node(a_id));
        prop_assert_eq!(mine.mirrored(), theirs);
        let bits = a.out_of_sync_toward_other || b.out_of_sync_toward_other;
        prop_assert_eq!(mine.outcome != Outcome::NoSync, bits);
        if bits && (b.primary || (b.has_writer && !a.has_writer)) {
            prop_assert_eq!(mine.outcome, Outcome::SyncTarget(ResyncKind::Bitmap));
        }
        // Any other decision stands.
        let other = Decision::new(Outcome::SyncTarget(ResyncKind::Bitmap), Rule::BitmapPeer);
        prop_assert_eq!(reconcile(other, a, node(a_id), b, node(b_id)), other);
    }
}
