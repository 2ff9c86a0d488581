//! Length-prefixed frames: 4 bytes big-endian length, then that many bytes of JSON.
//!
//! The framing itself is tokio-util's [`LengthDelimitedCodec`], configured for exactly this
//! header and limited to [`MAX_FRAME_BYTES`]; [`FrameCodec`] puts the offending size into the
//! error of a frame over the limit and names a connection that closes in the middle of a frame. A connection is read through a
//! [`FrameReader`] and written through a [`FrameWriter`] (or both through [`Frames`]); reading is
//! cancel-safe, since a partly received frame stays in the reader's buffer. This module owns the
//! bytes on the wire; what the JSON means is `ControllerMessage`'s and `SatelliteMessage`'s.

use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{
    Decoder, Encoder, Framed, FramedRead, FramedWrite, LengthDelimitedCodec,
    LengthDelimitedCodecError,
};

/// The largest frame either side accepts. A full desired state of a node with 10,000 resources
/// is a few MiB; anything near this limit is a bug or an attack.
pub const MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

/// The length prefix: a big-endian `u32` counting the bytes after it.
const LENGTH_FIELD_BYTES: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed by peer")]
    Closed,
    #[error("connection closed by peer in the middle of a frame ({0} bytes of it unread)")]
    Truncated(usize),
    #[error("I/O error on the connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer sent a frame of {0} bytes, more than the limit of {MAX_FRAME_BYTES}")]
    TooLarge(u32),
    #[error("refusing to send a frame of {0} bytes, more than the limit of {MAX_FRAME_BYTES}")]
    TooLargeToSend(usize),
    #[error("peer sent a frame that is not a valid message: {0}")]
    Malformed(#[source] serde_json::Error),
}

/// The protocol's framing: [`LengthDelimitedCodec`] with a 4-byte big-endian length at offset 0
/// that counts only the body, limited to [`MAX_FRAME_BYTES`].
#[derive(Debug)]
pub struct FrameCodec {
    length_delimited: LengthDelimitedCodec,
}

impl Default for FrameCodec {
    fn default() -> FrameCodec {
        FrameCodec {
            length_delimited: LengthDelimitedCodec::builder()
                .big_endian()
                .length_field_offset(0)
                .length_field_length(LENGTH_FIELD_BYTES)
                .length_adjustment(0)
                .num_skip(LENGTH_FIELD_BYTES)
                .max_frame_length(MAX_FRAME_BYTES as usize)
                .new_codec(),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.length_delimited.decode(src) {
            // The codec refuses an oversized frame without saying its size, and leaves the
            // prefix in the buffer; read it so the error says how large the frame claimed to be.
            Err(error) if is_over_limit(&error) && src.len() >= LENGTH_FIELD_BYTES => {
                Err(FrameError::TooLarge((&src[..LENGTH_FIELD_BYTES]).get_u32()))
            }
            result => Ok(result?),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated(src.len())),
        }
    }
}

/// Whether the codec refused a frame for its length.
fn is_over_limit(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>())
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        if body.len() > MAX_FRAME_BYTES as usize {
            return Err(FrameError::TooLargeToSend(body.len()));
        }
        Ok(self.length_delimited.encode(body, dst)?)
    }
}

/// Both directions of a connection, framed.
pub type Frames<S> = Framed<S, FrameCodec>;
/// The reading half of a connection, framed.
pub type FrameReader<R> = FramedRead<R, FrameCodec>;
/// The writing half of a connection, framed.
pub type FrameWriter<W> = FramedWrite<W, FrameCodec>;

/// Frames both directions of `io`.
pub fn frames<S: AsyncRead + AsyncWrite>(io: S) -> Frames<S> {
    Framed::new(io, FrameCodec::default())
}

/// Frames what is read from `reader`.
pub fn frame_reader<R: AsyncRead>(reader: R) -> FrameReader<R> {
    FramedRead::new(reader, FrameCodec::default())
}

