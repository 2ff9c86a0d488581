//! The metadata area of a volume: at the end of its backing volume, after the user data, as
//! DRBD's internal metadata (docs/mirror.md, "On disk: the metadata area").
//!
//! ```text
//!  backing volume: [ user data (usable size) ][ superblock 4 KiB ][ activity log ring ][ bitmaps ]
//! ```
//!
//! This module owns the layout (where each part starts, how big the area is —
//! [`metadata_size`] is what the satellite adds to the backing volume), the superblock's format
//! and its validation, and the positioned reads and writes of the three parts over a
//! [`std::fs::File`] (a block device or a file). It does not decide when to write: the rules
//! are in [`crate::bitmap`] and [`crate::activity_log`]; a change of the generation set is
//! written (and synced) with [`write_superblock`] before anything depends on it.
//!
//! Everything is little-endian and a multiple of 4 KiB (the usable size must be too, so every
//! part is aligned for `O_DIRECT`). A superblock that does not check out — no magic, another
//! format version, a bad checksum (a torn write), another usable size, an impossible field — is
//! an error that names what is wrong, never a silent default.
//!
//! Superblock layout (4 KiB):
//!
//! ```text
//!    0  magic "FERMIRR1"           8  format version u32        12  flags u32 (MdFlags)
//!   16  usable size u64           24  node-id u8               25  bitmap slots u8
//!   26  al-extents u16            28  bytes per bitmap bit u32  32  AL ring blocks u32
//!   36  generation flags u32      40  current UUID u64          48  reserved (16)
//!   64  32 peer slots × 32 bytes: node-id u8 (= the slot's index), bitmap index u8 (0xFF: none),
//!       reserved u16, flags u32 (PeerFlags), bitmap UUID u64, reserved (16)
//! 1088  32 history UUIDs × u64, newest first
//! 1344  zero
//! 4092  crc32c u32 of bytes 0..4092
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::activity_log::{
    AL_TRANSACTION_SIZE, ActivityLog, AlError, AlRecovery, AlRecoveryError, AlTransaction,
    al_ring_blocks,
};
use crate::bitmap::{BITMAP_PAGE_SIZE, BM_BLOCK_SIZE, BitmapError, OutOfSyncBitmap};
use crate::gi::{GenerationSet, GiFlags, HISTORY_UUIDS, MAX_NODES, NodeId, Uuid};

/// The superblock's magic.
pub const MD_MAGIC: [u8; 8] = *b"FERMIRR1";
/// The format this version writes and reads.
pub const MD_FORMAT_VERSION: u32 = 1;
/// Bytes of the superblock.
pub const SUPERBLOCK_SIZE: usize = 4096;
/// The alignment of every part, and of the usable size.
pub const MD_ALIGNMENT: u64 = 4096;
/// Bitmap slots at most: one per peer of a 32-member resource.
pub const MAX_BITMAP_SLOTS: u8 = (MAX_NODES - 1) as u8;

const PEERS_OFFSET: usize = 64;
const PEER_ENTRY_SIZE: usize = 32;
const HISTORY_OFFSET: usize = PEERS_OFFSET + MAX_NODES * PEER_ENTRY_SIZE;
const CHECKSUM_OFFSET: usize = SUPERBLOCK_SIZE - 4;
const NO_BITMAP: u8 = 0xFF;
/// Zeroes are written in chunks of this size when bitmaps are created.
const ZERO_CHUNK: usize = 1 << 20;

/// Flags of a volume's metadata. Bit values are DRBD's `MDF_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MdFlags(u32);

impl MdFlags {
    /// The data is consistent (not in the middle of a resync as target).
    pub const CONSISTENT: MdFlags = MdFlags(1 << 0);
    /// This member is Primary; cleared on a clean demotion, so finding it set when the volume
    /// is attached means the Primary stopped without demoting (DRBD's `MDF_PRIMARY_IND`).
    pub const PRIMARY: MdFlags = MdFlags(1 << 1);
    /// The data was UpToDate when last written.
    pub const WAS_UP_TO_DATE: MdFlags = MdFlags(1 << 4);
    /// The activity log holds no extent with writes that may be in flight (a clean stop):
    /// recovery may skip it.
    pub const AL_CLEAN: MdFlags = MdFlags(1 << 7);
    /// This member had quorum when last written.
    pub const HAVE_QUORUM: MdFlags = MdFlags(1 << 10);
    /// Not DRBD's, and no longer set: in earlier versions, this member, a Secondary, recorded
    /// in its bitmaps what the Primary's absent peers missed, outside the activity log, and
    /// those bits were in memory until the bitmaps were written. Finding it set when the
    /// volume is attached means they may be lost: everything is out of sync toward every peer
    /// with a bitmap UUID (a full resync toward them, never a silent gap). Such bits are now
    /// set for writes in hot extents of the activity log, or written at once.
    pub const RECORDING_FOR_PRIMARY: MdFlags = MdFlags(1 << 16);

