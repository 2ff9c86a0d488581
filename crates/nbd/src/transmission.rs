//! The transmission phase of one connection: requests in, volume calls, replies out.
//!
//! Two tasks per connection, and no lock between them:
//!
//! - the **request loop** (the connection's own task) reads the socket into a buffer, decodes
//!   request headers in place (no allocation per request), reads each write's payload into an
//!   aligned buffer from the server's [`BufferPool`] and hands it to the volume as `Bytes`, and
//!   drives every in-flight volume call in one `FuturesUnordered`, so calls complete in any
//!   order and no task is spawned per request;
//! - the **reply writer** takes the replies in the order they complete and sends as many as are
//!   ready with one vectored write: the 16-byte headers and the read data (the volume's own
//!   `Bytes`, never copied) side by side. A large read the volume answered as page-cache pages
//!   in a pipe ([`Volume::read_piped`]) is copied out of the pipe a [`STAGING_BYTES`] piece at a
//!   time and each piece written at once, so its bytes are still in the CPU's caches when the
//!   socket and the client copy them.
//!
//! In flight means from the moment a request is read until its reply is written. A connection
//! has at most [`Limits::max_requests`] requests and about [`Limits::max_bytes`] bytes of data
//! (write payloads and read results) in flight; past either, the request loop stops reading the
//! socket until the writer has sent replies, which bounds the memory a client can pin, also a
//! client that never reads its replies.
//!
//! Payload bytes the request loop already had in its buffer when it decoded a write's header
//! are copied into the aligned buffer once (at most [`READ_BUFFER_BYTES`] of them); the rest of
//! the payload is read from the socket straight into it. After a large write the loop reads
//! only a header's worth, so a stream of large writes is received without any copy.
//!
//! What this module does not own: the handshake, the export table, `Volume::opened`/`closed`
//! (the server calls them around this phase).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ferrite_block::{IoError, PIPE_BYTES, Volume};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{Instrument, debug, error, warn};

use crate::error::ConnectionError;
use crate::export::Export;
use crate::pool::{BufferPool, PooledBuf};
use crate::protocol::{
    self, CMD_DISC, CMD_READ, CMD_WRITE, ErrorCode, MAXIMUM_PAYLOAD, Operation, REQUEST_HEADER_LEN,
    Reply, ReplyData, RequestHeader,
};

/// Requests in flight on one connection, by default: enough for fio or qemu at queue depth
/// 128, few enough that one connection cannot hog a volume.
pub const MAX_IN_FLIGHT_REQUESTS: usize = 256;

/// Data in flight on one connection, by default (write payloads received, read results not yet
/// sent). One request may go past it by up to its own size (at most 32 MiB).
pub const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

/// The request loop's socket buffer: one read takes a burst of small requests with their
/// payloads (32 requests of 4 KiB in one system call).
pub const READ_BUFFER_BYTES: usize = 256 << 10;

/// A write at least this long makes the next read a header-only one, so the following payload,
/// probably as large, lands straight in its aligned buffer.
pub const DIRECT_PAYLOAD_BYTES: usize = 64 << 10;

/// The shortest read asked of the volume as piped data ([`Volume::read_piped`]): below it, the
/// read's copy costs less than the pipe's system calls, and its reply is sent soon enough to
/// find its bytes still in the caches.
pub const PIPED_READ_BYTES: u32 = 128 << 10;

/// The piece of piped data copied out and written at a time: well inside a core's L2 cache, so
/// the bytes are still there when the socket copies them, and when the client does.
pub const STAGING_BYTES: usize = 128 << 10;

/// Replies sent with one vectored write, at most (two I/O slices each, well below `IOV_MAX`).
pub const MAX_REPLY_BATCH: usize = 256;

/// How long a connection that is closing (the client left, its export was removed, the server
/// is stopping) waits for its last replies to reach a client that does not read them.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits of one connection in transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_requests: usize,
    pub max_bytes: usize,
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_requests: MAX_IN_FLIGHT_REQUESTS,
            max_bytes: MAX_IN_FLIGHT_BYTES,
            close_timeout: CLOSE_TIMEOUT,
        }
    }
}

/// How transmission ended, when it ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// `NBD_CMD_DISC`, after every request was answered.
    Disconnected,
    /// The client closed its end; requests already read were still carried out.
    HungUp,
    /// The client closed its end in the middle of a request, which was dropped.
    HungUpMidRequest,
    /// The export was removed: outstanding requests got `NBD_ESHUTDOWN`.
    ExportRemoved,
    /// The server is stopping: outstanding requests got `NBD_ESHUTDOWN`.
    ServerShutdown,
    /// The reply writer stopped (the client no longer takes replies).
    WriterFailed,
}

