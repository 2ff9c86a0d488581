//! Ferrite's node agent.
//!
//! The satellite listens for its controller, takes the node's desired state (persisted before it
//! acts on it), converges local storage to it and reports the actual state back. It owns:
//!
//! - [`server`]: the controller connection, handshake and session;
//! - [`identity`]: which cluster and node name the satellite serves;
//! - [`reconciler`]: the single owner of desired state, owned-volume ledger and storage;
//! - [`ledger`]: the record of volumes the satellite created (the only ones it may delete, and
//!   only when asked to);
//! - [`pools`]: the identity of every storage pool it keeps volumes in;
//! - [`persist`]: the state directory and its atomically written files;
//! - [`journal`]: snapshot and append-only journal, for the files that change a little at a
//!   time: the desired state ([`desired`]) and the ledger;
//! - [`replication`]: the replication engines (MIRROR's `ferrite-mirrord`, the kernel's DRBD
//!   through drbd-utils or as a dry run) the reconciler drives for replicated resources;
//! - [`spread`]: draws that keep nodes from doing their periodic work at the same moment;
//! - [`capabilities`]: which layers this node can run;
//! - [`config`]: flags and settings file.
//!
//! Storage itself (providers, host commands) is `ferrite-storage`.

pub mod capabilities;
pub mod config;
pub mod desired;
pub mod identity;
pub mod journal;
pub mod ledger;
pub mod persist;
pub mod pools;
pub mod reconciler;
pub mod replication;
pub mod server;
pub mod spread;

#[cfg(test)]
mod reconciler_tests;
#[cfg(test)]
mod server_tests;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use ferrite_storage::{HostCommands, HostPaths, ProviderOptions, Providers, detect_providers};
use tokio::net::TcpListener;
use tracing::info;

use crate::capabilities::LayerProbe;
use crate::config::SatelliteConfig;
use crate::identity::Identity;
use crate::persist::{IDENTITY_FILE, PersistError, StateDir};
use crate::reconciler::{Event, Reconciler};
use crate::replication::drbd::{DrbdDriver, Mode as DrbdMode};
use crate::replication::mirror::{MIRROR_STATE_SUBDIR, MirrorDriver};
use crate::server::ServerContext;
use ferrite_types::LayerKind;

/// Why the satellite could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    State(#[from] PersistError),
    #[error("cannot listen on {address}: {source}; choose another address with --listen")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the reconciler thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The host the satellite runs on: its command runner and where it looks for drivers.
pub struct Host {
    pub runner: Arc<dyn HostCommands>,
    pub paths: HostPaths,
    pub layers: LayerProbe,
}

/// A running satellite.
pub struct Satellite {
    local_addr: SocketAddr,
    events: std::sync::mpsc::Sender<Event>,
    reconciler: Option<std::thread::JoinHandle<()>>,
    server: tokio::task::JoinHandle<()>,
}

/// `uname -n`, as the kernel has it for this UTS namespace.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

