//! The activity log (AL): the set of "hot" 4 MiB extents of a volume that may have writes in
//! flight, so that after a crash only those extents need a resync, not the whole volume.
//!
//! This module owns the in-memory AL of one volume (which extent sits in which of its slots,
//! how many writes are in flight in each, least-recently-used order), the encoding of AL
//! transactions as 4 KiB blocks of a ring, and recovery from that ring after a crash. It does no
//! I/O: [`crate::metadata`] reads and writes the ring, and the I/O path calls
//! [`ActivityLog::begin_write`] / [`ActivityLog::end_write`] around every application write.
//!
//! The rules the I/O path keeps (DRBD's, `drbd-internals`):
//!
//! - A write whose [`ActivityLog::begin_write`] returned a transaction is submitted only after
//!   that transaction is durable in the ring (written with FUA or followed by fsync) and
//!   [`ActivityLog::transaction_written`] was called. Writes into extents that are already hot
//!   pay nothing.
//! - Transactions are written one at a time, in sequence order, each to ring block
//!   `sequence % ring_blocks`; so only the newest can be torn by a crash, and a write waiting
//!   for transaction N goes only once N itself is durable. Two writes that heat extents at
//!   once make N and N+1, and either task may reach the ring first: the I/O path queues each
//!   transaction where it is made and writes the queue in order ([`crate::backing`]).
//!   [`ActivityLog::transaction_written`] checks the order in debug builds.
//! - Before writing a transaction, the bitmap pages covering its
//!   [`AlTransaction::evicted`] extents are written and synced for every peer: an extent that
//!   leaves the AL is no longer assumed out of sync after a crash, so its bits must be on disk.
//!   So must its data (DRBD's pre-flush of an activity-log write): the writes into an evicted
//!   extent completed, but may sit in a volatile cache (the page cache, the disk's) that a
//!   crash loses, and after the transaction nothing would resync them.
//! - Both the Primary's own writes and, on a Secondary, the Primary's writes it applies enter
//!   the log (DRBD 9's `drbd_al_begin_io_for_peer`); resync data does not, except on a member
//!   that records what an absent disk misses, whose bits for it live in memory.
//! - [`ActivityLog::cool`] frees the extents no write touched for a whole pass (or every idle
//!   one, going down), except those the caller keeps (a Primary's writes not confirmed yet):
//!   the same rules as an eviction. A clean stop so leaves an empty log.
//! - After a member stopped without going down, [`recover`] gives the extents that were hot;
//!   the I/O path sets them out of sync toward every peer, writes those bitmaps, and only then
//!   writes a fresh [`ActivityLog::format`] over the ring (continuing the sequence numbers). If
//!   recovery fails, every block is out of sync (a full resync): never a silent guess.
//!
//! Transaction layout (little-endian), one 4 KiB block:
//!
//! ```text
//!   0  magic "FERMIRAL"            8  sequence u64         16  crc32c u32 (of the block, this field 0)
//!  20  kind u16 (0 update, 1 initialized)                  22  updates u16
//!  24  slots u16 (al-extents)     26  context start u16    28  context length u16   30  reserved
//!  32  update slot numbers, 64 × u16
//! 160  update extent numbers, 64 × u32 (0xFFFFFFFF: slot freed)
//! 416  context: 920 × u32, the extents of slots start.. (mod slots) after this transaction
//! ```
//!
//! Every transaction carries a window of the whole slot table (the context), moving on by its
//! length each time, so the newest `ceil(slots / 920)` transactions describe every slot; the
//! ring holds at least two more than that, so one torn block costs nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;

/// log2 of the AL extent size (DRBD's `AL_EXTENT_SHIFT`).
pub const AL_EXTENT_SHIFT: u32 = 22;
/// Bytes per AL extent: 4 MiB (DRBD's `AL_EXTENT_SIZE`).
pub const AL_EXTENT_SIZE: u64 = 1 << AL_EXTENT_SHIFT;
/// Slots in the AL unless configured (DRBD's `DRBD_AL_EXTENTS_DEF`, option `al-extents`):
/// about 4.8 GiB hot.
pub const AL_EXTENTS_DEFAULT: u16 = 1237;
/// The smallest `al-extents` DRBD accepts (`DRBD_AL_EXTENTS_MIN`); smaller values work here
/// but cost a transaction on almost every write.
pub const AL_EXTENTS_MIN: u16 = 67;
/// The largest `al-extents` (`DRBD_AL_EXTENTS_MAX`): slot numbers are `u16`.
pub const AL_EXTENTS_MAX: u16 = 0xfffe;
/// Bytes per transaction block.
pub const AL_TRANSACTION_SIZE: usize = 4096;
/// Slot changes one transaction can carry (DRBD's `AL_UPDATES_PER_TRANSACTION`).
pub const AL_UPDATES_PER_TRANSACTION: usize = 64;
/// Slots of context one transaction carries (DRBD's `AL_CONTEXT_PER_TRANSACTION` is 919 with
/// its 36-byte header; ours is 32 bytes).
pub const AL_CONTEXT_PER_TRANSACTION: usize = (AL_TRANSACTION_SIZE - CONTEXT_OFFSET) / 4;
/// The smallest ring: 32 KiB, DRBD's default AL size.
pub const AL_RING_MIN_BLOCKS: u32 = 8;
/// The magic of a transaction block.
pub const AL_MAGIC: [u8; 8] = *b"FERMIRAL";

const FREE: u32 = u32::MAX;
const UPDATE_SLOTS_OFFSET: usize = 32;
const UPDATE_EXTENTS_OFFSET: usize = UPDATE_SLOTS_OFFSET + 2 * AL_UPDATES_PER_TRANSACTION;
const CONTEXT_OFFSET: usize = UPDATE_EXTENTS_OFFSET + 4 * AL_UPDATES_PER_TRANSACTION;
const CHECKSUM_RANGE: std::ops::Range<usize> = 16..20;

/// Ring blocks for an AL of `slots` slots: enough for the newest transactions to describe every
/// slot even when the newest block is torn, and never fewer than [`AL_RING_MIN_BLOCKS`].
pub fn al_ring_blocks(slots: u16) -> u32 {
    let describing = (slots as usize).div_ceil(AL_CONTEXT_PER_TRANSACTION) as u32;
    (describing + 2).max(AL_RING_MIN_BLOCKS)
}

