//! Start-up settings: command-line flags over `/etc/ferrite/controller.toml` over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::http::server::ServerLimits;
use crate::satellites::Timeouts;

/// The default configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/ferrite/controller.toml";
/// LINSTOR's REST port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:3370";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/ferrite/controller";

/// ferrite-controller: the Ferrite cluster controller (LINSTOR-compatible REST API).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Address and port of the REST API [default: 0.0.0.0:3370]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Directory of the controller's database [default: /var/lib/ferrite/controller]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file; a missing default file is not an error
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Seconds a mutating call waits for satellites before answering with a warning [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub apply_timeout: Option<u64>,
    /// Open REST connections at most; at the cap a new connection evicts the one that has
    /// waited longest on its client [default: 1024, at most half the descriptor limit]
    #[arg(long, value_name = "COUNT")]
    pub max_connections: Option<usize>,
    /// Seconds a REST client has to send a request head [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub request_header_timeout: Option<u64>,
    /// Seconds a REST client has to send a request body [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub request_body_timeout: Option<u64>,
    /// Seconds an idle REST connection stays open between requests [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub keep_alive_timeout: Option<u64>,
    /// Seconds a response may wait for a REST client that reads none of it [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub response_send_timeout: Option<u64>,
    /// Seconds registering a node waits for its satellite to come online [default: 5]
    #[arg(long, value_name = "SECONDS")]
    pub node_online_timeout: Option<u64>,
    /// Print the OpenAPI document of the REST API and exit
    #[arg(long)]
    pub print_openapi: bool,
    /// Replace the store in the data directory with FILE, a backup made by
    /// 'ferrite controller backup', then exit. The controller must be stopped; the replaced
    /// store is kept beside it. See docs/operations.md.
    #[arg(long, value_name = "FILE")]
    pub restore: Option<PathBuf>,
}

/// The configuration file's keys; each mirrors a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub apply_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub request_header_timeout: Option<u64>,
    pub request_body_timeout: Option<u64>,
    pub keep_alive_timeout: Option<u64>,
    pub response_send_timeout: Option<u64>,
    pub node_online_timeout: Option<u64>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub timeouts: Timeouts,
    pub rest_limits: ServerLimits,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{setting} must be at least 1")]
    Zero { setting: &'static str },
}

fn read_file(path: &Path, required: bool) -> Result<FileConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Config {
    /// Combines flags, the configuration file and defaults.
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path, true)?,
            None => read_file(Path::new(DEFAULT_CONFIG_FILE), false)?,
        };
        let mut timeouts = Timeouts::default();
        if let Some(seconds) = args.apply_timeout.or(file.apply_timeout) {
            timeouts.apply = Duration::from_secs(seconds);
        }
        let mut rest_limits = ServerLimits::default();
        if let Some(count) = args.max_connections.or(file.max_connections) {
            rest_limits.max_connections = at_least_one("max_connections", count)?;
        }
        for (setting, flag, key, limit) in [
            (
                "request_header_timeout",
                args.request_header_timeout,
                file.request_header_timeout,
                &mut rest_limits.header_timeout,
            ),
            (
                "request_body_timeout",
                args.request_body_timeout,
                file.request_body_timeout,
                &mut rest_limits.body_timeout,
            ),
            (
                "keep_alive_timeout",
                args.keep_alive_timeout,
                file.keep_alive_timeout,
                &mut rest_limits.keep_alive_timeout,
            ),
            (
                "response_send_timeout",
                args.response_send_timeout,
                file.response_send_timeout,
                &mut rest_limits.send_timeout,
            ),
        ] {
            if let Some(seconds) = flag.or(key) {
                *limit = Duration::from_secs(at_least_one(setting, seconds)?);
            }
        }
        if let Some(seconds) = args.node_online_timeout.or(file.node_online_timeout) {
            timeouts.node_online = Duration::from_secs(seconds);
        }
        Ok(Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("constant")),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            timeouts,
            rest_limits,
        })
    }
}

/// A count or a number of seconds where 0 would refuse every client.
fn at_least_one<T: PartialEq + From<u8>>(
    setting: &'static str,
    value: T,
) -> Result<T, ConfigError> {
    if value == T::from(0) {
        Err(ConfigError::Zero { setting })
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("controller.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:4000\"\ndata_dir = \"/srv/ferrite\"\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "ferrite-controller",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            "/tmp/x",
        ]);
        let config = Config::from_args(&args).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn unknown_keys_and_missing_explicit_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("controller.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:4000\"\n").unwrap();
        let args = Args::parse_from(["ferrite-controller", "--config", file.to_str().unwrap()]);
        assert!(matches!(
            Config::from_args(&args),
            Err(ConfigError::Parse { .. })
        ));
        let args = Args::parse_from([
            "ferrite-controller",
            "--config",
            "/nonexistent/ferrite.toml",
        ]);
        assert!(matches!(
            Config::from_args(&args),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn rest_limits_come_from_flags_and_the_file_and_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("controller.toml");
        std::fs::write(
            &file,
            "max_connections = 200\nrequest_header_timeout = 5\nkeep_alive_timeout = 90\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let args = Args::parse_from([
            "ferrite-controller",
            "--config",
            path,
            "--max-connections",
            "300",
            "--response-send-timeout",
            "7",
        ]);
        let limits = Config::from_args(&args).unwrap().rest_limits;
        assert_eq!(limits.max_connections, 300);
        assert_eq!(limits.header_timeout, Duration::from_secs(5));
        assert_eq!(limits.body_timeout, ServerLimits::default().body_timeout);
        assert_eq!(limits.keep_alive_timeout, Duration::from_secs(90));
        assert_eq!(limits.send_timeout, Duration::from_secs(7));
        let args = Args::parse_from([
            "ferrite-controller",
            "--config",
            path,
            "--request-body-timeout",
            "0",
        ]);
        assert!(matches!(
            Config::from_args(&args),
            Err(ConfigError::Zero {
                setting: "request_body_timeout"
            })
        ));
    }
}
