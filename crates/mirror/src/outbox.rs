//! The sending side of one peer connection: frames leave in the order they were handed in,
//! either written at once by whoever hands one in, or gathered by the connection's write loop
//! into vectored writes.
//!
//! [`Outbox::send_now`] is for a frame that is alone on the connection (a write at queue depth
//! 1, its acknowledgement): when nothing is queued or being written, the sender writes it to
//! the socket itself, without waking the write loop. The hand-off to another task (a thread
//! wake-up on each side) was a large part of a replicated 4 KiB write's latency. When the
//! socket does not take the whole frame at once, or anything is already on its way, the frame
//! goes behind the others and the write loop sends it. [`Outbox::queue`] always leaves a frame
//! to the write loop, which batches a burst (32 writes at queue depth 32) into one system call.
//!
//! Order holds because every decision is taken under one lock: while the write loop has frames
//! (`draining`), nothing is written directly.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, watch};

use crate::wire::{self, HEADER_BYTES, Kind};

/// The most bytes the write loop gathers into one vectored write.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// The most frames the write loop gathers into one vectored write.
pub const MAX_BATCH_FRAMES: usize = 64;

/// One frame on its way out: header, fixed part, and data if any.
pub struct Frame {
    header: [u8; HEADER_BYTES],
    fixed: Bytes,
    data: Option<Bytes>,
}

impl Frame {
    pub fn new(kind: Kind, flags: u32, seq: u64, fixed: Bytes, data: Option<Bytes>) -> Frame {
        let length = fixed.len() + data.as_ref().map_or(0, Bytes::len);
        Frame {
            header: wire::encode_header(kind, flags, seq, length as u32),
            fixed,
            data,
        }
    }

    fn len(&self) -> usize {
        HEADER_BYTES + self.fixed.len() + self.data.as_ref().map_or(0, Bytes::len)
    }

    /// The frame's parts, in order, without the empty ones.
    pub(crate) fn parts(&self) -> impl Iterator<Item = &[u8]> {
        [
            Some(&self.header[..]),
            Some(&self.fixed[..]),
            self.data.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|part| !part.is_empty())
    }
}

struct State {
    /// `None` once the connection is closed.
    socket: Option<Arc<OwnedWriteHalf>>,
    queue: VecDeque<Frame>,
    /// Bytes of the queue's first frame already written (a direct write the socket took only
    /// part of).
    first_written: usize,
    /// The write loop has frames to send: new ones go behind them.
    draining: bool,
}

/// The frames on their way to one peer, and the socket they go to.
pub struct Outbox {
    state: Mutex<State>,
    wake: Notify,
}

impl Outbox {
    pub fn new(socket: OwnedWriteHalf) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                socket: Some(Arc::new(socket)),
                queue: VecDeque::new(),
                first_written: 0,
                draining: false,
            }),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves `frame` to the write loop, behind every frame handed in before. False when the
    /// connection is closed (the frame is dropped).
    pub fn queue(&self, frame: Frame) -> bool {
        let mut state = self.state();
        if state.socket.is_none() {
            return false;
        }
        state.queue.push_back(frame);
        self.hand_to_loop(state);
        true
    }

    /// Writes `frame` now if nothing is on its way and the socket takes all of it without
    /// waiting; else as [`Outbox::queue`]. False when the connection is closed.
    pub fn send_now(&self, frame: Frame) -> bool {
        let mut state = self.state();
        let Some(socket) = &state.socket else {
            return false;
        };
        if !state.draining {
            let slices: Vec<IoSlice> = frame.parts().map(IoSlice::new).collect();
            match socket.try_write_vectored(&slices) {
                Ok(written) if written == frame.len() => return true,
                Ok(written) => state.first_written = written,
                // Full, or failed: the write loop waits for room, or meets the error and
                // closes the connection with it.
                Err(_) => {}
            }
        }
        state.queue.push_back(frame);
        self.hand_to_loop(state);
        true
    }

    fn hand_to_loop(&self, mut state: MutexGuard<'_, State>) {
        if !state.draining {
            state.draining = true;
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Drops every frame not sent and lets go of the socket: once the write loop has too, the
    /// sending direction is shut down.
    pub fn close(&self) {
        let mut state = self.state();
        state.socket = None;
        state.queue.clear();
        drop(state);
        self.wake.notify_one();
    }

    /// The write loop: sends what is queued, in batches, until the connection is closed
    /// (`closing`) or a write fails (its error).
    pub async fn run(&self, mut closing: watch::Receiver<bool>) -> io::Result<()> {
        let mut batch: Vec<Frame> = Vec::with_capacity(MAX_BATCH_FRAMES);
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = closing.wait_for(|closed| *closed) => return Ok(()),
            }
            loop {
                let (socket, skip) = {
                    let mut state = self.state();
                    let Some(socket) = state.socket.clone() else {
                        return Ok(());
                    };
                    if state.queue.is_empty() {
                        state.draining = false;
                        break;
                    }
                    let mut bytes = 0;
                    while batch.len() < MAX_BATCH_FRAMES && bytes < MAX_BATCH_BYTES {
                        let Some(frame) = state.queue.pop_front() else {
                            break;
                        };
                        bytes += frame.len();
                        batch.push(frame);
                    }
                    (socket, std::mem::take(&mut state.first_written))
                };
                tokio::select! {
                    written = write_batch(&socket, &batch, skip) => written?,
                    _ = closing.wait_for(|closed| *closed) => return Ok(()),
                }
                batch.clear();
            }
        }
    }
}

