//! The REST server: accepts TCP connections, reads every request head itself, and hands each
//! accepted request to hyper and the axum router. It owns the limits that keep slow, idle and
//! hostile clients from taking the controller's memory, file descriptors or attention; it knows
//! no route.
//!
//! # Why it reads request heads itself
//!
//! hyper answers a head it cannot take (a malformed request line or header, too many or too
//! large header fields, an overlong URI) with an empty-bodied 400, 431 or 414 before the
//! application sees anything, and offers no hook to change that. Every other error of the
//! controller is an `ApiCallRc` list, so the server parses each head with `httparse` (the parser
//! hyper uses), with limits below hyper's and hyper's own validity rules, answers what it refuses
//! with an `ApiCallRc` itself, and gives hyper only heads it has accepted. hyper then serves
//! exactly one request: it reads the head and the body through `RequestStream`, which ends
//! where that request ends, so hyper never parses a byte the server has not checked. Once the
//! response is flushed the server takes the connection back and reads the next head itself.
//! Keep-alive and pipelining work as before; a client that leaves while its request is handled
//! no longer cancels the handler, since hyper is given nothing after the request to notice it by.
//!
//! Request bodies must come with a `Content-Length`: a `Transfer-Encoding` body is refused with
//! 411. Knowing where a chunked body ends would mean parsing the chunk framing a second time,
//! beside hyper, and no LINSTOR client sends one.
//!
//! # Limits
//!
//! | limit | default | when crossed |
//! |---|---|---|
//! | [`DEFAULT_HEADER_TIMEOUT`] | 10 s from accept, or from a later head's first byte | 408 `ApiCallRc`, close (nothing sent: close) |
//! | [`DEFAULT_BODY_TIMEOUT`] | 30 s from the end of the head to the end of the body | the handler's body read fails: 408 `ApiCallRc`, close |
//! | [`DEFAULT_KEEP_ALIVE_TIMEOUT`] | 60 s idle between requests | close |
//! | [`DEFAULT_SEND_TIMEOUT`] | 30 s in which the client reads nothing of a response | close |
//! | [`DEFAULT_MAX_CONNECTIONS`] | 1,024 open connections | evict one waiting on its client, else refuse the new one |
//! | [`MAX_URI_BYTES`] | 8 KiB | 414 `ApiCallRc` |
//! | [`MAX_REQUEST_HEAD_BYTES`] | 16 KiB of request line and header fields | 431 `ApiCallRc` (414 if the request line alone is longer) |
//! | [`MAX_HEADERS`] | 64 header fields | 431 `ApiCallRc` |
//!
//! A head that is not valid HTTP/1.1 gets 400 with an `ApiCallRc`, all with `FAIL_INVLD_REQUEST`.
//!
//! # The connection cap and eviction
//!
//! A plain cap lets whoever fills it first lock everyone else out. So every connection keeps, in
//! an atomic the accept loop can read, whether it is waiting on its client (for a request head,
//! for the rest of a request body, or for the client to read a response) and since when. A
//! connection accepted at the cap evicts the one that has waited longest. A connection whose
//! request is being handled is never chosen, so no handler is cancelled and no mutation is cut
//! short by a stranger. Evicting a connection that waits for a head closes it; one that waits for
//! a body or for its reader gets an error on that read or write, which ends its request quickly.
//! Only when every connection is busy with a request is the new one refused (closed at once).
//! Under a flood of half-sent requests a new client therefore always gets in, and keeps its place
//! until the cap's worth of newer connections have arrived: long enough for any client that
//! sends its head at once. Finding the longest wait scans the table once per
//! `EVICTION_CANDIDATES` evictions, not once per accepted connection.
//!
//! The cap also bounds file descriptors: it is clamped to half of the process's soft
//! `RLIMIT_NOFILE`, so the satellite links, the database and the logs always have the other
//! half. An evicted connection closes within moments; the accept loop stops accepting while more
//! than [`EVICTION_SLACK`] of them are still closing. The listen backlog is raised to
//! [`LISTEN_BACKLOG`] so a burst of connections does not make the kernel drop SYNs.
//!
//! The accept loop owns the table of connections. Connection tasks report their end through a
//! channel and share only the waiting state, so the table has one owner and no lock.
//!
//! On shutdown the server stops accepting, closes connections that wait for a head, lets
//! requests in progress finish (their responses say `Connection: close`) and returns when the
//! last connection has closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::fmt::Write as _;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::AsRawFd as _;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::http::{Request, Response, StatusCode, Uri};
use bytes::{Buf, Bytes, BytesMut};
use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, RetCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;
use tracing::{Instrument as _, debug, info_span, warn};

/// How long a client has to send a request head: from accept for a connection's first request,
/// from the head's first byte for later ones.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request body, from the end of its head. 30 s moves the
/// largest body the API takes (2 MiB) at 70 KiB/s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a keep-alive connection may sit idle between requests.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a response may wait, without any progress, for the client to read it.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Open REST connections at most (before the clamp to the descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The longest request target (path and query). LINSTOR's own controller takes heads of 8 KiB.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The longest request head: request line and header fields.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// The most header fields a request may have.
pub const MAX_HEADERS: usize = 64;
/// The listen backlog `serve` sets: connections the kernel has completed and the server not yet
/// accepted (the kernel caps it at `net.core.somaxconn`). The usual default of 128 overflows under
/// a burst of connections, and an overflowing backlog drops SYNs, which a client resends only
/// after a second: a flood would cost every other client that second.
pub const LISTEN_BACKLOG: i32 = 4096;
/// Connections evicted but not yet closed that the accept loop tolerates beyond the cap.
pub const EVICTION_SLACK: usize = 64;
/// How many eviction candidates one scan of the connection table finds.
const EVICTION_CANDIDATES: usize = 64;
/// After refusing a request, how long the server reads and discards what the client still sends,
/// so that closing does not reset the connection before the client has read the refusal.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// The most bytes discarded while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// How much room a head read makes in the buffer; heads of LINSTOR's clients are a few hundred
/// bytes, so a connection that never sends more holds little memory.
const HEAD_READ_CHUNK: usize = 1024;
/// The pause after `accept` failed for lack of descriptors or memory.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How often, at most, the server logs that it is evicting or refusing connections.
const PRESSURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The REST server's limits; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Why reading a request body failed; carried inside the `io::Error` the handler's body read
/// returns, so the JSON extractor can answer 408 instead of a generic 400.
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    #[error("the request body was not complete within {} s", timeout.as_secs_f64())]
    TimedOut { timeout: Duration },
    #[error(
        "the connection was closed to make room for other clients while its request body was arriving"
    )]
    Evicted,
}