/// The extent holding byte `offset`.
pub fn extent_of(offset: u64) -> u32 {
    (offset >> AL_EXTENT_SHIFT) as u32
}

/// The extents a write of `len` bytes at `offset` touches (none for `len == 0`).
pub fn extents_of(offset: u64, len: u64) -> Option<RangeInclusive<u32>> {
    (len > 0).then(|| extent_of(offset)..=extent_of(offset + len - 1))
}

/// Why the AL refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlError {
    /// `al-extents` out of range.
    #[error("al-extents {0} is out of range (1-{max})", max = AL_EXTENTS_MAX)]
    InvalidSlots(u32),
    /// A write spanning more extents than one transaction or the whole AL holds; the frontend
    /// splits requests far below this (32 MiB is 9 extents).
    #[error(
        "a write of {len} bytes at {offset} spans {extents} extents; at most {max} can enter \
         the activity log at once"
    )]
    WriteTooLarge {
        /// Start of the write.
        offset: u64,
        /// Its length.
        len: u64,
        /// Extents it spans.
        extents: u32,
        /// The limit.
        max: u32,
    },
    /// `end_write` for an extent without a write in flight: the I/O path lost track.
    #[error("end of a write in extent {extent}, which has no write in flight")]
    NotInFlight {
        /// The extent.
        extent: u32,
    },
}

/// What a write must do before it is submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Every extent it touches is hot and recorded: submit now.
    Go,
    /// It enters cold extents: write this transaction to the ring (see the module's rules),
    /// call [`ActivityLog::transaction_written`], then submit.
    WriteTransaction(AlTransaction),
    /// Its extents are hot, but the transaction that made one of them hot is not durable yet:
    /// submit after [`ActivityLog::transaction_written`] for this sequence number.
    WaitForTransaction {
        /// The transaction to wait for.
        sequence: u64,
    },
    /// Every slot it could use holds an extent with writes in flight: nothing was recorded;
    /// retry after some [`ActivityLog::end_write`].
    MustWait,
}

/// One slot change: `extent` now occupies `slot` (`None`: the slot is free).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlUpdate {
    /// The slot.
    pub slot: u16,
    /// Its new extent.
    pub extent: Option<u32>,
}

/// What a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlTransactionKind {
    /// Extents entering (and others leaving) the AL.
    Update,
    /// Part of a freshly formatted AL.
    Initialized,
}

/// One AL transaction: a 4 KiB block of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlTransaction {
    /// Position in the sequence; the ring block is `sequence % ring_blocks`.
    pub sequence: u64,
    /// What it is.
    pub kind: AlTransactionKind,
    /// The AL's slot count (`al-extents`) when written.
    pub slots: u16,
    /// The slot changes.
    pub updates: Vec<AlUpdate>,
    /// First slot of the context window.
    pub context_start: u16,
    /// The extents of slots `context_start..` (wrapping), after the updates.
    pub context: Vec<Option<u32>>,
    /// Extents this transaction takes out of the AL. Not stored: their bitmap pages must be on
    /// disk before this transaction is.
    pub evicted: Vec<u32>,
}

/// Why a ring block is not a valid transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlDecodeError {
    /// Not 4 KiB.
    #[error("an activity-log block is {0} bytes, not {AL_TRANSACTION_SIZE}")]
    WrongLength(usize),
    /// Never written, or not an AL block.
    #[error("no activity-log magic")]
    BadMagic,
    /// Torn or corrupted.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum {
        /// Stored checksum.
        stored: u32,
        /// Checksum of the contents.
        computed: u32,
    },
    /// A checksum-valid block with impossible contents.
    #[error("invalid transaction: {0}")]
    Invalid(&'static str),
}

/// Why the ring does not tell which extents were hot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlRecoveryError {
    /// The ring is not a whole number of blocks.
    #[error("the activity-log ring is {0} bytes, not a multiple of {AL_TRANSACTION_SIZE}")]
    WrongLength(usize),
    /// No block is a valid transaction (never formatted, or wiped).
    #[error("no valid transaction in the activity-log ring ({blocks} blocks)")]
    NoValidTransaction {
        /// Blocks read.
        blocks: u32,
    },
    /// The newest transactions disagree on the slot count.
    #[error("the newest activity-log transactions disagree on al-extents ({0} and {1})")]
    MixedSlots(u16, u16),
    /// The newest run of consecutive transactions does not describe every slot (corruption
    /// beyond a torn last write).
    #[error(
        "the newest {run} consecutive transactions (up to sequence {newest}) describe only \
         {known} of {slots} slots"
    )]
    Incomplete {
        /// Transactions in the run.
        run: usize,
        /// Newest sequence number.
        newest: u64,
        /// Slots described.
        known: usize,
        /// Slots in the AL.
        slots: u16,
    },
}

/// What [`recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlRecovery {
    /// The extents that were hot: after a Primary's crash, set them out of sync toward every
    /// peer.
    pub hot_extents: BTreeSet<u32>,
    /// The sequence number to continue with (newest + 1).
    pub next_sequence: u64,
    /// The slot count the ring was written with.
    pub slots: u16,
    /// Ring blocks that were not valid transactions (a torn newest write shows up here).
    pub invalid_blocks: Vec<(u32, AlDecodeError)>,
}

impl AlTransaction {
    /// The ring block this transaction goes to.
    pub fn ring_index(&self, ring_blocks: u32) -> u32 {
        (self.sequence % u64::from(ring_blocks)) as u32
    }

