//! The I/O path of one volume: what a frontend's read, write and flush do, and what a peer's
//! replicated write does here.
//!
//! A write from a frontend (this member is Primary, or becomes it: auto-promote):
//!
//! ```text
//!  conflicts.acquire ─▶ activity log (hot extent?) ─▶ ┬─ local disk write ──────────────┐
//!                                                     ├─ Write to every target peer ─────┼─▶ all done ─▶ complete
//!                                                     └─ mark out of sync for absent peers┘
//! ```
//!
//! Local and remote writes are issued at once and the write completes when all of them have
//! (protocol C). A peer that fails or drops while the write is in flight is not waited for: the
//! range is marked out of sync toward it (before the write completes), and the peer receives it
//! by resync when it is back. Overlapping writes are serialized ([`crate::conflict`]), on this
//! member and on every peer, so replicas land them in the same order.
//!
//! What the path may do is decided elsewhere — the resource actor publishes an [`IoView`] (role,
//! quorum, which peers to replicate to, where to read) whenever the cluster changes; the path
//! reads it once per request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrite_block::{IoError, PipedData, Volume, check_range};
use futures::future::BoxFuture;

use crate::backing::{Backing, WriteCompletion};
use crate::bitmap::BM_BLOCK_SIZE;
use crate::conflict::ConflictSet;
use crate::peer::{AcknowledgedWrite, PeerLink};

/// What the I/O path may do, as the resource actor last decided.
#[derive(Clone)]
pub struct IoView {
    /// Writes are allowed here without asking (this member is Primary with quorum).
    pub primary: bool,
    /// Why this member may not write (another member is Primary, no quorum, ...), when the
    /// failure is known without asking the peers.
    pub refuse_writes: Option<IoError>,
    /// Whether the local disk holds current data for reads.
    pub local_up_to_date: bool,
    /// Peers that receive every write: connected, diskful, and current or being synced.
    pub targets: Vec<Arc<PeerLink>>,
    /// Diskful peers that do not receive writes now: writes are marked out of sync for them.
    pub absent: Vec<u8>,
    /// An UpToDate peer to read from when the local disk cannot serve a read.
    pub read_from: Option<Arc<PeerLink>>,
    /// A diskful peer was just lost and the members left have not yet confirmed that they
    /// are still a quorum: a write asks ([`ResourceControl::confirm_quorum`]) before it goes
    /// on without that peer.
    pub confirm_first: bool,
    /// Diskful peers the Primary writes without (it announced them Outdated). This member
    /// records what they miss in its own bitmaps, for every write it receives flagged as
    /// written without a member ([`crate::wire::FLAG_WRITTEN_WITHOUT`]), so that they can be
    /// resynced from here when they are back, by bitmap — as DRBD 9's Secondaries track their
    /// absent peers. A diskless Primary has no bitmap of its own, so this is the only record;
    /// a diskful one keeps its own as well, and this one serves a member that comes back while
    /// that Primary is gone. A write that failed toward a member is reported by the Primary
    /// itself (an `OutOfSync` toward it, before the write completes).
    pub missed_by: Vec<u8>,
    /// The Primary whose writes `missed_by` miss has no disk, so no generation tells them
    /// apart until this member starts one ([`crate::backing::Backing::before_recorded_write`]).
    /// A diskful Primary starts it itself, and this member adopts it with `missed_by` as the
    /// peers it does not reach.
    pub missed_by_diskless_primary: bool,
}

impl IoView {
    /// The view of a volume nothing has been decided about yet: no writes, local reads only
    /// if there is a disk.
    pub fn initial() -> IoView {
        IoView {
            primary: false,
            refuse_writes: Some(IoError::ReadOnly(
                "the resource is not connected to its peers yet".to_string(),
            )),
            local_up_to_date: false,
            targets: Vec::new(),
            absent: Vec::new(),
            read_from: None,
            confirm_first: false,
            missed_by: Vec::new(),
            missed_by_diskless_primary: false,
        }
    }

