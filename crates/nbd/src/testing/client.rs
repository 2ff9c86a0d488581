//! A bare NBD client for tests that need to say exactly what goes on the wire: the fixed
//! newstyle handshake with `NBD_OPT_GO`, requests sent one by one with any header, and simple
//! replies read back and matched to their requests' cookies.

use std::collections::HashMap;
use std::io;

use bytes::{BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{
    self, CLIENT_FLAG_FIXED_NEWSTYLE, CLIENT_FLAG_NO_ZEROES, CMD_READ, INFO_BLOCK_SIZE,
    INIT_PASSWD, OPT_GO, OPTION_MAGIC, OPTION_REPLY_MAGIC, REP_ACK, REP_INFO, RequestHeader,
    SIMPLE_REPLY_MAGIC,
};

/// What `NBD_OPT_GO` told about the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    pub size: u64,
    pub flags: u16,
    /// Minimum, preferred and maximum block size, when the server sent them.
    pub block_sizes: Option<(u32, u32, u32)>,
}

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

/// One option reply: type and data.
pub async fn read_option_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    option: u32,
) -> io::Result<(u32, Vec<u8>)> {
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).await?;
    let magic = u64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
    let replied_to = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
    if magic != OPTION_REPLY_MAGIC || replied_to != option {
        return Err(invalid(format!(
            "bad option reply header {header:02x?} to option {option}"
        )));
    }
    let reply_type = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
    let length = u32::from_be_bytes(header[16..20].try_into().expect("4 bytes"));
    let mut data = vec![0u8; length as usize];
    stream.read_exact(&mut data).await?;
    Ok((reply_type, data))
}

/// Sends one option.
pub async fn send_option<S: AsyncWrite + Unpin>(
    stream: &mut S,
    option: u32,
    data: &[u8],
) -> io::Result<()> {
    let mut out = Vec::with_capacity(16 + data.len());
    out.put_u64(OPTION_MAGIC);
    out.put_u32(option);
    out.put_u32(data.len() as u32);
    out.put_slice(data);
    stream.write_all(&out).await
}

/// Reads the greeting and answers with fixed newstyle and no zeroes.
pub async fn start_handshake<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<()> {
    let mut greeting = [0u8; protocol::GREETING_LEN];
    stream.read_exact(&mut greeting).await?;
    if greeting[0..8] != INIT_PASSWD.to_be_bytes() || greeting[8..16] != OPTION_MAGIC.to_be_bytes()
    {
        return Err(invalid(format!("bad greeting {greeting:02x?}")));
    }
    stream
        .write_all(&(CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES).to_be_bytes())
        .await
}

/// The data of `NBD_OPT_GO`/`NBD_OPT_INFO` for `export`, asking for the block sizes.
pub fn info_request(export: &str) -> Vec<u8> {
    let mut data = Vec::new();
    data.put_u32(export.len() as u32);
    data.put_slice(export.as_bytes());
    data.put_u16(1);
    data.put_u16(INFO_BLOCK_SIZE);
    data
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// Handshakes on `stream` and enters transmission on `export` with `NBD_OPT_GO`.
    pub async fn connect(mut stream: S, export: &str) -> io::Result<(RawClient<S>, ExportInfo)> {
        start_handshake(&mut stream).await?;
        send_option(&mut stream, OPT_GO, &info_request(export)).await?;
        let mut info = ExportInfo {
            size: 0,
            flags: 0,
            block_sizes: None,
        };
        loop {
            let (reply_type, data) = read_option_reply(&mut stream, OPT_GO).await?;
            match reply_type {
                REP_ACK => break,
                REP_INFO if data.len() == 12 && data[0..2] == [0, 0] => {
                    info.size = u64::from_be_bytes(data[2..10].try_into().expect("8 bytes"));
                    info.flags = u16::from_be_bytes(data[10..12].try_into().expect("2 bytes"));
                }
                REP_INFO if data.len() == 14 && data[0..2] == [0, 3] => {
                    let word = |at: usize| {
                        u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"))
                    };
                    info.block_sizes = Some((word(2), word(6), word(10)));
                }
                REP_INFO => {}
                other => {
                    return Err(invalid(format!(
                        "NBD_OPT_GO failed with {other:#x}: {}",
                        String::from_utf8_lossy(&data)
                    )));
                }
            }
        }
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
