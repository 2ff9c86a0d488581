//! The out-of-sync bitmap of one volume toward one peer: one bit per 4 KiB block of the usable
//! size, set when a write could not reach the peer (or when a resync is planned), cleared when
//! the peer holds the block again.
//!
//! This module owns the in-memory bitmap, its on-disk representation (little-endian `u64`
//! words, rounded up to whole 4 KiB pages) and the record of which pages changed since they were
//! last written, so that only those are written back. It does not do I/O (see
//! [`crate::metadata`] for reading and writing bitmaps) and does not decide *when* to flush:
//! the rules the I/O path keeps are:
//!
//! - a block's bit is set before the write that made it differ is acknowledged;
//! - the pages covering an extent are written (and synced) before an activity-log transaction
//!   that evicts that extent is written ([`crate::activity_log::AlTransaction::evicted`]),
//!   because after a crash only the hot extents are assumed out of sync;
//! - bits are cleared only as a resync copies their blocks (a lost clear costs a copy, a lost set
//!   loses a write), and clears may be written back lazily;
//! - a bitmap merged from a peer, or set whole for a full resync, is written before the resync
//!   relies on it, so an interrupted resync resumes with the same set.

use std::ops::Range;

/// Bytes of data per bit (DRBD's `BM_BLOCK_SIZE_4k`).
pub const BM_BLOCK_SIZE: u64 = 4096;
/// log2 of [`BM_BLOCK_SIZE`] (DRBD's `BM_BLOCK_SHIFT_4k`).
pub const BM_BLOCK_SHIFT: u32 = 12;
/// The unit in which the bitmap is written: one 4 KiB page covers 128 MiB of data.
pub const BITMAP_PAGE_SIZE: u64 = 4096;
/// Bits (blocks) per bitmap page.
pub const BITS_PER_PAGE: u64 = BITMAP_PAGE_SIZE * 8;

const WORD_BITS: u64 = 64;
const WORDS_PER_PAGE: usize = (BITMAP_PAGE_SIZE / 8) as usize;

/// Why a bitmap operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitmapError {
    /// A range outside the usable size.
    #[error("range {offset}+{len} is outside the usable size of {usable_bytes} bytes")]
    OutOfRange {
        /// Start of the range, bytes.
        offset: u64,
        /// Length of the range, bytes.
        len: u64,
        /// The volume's usable size, bytes.
        usable_bytes: u64,
    },
    /// An on-disk bitmap of the wrong length for the usable size.
    #[error(
        "the on-disk bitmap has {found} bytes, a volume of {usable_bytes} usable bytes needs \
         {expected}"
    )]
    WrongLength {
        /// Bytes given.
        found: u64,
        /// Bytes expected.
        expected: u64,
        /// The volume's usable size, bytes.
        usable_bytes: u64,
    },
    /// An on-disk bitmap with bits past the end of the volume: it is corrupt or belongs to
    /// another size.
    #[error("the on-disk bitmap has a bit set for block {block}, past the last block {last}")]
    BitsPastTheEnd {
        /// The first such block.
        block: u64,
        /// The last block of the volume.
        last: u64,
    },
    /// Merging bitmaps of volumes of different sizes.
    #[error("cannot merge a bitmap of {theirs} usable bytes into one of {ours}")]
    SizeMismatch {
        /// This bitmap's usable size.
        ours: u64,
        /// The other's.
        theirs: u64,
    },
}

/// One volume's out-of-sync bitmap toward one peer.
#[derive(Clone, PartialEq, Eq)]
pub struct OutOfSyncBitmap {
    usable_bytes: u64,
    blocks: u64,
    /// Whole pages of words; bits past `blocks` stay zero.
    words: Vec<u64>,
    /// Bits set, kept up to date.
    set: u64,
    /// One bit per page changed since [`OutOfSyncBitmap::mark_clean`].
    dirty: Vec<u64>,
}

impl std::fmt::Debug for OutOfSyncBitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutOfSyncBitmap")
            .field("usable_bytes", &self.usable_bytes)
            .field("blocks", &self.blocks)
            .field("set", &self.set)
            .field("dirty_pages", &self.dirty_pages().count())
            .finish()
    }
}

