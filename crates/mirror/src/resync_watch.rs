//! On a resync target, which resync replies are older than an application write.
//!
//! A resync from a Secondary while a third member, the Primary, writes to both: the Primary's
//! write reaches the target on one link and the source's resync data on another, in no order
//! between them. A reply read on the source before the write reached it, applied on the target
//! after the write, would put the old block back over the acknowledged write. (When the source
//! is the Primary itself, one link carries both and the source orders its reads against its
//! writes, so nothing is needed.) The target may be the Primary itself (promoted while
//! Inconsistent, reading through the source): its write goes to the source on the link its
//! requests take, after any request sent before it, so the reply to such a request is older
//! than the write too.
//!
//! So while a resync runs, the target notes the application writes of members other than its
//! source (its own included) from their arrival until they complete, and each resync request
//! it sends. A request
//! is *touched* when an overlapping application write is in flight when it is sent, arrives
//! while it is outstanding, or completes while it is outstanding. A touched reply is dropped:
//! its bits stay set and the block is asked for again in the resync's next round, when the
//! source has the write too.
//!
//! A write that completed on the target before a request was sent may not have reached the
//! source yet (its link slower than the target's apply and the request's trip); the request
//! would not be touched. So a completed application write clears the target's bits toward the
//! source for the blocks it covers whole, as DRBD's writes to a sync target do: those blocks
//! are current here and are not asked for (the source clears every bit toward the target when
//! the target reports the resync done). A block a write covers only in part is still asked
//! for, so the bytes the write put there are *kept in part*: their ranges are recorded, and
//! when the block's reply is applied, the bytes this member holds at those ranges are laid over
//! the reply first ([`ResyncWatch::take_written_in_part`]). They are at least as new as what
//! the source read: every write of the Primary reaches this member too (else the pass is
//! tainted and never ends UpToDate, see `resource`), and any later write to them waits behind
//! the reply or touches it. Ranges are recorded only in blocks still to resync and leave as
//! their blocks are resynced, so the record holds no more blocks than are left to resync.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bitmap::BM_BLOCK_SIZE;
use crate::conflict::Span;

#[derive(Debug, Default)]
struct Watched {
    /// The resync's source: its own writes are ordered with its replies on one link.
    source: u8,
    next_write: u64,
    /// Application writes of other members, arrived and not completed: id, blocks touched,
    /// and the exact range.
    writes: Vec<(u64, Span, (u64, u64))>,
    /// Resync requests sent and not answered: sequence number, range, touched.
    requests: Vec<(u64, Span, bool)>,
    /// Bytes written here in part of a block still to resync, by completed writes of other
    /// members during this resync: start → end, disjoint and not adjacent.
    written_in_part: BTreeMap<u64, u64>,
}

impl Watched {
    fn touch(&mut self, span: Span) {
        for (_, request, touched) in &mut self.requests {
            if request.overlaps(&span) {
                *touched = true;
            }
        }
    }

