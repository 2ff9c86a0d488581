//! Quorum: whether the members this node reaches may write a resource's data.
//!
//! This module owns the rule, as pure functions of the membership a node sees (who is a member,
//! diskful or diskless, reachable or not, with which disk state) and of its previous verdict.
//! It does not track connections or disk states (the resource actor does and calls
//! [`next_verdict`] on every change) and it does not act on a verdict: the I/O path fails or
//! suspends writes as [`QuorumVerdict::io_action`] says.
//!
//! The rule (docs/mirror.md, "Roles, quorum, promotion"): a partition has quorum when it holds a
//! strict majority of all members — diskless tiebreakers vote — and at least one of them is
//! diskful with UpToDate data. A partition of diskless members only never has quorum. A node that
//! lost quorum regains it only by reaching a diskful peer with UpToDate data, which vouches that
//! its data is current; a diskless member cannot. Members that left gracefully and marked
//! themselves Outdated stop voting once every absent diskful member is known to be Outdated
//! (DRBD's "last man standing").
//!
//! Differences from DRBD 9 (`drbd_state.c::calc_quorum`): DRBD counts diskful voters only and
//! uses the diskless members as a tie-breaker when an even number of diskful voters splits in
//! half (and only if the node had quorum before); here every member votes, which gives the same
//! answer for the common layouts (2 diskful + 1 tiebreaker; 3 diskful) and is simpler to state.
//! A member that still reaches both sides of a broken link (a tiebreaker connected to both
//! diskful members) is counted by both: the resource actor must then have the Primary's side mark
//! the other side Outdated (two-phase, through the common member) before it writes on, as DRBD
//! does, so that the other side has no UpToDate member and no quorum.

use crate::gi::NodeId;

/// DRBD's disk states, as a member sees its own disk or a peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskState {
    /// No disk: a diskless member, or one that detached.
    Diskless,
    /// The disk is being attached.
    Attaching,
    /// The disk failed.
    Failed,
    /// A peer's disk whose state this node does not know (it is unreachable).
    Unknown,
    /// Being written by a resync, not usable yet.
    Inconsistent,
    /// Consistent but known to be older than the current data.
    Outdated,
    /// Consistent, but whether it is current is not known.
    Consistent,
    /// Holds the current data.
    UpToDate,
}

/// One member of the resource as this node sees it (this node included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its node-id.
    pub node_id: NodeId,
    /// Whether it is meant to hold data (a diskless tiebreaker or client is not).
    pub diskful: bool,
    /// Whether this node reaches it now (this node always reaches itself).
    pub reachable: bool,
    /// Its disk state: the current one if reachable; for an unreachable member,
    /// [`DiskState::Outdated`] if it marked itself so when it left gracefully, else
    /// [`DiskState::Unknown`].
    pub disk: DiskState,
}

/// DRBD's `quorum` and `quorum-minimum-redundancy` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuorumSetting {
    /// No requirement.
    Off,
    /// More than half.
    Majority,
    /// Every one.
    All,
    /// At least this many (for `quorum`, never fewer than a majority: see [`has_quorum`]).
    Count(u8),
}

/// What happens to I/O without quorum (DRBD's `on-no-quorum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnNoQuorum {
    /// Fail I/O with an error, so a cluster manager can unmount and demote (LINSTOR's choice).
    IoError,
    /// Freeze I/O until quorum comes back (DRBD's kernel default).
    SuspendIo,
}

/// The `quorum` LINSTOR sets for a resource with three or more replicas.
pub const QUORUM_DEFAULT: QuorumSetting = QuorumSetting::Majority;
/// `quorum-minimum-redundancy`'s default: no requirement beyond the rule above.
pub const QUORUM_MINIMUM_REDUNDANCY_DEFAULT: QuorumSetting = QuorumSetting::Off;
/// The `on-no-quorum` LINSTOR sets along with `quorum majority`.
pub const ON_NO_QUORUM_DEFAULT: OnNoQuorum = OnNoQuorum::IoError;

/// A resource's quorum options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuorumPolicy {
    /// How many members a partition needs (`quorum`).
    pub quorum: QuorumSetting,
    /// How many UpToDate diskful members a partition needs (`quorum-minimum-redundancy`),
    /// counted among the diskful voters.
    pub minimum_redundancy: QuorumSetting,
    /// What I/O does without quorum (`on-no-quorum`).
    pub on_no_quorum: OnNoQuorum,
}

