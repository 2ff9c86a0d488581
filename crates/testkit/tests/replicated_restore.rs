//! Restores, rollbacks and clones of a replicated (MIRROR) resource, end to end with real
//! processes: a controller, three satellites with their `ferrite-mirrord`, FILE_THIN pools, and
//! data written and read through the volumes' NBD exports with `nbdcopy`.
//!
//! A 2-replica resource with a diskless tiebreaker holds a pattern; its snapshot is restored
//! into a new definition, whose replicas must come up UpToDate without a resync (the engines'
//! handshakes decide by equal generations) and hold the pattern on every member. The source is
//! cloned (`resource-definition clone`: a snapshot restored on the same nodes, then deleted) with
//! the same outcome. Then a replica
//! added to the restored definition gets a full sync from a restored one. Then the source is
//! overwritten and rolled back: every member reads the snapshot's pattern again, in sync
//! without a resync. Every read checks every byte.

use std::time::Duration;

use anyhow::{Context, Result};
use ferrite_testkit::data::Pattern;
use ferrite_testkit::nbd::{verify_pattern, write_pattern};
use ferrite_testkit::{Cluster, Rest, UNUSED_STEADY, is_root, wait_until, wait_until_steady};
use serde_json::{Value, json};

const SOURCE: &str = "restore_src";
const COPY: &str = "restore_copy";
const CLONE: &str = "restore_clone";
const SIZE_KIB: u64 = 32 * 1024;
const WAIT: Duration = Duration::from_secs(60);

