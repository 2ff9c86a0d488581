//! A JSON array answered in pieces: for lists too large to build whole (the view of 200,000
//! resources is 150 MiB of JSON), so neither the text nor the graph's read lock is held for the
//! whole answer.
//!
//! A piece is written as text by the caller's function on a blocking thread (it takes the
//! graph's lock for the piece and serializes each item as it builds it, so no item exists twice;
//! [`ArrayText::push_built`] splits a piece's items over the machine's cores),
//! and handed to the connection through a channel of
//! `PIECES_IN_FLIGHT` pieces, so a slow client holds at most that much text and the next piece
//! is built while the one before is sent. A client that goes away stops the building at the next
//! piece. If the builder dies before the array is closed, the body ends with an error, so the
//! client sees a broken answer, never a short one that parses.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use serde::Serialize;
use tokio::sync::mpsc;

/// Serialized pieces waiting for the client at most.
const PIECES_IN_FLIGHT: usize = 2;

/// A piece of a JSON array as text: items are written to it as they are built.
pub struct ArrayText {
    text: Vec<u8>,
    /// Whether an item was written, to this piece or an earlier one.
    any: bool,
    /// Items written to this piece.
    written: usize,
}

impl ArrayText {
    /// Writes `item` as the array's next element.
    pub fn push<T: Serialize>(&mut self, item: &T) {
        if self.any {
            self.text.push(b',');
        }
        serde_json::to_writer(&mut self.text, item).expect("REST shapes serialize");
        self.any = true;
        self.written += 1;
    }

    /// Writes what `build` makes of each of `sources`, in their order, as the array's next
    /// elements. Building and serializing are split over the machine's cores (at most
    /// [`MAX_BUILDERS`] threads) when there are enough sources: this thread writes the first
    /// share straight into the piece, the others into their own text, appended in order. A
    /// panic in any of them is this call's panic.
    pub fn push_built<S, T>(&mut self, sources: &[S], build: impl Fn(&S) -> T + Sync)
    where
        S: Sync,
        T: Serialize,
    {
        let share = sources.len().div_ceil(builders()).max(MIN_SHARE);
        if sources.len() <= share {
            for source in sources {
                self.push(&build(source));
            }
            return;
        }
        let (own, others) = sources.split_at(share);
        let build = &build;
        // Each thread's share of the text, guessed from what this piece already holds.
        let room = self.text.capacity() / builders();
        let texts = std::thread::scope(|scope| {
            let workers: Vec<_> = others
                .chunks(share)
                .map(|part| {
                    scope.spawn(move || {
                        let mut text = Vec::with_capacity(room);
                        for (i, source) in part.iter().enumerate() {
                            if i > 0 {
                                text.push(b',');
                            }
                            serde_json::to_writer(&mut text, &build(source))
                                .expect("REST shapes serialize");
                        }
                        text
                    })
                })
                .collect();
            for source in own {
                self.push(&build(source));
            }
            workers
                .into_iter()
                .map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                })
                .collect::<Vec<_>>()
        });
        for text in texts {
            self.text.push(b',');
            self.text.extend_from_slice(&text);
        }
        self.written += others.len();
    }
}

/// Threads that build one piece together: the machine's cores, at most four.
fn builders() -> usize {
    static BUILDERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUILDERS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, MAX_BUILDERS)
    })
}

/// At most this many threads build one piece.
const MAX_BUILDERS: usize = 4;

/// Fewer items than this per thread are not worth a thread.
const MIN_SHARE: usize = 128;

/// The JSON array whose items `next` writes, a piece per call, until a call writes none.
pub fn json_array<F>(mut next: F) -> Response
where
    F: FnMut(&mut ArrayText) + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(PIECES_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut piece = ArrayText {
            text: vec![b'['],
            any: false,
            written: 0,
        };
        loop {
            next(&mut piece);
            let last = piece.written == 0;
            if last {
                piece.text.push(b']');
            }
            // The next piece is likely as long as this one: room for it up front.
            let room = if last { 0 } else { piece.text.len() };
            let text = Bytes::from(std::mem::replace(&mut piece.text, Vec::with_capacity(room)));
            piece.written = 0;
            if sender.blocking_send(Piece { text, last }).is_err() || last {
                // Sent whole, or the client has gone.
                return;
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::new(Pieces {
            receiver,
            closed: false,
        }),
    )
        .into_response()
}

struct Piece {
    text: Bytes,
    /// The piece that closes the array.
    last: bool,
}

/// The body: the pieces as they come, then the end, or an error if they stopped before the
/// array was closed.
struct Pieces {
    receiver: mpsc::Receiver<Piece>,
    closed: bool,
}

/// The builder of a streamed answer stopped before the answer was complete.
#[derive(Debug, thiserror::Error)]
#[error("the answer stopped before it was complete: its builder failed (see the controller's log)")]
pub struct Incomplete;

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = Incomplete;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Incomplete>>> {
        if self.closed {
            return Poll::Ready(None);
        }
        match self.receiver.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(piece)) => {
                self.closed = piece.last;
                Poll::Ready(Some(Ok(Frame::data(piece.text))))
            }
            Poll::Ready(None) => Poll::Ready(Some(Err(Incomplete))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Result<Bytes, axum::Error> {
        axum::body::to_bytes(response.into_body(), usize::MAX).await
    }

    #[tokio::test]
    async fn pieces_make_one_json_array() {
        let mut pieces = vec![vec![], vec![4], vec![], vec![2, 3], vec![1]];
        let response = json_array(move |out| {
            for item in pieces.pop().unwrap_or_default() {
                out.push(&item);
            }
        });
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(&body_of(response).await.unwrap()[..], b"[1,2,3]");

        let response = json_array(|_| {});
        assert_eq!(&body_of(response).await.unwrap()[..], b"[]");
    }

    /// A piece's items built on several threads come in their order, with or without items
    /// before them in the array.
    #[tokio::test]
    async fn items_built_on_several_threads_keep_their_order() {
        let sources: Vec<u64> = (0..1_000).collect();
        for lead in [false, true] {
            let built = sources.clone();
            let mut calls = 0;
            let response = json_array(move |out| {
                calls += 1;
                if calls == 1 && lead {
                    out.push(&u64::MAX);
                }
                if calls <= 2 {
                    out.push_built(&built, |n| n * 2);
                }
            });
            let body = body_of(response).await.unwrap();
            let items: Vec<u64> = serde_json::from_slice(&body).unwrap();
            let mut wanted: Vec<u64> = lead.then_some(u64::MAX).into_iter().collect();
            wanted.extend(sources.iter().map(|n| n * 2));
            wanted.extend(sources.iter().map(|n| n * 2));
            assert_eq!(items, wanted);
        }
    }

    /// A panic on a helper thread is the builder's panic: the answer breaks.
    #[tokio::test]
    async fn a_helper_that_dies_breaks_the_answer() {
        let sources: Vec<u64> = (0..1_000).collect();
        let response = json_array(move |out| {
            out.push_built(&sources, |&n| {
                assert!(n < 900, "a helper dies");
                n
            });
        });
        assert!(body_of(response).await.is_err());
    }

    #[tokio::test]
    async fn a_builder_that_dies_midway_breaks_the_answer_instead_of_shortening_it() {
        let mut calls = 0;
        let response = json_array(move |out| {
            calls += 1;
            assert!(calls < 3, "the graph's lock is poisoned");
            out.push(&calls);
        });
        assert!(body_of(response).await.is_err());
    }
}