/// What is in flight, shared by the request loop (which adds) and the writer (which subtracts
/// once a reply is on the socket).
struct Budget {
    requests: AtomicUsize,
    bytes: AtomicUsize,
    released: Notify,
    limits: Limits,
}

impl Budget {
    fn new(limits: Limits) -> Budget {
        Budget {
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            released: Notify::new(),
            limits,
        }
    }

    fn has_room(&self) -> bool {
        self.requests.load(Ordering::Acquire) < self.limits.max_requests
            && self.bytes.load(Ordering::Acquire) < self.limits.max_bytes
    }

    fn take(&self, bytes: usize) {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    fn give_back(&self, requests: usize, bytes: usize) {
        self.requests.fetch_sub(requests, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.released.notify_one();
    }
}

/// A reply on its way to the writer, with the data bytes it holds in the budget.
struct Outgoing {
    reply: Reply,
    bytes: usize,
}

impl Outgoing {
    fn new(cookie: u64, result: Result<ReplyData, ErrorCode>, bytes: usize) -> Outgoing {
        let (error, data) = match result {
            Ok(data) => (None, data),
            Err(code) => (Some(code), ReplyData::None),
        };
        Outgoing {
            reply: Reply {
                header: protocol::simple_reply(error, cookie),
                data,
            },
            bytes,
        }
    }
}

pin_project_lite::pin_project! {
    /// One volume call in flight, tagged with the request's cookie (so the connection can still
    /// answer it with `NBD_ESHUTDOWN` when it closes before the call completes).
    struct InFlight<F> {
        cookie: u64,
        bytes: usize,
        #[pin]
        call: F,
    }
}

impl<F> Future for InFlight<F>
where
    F: Future<Output = Result<ReplyData, IoError>>,
{
    type Output = Outgoing;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outgoing> {
        let this = self.project();
        let result = ready!(this.call.poll(cx)).map_err(|error| {
            debug!(cookie = *this.cookie, %error, "request failed");
            ErrorCode::from(&error)
        });
        Poll::Ready(Outgoing::new(*this.cookie, result, *this.bytes))
    }
}

/// Carries out one checked request on the volume.
async fn call_volume<V: Volume>(
    volume: &V,
    operation: Operation,
    payload: Bytes,
) -> Result<ReplyData, IoError> {
    match operation {
        Operation::Read { offset, length } => {
            if (PIPED_READ_BYTES..=PIPE_BYTES as u32).contains(&length)
                && let Some(piped) = volume.read_piped(offset, length).await?
            {
                checked_length(offset, length, piped.len())?;
                return Ok(ReplyData::Piped(piped));
            }
            let data = volume.read(offset, length).await?;
            checked_length(offset, length, data.len())?;
            Ok(ReplyData::Bytes(data))
        }
        Operation::Write { offset, fua } => volume
            .write(offset, payload, fua)
            .await
            .map(|()| ReplyData::None),
        Operation::Flush => volume.flush().await.map(|()| ReplyData::None),
        Operation::Trim {
            offset,
            length,
            fua,
        } => {
            volume.trim(offset, length).await?;
            if fua {
                volume.flush().await?;
            }
            Ok(ReplyData::None)
        }
        Operation::WriteZeroes {
            offset,
            length,
            fua,
        } => volume
            .write_zeroes(offset, length, fua)
            .await
            .map(|()| ReplyData::None),
        Operation::Nothing | Operation::Disconnect => Ok(ReplyData::None),
    }
}

/// Checks that the volume returned as many bytes as asked: sending more or fewer would break
/// the stream's framing.
fn checked_length(offset: u64, length: u32, returned: usize) -> Result<(), IoError> {
    if returned != length as usize {
        error!(
            offset,
            length, returned, "the volume returned a read of the wrong length"
        );
        return Err(IoError::Io(format!(
            "the volume returned {returned} bytes for a read of {length}"
        )));
    }
    Ok(())
}

/// A write whose payload is still arriving.
struct PendingWrite {
    header: RequestHeader,
    data: PooledBuf,
}

impl PendingWrite {
    fn missing(&self) -> usize {
        self.header.length as usize - self.data.len()
    }
}

/// The data bytes a request holds in the budget while in flight.
fn data_bytes(header: &RequestHeader) -> usize {
    match header.command {
        CMD_WRITE => header.length as usize,
        CMD_READ if header.length <= MAXIMUM_PAYLOAD => header.length as usize,
        _ => 0,
    }
}

/// Reads more from the socket: into the pending write's buffer when one is waiting for its
/// payload, else into the request buffer (only a header's worth after a large write).
async fn read_more<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    pending: Option<&mut PendingWrite>,
    header_only: bool,
) -> io::Result<usize> {
    if let Some(pending) = pending {
        let missing = pending.missing();
        let data: &mut ferrite_block::AlignedBuf = &mut pending.data;
        return reader.read_buf(&mut data.limit(missing)).await;
    }
    if buffer.capacity() - buffer.len() < READ_BUFFER_BYTES / 4 {
        // What is left unread is less than a header: this moves it to the front of the same
        // allocation rather than growing it.
        buffer.reserve(READ_BUFFER_BYTES / 2);
    }
    if header_only {
        let wanted = REQUEST_HEADER_LEN.saturating_sub(buffer.len()).max(1);
        reader.read_buf(&mut buffer.limit(wanted)).await
    } else {
        reader.read_buf(buffer).await
    }
}

/// Serves requests on `reader`/`writer` for `export` until the client disconnects, the export
/// is removed or the server stops.
pub(crate) async fn serve<V, R, W>(
    export: &Export<V>,
    mut reader: R,
    writer: W,
    limits: Limits,
    pool: &Arc<BufferPool>,
    mut removed: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Ending, ConnectionError>
where
    V: Volume,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let budget = Arc::new(Budget::new(limits));
    let (replies, queue) = mpsc::unbounded_channel::<Outgoing>();
    let writer_task = tokio::spawn(
        write_replies(writer, queue, Arc::clone(&budget)).instrument(tracing::Span::current()),
    );

    let volume: &V = &export.volume;
    let read_only = export.config.read_only;
    let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut pending: Option<PendingWrite> = None;
    let mut header_only = false;
    let mut in_flight = FuturesUnordered::new();
    let mut ending: Option<Ending> = None;

    let outcome: Result<Ending, ConnectionError> = 'requests: loop {
        // Take every request the buffer holds, as far as the budget allows.
        while ending.is_none() {
            if let Some(write) = pending.as_mut() {
                let take = write.missing().min(buffer.len());
                write.data.put_slice(&buffer[..take]);
                buffer.advance(take);
                if write.missing() > 0 {
                    break;
                }
                let PendingWrite { header, data } = pending.take().expect("a pending write");
                header_only = data.len() >= DIRECT_PAYLOAD_BYTES;
                let payload = data.freeze();
                let bytes = data_bytes(&header);
                match protocol::check_request(&header, volume.size(), read_only) {
                    Ok(operation) => in_flight.push(InFlight {
                        cookie: header.cookie,
                        bytes,
                        call: call_volume(volume, operation, payload),
                    }),
                    Err(code) => {
                        let _ = replies.send(Outgoing::new(header.cookie, Err(code), bytes));
                    }
                }
                continue;
            }
            if buffer.len() < REQUEST_HEADER_LEN || !budget.has_room() {
                break;
            }
            let bytes: &[u8; REQUEST_HEADER_LEN] = buffer[..REQUEST_HEADER_LEN]
                .try_into()
                .expect("a whole header");
            let header = match RequestHeader::decode(bytes) {
                Ok(header) => header,
                Err(violation) => break 'requests Err(violation.into()),
            };
            buffer.advance(REQUEST_HEADER_LEN);
            if header.command == CMD_DISC {
                ending = Some(Ending::Disconnected);
                break;
            }
            let bytes = data_bytes(&header);
            budget.take(bytes);
            if header.payload_length() > 0 {
                pending = Some(PendingWrite {
                    header,
                    data: pool.take(header.payload_length() as usize),
                });
                continue;
            }
            if header.command != CMD_WRITE {
                header_only = false;
            }
            match protocol::check_request(&header, volume.size(), read_only) {
                Ok(operation) => in_flight.push(InFlight {
                    cookie: header.cookie,
                    bytes,
                    call: call_volume(volume, operation, Bytes::new()),
                }),
                Err(code) => {
                    let _ = replies.send(Outgoing::new(header.cookie, Err(code), bytes));
                }
            }
        }

        if let Some(ending) = ending
            && in_flight.is_empty()
        {
            break Ok(ending);
        }
        let reading = ending.is_none() && (pending.is_some() || budget.has_room());
        let waiting_for_room = ending.is_none() && pending.is_none() && !budget.has_room();

        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if replies.send(done).is_err() {
                    break Ok(Ending::WriterFailed);
                }
            }
            _ = removed.changed() => {
                answer_shutdown(&in_flight, pending.take(), &replies);
                break Ok(Ending::ExportRemoved);
            }
            _ = shutdown.changed() => {
                answer_shutdown(&in_flight, pending.take(), &replies);
                break Ok(Ending::ServerShutdown);
            }
            read = read_more(&mut reader, &mut buffer, pending.as_mut(), header_only), if reading => {
                match read {
                    Ok(0) if pending.is_some() || !buffer.is_empty() => {
                        ending = Some(Ending::HungUpMidRequest);
                        pending = None;
                    }
                    Ok(0) => ending = Some(Ending::HungUp),
                    Ok(_) => {}
                    Err(error) => break Err(ConnectionError::transmission_socket(error)),
                }
            }
            _ = budget.released.notified(), if waiting_for_room => {}
            _ = replies.closed() => break Ok(Ending::WriterFailed),
        }
    };

    // The in-flight calls that are left (after a violation, a closed export, a dead writer)
    // are dropped; their replies, if any, are already queued.
    drop(in_flight);
    drop(replies);
    let mut writer_task = writer_task;
    let written = match tokio::time::timeout(limits.close_timeout, &mut writer_task).await {
        Ok(joined) => joined,
        Err(_) => {
            warn!(timeout = ?limits.close_timeout, "the client did not take its last replies");
            writer_task.abort();
            Ok(Ok(()))
        }
    };
    match written {
        Ok(Ok(())) => {}
        Ok(Err(error)) => debug!(%error, "the reply writer stopped"),
        Err(join) => error!(%join, "the reply writer panicked"),
    }
    outcome
}

