//! Generation identifiers (GIs): which generation of a volume's data a replica holds, and what
//! two replicas must do when they connect.
//!
//! This module owns the [`GenerationSet`] of one volume on one member — the current UUID, one
//! bitmap UUID per peer slot, 32 history UUIDs and the flags the handshake reads — together
//! with the handshake's decision table ([`decide`]) and the transitions that change a set: a new
//! data generation ([`GenerationSet::start_new_generation`], [`NewGenerationTrigger`]), adopting
//! a Primary's new generation, the end of a resync, marking a peer in sync and skipping the
//! initial sync. It is pure: persisting a set is [`crate::metadata`]'s job, sending it is the
//! peer protocol's, and acting on a [`Decision`] (resync, refusing a split brain) is the resource
//! actor's.
//!
//! The semantics are DRBD 9's (`drbd_receiver.c::drbd_uuid_compare`, `drbd_main.c`); rule names
//! are DRBD's, so a log line reads as DRBD's `uuid_compare()=… by rule=…` does. Where this
//! module differs from DRBD, the item's documentation says so and why.

use std::fmt;

/// Node-ids per resource, and so peer slots per volume (DRBD's `DRBD_PEERS_MAX`,
/// `DRBD_NODE_ID_MAX`).
pub const MAX_NODES: usize = 32;

/// History UUIDs kept per volume (DRBD 9's `HISTORY_UUIDS`).
pub const HISTORY_UUIDS: usize = 32;

/// The lowest bit of a current UUID says the member was Primary when it was set (DRBD's
/// `UUID_PRIMARY`); every comparison masks it.
pub const UUID_PRIMARY: u64 = 1;

/// The current UUID of a volume whose metadata was just created and that never held data
/// (DRBD's `UUID_JUST_CREATED`). A current UUID of 0 means the same.
pub const UUID_JUST_CREATED: u64 = 4;

/// A member's node-id within a resource: 0–31, assigned by the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u8);

/// A node-id outside 0–31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node-id {0} is out of range (0-{max})", max = MAX_NODES - 1)]
pub struct InvalidNodeId(pub u32);

impl NodeId {
    /// A node-id, or why it is not one.
    pub fn new(id: u32) -> Result<Self, InvalidNodeId> {
        if (id as usize) < MAX_NODES {
            Ok(NodeId(id as u8))
        } else {
            Err(InvalidNodeId(id))
        }
    }

