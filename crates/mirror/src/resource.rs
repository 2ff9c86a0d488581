//! One resource on this member: the owner of its state machine.
//!
//! A single task ([`Resource::run`]) owns the resource's state — role, quorum, each peer's
//! connection, role, disk and replication state, resync progress — and receives typed
//! [`Event`]s: a peer connected or went away, a frame for the state machine arrived, the I/O
//! path asks to promote, a frontend opened or closed a volume, a timer ticked. Everything that
//! waits (a promotion's round of votes, a resync's reads and writes) runs in tasks of its own
//! that report back with events, so the state machine never blocks. After every event it
//! publishes what the I/O path may do ([`IoView`] per volume) and a status snapshot.
//!
//! ```text
//!  peer:    (absent) ──dial/accept, hello, auth──▶ Connected ──State both ways──▶ per volume:
//!              Established | SyncSource | SyncTarget | StandAlone (split brain, unrelated)
//!  role:    Secondary ──first write, quorum, votes granted──▶ Primary ──idle──▶ Secondary
//!  disk:    Inconsistent ──resync done / initial sync skipped──▶ UpToDate
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferrite_block::{IoError, Volume};
use futures::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::backing::{Backing, NewGeneration};
use crate::config::ResourceConfig;
use crate::conflict::Reservation;
use crate::gi::{self, GenerationSet, GiFlags, NodeId, NodeMask, Outcome, Uuid};
use crate::outdated::{KnownGenerations, OutdatedFile, OutdatedMembers, generations_in};
use crate::peer::{self, Frame, PeerHandler, PeerLink};
use crate::peer_ack::UnconfirmedWrite;
use crate::quorum::{self, Member, OnNoQuorum, QuorumPolicy, QuorumSetting, QuorumVerdict};
use crate::status::{PeerStatus, PeerVolumeStatus, ResourceStatus, VolumeStatus};
use crate::volume::{IoView, ResourceControl, VolumeEngine};
use crate::wire::{
    self, BitmapChunk, DiskState, Kind, PromoteAnswer, Range, StateMessage, VolumeState,
};

/// How long a member stays Primary after its last frontend closed and its last frontend write,
/// so that an `umount` and a `mount` right after do not bounce the role. With a block device,
/// demotion also waits for the device's next usage poll ([`VolumeEngine::may_demote`]).
pub const DEMOTE_GRACE: Duration = Duration::from_millis(500);

/// How long a demotion waits for its peers to flush what they acknowledged. A peer that takes
/// longer keeps those writes recorded as unflushed (resynced to it if it disconnects); the
/// demotion goes on, so that a member waiting to promote is not held for longer.
pub const DEMOTE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// DRBD's `auto-promote-timeout` (2 s): how long a write that needs this member to become
/// Primary waits for another Primary to demote before it fails.
pub const AUTO_PROMOTE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a promotion waiting for another Primary to demote asks again.
const AUTO_PROMOTE_RETRY: Duration = Duration::from_millis(50);

/// How long a promotion waits for every connected peer's vote.
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits between attempts to reach a peer, the first and the longest.
pub const RECONNECT_MIN: Duration = Duration::from_millis(100);
pub const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// The largest range one resync request asks for.
pub const RESYNC_REQUEST_BYTES: u64 = 1 << 20;

/// How many resync requests a target keeps in flight.
pub const RESYNC_WINDOW: usize = 8;

/// How often the state machine looks at its clocks: a promotion's deadline, the demotion's
/// grace, the peers' flushes, a resync's pace. Only while one of them runs
/// ([`Machine::wants_tick`]): an idle Secondary, what most resources of a node are, does not
/// wake up at all. Liveness is not among them: each connection keeps its own
/// (`peer::keepalive`).
pub const TICK: Duration = Duration::from_millis(250);

/// How long an Outdated member waits before it renews its link to an UpToDate peer again to
/// resync from it ([`Machine::resync_outdated_disks`]), should the last renewal not have
/// started a resync; the wait doubles with every renewal, up to [`OUTDATED_RESYNC_RETRY_MAX`],
/// until the disk is no longer Outdated.
pub const OUTDATED_RESYNC_RETRY: Duration = Duration::from_secs(5);
pub const OUTDATED_RESYNC_RETRY_MAX: Duration = Duration::from_secs(300);

/// How long a member waits before it renews a link again to reconcile blocks out of sync on
/// equal generations ([`Machine::reconcile_disks`]) when the last renewal left them; doubling up
/// to [`RECONCILE_RETRY_MAX`].
pub const RECONCILE_RETRY: Duration = Duration::from_secs(5);
pub const RECONCILE_RETRY_MAX: Duration = Duration::from_secs(300);

/// How often the activity logs of a resource's volumes are cooled ([`Event::CoolActivityLog`]):
/// an extent no write touched for a whole interval leaves the log, its data and bits on
/// stable storage first, unless a Primary's write there is not confirmed yet. So a member that
/// crashes resyncs what was written in its last interval or two, not every extent written
/// since `al-extents` others were (up to 4.8 GiB by default). Passes run only while a log holds
/// extents: an idle member is not woken for them.
pub const AL_COOL_INTERVAL: Duration = Duration::from_secs(5);

/// How often a resync target puts its progress on disk: the data received so far, then the
/// bitmap with the bits it cleared. Killed mid-resync, it resumes from there instead of from
/// the bits it had on disk when the resync started (with the hot extents of its activity log
/// after a crash, those may be far more than what is left).
pub const RESYNC_CHECKPOINT: Duration = Duration::from_secs(1);

/// How often [`Resource::wait_for`] rereads the live amounts between changes of state.
pub const STATUS_POLL: Duration = Duration::from_millis(50);

/// A link renewal with a doubling back-off: whether one is due at `now` given the last
/// (`renewed`: when, and the wait it set), and if so it is recorded with the next wait —
/// `first`, then twice the last one, up to `max`.
fn renewal_due(
    renewed: &mut Option<(Instant, Duration)>,
    now: Instant,
    first: Duration,
    max: Duration,
) -> bool {
    let wait = match *renewed {
        Some((at, wait)) if now.duration_since(at) < wait => return false,
        Some((_, wait)) => (wait * 2).min(max),
        None => first,
    };
    *renewed = Some((now, wait));
    true
}

/// DRBD's connection states, as status shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Connected,
    /// Not trying: a split brain or unrelated data was found; an operator decides.
    StandAlone(String),
}

/// DRBD's replication states of one volume toward one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    Off,
    Established,
    SyncSource,
    SyncTarget,
    /// Another peer is this member's sync source; this one waits.
    PausedSyncTarget,
}

impl Replication {
    pub fn as_str(self) -> &'static str {
        match self {
            Replication::Off => "Off",
            Replication::Established => "Established",
            Replication::SyncSource => "SyncSource",
            Replication::SyncTarget => "SyncTarget",
            Replication::PausedSyncTarget => "PausedSyncT",
        }
    }
}

/// One volume of a peer, as this member knows it.
#[derive(Debug, Clone)]
pub struct PeerVolume {
    pub disk: DiskState,
    pub replication: Replication,
    pub generations: Option<GenerationSet>,
}

/// The volumes' write gates held for handshakes: no write runs while a handshake decides
/// (bitmaps, generations). One holding serves every handshake under way: were each connection
/// to wait for the gates on its own, three members connecting at once could each hold them
/// for one peer while waiting for the State of another, which waits the same way — a cycle
/// in which no State is ever sent.
type HandshakeGates = Arc<Vec<tokio::sync::OwnedRwLockWriteGuard<()>>>;

/// A peer, as this member knows it.
pub struct PeerState {
    pub node_name: String,
    pub node_id: u8,
    pub address: SocketAddr,
    pub diskless: bool,
    pub link: Option<Arc<PeerLink>>,
    pub connection: Connection,
    pub primary: bool,
    /// Whose writes the peer applies, as its last State said ([`StateMessage::writer`]).
    pub writer: Option<u8>,
    pub volumes: BTreeMap<u16, PeerVolume>,
    /// Whether its first State arrived on this connection.
    pub state_seen: bool,
    /// This connection waits for the volumes' write gates before this member sends its State
    /// (see [`Event::Gated`]).
    pub gating: bool,
    /// The write gates, held from before this member's first State on this connection until
    /// the handshake's decisions are published. Shared by every handshake under way at once
    /// (see [`HandshakeGates`]).
    gate: Option<HandshakeGates>,
    /// The peer's first State, when it came before the gates were held, with the answer its
    /// connection waits for if the peer is Primary ([`PeerHandler::primary_state`]).
    early_state: Option<(StateMessage, Option<oneshot::Sender<()>>)>,
    /// A new address or disk configured for the peer while it was Primary on this link: applied,
    /// and the link renewed, once it is no longer Primary (`Machine::renew_changed_peer`).
    /// Leaving a Primary for a change of its own configuration would have it write without
    /// this member and outdate a replica that missed nothing; until then the peer is what the
    /// link says it is.
    changed: Option<crate::config::PeerConfig>,
    /// When this member last renewed the link so that its Outdated disk resyncs from the peer
    /// ([`Machine::resync_outdated_disks`]), and how long it waits before the next renewal.
    renewed_to_resync: Option<(Instant, Duration)>,
    /// The same for blocks out of sync between this member and the peer on equal generations
    /// ([`Machine::reconcile_disks`]).
    renewed_to_reconcile: Option<(Instant, Duration)>,
}

impl PeerState {
    /// A configured peer, not connected yet.
    fn new(peer: &crate::config::PeerConfig) -> PeerState {
        PeerState {
            node_name: peer.node_name.clone(),
            node_id: peer.node_id,
            address: peer.address,
            diskless: peer.diskless,
            link: None,
            connection: Connection::Connecting,
            primary: false,
            writer: None,
            volumes: BTreeMap::new(),
            state_seen: false,
            gating: false,
            gate: None,
            early_state: None,
            changed: None,
            renewed_to_resync: None,
            renewed_to_reconcile: None,
        }
    }

    /// Connected, and its State on this connection seen.
    fn is_connected(&self) -> bool {
        self.state_seen && self.link.as_ref().is_some_and(|l| !l.is_closed())
    }
}

/// A resync this member receives (it is the target).
struct Resync {
    source: u8,
    /// Generations of the source when the resync started.
    source_generations: GenerationSet,
    /// The whole volume is fetched (the generations had no bitmap in common).
    full: bool,
    start_current: Uuid,
    total_bytes: u64,
    /// The source's bitmap has arrived and was merged.
    bitmap_complete: bool,
    /// The source's bitmap words received so far.
    incoming: Vec<u64>,
    /// Requests sent and not answered, by sequence number.
    outstanding: BTreeMap<u64, Range>,
    /// Where the next request starts.
    cursor: u64,
    /// When the requests began, and how many bytes were asked for since: with the configured
    /// `c-max-rate`, what bounds the next request.
    started: Instant,
    requested: u64,
    /// While it ran, the source applied the writes of a Primary that did not send them here
    /// (see [`Machine::check_resync_writers`]): what the source sent of a block may be older
    /// than what it holds now, so the end of this pass does not make the disk UpToDate.
    tainted: bool,
    /// Every block arrived, but this Primary still writes without this member: the resync
    /// waits (logged once, shown in the status) for that Primary's own resync or for it to
    /// stop writing.
    held_by: Option<u8>,
    /// When the progress was last put on disk ([`RESYNC_CHECKPOINT`]).
    checkpointed: Instant,
}

/// This member's volume.
struct LocalVolume {
    engine: Arc<VolumeEngine>,
    disk: DiskState,
    resync: Option<Resync>,
    /// Resync ranges sent to each peer and not acknowledged, by (peer, seq).
    serving: BTreeMap<(u8, u64), Range>,
    /// A handshake made this volume a resync target since the resource came up: it holds
    /// part of some peer's data, no longer the zeros of a new volume, and may not take a
    /// declared first generation without a resync (see `peer_state`).
    was_sync_target: bool,
}

/// What the state machine is told.
pub enum Event {
    Connected(Arc<PeerLink>),
    /// The write gates of every volume are held for a new connection to a diskful peer: no
    /// frontend write is in flight, none starts. Only now does this member send its State
    /// (generations) and, after the peer's State, decide and send its bitmap; the gates are
    /// released once the decision is published. Without this, a write that read its view while
    /// the peer was still absent could start a new generation or set bits toward it after
    /// they were sent: the peer would take the old generation for current, or finish a resync
    /// without those blocks (and the source then forgets them).
    Gated {
        link: Arc<PeerLink>,
        guards: Vec<tokio::sync::OwnedRwLockWriteGuard<()>>,
    },
    Disconnected {
        link: Arc<PeerLink>,
        reason: String,
    },
    Frame {
        link: Arc<PeerLink>,
        kind: Kind,
        seq: u64,
        flags: u32,
        payload: Bytes,
        data: Option<Bytes>,
        /// Resync data's place among the peer's writes (see `peer::read_loop`).
        reservation: Option<Reservation>,
        /// A Primary's State: answered once it is recorded ([`PeerHandler::primary_state`]).
        recorded: Option<oneshot::Sender<()>>,
    },
    Promote(oneshot::Sender<Result<(), IoError>>),
    Votes {
        granted: bool,
        reason: String,
    },
    UsageChanged,
    /// A volume started a new data generation: send the state to every peer, then answer.
    AnnounceGeneration(oneshot::Sender<()>),
    /// A write is to go on without a diskful peer it was sent to: answer once the members
    /// still reached confirmed they are a quorum (see [`QuorumRound`]), or quorum is gone.
    ConfirmQuorum(oneshot::Sender<Result<(), IoError>>),
    /// The members still reached confirmed their quorum after `0` left with writes it had
    /// acknowledged but not flushed: start the generation that makes it a resync target.
    TrackUnflushed(u8),
    /// A cooling pass over the volumes' activity logs is due ([`AL_COOL_INTERVAL`]).
    CoolActivityLog,
    /// Bits were recorded for ranges outside the activity log's hot extents
    /// ([`Machine::unlogged_bits`]): write those volumes' bitmaps.
    WriteUnloggedBits,
    /// A new configuration for the running resource (`adjust`).
    Adjust(ResourceConfig, oneshot::Sender<Result<(), AdjustError>>),
    /// The operator resolves a split brain against this member.
    DiscardMyData(oneshot::Sender<Result<String, String>>),
    Tick,
    Down(oneshot::Sender<()>),
}

/// Why a running resource could not take a new configuration as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdjustError {
    /// The change needs the resource taken down and up again (its volumes, its own node-id,
    /// address or secret changed).
    #[error("{0} changed: the resource must be taken down and up again")]
    NeedsRestart(&'static str),
    /// The change cannot be made at all.
    #[error("{0}")]
    Refused(String),
}

/// The handle other parts hold: events in, status out.
pub struct Resource {
    pub name: String,
    events: mpsc::UnboundedSender<Event>,
    membership: watch::Receiver<ResourceConfig>,
    status: watch::Receiver<ResourceStatus>,
    volumes: BTreeMap<u16, Arc<VolumeEngine>>,
    /// The task that accepts peers; it owns the listening socket.
    accept: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What a volume's I/O path calls on its resource.
struct Control {
    events: mpsc::UnboundedSender<Event>,
}

impl ResourceControl for Control {
    fn promote(&self) -> BoxFuture<'static, Result<(), IoError>> {
        let events = self.events.clone();
        Box::pin(async move {
            // DRBD's auto-promote-timeout: while another member is Primary, wait a while for
            // it to demote (its user has just left, say) before the write fails.
            let deadline = tokio::time::Instant::now() + AUTO_PROMOTE_TIMEOUT;
            loop {
                let (tx, rx) = oneshot::channel();
                if events.send(Event::Promote(tx)).is_err() {
                    return Err(IoError::Shutdown);
                }
                match rx.await.unwrap_or(Err(IoError::Shutdown)) {
                    Err(IoError::ReadOnly(_)) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(AUTO_PROMOTE_RETRY).await;
                    }
                    outcome => return outcome,
                }
            }
        })
    }

    fn usage_changed(&self) {
        let _ = self.events.send(Event::UsageChanged);
    }

    fn announce_generation(&self) -> BoxFuture<'static, ()> {
        let (tx, rx) = oneshot::channel();
        let sent = self.events.send(Event::AnnounceGeneration(tx)).is_ok();
        Box::pin(async move {
            if sent {
                let _ = rx.await;
            }
        })
    }

    fn confirm_quorum(&self) -> BoxFuture<'static, Result<(), IoError>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.events.send(Event::ConfirmQuorum(tx)).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(IoError::Shutdown);
            }
            rx.await.unwrap_or(Err(IoError::Shutdown))
        })
    }
}

