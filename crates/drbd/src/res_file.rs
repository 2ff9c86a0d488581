//! The resource file of one member of a DRBD resource, laid out as LINSTOR writes it:
//!
//! ```text
//! resource "<name>"
//! {
//!     handlers { DrbdOptions/Handlers/* }       only when set
//!     options  { DrbdOptions/Resource/* }       quorum, on-no-quorum, …; only when set
//!     net      { cram-hmac-alg sha1; shared-secret "…"; DrbdOptions/Net/* (protocol C) }
//!     disk     { DrbdOptions/Disk/* }           only when set
//!     on "<this node>" { volume N { disk <backing|none>; tiebreaker yes; (or as a comment, by
//!                                   the DRBD versions) [disk { per volume }] meta-disk internal;
//!                                   device minor M; } … node-id I; }
//!     on "<peer>" { … }                         every peer, by node name
//!     connection { [net { DrbdOptions/Net/* }] [disk { DrbdOptions/PeerDevice/* }]  per connection
//!                  host "<this node>" address ipv4 A:P; host "<peer>" address ipv4 B:Q; }
//!                                               this node with every peer, except two diskless
//! }
//! ```
//!
//! A peer's diskful volume names no device of its own (the peer's file has it), so it is written
//! as a placeholder path, as LINSTOR does. The header names the node but carries no time, so a
//! file whose content did not change renders byte for byte the same.
//!
//! Owns the text; not where it is written, nor inheritance of the options (the controller
//! resolves every section's options as LINSTOR does and hands them down whole).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::options::{DrbdOptions, Section};
use crate::version::DrbdVersions;

/// Where a peer's diskful volume points in this node's file: drbdadm needs a disk there, and the
/// peer's own file names the real one.
pub const PEER_DISK_PLACEHOLDER: &str = "/dev/drbd/this/is/not/used";

/// The highest node-id DRBD 9 accepts.
pub const NODE_ID_MAX: u8 = 31;

/// The highest device minor DRBD accepts (2^20 − 1).
pub const MINOR_MAX: u32 = (1 << 20) - 1;

/// One member of the resource, this node or a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node's name as its hostname says it (`uname -n`): drbdadm finds its own section by it.
    pub node_name: String,
    pub node_id: u8,
    pub address: SocketAddr,
    /// Without a local disk: a diskless client or tiebreaker.
    pub diskless: bool,
}

/// A volume of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub number: u16,
    pub minor: u32,
    /// This node's backing device; `None` on a diskless member.
    pub backing: Option<PathBuf>,
    /// `DrbdOptions/Disk/*` of this volume after inheritance (every level, the resource's
    /// nearest), written in its own `disk { }`, which DRBD takes over the resource's. Written
    /// in every member's `on` section; drbdadm reads only this node's.
    pub options: DrbdOptions,
}

/// Everything one node's resource file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceFile {
    pub resource: String,
    pub local: Member,
    pub peers: Vec<Member>,
    /// The resource's shared secret (`cram-hmac-alg sha1`).
    pub secret: String,
    pub volumes: Vec<Volume>,
    /// The resource's options after inheritance: its `handlers`, `options`, `net` and `disk`
    /// sections. Its `PeerDevice` options are written only where a connection has them.
    pub options: DrbdOptions,
    /// drbd-utils' and the kernel module's versions on this node: every volume says
    /// `tiebreaker yes;` where both take it, and only as a comment naming them otherwise (an
    /// older drbd-utils refuses the word), as LINSTOR writes it for every member but a DRBD
    /// client, a role Ferrite does not have.
    pub versions: DrbdVersions,
    /// The options of the connection to one peer after inheritance, by the peer's node name:
    /// its `Net` ones in the connection's `net`, its `PeerDevice` ones in its `disk`; DRBD
    /// takes them over the resource's.
    pub connection_options: BTreeMap<String, DrbdOptions>,
}

/// Why a resource file cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResFileError {
    #[error(
        "resource '{resource}': '{value}' cannot be written in a resource file ({what}: {why})"
    )]
    Unwritable {
        resource: String,
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("resource '{resource}': node-id {node_id} is used by both '{first}' and '{second}'")]
    DuplicateNodeId {
        resource: String,
        node_id: u8,
        first: String,
        second: String,
    },
    #[error("resource '{resource}': node-id {node_id} of '{node}' is above DRBD's {NODE_ID_MAX}")]
    NodeIdOutOfRange {
        resource: String,
        node: String,
        node_id: u8,
    },
    #[error("resource '{resource}': minor {minor} of volume {volume} is above DRBD's {MINOR_MAX}")]
    MinorOutOfRange {
        resource: String,
        volume: u16,
        minor: u32,
    },
    #[error(
        "resource '{resource}': volume {volume} has no backing device on '{node}', which is not diskless"
    )]
    NoBackingDevice {
        resource: String,
        volume: u16,
        node: String,
    },
    #[error("resource '{resource}': a connection's options name '{peer}', which is no peer")]
    UnknownPeer { resource: String, peer: String },
}

