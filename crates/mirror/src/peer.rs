//! One connection to one peer of a resource: establishing it (dial or accept, `Hello`, mutual
//! authentication with the shared secret), sending (through the connection's [`Outbox`]: a
//! frame alone on the connection is written by its sender, others are batched into vectored
//! writes by a write loop) and receiving (one reader task that decodes frames and hands them
//! on).
//!
//! [`PeerLink`] is the sending side the rest of the engine uses: `send_write`, `send_read` and
//! `send_flush` return futures of the peer's answer, matched by sequence number. When the
//! connection ends, every answer still awaited fails at once, so a write in flight completes
//! without that peer (and marks it out of sync) instead of hanging.
//!
//! Data-path frames (`Write`, `Read`, `Flush` and their answers, and the Primary's `PeerAck`s,
//! [`crate::peer_ack`]) are handled here, against the resource's volumes ([`PeerHandler`]);
//! everything else (states, bitmaps, resync, promotion) goes to the resource actor. A State in which the peer is Primary is the one frame the reader
//! waits on: it reads nothing further until the resource recorded it
//! ([`PeerHandler::primary_state`]), so no write of a generation the Primary just started is
//! applied here before this member's metadata holds that generation.
//!
//! Liveness is here too, as DRBD keeps it: every frame received counts; a connection that
//! received nothing for [`PING_INTERVAL`] sends a `Ping`, and one that still receives nothing
//! for the resource's `ping-timeout` after it is closed. The reader answers a `Ping` itself. An
//! idle connection costs a `Ping` and a `Pong` per interval (whichever side's interval ends
//! first pings; the other hears it), and one carrying writes none; neither wakes the resource
//! actor. Idleness is counted on what is received, not on what is sent: only a frame from the
//! peer says that it is alive, and a member that sends (a Primary writing) without hearing back
//! is exactly the one that must find out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferrite_block::IoError;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::config::PING_INTERVAL;
use crate::conflict::Reservation;
use crate::gi::HandshakeSide;
pub use crate::outbox::Frame;
use crate::outbox::Outbox;
use crate::peer_ack::{Settlements, Unconfirmed, UnconfirmedWrite};
use crate::volume::VolumeEngine;
use crate::wire::{
    self, FLAG_FUA, FLAG_WRITTEN_WITHOUT, HEADER_BYTES, Hello, Kind, Range, WireError,
};

/// How long establishing a connection (connect, hello, authentication) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection waits for its resource to record a Primary's `State` before it reads
/// on ([`PeerHandler::primary_state`]). The resource records it with one superblock write; a
/// resource that takes longer is stuck, and the connection is closed rather than let writes
/// of a generation this member has not recorded be acknowledged.
pub const PRIMARY_STATE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a write a peer acknowledged may stay unconfirmed on its stable storage: the
/// Primary asks each peer to flush at least this often while it writes ([`PeerLink::flush_due`]),
/// so that a peer's power loss costs it at most this much of acknowledged-but-cached writes,
/// all of them marked out of sync toward it ([`PeerLink::take_unflushed`]). DRBD's epochs and
/// barrier acknowledgements do the same job.
pub const PEER_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How many acknowledged bytes make a peer flush due before [`PEER_FLUSH_INTERVAL`]: bounds
/// the writeback a flush waits for and the ranges kept until it is answered.
pub const PEER_FLUSH_BYTES: u64 = 256 << 20;

/// What the reader takes from the socket per system call: a burst of acknowledgements or of
/// small writes arrives with one read instead of three per frame. A frame's data larger than
/// this is read straight into its own buffer.
pub const RECEIVE_BUFFER_BYTES: usize = 256 << 10;

type FrameReader = tokio::io::BufReader<OwnedReadHalf>;

/// An answer awaited from the peer.
enum Pending {
    Ack(oneshot::Sender<Result<(), IoError>>),
    Read(oneshot::Sender<Result<Bytes, IoError>>),
}

/// A replicated write the peer acknowledged (completed on its backing device, which, like a
/// disk with a volatile cache, makes it durable only with its next flush).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcknowledgedWrite {
    pub volume: u16,
    pub offset: u64,
    pub length: u32,
}

/// Writes a peer acknowledged and has not yet confirmed on its stable storage.
#[derive(Default)]
struct Unflushed {
    /// Acknowledged since the last flush was sent.
    open: Vec<AcknowledgedWrite>,
    open_bytes: u64,
    /// When the first of `open` was acknowledged.
    open_since: Option<std::time::Instant>,
    /// Sent before a flush whose answer has not come, by the flush's sequence number.
    flushing: HashMap<u64, Vec<AcknowledgedWrite>>,
}

