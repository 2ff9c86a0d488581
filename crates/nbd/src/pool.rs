//! A pool of aligned buffers, so that a stream of large requests does not allocate fresh
//! memory for each one.
//!
//! Why: the allocator hands a freed 1 MiB buffer back to the kernel (a per-thread arena trims
//! its top), and the next one faults every page in again: measured, one page fault per 4 KiB
//! of payload, most of the server's system time for sequential writes. Buffers come in
//! power-of-two classes from 4 KiB to the largest request; a buffer goes back to its shelf when
//! the last `Bytes` that shares it is dropped, wherever that happens (the volume may keep it as
//! long as it likes). The pool keeps at most [`POOL_BYTES`] in total; past that, buffers are
//! freed.
//!
//! It lives here because the NBD server is its first user; it belongs next to
//! [`ferrite_block::AlignedBuf`] once the engine uses it too.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferrite_block::{AlignedBuf, MAX_REQUEST_BYTES};

/// The most memory the pool keeps for reuse.
pub const POOL_BYTES: usize = 64 << 20;

/// The smallest class: 4 KiB.
const SMALLEST_SHIFT: u32 = 12;
/// Classes up to the largest request, 32 MiB.
const CLASSES: usize = (MAX_REQUEST_BYTES.trailing_zeros() - SMALLEST_SHIFT + 1) as usize;

/// Shelves of free aligned buffers, by size class.
pub struct BufferPool {
    shelves: [Mutex<Vec<AlignedBuf>>; CLASSES],
    kept_bytes: AtomicUsize,
    max_bytes: usize,
}

/// The class of a buffer that holds `length` bytes, if it is pooled at all.
fn class_of(length: usize) -> Option<usize> {
    let rounded = length.max(1).checked_next_power_of_two()?;
    let class = rounded.trailing_zeros().saturating_sub(SMALLEST_SHIFT) as usize;
    (class < CLASSES).then_some(class)
}

fn class_size(class: usize) -> usize {
    1 << (SMALLEST_SHIFT as usize + class)
}

impl BufferPool {
    /// A pool that keeps at most `max_bytes` of free buffers.
    pub fn new(max_bytes: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            shelves: std::array::from_fn(|_| Mutex::new(Vec::new())),
            kept_bytes: AtomicUsize::new(0),
            max_bytes,
        })
    }

    /// An empty buffer with room for at least `length` bytes.
    pub fn take(self: &Arc<BufferPool>, length: usize) -> PooledBuf {
        let buffer = match class_of(length) {
            Some(class) => {
                let reused = self.shelves[class]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop();
                match reused {
                    Some(mut buffer) => {
                        self.kept_bytes
                            .fetch_sub(buffer.capacity(), Ordering::Relaxed);
                        buffer.truncate(0);
                        buffer
                    }
                    None => AlignedBuf::with_capacity(class_size(class)),
                }
            }
            None => AlignedBuf::with_capacity(length),
        };
        PooledBuf {
            buffer: Some(buffer),
            pool: Arc::clone(self),
        }
    }

    fn give_back(&self, buffer: AlignedBuf) {
        let capacity = buffer.capacity();
        let Some(class) = class_of(capacity).filter(|class| class_size(*class) == capacity) else {
            return;
        };
        let kept = self.kept_bytes.fetch_add(capacity, Ordering::Relaxed);
        if kept + capacity > self.max_bytes {
            self.kept_bytes.fetch_sub(capacity, Ordering::Relaxed);
            return;
        }
        self.shelves[class]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buffer);
    }

    /// Bytes kept for reuse now.
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes.load(Ordering::Relaxed)
    }
}

/// An aligned buffer that goes back to its pool when dropped. Fill it through `bytes::BufMut`
/// (it dereferences to [`AlignedBuf`]), then share it with [`PooledBuf::freeze`].
pub struct PooledBuf {
    buffer: Option<AlignedBuf>,
    pool: Arc<BufferPool>,
}

impl PooledBuf {
    /// Shares the filled part without copying; the buffer returns to the pool when the last
    /// clone of the `Bytes` is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl Deref for PooledBuf {
    type Target = AlignedBuf;
    fn deref(&self) -> &AlignedBuf {
        self.buffer.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut AlignedBuf {
        self.buffer.as_mut().expect("present until dropped")
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;

    #[test]
    fn classes_are_powers_of_two_from_4_kib_to_the_largest_request() {
        assert_eq!(CLASSES, 14);
        assert_eq!(class_of(0), Some(0));
        assert_eq!(class_of(4096), Some(0));
        assert_eq!(class_of(4097), Some(1));
        assert_eq!(class_of(1 << 20), Some(8));
        assert_eq!(class_of(MAX_REQUEST_BYTES as usize), Some(13));
        assert_eq!(class_of(MAX_REQUEST_BYTES as usize + 1), None);
    }

    #[test]
    fn buffers_come_back_when_the_last_bytes_is_dropped_and_are_reused_empty() {
        let pool = BufferPool::new(POOL_BYTES);
        let mut buffer = pool.take(5000);
        assert_eq!((buffer.len(), buffer.capacity()), (0, 8192));
        buffer.put_slice(b"hello");
        let start = buffer.as_ptr();
        let bytes = buffer.freeze();
        let shared = bytes.clone();
        drop(bytes);
        assert_eq!(pool.kept_bytes(), 0, "still shared");
        assert_eq!(&shared[..], b"hello");
        drop(shared);
        assert_eq!(pool.kept_bytes(), 8192);

        let again = pool.take(8000);
        assert_eq!(again.as_ptr(), start, "the same memory");
        assert_eq!(again.len(), 0);
        assert_eq!(pool.kept_bytes(), 0);
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_limit() {
        let pool = BufferPool::new(3 << 20);
        let buffers: Vec<_> = (0..5).map(|_| pool.take(1 << 20)).collect();
        drop(buffers);
        assert_eq!(pool.kept_bytes(), 3 << 20);
        // Larger than any class: not pooled.
        drop(pool.take(MAX_REQUEST_BYTES as usize + 1));
        assert_eq!(pool.kept_bytes(), 3 << 20);
    }
}