/// The [`BodyReadError`] somewhere in an error's cause chain.
pub fn body_read_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BodyReadError> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(found) = error.downcast_ref::<BodyReadError>() {
            return Some(found);
        }
        if let Some(found) = error
            .downcast_ref::<io::Error>()
            .and_then(|e| e.get_ref())
            .and_then(|inner| inner.downcast_ref::<BodyReadError>())
        {
            return Some(found);
        }
        cause = error.source();
    }
    None
}

/// Why a response could not be sent.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("the client read nothing of the response for {} s", timeout.as_secs_f64())]
    TimedOut { timeout: Duration },
    #[error("the connection was closed to make room for other clients while its reader stalled")]
    Evicted,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets requests in
/// progress finish and returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let cap = clamp_to_descriptors(limits.max_connections);
    deepen_backlog(&listener);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        // The server hands hyper complete heads; this only backs up its own header timeout.
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let shared = Arc::new(Shared {
        limits,
        http,
        epoch: Instant::now(),
    });
    let (closed_sender, mut closed) = mpsc::unbounded_channel::<ConnectionId>();
    let (stop_sender, _) = watch::channel(false);
    let mut connections = Connections::new(cap, shared.epoch);
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(id) = closed.recv() => connections.closed(id),
            accepted = listener.accept(), if connections.open() < cap + EVICTION_SLACK => {
                match accepted {
                    Ok((socket, peer)) => {
                        while let Ok(id) = closed.try_recv() {
                            connections.closed(id);
                        }
                        let accepted = Instant::now();
                        let Some((id, state)) = connections.admit(accepted) else {
                            debug!(%peer, "refused a REST connection: every connection is busy");
                            continue;
                        };
                        let _ = socket.set_nodelay(true);
                        let task = serve_connection(
                            socket,
                            accepted,
                            app.clone(),
                            shared.clone(),
                            state,
                            stop_sender.subscribe(),
                        );
                        let closed_sender = closed_sender.clone();
                        tokio::spawn(
                            async move {
                                let _report = ClosedReport { id, sender: closed_sender };
                                task.await;
                            }
                            .instrument(info_span!("rest_connection", id = id.0, %peer)),
                        );
                    }
                    Err(error) if is_resource_exhaustion(&error) => {
                        connections.note_accept_failure(&error);
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    // Failures of one connection (reset before accept, and the like).
                    Err(error) => debug!(%error, "accepting a REST connection failed"),
                }
            }
        }
    }
    drop(listener);
    stop_sender.send_replace(true);
    drop(closed_sender);
    debug!(
        open = connections.open(),
        "REST server stopping: waiting for open connections"
    );
    while connections.open() > 0 {
        match closed.recv().await {
            Some(id) => connections.closed(id),
            None => break,
        }
    }
    Ok(())
}

/// What every connection task shares.
struct Shared {
    limits: ServerLimits,
    http: http1::Builder,
    /// The origin of the waiting times in [`ConnectionState`].
    epoch: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ConnectionId(u64);

/// Sends a connection's id to the accept loop when its task ends, also by panic.
struct ClosedReport {
    id: ConnectionId,
    sender: mpsc::UnboundedSender<ConnectionId>,
}

impl Drop for ClosedReport {
    fn drop(&mut self) {
        let _ = self.sender.send(self.id);
    }
}

/// What a connection is waiting for from its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Waiting {
    /// Nothing: a request is being handled.
    Nothing = 0,
    /// A request head (including the idle time before it).
    Head = 1,
    /// The rest of a request body.
    Body = 2,
    /// The client to read the response.
    Reader = 3,
}

impl Waiting {
    fn from_u8(value: u8) -> Waiting {
        match value {
            1 => Waiting::Head,
            2 => Waiting::Body,
            3 => Waiting::Reader,
            _ => Waiting::Nothing,
        }
    }
}

/// The part of a connection the accept loop reads: what it waits for and since when, and the
/// eviction signal.
struct ConnectionState {
    epoch: Instant,
    /// Nanoseconds from the epoch to when the wait began, plus one; 0 while not waiting.
    waiting_since: AtomicU64,
    waiting_for: AtomicU8,
    evicted: AtomicBool,
    eviction: Notify,
}

impl ConnectionState {
    fn new(epoch: Instant) -> ConnectionState {
        ConnectionState {
            epoch,
            waiting_since: AtomicU64::new(0),
            waiting_for: AtomicU8::new(Waiting::Nothing as u8),
            evicted: AtomicBool::new(false),
            eviction: Notify::new(),
        }
    }

    fn wait(&self, what: Waiting, since: Instant) {
        let nanos = since.saturating_duration_since(self.epoch).as_nanos();
        let stamp = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.waiting_for.store(what as u8, Ordering::Relaxed);
        self.waiting_since.store(stamp, Ordering::Release);
    }