/// The sending side of a connection to a peer.
pub struct PeerLink {
    node_id: u8,
    node_name: String,
    outbox: Outbox,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Writes received from the peer and not yet answered: an answer sent when none is left
    /// is alone on the connection and is written at once ([`Outbox::send_now`]).
    writes_applying: AtomicUsize,
    next_seq: AtomicU64,
    closed: AtomicBool,
    /// Set when the link is closed: the reader and writer stop and the socket goes.
    closing: tokio::sync::watch::Sender<bool>,
    unflushed: Mutex<Unflushed>,
    /// As the Primary: the writes sent here that have not settled on every target
    /// ([`crate::peer_ack`]).
    settlements: Mutex<Settlements>,
    /// As a Secondary: the writes received from the Primary that no `PeerAck` covered yet.
    unconfirmed: Mutex<Unconfirmed>,
    /// What the first State sent on this connection said of each volume, as the handshake's
    /// [`crate::gi::reconcile`] reads it: the peer decides by that State, so this side must
    /// too, not by what changed since.
    first_state_sent: OnceLock<Vec<(u16, HandshakeSide)>>,
    /// When the link started: what `last_received` counts from.
    started: Instant,
    /// When a frame last arrived, in microseconds since `started`.
    last_received: AtomicU64,
}

fn disconnected() -> IoError {
    IoError::Io("the peer disconnected".to_string())
}

fn errno_error(errno: u32) -> IoError {
    match errno as i32 {
        libc::EROFS => IoError::ReadOnly("refused by the peer".to_string()),
        libc::ENOSPC => IoError::NoSpace("on the peer".to_string()),
        libc::EINVAL => IoError::Invalid("refused by the peer".to_string()),
        other => IoError::Io(format!("on the peer: errno {other}")),
    }
}

impl PeerLink {
    fn new(node_id: u8, node_name: String, socket: OwnedWriteHalf) -> PeerLink {
        PeerLink {
            node_id,
            node_name,
            outbox: Outbox::new(socket),
            pending: Mutex::new(HashMap::new()),
            writes_applying: AtomicUsize::new(0),
            next_seq: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            closing: tokio::sync::watch::Sender::new(false),
            unflushed: Mutex::new(Unflushed::default()),
            settlements: Mutex::new(Settlements::default()),
            unconfirmed: Mutex::new(Unconfirmed::default()),
            first_state_sent: OnceLock::new(),
            started: Instant::now(),
            last_received: AtomicU64::new(0),
        }
    }

    /// A frame arrived.
    fn note_received(&self) {
        let now = self.started.elapsed().as_micros() as u64;
        self.last_received.store(now, Ordering::Relaxed);
    }

    /// When the last frame arrived (the link's start if none did).
    pub fn last_received(&self) -> Instant {
        self.started + Duration::from_micros(self.last_received.load(Ordering::Relaxed))
    }

    pub fn node_id(&self) -> u8 {
        self.node_id
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame. A closed link drops it.
    pub fn send(&self, frame: Frame) -> bool {
        !self.is_closed() && self.outbox.queue(frame)
    }

    /// Sends a frame that is alone on the connection: written at once if nothing else is on
    /// its way (see [`Outbox::send_now`]). A closed link drops it.
    fn send_now(&self, frame: Frame) -> bool {
        !self.is_closed() && self.outbox.send_now(frame)
    }

    /// A fresh sequence number.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    fn request_ack(
        &self,
        kind: Kind,
        flags: u32,
        fixed: Bytes,
        data: Option<Bytes>,
    ) -> oneshot::Receiver<Result<(), IoError>> {
        self.request_ack_as(self.next_seq(), kind, flags, fixed, data)
    }

    fn request_ack_as(
        &self,
        seq: u64,
        kind: Kind,
        flags: u32,
        fixed: Bytes,
        data: Option<Bytes>,
    ) -> oneshot::Receiver<Result<(), IoError>> {
        let (tx, rx) = oneshot::channel();
        let alone = {
            let mut pending = self.pending();
            pending.insert(seq, Pending::Ack(tx));
            pending.len() == 1
        };
        let frame = Frame::new(kind, flags, seq, fixed, data);
        let sent = if alone {
            self.send_now(frame)
        } else {
            self.send(frame)
        };
        if !sent && let Some(Pending::Ack(tx)) = self.pending().remove(&seq) {
            let _ = tx.send(Err(disconnected()));
        }
        rx
    }

    /// Replicates a write; the future resolves when the peer has it on its backing store.
    /// `written_without`: the Primary writes it without a diskful member
    /// ([`FLAG_WRITTEN_WITHOUT`]). Returns the write's sequence number too: once the write
    /// settled on every target, the caller says so ([`PeerLink::write_settled`]).
    pub fn send_write(
        &self,
        volume: u16,
        offset: u64,
        data: Bytes,
        fua: bool,
        written_without: bool,
    ) -> (
        u64,
        impl Future<Output = Result<(), IoError>> + Send + 'static,
    ) {
        let range = Range {
            volume,
            offset,
            length: data.len() as u32,
        };
        // Drawn and registered in one step: a `PeerAck` computed meanwhile cannot cover it.
        let seq = {
            let mut settlements = self.settlements();
            let seq = self.next_seq();
            settlements.sent(seq);
            seq
        };
        let rx = self.request_ack_as(
            seq,
            Kind::Write,
            (if fua { FLAG_FUA } else { 0 })
                | (if written_without {
                    FLAG_WRITTEN_WITHOUT
                } else {
                    0
                }),
            Bytes::copy_from_slice(&range.encode()),
            Some(data),
        );
        (seq, async move {
            rx.await.unwrap_or_else(|_| Err(disconnected()))
        })
    }