/// What a connection calls on its resource.
struct Handler {
    events: mpsc::UnboundedSender<Event>,
    volumes: BTreeMap<u16, Arc<VolumeEngine>>,
    /// The configuration as it is now (`adjust` changes the options too).
    membership: watch::Receiver<ResourceConfig>,
}

impl PeerHandler for Handler {
    fn volume(&self, number: u16) -> Option<Arc<VolumeEngine>> {
        self.volumes.get(&number).cloned()
    }

    fn volumes(&self) -> Vec<Arc<VolumeEngine>> {
        self.volumes.values().cloned().collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn control(
        &self,
        link: &Arc<PeerLink>,
        kind: Kind,
        seq: u64,
        flags: u32,
        payload: Bytes,
        data: Option<Bytes>,
        reservation: Option<Reservation>,
    ) {
        let _ = self.events.send(Event::Frame {
            link: link.clone(),
            kind,
            seq,
            flags,
            payload,
            data,
            reservation,
            recorded: None,
        });
    }

    fn primary_state(&self, link: &Arc<PeerLink>, payload: Bytes) -> oneshot::Receiver<()> {
        let (recorded, answer) = oneshot::channel();
        let _ = self.events.send(Event::Frame {
            link: link.clone(),
            kind: Kind::State,
            seq: 0,
            flags: 0,
            payload,
            data: None,
            reservation: None,
            recorded: Some(recorded),
        });
        answer
    }

    fn disconnected(&self, link: &Arc<PeerLink>, reason: String) {
        let _ = self.events.send(Event::Disconnected {
            link: link.clone(),
            reason,
        });
    }

    fn ping_timeout(&self) -> Duration {
        self.membership.borrow().options.ping_timeout()
    }
}

fn disk_for_quorum(disk: DiskState) -> quorum::DiskState {
    match disk {
        DiskState::Diskless => quorum::DiskState::Diskless,
        DiskState::Attaching => quorum::DiskState::Attaching,
        DiskState::Failed => quorum::DiskState::Failed,
        DiskState::Inconsistent => quorum::DiskState::Inconsistent,
        DiskState::Outdated => quorum::DiskState::Outdated,
        DiskState::UpToDate => quorum::DiskState::UpToDate,
    }
}

fn policy(config: &ResourceConfig) -> QuorumPolicy {
    let quorum = match config.options.quorum.as_str() {
        "off" => QuorumSetting::Off,
        "all" => QuorumSetting::All,
        "majority" => QuorumSetting::Majority,
        other => other
            .parse::<u8>()
            .map(QuorumSetting::Count)
            .unwrap_or(QuorumSetting::Majority),
    };
    QuorumPolicy {
        quorum,
        on_no_quorum: if config.options.on_no_quorum == "suspend-io" {
            OnNoQuorum::SuspendIo
        } else {
            OnNoQuorum::IoError
        },
        ..QuorumPolicy::default()
    }
}

impl Resource {
    /// Brings the resource up: reads what it recorded of Outdated members (`outdated`),
    /// attaches the backing volumes (creating their metadata if new), starts listening for
    /// peers and dialling those with a higher node-id.
    pub async fn up(
        config: ResourceConfig,
        outdated: OutdatedFile,
    ) -> Result<Arc<Resource>, String> {
        config.check().map_err(|e| e.to_string())?;
        let outdated_members = {
            let file = outdated.clone();
            tokio::task::spawn_blocking(move || file.load())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        if !outdated_members.is_empty() {
            info!(resource = %config.name, members = ?outdated_members.nodes().collect::<Vec<_>>(), "members recorded Outdated");
        }
        let span = info_span!("resource", resource = %config.name, node_id = config.node_id);
        let (events, receiver) = mpsc::unbounded_channel();
        let control: Arc<dyn ResourceControl> = Arc::new(Control {
            events: events.clone(),
        });
        let diskful_peers: Vec<u8> = config
            .peers
            .iter()
            .filter(|p| !p.diskless)
            .map(|p| p.node_id)
            .collect();
        let mut volumes = BTreeMap::new();
        let mut locals = BTreeMap::new();
        let al_heat = Arc::new(tokio::sync::Notify::new());
        for volume in &config.volumes {
            let (backing, disk) = match &volume.backing {
                Some(path) => {
                    let (path, usable, me, peers, al) = (
                        path.clone(),
                        volume.usable_bytes,
                        config.node_id,
                        diskful_peers.clone(),
                        config.options.al_extents,
                    );
                    let (backing, info) = tokio::task::spawn_blocking(move || {
                        Backing::attach(&path, usable, me, &peers, al)
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                    if info.created && diskful_peers.is_empty() {
                        // The only copy of a new volume: there is nothing to sync with, so it
                        // starts its first generation UpToDate, zeroed or not (as LINSTOR does
                        // for DRBD).
                        let me =
                            NodeId::new(u32::from(config.node_id)).map_err(|e| e.to_string())?;
                        backing
                            .declare_first_generation(me)
                            .await
                            .map_err(|e| e.to_string())?;
                        info!(
                            volume = volume.number,
                            "new volume with no other copy: UpToDate"
                        );
                    }
                    let generations = backing.generations();
                    let consistent = backing.with_superblock(|sb| {
                        sb.flags.contains(crate::metadata::MdFlags::CONSISTENT)
                    });
                    let was_up_to_date = backing.with_superblock(|sb| {
                        sb.flags.contains(crate::metadata::MdFlags::WAS_UP_TO_DATE)
                    });
                    let disk = if generations.current.is_just_created() || !consistent {
                        DiskState::Inconsistent
                    } else if !was_up_to_date {
                        // Outdated by a Primary that wrote without it (see `outdate_self`).
                        DiskState::Outdated
                    } else {
                        DiskState::UpToDate
                    };
                    backing.signal_heat_to(al_heat.clone());
                    (Some(Arc::new(backing)), disk)
                }
                None => (None, DiskState::Diskless),
            };
            let engine = Arc::new(VolumeEngine::new(
                volume.number,
                NodeId::new(u32::from(config.node_id)).map_err(|e| e.to_string())?,
                volume.usable_bytes,
                backing,
                control.clone(),
            ));
            volumes.insert(volume.number, engine.clone());
            locals.insert(
                volume.number,
                LocalVolume {
                    engine,
                    disk,
                    resync: None,
                    serving: BTreeMap::new(),
                    was_sync_target: false,
                },
            );
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let (membership, membership_rx) = watch::channel(config.clone());
        let handler: Arc<dyn PeerHandler> = Arc::new(Handler {
            events: events.clone(),
            volumes: volumes.clone(),
            membership: membership_rx.clone(),
        });
        let peers = config
            .peers
            .iter()
            .map(|p| (p.node_id, PeerState::new(p)))
            .collect();
        let (shutdown_tx, shutdown) = watch::channel(false);
        let resource_membership = membership_rx.clone();
        let mut machine = Machine {
            config: config.clone(),
            membership,
            handler: handler.clone(),
            shutdown: shutdown.clone(),
            dialers: BTreeMap::new(),
            events: events.clone(),
            volumes: locals,
            peers,
            primary: false,
            promoting: None,
            pending_votes: None,
            quorum: QuorumVerdict::initial(),
            error: None,
            idle_since: None,
            status: None,
            quorum_round: None,
            last_round: 0,
            outdated_announced: BTreeSet::new(),
            states_recorded: Vec::new(),
            outdated_members,
            outdated_file: outdated,
            announced_writer: None,
            tick_wanted: watch::channel(false).0,
            cooling: Arc::new(AtomicBool::new(false)),
            hot_left: watch::channel(false).0,
            unlogged_bits: BTreeSet::new(),
        };
        let (status_tx, status) = watch::channel(machine.snapshot());
        machine.status = Some(status_tx);
        machine.publish();
        let accept = tokio::spawn(
            accept_loop(
                listener,
                membership_rx,
                handler.clone(),
                events.clone(),
                shutdown.clone(),
            )
            .instrument(span.clone()),
        );
        machine.start_dialling();
        let ticker = events.clone();
        let mut ticker_shutdown = shutdown.clone();
        let mut tick_wanted = machine.tick_wanted.subscribe();
        let hot_left = machine.hot_left.subscribe();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Cooling passes run while a log holds extents: from the first transaction that
            // heats one (`al_heat`) until a pass leaves every log empty with no heat since.
            let mut cooling = tokio::time::interval(AL_COOL_INTERVAL);
            cooling.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut cooling_active, mut heated) = (false, false);
            loop {
                let ticking = *tick_wanted.borrow_and_update();
                tokio::select! {
                    _ = interval.tick(), if ticking => {
                        if ticker.send(Event::Tick).is_err() {
                            return;
                        }
                    }
                    _ = cooling.tick(), if cooling_active => {
                        if !heated && !*hot_left.borrow() {
                            cooling_active = false;
                            continue;
                        }
                        heated = false;
                        if ticker.send(Event::CoolActivityLog).is_err() {
                            return;
                        }
                    }
                    _ = al_heat.notified() => {
                        heated = true;
                        if !cooling_active {
                            cooling_active = true;
                            cooling.reset();
                        }
                    }
                    changed = tick_wanted.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !ticking {
                            interval.reset();
                        }
                    }
                    _ = ticker_shutdown.changed() => return,
                }
            }
        });
        tokio::spawn(machine.run(receiver, shutdown_tx).instrument(span));
        info!(resource = %config.name, volumes = volumes.len(), peers = config.peers.len(), "resource up");
        Ok(Arc::new(Resource {
            name: config.name.clone(),
            events,
            membership: resource_membership,
            status,
            volumes,
            accept: std::sync::Mutex::new(Some(accept)),
        }))
    }

    /// The volumes, for the frontends.
    pub fn volumes(&self) -> &BTreeMap<u16, Arc<VolumeEngine>> {
        &self.volumes
    }

    /// The latest status. The state machine publishes it on every change of state; the
    /// out-of-sync amounts, which every write to an absent peer changes, the activity logs'
    /// hot extents, and whether a frontend holds a volume open, which the frontends count, are
    /// read live.
    pub fn status(&self) -> ResourceStatus {
        let mut status = self.status.borrow().clone();
        status.in_use = self.volumes.values().any(|v| v.sessions() > 0);
        for volume in &mut status.volumes {
            if let Some(backing) = self.volumes.get(&volume.number).and_then(|v| v.backing()) {
                volume.hot_extents = backing.hot_extent_count();
            }
        }
        for peer in &mut status.peers {
            for volume in &mut peer.volumes {
                if let Some(backing) = self.volumes.get(&volume.number).and_then(|v| v.backing()) {
                    volume.out_of_sync_kib = backing.out_of_sync_bytes(peer.node_id) / 1024;
                }
            }
        }
        status
    }

    /// Waits until the status satisfies `predicate` (tests, `wait` commands). Checked on every
    /// change of state and every [`STATUS_POLL`], for the amounts read live.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&ResourceStatus) -> bool,
    ) -> Result<ResourceStatus, ResourceStatus> {
        let mut changes = self.status.clone();
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if predicate(&status) {
                return Ok(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(status);
            }
            let nap = STATUS_POLL.min(deadline - now);
            let _ = tokio::time::timeout(nap, changes.changed()).await;
        }
    }

    /// Takes the resource down: connections closed, bitmaps written, Primary demoted cleanly.
    pub async fn down(&self) {
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Down(tx)).is_ok() {
            let _ = rx.await;
        }
        // The listening socket is closed before this returns, so the resource can come up
        // again on the same address at once (a restart for a new configuration).
        let accept = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = accept {
            task.abort();
            let _ = task.await;
        }
    }

    /// Gives the running resource a new configuration (see [`AdjustError`] for what it cannot
    /// take while running).
    pub async fn adjust(&self, config: ResourceConfig) -> Result<(), AdjustError> {
        let (tx, rx) = oneshot::channel();
        self.events
            .send(Event::Adjust(config, tx))
            .map_err(|_| AdjustError::Refused("the resource is down".to_string()))?;
        rx.await
            .unwrap_or_else(|_| Err(AdjustError::Refused("the resource is down".to_string())))
    }

    /// Resolves a split brain against this member: its data is discarded and resynced from
    /// its StandAlone peers at the next connection (`drbdadm connect --discard-my-data`).
    pub async fn discard_my_data(&self) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.events
            .send(Event::DiscardMyData(tx))
            .map_err(|_| "the resource is down".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("the resource is down".to_string()))
    }

    /// Status changes as the state machine publishes them (the live amounts are not).
    pub fn watch_status(&self) -> watch::Receiver<ResourceStatus> {
        self.status.clone()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> ResourceConfig {
        self.membership.borrow().clone()
    }

    /// Whether the resource has no more task (down or crashed).
    pub fn is_down(&self) -> bool {
        self.events.is_closed()
    }

    /// Tells the state machine that frontends' usage may have changed.
    pub fn usage_changed(&self) {
        let _ = self.events.send(Event::UsageChanged);
    }
}

/// Closes a connection whose resource went down before it could take it.
fn refuse_if_down(sent: Result<(), mpsc::error::SendError<Event>>) {
    if let Err(mpsc::error::SendError(Event::Connected(link))) = sent {
        link.close();
    }
}

async fn accept_loop(
    listener: TcpListener,
    membership: watch::Receiver<ResourceConfig>,
    handler: Arc<dyn PeerHandler>,
    events: mpsc::UnboundedSender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (mut stream, from) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accepting a peer failed");
                    tokio::time::sleep(RECONNECT_MIN).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        // The membership as it is now: a peer added by `adjust` is known from then on.
        let config = membership.borrow().clone();
        let known: Vec<u8> = config.peers.iter().map(|p| p.node_id).collect();
        let (handler, events) = (handler.clone(), events.clone());
        tokio::spawn(
            async move {
                let shaken = tokio::time::timeout(
                    peer::HANDSHAKE_TIMEOUT,
                    peer::handshake(
                        &mut stream,
                        &config.name,
                        &config.secret,
                        config.node_id,
                        None,
                        &known,
                    ),
                )
                .await;
                match shaken {
                    Ok(Ok(node_id)) => {
                        let name = config
                            .peers
                            .iter()
                            .find(|p| p.node_id == node_id)
                            .map(|p| p.node_name.clone())
                            .unwrap_or_default();
                        let link = peer::start(stream, node_id, name, handler);
                        refuse_if_down(events.send(Event::Connected(link)));
                    }
                    Ok(Err(e)) => warn!(%from, error = %e, "refused a peer connection"),
                    Err(_) => {
                        warn!(%from, "a peer connection did not complete its handshake in time")
                    }
                }
            }
            .in_current_span(),
        );
    }
}

