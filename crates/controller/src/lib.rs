//! The Ferrite controller: holds the cluster's desired state, serves LINSTOR's REST API v1,
//! places resources and pushes each satellite its node's desired state.
//!
//! Layout: `model` is the object graph and its ops, `app` the rules (request → plan), `core`
//! the commit-apply-push path, `satellites` the connections to nodes, `http` the REST surface,
//! `config` the start-up settings.

pub mod app;
pub mod config;
pub mod core;
pub mod http;
pub mod metrics;
pub mod model;
pub mod satellites;

pub use crate::core::Controller;

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Starts the controller and serves until the process is stopped.
pub async fn run(config: config::Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let controller = Controller::start(&config.data_dir, config.timeouts.clone())
        .await
        .with_context(|| {
            format!(
                "starting the controller with data directory {}",
                config.data_dir.display()
            )
        })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
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