    /// The view of a volume whose resource is down: every request fails with
    /// [`IoError::Shutdown`]. A frontend can outlive its resource (a block device still mounted
    /// when the resource was taken down by force); its I/O must not reach the disk unreplicated.
    pub fn down() -> IoView {
        IoView {
            primary: false,
            refuse_writes: Some(IoError::Shutdown),
            local_up_to_date: false,
            targets: Vec::new(),
            absent: Vec::new(),
            read_from: None,
            confirm_first: false,
            missed_by: Vec::new(),
            missed_by_diskless_primary: false,
        }
    }

    fn is_down(&self) -> bool {
        matches!(self.refuse_writes, Some(IoError::Shutdown))
    }
}

/// A replicated write [`VolumeEngine::start_peer_write`] gave back: its range, its data and
/// who gets its outcome.
pub type PeerWrite = (crate::conflict::RangeGuard, Bytes, WriteCompletion);

/// What the volume asks of its resource.
pub trait ResourceControl: Send + Sync + 'static {
    /// Becomes Primary, if the cluster allows it (auto-promote on the first write).
    fn promote(&self) -> BoxFuture<'static, Result<(), IoError>>;
    /// A frontend opened or closed the volume.
    fn usage_changed(&self);
    /// The volume started a new data generation: tell the connected peers, and resolve once
    /// that announcement is queued ahead of any later frame.
    fn announce_generation(&self) -> BoxFuture<'static, ()>;
    /// A write is to complete without a diskful peer that was a target until now (it failed
    /// toward it, or the peer was just lost): resolves once the members still reachable have
    /// answered a round of pings sent after the loss and make a quorum, or fails when they do
    /// not.
    fn confirm_quorum(&self) -> BoxFuture<'static, Result<(), IoError>>;
}

/// The node-ids of a view's lists as a mask (an id past the last is left out).
fn node_mask(ids: &[u8]) -> crate::gi::NodeMask {
    ids.iter()
        .filter_map(|id| crate::gi::NodeId::new(u32::from(*id)).ok())
        .collect()
}

/// One volume of a resource on this member.
pub struct VolumeEngine {
    pub number: u16,
    me: crate::gi::NodeId,
    usable: u64,
    backing: Option<Arc<Backing>>,
    conflicts: ConflictSet,
    view: RwLock<Arc<IoView>>,
    control: Arc<dyn ResourceControl>,
    sessions: AtomicUsize,
    /// Held (shared) by every frontend write from before it reads its view until it completed;
    /// a handshake takes it exclusively ([`VolumeEngine::gate`]) so that the generations and
    /// bitmap it sends are not changed by a write that still sees the peer as absent.
    gate: Arc<tokio::sync::RwLock<()>>,
    usage: Usage,
    /// Which resync replies an application write made old ([`crate::resync_watch`]).
    resync_watch: crate::resync_watch::ResyncWatch,
}

/// What auto-demotion needs to know beyond the sessions: when a frontend last wrote, and
/// whether a frontend that reports its users only when polled (the block device: a mount is
/// seen at the next poll, not when it happens) found the volume unused since.
#[derive(Default)]
struct Usage {
    /// [`ticks`] at the start and at the end of the latest frontend write.
    last_write: AtomicU64,
    /// [`ticks`] at the start of the latest poll that found the polled frontend unused.
    checked_unused: AtomicU64,
    polled: AtomicBool,
}

/// Nanoseconds since the first call in this process: an [`Instant`] that fits in an atomic.
fn ticks(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_nanos() as u64
}