    const KNOWN: u32 = Self::CONSISTENT.0
        | Self::PRIMARY.0
        | Self::WAS_UP_TO_DATE.0
        | Self::AL_CLEAN.0
        | Self::HAVE_QUORUM.0
        | Self::RECORDING_FOR_PRIMARY.0;

    /// No flag.
    pub const fn empty() -> Self {
        MdFlags(0)
    }

    /// The bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: MdFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: MdFlags) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    pub fn remove(&mut self, other: MdFlags) {
        self.0 &= !other.0;
    }
}

impl std::ops::BitOr for MdFlags {
    type Output = MdFlags;
    fn bitor(self, other: MdFlags) -> MdFlags {
        MdFlags(self.0 | other.0)
    }
}

/// Flags of a peer slot. Bit values are DRBD's `MDF_PEER_*` / `MDF_NODE_EXISTS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PeerFlags(u32);

impl PeerFlags {
    /// The peer's disk is known Outdated (it left gracefully, or was outdated).
    pub const OUTDATED: PeerFlags = PeerFlags(1 << 1);
    /// A full resync toward the peer is pending.
    pub const FULL_SYNC: PeerFlags = PeerFlags(1 << 3);
    /// This member has connected to the peer's disk at least once.
    pub const DEVICE_SEEN: PeerFlags = PeerFlags(1 << 4);
    /// The node is a member of the resource.
    pub const NODE_EXISTS: PeerFlags = PeerFlags(1 << 16);

    const KNOWN: u32 =
        Self::OUTDATED.0 | Self::FULL_SYNC.0 | Self::DEVICE_SEEN.0 | Self::NODE_EXISTS.0;

    /// No flag.
    pub const fn empty() -> Self {
        PeerFlags(0)
    }

    /// The bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: PeerFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: PeerFlags) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    pub fn remove(&mut self, other: PeerFlags) {
        self.0 &= !other.0;
    }
}

/// What the superblock records about one node-id besides its bitmap UUID (which is in the
/// generation set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PeerSlot {
    /// Which bitmap of the bitmaps area tracks this peer (diskless peers have none).
    pub bitmap_index: Option<u8>,
    /// Its flags.
    pub flags: PeerFlags,
}