    /// The number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The peer slot this node-id indexes.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Every node-id, in order.
    pub fn all() -> impl Iterator<Item = NodeId> {
        (0..MAX_NODES as u8).map(NodeId)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A set of node-ids (DRBD's `NODE_MASK` arithmetic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NodeMask(u32);

impl NodeMask {
    /// No node.
    pub const EMPTY: NodeMask = NodeMask(0);

    /// The mask with these bits (bit n = node-id n).
    pub const fn from_bits(bits: u32) -> Self {
        NodeMask(bits)
    }

    /// Bit n set for node-id n.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether `node` is in the set.
    pub const fn contains(self, node: NodeId) -> bool {
        self.0 & (1 << node.0) != 0
    }

    /// Adds `node`.
    pub fn insert(&mut self, node: NodeId) {
        self.0 |= 1 << node.0;
    }

    /// Removes `node`.
    pub fn remove(&mut self, node: NodeId) {
        self.0 &= !(1 << node.0);
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many nodes are in the set.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The nodes in the set, in node-id order.
    pub fn iter(self) -> impl Iterator<Item = NodeId> {
        NodeId::all().filter(move |n| self.contains(*n))
    }
}

impl FromIterator<NodeId> for NodeMask {
    fn from_iter<I: IntoIterator<Item = NodeId>>(iter: I) -> Self {
        let mut mask = NodeMask::EMPTY;
        for node in iter {
            mask.insert(node);
        }
        mask
    }
}

/// A generation identifier: 64 random bits naming one generation of a volume's data.
///
/// Equality and hashing ignore the Primary bit ([`UUID_PRIMARY`]), as every comparison in DRBD
/// does; [`Uuid::raw`] keeps it for the wire and the disk.
#[derive(Clone, Copy, Default)]
pub struct Uuid(u64);

impl Uuid {
    /// No UUID: an unused bitmap or history slot.
    pub const ZERO: Uuid = Uuid(0);

    /// The current UUID of a volume that never held data.
    pub const JUST_CREATED: Uuid = Uuid(UUID_JUST_CREATED);

    /// A UUID as read from disk or the wire, Primary bit included.
    pub const fn from_raw(raw: u64) -> Self {
        Uuid(raw)
    }

    /// A new generation from 64 random bits: the Primary bit cleared, never zero and never
    /// [`Uuid::JUST_CREATED`] (those two values mean "no data").
    pub const fn new_generation(random: u64) -> Self {
        let generation = random & !UUID_PRIMARY;
        if generation == 0 || generation == UUID_JUST_CREATED {
            Uuid(generation ^ 0x8000_0000_0000_0000)
        } else {
            Uuid(generation)
        }
    }

    /// The value with the Primary bit, as stored.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The value without the Primary bit: what comparisons use.
    pub const fn generation(self) -> u64 {
        self.0 & !UUID_PRIMARY
    }

    /// Whether the Primary bit is set.
    pub const fn is_primary(self) -> bool {
        self.0 & UUID_PRIMARY != 0
    }

    /// The same generation with the Primary bit set or cleared.
    pub const fn with_primary(self, primary: bool) -> Self {
        if primary {
            Uuid(self.0 | UUID_PRIMARY)
        } else {
            Uuid(self.0 & !UUID_PRIMARY)
        }
    }

    /// Whether this is an unused slot (zero, Primary bit aside).
    pub const fn is_zero(self) -> bool {
        self.generation() == 0
    }

    /// Whether this current UUID means "never held data" (zero counts, as in DRBD).
    pub const fn is_just_created(self) -> bool {
        self.generation() == 0 || self.generation() == UUID_JUST_CREATED
    }
}

impl PartialEq for Uuid {
    fn eq(&self, other: &Self) -> bool {
        self.generation() == other.generation()
    }
}

impl Eq for Uuid {}

impl std::hash::Hash for Uuid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.generation().hash(state);
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// Flags of a generation set that the handshake reads. The bit values are DRBD's
/// `UUID_FLAG_*`, so a dump compares with DRBD's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct GiFlags(u32);

impl GiFlags {
    /// The operator resolved a split brain against this member (`--discard-my-data`).
    pub const DISCARD_MY_DATA: GiFlags = GiFlags(1 << 0);
    /// This member was Primary when it stopped without demoting (a crash, a power loss): the
    /// extents of its activity log may hold writes its peers never saw.
    pub const CRASHED_PRIMARY: GiFlags = GiFlags(1 << 1);
    /// This member was Primary when it lost quorum: writes in flight then may have reached
    /// only its own disk.
    pub const PRIMARY_LOST_QUORUM: GiFlags = GiFlags(1 << 10);

    const KNOWN: u32 =
        Self::DISCARD_MY_DATA.0 | Self::CRASHED_PRIMARY.0 | Self::PRIMARY_LOST_QUORUM.0;

    /// No flag.
    pub const fn empty() -> Self {
        GiFlags(0)
    }

    /// The bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The flags from their bits, or the bits this version does not know.
    pub const fn from_bits(bits: u32) -> Result<Self, u32> {
        if bits & !Self::KNOWN == 0 {
            Ok(GiFlags(bits))
        } else {
            Err(bits & !Self::KNOWN)
        }
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: GiFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: GiFlags) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    pub fn remove(&mut self, other: GiFlags) {
        self.0 &= !other.0;
    }
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GiError {
    /// Skipping the initial sync is only for a volume that never held data.
    #[error(
        "cannot skip the initial sync: this volume already holds generation {current} \
         (only a just-created volume adopts a peer's generation without a resync)"
    )]
    NotJustCreated {
        /// The volume's current UUID.
        current: Uuid,
    },
    /// A new generation must be a real UUID (see [`Uuid::new_generation`]).
    #[error("{uuid} cannot name a new generation (zero and just-created are reserved)")]
    ReservedUuid {
        /// The refused value.
        uuid: Uuid,
    },
}

/// The generation identifiers of one volume on one member.
///
/// - `current`: the generation this member's data belongs to; [`Uuid::JUST_CREATED`] if it
///   never held data.
/// - `bitmap[n]`: for peer node-id `n`, the generation the out-of-sync bitmap toward `n`
///   records changes *since*; zero while `n` is in sync (connected, or never diverged). The
///   member's own slot stays zero.
/// - `history`: earlier generations, newest first, zero-padded; every generation this member's
///   data descends from is here or in a bitmap slot (until 32 newer ones push it out).
/// - `flags`: see [`GiFlags`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationSet {
    /// The current UUID (Primary bit = role when it was set).
    pub current: Uuid,
    /// Bitmap UUID per peer slot, indexed by node-id.
    pub bitmap: [Uuid; MAX_NODES],
    /// History UUIDs, newest first.
    pub history: [Uuid; HISTORY_UUIDS],
    /// Flags the handshake reads.
    pub flags: GiFlags,
}

impl Default for GenerationSet {
    fn default() -> Self {
        Self::just_created()
    }
}

/// What the end of a resync changed in the target's bitmap slots, for the I/O path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncFinished {
    /// Peers whose bitmap UUID became zero: the source was in sync with them, so this member
    /// now is too. Their bitmaps keep their bits (see [`GenerationSet::learn_in_sync_peers`]).
    pub cleared: NodeMask,
    /// Peers whose bitmap UUID became the target's current UUID from the start of the resync:
    /// their bitmaps must hold every block the resync wrote (see the I/O path's rules in
    /// [`GenerationSet::finish_resync_as_target`]).
    pub tracking: NodeMask,
}

impl GenerationSet {
    /// The set of a volume whose metadata was just created: no generation, no history.
    pub fn just_created() -> Self {
        GenerationSet {
            current: Uuid::JUST_CREATED,
            bitmap: [Uuid::ZERO; MAX_NODES],
            history: [Uuid::ZERO; HISTORY_UUIDS],
            flags: GiFlags::empty(),
        }
    }

    /// The bitmap UUID toward `peer`.
    pub fn bitmap_uuid(&self, peer: NodeId) -> Uuid {
        self.bitmap[peer.index()]
    }

