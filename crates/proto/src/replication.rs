//! Per-layer data of a replicated resource: what the controller tells each member about the
//! others (desired), and what the member's replication engine reports (actual). Both replication
//! layers use these: MIRROR (`ferrite-mirrord`) and DRBD (the kernel module driven by drbd-utils).
//! States use DRBD's words.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Which engine replicates a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplicationEngine {
    /// Ferrite's own engine, `ferrite-mirrord`.
    Mirror,
    /// The kernel's DRBD 9.
    Drbd,
}

impl std::fmt::Display for ReplicationEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicationEngine::Mirror => "MIRROR",
            ReplicationEngine::Drbd => "DRBD",
        })
    }
}

/// This member of a replicated resource and its peers, as allocated by the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationSpec {
    pub engine: ReplicationEngine,
    /// This member's node-id in the resource, 0–31.
    pub node_id: u8,
    /// Where this member listens for its peers.
    pub address: IpAddr,
    pub port: u16,
    /// Authenticates the members of the resource to each other.
    pub secret: String,
    /// Every other member, whether diskful or not.
    pub peers: Vec<PeerSpec>,
    /// `DrbdOptions/*` properties after inheritance (the resource's over its definition's,
    /// its group's, its node's, the controller's), by their DRBD names, e.g. `Net/protocol` →
    /// `C`: the resource file's common sections.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The `Disk/*` options of each volume after inheritance (the resource's over the volume
    /// definition's, the volume group's, then as `options`), whole, by volume number and DRBD
    /// name (e.g. `Disk/al-extents`); for that volume they win over `options`. A volume no
    /// level sets a `Disk` option for is left out. The numbers are JSON object keys, strings on
    /// the wire.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "by_volume_number"
    )]
    pub volume_options: BTreeMap<u16, BTreeMap<String, String>>,
    /// The `Net/*` and `PeerDevice/*` options of the connection to each peer after inheritance
    /// (LINSTOR's chains for a connection, with the resource and node connections), whole, by
    /// the peer's node name and DRBD name; for that connection they win over `options`, whose
    /// `PeerDevice/*` options reach a DRBD connection only through here. A peer no level sets
    /// such an option for is left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connection_options: BTreeMap<String, BTreeMap<String, String>>,
}

/// A map keyed by volume number, from JSON object keys. Inside a tagged message serde buffers
/// the object, and a buffered key is a string that a plain `u16` key refuses.
fn by_volume_number<'de, D, V>(deserializer: D) -> Result<BTreeMap<u16, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    BTreeMap::<String, V>::deserialize(deserializer)?
        .into_iter()
        .map(|(key, value)| {
            key.parse::<u16>()
                .map(|number| (number, value))
                .map_err(|_| serde::de::Error::custom(format!("'{key}' is no volume number")))
        })
        .collect()
}

/// Another member of the resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSpec {
    pub node_name: String,
    pub node_id: u8,
    pub address: IpAddr,
    pub port: u16,
    /// Without a local disk (a client or a tiebreaker).
    pub diskless: bool,
}

/// DRBD's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Primary,
    Secondary,
    Unknown,
}

/// How the engine reports one member of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationReport {
    pub resource: String,
    pub engine: ReplicationEngine,
    pub role: Role,
    /// Whether a frontend has the volume open (an NBD client, a mounted block device).
    pub in_use: bool,
    pub quorum: bool,
    pub volumes: Vec<ReplicatedVolumeReport>,
    pub peers: Vec<PeerReport>,
    /// Why the resource is not as desired, if it is not (e.g. split brain detected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether this member may become Primary now, when the engine says so itself (the
    /// kernel's DRBD does); else the controller works it out from the states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_promote: Option<bool>,
    /// How strongly this member is a candidate for Primary, when the engine says so itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_score: Option<u64>,
}

/// One volume of a member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicatedVolumeReport {
    pub volume_number: u16,
    pub minor: Option<u32>,
    /// UpToDate, Inconsistent, Outdated, Diskless, Failed, ...
    pub disk_state: String,
    /// The block device applications use, e.g. `/dev/ferrite/web/0` or `/dev/drbd1000`.
    pub device_path: Option<String>,
    /// The volume's NBD export, e.g. `nbd+unix:///web/0?socket=/run/...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbd_uri: Option<String>,
    /// The same export over TCP on a loopback address, where the node serves one, e.g.
    /// `nbd://127.0.0.1:10809/web/0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbd_tcp_uri: Option<String>,
    pub usable_size_kib: Option<u64>,
}

/// The connection to one peer, and each volume's replication state towards it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    pub node_name: String,
    pub node_id: u8,
    /// Connected, Connecting, StandAlone, ...
    pub connection: String,
    pub role: Role,
    pub volumes: Vec<PeerVolumeReport>,
}

/// One volume's replication towards one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerVolumeReport {
    pub volume_number: u16,
    /// Established, SyncSource, SyncTarget, Off, ...
    pub replication: String,
    /// The peer's disk as this member knows it.
    pub peer_disk: String,
    /// Percent done while syncing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_percent: Option<f64>,
    pub out_of_sync_kib: u64,
}
