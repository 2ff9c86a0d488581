//! Start-up settings: command-line flags over `/etc/ferrite/controller.toml` over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

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
    /// Seconds registering a node waits for its satellite to come online [default: 5]
    #[arg(long, value_name = "SECONDS")]
    pub node_online_timeout: Option<u64>,
    /// Print the OpenAPI document of the REST API and exit
    #[arg(long)]
    pub print_openapi: bool,
}

/// The configuration file's keys; each mirrors a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub apply_timeout: Option<u64>,
    pub node_online_timeout: Option<u64>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub timeouts: Timeouts,
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
        })
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
}