/// Answers every request still in flight, and a write whose payload was still arriving, with
/// `NBD_ESHUTDOWN`.
fn answer_shutdown<F>(
    in_flight: &FuturesUnordered<InFlight<F>>,
    pending: Option<PendingWrite>,
    replies: &mpsc::UnboundedSender<Outgoing>,
) {
    for call in Pin::new(in_flight).iter_pin_ref() {
        let call = call.get_ref();
        let _ = replies.send(Outgoing::new(
            call.cookie,
            Err(ErrorCode::Shutdown),
            call.bytes,
        ));
    }
    if let Some(write) = pending {
        let bytes = data_bytes(&write.header);
        let _ = replies.send(Outgoing::new(
            write.header.cookie,
            Err(ErrorCode::Shutdown),
            bytes,
        ));
    }
}

/// The reply writer: batches what is queued into vectored writes until the request loop drops
/// its sender, then shuts the socket's write side.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    budget: Arc<Budget>,
) -> io::Result<()> {
    let mut batch = Vec::with_capacity(MAX_REPLY_BATCH);
    let mut staging = Vec::new();
    while queue.recv_many(&mut batch, MAX_REPLY_BATCH).await > 0 {
        let written = write_batch(&mut writer, &mut batch, &mut staging).await;
        let bytes = batch.iter().map(|outgoing| outgoing.bytes).sum();
        budget.give_back(batch.len(), bytes);
        batch.clear();
        written?;
    }
    writer.shutdown().await
}

