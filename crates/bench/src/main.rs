//! `ferrite-bench`: the controller's scale benchmark.
//!
//! Phase A fills a cluster of real satellites (FILE_THIN pools on loop devices) to 1,000
//! resources; phase B fills a cluster of 16 simulated satellites to 100,000 (both
//! configurable); phase C sets DRBD options above 10,000 replicated resources. Each reports
//! creation throughput, controller memory, cold-start time and read latency next to baselines
//! measured in the same run. `scripts/bench.sh` builds the release binaries and runs it;
//! `docs/benchmarks.md` explains the figures.

mod controller;
mod http;
mod phases;
mod probe;
mod procfs;
mod report;
mod simulated;
mod stats;
mod workload;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ferrite_testkit::Binaries;

use crate::phases::Settings;
use crate::report::Report;

/// ferrite-bench: creates thousands of resources through a Ferrite controller and measures it.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Resources in phase A (real satellites with FILE_THIN pools)
    #[arg(long, default_value_t = 1000)]
    real_resources: usize,
    /// Resource definitions (two replicas each) in phase B (simulated satellites); e.g. 10000
    /// with --simulated-nodes 4 for a shorter run (about 14 minutes)
    #[arg(long, default_value_t = 100_000)]
    simulated_resources: usize,
    /// Simulated satellites in phase B
    #[arg(long, default_value_t = 16)]
    simulated_nodes: usize,
    /// Replicated resource definitions in phase C
    #[arg(long, default_value_t = 10_000)]
    options_resources: usize,
    /// Nodes (satellites) in phases A and C
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Concurrent REST clients while creating
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Size of each resource's one volume, KiB
    #[arg(long, default_value_t = 4096)]
    volume_kib: u64,
    /// Sequential requests per read endpoint at each checkpoint (four times as many single
    /// resource definitions)
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Sequential requests of the whole resource view (unpaged) at each checkpoint
    #[arg(long, default_value_t = 20)]
    view_samples: usize,
    /// Controller restarts per stop variant (SIGTERM, kill -9)
    #[arg(long, default_value_t = 3)]
    cold_starts: usize,
    /// Seconds phase A may spend creating resources; waiting for convergence and tearing down
    /// get half as much each
    #[arg(long, default_value_t = 120)]
    real_budget: u64,
    /// Skip phase A
    #[arg(long)]
    skip_real: bool,
    /// Skip phase B
    #[arg(long)]
    skip_simulated: bool,
    /// Skip phase C (a DRBD option above 10,000 replicated resources).
    #[arg(long)]
    skip_options: bool,
    /// Resources of the one node in phase S (its answer to a full state it holds); 12,500 is
    /// a node's share of 100,000 × 2 on 16 nodes
    #[arg(long, default_value_t = 12_500)]
    satellite_resources: usize,
    /// Skip phase S (one satellite answering its full state)
    #[arg(long)]
    skip_satellite: bool,
    /// Directory with ferrite-controller and ferrite-satellite [default: this binary's directory]
    #[arg(long, env = "FERRITE_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Where the phases make their temporary directories
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// Write the report as Markdown to this file too
    #[arg(long)]
    report: Option<PathBuf>,
    /// Keep each phase's directory (database, logs) and print where it is
    #[arg(long)]
    keep: bool,
    /// Write this process's log (the simulated satellites' and the benchmark's own) to this
    /// file, filtered by `RUST_LOG` (default `info`); without it they log nothing
    #[arg(long)]
    log: Option<PathBuf>,
}

/// The binaries in `dir`; the satellite is needed only by phase A (`with_satellite`).
fn binaries(dir: Option<PathBuf>, with_satellite: bool) -> Result<Binaries> {
    let dir = match dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("locating this binary's directory")?
            .to_path_buf(),
    };
    let binaries = Binaries {
        controller: dir.join("ferrite-controller"),
        satellite: dir.join("ferrite-satellite"),
        cli: dir.join("ferrite"),
    };
    let needed = [
        Some(&binaries.controller),
        with_satellite.then_some(&binaries.satellite),
    ];
    for path in needed.into_iter().flatten() {
        if !path.exists() {
            bail!(
                "{} is missing; build with `cargo build --release --workspace --bins` or pass --bin-dir",
                path.display()
            );
        }
    }
    Ok(binaries)
}

fn host_line() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    format!(
        "Host: {cpus} CPUs ({model}), Linux {}. Everything (controller, satellites, clients) shares these CPUs.",
        kernel.trim()
    )
}

/// Sends this process's tracing to `path`: the simulated satellites log as real ones do.
fn log_to(path: &std::path::Path) -> Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("creating the log {}", path.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.log {
        log_to(path)?;
    }
    let settings = Settings {
        binaries: binaries(args.bin_dir.clone(), !args.skip_real)?,
        work_dir: args.work_dir.clone(),
        nodes: args.nodes,
        clients: args.clients.max(1),
        volume_kib: args.volume_kib,
        samples: args.samples.max(1),
        view_samples: args.view_samples.max(1),
        cold_starts: args.cold_starts.max(1),
        real_budget: std::time::Duration::from_secs(args.real_budget.max(1)),
        keep: args.keep,
    };
    let started = std::time::Instant::now();
    let mut report = Report::default();
    report.header.push(host_line());
    report.header.push(format!(
        "Binaries: {} (release build expected). Phase B's targets: cold start to a full view ≤ 1 s, controller RSS ≤ 400 MiB, one resource definition's GET p99 ≤ 5 ms, spawn p99 ≤ 20 ms with 8 clients, a page of 1,000 resources p99 ≤ 50 ms, the unpaged resource view p99 ≤ 1.5 s.",
        settings.binaries.controller.display()
    ));
    if !args.skip_real {
        eprintln!(
            "== phase A: {} resources, {} real satellites",
            args.real_resources, args.nodes
        );
        report
            .sections
            .push(phases::real::run(&settings, args.real_resources)?);
    }
    if !args.skip_simulated {
        eprintln!(
            "== phase B: {} resources, {} simulated satellites",
            args.simulated_resources, args.simulated_nodes
        );
        report.sections.push(phases::simulated::run(
            &settings,
            args.simulated_resources,
            args.simulated_nodes.max(2),
        )?);
    }
    if !args.skip_options {
        eprintln!(
            "== phase C: a DRBD option above {} replicated resources, {} simulated satellites",
            args.options_resources, args.nodes
        );
        report
            .sections
            .push(phases::options::run(&settings, args.options_resources)?);
    }
    if !args.skip_satellite {
        eprintln!(
            "== phase S: one satellite answering its full state of {} resources",
            args.satellite_resources
        );
        report
            .sections
            .push(phases::satellite::run(&settings, args.satellite_resources)?);
    }
    report.header.push(format!(
        "Total run time: {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(path) = &args.report {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    let missed = report.missed();
    if !missed.is_empty() {
        eprintln!(
            "{} target(s) missed: {}",
            missed.len(),
            missed
                .iter()
                .map(|r| r.measure.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}
