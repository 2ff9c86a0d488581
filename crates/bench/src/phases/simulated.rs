//! Phase B: a release-built controller process and in-process simulated nodes (the real
//! satellite on a fake host, `crate::simulated`); the
//! cluster is filled to 100,000 resource definitions with two replicas each on 16 nodes (the
//! default; both are flags), measured at 1,000, 10,000 and the full count, then restarted
//! (SIGTERM and kill -9) and measured again.

use std::time::Instant;

use anyhow::{Result, ensure};

use super::{FillPlan, Restarts, Settings, fill, latency_and_size, restarts, spread};
use crate::controller::{ControllerUnderTest, Stop};
use crate::probe::{self, Checkpoint, Endpoint, PAGE, Which};
use crate::report::Section;
use crate::simulated::{Layers, SimulatedNodes};
use crate::stats::{self, Summary};
use crate::workload::{self, NodeSpec};

/// Targets of the scale requirement (issue 8: 100,000 definitions × 2 on 16 nodes).
pub const COLD_START_TARGET_MS: f64 = 1000.0;
pub const RSS_TARGET_MIB: f64 = 400.0;
/// `GET /v1/resource-definitions/{name}`, p99.
pub const DEFINITION_TARGET_MS: f64 = 5.0;
/// `POST /v1/resource-groups/{group}/spawn` from 8 clients, p99.
pub const SPAWN_TARGET_MS: f64 = 20.0;
/// `GET /v1/view/resources?limit=1000&offset=K`, p99 at any offset.
pub const PAGE_TARGET_MS: f64 = 50.0;
/// `GET /v1/view/resources`, unpaged, p99.
pub const VIEW_TARGET_MS: f64 = 1500.0;

/// Cluster sizes measured on the way, below the full one.
const CHECKPOINTS: &[usize] = &[1000, 10_000];

