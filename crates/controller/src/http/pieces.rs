//! A JSON array answered in pieces: for lists too large to build whole (the view of 200,000
//! resources is 150 MiB of JSON), so neither the text nor the graph's read lock is held for the
//! whole answer.
//!
//! A piece is written as text by the caller's function on a blocking thread (it takes the
//! graph's lock for the piece and serializes each item as it builds it, so no item exists twice),
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
}

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
            let text = Bytes::from(std::mem::take(&mut piece.text));
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
