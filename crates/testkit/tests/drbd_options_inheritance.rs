//! `DrbdOptions/*` set above the resource (the controller, a resource group, a volume group, a
//! node) reach the satellites at once: every node of a replicated resource rewrites its
//! resource file with the new option within a few seconds, and drbd-utils still accepts the
//! file; the MIRROR engine's configuration, made from the same options, follows as well.
//!
//! The DRBD part runs dry-run satellites (`--drbd-dry-run`) and needs root and drbd-utils, as
//! `drbd_dry_run` does; the MIRROR part needs root (loop devices). Each is skipped with the
//! reason otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferrite_testkit::{Cluster, Rest, drbd, is_root, wait_until};
use serde_json::{Value, json};

const RESOURCE: &str = "opts_res";
/// How soon a property set above the resource must be in every member's configuration: one
/// push, no periodic resend.
const REACH: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(60);

/// drbdadm, as `node` would run it, accepts `file` (`dump` and `-d adjust`).
fn drbdadm_accepts(node: &str, file: &Path) -> Result<()> {
    drbd::drbdadm_accepts(node, file, RESOURCE, &["dump", "-d adjust"]).map(|_| ())
}

/// The nodes holding [`RESOURCE`].
fn members(rest: &Rest) -> Result<Vec<String>> {
    Ok(rest
        .get(&format!("/v1/view/resources?resources={RESOURCE}"))?
        .json
        .as_array()
        .context("resources")?
        .iter()
        .filter_map(|r| r["node_name"].as_str().map(str::to_string))
        .collect())
}

/// Spawns [`RESOURCE`] from `group`: two replicas on `pool` and the tiebreaker the controller
/// adds.
fn spawn(rest: &Rest, group: &str, pool: &str, size_kib: u64) -> Result<Vec<String>> {
    rest.post(
        "/v1/resource-groups",
        &json!({"name": group, "select_filter": {"place_count": 2, "storage_pool_list": [pool], "layer_stack": ["DRBD", "STORAGE"]}}),
    )?
    .expect_success()?;
    rest.post(
        &format!("/v1/resource-groups/{group}/volume-groups"),
        &json!({}),
    )?
    .expect_success()?;
    rest.post(
        &format!("/v1/resource-groups/{group}/spawn"),
        &json!({"resource_definition_name": RESOURCE, "volume_sizes": [size_kib]}),
    )?
    .expect_success()?;
    let members = members(rest)?;
    assert_eq!(
        members.len(),
        3,
        "two replicas and a tiebreaker: {members:?}"
    );
    Ok(members)
}

