//! A volume's backing store: the data area and the metadata area at its end (superblock,
//! activity log, bitmaps; see [`crate::metadata`]).
//!
//! The data area is read and written through the page cache, as a disk with a volatile write
//! cache is: a completed write is on the device, durable only with the next flush; a FUA write
//! (`RWF_DSYNC`) and a flush (`fdatasync`) reach stable storage before they complete, as the
//! block layer promises its users. Reads of recent or hot data are served from memory, and
//! writeback merges what applications write in small pieces. What that costs a replica is
//! covered where it matters: a Primary flushes each peer periodically and marks what a peer
//! acknowledged but never flushed out of sync toward it when the connection ends
//! ([`crate::peer::PEER_FLUSH_INTERVAL`]); a metadata write's `fdatasync` also puts every data
//! write before it on stable storage (the same file or device), so a bitmap on disk never
//! claims a block in sync that is not there; and after a Primary's crash its hot extents are
//! resynced. See `docs/mirror.md`, "The backing device".
//!
//! This module owns the open files and the in-memory metadata of one volume: its superblock
//! (generation identifiers, peer slots), one out-of-sync bitmap per diskful peer, and the
//! activity log, and it keeps the ordering rules of [`crate::activity_log`]: a write that makes
//! an extent hot waits for that transaction to be durable, the bitmap pages of evicted extents
//! are on disk before the transaction that evicts them, and after a stop that did not go down
//! (a crash, a kill, a power loss; Primary or not) the hot extents — every block, when the log
//! cannot be recovered — are set out of sync toward every peer before the log is formatted
//! anew.
//!
//! Data I/O goes through one io_uring per backing device ([`crate::uring`]): no thread hop per
//! request. Where io_uring is not available (an old kernel, a sandbox that forbids it) data I/O
//! runs on tokio's blocking pool with positioned reads and writes. The metadata area is written
//! through a second descriptor followed by `fdatasync`: it is disjoint from the data area, and
//! its writes are few.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use ferrite_block::{AlignedBuf, IoError, PipedData};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::activity_log::{self, AL_EXTENT_SIZE, ActivityLog, Admission, AlTransaction};
use crate::bitmap::OutOfSyncBitmap;
use crate::gi::{GenerationSet, MAX_NODES, NewGenerationTrigger, NodeId, NodeMask, Uuid};
use crate::metadata::{self, MetadataError, MetadataLayout, PeerSlot, Superblock};
use crate::uring::Ring;

/// How many peers a volume keeps a bitmap for: LINSTOR's default peer slots.
pub const DEFAULT_PEER_SLOTS: u8 = 7;

/// What a write started without a task runs when it completed: its outcome.
pub type WriteCompletion = Box<dyn FnOnce(Result<(), IoError>) + Send>;

/// The granularity of offsets and lengths on the devices backing volumes: their sector.
pub const DIRECT_IO_ALIGNMENT: u64 = 512;

/// Why a backing store could not be attached or used.
#[derive(Debug, thiserror::Error)]
pub enum BackingError {
    #[error("cannot open backing device {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "backing device {path} has {found} bytes, but {needed} are needed ({usable} usable plus metadata)"
    )]
    TooSmall {
        path: PathBuf,
        found: u64,
        needed: u64,
        usable: u64,
    },
    #[error("metadata of {path}: {source}")]
    Metadata {
        path: PathBuf,
        source: MetadataError,
    },
    #[error("node-id {0} is out of range")]
    NodeId(u8),
}

/// What attaching found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachInfo {
    /// The metadata was created now: the volume never held data.
    pub created: bool,
    /// It was Primary when it stopped without demoting: its hot extents were set out of sync.
    pub crashed_primary: bool,
}

struct MdState {
    superblock: Superblock,
    /// Whether the next write starts a new data generation.
    trigger: NewGenerationTrigger,
    /// By node-id: the bitmap of each diskful peer.
    bitmaps: Vec<Option<OutOfSyncBitmap>>,
    al: ActivityLog,
    /// Activity-log transactions made and not yet durable, by sequence number. They are
    /// queued in the same critical section that makes them, and written strictly in order
    /// ([`Backing::write_queued_transactions`]): a write waiting for transaction N goes only
    /// once N is in the ring, whichever task reaches the ring first.
    unwritten: BTreeMap<u64, AlTransaction>,
}

/// A data generation [`Backing::before_write`] started: to be announced to the connected
/// peers before any write of it is sent to one. Writes wait until it is marked announced
/// ([`NewGeneration::announced`]); dropping it marks it too, so that a failed announcement
/// (the resource going down) never holds writes back for good.
#[must_use = "the peers are to be told of the new generation, then `announced` called"]
pub struct NewGeneration {
    epoch: u64,
    announced: Arc<tokio::sync::watch::Sender<u64>>,
}

impl NewGeneration {
    /// The peers were sent the state that names the new generation.
    pub fn announced(self) {}
}

impl Drop for NewGeneration {
    fn drop(&mut self) {
        let epoch = self.epoch;
        self.announced
            .send_modify(|announced| *announced = (*announced).max(epoch));
    }
}

/// An attached backing store.
pub struct Backing {
    path: PathBuf,
    data: Arc<File>,
    /// The data file's io_uring, set up on the first I/O (inside the runtime); `None` where
    /// io_uring is not available.
    ring: OnceLock<Option<Ring>>,
    md: Arc<File>,
    layout: MetadataLayout,
    state: Mutex<MdState>,
    /// Held while an activity-log transaction is written: one at a time, in order.
    al_writer: tokio::sync::Mutex<()>,
    /// Woken when a transaction became durable or a write left the log.
    al_changed: Notify,
    /// Held while a new data generation is made durable.
    generation_lock: tokio::sync::Mutex<()>,
    /// How many generations [`Backing::before_write`] started here, and up to which of them
    /// the peers were told ([`NewGeneration`]). A write goes to the peers only once every
    /// generation started before it was announced ([`Backing::wait_announced`]).
    generations_started: AtomicU64,
    generations_announced: Arc<tokio::sync::watch::Sender<u64>>,
    /// [`Backing::release`] ran: the device is no longer open here.
    released: AtomicBool,
    /// Told when a transaction made an extent hot ([`Backing::signal_heat_to`]): the resource
    /// cools its logs only while they hold extents, so an idle member sleeps.
    heat: OnceLock<Arc<Notify>>,
}

fn open(path: &Path) -> Result<File, BackingError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true);
    options.open(path).map_err(|source| BackingError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// The size of a file or block device.
fn device_size(file: &File) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut handle = file;
    handle.seek(SeekFrom::End(0))
}

fn io_error(what: &str, error: std::io::Error) -> IoError {
    if error.raw_os_error() == Some(libc::ENOSPC) {
        IoError::NoSpace(format!("{what}: {error}"))
    } else {
        IoError::Io(format!("{what}: {error}"))
    }
}