/// Writes `batch` to the socket, its first `skip` bytes excepted (already written).
async fn write_batch(socket: &OwnedWriteHalf, batch: &[Frame], skip: usize) -> io::Result<()> {
    let parts: Vec<&[u8]> = batch.iter().flat_map(Frame::parts).collect();
    let (mut first, mut skip) = (0usize, skip);
    while skip > 0 && first < parts.len() && skip >= parts[first].len() {
        skip -= parts[first].len();
        first += 1;
    }
    while first < parts.len() {
        let slices: Vec<IoSlice> = std::iter::once(IoSlice::new(&parts[first][skip..]))
            .chain(parts[first + 1..].iter().map(|p| IoSlice::new(p)))
            .take(1024)
            .collect();
        socket.writable().await?;
        let mut written = match socket.try_write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        while written > 0 {
            let left = parts[first].len() - skip;
            if written >= left {
                written -= left;
                first += 1;
                skip = 0;
            } else {
                skip += written;
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn outbox_and_raw_peer() -> (Arc<Outbox>, TcpStream, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        let (_, writer) = ours.into_split();
        let outbox = Arc::new(Outbox::new(writer));
        let (closing, closed) = watch::channel(false);
        tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.run(closed).await }
        });
        (outbox, raw, closing)
    }

    fn numbered(seq: u64, bytes: usize) -> Frame {
        let data = Bytes::from(vec![(seq % 251) as u8; bytes]);
        Frame::new(Kind::Write, 0, seq, Bytes::new(), Some(data))
    }

    /// Reads `count` frames from the raw end: their sequence numbers, each checked against its
    /// data.
    async fn received(raw: &mut TcpStream, count: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        for _ in 0..count {
            let mut header = [0u8; HEADER_BYTES];
            raw.read_exact(&mut header).await.unwrap();
            let header = wire::decode_header(&header).unwrap();
            let mut data = vec![0u8; header.length as usize];
            raw.read_exact(&mut data).await.unwrap();
            assert!(data.iter().all(|b| *b == (header.seq % 251) as u8));
            seqs.push(header.seq);
        }
        seqs
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_sent_now_and_queued_arrive_in_the_order_they_were_handed_in() {
        let (outbox, mut raw, _closing) = outbox_and_raw_peer().await;
        // Large frames fill the socket, so direct sends meet a busy write loop and a socket
        // that takes only part of a frame.
        let mut expected = Vec::new();
        for seq in 1..=200u64 {
            let frame = numbered(seq, if seq % 3 == 0 { 1 << 20 } else { 4096 });
            let handed = if seq % 2 == 0 {
                outbox.send_now(frame)
            } else {
                outbox.queue(frame)
            };
            assert!(handed);
            expected.push(seq);
        }
        assert_eq!(received(&mut raw, expected.len()).await, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn senders_on_many_tasks_keep_each_their_order_and_every_frame_whole() {
        let (outbox, mut raw, _closing) = outbox_and_raw_peer().await;
        let senders: Vec<_> = (0..4u64)
            .map(|sender| {
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    for n in 0..100u64 {
                        let seq = sender * 1000 + n;
                        assert!(outbox.send_now(numbered(seq, 4096 + (n as usize % 7) * 8192)));
                        if n % 10 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        let seqs = received(&mut raw, 400).await;
        for sender in senders {
            sender.await.unwrap();
        }
        for sender in 0..4u64 {
            let mine: Vec<u64> = seqs
                .iter()
                .copied()
                .filter(|seq| seq / 1000 == sender)
                .collect();
            assert_eq!(
                mine,
                (0..100).map(|n| sender * 1000 + n).collect::<Vec<_>>()
            );
        }
    }

    #[tokio::test]
    async fn a_closed_outbox_takes_nothing_and_shuts_the_sending_side() {
        let (outbox, mut raw, closing) = outbox_and_raw_peer().await;
        assert!(outbox.send_now(numbered(1, 4096)));
        assert_eq!(received(&mut raw, 1).await, vec![1]);
        outbox.close();
        closing.send_replace(true);
        assert!(!outbox.send_now(numbered(2, 4096)));
        assert!(!outbox.queue(numbered(3, 4096)));
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            raw.read_to_end(&mut rest),
        )
        .await;
        assert!(matches!(read, Ok(Ok(0))), "the peer sees the end: {read:?}");
    }
}
