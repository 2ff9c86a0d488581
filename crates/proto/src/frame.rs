//! Length-prefixed frames: 4 bytes big-endian length, then that many bytes of JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame either side accepts. A full desired state of a node with 10,000 resources
/// is a few MiB; anything near this limit is a bug or an attack.
pub const MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed by peer")]
    Closed,
    #[error("I/O error on the connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer sent a frame of {0} bytes, more than the limit of {MAX_FRAME_BYTES}")]
    TooLarge(u32),
    #[error("peer sent a frame that is not a valid message: {0}")]
    Malformed(#[source] serde_json::Error),
}

/// Reads one message. A clean close before the length prefix is [`FrameError::Closed`].
pub async fn read_frame<R, T>(reader: &mut R) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(FrameError::Malformed)
}

/// Writes one message and flushes it.
pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(message).map_err(FrameError::Malformed)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|len| *len <= MAX_FRAME_BYTES)
        .ok_or(FrameError::TooLarge(u32::MAX))?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(&body).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ControllerMessage;

    #[tokio::test]
    async fn round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, &ControllerMessage::Ping).await.unwrap();
        let got: ControllerMessage = read_frame(&mut b).await.unwrap();
        assert_eq!(got, ControllerMessage::Ping);
    }

    #[tokio::test]
    async fn garbage_is_malformed_not_a_panic() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&5u32.to_be_bytes()).await.unwrap();
        a.write_all(b"nope!").await.unwrap();
        let got: Result<ControllerMessage, _> = read_frame(&mut b).await;
        assert!(matches!(got, Err(FrameError::Malformed(_))));
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_allocation() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let got: Result<ControllerMessage, _> = read_frame(&mut b).await;
        assert!(matches!(got, Err(FrameError::TooLarge(_))));
    }

    #[tokio::test]
    async fn close_is_reported_as_closed() {
        let (a, mut b) = tokio::io::duplex(1024);
        drop(a);
        let got: Result<ControllerMessage, _> = read_frame(&mut b).await;
        assert!(matches!(got, Err(FrameError::Closed)));
    }
}
