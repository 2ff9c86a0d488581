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
//!      |    or ApplySameState{G, digest}            |   when Welcome said the node holds it
//!      | <------------- Applied{G, report} -------- |
//!      | -- ApplyState{generation G', base G} ----> |   a delta: only the changed resources
//!      | <------------ Applied{G', report} -------- |
//!      | <-------------------- Report{report} ----- |   unprompted, when something changed
//!      | -- CheckPool{id, pool} ------------------> |   before a pool is recorded
//!      | <------------ PoolChecked{id, report} ---- |
//!      | -- Command{id, DeleteOrphan|...} --------> |   an operator's explicit command
//!      | <------------ CommandDone{id, result} ---- |
//!      | -- Ping --> / <-- Pong --                  |   liveness
//! ```
//!
//! A satellite's `Welcome` says which state it holds: its stamp and the [`content_digest`] of
//! its pools and resources. When the controller's full state for the node has that digest (a
//! controller restarted with every node converged), the controller sends `ApplySameState`:
//! the same state under the controller's stamp, without its 12,500 resources of JSON each
//! way. The satellite takes it as it takes a full state of that content (the same checks, the
//! same answer), or asks for the full state if its digest differs by then.
//!
//! The satellite accepts a delta only on top of the generation it has; otherwise it answers
//! [`SatelliteMessage::NeedFullState`]. It refuses, with [`SatelliteMessage::NotApplied`] and a
//! typed [`StateRefusal`], any state older than the one it applied, a different state under the
//! same stamp, and a state that stops wanting a volume the node holds without asking for its
//! deletion (unless it comes from a restored store or a re-registered node, when such volumes
//! become orphans). Nothing of a refused state is acted on.

mod decode;
mod frame;
mod replication;
mod state;

pub use frame::{
    FrameCodec, FrameError, FrameReader, FrameWriter, Frames, MAX_FRAME_BYTES, decode, encode,
    frame_reader, frame_writer, frames, read_body, read_frame, write_body, write_frame,
};
pub use replication::*;
pub use state::*;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. Bump it on any change to the messages below and
/// note the change here.
///
/// 1: first version.
/// 2: explicit deletions (`deleting` resources and volumes, confirmed in the report), volume
///    identities, the store epoch, the node's UUID in `Hello`, typed refusals of a state,
///    orphans, operator commands. A version 1 peer would read a deletion as a wanted volume,
///    so it is refused.
/// 3: per-layer data: a replicated resource's members (node-ids, addresses, ports, diskful or
///    not), its secret and options; volume minors; the replication engine's reports. A version
///    2 peer would give a replicated resource unreplicated volumes, so it is refused.
/// 4: snapshots: a resource's snapshots on the node (taken once, deleted when marked), volumes
///    restored from a snapshot, snapshot reports and confirmed snapshot deletions, the
///    `RollbackSnapshot` command. A version 3 satellite would create an empty volume where a
///    restored one was asked for, so it is refused.
/// 5: deactivated resources (`inactive`: volumes kept, brought down), and the physical-storage
///    commands (`ListPhysicalStorage`, `CreateDevicePool`). A version 4 satellite would keep a
///    deactivated resource up, so it is refused.
/// 6: a snapshot's cut across a replicated resource's members: `suspend_io` on every member,
///    the snapshot's `cut` step (wait, take, abandoned), `io_suspended` in the report. A
///    version 5 satellite would take a snapshot of a replicated resource without holding its
///    writes, so the replicas' snapshots could differ; it is refused.
/// 7: fresh replication metadata for volumes restored or rolled back from a snapshot
///    (`RestoreSpec::fresh_generation`, `RollbackSnapshot::fresh_generation`): restores and
///    rollbacks of replicated resources. A version 6 satellite would run a restored volume on
///    the metadata copied from the source (its generations, bitmaps and node-ids), so it is
///    refused.
///    Also in 7: a member's `volume_options` and `connection_options` are the whole of what the volume's
///    and the connection's sections say, resolved in LINSTOR's order by the controller. A
///    version 6 satellite would add the resource's peer-device options to every connection,
///    also where LINSTOR's order drops them; it is refused.
/// 8: the state a satellite holds in `Welcome` (`holds`: stamp and content digest) and
///    [`ControllerMessage::ApplySameState`]. A version 7 peer neither sends nor is sent
///    either, so both versions are served.
pub const PROTOCOL_VERSION: u32 = 8;

/// The first version whose satellites say in `Welcome` which state they hold and take
/// [`ControllerMessage::ApplySameState`].
pub const SAME_STATE_VERSION: u32 = 8;

/// The oldest peer version this build still understands.
pub const MIN_PROTOCOL_VERSION: u32 = 7;

