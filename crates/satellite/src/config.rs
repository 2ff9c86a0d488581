//! The satellite's settings: command-line flags, an optional TOML file with the same keys, and
//! defaults. Flags win over the file, the file over the defaults.
//!
//! Every path the satellite writes and the listen address are settings, so several satellites
//! can run side by side on one machine (e.g. on 127.0.0.11:3366 … 127.0.0.14:3366, each with
//! its own state directory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use ferrite_types::NodeName;
use serde::Deserialize;

use crate::reconciler::RECONCILE_INTERVAL;
use crate::server::{HANDSHAKE_TIMEOUT, SESSION_IDLE_TIMEOUT};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:3366";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ferrite/satellite";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/ferrite/satellite.toml";
pub use crate::replication::drbd::DEFAULT_RESOURCE_DIR as DEFAULT_DRBD_RESOURCE_DIR;

/// Ferrite's node agent: applies this node's desired state from the controller to local storage
/// and reports what it has.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "ferrite-satellite", version)]
pub struct Args {
    /// Address and port to accept the controller on [default: 0.0.0.0:3366]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Directory for the persisted desired state, identity and volume ledger
    /// [default: /var/lib/ferrite/satellite]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// This node's name; a controller calling it differently is refused. Without it, the first
    /// controller's name for the node is adopted and kept.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Settings file (TOML, keys as the flags with '_' for '-'); optional at the default path
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use LVM without device-mapper: create, grow and remove logical volumes in the metadata
    /// only, never activating them (LVM_THIN is then unsupported)
    #[arg(long)]
    pub lvm_metadata_only: bool,
    /// Path of the ferrite-mirrord executable [default: next to this binary, then PATH]
    #[arg(long, value_name = "FILE")]
    pub mirrord: Option<PathBuf>,
    /// Where the block devices of replicated volumes appear, as `<DIR>/<resource>/<volume>`
    /// [default: /dev/ferrite]
    #[arg(long, value_name = "DIR")]
    pub device_root: Option<PathBuf>,
    /// Also serve every MIRROR volume's NBD export over TCP on this loopback address (port 0:
    /// a free port), for clients that cannot use the unix socket; NBD has no authentication,
    /// so only loopback addresses are accepted
    #[arg(long, value_name = "ADDR:PORT")]
    pub mirror_nbd_tcp: Option<SocketAddr>,
    /// Seconds between convergence passes that retry failures and refresh capacity
    /// [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub reconcile_interval: Option<u64>,
    /// Where the DRBD layer's resource files are written, one `<resource>.res` each
    /// [default: /var/lib/ferrite.d]
    #[arg(long, value_name = "DIR")]
    pub drbd_resource_dir: Option<PathBuf>,
    /// Run the DRBD layer as a dry run: write its resource files and log every drbdadm command
    /// instead of running it (for hosts without DRBD); the layer is reported as a dry run
    #[arg(long)]
    pub drbd_dry_run: bool,
}

/// The settings file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub node_name: Option<String>,
    pub lvm_metadata_only: Option<bool>,
    pub mirrord: Option<PathBuf>,
    pub device_root: Option<PathBuf>,
    pub mirror_nbd_tcp: Option<SocketAddr>,
    pub reconcile_interval: Option<u64>,
    pub drbd_resource_dir: Option<PathBuf>,
    pub drbd_dry_run: Option<bool>,
}

/// Why the settings are not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the settings file '{}': {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the settings file '{}' is not valid: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid node name: {0}; {correction}", correction = .0.correction())]
    NodeName(#[from] ferrite_types::NameError),
    #[error("the reconcile interval must be at least 1 second")]
    Interval,
    #[error(
        "--mirror-nbd-tcp {0}: not a loopback address; NBD has no authentication, so exports are served over TCP on 127.0.0.1 or ::1 only (use the unix sockets, or a tunnel, from elsewhere)"
    )]
    NbdTcpNotLoopback(SocketAddr),
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SatelliteConfig {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub node_name: Option<NodeName>,
    pub lvm_metadata_only: bool,
    pub mirrord: Option<PathBuf>,
    /// Where `ferrite-mirrord` puts block devices; its own default when unset.
    pub device_root: Option<PathBuf>,
    /// Where `ferrite-mirrord` also serves its NBD exports over TCP (a loopback address).
    pub mirror_nbd_tcp: Option<SocketAddr>,
    pub reconcile_interval: Duration,
    /// Where the DRBD layer's resource files are written.
    pub drbd_resource_dir: PathBuf,
    /// The DRBD layer writes its files and logs its commands but runs nothing.
    pub drbd_dry_run: bool,
    /// Not settable from outside; shortened by tests that cross them.
    pub handshake_timeout: Duration,
    pub session_idle_timeout: Duration,
}