    /// The block as written to the ring.
    pub fn encode(&self) -> [u8; AL_TRANSACTION_SIZE] {
        assert!(
            self.updates.len() <= AL_UPDATES_PER_TRANSACTION,
            "too many updates"
        );
        assert!(
            self.context.len() <= AL_CONTEXT_PER_TRANSACTION,
            "context too long"
        );
        let mut block = [0u8; AL_TRANSACTION_SIZE];
        block[0..8].copy_from_slice(&AL_MAGIC);
        block[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        let kind: u16 = match self.kind {
            AlTransactionKind::Update => 0,
            AlTransactionKind::Initialized => 1,
        };
        block[20..22].copy_from_slice(&kind.to_le_bytes());
        block[22..24].copy_from_slice(&(self.updates.len() as u16).to_le_bytes());
        block[24..26].copy_from_slice(&self.slots.to_le_bytes());
        block[26..28].copy_from_slice(&self.context_start.to_le_bytes());
        block[28..30].copy_from_slice(&(self.context.len() as u16).to_le_bytes());
        for (i, update) in self.updates.iter().enumerate() {
            let at = UPDATE_SLOTS_OFFSET + 2 * i;
            block[at..at + 2].copy_from_slice(&update.slot.to_le_bytes());
            let at = UPDATE_EXTENTS_OFFSET + 4 * i;
            block[at..at + 4].copy_from_slice(&update.extent.unwrap_or(FREE).to_le_bytes());
        }
        for (i, extent) in self.context.iter().enumerate() {
            let at = CONTEXT_OFFSET + 4 * i;
            block[at..at + 4].copy_from_slice(&extent.unwrap_or(FREE).to_le_bytes());
        }
        let checksum = crc32c::crc32c(&block);
        block[CHECKSUM_RANGE].copy_from_slice(&checksum.to_le_bytes());
        block
    }

    /// A transaction from a ring block ([`AlTransaction::evicted`] is empty).
    pub fn decode(block: &[u8]) -> Result<AlTransaction, AlDecodeError> {
        if block.len() != AL_TRANSACTION_SIZE {
            return Err(AlDecodeError::WrongLength(block.len()));
        }
        if block[0..8] != AL_MAGIC {
            return Err(AlDecodeError::BadMagic);
        }
        let stored = u32::from_le_bytes(block[CHECKSUM_RANGE].try_into().expect("4 bytes"));
        let mut copy = [0u8; AL_TRANSACTION_SIZE];
        copy.copy_from_slice(block);
        copy[CHECKSUM_RANGE].fill(0);
        let computed = crc32c::crc32c(&copy);
        if stored != computed {
            return Err(AlDecodeError::BadChecksum { stored, computed });
        }
        let u16_at = |at: usize| u16::from_le_bytes(block[at..at + 2].try_into().expect("2 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes"));
        let extent = |raw: u32| (raw != FREE).then_some(raw);
        let sequence = u64::from_le_bytes(block[8..16].try_into().expect("8 bytes"));
        let kind = match u16_at(20) {
            0 => AlTransactionKind::Update,
            1 => AlTransactionKind::Initialized,
            _ => return Err(AlDecodeError::Invalid("unknown transaction kind")),
        };
        let n_updates = u16_at(22) as usize;
        let slots = u16_at(24);
        let context_start = u16_at(26);
        let context_len = u16_at(28) as usize;
        if slots == 0 || slots > AL_EXTENTS_MAX {
            return Err(AlDecodeError::Invalid("slot count out of range"));
        }
        if n_updates > AL_UPDATES_PER_TRANSACTION {
            return Err(AlDecodeError::Invalid("too many updates"));
        }
        if context_len > AL_CONTEXT_PER_TRANSACTION || context_len > slots as usize {
            return Err(AlDecodeError::Invalid("context too long"));
        }
        if context_start >= slots {
            return Err(AlDecodeError::Invalid("context starts past the last slot"));
        }
        let mut updates = Vec::with_capacity(n_updates);
        for i in 0..n_updates {
            let slot = u16_at(UPDATE_SLOTS_OFFSET + 2 * i);
            if slot >= slots {
                return Err(AlDecodeError::Invalid("update of a slot past the last"));
            }
            updates.push(AlUpdate {
                slot,
                extent: extent(u32_at(UPDATE_EXTENTS_OFFSET + 4 * i)),
            });
        }
        let context = (0..context_len)
            .map(|i| extent(u32_at(CONTEXT_OFFSET + 4 * i)))
            .collect();
        Ok(AlTransaction {
            sequence,
            kind,
            slots,
            updates,
            context_start,
            context,
            evicted: Vec::new(),
        })
    }
}

/// The newest sequence number of any valid transaction in the ring, wherever it lies: a log
/// that [`recover`] refused continues above it, so that its own transactions are the newest
/// run the next recovery finds.
pub fn newest_sequence(ring: &[u8]) -> Option<u64> {
    ring.chunks_exact(AL_TRANSACTION_SIZE)
        .filter_map(|block| AlTransaction::decode(block).ok())
        .map(|tr| tr.sequence)
        .max()
}

/// The extents that were hot, from the ring's bytes (`ring_blocks` × 4 KiB, block `i` at
/// `i * 4096`). Uses the newest run of consecutive transactions; it must describe every slot.
pub fn recover(ring: &[u8]) -> Result<AlRecovery, AlRecoveryError> {
    if ring.is_empty() || !ring.len().is_multiple_of(AL_TRANSACTION_SIZE) {
        return Err(AlRecoveryError::WrongLength(ring.len()));
    }
    let blocks = (ring.len() / AL_TRANSACTION_SIZE) as u32;
    let mut valid = BTreeMap::new();
    let mut invalid_blocks = Vec::new();
    for (index, block) in ring.chunks_exact(AL_TRANSACTION_SIZE).enumerate() {
        let index = index as u32;
        match AlTransaction::decode(block) {
            Ok(tr) if tr.ring_index(blocks) == index => {
                valid.insert(tr.sequence, tr);
            }
            Ok(_) => invalid_blocks.push((
                index,
                AlDecodeError::Invalid("block in the wrong ring position"),
            )),
            Err(e) => invalid_blocks.push((index, e)),
        }
    }
    let Some((&newest, _)) = valid.last_key_value() else {
        return Err(AlRecoveryError::NoValidTransaction { blocks });
    };
    // The newest run of consecutive sequence numbers.
    let mut run = Vec::new();
    let mut expected = newest;
    for (&sequence, tr) in valid.iter().rev() {
        if sequence != expected {
            break;
        }
        run.push(tr);
        if expected == 0 {
            break;
        }
        expected -= 1;
    }
    run.reverse();
    let slots = run.last().expect("the newest is in the run").slots;
    if let Some(other) = run.iter().find(|tr| tr.slots != slots) {
        return Err(AlRecoveryError::MixedSlots(other.slots, slots));
    }
    let mut table: Vec<Option<Option<u32>>> = vec![None; slots as usize];
    for tr in &run {
        for update in &tr.updates {
            table[update.slot as usize] = Some(update.extent);
        }
        for (i, extent) in tr.context.iter().enumerate() {
            table[(tr.context_start as usize + i) % slots as usize] = Some(*extent);
        }
    }
    let known = table.iter().filter(|slot| slot.is_some()).count();
    if known < slots as usize {
        return Err(AlRecoveryError::Incomplete {
            run: run.len(),
            newest,
            known,
            slots,
        });
    }
    Ok(AlRecovery {
        hot_extents: table.into_iter().flatten().flatten().collect(),
        next_sequence: newest + 1,
        slots,
        invalid_blocks,
    })
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    extent: Option<u32>,
    in_flight: u32,
    /// The transaction that put `extent` here, until it is durable.
    pending: Option<u64>,
    last_used: u64,
}

/// The activity log of one volume.
#[derive(Debug, Clone)]
pub struct ActivityLog {
    slots: Vec<Slot>,
    by_extent: HashMap<u32, u16>,
    /// Slots without an extent.
    free: Vec<u16>,
    /// Slots with an extent, no write in flight and no pending transaction, by last use.
    idle: BTreeSet<(u64, u16)>,
    /// Slots waiting for a transaction to be durable, by its sequence number.
    pending: BTreeMap<u64, Vec<u16>>,
    next_sequence: u64,
    /// The sequence number of the next transaction to become durable: they reach the ring
    /// one at a time, in order.
    next_durable: u64,
    context_cursor: u16,
    clock: u64,
    /// The clock at the previous cooling pass ([`ActivityLog::cool`]): slots last used at or
    /// before it were idle for a whole pass.
    cool_mark: u64,
}

impl ActivityLog {
    /// An empty AL of `slots` slots (`al-extents`) whose next transaction has sequence number
    /// `next_sequence` (0 for new metadata, [`AlRecovery::next_sequence`] after a recovery).
    pub fn new(slots: u16, next_sequence: u64) -> Result<Self, AlError> {
        if slots == 0 || slots > AL_EXTENTS_MAX {
            return Err(AlError::InvalidSlots(u32::from(slots)));
        }
        let empty = Slot {
            extent: None,
            in_flight: 0,
            pending: None,
            last_used: 0,
        };
        Ok(ActivityLog {
            slots: vec![empty; slots as usize],
            by_extent: HashMap::new(),
            free: (0..slots).rev().collect(),
            idle: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_sequence,
            next_durable: next_sequence,
            context_cursor: 0,
            clock: 0,
            cool_mark: 0,
        })
    }