    fn stop_waiting(&self) {
        self.waiting_since.store(0, Ordering::Release);
        self.waiting_for
            .store(Waiting::Nothing as u8, Ordering::Relaxed);
    }

    fn waiting_for(&self) -> Waiting {
        Waiting::from_u8(self.waiting_for.load(Ordering::Relaxed))
    }

    /// Since when the connection waits on its client, as a stamp that orders waits; `None` while
    /// a request is being handled.
    fn waiting_stamp(&self) -> Option<u64> {
        match self.waiting_since.load(Ordering::Acquire) {
            0 => None,
            stamp => Some(stamp),
        }
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.eviction.notify_one();
    }

    fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }
}

/// The accept loop's table of open connections.
struct Connections {
    cap: usize,
    epoch: Instant,
    next_id: u64,
    open: HashMap<ConnectionId, Arc<ConnectionState>>,
    /// Open connections not evicted: the ones the cap counts.
    live: usize,
    /// The connections that waited longest at the last scan, as (stamp, id), the longest last.
    candidates: Vec<(u64, ConnectionId)>,
    pressure: Pressure,
}

impl Connections {
    fn new(cap: usize, epoch: Instant) -> Connections {
        Connections {
            cap,
            epoch,
            next_id: 0,
            open: HashMap::with_capacity(cap + EVICTION_SLACK),
            live: 0,
            candidates: Vec::new(),
            pressure: Pressure::default(),
        }
    }

    /// Connections whose task has not ended, evicted ones included: what holds descriptors.
    fn open(&self) -> usize {
        self.open.len()
    }

    /// Makes room for a connection accepted at `accepted`, evicting if at the cap; `None`
    /// refuses it.
    fn admit(&mut self, accepted: Instant) -> Option<(ConnectionId, Arc<ConnectionState>)> {
        if self.live >= self.cap {
            if self.evict_longest_waiting().is_none() {
                self.pressure.refused += 1;
                self.pressure.report(self.cap);
                return None;
            }
            self.pressure.report(self.cap);
        }
        self.next_id += 1;
        let id = ConnectionId(self.next_id);
        let state = Arc::new(ConnectionState::new(self.epoch));
        // Waiting for its head from now on, even before its task first runs: under a flood the
        // tasks may lag behind the accept loop, and a connection nobody has served yet must not
        // look busy.
        state.wait(Waiting::Head, accepted);
        self.open.insert(id, state.clone());
        self.live += 1;
        Some((id, state))
    }

    /// Evicts the connection that has waited on its client the longest.
    fn evict_longest_waiting(&mut self) -> Option<ConnectionId> {
        loop {
            let Some((stamp, id)) = self.candidates.pop() else {
                if !self.find_candidates() {
                    return None;
                }
                continue;
            };
            // Stale if it has closed, been evicted, or begun another wait since the scan.
            let Some(state) = self.open.get(&id) else {
                continue;
            };
            if state.is_evicted() || state.waiting_stamp() != Some(stamp) {
                continue;
            }
            debug!(
                connection = id.0,
                waiting_for = ?state.waiting_for(),
                "evicting a REST connection"
            );
            state.evict();
            self.live -= 1;
            self.pressure.evicted += 1;
            return Some(id);
        }
    }

    /// Fills `candidates` with the [`EVICTION_CANDIDATES`] connections that have waited longest,
    /// the longest last; false if none waits.
    ///
    /// The list stays right until it is used up: a wait that begins after the scan is stamped
    /// later than every wait the scan saw, and a candidate whose stamp changed is skipped. So a
    /// scan of the table is needed once per [`EVICTION_CANDIDATES`] evictions, not for each.
    fn find_candidates(&mut self) -> bool {
        let mut waiting: Vec<(u64, ConnectionId)> = self
            .open
            .iter()
            .filter(|(_, state)| !state.is_evicted())
            .filter_map(|(id, state)| state.waiting_stamp().map(|stamp| (stamp, *id)))
            .collect();
        if waiting.len() > EVICTION_CANDIDATES {
            waiting.select_nth_unstable(EVICTION_CANDIDATES);
            waiting.truncate(EVICTION_CANDIDATES);
        }
        waiting.sort_unstable_by(|a, b| b.cmp(a));
        self.candidates = waiting;
        !self.candidates.is_empty()
    }

    fn closed(&mut self, id: ConnectionId) {
        if let Some(state) = self.open.remove(&id)
            && !state.is_evicted()
        {
            self.live -= 1;
        }
    }

    /// `accept` failed for lack of descriptors or memory: free a descriptor for the next try.
    fn note_accept_failure(&mut self, error: &io::Error) {
        self.pressure.accept_failures += 1;
        if self.evict_longest_waiting().is_none() {
            self.pressure.refused += 1;
        }
        if self.pressure.due() {
            warn!(
                %error,
                open = self.open(),
                cap = self.cap,
                "accepting REST connections fails; evicting connections that wait on their clients"
            );
            self.pressure.reset();
        }
    }
}

/// Counts of evictions and refusals since the last warning about them.
#[derive(Default)]
struct Pressure {
    last_report: Option<Instant>,
    evicted: u64,
    refused: u64,
    accept_failures: u64,
}

impl Pressure {
    fn due(&self) -> bool {
        self.last_report
            .is_none_or(|at| at.elapsed() >= PRESSURE_LOG_INTERVAL)
    }

    fn reset(&mut self) {
        self.last_report = Some(Instant::now());
        self.evicted = 0;
        self.refused = 0;
        self.accept_failures = 0;
    }

    fn report(&mut self, cap: usize) {
        if self.due() {
            warn!(
                cap,
                evicted = self.evicted,
                refused = self.refused,
                "REST connections are at the cap: evicting the connections that waited longest \
                 on their clients, refusing new ones when all are busy (counts since the last \
                 report)"
            );
            self.reset();
        }
    }
}