/// Waits until `check` holds for the text of every member's file, and says how long it took.
fn wait_every_file(
    files: &[(String, std::path::PathBuf)],
    within: Duration,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> Result<Duration> {
    let started = Instant::now();
    let mut last = Vec::new();
    wait_until(within, || {
        last = files
            .iter()
            .map(|(node, path)| {
                (
                    node.clone(),
                    std::fs::read_to_string(path).unwrap_or_default(),
                )
            })
            .collect();
        Ok(last.iter().all(|(_, text)| check(text)))
    })
    .with_context(|| {
        let failing: Vec<String> = last
            .iter()
            .filter(|(_, text)| !check(text))
            .map(|(node, text)| format!("{node}:\n{text}"))
            .collect();
        format!(
            "{what} within {within:?}; not yet on:\n{}",
            failing.join("\n")
        )
    })?;
    Ok(started.elapsed())
}

#[test]
fn drbd_options_set_above_the_resource_reach_every_resource_file() -> Result<()> {
    if let Some(why) = drbd::drbdadm_unavailable() {
        eprintln!("skipped: {why}");
        return Ok(());
    }
    let cluster = Cluster::start_with(3, &["--drbd-dry-run", "--reconcile-interval", "2"])?;
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool_ssd")?;
    rest.post(
        "/v1/controller/properties",
        &json!({"override_props": {"Ferrite/ReplicationEngine": "drbd"}}),
    )?
    .expect_success()?;
    let nodes = spawn(&rest, "opts_group", "pool_ssd", 64 * 1024)?;
    let files: Vec<(String, std::path::PathBuf)> = nodes
        .iter()
        .map(|node| {
            (
                node.clone(),
                cluster
                    .satellite(node)
                    .drbd_resource_dir()
                    .join(format!("{RESOURCE}.res")),
            )
        })
        .collect();
    wait_every_file(&files, WAIT, "every member's file", |text| {
        nodes.iter().all(|n| text.contains(&format!("on \"{n}\"")))
    })?;
    let accepted = || -> Result<()> {
        for (node, path) in &files {
            drbdadm_accepts(node, path)?;
        }
        Ok(())
    };

    // The resource group's option.
    rest.put(
        "/v1/resource-groups/opts_group",
        &json!({"override_props": {"DrbdOptions/Net/max-buffers": "8000"}}),
    )?
    .expect_success()?;
    let took = wait_every_file(&files, REACH, "the group's max-buffers", |text| {
        text.contains("max-buffers 8000;")
    })?;
    eprintln!("resource group option on every node after {took:?}");
    accepted()?;

    // The controller's.
    rest.post(
        "/v1/controller/properties",
        &json!({"override_props": {"DrbdOptions/PeerDevice/c-max-rate": "200M"}}),
    )?
    .expect_success()?;
    let took = wait_every_file(&files, REACH, "the controller's c-max-rate", |text| {
        text.contains("c-max-rate 200M;") && text.contains("max-buffers 8000;")
    })?;
    eprintln!("controller option on every node after {took:?}");
    accepted()?;

    // The volume group's, in each volume's disk section.
    rest.put(
        "/v1/resource-groups/opts_group/volume-groups/0",
        &json!({"override_props": {"DrbdOptions/Disk/al-extents": "6007"}}),
    )?
    .expect_success()?;
    let took = wait_every_file(&files, REACH, "the volume group's al-extents", |text| {
        text.contains("al-extents 6007;")
    })?;
    eprintln!("volume group option on every node after {took:?}");
    accepted()?;

    // A resource's own wins over the volume group's in its volumes' `disk`, as in LINSTOR.
    let own = &nodes[1];
    rest.put(
        &format!("/v1/resource-definitions/{RESOURCE}/resources/{own}"),
        &json!({"override_props": {"DrbdOptions/Disk/al-extents": "1237"}}),
    )?
    .expect_success()?;
    wait_every_file(&files[1..2], REACH, "the resource's al-extents", |text| {
        text.contains("al-extents 1237;") && !text.contains("al-extents 6007;")
    })?;
    for (other, path) in files.iter().filter(|(n, _)| n != own) {
        let text = std::fs::read_to_string(path)?;
        assert!(!text.contains("al-extents 1237;"), "{other}: {text}");
    }
    accepted()?;

    // A node's, in that node's file only.
    let node = &nodes[0];
    rest.put(
        &format!("/v1/nodes/{node}"),
        &json!({"override_props": {"DrbdOptions/Net/max-epoch-size": "4000"}}),
    )?
    .expect_success()?;
    wait_every_file(&files[..1], REACH, "the node's max-epoch-size", |text| {
        text.contains("max-epoch-size 4000;")
    })?;
    for (other, path) in &files[1..] {
        let text = std::fs::read_to_string(path)?;
        assert!(!text.contains("max-epoch-size"), "{other}: {text}");
    }
    accepted()?;

    // Deleting the controller's and the group's takes them out again.
    rest.delete("/v1/controller/properties/DrbdOptions/PeerDevice/c-max-rate")?
        .expect_success()?;
    rest.put(
        "/v1/resource-groups/opts_group",
        &json!({"delete_props": ["DrbdOptions/Net/max-buffers"]}),
    )?
    .expect_success()?;
    wait_every_file(&files, REACH, "the deletions", |text| {
        !text.contains("c-max-rate") && !text.contains("max-buffers")
    })?;
    accepted()?;
    Ok(())
}

/// The options the MIRROR engine runs `node`'s member with, from its configuration file.
fn mirror_options(cluster: &Cluster, node: &str) -> Result<Value> {
    let path = cluster
        .satellite(node)
        .state_dir
        .join("mirror")
        .join("resources")
        .join(format!("{RESOURCE}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let config: Value = serde_json::from_str(&text)?;
    Ok(config["options"].clone())
}

#[test]
fn drbd_options_set_above_the_resource_reach_every_mirror_member() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: the satellites attach loop devices, which needs root");
        return Ok(());
    }
    let cluster = Cluster::start_with(3, &["--reconcile-interval", "2"])?;
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool")?;
    let nodes = spawn(&rest, "mirror_opts", "pool", 16 * 1024)?;
    wait_until(WAIT, || {
        Ok(nodes.iter().all(|n| mirror_options(&cluster, n).is_ok()))
    })
    .context("every member's MIRROR configuration")?;

    let reach = |what: &str, check: &dyn Fn(&Value) -> bool| -> Result<Duration> {
        let started = Instant::now();
        let mut last = Vec::new();
        wait_until(REACH, || {
            last = nodes
                .iter()
                .map(|n| mirror_options(&cluster, n).unwrap_or_default())
                .collect();
            Ok(last.iter().all(check))
        })
        .with_context(|| format!("{what} within {REACH:?}: {last:?}"))?;
        Ok(started.elapsed())
    };
    // MIRROR takes c-max-rate in KiB/s, without DRBD's unit suffixes.
    rest.post(
        "/v1/controller/properties",
        &json!({"override_props": {"DrbdOptions/PeerDevice/c-max-rate": "204800"}}),
    )?
    .expect_success()?;
    let took = reach("the controller's c-max-rate", &|options| {
        options["c_max_rate_kib"] == 204_800
    })?;
    eprintln!("controller option in every MIRROR member after {took:?}");

    rest.put(
        "/v1/resource-groups/mirror_opts",
        &json!({"override_props": {"DrbdOptions/PeerDevice/c-max-rate": "51200"}}),
    )?
    .expect_success()?;
    let took = reach("the group's c-max-rate", &|options| {
        options["c_max_rate_kib"] == 51_200
    })?;
    eprintln!("resource group option in every MIRROR member after {took:?}");
    Ok(())
}