    /// The slot count.
    pub fn slot_count(&self) -> u16 {
        self.slots.len() as u16
    }

    /// Ring blocks this AL needs ([`al_ring_blocks`]).
    pub fn ring_blocks(&self) -> u32 {
        al_ring_blocks(self.slot_count())
    }

    /// The hot extents, in no particular order.
    pub fn hot_extents(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_extent.keys().copied()
    }

    /// Whether `extent` is hot.
    pub fn is_hot(&self, extent: u32) -> bool {
        self.by_extent.contains_key(&extent)
    }

    /// Writes in flight in `extent`.
    pub fn in_flight(&self, extent: u32) -> u32 {
        self.by_extent
            .get(&extent)
            .map_or(0, |slot| self.slots[*slot as usize].in_flight)
    }

    /// Transactions that describe the whole (current) slot table, as a fresh AL: written over
    /// the ring when metadata is created and after a recovery (once the recovered extents are
    /// out of sync in the bitmaps on disk). The caller writes them in order before any write,
    /// each followed by [`ActivityLog::transaction_written`].
    pub fn format(&mut self) -> Vec<AlTransaction> {
        let slots = self.slot_count() as usize;
        let count = al_ring_blocks(self.slot_count()) as usize;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let tr = self.next_transaction(AlTransactionKind::Initialized, Vec::new(), Vec::new());
            out.push(tr);
        }
        debug_assert!(out.len() * AL_CONTEXT_PER_TRANSACTION >= slots);
        out
    }

    fn next_transaction(
        &mut self,
        kind: AlTransactionKind,
        updates: Vec<AlUpdate>,
        evicted: Vec<u32>,
    ) -> AlTransaction {
        let slots = self.slot_count();
        let len = (slots as usize).min(AL_CONTEXT_PER_TRANSACTION);
        let start = self.context_cursor;
        let context = (0..len)
            .map(|i| self.slots[(start as usize + i) % slots as usize].extent)
            .collect();
        self.context_cursor = ((start as usize + len) % slots as usize) as u16;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        AlTransaction {
            sequence,
            kind,
            slots,
            updates,
            context_start: start,
            context,
            evicted,
        }
    }