/// The cap on connections, at most half of the soft descriptor limit.
fn clamp_to_descriptors(requested: usize) -> usize {
    let Some(soft) = soft_descriptor_limit() else {
        return requested;
    };
    let allowed = usize::try_from(soft / 2).unwrap_or(usize::MAX).max(1);
    if requested > allowed {
        warn!(
            requested,
            allowed,
            descriptor_limit = soft,
            "the REST connection cap is more than half the descriptor limit (RLIMIT_NOFILE); \
             lowering it"
        );
        allowed
    } else {
        requested
    }
}

/// Raises the listener's backlog to [`LISTEN_BACKLOG`].
fn deepen_backlog(listener: &TcpListener) {
    // SAFETY: `listen` on a socket that already listens only changes its backlog; the descriptor
    // stays open and owned by `listener`.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        warn!(
            error = %io::Error::last_os_error(),
            "cannot raise the REST listener's backlog"
        );
    }
}

fn soft_descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (status == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// How a connection's life ended, for the log and for how to close it.
#[derive(Debug)]
enum Ending {
    /// The client closed it between requests.
    ClientClosed,
    /// Idle longer than the keep-alive timeout.
    Idle,
    /// Evicted while waiting for a head, or after its request.
    Evicted,
    /// The server is stopping.
    Stopping,
    /// A head could not be read or was refused.
    Head(HeadError),
    /// The exchange ended the connection: `clean` if nothing the client sent is left unread.
    AfterRequest { clean: bool },
    /// hyper failed (a send timeout, a reset, an eviction while sending).
    Http(hyper::Error),
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::ClientClosed => f.write_str("the client closed the connection"),
            Ending::Idle => f.write_str("idle for the keep-alive timeout"),
            Ending::Evicted => f.write_str("evicted to make room for another client"),
            Ending::Stopping => f.write_str("the server is stopping"),
            Ending::Head(error) => write!(f, "{error}"),
            Ending::AfterRequest { clean: true } => f.write_str("closed after its request"),
            Ending::AfterRequest { clean: false } => {
                f.write_str("closed after its request, with part of the request unread")
            }
            Ending::Http(error) => write!(f, "serving the request failed: {error}"),
        }
    }
}

/// Serves one connection: head, request, head, request, … until it ends.
async fn serve_connection(
    mut socket: TcpStream,
    accepted: Instant,
    app: Router,
    shared: Arc<Shared>,
    state: Arc<ConnectionState>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = &shared.limits;
    let mut buffer = BytesMut::new();
    let mut first = true;
    let ending = loop {
        // The first wait began at accept, as the accept loop recorded it.
        if !first {
            state.wait(Waiting::Head, Instant::now());
        }
        if *stop.borrow_and_update() {
            break Ending::Stopping;
        }
        let head = tokio::select! {
            biased;
            () = state.eviction.notified() => break Ending::Evicted,
            _ = stop.changed() => break Ending::Stopping,
            head = read_head(&mut socket, &mut buffer, first, accepted, limits) => head,
        };
        let head = match head {
            Ok(head) => head,
            Err(HeadError::Closed) => break Ending::ClientClosed,
            Err(HeadError::Idle { .. }) => break Ending::Idle,
            Err(error) => break Ending::Head(error),
        };
        first = false;
        // Boxed: hyper's connection is large, and a connection waits for heads far more often
        // than it serves a request.
        let served = Box::pin(exchange(
            &mut socket,
            &mut buffer,
            &head,
            &app,
            &shared,
            &state,
            &mut stop,
        ));
        match served.await {
            Ok(Exchanged::KeepAlive) => {
                if buffer.is_empty() {
                    // An idle connection holds no buffer.
                    buffer = BytesMut::new();
                }
            }
            Ok(Exchanged::Close { clean }) => break Ending::AfterRequest { clean },
            Err(error) => break Ending::Http(error),
        }
    };
    debug!(%ending, "REST connection ends");
    state.wait(Waiting::Head, Instant::now());
    match ending {
        Ending::Head(HeadError::Refused(rejection)) => {
            refuse(&mut socket, &rejection, limits, &state).await;
        }
        Ending::Head(HeadError::HeaderTimeout { received, timeout }) if received > 0 => {
            refuse(
                &mut socket,
                &Rejection::header_timeout(received, timeout),
                limits,
                &state,
            )
            .await;
        }
        // The client may have sent more (a pipelined request, the rest of a body) that a plain
        // close would answer with a reset, destroying the response in flight.
        Ending::AfterRequest { .. } => {
            let _ = socket.shutdown().await;
            linger(&mut socket, &state).await;
        }
        Ending::Stopping | Ending::Idle => {
            let _ = socket.shutdown().await;
        }
        Ending::ClientClosed | Ending::Evicted | Ending::Head(_) | Ending::Http(_) => {}
    }
}

/// Answers a refused head with its `ApiCallRc` and closes.
async fn refuse(
    socket: &mut TcpStream,
    rejection: &Rejection,
    limits: &ServerLimits,
    state: &ConnectionState,
) {
    debug!(status = rejection.status.as_u16(), cause = %rejection.cause, "refused a request head");
    let answer = rejection.to_http();
    match tokio::time::timeout(limits.send_timeout, socket.write_all(&answer)).await {
        Ok(Ok(())) => {
            let _ = socket.shutdown().await;
            linger(socket, state).await;
        }
        Ok(Err(error)) => debug!(%error, "sending the refusal failed"),
        Err(_) => debug!("the client did not read the refusal"),
    }
}

