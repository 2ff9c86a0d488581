//! `ferrite-mirrord`'s daemon: the set of MIRROR resources of this node, their frontends and
//! the control socket.
//!
//! The [`Daemon`] owns the table of resources (one entry each: running, with its frontends, or
//! failed, with the reason). Control requests that change it (`up`, `down`,
//! `discard-my-data`) run one at a time under the table's lock; status reads take it briefly.
//! Each running resource owns its state machine ([`crate::resource`]); the daemon never reaches
//! into it except through its handle.
//!
//! Frontends of every volume of a running resource: an NBD export on its own unix socket (and
//! on the shared TCP listener, if configured), and a block device where the host can have one
//! ([`crate::block_devices`]: a FUSE file behind a loop device). A volume is in use when an NBD
//! client is connected or its block device is mounted or open exclusively; `down` (and a
//! restart for a changed configuration) refuses then, unless forced.
//!
//! Start-up: lock the state directory (one daemon per directory), bind the control socket,
//! probe for block devices and mount their FUSE file system, bring up every resource that has
//! a configuration file, then serve. A resource whose configuration cannot be applied is
//! recorded as failed with the reason and retried on the next `up`. Shut-down (SIGTERM,
//! SIGINT): every resource's block devices removed (loop device detached, which flushes it
//! through the engine), its NBD exports closed, then the resource down cleanly (bitmaps
//! written, Primary demoted); the FUSE file system is unmounted last. A `kill -9` leaves the
//! metadata to crash recovery and the FUSE mount to the next start, which clears it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use ferrite_nbd::{ExportConfig, ExportName, Server, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use crate::block_devices::{
    BlockDeviceFrontend, BlockDeviceSetting, DEVICE_USAGE_POLL, VolumeDevice,
};
use crate::config::ResourceConfig;
use crate::control::{
    CONTROL_VERSION, Frontend, MAX_LINE_BYTES, Paths, Reply, Request, ResourceEntry,
};
use crate::outdated::OutdatedFile;
use crate::resource::{AdjustError, Resource};
use crate::suspend::Suspension;
use crate::volume::VolumeEngine;

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub paths: Paths,
    /// Whether volumes get block devices, and where they appear
    /// (`<device-root>/<resource>/<volnr>`).
    pub block_devices: BlockDeviceSetting,
    /// An optional TCP listener serving every volume as export `<resource>/<volnr>`; a loopback
    /// address only (NBD has no authentication), anything else is refused.
    pub nbd_tcp: Option<SocketAddr>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another ferrite-mirrord serves {state_dir} (lock {lock} is held); stop it first or use \
         another --state-dir"
    )]
    AlreadyRunning { state_dir: PathBuf, lock: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing to serve NBD on {address}: NBD has no authentication, so every volume would be          readable and writable by anyone who reaches that address; use a loopback address such          as 127.0.0.1:{port} (and a tunnel or the unix sockets for anything else)",
        port = address.port()
    )]
    NbdTcpNotLocal { address: SocketAddr },
}

/// A running resource and its frontends.
struct Running {
    resource: Arc<Resource>,
    exports: Vec<NbdExport>,
    /// Each volume's block device, or why it has none.
    devices: BTreeMap<u16, VolumeDevice>,
    /// Forwards the resource's status changes to `events` subscribers.
    watcher: JoinHandle<()>,
}

/// The NBD export of one volume on its own unix socket.
struct NbdExport {
    volume: u16,
    server: Server<VolumeEngine>,
    socket: PathBuf,
    task: JoinHandle<()>,
    /// Its name on the shared TCP server, if there is one.
    tcp_name: Option<ExportName>,
}

enum Entry {
    Running(Running),
    Failed(String),
}