/// Whether a peer speaking `version` can talk to this build.
pub fn is_compatible(version: u32) -> bool {
    (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version)
}

/// What the controller sends. Encoded as derived; decoded by `decode` (the big variant without
/// serde's buffering of the whole message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", remote = "Self")]
pub enum ControllerMessage {
    /// Opens a session.
    Hello {
        protocol_version: u32,
        /// Identifies the cluster; a satellite serves one cluster for its whole life.
        cluster_id: String,
        /// The name the controller knows this node by.
        node_name: String,
        /// The node's UUID in the controller: a node deleted (or declared lost) and registered
        /// again has a new one.
        #[serde(default)]
        node_uuid: String,
        controller_version: String,
    },
    /// Desired state for this node.
    ApplyState(DesiredState),
    /// The node's full state at this stamp is the one the satellite said it holds (in
    /// `Welcome`): its pools and resources have `digest` ([`content_digest`]). Taken and
    /// answered as a full state of that content would be; a satellite whose state no longer
    /// has that digest answers [`SatelliteMessage::NeedFullState`]. Sent only to satellites of
    /// [`SAME_STATE_VERSION`] or later.
    ApplySameState {
        epoch: u64,
        generation: u64,
        digest: String,
    },
    /// Asks whether a storage pool could be used as specified, before the controller records
    /// it, so a pool on a missing volume group is refused rather than created broken.
    CheckPool {
        request_id: u64,
        pool: PoolSpec,
    },
    /// An operator's explicit command; answered with [`SatelliteMessage::CommandDone`].
    Command {
        request_id: u64,
        command: NodeCommand,
    },
    Ping,
}

/// What an operator can tell a node to do outside its desired state. Each names exactly the
/// volume it acts on, identity included, so a command meant for one volume never touches
/// another of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command")]
pub enum NodeCommand {
    /// Delete an orphan: a backing volume this satellite created that no wanted volume uses.
    DeleteOrphan {
        resource: String,
        volume_number: u16,
        /// As reported in [`OrphanReport::identity`].
        identity: Option<String>,
        pool_name: String,
    },
    /// Create a wanted volume again whose backing volume has disappeared (reported missing):
    /// its data is gone and the operator accepts an empty volume in its place.
    RecreateMissing {
        resource: String,
        volume_number: u16,
        identity: String,
    },
    /// Roll the resource's backing volumes back to a snapshot the node took: their data since
    /// the snapshot is lost, by the operator's will. The controller sends it only while no
    /// node uses the resource; for a replicated resource, only once every member is down
    /// (`ResourceSpec::inactive`).
    RollbackSnapshot {
        resource: String,
        /// The resource's UUID on the node, so a later placement of the same name is not
        /// rolled back.
        resource_uuid: String,
        snapshot: String,
        /// The snapshot's UUID on the node.
        snapshot_uuid: String,
        /// The identities of the volumes to roll back, by volume number.
        volumes: Vec<RollbackVolume>,
        /// A replicated resource: the metadata rolled back with the data is this node's as it
        /// was at the snapshot, so the node writes new replication metadata on each volume
        /// before the engine runs it again, starting UpToDate at this generation, which every
        /// diskful member rolled back to the same cut shares (no resync). A volume whose
        /// rollback did not complete gets just-created metadata instead (a full resync from a
        /// member that completed). `None` for an unreplicated resource.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fresh_generation: Option<u64>,
    },
    /// List the node's unused disks (no partitions, no holders, not mounted); the result is a
    /// JSON array of [`PhysicalDevice`].
    ListPhysicalStorage,
    /// Turn unused disks into a volume group, a thin pool or a zpool
    /// (`physical-storage create-device-pool`); the result names the pool made.
    CreateDevicePool(DevicePoolSpec),
}

/// An unused disk of a node, as `lsblk` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalDevice {
    pub device: String,
    pub size_bytes: u64,
    pub rotational: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
}

/// What `CreateDevicePool` makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePoolSpec {
    /// LVM, LVM_THIN, ZFS or ZFS_THIN.
    pub provider_kind: ferrite_types::ProviderKind,
    /// The disks, `/dev/...`; each must be unused.
    pub devices: Vec<String>,
    /// The pool's name: the volume group (LVM), the thin pool in volume group
    /// `linstor_<name>` (LVM_THIN), or the zpool (ZFS, ZFS_THIN), as LINSTOR names them.
    pub pool_name: String,
}

/// One volume of a [`NodeCommand::RollbackSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackVolume {
    pub volume_number: u16,
    /// The volume definition's UUID the snapshot was taken of.
    pub identity: String,
}

