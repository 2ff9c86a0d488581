//! Faults on a node, with real processes: a satellite that cannot persist its desired state says
//! so at once (the client gets a warning with the cause, not a 30 s timeout), and converges by
//! itself once the cause is fixed.

use std::time::{Duration, Instant};

use anyhow::Result;
use ferrite_testkit::{Cluster, is_root, wait_until};
use serde_json::json;

/// LINSTOR's WARN_STLT_NOT_UPDATED, as the low bits of a ret_code.
const WARN_STLT_NOT_UPDATED: i64 = 1003;

#[test]
fn a_satellite_that_cannot_persist_says_why_and_converges_later() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    let cluster = Cluster::start(2)?;
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool_ssd")?;

    // Where the satellite writes its state atomically, a directory blocks the temporary file;
    // the journal it appends deltas to is made immutable, which refuses writes even to root
    // and even through the descriptor the satellite holds open.
    let state_dir = cluster.satellite("node1").state_dir.clone();
    let blocker = state_dir.join(".desired-state.json.tmp");
    std::fs::create_dir(&blocker)?;
    let journal = state_dir.join("desired-state.journal");
    chattr("+i", &journal)?;

    rest.post(
        "/v1/resource-definitions",
        &json!({"resource_definition": {"name": "web"}}),
    )?
    .expect_success()?;
    rest.post(
        "/v1/resource-definitions/web/volume-definitions",
        &json!({"volume_definition": {"size_kib": 4096}}),
    )?
    .expect_success()?;
    let started = Instant::now();
    let reply = rest.post(
        "/v1/resource-definitions/web/resources",
        &json!([{"resource": {"node_name": "node1", "props": {"StorPoolName": "pool_ssd"}}}]),
    )?;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the refusal must come back at once, took {:?}",
        started.elapsed()
    );
    assert!(
        !reply.has_error(),
        "the resource is recorded: {}",
        reply.json
    );
    let warning = reply
        .entries()
        .into_iter()
        .find(|e| {
            e["ret_code"]
                .as_i64()
                .is_some_and(|c| c & 0x7FFF == WARN_STLT_NOT_UPDATED)
        })
        .unwrap_or_else(|| panic!("no WARN_STLT_NOT_UPDATED in {}", reply.json));
    let cause = warning["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains("could not persist the desired state"),
        "{warning}"
    );
    assert!(!cluster.pool_dir("node1").join("web_00000.img").exists());

    // Fixed on the node: the controller sends the state again and the volume appears.
    std::fs::remove_dir(&blocker)?;
    chattr("-i", &journal)?;
    wait_until(Duration::from_secs(20), || {
        let view = rest.get("/v1/view/resources?resources=web")?.json;
        Ok(view[0]["volumes"][0]["state"]["disk_state"] == "UpToDate")
    })?;
    assert!(cluster.pool_dir("node1").join("web_00000.img").exists());
    Ok(())
}

fn chattr(flags: &str, path: &std::path::Path) -> Result<()> {
    let status = std::process::Command::new("chattr")
        .arg(flags)
        .arg(path)
        .status()?;
    anyhow::ensure!(status.success(), "chattr {flags} {} failed", path.display());
    Ok(())
}
