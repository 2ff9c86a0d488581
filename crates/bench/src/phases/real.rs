//! Phase A: a release-built controller and real `ferrite-satellite` processes, each with a
//! FILE_THIN pool in the phase's temporary directory; every replica is a sparse file attached
//! to a loop device. Filled to 1,000 resources, measured, restarted, then torn down.
//!
//! Loop devices: only those whose backing file is under this phase's directory are counted
//! and, at the end, detached; other users of loop devices on the host are left alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use ferrite_testkit::{SatelliteProcess, is_root, loop_devices_under};

use super::{FillPlan, Restarts, Settings, fill, latency_and_size, restarts};
use crate::controller::{ControllerUnderTest, Stop};
use crate::probe;
use crate::report::Section;
use crate::stats;
use crate::workload::{self, NodeSpec};

/// Detaches, when dropped, the loop devices whose backing files are under its directory.
struct LoopDevices(PathBuf);

impl LoopDevices {
    fn attached(&self) -> usize {
        loop_devices_under(&self.0).len()
    }
}

impl Drop for LoopDevices {
    fn drop(&mut self) {
        let left = loop_devices_under(&self.0);
        if !left.is_empty() {
            eprintln!(
                "[real] detaching {} loop devices under {}",
                left.len(),
                self.0.display()
            );
        }
        for device in left {
            let _ = Command::new("losetup").args(["-d", &device]).status();
        }
    }
}

/// Times `program args` `repeats` times (the satellite runs one such process per query).
fn time_command(program: &str, args: &[&str], repeats: usize) -> Result<stats::Summary> {
    let mut samples = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let started = Instant::now();
        let output = Command::new(program).args(args).output()?;
        ensure!(output.status.success(), "{program} {args:?} failed");
        samples.push(started.elapsed());
    }
    Ok(stats::Summary::of(&samples))
}

/// What asking the host about loop devices costs with the phase's devices attached: the
/// per-file query (`losetup --associated FILE`) and the whole table (`losetup --list`), which
/// FILE and FILE_THIN satellites use to find a volume's device; and a process that does nothing,
/// as their floor.
struct LoopQueryCost {
    per_file: stats::Summary,
    table: stats::Summary,
    floor: stats::Summary,
}

fn loop_query_cost(pools: &Path) -> Result<Option<LoopQueryCost>> {
    let image = std::fs::read_dir(pools)?
        .flatten()
        .filter_map(|node| std::fs::read_dir(node.path()).ok())
        .flat_map(|files| files.flatten())
        .map(|f| f.path())
        .find(|p| p.extension().is_some_and(|e| e == "img"));
    let Some(image) = image else {
        return Ok(None);
    };
    let image = image.to_string_lossy().into_owned();
    Ok(Some(LoopQueryCost {
        per_file: time_command(
            "losetup",
            &[
                "--list",
                "--json",
                "--output",
                "NAME",
                "--associated",
                &image,
            ],
            20,
        )?,
        table: time_command(
            "losetup",
            &["--list", "--json", "--output", "NAME,BACK-FILE"],
            20,
        )?,
        floor: time_command("true", &[], 20)?,
    }))
}

fn pool_dir(dir: &Path, node: &str) -> Result<PathBuf> {
    let pool = dir.join("pools").join(node);
    std::fs::create_dir_all(&pool)?;
    Ok(pool)
}