/// What may stand in a quoted name: DRBD's parser ends a word at a quote or a line break.
fn quotable(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        Err("empty")
    } else if text.contains(['"', '\\', '\n', '\r']) {
        Err("contains a quote, a backslash or a line break")
    } else {
        Ok(())
    }
}

/// What may stand as a bare word (a device path).
fn bare_word(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        Err("empty")
    } else if text
        .chars()
        .any(|c| c.is_whitespace() || "\";{}#\\".contains(c))
    {
        Err("contains a space, a quote, a brace, ';', '#' or a backslash")
    } else {
        Ok(())
    }
}

fn address(address: &SocketAddr) -> String {
    match address {
        SocketAddr::V4(a) => format!("ipv4 {}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("ipv6 [{}]:{}", a.ip(), a.port()),
    }
}

/// Builds the text, four spaces per level, braces on lines of their own.
struct Writer {
    text: String,
    depth: usize,
}

impl Writer {
    /// One line at the current depth; an empty line stays empty (no trailing spaces).
    fn line(&mut self, line: &str) {
        if !line.is_empty() {
            for _ in 0..self.depth {
                self.text.push_str("    ");
            }
        }
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn open(&mut self, head: &str) {
        self.line(head);
        self.line("{");
        self.depth += 1;
    }

    fn close(&mut self) {
        self.depth -= 1;
        self.line("}");
    }

    fn options(&mut self, values: &[(&str, String)]) {
        for (name, value) in values {
            self.line(&format!("{name} {value};"));
        }
    }

    /// A section of options, left out when there are none.
    fn section(&mut self, head: &str, values: &[(&str, String)], blank_before: bool) {
        if values.is_empty() {
            return;
        }
        if blank_before {
            self.line("");
        }
        self.open(head);
        self.options(values);
        self.close();
    }
}

impl ResourceFile {
    fn unwritable(&self, what: &'static str, value: &str, why: &'static str) -> ResFileError {
        ResFileError::Unwritable {
            resource: self.resource.clone(),
            what,
            value: value.to_string(),
            why,
        }
    }

    /// Everything a file needs to be accepted by drbdadm, checked before any text is made.
    pub fn check(&self) -> Result<(), ResFileError> {
        quotable(&self.resource)
            .map_err(|why| self.unwritable("resource name", &self.resource, why))?;
        quotable(&self.secret)
            .map_err(|why| self.unwritable("shared secret", "(the secret)", why))?;
        let mut ids: BTreeMap<u8, &str> = BTreeMap::new();
        for member in std::iter::once(&self.local).chain(&self.peers) {
            quotable(&member.node_name)
                .map_err(|why| self.unwritable("node name", &member.node_name, why))?;
            if member.node_id > NODE_ID_MAX {
                return Err(ResFileError::NodeIdOutOfRange {
                    resource: self.resource.clone(),
                    node: member.node_name.clone(),
                    node_id: member.node_id,
                });
            }
            if let Some(first) = ids.insert(member.node_id, &member.node_name) {
                return Err(ResFileError::DuplicateNodeId {
                    resource: self.resource.clone(),
                    node_id: member.node_id,
                    first: first.to_string(),
                    second: member.node_name.clone(),
                });
            }
        }
        for volume in &self.volumes {
            if volume.minor > MINOR_MAX {
                return Err(ResFileError::MinorOutOfRange {
                    resource: self.resource.clone(),
                    volume: volume.number,
                    minor: volume.minor,
                });
            }
            match &volume.backing {
                Some(path) => {
                    let path = path.to_string_lossy();
                    bare_word(&path).map_err(|why| self.unwritable("backing device", &path, why))?
                }
                None if !self.local.diskless => {
                    return Err(ResFileError::NoBackingDevice {
                        resource: self.resource.clone(),
                        volume: volume.number,
                        node: self.local.node_name.clone(),
                    });
                }
                None => {}
            }
        }
        for peer in self.connection_options.keys() {
            if !self.peers.iter().any(|p| &p.node_name == peer) {
                return Err(ResFileError::UnknownPeer {
                    resource: self.resource.clone(),
                    peer: peer.clone(),
                });
            }
        }
        Ok(())
    }

    fn volumes(&self, writer: &mut Writer, member: &Member, local: bool) {
        let mut volumes: Vec<&Volume> = self.volumes.iter().collect();
        volumes.sort_by_key(|v| v.number);
        for volume in volumes {
            writer.open(&format!("volume {}", volume.number));
            let disk = match (&volume.backing, local, member.diskless) {
                (_, _, true) => "none".to_string(),
                (Some(path), true, false) => path.to_string_lossy().into_owned(),
                (None, true, false) => "none".to_string(),
                (_, false, false) => PEER_DISK_PLACEHOLDER.to_string(),
            };
            writer.line(&format!("disk        {disk};"));
            if self.versions.tiebreaker_keyword() {
                writer.line("tiebreaker yes;");
            } else {
                writer.line(&format!("# tiebreaker yes;   # {}", self.versions));
            }
            writer.section("disk", &volume.options.section(Section::Disk), false);
            writer.line("meta-disk   internal;");
            writer.line(&format!("device      minor {};", volume.minor));
            writer.close();
        }
    }

    /// The file's text. Checks first; nothing is made of a member that would not be accepted.
    pub fn render(&self) -> Result<String, ResFileError> {
        self.check()?;
        let mut options = self.options.clone();
        options.set_default(Section::Net, "protocol", "C");
        let mut writer = Writer {
            text: String::new(),
            depth: 0,
        };
        writer.line(
            "# This file was generated by Ferrite; do not edit it: the satellite rewrites it.",
        );
        writer.line(&format!("# Node: {}", self.local.node_name));
        writer.line("");
        writer.open(&format!("resource \"{}\"", self.resource));
        writer.section("handlers", &options.section(Section::Handlers), true);
        writer.section("options", &options.section(Section::Resource), true);
        writer.line("");
        writer.open("net");
        writer.line("cram-hmac-alg     sha1;");
        writer.line(&format!("shared-secret     \"{}\";", self.secret));
        writer.options(&options.section(Section::Net));
        writer.close();
        writer.section("disk", &options.section(Section::Disk), true);

        writer.line("");
        writer.open(&format!("on \"{}\"", self.local.node_name));
        self.volumes(&mut writer, &self.local, true);
        writer.line(&format!("node-id    {};", self.local.node_id));
        writer.close();

        let mut peers: Vec<&Member> = self.peers.iter().collect();
        peers.sort_by(|a, b| a.node_name.cmp(&b.node_name));
        for peer in &peers {
            writer.line("");
            writer.open(&format!("on \"{}\"", peer.node_name));
            self.volumes(&mut writer, peer, false);
            writer.line(&format!("node-id    {};", peer.node_id));
            writer.close();
        }

        for peer in &peers {
            if peer.diskless && self.local.diskless {
                continue;
            }
            let connection = self.connection_options.get(&peer.node_name);
            let pick = |section: Section| -> Vec<(&'static str, String)> {
                connection.map(|c| c.section(section)).unwrap_or_default()
            };
            writer.line("");
            writer.open("connection");
            writer.section("net", &pick(Section::Net), false);
            writer.section("disk", &pick(Section::PeerDevice), false);
            for member in [&self.local, *peer] {
                writer.line(&format!(
                    "host \"{}\" address {};",
                    member.node_name,
                    address(&member.address)
                ));
            }
            writer.close();
        }
        writer.close();
        Ok(writer.text)
    }
}

/// The file name of a resource's file in the resource-file directory.
pub fn file_name(resource: &str) -> String {
    format!("{resource}.res")
}

/// The volumes of `node` that have a disk in a file this module rendered, with their device:
/// what a satellite that restarted must detach and wipe when the resource goes.
pub fn local_disks(text: &str, node: &str) -> Vec<(u16, String)> {
    let head = format!("on \"{node}\"");
    let mut disks = Vec::new();
    let mut inside = false;
    let mut volume: Option<u16> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("on \"") {
            inside = line == head;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(number) = line.strip_prefix("volume ") {
            volume = number.trim().parse().ok();
        } else if let Some(disk) = line.strip_prefix("disk ")
            && let Some(number) = volume.take()
        {
            let disk = disk.trim().trim_end_matches(';');
            if disk != "none" {
                disks.push((number, disk.to_string()));
            }
        } else if line.starts_with("node-id") {
            inside = false;
        }
    }
    disks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, id: u8, diskless: bool) -> Member {
        Member {
            node_name: name.to_string(),
            node_id: id,
            address: format!("127.0.0.1{id}:7000").parse().unwrap(),
            diskless,
        }
    }

    fn file() -> ResourceFile {
        ResourceFile {
            resource: "r0".to_string(),
            local: member("node1", 0, false),
            peers: vec![member("node2", 1, false)],
            secret: "s3cret".to_string(),
            volumes: vec![Volume {
                number: 0,
                minor: 1000,
                backing: Some(PathBuf::from("/dev/loop3")),
                options: DrbdOptions::default(),
            }],
            options: DrbdOptions::default(),
            versions: DrbdVersions::default(),
            connection_options: BTreeMap::new(),
        }
    }

    #[test]
    fn what_drbdadm_cannot_read_is_refused_before_any_text() {
        let mut bad = file();
        bad.peers[0].node_id = 0;
        assert!(matches!(
            bad.render(),
            Err(ResFileError::DuplicateNodeId { .. })
        ));
        let mut bad = file();
        bad.volumes[0].backing = Some(PathBuf::from("/tmp/a b"));
        assert!(
            bad.render()
                .unwrap_err()
                .to_string()
                .contains("backing device")
        );
        let mut bad = file();
        bad.volumes[0].backing = None;
        assert!(matches!(
            bad.render(),
            Err(ResFileError::NoBackingDevice { .. })
        ));
        let mut bad = file();
        bad.secret = "a\"b".to_string();
        assert!(!bad.render().unwrap_err().to_string().contains("a\"b"));
        let mut bad = file();
        bad.volumes[0].minor = MINOR_MAX + 1;
        assert!(matches!(
            bad.render(),
            Err(ResFileError::MinorOutOfRange { .. })
        ));
        let mut bad = file();
        bad.connection_options
            .insert("node9".to_string(), DrbdOptions::default());
        assert!(matches!(
            bad.render(),
            Err(ResFileError::UnknownPeer { .. })
        ));
    }

    #[test]
    fn the_local_disks_are_read_back_from_a_rendered_file() {
        let mut f = file();
        f.volumes.push(Volume {
            number: 1,
            minor: 1001,
            backing: Some(PathBuf::from("/dev/loop4")),
            options: DrbdOptions::default(),
        });
        let text = f.render().unwrap();
        assert_eq!(
            local_disks(&text, "node1"),
            [(0, "/dev/loop3".to_string()), (1, "/dev/loop4".to_string())]
        );
        assert!(local_disks(&text, "node9").is_empty());
        f.local.diskless = true;
        for v in &mut f.volumes {
            v.backing = None;
        }
        assert!(local_disks(&f.render().unwrap(), "node1").is_empty());
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let mut f = file();
        f.peers[0].address = "[fd00::2]:7001".parse().unwrap();
        let text = f.render().unwrap();
        assert!(text.contains("host \"node2\" address ipv6 [fd00::2]:7001;"));
    }

    #[test]
    fn two_diskless_members_get_no_connection() {
        let mut f = file();
        f.local.diskless = true;
        f.volumes[0].backing = None;
        f.peers.push(member("node3", 2, true));
        let text = f.render().unwrap();
        assert_eq!(text.matches("connection\n").count(), 1);
        assert!(text.contains("disk        none;"));
    }

    #[test]
    fn every_volume_says_tiebreaker_as_the_drbd_versions_allow() {
        let mut f = file();
        f.versions =
            DrbdVersions::from_drbdadm_version("DRBD_KERNEL_VERSION=0\nDRBDADM_VERSION=9.22.0\n");
        let text = f.render().unwrap();
        assert_eq!(
            text.matches("# tiebreaker yes;   # DRBD utils: 9.22.0, kmod: none\n")
                .count(),
            2,
            "one per volume of each member: {text}"
        );
        f.versions = DrbdVersions::from_drbdadm_version(
            "DRBD_KERNEL_VERSION=9.3.1\nDRBDADM_VERSION=9.34.0\n",
        );
        let text = f.render().unwrap();
        assert_eq!(
            text.matches("\n            tiebreaker yes;\n").count(),
            2,
            "{text}"
        );
        assert!(
            !text.contains('#') || !text.contains("# tiebreaker"),
            "{text}"
        );
    }
}
