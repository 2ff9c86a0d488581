//! The replication layer's data in LINSTOR's shapes: `DrbdResource`, `DrbdVolume`,
//! `DrbdResourceDefinitionLayer`, `DrbdVolumeDefinition`, `DrbdConnection`.
//!
//! LINSTOR's clients know one replication layer kind, DRBD, and golinstor cannot decode a layer
//! type it does not know. So a replicated resource shows the DRBD layer whichever engine runs
//! it — the kernel's DRBD 9 or Ferrite's MIRROR — and these shapes carry Ferrite's additions
//! (`engine`, `nbd_uri`, `role`, `quorum`), which LINSTOR's clients ignore. Field names and JSON
//! types are golinstor's (`int32`, `int64`, `bool`, `string`); optional fields are left out
//! when unknown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Reads an `engine` field: absent, `MIRROR` or `DRBD`; anything else is refused, not ignored.
fn engine_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = <Option<String> as serde::Deserialize>::deserialize(d)?;
    match value.as_deref() {
        None | Some("MIRROR") | Some("DRBD") => Ok(value),
        Some(other) => Err(serde::de::Error::custom(format!(
            "'{other}' is not a replication engine: MIRROR or DRBD"
        ))),
    }
}

/// The engine behind a DRBD-shaped layer: `MIRROR` (Ferrite's, in user space) or `DRBD` (the
/// kernel's DRBD 9).
pub fn engine_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["MIRROR", "DRBD"]))
        .description(Some(
            "Ferrite's addition: the engine that replicates the resource, MIRROR (Ferrite's own) \
             or DRBD (the kernel's DRBD 9). Absent while not chosen yet.",
        ))
        .into()
}

/// The replication layer of a resource on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DrbdResource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drbd_resource_definition: Option<DrbdResourceDefinitionLayer>,
    /// The member's node-id in the resource, 0–31.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i32>,
    /// The port the member listens on for its peers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp_ports: Vec<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_slots: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub al_stripes: Option<i32>,
    /// KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub al_size: Option<i64>,
    /// The layer's flags (`DISKLESS` for a member without a disk).
    pub flags: Vec<String>,
    pub drbd_volumes: Vec<DrbdVolume>,
    /// The connection to each peer, by the peer's node name, as the member's engine reports it.
    pub connections: BTreeMap<String, DrbdConnection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotion_score: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub may_promote: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = engine_schema)]
    #[serde(deserialize_with = "engine_name")]
    pub engine: Option<String>,
    /// Ferrite's addition: `Primary`, `Secondary` or `Unknown`, as the engine reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Ferrite's addition: whether the member has quorum, as the engine reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<bool>,
}

/// The connection to one peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DrbdConnection {
    pub connected: bool,
    /// DRBD's connection state: `Connected`, `Connecting`, `StandAlone`, ...
    pub message: String,
}

/// The replication layer's data of a resource definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DrbdResourceDefinitionLayer {
    pub resource_name_suffix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_slots: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub al_stripes: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub al_stripe_size_kib: Option<i64>,
    /// The member's port, in a resource's `layer_object`; absent in a definition's
    /// `layer_data`, since ports are allocated per node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_type: Option<String>,
    /// Authenticates the members to each other.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = engine_schema)]
    #[serde(deserialize_with = "engine_name")]
    pub engine: Option<String>,
}

/// The replication layer's data of a volume definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DrbdVolumeDefinition {
    pub resource_name_suffix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_number: Option<i32>,
    /// The device minor, cluster-wide (from 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor_number: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = engine_schema)]
    #[serde(deserialize_with = "engine_name")]
    pub engine: Option<String>,
}

/// The replication layer's data of a volume on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DrbdVolume {
    #[schema(required = true)]
    pub drbd_volume_definition: DrbdVolumeDefinition,
    /// The block device applications use, e.g. `/dev/ferrite/web/0` or `/dev/drbd1000`; also
    /// on diskless members. Always present, as in LINSTOR (python-linstor reads it without a
    /// default): empty while the engine has not reported it.
    pub device_path: String,
    /// The local backing device (diskful members only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_device: Option<String>,
    /// `internal` for a diskful member (metadata at the end of the backing device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_disk: Option<String>,
    /// KiB; 0 without a local disk or while not reported. Always present, as in LINSTOR.
    pub allocated_size_kib: i64,
    /// KiB; 0 while not reported. Always present, as in LINSTOR.
    pub usable_size_kib: i64,
    /// DRBD's words: UpToDate, Inconsistent, Outdated, Diskless, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_state: Option<String>,
    /// Ferrite's addition: the volume's NBD export, e.g.
    /// `nbd+unix:///web/0?socket=/var/lib/ferrite/satellite/mirror/run/web/0.nbd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbd_uri: Option<String>,
    /// Ferrite's addition: the same export over TCP on a loopback address, where the node
    /// serves one (the satellite's `--mirror-nbd-tcp`), e.g. `nbd://127.0.0.1:10809/web/0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbd_tcp_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = engine_schema)]
    #[serde(deserialize_with = "engine_name")]
    pub engine: Option<String>,
}