impl Backing {
    /// Opens the backing device of a volume of `usable` bytes, creating its metadata if it has
    /// none, recovering from a Primary's crash if it was one. `diskful_peers` get bitmap slots.
    pub fn attach(
        path: &Path,
        usable: u64,
        node_id: u8,
        diskful_peers: &[u8],
        al_slots: u16,
    ) -> Result<(Backing, AttachInfo), BackingError> {
        let md_error = |source| BackingError::Metadata {
            path: path.to_path_buf(),
            source,
        };
        let me = NodeId::new(u32::from(node_id)).map_err(|_| BackingError::NodeId(node_id))?;
        let data = open(path)?;
        let md = open(path)?;
        let layout = MetadataLayout::new(usable, DEFAULT_PEER_SLOTS, al_slots).map_err(md_error)?;
        let found = device_size(&md).map_err(|source| BackingError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if found < layout.backing_bytes() {
            return Err(BackingError::TooSmall {
                path: path.to_path_buf(),
                found,
                needed: layout.backing_bytes(),
                usable,
            });
        }
        // A new activity log continues the sequence of the transactions that formatted it: one
        // starting again at 0 would write its first transactions below the formatting ones,
        // and recovery, which reads the newest run, would not see them.
        let (mut superblock, created_al) = match metadata::read_superblock(&md, usable) {
            Ok(superblock) => (superblock, None),
            Err(MetadataError::NotFormatted { .. }) => {
                let superblock =
                    Superblock::new(usable, me, DEFAULT_PEER_SLOTS, al_slots).map_err(md_error)?;
                let al = metadata::create(&md, &superblock).map_err(md_error)?;
                info!(path = %path.display(), usable, "created MIRROR metadata");
                (superblock, Some(al))
            }
            Err(e) => return Err(md_error(e)),
        };
        let created = created_al.is_some();
        let layout = superblock.layout();
        let crashed_primary = superblock.note_attach();
        // Every diskful peer gets a bitmap slot, kept for as long as the metadata lives.
        let mut assigned = false;
        for peer in diskful_peers {
            assigned |= assign_bitmap_slot(&mut superblock, *peer);
        }
        let mut bitmaps: Vec<Option<OutOfSyncBitmap>> = (0..MAX_NODES).map(|_| None).collect();
        for (node, slot) in superblock.peers.iter().enumerate() {
            if let Some(index) = slot.bitmap_index {
                bitmaps[node] = Some(if created {
                    OutOfSyncBitmap::new(usable)
                } else {
                    metadata::read_bitmap(&md, &layout, index).map_err(md_error)?
                });
            }
        }
        let al = if let Some(al) = created_al {
            al
        } else {
            let ring = metadata::read_al_ring(&md, &layout).map_err(md_error)?;
            // A log that cannot be recovered (a ring damaged beyond a torn last write) names
            // no extent to trust: every block is out of sync toward every peer, as if every
            // extent had been hot. Never a guess, and never a member that cannot come back.
            let (hot_extents, next_sequence) = match activity_log::recover(&ring) {
                Ok(recovery) => (Some(recovery.hot_extents), recovery.next_sequence),
                Err(error) => {
                    warn!(path = %path.display(), %error, "the activity log cannot be recovered: every block is out of sync toward every peer");
                    let next = activity_log::newest_sequence(&ring).map_or(0, |s| s + 1);
                    (None, next)
                }
            };
            // A member that stopped without cooling its log (a crash, a kill, a power loss)
            // may hold, in its hot extents, writes that did not reach every disk: its own as
            // Primary, or a Primary's it applied as Secondary that no PeerAck confirmed. They
            // are out of sync toward every peer, on disk before the log forgets them; a clean
            // stop leaves the log empty ([`Backing::cool`]).
            let marked = match &hot_extents {
                Some(extents) => {
                    for extent in extents {
                        let offset = u64::from(*extent) * AL_EXTENT_SIZE;
                        let len = AL_EXTENT_SIZE.min(usable.saturating_sub(offset));
                        for bitmap in bitmaps.iter_mut().flatten() {
                            let _ = bitmap.set_range(offset, len);
                        }
                    }
                    extents.len()
                }
                None => {
                    for bitmap in bitmaps.iter_mut().flatten() {
                        bitmap.set_all();
                    }
                    usable.div_ceil(AL_EXTENT_SIZE) as usize
                }
            };
            if marked > 0 {
                for (node, bitmap) in bitmaps.iter_mut().enumerate() {
                    if let (Some(bitmap), Some(index)) =
                        (bitmap, superblock.peers[node].bitmap_index)
                    {
                        metadata::write_bitmap(&md, &layout, index, bitmap).map_err(md_error)?;
                    }
                }
                if crashed_primary {
                    warn!(path = %path.display(), hot_extents = marked, "this member crashed as Primary: its hot extents are out of sync toward every peer");
                } else {
                    warn!(path = %path.display(), hot_extents = marked, "this member stopped without going down: its hot extents are out of sync toward every peer");
                }
            }
            let mut al =
                ActivityLog::new(layout.al_slots, next_sequence).map_err(|e| md_error(e.into()))?;
            for transaction in al.format() {
                metadata::write_al_transaction(&md, &layout, &transaction).map_err(md_error)?;
                al.transaction_written(transaction.sequence);
            }
            al
        };
        // Metadata of a version whose Secondaries recorded the Primary's absent peers' bits
        // outside the activity log, flagged while they lived in memory only, found stopped
        // without writing them: which ones is unknown, so all of them. Bits recorded now are
        // covered by the log's hot extents, or written at once.
        let recording_lost = !created
            && superblock
                .flags
                .contains(metadata::MdFlags::RECORDING_FOR_PRIMARY);
        if recording_lost {
            for (node, bitmap) in bitmaps.iter_mut().enumerate() {
                let tracked = NodeId::new(node as u32)
                    .is_ok_and(|peer| !superblock.generations.bitmap_uuid(peer).is_zero());
                if let (true, Some(bitmap), Some(index)) =
                    (tracked, bitmap, superblock.peers[node].bitmap_index)
                {
                    bitmap.set_all();
                    metadata::write_bitmap(&md, &layout, index, bitmap).map_err(md_error)?;
                }
            }
            superblock
                .flags
                .remove(metadata::MdFlags::RECORDING_FOR_PRIMARY);
            warn!(path = %path.display(), "this member stopped while recording what the Primary's absent peers missed: they get a full resync from a current disk");
        }
        if assigned || crashed_primary || recording_lost {
            metadata::write_superblock(&md, &superblock).map_err(md_error)?;
        }
        Ok((
            Backing {
                path: path.to_path_buf(),
                data: Arc::new(data),
                ring: OnceLock::new(),
                md: Arc::new(md),
                layout,
                state: Mutex::new(MdState {
                    superblock,
                    trigger: NewGenerationTrigger::default(),
                    bitmaps,
                    al,
                    unwritten: BTreeMap::new(),
                }),
                al_writer: tokio::sync::Mutex::new(()),
                al_changed: Notify::new(),
                generation_lock: tokio::sync::Mutex::new(()),
                generations_started: AtomicU64::new(0),
                generations_announced: Arc::new(tokio::sync::watch::Sender::new(0)),
                released: AtomicBool::new(false),
                heat: OnceLock::new(),
            },
            AttachInfo {
                created,
                crashed_primary,
            },
        ))
    }

    /// Gives a peer that became diskful (or joined) a bitmap slot, empty, on disk before the
    /// superblock names it. Nothing happens for a peer that has one.
    pub async fn add_peer(&self, peer: u8) -> Result<(), IoError> {
        let (superblock, index, bitmap) = {
            let mut state = self.state();
            if !assign_bitmap_slot(&mut state.superblock, peer) {
                return Ok(());
            }
            let index = state.superblock.peers[peer as usize]
                .bitmap_index
                .expect("just assigned");
            let bitmap = OutOfSyncBitmap::new(self.layout.usable_bytes);
            state.bitmaps[peer as usize] = Some(bitmap.clone());
            (state.superblock.clone(), index, bitmap)
        };
        let (md, layout) = (self.md.clone(), self.layout);
        tokio::task::spawn_blocking(move || {
            let mut bitmap = bitmap;
            bitmap.mark_all_dirty();
            metadata::write_bitmap(&md, &layout, index, &mut bitmap)?;
            metadata::write_superblock(&md, &superblock)
        })
        .await
        .map_err(|e| IoError::Io(format!("the superblock task failed: {e}")))?
        .map_err(|e| IoError::Io(format!("adding peer {peer}'s bitmap: {e}")))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MdState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn usable(&self) -> u64 {
        self.layout.usable_bytes
    }

    /// Lets go of the backing device now, whoever still holds this `Backing`: a frontend that
    /// outlives its resource (a block device still open, an NBD connection not yet reaped), a
    /// peer task winding down. The satellite deletes the backing volume once the resource is
    /// down; an open descriptor would keep a loop device attached, or an LV busy, until the last
    /// holder let go.
    ///
    /// Both descriptors are replaced in place (`dup3`) by an `O_PATH` descriptor of `/`, so
    /// that every read, write or sync still issued through them fails with `EBADF` instead of
    /// reaching another file that took their number. Data I/O started after this fails with
    /// [`IoError::Shutdown`]; I/O the kernel already holds completes on the device.
    pub fn release(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: a constant, NUL-terminated path; the result is checked.
        let placeholder = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if placeholder < 0 {
            warn!(path = %self.path.display(), error = %std::io::Error::last_os_error(), "cannot release the backing device: it stays open until the volume is dropped");
            return;
        }
        for fd in [self.data.as_raw_fd(), self.md.as_raw_fd()] {
            // SAFETY: `fd` is open for as long as `self` lives (the `File`s own it); dup3
            // atomically makes it refer to the placeholder, closing the device's file.
            if unsafe { libc::dup3(placeholder, fd, libc::O_CLOEXEC) } < 0 {
                warn!(path = %self.path.display(), error = %std::io::Error::last_os_error(), "cannot release the backing device");
            }
        }
        // SAFETY: `placeholder` is ours and no longer needed.
        unsafe { libc::close(placeholder) };
        info!(path = %self.path.display(), "backing device released");
    }

    fn check_attached(&self) -> Result<(), IoError> {
        if self.released.load(Ordering::Acquire) {
            return Err(IoError::Shutdown);
        }
        Ok(())
    }

    /// Checks that a request covers whole sectors.
    pub fn check_aligned(offset: u64, len: u64) -> Result<(), IoError> {
        if !offset.is_multiple_of(DIRECT_IO_ALIGNMENT) || !len.is_multiple_of(DIRECT_IO_ALIGNMENT) {
            return Err(IoError::Invalid(format!(
                "{len} bytes at {offset} are not aligned to {DIRECT_IO_ALIGNMENT} bytes"
            )));
        }
        Ok(())
    }

    /// The data file's io_uring, if io_uring works here.
    fn ring(&self) -> Option<&Ring> {
        self.ring
            .get_or_init(|| match Ring::start(self.data.clone()) {
                Ok(ring) => Some(ring),
                Err(error) => {
                    warn!(path = %self.path.display(), %error, "io_uring is not available; data I/O goes through the blocking pool");
                    None
                }
            })
            .as_ref()
    }

    /// Reads `len` bytes of data at `offset`.
    pub async fn read(&self, offset: u64, len: u32) -> Result<Bytes, IoError> {
        self.check_attached()?;
        Self::check_aligned(offset, u64::from(len))?;
        if let Some(ring) = self.ring() {
            return ring
                .read(offset, len as usize)
                .await
                .map_err(|e| io_error("reading the backing device", e));
        }
        let file = self.data.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = AlignedBuf::zeroed(len as usize);
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| io_error("reading the backing device", e))?;
            Ok(Bytes::from_owner(buf))
        })
        .await
        .map_err(|e| IoError::Io(format!("the read task failed: {e}")))?
    }

    /// Reads `len` bytes of data at `offset` into a pipe, by reference to the page cache; `None`
    /// when this device cannot (no io_uring, `O_DIRECT`, no pipe to be had): then [`Self::read`].
    pub async fn read_piped(&self, offset: u64, len: u32) -> Result<Option<PipedData>, IoError> {
        self.check_attached()?;
        Self::check_aligned(offset, u64::from(len))?;
        let Some(ring) = self.ring() else {
            return Ok(None);
        };
        ring.read_piped(offset, len as usize)
            .await
            .map_err(|e| io_error("reading the backing device", e))
    }

    /// Writes `data` at `offset`; `fua`: on stable storage before it returns.
    pub async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), IoError> {
        self.check_attached()?;
        Self::check_aligned(offset, data.len() as u64)?;
        if let Some(ring) = self.ring() {
            return ring
                .write(offset, data, fua)
                .await
                .map_err(|e| io_error("writing the backing device", e));
        }
        let file = self.data.clone();
        tokio::task::spawn_blocking(move || {
            file.write_all_at(&data, offset)
                .map_err(|e| io_error("writing the backing device", e))?;
            if fua {
                file.sync_data()
                    .map_err(|e| io_error("syncing the backing device", e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| IoError::Io(format!("the write task failed: {e}")))?
    }

    /// Starts writing `data` at `offset` (`fua`: on stable storage before `then` runs) without
    /// a task: `then` gets the outcome from the ring's completion. Only where [`Backing::ring`]
    /// works (see [`Backing::has_ring`]); elsewhere `then` gets an error at once.
    pub fn start_write(&self, offset: u64, data: Bytes, fua: bool, then: WriteCompletion) {
        if let Err(e) = self
            .check_attached()
            .and_then(|()| Self::check_aligned(offset, data.len() as u64))
        {
            return then(Err(e));
        }
        let Some(ring) = self.ring() else {
            return then(Err(IoError::Io(
                "no io_uring for this backing device".into(),
            )));
        };
        ring.start_write(
            offset,
            data,
            fua,
            Box::new(move |result| {
                then(result.map_err(|e| io_error("writing the backing device", e)))
            }),
        );
    }

    /// Starts writing a range that went through the page cache to the device, without waiting
    /// for it (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`). A resync target does so for
    /// every range it received: its disk writes while more data arrives, and the sync that ends
    /// the resync (before the disk is declared UpToDate) finds little left to do.
    pub fn start_writeback(&self, offset: u64, len: u64) {
        if self.check_attached().is_err() {
            return;
        }
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        let file = self.data.clone();
        tokio::task::spawn_blocking(move || {
            // SAFETY: the descriptor belongs to `file`, which lives through the call.
            let rc = unsafe {
                libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
            };
            if rc < 0 {
                // Only an early start is lost: the sync at the end of the resync writes it.
                tracing::debug!(error = %std::io::Error::last_os_error(), "starting writeback");
            }
        });
    }

    /// Whether data I/O goes through io_uring (and [`Backing::start_write`] works).
    pub fn has_ring(&self) -> bool {
        self.ring().is_some()
    }

    /// Before a write received from the Primary that the diskful peers in `absent` do not get
    /// ([`crate::volume::IoView::missed_by`]): from a diskless Primary (`diskless_primary`),
    /// starts a generation those peers do not hold if one of them has no bitmap UUID yet. The
    /// new UUID is derived from the current one and `absent`, so every disk recording for the
    /// same Primary starts the same generation and they stay in sync with each other. A
    /// diskful Primary starts that generation itself and this member adopts it
    /// ([`crate::gi::GenerationSet::adopt_new_current`], which gives the absent peers their
    /// bitmap UUIDs): starting one here would part this member from its Primary. Returns
    /// whether a generation started (the caller announces it). Durable before it returns.
    ///
    /// The bits themselves need no mark on disk: they are set for a write in a hot extent of
    /// the activity log, which a crash sets out of sync toward every peer, or written soon
    /// after (an `OutOfSync` for a range the log no longer holds).
    pub async fn before_recorded_write(
        &self,
        me: NodeId,
        absent: NodeMask,
        diskless_primary: bool,
    ) -> Result<bool, IoError> {
        let _generation = self.generation_lock.lock().await;
        let (superblock, started) = {
            let mut state = self.state();
            if !untracked(&state.superblock, me, absent, diskless_primary) {
                return Ok(false);
            }
            let generations = &state.superblock.generations;
            let derived = Uuid::new_generation(derive_generation(
                generations.current.generation(),
                absent.bits(),
            ));
            let started = state
                .superblock
                .generations
                .start_new_generation(me, derived, absent)
                .map_err(|e| IoError::Io(format!("starting a new data generation: {e}")))?;
            (state.superblock.clone(), started)
        };
        let md = self.md.clone();
        tokio::task::spawn_blocking(move || metadata::write_superblock(&md, &superblock))
            .await
            .map_err(|e| IoError::Io(format!("the superblock task failed: {e}")))?
            .map_err(|e| IoError::Io(format!("writing the superblock: {e}")))?;
        Ok(started)
    }

    /// Whether [`Backing::before_recorded_write`] has nothing to do for these arguments (no
    /// generation is to start): the bits may be set at once, with no wait.
    pub fn records_already(&self, me: NodeId, absent: NodeMask, diskless_primary: bool) -> bool {
        !untracked(&self.state().superblock, me, absent, diskless_primary)
    }

    /// Puts everything written so far on stable storage.
    pub async fn sync(&self) -> Result<(), IoError> {
        self.check_attached()?;
        if let Some(ring) = self.ring() {
            return ring
                .sync()
                .await
                .map_err(|e| io_error("syncing the backing device", e));
        }
        let file = self.data.clone();
        tokio::task::spawn_blocking(move || {
            file.sync_data()
                .map_err(|e| io_error("syncing the backing device", e))
        })
        .await
        .map_err(|e| IoError::Io(format!("the sync task failed: {e}")))?
    }

    /// Enters a write into the activity log: returns once the extents it touches are hot and
    /// durable in the log. Pair with [`Backing::end_write`].
    pub async fn begin_write(&self, offset: u64, len: u64) -> Result<(), IoError> {
        loop {
            let notified = self.al_changed.notified();
            let queued = {
                let mut state = self.state();
                match state
                    .al
                    .begin_write(offset, len)
                    .map_err(|e| IoError::Invalid(format!("activity log: {e}")))?
                {
                    Admission::Go => return Ok(()),
                    Admission::WriteTransaction(transaction) => {
                        let sequence = transaction.sequence;
                        state.unwritten.insert(sequence, transaction);
                        Some(sequence)
                    }
                    Admission::WaitForTransaction { .. } | Admission::MustWait => None,
                }
            };
            let Some(sequence) = queued else {
                notified.await;
                continue;
            };
            let writer = self.al_writer.lock().await;
            self.write_queued_transactions(sequence, &writer).await?;
            if let Some(heat) = self.heat.get() {
                heat.notify_one();
            }
            return Ok(());
        }
    }

    /// Writes the queued activity-log transactions up to `through`, oldest first, and tells
    /// the log each is durable; those already written by another task are skipped. The caller
    /// holds `al_writer`. The transactions' evicted extents have their data and bits put on
    /// stable storage first: after the transaction they are no longer assumed out of sync
    /// after a crash. A transaction leaves the queue only once durable: one that could not be
    /// written (or whose writer was dropped) stays for the next writer, and the writes
    /// waiting for it keep waiting.
    async fn write_queued_transactions(
        &self,
        through: u64,
        _writer: &tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<(), IoError> {
        // Every transaction up to `through` is queued already: each was queued where it was
        // made, before `through` was.
        let (any, evicting) = {
            let state = self.state();
            let mut due = state
                .unwritten
                .range(..=through)
                .map(|(_, tr)| tr)
                .peekable();
            (due.peek().is_some(), due.any(|tr| !tr.evicted.is_empty()))
        };
        if !any {
            return Ok(());
        }
        if evicting {
            self.sync().await?;
        }
        self.write_bitmaps().await?;
        loop {
            let next = self
                .state()
                .unwritten
                .first_key_value()
                .filter(|(sequence, _)| **sequence <= through)
                .map(|(_, tr)| tr.clone());
            let Some(transaction) = next else {
                return Ok(());
            };
            self.write_transaction(transaction).await?;
            self.al_changed.notify_waiters();
        }
    }

    /// Has `heat` notified whenever an extent enters the activity log (once; later calls
    /// change nothing).
    pub fn signal_heat_to(&self, heat: Arc<Notify>) {
        let _ = self.heat.set(heat);
    }

    /// How many extents the activity log holds: what a crash now would resync.
    pub fn hot_extent_count(&self) -> u32 {
        self.state().al.hot_extents().count() as u32
    }

    /// Whether every extent of the range is hot in the activity log, its transaction durable:
    /// bits set for it now are covered by the log's recovery should this member crash.
    pub fn is_logged(&self, offset: u64, len: u64) -> bool {
        self.state().al.holds(offset, len)
    }

    /// Whether the activity log holds any extent ([`Backing::cool`] has work).
    pub fn has_hot_extents(&self) -> bool {
        self.state().al.hot_extents().next().is_some()
    }

    /// [`Backing::begin_write`] when it needs no wait: `true` when the write is in the log
    /// now (its extents hot and durable), `false` when the caller must take the waiting path.
    pub fn try_begin_write(&self, offset: u64, len: u64) -> bool {
        self.state().al.try_begin_write(offset, len)
    }

    /// A cooling pass over the activity log ([`ActivityLog::cool`]): the extents no write
    /// touched since the previous pass (every idle one with `everything`) leave it, except
    /// those in `keep`. Their data and bits reach stable storage first, as an eviction's do.
    /// Returns how many extents left.
    pub async fn cool(
        &self,
        keep: &std::collections::BTreeSet<u32>,
        everything: bool,
    ) -> Result<usize, IoError> {
        self.check_attached()?;
        let writer = self.al_writer.lock().await;
        let (cooled, through) = {
            let mut state = self.state();
            let transactions = state.al.cool(&|extent| keep.contains(&extent), everything);
            let cooled: usize = transactions.iter().map(|tr| tr.evicted.len()).sum();
            let through = transactions.last().map(|tr| tr.sequence);
            state
                .unwritten
                .extend(transactions.into_iter().map(|tr| (tr.sequence, tr)));
            (cooled, through)
        };
        if let Some(through) = through {
            self.write_queued_transactions(through, &writer).await?;
        }
        Ok(cooled)
    }

    /// Writes an activity-log transaction to the ring (the caller holds `al_writer`, and it
    /// is the oldest queued) and tells the log it is durable.
    async fn write_transaction(&self, transaction: AlTransaction) -> Result<(), IoError> {
        let (md, layout) = (self.md.clone(), self.layout);
        let sequence = transaction.sequence;
        tokio::task::spawn_blocking(move || {
            metadata::write_al_transaction(&md, &layout, &transaction)
        })
        .await
        .map_err(|e| IoError::Io(format!("the activity log task failed: {e}")))?
        .map_err(|e| IoError::Io(format!("writing the activity log: {e}")))?;
        let mut state = self.state();
        state.unwritten.remove(&sequence);
        state.al.transaction_written(sequence);
        Ok(())
    }

    /// Leaves the activity log after a write begun with [`Backing::begin_write`] completed.
    pub fn end_write(&self, offset: u64, len: u64) {
        if let Err(e) = self.state().al.end_write(offset, len) {
            warn!(error = %e, "activity log bookkeeping");
        }
        self.al_changed.notify_waiters();
    }

    /// Marks a range out of sync toward `peer` (a write it did not get).
    pub fn mark_out_of_sync(&self, peer: u8, offset: u64, len: u64) {
        if let Some(Some(bitmap)) = self.state().bitmaps.get_mut(peer as usize) {
            let _ = bitmap.set_range(offset, len);
        }
    }

    /// Marks a range in sync toward `peer` (a resync copied it).
    pub fn mark_in_sync(&self, peer: u8, offset: u64, len: u64) {
        if let Some(Some(bitmap)) = self.state().bitmaps.get_mut(peer as usize) {
            let _ = bitmap.clear_range(offset, len);
        }
    }

    /// Runs `f` on the bitmap toward `peer`, if it has one.
    pub fn with_bitmap<T>(&self, peer: u8, f: impl FnOnce(&mut OutOfSyncBitmap) -> T) -> Option<T> {
        self.state()
            .bitmaps
            .get_mut(peer as usize)
            .and_then(|b| b.as_mut())
            .map(f)
    }

    /// Bytes out of sync toward `peer`.
    pub fn out_of_sync_bytes(&self, peer: u8) -> u64 {
        self.with_bitmap(peer, |b| b.out_of_sync_bytes())
            .unwrap_or(0)
    }

    /// Writes the dirty pages of every bitmap and syncs them. The bitmaps stay locked while
    /// their pages go to disk (a page set meanwhile would otherwise be marked clean unwritten);
    /// this is rare (an extent leaving the activity log, a clean shutdown), and the thread is
    /// handed over to the blocking pool for it.
    pub async fn write_bitmaps(&self) -> Result<(), IoError> {
        tokio::task::block_in_place(|| {
            let mut state = self.state();
            let MdState {
                superblock,
                bitmaps,
                ..
            } = &mut *state;
            for (node, bitmap) in bitmaps.iter_mut().enumerate() {
                let (Some(bitmap), Some(index)) = (bitmap, superblock.peers[node].bitmap_index)
                else {
                    continue;
                };
                if bitmap.dirty_pages().next().is_some() {
                    metadata::write_bitmap(&self.md, &self.layout, index, bitmap)
                        .map_err(|e| IoError::Io(format!("writing the bitmaps: {e}")))?;
                }
            }
            Ok(())
        })
    }

    /// A diskful peer became unreachable (`primary`: while this member is Primary).
    pub fn note_peer_lost(&self, primary: bool) {
        self.state().trigger.peer_lost(primary);
    }

    /// This member became Primary: its first write starts a new generation.
    pub fn note_promoted(&self) {
        self.state().trigger.promoted();
    }

    /// Before a write: starts the pending new data generation, if any, and makes it durable.
    /// Returns the generation it started, if it did: the caller announces it to the connected
    /// peers, then says so ([`NewGeneration::announced`]). Other writes wait for that before
    /// they go to a peer ([`Backing::wait_announced`]), so no peer is sent a write of a
    /// generation it was not told of first.
    ///
    /// A generation is also started when a diskful peer in `absent` has no bitmap UUID yet (it
    /// was in sync with the current generation): the trigger alone is not enough, because the
    /// write that consumes it may carry a view from before the peer was lost (it then rotates
    /// with nobody absent and clears the trigger), and every later write would be recorded in
    /// the bitmap of a peer whose generation still equals ours, which the handshake takes for
    /// "in sync".
    pub async fn before_write(
        &self,
        me: NodeId,
        absent: NodeMask,
    ) -> Result<Option<NewGeneration>, IoError> {
        // Held until the new generation is durable: no write may pass it.
        let _generation = self.generation_lock.lock().await;
        let superblock = {
            let mut state = self.state();
            let generations = &state.superblock.generations;
            let untracked = !generations.current.is_just_created()
                && absent
                    .iter()
                    .any(|peer| peer != me && generations.bitmap_uuid(peer).is_zero());
            if !state.trigger.is_pending() && !untracked {
                return Ok(None);
            }
            state.trigger = NewGenerationTrigger::default();
            let changed = state
                .superblock
                .generations
                .start_new_generation(me, Uuid::new_generation(random_u64()), absent)
                .map_err(|e| IoError::Io(format!("starting a new data generation: {e}")))?;
            if !changed {
                return Ok(None);
            }
            // Writing again with quorum: what failed while it had none is behind us (the
            // blocks are in the bitmaps of the peers that missed them).
            state
                .superblock
                .generations
                .flags
                .remove(crate::gi::GiFlags::PRIMARY_LOST_QUORUM);
            state.superblock.clone()
        };
        let md = self.md.clone();
        tokio::task::spawn_blocking(move || metadata::write_superblock(&md, &superblock))
            .await
            .map_err(|e| IoError::Io(format!("the superblock task failed: {e}")))?
            .map_err(|e| IoError::Io(format!("writing the superblock: {e}")))?;
        // Counted while the lock is held: a write that passes the lock after this one waits
        // for its announcement.
        let epoch = self.generations_started.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Some(NewGeneration {
            epoch,
            announced: self.generations_announced.clone(),
        }))
    }

    /// Waits until every generation started here so far was announced to the peers: called
    /// before a write is sent to them.
    pub async fn wait_announced(&self) {
        let started = self.generations_started.load(Ordering::SeqCst);
        if *self.generations_announced.borrow() >= started {
            return;
        }
        let mut announced = self.generations_announced.subscribe();
        let _ = announced.wait_for(|epoch| *epoch >= started).await;
    }

    /// The generation identifiers.
    pub fn generations(&self) -> GenerationSet {
        self.state().superblock.generations.clone()
    }

    /// Declares this member's data a new first generation, UpToDate and consistent, with every
    /// bitmap UUID cleared (`new-current-uuid --clear-bitmap`): for the only copy of a new
    /// volume, the skipped initial sync of zeroed ones, and the source of a thick volume's full
    /// initial sync. Durable before it returns.
    pub async fn declare_first_generation(&self, me: NodeId) -> Result<(), IoError> {
        let fresh = Uuid::new_generation(random_u64());
        self.update_superblock(|sb| {
            let _ = sb.generations.new_current_uuid_clear_bitmap(me, fresh);
            sb.flags
                .insert(metadata::MdFlags::CONSISTENT | metadata::MdFlags::WAS_UP_TO_DATE);
        })
        .await
    }

    /// Changes the superblock (generations, flags) and writes it, synced, before returning:
    /// nothing that depends on the change may happen before it is durable.
    pub async fn update_superblock(
        &self,
        change: impl FnOnce(&mut Superblock),
    ) -> Result<(), IoError> {
        let superblock = {
            let mut state = self.state();
            change(&mut state.superblock);
            state.superblock.clone()
        };
        let md = self.md.clone();
        tokio::task::spawn_blocking(move || metadata::write_superblock(&md, &superblock))
            .await
            .map_err(|e| IoError::Io(format!("the superblock task failed: {e}")))?
            .map_err(|e| IoError::Io(format!("writing the superblock: {e}")))
    }

    /// Runs `f` on the superblock without writing it.
    pub fn with_superblock<T>(&self, f: impl FnOnce(&Superblock) -> T) -> T {
        f(&self.state().superblock)
    }
}

/// Whether a peer in `absent` lacks a bitmap UUID that a write from a diskless Primary would
/// start a generation for ([`Backing::before_recorded_write`]).
fn untracked(
    superblock: &Superblock,
    me: NodeId,
    absent: NodeMask,
    diskless_primary: bool,
) -> bool {
    let generations = &superblock.generations;
    diskless_primary
        && !generations.current.is_just_created()
        && absent
            .iter()
            .any(|peer| peer != me && generations.bitmap_uuid(peer).is_zero())
}

/// Gives `peer` a free bitmap slot if it has none; whether one was assigned.
fn assign_bitmap_slot(superblock: &mut Superblock, peer: u8) -> bool {
    let index = peer as usize;
    if index >= MAX_NODES || superblock.peers[index].bitmap_index.is_some() {
        return false;
    }
    let used: Vec<u8> = superblock
        .peers
        .iter()
        .filter_map(|p| p.bitmap_index)
        .collect();
    match (0..superblock.bitmap_slots).find(|i| !used.contains(i)) {
        Some(free) => {
            superblock.peers[index] = PeerSlot {
                bitmap_index: Some(free),
                ..superblock.peers[index]
            };
            true
        }
        None => {
            warn!(
                peer,
                "no free bitmap slot for peer; it will always get a full resync"
            );
            false
        }
    }
}

// ---- Fresh metadata for a volume restored or rolled back from a snapshot ----
//
// Called by the satellite (not by the daemon) while the volume is not attached: the data came
// from a snapshot, and the metadata area copied with it is another member's, or this member's
// as it was then. It is replaced whole.

/// What [`write_fresh_metadata`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshMetadata {
    /// New metadata was written.
    Written,
    /// The metadata already descends from the generation asked for (written before, and the
    /// volume may have been attached since): left as it is.
    AlreadyThere,
}

/// Replaces the metadata of the backing device at `path` (a volume of `usable` bytes, node
/// `node_id`, `al_slots` activity-log slots) with new metadata: empty bitmaps, a formatted
/// activity log and a superblock whose current generation is `generation`, consistent and
/// UpToDate, or just created without one (the volume is then a full-sync target). With a
/// generation, metadata that already holds it (current, history or a bitmap slot) is left
/// alone, so a second call after the volume ran is harmless. Peers get their bitmap slots when
/// the volume is attached.
pub fn write_fresh_metadata(
    path: &Path,
    usable: u64,
    node_id: u8,
    al_slots: u16,
    generation: Option<u64>,
) -> Result<FreshMetadata, BackingError> {
    let md_error = |source| BackingError::Metadata {
        path: path.to_path_buf(),
        source,
    };
    let me = NodeId::new(u32::from(node_id)).map_err(|_| BackingError::NodeId(node_id))?;
    let file = open(path)?;
    let mut superblock =
        Superblock::new(usable, me, DEFAULT_PEER_SLOTS, al_slots).map_err(md_error)?;
    let needed = superblock.layout().backing_bytes();
    let found = device_size(&file).map_err(|source| BackingError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if found < needed {
        return Err(BackingError::TooSmall {
            path: path.to_path_buf(),
            found,
            needed,
            usable,
        });
    }
    if let Some(generation) = generation {
        let uuid = Uuid::new_generation(generation);
        if let Ok(existing) = metadata::read_superblock(&file, usable)
            && existing.node_id == me
            && (existing.generations.current == uuid || existing.generations.knows_ancestor(uuid))
        {
            return Ok(FreshMetadata::AlreadyThere);
        }
        superblock.generations.current = uuid;
        superblock
            .flags
            .insert(metadata::MdFlags::CONSISTENT | metadata::MdFlags::WAS_UP_TO_DATE);
    }
    metadata::create(&file, &superblock).map_err(md_error)?;
    info!(path = %path.display(), usable, generation = ?generation, "wrote fresh MIRROR metadata over restored data");
    Ok(FreshMetadata::Written)
}

/// 64 random bits, for new generation identifiers.
/// A generation UUID that every member computes alike from the same inputs (SplitMix64's
/// finalizer over the current generation and the mask of absent peers).
fn derive_generation(current: u64, absent: u32) -> u64 {
    let mut z = current ^ (u64::from(absent) << 32 | u64::from(absent)) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = random.read_exact(&mut bytes);
    }
    u64::from_le_bytes(bytes)
}

/// The bits toward a resync source, as the resync watch clears and reads them.
impl crate::resync_watch::TowardSource for Backing {
    fn clear_whole_blocks(&self, source: u8, offset: u64, len: u64) {
        self.mark_in_sync(source, offset, len);
    }

    fn still_to_resync(&self, source: u8, block_offset: u64) -> bool {
        self.with_bitmap(source, |bitmap| {
            bitmap.is_set(block_offset / crate::bitmap::BM_BLOCK_SIZE)
        })
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USABLE: u64 = 64 << 20;

    /// A volume on node 1 with a diskful peer 0, past day 0 (a generation of its own).
    fn attached(dir: &Path, name: &str) -> Backing {
        let path = dir.join(name);
        let file = File::create(&path).unwrap();
        file.set_len(USABLE + (16 << 20)).unwrap();
        let (backing, _) = Backing::attach(&path, USABLE, 1, &[0], 61).unwrap();
        backing
    }

    fn peer(id: u32) -> NodeId {
        NodeId::new(id).unwrap()
    }

    #[test]
    fn fresh_metadata_replaces_copied_metadata_and_starts_up_to_date_at_the_shared_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restored");
        // The source's metadata, copied with the data: node 0, a generation of its own, a bit
        // out of sync toward its peer.
        {
            let b = attached(dir.path(), "restored");
            b.mark_out_of_sync(0, 0, 4096);
            drop(b);
        }
        let shared = 0x5eed_0000_0001;
        assert_eq!(
            write_fresh_metadata(&path, USABLE, 2, 61, Some(shared)).unwrap(),
            FreshMetadata::Written
        );
        let (b, info) = Backing::attach(&path, USABLE, 2, &[0, 1], 61).unwrap();
        assert!(!info.created, "the metadata is there");
        assert_eq!(b.generations().current, Uuid::new_generation(shared));
        assert!(b.with_superblock(|sb| sb.node_id == peer(2)
            && sb.flags.contains(metadata::MdFlags::CONSISTENT)
            && sb.flags.contains(metadata::MdFlags::WAS_UP_TO_DATE)));
        assert_eq!(
            b.out_of_sync_bytes(0),
            0,
            "no bitmap copied from the source"
        );
        drop(b);
        // Asked again (a restarted satellite): left alone.
        assert_eq!(
            write_fresh_metadata(&path, USABLE, 2, 61, Some(shared)).unwrap(),
            FreshMetadata::AlreadyThere
        );
        // Without a generation: just created, a full-sync target.
        write_fresh_metadata(&path, USABLE, 2, 61, None).unwrap();
        let (b, _) = Backing::attach(&path, USABLE, 2, &[0], 61).unwrap();
        assert!(b.generations().current.is_just_created());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_disk_recording_for_a_diskless_primary_starts_the_same_generation() {
        let dir = tempfile::tempdir().unwrap();
        let (b, c) = (attached(dir.path(), "b"), attached(dir.path(), "c"));
        let shared = Uuid::new_generation(0x1234_5678_9abc);
        for backing in [&b, &c] {
            backing
                .update_superblock(|sb| sb.generations.current = shared)
                .await
                .unwrap();
        }
        let absent: NodeMask = [peer(0)].into_iter().collect();
        assert!(
            b.before_recorded_write(peer(1), absent, true)
                .await
                .unwrap()
        );
        assert!(
            c.before_recorded_write(peer(1), absent, true)
                .await
                .unwrap()
        );
        let (gb, gc) = (b.generations(), c.generations());
        assert_ne!(gb.current, shared);
        assert_eq!(gb.current, gc.current, "both disks stay on one generation");
        assert_eq!(gb.bitmap_uuid(peer(0)).generation(), shared.generation());
        // Once tracked, further writes start nothing.
        assert!(
            !b.before_recorded_write(peer(1), absent, true)
                .await
                .unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disk_recording_for_a_diskful_primary_keeps_the_primary_s_generation() {
        let dir = tempfile::tempdir().unwrap();
        let b = attached(dir.path(), "b");
        let shared = Uuid::new_generation(0x1234_5678_9abc);
        b.update_superblock(|sb| sb.generations.current = shared)
            .await
            .unwrap();
        let absent: NodeMask = [peer(0)].into_iter().collect();
        assert!(
            !b.before_recorded_write(peer(1), absent, false)
                .await
                .unwrap()
        );
        let generations = b.generations();
        assert_eq!(
            generations.current, shared,
            "the Primary starts the generation"
        );
        assert!(generations.bitmap_uuid(peer(0)).is_zero());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bits_recorded_in_memory_and_lost_in_a_crash_come_back_with_the_hot_extents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let b = attached(dir.path(), "b");
        b.update_superblock(|sb| sb.generations.current = Uuid::new_generation(77))
            .await
            .unwrap();
        let absent: NodeMask = [peer(0)].into_iter().collect();
        // A Primary's write that peer 0 misses, applied here through the activity log.
        let (offset, len) = (4 << 20, 64 << 10);
        b.before_recorded_write(peer(1), absent, true)
            .await
            .unwrap();
        b.begin_write(offset, len).await.unwrap();
        assert!(b.is_logged(offset, len));
        b.mark_out_of_sync(0, offset, len);
        b.end_write(offset, len);
        // A crash: the bitmap pages were never written.
        drop(b);
        let (b, _) = Backing::attach(&path, USABLE, 1, &[0], 61).unwrap();
        assert_eq!(
            b.out_of_sync_bytes(0),
            AL_EXTENT_SIZE,
            "the extent the write was in, toward the absent peer"
        );
        // A clean stop keeps exactly what was recorded.
        b.with_bitmap(0, |bitmap| bitmap.clear_all());
        b.begin_write(offset, len).await.unwrap();
        b.mark_out_of_sync(0, offset, len);
        b.end_write(offset, len);
        b.cool(&std::collections::BTreeSet::new(), true)
            .await
            .unwrap();
        drop(b);
        let (b, _) = Backing::attach(&path, USABLE, 1, &[0], 61).unwrap();
        assert_eq!(b.out_of_sync_bytes(0), len);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metadata_flagged_recording_by_an_earlier_version_gets_a_full_resync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let b = attached(dir.path(), "b");
        b.update_superblock(|sb| {
            sb.generations.current = Uuid::new_generation(77);
            let _ = sb.generations.start_new_generation(
                peer(1),
                Uuid::new_generation(78),
                [peer(0)].into_iter().collect(),
            );
            sb.flags.insert(metadata::MdFlags::RECORDING_FOR_PRIMARY);
        })
        .await
        .unwrap();
        drop(b);
        let (b, _) = Backing::attach(&path, USABLE, 1, &[0], 61).unwrap();
        assert_eq!(
            b.out_of_sync_bytes(0),
            USABLE,
            "everything toward the tracked peer"
        );
        assert!(
            !b.with_superblock(|sb| sb.flags.contains(metadata::MdFlags::RECORDING_FOR_PRIMARY)),
            "and the flag is gone once the bits are on disk"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_primary_crashed_on_its_first_metadata_has_its_hot_extents_resynced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let b = attached(dir.path(), "b");
        b.update_superblock(|sb| sb.flags.insert(metadata::MdFlags::PRIMARY))
            .await
            .unwrap();
        b.begin_write(12 << 20, 4096).await.unwrap();
        b.end_write(12 << 20, 4096);
        // A crash: the metadata never saw a clean stop or a second attach.
        drop(b);
        let (b, info) = Backing::attach(&path, USABLE, 1, &[0], 61).unwrap();
        assert!(info.crashed_primary);
        assert_eq!(
            b.out_of_sync_bytes(0),
            AL_EXTENT_SIZE,
            "the hot extent is out of sync toward the peer"
        );
    }

    /// A Secondary applies a Primary's writes through its activity log: stopped without
    /// going down (every member's power lost at once), its hot extents are out of sync toward
    /// every peer at the next attach. A clean stop cools the log (but for what `keep` names)
    /// and leaves nothing to resync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_secondary_stopped_without_going_down_resyncs_its_hot_extents_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let b = attached(dir.path(), "b");
        for offset in [4 << 20, 12 << 20] {
            b.begin_write(offset, 4096).await.unwrap();
            b.end_write(offset, 4096);
        }
        drop(b);
        let (b, info) = Backing::attach(&path, USABLE, 1, &[0], 61).unwrap();
        assert!(!info.crashed_primary);
        assert_eq!(b.out_of_sync_bytes(0), 2 * AL_EXTENT_SIZE);
        b.mark_in_sync(0, 0, USABLE);
        b.write_bitmaps().await.unwrap();

        // Written again, then a clean stop: one extent still holds an unconfirmed write.
        for offset in [4 << 20, 12 << 20] {
            assert!(
                b.try_begin_write(offset, 4096) || {
                    b.begin_write(offset, 4096).await.unwrap();
                    true
                }
            );
            b.end_write(offset, 4096);
        }
        let keep = [3u32].into_iter().collect();
        assert_eq!(b.cool(&keep, true).await.unwrap(), 1);
        assert!(b.has_hot_extents());
        drop(b);
        let (b, _) = Backing::attach(&path, USABLE, 1, &[0], 61).unwrap();
        assert_eq!(
            b.out_of_sync_bytes(0),
            AL_EXTENT_SIZE,
            "only the kept extent is resynced: {:?}",
            b.state().al.hot_extents().collect::<Vec<_>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_activity_log_that_cannot_be_recovered_makes_everything_out_of_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let b = attached(dir.path(), "b");
        b.begin_write(4 << 20, 4096).await.unwrap();
        b.end_write(4 << 20, 4096);
        let layout = b.layout;
        drop(b);
        // Every block of the ring damaged (a log of a few slots is described whole by any one
        // transaction's context, so nothing less fails its recovery).
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for block in 0..layout.al_blocks {
            let at = layout.al_offset + u64::from(block) * 4096 + 100;
            file.write_all_at(&[0xA5; 8], at).unwrap();
        }
        let ring = metadata::read_al_ring(&File::open(&path).unwrap(), &layout).unwrap();
        assert!(activity_log::recover(&ring).is_err());

        let (b, _) = Backing::attach(&path, USABLE, 1, &[0], 61).unwrap();
        assert_eq!(
            b.out_of_sync_bytes(0),
            USABLE,
            "every block, toward every peer"
        );
        // The log written over the damaged ring is the one the next recovery finds.
        b.mark_in_sync(0, 0, USABLE);
        b.write_bitmaps().await.unwrap();
        b.begin_write(12 << 20, 4096).await.unwrap();
        b.end_write(12 << 20, 4096);
        drop(b);
        let (b, _) = Backing::attach(&path, USABLE, 1, &[0], 61).unwrap();
        assert_eq!(b.out_of_sync_bytes(0), AL_EXTENT_SIZE);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_reaches_the_ring_only_after_every_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let b = attached(dir.path(), "ordered");
        // A write into extent 0 makes transaction N; its task has not reached the ring yet.
        let earlier = {
            let mut state = b.state();
            let Admission::WriteTransaction(transaction) = state.al.begin_write(0, 4096).unwrap()
            else {
                panic!("a cold extent needs a transaction");
            };
            let sequence = transaction.sequence;
            state.unwritten.insert(sequence, transaction);
            sequence
        };
        // A write into extent 1 makes N+1 and reaches the ring first: it writes N, then N+1.
        b.begin_write(AL_EXTENT_SIZE, 4096).await.unwrap();
        let ring = metadata::read_al_ring(&b.md, &b.layout).unwrap();
        let block = |sequence: u64| {
            let at = sequence % u64::from(b.layout.al_blocks);
            let at = at as usize * activity_log::AL_TRANSACTION_SIZE;
            AlTransaction::decode(&ring[at..at + activity_log::AL_TRANSACTION_SIZE]).unwrap()
        };
        assert_eq!(block(earlier).sequence, earlier, "N is in the ring");
        assert_eq!(block(earlier + 1).sequence, earlier + 1);
        // So extent 0 is held, and the task of N finds nothing left to write.
        assert!(b.is_logged(0, 4096));
        let writer = b.al_writer.lock().await;
        b.write_queued_transactions(earlier, &writer).await.unwrap();
        assert!(b.state().unwritten.is_empty());
        drop(writer);
        b.end_write(0, 4096);
        b.end_write(AL_EXTENT_SIZE, 4096);
        assert_eq!(
            activity_log::recover(&ring).unwrap().hot_extents,
            [0, 1].into_iter().collect()
        );
    }
}