/// Why a satellite did not take a desired state. Nothing of the state was acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind")]
pub enum StateRefusal {
    #[error("could not persist the desired state: {error}")]
    CannotPersist { error: String },
    #[error(
        "the offered state ({offered}) is older than the one this node applied ({applied}); \
         the controller's store is older than the node's state (a stale copy?) — restore a \
         backup with 'ferrite-controller --restore' rather than copying a store file, or start \
         the controller on its current store"
    )]
    Older { offered: Stamp, applied: Stamp },
    #[error(
        "the offered state differs from the one this node applied under the same {stamp}: two \
         controllers with copies of one store are writing; stop all but one"
    )]
    Conflicting { stamp: Stamp },
    #[error(
        "the offered state no longer wants {} without asking for {}: the node keeps it and \
         stays at its current state; if the controller's store was restored on purpose, \
         restore it with 'ferrite-controller --restore' (volumes it does not know then become \
         orphans)",
        volumes.join(", "),
        if volumes.len() == 1 { "its deletion" } else { "their deletion" }
    )]
    DropsVolumes { volumes: Vec<String> },
}

impl StateRefusal {
    /// Whether sending the same state again can succeed without anyone acting (a full disk is
    /// freed, say), as opposed to a state the node refuses on principle.
    pub fn is_transient(&self) -> bool {
        matches!(self, StateRefusal::CannotPersist { .. })
    }
}

/// What the satellite sends. Encoded as derived; decoded by `decode` (the variants with a node
/// report without serde's buffering of the whole message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", remote = "Self")]
pub enum SatelliteMessage {
    /// Accepts the session.
    Welcome {
        protocol_version: u32,
        node_name: String,
        /// `uname -n` of the satellite's host.
        hostname: String,
        satellite_version: String,
        capabilities: Capabilities,
        /// The desired state the node holds, to a controller of [`SAME_STATE_VERSION`] or
        /// later; `None` when it holds none, or one from another registration of the node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holds: Option<HeldState>,
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
    /// The satellite did not take `generation` and stays at the generation in `report`;
    /// nothing of the new state was acted on.
    NotApplied {
        generation: u64,
        refusal: StateRefusal,
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
    /// The answer to [`ControllerMessage::Command`]: what was done, or why not.
    CommandDone {
        request_id: u64,
        result: Result<String, String>,
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

    #[test]
    fn volume_options_cross_the_wire_in_a_message() {
        let spec = ReplicationSpec {
            engine: ReplicationEngine::Drbd,
            node_id: 0,
            address: "10.0.0.1".parse().unwrap(),
            port: 7000,
            secret: "s".into(),
            peers: vec![],
            options: Default::default(),
            volume_options: [(
                3,
                [("Disk/al-extents".to_string(), "6007".to_string())].into(),
            )]
            .into(),
            connection_options: Default::default(),
        };
        let message = ControllerMessage::ApplyState(DesiredState {
            epoch: 0,
            generation: 1,
            base_generation: None,
            storage_pools: vec![],
            resources: vec![ResourceSpec {
                replication: Some(spec),
                ..serde_json::from_str(
                    r#"{"name":"r","uuid":"u","layers":[],"diskless":false,"volumes":[]}"#,
                )
                .unwrap()
            }],
            removed_resources: vec![],
        });
        let json = serde_json::to_string(&message).unwrap();
        assert!(json.contains(r#""volume_options":{"3":"#), "{json}");
        assert_eq!(
            serde_json::from_str::<ControllerMessage>(&json).unwrap(),
            message
        );
        let bad = json.replace(r#"{"3":"#, r#"{"x":"#);
        let refused = serde_json::from_str::<ControllerMessage>(&bad).unwrap_err();
        assert!(
            refused.to_string().contains("'x' is no volume number"),
            "{refused}"
        );
    }

    #[test]
    fn stamps_order_by_epoch_first() {
        let stamp = |epoch, generation| Stamp { epoch, generation };
        assert!(stamp(1, 3) > stamp(0, 900));
        assert!(stamp(0, 4) > stamp(0, 3));
        assert_eq!(stamp(2, 2), stamp(2, 2));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let older = StateRefusal::Older {
            offered: Stamp {
                epoch: 0,
                generation: 40,
            },
            applied: Stamp {
                epoch: 0,
                generation: 57,
            },
        };
        let text = older.to_string();
        assert!(
            text.contains("generation 40") && text.contains("generation 57"),
            "{text}"
        );
        assert!(text.contains("--restore"), "{text}");
        assert!(!older.is_transient());
        let drops = StateRefusal::DropsVolumes {
            volumes: vec!["web/0".into()],
        };
        assert!(
            drops
                .to_string()
                .contains("web/0 without asking for its deletion")
        );
        let json = serde_json::to_value(&drops).unwrap();
        assert_eq!(json["kind"], "DropsVolumes");
    }
}