impl Default for QuorumPolicy {
    fn default() -> Self {
        QuorumPolicy {
            quorum: QUORUM_DEFAULT,
            minimum_redundancy: QUORUM_MINIMUM_REDUNDANCY_DEFAULT,
            on_no_quorum: ON_NO_QUORUM_DEFAULT,
        }
    }
}

/// Why a verdict is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuorumReason {
    /// `quorum off`: every partition may write.
    Disabled,
    /// Enough members, and UpToDate data among them.
    Majority,
    /// Fewer members than needed.
    TooFewVoters,
    /// Only diskless members: they cannot vouch for any data.
    DisklessOnly,
    /// Enough members, but none diskful with UpToDate data.
    NoUpToDateData,
    /// Fewer UpToDate diskful members than `quorum-minimum-redundancy` asks.
    BelowMinimumRedundancy,
    /// This node had lost quorum and reaches no diskful peer with UpToDate data: a majority made
    /// with diskless members does not say whether its data is current.
    NotVouched,
}

/// What I/O may do under a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoAction {
    /// Proceed.
    Allow,
    /// Fail with an I/O error.
    Fail,
    /// Hold until quorum returns.
    Suspend,
}

/// The outcome of a quorum evaluation, with the counts that led to it (for status and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuorumVerdict {
    /// Whether this partition may write.
    pub has_quorum: bool,
    /// Why.
    pub reason: QuorumReason,
    /// Members that vote (all members, less the absent Outdated ones when last-man-standing
    /// applies).
    pub voters: u32,
    /// Voters this node reaches, itself included.
    pub present: u32,
    /// Voters needed.
    pub needed: u32,
    /// Reachable diskful members with UpToDate data.
    pub up_to_date: u32,
    /// Absent Outdated members that were not counted as voters (last man standing).
    pub outdated_left: u32,
}

impl QuorumVerdict {
    /// The verdict of a node that has not evaluated anything yet: no quorum, so its first
    /// quorum needs a diskful peer with UpToDate data (a restarted node does not trust a
    /// majority of diskless members).
    pub const fn initial() -> Self {
        QuorumVerdict {
            has_quorum: false,
            reason: QuorumReason::NotVouched,
            voters: 0,
            present: 0,
            needed: 0,
            up_to_date: 0,
            outdated_left: 0,
        }
    }

    /// What I/O does under this verdict and `policy`.
    pub fn io_action(&self, policy: &QuorumPolicy) -> IoAction {
        match (self.has_quorum, policy.on_no_quorum) {
            (true, _) => IoAction::Allow,
            (false, OnNoQuorum::IoError) => IoAction::Fail,
            (false, OnNoQuorum::SuspendIo) => IoAction::Suspend,
        }
    }
}

fn needed_for(setting: QuorumSetting, voters: u32) -> u32 {
    let majority = voters / 2 + 1;
    match setting {
        QuorumSetting::Off => 0,
        QuorumSetting::Majority => majority,
        QuorumSetting::All => voters,
        // A count below a majority would let two partitions write at once: never fewer.
        QuorumSetting::Count(n) => u32::from(n).max(majority),
    }
}

fn redundancy_for(setting: QuorumSetting, diskful_voters: u32) -> u32 {
    match setting {
        QuorumSetting::Off => 0,
        QuorumSetting::Majority => diskful_voters / 2 + 1,
        QuorumSetting::All => diskful_voters,
        QuorumSetting::Count(n) => u32::from(n),
    }
}