    /// Whether `uuid` (non-zero) is one of the history UUIDs.
    pub fn in_history(&self, uuid: Uuid) -> bool {
        !uuid.is_zero() && self.history.contains(&uuid)
    }

    /// The node-id of a bitmap slot holding `uuid` (non-zero), skipping `skip`.
    fn bitmap_slot_of(&self, uuid: Uuid, skip: NodeMask) -> Option<NodeId> {
        if uuid.is_zero() {
            return None;
        }
        NodeId::all().find(|n| !skip.contains(*n) && self.bitmap[n.index()] == uuid)
    }

    /// Whether this set records `uuid` as an ancestor of its current generation (in the history
    /// or a bitmap slot).
    pub fn knows_ancestor(&self, uuid: Uuid) -> bool {
        self.in_history(uuid) || self.bitmap_slot_of(uuid, NodeMask::EMPTY).is_some()
    }

    /// "Day 0": a current generation was set (created, or the initial sync was skipped) but
    /// never rotated, so no history and no bitmap UUID exists yet.
    pub fn is_day0(&self) -> bool {
        !self.current.is_just_created()
            && self.history.iter().all(|h| h.is_zero())
            && self.bitmap.iter().all(|b| b.is_zero())
    }

    /// Sets or clears the Primary bit of the current UUID (on promotion and demotion).
    pub fn set_primary(&mut self, primary: bool) {
        self.current = self.current.with_primary(primary);
    }

    /// Records `uuid` as an earlier generation, newest first, as DRBD's
    /// `_drbd_uuid_push_history`: nothing for zero, just-created, the current UUID or a UUID
    /// already in the history; nothing for a UUID a bitmap slot holds (the handshake finds it
    /// there), except into an empty history (day 0's UUID is kept even so). The oldest entry
    /// falls out when the history is full.
    fn push_history(&mut self, uuid: Uuid) {
        if uuid.is_just_created() || uuid == self.current {
            return;
        }
        let uuid = uuid.with_primary(false);
        if self.history[0].is_zero() {
            self.history[0] = uuid;
            return;
        }
        if self.bitmap.contains(&uuid) || self.history.contains(&uuid) {
            return;
        }
        self.history.copy_within(0..HISTORY_UUIDS - 1, 1);
        self.history[0] = uuid;
    }

    /// Sets the bitmap UUID toward `peer`; a replaced non-zero UUID goes into the history.
    fn replace_bitmap_uuid(&mut self, peer: NodeId, uuid: Uuid) -> bool {
        let previous = self.bitmap[peer.index()];
        if previous == uuid && previous.raw() == uuid.raw() {
            return false;
        }
        self.bitmap[peer.index()] = uuid;
        self.push_history(previous);
        true
    }

    /// Starts a new data generation on a member about to write while the diskful peers in
    /// `absent` are unreachable (DRBD's `drbd_uuid_new_current` through
    /// `rotate_current_into_bitmap`).
    ///
    /// The old current UUID becomes the bitmap UUID of every absent peer whose slot was zero or
    /// already held it; a peer whose slot holds an older generation keeps it (its bitmap keeps
    /// counting from there). If no slot took the old UUID and this is not day 0, nobody could
    /// tell the generations apart, so nothing changes and this returns `false`. Otherwise the
    /// current UUID becomes `new` (keeping the role bit), the old one goes into the history, and
    /// this returns `true`: the caller persists the set (with fsync) before the write that
    /// caused it is submitted, and sends the new UUID to the connected peers, which call
    /// [`GenerationSet::adopt_new_current`].
    ///
    /// A just-created member that starts writing (a forced promotion) simply takes `new`: its
    /// peers see "just created" and get a full sync.
    pub fn start_new_generation(
        &mut self,
        me: NodeId,
        new: Uuid,
        absent: NodeMask,
    ) -> Result<bool, GiError> {
        if new.is_just_created() {
            return Err(GiError::ReservedUuid { uuid: new });
        }
        let old = self.current;
        let primary = old.is_primary();
        if old.is_just_created() {
            self.current = new.with_primary(primary);
            return Ok(true);
        }
        let day0 = self.is_day0();
        let mut rotated = false;
        for peer in absent.iter().filter(|p| *p != me) {
            let slot = self.bitmap[peer.index()];
            if slot.is_zero() || slot == old {
                self.bitmap[peer.index()] = old.with_primary(false);
                rotated = true;
            }
        }
        if !rotated && !day0 {
            return Ok(false);
        }
        self.current = new.with_primary(primary);
        self.push_history(old);
        Ok(true)
    }