/// Why the metadata could not be laid out, read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The usable size is not a multiple of 4 KiB (or is zero).
    #[error(
        "usable size {usable_bytes} is not a positive multiple of 4 KiB; the metadata area \
         must start aligned"
    )]
    UnalignedUsableSize {
        /// The size given.
        usable_bytes: u64,
    },
    /// More bitmap slots than peers.
    #[error("{0} bitmap slots requested, at most {MAX_BITMAP_SLOTS}")]
    TooManyBitmapSlots(u8),
    /// An invalid `al-extents`.
    #[error("invalid activity log: {0}")]
    ActivityLog(#[from] AlError),
    /// The superblock is all zeroes: no metadata was ever created here.
    #[error("no metadata at offset {offset}: the superblock is all zeroes (never created?)")]
    NotFormatted {
        /// Where the superblock was expected.
        offset: u64,
    },
    /// The superblock does not start with the magic.
    #[error(
        "no MIRROR metadata at offset {offset}: magic {found:02x?} is not \"FERMIRR1\" \
         (another usable size, or not a MIRROR volume?)"
    )]
    BadMagic {
        /// Where the superblock was expected.
        offset: u64,
        /// The bytes found.
        found: [u8; 8],
    },
    /// Another format version.
    #[error("metadata format version {found} is not supported (this version reads {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this code reads.
        supported: u32,
    },
    /// The checksum does not match: a torn or corrupted superblock.
    #[error(
        "the superblock's checksum does not match (stored {stored:#010x}, computed \
         {computed:#010x}): torn or corrupted"
    )]
    BadChecksum {
        /// Stored checksum.
        stored: u32,
        /// Checksum of the contents.
        computed: u32,
    },
    /// The superblock records another usable size.
    #[error(
        "the superblock records a usable size of {recorded} bytes, the volume is configured \
         with {expected}"
    )]
    WrongUsableSize {
        /// Usable size in the superblock.
        recorded: u64,
        /// Usable size expected.
        expected: u64,
    },
    /// A checksum-valid superblock with an impossible field.
    #[error("corrupt superblock: {field}: {detail}")]
    Corrupt {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A bitmap index outside the area.
    #[error("bitmap index {index} does not exist (the area has {slots} bitmaps)")]
    NoSuchBitmap {
        /// The index asked for.
        index: u8,
        /// Bitmaps in the area.
        slots: u8,
    },
    /// An on-disk bitmap did not decode.
    #[error("bitmap {index}: {source}")]
    Bitmap {
        /// Its index.
        index: u8,
        /// Why.
        #[source]
        source: BitmapError,
    },
    /// The activity log does not tell which extents were hot.
    #[error("activity log: {0}")]
    Recovery(#[from] AlRecoveryError),
    /// A read, write or sync failed.
    #[error("{what} at offset {offset} ({len} bytes): {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        offset: u64,
        /// How much.
        len: u64,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// Where the parts of the metadata area are, in bytes from the start of the backing volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLayout {
    /// The user data's size: what the user asked for.
    pub usable_bytes: u64,
    /// Bitmaps in the area.
    pub bitmap_slots: u8,
    /// `al-extents`.
    pub al_slots: u16,
    /// The superblock.
    pub superblock_offset: u64,
    /// The activity log ring.
    pub al_offset: u64,
    /// Blocks of the ring.
    pub al_blocks: u32,
    /// The first bitmap.
    pub bitmaps_offset: u64,
    /// Bytes of each bitmap.
    pub bitmap_bytes: u64,
}

impl MetadataLayout {
    /// The layout for a volume of `usable_bytes` (a multiple of 4 KiB) with `bitmap_slots`
    /// bitmaps and an AL of `al_slots` slots.
    pub fn new(usable_bytes: u64, bitmap_slots: u8, al_slots: u16) -> Result<Self, MetadataError> {
        if usable_bytes == 0 || !usable_bytes.is_multiple_of(MD_ALIGNMENT) {
            return Err(MetadataError::UnalignedUsableSize { usable_bytes });
        }
        if bitmap_slots > MAX_BITMAP_SLOTS {
            return Err(MetadataError::TooManyBitmapSlots(bitmap_slots));
        }
        ActivityLog::new(al_slots, 0)?;
        let al_blocks = al_ring_blocks(al_slots);
        let superblock_offset = usable_bytes;
        let al_offset = superblock_offset + SUPERBLOCK_SIZE as u64;
        let bitmaps_offset = al_offset + u64::from(al_blocks) * AL_TRANSACTION_SIZE as u64;
        Ok(MetadataLayout {
            usable_bytes,
            bitmap_slots,
            al_slots,
            superblock_offset,
            al_offset,
            al_blocks,
            bitmaps_offset,
            bitmap_bytes: OutOfSyncBitmap::on_disk_bytes(usable_bytes),
        })
    }

    /// Bytes of the metadata area.
    pub fn metadata_bytes(&self) -> u64 {
        self.backing_bytes() - self.usable_bytes
    }

    /// Bytes the backing volume needs: usable size plus metadata.
    pub fn backing_bytes(&self) -> u64 {
        self.bitmaps_offset + u64::from(self.bitmap_slots) * self.bitmap_bytes
    }

    /// Where ring block `index` is.
    pub fn al_block_offset(&self, index: u32) -> u64 {
        assert!(
            index < self.al_blocks,
            "ring block {index} of {}",
            self.al_blocks
        );
        self.al_offset + u64::from(index) * AL_TRANSACTION_SIZE as u64
    }

    /// Where bitmap `index` starts.
    pub fn bitmap_offset(&self, index: u8) -> Result<u64, MetadataError> {
        if index >= self.bitmap_slots {
            return Err(MetadataError::NoSuchBitmap {
                index,
                slots: self.bitmap_slots,
            });
        }
        Ok(self.bitmaps_offset + u64::from(index) * self.bitmap_bytes)
    }
}

/// Bytes of metadata a volume of `usable_bytes` needs with `peer_slots` bitmaps and an AL of
/// `al_slots` slots: what the satellite adds to the backing volume so that the usable size is
/// what the user asked for. A multiple of 4 KiB.
pub fn metadata_size(
    usable_bytes: u64,
    peer_slots: u8,
    al_slots: u16,
) -> Result<u64, MetadataError> {
    Ok(MetadataLayout::new(usable_bytes, peer_slots, al_slots)?.metadata_bytes())
}

/// The superblock of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// The usable size.
    pub usable_bytes: u64,
    /// This member's node-id.
    pub node_id: NodeId,
    /// Bitmaps in the area.
    pub bitmap_slots: u8,
    /// `al-extents` the ring was formatted for.
    pub al_slots: u16,
    /// Volume flags.
    pub flags: MdFlags,
    /// The generation identifiers.
    pub generations: GenerationSet,
    /// Per node-id: bitmap index and flags.
    pub peers: [PeerSlot; MAX_NODES],
}

impl Superblock {
    /// The superblock of new metadata: just created, no peer known.
    pub fn new(
        usable_bytes: u64,
        node_id: NodeId,
        bitmap_slots: u8,
        al_slots: u16,
    ) -> Result<Self, MetadataError> {
        MetadataLayout::new(usable_bytes, bitmap_slots, al_slots)?;
        Ok(Superblock {
            usable_bytes,
            node_id,
            bitmap_slots,
            al_slots,
            flags: MdFlags::empty(),
            generations: GenerationSet::just_created(),
            peers: [PeerSlot::default(); MAX_NODES],
        })
    }

    /// Where everything is.
    pub fn layout(&self) -> MetadataLayout {
        MetadataLayout::new(self.usable_bytes, self.bitmap_slots, self.al_slots)
            .expect("a superblock holds a valid layout")
    }

    /// When the volume is attached: if it was Primary and never demoted, it crashed as Primary
    /// — set the crashed-primary flag for the handshake (its activity log's extents must be set
    /// out of sync toward every peer). Returns whether it crashed.
    pub fn note_attach(&mut self) -> bool {
        if self.flags.contains(MdFlags::PRIMARY) {
            self.generations.flags.insert(GiFlags::CRASHED_PRIMARY);
            true
        } else {
            false
        }
    }

