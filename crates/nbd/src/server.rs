//! The server: the export table, the listeners, and one task per connection from accept to
//! close.
//!
//! A connection is a handshake bounded by [`ServerConfig::handshake_timeout`], then (if the
//! client chose an export) the transmission phase, between `Volume::opened` and
//! `Volume::closed`. Every connection runs in a tracing span with its peer and, once chosen,
//! its export, and says why it ended. What this module does not own: the wire format
//! ([`crate::protocol`]), the option haggling ([`crate::handshake`]) and the request path
//! ([`crate::transmission`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrite_block::Volume;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, field, info, info_span, warn};

use crate::error::{ConnectionError, ServerError};
use crate::export::{Chosen, ExportConfig, ExportName, Exports};
use crate::handshake::{self, Negotiation};
use crate::pool::{BufferPool, POOL_BYTES};
use crate::transmission::{self, Ending, Limits};

/// How long a client may take from connecting to choosing an export. Past it the connection is
/// closed, so a client that connects and says nothing (or trickles bytes) holds nothing for
/// long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a listener waits after a failed accept (e.g. out of file descriptors) before it
/// tries again.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The server's thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub handshake_timeout: Duration,
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            limits: Limits::default(),
        }
    }
}

/// A byte stream a client connects over, which splits into halves the request loop and the
/// reply writer own separately.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    type ReadHalf: AsyncRead + Send + Unpin + 'static;
    type WriteHalf: AsyncWrite + Send + Unpin + 'static;
    fn into_halves(self) -> (Self::ReadHalf, Self::WriteHalf);
}

impl Transport for UnixStream {
    type ReadHalf = tokio::net::unix::OwnedReadHalf;
    type WriteHalf = tokio::net::unix::OwnedWriteHalf;
    fn into_halves(self) -> (Self::ReadHalf, Self::WriteHalf) {
        self.into_split()
    }
}

impl Transport for TcpStream {
    type ReadHalf = tokio::net::tcp::OwnedReadHalf;
    type WriteHalf = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> (Self::ReadHalf, Self::WriteHalf) {
        self.into_split()
    }
}

/// In-process connections (tests).
impl Transport for DuplexStream {
    type ReadHalf = tokio::io::ReadHalf<DuplexStream>;
    type WriteHalf = tokio::io::WriteHalf<DuplexStream>;
    fn into_halves(self) -> (Self::ReadHalf, Self::WriteHalf) {
        tokio::io::split(self)
    }
}

/// An NBD server: named exports of volumes of one kind, served on any number of listeners.
/// Cloning gives another handle on the same server.
pub struct Server<V> {
    shared: Arc<Shared<V>>,
}

