//! Buffers aligned for `O_DIRECT`.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::ptr::NonNull;

/// The alignment of every [`AlignedBuf`]: enough for `O_DIRECT` on any device.
pub const ALIGNMENT: usize = 4096;

/// A heap buffer whose start is aligned to [`ALIGNMENT`]. Made zeroed ([`AlignedBuf::zeroed`]),
/// or empty with room to be filled ([`AlignedBuf::with_capacity`], then `bytes::BufMut`, e.g.
/// tokio's `read_buf`, without zeroing first). Turn it into `bytes::Bytes` with
/// `Bytes::from_owner` to share it without copying.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
}

// SAFETY: the buffer owns its allocation exclusively; moving it between threads is like moving a
// Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read the bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes; its capacity is `len` rounded up to the alignment.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let capacity = len.div_ceil(ALIGNMENT).max(1) * ALIGNMENT;
        let layout = Layout::from_size_align(capacity, ALIGNMENT).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len, capacity }
    }

    /// An empty buffer with room for `capacity` bytes (rounded up to the alignment), not
    /// zeroed: fill it through `bytes::BufMut`.
    pub fn with_capacity(capacity: usize) -> AlignedBuf {
        let capacity = capacity.div_ceil(ALIGNMENT).max(1) * ALIGNMENT;
        let layout = Layout::from_size_align(capacity, ALIGNMENT).expect("valid layout");
        // SAFETY: the layout has a non-zero size. The bytes stay uninitialized until written
        // through `BufMut`, and `len` only covers written bytes.
        let raw = unsafe { alloc(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf {
            ptr,
            len: 0,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// How many bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens the buffer (e.g. to what a read returned); never grows it.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for `capacity >= len` initialized (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

// SAFETY: `chunk_mut` hands out exactly the unwritten tail of the allocation, and
// `advance_mut` only counts bytes the caller wrote into it.
unsafe impl bytes::BufMut for AlignedBuf {
    fn remaining_mut(&self) -> usize {
        self.capacity - self.len
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        assert!(
            count <= self.capacity - self.len,
            "advanced past the buffer's capacity"
        );
        self.len += count;
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        // SAFETY: the range [len, capacity) lies inside the allocation.
        unsafe {
            bytes::buf::UninitSlice::from_raw_parts_mut(
                self.ptr.as_ptr().add(self.len),
                self.capacity - self.len,
            )
        }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, ALIGNMENT).expect("valid layout");
        // SAFETY: allocated in `zeroed` with this very layout.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_buffer_fills_through_buf_mut() {
        use bytes::BufMut;
        let mut buf = AlignedBuf::with_capacity(10);
        assert_eq!((buf.len(), buf.capacity()), (0, ALIGNMENT));
        buf.put_slice(b"hello");
        buf.put_u8(b'!');
        assert_eq!(&buf[..], b"hello!");
        assert_eq!(buf.remaining_mut(), ALIGNMENT - 6);
    }

    #[test]
    fn buffers_are_aligned_zeroed_and_shareable_without_copying() {
        for len in [1, 4096, 4097, 1 << 20] {
            let mut buf = AlignedBuf::zeroed(len);
            assert_eq!(buf.as_ptr() as usize % ALIGNMENT, 0);
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|b| *b == 0));
            buf[len - 1] = 7;
            let start = buf.as_ptr();
            let shared = bytes::Bytes::from_owner(buf);
            assert_eq!(shared.as_ptr(), start, "no copy");
            assert_eq!(shared[len - 1], 7);
        }
    }
}
