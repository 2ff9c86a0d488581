//! Phase S: one satellite's answer to a full state, in this process. A restarted controller
//! sends every node its full state at once; at 100,000 resource definitions × 2 on 16 nodes
//! that is 12,500 resources per node, and a node that holds them already answers from its
//! last pass (`Reconciler::holds_already`). Timed here: the state decoded from its wire form
//! (the `ApplyState` frame the controller sends) and applied by the real reconciler, on a fake
//! host with a FILE_THIN pool, to the `Applied` answer encoded.
//!
//! Baseline, in the same run on the same node: the full pass over the same volumes (what a full
//! state cost before a held one was answered from the last pass, and what the periodic pass and
//! a changed full state still cost).
//!
//! Then the node runs as a satellite does (`Reconciler::run`), and a delta creating one
//! resource is timed from its event to its answer while a full pass is under way (started
//! [`DELTA_INTO_PASS`] before the delta), against the same delta on an idle node: a pass in
//! slices answers it between two of them, where a pass at once made it wait for the rest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrite_proto::{
    ControllerMessage, DesiredState, PoolSpec, ResourceSpec, SatelliteMessage, VolumeSpec,
};
use ferrite_satellite::persist::StateDir;
use ferrite_satellite::reconciler::{Event, PASS_SLICE, Reconciler};
use ferrite_storage::fake::FakeHost;
use ferrite_storage::{ProviderOptions, ProviderSupport, Providers};
use ferrite_types::{LayerKind, ProviderKind};

use super::{Settings, spread};
use crate::report::{Row, Section, Verdict};
use crate::stats::Summary;

/// Full states answered (and full passes timed) per run.
const SAMPLES: usize = 7;

/// How long after the start of a full pass the delta timed during it comes.
const DELTA_INTO_PASS: Duration = Duration::from_millis(50);

/// The full state of a node with `resources` unreplicated resources of one 4 KiB volume each
/// in the FILE_THIN pool at `pool_dir`, stamped `generation`.
fn full_state(pool_dir: &str, resources: usize, generation: u64) -> DesiredState {
    let pool = PoolSpec {
        name: "files".into(),
        uuid: "bench-pool-files".into(),
        provider_kind: ProviderKind::FileThin,
        pool_name: pool_dir.into(),
        props: BTreeMap::new(),
    };
    let resources = (0..resources)
        .map(|i| {
            let name = format!("bench-{i:06}");
            ResourceSpec {
                replication: None,
                snapshots: Vec::new(),
                suspend_io: false,
                uuid: format!("rsc-{name}"),
                layers: vec![LayerKind::Storage],
                diskless: false,
                deleting: false,
                inactive: false,
                volumes: vec![VolumeSpec {
                    minor: None,
                    restore_from: None,
                    volume_number: 0,
                    identity: format!("vd-{name}-0"),
                    size_kib: 4,
                    storage_pool: "files".into(),
                    deleting: false,
                }],
                name,
            }
        })
        .collect();
    DesiredState {
        epoch: 0,
        generation,
        base_generation: None,
        storage_pools: vec![pool],
        resources,
        removed_resources: Vec::new(),
    }
}

/// Decodes `frame` as the satellite's server does, applies it and encodes the answer.
fn answer(reconciler: &mut Reconciler, frame: &[u8]) -> Result<usize> {
    let ControllerMessage::ApplyState(state) = serde_json::from_slice(frame)? else {
        bail!("the frame is not an ApplyState");
    };
    let answer = reconciler.apply(state);
    if !matches!(answer, SatelliteMessage::Applied { .. }) {
        bail!("the node did not take its full state: {answer:?}");
    }
    Ok(serde_json::to_vec(&answer)?.len())
}

