//! The Ferrite controller: holds the cluster's desired state, serves LINSTOR's REST API v1,
//! places resources and pushes each satellite its node's desired state.
//!
//! Layout: `model` is the object graph and its ops, `app` the rules (request → plan), `core`
//! the commit-apply-push path, `cut` the snapshot cut across a replicated resource's members
//! (several changes in a row), `reported` what satellites reported, `satellites` the connections
//! to nodes (which keep `reported` current), `http` the REST surface, `config` the start-up
//! settings. `app` depends on `model` and `reported`, not on `satellites`.

pub mod app;
pub mod config;
pub mod core;
pub mod cut;
pub mod durable;
pub mod http;
pub mod metrics;
pub mod model;
pub mod reported;
pub mod satellites;

pub use crate::core::Controller;
pub use ferrite_store::DataDirLock;

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Starts the controller and serves until the process is stopped.
///
/// The order matters: the data directory is locked first (a second controller on the same
/// store stops here, before it has read anything), then the REST port is bound (a clash of
/// ports stops it before it has opened the store or dialled a satellite), and only then is the
/// store opened and are the satellites linked.
pub async fn run(config: config::Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let lock = DataDirLock::acquire(&config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let controller = Controller::start(lock, config.timeouts.clone())
        .await
        .with_context(|| {
            format!(
                "starting the controller with data directory {}",
                config.data_dir.display()
            )
        })?;
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "ferrite-controller ready");
    let app = http::router(controller);
    http::server::serve(listener, app, config.rest_limits, shutdown_signal())
        .await
        .context("serving the REST API")
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