/// Frames what is written to `writer`.
pub fn frame_writer<W: AsyncWrite>(writer: W) -> FrameWriter<W> {
    FramedWrite::new(writer, FrameCodec::default())
}

/// Reads one message. A clean close between frames is [`FrameError::Closed`]; a close in the
/// middle of one is [`FrameError::Truncated`].
pub async fn read_frame<S, T>(frames: &mut S) -> Result<T, FrameError>
where
    S: Stream<Item = Result<BytesMut, FrameError>> + Unpin,
    T: DeserializeOwned,
{
    decode(&read_body(frames).await?)
}

/// Reads one frame's body without decoding it ([`decode`]).
pub async fn read_body<S>(frames: &mut S) -> Result<BytesMut, FrameError>
where
    S: Stream<Item = Result<BytesMut, FrameError>> + Unpin,
{
    frames.next().await.ok_or(FrameError::Closed)?
}

/// Writes a body made by [`encode`] and flushes it.
pub async fn write_body<S>(frames: &mut S, body: Bytes) -> Result<(), FrameError>
where
    S: Sink<Bytes, Error = FrameError> + Unpin,
{
    frames.send(body).await
}

/// Writes one message and flushes it.
pub async fn write_frame<S, T>(frames: &mut S, message: &T) -> Result<(), FrameError>
where
    S: Sink<Bytes, Error = FrameError> + Unpin,
    T: Serialize,
{
    write_body(frames, encode(message)?).await
}

/// A frame's body as a message: what [`read_frame`] does after reading it, for a reader that
/// decodes elsewhere (a large frame on a blocking thread).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(FrameError::Malformed)
}

