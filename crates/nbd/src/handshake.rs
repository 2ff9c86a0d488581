//! The handshake: fixed newstyle negotiation, from the server's greeting until the client
//! chooses an export (`NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`) or leaves.
//!
//! Options this server answers: `NBD_OPT_GO`, `NBD_OPT_INFO` (`NBD_INFO_EXPORT` and
//! `NBD_INFO_BLOCK_SIZE` always, `NBD_INFO_NAME` and `NBD_INFO_DESCRIPTION` when asked),
//! `NBD_OPT_LIST`, `NBD_OPT_ABORT` and `NBD_OPT_EXPORT_NAME`. Every other option, including
//! `NBD_OPT_STRUCTURED_REPLY` (replies are simple only, for now), `NBD_OPT_STARTTLS` and the
//! metadata contexts, gets `NBD_REP_ERR_UNSUP`, and negotiation goes on.
//!
//! The caller bounds the whole handshake in time ([`crate::HANDSHAKE_TIMEOUT`]); each option is
//! bounded in size ([`MAX_OPTION_BYTES`]). What this module does not own: the transmission
//! phase, and the export table (it only reads it).

use ferrite_block::Volume;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::debug;

use crate::error::ConnectionError;
use crate::export::{Chosen, Exports};
use crate::protocol::{
    self, INFO_DESCRIPTION, INFO_NAME, OPT_ABORT, OPT_EXPORT_NAME, OPT_GO, OPT_INFO, OPT_LIST,
    OPT_STARTTLS, OPT_STRUCTURED_REPLY, OPTION_HEADER_LEN, OptionHeader, ProtocolError, REP_ACK,
    REP_ERR_INVALID, REP_ERR_SHUTDOWN, REP_ERR_UNKNOWN, REP_ERR_UNSUP,
};

#[cfg(doc)]
use crate::protocol::MAX_OPTION_BYTES;