    /// Whether the answer to request `seq` is still awaited (an answer, or the link's end,
    /// ends the wait).
    pub fn awaits_answer(&self, seq: u64) -> bool {
        self.pending().contains_key(&seq)
    }

    fn settlements(&self) -> std::sync::MutexGuard<'_, Settlements> {
        self.settlements.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unconfirmed(&self) -> std::sync::MutexGuard<'_, Unconfirmed> {
        self.unconfirmed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The write `seq` sent here settled: every target completed or failed it, and a failure
    /// is recorded on the disks that took it. Sends a `PeerAck` once enough writes settled.
    pub fn write_settled(&self, seq: u64) {
        let mut settlements = self.settlements();
        if settlements.settled(seq)
            && let Some(up_to) = settlements.next_ack()
        {
            self.send(Frame::new(Kind::PeerAck, 0, up_to, Bytes::new(), None));
        }
    }

    /// Sends a `PeerAck` for the writes settled since the last one, if any (the Primary's
    /// tick, and before it demotes).
    pub fn send_peer_ack(&self) {
        let mut settlements = self.settlements();
        if let Some(up_to) = settlements.next_ack() {
            self.send(Frame::new(Kind::PeerAck, 0, up_to, Bytes::new(), None));
        }
    }

    /// Notes what a State sent on this connection said; only the first one is kept.
    pub fn note_state_sent(&self, volumes: Vec<(u16, HandshakeSide)>) {
        let _ = self.first_state_sent.set(volumes);
    }

    /// What the first State sent on this connection said of `volume`, if one was sent.
    pub fn first_state_sent(&self, volume: u16) -> Option<HandshakeSide> {
        self.first_state_sent
            .get()?
            .iter()
            .find(|(number, _)| *number == volume)
            .map(|(_, side)| *side)
    }

    /// The writes received from the Primary on this connection that it never confirmed (the
    /// connection ended): they may be missing on the other disks ([`crate::peer_ack`]).
    pub fn take_unconfirmed(&self) -> Vec<UnconfirmedWrite> {
        self.unconfirmed().take()
    }

    /// Adds the activity-log extents of `volume` that writes received from the Primary on
    /// this connection and not confirmed yet touch: they stay hot.
    pub fn unconfirmed_extents(&self, volume: u16, into: &mut std::collections::BTreeSet<u32>) {
        self.unconfirmed().extents(volume, into);
    }