    /// Adopts the new generation a connected Primary announced (DRBD's
    /// `drbd_uuid_received_new_current`). Call it only on a member that is UpToDate and in sync
    /// with `primary`; a resync target keeps its set and adopts at the end of the resync.
    ///
    /// `weak` are the nodes the Primary does not reach: this member's old current UUID becomes
    /// their bitmap UUID (where the slot was zero or held it), as on the Primary. Peers the
    /// Primary does reach but this member has a bitmap UUID for get the new UUID there, since
    /// from now on they receive the same writes. The old current UUID goes into the history.
    pub fn adopt_new_current(
        &mut self,
        me: NodeId,
        primary: NodeId,
        new: Uuid,
        weak: NodeMask,
    ) -> Result<(), GiError> {
        if new.is_just_created() {
            return Err(GiError::ReservedUuid { uuid: new });
        }
        let old = self.current;
        if old == new {
            return Ok(());
        }
        for peer in NodeId::all().filter(|p| *p != me && *p != primary) {
            let slot = self.bitmap[peer.index()];
            if weak.contains(peer) {
                if !old.is_just_created() && (slot.is_zero() || slot == old) {
                    self.bitmap[peer.index()] = old.with_primary(false);
                }
            } else if !slot.is_zero() {
                self.replace_bitmap_uuid(peer, new.with_primary(false));
            }
        }
        self.current = new.with_primary(old.is_primary());
        self.push_history(old);
        Ok(())
    }

    /// Records that this member and `peer` hold the same data: the bitmap UUID toward `peer`
    /// becomes zero and a non-zero one goes into the history (DRBD's
    /// `drbd_uuid_detect_finished_resyncs`). Call it when the bitmap toward `peer` is empty —
    /// a resync with it finished (on the source too), or a handshake with equal current UUIDs
    /// found no out-of-sync block on either side. Returns whether the slot changed.
    pub fn mark_in_sync_with(&mut self, peer: NodeId) -> bool {
        if self.bitmap[peer.index()].is_zero() {
            return false;
        }
        self.replace_bitmap_uuid(peer, Uuid::ZERO)
    }

    /// What a resync target adopts when the resync from `source_id` finishes (DRBD's
    /// `drbd_uuid_resync_finished`): the source's current UUID, and the source's history and
    /// bitmap UUIDs as its own history, so every ancestor the source knows it knows.
    ///
    /// - `start_current` is this member's current UUID when the resync started.
    /// - `peers_on_source_current` are connected peers already on the source's generation.
    ///
    /// If `start_current` is an ancestor of the source's data (a bitmap resync, or a full one
    /// chosen from the history), this member keeps its own history, and toward every peer the
    /// source had a non-zero bitmap UUID for (and not on the source's generation) its bitmap UUID
    /// becomes `start_current`: those peers may sit at that generation, and the blocks the
    /// resync wrote are what changed since (a peer on an older generation then gets a full
    /// resync through the history, as in DRBD). **The I/O path must therefore set, on a resync
    /// target, every block the resync writes out of sync toward every peer other than the
    /// source** (it clears them again where [`ResyncFinished::cleared`] says).
    ///
    /// Otherwise (a just-created member, or a split brain resolved with `--discard-my-data`)
    /// the old data is gone: the history becomes the source's, every bitmap UUID zero, and the
    /// old current UUID is *not* kept. DRBD keeps it; we do not, because a third member still on
    /// the discarded generation would then look like an ancestor and be overwritten without
    /// the split brain ever being reported to it.
    ///
    /// The crashed-primary, lost-quorum and discard-my-data flags are cleared: this member now
    /// holds the source's data.
    pub fn finish_resync_as_target(
        &mut self,
        me: NodeId,
        source_id: NodeId,
        source: &GenerationSet,
        start_current: Uuid,
        peers_on_source_current: NodeMask,
    ) -> ResyncFinished {
        let start_is_ancestor = !start_current.is_just_created()
            && (source.knows_ancestor(start_current) || start_current == source.current);
        if !start_is_ancestor {
            self.history = [Uuid::ZERO; HISTORY_UUIDS];
            self.bitmap = [Uuid::ZERO; MAX_NODES];
        }
        // The new current UUID first: the history never takes the current UUID, and the old
        // one must be recorded now that it is an ancestor.
        let old = self.current;
        self.current = source.current.with_primary(old.is_primary());
        // Oldest first, so the newest end up in front and the oldest fall out first.
        for uuid in source.history.iter().rev() {
            self.push_history(*uuid);
        }
        for uuid in source.bitmap.iter() {
            self.push_history(*uuid);
        }
        if start_is_ancestor {
            self.push_history(old);
        }
        let mut finished = ResyncFinished {
            cleared: NodeMask::EMPTY,
            tracking: NodeMask::EMPTY,
        };
        for peer in NodeId::all().filter(|p| *p != me) {
            let tracks = start_is_ancestor
                && peer != source_id
                && !source.bitmap[peer.index()].is_zero()
                && !peers_on_source_current.contains(peer);
            if tracks {
                self.replace_bitmap_uuid(peer, start_current.with_primary(false));
                finished.tracking.insert(peer);
            } else {
                self.replace_bitmap_uuid(peer, Uuid::ZERO);
                finished.cleared.insert(peer);
            }
        }
        self.flags.remove(GiFlags::CRASHED_PRIMARY);
        self.flags.remove(GiFlags::PRIMARY_LOST_QUORUM);
        self.flags.remove(GiFlags::DISCARD_MY_DATA);
        finished
    }