    /// Called before a write of `len` bytes at `offset` is submitted: what it must wait for.
    /// Except for [`Admission::MustWait`] (and errors), the write is now in flight in its
    /// extents until [`ActivityLog::end_write`].
    ///
    /// An extent that is not hot takes a free slot, or else the least recently used slot with
    /// no write in flight (its extent is evicted). If there are not enough such slots, nothing
    /// changes and the write must wait.
    pub fn begin_write(&mut self, offset: u64, len: u64) -> Result<Admission, AlError> {
        let Some(extents) = extents_of(offset, len) else {
            return Ok(Admission::Go);
        };
        let count = extents.end() - extents.start() + 1;
        let max = (self.slot_count() as usize).min(AL_UPDATES_PER_TRANSACTION) as u32;
        let cold: Vec<u32> = extents.clone().filter(|e| !self.is_hot(*e)).collect();
        if count > self.slot_count() as u32 || cold.len() > AL_UPDATES_PER_TRANSACTION {
            return Err(AlError::WriteTooLarge {
                offset,
                len,
                extents: count,
                max,
            });
        }
        let evictable = self
            .idle
            .iter()
            .filter(|(_, slot)| {
                let extent = self.slots[*slot as usize]
                    .extent
                    .expect("idle slots hold an extent");
                !extents.contains(&extent)
            })
            .count();
        if cold.len() > self.free.len() + evictable {
            return Ok(Admission::MustWait);
        }

        self.clock += 1;
        let now = self.clock;
        // The write's hot extents: in flight now, so not evictable below.
        let mut waits_for = None;
        let hot: Vec<u16> = extents
            .clone()
            .filter_map(|e| self.by_extent.get(&e).copied())
            .collect();
        for slot in hot {
            let state = &mut self.slots[slot as usize];
            if state.in_flight == 0 && state.pending.is_none() {
                self.idle.remove(&(state.last_used, slot));
            }
            state.in_flight += 1;
            state.last_used = now;
            waits_for = waits_for.max(state.pending);
        }
        if cold.is_empty() {
            return Ok(match waits_for {
                Some(sequence) => Admission::WaitForTransaction { sequence },
                None => Admission::Go,
            });
        }

        let sequence = self.next_sequence;
        let mut updates = Vec::with_capacity(cold.len());
        let mut evicted = Vec::new();
        for extent in cold {
            let slot = match self.free.pop() {
                Some(slot) => slot,
                None => {
                    let (last_used, slot) = *self
                        .idle
                        .iter()
                        .next()
                        .expect("counted enough evictable slots");
                    self.idle.remove(&(last_used, slot));
                    let old = self.slots[slot as usize]
                        .extent
                        .take()
                        .expect("idle slots hold an extent");
                    self.by_extent.remove(&old);
                    evicted.push(old);
                    slot
                }
            };
            self.slots[slot as usize] = Slot {
                extent: Some(extent),
                in_flight: 1,
                pending: Some(sequence),
                last_used: now,
            };
            self.by_extent.insert(extent, slot);
            self.pending.entry(sequence).or_default().push(slot);
            updates.push(AlUpdate {
                slot,
                extent: Some(extent),
            });
        }
        let tr = self.next_transaction(AlTransactionKind::Update, updates, evicted);
        debug_assert_eq!(tr.sequence, sequence);
        Ok(Admission::WriteTransaction(tr))
    }

    /// Whether every extent the range touches is hot and recorded (its transaction durable):
    /// recovery after a crash would name it.
    pub fn holds(&self, offset: u64, len: u64) -> bool {
        let Some(mut extents) = extents_of(offset, len) else {
            return true;
        };
        extents.all(|extent| {
            self.by_extent
                .get(&extent)
                .is_some_and(|slot| self.slots[*slot as usize].pending.is_none())
        })
    }

    /// [`ActivityLog::begin_write`] for a write that can go at once: when every extent it
    /// touches is hot and recorded, the write is in flight in them and `true` is returned;
    /// otherwise nothing changes and the caller takes the waiting path.
    pub fn try_begin_write(&mut self, offset: u64, len: u64) -> bool {
        let Some(extents) = extents_of(offset, len) else {
            return true;
        };
        if !self.holds(offset, len) {
            return false;
        }
        self.clock += 1;
        let now = self.clock;
        for extent in extents {
            let slot = self.by_extent[&extent];
            let state = &mut self.slots[slot as usize];
            if state.in_flight == 0 {
                self.idle.remove(&(state.last_used, slot));
            }
            state.in_flight += 1;
            state.last_used = now;
        }
        true
    }

    /// A cooling pass: the extents that had no write for a whole pass (none since the
    /// previous call), or every idle one with `everything`, leave the log, except those
    /// `keep` names. Returns the transactions that free their slots, in order; each names
    /// what it frees in [`AlTransaction::evicted`], so the eviction rules apply (data and
    /// bits on stable storage before the transaction). Nothing is cooled while another
    /// transaction is in the making: transactions reach the ring in sequence order.
    ///
    /// Without cooling an extent would stay hot until evicted, and a crash would resync every
    /// extent written since `al-extents` others were: gigabytes, for writes long settled.
    pub fn cool(&mut self, keep: &dyn Fn(u32) -> bool, everything: bool) -> Vec<AlTransaction> {
        if !self.pending.is_empty() {
            return Vec::new();
        }
        let mark = if everything { u64::MAX } else { self.cool_mark };
        self.cool_mark = self.clock;
        let cooling: Vec<(u64, u16)> = self
            .idle
            .iter()
            .take_while(|(last_used, _)| *last_used <= mark)
            .filter(|(_, slot)| {
                !keep(
                    self.slots[*slot as usize]
                        .extent
                        .expect("idle slots hold an extent"),
                )
            })
            .copied()
            .collect();
        let mut out = Vec::new();
        for chunk in cooling.chunks(AL_UPDATES_PER_TRANSACTION) {
            let mut updates = Vec::with_capacity(chunk.len());
            let mut freed = Vec::with_capacity(chunk.len());
            for &(last_used, slot) in chunk {
                self.idle.remove(&(last_used, slot));
                let extent = self.slots[slot as usize]
                    .extent
                    .take()
                    .expect("idle slots hold an extent");
                self.by_extent.remove(&extent);
                self.free.push(slot);
                updates.push(AlUpdate { slot, extent: None });
                freed.push(extent);
            }
            out.push(self.next_transaction(AlTransactionKind::Update, updates, freed));
        }
        out
    }

    /// The transaction `sequence` (and so every earlier one) is durable in the ring: writes
    /// waiting for it may be submitted.
    pub fn transaction_written(&mut self, sequence: u64) {
        debug_assert_eq!(
            sequence, self.next_durable,
            "activity-log transactions reach the ring in sequence order"
        );
        self.next_durable = self.next_durable.max(sequence + 1);
        let done: Vec<u64> = self.pending.range(..=sequence).map(|(s, _)| *s).collect();
        for s in done {
            for slot in self.pending.remove(&s).unwrap_or_default() {
                let state = &mut self.slots[slot as usize];
                if state.pending.is_some_and(|p| p <= sequence) {
                    state.pending = None;
                    if state.in_flight == 0 && state.extent.is_some() {
                        self.idle.insert((state.last_used, slot));
                    }
                }
            }
        }
    }