    /// Asks the peer to put everything it acknowledged on stable storage.
    pub fn send_flush(&self) -> impl Future<Output = Result<(), IoError>> + Send + 'static {
        let rx = self.request_ack(Kind::Flush, 0, Bytes::new(), None);
        async move { rx.await.unwrap_or_else(|_| Err(disconnected())) }
    }

    fn unflushed(&self) -> std::sync::MutexGuard<'_, Unflushed> {
        self.unflushed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer acknowledged a write that was not FUA: it is on the peer's stable storage only
    /// after the peer's next flush. Until that flush is answered the range is kept here, to be
    /// marked out of sync toward the peer if the connection ends first.
    pub fn note_acknowledged(&self, write: AcknowledgedWrite) {
        let mut unflushed = self.unflushed();
        unflushed.open_bytes += u64::from(write.length);
        unflushed.open.push(write);
        unflushed
            .open_since
            .get_or_insert_with(std::time::Instant::now);
    }

    /// Whether a flush of the peer is due: acknowledged writes older than
    /// [`PEER_FLUSH_INTERVAL`], or more than [`PEER_FLUSH_BYTES`] of them.
    /// Whether writes it acknowledged wait for a flush.
    pub fn has_unflushed(&self) -> bool {
        let unflushed = self.unflushed();
        !unflushed.open.is_empty() || !unflushed.flushing.is_empty()
    }

    pub fn flush_due(&self, now: std::time::Instant) -> bool {
        let unflushed = self.unflushed();
        unflushed.open_bytes >= PEER_FLUSH_BYTES
            || unflushed
                .open_since
                .is_some_and(|since| now.duration_since(since) >= PEER_FLUSH_INTERVAL)
    }

    /// Sends a flush covering every write acknowledged so far; once the peer answers it, those
    /// writes are known durable there and forgotten. A flush that fails leaves them kept.
    pub fn flush_acknowledged(self: &Arc<Self>) {
        if let Some(flushed) = self.flush_unflushed() {
            tokio::spawn(flushed);
        }
    }

    /// [`Self::flush_acknowledged`], for a caller that waits: `None` when the peer has nothing
    /// acknowledged that is not known durable, else the flush's outcome once answered.
    pub fn flush_unflushed(
        self: &Arc<Self>,
    ) -> Option<impl Future<Output = Result<(), IoError>> + Send + 'static> {
        let seq = self.next_seq();
        {
            let mut unflushed = self.unflushed();
            if unflushed.open.is_empty() {
                return None;
            }
            let writes = std::mem::take(&mut unflushed.open);
            unflushed.open_bytes = 0;
            unflushed.open_since = None;
            unflushed.flushing.insert(seq, writes);
        }
        let (tx, rx) = oneshot::channel();
        self.pending().insert(seq, Pending::Ack(tx));
        let sent = self.send(Frame::new(Kind::Flush, 0, seq, Bytes::new(), None));
        if !sent {
            self.pending().remove(&seq);
        }
        let link = self.clone();
        Some(async move {
            if !sent {
                return Err(disconnected());
            }
            match rx.await {
                Ok(Ok(_)) => {
                    link.unflushed().flushing.remove(&seq);
                    Ok(())
                }
                Ok(Err(error)) => {
                    warn!(peer = link.node_id, %error, "the peer could not flush what it acknowledged; its writes stay marked for resync if it disconnects");
                    Err(error)
                }
                Err(_) => Err(disconnected()),
            }
        })
    }

    /// Every acknowledged write not yet confirmed durable on the peer (the connection ended:
    /// they are to be marked out of sync toward it).
    pub fn take_unflushed(&self) -> Vec<AcknowledgedWrite> {
        let mut unflushed = self.unflushed();
        let mut writes = std::mem::take(&mut unflushed.open);
        unflushed.open_bytes = 0;
        unflushed.open_since = None;
        for (_, more) in unflushed.flushing.drain() {
            writes.extend(more);
        }
        writes
    }

    /// Reads through the peer.
    pub fn send_read(
        &self,
        volume: u16,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Bytes, IoError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let seq = self.next_seq();
        self.pending().insert(seq, Pending::Read(tx));
        let range = Range {
            volume,
            offset,
            length: len,
        };
        if !self.send(Frame::new(
            Kind::Read,
            0,
            seq,
            Bytes::copy_from_slice(&range.encode()),
            None,
        )) && let Some(Pending::Read(tx)) = self.pending().remove(&seq)
        {
            let _ = tx.send(Err(disconnected()));
        }
        async move { rx.await.unwrap_or_else(|_| Err(disconnected())) }
    }

    fn complete(&self, seq: u64, result: Result<Option<Bytes>, IoError>) {
        match (self.pending().remove(&seq), result) {
            (Some(Pending::Ack(tx)), result) => {
                let _ = tx.send(result.map(|_| ()));
            }
            (Some(Pending::Read(tx)), Ok(Some(data))) => {
                let _ = tx.send(Ok(data));
            }
            (Some(Pending::Read(tx)), Ok(None)) => {
                let _ = tx.send(Err(IoError::Io("the peer sent no data".to_string())));
            }
            (Some(Pending::Read(tx)), Err(e)) => {
                let _ = tx.send(Err(e));
            }
            (None, _) => debug!(peer = self.node_id, seq, "an answer nobody waits for"),
        }
    }

    /// Ends the link: the connection goes, and every awaited answer fails now.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.outbox.close();
        self.closing.send_replace(true);
        let pending: Vec<Pending> = self.pending().drain().map(|(_, p)| p).collect();
        for pending in pending {
            match pending {
                Pending::Ack(tx) => {
                    let _ = tx.send(Err(disconnected()));
                }
                Pending::Read(tx) => {
                    let _ = tx.send(Err(disconnected()));
                }
            }
        }
    }
}

/// What the connection needs of its resource.
pub trait PeerHandler: Send + Sync + 'static {
    /// The volume a frame names, if this member has it.
    fn volume(&self, number: u16) -> Option<Arc<VolumeEngine>>;
    /// Every volume of the resource on this member.
    fn volumes(&self) -> Vec<Arc<VolumeEngine>>;
    /// A frame for the resource actor (state, bitmap, resync, promotion). Resync data comes
    /// with its place among the peer's writes, reserved when it arrived.
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
    );
    /// A `State` in which the peer says it is Primary. It may name a generation the Primary
    /// started for the writes that follow it on the connection, and this member must not
    /// acknowledge one of those writes before its own metadata records that generation: a
    /// crash in between would leave this disk on the old generation with the new data, equal
    /// by its identifiers to a disk the Primary wrote without. The receiver answers once the
    /// resource has handled the State and made what it adopted durable (or dropped it, the
    /// connection being stale); the connection reads nothing further until then.
    fn primary_state(&self, link: &Arc<PeerLink>, payload: Bytes) -> oneshot::Receiver<()>;
    /// The connection ended.
    fn disconnected(&self, link: &Arc<PeerLink>, reason: String);

    /// How long a peer may stay silent after a `Ping` (the resource's `ping-timeout`).
    fn ping_timeout(&self) -> Duration;
}

/// The HMAC a member sends to prove it knows the secret: over the challenge it was given, its
/// own node-id and the resource's name.
pub fn proof(secret: &str, challenge: &[u8; 32], prover: u8, resource: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(challenge);
    mac.update(&[prover]);
    mac.update(resource.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A fresh random challenge.
pub fn challenge() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = random.read_exact(&mut bytes);
    }
    bytes
}

