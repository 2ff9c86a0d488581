//! `ferrite-satellite`: reads its settings, starts the satellite and runs until SIGTERM or
//! SIGINT. Logs go to stderr, filtered by RUST_LOG (default `info`).

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::anyhow;
use clap::Parser;
use ferrite_satellite::capabilities::LayerProbe;
use ferrite_satellite::config::{Args, SatelliteConfig};
use ferrite_satellite::{Host, Satellite};
use ferrite_storage::{HostPaths, SystemCommands};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // Every error here says what failed and why in its own message, so only that is printed.
    match start() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrite-satellite: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = SatelliteConfig::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(run(config))
}

async fn run(config: SatelliteConfig) -> anyhow::Result<()> {
    let host = Host {
        runner: Arc::new(SystemCommands::new()),
        paths: HostPaths::default(),
        layers: LayerProbe::default(),
    };
    let satellite = Satellite::start(config, host).await?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| anyhow!("cannot handle SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| anyhow!("cannot handle SIGINT: {e}"))?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT received; stopping"),
    }
    satellite.shutdown().await;
    Ok(())
}