    /// A write admitted by [`ActivityLog::begin_write`] completed (or failed).
    pub fn end_write(&mut self, offset: u64, len: u64) -> Result<(), AlError> {
        let Some(extents) = extents_of(offset, len) else {
            return Ok(());
        };
        if let Some(extent) = extents.clone().find(|e| self.in_flight(*e) == 0) {
            return Err(AlError::NotInFlight { extent });
        }
        for extent in extents {
            let slot = self.by_extent[&extent];
            let state = &mut self.slots[slot as usize];
            state.in_flight -= 1;
            if state.in_flight == 0 && state.pending.is_none() {
                self.idle.insert((state.last_used, slot));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const X: u64 = AL_EXTENT_SIZE;

    fn admit(al: &mut ActivityLog, offset: u64, len: u64) -> Admission {
        al.begin_write(offset, len).unwrap()
    }

    /// Writes a transaction into a ring buffer as the I/O path would.
    fn store(ring: &mut [u8], tr: &AlTransaction) {
        let blocks = (ring.len() / AL_TRANSACTION_SIZE) as u32;
        let at = tr.ring_index(blocks) as usize * AL_TRANSACTION_SIZE;
        ring[at..at + AL_TRANSACTION_SIZE].copy_from_slice(&tr.encode());
    }

    fn formatted(slots: u16) -> (ActivityLog, Vec<u8>) {
        let mut al = ActivityLog::new(slots, 0).unwrap();
        let mut ring = vec![0u8; al.ring_blocks() as usize * AL_TRANSACTION_SIZE];
        for tr in al.format() {
            store(&mut ring, &tr);
            al.transaction_written(tr.sequence);
        }
        (al, ring)
    }

    #[test]
    fn sizes_and_defaults() {
        assert_eq!(AL_CONTEXT_PER_TRANSACTION, 920);
        assert_eq!(al_ring_blocks(AL_EXTENTS_DEFAULT), 8);
        assert_eq!(al_ring_blocks(AL_EXTENTS_MAX), 74);
        assert_eq!(extents_of(X - 1, 2), Some(0..=1));
        assert_eq!(extents_of(5, 0), None);
        assert_eq!(
            ActivityLog::new(0, 0).unwrap_err(),
            AlError::InvalidSlots(0)
        );
        assert_eq!(
            ActivityLog::new(AL_EXTENTS_DEFAULT, 0)
                .unwrap()
                .slot_count(),
            1237
        );
    }

    #[test]
    fn a_transaction_only_when_entering_a_cold_extent() {
        let mut al = ActivityLog::new(4, 0).unwrap();
        let Admission::WriteTransaction(tr) = admit(&mut al, 0, 4096) else {
            panic!()
        };
        assert_eq!(tr.sequence, 0);
        assert_eq!(
            tr.updates,
            vec![AlUpdate {
                slot: 0,
                extent: Some(0)
            }]
        );
        assert!(tr.evicted.is_empty());
        // Same extent before the transaction is durable: wait for it.
        assert_eq!(
            admit(&mut al, 8192, 4096),
            Admission::WaitForTransaction { sequence: 0 }
        );
        al.transaction_written(0);
        // After: free.
        assert_eq!(admit(&mut al, 12288, 4096), Admission::Go);
        assert_eq!(al.in_flight(0), 3);
        for offset in [0, 8192, 12288] {
            al.end_write(offset, 4096).unwrap();
        }
        assert_eq!(al.in_flight(0), 0);
        assert!(al.is_hot(0), "an idle extent stays hot until evicted");
        assert_eq!(
            al.end_write(0, 4096),
            Err(AlError::NotInFlight { extent: 0 })
        );
        assert_eq!(admit(&mut al, 0, 0), Admission::Go);
    }

    #[test]
    fn least_recently_used_idle_extent_is_evicted() {
        let mut al = ActivityLog::new(2, 0).unwrap();
        for (extent, sequence) in [(0, 0), (1, 1)] {
            let Admission::WriteTransaction(tr) = admit(&mut al, extent * X, 1) else {
                panic!()
            };
            al.transaction_written(tr.sequence);
            assert_eq!(tr.sequence, sequence);
            al.end_write(extent * X, 1).unwrap();
        }
        // Touch extent 0 again: extent 1 is now the least recently used.
        assert_eq!(admit(&mut al, 0, 1), Admission::Go);
        al.end_write(0, 1).unwrap();
        let Admission::WriteTransaction(tr) = admit(&mut al, 7 * X, 1) else {
            panic!()
        };
        assert_eq!(tr.evicted, vec![1]);
        assert_eq!(
            tr.updates,
            vec![AlUpdate {
                slot: 1,
                extent: Some(7)
            }]
        );
        assert!(!al.is_hot(1) && al.is_hot(7));
    }

    #[test]
    fn all_slots_busy_means_wait() {
        let mut al = ActivityLog::new(2, 0).unwrap();
        let Admission::WriteTransaction(tr) = admit(&mut al, 0, X + 1) else {
            panic!()
        };
        assert_eq!(tr.updates.len(), 2, "one transaction for both extents");
        al.transaction_written(tr.sequence);
        assert_eq!(admit(&mut al, 5 * X, 1), Admission::MustWait);
        assert!(!al.is_hot(5), "a refused write records nothing");
        al.end_write(0, X + 1).unwrap();
        assert!(matches!(
            admit(&mut al, 5 * X, 1),
            Admission::WriteTransaction(_)
        ));
        // A write needing more extents than there are slots can never proceed.
        assert!(matches!(
            al.begin_write(0, 3 * X),
            Err(AlError::WriteTooLarge { .. })
        ));
    }

    #[test]
    fn a_slot_waiting_for_its_transaction_is_not_evicted() {
        let mut al = ActivityLog::new(1, 0).unwrap();
        let Admission::WriteTransaction(_) = admit(&mut al, 0, 1) else {
            panic!()
        };
        al.end_write(0, 1).unwrap(); // failed before the transaction was written
        assert_eq!(admit(&mut al, X, 1), Admission::MustWait);
        al.transaction_written(0);
        assert!(matches!(
            admit(&mut al, X, 1),
            Admission::WriteTransaction(_)
        ));
    }

    #[test]
    fn transactions_round_trip_and_refuse_corruption() {
        let tr = AlTransaction {
            sequence: 77,
            kind: AlTransactionKind::Update,
            slots: 1237,
            updates: vec![
                AlUpdate {
                    slot: 3,
                    extent: Some(9),
                },
                AlUpdate {
                    slot: 4,
                    extent: None,
                },
            ],
            context_start: 920,
            context: vec![Some(1), None, Some(5)],
            evicted: vec![],
        };
        let block = tr.encode();
        assert_eq!(&block[0..8], b"FERMIRAL");
        assert_eq!(AlTransaction::decode(&block).unwrap(), tr);
        let mut torn = block;
        torn[2000] ^= 1;
        assert!(matches!(
            AlTransaction::decode(&torn),
            Err(AlDecodeError::BadChecksum { .. })
        ));
        assert_eq!(
            AlTransaction::decode(&[0u8; 4096]),
            Err(AlDecodeError::BadMagic)
        );
        assert_eq!(
            AlTransaction::decode(&block[..100]),
            Err(AlDecodeError::WrongLength(100))
        );
    }

    #[test]
    fn recovery_returns_the_hot_extents() {
        let (mut al, mut ring) = formatted(AL_EXTENTS_DEFAULT);
        assert!(recover(&ring).unwrap().hot_extents.is_empty());
        for extent in [3u64, 1000, 5] {
            let Admission::WriteTransaction(tr) = admit(&mut al, extent * X, 4096) else {
                panic!()
            };
            store(&mut ring, &tr);
            al.transaction_written(tr.sequence);
        }
        let recovered = recover(&ring).unwrap();
        assert_eq!(recovered.hot_extents, [3, 5, 1000].into_iter().collect());
        assert_eq!(recovered.slots, AL_EXTENTS_DEFAULT);
        assert_eq!(recovered.next_sequence, 8 + 3);
    }

    #[test]
    fn a_torn_newest_transaction_is_ignored() {
        let (mut al, mut ring) = formatted(100);
        let Admission::WriteTransaction(tr) = admit(&mut al, 0, 1) else {
            panic!()
        };
        store(&mut ring, &tr);
        al.transaction_written(tr.sequence);
        let Admission::WriteTransaction(tr) = admit(&mut al, X, 1) else {
            panic!()
        };
        let mut block = tr.encode();
        block[100] ^= 0xff; // torn: the write in extent 1 was never submitted
        let at = tr.ring_index(al.ring_blocks()) as usize * AL_TRANSACTION_SIZE;
        ring[at..at + AL_TRANSACTION_SIZE].copy_from_slice(&block);
        let recovered = recover(&ring).unwrap();
        assert_eq!(recovered.hot_extents, [0].into_iter().collect());
        assert_eq!(recovered.invalid_blocks.len(), 1);
    }

    #[test]
    fn recovery_never_guesses() {
        assert_eq!(
            recover(&[0u8; 8 * 4096]),
            Err(AlRecoveryError::NoValidTransaction { blocks: 8 })
        );
        assert_eq!(recover(&[0u8; 100]), Err(AlRecoveryError::WrongLength(100)));
        // Only the newest block of a large AL survives: it describes 920 of 2000 slots.
        let (_, mut ring) = formatted(2000);
        for block in ring.chunks_exact_mut(AL_TRANSACTION_SIZE).take(7) {
            block.fill(0);
        }
        assert!(matches!(
            recover(&ring),
            Err(AlRecoveryError::Incomplete { known: 920, .. })
        ));
    }

    #[test]
    fn cooling_frees_extents_idle_for_a_whole_pass_and_keeps_the_rest() {
        let (mut al, mut ring) = formatted(8);
        let durable = |al: &mut ActivityLog, ring: &mut [u8], admission: Admission| {
            if let Admission::WriteTransaction(tr) = admission {
                store(ring, &tr);
                al.transaction_written(tr.sequence);
            }
        };
        for extent in 0..4 {
            let admission = admit(&mut al, extent * X, 4096);
            durable(&mut al, &mut ring, admission);
            al.end_write(extent * X, 4096).unwrap();
        }
        // The first pass only marks: nothing was idle for a whole pass yet.
        assert!(al.cool(&|_| false, false).is_empty());
        // Extent 1 is written again, extent 2 has a write in flight, extent 3 is kept.
        assert!(al.try_begin_write(X, 4096));
        al.end_write(X, 4096).unwrap();
        assert!(al.try_begin_write(2 * X, 4096));
        let transactions = al.cool(&|extent| extent == 3, false);
        assert_eq!(transactions.len(), 1);
        assert_eq!(transactions[0].evicted, vec![0]);
        assert_eq!(
            transactions[0].updates,
            vec![AlUpdate {
                slot: 0,
                extent: None
            }]
        );
        for tr in &transactions {
            store(&mut ring, tr);
            al.transaction_written(tr.sequence);
        }
        assert_eq!(
            recover(&ring).unwrap().hot_extents,
            [1, 2, 3].into_iter().collect()
        );
        // A cooled extent is cold again: the next write into it needs a transaction.
        assert!(!al.try_begin_write(0, 4096));
        let Admission::WriteTransaction(reheated) = admit(&mut al, 0, 4096) else {
            panic!("a cooled extent needs a transaction");
        };
        // Going down: every idle extent but the kept one leaves; one in flight stays.
        let transactions = al.cool(&|extent| extent == 3, true);
        assert!(
            transactions.is_empty(),
            "not while a transaction is in the making"
        );
        store(&mut ring, &reheated);
        al.transaction_written(reheated.sequence);
        al.end_write(0, 4096).unwrap();
        for tr in al.cool(&|extent| extent == 3, true) {
            store(&mut ring, &tr);
            al.transaction_written(tr.sequence);
        }
        assert_eq!(
            recover(&ring).unwrap().hot_extents,
            [2, 3].into_iter().collect()
        );
    }

    #[test]
    fn the_newest_sequence_is_that_of_the_newest_valid_transaction() {
        let mut al = ActivityLog::new(61, 40).unwrap();
        let blocks = al.ring_blocks() as usize;
        let mut ring = vec![0u8; blocks * AL_TRANSACTION_SIZE];
        assert_eq!(newest_sequence(&ring), None);
        let transactions = al.format();
        let newest = transactions.iter().map(|tr| tr.sequence).max().unwrap();
        for tr in &transactions {
            let at = tr.ring_index(blocks as u32) as usize * AL_TRANSACTION_SIZE;
            ring[at..at + AL_TRANSACTION_SIZE].copy_from_slice(&tr.encode());
        }
        assert_eq!(recover(&ring).unwrap().next_sequence, newest + 1);
        // The newest transaction's block torn: recovery takes the run before it, and the
        // sequence to continue above is still the newest valid one's.
        let at = transactions.last().unwrap().ring_index(blocks as u32) as usize;
        ring[at * AL_TRANSACTION_SIZE + 100] ^= 0xFF;
        assert!(newest_sequence(&ring).is_some_and(|s| s < newest));
        assert_eq!(
            newest_sequence(&ring),
            Some(recover(&ring).unwrap().next_sequence - 1)
        );
    }

    #[test]
    fn a_write_into_an_extent_whose_transaction_is_not_durable_cannot_go_at_once() {
        let mut al = ActivityLog::new(4, 0).unwrap();
        let Admission::WriteTransaction(tr) = admit(&mut al, 0, 4096) else {
            panic!()
        };
        assert!(!al.try_begin_write(0, 4096));
        assert_eq!(al.in_flight(0), 1, "a refused attempt changes nothing");
        al.transaction_written(tr.sequence);
        assert!(al.try_begin_write(0, 4096));
        assert_eq!(al.in_flight(0), 2);
        assert!(!al.try_begin_write(0, X + 1), "extent 1 is cold");
        assert_eq!(al.in_flight(0), 2);
    }

    #[test]
    fn a_range_is_held_from_its_durable_transaction_until_its_extents_cool() {
        let mut al = ActivityLog::new(4, 0).unwrap();
        // Across the boundary of extents 0 and 1.
        let (offset, len) = (X - 4096, 8192);
        assert!(!al.holds(offset, len));
        assert!(al.holds(offset, 0), "an empty range needs no extent");
        let Admission::WriteTransaction(tr) = admit(&mut al, offset, len) else {
            panic!()
        };
        assert!(!al.holds(offset, len), "hot, but not durable yet");
        al.transaction_written(tr.sequence);
        assert!(al.holds(offset, len));
        assert!(!al.holds(offset, X + len), "extent 2 is cold");
        al.end_write(offset, len).unwrap();
        assert!(al.holds(offset, len), "idle, still hot");
        for tr in al.cool(&|_| false, true) {
            al.transaction_written(tr.sequence);
        }
        assert!(!al.holds(offset, len), "cooled");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Begin(u64, u64),
        End(usize),
        Durable,
        /// A cooling pass: everything or not, the extents `e % 5 == keep` kept.
        Cool(bool, u32),
    }

    fn arb_ops() -> impl Strategy<Value = (u16, Vec<Op>)> {
        let op = prop_oneof![
            4 => (0u64..40, 1u64..(3 * X)).prop_map(|(extent, len)| Op::Begin(extent * X + 4096 * (extent % 7), len)),
            3 => any::<usize>().prop_map(Op::End),
            2 => Just(Op::Durable),
            1 => (any::<bool>(), 0u32..5).prop_map(|(everything, keep)| Op::Cool(everything, keep)),
        ];
        (
            prop_oneof![Just(1u16), Just(3), Just(8), Just(1000), Just(2000)],
            proptest::collection::vec(op, 1..80),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Random writes and cooling passes: a write is only ever submitted into extents whose
        /// slot assignment is durable in the ring, a pass never frees a kept extent, and a
        /// crash at any point (the newest transaction torn or not) recovers a superset of the
        /// extents with writes submitted and not completed.
        #[test]
        fn crash_recovery_covers_every_write_in_flight((slots, ops) in arb_ops(), tear in any::<bool>()) {
            let (mut al, mut ring) = formatted(slots);
            let ring_blocks = al.ring_blocks();
            let mut unwritten: Vec<AlTransaction> = Vec::new();
            // Writes admitted and waiting for a sequence number, and writes submitted.
            let mut waiting: Vec<(u64, u64, u64)> = Vec::new();
            let mut submitted: Vec<(u64, u64)> = Vec::new();
            for op in ops {
                match op {
                    Op::Begin(offset, len) => match al.begin_write(offset, len) {
                        Ok(Admission::Go) => submitted.push((offset, len)),
                        Ok(Admission::WriteTransaction(tr)) => {
                            waiting.push((tr.sequence, offset, len));
                            unwritten.push(tr);
                        }
                        Ok(Admission::WaitForTransaction { sequence }) => waiting.push((sequence, offset, len)),
                        Ok(Admission::MustWait) | Err(AlError::WriteTooLarge { .. }) => {}
                        Err(e) => prop_assert!(false, "{}", e),
                    },
                    Op::End(i) if !submitted.is_empty() => {
                        let (offset, len) = submitted.remove(i % submitted.len());
                        al.end_write(offset, len).unwrap();
                    }
                    Op::End(_) => {}
                    Op::Durable if !unwritten.is_empty() => {
                        let tr = unwritten.remove(0);
                        store(&mut ring, &tr);
                        al.transaction_written(tr.sequence);
                        let (ready, still): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|(s, _, _)| *s <= tr.sequence);
                        waiting = still;
                        submitted.extend(ready.into_iter().map(|(_, o, l)| (o, l)));
                    }
                    Op::Durable => {}
                    Op::Cool(everything, keep) => {
                        let transactions = al.cool(&|extent| extent % 5 == keep, everything);
                        prop_assert!(unwritten.is_empty() || transactions.is_empty());
                        for tr in transactions {
                            for extent in &tr.evicted {
                                prop_assert!(extent % 5 != keep, "kept extent {} cooled", extent);
                            }
                            store(&mut ring, &tr);
                            al.transaction_written(tr.sequence);
                        }
                    }
                }
            }
            // Crash. Optionally the next transaction was being written and tore.
            if tear && let Some(tr) = unwritten.first() {
                let mut block = tr.encode();
                block[3000] ^= 0x55;
                let at = tr.ring_index(ring_blocks) as usize * AL_TRANSACTION_SIZE;
                ring[at..at + AL_TRANSACTION_SIZE].copy_from_slice(&block);
            }
            let recovered = recover(&ring).unwrap();
            for (offset, len) in submitted {
                for extent in extents_of(offset, len).unwrap() {
                    prop_assert!(recovered.hot_extents.contains(&extent), "extent {} lost", extent);
                }
            }
            prop_assert!(recovered.hot_extents.len() <= slots as usize);
        }
    }
}
