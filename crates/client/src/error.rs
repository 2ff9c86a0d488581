//! What can go wrong talking to a controller, kept apart by what the user should do about it.
//!
//! - [`ClientError::Unreachable`]: no controller answered the version handshake; every address
//!   tried is listed with its own cause.
//! - [`ClientError::Timeout`] and [`ClientError::ConnectionLost`]: a controller was reached but
//!   the connection failed during a request, so a mutation may or may not have happened. These
//!   are never retried on another controller.
//! - [`ClientError::Api`]: the controller refused a read with `ApiCallRc` entries (a list call
//!   answered 4xx/5xx). Mutations return their entries in an [`Answer`] instead, error or not.
//! - [`ClientError::UnexpectedReply`]: the controller answered something that is not LINSTOR's
//!   JSON.

use std::time::Duration;

use ferrite_types::ApiCallRc;

use crate::controllers::ControllerAddress;

/// One controller tried during the handshake and why it did not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub controller: ControllerAddress,
    pub cause: String,
}

/// The `ApiCallRc` entries a call answered with, and the body as received (for `-m`).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub replies: Vec<ApiCallRc>,
    /// The response body exactly as the controller sent it: a JSON array.
    pub raw: String,
}

impl Answer {
    /// Whether any entry carries the error mask.
    pub fn has_error(&self) -> bool {
        self.replies.iter().any(ApiCallRc::is_error)
    }
}

/// A list (or single object) read from the controller, typed and as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    pub items: T,
    /// The response body exactly as the controller sent it.
    pub raw: String,
}

/// A failed call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("no controller could be reached")]
    Unreachable { attempts: Vec<Attempt> },
    #[error("controller {controller} did not answer {method} {path} within {} s", timeout.as_secs())]
    Timeout {
        controller: ControllerAddress,
        method: &'static str,
        path: String,
        timeout: Duration,
    },
    #[error("the connection to controller {controller} failed during {method} {path}: {cause}")]
    ConnectionLost {
        controller: ControllerAddress,
        method: &'static str,
        path: String,
        cause: String,
    },
    #[error("controller {controller} answered {method} {path} with HTTP status {status}: {detail}")]
    UnexpectedReply {
        controller: ControllerAddress,
        method: &'static str,
        path: String,
        status: u16,
        detail: String,
    },
    #[error("controller refused {method} {path} (HTTP status {})", answer.status)]
    Api {
        method: &'static str,
        path: String,
        answer: Answer,
    },
}