/// How a handshake ended without an error.
pub(crate) enum Negotiation<V> {
    /// The client chose an export: the connection enters transmission.
    Transmission(Chosen<V>),
    /// The client aborted or hung up before choosing; nothing more to do.
    Ended(&'static str),
}

/// Negotiates on `stream` until the client chooses an export or leaves. `shutdown` is true once
/// the server is stopping: options then get `NBD_REP_ERR_SHUTDOWN`.
pub(crate) async fn negotiate<S, V>(
    stream: &mut S,
    exports: &Exports<V>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Negotiation<V>, ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    V: Volume,
{
    match negotiate_inner(stream, exports, shutdown).await {
        Err(ConnectionError::Socket { source, .. })
            if source.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Ok(Negotiation::Ended(
                "the client hung up during the handshake",
            ))
        }
        other => other,
    }
}

async fn negotiate_inner<S, V>(
    stream: &mut S,
    exports: &Exports<V>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Negotiation<V>, ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    V: Volume,
{
    let socket = ConnectionError::handshake_socket;
    stream
        .write_all(&protocol::greeting())
        .await
        .map_err(socket)?;
    let mut client_flags = [0u8; 4];
    stream.read_exact(&mut client_flags).await.map_err(socket)?;
    let client_flags = protocol::decode_client_flags(client_flags)?;
    debug!(?client_flags, "client flags");

    let mut out = Vec::with_capacity(256);
    loop {
        let mut header = [0u8; OPTION_HEADER_LEN];
        stream.read_exact(&mut header).await.map_err(socket)?;
        let OptionHeader { option, length } = OptionHeader::decode(&header)?;
        let mut data = vec![0u8; length as usize];
        stream.read_exact(&mut data).await.map_err(socket)?;
        let shutting_down = *shutdown.borrow();
        out.clear();

        match option {
            OPT_EXPORT_NAME => {
                let name = protocol::check_name(&data)
                    .map_err(|reason| ProtocolError::BadExportName { reason })?;
                if shutting_down {
                    // NBD_OPT_EXPORT_NAME cannot carry an error: hang up.
                    return Ok(Negotiation::Ended("the server is shutting down"));
                }
                let Some(chosen) = exports.choose(name) else {
                    return Err(ProtocolError::UnknownExport {
                        name: name.to_string(),
                    }
                    .into());
                };
                let reply = protocol::export_name_reply(
                    chosen.export.volume.size(),
                    chosen.export.transmission_flags(),
                    client_flags.no_zeroes,
                );
                stream.write_all(&reply).await.map_err(socket)?;
                debug!(export = %chosen.export.name(), "NBD_OPT_EXPORT_NAME");
                return Ok(Negotiation::Transmission(chosen));
            }
            OPT_ABORT => {
                protocol::put_option_reply(&mut out, option, REP_ACK, &[]);
                // The client may already have closed its end; that is its right.
                let _ = stream.write_all(&out).await;
                return Ok(Negotiation::Ended("the client aborted the handshake"));
            }
            OPT_LIST => {
                if !data.is_empty() {
                    let message = b"NBD_OPT_LIST takes no data";
                    protocol::put_option_reply(&mut out, option, REP_ERR_INVALID, message);
                } else if shutting_down {
                    let message = b"the server is shutting down";
                    protocol::put_option_reply(&mut out, option, REP_ERR_SHUTDOWN, message);
                } else {
                    for name in exports.names() {
                        protocol::put_server_entry(&mut out, name.as_str());
                    }
                    protocol::put_option_reply(&mut out, option, REP_ACK, &[]);
                }
            }
            OPT_INFO | OPT_GO => {
                let chosen = answer_info(&mut out, option, &data, exports, shutting_down);
                stream.write_all(&out).await.map_err(socket)?;
                if let (OPT_GO, Some(chosen)) = (option, chosen) {
                    debug!(export = %chosen.export.name(), "NBD_OPT_GO");
                    return Ok(Negotiation::Transmission(chosen));
                }
                continue;
            }
            _ => {
                let message: &[u8] = match option {
                    OPT_STRUCTURED_REPLY => {
                        b"structured replies are not supported: simple replies only"
                    }
                    OPT_STARTTLS => b"TLS is not supported",
                    _ => b"this option is not supported",
                };
                debug!(option, "unsupported option");
                protocol::put_option_reply(&mut out, option, REP_ERR_UNSUP, message);
            }
        }
        stream.write_all(&out).await.map_err(socket)?;
    }
}

/// Writes the answer to `NBD_OPT_INFO`/`NBD_OPT_GO` into `out`; returns the export when the
/// answer ends with `NBD_REP_ACK`.
fn answer_info<V: Volume>(
    out: &mut Vec<u8>,
    option: u32,
    data: &[u8],
    exports: &Exports<V>,
    shutting_down: bool,
) -> Option<Chosen<V>> {
    let request = match protocol::decode_info_request(data) {
        Ok(request) => request,
        Err(message) => {
            protocol::put_option_reply(out, option, REP_ERR_INVALID, message.as_bytes());
            return None;
        }
    };
    let name = match protocol::check_name(request.name) {
        Ok(name) => name,
        Err(message) => {
            protocol::put_option_reply(out, option, REP_ERR_INVALID, message.as_bytes());
            return None;
        }
    };
    if shutting_down {
        let message = b"the server is shutting down";
        protocol::put_option_reply(out, option, REP_ERR_SHUTDOWN, message);
        return None;
    }
    let Some(chosen) = exports.choose(name) else {
        let message = format!("there is no export {name:?}");
        protocol::put_option_reply(out, option, REP_ERR_UNKNOWN, message.as_bytes());
        return None;
    };
    let export = &chosen.export;
    protocol::put_info_export(
        out,
        option,
        export.volume.size(),
        export.transmission_flags(),
    );
    // Always sent, asked for or not: the client may ignore it, and tools show it.
    protocol::put_info_block_size(out, option);
    if request.requests.contains(&INFO_NAME) {
        protocol::put_info_string(out, option, INFO_NAME, export.name().as_str());
    }
    if let (true, Some(description)) = (
        request.requests.contains(&INFO_DESCRIPTION),
        &export.config.description,
    ) {
        protocol::put_info_string(out, option, INFO_DESCRIPTION, description);
    }
    protocol::put_option_reply(out, option, REP_ACK, &[]);
    Some(chosen)
}