    /// Records `start..end` as written in part, merged with the ranges it overlaps or touches.
    fn keep_written_in_part(&mut self, mut start: u64, mut end: u64) {
        while let Some((&s, &e)) = self.written_in_part.range(..=end).next_back() {
            if e < start {
                break;
            }
            self.written_in_part.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.written_in_part.insert(start, end);
    }
}

/// The parts of the blocks the write of `len` bytes at `offset` covers only in part (at most
/// two: the first block's and the last block's).
fn parts_in_part(offset: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = offset + len;
    let first = offset / BM_BLOCK_SIZE;
    let last = end.saturating_sub(1) / BM_BLOCK_SIZE;
    let head_end = end.min((first + 1) * BM_BLOCK_SIZE);
    let head = (len > 0
        && (!offset.is_multiple_of(BM_BLOCK_SIZE) || !head_end.is_multiple_of(BM_BLOCK_SIZE)))
    .then_some((offset, head_end));
    let tail = (len > 0 && last != first && !end.is_multiple_of(BM_BLOCK_SIZE))
        .then_some((last * BM_BLOCK_SIZE, end));
    head.into_iter().chain(tail)
}

/// This member's bitmap toward the resync source, as the watch changes and reads it.
pub trait TowardSource {
    /// Clears the bits of the blocks `len` bytes at `offset` cover whole.
    fn clear_whole_blocks(&self, source: u8, offset: u64, len: u64);
    /// Whether the block starting at `block_offset` is still to resync from `source`.
    fn still_to_resync(&self, source: u8, block_offset: u64) -> bool;
}

/// The watch of one volume; idle (one atomic load per write) while no resync runs.
#[derive(Debug, Default)]
pub struct ResyncWatch {
    active: AtomicBool,
    watched: Mutex<Watched>,
}

/// An application write noted by [`ResyncWatch::write_arrived`], to hand back when it completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotedWrite(Option<u64>);

impl ResyncWatch {
    fn watched(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A resync from `source` begins: requests and bytes kept from an earlier one are
    /// forgotten (what this member holds is not known newer than another source's data).
    pub fn begin(&self, source: u8) {
        let mut watched = self.watched();
        watched.source = source;
        watched.requests.clear();
        watched.written_in_part.clear();
        self.active.store(true, Ordering::Release);
    }

    /// No resync runs any more.
    pub fn end(&self) {
        let mut watched = self.watched();
        watched.requests.clear();
        watched.writes.clear();
        watched.written_in_part.clear();
        self.active.store(false, Ordering::Release);
    }

    /// A replicated write from `from` arrived (its place in line is taken).
    pub fn write_arrived(&self, from: u8, offset: u64, len: u64) -> NotedWrite {
        if !self.active.load(Ordering::Acquire) {
            return NotedWrite(None);
        }
        let mut watched = self.watched();
        if from == watched.source {
            return NotedWrite(None);
        }
        let span = Span::new(offset, len);
        watched.touch(span);
        let id = watched.next_write;
        watched.next_write += 1;
        watched.writes.push((id, span, (offset, len)));
        NotedWrite(Some(id))
    }

    /// The write `noted` completed (or failed). If it succeeded, during a resync, the blocks it
    /// covers whole leave `bitmap` (this member's bits toward the source) and the parts of
    /// blocks still to resync that it covers in part are kept. Both happen with the watch held,
    /// so a request for those blocks is sent either before (and is touched) or after (and
    /// finds the bits cleared or the bytes kept), never in between.
    pub fn write_done(&self, noted: NotedWrite, succeeded: bool, bitmap: &dyn TowardSource) {
        let NotedWrite(Some(id)) = noted else {
            return;
        };
        let mut watched = self.watched();
        let Some(at) = watched.writes.iter().position(|(w, _, _)| *w == id) else {
            return;
        };
        let (_, span, (offset, len)) = watched.writes.swap_remove(at);
        watched.touch(span);
        if !succeeded {
            return;
        }
        let source = watched.source;
        bitmap.clear_whole_blocks(source, offset, len);
        for (start, end) in parts_in_part(offset, len) {
            if bitmap.still_to_resync(source, start / BM_BLOCK_SIZE * BM_BLOCK_SIZE) {
                watched.keep_written_in_part(start, end);
            }
        }
    }

    /// Takes the ranges kept as written in part within `offset..offset + len`, the range of a
    /// resync reply about to be applied (its place in line taken, so no write to it runs): the
    /// caller lays the bytes it holds there over the reply. Parts outside the range stay.
    pub fn take_written_in_part(&self, offset: u64, len: u64) -> Vec<(u64, u64)> {
        let end = offset + len;
        let mut watched = self.watched();
        let first = watched
            .written_in_part
            .range(..offset)
            .next_back()
            .filter(|(_, e)| **e > offset)
            .map(|(s, _)| *s)
            .unwrap_or(offset);
        let overlapping: Vec<(u64, u64)> = watched
            .written_in_part
            .range(first..end)
            .map(|(s, e)| (*s, *e))
            .collect();
        let mut taken = Vec::with_capacity(overlapping.len());
        for (s, e) in overlapping {
            watched.written_in_part.remove(&s);
            if s < offset {
                watched.written_in_part.insert(s, offset);
            }
            if e > end {
                watched.written_in_part.insert(end, e);
            }
            taken.push((s.max(offset), e.min(end)));
        }
        taken
    }

    /// Puts back ranges taken by [`Self::take_written_in_part`] whose reply was not applied.
    pub fn keep_again(&self, ranges: &[(u64, u64)]) {
        let mut watched = self.watched();
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        for &(start, end) in ranges {
            watched.keep_written_in_part(start, end);
        }
    }

    /// A resync request `seq` for the range is sent.
    pub fn requested(&self, seq: u64, offset: u64, len: u64) {
        let mut watched = self.watched();
        let span = Span::new(offset, len);
        let touched = watched.writes.iter().any(|(_, w, _)| w.overlaps(&span));
        watched.requests.push((seq, span, touched));
    }

    /// The reply to request `seq` arrived: whether it may be applied (no application write
    /// touched its range since it was sent). A request not known is not applied.
    pub fn answered(&self, seq: u64) -> bool {
        let mut watched = self.watched();
        match watched.requests.iter().position(|(s, _, _)| *s == seq) {
            Some(at) => !watched.requests.swap_remove(at).2,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: u8 = 0;
    const PRIMARY: u8 = 2;

    fn watch() -> ResyncWatch {
        let watch = ResyncWatch::default();
        watch.begin(SOURCE);
        watch
    }

    /// A bitmap toward the source: the blocks still to resync, and the clears asked for.
    #[derive(Default)]
    struct Bits {
        in_sync: std::cell::RefCell<Vec<u64>>,
        cleared: std::cell::RefCell<Vec<(u8, u64, u64)>>,
    }

    impl TowardSource for Bits {
        fn clear_whole_blocks(&self, source: u8, offset: u64, len: u64) {
            self.cleared.borrow_mut().push((source, offset, len));
        }

        fn still_to_resync(&self, source: u8, block_offset: u64) -> bool {
            assert_eq!(source, SOURCE);
            !self.in_sync.borrow().contains(&block_offset)
        }
    }

    /// A write from the Primary of `len` bytes at `offset`, arrived and completed.
    fn written(watch: &ResyncWatch, offset: u64, len: u64) {
        let write = watch.write_arrived(PRIMARY, offset, len);
        watch.write_done(write, true, &Bits::default());
    }

    #[test]
    fn an_untouched_reply_is_applied() {
        let watch = watch();
        watch.requested(1, 0, 1 << 20);
        let write = watch.write_arrived(PRIMARY, 2 << 20, 4096);
        let bits = Bits::default();
        watch.write_done(write, true, &bits);
        assert_eq!(*bits.cleared.borrow(), [(SOURCE, 2 << 20, 4096)]);
        assert!(watch.answered(1));
    }

    #[test]
    fn a_write_arriving_or_completing_while_a_request_is_out_touches_it() {
        let watch = watch();
        watch.requested(1, 0, 1 << 20);
        let write = watch.write_arrived(PRIMARY, 4096, 512);
        assert!(!watch.answered(1), "arrived while outstanding");

        watch.requested(2, 0, 1 << 20);
        watch.write_done(write, true, &Bits::default());
        assert!(
            !watch.answered(2),
            "in flight when sent, completed while outstanding"
        );
    }

    #[test]
    fn a_request_sent_while_an_overlapping_write_is_in_flight_is_touched() {
        let watch = watch();
        let _write = watch.write_arrived(PRIMARY, 8192, 4096);
        watch.requested(1, 0, 16384);
        assert!(!watch.answered(1));
    }

    #[test]
    fn the_source_s_own_writes_and_writes_without_a_resync_are_not_watched() {
        let watch = watch();
        watch.requested(1, 0, 1 << 20);
        let own = watch.write_arrived(SOURCE, 0, 4096);
        assert_eq!(own, NotedWrite(None));
        assert!(watch.answered(1));
        watch.end();
        assert_eq!(watch.write_arrived(PRIMARY, 0, 4096), NotedWrite(None));
        assert!(!watch.answered(7), "an unknown request is not applied");
    }

    #[test]
    fn the_parts_a_write_covers_in_part_are_its_first_and_last_blocks_unless_whole() {
        let parts = |offset, len| parts_in_part(offset, len).collect::<Vec<_>>();
        assert_eq!(parts(0, 4096), []);
        assert_eq!(parts(8192, 3 * 4096), []);
        assert_eq!(parts(512, 512), [(512, 1024)]);
        assert_eq!(parts(4096, 512), [(4096, 4608)]);
        assert_eq!(parts(3584, 1024), [(3584, 4096), (4096, 4608)]);
        assert_eq!(parts(0, 8704), [(8192, 8704)]);
        assert_eq!(parts(1024, 7168), [(1024, 4096)]);
        assert_eq!(parts(100, 0), []);
    }

    #[test]
    fn bytes_written_in_part_are_kept_until_their_block_s_reply_takes_them() {
        let watch = watch();
        written(&watch, 4096 + 512, 512);
        written(&watch, 4096 + 1024, 512); // adjacent: one range
        written(&watch, 3 * 4096, 4096); // whole: nothing kept
        written(&watch, 5 * 4096 + 100, 3); // unaligned bytes
        assert_eq!(watch.take_written_in_part(0, 4096), []);
        assert_eq!(watch.take_written_in_part(4096, 4096), [(4608, 5632)]);
        assert_eq!(watch.take_written_in_part(4096, 4096), [], "taken once");

        // A reply for part of a kept range takes that part; the rest stays.
        written(&watch, 8 * 4096 + 1000, 6000);
        assert_eq!(
            watch.take_written_in_part(9 * 4096, 4096),
            [(9 * 4096, 8 * 4096 + 7000)]
        );
        assert_eq!(
            watch.take_written_in_part(8 * 4096, 4096),
            [(8 * 4096 + 1000, 9 * 4096)]
        );

        // Put back when the reply could not be applied.
        let taken = watch.take_written_in_part(5 * 4096, 4096);
        assert_eq!(taken, [(5 * 4096 + 100, 5 * 4096 + 103)]);
        watch.keep_again(&taken);
        assert_eq!(watch.take_written_in_part(0, 1 << 20), taken);
    }

    #[test]
    fn bytes_are_kept_only_for_succeeded_writes_in_blocks_still_to_resync_of_this_pass() {
        let watch = watch();
        let bits = Bits::default();
        bits.in_sync.borrow_mut().push(4096);
        let failed = watch.write_arrived(PRIMARY, 512, 8192);
        watch.write_done(failed, false, &bits);
        let in_sync = watch.write_arrived(PRIMARY, 4096 + 512, 512);
        watch.write_done(in_sync, true, &bits);
        let own = watch.write_arrived(SOURCE, 2 * 4096 + 512, 512);
        watch.write_done(own, true, &bits);
        assert_eq!(watch.take_written_in_part(0, 1 << 20), []);
        assert_eq!(
            *bits.cleared.borrow(),
            [(SOURCE, 4096 + 512, 512)],
            "a failed write clears nothing; the source's own is not watched"
        );

        // A new pass forgets what was kept: another source's data may be newer.
        written(&watch, 512, 512);
        watch.begin(SOURCE);
        assert_eq!(watch.take_written_in_part(0, 1 << 20), []);
        written(&watch, 512, 512);
        watch.end();
        assert_eq!(watch.take_written_in_part(0, 1 << 20), []);
        watch.keep_again(&[(0, 512)]);
        assert_eq!(watch.take_written_in_part(0, 1 << 20), [], "no resync runs");
    }
}