impl VolumeEngine {
    pub fn new(
        number: u16,
        me: crate::gi::NodeId,
        usable: u64,
        backing: Option<Arc<Backing>>,
        control: Arc<dyn ResourceControl>,
    ) -> VolumeEngine {
        VolumeEngine {
            number,
            me,
            usable,
            backing,
            conflicts: ConflictSet::new(),
            view: RwLock::new(Arc::new(IoView::initial())),
            control,
            sessions: AtomicUsize::new(0),
            usage: Usage::default(),
            resync_watch: Default::default(),
            gate: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    /// Waits until no frontend write is in flight and holds new ones back until the guard is
    /// dropped: a handshake's snapshot (see `resource`'s `Gated` event).
    pub fn gate(&self) -> impl Future<Output = tokio::sync::OwnedRwLockWriteGuard<()>> + use<> {
        self.gate.clone().write_owned()
    }

    pub fn backing(&self) -> Option<&Arc<Backing>> {
        self.backing.as_ref()
    }

    pub fn resync_watch(&self) -> &crate::resync_watch::ResyncWatch {
        &self.resync_watch
    }

    /// A write noted by the resync watch (another member's, or this Primary's own) completed:
    /// on success, the blocks it covers whole are current here and leave this member's bitmap
    /// toward the resync source, and what it wrote in part of a block still to resync is kept
    /// ([`crate::resync_watch`]).
    pub fn watched_write_done(&self, noted: crate::resync_watch::NotedWrite, succeeded: bool) {
        match &self.backing {
            Some(backing) => self
                .resync_watch
                .write_done(noted, succeeded, backing.as_ref()),
            // No disk, no resync: the write only leaves the watch.
            None => self.resync_watch.write_done(noted, false, &NoDisk),
        }
    }

    /// Lays over `data`, a resync reply for the range at `offset` whose place in line is taken,
    /// the bytes this member holds where writes of other members put them in part of a block
    /// during the resync ([`crate::resync_watch`]). Returns the reply to apply and the ranges
    /// laid over, to keep again should applying it fail.
    pub async fn lay_over_written_in_part(
        &self,
        offset: u64,
        data: Bytes,
    ) -> Result<(Bytes, Vec<(u64, u64)>), IoError> {
        let kept = self
            .resync_watch
            .take_written_in_part(offset, data.len() as u64);
        if kept.is_empty() {
            return Ok((data, kept));
        }
        let Some(backing) = &self.backing else {
            return Ok((data, Vec::new()));
        };
        let mut merged = bytes::BytesMut::from(&data[..]);
        let end = offset + data.len() as u64;
        for &(start, stop) in &kept {
            // Read the whole blocks around the range: the device reads aligned blocks only.
            let from = start / BM_BLOCK_SIZE * BM_BLOCK_SIZE;
            let to = stop
                .div_ceil(BM_BLOCK_SIZE)
                .saturating_mul(BM_BLOCK_SIZE)
                .min(end);
            let here = match backing.read(from, (to - from) as u32).await {
                Ok(here) => here,
                Err(e) => {
                    self.resync_watch.keep_again(&kept);
                    return Err(e);
                }
            };
            let (at, within) = ((start - offset) as usize, (start - from) as usize);
            let len = (stop - start) as usize;
            merged[at..at + len].copy_from_slice(&here[within..within + len]);
        }
        Ok((merged.freeze(), kept))
    }

    pub fn conflicts(&self) -> &ConflictSet {
        &self.conflicts
    }

    /// The view the I/O path follows now.
    pub fn view(&self) -> Arc<IoView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes a new view (the resource actor).
    pub fn set_view(&self, view: IoView) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
    }

    /// How many frontend sessions have the volume open.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Whether a frontend that reports its users only when polled exports this volume (the
    /// daemon sets it while the volume has a block device). Demotion then also waits for a poll
    /// that started after the last write and found the volume unused.
    pub fn set_polled(&self, polled: bool) {
        self.usage.polled.store(polled, Ordering::Release);
    }

    /// A poll that started at `started` found the polled frontend unused.
    pub fn checked_unused(&self, started: Instant) {
        self.usage
            .checked_unused
            .fetch_max(ticks(started), Ordering::AcqRel);
    }

    /// Whether this volume lets its resource become Secondary at `now`: no session, no frontend
    /// write for `grace`, and, with a polled frontend, a poll since the last write that found
    /// it unused. A mount writes (its superblock, its journal) before the next poll can see it:
    /// without the last rule, a resource idle since its previous user left would demote under
    /// a fresh mount in that moment.
    pub fn may_demote(&self, now: Instant, grace: Duration) -> bool {
        let last_write = self.usage.last_write.load(Ordering::Acquire);
        // 0: never written, nothing to protect.
        let quiet =
            last_write == 0 || ticks(now).saturating_sub(last_write) >= grace.as_nanos() as u64;
        let checked = last_write == 0
            || !self.usage.polled.load(Ordering::Acquire)
            || self.usage.checked_unused.load(Ordering::Acquire) > last_write;
        self.sessions() == 0 && quiet && checked
    }

    fn note_write(&self) {
        self.usage
            .last_write
            .fetch_max(ticks(Instant::now()).max(1), Ordering::AcqRel);
    }

    /// The view to write with: this member's, after promoting it if it is not Primary yet, and
    /// after the members left confirmed their quorum if a peer was just lost.
    async fn writable_view(&self) -> Result<Arc<IoView>, IoError> {
        let mut view = self.view();
        if !view.primary {
            // Another Primary may be about to demote: the promotion waits for it a while
            // (`AUTO_PROMOTE_TIMEOUT`). Any other refusal (no quorum) stands.
            if let Some(refusal) = &view.refuse_writes
                && !matches!(refusal, IoError::ReadOnly(_))
            {
                return Err(refusal.clone());
            }
            self.control.promote().await?;
            view = self.view();
        }
        if view.primary && view.confirm_first {
            self.control.confirm_quorum().await?;
            view = self.view();
        }
        match (&view.primary, &view.refuse_writes) {
            (true, _) => Ok(view),
            (false, Some(refusal)) => Err(refusal.clone()),
            (false, None) => Err(IoError::ReadOnly("this member is not Primary".to_string())),
        }
    }

    /// A write from a frontend, replicated to every target peer (protocol C).
    async fn replicated_write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), IoError> {
        let len = data.len() as u64;
        check_range(self.usable, offset, len)?;
        self.note_write();
        let result = self.replicated_write_inner(offset, data, fua, len).await;
        self.note_write();
        result
    }