/// Reads one whole frame: header, fixed part, data (into an aligned buffer).
async fn read_frame(
    reader: &mut FrameReader,
) -> Result<(wire::Header, Bytes, Option<Bytes>), PeerError> {
    let mut header = [0u8; HEADER_BYTES];
    reader
        .read_exact(&mut header)
        .await
        .map_err(PeerError::Io)?;
    let header = wire::decode_header(&header).map_err(PeerError::Wire)?;
    let fixed_len = header.kind.fixed_bytes().unwrap_or(header.length as usize);
    let mut fixed = BytesMut::zeroed(fixed_len);
    reader.read_exact(&mut fixed).await.map_err(PeerError::Io)?;
    let data = if header.kind.carries_data() {
        let len = header.length as usize - fixed_len;
        let mut buf = crate::uring::buffers().take(len);
        while buf.len() < len {
            let limit = len - buf.len();
            let read = (&mut *reader)
                .take(limit as u64)
                .read_buf(&mut *buf)
                .await
                .map_err(PeerError::Io)?;
            if read == 0 {
                return Err(PeerError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Some(buf.freeze())
    } else {
        None
    };
    Ok((header, fixed.freeze(), data))
}

/// Why a connection ended or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("connection: {0}")]
    Io(std::io::Error),
    #[error("protocol: {0}")]
    Wire(WireError),
    #[error("handshake: {0}")]
    Handshake(String),
}

/// Writes a frame during the handshake (before the writer task runs).
async fn write_now(stream: &mut TcpStream, frame: Frame) -> Result<(), PeerError> {
    for part in frame.parts() {
        stream.write_all(part).await.map_err(PeerError::Io)?;
    }
    Ok(())
}

/// The most a handshake frame carries: a `Hello` is 4 bytes, a resource name of at most 64
/// bytes and a 32-byte challenge; an `Auth` is 32 bytes. A larger one is refused before it is
/// read: a stranger must not make a member allocate, and wait for, a control message's worth.
pub const MAX_HANDSHAKE_BYTES: u32 = 256;

/// Fills `buf` from the stream; a peer that hangs up before it is full is named with what it
/// was in the middle of (a stranger's truncated frame is then one precise log line).
async fn read_all(stream: &mut TcpStream, buf: &mut [u8], what: &str) -> Result<(), PeerError> {
    let mut got = 0;
    while got < buf.len() {
        let read = stream.read(&mut buf[got..]).await.map_err(PeerError::Io)?;
        if read == 0 {
            return Err(PeerError::Handshake(format!(
                "the peer closed the connection in the middle of {what} ({got} of {} bytes)",
                buf.len()
            )));
        }
        got += read;
    }
    Ok(())
}

async fn read_now(stream: &mut TcpStream, expected: Kind) -> Result<Bytes, PeerError> {
    let mut header = [0u8; HEADER_BYTES];
    read_all(stream, &mut header, "a frame header").await?;
    let header = wire::decode_header(&header).map_err(PeerError::Wire)?;
    if header.kind != expected || header.kind.carries_data() {
        return Err(PeerError::Handshake(format!(
            "expected {expected:?}, got {:?}",
            header.kind
        )));
    }
    if header.length > MAX_HANDSHAKE_BYTES {
        return Err(PeerError::Wire(WireError::BadLength {
            kind: header.kind,
            length: header.length,
            reason: "larger than any handshake frame",
        }));
    }
    let mut payload = BytesMut::zeroed(header.length as usize);
    read_all(stream, &mut payload, &format!("a {:?} frame", header.kind)).await?;
    Ok(payload.freeze())
}

/// Both sides of the handshake: `Hello` with a challenge each way, then each side proves it
/// knows the secret. Returns the peer's node-id. `expect_peer` is the node-id the dialling side
/// called; an acceptor checks the caller against `known_peers`.
pub async fn handshake(
    stream: &mut TcpStream,
    resource: &str,
    secret: &str,
    me: u8,
    expect_peer: Option<u8>,
    known_peers: &[u8],
) -> Result<u8, PeerError> {
    let mine = challenge();
    let hello = Hello {
        resource: resource.to_string(),
        node_id: me,
        challenge: mine,
    };
    write_now(stream, Frame::new(Kind::Hello, 0, 0, hello.encode(), None)).await?;
    let theirs = Hello::decode(&read_now(stream, Kind::Hello).await?).map_err(PeerError::Wire)?;
    if theirs.resource != resource {
        return Err(PeerError::Handshake(format!(
            "the peer serves resource '{}', not '{resource}'",
            theirs.resource
        )));
    }
    if expect_peer.is_some_and(|id| id != theirs.node_id) || !known_peers.contains(&theirs.node_id)
    {
        return Err(PeerError::Handshake(format!(
            "node-id {} is not a peer of resource '{resource}'",
            theirs.node_id
        )));
    }
    let answer = proof(secret, &theirs.challenge, me, resource);
    write_now(
        stream,
        Frame::new(Kind::Auth, 0, 0, Bytes::copy_from_slice(&answer), None),
    )
    .await?;
    let their_proof = read_now(stream, Kind::Auth).await?;
    let expected = proof(secret, &mine, theirs.node_id, resource);
    // Constant-time comparison: the secret must not leak through timing.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(&mine);
    mac.update(&[theirs.node_id]);
    mac.update(resource.as_bytes());
    if their_proof.len() != expected.len() || mac.verify_slice(&their_proof).is_err() {
        return Err(PeerError::Handshake(format!(
            "node-id {} failed authentication (wrong shared secret)",
            theirs.node_id
        )));
    }
    Ok(theirs.node_id)
}

/// Starts the reader and writer of an authenticated connection. Returns the link.
pub fn start(
    stream: TcpStream,
    node_id: u8,
    node_name: String,
    handler: Arc<dyn PeerHandler>,
) -> Arc<PeerLink> {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let link = Arc::new(PeerLink::new(node_id, node_name, writer));
    tokio::spawn(write_loop(link.clone()));
    tokio::spawn(keepalive(link.clone(), handler.clone()));
    let reader = tokio::io::BufReader::with_capacity(RECEIVE_BUFFER_BYTES, reader);
    tokio::spawn(read_loop(reader, link.clone(), handler));
    link
}

/// Keeps the connection honest (see the module's header): a `Ping` after [`PING_INTERVAL`]
/// with nothing received, and the connection closed when nothing arrives for `ping-timeout`
/// after it. A peer that went away without a word (a cut link, a host gone) is noticed within
/// `PING_INTERVAL + ping-timeout` of the last frame it sent.
async fn keepalive(link: Arc<PeerLink>, handler: Arc<dyn PeerHandler>) {
    let mut closing = link.closing.subscribe();
    loop {
        let idle_until = (link.last_received() + PING_INTERVAL).into();
        if tokio::time::Instant::now() < idle_until {
            tokio::select! {
                _ = tokio::time::sleep_until(idle_until) => continue,
                _ = closing.wait_for(|closed| *closed) => return,
            }
        }
        let sent = Instant::now();
        if !link.send(Frame::new(Kind::Ping, 0, 0, Bytes::new(), None)) {
            return;
        }
        let timeout = handler.ping_timeout();
        tokio::select! {
            _ = tokio::time::sleep(timeout) => {}
            _ = closing.wait_for(|closed| *closed) => return,
        }
        if link.last_received() < sent {
            warn!(
                peer = link.node_id,
                ?timeout,
                "peer silent for ping-timeout after a ping; disconnecting"
            );
            link.close();
            return;
        }
    }
}

/// Runs the connection's write loop ([`Outbox::run`]); a write that fails closes the link.
async fn write_loop(link: Arc<PeerLink>) {
    if let Err(e) = link.outbox.run(link.closing.subscribe()).await {
        warn!(peer = link.node_id, error = %e, "sending to the peer failed");
        link.close();
    }
}

fn errno_payload(error: &IoError) -> Bytes {
    Bytes::copy_from_slice(&(error.errno() as u32).to_le_bytes())
}

/// Receives frames: data-path frames are served here, the rest goes to the resource.
async fn read_loop(mut reader: FrameReader, link: Arc<PeerLink>, handler: Arc<dyn PeerHandler>) {
    let mut closing = link.closing.subscribe();
    let reason = loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader) => frame,
            _ = closing.wait_for(|closed| *closed) => break "closed by this member".to_string(),
        };
        let (header, fixed, data) = match frame {
            Ok(frame) => frame,
            Err(e) => break e.to_string(),
        };
        link.note_received();
        match header.kind {
            Kind::Ping => {
                link.send(Frame::new(Kind::Pong, 0, header.seq, Bytes::new(), None));
            }
            // A `Ping`'s answer: that it arrived is all it says. A `Pong` with a sequence
            // number answers an `Outdated` round, which the resource counts.
            Kind::Pong if header.seq == 0 => {}
            Kind::Write => {
                let range = match Range::decode(&fixed) {
                    Ok(range) => range,
                    Err(e) => break e.to_string(),
                };
                let data = data.unwrap_or_default();
                let Some(volume) = handler.volume(range.volume) else {
                    link.send(Frame::new(
                        Kind::WriteNack,
                        0,
                        header.seq,
                        errno_payload(&IoError::Invalid("no such volume".into())),
                        None,
                    ));
                    continue;
                };
                // The place in line is taken now, in arrival order; the write runs on its own.
                let reservation = volume.conflicts().reserve(range.offset, data.len() as u64);
                let noted = volume.resync_watch().write_arrived(
                    link.node_id(),
                    range.offset,
                    data.len() as u64,
                );
                let fua = header.flags & FLAG_FUA != 0;
                let written_without = header.flags & FLAG_WRITTEN_WITHOUT != 0;
                let seq = header.seq;
                link.unconfirmed().received(UnconfirmedWrite {
                    seq,
                    volume: range.volume,
                    offset: range.offset,
                    length: data.len() as u32,
                });
                link.writes_applying.fetch_add(1, Ordering::AcqRel);
                let answer = {
                    let link = link.clone();
                    let volume = volume.clone();
                    Box::new(move |result: Result<(), IoError>| {
                        volume.watched_write_done(noted, result.is_ok());
                        let frame = match result {
                            Ok(()) => Frame::new(Kind::WriteAck, 0, seq, Bytes::new(), None),
                            Err(e) => Frame::new(Kind::WriteNack, 0, seq, errno_payload(&e), None),
                        };
                        if link.writes_applying.fetch_sub(1, Ordering::AcqRel) == 1 {
                            link.send_now(frame);
                        } else {
                            link.send(frame);
                        }
                    }) as crate::backing::WriteCompletion
                };
                // The common case: the range is free and the disk has a ring; the ack is sent
                // from the write's completion, no task in between.
                let (reservation, data, answer) = match reservation.now() {
                    Ok(guard) => {
                        match volume.start_peer_write(
                            guard,
                            range.offset,
                            data,
                            fua,
                            written_without,
                            answer,
                        ) {
                            Ok(()) => continue,
                            Err((guard, data, answer)) => {
                                tokio::spawn(async move {
                                    answer(
                                        volume
                                            .apply_peer_write(
                                                guard,
                                                range.offset,
                                                data,
                                                fua,
                                                written_without,
                                            )
                                            .await,
                                    );
                                });
                                continue;
                            }
                        }
                    }
                    Err(reservation) => (reservation, data, answer),
                };
                tokio::spawn(async move {
                    let guard = reservation.wait().await;
                    answer(
                        volume
                            .apply_peer_write(guard, range.offset, data, fua, written_without)
                            .await,
                    );
                });
            }
            Kind::WriteAck => link.complete(header.seq, Ok(None)),
            Kind::PeerAck => link.unconfirmed().confirmed(header.seq),
            Kind::WriteNack => {
                let errno = u32::from_le_bytes(fixed[..4].try_into().expect("4 bytes"));
                link.complete(header.seq, Err(errno_error(errno)));
            }
            Kind::Flush => {
                let (link, handler) = (link.clone(), handler.clone());
                tokio::spawn(async move {
                    let mut result = Ok(());
                    for volume in handler.volumes() {
                        if let Err(e) = volume.local_sync().await {
                            result = Err(e);
                        }
                    }
                    let errno = match &result {
                        Ok(()) => 0u32,
                        Err(e) => e.errno() as u32,
                    };
                    link.send(Frame::new(
                        Kind::FlushAck,
                        0,
                        header.seq,
                        Bytes::copy_from_slice(&errno.to_le_bytes()),
                        None,
                    ));
                });
            }
            Kind::FlushAck => {
                let errno = u32::from_le_bytes(fixed[..4].try_into().expect("4 bytes"));
                let result = if errno == 0 {
                    Ok(None)
                } else {
                    Err(errno_error(errno))
                };
                link.complete(header.seq, result);
            }
            Kind::Read => {
                let range = match Range::decode(&fixed) {
                    Ok(range) => range,
                    Err(e) => break e.to_string(),
                };
                let (link, volume) = (link.clone(), handler.volume(range.volume));
                tokio::spawn(async move {
                    let result = match volume {
                        Some(volume) => volume.local_read(range.offset, range.length).await,
                        None => Err(IoError::Invalid("no such volume".into())),
                    };
                    let frame = match result {
                        Ok(data) => Frame::new(
                            Kind::ReadReply,
                            0,
                            header.seq,
                            Bytes::copy_from_slice(&0u32.to_le_bytes()),
                            Some(data),
                        ),
                        Err(e) => Frame::new(
                            Kind::ReadReply,
                            0,
                            header.seq,
                            errno_payload(&e),
                            Some(Bytes::new()),
                        ),
                    };
                    link.send(frame);
                });
            }
            Kind::ReadReply => {
                let errno = u32::from_le_bytes(fixed[..4].try_into().expect("4 bytes"));
                let result = if errno == 0 {
                    Ok(data)
                } else {
                    Err(errno_error(errno))
                };
                link.complete(header.seq, result);
            }
            Kind::State if wire::StateMessage::decode(&fixed).is_ok_and(|state| state.primary) => {
                // The writes behind a Primary's State are applied only once the State is
                // recorded (see `PeerHandler::primary_state`).
                let recorded = handler.primary_state(&link, fixed);
                tokio::select! {
                    outcome = tokio::time::timeout(PRIMARY_STATE_TIMEOUT, recorded) => {
                        if outcome.is_err() {
                            break format!(
                                "the resource did not record the Primary's state within {PRIMARY_STATE_TIMEOUT:?}"
                            );
                        }
                    }
                    _ = closing.wait_for(|closed| *closed) => break "closed by this member".to_string(),
                }
            }
            Kind::Hello | Kind::Auth => break "a handshake frame in an open session".to_string(),
            Kind::ResyncData => {
                // Resync data takes its place among the peer's writes in arrival order, as a
                // Write does: reserved here, not when the resource actor gets to it. The
                // source read it before an application write to the same blocks that it sent
                // after it; reserved later, that write could land first and then be
                // overwritten with the older data.
                let reservation = Range::decode(&fixed).ok().and_then(|range| {
                    handler.volume(range.volume).map(|volume| {
                        volume
                            .conflicts()
                            .reserve(range.offset, u64::from(range.length))
                    })
                });
                handler.control(
                    &link,
                    header.kind,
                    header.seq,
                    header.flags,
                    fixed,
                    data,
                    reservation,
                );
            }
            _ => handler.control(
                &link,
                header.kind,
                header.seq,
                header.flags,
                fixed,
                data,
                None,
            ),
        }
    };
    link.close();
    handler.disconnected(&link, reason);
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use tokio::net::TcpListener;

    /// A resource that only counts what a connection tells it.
    struct Quiet {
        gone: mpsc::UnboundedSender<String>,
    }

    impl PeerHandler for Quiet {
        fn volume(&self, _number: u16) -> Option<Arc<VolumeEngine>> {
            None
        }

        fn volumes(&self) -> Vec<Arc<VolumeEngine>> {
            Vec::new()
        }

        fn control(
            &self,
            _link: &Arc<PeerLink>,
            _kind: Kind,
            _seq: u64,
            _flags: u32,
            _payload: Bytes,
            _data: Option<Bytes>,
            _reservation: Option<Reservation>,
        ) {
        }

        fn primary_state(&self, _link: &Arc<PeerLink>, _payload: Bytes) -> oneshot::Receiver<()> {
            let (recorded, answer) = oneshot::channel();
            let _ = recorded.send(());
            answer
        }

        fn disconnected(&self, _link: &Arc<PeerLink>, reason: String) {
            let _ = self.gone.send(reason);
        }

        fn ping_timeout(&self) -> Duration {
            crate::config::PING_TIMEOUT
        }
    }

    /// A link under test, and the raw other end of its socket.
    async fn link_and_raw_peer() -> (
        Arc<PeerLink>,
        TcpStream,
        mpsc::UnboundedReceiver<String>,
        Instant,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        let (gone, disconnected) = mpsc::unbounded_channel();
        let started = Instant::now();
        let link = start(ours, 1, "peer".into(), Arc::new(Quiet { gone }));
        (link, raw, disconnected, started)
    }

    /// Reads frames from the raw end for `window`, answering `Ping`s if `answer`; returns when
    /// each `Ping` arrived (since `started`), or early when the link closed the socket.
    async fn pings_seen(
        raw: &mut TcpStream,
        answer: bool,
        started: Instant,
        window: Duration,
    ) -> Vec<Duration> {
        let mut pings = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let mut header = [0u8; HEADER_BYTES];
            let read = tokio::time::timeout_at(deadline, raw.read_exact(&mut header)).await;
            let Ok(Ok(_)) = read else {
                return pings;
            };
            let header = wire::decode_header(&header).unwrap();
            let mut rest = vec![0u8; header.length as usize];
            raw.read_exact(&mut rest).await.unwrap();
            if header.kind == Kind::Ping {
                pings.push(started.elapsed());
                if answer {
                    let pong = wire::encode_header(Kind::Pong, 0, header.seq, 0);
                    raw.write_all(&pong).await.unwrap();
                }
            }
        }
    }

    #[tokio::test]
    async fn an_idle_peer_that_answers_gets_one_ping_per_interval_and_stays() {
        let (link, mut raw, mut disconnected, started) = link_and_raw_peer().await;
        let window = PING_INTERVAL * 3 + PING_INTERVAL / 2;
        let pings = pings_seen(&mut raw, true, started, window).await;
        assert_eq!(pings.len(), 3, "one Ping per idle interval: {pings:?}");
        for (n, at) in pings.iter().enumerate() {
            let earliest = PING_INTERVAL * (n as u32 + 1);
            assert!(
                *at >= earliest && *at < earliest + PING_INTERVAL / 2,
                "Ping {n} at {at:?}"
            );
        }
        assert!(!link.is_closed());
        assert!(disconnected.try_recv().is_err());
        link.close();
    }

    #[tokio::test]
    async fn a_peer_that_keeps_sending_is_not_pinged() {
        let (link, mut raw, _disconnected, started) = link_and_raw_peer().await;
        // A stream of frames more often than the interval: the link never idles.
        let sender = tokio::spawn(async move {
            for _ in 0..12 {
                let pong = wire::encode_header(Kind::Pong, 0, 0, 0);
                raw.write_all(&pong).await.unwrap();
                tokio::time::sleep(PING_INTERVAL / 4).await;
            }
            raw
        });
        let mut raw = sender.await.unwrap();
        let pings = pings_seen(&mut raw, true, started, PING_INTERVAL / 2).await;
        assert!(
            pings.is_empty(),
            "pinged while it heard the peer: {pings:?}"
        );
        assert!(!link.is_closed());
        link.close();
    }

    #[tokio::test]
    async fn a_peer_silent_for_ping_timeout_after_a_ping_is_disconnected() {
        let (link, mut raw, mut disconnected, started) = link_and_raw_peer().await;
        let pings = pings_seen(&mut raw, false, started, PING_INTERVAL * 3).await;
        let closed_at = started.elapsed();
        assert_eq!(pings.len(), 1, "{pings:?}");
        let limit = PING_INTERVAL + crate::config::PING_TIMEOUT;
        assert!(
            closed_at >= limit && closed_at < limit + PING_INTERVAL / 2,
            "closed {closed_at:?} after its start, not just after {limit:?}"
        );
        assert!(link.is_closed());
        let reason = disconnected.recv().await.unwrap();
        assert_eq!(reason, "closed by this member");
    }
}
