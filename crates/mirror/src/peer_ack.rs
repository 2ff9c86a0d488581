//! Peer acknowledgements (DRBD's `P_PEER_ACK`): which writes of a Primary are known to have
//! reached every member it replicated them to.
//!
//! A Secondary applies a Primary's write without knowing whether the other disks got it too.
//! Should the Primary be lost with writes in flight, one disk may hold a write another lacks
//! while both stay on the same generation: no handshake would ever resync those blocks, and a
//! read would answer differently depending on the member asked. So a Secondary keeps every
//! write it receives as *unconfirmed* until the Primary says it settled everywhere (a
//! `PeerAck`); if the Primary is lost first, the unconfirmed ranges are marked out of sync
//! toward the other disks, which then reconcile them ([`crate::gi::reconcile`]). None of those
//! writes was acknowledged to an application unless every disk had it, so either copy is a
//! valid outcome; what matters is that all disks end with the same one.
//!
//! - [`Settlements`], on the Primary, per connection: the writes sent on it that have not
//!   settled (completed or failed on every target, a failure recorded on the disks that took
//!   the write) and the last `PeerAck` sent.
//! - [`Unconfirmed`], on a Secondary, per connection: the writes received and not yet covered
//!   by a `PeerAck`.
//!
//! Sequence numbers are the connection's own (one counter per link, shared with reads and
//! flushes): a `PeerAck` of `n` covers every write sent on that connection with a sequence
//! number up to `n`. A write is registered as unsettled in the same step that draws its number,
//! and settles only after its answer came back, which is after its frame went out; so a
//! `PeerAck`, queued after the settlement, never reaches the Secondary before a write it covers.

use std::collections::{BTreeSet, VecDeque};

use crate::activity_log::extents_of;

/// A `PeerAck` goes out after this many writes settled on a connection, and at the Primary's
/// next tick otherwise ([`crate::resource`]): what a Secondary holds unconfirmed stays within
/// the writes in flight plus this many, or a tick's worth when writes are few.
pub const PEER_ACK_WRITES: u32 = 128;

/// The Primary's side of one connection.
#[derive(Debug, Default)]
pub struct Settlements {
    unsettled: BTreeSet<u64>,
    highest_sent: u64,
    acked: u64,
    settled_since_ack: u32,
}

impl Settlements {
    /// The write `seq` is about to be sent.
    pub fn sent(&mut self, seq: u64) {
        self.unsettled.insert(seq);
        self.highest_sent = self.highest_sent.max(seq);
    }

    /// The write `seq` settled. Whether a `PeerAck` is due now ([`PEER_ACK_WRITES`]).
    pub fn settled(&mut self, seq: u64) -> bool {
        if self.unsettled.remove(&seq) {
            self.settled_since_ack += 1;
        }
        self.settled_since_ack >= PEER_ACK_WRITES
    }

    /// The sequence number the next `PeerAck` names, if it covers a write the last one did
    /// not; it counts as sent.
    pub fn next_ack(&mut self) -> Option<u64> {
        let covered = match self.unsettled.first() {
            Some(first) => first - 1,
            None => self.highest_sent,
        };
        if covered <= self.acked {
            return None;
        }
        self.acked = covered;
        self.settled_since_ack = 0;
        Some(covered)
    }
}

/// A write a Secondary received and the Primary has not confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnconfirmedWrite {
    pub seq: u64,
    pub volume: u16,
    pub offset: u64,
    pub length: u32,
}

/// A Secondary's side of one connection.
#[derive(Debug, Default)]
pub struct Unconfirmed {
    writes: VecDeque<UnconfirmedWrite>,
}

impl Unconfirmed {
    pub fn received(&mut self, write: UnconfirmedWrite) {
        self.writes.push_back(write);
    }

    /// A `PeerAck` of `up_to`.
    pub fn confirmed(&mut self, up_to: u64) {
        // Frames may arrive out of sequence order (numbers are drawn before the frames are
        // queued), so not only the front.
        self.writes.retain(|write| write.seq > up_to);
    }

    /// Every write still unconfirmed (the connection ended).
    pub fn take(&mut self) -> Vec<UnconfirmedWrite> {
        std::mem::take(&mut self.writes).into()
    }

    /// Adds the activity-log extents of `volume` that unconfirmed writes touch.
    pub fn extents(&self, volume: u16, into: &mut BTreeSet<u32>) {
        for write in self.writes.iter().filter(|w| w.volume == volume) {
            if let Some(extents) = extents_of(write.offset, u64::from(write.length)) {
                into.extend(extents);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn write(seq: u64) -> UnconfirmedWrite {
        UnconfirmedWrite {
            seq,
            volume: 0,
            offset: seq * 4096,
            length: 4096,
        }
    }

    #[test]
    fn a_peer_ack_covers_only_writes_settled_with_everything_before_them() {
        let mut settlements = Settlements::default();
        for seq in 1..=4 {
            settlements.sent(seq);
        }
        assert_eq!(settlements.next_ack(), None, "nothing settled");
        settlements.settled(2);
        settlements.settled(3);
        assert_eq!(settlements.next_ack(), None, "write 1 is still out");
        settlements.settled(1);
        assert_eq!(settlements.next_ack(), Some(3));
        assert_eq!(settlements.next_ack(), None, "sent once");
        settlements.settled(4);
        assert_eq!(settlements.next_ack(), Some(4));
    }

    #[test]
    fn a_peer_ack_is_due_after_enough_settled_writes() {
        let mut settlements = Settlements::default();
        let mut due = Vec::new();
        for seq in 1..=u64::from(PEER_ACK_WRITES) * 2 {
            settlements.sent(seq);
            if settlements.settled(seq) {
                due.push(settlements.next_ack().unwrap());
            }
        }
        assert_eq!(
            due,
            vec![u64::from(PEER_ACK_WRITES), u64::from(PEER_ACK_WRITES) * 2]
        );
    }

    #[test]
    fn a_secondary_keeps_what_no_peer_ack_covered() {
        let mut unconfirmed = Unconfirmed::default();
        for seq in [1, 2, 4, 3, 5] {
            unconfirmed.received(write(seq));
        }
        unconfirmed.confirmed(3);
        assert_eq!(unconfirmed.take(), vec![write(4), write(5)]);
        assert!(unconfirmed.is_empty());
    }

    proptest! {
        /// Whatever the order writes settle in, a write is confirmed only once it and every
        /// write sent before it settled, and every write is confirmed once all settled.
        #[test]
        fn only_settled_writes_are_ever_confirmed(
            order in Just((1..=40u64).collect::<Vec<_>>()).prop_shuffle(),
            acks_at in proptest::collection::btree_set(0usize..40, 0..10),
        ) {
            let mut settlements = Settlements::default();
            let mut unconfirmed = Unconfirmed::default();
            for seq in 1..=40 {
                settlements.sent(seq);
                unconfirmed.received(write(seq));
            }
            let mut settled = BTreeSet::new();
            for (i, seq) in order.iter().enumerate() {
                settled.insert(*seq);
                settlements.settled(*seq);
                if acks_at.contains(&i) && let Some(up_to) = settlements.next_ack() {
                    prop_assert!((1..=up_to).all(|s| settled.contains(&s)));
                    unconfirmed.confirmed(up_to);
                }
            }
            if let Some(up_to) = settlements.next_ack() {
                unconfirmed.confirmed(up_to);
            }
            prop_assert!(unconfirmed.is_empty());
        }
    }
}
