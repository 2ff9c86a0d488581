//! Which controllers to talk to, and in what order.
//!
//! The list comes from the first of these that is set, as `host[:port][,host[:port]...]`:
//!
//! 1. the `--controllers` option,
//! 2. the `FERRITE_CONTROLLERS` environment variable,
//! 3. the `LS_CONTROLLERS` environment variable (what the `linstor` client reads),
//! 4. the `controllers` key of the first client configuration file that has one
//!    (`$XDG_CONFIG_HOME/ferrite/client.toml` or `~/.config/ferrite/client.toml`, then
//!    `/etc/ferrite/client.toml`),
//! 5. `localhost:3370`.
//!
//! An address may carry LINSTOR's `linstor://` or an `http://` prefix; the port defaults to 3370.
//! TLS (`https://`, `linstor+ssl://`) is refused with an error rather than silently sent in the
//! clear.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The controller's REST port when an address has none.
pub const DEFAULT_PORT: u16 = 3370;

/// The controller tried when nothing else is configured.
pub const DEFAULT_CONTROLLER: &str = "localhost:3370";

/// Ferrite's environment variable for the controller list.
pub const ENV_FERRITE_CONTROLLERS: &str = "FERRITE_CONTROLLERS";

/// The `linstor` client's environment variable for the controller list.
pub const ENV_LS_CONTROLLERS: &str = "LS_CONTROLLERS";

/// One controller's REST endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerAddress {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

/// Why an address or a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the controller list '{0}' names no controller")]
    Empty(String),
    #[error("'{address}' uses {scheme}, but this client speaks plain HTTP only")]
    Tls { address: String, scheme: String },
    #[error(
        "'{0}' has an unknown scheme; write host[:port], linstor://host[:port] or http://host[:port]"
    )]
    UnknownScheme(String),
    #[error("'{0}' is not a host name or IP address")]
    BadHost(String),
    #[error("'{address}' has the invalid port '{port}'; a port is a number from 1 to 65535")]
    BadPort { address: String, port: String },
}

impl ControllerAddress {
    /// Parses `host`, `host:port`, `[v6]:port`, `v6` with an optional `linstor://` or
    /// `http://` prefix.
    pub fn parse(text: &str) -> Result<ControllerAddress, AddressError> {
        let trimmed = text.trim();
        let rest = match trimmed.split_once("://") {
            None => trimmed,
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "linstor" | "http" => rest,
                "https" | "linstor+ssl" => {
                    return Err(AddressError::Tls {
                        address: trimmed.to_string(),
                        scheme: scheme.to_string(),
                    });
                }
                _ => return Err(AddressError::UnknownScheme(trimmed.to_string())),
            },
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let bad_host = || AddressError::BadHost(trimmed.to_string());
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(bad_host)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(bad_host)?)),
            }
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address cannot carry a port without brackets.
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty()
            || host
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '@' | '[' | ']'))
        {
            return Err(bad_host());
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| AddressError::BadPort {
                    address: trimmed.to_string(),
                    port: port.to_string(),
                })?,
        };
        Ok(ControllerAddress {
            host: host.to_string(),
            port,
        })
    }

    /// `http://host:port`, with an IPv6 host in brackets.
    pub fn base_url(&self) -> String {
        format!("http://{self}")
    }
}

impl fmt::Display for ControllerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses a comma-separated controller list; blank entries are skipped.
pub fn parse_list(text: &str) -> Result<Vec<ControllerAddress>, AddressError> {
    let addresses = text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(ControllerAddress::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if addresses.is_empty() {
        return Err(AddressError::Empty(text.to_string()));
    }
    Ok(addresses)
}

/// Where the controller list came from, so errors can say what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment(&'static str),
    ConfigFile(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("--controllers"),
            Source::Environment(name) => write!(f, "environment variable {name}"),
            Source::ConfigFile(path) => write!(f, "config file {}", path.display()),
            Source::Default => f.write_str("the default"),
        }
    }
}

/// The controllers to try, in order, and where the list came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controllers {
    pub addresses: Vec<ControllerAddress>,
    pub source: Source,
}

