//! On a resync target, which resync replies are older than an application write.
//!
//! A resync from a Secondary while a third member, the Primary, writes to both: the Primary's
//! write reaches the target on one link and the source's resync data on another, in no order
//! between them. A reply read on the source before the write reached it, applied on the target
//! after the write, would put the old block back over the acknowledged write. (When the source
//! is the Primary itself, one link carries both and the source orders its reads against its
//! writes, so nothing is needed.)
//!
//! So while a resync runs, the target notes the application writes of members other than its
//! source from their arrival until they complete, and each resync request it sends. A request
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
//! the target reports the resync done). A block a write covers only in part stays exposed to
//! that narrow race.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::conflict::CONFLICT_BLOCK;

/// A half-open byte range in whole blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    fn new(offset: u64, len: u64) -> Span {
        Span {
            start: offset / CONFLICT_BLOCK * CONFLICT_BLOCK,
            end: (offset + len.max(1)).div_ceil(CONFLICT_BLOCK) * CONFLICT_BLOCK,
        }
    }

    fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

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
}

impl Watched {
    fn touch(&mut self, span: Span) {
        for (_, request, touched) in &mut self.requests {
            if request.overlaps(&span) {
                *touched = true;
            }
        }
    }
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

    /// A resync from `source` begins: requests from an earlier one are forgotten.
    pub fn begin(&self, source: u8) {
        let mut watched = self.watched();
        watched.source = source;
        watched.requests.clear();
        self.active.store(true, Ordering::Release);
    }

    /// No resync runs any more.
    pub fn end(&self) {
        let mut watched = self.watched();
        watched.requests.clear();
        watched.writes.clear();
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

    /// The write `noted` completed (or failed). Returns, for a write noted during a resync, the
    /// source and the write's range: the caller clears the bits toward the source that the
    /// write covers whole, if it succeeded.
    pub fn write_done(&self, noted: NotedWrite) -> Option<(u8, u64, u64)> {
        let NotedWrite(Some(id)) = noted else {
            return None;
        };
        let mut watched = self.watched();
        let at = watched.writes.iter().position(|(w, _, _)| *w == id)?;
        let (_, span, (offset, len)) = watched.writes.swap_remove(at);
        watched.touch(span);
        Some((watched.source, offset, len))
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

    #[test]
    fn an_untouched_reply_is_applied() {
        let watch = watch();
        watch.requested(1, 0, 1 << 20);
        let write = watch.write_arrived(PRIMARY, 2 << 20, 4096);
        assert_eq!(watch.write_done(write), Some((SOURCE, 2 << 20, 4096)));
        assert!(watch.answered(1));
    }

    #[test]
    fn a_write_arriving_or_completing_while_a_request_is_out_touches_it() {
        let watch = watch();
        watch.requested(1, 0, 1 << 20);
        let write = watch.write_arrived(PRIMARY, 4096, 512);
        assert!(!watch.answered(1), "arrived while outstanding");

        watch.requested(2, 0, 1 << 20);
        watch.write_done(write);
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
}
