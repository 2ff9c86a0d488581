//! The protocol between `ferrite-controller` and `ferrite-satellite`.
//!
//! The controller dials the satellite (as LINSTOR does), so a satellite behind a firewall only
//! needs its one port open. Every frame is a 4-byte big-endian length followed by one JSON
//! [`ControllerMessage`] or [`SatelliteMessage`]; JSON keeps the wire readable with `tcpdump -A`
//! and the version handshake keeps it evolvable.
//!
//! A session:
//!
//! ```text
//!  controller                                   satellite
//!      | -- Hello{version, cluster, node} --------> |
//!      | <------- Welcome{version, capabilities} -- |   or Refused{reason}, then close
//!      | -- ApplyState{generation G, full} -------> |   persist, converge
//!      | <------------- Applied{G, report} -------- |
//!      | -- ApplyState{generation G', base G} ----> |   a delta: only the changed resources
//!      | <------------ Applied{G', report} -------- |
//!      | <-------------------- Report{report} ----- |   unprompted, when something changed
//!      | -- CheckPool{id, pool} ------------------> |   before a pool is recorded
//!      | <------------ PoolChecked{id, report} ---- |
//!      | -- Ping --> / <-- Pong --                  |   liveness
//! ```
//!
//! The satellite accepts a full state from its cluster's controller at any time and a delta only
//! on top of the generation it has; otherwise it answers [`SatelliteMessage::NeedFullState`].

mod frame;
mod state;

pub use frame::{FrameError, MAX_FRAME_BYTES, read_frame, write_frame};
pub use state::*;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. Bump it on any change to the messages below and
/// note the change here.
///
/// 1: first version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The oldest peer version this build still understands.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Whether a peer speaking `version` can talk to this build.
pub fn is_compatible(version: u32) -> bool {
    (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version)
}

/// What the controller sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ControllerMessage {
    /// Opens a session.
    Hello {
        protocol_version: u32,
        /// Identifies the cluster; a satellite serves one cluster for its whole life.
        cluster_id: String,
        /// The name the controller knows this node by.
        node_name: String,
        controller_version: String,
    },
    /// Desired state for this node.
    ApplyState(DesiredState),
    /// Asks whether a storage pool could be used as specified, before the controller records
    /// it, so a pool on a missing volume group is refused rather than created broken.
    CheckPool {
        request_id: u64,
        pool: PoolSpec,
    },
    Ping,
}

/// What the satellite sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SatelliteMessage {
    /// Accepts the session.
    Welcome {
        protocol_version: u32,
        node_name: String,
        /// `uname -n` of the satellite's host.
        hostname: String,
        satellite_version: String,
        capabilities: Capabilities,
    },
    /// Refuses the session; the satellite closes the connection after sending it.
    Refused {
        reason: Refusal,
    },
    /// The satellite has persisted and converged to `generation`; the report says how that went.
    Applied {
        generation: u64,
        report: NodeReport,
    },
    /// The satellite could not take `generation` (e.g. its state directory is not writable) and
    /// stays at the generation in `report`; nothing of the new state was acted on.
    NotApplied {
        generation: u64,
        reason: String,
        report: NodeReport,
    },
    /// A delta did not fit the satellite's generation; it wants everything.
    NeedFullState {
        have_generation: Option<u64>,
    },
    /// The actual state changed (capacity, a volume failed, a retry succeeded).
    Report {
        report: NodeReport,
    },
    /// The answer to [`ControllerMessage::CheckPool`]; `report.errors` is empty if the pool
    /// is usable.
    PoolChecked {
        request_id: u64,
        report: PoolReport,
    },
    Pong,
}

/// Why a satellite refused a controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind")]
pub enum Refusal {
    #[error(
        "protocol version mismatch: satellite speaks {satellite_min}..={satellite_max}, controller speaks {controller}"
    )]
    VersionMismatch {
        controller: u32,
        satellite_min: u32,
        satellite_max: u32,
    },
    #[error("the satellite is node '{satellite}', but the controller calls it '{controller}'")]
    NodeNameMismatch {
        controller: String,
        satellite: String,
    },
    #[error(
        "the satellite belongs to cluster {satellite_cluster}, not to cluster {controller_cluster}; {correction}"
    )]
    OtherController {
        controller_cluster: String,
        satellite_cluster: String,
        correction: String,
    },
    #[error("another controller of this cluster is already connected")]
    AlreadyConnected,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_outside_the_range_are_refused() {
        assert!(is_compatible(PROTOCOL_VERSION));
        assert!(!is_compatible(PROTOCOL_VERSION + 1));
        assert!(!is_compatible(0));
    }

    #[test]
    fn messages_are_tagged_json() {
        let json = serde_json::to_string(&ControllerMessage::Ping).unwrap();
        assert_eq!(json, r#"{"type":"Ping"}"#);
        let back: SatelliteMessage = serde_json::from_str(r#"{"type":"Pong"}"#).unwrap();
        assert_eq!(back, SatelliteMessage::Pong);
        assert!(serde_json::from_str::<SatelliteMessage>(r#"{"type":"Garbage"}"#).is_err());
    }
}