/// The quorum of the partition described by `members`, on its own (no memory of a previous
/// verdict; see [`next_verdict`] for that).
///
/// Voters are all members; absent members whose last known state is Outdated stop voting when
/// no absent diskful member is Unknown (then no absent member can hold UpToDate data, so the
/// other side cannot have quorum). `quorum <N>` is never taken below a strict majority.
pub fn has_quorum(members: &[Member], policy: &QuorumPolicy) -> QuorumVerdict {
    let absent_unknown_diskful = members
        .iter()
        .filter(|m| !m.reachable && m.diskful && m.disk != DiskState::Outdated)
        .count();
    let absent_outdated = members
        .iter()
        .filter(|m| !m.reachable && m.diskful && m.disk == DiskState::Outdated)
        .count() as u32;
    let outdated_left = if absent_unknown_diskful == 0 {
        absent_outdated
    } else {
        0
    };
    let voters = members.len() as u32 - outdated_left;
    let diskful_voters = members.iter().filter(|m| m.diskful).count() as u32 - outdated_left;
    let present = members.iter().filter(|m| m.reachable).count() as u32;
    let present_diskful = members.iter().filter(|m| m.reachable && m.diskful).count();
    let up_to_date = members
        .iter()
        .filter(|m| m.reachable && m.diskful && m.disk == DiskState::UpToDate)
        .count() as u32;
    let needed = needed_for(policy.quorum, voters);
    let verdict = |has_quorum, reason| QuorumVerdict {
        has_quorum,
        reason,
        voters,
        present,
        needed,
        up_to_date,
        outdated_left,
    };

    if policy.quorum == QuorumSetting::Off {
        return verdict(true, QuorumReason::Disabled);
    }
    if present_diskful == 0 {
        return verdict(false, QuorumReason::DisklessOnly);
    }
    if present < needed {
        return verdict(false, QuorumReason::TooFewVoters);
    }
    if up_to_date == 0 {
        return verdict(false, QuorumReason::NoUpToDateData);
    }
    if up_to_date < redundancy_for(policy.minimum_redundancy, diskful_voters) {
        return verdict(false, QuorumReason::BelowMinimumRedundancy);
    }
    verdict(true, QuorumReason::Majority)
}