/// A message as a frame's body: what [`write_frame`] sends, for a writer that encodes
/// elsewhere.
pub fn encode<T: Serialize>(message: &T) -> Result<Bytes, FrameError> {
    serde_json::to_vec(message)
        .map(Bytes::from)
        .map_err(FrameError::Malformed)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;
    use crate::ControllerMessage;

    #[tokio::test]
    async fn round_trip() {
        let (a, b) = tokio::io::duplex(1024);
        let (mut a, mut b) = (frame_writer(a), frame_reader(b));
        write_frame(&mut a, &ControllerMessage::Ping).await.unwrap();
        write_frame(&mut a, &ControllerMessage::Ping).await.unwrap();
        let got: ControllerMessage = read_frame(&mut b).await.unwrap();
        assert_eq!(got, ControllerMessage::Ping);
        let got: ControllerMessage = read_frame(&mut b).await.unwrap();
        assert_eq!(got, ControllerMessage::Ping);
    }

    #[tokio::test]
    async fn the_wire_is_a_big_endian_length_then_json() {
        let (a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut frame_writer(a), &ControllerMessage::Ping)
            .await
            .unwrap();
        let mut wire = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut wire)
            .await
            .unwrap();
        let json = serde_json::to_vec(&ControllerMessage::Ping).unwrap();
        assert_eq!(&wire[..4], &(json.len() as u32).to_be_bytes());
        assert_eq!(&wire[4..], &json[..]);
    }

    #[tokio::test]
    async fn a_frame_written_by_hand_is_read() {
        let (mut a, b) = tokio::io::duplex(1024);
        let json = serde_json::to_vec(&ControllerMessage::Ping).unwrap();
        a.write_all(&(json.len() as u32).to_be_bytes())
            .await
            .unwrap();
        // The body in two pieces: a frame split across reads is put back together.
        a.write_all(&json[..3]).await.unwrap();
        a.write_all(&json[3..]).await.unwrap();
        let got: ControllerMessage = read_frame(&mut frame_reader(b)).await.unwrap();
        assert_eq!(got, ControllerMessage::Ping);
    }

    #[tokio::test]
    async fn garbage_is_malformed_not_a_panic() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&5u32.to_be_bytes()).await.unwrap();
        a.write_all(b"nope!").await.unwrap();
        let got: Result<ControllerMessage, _> = read_frame(&mut frame_reader(b)).await;
        let error = got.unwrap_err();
        assert!(matches!(error, FrameError::Malformed(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("peer sent a frame that is not a valid message: "),
            "{error}"
        );
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_allocation() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let got: Result<ControllerMessage, _> = read_frame(&mut frame_reader(b)).await;
        let error = got.unwrap_err();
        assert!(matches!(error, FrameError::TooLarge(u32::MAX)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "peer sent a frame of 4294967295 bytes, more than the limit of 67108864"
        );
    }

    #[tokio::test]
    async fn a_frame_at_the_limit_is_read_and_one_byte_more_is_refused() {
        // The limit is crossed on its first byte: the prefix alone decides.
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&(MAX_FRAME_BYTES + 1).to_be_bytes())
            .await
            .unwrap();
        let got: Result<ControllerMessage, _> = read_frame(&mut frame_reader(b)).await;
        assert!(matches!(got, Err(FrameError::TooLarge(n)) if n == MAX_FRAME_BYTES + 1));

        let mut codec = FrameCodec::default();
        let mut at_limit = BytesMut::new();
        at_limit.extend_from_slice(&MAX_FRAME_BYTES.to_be_bytes());
        at_limit.resize(LENGTH_FIELD_BYTES + MAX_FRAME_BYTES as usize, b' ');
        let frame = codec.decode(&mut at_limit).unwrap().expect("a whole frame");
        assert_eq!(frame.len(), MAX_FRAME_BYTES as usize);
    }

    #[tokio::test]
    async fn oversized_messages_are_not_sent() {
        let mut codec = FrameCodec::default();
        let body = Bytes::from(vec![b' '; MAX_FRAME_BYTES as usize + 1]);
        let error = codec.encode(body, &mut BytesMut::new()).unwrap_err();
        assert!(
            matches!(error, FrameError::TooLargeToSend(n) if n == MAX_FRAME_BYTES as usize + 1)
        );
    }

    #[tokio::test]
    async fn close_is_reported_as_closed() {
        let (a, b) = tokio::io::duplex(1024);
        drop(a);
        let got: Result<ControllerMessage, _> = read_frame(&mut frame_reader(b)).await;
        assert!(matches!(got, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn a_close_inside_the_body_is_a_truncated_frame() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&10u32.to_be_bytes()).await.unwrap();
        a.write_all(b"{\"Pi").await.unwrap();
        drop(a);
        let got: Result<ControllerMessage, _> = read_frame(&mut frame_reader(b)).await;
        let error = got.unwrap_err();
        assert!(matches!(error, FrameError::Truncated(4)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "connection closed by peer in the middle of a frame (4 bytes of it unread)"
        );
    }

    #[tokio::test]
    async fn a_close_inside_the_length_prefix_is_a_truncated_frame() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[0, 0]).await.unwrap();
        drop(a);
        let got: Result<ControllerMessage, _> = read_frame(&mut frame_reader(b)).await;
        assert!(matches!(got, Err(FrameError::Truncated(2))), "{got:?}");
    }

    #[tokio::test]
    async fn reading_is_cancel_safe() {
        // A read given up halfway (a timeout) keeps what arrived; the next read finishes it.
        let (mut a, b) = tokio::io::duplex(1024);
        let mut reader = frame_reader(b);
        let json = serde_json::to_vec(&ControllerMessage::Ping).unwrap();
        a.write_all(&(json.len() as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(&json[..2]).await.unwrap();
        let early = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            read_frame::<_, ControllerMessage>(&mut reader),
        )
        .await;
        assert!(early.is_err(), "half a frame is not a message");
        a.write_all(&json[2..]).await.unwrap();
        let got: ControllerMessage = read_frame(&mut reader).await.unwrap();
        assert_eq!(got, ControllerMessage::Ping);
    }
}