    /// The superblock as written.
    pub fn encode(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[0..8].copy_from_slice(&MD_MAGIC);
        b[8..12].copy_from_slice(&MD_FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.bits().to_le_bytes());
        b[16..24].copy_from_slice(&self.usable_bytes.to_le_bytes());
        b[24] = self.node_id.get();
        b[25] = self.bitmap_slots;
        b[26..28].copy_from_slice(&self.al_slots.to_le_bytes());
        b[28..32].copy_from_slice(&(BM_BLOCK_SIZE as u32).to_le_bytes());
        b[32..36].copy_from_slice(&al_ring_blocks(self.al_slots).to_le_bytes());
        b[36..40].copy_from_slice(&self.generations.flags.bits().to_le_bytes());
        b[40..48].copy_from_slice(&self.generations.current.raw().to_le_bytes());
        for node in NodeId::all() {
            let at = PEERS_OFFSET + node.index() * PEER_ENTRY_SIZE;
            let peer = &self.peers[node.index()];
            b[at] = node.get();
            b[at + 1] = peer.bitmap_index.unwrap_or(NO_BITMAP);
            b[at + 4..at + 8].copy_from_slice(&peer.flags.bits().to_le_bytes());
            b[at + 8..at + 16]
                .copy_from_slice(&self.generations.bitmap[node.index()].raw().to_le_bytes());
        }
        for (i, uuid) in self.generations.history.iter().enumerate() {
            let at = HISTORY_OFFSET + 8 * i;
            b[at..at + 8].copy_from_slice(&uuid.raw().to_le_bytes());
        }
        let checksum = crc32c::crc32c(&b[..CHECKSUM_OFFSET]);
        b[CHECKSUM_OFFSET..].copy_from_slice(&checksum.to_le_bytes());
        b
    }