impl OutOfSyncBitmap {
    /// An empty bitmap (everything in sync) for a volume of `usable_bytes`.
    pub fn new(usable_bytes: u64) -> Self {
        let blocks = usable_bytes.div_ceil(BM_BLOCK_SIZE);
        let pages = Self::pages_for(blocks);
        OutOfSyncBitmap {
            usable_bytes,
            blocks,
            words: vec![0; pages as usize * WORDS_PER_PAGE],
            set: 0,
            dirty: vec![0; (pages as usize).div_ceil(64)],
        }
    }

    fn pages_for(blocks: u64) -> u64 {
        blocks.div_ceil(BITS_PER_PAGE)
    }

    /// Bytes the on-disk bitmap of a volume of `usable_bytes` takes: one bit per 4 KiB block,
    /// rounded up to whole 4 KiB pages.
    pub fn on_disk_bytes(usable_bytes: u64) -> u64 {
        Self::pages_for(usable_bytes.div_ceil(BM_BLOCK_SIZE)) * BITMAP_PAGE_SIZE
    }

    /// The usable size this bitmap covers.
    pub fn usable_bytes(&self) -> u64 {
        self.usable_bytes
    }

    /// Blocks (bits) it covers; the last one may be partial.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Pages of the on-disk representation.
    pub fn pages(&self) -> u64 {
        (self.words.len() / WORDS_PER_PAGE) as u64
    }

    /// Blocks out of sync.
    pub fn count(&self) -> u64 {
        self.set
    }

    /// Bytes out of sync (the partial last block counts for what it covers).
    pub fn out_of_sync_bytes(&self) -> u64 {
        let whole = self.set * BM_BLOCK_SIZE;
        let last = self.blocks.saturating_sub(1);
        let partial = self.blocks * BM_BLOCK_SIZE - self.usable_bytes;
        if self.set > 0 && partial > 0 && self.is_set(last) {
            whole - partial
        } else {
            whole
        }
    }

    /// Whether every block is in sync.
    pub fn is_clear(&self) -> bool {
        self.set == 0
    }