    /// Learns from a connected peer on the same generation which third nodes it holds in sync
    /// (DRBD's `drbd_uuid_detect_finished_resyncs`): where the peer's bitmap UUID toward a node
    /// is zero and mine is not, that node resynced with the peer (or was never behind it) while
    /// I was away, so it holds my generation; my slot becomes zero and the old UUID goes into
    /// the history. Returns the slots that changed.
    ///
    /// Without this, my slot toward such a node stays at the older generation it was behind
    /// at, so my next write while it is away does not start a new generation, and when it comes
    /// back having written itself, the handshake takes my writes for the older side
    /// (`bitmap-peer`) instead of reporting the split brain.
    ///
    /// Call it whenever a connected peer whose current UUID equals mine sends its set (after a
    /// handshake that decided [`Outcome::NoSync`], and on every later UUID update). The bitmap
    /// *bits* toward those nodes stay: they are cleared only as blocks are copied, so at worst
    /// the next resync copies blocks the node already holds.
    pub fn learn_in_sync_peers(
        &mut self,
        me: NodeId,
        peer_id: NodeId,
        peer: &GenerationSet,
    ) -> NodeMask {
        let mut changed = NodeMask::EMPTY;
        if self.current != peer.current || self.current.is_just_created() {
            return changed;
        }
        for node in NodeId::all().filter(|n| *n != me && *n != peer_id) {
            if peer.bitmap[node.index()].is_zero()
                && !self.bitmap[node.index()].is_zero()
                && self.replace_bitmap_uuid(node, Uuid::ZERO)
            {
                changed.insert(node);
            }
        }
        changed
    }

    /// The end of a resync on the source: the target now holds this member's data (see
    /// [`GenerationSet::mark_in_sync_with`]).
    pub fn finish_resync_as_source(&mut self, target: NodeId) -> bool {
        self.mark_in_sync_with(target)
    }

    /// `new-current-uuid --clear-bitmap`: declares this member's data a new generation that
    /// every peer already holds, so no initial sync is needed. Run it on one member while its
    /// peers are connected and just created; they call
    /// [`GenerationSet::accept_skip_initial_sync`]. Every bitmap UUID becomes zero (old ones go
    /// into the history), and the I/O path clears every bitmap and flushes it before the
    /// superblock is written. Only safe when the disks are zeroed or their contents are
    /// irrelevant, as in DRBD.
    pub fn new_current_uuid_clear_bitmap(&mut self, me: NodeId, new: Uuid) -> Result<(), GiError> {
        if new.is_just_created() {
            return Err(GiError::ReservedUuid { uuid: new });
        }
        for peer in NodeId::all().filter(|p| *p != me) {
            self.replace_bitmap_uuid(peer, Uuid::ZERO);
        }
        let old = self.current;
        self.current = new.with_primary(old.is_primary());
        self.push_history(old);
        Ok(())
    }

    /// A just-created member takes the generation a peer announced with
    /// [`GenerationSet::new_current_uuid_clear_bitmap`] and is UpToDate without a resync.
    pub fn accept_skip_initial_sync(&mut self, peer_current: Uuid) -> Result<(), GiError> {
        if !self.current.is_just_created() {
            return Err(GiError::NotJustCreated {
                current: self.current,
            });
        }
        if peer_current.is_just_created() {
            return Err(GiError::ReservedUuid { uuid: peer_current });
        }
        let primary = self.current.is_primary();
        *self = GenerationSet::just_created();
        self.current = peer_current.with_primary(primary);
        Ok(())
    }
}

/// When the next write must start a new data generation (DRBD's `NEW_CUR_UUID` flag): after a
/// Primary lost a diskful peer, and after a promotion. The generation starts on the first
/// write, not at the event, so a member promoted that never writes causes no false split brain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewGenerationTrigger {
    pending: bool,
}

impl NewGenerationTrigger {
    /// A diskful peer became unreachable; only a Primary's writes need a new generation.
    pub fn peer_lost(&mut self, is_primary: bool) {
        if is_primary {
            self.pending = true;
        }
    }

    /// This member became Primary.
    pub fn promoted(&mut self) {
        self.pending = true;
    }

    /// Whether the next write starts with [`NewGenerationTrigger::before_write`] doing work.
    pub fn is_pending(self) -> bool {
        self.pending
    }

    /// Call before submitting a write. If a new generation is pending, starts it through
    /// [`GenerationSet::start_new_generation`] and returns whether the set changed: then the
    /// caller persists the set (superblock write with fsync) and announces the new UUID to its
    /// connected peers *before* the write is submitted.
    pub fn before_write(
        &mut self,
        set: &mut GenerationSet,
        me: NodeId,
        new: Uuid,
        absent: NodeMask,
    ) -> Result<bool, GiError> {
        if !self.pending {
            return Ok(false);
        }
        let changed = set.start_new_generation(me, new, absent)?;
        self.pending = false;
        Ok(changed)
    }
}

/// How a resync finds the blocks to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResyncKind {
    /// From the out-of-sync bitmaps of the two members toward each other, OR-ed (DRBD's
    /// `*_USE_BITMAP`).
    Bitmap,
    /// From the source's bitmap toward another node, `via`, whose generation the target holds
    /// (DRBD's `SYNC_SOURCE_COPY_BITMAP` / `SYNC_TARGET_CLEAR_BITMAP`): the source copies that
    /// bitmap into its slot for the target, and the target clears its own.
    OtherBitmap {
        /// The node whose bitmap the source uses.
        via: NodeId,
    },
    /// Every block (DRBD's `*_SET_BITMAP`): no bitmap is known to cover the differences.
    Full,
}