impl<V> Clone for Server<V> {
    fn clone(&self) -> Self {
        Server {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<V> {
    config: ServerConfig,
    exports: Exports<V>,
    shutdown: watch::Sender<bool>,
    connections: watch::Sender<usize>,
    next_connection: AtomicU64,
    buffers: Arc<BufferPool>,
}

impl<V: Volume> Server<V> {
    pub fn new(config: ServerConfig) -> Server<V> {
        Server {
            shared: Arc::new(Shared {
                config,
                exports: Exports::new(),
                shutdown: watch::channel(false).0,
                connections: watch::channel(0).0,
                next_connection: AtomicU64::new(1),
                buffers: BufferPool::new(POOL_BYTES),
            }),
        }
    }

    /// Offers `volume` under the config's name, from the next client on.
    pub fn add_export(&self, config: ExportConfig, volume: Arc<V>) -> Result<(), ServerError> {
        info!(export = %config.name, size = volume.size(), read_only = config.read_only, "export added");
        self.shared.exports.add(config, volume)
    }

    /// Withdraws an export: no new client can choose it, and its connections close at once,
    /// their outstanding requests answered with `NBD_ESHUTDOWN`.
    pub fn remove_export(&self, name: &ExportName) -> Result<(), ServerError> {
        self.shared.exports.remove(name)?;
        info!(export = %name, "export removed");
        Ok(())
    }

    /// The pool write payloads come from; a volume may take its read buffers from it too.
    pub fn buffer_pool(&self) -> Arc<BufferPool> {
        Arc::clone(&self.shared.buffers)
    }

    pub fn export_names(&self) -> Vec<ExportName> {
        self.shared.exports.names()
    }

    /// Accepts clients on a unix socket until [`Server::shutdown`].
    pub async fn serve_unix(&self, listener: UnixListener) {
        let mut shutdown = self.shared.shutdown.subscribe();
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let id = self.shared.next_connection.fetch_add(1, Ordering::Relaxed);
                        self.spawn_connection(stream, format!("unix#{id}"));
                    }
                    Err(error) => {
                        warn!(%error, "accepting on the unix socket failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Accepts clients over TCP until [`Server::shutdown`]; every socket gets `TCP_NODELAY`
    /// (replies are small and must not wait for more).
    pub async fn serve_tcp(&self, listener: TcpListener) {
        let mut shutdown = self.shared.shutdown.subscribe();
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Err(error) = stream.set_nodelay(true) {
                            warn!(%peer, %error, "could not set TCP_NODELAY");
                        }
                        self.spawn_connection(stream, peer.to_string());
                    }
                    Err(error) => {
                        warn!(%error, "accepting over TCP failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Serves one client already connected over `stream`; `peer` names it in the logs.
    pub fn spawn_connection<S: Transport>(&self, stream: S, peer: String) -> JoinHandle<()> {
        let counted = CountedConnection::new(Arc::clone(&self.shared));
        let span = info_span!("nbd", peer = %peer, export = field::Empty);
        tokio::spawn(run_connection(counted, stream).instrument(span))
    }

    /// Stops the listeners, refuses new options with `NBD_REP_ERR_SHUTDOWN`, and closes every
    /// connection (outstanding requests get `NBD_ESHUTDOWN`). Returns at once; see
    /// [`Server::closed`].
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Completes when no connection is left.
    pub async fn closed(&self) {
        let mut connections = self.shared.connections.subscribe();
        let _ = connections.wait_for(|count| *count == 0).await;
    }

    /// Connections open now (in handshake or transmission).
    pub fn connection_count(&self) -> usize {
        *self.shared.connections.borrow()
    }
}

/// Counts a connection from before its task starts until the task ends.
struct CountedConnection<V> {
    shared: Arc<Shared<V>>,
}

impl<V> CountedConnection<V> {
    fn new(shared: Arc<Shared<V>>) -> CountedConnection<V> {
        shared.connections.send_modify(|count| *count += 1);
        CountedConnection { shared }
    }
}

impl<V> Drop for CountedConnection<V> {
    fn drop(&mut self) {
        self.shared.connections.send_modify(|count| *count -= 1);
    }
}

/// A client in transmission on a volume: `opened` now, `closed` when dropped, however the
/// connection ends.
struct Session<'a, V: Volume>(&'a V);

impl<'a, V: Volume> Session<'a, V> {
    fn open(volume: &'a V) -> Session<'a, V> {
        volume.opened();
        Session(volume)
    }
}

impl<V: Volume> Drop for Session<'_, V> {
    fn drop(&mut self) {
        self.0.closed();
    }
}

async fn run_connection<V: Volume, S: Transport>(counted: CountedConnection<V>, mut stream: S) {
    let shared = &counted.shared;
    let shutdown = shared.shutdown.subscribe();
    let mut stopping = shutdown.clone();
    let timeout = shared.config.handshake_timeout;
    debug!("client connected");

    let negotiated = tokio::select! {
        negotiated = tokio::time::timeout(
            timeout,
            handshake::negotiate(&mut stream, &shared.exports, &shutdown),
        ) => negotiated.unwrap_or(Err(ConnectionError::HandshakeTimeout(timeout))),
        _ = stopping.wait_for(|stopping| *stopping) => {
            Ok(Negotiation::Ended("the server is shutting down"))
        }
    };
    let Chosen { export, removed } = match negotiated {
        Ok(Negotiation::Transmission(chosen)) => chosen,
        Ok(Negotiation::Ended(reason)) => {
            debug!(reason, "connection closed during the handshake");
            return;
        }
        Err(error) => {
            warn!(%error, "closing the connection during the handshake");
            return;
        }
    };

    tracing::Span::current().record("export", export.name().as_str());
    debug!("client entered transmission");
    let session = Session::open(&*export.volume);
    let (reader, writer) = stream.into_halves();
    let ended = transmission::serve(
        &export,
        reader,
        writer,
        shared.config.limits,
        &shared.buffers,
        removed,
        shutdown,
    )
    .await;
    drop(session);
    match ended {
        Ok(Ending::Disconnected) => debug!("client disconnected"),
        Ok(Ending::HungUp) => debug!("client hung up"),
        Ok(Ending::HungUpMidRequest) => {
            info!("client hung up in the middle of a request; that request was dropped")
        }
        Ok(Ending::ExportRemoved) => info!("connection closed: the export was removed"),
        Ok(Ending::ServerShutdown) => info!("connection closed: the server is shutting down"),
        Ok(Ending::WriterFailed) => info!("connection closed: the client stopped taking replies"),
        Err(error) => warn!(%error, "closing the connection"),
    }
}