pub fn run(settings: &Settings, resources: usize) -> Result<Section> {
    let dir = tempfile::Builder::new()
        .prefix("ferrite-bench-satellite-")
        .tempdir_in(&settings.work_dir)?;
    let pool_dir = dir.path().join("pool");
    let state_path = dir.path().join("state");
    std::fs::create_dir_all(&pool_dir)?;
    std::fs::create_dir_all(&state_path)?;
    let pool_dir = pool_dir
        .to_str()
        .context("a UTF-8 work directory")?
        .to_string();
    let host = Arc::new(FakeHost::new());
    let providers = Arc::new(Providers::new(host, ProviderOptions::default()));
    let support = ProviderSupport {
        supported: ProviderKind::ALL.to_vec(),
        unsupported: BTreeMap::new(),
    };
    let mut reconciler = Reconciler::load(
        "bench".into(),
        Arc::new(StateDir::open(&state_path)?),
        providers,
        support,
    )?;

    let mut generation = 1;
    let created = Instant::now();
    let first = serde_json::to_vec(&ControllerMessage::ApplyState(full_state(
        &pool_dir, resources, generation,
    )))?;
    answer(&mut reconciler, &first)?;
    eprintln!(
        "[satellite] {resources} volumes created in {} ms; frame {} KiB",
        crate::stats::ms(created.elapsed().as_secs_f64() * 1e3),
        first.len() / 1024
    );

    let mut held = Vec::new();
    let mut passes = Vec::new();
    let mut sliced = Vec::new();
    let mut answer_bytes = 0;
    for _ in 0..SAMPLES {
        generation += 1;
        let frame = serde_json::to_vec(&ControllerMessage::ApplyState(full_state(
            &pool_dir, resources, generation,
        )))?;
        let started = Instant::now();
        answer_bytes = answer(&mut reconciler, &frame)?;
        held.push(started.elapsed());
        let started = Instant::now();
        let report = reconciler.converge();
        passes.push(started.elapsed());
        if report.volumes.len() != resources {
            bail!(
                "the full pass reported {} volumes of {resources}",
                report.volumes.len()
            );
        }
        // The periodic pass, in slices, with nothing between them: what slicing costs.
        let started = Instant::now();
        reconciler.begin_sliced_pass();
        while reconciler.converge_slice(PASS_SLICE) {}
        sliced.push(started.elapsed());
    }
    let held = Summary::of(&held);
    let passes = Summary::of(&passes);
    let sliced = Summary::of(&sliced);
    eprintln!(
        "[satellite] full state held: {}; full pass: {}; in slices: {}",
        spread(&held),
        spread(&passes),
        spread(&sliced)
    );
    let (idle, in_pass) = deltas_during_passes(
        reconciler,
        &pool_dir,
        generation,
        Duration::from_secs_f64(passes.max_ms / 1e3),
    )?;
    let idle = Summary::of(&idle);
    let in_pass = Summary::of(&in_pass);
    eprintln!(
        "[satellite] a delta during a full pass: {}; on an idle node: {}",
        spread(&in_pass),
        spread(&idle)
    );

    let mut section = Section::new(format!(
        "Phase S — one satellite answering its full state of {resources} resources"
    ));
    section.intro(format!(
        "The real reconciler on a fake host (FILE_THIN pool, 4 KiB volumes), in this process. A full state with the content the node holds, under a new generation, as a restarted controller sends it: decoded from its frame ({} KiB), applied, and its answer encoded ({} KiB). Baseline: the full pass over the same volumes, right after each answer.",
        first.len() / 1024,
        answer_bytes / 1024
    ));
    section.rows.push(Row {
        measure: format!("full state held, {resources} resources: decode, apply, answer"),
        target: "—".into(),
        measured: format!(
            "p50 {} / max {} ms (n={})",
            crate::stats::ms(held.p50_ms),
            crate::stats::ms(held.max_ms),
            held.count
        ),
        baseline: format!(
            "full pass: p50 {} / max {} ms (n={})",
            crate::stats::ms(passes.p50_ms),
            crate::stats::ms(passes.max_ms),
            passes.count
        ),
        verdict: Verdict::Context,
    });
    section.rows.push(Row {
        measure: format!(
            "full pass of {resources} in slices of {} ms, nothing between them",
            PASS_SLICE.as_millis()
        ),
        target: "—".into(),
        measured: format!(
            "p50 {} / max {} ms (n={})",
            crate::stats::ms(sliced.p50_ms),
            crate::stats::ms(sliced.max_ms),
            sliced.count
        ),
        baseline: format!(
            "the same pass at once: p50 {} / max {} ms (n={})",
            crate::stats::ms(passes.p50_ms),
            crate::stats::ms(passes.max_ms),
            passes.count
        ),
        verdict: Verdict::Context,
    });
    section.rows.push(Row {
        measure: format!(
            "a delta creating one resource, {} ms into a full pass of {resources}",
            DELTA_INTO_PASS.as_millis()
        ),
        target: "—".into(),
        measured: format!(
            "p50 {} / max {} ms (n={})",
            crate::stats::ms(in_pass.p50_ms),
            crate::stats::ms(in_pass.max_ms),
            in_pass.count
        ),
        baseline: format!(
            "the same delta on an idle node: p50 {} / max {} ms (n={})",
            crate::stats::ms(idle.p50_ms),
            crate::stats::ms(idle.max_ms),
            idle.count
        ),
        verdict: Verdict::Context,
    });
    if settings.keep {
        let kept = dir.keep();
        eprintln!("[satellite] kept {}", kept.display());
    }
    Ok(section)
}