impl SatelliteConfig {
    /// Defaults for everything, listening on `listen` with `state_dir`.
    pub fn new(listen: SocketAddr, state_dir: PathBuf) -> Self {
        SatelliteConfig {
            listen,
            state_dir,
            node_name: None,
            lvm_metadata_only: false,
            mirrord: None,
            device_root: None,
            mirror_nbd_tcp: None,
            reconcile_interval: RECONCILE_INTERVAL,
            drbd_resource_dir: PathBuf::from(DEFAULT_DRBD_RESOURCE_DIR),
            drbd_dry_run: false,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            session_idle_timeout: SESSION_IDLE_TIMEOUT,
        }
    }

    /// Reads the settings file (if any) and merges it under the flags.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_settings(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                read_settings(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => FileSettings::default(),
        };
        Self::merge(args, file)
    }

    /// Flags over file over defaults.
    pub fn merge(args: Args, file: FileSettings) -> Result<Self, ConfigError> {
        let default_listen: SocketAddr = DEFAULT_LISTEN.parse().expect("valid default address");
        let node_name = args
            .node_name
            .or(file.node_name)
            .map(NodeName::new)
            .transpose()?;
        let interval = args
            .reconcile_interval
            .or(file.reconcile_interval)
            .map(Duration::from_secs)
            .unwrap_or(RECONCILE_INTERVAL);
        if interval < Duration::from_secs(1) {
            return Err(ConfigError::Interval);
        }
        let mirror_nbd_tcp = args.mirror_nbd_tcp.or(file.mirror_nbd_tcp);
        if let Some(address) = mirror_nbd_tcp.filter(|a| !a.ip().is_loopback()) {
            return Err(ConfigError::NbdTcpNotLoopback(address));
        }
        Ok(SatelliteConfig {
            listen: args.listen.or(file.listen).unwrap_or(default_listen),
            state_dir: args
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            node_name,
            lvm_metadata_only: args.lvm_metadata_only || file.lvm_metadata_only.unwrap_or(false),
            mirrord: args.mirrord.or(file.mirrord),
            device_root: args.device_root.or(file.device_root),
            mirror_nbd_tcp,
            reconcile_interval: interval,
            drbd_resource_dir: args
                .drbd_resource_dir
                .or(file.drbd_resource_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DRBD_RESOURCE_DIR)),
            drbd_dry_run: args.drbd_dry_run || file.drbd_dry_run.unwrap_or(false),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            session_idle_timeout: SESSION_IDLE_TIMEOUT,
        })
    }
}

fn read_settings(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = SatelliteConfig::merge(Args::default(), FileSettings::default()).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:3366");
        assert_eq!(
            config.state_dir,
            PathBuf::from("/var/lib/ferrite/satellite")
        );
        assert_eq!(config.node_name, None);
        assert!(!config.lvm_metadata_only);
        assert_eq!(config.reconcile_interval, Duration::from_secs(30));
        assert_eq!(
            config.drbd_resource_dir,
            PathBuf::from("/var/lib/ferrite.d")
        );
        assert!(!config.drbd_dry_run);
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satellite.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.11:3366\"\nstate_dir = \"/srv/s1\"\nnode_name = \"node1\"\nlvm_metadata_only = true\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "ferrite-satellite",
            "--config",
            path.to_str().unwrap(),
            "--state-dir",
            "/srv/flag",
        ]);
        let config = SatelliteConfig::from_args(args).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.11:3366");
        assert_eq!(config.state_dir, PathBuf::from("/srv/flag"));
        assert_eq!(config.node_name.unwrap().as_str(), "node1");
        assert!(config.lvm_metadata_only);
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satellite.toml");
        std::fs::write(&path, "listen_addr = \"x\"\n").unwrap();
        let args = Args {
            config: Some(path),
            ..Args::default()
        };
        let err = SatelliteConfig::from_args(args).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listen_addr`"),
            "{err}"
        );

        let args = Args {
            config: Some(dir.path().join("missing.toml")),
            ..Args::default()
        };
        let err = SatelliteConfig::from_args(args).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read the settings file"),
            "{err}"
        );

        let args = Args {
            node_name: Some("bad name".into()),
            ..Args::default()
        };
        let err = SatelliteConfig::merge(args, FileSettings::default()).unwrap_err();
        assert!(
            err.to_string().contains("Invalid node name 'bad name'"),
            "{err}"
        );

        // NBD has no authentication: TCP on loopback only.
        let args = Args::parse_from(["ferrite-satellite", "--mirror-nbd-tcp", "0.0.0.0:10809"]);
        let err = SatelliteConfig::from_args(args).unwrap_err();
        assert!(err.to_string().contains("not a loopback address"), "{err}");
        let args = Args::parse_from(["ferrite-satellite", "--mirror-nbd-tcp", "127.0.0.1:0"]);
        let config = SatelliteConfig::merge(args, FileSettings::default()).unwrap();
        assert_eq!(config.mirror_nbd_tcp, Some("127.0.0.1:0".parse().unwrap()));
    }
}