/// Reads and discards what the client still sends, briefly, so that the close that follows is
/// a FIN and not a reset that could destroy the answer before the client has read it.
async fn linger(socket: &mut TcpStream, state: &ConnectionState) {
    if state.is_evicted() {
        // Its place is needed now.
        return;
    }
    let discard = async {
        let mut scratch = [0u8; 4096];
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            match socket.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    };
    tokio::select! {
        () = state.eviction.notified() => {}
        _ = tokio::time::timeout(LINGER_TIMEOUT, discard) => {}
    }
}

/// An accepted request head.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RequestHead {
    /// Bytes of the head, up to and including its empty line.
    length: usize,
    /// The body's `Content-Length` (0 without one).
    body_length: u64,
    /// Whether the client keeps the connection open after this request.
    keep_alive: bool,
}

/// Why no request head came.
#[derive(Debug, thiserror::Error)]
enum HeadError {
    #[error("the client closed the connection")]
    Closed,
    #[error("the client closed the connection in the middle of a request head ({received} bytes)")]
    Truncated { received: usize },
    #[error("no request within the keep-alive timeout of {} s", timeout.as_secs_f64())]
    Idle { timeout: Duration },
    #[error("the request head was not complete within {} s ({received} bytes arrived)", timeout.as_secs_f64())]
    HeaderTimeout { timeout: Duration, received: usize },
    #[error("reading a request head: {0}")]
    Io(#[source] io::Error),
    #[error("refused a request head: {0}")]
    Refused(#[source] Rejection),
}

/// Reads the next request head into `buffer` (which may already hold some or all of it) and
/// checks it.
async fn read_head(
    socket: &mut TcpStream,
    buffer: &mut BytesMut,
    first: bool,
    accepted: Instant,
    limits: &ServerLimits,
) -> Result<RequestHead, HeadError> {
    let deadline = if first {
        accepted + limits.header_timeout
    } else if buffer.is_empty() {
        let idle_deadline = Instant::now() + limits.keep_alive_timeout;
        tokio::time::timeout_at(idle_deadline, socket.readable())
            .await
            .map_err(|_| HeadError::Idle {
                timeout: limits.keep_alive_timeout,
            })?
            .map_err(HeadError::Io)?;
        Instant::now() + limits.header_timeout
    } else {
        Instant::now() + limits.header_timeout
    };
    // Bytes left from the previous request (a pipelined head) are parsed before reading more.
    let mut fresh_line = buffer.contains(&b'\n');
    loop {
        if (fresh_line || buffer.len() >= MAX_REQUEST_HEAD_BYTES)
            && let Some(head) = parse_head(buffer).map_err(HeadError::Refused)?
        {
            return Ok(head);
        }
        let before = buffer.len();
        let read = tokio::time::timeout_at(deadline, read_some(socket, buffer))
            .await
            .map_err(|_| HeadError::HeaderTimeout {
                timeout: limits.header_timeout,
                received: buffer.len(),
            })?
            .map_err(HeadError::Io)?;
        if read == 0 {
            return Err(if buffer.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Truncated {
                    received: buffer.len(),
                }
            });
        }
        // A head can only complete, or a line be judged, once a line has ended; parsing only then
        // keeps a client that sends a byte at a time from making the server parse its head anew
        // for every byte.
        fresh_line = buffer[before..].contains(&b'\n');
    }
}

/// Reads what has arrived, reserving buffer space only once there is something to read.
async fn read_some(socket: &mut TcpStream, buffer: &mut BytesMut) -> io::Result<usize> {
    loop {
        socket.readable().await?;
        if buffer.capacity() - buffer.len() < HEAD_READ_CHUNK / 2 {
            buffer.reserve(HEAD_READ_CHUNK);
        }
        match socket.try_read_buf(buffer) {
            Ok(read) => return Ok(read),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Parses and checks the head at the start of `buffer`: `Ok(None)` while it is incomplete.
/// The checks are hyper's own (so hyper never refuses what passes them) under tighter size
/// limits, plus the refusal of `Transfer-Encoding`.
fn parse_head(buffer: &[u8]) -> Result<Option<RequestHead>, Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => {
            return match request.path {
                Some(path) if path.len() > MAX_URI_BYTES => {
                    Err(Rejection::uri_too_long(path.len()))
                }
                None if buffer.len() >= MAX_REQUEST_HEAD_BYTES => {
                    Err(Rejection::request_line_too_long())
                }
                _ if buffer.len() >= MAX_REQUEST_HEAD_BYTES => Err(Rejection::head_too_large()),
                _ => Ok(None),
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::too_many_headers()),
        Err(error) => return Err(Rejection::malformed(error, &request)),
    };
    if length > MAX_REQUEST_HEAD_BYTES {
        return Err(Rejection::head_too_large());
    }
    let path = request.path.expect("a complete head has a path");
    if path.len() > MAX_URI_BYTES {
        return Err(Rejection::uri_too_long(path.len()));
    }
    if let Err(error) = Uri::try_from(path) {
        return Err(Rejection::invalid_uri(path, &error));
    }
    let http_11 = request.version == Some(1);
    let mut keep_alive = http_11;
    let mut close = false;
    let mut body_length = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Rejection::transfer_encoding(header.value));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(header.value)
                .ok_or_else(|| Rejection::invalid_content_length(header.value))?;
            match body_length {
                Some(previous) if previous != value => {
                    return Err(Rejection::conflicting_content_lengths(previous, value));
                }
                _ => body_length = Some(value),
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|b| *b == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    Ok(Some(RequestHead {
        length,
        body_length: body_length.unwrap_or(0),
        keep_alive: keep_alive && !close,
    }))
}

/// A `Content-Length` value as hyper reads it: decimal digits only.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A refused request: the status and the `ApiCallRc` the server answers with.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message} ({cause})")]
struct Rejection {
    status: StatusCode,
    message: &'static str,
    cause: String,
    correction: String,
}

impl Rejection {
    fn new(
        status: StatusCode,
        message: &'static str,
        cause: impl Into<String>,
        correction: impl Into<String>,
    ) -> Rejection {
        Rejection {
            status,
            message,
            cause: cause.into(),
            correction: correction.into(),
        }
    }

    fn uri_too_long(length: usize) -> Rejection {
        Rejection::new(
            StatusCode::URI_TOO_LONG,
            "The request URI is too long.",
            format!(
                "the request target has {length} bytes; the controller takes at most {MAX_URI_BYTES}"
            ),
            "Shorten the URI: name fewer objects in one list request, or list all and filter on the client.",
        )
    }

    fn request_line_too_long() -> Rejection {
        Rejection::new(
            StatusCode::URI_TOO_LONG,
            "The request line is too long.",
            format!(
                "no end of the request line within {MAX_REQUEST_HEAD_BYTES} bytes; the controller takes URIs of at most {MAX_URI_BYTES} bytes"
            ),
            "Shorten the URI: name fewer objects in one list request, or list all and filter on the client.",
        )
    }

    fn head_too_large() -> Rejection {
        Rejection::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "The request's header fields are too large.",
            format!(
                "the request head (request line and header fields) is longer than {MAX_REQUEST_HEAD_BYTES} bytes"
            ),
            format!(
                "Send a request head of at most {} KiB.",
                MAX_REQUEST_HEAD_BYTES / 1024
            ),
        )
    }

    fn too_many_headers() -> Rejection {
        Rejection::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "The request has too many header fields.",
            format!("more than {MAX_HEADERS} header fields"),
            format!("Send at most {MAX_HEADERS} header fields."),
        )
    }

    fn malformed(error: httparse::Error, request: &httparse::Request<'_, '_>) -> Rejection {
        let cause = match error {
            httparse::Error::Token if request.method.is_none() => {
                "the method is not a valid token".to_owned()
            }
            httparse::Error::Token => "the request target contains an invalid character".to_owned(),
            httparse::Error::Version => {
                "the request line does not end with HTTP/1.0 or HTTP/1.1".to_owned()
            }
            httparse::Error::HeaderName => {
                "a header field name contains an invalid character".to_owned()
            }
            httparse::Error::HeaderValue => {
                "a header field value contains an invalid character".to_owned()
            }
            httparse::Error::NewLine => "a line does not end with CRLF".to_owned(),
            other => format!("the request head is malformed: {other}"),
        };
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "The request is not valid HTTP/1.1.",
            cause,
            "Send an HTTP/1.1 request: a request line (method, target, version) and header fields, each ending with CRLF, then an empty line.",
        )
    }