/// Which kind of split brain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitBrainKind {
    /// Both sides started a generation from the same parent (`bitmap-both`): each side's bitmap
    /// toward the other covers what it changed, so after an operator picks a survivor a
    /// bitmap resync suffices. DRBD's automatic policies (`after-sb-*`) would apply here.
    CommonParent,
    /// The generations share only an older ancestor in their histories (`history-both`): the
    /// bitmaps do not cover the differences; a survivor needs a full resync.
    Diverged,
}

/// What the handshake decided for this member toward one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Same generation: nothing to resync by generation (the bitmaps may still hold blocks; see
    /// [`decide`]).
    NoSync,
    /// This member sends the peer its data.
    SyncSource(ResyncKind),
    /// This member receives the peer's data; it is Inconsistent until the resync finishes.
    SyncTarget(ResyncKind),
    /// Both sides wrote a generation the other does not have: refuse to connect, report it,
    /// never merge. An operator resolves it (`--discard-my-data`).
    SplitBrain(SplitBrainKind),
    /// No generation in common: refuse to connect (this guards against connecting strangers).
    Unrelated,
}

impl Outcome {
    /// The outcome the peer reaches for the same pair of sets.
    pub fn mirrored(self) -> Outcome {
        match self {
            Outcome::SyncSource(kind) => Outcome::SyncTarget(kind),
            Outcome::SyncTarget(kind) => Outcome::SyncSource(kind),
            other => other,
        }
    }
}

/// The rule of the decision table that decided, named as in DRBD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Neither side ever held data.
    JustCreatedBoth,
    /// This side never held data.
    JustCreatedSelf,
    /// The peer never held data.
    JustCreatedPeer,
    /// Equal generations; exactly one side crashed as Primary.
    CrashedPrimary,
    /// Equal generations; exactly one side (or, tie broken by node-id, both) lost quorum as
    /// Primary.
    LostQuorum,
    /// Equal generations; both sides crashed as Primary (a common power loss).
    BothOff,
    /// Equal generations and nothing else to say. DRBD names this case after its flags
    /// (`reconnected`, `both-off`); this table has one name for it.
    EqualCurrent,
    /// My current UUID is the peer's bitmap UUID toward me.
    BitmapPeer,
    /// My current UUID is the peer's bitmap UUID toward another node.
    BitmapPeerOther,
    /// My bitmap UUID toward the peer is its current UUID.
    BitmapSelf,
    /// My bitmap UUID toward another node is the peer's current UUID.
    BitmapSelfOther,
    /// My current UUID is in the peer's history (and not the other way round).
    HistoryPeer,
    /// The peer's current UUID is in my history (and not the other way round).
    HistorySelf,
    /// Our bitmap UUIDs toward each other are equal and non-zero.
    BitmapBoth,
    /// Our histories (or bitmap UUIDs) share a UUID.
    HistoryBoth,
    /// Nothing in common.
    UnrelatedData,
    /// Equal generations, and one side holds blocks out of sync toward the other: writes of a
    /// Primary lost before it confirmed them ([`reconcile`]).
    Reconcile,
}