    async fn replicated_write_inner(
        &self,
        offset: u64,
        data: Bytes,
        fua: bool,
        len: u64,
    ) -> Result<(), IoError> {
        // Before the view is read: a handshake that holds the gate sees no write that read
        // the view from before it.
        let _gate = self.gate.read().await;
        let view = self.writable_view().await?;
        let _range = self.conflicts.acquire(offset, len).await;
        if let Some(backing) = &self.backing {
            let absent = node_mask(&view.absent);
            if let Some(started) = backing.before_write(self.me, absent).await? {
                self.control.announce_generation().await;
                started.announced();
            }
            // No peer gets a write of a generation it was not told of first (a write racing
            // the one that started it would otherwise overtake the announcement).
            backing.wait_announced().await;
            backing.begin_write(offset, len).await?;
        }
        // On a resync target (a Primary whose disk is not UpToDate yet), its own write makes a
        // resync reply it overlaps old, as another member's does (`resync_watch`): the request
        // went to the source before this write did.
        let noted = WatchedWrite {
            volume: self,
            noted: Some(self.resync_watch.write_arrived(self.me.get(), offset, len)),
        };
        // Absent peers miss this write: the bits are set before it completes.
        if let Some(backing) = &self.backing {
            for peer in &view.absent {
                backing.mark_out_of_sync(*peer, offset, len);
            }
        }
        let mut settle = Settle {
            sent: Vec::with_capacity(view.targets.len()),
            answered: false,
        };
        let remote: Vec<_> = view
            .targets
            .iter()
            .map(|peer| {
                let (seq, reply) = peer.send_write(
                    self.number,
                    offset,
                    data.clone(),
                    fua,
                    !view.absent.is_empty(),
                );
                settle.sent.push((peer.clone(), seq));
                (peer.clone(), reply)
            })
            .collect();
        let local = async {
            match &self.backing {
                Some(backing) => backing.write(offset, data, fua).await,
                None => Ok(()),
            }
        };
        let (local, remote) = futures::join!(
            local,
            futures::future::join_all(
                remote
                    .into_iter()
                    .map(|(peer, reply)| async move { (peer, reply.await) })
            )
        );
        settle.answered = true;
        if let Some(backing) = &self.backing {
            backing.end_write(offset, len);
        }
        let mut replicated = 0usize;
        let mut missed = crate::gi::NodeMask::EMPTY;
        let mut took = Vec::new();
        let mut failed_toward = Vec::new();
        for (peer, outcome) in remote {
            match outcome {
                Ok(()) => {
                    replicated += 1;
                    took.push(peer.clone());
                    if !fua {
                        peer.note_acknowledged(AcknowledgedWrite {
                            volume: self.number,
                            offset,
                            length: len as u32,
                        });
                    }
                }
                Err(error) => {
                    // The peer did not get it: it will by resync.
                    tracing::debug!(peer = peer.node_id(), %error, "write not replicated to peer");
                    if let Some(backing) = &self.backing {
                        backing.mark_out_of_sync(peer.node_id(), offset, len);
                    }
                    if let Ok(node) = crate::gi::NodeId::new(u32::from(peer.node_id())) {
                        missed.insert(node);
                        failed_toward.push(peer.node_id());
                    }
                }
            }
        }
        // Its bits toward the source clear only if the source has it too.
        noted.done(local.is_ok() && missed.is_empty());
        if self.backing.is_none() && replicated == 0 {
            // A diskless member's write lives only on its peers.
            return Err(IoError::Io(
                "no diskful peer took the write (all disconnected)".to_string(),
            ));
        }
        if !missed.is_empty() {
            // The disks that took the write record that the peers it missed lack it: a
            // diskless member keeps no bitmap, and a diskful one may be gone when those peers
            // come back to the others, which then resync them by bitmap — without it, were it
            // not recorded there. Sent before the write completes, and before the new
            // generation below is announced, on the links the write went out on.
            for toward in &failed_toward {
                let message = crate::wire::OutOfSync {
                    range: crate::wire::Range {
                        volume: self.number,
                        offset,
                        length: len as u32,
                    },
                    toward: Some(*toward),
                };
                for link in &took {
                    link.send(crate::peer::Frame::new(
                        crate::wire::Kind::OutOfSync,
                        0,
                        0,
                        Bytes::copy_from_slice(&message.encode()),
                        None,
                    ));
                }
            }
        }
        // Every target answered and what failed is recorded on the disks that took it (also
        // when the local write failed: the write settles only after that).
        drop(settle);
        local?;
        if !missed.is_empty() {
            // A peer dropped while the write was in flight. The write may complete only if
            // this member still has quorum without it: a Primary cut off from everyone sees
            // its first peer's connection end before the others', and acknowledging its
            // in-flight writes then would acknowledge writes the majority never got (DRBD's
            // on-no-quorum io-error fails them too).
            self.control.confirm_quorum().await?;
            // And the generation must say the peer is behind before the write is reported
            // done: the write was issued while the peer was still a target, so no new
            // generation was started for it, and a peer on our current generation would
            // come back as in sync and never get the blocks its bitmap holds.
            if let Some(backing) = &self.backing
                && let Some(started) = backing.before_write(self.me, missed).await?
            {
                self.control.announce_generation().await;
                started.announced();
            }
        }
        Ok(())
    }

