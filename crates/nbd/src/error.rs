//! Errors of the server's API and the reasons a connection ends early.

use std::time::Duration;

use crate::export::ExportName;
use crate::protocol::ProtocolError;

/// What the server's owner can get wrong.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{name:?} is not a valid NBD export name: {reason}")]
    InvalidExportName { name: String, reason: &'static str },
    #[error("the description of export {name} is not a valid NBD string: {reason}")]
    InvalidDescription {
        name: ExportName,
        reason: &'static str,
    },
    #[error("the export {0} exists already")]
    ExportExists(ExportName),
    #[error("there is no export {0}")]
    NoSuchExport(ExportName),
}

/// Why a connection ended other than by the client's choice. Logged with the connection's
/// peer and export; never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("the handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("socket error during the {phase}: {source}")]
    Socket {
        phase: &'static str,
        source: std::io::Error,
    },
}

impl ConnectionError {
    pub(crate) fn handshake_socket(source: std::io::Error) -> ConnectionError {
        ConnectionError::Socket {
            phase: "handshake",
            source,
        }
    }

    pub(crate) fn transmission_socket(source: std::io::Error) -> ConnectionError {
        ConnectionError::Socket {
            phase: "transmission",
            source,
        }
    }
}