impl Satellite {
    /// Opens (and locks) the state directory, detects what the host supports, starts the
    /// reconciler on the persisted desired state and starts listening.
    pub async fn start(config: SatelliteConfig, host: Host) -> Result<Satellite, StartError> {
        let state_dir = Arc::new(StateDir::open(&config.state_dir)?);
        let identity: Option<Identity> = state_dir.read(IDENTITY_FILE)?;
        let options = ProviderOptions {
            lvm_metadata_only: config.lvm_metadata_only,
        };
        let layers = LayerProbe {
            mirrord: config.mirrord.clone(),
            drbd_dry_run: config.drbd_dry_run,
            ..host.layers
        };
        let runner = host.runner.clone();
        let paths = host.paths.clone();
        let mirrord = capabilities::find_mirrord(&layers);
        let (support, capabilities) = tokio::task::spawn_blocking(move || {
            let support = detect_providers(runner.as_ref(), &paths, options);
            let capabilities = capabilities::capabilities(runner.as_ref(), &support, &layers);
            (support, capabilities)
        })
        .await
        .expect("capability detection does not panic");
        let node_name = config
            .node_name
            .as_ref()
            .map(|n| n.to_string())
            .or_else(|| identity.as_ref().map(|i| i.node_name.clone()))
            .unwrap_or_else(|| "(unnamed)".to_string());
        info!(
            node = %node_name,
            providers = ?capabilities.storage_providers,
            unsupported_providers = ?capabilities.unsupported_providers,
            layers = ?capabilities.resource_layers,
            unsupported_layers = ?capabilities.unsupported_layers,
            "capabilities detected"
        );
        let providers = Arc::new(Providers::new(host.runner.clone(), options));
        let mut reconciler = Reconciler::load(
            node_name.clone(),
            state_dir.clone(),
            providers.clone(),
            support.clone(),
        )?;
        let (events, receiver) = std::sync::mpsc::channel();
        if capabilities.supports_layer(LayerKind::Drbd)
            || capabilities.dry_runs_layer(LayerKind::Drbd)
        {
            let mode = if config.drbd_dry_run {
                DrbdMode::DryRun
            } else {
                DrbdMode::Real
            };
            info!(dir = %config.drbd_resource_dir.display(), ?mode, "DRBD layer enabled");
            let versions = crate::capabilities::drbd_versions(host.runner.as_ref());
            info!(%versions, "DRBD versions");
            let driver =
                DrbdDriver::new(host.runner.clone(), config.drbd_resource_dir.clone(), mode)
                    .with_versions(versions);
            // A dry run names the node as the controller does, so each node's file can be
            // checked as that node (tests set the hostname in a UTS namespace).
            let driver = match mode {
                DrbdMode::Real => {
                    let sender = events.clone();
                    driver
                        .with_local_host(hostname())
                        .follow_events(move || sender.send(Event::ReplicationChanged).is_ok())
                        .map_err(StartError::Thread)?
                }
                DrbdMode::DryRun => driver,
            };
            reconciler.add_replication_driver(Box::new(driver));
        }
        let mut has_mirror = false;
        if capabilities.supports_layer(LayerKind::Mirror)
            && let Ok(program) = mirrord
        {
            let driver = MirrorDriver::new(
                host.runner.clone(),
                config.state_dir.join(MIRROR_STATE_SUBDIR),
                program,
                config.device_root.clone(),
                config.mirror_nbd_tcp,
            )
            .map_err(StartError::Thread)?;
            reconciler.add_replication_driver(Box::new(driver));
            has_mirror = true;
        }

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    address: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
            address: config.listen,
            source,
        })?;

        if has_mirror {
            let sender = events.clone();
            crate::replication::mirror::watch_events(
                config.state_dir.join(MIRROR_STATE_SUBDIR),
                move || sender.send(Event::ReplicationChanged).is_ok(),
            )
            .map_err(StartError::Thread)?;
        }
        let interval = config.reconcile_interval;
        let reconciler = std::thread::Builder::new()
            .name("reconciler".to_string())
            .spawn(move || reconciler.run(receiver, interval))
            .map_err(StartError::Thread)?;

        let context = Arc::new(ServerContext {
            configured_node_name: config.node_name.clone(),
            state_dir,
            identity: Mutex::new(identity),
            capabilities,
            hostname: hostname(),
            events: events.clone(),
            providers,
            support,
            session_active: AtomicBool::new(false),
            handshake_timeout: config.handshake_timeout,
            session_idle_timeout: config.session_idle_timeout,
        });
        let server = tokio::spawn(server::serve(listener, context));
        info!(node = %node_name, listen = %local_addr, state_dir = %config.state_dir.display(), "satellite started");
        Ok(Satellite {
            local_addr,
            events,
            reconciler: Some(reconciler),
            server,
        })
    }

    /// The address it listens on (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops listening and lets the reconciler finish what it is doing. Backing volumes and
    /// loop devices stay as they are.
    pub async fn shutdown(mut self) {
        self.server.abort();
        let _ = self.events.send(Event::Shutdown);
        if let Some(reconciler) = self.reconciler.take() {
            let _ = tokio::task::spawn_blocking(move || reconciler.join()).await;
        }
        info!("satellite stopped");
    }
}