    /// A write replicated from the Primary, applied here in arrival order: the caller acquired
    /// the range in the order the frames arrived. `written_without`: the Primary writes it
    /// without a diskful member ([`crate::wire::FLAG_WRITTEN_WITHOUT`]).
    ///
    /// It goes through this member's activity log, as DRBD 9 puts a peer's writes in the
    /// Secondary's: until a `PeerAck` confirms it reached every disk, a write here may be one
    /// another disk lacks, and should every member crash at once (a power loss), no memory of
    /// it would be left but the log's hot extents, set out of sync at the next attach.
    pub async fn apply_peer_write(
        &self,
        range: crate::conflict::RangeGuard,
        offset: u64,
        data: Bytes,
        fua: bool,
        written_without: bool,
    ) -> Result<(), IoError> {
        let len = data.len() as u64;
        check_range(self.usable, offset, len)?;
        let Some(backing) = &self.backing else {
            return Err(IoError::Invalid(
                "a diskless member was sent a write".to_string(),
            ));
        };
        backing.begin_write(offset, len).await?;
        let missed = written_without.then(|| self.view());
        let result = self
            .apply_write(backing, range, offset, data, fua, missed.as_deref())
            .await;
        backing.end_write(offset, len);
        result
    }

    /// Resync data received from a source, applied in arrival order like a peer's write. It
    /// does not enter the activity log: its bits stay set on disk until the bitmaps are
    /// written after it, so a crash before that resyncs it again. Except while this member
    /// records what the Primary's absent disks miss: the block is recorded as missed by them
    /// (conservatively, as a peer write flagged so would be), and those bits live in memory,
    /// so the block goes through the log like a peer's write, whose hot extents a crash sets
    /// out of sync toward every peer.
    pub async fn apply_resync_write(
        &self,
        range: crate::conflict::RangeGuard,
        offset: u64,
        data: Bytes,
    ) -> Result<(), IoError> {
        let len = data.len() as u64;
        check_range(self.usable, offset, len)?;
        let Some(backing) = &self.backing else {
            return Err(IoError::Invalid(
                "a diskless member was sent resync data".to_string(),
            ));
        };
        let view = self.view();
        if view.missed_by.is_empty() {
            return self
                .apply_write(backing, range, offset, data, false, None)
                .await;
        }
        backing.begin_write(offset, len).await?;
        let result = self
            .apply_write(backing, range, offset, data, false, Some(&view))
            .await;
        backing.end_write(offset, len);
        result
    }

