//! A bare NBD client for tests that need to say exactly what goes on the wire: the fixed
//! newstyle handshake with `NBD_OPT_GO` (`crate::client`), requests sent one by one with any header, and simple
//! replies read back and matched to their requests' cookies.

use std::collections::HashMap;
use std::io;

use bytes::{BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::HandshakeError;
pub use crate::client::{
    ExportInfo, info_request, read_option_reply, send_option, start_handshake,
};
use crate::protocol::{self, CMD_READ, RequestHeader, SIMPLE_REPLY_MAGIC};

/// One simple reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleReply {
    pub cookie: u64,
    pub error: u32,
    pub data: Bytes,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A client in transmission.
pub struct RawClient<S> {
    stream: S,
    /// Reads sent and not yet answered: cookie → length.
    reads: HashMap<u64, u32>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// Handshakes on `stream` and enters transmission on `export` with `NBD_OPT_GO`.
    pub async fn connect(mut stream: S, export: &str) -> io::Result<(RawClient<S>, ExportInfo)> {
        let info = crate::client::negotiate(&mut stream, export)
            .await
            .map_err(|error| match error {
                HandshakeError::Socket(error) => error,
                other => invalid(other.to_string()),
            })?;
        Ok((
            RawClient {
                stream,
                reads: HashMap::new(),
            },
            info,
        ))
    }

    /// Sends a request with its payload (for a write; empty otherwise).
    pub async fn send(&mut self, header: RequestHeader, payload: &[u8]) -> io::Result<()> {
        if header.command == CMD_READ {
            self.reads.insert(header.cookie, header.length);
        }
        let mut out = Vec::with_capacity(protocol::REQUEST_HEADER_LEN + payload.len());
        out.put_slice(&header.encode());
        out.put_slice(payload);
        self.stream.write_all(&out).await
    }

    /// Reads the next reply; a successful read's data follows its header.
    pub async fn reply(&mut self) -> io::Result<SimpleReply> {
        let mut header = [0u8; protocol::SIMPLE_REPLY_LEN];
        self.stream.read_exact(&mut header).await?;
        let magic = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
        if magic != SIMPLE_REPLY_MAGIC {
            return Err(invalid(format!("bad reply magic {magic:#x}")));
        }
        let error = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
        let cookie = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
        let length = self.reads.remove(&cookie);
        let mut data = Vec::new();
        if let (0, Some(length)) = (error, length) {
            data.resize(length as usize, 0);
            self.stream.read_exact(&mut data).await?;
        }
        Ok(SimpleReply {
            cookie,
            error,
            data: data.into(),
        })
    }

    /// Sends a request and waits for its reply (nothing else may be in flight).
    pub async fn call(&mut self, header: RequestHeader, payload: &[u8]) -> io::Result<SimpleReply> {
        self.send(header, payload).await?;
        let reply = self.reply().await?;
        if reply.cookie != header.cookie {
            return Err(invalid(format!(
                "a reply to cookie {} came for {}",
                reply.cookie, header.cookie
            )));
        }
        Ok(reply)
    }

    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub fn into_stream(self) -> S {
        self.stream
    }
}

/// A request header (the magic is added when it is encoded).
pub fn request(command: u16, flags: u16, cookie: u64, offset: u64, length: u32) -> RequestHeader {
    RequestHeader {
        flags,
        command,
        cookie,
        offset,
        length,
    }
}