    fn invalid_uri(path: &str, error: &axum::http::uri::InvalidUri) -> Rejection {
        let shown: String = path.chars().take(120).collect();
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "The request target is not a valid URI.",
            format!("'{shown}': {error}"),
            "Percent-encode the path and query of the URI.",
        )
    }

    fn transfer_encoding(value: &[u8]) -> Rejection {
        Rejection::new(
            StatusCode::LENGTH_REQUIRED,
            "The request body must be sent with a Content-Length.",
            format!(
                "the request has Transfer-Encoding: {}; the controller reads request bodies only by their Content-Length",
                String::from_utf8_lossy(value)
            ),
            "Send the body with a Content-Length header and no Transfer-Encoding.",
        )
    }

    fn invalid_content_length(value: &[u8]) -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "The request's Content-Length is invalid.",
            format!("Content-Length: {}", String::from_utf8_lossy(value)),
            "Send one Content-Length with the body's size in bytes, in decimal digits.",
        )
    }

    fn conflicting_content_lengths(first: u64, second: u64) -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "The request has conflicting Content-Length header fields.",
            format!("Content-Length {first} and Content-Length {second}"),
            "Send one Content-Length with the body's size in bytes.",
        )
    }

    fn header_timeout(received: usize, timeout: Duration) -> Rejection {
        Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "The request head did not arrive in time.",
            format!(
                "{received} bytes of the request head arrived, but not its end, within {} s",
                timeout.as_secs_f64()
            ),
            "Send the request line and header fields without pausing.",
        )
    }

    /// The whole HTTP answer, closing the connection.
    fn to_http(&self) -> Vec<u8> {
        let entry = ApiCallRc::new(RetCode::error(code::FAIL_INVLD_REQUEST), self.message)
            .cause(self.cause.clone())
            .correction(self.correction.clone());
        let body = serde_json::to_vec(&[entry]).expect("ApiCallRc serializes");
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len()
        );
        let mut answer = head.into_bytes();
        answer.extend_from_slice(&body);
        answer
    }
}

/// The outcome of one request, for the connection.
enum Exchanged {
    KeepAlive,
    /// Close; `clean` if nothing the client sent is left unread.
    Close {
        clean: bool,
    },
}

/// How hyper's part of an exchange ended.
enum HttpEnded {
    /// The response is flushed and hyper waits for a next request the server will read itself.
    Served,
    /// hyper ended the connection itself (the client or the response asked to close).
    Closed,
}

