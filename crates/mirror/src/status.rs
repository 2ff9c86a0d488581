//! What a member reports about a resource: the snapshot `ferrite-mirrord status` prints, the
//! control socket sends and the satellite turns into its replication report. DRBD's words
//! throughout (role, disk, connection, replication, peer-disk, done, out-of-sync).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// A resource on one member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub name: String,
    /// This member's node name.
    pub node_name: String,
    pub node_id: u8,
    /// Primary or Secondary.
    pub role: String,
    pub quorum: bool,
    /// Whether a frontend holds a volume open (an NBD client, a mounted block device).
    pub in_use: bool,
    pub volumes: Vec<VolumeStatus>,
    pub peers: Vec<PeerStatus>,
    /// Why the resource is not working, when it is not.
    pub error: Option<String>,
}

/// One local volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeStatus {
    pub number: u16,
    /// UpToDate, Inconsistent, Outdated, Diskless, Failed, ...
    pub disk: String,
    pub usable_bytes: u64,
    /// Extents of its activity log (4 MiB each): what a crash of this member now would
    /// resync. Read live; 0 on a diskless member.
    #[serde(default)]
    pub hot_extents: u32,
}

/// One peer as this member sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node_name: String,
    pub node_id: u8,
    /// Connected, Connecting or StandAlone.
    pub connection: String,
    /// Why it is StandAlone (a split brain, unrelated data): an operator decides.
    pub connection_reason: Option<String>,
    /// Primary, Secondary, or Unknown while not connected.
    pub role: String,
    pub volumes: Vec<PeerVolumeStatus>,
}

/// One volume toward one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerVolumeStatus {
    pub number: u16,
    /// Off, Established, SyncSource, SyncTarget, PausedSyncT.
    pub replication: String,
    /// The peer's disk state (DUnknown while not connected).
    pub peer_disk: String,
    /// How far the resync from this peer is.
    pub done_percent: Option<f64>,
    /// What this member knows the peer lacks.
    pub out_of_sync_kib: u64,
    /// Every block of the resync from this peer arrived, but the named Primary writes without
    /// this member: the resync waits for that Primary (docs/mirror.md, "Held resyncs").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
}

impl ResourceStatus {
    /// The text `drbdsetup status` prints for a resource; volumes and peer volumes are
    /// named by number when there is more than one.
    pub fn render(&self, verbose: bool) -> String {
        let mut out = String::new();
        let many = self.volumes.len() > 1;
        let _ = write!(out, "{} role:{}", self.name, self.role);
        if verbose {
            let _ = write!(
                out,
                " node-id:{} quorum:{}",
                self.node_id,
                yes_no(self.quorum)
            );
        }
        if self.in_use {
            out.push_str(" open:yes");
        }
        if !self.quorum {
            out.push_str(" quorum:no");
        }
        out.push('\n');
        if let Some(error) = &self.error {
            let _ = writeln!(out, "  error: {error}");
        }
        for volume in &self.volumes {
            out.push_str("  ");
            if many || verbose {
                let _ = write!(out, "volume:{} ", volume.number);
            }
            let _ = write!(out, "disk:{}", volume.disk);
            if verbose && volume.disk != "Diskless" {
                let _ = write!(out, " hot-extents:{}", volume.hot_extents);
            }
            out.push('\n');
        }
        for peer in &self.peers {
            let _ = write!(out, "  {}", peer.node_name);
            if verbose {
                let _ = write!(out, " node-id:{}", peer.node_id);
            }
            if peer.connection == "Connected" {
                let _ = write!(out, " role:{}", peer.role);
            } else {
                let _ = write!(out, " connection:{}", peer.connection);
            }
            if let Some(reason) = &peer.connection_reason {
                let _ = write!(out, " ({reason})");
            }
            out.push('\n');
            for volume in &peer.volumes {
                out.push_str("    ");
                if many || verbose {
                    let _ = write!(out, "volume:{} ", volume.number);
                }
                if volume.replication != "Established" && volume.replication != "Off" {
                    let _ = write!(out, "replication:{} ", volume.replication);
                }
                let _ = write!(out, "peer-disk:{}", volume.peer_disk);
                if let Some(done) = volume.done_percent {
                    let _ = write!(out, " done:{done:.2}");
                }
                if let Some(writer) = &volume.held_by {
                    let _ = write!(out, " held-by:{writer}");
                }
                if verbose || volume.out_of_sync_kib > 0 {
                    let _ = write!(out, " out-of-sync:{}", volume.out_of_sync_kib);
                }
                out.push('\n');
            }
        }
        out
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResourceStatus {
        ResourceStatus {
            name: "backups".into(),
            node_name: "node1".into(),
            node_id: 0,
            role: "Primary".into(),
            quorum: true,
            in_use: true,
            volumes: vec![VolumeStatus {
                number: 0,
                disk: "UpToDate".into(),
                usable_bytes: 1 << 30,
                hot_extents: 3,
            }],
            peers: vec![
                PeerStatus {
                    node_name: "node2".into(),
                    node_id: 1,
                    connection: "Connected".into(),
                    connection_reason: None,
                    role: "Secondary".into(),
                    volumes: vec![PeerVolumeStatus {
                        number: 0,
                        replication: "SyncSource".into(),
                        peer_disk: "Inconsistent".into(),
                        done_percent: Some(43.2),
                        out_of_sync_kib: 1024,
                        held_by: None,
                    }],
                },
                PeerStatus {
                    node_name: "node3".into(),
                    node_id: 2,
                    connection: "Connecting".into(),
                    connection_reason: None,
                    role: "Unknown".into(),
                    volumes: vec![PeerVolumeStatus {
                        number: 0,
                        replication: "Off".into(),
                        peer_disk: "DUnknown".into(),
                        done_percent: None,
                        out_of_sync_kib: 0,
                        held_by: None,
                    }],
                },
            ],
            error: None,
        }
    }

    #[test]
    fn status_reads_like_drbdsetup_status() {
        assert_eq!(
            sample().render(false),
            "backups role:Primary open:yes\n  disk:UpToDate\n  node2 role:Secondary\n    \
             replication:SyncSource peer-disk:Inconsistent done:43.20 out-of-sync:1024\n  \
             node3 connection:Connecting\n    peer-disk:DUnknown\n"
        );
    }

    #[test]
    fn a_held_resync_names_the_primary_it_waits_for() {
        let mut status = sample();
        status.role = "Secondary".into();
        status.in_use = false;
        status.volumes[0].disk = "Inconsistent".into();
        status.peers[0].volumes[0] = PeerVolumeStatus {
            number: 0,
            replication: "SyncTarget".into(),
            peer_disk: "UpToDate".into(),
            done_percent: Some(100.0),
            out_of_sync_kib: 0,
            held_by: Some("node3".into()),
        };
        assert!(
            status.render(false).contains(
                "    replication:SyncTarget peer-disk:UpToDate done:100.00 held-by:node3\n"
            ),
            "{}",
            status.render(false)
        );
        let text = serde_json::to_string(&status).unwrap();
        assert_eq!(
            serde_json::from_str::<ResourceStatus>(&text).unwrap(),
            status
        );
    }

    #[test]
    fn status_survives_the_control_socket() {
        let status = sample();
        let text = serde_json::to_string(&status).unwrap();
        assert_eq!(
            serde_json::from_str::<ResourceStatus>(&text).unwrap(),
            status
        );
    }
}