impl Rule {
    /// DRBD's name for the rule.
    pub fn name(self) -> &'static str {
        match self {
            Rule::JustCreatedBoth => "just-created-both",
            Rule::JustCreatedSelf => "just-created-self",
            Rule::JustCreatedPeer => "just-created-peer",
            Rule::CrashedPrimary => "crashed-primary",
            Rule::LostQuorum => "lost-quorum",
            Rule::BothOff => "both-off",
            Rule::EqualCurrent => "equal-current",
            Rule::BitmapPeer => "bitmap-peer",
            Rule::BitmapPeerOther => "bitmap-peer-other",
            Rule::BitmapSelf => "bitmap-self",
            Rule::BitmapSelfOther => "bitmap-self-other",
            Rule::HistoryPeer => "history-peer",
            Rule::HistorySelf => "history-self",
            Rule::BitmapBoth => "bitmap-both",
            Rule::HistoryBoth => "history-both",
            Rule::UnrelatedData => "unrelated-data",
            Rule::Reconcile => "reconcile",
        }
    }

    /// The rule the peer decides by for the same pair of sets.
    pub fn mirrored(self) -> Rule {
        match self {
            Rule::JustCreatedSelf => Rule::JustCreatedPeer,
            Rule::JustCreatedPeer => Rule::JustCreatedSelf,
            Rule::BitmapPeer => Rule::BitmapSelf,
            Rule::BitmapSelf => Rule::BitmapPeer,
            Rule::BitmapPeerOther => Rule::BitmapSelfOther,
            Rule::BitmapSelfOther => Rule::BitmapPeerOther,
            Rule::HistoryPeer => Rule::HistorySelf,
            Rule::HistorySelf => Rule::HistoryPeer,
            other => other,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The handshake's verdict for this member toward one peer, and the rule that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// What to do.
    pub outcome: Outcome,
    /// Why.
    pub rule: Rule,
}

impl Decision {
    const fn new(outcome: Outcome, rule: Rule) -> Self {
        Decision { outcome, rule }
    }

    /// The decision the peer reaches for the same pair of sets: the handshake can check that
    /// both sides agree.
    pub fn mirrored(self) -> Decision {
        Decision {
            outcome: self.outcome.mirrored(),
            rule: self.rule.mirrored(),
        }
    }

    /// Applies an operator's `--discard-my-data` to a split brain: if exactly one side
    /// discards, it becomes the resync target — bitmap-based for a common parent, full
    /// otherwise — and the rule stays the split brain's. Anything else is unchanged: unrelated
    /// data is never resolved this way (recreate the victim's metadata instead).
    pub fn resolve_split_brain(self, local_discards: bool, peer_discards: bool) -> Decision {
        let Outcome::SplitBrain(kind) = self.outcome else {
            return self;
        };
        let resync = match kind {
            SplitBrainKind::CommonParent => ResyncKind::Bitmap,
            SplitBrainKind::Diverged => ResyncKind::Full,
        };
        match (local_discards, peer_discards) {
            (true, false) => Decision::new(Outcome::SyncTarget(resync), self.rule),
            (false, true) => Decision::new(Outcome::SyncSource(resync), self.rule),
            _ => self,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            Outcome::NoSync => "no-sync".to_string(),
            Outcome::SyncSource(kind) => format!("sync-source ({})", kind_name(kind)),
            Outcome::SyncTarget(kind) => format!("sync-target ({})", kind_name(kind)),
            Outcome::SplitBrain(SplitBrainKind::CommonParent) => {
                "split-brain (common parent)".to_string()
            }
            Outcome::SplitBrain(SplitBrainKind::Diverged) => "split-brain (diverged)".to_string(),
            Outcome::Unrelated => "unrelated-data".to_string(),
        };
        write!(f, "{outcome} by rule={}", self.rule)
    }
}

fn kind_name(kind: ResyncKind) -> String {
    match kind {
        ResyncKind::Bitmap => "bitmap".to_string(),
        ResyncKind::OtherBitmap { via } => format!("bitmap of node {via}"),
        ResyncKind::Full => "full".to_string(),
    }
}

/// The handshake's decision table: what `local` (node `local_id`) does toward `peer` (node
/// `peer_id`), tried in DRBD's order:
///
/// 1. `just-created-*`: both without data → no sync; one without → it is a full-sync target.
/// 2. Equal current UUIDs: `crashed-primary` (the side that crashed as Primary is a bitmap
///    target: its activity-log extents were set out of sync when it restarted), `lost-quorum`
///    (the same for a Primary that lost quorum), `both-off` (both crashed: the lower node-id
///    is the source), otherwise `equal-current`, no sync.
/// 3. `bitmap-peer` / `bitmap-peer-other`: my current UUID is a bitmap UUID of the peer's → I
///    am a bitmap target.
/// 4. `bitmap-self` / `bitmap-self-other`: the peer's current UUID is a bitmap UUID of mine → I
///    am a bitmap source.
/// 5. `history-peer` / `history-self`: one current UUID is in the other's history → full
///    resync toward the newer side.
/// 6. `bitmap-both`: our bitmap UUIDs toward each other are equal → split brain, common parent.
/// 7. `history-both`: our histories (or bitmap UUIDs) share a UUID → split brain, diverged.
/// 8. `unrelated-data`.
///
/// The table is symmetric: for sets reached by the transitions of this module,
/// `decide(b, a) == decide(a, b).mirrored()`, so each side decides alone and both agree.
///
/// Differences from DRBD: `history-both` also looks at the bitmap UUIDs, which are ancestors
/// too (DRBD compares histories only and calls such a pair unrelated; both refuse, but a split
/// brain tells the operator that `--discard-my-data` can resolve it). No protocol-version fix-ups (`uuid_fixup_resync_*`, for peers older
/// than DRBD 9) and no `RECONNECT` flag; the crashed-primary rule applies with every
/// replication protocol (DRBD 9 applies it with A and B only and otherwise decides by the
/// reconnect flag), because the activity-log extents a crashed Primary marks are exactly what
/// the survivor must copy back. Equal generations do not prove equal blocks when a Primary was
/// lost with writes in flight: [`reconcile`] turns such an `equal-current` into a resync.
pub fn decide(
    local: &GenerationSet,
    local_id: NodeId,
    peer: &GenerationSet,
    peer_id: NodeId,
) -> Decision {
    debug_assert_ne!(
        local_id, peer_id,
        "a member does not hand-shake with itself"
    );
    let mine = local.current;
    let theirs = peer.current;

    match (mine.is_just_created(), theirs.is_just_created()) {
        (true, true) => return Decision::new(Outcome::NoSync, Rule::JustCreatedBoth),
        (true, false) => {
            return Decision::new(Outcome::SyncTarget(ResyncKind::Full), Rule::JustCreatedSelf);
        }
        (false, true) => {
            return Decision::new(Outcome::SyncSource(ResyncKind::Full), Rule::JustCreatedPeer);
        }
        (false, false) => {}
    }

    if mine == theirs {
        return decide_equal_current(local, local_id, peer, peer_id);
    }

    let both: NodeMask = [local_id, peer_id].into_iter().collect();

    if peer.bitmap_uuid(local_id) == mine {
        return Decision::new(Outcome::SyncTarget(ResyncKind::Bitmap), Rule::BitmapPeer);
    }
    if let Some(via) = peer.bitmap_slot_of(mine, both) {
        return Decision::new(
            Outcome::SyncTarget(ResyncKind::OtherBitmap { via }),
            Rule::BitmapPeerOther,
        );
    }
    if local.bitmap_uuid(peer_id) == theirs {
        return Decision::new(Outcome::SyncSource(ResyncKind::Bitmap), Rule::BitmapSelf);
    }
    if let Some(via) = local.bitmap_slot_of(theirs, both) {
        return Decision::new(
            Outcome::SyncSource(ResyncKind::OtherBitmap { via }),
            Rule::BitmapSelfOther,
        );
    }

    let mine_in_peer_history = peer.in_history(mine);
    let theirs_in_my_history = local.in_history(theirs);
    if mine_in_peer_history && !theirs_in_my_history {
        return Decision::new(Outcome::SyncTarget(ResyncKind::Full), Rule::HistoryPeer);
    }
    if theirs_in_my_history && !mine_in_peer_history {
        return Decision::new(Outcome::SyncSource(ResyncKind::Full), Rule::HistorySelf);
    }

    let my_bitmap = local.bitmap_uuid(peer_id);
    if !my_bitmap.is_zero() && my_bitmap == peer.bitmap_uuid(local_id) {
        return Decision::new(
            Outcome::SplitBrain(SplitBrainKind::CommonParent),
            Rule::BitmapBoth,
        );
    }

    let ancestors = local.history.iter().chain(local.bitmap.iter());
    if ancestors.clone().any(|uuid| peer.knows_ancestor(*uuid)) {
        return Decision::new(
            Outcome::SplitBrain(SplitBrainKind::Diverged),
            Rule::HistoryBoth,
        );
    }

    Decision::new(Outcome::Unrelated, Rule::UnrelatedData)
}

/// One side of a handshake as both sides see it, besides its generations: what [`reconcile`]
/// decides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeSide {
    /// It is Primary.
    pub primary: bool,
    /// It applies a Primary's writes (its own, or those of a Primary it is connected to).
    pub has_writer: bool,
    /// It holds blocks out of sync toward the other side.
    pub out_of_sync_toward_other: bool,
}