    /// Writes data from a peer to the local disk, holding `range`. With `missed` (the view
    /// when the write entered the activity log), the range is first recorded as missed by the
    /// view's `missed_by`.
    async fn apply_write(
        &self,
        backing: &Backing,
        range: crate::conflict::RangeGuard,
        offset: u64,
        data: Bytes,
        fua: bool,
        missed: Option<&IoView>,
    ) -> Result<(), IoError> {
        let _range = range;
        let len = data.len() as u64;
        check_range(self.usable, offset, len)?;
        if let Some(view) = missed.filter(|view| !view.missed_by.is_empty()) {
            self.record_missed(backing, view, offset, len).await?;
        }
        backing.write(offset, data, fua).await
    }

    /// A write from the Primary that the view's `missed_by` do not get: from a diskless
    /// Primary, first a generation they do not hold (derived from the current one, so that
    /// every disk recording for the same Primary starts the same one); then the range out of
    /// sync toward each of them, before the write.
    async fn record_missed(
        &self,
        backing: &Backing,
        view: &IoView,
        offset: u64,
        len: u64,
    ) -> Result<(), IoError> {
        let absent = node_mask(&view.missed_by);
        if backing
            .before_recorded_write(self.me, absent, view.missed_by_diskless_primary)
            .await?
        {
            self.control.announce_generation().await;
        }
        for peer in &view.missed_by {
            backing.mark_out_of_sync(*peer, offset, len);
        }
        Ok(())
    }