/// Keeps a connection to the peer `node_id` (one with a higher node-id than this member's),
/// at the address the membership names, until the peer leaves the membership.
async fn dial_loop(
    membership: watch::Receiver<ResourceConfig>,
    node_id: u8,
    handler: Arc<dyn PeerHandler>,
    events: mpsc::UnboundedSender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = RECONNECT_MIN;
    let mut connected: Option<(Arc<PeerLink>, Instant)> = None;
    loop {
        let config = membership.borrow().clone();
        let Some((node_name, address)) = config
            .peers
            .iter()
            .find(|p| p.node_id == node_id)
            .map(|p| (p.node_name.clone(), p.address))
        else {
            debug!(
                peer = node_id,
                "peer left the membership; no longer dialling it"
            );
            return;
        };
        if let Some((link, since)) = &connected {
            if !link.is_closed() {
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_MIN) => continue,
                    _ = shutdown.changed() => return,
                }
            }
            // A connection that lived long was fine: reconnect at once. One the peer (or this
            // member) dropped right away (a split brain, a refusal) backs off.
            let short_lived = since.elapsed() < RECONNECT_MAX;
            connected = None;
            if short_lived {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                wait = (wait * 2).min(RECONNECT_MAX);
            } else {
                wait = RECONNECT_MIN;
            }
            continue;
        }
        let attempt = async {
            let mut stream = TcpStream::connect(address)
                .await
                .map_err(|e| e.to_string())?;
            peer::handshake(
                &mut stream,
                &config.name,
                &config.secret,
                config.node_id,
                Some(node_id),
                &[node_id],
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok::<TcpStream, String>(stream)
        };
        match tokio::time::timeout(peer::HANDSHAKE_TIMEOUT, attempt).await {
            Ok(Ok(stream)) => {
                let link = peer::start(stream, node_id, node_name.clone(), handler.clone());
                connected = Some((link.clone(), Instant::now()));
                if let Err(gone) = events.send(Event::Connected(link)) {
                    refuse_if_down(Err(gone));
                    return;
                }
                continue;
            }
            Ok(Err(e)) => debug!(peer = node_id, %address, error = %e, "peer not reachable"),
            Err(_) => debug!(peer = node_id, %address, "connecting to peer timed out"),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

/// The state machine.
struct Machine {
    config: ResourceConfig,
    /// The membership the connection tasks read (the accept loop, the dial loops).
    membership: watch::Sender<ResourceConfig>,
    handler: Arc<dyn PeerHandler>,
    shutdown: watch::Receiver<bool>,
    /// The dial loop of each peer with a higher node-id.
    dialers: BTreeMap<u8, tokio::task::JoinHandle<()>>,
    events: mpsc::UnboundedSender<Event>,
    volumes: BTreeMap<u16, LocalVolume>,
    peers: BTreeMap<u8, PeerState>,
    primary: bool,
    /// Callers waiting for a promotion in progress.
    promoting: Option<Vec<oneshot::Sender<Result<(), IoError>>>>,
    /// The votes of the promotion in progress.
    pending_votes: Option<PendingVotes>,
    quorum: QuorumVerdict,
    error: Option<String>,
    idle_since: Option<Instant>,
    status: Option<watch::Sender<ResourceStatus>>,
    /// The round that outdates the diskful peers this Primary writes without, if one runs.
    quorum_round: Option<QuorumRound>,
    /// The number of the last round (its messages carry it as their sequence number).
    last_round: u64,
    /// Connections waiting for a Primary's State to be recorded
    /// ([`PeerHandler::primary_state`]): answered after the event, once its decisions are
    /// durable and published to the volumes' I/O view.
    states_recorded: Vec<oneshot::Sender<()>>,
    /// As Primary: the diskful peers the others were told (and confirmed) this member writes
    /// without, so that none of them is promoted with the data it lacks.
    outdated_announced: BTreeSet<u8>,
    /// Members a Primary said it writes without, with their generations as this member knew
    /// them then: their promotion is refused and their data not taken for current until they
    /// are seen UpToDate on other generations (they resynced) or a Primary no longer names
    /// them (`crate::outdated`).
    outdated_members: OutdatedMembers,
    /// Where `outdated_members` is kept across restarts.
    outdated_file: OutdatedFile,
    /// The writer the peers were last told of ([`Machine::writer`]): a change is sent to
    /// them at once, since a resync target decides by it whether its resync may end.
    announced_writer: Option<u8>,
    /// Whether the ticker sends [`Event::Tick`]s ([`Machine::wants_tick`]).
    tick_wanted: watch::Sender<bool>,
    /// A cooling pass ([`Machine::cool_activity_logs`]) is running: the next waits for the
    /// interval after it.
    cooling: Arc<AtomicBool>,
    /// Whether an activity log still held extents after the last cooling pass: the ticker
    /// goes on sending [`Event::CoolActivityLog`] while one does, or one heated since.
    hot_left: watch::Sender<bool>,
    /// Volumes with bits set, in memory only, for ranges the activity log does not hold:
    /// their bitmaps are written by the next [`Event::WriteUnloggedBits`], which every
    /// `OutOfSync` received before it shares.
    unlogged_bits: BTreeSet<u16>,
}

/// A round that outdates the diskful peers a Primary is about to write without (it lost them,
/// or was promoted without them), DRBD's outdating through the quorum.
///
/// The Primary sends `Outdated` (the whole set of members it writes without) to every member
/// still connected; each records it, refuses those members' promotion from then on, relays it
/// once (so a member cut off from the Primary but not from the others learns that its data is
/// Outdated) and answers. Writes without the lost peer wait until the answers make a quorum
/// with this member (one round trip on a working network).
///
/// Two faults it guards against. A Primary cut off from everyone does not see its connections
/// end at once — each ends at that peer's ping timeout — and in between it still counts the
/// others in its quorum: writes acknowledged then would be missing on the majority, which
/// promotes one of its own. Here the round's messages reach nobody, the others' connections end
/// too, quorum is gone and the waiting writes fail. And a Primary that lost only a disk goes on
/// with the tiebreaker's vote; if it is cut off later, the tiebreaker and the disk left behind
/// are a majority — but that disk was outdated by the round and is not promoted.
struct QuorumRound {
    id: u64,
    /// The members announced as written without.
    outdated: BTreeSet<u8>,
    /// Peers that answered this round.
    answered: BTreeSet<u8>,
    waiters: Vec<oneshot::Sender<Result<(), IoError>>>,
}

/// The payload of an `Outdated` frame.
fn outdated_mask(members: &BTreeSet<u8>) -> Bytes {
    let mask = members
        .iter()
        .filter(|id| usize::from(**id) < gi::MAX_NODES)
        .fold(0u32, |mask, id| mask | (1 << id));
    Bytes::copy_from_slice(&mask.to_le_bytes())
}

impl Machine {
    fn me(&self) -> NodeId {
        NodeId::new(u32::from(self.config.node_id)).expect("checked config")
    }

    /// Starts a dial loop for every peer with a higher node-id that has none running.
    fn start_dialling(&mut self) {
        let me = self.config.node_id;
        for peer in self.config.peers.iter().filter(|p| p.node_id > me) {
            if self
                .dialers
                .get(&peer.node_id)
                .is_some_and(|d| !d.is_finished())
            {
                continue;
            }
            let task = tokio::spawn(
                dial_loop(
                    self.membership.subscribe(),
                    peer.node_id,
                    self.handler.clone(),
                    self.events.clone(),
                    self.shutdown.clone(),
                )
                .in_current_span(),
            );
            self.dialers.insert(peer.node_id, task);
        }
    }

    /// Takes a new configuration while running: peers join, leave, change address or gain or
    /// lose their disk; options change. A change of this member's own volumes, node-id,
    /// address or secret needs the resource down and up again.
    async fn adjust(&mut self, new: ResourceConfig) -> Result<(), AdjustError> {
        new.check()
            .map_err(|e| AdjustError::Refused(e.to_string()))?;
        let old = &self.config;
        if new.name != old.name {
            return Err(AdjustError::Refused(format!(
                "the configuration is for '{}', not '{}'",
                new.name, old.name
            )));
        }
        if new.node_id != old.node_id {
            return Err(AdjustError::NeedsRestart("this member's node-id"));
        }
        if new.listen != old.listen {
            return Err(AdjustError::NeedsRestart("this member's address"));
        }
        if new.secret != old.secret {
            return Err(AdjustError::NeedsRestart("the shared secret"));
        }
        let shape = |c: &ResourceConfig| {
            c.volumes
                .iter()
                .map(|v| (v.number, v.usable_bytes, v.backing.clone()))
                .collect::<Vec<_>>()
        };
        if shape(&new) != shape(old) {
            return Err(AdjustError::NeedsRestart("this member's volumes"));
        }
        if new.options.al_extents != old.options.al_extents {
            return Err(AdjustError::NeedsRestart("al-extents"));
        }
        if let Some(peer) = new.peers.iter().find(|p| {
            self.peers
                .get(&p.node_id)
                .is_some_and(|known| known.node_name != p.node_name && known.link.is_some())
        }) {
            return Err(AdjustError::Refused(format!(
                "node-id {} is connected as '{}'; remove it before giving its node-id to '{}'",
                peer.node_id, self.peers[&peer.node_id].node_name, peer.node_name
            )));
        }
        // Bitmap slots first: a peer is replicated to only once its bits can be recorded.
        for peer in new.peers.iter().filter(|p| !p.diskless) {
            for local in self.volumes.values() {
                if let Some(backing) = local.engine.backing() {
                    backing.add_peer(peer.node_id).await.map_err(|e| {
                        AdjustError::Refused(format!(
                            "volume {}: cannot record a bitmap for peer {}: {e}",
                            local.engine.number, peer.node_id
                        ))
                    })?;
                }
            }
        }
        let leaving: Vec<u8> = self
            .peers
            .keys()
            .filter(|id| !new.peers.iter().any(|p| p.node_id == **id))
            .copied()
            .collect();
        for id in leaving {
            let peer = self.peers.remove(&id).expect("listed");
            info!(peer = id, name = %peer.node_name, "peer left the resource");
            if let Some(link) = peer.link {
                link.close();
            }
            if let Some(dialer) = self.dialers.remove(&id) {
                dialer.abort();
            }
            for local in self.volumes.values_mut() {
                if local.resync.as_ref().is_some_and(|r| r.source == id) {
                    local.resync = None;
                }
                local.serving.retain(|(peer, _), _| *peer != id);
            }
        }
        for peer in &new.peers {
            match self.peers.get_mut(&peer.node_id) {
                Some(known) => {
                    let moved = known.address != peer.address;
                    let disk_changed = known.diskless != peer.diskless;
                    known.node_name = peer.node_name.clone();
                    known.changed = None;
                    let linked = known.link.as_ref().is_some_and(|l| !l.is_closed());
                    if (moved || disk_changed) && linked && known.primary {
                        info!(
                            peer = peer.node_id,
                            moved,
                            disk_changed,
                            "peer changed while Primary; the link is renewed once it is Secondary"
                        );
                        known.changed = Some(peer.clone());
                        continue;
                    }
                    known.address = peer.address;
                    known.diskless = peer.diskless;
                    if (moved || disk_changed)
                        && let Some(link) = &known.link
                    {
                        // Reconnect: the handshake states the new address or disk.
                        info!(
                            peer = peer.node_id,
                            moved, disk_changed, "peer changed; reconnecting"
                        );
                        link.close();
                    }
                }
                None => {
                    info!(peer = peer.node_id, name = %peer.node_name, "peer joined the resource");
                    self.peers.insert(peer.node_id, PeerState::new(peer));
                }
            }
        }
        self.config = new;
        self.membership.send_replace(self.config.clone());
        self.start_dialling();
        Ok(())
    }

    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        shutdown: watch::Sender<bool>,
    ) {
        while let Some(event) = events.recv().await {
            if let Event::Down(done) = event {
                self.go_down().await;
                let _ = shutdown.send(true);
                // A connection made while going down has no resource to serve: it is closed,
                // not left answering pings for a member that is gone.
                events.close();
                while let Ok(event) = events.try_recv() {
                    if let Event::Connected(link) = event {
                        link.close();
                    }
                }
                let _ = done.send(());
                return;
            }
            self.handle(event).await;
            self.start_initial_full_sync().await;
            self.publish();
            let wanted = self.wants_tick();
            self.tick_wanted
                .send_if_modified(|w| std::mem::replace(w, wanted) != wanted);
            for recorded in self.states_recorded.drain(..) {
                let _ = recorded.send(());
            }
            self.release_gates();
            self.settle_quorum_round().await;
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Connected(link) => self.connected(link),
            Event::Gated { link, guards } => self.gated(link, guards).await,
            Event::Disconnected { link, reason } => self.disconnected(&link, &reason).await,
            Event::Frame {
                link,
                kind,
                seq,
                flags,
                payload,
                data,
                reservation,
                recorded,
            } => {
                if kind == Kind::State {
                    self.state_frame(&link, payload, recorded).await
                } else {
                    self.frame(&link, kind, seq, flags, payload, data, reservation)
                        .await
                }
            }
            Event::Promote(reply) => self.promote(reply),
            Event::Votes { granted, reason } => self.votes_counted(granted, reason).await,
            Event::UsageChanged => self.usage_changed(),
            Event::TrackUnflushed(node) => self.track_unflushed(node).await,
            Event::WriteUnloggedBits => self.write_unlogged_bits().await,
            Event::AnnounceGeneration(done) => {
                self.broadcast_state();
                let _ = done.send(());
            }
            Event::ConfirmQuorum(reply) => {
                if self.quorum_round.is_none() {
                    self.start_quorum_round();
                }
                if let Some(round) = self.quorum_round.as_mut() {
                    round.waiters.push(reply);
                }
            }
            Event::DiscardMyData(reply) => {
                let result = self.discard_my_data().await;
                let _ = reply.send(result);
            }
            Event::Adjust(config, reply) => {
                let result = self.adjust(config).await;
                let _ = reply.send(result);
            }
            Event::Tick => self.tick().await,
            Event::CoolActivityLog => self.cool_activity_logs(),
            Event::Down(_) => unreachable!("handled in run"),
        }
    }

    /// Whether this member declares a new resource's first generation (skipping the initial
    /// sync, as `drbdadm new-current-uuid --clear-bitmap` on one node): only the diskful
    /// member with the lowest node-id does, so that every member takes the same one. Were
    /// each pair to decide between themselves, three members meeting at once could declare
    /// two generations and find each other's data unrelated.
    fn declares_first_generation(&self) -> bool {
        self.config.first_diskful_node_id() == Some(self.config.node_id)
    }

    /// A new volume whose backing is not known to read zeros (thick LVM, say) cannot skip the
    /// initial sync. Once every diskful member is connected and just created, the member that
    /// declares first generations takes one with its data as it is (what `drbdadm primary
    /// --force` does for DRBD) and closes its connections to them: each fresh handshake then
    /// finds a just-created peer and decides a full sync from this member.
    async fn start_initial_full_sync(&mut self) {
        if !self.declares_first_generation() {
            return;
        }
        let me = self.me();
        let mut declared = false;
        for local in self.volumes.values_mut() {
            let number = local.engine.number;
            let Some(backing) = local.engine.backing().cloned() else {
                continue;
            };
            let new_volume = self
                .config
                .volumes
                .iter()
                .any(|v| v.number == number && v.new_volume);
            if new_volume
                || local.disk != DiskState::Inconsistent
                || local.resync.is_some()
                || local.was_sync_target
                || !backing.generations().current.is_just_created()
            {
                continue;
            }
            let peers_new: Vec<bool> = self
                .peers
                .values()
                .filter(|p| !p.diskless)
                .map(|peer| {
                    peer.link.is_some()
                        && peer.state_seen
                        && peer.volumes.get(&number).is_some_and(|v| {
                            v.disk == DiskState::Inconsistent
                                && v.generations
                                    .as_ref()
                                    .is_some_and(|g| g.current.is_just_created())
                        })
                })
                .collect();
            if peers_new.is_empty() || peers_new.contains(&false) {
                continue;
            }
            match backing.declare_first_generation(me).await {
                Ok(()) => {
                    local.disk = DiskState::UpToDate;
                    declared = true;
                    info!(
                        volume = number,
                        "new volume not known to be zeroed: UpToDate here, full initial sync to the others"
                    );
                }
                Err(error) => {
                    warn!(volume = number, %error, "could not declare the first generation")
                }
            }
        }
        if declared {
            // The diskless members learn it from the State; the diskful ones from a fresh
            // handshake.
            self.broadcast_state();
            for peer in self.peers.values().filter(|p| !p.diskless) {
                if let Some(link) = &peer.link {
                    link.close();
                }
            }
        }
    }

    /// Gives up on a peer until an operator decides (split brain, unrelated data): the
    /// connection closes and the peer is StandAlone with the reason. Reported once per reason;
    /// reconnections that find the same verdict close quietly.
    fn stand_alone(&mut self, node: u8, link: &Arc<PeerLink>, reason: String) {
        link.close();
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if peer.connection == Connection::StandAlone(reason.clone()) {
            debug!(peer = node, "still StandAlone: {reason}");
            return;
        }
        warn!(peer = node, "{reason}");
        self.error = Some(reason.clone());
        peer.connection = Connection::StandAlone(reason);
    }

    /// `--discard-my-data`: this member's data of every volume is the split brain's victim; at
    /// the next handshake with a StandAlone peer it becomes the resync target.
    async fn discard_my_data(&mut self) -> Result<String, String> {
        if self.primary || self.in_use() {
            return Err(format!(
                "'{}' is Primary or in use here; stop using it before discarding its data",
                self.config.name
            ));
        }
        let stand_alone: Vec<u8> = self
            .peers
            .values()
            .filter(|p| matches!(p.connection, Connection::StandAlone(_)))
            .map(|p| p.node_id)
            .collect();
        if stand_alone.is_empty() {
            return Err(format!(
                "'{}' has no StandAlone peer (no split brain to resolve)",
                self.config.name
            ));
        }
        for local in self.volumes.values() {
            if let Some(backing) = local.engine.backing() {
                backing
                    .update_superblock(|sb| sb.generations.flags.insert(GiFlags::DISCARD_MY_DATA))
                    .await
                    .map_err(|e| format!("volume {}: {e}", local.engine.number))?;
            }
        }
        for id in &stand_alone {
            if let Some(link) = self.peers.get(id).and_then(|p| p.link.clone()) {
                link.close();
            }
        }
        warn!(
            "this member's data will be discarded and resynced from its peers (split brain resolution)"
        );
        Ok(format!(
            "'{}': this member's changes will be discarded and resynced from its peers at the next connection",
            self.config.name
        ))
    }

    fn connected(&mut self, link: Arc<PeerLink>) {
        let node = link.node_id();
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if let Some(old) = peer.link.replace(link.clone()) {
            old.close();
        }
        // A StandAlone peer (split brain) stays StandAlone until a handshake finds the split
        // brain resolved (one side discards its data); the connection only carries the States.
        if !matches!(peer.connection, Connection::StandAlone(_)) {
            peer.connection = Connection::Connected;
        }
        peer.state_seen = false;
        peer.gate = None;
        peer.early_state = None;
        info!(peer = node, name = %peer.node_name, "peer connected");
        if peer.diskless || self.volumes.values().all(|v| v.engine.backing().is_none()) {
            // No bitmap or generation of ours is at stake.
            peer.gating = false;
            self.send_state(&link);
            return;
        }
        let held = self
            .peers
            .values()
            .find_map(|p| p.gate.clone().filter(|_| p.link.is_some()));
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if let Some(gates) = held {
            // Another handshake holds the gates: this one shares them.
            peer.gating = false;
            peer.gate = Some(gates);
            self.send_state(&link);
            return;
        }
        peer.gating = true;
        let gates: Vec<_> = self.volumes.values().map(|v| v.engine.gate()).collect();
        let events = self.events.clone();
        tokio::spawn(async move {
            let mut guards = Vec::with_capacity(gates.len());
            for gate in gates {
                guards.push(gate.await);
            }
            let _ = events.send(Event::Gated { link, guards });
        });
    }

    /// The write gates are held for a new connection (see [`Event::Gated`]).
    async fn gated(
        &mut self,
        link: Arc<PeerLink>,
        guards: Vec<tokio::sync::OwnedRwLockWriteGuard<()>>,
    ) {
        let node = link.node_id();
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if !peer.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, &link))
            || link.is_closed()
            || !peer.gating
        {
            // Gone, or it shares gates another handshake took meanwhile.
            return;
        }
        let gates: HandshakeGates = Arc::new(guards);
        // Every connection still waiting shares them, now.
        let waiting: Vec<u8> = self
            .peers
            .values()
            .filter(|p| p.gating && p.link.as_ref().is_some_and(|l| !l.is_closed()))
            .map(|p| p.node_id)
            .collect();
        for node in waiting {
            let Some(peer) = self.peers.get_mut(&node) else {
                continue;
            };
            let Some(link) = peer.link.clone() else {
                continue;
            };
            peer.gating = false;
            peer.gate = Some(gates.clone());
            let early = peer.early_state.take();
            self.send_state(&link);
            if let Some((state, recorded)) = early {
                self.peer_state(&link, state).await;
                self.states_recorded.extend(recorded);
                self.resync_outdated_disks();
            }
        }
    }

    /// Drops the write gates of connections whose handshake is decided (called after the
    /// decision was published).
    fn release_gates(&mut self) {
        for peer in self.peers.values_mut() {
            if peer.gate.is_some() && (peer.state_seen || peer.link.is_none()) {
                peer.gate = None;
            }
        }
    }

    /// A peer that is no longer Primary takes the address or disk configured for it while it
    /// was ([`PeerState::changed`]), and the link is renewed: the handshake states them.
    fn renew_changed_peer(&mut self, node: u8) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if peer.primary {
            return;
        }
        let Some(changed) = peer.changed.take() else {
            return;
        };
        peer.address = changed.address;
        peer.diskless = changed.diskless;
        if let Some(link) = &peer.link {
            info!(
                peer = node,
                "peer changed while Primary and is Secondary now; reconnecting"
            );
            link.close();
        }
    }

    async fn disconnected(&mut self, link: &Arc<PeerLink>, reason: &str) {
        let node = link.node_id();
        let primary = self.primary;
        let lost_primary = self.peers.get(&node).is_some_and(|peer| {
            peer.primary && peer.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link))
        });
        // The disks this member still reaches: a Primary has them record what the departed
        // peer may have lost.
        let other_disks: Vec<Arc<PeerLink>> = self
            .peers
            .values()
            .filter(|p| p.node_id != node && !p.diskless)
            .filter_map(|p| p.link.clone())
            .collect();
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if !peer.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            return;
        }
        info!(peer = node, %reason, "peer disconnected");
        // What it acknowledged but never confirmed on its stable storage may be lost with its
        // page cache (a power loss): out of sync toward it, before anything can reconnect.
        let unflushed = link.take_unflushed();
        peer.link = None;
        peer.primary = false;
        peer.writer = None;
        peer.gating = false;
        peer.gate = None;
        peer.early_state = None;
        if !matches!(peer.connection, Connection::StandAlone(_)) {
            peer.connection = Connection::Connecting;
        }
        // What the departed incarnation was decides what it may have missed; a change
        // configured while it was Primary applies from its next connection.
        let diskful = !peer.diskless;
        if let Some(changed) = peer.changed.take() {
            peer.address = changed.address;
            peer.diskless = changed.diskless;
        }
        for volume in peer.volumes.values_mut() {
            volume.replication = Replication::Off;
        }
        for write in &unflushed {
            if let Some(backing) = self
                .volumes
                .get(&write.volume)
                .and_then(|local| local.engine.backing())
            {
                let (offset, length) = (write.offset, u64::from(write.length));
                backing.mark_out_of_sync(node, offset, length);
                if !backing.is_logged(offset, length) {
                    self.note_unlogged_bits(write.volume);
                }
            }
            // The disks left record it too: a diskless Primary has no bitmap, and a diskful
            // one may be gone when the departed member comes back to them.
            let message = wire::OutOfSync {
                range: Range {
                    volume: write.volume,
                    offset: write.offset,
                    length: write.length,
                },
                toward: Some(node),
            };
            for other in &other_disks {
                other.send(Frame::new(
                    Kind::OutOfSync,
                    0,
                    0,
                    Bytes::copy_from_slice(&message.encode()),
                    None,
                ));
            }
        }
        for local in self.volumes.values_mut() {
            if diskful && let Some(backing) = local.engine.backing() {
                backing.note_peer_lost(primary);
            }
            if local.resync.as_ref().is_some_and(|r| r.source == node) {
                info!(
                    peer = node,
                    volume = local.engine.number,
                    "resync source lost; the resync resumes when it is back"
                );
                local.resync = None;
                // A resync that waited behind it can go on now: decided again on a fresh
                // connection.
                let number = local.engine.number;
                for (other, peer) in &self.peers {
                    let paused = peer
                        .volumes
                        .get(&number)
                        .is_some_and(|v| v.replication == Replication::PausedSyncTarget);
                    if paused && let Some(link) = &peer.link {
                        info!(
                            peer = *other,
                            volume = number,
                            "paused resync: reconnecting to resume it from this peer"
                        );
                        link.close();
                    }
                }
            }
            local.serving.retain(|(peer, _), _| *peer != node);
        }
        if lost_primary {
            self.reconcile_unconfirmed(node, link.take_unconfirmed())
                .await;
        }
        if unflushed.is_empty() {
            return;
        }
        info!(
            peer = node,
            writes = unflushed.len(),
            "writes the peer acknowledged but had not flushed are marked out of sync toward it"
        );
        // The bits must also be in a generation the peer does not hold, or a peer that comes
        // back on our current generation is taken as in sync and never gets them. A new
        // generation is started only once the members left confirmed they are a quorum (the
        // next write asks the same): a Primary cut off from the majority must not start one,
        // or healing the partition would find a split brain.
        let (confirmed, outcome) = oneshot::channel();
        if self.quorum_round.is_none() {
            self.start_quorum_round();
        }
        if let Some(round) = self.quorum_round.as_mut() {
            round.waiters.push(confirmed);
        }
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Ok(Ok(())) = outcome.await {
                let _ = events.send(Event::TrackUnflushed(node));
            }
        });
    }

    /// The Primary `primary` is gone with writes it never confirmed ([`crate::peer_ack`]): they
    /// may be on this disk and not on another, or the reverse, with the same generation on
    /// both. They are marked out of sync toward every other disk, on stable storage before
    /// anything else; the peers are told (a State: no writer any more, bits toward them), and
    /// the disks reconcile ([`Machine::reconcile_disks`]).
    async fn reconcile_unconfirmed(&mut self, primary: u8, writes: Vec<UnconfirmedWrite>) {
        let disks: Vec<u8> = self
            .peers
            .values()
            .filter(|peer| peer.node_id != primary && !peer.diskless)
            .map(|peer| peer.node_id)
            .collect();
        if writes.is_empty() || disks.is_empty() {
            return;
        }
        let mut marked = BTreeSet::new();
        for write in &writes {
            let Some(backing) = self
                .volumes
                .get(&write.volume)
                .and_then(|local| local.engine.backing())
            else {
                continue;
            };
            for disk in &disks {
                backing.mark_out_of_sync(*disk, write.offset, u64::from(write.length));
            }
            marked.insert(write.volume);
        }
        for number in &marked {
            if let Some(backing) = self.volumes.get(number).and_then(|l| l.engine.backing())
                && let Err(error) = backing.write_bitmaps().await
            {
                warn!(volume = number, %error, "cannot write the bitmaps after losing the Primary");
            }
        }
        info!(
            peer = primary,
            writes = writes.len(),
            toward = ?disks,
            "the Primary is gone with writes it never confirmed: marked out of sync toward the other disks, to be reconciled"
        );
        self.broadcast_state();
        self.reconcile_disks();
    }

    /// Blocks this member holds out of sync toward a connected disk on the same generation
    /// (what a lost Primary's unconfirmed writes leave, [`Machine::reconcile_unconfirmed`]) are
    /// resynced by a fresh handshake, which decides the direction ([`gi::reconcile`]): the link
    /// is renewed. The peer renews for the bits it holds (what its State said is as of the last
    /// handshake). Not while the two apply the writes of different Primaries, or one of them
    /// does and the other not (that Primary outdates the other and resyncs it; a renewal now
    /// would only trade an Outdated disk for an Inconsistent one). Again after
    /// [`RECONCILE_RETRY`], doubling, if the bits stay.
    fn reconcile_disks(&mut self) {
        let writer = self.writer();
        let now = Instant::now();
        let mut renew = Vec::new();
        for peer in self.peers.values_mut().filter(|p| !p.diskless) {
            let established = peer.is_connected()
                && self.volumes.iter().all(|(number, local)| {
                    peer.volumes.get(number).is_some_and(|v| {
                        v.replication == Replication::Established
                            && v.disk == DiskState::UpToDate
                            && local.disk == DiskState::UpToDate
                    })
                });
            let bits = self.volumes.values().any(|local| {
                local
                    .engine
                    .backing()
                    .is_some_and(|b| b.out_of_sync_bytes(peer.node_id) > 0)
            });
            if !bits {
                peer.renewed_to_reconcile = None;
                continue;
            }
            if !established || writer != peer.writer {
                continue;
            }
            if !renewal_due(
                &mut peer.renewed_to_reconcile,
                now,
                RECONCILE_RETRY,
                RECONCILE_RETRY_MAX,
            ) {
                continue;
            }
            renew.extend(peer.link.clone().map(|link| (peer.node_id, link)));
        }
        for (node, link) in renew {
            info!(
                peer = node,
                "blocks out of sync with this peer on the same generation: reconnecting to reconcile them"
            );
            link.close();
        }
    }

    /// An `OutOfSync` from `node`: toward `node` itself, or — from the Primary — toward a
    /// member that a write failed toward, or that acknowledged the range but went away before
    /// flushing it. That member does not hold the generation recorded for it here (a diskless
    /// Primary's is started here; a diskful one's is adopted when it announces it), so it is
    /// resynced when back, from here too if the Primary is gone by then.
    async fn out_of_sync_received(&mut self, node: u8, message: wire::OutOfSync) {
        let toward = message.toward.unwrap_or(node);
        let range = message.range;
        let Some(backing) = self
            .volumes
            .get(&range.volume)
            .and_then(|local| local.engine.backing())
            .cloned()
        else {
            return;
        };
        if toward == self.config.node_id {
            return;
        }
        if message.toward.is_some() {
            let Ok(absent) = NodeId::new(u32::from(toward)) else {
                return;
            };
            let diskless_sender = self.peers.get(&node).is_some_and(|peer| peer.diskless);
            match backing
                .before_recorded_write(self.me(), [absent].into_iter().collect(), diskless_sender)
                .await
            {
                Ok(true) => self.broadcast_state(),
                Ok(false) => {}
                Err(error) => {
                    warn!(peer = toward, %error, "cannot record what the peer did not flush");
                    return;
                }
            }
        }
        backing.mark_out_of_sync(toward, range.offset, u64::from(range.length));
        // The range may lie in an extent this member's activity log no longer holds (the
        // write was confirmed and the extent cooled before the member it names went away
        // without flushing it): a crash would then lose the bit, which the log's recovery
        // does not cover. Such bits are written soon, together.
        if message.toward.is_some() && !backing.is_logged(range.offset, u64::from(range.length)) {
            self.note_unlogged_bits(range.volume);
        }
    }

    /// Bits were set in `volume`'s bitmaps, in memory only, for a range its activity log
    /// does not hold: written by the next [`Event::WriteUnloggedBits`].
    fn note_unlogged_bits(&mut self, volume: u16) {
        if self.unlogged_bits.insert(volume) && self.unlogged_bits.len() == 1 {
            let _ = self.events.send(Event::WriteUnloggedBits);
        }
    }

    /// [`Event::WriteUnloggedBits`].
    async fn write_unlogged_bits(&mut self) {
        for number in std::mem::take(&mut self.unlogged_bits) {
            if let Some(backing) = self.volumes.get(&number).and_then(|l| l.engine.backing())
                && let Err(error) = backing.write_bitmaps().await
            {
                warn!(volume = number, %error, "cannot write the bitmaps after recording what a peer missed: they are written at the next cooling pass");
            }
        }
    }

    /// [`Event::TrackUnflushed`]: a new generation without `node`, if this member is still
    /// the Primary that wrote while it was connected.
    async fn track_unflushed(&mut self, node: u8) {
        let connected = self
            .peers
            .get(&node)
            .is_some_and(|peer| peer.link.is_some());
        if !self.primary || connected {
            return;
        }
        let (me, Ok(lost)) = (self.me(), NodeId::new(u32::from(node))) else {
            return;
        };
        let mut started = Vec::new();
        for local in self.volumes.values() {
            let Some(backing) = local.engine.backing() else {
                continue;
            };
            match backing.before_write(me, [lost].into_iter().collect()).await {
                Ok(new) => started.extend(new),
                Err(error) => {
                    warn!(peer = node, %error, "cannot start a new generation for the writes the peer had not flushed")
                }
            }
        }
        if !started.is_empty() {
            self.broadcast_state();
        }
        started.into_iter().for_each(NewGeneration::announced);
    }

    fn send_state(&self, link: &Arc<PeerLink>) {
        let state = StateMessage {
            primary: self.primary,
            writer: self.writer(),
            volumes: self
                .volumes
                .values()
                .map(|local| {
                    let backing = local.engine.backing();
                    VolumeState {
                        volume: local.engine.number,
                        disk: local.disk,
                        usable_bytes: local.engine.size(),
                        generations: backing
                            .map(|b| b.generations())
                            .unwrap_or_else(GenerationSet::just_created),
                        out_of_sync_toward_receiver: backing
                            .is_some_and(|b| b.out_of_sync_bytes(link.node_id()) > 0),
                    }
                })
                .collect(),
        };
        let has_writer = state.writer.is_some();
        link.note_state_sent(
            state
                .volumes
                .iter()
                .map(|v| {
                    let side = gi::HandshakeSide {
                        primary: state.primary,
                        has_writer,
                        out_of_sync_toward_other: v.out_of_sync_toward_receiver,
                    };
                    (v.volume, side)
                })
                .collect(),
        );
        link.send(Frame::new(Kind::State, 0, 0, state.encode(), None));
    }

    fn broadcast_state(&self) {
        // A connection still waiting for its write gates gets its first State from `gated`.
        for peer in self.peers.values().filter(|p| !p.gating) {
            if let Some(link) = &peer.link {
                self.send_state(link);
            }
        }
    }

    /// A peer's `State`. `recorded` is answered once it is handled, what it made this member
    /// adopt is durable and the I/O view is published (`states_recorded`): a Primary's
    /// connection waits for it before it applies the writes behind the State
    /// ([`PeerHandler::primary_state`]).
    async fn state_frame(
        &mut self,
        link: &Arc<PeerLink>,
        payload: Bytes,
        recorded: Option<oneshot::Sender<()>>,
    ) {
        let node = link.node_id();
        match StateMessage::decode(&payload) {
            Ok(state) => {
                if let Some(peer) = self.peers.get_mut(&node)
                    && peer.gating
                    && peer.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link))
                {
                    // Decided once this member's own State is out (see `gated`).
                    peer.early_state = Some((state, recorded));
                    return;
                }
                self.peer_state(link, state).await;
                self.states_recorded.extend(recorded);
                self.resync_outdated_disks();
                self.reconcile_disks();
            }
            Err(e) => {
                warn!(peer = node, error = %e, "malformed state; closing the connection");
                link.close();
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn frame(
        &mut self,
        link: &Arc<PeerLink>,
        kind: Kind,
        seq: u64,
        _flags: u32,
        payload: Bytes,
        data: Option<Bytes>,
        reservation: Option<Reservation>,
    ) {
        let node = link.node_id();
        match kind {
            Kind::State => self.state_frame(link, payload, None).await,
            Kind::Bitmap => match BitmapChunk::decode(&payload) {
                Ok(chunk) => self.bitmap_chunk(node, chunk).await,
                Err(e) => {
                    warn!(peer = node, error = %e, "malformed bitmap; closing the connection");
                    link.close();
                }
            },
            Kind::ResyncRequest => match Range::decode(&payload) {
                Ok(range) => self.serve_resync(link, seq, range),
                Err(_) => link.close(),
            },
            Kind::ResyncData => match Range::decode(&payload) {
                Ok(range) => {
                    self.resync_data(link, seq, range, data.unwrap_or_default(), reservation)
                }
                Err(_) => link.close(),
            },
            Kind::ResyncDone => {
                // An acknowledgement of one resync range: the source's bits for it go.
                let volume = u16::from_le_bytes([payload[0], payload[1]]);
                if let Some(local) = self.volumes.get_mut(&volume)
                    && let Some(range) = local.serving.remove(&(node, seq))
                    && let Some(backing) = local.engine.backing()
                {
                    backing.mark_in_sync(node, range.offset, u64::from(range.length));
                }
            }
            Kind::PromoteRequest => {
                let answer = if self.primary {
                    PromoteAnswer::PeerIsPrimary
                } else if self.peers.values().any(|p| p.primary && p.node_id != node) {
                    PromoteAnswer::OtherPrimary
                } else if self.promoting.is_some() && self.config.node_id < node {
                    PromoteAnswer::Race
                } else if self.outdated_members.contains(node) {
                    PromoteAnswer::Outdated
                } else {
                    if let Some(peer) = self.peers.get_mut(&node) {
                        peer.primary = true;
                    }
                    PromoteAnswer::Granted
                };
                link.send(Frame::new(
                    Kind::PromoteReply,
                    0,
                    seq,
                    Bytes::copy_from_slice(&(answer as u32).to_le_bytes()),
                    None,
                ));
            }
            Kind::PromoteReply => {
                let answer = u32::from_le_bytes(payload[..4].try_into().unwrap_or([0xff; 4]));
                let granted = PromoteAnswer::from_u32(answer) == Some(PromoteAnswer::Granted);
                let _ = self.events.send(Event::Votes {
                    granted,
                    reason: format!("peer {node} answered {:?}", PromoteAnswer::from_u32(answer)),
                });
            }
            Kind::Demoted => {
                if let Some(peer) = self.peers.get_mut(&node) {
                    peer.primary = false;
                    if peer.writer == Some(node) {
                        peer.writer = None;
                    }
                }
                self.renew_changed_peer(node);
            }
            Kind::OutOfSync => match wire::OutOfSync::decode(&payload) {
                Ok(message) => self.out_of_sync_received(node, message).await,
                Err(e) => {
                    warn!(peer = node, error = %e, "malformed frame; closing the connection");
                    link.close();
                }
            },
            Kind::Outdated => {
                let mask = u32::from_le_bytes(payload[..4].try_into().unwrap_or([0; 4]));
                self.outdated_received(link, seq, mask).await;
            }
            Kind::Pong => {
                if let Some(round) = self.quorum_round.as_mut()
                    && round.id == seq
                {
                    round.answered.insert(node);
                }
            }
            other => {
                warn!(peer = node, kind = ?other, "unexpected frame; closing the connection");
                link.close();
            }
        }
    }

    /// A peer's state: on a fresh connection, the handshake's decision per volume.
    async fn peer_state(&mut self, link: &Arc<PeerLink>, state: StateMessage) {
        let node = link.node_id();
        let me = self.me();
        let Some(peer_id) = NodeId::new(u32::from(node)).ok() else {
            return;
        };
        let first = {
            let Some(peer) = self.peers.get_mut(&node) else {
                return;
            };
            peer.primary = state.primary;
            peer.writer = state.writer;
            let first = !peer.state_seen;
            peer.state_seen = true;
            first
        };
        if !state.primary {
            self.renew_changed_peer(node);
        }
        let volumes = state
            .volumes
            .iter()
            .map(|v| (v.volume, v.disk, &v.generations));
        if self.outdated_members.state_seen(node, volumes) {
            if !self.outdated_members.contains(node) {
                info!(
                    peer = node,
                    "the peer resynced since it was outdated: no longer Outdated"
                );
            }
            self.store_outdated().await;
        }
        // What the peer says of its disk, unless this member knows better.
        let peer_outdated = self.outdated_members.contains(node);
        let declares_first = self.declares_first_generation();
        let peer_declares_first = self.config.first_diskful_node_id() == Some(node);
        let disks_before: Vec<DiskState> = self.volumes.values().map(|v| v.disk).collect();
        let mut back_in_sync = false;
        let written_without_the_peer = self.written_without(node);
        let (peer_primary, peer_has_writer) = (state.primary, state.writer.is_some());
        for remote in state.volumes {
            let number = remote.volume;
            let Some(local) = self.volumes.get_mut(&number) else {
                continue;
            };
            let previous_replication = self
                .peers
                .get(&node)
                .and_then(|p| p.volumes.get(&number))
                .map(|v| v.replication)
                .unwrap_or(Replication::Off);
            let mut replication = previous_replication;
            let new_volume = self
                .config
                .volumes
                .iter()
                .any(|v| v.number == number && v.new_volume);
            if let Some(backing) = local.engine.backing().cloned()
                && remote.disk != DiskState::Diskless
            {
                let mine = backing.generations();
                if first {
                    // Skip the initial sync: both new and just created, and this member is the
                    // one that declares first generations (the lowest diskful node-id).
                    let both_new = mine.current.is_just_created()
                        && remote.generations.current.is_just_created();
                    if both_new && new_volume && declares_first {
                        if backing.declare_first_generation(me).await.is_ok() {
                            local.disk = DiskState::UpToDate;
                            info!(
                                peer = node,
                                volume = number,
                                "new volume: initial sync skipped"
                            );
                            replication = Replication::Established;
                        }
                    } else {
                        let mut full_resync = false;
                        let mut decision = gi::decide(&mine, me, &remote.generations, peer_id)
                            .resolve_split_brain(
                                mine.flags.contains(GiFlags::DISCARD_MY_DATA),
                                remote.generations.flags.contains(GiFlags::DISCARD_MY_DATA),
                            );
                        if local.disk == DiskState::UpToDate
                            && remote.disk == DiskState::UpToDate
                            && !peer_outdated
                        {
                            // This side as the State the peer decides by said it, so that both
                            // decide on the same facts.
                            let local_side =
                                link.first_state_sent(number).unwrap_or(gi::HandshakeSide {
                                    primary: self.primary,
                                    has_writer: self.primary,
                                    out_of_sync_toward_other: backing.out_of_sync_bytes(node) > 0,
                                });
                            decision = gi::reconcile(
                                decision,
                                local_side,
                                me,
                                gi::HandshakeSide {
                                    primary: peer_primary,
                                    has_writer: peer_has_writer,
                                    out_of_sync_toward_other: remote.out_of_sync_toward_receiver,
                                },
                                peer_id,
                            );
                        }
                        info!(peer = node, volume = number, outcome = ?decision.outcome, rule = decision.rule.name(), "handshake");
                        replication = match decision.outcome {
                            Outcome::NoSync => {
                                if local.disk == DiskState::Inconsistent
                                    && remote.disk == DiskState::UpToDate
                                    && !peer_outdated
                                    && !mine.current.is_just_created()
                                {
                                    // An interrupted resync: resume it as a bitmap resync.
                                    Replication::SyncTarget
                                } else {
                                    if local.disk == DiskState::Outdated
                                        && remote.disk == DiskState::UpToDate
                                        && !peer_outdated
                                        && backing
                                            .update_superblock(|sb| {
                                                sb.flags.insert(
                                                    crate::metadata::MdFlags::WAS_UP_TO_DATE,
                                                )
                                            })
                                            .await
                                            .is_ok()
                                    {
                                        // Outdated, but nothing was written without it: the
                                        // UpToDate peer is on the same generation.
                                        local.disk = DiskState::UpToDate;
                                    }
                                    if remote.disk == DiskState::UpToDate {
                                        back_in_sync = true;
                                    }
                                    Replication::Established
                                }
                            }
                            Outcome::SyncSource(kind) => {
                                if kind == gi::ResyncKind::Full {
                                    backing.with_bitmap(node, |b| {
                                        b.set_all();
                                    });
                                }
                                send_bitmap(link, number, &backing, node);
                                Replication::SyncSource
                            }
                            Outcome::SyncTarget(kind) => {
                                full_resync = kind == gi::ResyncKind::Full;
                                if kind == gi::ResyncKind::Full {
                                    backing.with_bitmap(node, |b| {
                                        b.set_all();
                                    });
                                }
                                Replication::SyncTarget
                            }
                            Outcome::SplitBrain(kind) => {
                                let reason = format!(
                                    "split brain detected on volume {number} with '{}' ({kind:?}): both sides wrote data the other does not have; nothing is merged. Resolve with 'ferrite-mirrord discard-my-data {}' on the node whose changes are to be thrown away",
                                    link.node_name(),
                                    self.config.name
                                );
                                self.stand_alone(node, link, reason);
                                return;
                            }
                            Outcome::Unrelated => {
                                let reason = format!(
                                    "volume {number} of '{}' holds unrelated data (no generation in common); refusing to connect",
                                    link.node_name()
                                );
                                self.stand_alone(node, link, reason);
                                return;
                            }
                        };
                        if replication == Replication::SyncTarget {
                            local.was_sync_target = true;
                        }
                        if replication == Replication::SyncTarget
                            && let Some(running) = local.resync.take_if(|r| {
                                r.source != node
                                    && ((r.full && !full_resync) || (r.tainted && state.primary))
                            })
                        {
                            // A bitmap resync replaces a full one: a member back from a short
                            // absence that met a Secondary first (which holds no bitmap toward
                            // it) gets only what the Primary's bitmap names. What the full one
                            // fetched is current data; the rest of this member is as of the
                            // generation the bitmap counts from. The full one waits and is
                            // found not needed when this one ends on the same generation.
                            // And a Primary's resync replaces a tainted one, which cannot end
                            // while that Primary writes without this member.
                            info!(
                                peer = node,
                                volume = number,
                                replaced = running.source,
                                "a bitmap resync from this peer replaces the running full one"
                            );
                            if let Some(peer) = self.peers.get_mut(&running.source)
                                && let Some(volume) = peer.volumes.get_mut(&number)
                            {
                                volume.replication = Replication::PausedSyncTarget;
                            }
                        }
                        if replication == Replication::SyncTarget
                            && local.resync.as_ref().is_some_and(|r| r.source != node)
                        {
                            // One source at a time (DRBD's resync-after): this one waits until
                            // the running resync ends, and is decided again then.
                            info!(
                                peer = node,
                                volume = number,
                                "resync from this peer paused behind the running one"
                            );
                            replication = Replication::PausedSyncTarget;
                        } else if replication == Replication::SyncTarget {
                            local.disk = DiskState::Inconsistent;
                            let _ = backing
                                .update_superblock(|sb| {
                                    sb.flags.remove(crate::metadata::MdFlags::CONSISTENT)
                                })
                                .await;
                            let total = backing.out_of_sync_bytes(node);
                            local.engine.resync_watch().begin(node);
                            local.resync = Some(Resync {
                                source: node,
                                source_generations: remote.generations.clone(),
                                full: full_resync,
                                start_current: mine.current,
                                total_bytes: total,
                                bitmap_complete: false,
                                incoming: Vec::new(),
                                outstanding: BTreeMap::new(),
                                cursor: 0,
                                started: Instant::now(),
                                requested: 0,
                                tainted: false,
                                held_by: None,
                                checkpointed: Instant::now(),
                            });
                        }
                    }
                } else if remote.disk == DiskState::UpToDate
                    && previous_replication == Replication::SyncSource
                {
                    // The target finished: it holds our data now.
                    let _ = backing
                        .update_superblock(|sb| {
                            sb.generations.finish_resync_as_source(peer_id);
                        })
                        .await;
                    backing.with_bitmap(node, |b| b.clear_all());
                    replication = Replication::Established;
                    back_in_sync = true;
                    info!(
                        peer = node,
                        volume = number,
                        "peer finished its resync from here"
                    );
                } else if local.disk == DiskState::UpToDate
                    && remote.disk == DiskState::UpToDate
                    && remote.generations.current != mine.current
                    && state.primary
                {
                    // The Primary started a new generation: adopt it, durably, before its
                    // connection applies the writes behind it (`PeerHandler::primary_state`).
                    // The members it writes without keep the old one as their bitmap UUID
                    // here: this member records what they miss (`IoView::missed_by`).
                    let weak = written_without_the_peer;
                    let new = remote.generations.current;
                    if let Err(error) = backing
                        .update_superblock(|sb| {
                            let _ = sb.generations.adopt_new_current(me, peer_id, new, weak);
                        })
                        .await
                    {
                        // Its writes must not be acknowledged here: the Primary, seeing the
                        // connection end, records them as missed by this member.
                        warn!(peer = node, volume = number, %error, "could not record the Primary's new generation; closing the connection");
                        link.close();
                        return;
                    }
                } else if local.disk == DiskState::Inconsistent
                    && local.resync.is_none()
                    && remote.disk == DiskState::UpToDate
                    && mine.current.is_just_created()
                    && remote.generations.is_day0()
                    && first_declared(&remote.generations)
                    && peer_declares_first
                    && (!new_volume || local.was_sync_target)
                {
                    // The peer declared the first generation, but this volume's data is not
                    // known to be zeros (thick), or a resync already wrote to it: it needs a
                    // full sync, which a fresh handshake decides.
                    info!(
                        peer = node,
                        volume = number,
                        "the first generation was declared; reconnecting for the full initial sync"
                    );
                    link.close();
                    return;
                } else if local.disk == DiskState::Inconsistent
                    && local.resync.is_none()
                    && !local.was_sync_target
                    && new_volume
                    && remote.disk == DiskState::UpToDate
                    && mine.current.is_just_created()
                    && remote.generations.is_day0()
                    && first_declared(&remote.generations)
                    && peer_declares_first
                {
                    // The peer skipped the initial sync for both of us.
                    let current = remote.generations.current;
                    if backing
                        .update_superblock(|sb| {
                            let _ = sb.generations.accept_skip_initial_sync(current);
                            sb.flags.insert(
                                crate::metadata::MdFlags::CONSISTENT
                                    | crate::metadata::MdFlags::WAS_UP_TO_DATE,
                            );
                        })
                        .await
                        .is_ok()
                    {
                        local.disk = DiskState::UpToDate;
                        replication = Replication::Established;
                        info!(
                            peer = node,
                            volume = number,
                            "new volume: initial sync skipped"
                        );
                    }
                }
            }
            if local.engine.backing().is_none() || remote.disk == DiskState::Diskless {
                // A diskless member sends its I/O to every connected diskful peer, and a
                // diskful one serves its diskless peers: established either way (as DRBD
                // shows it). Between two diskless members nothing flows.
                replication =
                    if local.engine.backing().is_none() && remote.disk == DiskState::Diskless {
                        Replication::Off
                    } else {
                        Replication::Established
                    };
            }
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.volumes.insert(
                    number,
                    PeerVolume {
                        disk: remote.disk,
                        replication,
                        generations: Some(remote.generations),
                    },
                );
            }
        }
        if let Some(peer) = self.peers.get_mut(&node)
            && let Connection::StandAlone(reason) = &peer.connection
        {
            info!(peer = node, "split brain resolved; connected");
            if self.error.as_ref() == Some(reason) {
                self.error = None;
            }
            peer.connection = Connection::Connected;
        }
        if back_in_sync {
            self.forget_outdated(node);
        }
        let disks_after: Vec<DiskState> = self.volumes.values().map(|v| v.disk).collect();
        if disks_after != disks_before {
            // Every peer must know: quorum and where to read depend on it.
            self.broadcast_state();
        } else if first {
            // Tell the peer where this side stands after the decisions.
            self.send_state(link);
        }
        self.drive_resyncs();
    }

    /// A chunk of the sync source's bitmap toward this member: kept until the last one, then
    /// OR-ed into this member's bitmap toward the source, which drives the resync. That bitmap
    /// is on disk before the first request goes out: the source forgets a block once this
    /// member acknowledged it, before it is durable here, so after a power loss only this
    /// member's bits (cleared on disk only after a sync, [`RESYNC_CHECKPOINT`]) still name it.
    async fn bitmap_chunk(&mut self, node: u8, chunk: BitmapChunk) {
        let Some(local) = self.volumes.get_mut(&chunk.volume) else {
            return;
        };
        let Some(backing) = local.engine.backing().cloned() else {
            return;
        };
        let Some(resync) = local.resync.as_mut().filter(|r| r.source == node) else {
            return;
        };
        let usable = backing.usable();
        let expected_words = (crate::bitmap::OutOfSyncBitmap::on_disk_bytes(usable) / 8) as usize;
        let first = chunk.first_word as usize;
        if first != resync.incoming.len() || first + chunk.words.len() > expected_words {
            warn!(
                peer = node,
                "bitmap chunk out of order or too long; closing the connection"
            );
            if let Some(link) = self.peers.get(&node).and_then(|p| p.link.clone()) {
                link.close();
            }
            return;
        }
        resync.incoming.extend_from_slice(&chunk.words);
        if !chunk.last {
            return;
        }
        let bytes: Vec<u8> = resync
            .incoming
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        resync.incoming = Vec::new();
        match crate::bitmap::OutOfSyncBitmap::decode(usable, &bytes) {
            Ok(theirs) => {
                backing.with_bitmap(node, |mine| {
                    let _ = mine.merge(&theirs);
                });
                if let Err(error) = backing.write_bitmaps().await {
                    warn!(peer = node, %error, "cannot write the merged bitmap; closing the connection to try again");
                    if let Some(link) = self.peers.get(&node).and_then(|p| p.link.clone()) {
                        link.close();
                    }
                    return;
                }
                let Some(resync) = self
                    .volumes
                    .get_mut(&chunk.volume)
                    .and_then(|local| local.resync.as_mut())
                    .filter(|r| r.source == node)
                else {
                    return;
                };
                resync.bitmap_complete = true;
                resync.total_bytes = backing.out_of_sync_bytes(node);
                info!(
                    peer = node,
                    volume = chunk.volume,
                    kib = resync.total_bytes / 1024,
                    "resync starts"
                );
            }
            Err(e) => {
                warn!(peer = node, error = %e, "the source's bitmap is invalid; closing the connection");
                if let Some(link) = self.peers.get(&node).and_then(|p| p.link.clone()) {
                    link.close();
                }
                return;
            }
        }
        self.drive_resyncs();
    }

    /// Sends the next resync requests of every volume this member receives a resync for.
    fn drive_resyncs(&mut self) {
        let link_of = |peers: &BTreeMap<u8, PeerState>, node: u8| {
            peers.get(&node).and_then(|p| p.link.clone())
        };
        // `c-max-rate` bounds the average rate since the resync started (0: unbounded). It was
        // documented and configurable, but nothing applied it: a resync took the whole disk
        // and network from the application. The ticks and each completed range drive the
        // requests on, so a request held back here goes out within a tick.
        let max_rate = self.config.options.c_max_rate_kib.saturating_mul(1024);
        for local in self.volumes.values_mut() {
            let Some(resync) = local.resync.as_mut() else {
                local.engine.resync_watch().end();
                continue;
            };
            if !resync.bitmap_complete {
                continue;
            }
            let Some(link) = link_of(&self.peers, resync.source) else {
                continue;
            };
            let Some(backing) = local.engine.backing().cloned() else {
                continue;
            };
            let usable = backing.usable();
            while resync.outstanding.len() < RESYNC_WINDOW && resync.cursor < usable {
                let next = backing
                    .with_bitmap(resync.source, |b| {
                        b.next_range_from(resync.cursor, RESYNC_REQUEST_BYTES)
                    })
                    .flatten();
                let Some((offset, len)) = next else {
                    resync.cursor = usable;
                    break;
                };
                if max_rate > 0 {
                    let allowed = (max_rate as f64 * resync.started.elapsed().as_secs_f64()) as u64
                        + RESYNC_REQUEST_BYTES;
                    if resync.requested + len > allowed {
                        break;
                    }
                }
                resync.requested += len;
                let range = Range {
                    volume: local.engine.number,
                    offset,
                    length: len as u32,
                };
                let seq = link.next_seq();
                resync.outstanding.insert(seq, range);
                local.engine.resync_watch().requested(seq, offset, len);
                resync.cursor = offset + len;
                link.send(Frame::new(
                    Kind::ResyncRequest,
                    0,
                    seq,
                    Bytes::copy_from_slice(&range.encode()),
                    None,
                ));
            }
            if resync.outstanding.is_empty() && resync.cursor >= usable {
                if backing.out_of_sync_bytes(resync.source) > 0 {
                    // Writes that failed toward the source meanwhile: another round.
                    resync.cursor = 0;
                    continue;
                }
                let _ = self.events.send(Event::Tick);
            }
        }
    }

    /// The source side: read the range (ordered against application writes) and send it.
    fn serve_resync(&mut self, link: &Arc<PeerLink>, seq: u64, range: Range) {
        let Some(local) = self.volumes.get_mut(&range.volume) else {
            return;
        };
        let engine = local.engine.clone();
        local.serving.insert((link.node_id(), seq), range);
        let link = link.clone();
        tokio::spawn(async move {
            let guard = engine
                .conflicts()
                .acquire(range.offset, u64::from(range.length))
                .await;
            match engine.local_read(range.offset, range.length).await {
                Ok(data) => {
                    // Queued while the range is held: an application write to it goes out
                    // after this frame, and the target applies them in that order.
                    link.send(Frame::new(
                        Kind::ResyncData,
                        0,
                        seq,
                        Bytes::copy_from_slice(&range.encode()),
                        Some(data),
                    ));
                }
                Err(e) => warn!(error = %e, "reading for a resync failed"),
            }
            drop(guard);
        });
    }

    /// The target side: write the data in arrival order, clear the bits, acknowledge.
    fn resync_data(
        &mut self,
        link: &Arc<PeerLink>,
        seq: u64,
        range: Range,
        data: Bytes,
        reservation: Option<Reservation>,
    ) {
        let node = link.node_id();
        let Some(local) = self.volumes.get_mut(&range.volume) else {
            return;
        };
        let Some(resync) = local.resync.as_mut() else {
            return;
        };
        if resync.source != node || resync.outstanding.remove(&seq).is_none() {
            return;
        }
        let engine = local.engine.clone();
        if !engine.resync_watch().answered(seq) {
            // An application write of another member touched the range since it was asked
            // for: the reply may be older than it. The bits stay; the next round asks again.
            debug!(
                peer = node,
                offset = range.offset,
                length = range.length,
                "resync reply older than an application write: asked again later"
            );
            let _ = self.events.send(Event::Tick);
            return;
        }
        let reservation = reservation.unwrap_or_else(|| {
            engine
                .conflicts()
                .reserve(range.offset, u64::from(range.length))
        });
        let (link, events) = (link.clone(), self.events.clone());
        tokio::spawn(async move {
            let guard = reservation.wait().await;
            // What writes of other members put here in part of these blocks is newer than
            // what the source may have read (`resync_watch`).
            let (data, laid_over) = match engine.lay_over_written_in_part(range.offset, data).await
            {
                Ok(laid) => laid,
                Err(e) => {
                    warn!(error = %e, offset = range.offset, "reading bytes to keep over resync data failed: asked again later");
                    let _ = events.send(Event::Tick);
                    return;
                }
            };
            match engine.apply_resync_write(guard, range.offset, data).await {
                Ok(()) => {
                    if let Some(backing) = engine.backing() {
                        backing.mark_in_sync(node, range.offset, u64::from(range.length));
                        backing.start_writeback(range.offset, u64::from(range.length));
                    }
                    let mut ack = BytesMut::zeroed(4);
                    ack[..2].copy_from_slice(&range.volume.to_le_bytes());
                    link.send(Frame::new(Kind::ResyncDone, 0, seq, ack.freeze(), None));
                }
                Err(e) => {
                    engine.resync_watch().keep_again(&laid_over);
                    warn!(error = %e, "writing resync data failed");
                }
            }
            let _ = events.send(Event::Tick);
        });
    }

    /// Finishes the resyncs whose every block arrived.
    async fn finish_resyncs(&mut self) {
        self.end_tainted_passes();
        let me = self.me();
        let mut finished = false;
        for local in self.volumes.values_mut() {
            let Some(resync) = &local.resync else {
                continue;
            };
            let Some(backing) = local.engine.backing().cloned() else {
                continue;
            };
            if resync.tainted
                || !resync.bitmap_complete
                || !resync.outstanding.is_empty()
                || backing.out_of_sync_bytes(resync.source) > 0
            {
                continue;
            }
            let Ok(source_id) = NodeId::new(u32::from(resync.source)) else {
                continue;
            };
            // The source's newest generations, not those of the resync's start: a Primary
            // source may have started a generation meanwhile, whose writes this member got as
            // a replication target. Finishing on the older one left this member behind a
            // generation it holds the data of, and a later handshake could make it the target
            // of a peer that missed those writes.
            let latest = self
                .peers
                .get(&resync.source)
                .and_then(|peer| peer.volumes.get(&local.engine.number))
                .and_then(|volume| volume.generations.clone())
                .filter(|generations| !generations.current.is_just_created());
            let (source_generations, start_current) = (
                latest.unwrap_or_else(|| resync.source_generations.clone()),
                resync.start_current,
            );
            let peers_on_source: NodeMask = NodeMask::default();
            if backing
                .sync()
                .await
                .and(
                    backing
                        .update_superblock(|sb| {
                            sb.generations.finish_resync_as_target(
                                me,
                                source_id,
                                &source_generations,
                                start_current,
                                peers_on_source,
                            );
                            sb.flags.insert(
                                crate::metadata::MdFlags::CONSISTENT
                                    | crate::metadata::MdFlags::WAS_UP_TO_DATE,
                            );
                        })
                        .await,
                )
                .is_ok()
            {
                info!(
                    source = resync.source,
                    volume = local.engine.number,
                    bytes = resync.total_bytes,
                    "resync finished"
                );
                let source = resync.source;
                local.resync = None;
                local.disk = DiskState::UpToDate;
                if let Some(peer) = self.peers.get_mut(&source)
                    && let Some(volume) = peer.volumes.get_mut(&local.engine.number)
                {
                    volume.replication = Replication::Established;
                }
                // The resyncs that waited: a peer in the generation this member now holds has
                // its data (it and the source were in sync), so nothing is to be fetched
                // from it; any other is decided again on a fresh connection.
                let current = backing.generations().current;
                for (node, peer) in self.peers.iter_mut() {
                    let Some(volume) = peer.volumes.get_mut(&local.engine.number) else {
                        continue;
                    };
                    if *node == source || volume.replication != Replication::PausedSyncTarget {
                        continue;
                    }
                    let same = volume
                        .generations
                        .as_ref()
                        .is_some_and(|g| g.current == current);
                    if same {
                        backing.with_bitmap(*node, |b| b.clear_all());
                        volume.replication = Replication::Established;
                        info!(
                            peer = *node,
                            volume = local.engine.number,
                            "paused resync not needed: the peer holds the same generation"
                        );
                    } else if let Some(link) = peer.link.clone() {
                        info!(
                            peer = *node,
                            volume = local.engine.number,
                            "paused resync: reconnecting to decide it again"
                        );
                        link.close();
                    }
                }
                finished = true;
            }
        }
        if finished {
            self.broadcast_state();
        }
    }

    /// The tainted passes (see [`Machine::check_resync_writers`]) whose every block arrived:
    /// held while their Primary still writes without this member, else begun again in full
    /// from the same source, which now holds every write.
    fn end_tainted_passes(&mut self) {
        let ended: Vec<(u16, u8)> = self
            .volumes
            .values()
            .filter_map(|local| {
                let resync = local.resync.as_ref()?;
                let backing = local.engine.backing()?;
                (resync.tainted
                    && resync.bitmap_complete
                    && resync.outstanding.is_empty()
                    && backing.out_of_sync_bytes(resync.source) == 0)
                    .then_some((local.engine.number, resync.source))
            })
            .collect();
        let mut again = false;
        for (number, source) in ended {
            let missed = self.writer_missed_by_resync(number, source);
            let Some(local) = self.volumes.get_mut(&number) else {
                continue;
            };
            let Some(backing) = local.engine.backing().cloned() else {
                continue;
            };
            let Some(resync) = local.resync.as_mut() else {
                continue;
            };
            match missed {
                Some(writer) => {
                    if resync.held_by != Some(writer) {
                        resync.held_by = Some(writer);
                        info!(
                            source,
                            writer,
                            volume = number,
                            "every block arrived, but the Primary writes without this member: the resync is held until that Primary resyncs this member or stops writing"
                        );
                    }
                }
                None => {
                    backing.with_bitmap(source, |b| b.set_all());
                    resync.full = true;
                    resync.tainted = false;
                    resync.held_by = None;
                    resync.cursor = 0;
                    resync.total_bytes = backing.out_of_sync_bytes(source);
                    resync.started = Instant::now();
                    resync.requested = 0;
                    info!(
                        source,
                        volume = number,
                        "no Primary writes without this member now: the resync runs again in full from the same source"
                    );
                    again = true;
                }
            }
        }
        if again {
            self.drive_resyncs();
        }
    }

    fn promote(&mut self, reply: oneshot::Sender<Result<(), IoError>>) {
        if self.primary {
            let _ = reply.send(Ok(()));
            return;
        }
        if let Some(waiting) = self.promoting.as_mut() {
            waiting.push(reply);
            return;
        }
        if let Err(refusal) = self.may_promote() {
            let _ = reply.send(Err(refusal));
            return;
        }
        self.promoting = Some(vec![reply]);
        let links: Vec<Arc<PeerLink>> =
            self.peers.values().filter_map(|p| p.link.clone()).collect();
        if links.is_empty() {
            let _ = self.events.send(Event::Votes {
                granted: true,
                reason: String::new(),
            });
            return;
        }
        for link in &links {
            let seq = link.next_seq();
            link.send(Frame::new(Kind::PromoteRequest, 0, seq, Bytes::new(), None));
        }
        // The replies arrive as PromoteReply frames; count them in `votes_counted`.
        self.pending_votes = Some(PendingVotes {
            needed: links.len(),
            granted: 0,
            refused: None,
            deadline: Instant::now() + PROMOTE_TIMEOUT,
        });
    }

    fn may_promote(&self) -> Result<(), IoError> {
        if let Some(other) = self.peers.values().find(|p| p.primary) {
            return Err(IoError::ReadOnly(format!(
                "'{}' is Primary",
                other.node_name
            )));
        }
        if !self.quorum.has_quorum {
            return Err(IoError::Io(format!("no quorum ({:?})", self.quorum.reason)));
        }
        for local in self.volumes.values() {
            let reachable = local.disk == DiskState::UpToDate
                || self.peers.values().any(|p| {
                    p.link.is_some()
                        && p.volumes
                            .get(&local.engine.number)
                            .is_some_and(|v| self.peer_disk(p, v) == DiskState::UpToDate)
                });
            if !reachable {
                return Err(IoError::Io(format!(
                    "volume {} has no UpToDate data within reach",
                    local.engine.number
                )));
            }
        }
        Ok(())
    }

    async fn votes_counted(&mut self, granted: bool, reason: String) {
        let Some(votes) = self.pending_votes.as_mut() else {
            if self.promoting.is_some() && granted && reason.is_empty() {
                // No peer to ask.
                self.become_primary().await;
            }
            return;
        };
        if granted {
            votes.granted += 1;
        } else if votes.refused.is_none() {
            votes.refused = Some(reason);
        }
        if votes.granted + usize::from(votes.refused.is_some()) < votes.needed
            && votes.refused.is_none()
        {
            return;
        }
        let votes = self.pending_votes.take().expect("checked");
        match votes.refused {
            None => self.become_primary().await,
            Some(reason) => {
                self.promotion_failed(IoError::ReadOnly(format!("promotion refused: {reason}")))
            }
        }
    }

    fn promotion_failed(&mut self, error: IoError) {
        for waiter in self.promoting.take().unwrap_or_default() {
            let _ = waiter.send(Err(error.clone()));
        }
        for link in self.peers.values().filter_map(|p| p.link.clone()) {
            link.send(Frame::new(Kind::Demoted, 0, 0, Bytes::new(), None));
        }
    }

    async fn become_primary(&mut self) {
        for local in self.volumes.values_mut() {
            if let Some(backing) = local.engine.backing().cloned() {
                // The new generation starts with the first write, not now: a member promoted
                // that never writes causes no false split brain.
                backing.note_promoted();
                let result = backing
                    .update_superblock(|sb| {
                        sb.generations.set_primary(true);
                        sb.flags.insert(crate::metadata::MdFlags::PRIMARY);
                        sb.flags.remove(crate::metadata::MdFlags::AL_CLEAN);
                    })
                    .await;
                if let Err(e) = result {
                    self.promotion_failed(e);
                    return;
                }
            }
        }
        self.primary = true;
        self.idle_since = None;
        // A user that came and went before its frontend reported it (a mount, a write and an
        // umount between two polls of the block device) leaves no usage change behind: the
        // idle clock starts now, or this member would stay Primary for good.
        self.usage_changed();
        info!("promoted to Primary");
        // The view first: a waiter reads it as soon as it hears the promotion succeeded.
        self.publish();
        for waiter in self.promoting.take().unwrap_or_default() {
            let _ = waiter.send(Ok(()));
        }
        self.broadcast_state();
    }

    /// Whose writes this member applies: its own when it is Primary, else those of a Primary
    /// it is connected to, else nobody's.
    fn writer(&self) -> Option<u8> {
        if self.primary {
            return Some(self.config.node_id);
        }
        self.peers
            .values()
            .find(|p| p.primary && p.is_connected())
            .map(|p| p.node_id)
    }

    /// The Primary whose writes reach the source of `volume`'s resync but not this member, if
    /// there is one now: the source says it applies a third member's writes, and this member
    /// is not that Primary's replication target (not connected to it, or connected without a
    /// handshake that made it one).
    fn writer_missed_by_resync(&self, number: u16, source: u8) -> Option<u8> {
        let source_peer = self.peers.get(&source)?;
        let writer = source_peer.writer?;
        if writer == source || writer == self.config.node_id {
            return None;
        }
        let targeted = self.peers.get(&writer).is_some_and(|w| {
            w.is_connected()
                && w.volumes.get(&number).is_some_and(|v| {
                    matches!(
                        v.replication,
                        Replication::Established
                            | Replication::SyncTarget
                            | Replication::PausedSyncTarget
                    )
                })
        });
        (!targeted).then_some(writer)
    }

    /// Taints every resync whose source applies writes of a Primary that does not send them
    /// to this member. Such a source reads a block for this member once; a write it applies
    /// to that block afterwards never reaches here, so the pass cannot end with this member
    /// UpToDate: it is held at its end until the Primary's own resync replaces it, or redone
    /// in full once no Primary writes without this member (`finish_resyncs`).
    fn check_resync_writers(&mut self) {
        let running: Vec<(u16, u8)> = self
            .volumes
            .values()
            .filter_map(|v| v.resync.as_ref().map(|r| (v.engine.number, r.source)))
            .collect();
        for (number, source) in running {
            let Some(writer) = self.writer_missed_by_resync(number, source) else {
                continue;
            };
            if let Some(resync) = self
                .volumes
                .get_mut(&number)
                .and_then(|v| v.resync.as_mut())
                && !resync.tainted
            {
                resync.tainted = true;
                info!(
                    source,
                    writer,
                    volume = number,
                    "the resync source applies writes of a Primary this member does not get: this pass will not make the disk UpToDate"
                );
            }
        }
    }

    /// The diskful peers this member cannot replicate to now.
    fn behind(&self) -> BTreeSet<u8> {
        self.peers
            .values()
            .filter(|p| !p.diskless && p.link.as_ref().is_none_or(|l| l.is_closed()))
            .map(|p| p.node_id)
            .collect()
    }

    /// The diskful members the Primary `primary` writes without, as far as this member knows:
    /// those recorded Outdated (a Primary announces each before it writes without it), other
    /// than this member and the Primary. This member records in its bitmaps what they miss of
    /// that Primary's writes, and they are the peers it does not reach when it adopts the
    /// Primary's new generation.
    fn written_without(&self, primary: u8) -> NodeMask {
        self.outdated_members
            .nodes()
            .filter(|id| {
                *id != self.config.node_id
                    && *id != primary
                    && self.peers.get(id).is_some_and(|peer| !peer.diskless)
            })
            .filter_map(|id| NodeId::new(u32::from(id)).ok())
            .collect()
    }

    /// Starts a round that outdates the members this Primary writes without (see
    /// [`QuorumRound`]).
    fn start_quorum_round(&mut self) {
        self.last_round += 1;
        let id = self.last_round;
        let outdated: BTreeSet<u8> = self
            .outdated_announced
            .union(&self.behind())
            .copied()
            .collect();
        let payload = outdated_mask(&outdated);
        for link in self.peers.values().filter_map(|p| p.link.as_ref()) {
            if !link.is_closed() {
                link.send(Frame::new(Kind::Outdated, 0, id, payload.clone(), None));
            }
        }
        debug!(
            round = id,
            ?outdated,
            "outdating the members written without"
        );
        self.quorum_round = Some(QuorumRound {
            id,
            outdated,
            answered: BTreeSet::new(),
            waiters: Vec::new(),
        });
    }

    /// A member is back in sync with this one: the others no longer need to refuse it.
    fn forget_outdated(&mut self, node: u8) {
        if !self.outdated_announced.remove(&node) {
            return;
        }
        let payload = outdated_mask(&self.outdated_announced);
        for link in self.peers.values().filter_map(|p| p.link.as_ref()) {
            link.send(Frame::new(Kind::Outdated, 0, 0, payload.clone(), None));
        }
    }

    /// An `Outdated` from `node` (a Primary, or a member relaying one).
    async fn outdated_received(&mut self, link: &Arc<PeerLink>, seq: u64, mask: u32) {
        let node = link.node_id();
        let named: BTreeSet<u8> = (0..gi::MAX_NODES as u8)
            .filter(|id| mask & (1 << id) != 0)
            .collect();
        let from_primary = self.peers.get(&node).is_some_and(|p| p.primary);
        if named.contains(&self.config.node_id) {
            self.outdate_self().await;
        }
        let mut changed = false;
        for id in named
            .iter()
            .filter(|id| **id != self.config.node_id && **id != node)
        {
            let known = self.generations_of_outdated(*id, node);
            if self.outdated_members.record(*id, known) {
                info!(
                    peer = id,
                    by = node,
                    "a Primary writes without this peer: it is Outdated"
                );
                changed = true;
            }
        }
        if from_primary {
            // The Primary's whole set: whom it no longer names is back in sync with it.
            changed |= self.outdated_members.retain_named(&named);
        }
        // On disk before the answer: the Primary writes on once the answers make a quorum,
        // and a restart of this member must not forget whom they left behind.
        let stored = !changed || self.store_outdated().await;
        // Published before the answer: a diskless Primary writes once the answers make a
        // quorum, and its writes must find the members it writes without recorded here.
        self.publish();
        if seq != 0 {
            // Relayed once, so a member cut off from the Primary but not from this one learns
            // that it is Outdated; then answered.
            for peer in self.peers.values().filter(|p| p.node_id != node) {
                if let Some(other) = &peer.link {
                    other.send(Frame::new(
                        Kind::Outdated,
                        0,
                        0,
                        Bytes::copy_from_slice(&mask.to_le_bytes()),
                        None,
                    ));
                }
            }
            if stored {
                link.send(Frame::new(Kind::Pong, 0, seq, Bytes::new(), None));
            } else {
                // Unanswered, the Primary's writes would wait for good; gone, it counts this
                // member out of its quorum at once.
                warn!(
                    peer = node,
                    "closing the connection to the Primary: this member cannot keep the record it asks for"
                );
                link.close();
            }
        }
    }

    /// The generations `member` may hold, as far as this member knows, now that `sender` says
    /// a Primary writes without it: those of its own last State, and every generation of the
    /// sender's and of any Primary's last State — the member may have adopted a Primary's
    /// generations since its last State without saying so, and the Primary announced each of
    /// them here before its `Outdated`. Not this member's own: a disk recording for a diskless
    /// Primary started its generation because the member was gone (see `crate::outdated`).
    fn generations_of_outdated(&self, member: u8, sender: u8) -> BTreeMap<u16, KnownGenerations> {
        let mut known: BTreeMap<u16, KnownGenerations> = BTreeMap::new();
        let sources = self
            .peers
            .values()
            .filter(|p| p.node_id == member || p.node_id == sender || p.primary);
        for peer in sources {
            for (number, volume) in &peer.volumes {
                if let Some(generations) = &volume.generations {
                    known
                        .entry(*number)
                        .or_default()
                        .extend(generations_in(generations));
                }
            }
        }
        known.retain(|_, generations| !generations.is_empty());
        known
    }

    /// Writes the record of Outdated members to its file; a failure is logged and returns
    /// false. The record in memory stays as it is either way: a member that could not store an
    /// Outdated member refuses it all the same, and does not confirm it to the Primary.
    async fn store_outdated(&self) -> bool {
        let (file, record) = (self.outdated_file.clone(), self.outdated_members.clone());
        let result = tokio::task::spawn_blocking(move || file.store(&record))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|stored| stored);
        match result {
            Ok(()) => true,
            Err(error) => {
                warn!(
                    path = ?self.outdated_file.path(),
                    %error,
                    "cannot store the members recorded Outdated"
                );
                false
            }
        }
    }

    /// A Primary writes without this member: its data is Outdated until it resyncs or meets an
    /// UpToDate peer on its generation. Kept on disk (consistent, not was-up-to-date), so that a
    /// restart does not make it UpToDate again.
    async fn outdate_self(&mut self) {
        if self.primary {
            return;
        }
        let mut changed = false;
        for local in self.volumes.values_mut() {
            if local.disk != DiskState::UpToDate {
                continue;
            }
            if let Some(backing) = local.engine.backing() {
                let _ = backing
                    .update_superblock(|sb| {
                        sb.flags.remove(crate::metadata::MdFlags::WAS_UP_TO_DATE)
                    })
                    .await;
                local.disk = DiskState::Outdated;
                changed = true;
            }
        }
        if changed {
            warn!("a Primary writes without this member: its data is Outdated until it resyncs");
            self.broadcast_state();
        }
    }

    /// Ends the round of pings when its answers make a quorum (the waiting writes go on), or
    /// when quorum is lost (they fail). A Primary whose writes fail for lack of quorum may have
    /// written them to its own disk: it marks itself as having lost quorum, so that at the next
    /// handshake with a peer on the same generation it is the sync target (DRBD's lost-quorum
    /// rule) and those blocks are copied back from the peer.
    async fn settle_quorum_round(&mut self) {
        let Some(round) = &self.quorum_round else {
            return;
        };
        let result = if !self.quorum.has_quorum {
            Err(IoError::Io(format!(
                "no quorum ({:?}): the members left do not make a majority",
                self.quorum.reason
            )))
        } else {
            let answered = round.answered.clone();
            let members = self.members(|peer| {
                answered.contains(&peer.node_id)
                    && peer.link.as_ref().is_some_and(|l| !l.is_closed())
            });
            if !quorum::has_quorum(&members, &policy(&self.config)).has_quorum {
                return;
            }
            Ok(())
        };
        let round = self.quorum_round.take().expect("checked");
        if result.is_ok() && self.primary {
            self.outdated_announced = round.outdated.clone();
        }
        if result.is_err() && self.primary {
            for local in self.volumes.values() {
                if let Some(backing) = local.engine.backing() {
                    let _ = backing
                        .update_superblock(|sb| {
                            sb.generations.flags.insert(GiFlags::PRIMARY_LOST_QUORUM)
                        })
                        .await;
                }
            }
        }
        debug!(
            round = round.id,
            ok = result.is_ok(),
            "quorum round settled"
        );
        for waiter in round.waiters {
            let _ = waiter.send(result.clone());
        }
        self.publish();
    }

    fn in_use(&self) -> bool {
        self.volumes.values().any(|v| v.engine.sessions() > 0)
    }

    fn usage_changed(&mut self) {
        if self.in_use() {
            self.idle_since = None;
        } else if self.primary && self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
    }

    /// Lets go of the volumes: every write this Primary made is first put on stable storage on
    /// every replica — each connected peer flushes what it acknowledged, and the local
    /// superblock write below ends with `fdatasync`, which covers the data written before it.
    /// Whoever takes over next (another Primary, a snapshot of a Secondary's backing volume,
    /// a reader of the file below a loop device) finds the data on the device, not in a cache
    /// of this member's writes.
    async fn demote(&mut self) {
        let flushes: Vec<_> = self
            .peers
            .values()
            .filter_map(|p| p.link.as_ref()?.flush_unflushed())
            .collect();
        if !flushes.is_empty() {
            let wait = DEMOTE_FLUSH_TIMEOUT;
            match tokio::time::timeout(wait, futures::future::join_all(flushes)).await {
                Ok(results) => {
                    for error in results.into_iter().filter_map(Result::err) {
                        // The writes stay recorded as unflushed on that link: marked out of
                        // sync toward the peer if its connection ends.
                        warn!(%error, "a peer did not flush before the demotion");
                    }
                }
                Err(_) => warn!(
                    "peers did not answer the flush before the demotion in {wait:?}; what they did not flush is resynced to them if they disconnect"
                ),
            }
        }
        for local in self.volumes.values() {
            if let Some(backing) = local.engine.backing() {
                let _ = backing.write_bitmaps().await;
                let _ = backing
                    .update_superblock(|sb| {
                        sb.generations.set_primary(false);
                        sb.flags.remove(crate::metadata::MdFlags::PRIMARY);
                    })
                    .await;
            }
        }
        self.primary = false;
        // Announced again at the next promotion, if still written without.
        self.outdated_announced.clear();
        info!("demoted to Secondary (no longer in use)");
        for link in self.peers.values().filter_map(|p| p.link.clone()) {
            link.send_peer_ack();
            link.send(Frame::new(Kind::Demoted, 0, 0, Bytes::new(), None));
        }
    }

    /// Whether something waits on a clock that [`Machine::tick`] reads: the Primary's
    /// demotion grace and its peers' flushes, a promotion's votes, a resync's pace and end,
    /// writes a peer acknowledged and has not flushed (a demotion may leave some).
    fn wants_tick(&self) -> bool {
        self.primary
            || self.promoting.is_some()
            || self.pending_votes.is_some()
            || self.volumes.values().any(|v| v.resync.is_some())
            || self
                .peers
                .values()
                .filter_map(|p| p.link.as_ref())
                .any(|l| l.has_unflushed())
            || self.outdated_resync_source().is_some()
    }

    /// An UpToDate diskful peer, linked with no resync between it and this member, that an
    /// Outdated disk of this member can resync from now: it applies no Primary's writes that
    /// do not reach this member too (else the pass could not end UpToDate).
    fn outdated_resync_source(&self) -> Option<u8> {
        self.volumes
            .values()
            .filter(|local| local.disk == DiskState::Outdated && local.resync.is_none())
            .find_map(|local| {
                let number = local.engine.number;
                self.peers
                    .values()
                    .filter(|peer| !peer.diskless && peer.is_connected() && peer.state_seen)
                    .find(|peer| {
                        peer.volumes.get(&number).is_some_and(|v| {
                            v.replication == Replication::Established
                                && self.peer_disk(peer, v) == DiskState::UpToDate
                        }) && self.writer_missed_by_resync(number, peer.node_id).is_none()
                    })
                    .map(|peer| peer.node_id)
            })
    }

    /// A disk outdated while it stayed linked to an UpToDate peer (a Primary wrote without
    /// this member, which its peers kept reaching) has no handshake to decide its resync: the
    /// link to that peer is renewed, and the handshake resyncs from the peer's bitmap. Done
    /// once no Primary writes without this member; again after [`OUTDATED_RESYNC_RETRY`],
    /// doubling, should a handshake not start a resync (a peer that holds this member Outdated
    /// on the same generation: safe, and left to the operator if it lasts).
    fn resync_outdated_disks(&mut self) {
        if self
            .volumes
            .values()
            .all(|local| local.disk != DiskState::Outdated)
        {
            for peer in self.peers.values_mut() {
                peer.renewed_to_resync = None;
            }
            return;
        }
        let Some(source) = self.outdated_resync_source() else {
            return;
        };
        let now = Instant::now();
        let Some(peer) = self.peers.get_mut(&source) else {
            return;
        };
        if !renewal_due(
            &mut peer.renewed_to_resync,
            now,
            OUTDATED_RESYNC_RETRY,
            OUTDATED_RESYNC_RETRY_MAX,
        ) {
            return;
        }
        if let Some(link) = &peer.link {
            info!(
                peer = source,
                next_after = ?peer.renewed_to_resync.map(|(_, wait)| wait),
                "this member's disk is Outdated and the peer is UpToDate: reconnecting to resync from it"
            );
            link.close();
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        // Liveness is each connection's own (`peer::keepalive`); the peers' flushes are due
        // here, and the `PeerAck`s of writes settled since the last one.
        for link in self.peers.values().filter_map(|p| p.link.as_ref()) {
            if link.flush_due(now) {
                link.flush_acknowledged();
            }
            link.send_peer_ack();
        }
        if let Some(votes) = &self.pending_votes
            && now > votes.deadline
        {
            self.pending_votes = None;
            self.promotion_failed(IoError::Io(
                "peers did not answer the promotion in time".to_string(),
            ));
        }
        if self.primary
            && let Some(since) = self.idle_since
            && now.duration_since(since) > DEMOTE_GRACE
            && !self.in_use()
            && self
                .volumes
                .values()
                .all(|v| v.engine.may_demote(now, DEMOTE_GRACE))
        {
            self.idle_since = None;
            self.demote().await;
        }
        self.drive_resyncs();
        self.checkpoint_resyncs(now);
        self.finish_resyncs().await;
        self.resync_outdated_disks();
        self.reconcile_disks();
    }

    /// Every [`RESYNC_CHECKPOINT`], a resync target's data is synced and then its bitmaps
    /// written, in a task: a bit cleared on disk before the block it stands for is durable
    /// would lose that block to a power loss.
    fn checkpoint_resyncs(&mut self, now: Instant) {
        for local in self.volumes.values_mut() {
            let (Some(resync), Some(backing)) = (local.resync.as_mut(), local.engine.backing())
            else {
                continue;
            };
            if !resync.bitmap_complete
                || now.duration_since(resync.checkpointed) < RESYNC_CHECKPOINT
            {
                continue;
            }
            resync.checkpointed = now;
            let backing = backing.clone();
            let number = local.engine.number;
            tokio::spawn(
                async move {
                    let written = match backing.sync().await {
                        Ok(()) => backing.write_bitmaps().await,
                        Err(error) => Err(error),
                    };
                    match written {
                        Ok(()) | Err(IoError::Shutdown) => {}
                        Err(error) => warn!(volume = number, %error, "cannot put the resync's progress on disk"),
                    }
                }
                .in_current_span(),
            );
        }
    }

    /// The extents of `volume` holding a Primary's writes that no `PeerAck` confirmed yet
    /// ([`crate::peer_ack`]): they stay in the activity log.
    fn unconfirmed_extents(&self, volume: u16) -> BTreeSet<u32> {
        let mut extents = BTreeSet::new();
        for link in self.peers.values().filter_map(|p| p.link.as_ref()) {
            link.unconfirmed_extents(volume, &mut extents);
        }
        extents
    }

    /// Starts a cooling pass over the activity log of every local disk
    /// ([`AL_COOL_INTERVAL`]), in a task of its own: it may wait for a flush.
    fn cool_activity_logs(&mut self) {
        let volumes: Vec<(u16, Arc<Backing>, BTreeSet<u32>)> = self
            .volumes
            .values()
            .filter_map(|local| {
                let backing = local.engine.backing()?;
                backing.has_hot_extents().then(|| {
                    let number = local.engine.number;
                    (number, backing.clone(), self.unconfirmed_extents(number))
                })
            })
            .collect();
        if volumes.is_empty() {
            self.hot_left.send_replace(false);
            return;
        }
        if self.cooling.swap(true, Ordering::AcqRel) {
            return;
        }
        let (cooling, hot_left) = (self.cooling.clone(), self.hot_left.clone());
        tokio::spawn(
            async move {
                for (number, backing, keep) in &volumes {
                    let (number, backing) = (*number, backing);
                    match backing.cool(keep, false).await {
                        Ok(0) => {}
                        Ok(cooled) => debug!(volume = number, cooled, "activity log extents cooled"),
                        Err(IoError::Shutdown) => {}
                        Err(error) => warn!(volume = number, %error, "cooling the activity log failed: its extents stay hot"),
                    }
                }
                hot_left.send_replace(volumes.iter().any(|(_, b, _)| b.has_hot_extents()));
                cooling.store(false, Ordering::Release);
            }
            .in_current_span(),
        );
    }

    async fn go_down(&mut self) {
        // No request may start from here on: what the bitmaps are about to record is final.
        for local in self.volumes.values() {
            local.engine.set_view(IoView::down());
        }
        if self.primary {
            self.demote().await;
        }
        for local in self.volumes.values() {
            if let Some(backing) = local.engine.backing() {
                if let Err(error) = backing.write_bitmaps().await {
                    warn!(%error, "cannot write the bitmaps before going down: the activity log's extents are resynced at the next attach");
                }
                // A clean stop leaves the log empty, but for the extents of a Primary's writes
                // not confirmed yet: the next attach resyncs what remains.
                let keep = self.unconfirmed_extents(local.engine.number);
                if let Err(error) = backing.cool(&keep, true).await {
                    warn!(%error, "cannot empty the activity log before going down: its extents are resynced at the next attach");
                }
                // What a Primary elsewhere replicated here is in this member's page cache until
                // a flush: on the device before it is handed back to the storage layer.
                if let Err(error) = backing.sync().await {
                    warn!(%error, "cannot flush the backing device before going down");
                }
            }
        }
        for peer in self.peers.values() {
            if let Some(link) = &peer.link {
                link.close();
            }
        }
        // Whatever still holds a volume (a frontend that outlives the resource, a task winding
        // down), the backing devices are closed now: the satellite deletes them next.
        for local in self.volumes.values() {
            if let Some(backing) = local.engine.backing() {
                backing.release();
            }
        }
        info!("resource down");
    }

    /// A peer's disk as this member takes it: what the peer says, except that one recorded
    /// Outdated (a Primary wrote without it) is not UpToDate, whatever it believes — cut off
    /// at the time, it may never have heard.
    fn peer_disk(&self, peer: &PeerState, volume: &PeerVolume) -> DiskState {
        if volume.disk == DiskState::UpToDate && self.outdated_members.contains(peer.node_id) {
            DiskState::Outdated
        } else {
            volume.disk
        }
    }

    /// Every member for the quorum computation, a peer counted as reachable when `reachable`
    /// says so.
    fn members(&self, reachable: impl Fn(&PeerState) -> bool) -> Vec<Member> {
        let mut members = vec![Member {
            node_id: self.me(),
            diskful: self.config.diskful(),
            reachable: true,
            disk: disk_for_quorum(
                self.volumes
                    .values()
                    .map(|v| v.disk)
                    .min_by_key(|d| *d as u8)
                    .unwrap_or(DiskState::Diskless),
            ),
        }];
        for peer in self.peers.values() {
            let disk = peer
                .volumes
                .values()
                .map(|v| self.peer_disk(peer, v))
                .min_by_key(|d| *d as u8)
                .map(disk_for_quorum)
                .unwrap_or(if peer.diskless {
                    quorum::DiskState::Diskless
                } else {
                    quorum::DiskState::Unknown
                });
            let reached = reachable(peer);
            members.push(Member {
                node_id: NodeId::new(u32::from(peer.node_id)).expect("checked config"),
                diskful: !peer.diskless,
                reachable: reached,
                disk: if reached {
                    disk
                } else {
                    quorum::DiskState::Unknown
                },
            });
        }
        members
    }

    /// Recomputes quorum and every volume's view, and publishes the status.
    fn publish(&mut self) {
        self.check_resync_writers();
        let writer = self.writer();
        if writer != self.announced_writer {
            self.announced_writer = writer;
            self.broadcast_state();
        }
        let policy = policy(&self.config);
        // A closed link counts as gone at once, before its Disconnected event arrives: the
        // writes that failed on it must not be acknowledged on a quorum that includes it.
        let members = self.members(|peer| peer.link.as_ref().is_some_and(|l| !l.is_closed()));
        if self.primary
            && self.quorum_round.is_none()
            && !self.behind().is_subset(&self.outdated_announced)
        {
            self.start_quorum_round();
        }
        self.quorum = quorum::next_verdict(&self.quorum, self.me(), &members, &policy);
        let writable = self.primary && self.quorum.has_quorum;
        let other_primary = self
            .peers
            .values()
            .find(|p| p.primary)
            .map(|p| p.node_name.clone());
        let primary_peer = self.peers.values().find(|p| p.primary);
        let diskless_primary = primary_peer.is_some_and(|p| p.diskless);
        let missed_by: Vec<u8> = match primary_peer {
            Some(primary) => self
                .written_without(primary.node_id)
                .iter()
                .map(NodeId::get)
                .collect(),
            None => Vec::new(),
        };
        for local in self.volumes.values() {
            let number = local.engine.number;
            let mut targets = Vec::new();
            let mut absent = Vec::new();
            let mut read_from = None;
            for peer in self.peers.values() {
                if peer.diskless {
                    continue;
                }
                let volume = peer.volumes.get(&number);
                match (peer.link.as_ref().filter(|l| !l.is_closed()), volume) {
                    // A peer without its disk (detached) has nowhere to put a write.
                    (Some(link), Some(v))
                        if v.disk != DiskState::Diskless
                            && matches!(
                                v.replication,
                                Replication::Established
                                    | Replication::SyncTarget
                                    | Replication::SyncSource
                                    | Replication::PausedSyncTarget
                            ) =>
                    {
                        targets.push(link.clone());
                        if self.peer_disk(peer, v) == DiskState::UpToDate && read_from.is_none() {
                            read_from = Some(link.clone());
                        }
                    }
                    _ => absent.push(peer.node_id),
                }
            }
            let refuse_writes = if let Some(other) = &other_primary {
                Some(IoError::ReadOnly(format!("'{other}' is Primary")))
            } else if !self.quorum.has_quorum {
                Some(IoError::Io(format!("no quorum ({:?})", self.quorum.reason)))
            } else {
                None
            };
            local.engine.set_view(IoView {
                primary: writable,
                refuse_writes: if writable { None } else { refuse_writes },
                local_up_to_date: local.disk == DiskState::UpToDate,
                targets,
                absent,
                read_from,
                confirm_first: self.quorum_round.is_some(),
                missed_by: if local.engine.backing().is_some() {
                    missed_by.clone()
                } else {
                    Vec::new()
                },
                missed_by_diskless_primary: diskless_primary,
            });
        }
        // Watchers (the daemon's event stream, `wait_for`) hear of changes only: the state
        // machine publishes after every event, most of which change nothing anyone sees.
        let snapshot = self.snapshot();
        if let Some(status) = &self.status {
            status.send_if_modified(|published| {
                let changed = *published != snapshot;
                if changed {
                    *published = snapshot;
                }
                changed
            });
        }
    }

    fn snapshot(&self) -> ResourceStatus {
        ResourceStatus {
            name: self.config.name.clone(),
            node_name: self.config.node_name.clone(),
            node_id: self.config.node_id,
            role: if self.primary { "Primary" } else { "Secondary" }.to_string(),
            quorum: self.quorum.has_quorum,
            in_use: self.in_use(),
            volumes: self
                .volumes
                .values()
                .map(|v| VolumeStatus {
                    number: v.engine.number,
                    disk: v.disk.as_str().to_string(),
                    usable_bytes: v.engine.size(),
                    hot_extents: 0,
                })
                .collect(),
            peers: self.peers.values().map(|p| self.peer_status(p)).collect(),
            error: self.error.clone(),
        }
    }

    fn peer_status(&self, p: &PeerState) -> PeerStatus {
        let (connection, connection_reason) = match &p.connection {
            Connection::Connecting => ("Connecting", None),
            Connection::Connected => ("Connected", None),
            Connection::StandAlone(reason) => ("StandAlone", Some(reason.clone())),
        };
        let role = if p.link.is_none() {
            "Unknown"
        } else if p.primary {
            "Primary"
        } else {
            "Secondary"
        };
        let volumes = self
            .volumes
            .values()
            .map(|local| {
                let number = local.engine.number;
                let remote = p.volumes.get(&number).filter(|_| p.link.is_some());
                let out_of_sync = local
                    .engine
                    .backing()
                    .map(|b| b.out_of_sync_bytes(p.node_id))
                    .unwrap_or(0);
                let done_percent = local
                    .resync
                    .as_ref()
                    .filter(|r| r.source == p.node_id && r.total_bytes > 0)
                    .map(|r| {
                        100.0 * (r.total_bytes.saturating_sub(out_of_sync)) as f64
                            / r.total_bytes as f64
                    });
                let peer_disk = match remote {
                    Some(v) => self.peer_disk(p, v).as_str(),
                    None if p.link.is_some() && p.diskless => "Diskless",
                    None => "DUnknown",
                };
                PeerVolumeStatus {
                    number,
                    replication: remote
                        .map(|v| v.replication.as_str())
                        .unwrap_or("Off")
                        .to_string(),
                    peer_disk: peer_disk.to_string(),
                    done_percent,
                    out_of_sync_kib: out_of_sync / 1024,
                    held_by: local
                        .resync
                        .as_ref()
                        .filter(|r| r.source == p.node_id)
                        .and_then(|r| r.held_by)
                        .and_then(|writer| self.peers.get(&writer))
                        .map(|writer| writer.node_name.clone()),
                }
            })
            .collect();
        PeerStatus {
            node_name: p.node_name.clone(),
            node_id: p.node_id,
            connection: connection.to_string(),
            connection_reason,
            role: role.to_string(),
            volumes,
        }
    }
}