/// The daemon.
pub struct Daemon {
    config: DaemonConfig,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Names of resources whose status changed, for `events` streams.
    changes: broadcast::Sender<String>,
    /// The shared localhost TCP server, when configured.
    tcp: Option<(Server<VolumeEngine>, SocketAddr)>,
    block_devices: BlockDeviceFrontend,
    /// Checks the block devices for use every [`DEVICE_USAGE_POLL`].
    usage_poll: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The epoch of the latest hold of a resource's writes (see [`crate::suspend`]).
    suspend_epochs: std::sync::atomic::AtomicU64,
    /// Held for the daemon's life.
    _lock: std::fs::File,
}

impl Daemon {
    /// Locks the state directory, binds the control socket and brings up every configured
    /// resource. The returned listener is served by [`Daemon::serve`].
    pub async fn start(config: DaemonConfig) -> Result<(Arc<Daemon>, UnixListener), StartError> {
        if let Some(address) = config.nbd_tcp
            && !address.ip().is_loopback()
        {
            return Err(StartError::NbdTcpNotLocal { address });
        }
        let paths = &config.paths;
        for dir in [paths.state_dir.clone(), paths.resources(), paths.run()] {
            std::fs::create_dir_all(&dir)
                .map_err(|source| StartError::CreateDir { path: dir, source })?;
        }
        let lock = lock_state_dir(paths)?;
        let socket = paths.control_socket();
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(|source| StartError::Listen {
            path: socket.clone(),
            source,
        })?;
        let tcp = match config.nbd_tcp {
            Some(address) => {
                let listener =
                    TcpListener::bind(address)
                        .await
                        .map_err(|source| StartError::Listen {
                            path: PathBuf::from(address.to_string()),
                            source,
                        })?;
                let bound = listener.local_addr().unwrap_or(address);
                let server = Server::new(ServerConfig::default());
                let serving = server.clone();
                tokio::spawn(async move { serving.serve_tcp(listener).await });
                info!(address = %bound, "NBD exports also on TCP");
                Some((server, bound))
            }
            None => None,
        };
        let block_devices =
            BlockDeviceFrontend::start(&config.block_devices, paths.block_device_mount()).await;
        let daemon = Arc::new(Daemon {
            config,
            entries: Mutex::new(BTreeMap::new()),
            changes: broadcast::channel(1024).0,
            tcp,
            block_devices,
            usage_poll: std::sync::Mutex::new(None),
            suspend_epochs: std::sync::atomic::AtomicU64::new(0),
            _lock: lock,
        });
        if daemon.block_devices.unavailable().is_none() {
            let weak = Arc::downgrade(&daemon);
            let poll = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(DEVICE_USAGE_POLL).await;
                    let Some(daemon) = weak.upgrade() else {
                        return;
                    };
                    daemon.block_devices.poll().await;
                }
            });
            *daemon.usage_poll.lock().unwrap_or_else(|e| e.into_inner()) = Some(poll);
        }
        for name in daemon.configured()? {
            let reply = daemon.up(&name).await;
            if let Reply::Error { message } = reply {
                warn!(resource = %name, "{message}");
            }
        }
        Ok((daemon, listener))
    }

    /// The resources that have a configuration file.
    fn configured(&self) -> Result<Vec<String>, StartError> {
        let dir = self.config.paths.resources();
        let entries = std::fs::read_dir(&dir).map_err(|source| StartError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".json").map(str::to_string)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Serves control connections until the listener fails.
    pub async fn serve(self: &Arc<Daemon>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let daemon = self.clone();
                    tokio::spawn(async move { daemon.control_connection(stream).await });
                }
                Err(e) => {
                    warn!(error = %e, "accepting a control connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn control_connection(self: Arc<Daemon>, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read).take(MAX_LINE_BYTES as u64);
        let mut line = String::new();
        // This connection's hold of a resource's writes, ended when the connection closes.
        let mut held: Option<Suspension> = None;
        loop {
            line.clear();
            reader.set_limit(MAX_LINE_BYTES as u64);
            match reader.read_line(&mut line).await {
                Ok(0) => return,
                Ok(_) if !line.ends_with('\n') => {
                    let _ = send(
                        &mut write,
                        &Reply::Error {
                            message: format!(
                                "a request line is longer than {MAX_LINE_BYTES} bytes; closing"
                            ),
                        },
                    )
                    .await;
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "reading a control request failed");
                    return;
                }
            }
            let request: Request = match serde_json::from_str(&line) {
                Ok(request) => request,
                Err(e) => {
                    let reply = Reply::Error {
                        message: format!("not a control request ({e}): {}", line.trim()),
                    };
                    if send(&mut write, &reply).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if request == Request::Events {
                self.stream_events(&mut write).await;
                return;
            }
            let reply = match request {
                Request::SuspendIo { resource } => self.suspend_io(&resource, &mut held).await,
                Request::ResumeIo { resource } => resume_io(&resource, &mut held),
                request => self.handle(request).await,
            };
            if send(&mut write, &reply).await.is_err() {
                return;
            }
        }
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request) -> Reply {
        match request {
            Request::Hello { version } if version == CONTROL_VERSION => Reply::Hello {
                version: CONTROL_VERSION,
                pid: std::process::id(),
            },
            Request::Hello { version } => Reply::Error {
                message: format!(
                    "this ferrite-mirrord speaks control version {CONTROL_VERSION}, the client \
                     {version}; use the ferrite-mirrord binary of the same release"
                ),
            },
            Request::Up { resource } => self.up(&resource).await,
            Request::Down { resource, force } => self.down(&resource, force).await,
            Request::Status { resource } => match self.entries_of(resource.as_deref()).await {
                Ok(resources) => Reply::Status { resources },
                Err(message) => Reply::Error { message },
            },
            Request::DiscardMyData { resource } => {
                let running = {
                    let entries = self.entries.lock().await;
                    match entries.get(&resource) {
                        Some(Entry::Running(r)) => Some(r.resource.clone()),
                        _ => None,
                    }
                };
                match running {
                    Some(r) => match r.discard_my_data().await {
                        Ok(message) => Reply::Done { message },
                        Err(message) => Reply::Error { message },
                    },
                    None => Reply::Error {
                        message: format!("resource '{resource}' is not up on this node"),
                    },
                }
            }
            Request::Events => Reply::Error {
                message: "events is a stream; send it on a connection of its own".to_string(),
            },
            Request::SuspendIo { .. } | Request::ResumeIo { .. } => Reply::Error {
                message: "suspend-io lasts as long as the connection that asks for it; send it \
                          on the control socket"
                    .to_string(),
            },
        }
    }

    /// `suspend-io` on a control connection: holds the resource's writes for as long as the
    /// connection keeps `held` (see [`crate::suspend`]); asked again, flushes again.
    async fn suspend_io(&self, resource: &str, held: &mut Option<Suspension>) -> Reply {
        if let Some(suspension) = held.as_ref() {
            if suspension.resource() != resource {
                return Reply::Error {
                    message: format!(
                        "this connection holds the writes of '{}'; hold '{resource}' on a \
                         connection of its own",
                        suspension.resource()
                    ),
                };
            }
            return match suspension.flush().await {
                Ok(()) => Reply::Suspended {
                    resource: resource.to_string(),
                    epoch: suspension.epoch(),
                },
                Err(message) => Reply::Error { message },
            };
        }
        let volumes: Option<Vec<Arc<VolumeEngine>>> = {
            let entries = self.entries.lock().await;
            match entries.get(resource) {
                Some(Entry::Running(r)) => Some(r.resource.volumes().values().cloned().collect()),
                _ => None,
            }
        };
        let Some(volumes) = volumes else {
            return Reply::Error {
                message: format!("resource '{resource}' is not up on this node"),
            };
        };
        let epoch = self
            .suspend_epochs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        match Suspension::hold(resource, epoch, volumes).await {
            Ok(suspension) => {
                *held = Some(suspension);
                Reply::Suspended {
                    resource: resource.to_string(),
                    epoch,
                }
            }
            Err(message) => Reply::Error { message },
        }
    }

    /// Brings a resource up from its file, or applies the file to the running resource.
    pub async fn up(&self, name: &str) -> Reply {
        let path = self.config.paths.resource_file(name);
        let config = match ResourceConfig::read(&path) {
            Ok(config) if config.name == name => config,
            Ok(config) => {
                return Reply::Error {
                    message: format!(
                        "{} configures '{}', not '{name}'",
                        path.display(),
                        config.name
                    ),
                };
            }
            Err(e) => {
                let message = e.to_string();
                let mut entries = self.entries.lock().await;
                if !matches!(entries.get(name), Some(Entry::Running(_))) {
                    entries.insert(name.to_string(), Entry::Failed(message.clone()));
                    let _ = self.changes.send(name.to_string());
                }
                return Reply::Error { message };
            }
        };
        let mut entries = self.entries.lock().await;
        if let Some(Entry::Running(running)) = entries.get_mut(name) {
            match running.resource.adjust(config.clone()).await {
                Ok(()) => {
                    self.add_missing_devices(name, running).await;
                    let _ = self.changes.send(name.to_string());
                    return Reply::Done {
                        message: format!("'{name}' adjusted"),
                    };
                }
                Err(AdjustError::Refused(message)) => return Reply::Error { message },
                Err(AdjustError::NeedsRestart(what)) => {
                    // Its volumes may go away: their frontends first, refused while in use.
                    if let Err(message) = self.release(name, running, false).await {
                        return Reply::Error {
                            message: format!(
                                "{message}; '{name}': {what} changed, which needs the resource \
                                 down and up again"
                            ),
                        };
                    }
                    info!(resource = %name, %what, "restarting the resource for a changed configuration");
                    if let Some(Entry::Running(running)) = entries.remove(name) {
                        self.stop(running).await;
                    }
                }
            }
        }
        match self.start_resource(config).await {
            Ok(running) => {
                let volumes = running.exports.len();
                let devices = running
                    .devices
                    .values()
                    .filter(|device| device.ready().is_some())
                    .count();
                entries.insert(name.to_string(), Entry::Running(running));
                let _ = self.changes.send(name.to_string());
                Reply::Done {
                    message: format!(
                        "'{name}' is up with {volumes} volume(s), {devices} with a block device"
                    ),
                }
            }
            Err(message) => {
                entries.insert(name.to_string(), Entry::Failed(message.clone()));
                let _ = self.changes.send(name.to_string());
                Reply::Error { message }
            }
        }
    }

    /// Takes a resource down (its file stays; the satellite removes it when the resource is
    /// deleted here). Refused while a volume is in use (an NBD client connected, a block device
    /// mounted or open), unless `force`: then NBD clients are disconnected and a block device in
    /// use stays attached, its I/O failing, until nothing uses it.
    pub async fn down(&self, name: &str, force: bool) -> Reply {
        let mut entries = self.entries.lock().await;
        match entries.get_mut(name) {
            None => Reply::Done {
                message: format!("'{name}' is not up"),
            },
            Some(Entry::Failed(_)) => {
                entries.remove(name);
                let _ = self.changes.send(name.to_string());
                Reply::Done {
                    message: format!("'{name}' is down"),
                }
            }
            Some(Entry::Running(running)) => {
                let notes = match self.release(name, running, force).await {
                    Ok(notes) => notes,
                    Err(message) => {
                        let _ = self.changes.send(name.to_string());
                        return Reply::Error {
                            message: format!(
                                "{message} (`down --force` takes it down anyway; its users get \
                                 I/O errors)"
                            ),
                        };
                    }
                };
                if let Some(Entry::Running(running)) = entries.remove(name) {
                    self.stop(running).await;
                }
                let _ = self.changes.send(name.to_string());
                let mut message = format!("'{name}' is down");
                if !notes.is_empty() {
                    message.push_str(&format!(
                        "; block device(s) in use left attached: {}",
                        notes.join("; ")
                    ));
                }
                Reply::Done { message }
            }
        }
    }

    /// Takes every resource down (shut-down): block devices first (a device still in use
    /// stays, its I/O failing), then NBD exports and the resource; the FUSE file system last.
    pub async fn shutdown(&self) {
        if let Some(poll) = self
            .usage_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            poll.abort();
        }
        let mut entries = self.entries.lock().await;
        let all = std::mem::take(&mut *entries);
        for (name, entry) in all {
            if let Entry::Running(mut running) = entry {
                match self.release(&name, &mut running, true).await {
                    Ok(notes) => {
                        for note in notes {
                            warn!(resource = %name, "{note}");
                        }
                    }
                    Err(message) => warn!(resource = %name, "{message}"),
                }
                self.stop(running).await;
            }
        }
        for error in self.block_devices.shutdown().await {
            warn!("block device left behind at shut-down: {error}");
        }
        let _ = std::fs::remove_file(self.config.paths.control_socket());
    }

    async fn start_resource(&self, config: ResourceConfig) -> Result<Running, String> {
        let name = config.name.clone();
        let outdated = OutdatedFile::at(self.config.paths.outdated_file(&name));
        let resource = Resource::up(config, outdated)
            .await
            .map_err(|e| format!("cannot bring '{name}' up: {e}"))?;
        let run_dir = self.config.paths.run().join(&name);
        if let Err(e) = std::fs::create_dir_all(&run_dir) {
            resource.down().await;
            return Err(format!("cannot create {}: {e}", run_dir.display()));
        }
        let mut exports = Vec::new();
        for (number, engine) in resource.volumes() {
            match self.export(&name, *number, engine.clone()) {
                Ok(export) => exports.push(export),
                Err(message) => {
                    for export in exports {
                        self.unexport(&name, export);
                    }
                    resource.down().await;
                    return Err(message);
                }
            }
        }
        // A volume without a block device still runs: its NBD export says how to reach it.
        let mut devices = BTreeMap::new();
        for (number, engine) in resource.volumes() {
            let device = self.block_devices.add(&name, *number, engine.clone()).await;
            devices.insert(*number, device);
        }
        let watcher = {
            let mut status = resource.watch_status();
            let changes = self.changes.clone();
            let name = name.clone();
            tokio::spawn(async move {
                while status.changed().await.is_ok() {
                    let _ = changes.send(name.clone());
                }
            })
        };
        Ok(Running {
            resource,
            exports,
            devices,
            watcher,
        })
    }

    /// Retries the block device of every volume that has none while the host can have them
    /// (an `up` of a running resource: e.g. the device a forced `down` left is free now).
    async fn add_missing_devices(&self, name: &str, running: &mut Running) {
        if self.block_devices.unavailable().is_some() {
            return;
        }
        for (number, engine) in running.resource.volumes() {
            if running
                .devices
                .get(number)
                .is_none_or(|device| device.ready().is_none())
            {
                let device = self.block_devices.add(name, *number, engine.clone()).await;
                running.devices.insert(*number, device);
            }
        }
    }

    /// Takes a running resource's block devices away, first making sure (unless `force`) that
    /// no volume is in use: no NBD client, no device mounted or open. A refusal leaves every
    /// frontend as it was and says which volume is used and how. Forced, the notes name the
    /// devices left attached because they are in use.
    async fn release(
        &self,
        name: &str,
        running: &mut Running,
        force: bool,
    ) -> Result<Vec<String>, String> {
        let engines = running.resource.volumes().clone();
        if !force {
            let usage = self.block_devices.usage(&running.devices, &engines).await;
            if let Some(used) = usage.iter().find(|u| u.other_sessions > 0) {
                return Err(format!(
                    "'{name}' is in use on this node: {} NBD client(s) connected to volume {}; \
                     disconnect them first",
                    used.other_sessions, used.volume
                ));
            }
        }
        let devices = std::mem::take(&mut running.devices);
        match self
            .block_devices
            .remove(name, devices, &engines, force)
            .await
        {
            Ok(notes) => Ok(notes),
            Err(refusal) => {
                running.devices = refusal.devices;
                Err(format!(
                    "'{name}' is in use on this node: {}",
                    refusal.message
                ))
            }
        }
    }

    fn export(
        &self,
        resource: &str,
        volume: u16,
        engine: Arc<VolumeEngine>,
    ) -> Result<NbdExport, String> {
        let socket = self.config.paths.nbd_socket(resource, volume);
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        let server = Server::new(ServerConfig::default());
        server
            .add_export(
                ExportConfig::new(ExportName::default_export())
                    .description(format!("{resource}/{volume}"))
                    .multi_conn(true),
                engine.clone(),
            )
            .map_err(|e| format!("cannot export {resource}/{volume}: {e}"))?;
        let serving = server.clone();
        let task = tokio::spawn(
            async move { serving.serve_unix(listener).await }
                .instrument(info_span!("nbd", resource, volume)),
        );
        let tcp_name = match &self.tcp {
            Some((tcp, _)) => {
                let name = ExportName::new(format!("{resource}/{volume}"))
                    .map_err(|e| format!("cannot name the TCP export: {e}"))?;
                tcp.add_export(
                    ExportConfig::new(name.clone()).multi_conn(true),
                    engine.clone(),
                )
                .map_err(|e| format!("cannot export {resource}/{volume} on TCP: {e}"))?;
                Some(name)
            }
            None => None,
        };
        Ok(NbdExport {
            volume,
            server,
            socket,
            task,
            tcp_name,
        })
    }

    fn unexport(&self, resource: &str, export: NbdExport) {
        let _ = export.server.remove_export(&ExportName::default_export());
        export.server.shutdown();
        export.task.abort();
        if let (Some((tcp, _)), Some(name)) = (&self.tcp, &export.tcp_name) {
            let _ = tcp.remove_export(name);
        }
        let _ = std::fs::remove_file(&export.socket);
        info!(resource, volume = export.volume, "NBD export removed");
    }

    /// Closes a resource's NBD exports and takes it down; its block devices are gone already
    /// ([`Daemon::release`]).
    async fn stop(&self, running: Running) {
        let name = running.resource.name.clone();
        running.watcher.abort();
        for export in running.exports {
            self.unexport(&name, export);
        }
        running.resource.down().await;
        let _ = std::fs::remove_dir(self.config.paths.run().join(&name));
        info!(resource = %name, "resource down");
    }

    fn frontends(&self, running: &Running) -> Vec<Frontend> {
        running
            .exports
            .iter()
            .map(|export| {
                let device = running.devices.get(&export.volume);
                let ready = device.and_then(|d| d.ready());
                Frontend {
                    volume: export.volume,
                    nbd_uri: format!("nbd+unix:///?socket={}", export.socket.display()),
                    nbd_tcp_uri: match (&self.tcp, &export.tcp_name) {
                        (Some((_, address)), Some(name)) => {
                            Some(format!("nbd://{address}/{}", name.as_str()))
                        }
                        _ => None,
                    },
                    device_path: ready.map(|d| d.path().display().to_string()),
                    drbd_device_path: ready
                        .and_then(|d| d.drbd_path())
                        .map(|p| p.display().to_string()),
                    loop_device: ready.map(|d| d.device().display().to_string()),
                    device_unavailable: match device {
                        Some(VolumeDevice::Unavailable(reason)) => Some(reason.clone()),
                        Some(VolumeDevice::Ready(_)) => None,
                        None => Some("the volume has no block device".to_string()),
                    },
                }
            })
            .collect()
    }

    fn entry(&self, name: &str, entry: &Entry) -> ResourceEntry {
        match entry {
            Entry::Running(running) => ResourceEntry {
                name: name.to_string(),
                status: Some(running.resource.status()),
                failure: None,
                frontends: self.frontends(running),
            },
            Entry::Failed(reason) => ResourceEntry {
                name: name.to_string(),
                status: None,
                failure: Some(reason.clone()),
                frontends: Vec::new(),
            },
        }
    }

    async fn entries_of(&self, resource: Option<&str>) -> Result<Vec<ResourceEntry>, String> {
        let entries = self.entries.lock().await;
        match resource {
            Some(name) => match entries.get(name) {
                Some(entry) => Ok(vec![self.entry(name, entry)]),
                None => Err(format!("resource '{name}' is not up on this node")),
            },
            None => Ok(entries
                .iter()
                .map(|(name, entry)| self.entry(name, entry))
                .collect()),
        }
    }

    async fn stream_events(&self, write: &mut tokio::net::unix::OwnedWriteHalf) {
        let mut changes = self.changes.subscribe();
        if self.send_all(write).await.is_err() {
            return;
        }
        loop {
            match changes.recv().await {
                Ok(name) => {
                    let reply = {
                        let entries = self.entries.lock().await;
                        match entries.get(&name) {
                            Some(entry) => Reply::Event {
                                resource: self.entry(&name, entry),
                            },
                            None => Reply::Gone { resource: name },
                        }
                    };
                    if send(write, &reply).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if self.send_all(write).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn send_all(&self, write: &mut tokio::net::unix::OwnedWriteHalf) -> std::io::Result<()> {
        let all = self.entries_of(None).await.unwrap_or_default();
        for resource in all {
            send(write, &Reply::Event { resource }).await?;
        }
        Ok(())
    }
}

/// `resume-io` on a control connection: ends its hold of the resource's writes.
fn resume_io(resource: &str, held: &mut Option<Suspension>) -> Reply {
    match held.take() {
        Some(suspension) if suspension.resource() == resource => Reply::Done {
            message: format!("I/O of '{resource}' resumed"),
        },
        other => {
            *held = other;
            Reply::Error {
                message: format!("this connection holds no writes of '{resource}'"),
            }
        }
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).expect("replies serialize");
    line.push(b'\n');
    write.write_all(&line).await
}

/// Takes the state directory's lock, or says which daemon holds it.
fn lock_state_dir(paths: &Paths) -> Result<std::fs::File, StartError> {
    let path = paths.lock_file();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::Lock {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor this function owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(StartError::AlreadyRunning {
                state_dir: paths.state_dir.clone(),
                lock: path,
            });
        }
        return Err(StartError::Lock {
            path,
            source: error,
        });
    }
    let _ = file.set_len(0);
    let _ = std::fs::write(&path, format!("{}\n", std::process::id()));
    Ok(file)
}

/// Writes a resource's configuration file atomically (write a temporary file, sync, rename):
/// a daemon starting meanwhile reads the old file or the new one, never half of one.
pub fn write_resource_file(paths: &Paths, config: &ResourceConfig) -> std::io::Result<()> {
    use std::io::Write;
    let dir = paths.resources();
    std::fs::create_dir_all(&dir)?;
    let path = paths.resource_file(&config.name);
    let temporary = dir.join(format!(".{}.json.tmp", config.name));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&serde_json::to_vec_pretty(config).expect("configs serialize"))?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// Removes a resource's configuration file and what its member recorded of Outdated members
/// (the resource is no longer on this node: a resource made again under the same name starts
/// with no record).
pub fn remove_resource_file(paths: &Paths, resource: &str) -> std::io::Result<()> {
    match std::fs::remove_file(paths.resource_file(resource)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OutdatedFile::at(paths.outdated_file(resource)).remove()
}