    /// A superblock from its bytes, for a volume configured with `expected_usable` bytes. The
    /// checks run in the order that names the likeliest cause first: never formatted, not
    /// ours, another version, torn, another size, then each field.
    pub fn decode(
        bytes: &[u8; SUPERBLOCK_SIZE],
        offset: u64,
        expected_usable: u64,
    ) -> Result<Self, MetadataError> {
        if bytes.iter().all(|b| *b == 0) {
            return Err(MetadataError::NotFormatted { offset });
        }
        let found: [u8; 8] = bytes[0..8].try_into().expect("8 bytes");
        if found != MD_MAGIC {
            return Err(MetadataError::BadMagic { offset, found });
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != MD_FORMAT_VERSION {
            return Err(MetadataError::UnsupportedVersion {
                found: version,
                supported: MD_FORMAT_VERSION,
            });
        }
        let stored = u32_at(CHECKSUM_OFFSET);
        let computed = crc32c::crc32c(&bytes[..CHECKSUM_OFFSET]);
        if stored != computed {
            return Err(MetadataError::BadChecksum { stored, computed });
        }
        let usable_bytes = u64_at(16);
        if usable_bytes != expected_usable {
            return Err(MetadataError::WrongUsableSize {
                recorded: usable_bytes,
                expected: expected_usable,
            });
        }
        let corrupt =
            |field: &'static str, detail: String| MetadataError::Corrupt { field, detail };

        let flags = u32_at(12);
        if flags & !MdFlags::KNOWN != 0 {
            return Err(corrupt(
                "flags",
                format!("unknown bits {:#x}", flags & !MdFlags::KNOWN),
            ));
        }
        let node_id =
            NodeId::new(u32::from(bytes[24])).map_err(|e| corrupt("node-id", e.to_string()))?;
        let bitmap_slots = bytes[25];
        let al_slots = u16::from_le_bytes([bytes[26], bytes[27]]);
        let layout = MetadataLayout::new(usable_bytes, bitmap_slots, al_slots)
            .map_err(|e| corrupt("layout", e.to_string()))?;
        let bytes_per_bit = u32_at(28);
        if u64::from(bytes_per_bit) != BM_BLOCK_SIZE {
            return Err(corrupt(
                "bytes per bitmap bit",
                format!("{bytes_per_bit}, expected {BM_BLOCK_SIZE}"),
            ));
        }
        let ring = u32_at(32);
        if ring != layout.al_blocks {
            return Err(corrupt(
                "activity log ring blocks",
                format!(
                    "{ring}, expected {} for al-extents {al_slots}",
                    layout.al_blocks
                ),
            ));
        }
        let gi_flags = GiFlags::from_bits(u32_at(36))
            .map_err(|unknown| corrupt("generation flags", format!("unknown bits {unknown:#x}")))?;

        let mut generations = GenerationSet::just_created();
        generations.current = Uuid::from_raw(u64_at(40));
        generations.flags = gi_flags;
        let mut peers = [PeerSlot::default(); MAX_NODES];
        for node in NodeId::all() {
            let at = PEERS_OFFSET + node.index() * PEER_ENTRY_SIZE;
            if bytes[at] != node.get() {
                return Err(corrupt(
                    "peer slot",
                    format!("slot {} records node-id {}", node.index(), bytes[at]),
                ));
            }
            let bitmap_index = match bytes[at + 1] {
                NO_BITMAP => None,
                index if index < bitmap_slots => Some(index),
                index => {
                    return Err(corrupt(
                        "peer slot",
                        format!("node {node} uses bitmap {index} of {bitmap_slots}"),
                    ));
                }
            };
            let flags = u32_at(at + 4);
            if flags & !PeerFlags::KNOWN != 0 {
                return Err(corrupt(
                    "peer slot",
                    format!(
                        "node {node}: unknown flag bits {:#x}",
                        flags & !PeerFlags::KNOWN
                    ),
                ));
            }
            peers[node.index()] = PeerSlot {
                bitmap_index,
                flags: PeerFlags(flags),
            };
            generations.bitmap[node.index()] = Uuid::from_raw(u64_at(at + 8));
        }
        for i in 0..HISTORY_UUIDS {
            generations.history[i] = Uuid::from_raw(u64_at(HISTORY_OFFSET + 8 * i));
        }
        let mut used = [false; MAX_NODES];
        for (node, peer) in NodeId::all().zip(&peers) {
            if let Some(index) = peer.bitmap_index {
                if node == node_id {
                    return Err(corrupt(
                        "peer slot",
                        format!("this node ({node}) has a bitmap"),
                    ));
                }
                if std::mem::replace(&mut used[index as usize], true) {
                    return Err(corrupt(
                        "peer slot",
                        format!("bitmap {index} is used twice"),
                    ));
                }
            }
        }
        Ok(Superblock {
            usable_bytes,
            node_id,
            bitmap_slots,
            al_slots,
            flags: MdFlags(flags),
            generations,
            peers,
        })
    }
}

fn io_error(what: &'static str, offset: u64, len: u64) -> impl FnOnce(io::Error) -> MetadataError {
    move |source| MetadataError::Io {
        what,
        offset,
        len,
        source,
    }
}

fn write_at(
    file: &File,
    bytes: &[u8],
    offset: u64,
    what: &'static str,
) -> Result<(), MetadataError> {
    file.write_all_at(bytes, offset)
        .map_err(io_error(what, offset, bytes.len() as u64))
}

fn read_at(
    file: &File,
    bytes: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<(), MetadataError> {
    let len = bytes.len() as u64;
    file.read_exact_at(bytes, offset)
        .map_err(io_error(what, offset, len))
}

fn sync(file: &File, what: &'static str, offset: u64, len: u64) -> Result<(), MetadataError> {
    file.sync_data().map_err(io_error(what, offset, len))
}

/// Creates the metadata of a volume: zeroed bitmaps, a formatted activity log, then the
/// superblock, synced at the end (a crash before that leaves no valid superblock, so the
/// creation is simply done again). Returns the activity log, ready for writes.
pub fn create(file: &File, superblock: &Superblock) -> Result<ActivityLog, MetadataError> {
    let layout = superblock.layout();
    let zeroes = vec![0u8; ZERO_CHUNK];
    let end = layout.backing_bytes();
    let mut at = layout.bitmaps_offset;
    while at < end {
        let len = (end - at).min(ZERO_CHUNK as u64) as usize;
        write_at(file, &zeroes[..len], at, "zeroing the bitmaps")?;
        at += len as u64;
    }
    let mut al = ActivityLog::new(layout.al_slots, 0)?;
    for tr in al.format() {
        write_at(
            file,
            &tr.encode(),
            layout.al_block_offset(tr.ring_index(layout.al_blocks)),
            "formatting the activity log",
        )?;
        al.transaction_written(tr.sequence);
    }
    write_at(
        file,
        &superblock.encode(),
        layout.superblock_offset,
        "writing the superblock",
    )?;
    sync(
        file,
        "syncing new metadata",
        layout.superblock_offset,
        layout.metadata_bytes(),
    )?;
    Ok(al)
}

/// Reads and checks the superblock of a volume configured with `usable_bytes`.
pub fn read_superblock(file: &File, usable_bytes: u64) -> Result<Superblock, MetadataError> {
    let mut bytes = [0u8; SUPERBLOCK_SIZE];
    read_at(file, &mut bytes, usable_bytes, "reading the superblock")?;
    Superblock::decode(&bytes, usable_bytes, usable_bytes)
}

/// Writes the superblock and syncs it: call after every change of the generation set or the
/// flags, before anything that depends on it (the write that started a new generation, the
/// end of a resync being announced).
pub fn write_superblock(file: &File, superblock: &Superblock) -> Result<(), MetadataError> {
    let offset = superblock.usable_bytes;
    write_at(file, &superblock.encode(), offset, "writing the superblock")?;
    sync(
        file,
        "syncing the superblock",
        offset,
        SUPERBLOCK_SIZE as u64,
    )
}

/// Reads bitmap `index`; every page is clean afterwards.
pub fn read_bitmap(
    file: &File,
    layout: &MetadataLayout,
    index: u8,
) -> Result<OutOfSyncBitmap, MetadataError> {
    let offset = layout.bitmap_offset(index)?;
    let mut bytes = vec![0u8; layout.bitmap_bytes as usize];
    read_at(file, &mut bytes, offset, "reading a bitmap")?;
    OutOfSyncBitmap::decode(layout.usable_bytes, &bytes)
        .map_err(|source| MetadataError::Bitmap { index, source })
}

/// Writes the dirty pages of `bitmap` to bitmap `index`, syncs, and marks them clean. Returns
/// how many pages were written.
pub fn write_bitmap(
    file: &File,
    layout: &MetadataLayout,
    index: u8,
    bitmap: &mut OutOfSyncBitmap,
) -> Result<u64, MetadataError> {
    let offset = layout.bitmap_offset(index)?;
    if bitmap.usable_bytes() != layout.usable_bytes {
        return Err(MetadataError::Bitmap {
            index,
            source: BitmapError::SizeMismatch {
                ours: layout.usable_bytes,
                theirs: bitmap.usable_bytes(),
            },
        });
    }
    let pages: Vec<u64> = bitmap.dirty_pages().collect();
    for page in &pages {
        let at = offset + page * BITMAP_PAGE_SIZE;
        write_at(
            file,
            &bitmap.encode_page(*page),
            at,
            "writing a bitmap page",
        )?;
    }
    if !pages.is_empty() {
        sync(file, "syncing a bitmap", offset, layout.bitmap_bytes)?;
        for page in pages.iter() {
            bitmap.mark_clean(*page);
        }
    }
    Ok(pages.len() as u64)
}

/// Writes an activity-log transaction to its ring block and syncs it: the write(s) waiting for
/// it may be submitted when this returns.
pub fn write_al_transaction(
    file: &File,
    layout: &MetadataLayout,
    transaction: &AlTransaction,
) -> Result<(), MetadataError> {
    let offset = layout.al_block_offset(transaction.ring_index(layout.al_blocks));
    write_at(
        file,
        &transaction.encode(),
        offset,
        "writing an activity-log transaction",
    )?;
    sync(
        file,
        "syncing the activity log",
        offset,
        AL_TRANSACTION_SIZE as u64,
    )
}

/// Reads the activity-log ring and recovers the extents that were hot.
pub fn read_activity_log(
    file: &File,
    layout: &MetadataLayout,
) -> Result<AlRecovery, MetadataError> {
    Ok(crate::activity_log::recover(&read_al_ring(file, layout)?)?)
}

/// The activity log's ring as it is on disk, for [`crate::activity_log::recover`].
pub fn read_al_ring(file: &File, layout: &MetadataLayout) -> Result<Vec<u8>, MetadataError> {
    let len = u64::from(layout.al_blocks) * AL_TRANSACTION_SIZE as u64;
    let mut ring = vec![0u8; len as usize];
    read_at(
        file,
        &mut ring,
        layout.al_offset,
        "reading the activity log",
    )?;
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use crate::activity_log::{AL_EXTENT_SIZE, AL_EXTENTS_DEFAULT, Admission};

    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn node(id: u32) -> NodeId {
        NodeId::new(id).unwrap()
    }

    /// A backing file of the right size with new metadata for `usable` bytes, 2 peers.
    fn created(usable: u64) -> (tempfile::NamedTempFile, Superblock, ActivityLog) {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut sb = Superblock::new(usable, node(1), 2, AL_EXTENTS_DEFAULT).unwrap();
        sb.peers[0] = PeerSlot {
            bitmap_index: Some(0),
            flags: PeerFlags::NODE_EXISTS,
        };
        sb.peers[2] = PeerSlot {
            bitmap_index: Some(1),
            flags: PeerFlags::NODE_EXISTS,
        };
        file.as_file().set_len(sb.layout().backing_bytes()).unwrap();
        let al = create(file.as_file(), &sb).unwrap();
        (file, sb, al)
    }

    #[test]
    fn sizes_and_offsets() {
        let layout = MetadataLayout::new(GIB, 2, AL_EXTENTS_DEFAULT).unwrap();
        assert_eq!(layout.superblock_offset, GIB);
        assert_eq!(layout.al_offset, GIB + 4096);
        assert_eq!(layout.al_blocks, 8);
        assert_eq!(layout.bitmaps_offset, GIB + 4096 + 8 * 4096);
        assert_eq!(layout.bitmap_bytes, 32 * 1024); // 1 GiB / 4 KiB / 8
        assert_eq!(
            layout.bitmap_offset(1).unwrap(),
            layout.bitmaps_offset + 32 * 1024
        );
        assert!(matches!(
            layout.bitmap_offset(2),
            Err(MetadataError::NoSuchBitmap { .. })
        ));
        assert_eq!(
            metadata_size(GIB, 2, AL_EXTENTS_DEFAULT).unwrap(),
            4096 + 32768 + 65536
        );
        // 1 TiB, one peer: 4 KiB + 32 KiB + 32 MiB, as DRBD's internal metadata.
        assert_eq!(
            metadata_size(1 << 40, 1, AL_EXTENTS_DEFAULT).unwrap(),
            4096 + 32768 + 32 * MIB
        );
        for usable in [4096, 5 * GIB, 123 * 4096] {
            for slots in [0, 1, 31] {
                assert!(
                    metadata_size(usable, slots, 67)
                        .unwrap()
                        .is_multiple_of(4096)
                );
            }
        }
        assert!(matches!(
            metadata_size(4097, 1, 1237),
            Err(MetadataError::UnalignedUsableSize { .. })
        ));
        assert!(matches!(
            metadata_size(0, 1, 1237),
            Err(MetadataError::UnalignedUsableSize { .. })
        ));
        assert!(matches!(
            metadata_size(GIB, 32, 1237),
            Err(MetadataError::TooManyBitmapSlots(32))
        ));
        assert!(matches!(
            metadata_size(GIB, 1, 0),
            Err(MetadataError::ActivityLog(_))
        ));
    }

    #[test]
    fn superblock_round_trips_through_a_file() {
        let (file, mut sb, _) = created(64 * MIB);
        let back = read_superblock(file.as_file(), 64 * MIB).unwrap();
        assert_eq!(back, sb);
        // A generation set with everything in it.
        sb.generations
            .new_current_uuid_clear_bitmap(node(1), Uuid::new_generation(11))
            .unwrap();
        sb.generations.set_primary(true);
        sb.generations
            .start_new_generation(
                node(1),
                Uuid::new_generation(22 << 8),
                [node(0)].into_iter().collect(),
            )
            .unwrap();
        sb.generations.flags.insert(GiFlags::PRIMARY_LOST_QUORUM);
        sb.flags.insert(MdFlags::CONSISTENT);
        sb.flags.insert(MdFlags::PRIMARY);
        sb.peers[0].flags.insert(PeerFlags::OUTDATED);
        write_superblock(file.as_file(), &sb).unwrap();
        let mut back = read_superblock(file.as_file(), 64 * MIB).unwrap();
        assert_eq!(back, sb);
        assert!(back.generations.current.is_primary());
        assert_eq!(
            back.generations.bitmap_uuid(node(0)),
            Uuid::new_generation(11)
        );
        // It was Primary and is attached again without a demotion: it crashed as Primary.
        assert!(back.note_attach());
        assert!(back.generations.flags.contains(GiFlags::CRASHED_PRIMARY));
    }

    #[test]
    fn a_bad_superblock_is_an_error_that_says_why() {
        let (file, sb, _) = created(64 * MIB);
        let f = file.as_file();
        let at = sb.usable_bytes;
        let good = sb.encode();

        // Wrong usable size: the superblock is elsewhere, so the magic is missing.
        assert!(matches!(
            read_superblock(f, 32 * MIB),
            Err(MetadataError::NotFormatted { .. })
        ));
        // The superblock found where expected, but recording another size.
        let mut other = sb.clone();
        other.usable_bytes = 32 * MIB;
        let mut bytes = other.encode();
        f.write_all_at(&bytes, at).unwrap();
        let err = read_superblock(f, 64 * MIB).unwrap_err();
        assert!(
            matches!(err, MetadataError::WrongUsableSize { recorded, expected } if recorded == 32 * MIB && expected == 64 * MIB)
        );
        assert!(
            err.to_string().contains("configured with 67108864"),
            "{err}"
        );

        // Torn: the second half of the block is from an older version of it.
        bytes = good;
        bytes[2048..].fill(0);
        f.write_all_at(&bytes, at).unwrap();
        assert!(matches!(
            read_superblock(f, 64 * MIB),
            Err(MetadataError::BadChecksum { .. })
        ));

        // One flipped bit.
        bytes = good;
        bytes[1100] ^= 0x04;
        f.write_all_at(&bytes, at).unwrap();
        assert!(matches!(
            read_superblock(f, 64 * MIB),
            Err(MetadataError::BadChecksum { .. })
        ));

        // Not ours.
        bytes = good;
        bytes[0..8].copy_from_slice(b"DRBDMETA");
        f.write_all_at(&bytes, at).unwrap();
        let err = read_superblock(f, 64 * MIB).unwrap_err();
        assert!(matches!(err, MetadataError::BadMagic { .. }), "{err}");

        // Another version (checksum valid for it).
        bytes = good;
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        f.write_all_at(&bytes, at).unwrap();
        assert!(matches!(
            read_superblock(f, 64 * MIB),
            Err(MetadataError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));

        // Zeroes.
        f.write_all_at(&[0u8; SUPERBLOCK_SIZE], at).unwrap();
        assert!(matches!(
            read_superblock(f, 64 * MIB),
            Err(MetadataError::NotFormatted { .. })
        ));

        // A file too short for the superblock.
        let short = tempfile::tempfile().unwrap();
        let err = read_superblock(&short, 64 * MIB).unwrap_err();
        assert!(
            matches!(
                err,
                MetadataError::Io {
                    what: "reading the superblock",
                    ..
                }
            ),
            "{err}"
        );
    }

    /// Re-checksums a modified superblock, so that the field checks are reached.
    fn reseal(mut bytes: [u8; SUPERBLOCK_SIZE]) -> [u8; SUPERBLOCK_SIZE] {
        let checksum = crc32c::crc32c(&bytes[..CHECKSUM_OFFSET]);
        bytes[CHECKSUM_OFFSET..].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    #[test]
    fn impossible_fields_are_corruption() {
        let (_, sb, _) = created(64 * MIB);
        let good = sb.encode();
        type Corruption = Box<dyn Fn(&mut [u8; SUPERBLOCK_SIZE])>;
        let cases: [(&str, Corruption); 7] = [
            ("node-id", Box::new(|b| b[24] = 40)),
            ("flags", Box::new(|b| b[14] = 0x80)),
            ("generation flags", Box::new(|b| b[38] = 0x80)),
            (
                "bytes per bitmap bit",
                Box::new(|b| b[28..32].copy_from_slice(&512u32.to_le_bytes())),
            ),
            (
                "activity log ring blocks",
                Box::new(|b| b[32..36].copy_from_slice(&9u32.to_le_bytes())),
            ),
            (
                "peer slot",
                Box::new(|b| b[PEERS_OFFSET + 3 * PEER_ENTRY_SIZE] = 4),
            ),
            (
                "peer slot",
                Box::new(|b| b[PEERS_OFFSET + 2 * PEER_ENTRY_SIZE + 1] = 0),
            ),
        ];
        for (field, corrupt) in cases {
            let mut bytes = good;
            corrupt(&mut bytes);
            let err = Superblock::decode(&reseal(bytes), 0, 64 * MIB).unwrap_err();
            match err {
                MetadataError::Corrupt { field: f, .. } => assert_eq!(f, field),
                other => panic!("{field}: {other}"),
            }
        }
    }

    #[test]
    fn only_dirty_bitmap_pages_are_written() {
        let usable = GIB; // 8 bitmap pages
        let (file, sb, _) = created(usable);
        let f = file.as_file();
        let layout = sb.layout();
        let mut bitmap = read_bitmap(f, &layout, 1).unwrap();
        assert!(bitmap.is_clear());
        bitmap.set_range(200 * MIB, 8192).unwrap();
        bitmap.set_range(1000 * MIB, 1).unwrap();
        // Mark a page on disk that is clean in memory: it must not be overwritten.
        let clean_page = layout.bitmap_offset(1).unwrap() + 4 * BITMAP_PAGE_SIZE;
        f.write_all_at(&[0xAA; 8], clean_page).unwrap();
        assert_eq!(write_bitmap(f, &layout, 1, &mut bitmap).unwrap(), 2);
        assert_eq!(bitmap.dirty_pages().count(), 0);
        assert_eq!(write_bitmap(f, &layout, 1, &mut bitmap).unwrap(), 0);
        let mut marker = [0u8; 8];
        f.read_exact_at(&mut marker, clean_page).unwrap();
        assert_eq!(marker, [0xAA; 8]);
        f.write_all_at(&[0; 8], clean_page).unwrap();
        let back = read_bitmap(f, &layout, 1).unwrap();
        assert_eq!(
            back.ranges().collect::<Vec<_>>(),
            bitmap.ranges().collect::<Vec<_>>()
        );
        assert!(
            read_bitmap(f, &layout, 0).unwrap().is_clear(),
            "the other peer's bitmap"
        );
        // A bitmap of another size is refused.
        let mut wrong = OutOfSyncBitmap::new(MIB);
        wrong.set_all();
        assert!(matches!(
            write_bitmap(f, &layout, 0, &mut wrong),
            Err(MetadataError::Bitmap { .. })
        ));
    }

    #[test]
    fn activity_log_survives_a_crash_in_the_file() {
        let (file, sb, mut al) = created(16 * GIB);
        let f = file.as_file();
        let layout = sb.layout();
        assert!(
            read_activity_log(f, &layout)
                .unwrap()
                .hot_extents
                .is_empty()
        );
        for extent in [2u64, 900] {
            let Admission::WriteTransaction(tr) =
                al.begin_write(extent * AL_EXTENT_SIZE, 4096).unwrap()
            else {
                panic!("a cold extent needs a transaction")
            };
            write_al_transaction(f, &layout, &tr).unwrap();
            al.transaction_written(tr.sequence);
        }
        // Crash: reopen and recover.
        let recovered = read_activity_log(f, &layout).unwrap();
        assert_eq!(
            recovered.hot_extents.into_iter().collect::<Vec<_>>(),
            vec![2, 900]
        );
        // Wiped ring: an error, not "nothing was hot".
        f.write_all_at(
            &vec![0u8; layout.al_blocks as usize * AL_TRANSACTION_SIZE],
            layout.al_offset,
        )
        .unwrap();
        assert!(matches!(
            read_activity_log(f, &layout),
            Err(MetadataError::Recovery(
                AlRecoveryError::NoValidTransaction { .. }
            ))
        ));
    }
}