/// Whether a peer's generations are a first generation declared for a new volume.
fn first_declared(generations: &GenerationSet) -> bool {
    !generations.current.is_just_created()
}

/// Sends this member's bitmap toward `node` to it, in chunks.
fn send_bitmap(link: &Arc<PeerLink>, volume: u16, backing: &Backing, node: u8) {
    let words: Vec<u64> = backing
        .with_bitmap(node, |b| b.encode())
        .unwrap_or_default()
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let mut first = 0usize;
    loop {
        let end = (first + wire::BITMAP_CHUNK_WORDS).min(words.len());
        let chunk = BitmapChunk {
            volume,
            first_word: first as u64,
            last: end == words.len(),
            words: words[first..end].to_vec(),
        };
        link.send(Frame::new(Kind::Bitmap, 0, 0, chunk.encode(), None));
        if end == words.len() {
            break;
        }
        first = end;
    }
}

/// A round of promotion votes.
struct PendingVotes {
    needed: usize,
    granted: usize,
    refused: Option<String>,
    deadline: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_back_off_by_doubling_up_to_the_maximum() {
        let (first, max) = (Duration::from_secs(5), Duration::from_secs(12));
        let start = Instant::now();
        let mut renewed = None;
        assert!(renewal_due(&mut renewed, start, first, max));
        assert_eq!(renewed, Some((start, first)));
        assert!(!renewal_due(
            &mut renewed,
            start + Duration::from_secs(4),
            first,
            max
        ));
        let second = start + Duration::from_secs(5);
        assert!(renewal_due(&mut renewed, second, first, max));
        assert_eq!(renewed, Some((second, Duration::from_secs(10))));
        assert!(!renewal_due(
            &mut renewed,
            second + Duration::from_secs(9),
            first,
            max
        ));
        let third = second + Duration::from_secs(10);
        assert!(renewal_due(&mut renewed, third, first, max));
        assert_eq!(renewed, Some((third, max)), "capped");
    }
}
