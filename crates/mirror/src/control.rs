//! The control socket of `ferrite-mirrord`: what `drbdsetup` is to DRBD. One JSON object per
//! line each way over a unix socket; a request gets exactly one reply, except `events`, which
//! streams one status line per change until the client hangs up, and `suspend-io`, whose hold
//! lasts as long as the connection that asked for it.
//!
//! The configuration itself is not sent over the socket: the satellite writes
//! `<state-dir>/resources/<resource>.json` and asks the daemon to apply it (`up`, `adjust`), as
//! `drbdadm` reads `/etc/drbd.d`. A daemon that restarts brings up every resource that has a
//! file, so the files are the desired state and the socket only says "now".

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::status::ResourceStatus;

/// The version of this protocol; a client and a daemon of different versions refuse each other
/// with a clear message.
pub const CONTROL_VERSION: u32 = 1;

/// How long a client waits for a reply (bringing up a resource attaches its disks, which may
/// create metadata).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest request line the daemon reads.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Where a daemon keeps things, all below its state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub state_dir: PathBuf,
}

impl Paths {
    pub fn new(state_dir: impl Into<PathBuf>) -> Paths {
        Paths {
            state_dir: state_dir.into(),
        }
    }

    /// The directory of resource configuration files.
    pub fn resources(&self) -> PathBuf {
        self.state_dir.join("resources")
    }

    /// A resource's configuration file.
    pub fn resource_file(&self, resource: &str) -> PathBuf {
        self.resources().join(format!("{resource}.json"))
    }

    /// What a resource's member recorded of the members a Primary wrote without
    /// ([`crate::outdated`]): kept across restarts, removed with the resource.
    pub fn outdated_file(&self, resource: &str) -> PathBuf {
        self.state_dir
            .join("outdated")
            .join(format!("{resource}.json"))
    }

    /// Sockets and other things that live only while the daemon runs.
    pub fn run(&self) -> PathBuf {
        self.state_dir.join("run")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.run().join("mirrord.sock")
    }

    /// The lock file that keeps a second daemon off the same state directory.
    pub fn lock_file(&self) -> PathBuf {
        self.state_dir.join("mirrord.lock")
    }

    /// The NBD socket of a volume.
    pub fn nbd_socket(&self, resource: &str, volume: u16) -> PathBuf {
        self.run().join(resource).join(format!("{volume}.nbd"))
    }

    /// Where the block devices' FUSE file system is mounted (a file per volume, each behind a
    /// loop device). Not below `run/`, which holds a directory per resource.
    pub fn block_device_mount(&self) -> PathBuf {
        self.state_dir.join("blockdev")
    }
}

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Who is there (and whether we speak the same version).
    Hello { version: u32 },
    /// Brings a resource up from its file, or adjusts it if it is up.
    Up { resource: String },
    /// Takes a resource down; refused while a volume is in use unless `force`.
    Down {
        resource: String,
        #[serde(default)]
        force: bool,
    },
    /// The status of one resource, or of all.
    Status {
        #[serde(default)]
        resource: Option<String>,
    },
    /// Every resource's status now, then one line per change.
    Events,
    /// Ends a split brain: this member's data of the resource is discarded and resynced from
    /// its peers (`drbdadm connect --discard-my-data`).
    DiscardMyData { resource: String },
    /// Holds the resource's application writes on this member for a snapshot's cut
    /// (`drbdsetup suspend-io`; see [`crate::suspend`]) and flushes what was written. The hold
    /// lasts while this connection is open, until `resume-io`, or at most the lease. Sent again
    /// on the same connection, it flushes again and answers the same epoch while the hold
    /// stands, and fails once it ended.
    SuspendIo { resource: String },
    /// Ends this connection's hold (`drbdsetup resume-io`).
    ResumeIo { resource: String },
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Reply {
    Hello {
        version: u32,
        pid: u32,
    },
    Done {
        message: String,
    },
    Status {
        resources: Vec<ResourceEntry>,
    },
    /// One resource changed (in an `events` stream).
    Event {
        resource: ResourceEntry,
    },
    /// A resource went away (in an `events` stream).
    Gone {
        resource: String,
    },
    /// The resource's writes are held on this member (an answer to `suspend-io`).
    Suspended {
        resource: String,
        epoch: u64,
    },
    Error {
        message: String,
    },
}

