//! Phase B: a release-built controller process and in-process simulated satellites; the
//! cluster is filled to 10,000 resource definitions with two replicas each, then the
//! controller is measured, restarted (SIGTERM and kill -9) and measured again.

use std::time::Instant;

use anyhow::{Result, ensure};

use super::{FillPlan, Restarts, Settings, fill, latency_and_size, restarts, spread};
use crate::controller::{ControllerUnderTest, Stop};
use crate::probe::{self, Checkpoint};
use crate::report::Section;
use crate::simulated::SimulatedNodes;
use crate::stats;
use crate::workload::{self, NodeSpec};

/// Targets of the scale requirement.
pub const COLD_START_TARGET_MS: f64 = 1000.0;
pub const VIEW_TARGET_MS: f64 = 250.0;
pub const RSS_TARGET_MIB: f64 = 100.0;

pub fn run(settings: &Settings, resources: usize) -> Result<Section> {
    let phase_started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("ferrite-bench-simulated-")
        .tempdir_in(&settings.work_dir)?;
    let tag = "simulated";
    let mut controller = ControllerUnderTest::new(&settings.binaries.controller, dir.path());
    let empty_start = controller.start(0)?;
    let nodes = SimulatedNodes::start(settings.nodes)?;
    let specs: Vec<NodeSpec> = nodes
        .satellites
        .iter()
        .map(|s| NodeSpec {
            name: s.name.clone(),
            address: s.address,
            pool_dir: format!("/srv/simulated/{}", s.name),
        })
        .collect();
    workload::set_up_cluster(&controller.rest(), &specs)?;
    controller.wait_online(settings.nodes, std::time::Duration::from_secs(30))?;

    // Baselines on the cluster with its nodes but no resources.
    probe::settle();
    let empty = probe::checkpoint(&controller, settings.samples)?;
    let empty_restart = Restarts::of(&restarts(
        tag,
        &mut controller,
        Stop::Term,
        settings.cold_starts,
        settings.nodes,
    )?);

    let checkpoint_at = if resources > 1000 { vec![1000] } else { vec![] };
    let window = (resources / 10).max(100);
    let single_tail = (resources / 20).max(1);
    let filled = fill(
        tag,
        &controller,
        settings,
        &FillPlan {
            total: resources,
            window,
            single_tail,
            checkpoint_at: &checkpoint_at,
            budget: None,
        },
    )?;
    let at_1000: Option<Checkpoint> = filled.checkpoints.first().copied();

    probe::settle();
    let after_fill = controller.memory()?;
    let full = probe::checkpoint(&controller, settings.samples)?;
    let view = controller.reader().get_ok("/v1/view/resources")?;
    let replicas = workload::Replicas::of(&view.body)?;
    ensure!(
        replicas.total() == 2 * resources && replicas.not_up_to_date == 0,
        "expected {} UpToDate replicas, the view lists {} ({} volumes not UpToDate)",
        2 * resources,
        replicas.total(),
        replicas.not_up_to_date
    );
    for satellite in &nodes.satellites {
        eprintln!(
            "[{tag}] {} holds {} resources; {} states applied, {} full, {} sessions",
            satellite.name,
            satellite.resource_count(),
            satellite
                .counters
                .applied
                .load(std::sync::atomic::Ordering::Relaxed),
            satellite
                .counters
                .full_states
                .load(std::sync::atomic::Ordering::Relaxed),
            satellite
                .counters
                .sessions
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    }

    let term = Restarts::of(&restarts(
        tag,
        &mut controller,
        Stop::Term,
        settings.cold_starts,
        settings.nodes,
    )?);
    let kill = Restarts::of(&restarts(
        tag,
        &mut controller,
        Stop::Kill,
        settings.cold_starts,
        settings.nodes,
    )?);
    controller.stop(Stop::Term)?;
    let floor = probe::store_floor(&controller.data_dir, 5)?;
    nodes.shutdown();
    if settings.keep {
        eprintln!(
            "[{tag}] kept {} (controller data directory and logs)",
            dir.keep().display()
        );
    }

    // The report.
    let mut section = Section::new(format!(
        "Phase B — {resources} resource definitions × 2 replicas, {} simulated satellites",
        settings.nodes
    ));
    section.intro(format!(
        "Satellites: **simulated in-process** ({} nodes speaking the real protocol, answering at once; see docs/benchmarks.md). \
         Controller: release build, its own process. Clients: {} concurrent, the last {single_tail} resources from 1 client. \
         Volumes: 1 × {} KiB each. Phase wall time: {:.0} s.",
        settings.nodes,
        settings.clients,
        settings.volume_kib,
        phase_started.elapsed().as_secs_f64()
    ));
    let first = &filled.windows[0];
    let last_concurrent = filled.last_concurrent();
    section.context(
        format!("creation throughput, {} clients (spawn)", settings.clients),
        format!(
            "{:.1} resources/s overall ({:.0} s for {})",
            filled.rate(true),
            filled.total_elapsed().as_secs_f64(),
            resources
        ),
        format!(
            "first {} into an empty cluster: {:.1}/s; last window ({}): {:.1}/s",
            first.upto,
            first.batch.per_second(),
            last_concurrent.map(|w| w.upto).unwrap_or(0),
            last_concurrent.map(|w| w.batch.per_second()).unwrap_or(0.0)
        ),
    );
    section.context(
        "creation throughput, 1 client (spawn)",
        format!("{:.1} resources/s (last {single_tail})", filled.rate(false)),
        format!(
            "{} clients just before: {:.1}/s",
            settings.clients,
            last_concurrent.map(|w| w.batch.per_second()).unwrap_or(0.0)
        ),
    );
    section.context(
        format!("spawn latency, {} clients", settings.clients),
        filled.latency(true).to_string(),
        format!("GET /health on the empty cluster: {}", empty.health.latency),
    );
    section.context(
        "spawn latency, 1 client",
        filled.latency(false).to_string(),
        format!("GET /health at {resources}: {}", full.health.latency),
    );
    section.context(
        "controller CPU while creating",
        format!(
            "{:.1} s CPU in {:.1} s wall ({:.0}% of one core)",
            filled.controller_cpu,
            filled.total_elapsed().as_secs_f64(),
            100.0 * filled.controller_cpu / filled.total_elapsed().as_secs_f64().max(1e-9)
        ),
        "—",
    );
    section.target(
        format!("controller RSS with {resources}, after creating them (VmRSS)"),
        format!("≤ {RSS_TARGET_MIB:.0} MiB"),
        format!("{:.1} MiB", after_fill.rss_mib()),
        memory_baseline(&empty, at_1000.as_ref()),
        after_fill.rss_mib() <= RSS_TARGET_MIB,
    );
    section.target(
        format!(
            "controller RSS with {resources}, after {} full views (VmRSS)",
            2 * (settings.samples + 1)
        ),
        format!("≤ {RSS_TARGET_MIB:.0} MiB"),
        format!("{:.1} MiB", full.memory.rss_mib()),
        format!("before the views: {:.1} MiB", after_fill.rss_mib()),
        full.memory.rss_mib() <= RSS_TARGET_MIB,
    );
    section.target(
        "controller peak RSS over creation and views (VmHWM)",
        format!("≤ {RSS_TARGET_MIB:.0} MiB"),
        format!("{:.1} MiB", full.memory.peak_mib()),
        format!(
            "empty cluster: {:.1} MiB; after creation: {:.1} MiB",
            empty.memory.peak_mib(),
            after_fill.peak_mib()
        ),
        full.memory.peak_mib() <= RSS_TARGET_MIB,
    );
    section.target(
        format!("controller RSS after a restart with {resources}, nodes online, one full view"),
        format!("≤ {RSS_TARGET_MIB:.0} MiB"),
        format!(
            "{:.1} MiB (peak {:.1})",
            kill.memory.rss_mib(),
            kill.memory.peak_mib()
        ),
        format!(
            "restart with 0 resources: {:.1} MiB",
            empty_restart.memory.rss_mib()
        ),
        kill.memory.peak_mib() <= RSS_TARGET_MIB,
    );
    for (label, timing) in [("SIGTERM", &term), ("kill -9", &kill)] {
        section.target(
            format!("cold start after {label}: exec → first /health 200"),
            format!("≤ {COLD_START_TARGET_MS:.0} ms"),
            spread(&timing.health),
            format!(
                "empty store: {} ms; 4 nodes, 0 resources: {}",
                stats::ms(empty_start.health.as_secs_f64() * 1e3),
                spread(&empty_restart.health)
            ),
            timing.health.max_ms <= COLD_START_TARGET_MS,
        );
        section.target(
            format!("cold start after {label}: exec → first full /v1/view/resources"),
            format!("≤ {COLD_START_TARGET_MS:.0} ms"),
            spread(&timing.view),
            format!(
                "SQLite alone reads all {} rows in {}; 0 resources: {}",
                floor.rows,
                spread(&floor.read_rows),
                spread(&empty_restart.view)
            ),
            timing.view.max_ms <= COLD_START_TARGET_MS,
        );
    }
    section.context(
        "of which: store load as the controller logs it",
        spread(&kill.logged_load),
        format!(
            "SQLite integrity check alone (quick_check + foreign_key_check): {}",
            spread(&floor.integrity_check)
        ),
    );
    section.context(
        "exec → every node ONLINE again (full state pushed and applied)",
        format!(
            "SIGTERM {}; kill -9 {}",
            spread(&term.online),
            spread(&kill.online)
        ),
        format!("0 resources: {}", spread(&empty_restart.online)),
    );
    section.context(
        "graceful stop (SIGTERM → exit)",
        spread(&term.stop),
        format!("0 resources: {}", spread(&empty_restart.stop)),
    );
    for (label, at_full, at_empty, at_thousand) in [
        (
            "GET /v1/view/resources",
            &full.view,
            &empty.view,
            at_1000.as_ref().map(|c| c.view),
        ),
        (
            "GET /v1/view/resources?limit=0",
            &full.view_limit0,
            &empty.view_limit0,
            at_1000.as_ref().map(|c| c.view_limit0),
        ),
    ] {
        section.target(
            format!("{label} at {resources} ({} requests)", settings.samples),
            format!("p99 ≤ {VIEW_TARGET_MS:.0} ms"),
            latency_and_size(at_full),
            format!(
                "/health {}; 0 resources {}{}",
                latency_and_size(&full.health),
                latency_and_size(at_empty),
                at_thousand
                    .map(|c| format!("; 1,000 resources {}", latency_and_size(&c)))
                    .unwrap_or_default()
            ),
            at_full.latency.p99_ms <= VIEW_TARGET_MS,
        );
    }
    section.context(
        format!("GET /v1/resource-definitions at {resources}"),
        latency_and_size(&full.definitions),
        format!(
            "0 resources {}{}",
            latency_and_size(&empty.definitions),
            at_1000
                .as_ref()
                .map(|c| format!("; 1,000 resources {}", latency_and_size(&c.definitions)))
                .unwrap_or_default()
        ),
    );
    section.context(
        "store size",
        format!("{} in {} rows", stats::bytes(floor.file_bytes), floor.rows),
        "—",
    );
    section.note(format!(
        "Replicas per node: {}; all {} volumes UpToDate.",
        replicas.spread(),
        replicas.total()
    ));
    section.note(format!(
        "Creation curve (resources: rate, spawn p99, RSS): {}.",
        filled.curve()
    ));
    if filled.unconfirmed() > 0 {
        section.note(format!(
            "{} spawn answers carried a warning that a satellite had not confirmed in time.",
            filled.unconfirmed()
        ));
    }
    Ok(section)
}

fn memory_baseline(empty: &Checkpoint, at_1000: Option<&Checkpoint>) -> String {
    let mut text = format!("0 resources: {:.1} MiB", empty.memory.rss_mib());
    if let Some(c) = at_1000 {
        text.push_str(&format!("; 1,000: {:.1} MiB", c.memory.rss_mib()));
    }
    text
}
