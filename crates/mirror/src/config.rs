//! A resource's configuration, as the satellite writes it for `ferrite-mirrord`: one JSON file
//! per resource in `<state-dir>/resources/<resource>.json`, the analogue of a DRBD `.res` file.
//! The daemon reads it when told to (`up`, `adjust` on the control socket) and checks it whole
//! before acting on any of it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::gi::MAX_NODES;

/// DRBD's default `ping-timeout`: a peer silent this long is disconnected.
pub const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a connection may receive nothing before it sends a `Ping` (DRBD's `ping-int`, 10 s
/// by default; a small cluster can afford to notice sooner). A peer silent for `ping-timeout`
/// after the `Ping` is disconnected: a dead peer is noticed within `PING_INTERVAL +
/// ping-timeout` (1.5 s by default) of its last frame, and an idle connection costs one `Ping`
/// and one `Pong` per interval (`peer::keepalive`).
pub const PING_INTERVAL: Duration = Duration::from_secs(1);

/// DRBD's default `c-max-rate`, in KiB/s: the most a resync takes. Set higher by the
/// satellite where the disks allow; DRBD's own default is conservative.
pub const C_MAX_RATE_KIB: u64 = 100 * 1024;

/// A member's configuration of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    pub name: String,
    pub node_name: String,
    pub node_id: u8,
    /// Where this member accepts its peers.
    pub listen: SocketAddr,
    pub secret: String,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    pub volumes: Vec<VolumeConfig>,
    #[serde(default)]
    pub options: Options,
}

/// Another member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub node_name: String,
    pub node_id: u8,
    pub address: SocketAddr,
    pub diskless: bool,
}

/// One volume of this member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    pub number: u16,
    #[serde(default)]
    pub minor: Option<u32>,
    /// The size applications see, a multiple of 4 KiB.
    pub usable_bytes: u64,
    /// The backing device (usable size plus metadata), or none for a diskless member.
    pub backing: Option<PathBuf>,
    /// The backing volume was created empty (thin or zeroed): when every member's volume is
    /// new, the initial sync is skipped.
    #[serde(default)]
    pub new_volume: bool,
}

/// What `DrbdOptions/*` properties set, by DRBD's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// `Resource/quorum`: off, majority, all, or a number.
    pub quorum: String,
    /// `Resource/on-no-quorum`: io-error or suspend-io.
    pub on_no_quorum: String,
    /// `Net/ping-timeout`, in tenths of a second as DRBD counts.
    pub ping_timeout_ds: u32,
    /// `PeerDevice/c-max-rate`, KiB/s.
    pub c_max_rate_kib: u64,
    /// `Disk/al-extents`.
    pub al_extents: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quorum: "majority".to_string(),
            on_no_quorum: "io-error".to_string(),
            ping_timeout_ds: (PING_TIMEOUT.as_millis() / 100) as u32,
            c_max_rate_kib: C_MAX_RATE_KIB,
            al_extents: crate::activity_log::AL_EXTENTS_DEFAULT,
        }
    }
}

