//! Serializes overlapping writes of a volume in the order they were submitted.
//!
//! A block device promises only that a write submitted after another completed lands after it.
//! Two *concurrent* writes to the same block may land in either order — but every replica must
//! land them in the same order, or the replicas differ. So on every member, a write (from a
//! frontend, from the Primary, or from a resync) waits until every earlier overlapping write has
//! completed: the Primary sends overlapping writes one after the other, and a peer applies them
//! one after the other (DRBD's conflict detection does the same). Writes that do not overlap go
//! in parallel.
//!
//! Ranges are widened to whole 4 KiB blocks, the bitmap's granularity, so a 512-byte write and
//! a resync of its block conflict.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The granularity of conflicts: the out-of-sync bitmap's block.
pub const CONFLICT_BLOCK: u64 = 4096;

/// A half-open byte range, widened to whole blocks (also the resync watch's unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u64,
    end: u64,
}

impl Span {
    pub(crate) fn new(offset: u64, len: u64) -> Span {
        let start = offset / CONFLICT_BLOCK * CONFLICT_BLOCK;
        let end = (offset + len.max(1)).div_ceil(CONFLICT_BLOCK) * CONFLICT_BLOCK;
        Span { start, end }
    }

    pub(crate) fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

struct Waiter {
    id: u64,
    span: Span,
    admit: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    active: Vec<(u64, Span)>,
    waiting: VecDeque<Waiter>,
}

/// The in-flight writes of one volume.
#[derive(Clone, Default)]
pub struct ConflictSet {
    inner: Arc<Mutex<Inner>>,
}

/// A place in line for a range; [`Reservation::wait`] turns it into the range.
pub struct Reservation {
    guard: RangeGuard,
    admitted: Option<oneshot::Receiver<()>>,
}

impl Reservation {
    /// The range now, if no earlier overlapping write holds or waits for it; else the
    /// reservation back, to [`Reservation::wait`] on.
    pub fn now(self) -> Result<RangeGuard, Reservation> {
        match self.admitted {
            None => Ok(self.guard),
            Some(_) => Err(self),
        }
    }

    /// Waits until the range is ours.
    pub async fn wait(self) -> RangeGuard {
        let Reservation {
            mut guard,
            admitted,
        } = self;
        if let Some(admitted) = admitted
            && admitted.await.is_err()
        {
            // The set went away; nothing can conflict any more.
            guard.id = u64::MAX;
        }
        guard
    }
}

/// Holds a range; dropping it lets the next overlapping write go.
pub struct RangeGuard {
    set: ConflictSet,
    id: u64,
}

impl ConflictSet {
    pub fn new() -> ConflictSet {
        ConflictSet::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until no earlier write overlapping `len` bytes at `offset` is in flight or
    /// waiting, then holds the range.
    pub async fn acquire(&self, offset: u64, len: u64) -> RangeGuard {
        self.reserve(offset, len).wait().await
    }

    /// Takes a place in line for the range now (so the order of calls is the order of
    /// admission), to wait for later: the receive path reserves each peer write as its frame
    /// arrives, then applies it in a task of its own.
    pub fn reserve(&self, offset: u64, len: u64) -> Reservation {
        let span = Span::new(offset, len);
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let blocked = inner.active.iter().any(|(_, s)| s.overlaps(&span))
            || inner.waiting.iter().any(|w| w.span.overlaps(&span));
        let guard = RangeGuard {
            set: self.clone(),
            id,
        };
        if !blocked {
            inner.active.push((id, span));
            return Reservation {
                guard,
                admitted: None,
            };
        }
        let (admit, admitted) = oneshot::channel();
        inner.waiting.push_back(Waiter { id, span, admit });
        Reservation {
            guard,
            admitted: Some(admitted),
        }
    }

    /// How many writes are in flight.
    pub fn in_flight(&self) -> usize {
        self.lock().active.len()
    }

    /// Ends a write, or a wait that was given up (its guard exists from the moment it queues).
    fn release(&self, id: u64) {
        let mut inner = self.lock();
        inner.active.retain(|(active, _)| *active != id);
        inner.waiting.retain(|waiter| waiter.id != id);
        // Admit waiters in order: each one that overlaps nothing active and no earlier waiter.
        let mut still_waiting = VecDeque::with_capacity(inner.waiting.len());
        let mut admitted = Vec::new();
        while let Some(waiter) = inner.waiting.pop_front() {
            let blocked = inner.active.iter().any(|(_, s)| s.overlaps(&waiter.span))
                || still_waiting
                    .iter()
                    .any(|w: &Waiter| w.span.overlaps(&waiter.span));
            if blocked {
                still_waiting.push_back(waiter);
            } else {
                inner.active.push((waiter.id, waiter.span));
                admitted.push(waiter.admit);
            }
        }
        inner.waiting = still_waiting;
        drop(inner);
        for admit in admitted {
            // A waiter that gave up meanwhile frees its range when its guard drops.
            let _ = admit.send(());
        }
    }
}

impl Drop for RangeGuard {
    fn drop(&mut self) {
        if self.id != u64::MAX {
            self.set.release(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn overlapping_writes_go_in_order_and_others_in_parallel() {
        let set = ConflictSet::new();
        let first = set.acquire(0, 4096).await;
        // Another block: at once.
        let other = set.acquire(8192, 512).await;
        assert_eq!(set.in_flight(), 2);
        // The same block (a 512-byte write inside it): waits.
        let order = Arc::new(Mutex::new(Vec::new()));
        let second = tokio::spawn({
            let (set, order) = (set.clone(), order.clone());
            async move {
                let guard = set.acquire(1024, 512).await;
                order.lock().unwrap().push(2);
                drop(guard);
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A third write overlapping the waiting second one queues behind it, even though it
        // does not overlap anything active... (it overlaps `first` too, here).
        let third = tokio::spawn({
            let (set, order) = (set.clone(), order.clone());
            async move {
                let guard = set.acquire(0, 8192).await;
                order.lock().unwrap().push(3);
                drop(guard);
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(order.lock().unwrap().is_empty());
        drop(first);
        second.await.unwrap();
        third.await.unwrap();
        assert_eq!(*order.lock().unwrap(), [2, 3]);
        drop(other);
        assert_eq!(set.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_frees_the_way() {
        let set = ConflictSet::new();
        let first = set.acquire(0, 4096).await;
        let abandoned = tokio::spawn({
            let set = set.clone();
            async move {
                let _guard = set.acquire(0, 4096).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        abandoned.abort();
        let _ = abandoned.await;
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), set.acquire(0, 4096))
            .await
            .expect("not blocked by the abandoned waiter");
    }
}