/// Waits until every replica in the view is UpToDate, polling every 100 ms; returns how long
/// that took, or `None` if `budget` passed first, with what the last view said.
fn wait_up_to_date(
    controller: &ControllerUnderTest,
    replicas: usize,
    budget: Duration,
) -> Result<(Option<Duration>, workload::Replicas)> {
    let started = Instant::now();
    loop {
        let view = controller.reader().get_ok("/v1/view/resources")?;
        let seen = workload::Replicas::of(&view.body)?;
        if seen.total() == replicas && seen.not_up_to_date == 0 {
            return Ok((Some(started.elapsed()), seen));
        }
        if started.elapsed() > budget {
            return Ok((None, seen));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn run(settings: &Settings, resources: usize) -> Result<Section> {
    if !is_root() {
        bail!(
            "the real-satellite phase attaches loop devices and needs root; run with --skip-real otherwise"
        );
    }
    let phase_started = Instant::now();
    let tag = "real";
    // Dropped last: the directory goes after its loop devices are detached.
    let dir = tempfile::Builder::new()
        .prefix("ferrite-bench-real-")
        .tempdir_in(&settings.work_dir)?;
    let loops = LoopDevices(dir.path().to_path_buf());
    let mut controller = ControllerUnderTest::new(&settings.binaries.controller, dir.path());
    let empty_start = controller.start(0)?;
    let mut satellites = Vec::new();
    for i in 1..=settings.nodes {
        satellites.push(SatelliteProcess::start(
            &settings.binaries,
            dir.path(),
            &format!("node{i}"),
        )?);
    }
    let specs = satellites
        .iter()
        .map(|s| {
            Ok(NodeSpec {
                name: s.name.clone(),
                address: s.address,
                pool_dir: pool_dir(dir.path(), &s.name)?
                    .to_string_lossy()
                    .into_owned(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    workload::set_up_cluster(&controller.rest(), &specs)?;
    controller.wait_online(settings.nodes, Duration::from_secs(30))?;
    probe::settle();
    let empty = probe::checkpoint(&controller, settings.sampling(), 0)?;

    let single_tail = (resources / 10).max(1);
    let filled = fill(
        tag,
        &controller,
        settings,
        &FillPlan {
            total: resources,
            window: (resources / 20).max(1),
            single_tail,
            checkpoint_at: &[],
            budget: Some(settings.real_budget),
        },
    )?;
    let reached = filled.reached;
    let (converged, replicas) =
        wait_up_to_date(&controller, 2 * reached, settings.real_budget / 2)?;
    match converged {
        Some(after) => eprintln!(
            "[{tag}] all {} replicas UpToDate {:.1} s after the last spawn answered",
            2 * reached,
            after.as_secs_f64()
        ),
        None => eprintln!(
            "[{tag}] {} volumes still not UpToDate after {:.0} s",
            replicas.not_up_to_date,
            (settings.real_budget / 2).as_secs_f64()
        ),
    }
    let attached = loops.attached();
    let loop_query = loop_query_cost(&dir.path().join("pools"))?;
    eprintln!("[{tag}] {attached} loop devices attached under the phase directory");
    probe::settle();
    let full = probe::checkpoint(&controller, settings.sampling(), reached)?;

    let restart = Restarts::of(&restarts(
        tag,
        &mut controller,
        Stop::Term,
        1,
        settings.nodes,
    )?);

    let teardown = workload::delete_resources(
        &controller.rest(),
        0..reached,
        settings.clients,
        Some(Instant::now() + settings.real_budget / 2),
    )?;
    eprintln!(
        "[{tag}] deleted {} of {reached} resource definitions: {:.1}/s, {}",
        teardown.requests,
        teardown.per_second(),
        stats::Summary::of(&teardown.latencies)
    );
    let left_after_delete = loops.attached();
    // The volumes' files; each pool's marker file stays with the pool.
    let files_left = std::fs::read_dir(dir.path().join("pools"))?
        .flatten()
        .filter_map(|node| std::fs::read_dir(node.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|file| file.file_name() != ferrite_storage::MARKER_FILE)
        .count();
    drop(satellites);
    drop(controller);
    drop(loops);
    let left_at_end = loop_devices_under(dir.path()).len();
    ensure!(
        left_at_end == 0,
        "{left_at_end} loop devices under {} could not be detached",
        dir.path().display()
    );
    if settings.keep {
        eprintln!(
            "[{tag}] kept {} (controller data directory, logs, satellite state)",
            dir.keep().display()
        );
    }

    let mut section = Section::new(format!(
        "Phase A — {reached} of {resources} resource definitions × 2 replicas, {} real satellites",
        settings.nodes
    ));
    section.intro(format!(
        "Satellites: **real `ferrite-satellite` processes** (release build), one FILE_THIN pool each in a temporary directory; every replica a sparse {} KiB file on a loop device. \
         Clients: {} concurrent, then up to {single_tail} from 1 client. Time budget for creating: {:.0} s (80 % concurrent, 20 % single client); \
         for convergence and for teardown: {:.0} s each. Phase wall time: {:.0} s.",
        settings.volume_kib,
        settings.clients,
        settings.real_budget.as_secs_f64(),
        (settings.real_budget / 2).as_secs_f64(),
        phase_started.elapsed().as_secs_f64()
    ));
    if filled.stopped_early {
        section.intro(format!(
            "**The budget ran out at {reached} of {resources} resources**: creation slows down as the cluster grows (see the curve below and docs/benchmarks.md)."
        ));
    }
    let first = &filled.windows[0];
    let last_concurrent = filled.last_concurrent();
    section.context(
        format!("creation throughput, {} clients (spawn)", settings.clients),
        format!(
            "{:.2} resources/s overall ({:.0} s)",
            filled.rate(true),
            filled.total_elapsed().as_secs_f64()
        ),
        format!(
            "first {} into an empty cluster: {:.2}/s; last window (up to {}): {:.2}/s",
            first.upto,
            first.batch.per_second(),
            last_concurrent.map(|w| w.upto).unwrap_or(0),
            last_concurrent.map(|w| w.batch.per_second()).unwrap_or(0.0)
        ),
    );
    section.context(
        "creation throughput, 1 client (spawn)",
        format!(
            "{:.2} resources/s ({} resources)",
            filled.rate(false),
            filled
                .windows
                .iter()
                .filter(|w| w.batch.clients == 1)
                .map(|w| w.batch.requests)
                .sum::<usize>()
        ),
        format!(
            "{} clients just before: {:.2}/s",
            settings.clients,
            last_concurrent.map(|w| w.batch.per_second()).unwrap_or(0.0)
        ),
    );
    section.context(
        format!("spawn latency, {} clients", settings.clients),
        filled.latency(true).to_string(),
        format!("GET /health: {}", empty.health.latency),
    );
    section.context(
        "spawn latency, 1 client",
        filled.latency(false).to_string(),
        format!("GET /health at {reached}: {}", full.health.latency),
    );
    section.context(
        "spawn answers without satellite confirmation (apply timeout)",
        format!("{}", filled.unconfirmed()),
        "0 expected",
    );
    section.context(
        "last spawn answered → every replica UpToDate",
        match converged {
            Some(after) => format!("{:.1} s", after.as_secs_f64()),
            None => format!(
                "not within {:.0} s: {} volumes not UpToDate",
                (settings.real_budget / 2).as_secs_f64(),
                replicas.not_up_to_date
            ),
        },
        "—",
    );
    if let Some(cost) = &loop_query {
        section.context(
            format!("host: one `losetup --list --associated FILE` with {attached} loop devices"),
            cost.per_file.to_string(),
            format!("fork+exec of `true`: {}", cost.floor),
        );
        section.context(
            format!("host: one `losetup --list` of all {attached} loop devices"),
            cost.table.to_string(),
            format!("fork+exec of `true`: {}", cost.floor),
        );
    }
    section.context(
        "controller CPU while creating",
        format!(
            "{:.1} s CPU in {:.1} s wall",
            filled.controller_cpu,
            filled.total_elapsed().as_secs_f64()
        ),
        "—",
    );
    section.context(
        "loop devices attached (replicas with a block device)",
        format!("{attached}"),
        format!("expected {}", 2 * reached),
    );
    section.context(
        format!("controller RSS at {reached} (VmRSS / VmHWM)"),
        format!(
            "{:.1} / {:.1} MiB",
            full.memory.rss_mib(),
            full.memory.peak_mib()
        ),
        format!("0 resources: {:.1} MiB", empty.memory.rss_mib()),
    );
    section.context(
        format!("GET /v1/view/resources at {reached}"),
        latency_and_size(&full.view),
        format!(
            "/health {}; 0 resources {}",
            latency_and_size(&full.health),
            latency_and_size(&empty.view)
        ),
    );
    section.context(
        format!("GET /v1/resource-definitions at {reached}"),
        latency_and_size(&full.definitions),
        format!("0 resources {}", latency_and_size(&empty.definitions)),
    );
    section.context(
        format!("cold start with {reached} after SIGTERM: exec → /health; → full view"),
        format!(
            "{} ms; {} ms",
            stats::ms(restart.health.mean_ms),
            stats::ms(restart.view.mean_ms)
        ),
        format!(
            "empty store: {} ms; {} ms",
            stats::ms(empty_start.health.as_secs_f64() * 1e3),
            stats::ms(empty_start.view.as_secs_f64() * 1e3)
        ),
    );
    section.context(
        "exec → every node ONLINE again (real satellites re-apply the full state)",
        format!("{} ms", stats::ms(restart.online.mean_ms)),
        "—",
    );
    section.context(
        format!(
            "teardown: DELETE resource definitions, {} clients",
            settings.clients
        ),
        format!(
            "{} of {reached} in {:.0} s: {:.2}/s, {}",
            teardown.requests,
            teardown.elapsed.as_secs_f64(),
            teardown.per_second(),
            stats::Summary::of(&teardown.latencies)
        ),
        format!("creation {:.2}/s", filled.rate(true)),
    );
    section.context(
        "left behind after the deletes (loop devices, backing files)",
        format!("{left_after_delete} loop devices, {files_left} files"),
        format!(
            "expected for {} undeleted: {}, {}",
            reached - teardown.requests,
            2 * (reached - teardown.requests),
            2 * (reached - teardown.requests)
        ),
    );
    section.note(format!("Replicas per node: {}.", replicas.spread()));
    section.note(format!(
        "Creation curve (resources: rate, spawn p99, RSS): {}.",
        filled.curve()
    ));
    section.note(
        "At the end the satellites are stopped and every loop device whose backing file is under the phase directory is detached (none other).",
    );
    Ok(section)
}
