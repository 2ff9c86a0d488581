//! Phase C: a `DrbdOptions/*` change above the resources with 10,000 replicated resources.
//! The simulated nodes run DRBD as a dry run here (`crate::simulated::Layers::DrbdDryRun`:
//! each satellite writes every member's resource file and logs drbdadm's command lines), and
//! the group forces DRBD (`Ferrite/ReplicationEngine`), so every definition is replicated (two
//! replicas and a tiebreaker) and a controller or resource-group option reaches every member:
//! the change is planned, committed, and a delta of every touched resource is pushed to and
//! applied by every node before the answer.
//!
//! Baseline, in the same run on the same cluster: the same call setting a property that feeds
//! no satellite (`Aux/*`), which is committed alike but touches no resource.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::json;

use super::{FillPlan, Settings, fill, spread};
use crate::controller::{ControllerUnderTest, Stop};
use crate::report::Section;
use crate::simulated::{Layers, SimulatedNodes};
use crate::stats::Summary;
use crate::workload::{self, NodeSpec, RESOURCE_GROUP};

/// What a change above the resources may take at 10,000 replicated resources.
pub const OPTION_CHANGE_TARGET_MS: f64 = 1000.0;

/// Changes timed per kind.
const CHANGES: usize = 5;

/// Times `CHANGES` calls of `call(i)`, each checked for success.
fn time_changes(
    controller: &ControllerUnderTest,
    what: &str,
    call: impl Fn(&ferrite_testkit::Rest, usize) -> Result<ferrite_testkit::Reply>,
) -> Result<Summary> {
    let rest = controller.rest();
    let mut samples = Vec::new();
    for i in 0..CHANGES {
        let started = Instant::now();
        let reply = call(&rest, i)?;
        samples.push(started.elapsed());
        reply.expect_success()?;
    }
    let summary = Summary::of(&samples);
    eprintln!("[options] {what}: {}", spread(&summary));
    Ok(summary)
}

pub fn run(settings: &Settings, resources: usize) -> Result<Section> {
    let phase_started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("ferrite-bench-options-")
        .tempdir_in(&settings.work_dir)?;
    let mut controller = ControllerUnderTest::new(&settings.binaries.controller, dir.path());
    controller.start(0)?;
    let nodes = SimulatedNodes::start(settings.nodes, dir.path(), Layers::DrbdDryRun)?;
    let specs: Vec<NodeSpec> = nodes
        .nodes
        .iter()
        .map(|n| NodeSpec {
            name: n.name.clone(),
            address: n.address,
            pool_dir: n.pool_dir.display().to_string(),
        })
        .collect();
    let rest = controller.rest();
    // 7,500 members per node: more ports than LINSTOR's default range of 1,000.
    rest.post(
        "/v1/controller/properties",
        &json!({"override_props": {"TcpPortAutoRange": "7000-29999", "MinorNrAutoRange": "1000-49999"}}),
    )?
    .expect_success()?;
    workload::set_up_cluster(&rest, &specs)?;
    rest.put(
        &format!("/v1/resource-groups/{RESOURCE_GROUP}"),
        &json!({
            "select_filter": {"layer_stack": ["DRBD", "STORAGE"]},
            "override_props": {"Ferrite/ReplicationEngine": "drbd"}
        }),
    )?
    .expect_success()?;
    controller.wait_online(settings.nodes, Duration::from_secs(30))?;
    let filled = fill(
        "options",
        &controller,
        settings,
        &FillPlan {
            total: resources,
            window: (resources / 10).max(100),
            single_tail: 0,
            checkpoint_at: &[],
            budget: None,
        },
    )?;
    let view = controller.reader().get_ok("/v1/view/resources")?;
    let members = workload::Replicas::of(&view.body)?.total();
    ensure!(
        members >= 2 * resources,
        "expected at least {} replicated members, the view lists {members}",
        2 * resources
    );

    let aux_controller = time_changes(&controller, "controller Aux/* (baseline)", |rest, i| {
        rest.post(
            "/v1/controller/properties",
            &json!({"override_props": {"Aux/bench-note": format!("note {i}")}}),
        )
    })?;
    let option_controller = time_changes(&controller, "controller DrbdOptions", |rest, i| {
        rest.post(
            "/v1/controller/properties",
            &json!({"override_props": {"DrbdOptions/PeerDevice/c-max-rate": format!("{}", 102_400 + i)}}),
        )
    })?;
    let group = format!("/v1/resource-groups/{RESOURCE_GROUP}");
    let aux_group = time_changes(&controller, "resource group Aux/* (baseline)", |rest, i| {
        rest.put(
            &group,
            &json!({"override_props": {"Aux/bench-note": format!("note {i}")}}),
        )
    })?;
    let option_group = time_changes(&controller, "resource group DrbdOptions", |rest, i| {
        rest.put(
            &group,
            &json!({"override_props": {"DrbdOptions/Net/ping-timeout": format!("{}", 10 + i)}}),
        )
    })?;
    controller.stop(Stop::Term)?;
    nodes.shutdown();
    if settings.keep {
        eprintln!(
            "[options] kept {} (controller data directory and logs)",
            dir.keep().display()
        );
    }

    let mut section = Section::new(format!(
        "Phase C — a DRBD option above {resources} replicated resource definitions, {} simulated satellites",
        settings.nodes
    ));
    section.intro(format!(
        "Satellites: **simulated nodes in-process** (real satellites on fake hosts), running DRBD as a dry run, so every definition has two replicas and a tiebreaker ({members} members). \
         Each figure is {CHANGES} sequential calls, each answered once every touched node applied it. Phase wall time: {:.0} s.",
        phase_started.elapsed().as_secs_f64()
    ));
    section.target(
        "`controller set-property DrbdOptions/PeerDevice/c-max-rate` (every member)",
        format!("≤ {OPTION_CHANGE_TARGET_MS:.0} ms"),
        spread(&option_controller),
        format!(
            "`Aux/*` on the controller (no member): {}",
            spread(&aux_controller)
        ),
        option_controller.max_ms <= OPTION_CHANGE_TARGET_MS,
    );
    section.target(
        "`resource-group set-property DrbdOptions/Net/ping-timeout` (every member)",
        format!("≤ {OPTION_CHANGE_TARGET_MS:.0} ms"),
        spread(&option_group),
        format!("`Aux/*` on the group (no member): {}", spread(&aux_group)),
        option_group.max_ms <= OPTION_CHANGE_TARGET_MS,
    );
    section.note(format!(
        "Creation of the {resources} replicated definitions: {:.0}/s.",
        filled.rate(true)
    ));
    Ok(section)
}