/// Equal generations do not prove equal blocks. A Primary lost with writes in flight may have
/// reached one disk and not another, both still on the same generation; each Secondary then
/// marks the writes the Primary never confirmed out of sync toward the other disks
/// ([`crate::peer_ack`]). So an `equal-current` handshake between two UpToDate disks where
/// either side holds bits toward the other becomes a bitmap resync (the target adds the
/// source's bits to its own): no such write was acknowledged to an application unless every
/// disk had it, so either copy is a valid outcome, and what matters is that both end with the
/// same. The source is the Primary if one side is; else the side that applies a Primary's
/// writes if only one does (the other may miss the newest of them); else the lower node-id.
/// Both sides see the same facts, so they reach mirrored decisions. Any other decision is
/// returned unchanged.
pub fn reconcile(
    decision: Decision,
    local: HandshakeSide,
    local_id: NodeId,
    peer: HandshakeSide,
    peer_id: NodeId,
) -> Decision {
    if decision.rule != Rule::EqualCurrent
        || !(local.out_of_sync_toward_other || peer.out_of_sync_toward_other)
    {
        return decision;
    }
    let local_is_source = if local.primary != peer.primary {
        local.primary
    } else if local.has_writer != peer.has_writer {
        local.has_writer
    } else {
        local_id < peer_id
    };
    let outcome = if local_is_source {
        Outcome::SyncSource(ResyncKind::Bitmap)
    } else {
        Outcome::SyncTarget(ResyncKind::Bitmap)
    };
    Decision::new(outcome, Rule::Reconcile)
}

fn decide_equal_current(
    local: &GenerationSet,
    local_id: NodeId,
    peer: &GenerationSet,
    peer_id: NodeId,
) -> Decision {
    let bitmap_toward = |local_is_source: bool| {
        if local_is_source {
            Outcome::SyncSource(ResyncKind::Bitmap)
        } else {
            Outcome::SyncTarget(ResyncKind::Bitmap)
        }
    };
    let my_crash = local.flags.contains(GiFlags::CRASHED_PRIMARY);
    let peer_crash = peer.flags.contains(GiFlags::CRASHED_PRIMARY);
    match (my_crash, peer_crash) {
        (true, false) => return Decision::new(bitmap_toward(false), Rule::CrashedPrimary),
        (false, true) => return Decision::new(bitmap_toward(true), Rule::CrashedPrimary),
        (true, true) => return Decision::new(bitmap_toward(local_id < peer_id), Rule::BothOff),
        (false, false) => {}
    }
    let my_lost = local.flags.contains(GiFlags::PRIMARY_LOST_QUORUM);
    let peer_lost = peer.flags.contains(GiFlags::PRIMARY_LOST_QUORUM);
    match (my_lost, peer_lost) {
        (true, false) => Decision::new(bitmap_toward(false), Rule::LostQuorum),
        (false, true) => Decision::new(bitmap_toward(true), Rule::LostQuorum),
        (true, true) => Decision::new(bitmap_toward(local_id < peer_id), Rule::LostQuorum),
        (false, false) => Decision::new(Outcome::NoSync, Rule::EqualCurrent),
    }
}

#[cfg(test)]
mod tests;