    /// Whether block `block` is out of sync.
    pub fn is_set(&self, block: u64) -> bool {
        block < self.blocks
            && self.words[(block / WORD_BITS) as usize] & (1 << (block % WORD_BITS)) != 0
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), BitmapError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.usable_bytes => Ok(()),
            _ => Err(BitmapError::OutOfRange {
                offset,
                len,
                usable_bytes: self.usable_bytes,
            }),
        }
    }

    /// Marks the blocks a write of `len` bytes at `offset` touched out of sync, rounding
    /// outward: a partial write makes its whole block differ. Returns how many bits changed.
    pub fn set_range(&mut self, offset: u64, len: u64) -> Result<u64, BitmapError> {
        self.check(offset, len)?;
        if len == 0 {
            return Ok(0);
        }
        let first = offset / BM_BLOCK_SIZE;
        let end = (offset + len).div_ceil(BM_BLOCK_SIZE);
        Ok(self.change_bits(first, end, true))
    }

    /// Marks the blocks a resync of `len` bytes at `offset` copied in sync, rounding inward:
    /// only blocks the range covers whole are cleared (the partial last block of the volume is
    /// whole when the range reaches the end). Returns how many bits changed.
    pub fn clear_range(&mut self, offset: u64, len: u64) -> Result<u64, BitmapError> {
        self.check(offset, len)?;
        let first = offset.div_ceil(BM_BLOCK_SIZE);
        let end_byte = offset + len;
        let end = if end_byte == self.usable_bytes {
            self.blocks
        } else {
            end_byte / BM_BLOCK_SIZE
        };
        if first >= end {
            return Ok(0);
        }
        Ok(self.change_bits(first, end, false))
    }

    /// Everything out of sync (a full resync).
    pub fn set_all(&mut self) -> u64 {
        self.change_bits(0, self.blocks, true)
    }

    /// Everything in sync (skipping the initial sync).
    pub fn clear_all(&mut self) -> u64 {
        self.change_bits(0, self.blocks, false)
    }

    /// Sets (or clears) blocks `first..end`; returns how many changed.
    fn change_bits(&mut self, first: u64, end: u64, value: bool) -> u64 {
        let mut changed = 0;
        let mut block = first;
        while block < end {
            let word = (block / WORD_BITS) as usize;
            let bit = block % WORD_BITS;
            let span = (WORD_BITS - bit).min(end - block);
            let mask = if span == WORD_BITS {
                u64::MAX
            } else {
                ((1u64 << span) - 1) << bit
            };
            let old = self.words[word];
            let new = if value { old | mask } else { old & !mask };
            if new != old {
                changed += u64::from((old ^ new).count_ones());
                self.words[word] = new;
                self.mark_word_dirty(word);
            }
            block += span;
        }
        if value {
            self.set += changed;
        } else {
            self.set -= changed;
        }
        changed
    }

    fn mark_word_dirty(&mut self, word: usize) {
        let page = word / WORDS_PER_PAGE;
        self.dirty[page / 64] |= 1 << (page % 64);
    }

    /// Whether any block of `len` bytes at `offset` is out of sync.
    /// The first out-of-sync range at or after `offset`, at most `max_len` bytes long (at least
    /// one block): where a resync continues.
    pub fn next_range_from(&self, offset: u64, max_len: u64) -> Option<(u64, u64)> {
        if offset >= self.usable_bytes {
            return None;
        }
        let start = self.next_set_block(offset / BM_BLOCK_SIZE)?;
        let limit = start + (max_len / BM_BLOCK_SIZE).max(1);
        let end = self.next_clear_block(start).min(limit);
        let start_bytes = start * BM_BLOCK_SIZE;
        let end_bytes = (end * BM_BLOCK_SIZE).min(self.usable_bytes);
        Some((start_bytes, end_bytes - start_bytes))
    }

    pub fn any_set(&self, offset: u64, len: u64) -> bool {
        if len == 0 || offset >= self.usable_bytes {
            return false;
        }
        let end = (offset.saturating_add(len)).min(self.usable_bytes);
        self.next_set_block(offset / BM_BLOCK_SIZE)
            .is_some_and(|block| block < end.div_ceil(BM_BLOCK_SIZE))
    }

    /// The first out-of-sync block at or after `from`.
    fn next_set_block(&self, from: u64) -> Option<u64> {
        if from >= self.blocks {
            return None;
        }
        let mut word = (from / WORD_BITS) as usize;
        let mut bits = self.words[word] & (u64::MAX << (from % WORD_BITS));
        loop {
            if bits != 0 {
                let block = word as u64 * WORD_BITS + u64::from(bits.trailing_zeros());
                return (block < self.blocks).then_some(block);
            }
            word += 1;
            if word >= self.words.len() {
                return None;
            }
            bits = self.words[word];
        }
    }

    /// The first in-sync block at or after `from` (or the block count).
    fn next_clear_block(&self, from: u64) -> u64 {
        if from >= self.blocks {
            return self.blocks;
        }
        let mut word = (from / WORD_BITS) as usize;
        let mut bits = !self.words[word] & (u64::MAX << (from % WORD_BITS));
        loop {
            if bits != 0 {
                let block = word as u64 * WORD_BITS + u64::from(bits.trailing_zeros());
                return block.min(self.blocks);
            }
            word += 1;
            if word >= self.words.len() {
                return self.blocks;
            }
            bits = !self.words[word];
        }
    }

    /// The out-of-sync byte ranges, maximal and in linear order (the order a resync copies
    /// them in); the last one ends at the usable size at most.
    pub fn ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let start = self.next_set_block(at)?;
            let end = self.next_clear_block(start);
            at = end;
            Some(start * BM_BLOCK_SIZE..(end * BM_BLOCK_SIZE).min(self.usable_bytes))
        })
    }

    /// The out-of-sync byte ranges in linear order, split where they cross a boundary of
    /// `extent_size` (a power of two, a multiple of 4 KiB) and at most `max_len` long (rounded
    /// down to whole blocks, at least one): each is one resync request inside one resync extent,
    /// which the I/O path locks against application writes.
    pub fn ranges_in_extents(
        &self,
        extent_size: u64,
        max_len: u64,
    ) -> impl Iterator<Item = Range<u64>> + '_ {
        assert!(
            extent_size.is_power_of_two() && extent_size >= BM_BLOCK_SIZE,
            "extent size {extent_size} is not a power of two of at least one block"
        );
        let max_len = (max_len / BM_BLOCK_SIZE).max(1) * BM_BLOCK_SIZE;
        self.ranges().flat_map(move |range| {
            let mut start = range.start;
            std::iter::from_fn(move || {
                if start >= range.end {
                    return None;
                }
                let extent_end = (start / extent_size + 1) * extent_size;
                let end = range.end.min(extent_end).min(start + max_len);
                let piece = start..end;
                start = end;
                Some(piece)
            })
        })
    }

    /// ORs `other` (a peer's bitmap toward this member, received at the handshake) into this
    /// one. Returns how many bits changed.
    pub fn merge(&mut self, other: &OutOfSyncBitmap) -> Result<u64, BitmapError> {
        if other.usable_bytes != self.usable_bytes {
            return Err(BitmapError::SizeMismatch {
                ours: self.usable_bytes,
                theirs: other.usable_bytes,
            });
        }
        let mut changed = 0;
        for word in 0..self.words.len() {
            let old = self.words[word];
            let new = old | other.words[word];
            if new != old {
                changed += u64::from((old ^ new).count_ones());
                self.words[word] = new;
                self.mark_word_dirty(word);
            }
        }
        self.set += changed;
        Ok(changed)
    }

    /// The pages holding the bits of `len` bytes at `offset` (clamped to the volume).
    pub fn pages_covering(&self, offset: u64, len: u64) -> Range<u64> {
        if len == 0 || offset >= self.usable_bytes {
            return 0..0;
        }
        let first = offset / BM_BLOCK_SIZE / BITS_PER_PAGE;
        let last_block = (offset.saturating_add(len).min(self.usable_bytes) - 1) / BM_BLOCK_SIZE;
        first..last_block / BITS_PER_PAGE + 1
    }

    /// Pages changed since they were last marked clean, in order.
    pub fn dirty_pages(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.pages()).filter(|page| self.is_dirty(*page))
    }

    /// Whether page `page` changed since it was last marked clean.
    pub fn is_dirty(&self, page: u64) -> bool {
        let page = page as usize;
        page / 64 < self.dirty.len() && self.dirty[page / 64] & (1 << (page % 64)) != 0
    }

    /// Records that page `page` is on disk as it is now.
    pub fn mark_clean(&mut self, page: u64) {
        let page = page as usize;
        if page / 64 < self.dirty.len() {
            self.dirty[page / 64] &= !(1 << (page % 64));
        }
    }

    /// Records that every page must be written (after reading a bitmap of unknown state).
    pub fn mark_all_dirty(&mut self) {
        for page in 0..self.pages() {
            self.mark_word_dirty(page as usize * WORDS_PER_PAGE);
        }
    }

    /// The on-disk bytes of page `page` (4 KiB, little-endian words).
    pub fn encode_page(&self, page: u64) -> [u8; BITMAP_PAGE_SIZE as usize] {
        let mut out = [0u8; BITMAP_PAGE_SIZE as usize];
        let first = page as usize * WORDS_PER_PAGE;
        for (chunk, word) in out
            .chunks_exact_mut(8)
            .zip(&self.words[first..first + WORDS_PER_PAGE])
        {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// The whole on-disk representation ([`OutOfSyncBitmap::on_disk_bytes`] long).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8);
        for word in &self.words {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// A bitmap from its on-disk representation, for a volume of `usable_bytes`. Every page is
    /// clean (it is what the disk holds). Refuses a wrong length and bits past the last block.
    pub fn decode(usable_bytes: u64, bytes: &[u8]) -> Result<Self, BitmapError> {
        let mut bitmap = OutOfSyncBitmap::new(usable_bytes);
        let expected = Self::on_disk_bytes(usable_bytes);
        if bytes.len() as u64 != expected {
            return Err(BitmapError::WrongLength {
                found: bytes.len() as u64,
                expected,
                usable_bytes,
            });
        }
        for (word, chunk) in bitmap.words.iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        }
        let total: u64 = bitmap.words.iter().map(|w| u64::from(w.count_ones())).sum();
        let past_end = bitmap.next_set_block_unbounded(bitmap.blocks);
        if let Some(block) = past_end {
            return Err(BitmapError::BitsPastTheEnd {
                block,
                last: bitmap.blocks.saturating_sub(1),
            });
        }
        bitmap.set = total;
        Ok(bitmap)
    }

    /// Like `next_set_block`, but also past the last block (to find corruption).
    fn next_set_block_unbounded(&self, from: u64) -> Option<u64> {
        let total_bits = self.words.len() as u64 * WORD_BITS;
        (from..total_bits)
            .find(|b| self.words[(b / WORD_BITS) as usize] & (1 << (b % WORD_BITS)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn sizes() {
        assert_eq!(OutOfSyncBitmap::on_disk_bytes(0), 0);
        assert_eq!(OutOfSyncBitmap::on_disk_bytes(1), 4096);
        assert_eq!(OutOfSyncBitmap::on_disk_bytes(128 * MIB), 4096);
        assert_eq!(OutOfSyncBitmap::on_disk_bytes(128 * MIB + 1), 8192);
        // 32 MiB of bitmap per TiB, as DRBD.
        assert_eq!(OutOfSyncBitmap::on_disk_bytes(1 << 40), 32 * MIB);
        let b = OutOfSyncBitmap::new(10_000);
        assert_eq!((b.blocks(), b.pages()), (3, 1));
    }

    #[test]
    fn partial_writes_round_outward_and_resync_rounds_inward() {
        let mut b = OutOfSyncBitmap::new(64 * MIB);
        assert_eq!(b.set_range(4095, 2).unwrap(), 2, "two blocks touched");
        assert!(b.is_set(0) && b.is_set(1) && !b.is_set(2));
        // A resync of half of block 1 clears nothing; of block 0 whole, block 0.
        assert_eq!(b.clear_range(4096, 2048).unwrap(), 0);
        assert_eq!(b.clear_range(0, 4096).unwrap(), 1);
        assert_eq!(b.count(), 1);
        assert_eq!(
            b.clear_range(100, 8192).unwrap(),
            1,
            "block 1 is covered whole"
        );
        assert!(b.is_clear());
        // Out of range.
        assert!(matches!(
            b.set_range(64 * MIB - 1, 2),
            Err(BitmapError::OutOfRange { .. })
        ));
        assert!(matches!(
            b.set_range(u64::MAX, 2),
            Err(BitmapError::OutOfRange { .. })
        ));
        assert_eq!(b.set_range(10, 0).unwrap(), 0);
    }

    #[test]
    fn the_partial_last_block() {
        let mut b = OutOfSyncBitmap::new(3 * 4096 + 512);
        assert_eq!(b.blocks(), 4);
        b.set_range(3 * 4096 + 100, 10).unwrap();
        assert_eq!(
            b.ranges().collect::<Vec<_>>(),
            vec![3 * 4096..3 * 4096 + 512]
        );
        assert_eq!(b.out_of_sync_bytes(), 512);
        // A resync that reaches the end covers the last block whole.
        assert_eq!(b.clear_range(3 * 4096, 512).unwrap(), 1);
        assert_eq!(b.set_all(), 4);
        assert_eq!(b.out_of_sync_bytes(), 3 * 4096 + 512);
    }

    #[test]
    fn ranges_are_linear_and_split_at_extents() {
        let mut b = OutOfSyncBitmap::new(64 * MIB);
        b.set_range(3 * MIB, 3 * MIB).unwrap(); // crosses the 4 MiB boundary
        b.set_range(20 * MIB, 4096).unwrap();
        assert_eq!(
            b.ranges().collect::<Vec<_>>(),
            vec![3 * MIB..6 * MIB, 20 * MIB..20 * MIB + 4096]
        );
        let pieces: Vec<_> = b.ranges_in_extents(4 * MIB, MIB).collect();
        assert_eq!(
            pieces,
            vec![
                3 * MIB..4 * MIB,
                4 * MIB..5 * MIB,
                5 * MIB..6 * MIB,
                20 * MIB..20 * MIB + 4096
            ]
        );
        assert!(b.any_set(5 * MIB, 1));
        assert!(!b.any_set(6 * MIB, 14 * MIB));
        assert!(b.any_set(6 * MIB, 14 * MIB + 1));
    }

    #[test]
    fn merge_is_or() {
        let mut ours = OutOfSyncBitmap::new(16 * MIB);
        let mut theirs = OutOfSyncBitmap::new(16 * MIB);
        ours.set_range(0, 8192).unwrap();
        theirs.set_range(4096, 8192).unwrap();
        assert_eq!(ours.merge(&theirs).unwrap(), 1);
        assert_eq!(ours.count(), 3);
        assert!(matches!(
            ours.merge(&OutOfSyncBitmap::new(MIB)),
            Err(BitmapError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn only_changed_pages_are_dirty() {
        let mut b = OutOfSyncBitmap::new(1 << 30); // 8 pages
        assert_eq!(b.pages(), 8);
        assert_eq!(b.dirty_pages().count(), 0);
        b.set_range(300 * MIB, 4096).unwrap(); // page 2
        assert_eq!(b.dirty_pages().collect::<Vec<_>>(), vec![2]);
        b.mark_clean(2);
        b.set_range(300 * MIB, 4096).unwrap(); // no change: stays clean
        assert_eq!(b.dirty_pages().count(), 0);
        b.clear_range(300 * MIB, 4096).unwrap();
        assert_eq!(b.dirty_pages().collect::<Vec<_>>(), vec![2]);
        assert_eq!(b.pages_covering(127 * MIB, 2 * MIB), 0..2);
        assert_eq!(b.pages_covering(0, 0), 0..0);
        b.mark_all_dirty();
        assert_eq!(b.dirty_pages().count(), 8);
    }

    #[test]
    fn on_disk_format_is_little_endian_words() {
        let mut b = OutOfSyncBitmap::new(MIB);
        b.set_range(0, 4096).unwrap();
        b.set_range(65 * 4096, 1).unwrap();
        let bytes = b.encode();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(&bytes[0..8], &1u64.to_le_bytes());
        assert_eq!(&bytes[8..16], &2u64.to_le_bytes());
        assert_eq!(b.encode_page(0).as_slice(), bytes.as_slice());
        let back = OutOfSyncBitmap::decode(MIB, &bytes).unwrap();
        assert_eq!(back, {
            let mut c = b.clone();
            c.dirty = back.dirty.clone();
            c
        });
        assert_eq!(back.dirty_pages().count(), 0);
        // Wrong length; bits past the end.
        assert!(matches!(
            OutOfSyncBitmap::decode(MIB, &bytes[..8]),
            Err(BitmapError::WrongLength { .. })
        ));
        let mut corrupt = bytes.clone();
        corrupt[4095] = 0x80;
        assert_eq!(
            OutOfSyncBitmap::decode(MIB, &corrupt),
            Err(BitmapError::BitsPastTheEnd {
                block: 32767,
                last: 255
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Against a vector of per-block flags: set rounds outward, clear inward, counts,
        /// ranges, extents and the on-disk round trip agree.
        #[test]
        fn agrees_with_a_model(
            usable in 1u64..(3 * BITS_PER_PAGE * BM_BLOCK_SIZE),
            ops in proptest::collection::vec((any::<bool>(), any::<u64>(), 0u64..(16 * MIB)), 1..30),
        ) {
            let mut b = OutOfSyncBitmap::new(usable);
            let blocks = usable.div_ceil(BM_BLOCK_SIZE);
            let mut model = vec![false; blocks as usize];
            for (set, offset, len) in ops {
                let offset = offset % usable;
                let len = len.min(usable - offset);
                if set {
                    b.set_range(offset, len).unwrap();
                    if len > 0 {
                        let range = offset / BM_BLOCK_SIZE..(offset + len).div_ceil(BM_BLOCK_SIZE);
                        model[range.start as usize..range.end as usize].fill(true);
                    }
                } else {
                    b.clear_range(offset, len).unwrap();
                    let end = if offset + len == usable { blocks } else { (offset + len) / BM_BLOCK_SIZE };
                    let start = offset.div_ceil(BM_BLOCK_SIZE);
                    if start < end {
                        model[start as usize..end as usize].fill(false);
                    }
                }
            }
            prop_assert_eq!(b.count(), model.iter().filter(|x| **x).count() as u64);
            let mut from_ranges = vec![false; blocks as usize];
            for r in b.ranges() {
                from_ranges[(r.start / BM_BLOCK_SIZE) as usize..r.end.div_ceil(BM_BLOCK_SIZE) as usize].fill(true);
            }
            prop_assert!(from_ranges == model, "ranges disagree with the model");
            let pieces: Vec<_> = b.ranges_in_extents(4 * MIB, MIB).collect();
            for pair in pieces.windows(2) {
                prop_assert!(pair[0].end <= pair[1].start, "linear order");
            }
            for piece in &pieces {
                prop_assert!(piece.end - piece.start <= MIB);
                prop_assert_eq!(piece.start / (4 * MIB), (piece.end - 1) / (4 * MIB));
            }
            let total: u64 = pieces.iter().map(|p| p.end - p.start).sum();
            prop_assert_eq!(total, b.out_of_sync_bytes());
            let back = OutOfSyncBitmap::decode(usable, &b.encode()).unwrap();
            prop_assert_eq!(back.count(), b.count());
            prop_assert_eq!(back.ranges().collect::<Vec<_>>(), b.ranges().collect::<Vec<_>>());
        }
    }
}