/// Serves the request whose head `head` is at the start of `buffer`: hands hyper the head and
/// the body, drives it until the response is flushed, and takes the connection back.
async fn exchange(
    socket: &mut TcpStream,
    buffer: &mut BytesMut,
    head: &RequestHead,
    app: &Router,
    shared: &Shared,
    state: &ConnectionState,
    stop: &mut watch::Receiver<bool>,
) -> Result<Exchanged, hyper::Error> {
    let limits = &shared.limits;
    let head_done = Instant::now();
    let buffered_body = usize::try_from(head.body_length)
        .unwrap_or(usize::MAX)
        .min(buffer.len() - head.length);
    let read_ahead = buffer.split_to(head.length + buffered_body).freeze();
    let body_remaining = head.body_length - buffered_body as u64;
    if body_remaining > 0 {
        state.wait(Waiting::Body, head_done);
    } else {
        state.stop_waiting();
    }
    let progress = Arc::new(Progress::default());
    let stream = RequestStream {
        socket,
        read_ahead,
        body_remaining,
        body_deadline: head_done + limits.body_timeout,
        body_timeout: limits.body_timeout,
        body_timer: None,
        send_timeout: limits.send_timeout,
        send_stall: None,
        state,
        progress: &progress,
    };
    let service = ExchangeService {
        app: app.clone(),
        progress: progress.clone(),
    };
    let mut http = shared.http.serve_connection(TokioIo::new(stream), service);
    let mut stopping = *stop.borrow_and_update();
    if stopping {
        Pin::new(&mut http).graceful_shutdown();
    }
    let mut eviction_seen = false;
    let ended = loop {
        tokio::select! {
            ended = poll_fn(|cx| match http.poll_without_shutdown(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(HttpEnded::Closed)),
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending if progress.response_flushed.load(Ordering::Acquire) => {
                    Poll::Ready(Ok(HttpEnded::Served))
                }
                Poll::Pending => Poll::Pending,
            }) => break ended,
            // hyper answers with `Connection: close` if it has not yet sent the response head.
            _ = stop.changed(), if !stopping => {
                stopping = true;
                Pin::new(&mut http).graceful_shutdown();
            }
            // The stream fails its next wait on the client; poll hyper again so it gets there.
            () = state.eviction.notified(), if !eviction_seen => eviction_seen = true,
        }
    }?;
    let parts = http.into_parts();
    let stream = parts.io.into_inner();
    let clean = stream.request_consumed() && parts.read_buf.is_empty();
    Ok(match ended {
        HttpEnded::Served
            if clean
                && head.keep_alive
                && !progress.response_closes.load(Ordering::Acquire)
                && !stopping
                && !state.is_evicted() =>
        {
            Exchanged::KeepAlive
        }
        HttpEnded::Served | HttpEnded::Closed => Exchanged::Close { clean },
    })
}

/// What the service, the response body and the stream of one exchange tell the connection.
#[derive(Default)]
struct Progress {
    /// hyper has taken the whole response body (and dropped it).
    response_done: AtomicBool,
    /// After that, hyper flushed: every byte of the response is in the socket.
    response_flushed: AtomicBool,
    /// The response says `Connection: close`.
    response_closes: AtomicBool,
}

/// The connection as hyper sees it for one request: the head and the body bytes the server has
/// already read, then the rest of the body from the socket, then nothing more. Waits on the
/// client fail when their time is up or the connection has been evicted.
struct RequestStream<'a> {
    socket: &'a mut TcpStream,
    /// Read but not yet given to hyper.
    read_ahead: Bytes,
    /// Body bytes still to come from the socket.
    body_remaining: u64,
    body_deadline: Instant,
    body_timeout: Duration,
    body_timer: Option<Pin<Box<Sleep>>>,
    send_timeout: Duration,
    /// Running while the socket does not take the response.
    send_stall: Option<Pin<Box<Sleep>>>,
    state: &'a ConnectionState,
    progress: &'a Progress,
}

impl RequestStream<'_> {
    /// Whether hyper has been given the whole request.
    fn request_consumed(&self) -> bool {
        self.read_ahead.is_empty() && self.body_remaining == 0
    }
}

impl AsyncRead for RequestStream<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read_ahead.is_empty() {
            let count = this.read_ahead.len().min(buf.remaining());
            buf.put_slice(&this.read_ahead[..count]);
            this.read_ahead.advance(count);
            return Poll::Ready(Ok(()));
        }
        if this.body_remaining == 0 {
            // The request is complete; the next one is the server's to read. hyper polls here
            // only to notice a client leaving early, and the exchange ends without that.
            return Poll::Pending;
        }
        if this.state.is_evicted() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                BodyReadError::Evicted,
            )));
        }
        let deadline = this.body_deadline;
        let timer = this
            .body_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                BodyReadError::TimedOut {
                    timeout: this.body_timeout,
                },
            )));
        }
        let wanted = usize::try_from(this.body_remaining)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(wanted));
        ready!(Pin::new(&mut *this.socket).poll_read(cx, &mut limited))?;
        let read = limited.filled().len();
        buf.advance(read);
        this.body_remaining -= read as u64;
        if this.body_remaining == 0 && this.state.waiting_for() == Waiting::Body {
            this.state.stop_waiting();
        }
        Poll::Ready(Ok(()))
    }
}

impl RequestStream<'_> {
    /// Tracks a write: a stall starts the send timer and makes the connection evictable.
    fn poll_send<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match write(Pin::new(&mut *self.socket), cx) {
            Poll::Ready(result) => {
                if self.send_stall.take().is_some() && self.state.waiting_for() == Waiting::Reader {
                    self.state.stop_waiting();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if self.state.is_evicted() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        SendError::Evicted,
                    )));
                }
                let timeout = self.send_timeout;
                let state = self.state;
                let stall = self.send_stall.get_or_insert_with(|| {
                    if state.waiting_stamp().is_none() {
                        state.wait(Waiting::Reader, Instant::now());
                    }
                    Box::pin(tokio::time::sleep(timeout))
                });
                if stall.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        SendError::TimedOut { timeout },
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for RequestStream<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_send(cx, |socket, cx| socket.poll_write(cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_send(cx, |socket, cx| socket.poll_write_vectored(cx, data))
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut *this.socket).poll_flush(cx))?;
        // hyper flushes the socket only once its own buffer is written out.
        if this.progress.response_done.load(Ordering::Acquire) {
            this.progress
                .response_flushed
                .store(true, Ordering::Release);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().socket).poll_shutdown(cx)
    }
}