    /// [`VolumeEngine::apply_peer_write`] without a task, when the range is free now and the
    /// backing store has an io_uring: `then` gets the outcome from the I/O completion, after
    /// the range is released. Gives the arguments back when it cannot.
    pub fn start_peer_write(
        &self,
        range: crate::conflict::RangeGuard,
        offset: u64,
        data: Bytes,
        fua: bool,
        written_without: bool,
        then: WriteCompletion,
    ) -> Result<(), PeerWrite> {
        let Some(backing) = self.backing.as_ref().filter(|b| b.has_ring()) else {
            return Err((range, data, then));
        };
        let view = self.view();
        let missed_by = if written_without {
            &view.missed_by[..]
        } else {
            &[]
        };
        if !missed_by.is_empty() {
            // From a diskless Primary, recording what its absent peers miss may first start a
            // generation (a superblock write): not here.
            let absent = node_mask(missed_by);
            if !backing.records_already(self.me, absent, view.missed_by_diskless_primary) {
                return Err((range, data, then));
            }
        }
        if let Err(e) = check_range(self.usable, offset, data.len() as u64) {
            drop(range);
            then(Err(e));
            return Ok(());
        }
        let len = data.len() as u64;
        if !backing.try_begin_write(offset, len) {
            // A cold extent first needs a transaction in the log: not here.
            return Err((range, data, then));
        }
        for peer in missed_by {
            backing.mark_out_of_sync(*peer, offset, len);
        }
        let logged = backing.clone();
        backing.start_write(
            offset,
            data,
            fua,
            Box::new(move |result| {
                logged.end_write(offset, len);
                drop(range);
                then(result);
            }),
        );
        Ok(())
    }

    /// A read from the local disk, for a peer (a diskless member reads through this one).
    pub async fn local_read(&self, offset: u64, len: u32) -> Result<Bytes, IoError> {
        check_range(self.usable, offset, u64::from(len))?;
        match &self.backing {
            Some(backing) => backing.read(offset, len).await,
            None => Err(IoError::Invalid("this member has no disk".to_string())),
        }
    }

    /// Syncs the local disk (a peer's Flush).
    pub async fn local_sync(&self) -> Result<(), IoError> {
        match &self.backing {
            Some(backing) => backing.sync().await,
            None => Ok(()),
        }
    }
}

impl Volume for VolumeEngine {
    fn size(&self) -> u64 {
        self.usable
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, IoError> {
        check_range(self.usable, offset, u64::from(len))?;
        let view = self.view();
        if view.is_down() {
            return Err(IoError::Shutdown);
        }
        if view.local_up_to_date
            && let Some(backing) = &self.backing
        {
            return backing.read(offset, len).await;
        }
        match &view.read_from {
            Some(peer) => peer.send_read(self.number, offset, len).await,
            None => Err(IoError::Io(
                "no UpToDate data is reachable (no local UpToDate disk, no UpToDate peer connected)"
                    .to_string(),
            )),
        }
    }

    async fn read_piped(&self, offset: u64, len: u32) -> Result<Option<PipedData>, IoError> {
        check_range(self.usable, offset, u64::from(len))?;
        let view = self.view();
        if view.is_down() {
            return Err(IoError::Shutdown);
        }
        match &self.backing {
            Some(backing) if view.local_up_to_date => backing.read_piped(offset, len).await,
            // Reads from a peer arrive in memory.
            _ => Ok(None),
        }
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), IoError> {
        self.replicated_write(offset, data, fua).await
    }

    async fn flush(&self) -> Result<(), IoError> {
        let view = self.view();
        if view.is_down() {
            return Err(IoError::Shutdown);
        }
        let remote = view.targets.iter().map(|peer| peer.send_flush());
        let local = self.local_sync();
        let (local, remote) = futures::join!(local, futures::future::join_all(remote));
        local?;
        for (peer, outcome) in view.targets.iter().zip(remote) {
            if let Err(error) = outcome {
                // A peer that dropped is behind by its bitmap; its writes were marked.
                tracing::debug!(peer = peer.node_id(), %error, "flush not confirmed by peer");
            }
        }
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.write_zeroes(offset, len, false).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), IoError> {
        check_range(self.usable, offset, len)?;
        // Zeroes are written as data, in pieces no larger than a request: every replica ends
        // with the same bytes, whatever its disk does with discards.
        const PIECE: u64 = 1 << 20;
        let zeroes = Bytes::from_owner(ferrite_block::AlignedBuf::zeroed(PIECE as usize));
        let mut at = offset;
        while at < offset + len {
            let piece = PIECE.min(offset + len - at);
            self.replicated_write(at, zeroes.slice(..piece as usize), fua)
                .await?;
            at += piece;
        }
        Ok(())
    }

    fn opened(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        self.control.usage_changed();
    }

    fn closed(&self) {
        let _ = self
            .sessions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.control.usage_changed();
    }
}

/// This member's own write, noted by the resync watch: it leaves the watch when done, or as
/// failed if its future is dropped first, so no request stays touched by it for good.
struct WatchedWrite<'a> {
    volume: &'a VolumeEngine,
    noted: Option<crate::resync_watch::NotedWrite>,
}