/// Why the controller list could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{source_name}: {error}")]
    Address {
        source_name: Source,
        error: AddressError,
    },
    #[error("cannot read {}: {error}", path.display())]
    ReadConfig {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not a valid client configuration: {error}", path.display())]
    ParseConfig { path: PathBuf, error: String },
}

/// The client configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    controllers: Option<ControllerList>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ControllerList {
    One(String),
    Many(Vec<String>),
}

impl ControllerList {
    fn joined(&self) -> String {
        match self {
            ControllerList::One(text) => text.clone(),
            ControllerList::Many(list) => list.join(","),
        }
    }
}

/// The configuration files consulted, most specific first.
pub fn default_config_files(env: impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("XDG_CONFIG_HOME") {
        files.push(Path::new(&dir).join("ferrite/client.toml"));
    } else if let Some(home) = set("HOME") {
        files.push(Path::new(&home).join(".config/ferrite/client.toml"));
    }
    files.push(PathBuf::from("/etc/ferrite/client.toml"));
    files
}

/// Decides which controllers to try; see the module documentation for the order.
pub fn resolve(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    config_files: &[PathBuf],
) -> Result<Controllers, ResolveError> {
    let from = |text: &str, source: Source| match parse_list(text) {
        Ok(addresses) => Ok(Controllers { addresses, source }),
        Err(error) => Err(ResolveError::Address {
            source_name: source,
            error,
        }),
    };
    if let Some(text) = flag {
        return from(text, Source::Flag);
    }
    for name in [ENV_FERRITE_CONTROLLERS, ENV_LS_CONTROLLERS] {
        if let Some(text) = env(name).filter(|v| !v.trim().is_empty()) {
            return from(&text, Source::Environment(name));
        }
    }
    for path in config_files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(ResolveError::ReadConfig {
                    path: path.clone(),
                    error,
                });
            }
        };
        let config: ClientConfig =
            toml::from_str(&text).map_err(|error| ResolveError::ParseConfig {
                path: path.clone(),
                error: error.message().to_string(),
            })?;
        if let Some(list) = config.controllers {
            return from(&list.joined(), Source::ConfigFile(path.clone()));
        }
    }
    from(DEFAULT_CONTROLLER, Source::Default)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn address(host: &str, port: u16) -> ControllerAddress {
        ControllerAddress {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn addresses_as_linstor_accepts_them() {
        assert_eq!(
            ControllerAddress::parse("alpha").unwrap(),
            address("alpha", 3370)
        );
        assert_eq!(
            ControllerAddress::parse("10.0.0.1:3371").unwrap(),
            address("10.0.0.1", 3371)
        );
        assert_eq!(
            ControllerAddress::parse("linstor://alpha").unwrap(),
            address("alpha", 3370)
        );
        assert_eq!(
            ControllerAddress::parse("http://alpha:8080/").unwrap(),
            address("alpha", 8080)
        );
        assert_eq!(
            ControllerAddress::parse("[fd00::1]:3370").unwrap(),
            address("fd00::1", 3370)
        );
        assert_eq!(
            ControllerAddress::parse("fd00::1").unwrap(),
            address("fd00::1", 3370)
        );
        assert_eq!(address("fd00::1", 3370).base_url(), "http://[fd00::1]:3370");
        assert_eq!(address("alpha", 3370).base_url(), "http://alpha:3370");
    }

    #[test]
    fn bad_addresses_are_refused() {
        assert!(matches!(
            ControllerAddress::parse("https://alpha"),
            Err(AddressError::Tls { .. })
        ));
        assert!(matches!(
            ControllerAddress::parse("linstor+ssl://alpha"),
            Err(AddressError::Tls { .. })
        ));
        assert!(matches!(
            ControllerAddress::parse("ftp://alpha"),
            Err(AddressError::UnknownScheme(_))
        ));
        assert!(matches!(
            ControllerAddress::parse("alpha:0"),
            Err(AddressError::BadPort { .. })
        ));
        assert!(matches!(
            ControllerAddress::parse("alpha:99999"),
            Err(AddressError::BadPort { .. })
        ));
        assert!(matches!(
            ControllerAddress::parse("alpha:x"),
            Err(AddressError::BadPort { .. })
        ));
        assert!(matches!(
            ControllerAddress::parse(":3370"),
            Err(AddressError::BadHost(_))
        ));
        assert!(matches!(
            ControllerAddress::parse("http://a/b"),
            Err(AddressError::BadHost(_))
        ));
        assert!(matches!(parse_list(" , "), Err(AddressError::Empty(_))));
    }

    #[test]
    fn lists_keep_their_order() {
        assert_eq!(
            parse_list("a, b:1 ,,c").unwrap(),
            vec![address("a", 3370), address("b", 1), address("c", 3370)]
        );
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn resolution_order() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user.toml");
        let system = dir.path().join("system.toml");
        std::fs::write(&user, "controllers = [\"u1:1\", \"u2\"]\n").unwrap();
        std::fs::write(&system, "controllers = \"s1\"\n").unwrap();
        let files = vec![user.clone(), system.clone()];
        let all = env(&[("FERRITE_CONTROLLERS", "f1"), ("LS_CONTROLLERS", "l1")]);

        let flag = resolve(Some("x1,x2"), &all, &files).unwrap();
        assert_eq!(flag.source, Source::Flag);
        assert_eq!(
            flag.addresses,
            vec![address("x1", 3370), address("x2", 3370)]
        );

        let ferrite = resolve(None, &all, &files).unwrap();
        assert_eq!(ferrite.source, Source::Environment("FERRITE_CONTROLLERS"));
        assert_eq!(ferrite.addresses, vec![address("f1", 3370)]);

        let ls = resolve(None, env(&[("LS_CONTROLLERS", "l1:9")]), &files).unwrap();
        assert_eq!(ls.source, Source::Environment("LS_CONTROLLERS"));
        assert_eq!(ls.addresses, vec![address("l1", 9)]);

        let blank_env = env(&[("FERRITE_CONTROLLERS", " "), ("LS_CONTROLLERS", "")]);
        let config = resolve(None, &blank_env, &files).unwrap();
        assert_eq!(config.source, Source::ConfigFile(user.clone()));
        assert_eq!(
            config.addresses,
            vec![address("u1", 1), address("u2", 3370)]
        );

        let missing = dir.path().join("missing.toml");
        let system_only = resolve(None, env(&[]), &[missing.clone(), system.clone()]).unwrap();
        assert_eq!(system_only.source, Source::ConfigFile(system));
        assert_eq!(system_only.addresses, vec![address("s1", 3370)]);

        let default = resolve(None, env(&[]), &[missing]).unwrap();
        assert_eq!(default.source, Source::Default);
        assert_eq!(default.addresses, vec![address("localhost", 3370)]);
    }

    #[test]
    fn a_config_file_without_controllers_is_skipped_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "# nothing here\n").unwrap();
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "controllers = [1, 2\n").unwrap();
        let unknown = dir.path().join("unknown.toml");
        std::fs::write(&unknown, "controller = \"typo\"\n").unwrap();

        let resolved = resolve(None, env(&[]), std::slice::from_ref(&empty)).unwrap();
        assert_eq!(resolved.source, Source::Default);
        assert!(matches!(
            resolve(None, env(&[]), &[broken]),
            Err(ResolveError::ParseConfig { .. })
        ));
        assert!(matches!(
            resolve(None, env(&[]), &[unknown]),
            Err(ResolveError::ParseConfig { .. })
        ));
        assert!(matches!(
            resolve(Some("https://a"), env(&[]), &[]),
            Err(ResolveError::Address {
                source_name: Source::Flag,
                ..
            })
        ));
    }

    #[test]
    fn config_file_locations() {
        assert_eq!(
            default_config_files(env(&[("HOME", "/home/u")])),
            vec![
                PathBuf::from("/home/u/.config/ferrite/client.toml"),
                PathBuf::from("/etc/ferrite/client.toml")
            ]
        );
        assert_eq!(
            default_config_files(env(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/x")]))[0],
            PathBuf::from("/x/ferrite/client.toml")
        );
    }
}