/// The router as hyper's service for one exchange; notes what the connection must know about
/// the response.
#[derive(Clone)]
struct ExchangeService {
    app: Router,
    progress: Arc<Progress>,
}

impl hyper::service::Service<Request<Incoming>> for ExchangeService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let app = self.app.clone();
        let progress = self.progress.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            let closes = response
                .headers()
                .get_all(axum::http::header::CONNECTION)
                .iter()
                .any(|value| {
                    value
                        .as_bytes()
                        .split(|b| *b == b',')
                        .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
                });
            progress.response_closes.store(closes, Ordering::Release);
            Ok(response.map(|body| ResponseBody { body, progress }))
        })
    }
}

/// A response body that tells the connection when hyper is done with it.
struct ResponseBody {
    body: axum::body::Body,
    progress: Arc<Progress>,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.progress.response_done.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &[u8]) -> Result<Option<RequestHead>, Rejection> {
        parse_head(head)
    }

    #[test]
    fn a_complete_head_gives_its_length_body_and_keep_alive() {
        let head = b"POST /v1/nodes HTTP/1.1\r\nHost: c\r\nContent-Length: 12\r\n\r\n{\"name\":";
        let parsed = parsed(head).unwrap().unwrap();
        assert_eq!(parsed.length, head.len() - 8);
        assert_eq!(parsed.body_length, 12);
        assert!(parsed.keep_alive);
        let close = parsed_head(b"GET / HTTP/1.1\r\nConnection: Keep-Alive, close\r\n\r\n");
        assert!(!close.keep_alive);
        let old = parsed_head(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!old.keep_alive);
        let old_kept = parsed_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(old_kept.keep_alive);
        let bare_newlines = parsed_head(b"GET /health HTTP/1.1\nHost: c\n\n");
        assert_eq!(bare_newlines.body_length, 0);
    }

    fn parsed_head(head: &[u8]) -> RequestHead {
        parsed(head).unwrap().expect("a complete head")
    }

    fn refused(head: &[u8]) -> Rejection {
        parsed(head).expect_err("refused")
    }

    #[test]
    fn an_incomplete_head_waits_until_a_limit_is_crossed() {
        assert_eq!(parsed(b"GET /v1/nodes HT").unwrap(), None);
        assert_eq!(
            parsed(b"GET /v1/nodes HTTP/1.1\r\nHost: c\r\n").unwrap(),
            None
        );
        let mut long_line = b"GET /".to_vec();
        long_line.resize(MAX_REQUEST_HEAD_BYTES, b'a');
        assert_eq!(refused(&long_line).status, StatusCode::URI_TOO_LONG);
        let mut long_uri = b"GET /".to_vec();
        long_uri.resize(MAX_URI_BYTES + 10, b'a');
        long_uri.extend_from_slice(b" HTTP/1.1\r\nHost: c\r\n");
        assert_eq!(refused(&long_uri).status, StatusCode::URI_TOO_LONG);
        let mut long_headers = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        long_headers.resize(MAX_REQUEST_HEAD_BYTES, b'a');
        assert_eq!(
            refused(&long_headers).status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn heads_hyper_would_refuse_are_refused_first() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            refused(&many).status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        for head in [
            &b"G(T / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"GET http://[::1 HTTP/1.1\r\n\r\n",
        ] {
            let rejection = refused(head);
            assert_eq!(
                rejection.status,
                StatusCode::BAD_REQUEST,
                "{}: {rejection}",
                String::from_utf8_lossy(head)
            );
        }
        let chunked = refused(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(chunked.status, StatusCode::LENGTH_REQUIRED);
        let same_twice =
            parsed_head(b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(same_twice.body_length, 5);
    }

    #[test]
    fn a_refusal_is_an_api_call_rc_list_that_closes_the_connection() {
        let answer = Rejection::too_many_headers().to_http();
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let entries: Vec<ApiCallRc> = serde_json::from_str(body).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries[0].is_error());
        assert_eq!(entries[0].ret_code().code(), code::FAIL_INVLD_REQUEST);
        assert!(entries[0].cause.is_some() && entries[0].correction.is_some());
    }

    #[test]
    fn the_longest_waiting_connection_is_evicted_and_busy_ones_never() {
        let epoch = Instant::now();
        let mut connections = Connections::new(3, epoch);
        let (first, a) = connections.admit(Instant::now()).unwrap();
        let (_, b) = connections.admit(Instant::now()).unwrap();
        let (_, c) = connections.admit(Instant::now()).unwrap();
        a.stop_waiting();
        b.wait(Waiting::Head, epoch + Duration::from_millis(5));
        c.wait(Waiting::Body, epoch + Duration::from_millis(2));
        let (_, d) = connections
            .admit(Instant::now())
            .expect("room made by eviction");
        assert!(c.is_evicted(), "c waited longest");
        assert!(!a.is_evicted() && !b.is_evicted());
        d.stop_waiting();
        let (_, e) = connections
            .admit(Instant::now())
            .expect("room made by eviction");
        assert!(b.is_evicted(), "b is the only one left waiting");
        e.stop_waiting();
        assert!(
            connections.admit(Instant::now()).is_none(),
            "a, d and e are busy"
        );
        assert_eq!(connections.live, 3);
        assert_eq!(
            connections.open(),
            5,
            "evicted connections count until they close"
        );
        connections.closed(first);
        assert_eq!((connections.live, connections.open()), (2, 4));
        assert!(connections.admit(Instant::now()).is_some());
    }
}