/// The next verdict of node `local` given its `previous` one: as [`has_quorum`], except that a
/// node without quorum regains it only while it reaches a diskful *peer* with UpToDate data
/// (DRBD: "a node that has lost quorum cannot regain quorum by connecting to a diskless node").
pub fn next_verdict(
    previous: &QuorumVerdict,
    local: NodeId,
    members: &[Member],
    policy: &QuorumPolicy,
) -> QuorumVerdict {
    let verdict = has_quorum(members, policy);
    if !verdict.has_quorum || previous.has_quorum || verdict.reason == QuorumReason::Disabled {
        return verdict;
    }
    let vouched = members
        .iter()
        .any(|m| m.node_id != local && m.reachable && m.diskful && m.disk == DiskState::UpToDate);
    if vouched {
        verdict
    } else {
        QuorumVerdict {
            has_quorum: false,
            reason: QuorumReason::NotVouched,
            ..verdict
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node(id: u32) -> NodeId {
        NodeId::new(id).unwrap()
    }

    fn member(id: u32, diskful: bool, reachable: bool, disk: DiskState) -> Member {
        Member {
            node_id: node(id),
            diskful,
            reachable,
            disk,
        }
    }

    const UP: DiskState = DiskState::UpToDate;
    const OUT: DiskState = DiskState::Outdated;
    const GONE: DiskState = DiskState::Unknown;
    const NONE: DiskState = DiskState::Diskless;

    fn majority() -> QuorumPolicy {
        QuorumPolicy::default()
    }

    fn had_quorum() -> QuorumVerdict {
        QuorumVerdict {
            has_quorum: true,
            reason: QuorumReason::Majority,
            ..QuorumVerdict::initial()
        }
    }

    #[test]
    fn defaults_are_linstors() {
        let policy = QuorumPolicy::default();
        assert_eq!(policy.quorum, QuorumSetting::Majority);
        assert_eq!(policy.on_no_quorum, OnNoQuorum::IoError);
        assert_eq!(QuorumVerdict::initial().io_action(&policy), IoAction::Fail);
        let suspend = QuorumPolicy {
            on_no_quorum: OnNoQuorum::SuspendIo,
            ..policy
        };
        assert_eq!(
            QuorumVerdict::initial().io_action(&suspend),
            IoAction::Suspend
        );
        assert_eq!(had_quorum().io_action(&suspend), IoAction::Allow);
    }

    #[test]
    fn tiebreaker_keeps_the_primary_writing() {
        // Two diskful members (0 Primary, 1) and a diskless tiebreaker (2). The replication link
        // breaks; 0 outdates 1 through 2. 0 keeps quorum; 1 has none.
        let seen_by_0 = [
            member(0, true, true, UP),
            member(1, true, false, OUT),
            member(2, false, true, NONE),
        ];
        let v = next_verdict(&had_quorum(), node(0), &seen_by_0, &majority());
        assert!(v.has_quorum, "{v:?}");
        // Member 1 marked Outdated and nobody else is missing: it no longer votes.
        assert_eq!(
            (v.voters, v.present, v.needed, v.outdated_left),
            (2, 2, 2, 1)
        );
        let seen_by_1 = [
            member(0, true, false, GONE),
            member(1, true, true, OUT),
            member(2, false, true, NONE),
        ];
        let v = next_verdict(&had_quorum(), node(1), &seen_by_1, &majority());
        assert_eq!(v.reason, QuorumReason::NoUpToDateData);
    }

    #[test]
    fn primary_losing_both_links_loses_quorum_and_the_secondary_takes_over() {
        let seen_by_0 = [
            member(0, true, true, UP),
            member(1, true, false, GONE),
            member(2, false, false, GONE),
        ];
        let v = next_verdict(&had_quorum(), node(0), &seen_by_0, &majority());
        assert_eq!(v.reason, QuorumReason::TooFewVoters);
        let seen_by_1 = [
            member(0, true, false, GONE),
            member(1, true, true, UP),
            member(2, false, true, NONE),
        ];
        assert!(next_verdict(&had_quorum(), node(1), &seen_by_1, &majority()).has_quorum);
    }

    #[test]
    fn lost_quorum_is_not_regained_through_a_diskless_member() {
        // 0 lost quorum; the tiebreaker comes back to it (and not member 1): still no quorum.
        let seen_by_0 = [
            member(0, true, true, UP),
            member(1, true, false, GONE),
            member(2, false, true, NONE),
        ];
        let lost = next_verdict(
            &had_quorum(),
            node(0),
            &[
                member(0, true, true, UP),
                member(1, true, false, GONE),
                member(2, false, false, GONE),
            ],
            &majority(),
        );
        assert!(!lost.has_quorum);
        let v = next_verdict(&lost, node(0), &seen_by_0, &majority());
        assert_eq!(v.reason, QuorumReason::NotVouched);
        assert_eq!(v.io_action(&majority()), IoAction::Fail);
        // Member 1 comes back UpToDate: it vouches.
        let seen_by_0 = [
            member(0, true, true, UP),
            member(1, true, true, UP),
            member(2, false, false, GONE),
        ];
        assert!(next_verdict(&v, node(0), &seen_by_0, &majority()).has_quorum);
        // A restarted node starts from "lost".
        let alone_with_tiebreaker = [
            member(0, true, true, UP),
            member(1, true, false, GONE),
            member(2, false, true, NONE),
        ];
        let v = next_verdict(
            &QuorumVerdict::initial(),
            node(0),
            &alone_with_tiebreaker,
            &majority(),
        );
        assert_eq!(v.reason, QuorumReason::NotVouched);
    }

    #[test]
    fn diskless_members_alone_never_have_quorum() {
        let seen = [
            member(0, true, false, GONE),
            member(1, false, true, NONE),
            member(2, false, true, NONE),
        ];
        let v = has_quorum(&seen, &majority());
        assert_eq!(v.reason, QuorumReason::DisklessOnly);
    }

    #[test]
    fn last_man_standing_after_graceful_leaves() {
        // Rolling maintenance: 1 and 2 went down gracefully (Outdated); 0 keeps quorum alone.
        let seen = [
            member(0, true, true, UP),
            member(1, true, false, OUT),
            member(2, true, false, OUT),
        ];
        let v = next_verdict(&had_quorum(), node(0), &seen, &majority());
        assert!(v.has_quorum, "{v:?}");
        assert_eq!((v.voters, v.outdated_left), (1, 2));
        // If one of them vanished without saying so, it might be writing elsewhere: no quorum.
        let seen = [
            member(0, true, true, UP),
            member(1, true, false, OUT),
            member(2, true, false, GONE),
        ];
        let v = has_quorum(&seen, &majority());
        assert_eq!((v.has_quorum, v.outdated_left), (false, 0));
    }

    #[test]
    fn settings_are_respected() {
        let three_up = [
            member(0, true, true, UP),
            member(1, true, true, UP),
            member(2, true, false, GONE),
        ];
        let all = QuorumPolicy {
            quorum: QuorumSetting::All,
            ..majority()
        };
        assert_eq!(
            has_quorum(&three_up, &all).reason,
            QuorumReason::TooFewVoters
        );
        let off = QuorumPolicy {
            quorum: QuorumSetting::Off,
            ..majority()
        };
        assert_eq!(
            has_quorum(&[member(0, false, true, NONE)], &off).reason,
            QuorumReason::Disabled
        );
        // quorum 1 of 3 is raised to a majority.
        let one = QuorumPolicy {
            quorum: QuorumSetting::Count(1),
            ..majority()
        };
        let alone = [
            member(0, true, true, UP),
            member(1, true, false, GONE),
            member(2, true, false, GONE),
        ];
        let v = has_quorum(&alone, &one);
        assert_eq!((v.has_quorum, v.needed), (false, 2));
        // Minimum redundancy counts UpToDate diskful members.
        let redundant = QuorumPolicy {
            minimum_redundancy: QuorumSetting::Count(2),
            ..majority()
        };
        let one_up = [
            member(0, true, true, UP),
            member(1, true, true, OUT),
            member(2, true, false, GONE),
        ];
        assert_eq!(
            has_quorum(&one_up, &redundant).reason,
            QuorumReason::BelowMinimumRedundancy
        );
        assert!(has_quorum(&three_up, &redundant).has_quorum);
    }

    /// A world: each member's kind and true disk state, and which part of a partition it is in
    /// (`None`: down).
    #[derive(Debug, Clone)]
    struct World {
        members: Vec<(bool, DiskState)>,
        part: Vec<Option<u8>>,
        previous: Vec<bool>,
        policy: QuorumPolicy,
    }

    fn arb_world() -> impl Strategy<Value = World> {
        (1usize..=32).prop_flat_map(|n| {
            let kind = prop_oneof![
                3 => prop_oneof![Just(UP), Just(OUT), Just(DiskState::Inconsistent), Just(DiskState::Consistent)]
                    .prop_map(|d| (true, d)),
                1 => Just((false, NONE)),
            ];
            let setting = prop_oneof![
                Just(QuorumSetting::Majority),
                Just(QuorumSetting::All),
                (0u8..=32).prop_map(QuorumSetting::Count),
            ];
            let redundancy = prop_oneof![
                Just(QuorumSetting::Off),
                Just(QuorumSetting::Majority),
                (0u8..4).prop_map(QuorumSetting::Count),
            ];
            (
                proptest::collection::vec(kind, n),
                proptest::collection::vec(proptest::option::weighted(0.9, 0u8..4), n),
                proptest::collection::vec(any::<bool>(), n),
                setting,
                redundancy,
            )
                .prop_map(|(members, part, previous, quorum, minimum_redundancy)| World {
                    members,
                    part,
                    previous,
                    policy: QuorumPolicy { quorum, minimum_redundancy, on_no_quorum: OnNoQuorum::IoError },
                })
        })
    }

    /// What a member of `part` sees: its part reachable; everyone else unreachable, known
    /// Outdated if they are (the most an honest node can know), Unknown otherwise.
    fn view(world: &World, part: u8) -> Vec<Member> {
        world
            .members
            .iter()
            .enumerate()
            .map(|(i, (diskful, disk))| {
                let reachable = world.part[i] == Some(part);
                let seen = if reachable {
                    *disk
                } else if *diskful && *disk == OUT {
                    OUT
                } else if *diskful {
                    GONE
                } else {
                    NONE
                };
                member(i as u32, *diskful, reachable, seen)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        /// Two disjoint partitions never both have quorum, whatever their previous verdicts.
        #[test]
        fn disjoint_partitions_never_both_have_quorum(world in arb_world()) {
            let mut quorate = Vec::new();
            for part in 0u8..4 {
                let Some(local) = world.part.iter().position(|p| *p == Some(part)) else { continue };
                let previous = if world.previous[local] { had_quorum() } else { QuorumVerdict::initial() };
                let v = next_verdict(&previous, node(local as u32), &view(&world, part), &world.policy);
                let memoryless = has_quorum(&view(&world, part), &world.policy);
                prop_assert!(!v.has_quorum || memoryless.has_quorum, "memory only restricts");
                if v.has_quorum {
                    quorate.push((part, v));
                }
            }
            prop_assert!(quorate.len() <= 1, "several partitions have quorum: {:?}", quorate);
        }

        /// A partition whose reachable members are all diskless never has quorum.
        #[test]
        fn diskless_only_partitions_never_have_quorum(world in arb_world()) {
            for part in 0u8..4 {
                let members = view(&world, part);
                if members.iter().any(|m| m.reachable && m.diskful) {
                    continue;
                }
                prop_assert!(!has_quorum(&members, &world.policy).has_quorum);
            }
        }
    }
}