impl Options {
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.ping_timeout_ds.max(1)) * 100)
    }

    /// The options from `DrbdOptions/*` properties, by their DRBD names (`Resource/quorum` →
    /// `majority`), over the defaults. Options MIRROR does not act on are skipped (the
    /// controller warns of them when they are set); a value it cannot take is an error naming
    /// the option, the value and what it accepts.
    pub fn from_drbd_options<'a>(
        options: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Options, String> {
        let mut parsed = Options::default();
        for (name, value) in options {
            let value = value.trim();
            let bad = |accepted: &str| {
                format!("DRBD option {name} = '{value}' cannot be used: {accepted}")
            };
            match name.as_str() {
                "Resource/quorum" => {
                    let valid = matches!(value, "off" | "majority" | "all")
                        || value.parse::<u8>().is_ok_and(|n| (1..=32).contains(&n));
                    if !valid {
                        return Err(bad("it is off, majority, all or a number of members 1-32"));
                    }
                    parsed.quorum = value.to_string();
                }
                "Resource/on-no-quorum" => {
                    if !matches!(value, "io-error" | "suspend-io") {
                        return Err(bad("it is io-error or suspend-io"));
                    }
                    parsed.on_no_quorum = value.to_string();
                }
                "Net/ping-timeout" => {
                    parsed.ping_timeout_ds = value
                        .parse::<u32>()
                        .ok()
                        .filter(|ds| (1..=300).contains(ds))
                        .ok_or_else(|| bad("it is in tenths of a second, 1-300"))?;
                }
                "PeerDevice/c-max-rate" => {
                    parsed.c_max_rate_kib = kib(value)
                        .filter(|kib| (250..=4_194_304).contains(kib))
                        .ok_or_else(|| {
                            bad("it is in KiB/s, 250-4194304, with an optional k, M or G suffix as DRBD takes it")
                        })?;
                }
                "Disk/al-extents" => {
                    parsed.al_extents = value
                        .parse::<u16>()
                        .ok()
                        .filter(|n| (67..=65534).contains(n))
                        .ok_or_else(|| bad("it is a number of extents, 67-65534"))?;
                }
                // Every write is acknowledged only once every connected peer has it on disk;
                // A and B would acknowledge earlier, and C is never less safe.
                "Net/protocol" if !matches!(value, "A" | "B" | "C") => {
                    return Err(bad("it is A, B or C"));
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// A size in KiB as DRBD writes it: a number of KiB, or with a `k`, `M` or `G` suffix.
fn kib(value: &str) -> Option<u64> {
    let (digits, factor) = match value.char_indices().last()? {
        (i, 'k' | 'K') => (&value[..i], 1),
        (i, 'm' | 'M') => (&value[..i], 1 << 10),
        (i, 'g' | 'G') => (&value[..i], 1 << 20),
        _ => (value, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid resource configuration: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("resource configuration '{resource}' is invalid: {reason}")]
    Invalid { resource: String, reason: String },
}

impl ResourceConfig {
    /// The lowest node-id among the diskful members, this one included: the member that
    /// declares a new resource's first generation.
    pub fn first_diskful_node_id(&self) -> Option<u8> {
        let me = self
            .volumes
            .iter()
            .any(|v| v.backing.is_some())
            .then_some(self.node_id);
        self.peers
            .iter()
            .filter(|p| !p.diskless)
            .map(|p| p.node_id)
            .chain(me)
            .min()
    }

    /// Reads and checks `<dir>/<resource>.json`.
    pub fn read(path: &Path) -> Result<ResourceConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: ResourceConfig =
            serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        config.check()?;
        Ok(config)
    }

    /// Checks the configuration as a whole.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            resource: self.name.clone(),
            reason,
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        {
            return Err(invalid(format!("'{}' is not a resource name", self.name)));
        }
        if self.secret.is_empty() {
            return Err(invalid("the shared secret is empty".into()));
        }
        let mut ids = BTreeSet::from([self.node_id]);
        for peer in &self.peers {
            if !ids.insert(peer.node_id) {
                return Err(invalid(format!("node-id {} appears twice", peer.node_id)));
            }
        }
        if let Some(id) = ids.iter().find(|id| **id as usize >= MAX_NODES) {
            return Err(invalid(format!("node-id {id} is out of range 0-31")));
        }
        let mut numbers = BTreeSet::new();
        for volume in &self.volumes {
            if !numbers.insert(volume.number) {
                return Err(invalid(format!("volume {} appears twice", volume.number)));
            }
            if volume.usable_bytes == 0 || !volume.usable_bytes.is_multiple_of(4096) {
                return Err(invalid(format!(
                    "volume {} has a usable size of {} bytes, not a positive multiple of 4 KiB",
                    volume.number, volume.usable_bytes
                )));
            }
        }
        if self.volumes.is_empty() {
            return Err(invalid("it has no volume".into()));
        }
        Ok(())
    }

    /// Whether this member holds data.
    pub fn diskful(&self) -> bool {
        self.volumes.iter().any(|v| v.backing.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ResourceConfig {
        ResourceConfig {
            name: "web".into(),
            node_name: "node1".into(),
            node_id: 0,
            listen: "127.0.0.1:7000".parse().unwrap(),
            secret: "s3cret".into(),
            peers: vec![PeerConfig {
                node_name: "node2".into(),
                node_id: 1,
                address: "127.0.0.2:7000".parse().unwrap(),
                diskless: false,
            }],
            volumes: vec![VolumeConfig {
                number: 0,
                minor: Some(1000),
                usable_bytes: 1 << 20,
                backing: Some("/dev/loop3".into()),
                new_volume: true,
            }],
            options: Options::default(),
        }
    }

    #[test]
    fn a_valid_configuration_round_trips_and_bad_ones_say_why() {
        let good = config();
        good.check().unwrap();
        let json = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<ResourceConfig>(&json).unwrap(), good);

        let mut twice = config();
        twice.peers[0].node_id = 0;
        assert!(
            twice
                .check()
                .unwrap_err()
                .to_string()
                .contains("appears twice")
        );
        let mut odd = config();
        odd.volumes[0].usable_bytes = 1000;
        assert!(
            odd.check()
                .unwrap_err()
                .to_string()
                .contains("multiple of 4 KiB")
        );
        let mut far = config();
        far.peers[0].node_id = 40;
        assert!(
            far.check()
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(
            serde_json::from_str::<ResourceConfig>(r#"{"name":"x","surprise":1}"#).is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn drbd_options_map_to_mirror_options() {
        let set = |pairs: &[(&str, &str)]| {
            let map: std::collections::BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Options::from_drbd_options(&map)
        };
        let options = set(&[
            ("Resource/quorum", "off"),
            ("Net/ping-timeout", "20"),
            ("PeerDevice/c-max-rate", "512000"),
            ("Disk/al-extents", "6007"),
            ("Net/protocol", "C"),
            ("Net/sndbuf-size", "1M"),
        ])
        .unwrap();
        assert_eq!(options.quorum, "off");
        assert_eq!(options.on_no_quorum, "io-error");
        assert_eq!(options.ping_timeout(), Duration::from_secs(2));
        assert_eq!(options.c_max_rate_kib, 512_000);
        assert_eq!(options.al_extents, 6007);
        let error = set(&[("Resource/quorum", "most")]).unwrap_err();
        assert!(error.contains("Resource/quorum = 'most'"), "{error}");
        assert!(set(&[("Net/ping-timeout", "0")]).is_err());
        assert!(set(&[("Disk/al-extents", "12")]).is_err());
        // As `linstor ... drbd-options --c-max-rate 200M` sets it.
        for (value, expected) in [
            ("200M", 200 * 1024),
            ("4096k", 4096),
            ("1G", 1 << 20),
            ("300", 300),
        ] {
            assert_eq!(
                set(&[("PeerDevice/c-max-rate", value)])
                    .unwrap()
                    .c_max_rate_kib,
                expected,
                "{value}"
            );
        }
        for bad in ["5G", "200X", "M", "-1"] {
            assert!(set(&[("PeerDevice/c-max-rate", bad)]).is_err(), "{bad}");
        }
    }
}