pub fn run(settings: &Settings, resources: usize, node_count: usize) -> Result<Section> {
    let phase_started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("ferrite-bench-simulated-")
        .tempdir_in(&settings.work_dir)?;
    let tag = "simulated";
    let mut controller = ControllerUnderTest::new(&settings.binaries.controller, dir.path());
    let empty_start = controller.start(0)?;
    let nodes = SimulatedNodes::start(node_count, dir.path(), Layers::StorageOnly)?;
    let specs: Vec<NodeSpec> = nodes
        .nodes
        .iter()
        .map(|n| NodeSpec {
            name: n.name.clone(),
            address: n.address,
            pool_dir: n.pool_dir.display().to_string(),
        })
        .collect();
    workload::set_up_cluster(&controller.rest(), &specs)?;
    controller.wait_online(node_count, std::time::Duration::from_secs(30))?;

    // Baselines on the cluster with its nodes but no resources.
    probe::settle();
    let empty = probe::checkpoint(&controller, settings.sampling(), 0)?;
    let empty_restart = Restarts::of(&restarts(
        tag,
        &mut controller,
        Stop::Term,
        settings.cold_starts,
        node_count,
    )?);

    let checkpoint_at: Vec<usize> = CHECKPOINTS
        .iter()
        .copied()
        .filter(|&c| c < resources)
        .collect();
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

    probe::settle();
    let after_fill = controller.memory()?;
    let full = probe::checkpoint(&controller, settings.sampling(), resources)?;
    let view = controller.reader().get_ok("/v1/view/resources")?;
    let replicas = workload::Replicas::of(&view.body)?;
    ensure!(
        replicas.total() == 2 * resources && replicas.not_up_to_date == 0,
        "expected {} UpToDate replicas, the view lists {} ({} volumes not UpToDate)",
        2 * resources,
        replicas.total(),
        replicas.not_up_to_date
    );

    let term = Restarts::of(&restarts(
        tag,
        &mut controller,
        Stop::Term,
        settings.cold_starts,
        node_count,
    )?);
    let kill = Restarts::of(&restarts(
        tag,
        &mut controller,
        Stop::Kill,
        settings.cold_starts,
        node_count,
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
        "Phase B — {resources} resource definitions × 2 replicas, {node_count} simulated satellites"
    ));
    section.intro(format!(
        "Satellites: **simulated nodes in-process** ({} real satellites, each on a fake host with a FILE_THIN pool of its own; see docs/benchmarks.md). \
         Controller: release build, its own process. Clients: {} concurrent, the last {single_tail} resources from 1 client. \
         Volumes: 1 × {} KiB each. Phase wall time: {:.0} s.",
        node_count,
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
    let concurrent = filled.latency(true);
    let first_p99 = Summary::of(&first.batch.latencies).p99_ms;
    section.target(
        format!("spawn latency, {} clients, whole run", settings.clients),
        format!("p99 ≤ {SPAWN_TARGET_MS:.0} ms"),
        concurrent.to_string(),
        format!(
            "first window ({}): p99 {} ms; GET /health on the empty cluster: {}",
            first.upto,
            stats::ms(first_p99),
            empty.health.latency
        ),
        concurrent.p99_ms <= SPAWN_TARGET_MS,
    );
    if let Some(last) = last_concurrent {
        let last_latency = Summary::of(&last.batch.latencies);
        section.target(
            format!(
                "spawn latency, {} clients, last window (up to {})",
                settings.clients, last.upto
            ),
            format!("p99 ≤ {SPAWN_TARGET_MS:.0} ms"),
            last_latency.to_string(),
            format!(
                "first window ({}): p99 {} ms",
                first.upto,
                stats::ms(first_p99)
            ),
            last_latency.p99_ms <= SPAWN_TARGET_MS,
        );
    }
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
    // Cost, where latency follows whatever else the two cores are doing: CPU per resource.
    let per_resource = |cpu: f64| 1e3 * cpu / filled.reached.max(1) as f64;
    section.context(
        "CPU per resource created: controller; simulated satellites and clients",
        format!(
            "{:.2} ms; {:.2} ms ({:.1} s CPU)",
            per_resource(filled.controller_cpu),
            per_resource(filled.bench_cpu),
            filled.bench_cpu
        ),
        "—",
    );
    section.target(
        format!("controller RSS with {resources}, after creating them (VmRSS)"),
        format!("≤ {RSS_TARGET_MIB:.0} MiB"),
        format!("{:.1} MiB", after_fill.rss_mib()),
        memory_baseline(&empty, &filled.checkpoints),
        after_fill.rss_mib() <= RSS_TARGET_MIB,
    );
    section.target(
        format!(
            "controller RSS with {resources}, after {} full views (VmRSS)",
            2 * (settings.view_samples + 1)
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
                "empty store: {} ms; {node_count} nodes, 0 resources: {}",
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
            "SQLite integrity check alone (quick_check): {}",
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
    let on_the_way = |pick: &dyn Fn(&Checkpoint) -> Option<Endpoint>| -> String {
        filled
            .checkpoints
            .iter()
            .filter_map(|c| {
                pick(c).map(|e| format!("; {}: {}", c.definitions_count, latency_and_size(&e)))
            })
            .collect()
    };
    if let Some(definition) = &full.definition {
        section.target(
            format!(
                "GET /v1/resource-definitions/{{name}} at {resources} ({} names spread over all)",
                definition.latency.count
            ),
            format!("p99 ≤ {DEFINITION_TARGET_MS:.0} ms"),
            latency_and_size(definition),
            format!(
                "/health {}{}",
                latency_and_size(&full.health),
                on_the_way(&|c| c.definition)
            ),
            definition.latency.p99_ms <= DEFINITION_TARGET_MS,
        );
    }
    // What the unpaged view costs per page's worth of resources: what a page may cost at most
    // if paging skips nothing but serialization.
    let per_page_of_view = full.view.latency.p50_ms * PAGE as f64 / (2 * resources).max(1) as f64;
    for which in [Which::First, Which::Middle, Which::Last] {
        let Some(page) = full.page(which) else {
            continue;
        };
        section.target(
            format!(
                "GET /v1/view/resources?limit={PAGE}&offset={} ({which:?} page) at {resources}",
                page.offset
            ),
            format!("p99 ≤ {PAGE_TARGET_MS:.0} ms"),
            latency_and_size(&page.endpoint),
            format!(
                "unpaged view's p50 per {PAGE}: {} ms; /health p99 {} ms{}",
                stats::ms(per_page_of_view),
                stats::ms(full.health.latency.p99_ms),
                on_the_way(&|c| c.page(which).map(|p| p.endpoint))
            ),
            page.endpoint.latency.p99_ms <= PAGE_TARGET_MS,
        );
    }
    for (label, at_full, at_empty, pick) in [
        (
            "GET /v1/view/resources",
            &full.view,
            &empty.view,
            (&|c: &Checkpoint| Some(c.view)) as &dyn Fn(&Checkpoint) -> Option<Endpoint>,
        ),
        (
            "GET /v1/view/resources?limit=0",
            &full.view_limit0,
            &empty.view_limit0,
            &|c: &Checkpoint| Some(c.view_limit0),
        ),
    ] {
        section.target(
            format!(
                "{label} at {resources} ({} requests)",
                settings.view_samples
            ),
            format!("p99 ≤ {VIEW_TARGET_MS:.0} ms"),
            latency_and_size(at_full),
            format!(
                "/health {}; 0 resources {}{}",
                latency_and_size(&full.health),
                latency_and_size(at_empty),
                on_the_way(pick)
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
            on_the_way(&|c| Some(c.definitions))
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

fn memory_baseline(empty: &Checkpoint, on_the_way: &[Checkpoint]) -> String {
    let mut text = format!("0 resources: {:.1} MiB", empty.memory.rss_mib());
    for c in on_the_way {
        text.push_str(&format!(
            "; {}: {:.1} MiB",
            c.definitions_count,
            c.memory.rss_mib()
        ));
    }
    text
}