/// A resource the daemon knows: running (with its status and frontends) or failed to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceEntry {
    pub name: String,
    /// Set when it runs.
    pub status: Option<ResourceStatus>,
    /// Why it does not run, when it does not.
    pub failure: Option<String>,
    /// How to reach each volume.
    pub frontends: Vec<Frontend>,
}

/// Where a volume can be used on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontend {
    pub volume: u16,
    /// The NBD URI of the volume's unix socket export.
    pub nbd_uri: String,
    /// Its NBD URI on the daemon's TCP listener, if it has one.
    pub nbd_tcp_uri: Option<String>,
    /// Its block device, `<device-root>/<resource>/<volnr>` (a symlink to the loop device), if
    /// it has one.
    pub device_path: Option<String>,
    /// DRBD's name for the same device, `/dev/drbd/by-res/<resource>/<volnr>` (under the
    /// device root when it is not the default), made where no DRBD module is loaded.
    #[serde(default)]
    pub drbd_device_path: Option<String>,
    /// The device both paths point to: `/dev/nbdN` where the kernel's nbd driver serves it,
    /// else the loop device, `/dev/loopN` (the field keeps its first name).
    #[serde(default)]
    pub loop_device: Option<String>,
    /// Why it has no block device, if it has none: what is missing and how to fix it.
    pub device_unavailable: Option<String>,
}

/// Why talking to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("ferrite-mirrord is not running (cannot connect to {path}: {source})")]
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to ferrite-mirrord failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("ferrite-mirrord answered something unreadable: {0}")]
    Garbled(String),
    #[error("ferrite-mirrord did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Refused(String),
}

/// A connection to a daemon's control socket.
pub struct Client {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    /// Connects and checks the daemon speaks this version.
    pub async fn connect(socket: &Path) -> Result<Client, ControlError> {
        let stream =
            UnixStream::connect(socket)
                .await
                .map_err(|source| ControlError::NotRunning {
                    path: socket.to_path_buf(),
                    source,
                })?;
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer,
        };
        match client
            .call(&Request::Hello {
                version: CONTROL_VERSION,
            })
            .await?
        {
            Reply::Hello { .. } => Ok(client),
            other => Err(ControlError::Garbled(format!(
                "expected a hello, got {other:?}"
            ))),
        }
    }

    /// Sends a request and reads its reply; an error reply becomes [`ControlError::Refused`].
    pub async fn call(&mut self, request: &Request) -> Result<Reply, ControlError> {
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        match self.next().await? {
            Some(Reply::Error { message }) => Err(ControlError::Refused(message)),
            Some(reply) => Ok(reply),
            None => Err(ControlError::Garbled(
                "the daemon closed the connection".to_string(),
            )),
        }
    }

    /// Sends a request without waiting (for `events`).
    pub async fn send(&mut self, request: &Request) -> Result<(), ControlError> {
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        Ok(())
    }

    /// The next reply line; `None` when the daemon hung up.
    pub async fn next(&mut self) -> Result<Option<Reply>, ControlError> {
        let mut line = String::new();
        let read = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| ControlError::Timeout(REPLY_TIMEOUT))??;
        if read == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| ControlError::Garbled(format!("{e}: {}", line.trim())))
    }

    /// The next line of an `events` stream, however long it takes.
    pub async fn next_event(&mut self) -> Result<Option<Reply>, ControlError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| ControlError::Garbled(format!("{e}: {}", line.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let up: Request = serde_json::from_str(r#"{"command":"up","resource":"r0"}"#).unwrap();
        assert_eq!(
            up,
            Request::Up {
                resource: "r0".into()
            }
        );
        let down: Request = serde_json::from_str(r#"{"command":"down","resource":"r0"}"#).unwrap();
        assert_eq!(
            down,
            Request::Down {
                resource: "r0".into(),
                force: false
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"command":"format-disk"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"command":"up","resource":"r0","x":1}"#).is_err()
        );
    }

    #[test]
    fn paths_derive_from_the_state_dir() {
        let paths = Paths::new("/var/lib/ferrite/satellite/mirror");
        assert_eq!(
            paths.resource_file("r0"),
            PathBuf::from("/var/lib/ferrite/satellite/mirror/resources/r0.json")
        );
        assert_eq!(
            paths.nbd_socket("r0", 1),
            PathBuf::from("/var/lib/ferrite/satellite/mirror/run/r0/1.nbd")
        );
        assert_eq!(
            paths.block_device_mount(),
            PathBuf::from("/var/lib/ferrite/satellite/mirror/blockdev")
        );
    }
}