/// Runs `reconciler` as a satellite does and times deltas, each creating one resource: on an
/// idle node, and [`DELTA_INTO_PASS`] into a full pass (whose longest takes `pass`). Returns
/// both sets of answer times.
fn deltas_during_passes(
    reconciler: Reconciler,
    pool_dir: &str,
    mut generation: u64,
    pass: Duration,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (events, receiver) = std::sync::mpsc::channel();
    // No periodic pass of its own: the passes are the ones asked for here.
    let running = std::thread::spawn(move || reconciler.run(receiver, Duration::from_secs(86400)));
    let result = (|| {
        // Its first pass, at start, is over once it answers.
        let (reply, answer) = tokio::sync::oneshot::channel();
        events.send(Event::Held {
            node_uuid: String::new(),
            reply,
        })?;
        answer.blocking_recv()?;
        let mut idle = Vec::new();
        let mut in_pass = Vec::new();
        for i in 0..SAMPLES {
            idle.push(timed_delta(
                &events,
                pool_dir,
                &mut generation,
                &format!("idle-{i}"),
            )?);
            events.send(Event::Converge)?;
            std::thread::sleep(DELTA_INTO_PASS);
            in_pass.push(timed_delta(
                &events,
                pool_dir,
                &mut generation,
                &format!("pass-{i}"),
            )?);
            // The rest of the pass, with room to spare.
            std::thread::sleep(pass * 2);
        }
        Ok((idle, in_pass))
    })();
    let _ = events.send(Event::Shutdown);
    running
        .join()
        .map_err(|_| anyhow::anyhow!("the reconciler's thread panicked"))?;
    result
}

/// Sends a delta creating resource `bench-<suffix>` on top of `generation` and waits for its
/// answer; returns how long that took.
fn timed_delta(
    events: &Sender<Event>,
    pool_dir: &str,
    generation: &mut u64,
    suffix: &str,
) -> Result<Duration> {
    let mut state = full_state(pool_dir, 1, *generation + 1);
    state.base_generation = Some(*generation);
    let name = format!("bench-{suffix}");
    for resource in &mut state.resources {
        resource.uuid = format!("rsc-{name}");
        for volume in &mut resource.volumes {
            volume.identity = format!("vd-{name}-0");
        }
        resource.name = name.clone();
    }
    let (reply, mut answer) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    events.send(Event::Apply { state, reply })?;
    let message = answer
        .blocking_recv()
        .context("the reconciler dropped the delta")?;
    let took = started.elapsed();
    if !matches!(message, SatelliteMessage::Applied { .. }) {
        bail!("the node did not take the delta: {message:?}");
    }
    *generation += 1;
    Ok(took)
}