fn members(rest: &Rest, resource: &str) -> Result<Vec<Value>> {
    Ok(rest
        .get(&format!("/v1/view/resources?resources={resource}"))?
        .json
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn node_of(member: &Value) -> String {
    member["node_name"].as_str().unwrap_or_default().to_string()
}

fn is_diskless(member: &Value) -> bool {
    member["flags"]
        .as_array()
        .is_some_and(|f| f.contains(&json!("DISKLESS")))
}

fn on_node(rest: &Rest, resource: &str, node: &str) -> Result<Value> {
    Ok(members(rest, resource)?
        .into_iter()
        .find(|r| r["node_name"] == node)
        .unwrap_or(Value::Null))
}

/// Waits until every member of `resource` is connected to every peer and every diskful one
/// is UpToDate.
fn wait_in_sync(rest: &Rest, resource: &str) -> Result<()> {
    let mut last = Value::Null;
    wait_until(WAIT, || {
        let all = members(rest, resource)?;
        last = Value::Array(all.clone());
        Ok(!all.is_empty()
            && all.iter().all(|m| {
                let connected = m["layer_object"]["drbd"]["connections"]
                    .as_object()
                    .is_some_and(|peers| {
                        !peers.is_empty() && peers.values().all(|p| p["connected"] == json!(true))
                    });
                let disk = m["volumes"][0]["state"]["disk_state"].as_str();
                connected
                    && if is_diskless(m) {
                        disk == Some("Diskless")
                    } else {
                        disk == Some("UpToDate")
                    }
            }))
    })
    .map_err(|e| {
        e.context(format!(
            "waiting for '{resource}' to be in sync; last seen: {last}"
        ))
    })
}

/// Until no member is in use nor Primary: a Primary demotes a moment after its last user left.
fn wait_unused(rest: &Rest, resource: &str) -> Result<()> {
    wait_until_steady(WAIT, UNUSED_STEADY, || {
        Ok(members(rest, resource)?.iter().all(|r| {
            r["state"]["in_use"] != json!(true) && r["layer_object"]["drbd"]["role"] != "Primary"
        }))
    })
}

fn nbd_uri(rest: &Rest, resource: &str, node: &str) -> Result<String> {
    let mut uri = None;
    wait_until(WAIT, || {
        uri = on_node(rest, resource, node)?["volumes"][0]["layer_data_list"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|layer| layer["data"]["nbd_uri"].as_str().map(str::to_string));
        Ok(uri.is_some())
    })
    .with_context(|| format!("no NBD export reported for '{resource}' on {node}"))?;
    Ok(uri.expect("found above"))
}

/// Reads `pattern` back through every member of `resource`, diskless ones included.
fn every_member_reads(
    rest: &Rest,
    resource: &str,
    pattern: &Pattern,
    scratch: &std::path::Path,
) -> Result<()> {
    for member in members(rest, resource)? {
        let node = node_of(&member);
        verify_pattern(&nbd_uri(rest, resource, &node)?, pattern, scratch)
            .with_context(|| format!("reading '{resource}' on {node}"))?;
        wait_unused(rest, resource)?;
    }
    Ok(())
}

/// The MIRROR engines' handshake decisions for `resource` logged after `from` (bytes into each
/// daemon's log): one line per peer and volume, naming the rule (e.g. `equal-current`).
fn handshakes(cluster: &Cluster, resource: &str, from: &[usize]) -> Vec<String> {
    let mut lines = Vec::new();
    for (satellite, from) in cluster.satellites.iter().zip(from) {
        let log = satellite.state_dir.join("mirror").join("mirrord.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail = text.get(*from..).unwrap_or_default();
        lines.extend(
            tail.lines()
                .filter(|l| {
                    l.contains(&format!("resource={resource}"))
                        && (l.contains("handshake") || l.contains("initial sync skipped"))
                })
                .map(|l| format!("{}: {l}", satellite.name)),
        );
    }
    lines
}

fn log_lengths(cluster: &Cluster) -> Vec<usize> {
    cluster
        .satellites
        .iter()
        .map(|s| {
            std::fs::metadata(s.state_dir.join("mirror").join("mirrord.log"))
                .map_or(0, |m| m.len() as usize)
        })
        .collect()
}

/// The handshakes between the disks of `resource` since `from` decided by equal generations:
/// no resync of any kind.
fn started_in_sync(cluster: &Cluster, resource: &str, from: &[usize]) -> Result<()> {
    let lines = handshakes(cluster, resource, from);
    let between_disks: Vec<&String> = lines.iter().filter(|l| l.contains("rule=")).collect();
    anyhow::ensure!(
        !between_disks.is_empty()
            && between_disks
                .iter()
                .all(|l| l.contains("equal-current") && l.contains("NoSync")),
        "the replicas of '{resource}' did not start in sync:\n{}",
        lines.join("\n")
    );
    Ok(())
}

fn print_logs(cluster: &Cluster) {
    for satellite in &cluster.satellites {
        satellite.print_logs_with_mirrord();
    }
}

#[test]
fn a_replicated_snapshot_is_restored_in_sync_and_rolled_back_on_every_member() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    let mut cluster = Cluster::start_with(3, &["--reconcile-interval", "2"])?;
    let outcome = scenario(&mut cluster);
    if outcome.is_err() {
        print_logs(&cluster);
    }
    outcome
}

fn scenario(cluster: &mut Cluster) -> Result<()> {
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool")?;
    let scratch = cluster.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch)?;
    rest.post(
        "/v1/resource-groups",
        &json!({"name": "restore_group", "select_filter": {"place_count": 2, "storage_pool_list": ["pool"], "layer_stack": ["DRBD", "STORAGE"]}}),
    )?
    .expect_success()?;
    rest.post(
        "/v1/resource-groups/restore_group/volume-groups",
        &json!({}),
    )?
    .expect_success()?;
    rest.post(
        "/v1/resource-groups/restore_group/spawn",
        &json!({"resource_definition_name": SOURCE, "volume_sizes": [SIZE_KIB]}),
    )?
    .expect_success()?;
    wait_in_sync(&rest, SOURCE)?;
    let source = members(&rest, SOURCE)?;
    let diskful: Vec<String> = source
        .iter()
        .filter(|m| !is_diskless(m))
        .map(node_of)
        .collect();
    let tiebreaker = source
        .iter()
        .find(|m| is_diskless(m))
        .map(node_of)
        .context("no diskless tiebreaker")?;
    anyhow::ensure!(diskful.len() == 2, "two replicas: {source:?}");

    // A pattern, and a snapshot of it.
    let a = Pattern::for_volume("A: before the snapshot", SIZE_KIB);
    write_pattern(&nbd_uri(&rest, SOURCE, &diskful[0])?, &a, &scratch)?;
    wait_unused(&rest, SOURCE)?;
    rest.post(
        &format!("/v1/resource-definitions/{SOURCE}/snapshots"),
        &json!({"name": "snap"}),
    )?
    .expect_success()?;

    // Restored into a new definition: replicated like the source, its replicas UpToDate
    // without a resync, the pattern on every member.
    let before_restore = log_lengths(cluster);
    rest.post(
        "/v1/resource-definitions",
        &json!({"resource_definition": {"name": COPY}}),
    )?
    .expect_success()?;
    let restored = rest.post(
        &format!("/v1/resource-definitions/{SOURCE}/snapshot-restore-resource/snap"),
        &json!({"to_resource": COPY}),
    )?;
    restored.expect_success()?;
    let copy = rest.get(&format!("/v1/resource-definitions/{COPY}"))?;
    anyhow::ensure!(
        copy.json["layer_data"][0]["type"] == "DRBD",
        "the restored definition is replicated: {}",
        copy.json
    );
    wait_in_sync(&rest, COPY)?;
    started_in_sync(cluster, COPY, &before_restore)?;
    every_member_reads(&rest, COPY, &a, &scratch)?;
    let sync = rest.get(&format!("/v1/resource-definitions/{COPY}/sync-status"))?;
    anyhow::ensure!(sync.json["synced_on_all"] == json!(true), "{}", sync.json);

    // Cloned: replicated like the source, in sync without a resync, the pattern on every
    // member, and the snapshot the clone was made from gone.
    let before_clone = log_lengths(cluster);
    let started = rest.post(
        &format!("/v1/resource-definitions/{SOURCE}/clone"),
        &json!({"name": CLONE}),
    )?;
    anyhow::ensure!(
        started.status == 201 && started.json["clone_name"] == CLONE,
        "clone answered {} {}",
        started.status,
        started.json
    );
    wait_until(WAIT, || {
        let status = rest.get(&format!("/v1/resource-definitions/{SOURCE}/clone/{CLONE}"))?;
        anyhow::ensure!(status.json["status"] != "FAILED", "{}", status.json);
        Ok(status.json["status"] == "COMPLETE")
    })
    .context("waiting for the clone to complete")?;
    let clone = rest.get(&format!("/v1/resource-definitions/{CLONE}"))?;
    anyhow::ensure!(
        clone.json["layer_data"][0]["type"] == "DRBD",
        "the clone is replicated: {}",
        clone.json
    );
    wait_in_sync(&rest, CLONE)?;
    started_in_sync(cluster, CLONE, &before_clone)?;
    every_member_reads(&rest, CLONE, &a, &scratch)?;
    let snapshots = rest.get(&format!("/v1/resource-definitions/{SOURCE}/snapshots"))?;
    let names: Vec<&str> = snapshots
        .json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    anyhow::ensure!(
        names == ["snap"],
        "only the user's snapshot is left: {names:?}"
    );

    // The tiebreaker of the restored definition becomes a replica: it was not restored, so it
    // gets a full sync from a restored one, and reads the pattern from its own disk.
    let copy_tiebreaker = members(&rest, COPY)?
        .iter()
        .find(|m| is_diskless(m))
        .map(node_of)
        .context("the restored definition has no tiebreaker")?;
    let before_toggle = log_lengths(cluster);
    rest.put(
        &format!(
            "/v1/resource-definitions/{COPY}/resources/{copy_tiebreaker}/toggle-disk/diskful/pool"
        ),
        &json!({}),
    )?
    .expect_success()?;
    wait_in_sync(&rest, COPY)?;
    let lines = handshakes(cluster, COPY, &before_toggle);
    anyhow::ensure!(
        lines
            .iter()
            .any(|l| l.contains("just-created") && l.contains("Sync")),
        "the new replica was not fully synced:\n{}",
        lines.join("\n")
    );
    verify_pattern(&nbd_uri(&rest, COPY, &copy_tiebreaker)?, &a, &scratch)
        .with_context(|| format!("reading the synced replica on {copy_tiebreaker}"))?;
    wait_unused(&rest, COPY)?;

    // The source overwritten, then rolled back: every member reads the snapshot's pattern,
    // the replicas in sync without a resync.
    let b = Pattern::for_volume("B: after the snapshot", SIZE_KIB);
    write_pattern(&nbd_uri(&rest, SOURCE, &diskful[1])?, &b, &scratch)?;
    wait_unused(&rest, SOURCE)?;
    let before_rollback = log_lengths(cluster);
    let rolled = rest.post(
        &format!("/v1/resource-definitions/{SOURCE}/snapshot-rollback/snap"),
        &json!({}),
    )?;
    rolled
        .expect_success()
        .with_context(|| format!("rollback answered {}", rolled.json))?;
    wait_in_sync(&rest, SOURCE)?;
    started_in_sync(cluster, SOURCE, &before_rollback)?;
    every_member_reads(&rest, SOURCE, &a, &scratch)?;
    anyhow::ensure!(
        members(&rest, SOURCE)?
            .iter()
            .any(|m| node_of(m) == tiebreaker),
        "the tiebreaker stays"
    );
    Ok(())
}
