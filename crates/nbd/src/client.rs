//! The client's side of the fixed newstyle handshake, up to transmission on one export with
//! `NBD_OPT_GO`: what a program does before it hands the socket to the kernel's NBD driver
//! (as `nbd-client` does), and what this crate's tests use to reach transmission.
//!
//! Only the handshake: requests and replies after it are the kernel's (or the test's) business.
//! Every answer the server gives is checked (magic, the option replied to, lengths), and a
//! refusal comes back with the server's reply type and message.

use std::io;

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{
    self, CLIENT_FLAG_FIXED_NEWSTYLE, CLIENT_FLAG_NO_ZEROES, FLAG_FIXED_NEWSTYLE, INFO_BLOCK_SIZE,
    INFO_EXPORT, INIT_PASSWD, MAX_OPTION_BYTES, OPT_GO, OPTION_MAGIC, OPTION_REPLY_MAGIC, REP_ACK,
    REP_ERROR, REP_INFO,
};

/// What `NBD_OPT_GO` told about the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    pub size: u64,
    /// The transmission flags (`NBD_FLAG_HAS_FLAGS`, `NBD_FLAG_SEND_FLUSH`, …), what the kernel
    /// driver is given with `NBD_SET_FLAGS`.
    pub flags: u16,
    /// Minimum, preferred and maximum block size, when the server sent them.
    pub block_sizes: Option<(u32, u32, u32)>,
}

/// Why the handshake did not reach transmission.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("socket error during the NBD handshake: {0}")]
    Socket(#[from] io::Error),
    #[error("the server does not speak fixed newstyle NBD: {0}")]
    NotNewstyle(String),
    #[error("malformed option reply: {0}")]
    Malformed(String),
    #[error("the server refused NBD_OPT_GO for export {export:?} with reply {reply:#x}: {message}")]
    Refused {
        export: String,
        reply: u32,
        message: String,
    },
    #[error("the server ended NBD_OPT_GO for export {0:?} without saying the export's size")]
    NoSize(String),
}

/// Reads the greeting and answers with fixed newstyle and no zeroes.
pub async fn start_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<(), HandshakeError> {
    let mut greeting = [0u8; protocol::GREETING_LEN];
    stream.read_exact(&mut greeting).await?;
    if greeting[0..8] != INIT_PASSWD.to_be_bytes() || greeting[8..16] != OPTION_MAGIC.to_be_bytes()
    {
        return Err(HandshakeError::NotNewstyle(format!(
            "greeting {greeting:02x?}"
        )));
    }
    let server_flags = u16::from_be_bytes([greeting[16], greeting[17]]);
    if server_flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(HandshakeError::NotNewstyle(format!(
            "handshake flags {server_flags:#x} lack NBD_FLAG_FIXED_NEWSTYLE"
        )));
    }
    stream
        .write_all(&(CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES).to_be_bytes())
        .await?;
    Ok(())
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

/// One option reply to `option`: its type and data.
pub async fn read_option_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    option: u32,
) -> Result<(u32, Vec<u8>), HandshakeError> {
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).await?;
    let magic = u64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
    let replied_to = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
    if magic != OPTION_REPLY_MAGIC || replied_to != option {
        return Err(HandshakeError::Malformed(format!(
            "header {header:02x?} in answer to option {option}"
        )));
    }
    let reply_type = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
    let length = u32::from_be_bytes(header[16..20].try_into().expect("4 bytes"));
    if length > MAX_OPTION_BYTES {
        return Err(HandshakeError::Malformed(format!(
            "a reply of {length} bytes (at most {MAX_OPTION_BYTES} are accepted)"
        )));
    }
    let mut data = vec![0u8; length as usize];
    stream.read_exact(&mut data).await?;
    Ok((reply_type, data))
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

/// Handshakes on `stream` and enters transmission on `export` with `NBD_OPT_GO`. On `Ok` the
/// stream is in transmission: the next bytes on it are requests and simple replies.
pub async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    export: &str,
) -> Result<ExportInfo, HandshakeError> {
    start_handshake(stream).await?;
    send_option(stream, OPT_GO, &info_request(export)).await?;
    let mut size = None;
    let mut flags = 0;
    let mut block_sizes = None;
    loop {
        let (reply_type, data) = read_option_reply(stream, OPT_GO).await?;
        match reply_type {
            REP_ACK => break,
            REP_INFO => match info_type(&data) {
                Some(INFO_EXPORT) if data.len() == 12 => {
                    size = Some(u64::from_be_bytes(data[2..10].try_into().expect("8 bytes")));
                    flags = u16::from_be_bytes(data[10..12].try_into().expect("2 bytes"));
                }
                Some(INFO_BLOCK_SIZE) if data.len() == 14 => {
                    let word = |at: usize| {
                        u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"))
                    };
                    block_sizes = Some((word(2), word(6), word(10)));
                }
                Some(INFO_EXPORT | INFO_BLOCK_SIZE) | None => {
                    return Err(HandshakeError::Malformed(format!(
                        "NBD_REP_INFO of {} bytes: {data:02x?}",
                        data.len()
                    )));
                }
                // Information not asked for (a name, a description) is allowed and ignored.
                Some(_) => {}
            },
            error if error & REP_ERROR != 0 => {
                return Err(HandshakeError::Refused {
                    export: export.to_string(),
                    reply: error,
                    message: String::from_utf8_lossy(&data).into_owned(),
                });
            }
            other => {
                return Err(HandshakeError::Malformed(format!(
                    "reply type {other:#x} to NBD_OPT_GO"
                )));
            }
        }
    }
    let size = size.ok_or_else(|| HandshakeError::NoSize(export.to_string()))?;
    Ok(ExportInfo {
        size,
        flags,
        block_sizes,
    })
}

fn info_type(data: &[u8]) -> Option<u16> {
    (data.len() >= 2).then(|| u16::from_be_bytes([data[0], data[1]]))
}