impl WatchedWrite<'_> {
    fn done(mut self, succeeded: bool) {
        if let Some(noted) = self.noted.take() {
            self.volume.watched_write_done(noted, succeeded);
        }
    }
}

impl Drop for WatchedWrite<'_> {
    fn drop(&mut self) {
        if let Some(noted) = self.noted.take() {
            self.volume.watched_write_done(noted, false);
        }
    }
}

/// A replicated write's sequence number on each link it went out on: the write settles there
/// when this is dropped ([`PeerLink::write_settled`]), after every target answered and a
/// failure was reported to the disks that took the write. A write whose future is dropped
/// before every target answered (its client went away) settles once they all did, from a task
/// of its own: a `PeerAck` must not cover a write still on its way to a disk.
struct Settle {
    sent: Vec<(Arc<PeerLink>, u64)>,
    answered: bool,
}

/// How often the task of a dropped write looks whether its targets answered.
const DROPPED_WRITE_POLL: Duration = Duration::from_millis(10);

impl Drop for Settle {
    fn drop(&mut self) {
        let sent = std::mem::take(&mut self.sent);
        let settle_all = |sent: Vec<(Arc<PeerLink>, u64)>| {
            for (link, seq) in sent {
                link.write_settled(seq);
            }
        };
        if self.answered || sent.is_empty() {
            settle_all(sent);
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                while sent.iter().any(|(link, seq)| link.awaits_answer(*seq)) {
                    tokio::time::sleep(DROPPED_WRITE_POLL).await;
                }
                settle_all(sent);
            });
        }
    }
}

/// The bitmap of a member without a disk: nothing to clear, nothing to resync.
struct NoDisk;

impl crate::resync_watch::TowardSource for NoDisk {
    fn clear_whole_blocks(&self, _source: u8, _offset: u64, _len: u64) {}

    fn still_to_resync(&self, _source: u8, _block_offset: u64) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoResource;

    impl ResourceControl for NoResource {
        fn promote(&self) -> BoxFuture<'static, Result<(), IoError>> {
            Box::pin(async { Ok(()) })
        }
        fn usage_changed(&self) {}
        fn announce_generation(&self) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
        fn confirm_quorum(&self) -> BoxFuture<'static, Result<(), IoError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn demotion_waits_for_quiet_and_for_a_poll_after_the_last_write() {
        const GRACE: Duration = Duration::from_millis(500);
        let me = crate::gi::NodeId::new(0).unwrap();
        let volume = VolumeEngine::new(0, me, 1 << 20, None, Arc::new(NoResource));
        assert!(volume.may_demote(Instant::now(), GRACE), "never written");

        let before_write = Instant::now();
        volume.note_write();
        assert!(
            !volume.may_demote(Instant::now(), GRACE),
            "written just now"
        );
        assert!(volume.may_demote(Instant::now() + GRACE, GRACE), "quiet");

        // With a block device, a mount that wrote is seen only at the next poll.
        volume.set_polled(true);
        assert!(!volume.may_demote(Instant::now() + GRACE, GRACE));
        volume.checked_unused(before_write);
        assert!(
            !volume.may_demote(Instant::now() + GRACE, GRACE),
            "a poll from before the write says nothing about it"
        );
        volume.checked_unused(Instant::now());
        assert!(volume.may_demote(Instant::now() + GRACE, GRACE));

        volume.opened();
        assert!(
            !volume.may_demote(Instant::now() + GRACE, GRACE),
            "a session"
        );
        volume.closed();
        assert!(volume.may_demote(Instant::now() + GRACE, GRACE));
    }
}