/// Writes a batch of replies in order: runs of headers and in-memory data with one vectored
/// write each; piped data after its header, copied out of its pipe through `staging` a
/// [`STAGING_BYTES`] piece at a time, each piece written while it is still in the CPU's caches
/// (see `ferrite_block::PipedData`).
async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut W,
    batch: &mut [Outgoing],
    staging: &mut Vec<u8>,
) -> io::Result<()> {
    let mut next = 0;
    while next < batch.len() {
        // Up to and including the next piped reply's header.
        let piped = batch[next..]
            .iter()
            .position(|outgoing| matches!(outgoing.reply.data, ReplyData::Piped(_)))
            .map(|at| next + at);
        let end = piped.map_or(batch.len(), |at| at + 1);
        let mut slices = Vec::with_capacity((end - next) * 2);
        for outgoing in &batch[next..end] {
            slices.push(IoSlice::new(&outgoing.reply.header));
            if let ReplyData::Bytes(data) = &outgoing.reply.data
                && !data.is_empty()
            {
                slices.push(IoSlice::new(data));
            }
        }
        write_all_slices(writer, &mut slices).await?;
        if let Some(at) = piped
            && let ReplyData::Piped(data) = &mut batch[at].reply.data
        {
            staging.resize(STAGING_BYTES, 0);
            loop {
                let copied = data.read_into(staging)?;
                if copied == 0 {
                    break;
                }
                writer.write_all(&staging[..copied]).await?;
            }
        }
        next = end;
    }
    Ok(())
}

async fn write_all_slices<W: AsyncWrite + Unpin>(
    writer: &mut W,
    slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    let mut unwritten = slices;
    while !unwritten.is_empty() {
        let written = writer.write_vectored(unwritten).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut unwritten, written);
    }
    Ok(())
}
