//! The article's tutorial against real processes: a controller and four satellites with
//! FILE_THIN pools, driven over REST exactly as the `linstor`/`ferrite` CLI drives it, checking
//! what the satellites and their replication engines did on disk at every step.
//!
//! The tutorial gives its definition no layer list, so it gets LINSTOR's default stack,
//! DRBD,STORAGE, at its first placement; no node here runs DRBD 9, so the MIRROR engine runs
//! it (`docs/rest-api.md`, "Replicated resources"). What a LINSTOR user sees: two UpToDate
//! replicas and a diskless tiebreaker, the tiebreaker gone once a diskless resource gives a
//! third vote, a full sync when that resource gets a disk, and volumes whose device is the
//! engine's block device, with the backing file's loop device one layer down.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ferrite_testkit::{Cluster, Rest, is_root, loop_devices_under, wait_until};
use serde_json::{Value, json};

const GIB_KIB: i64 = 1 << 20;
const NODES: [&str; 4] = ["node1", "node2", "node3", "node4"];
/// Engine state reaches the controller a moment after the answer that caused it. Longer than
/// the satellite's reconcile interval (30 s): a change the engine fails to apply is retried at
/// the next pass, and a MIRROR restart for a changed configuration sometimes fails to bind its
/// port while the old listener is still open ("Address already in use"), a known engine bug.
const WAIT: Duration = Duration::from_secs(75);
/// A full sync of 2 GiB between two user-space engines on a loaded 2-core machine.
const FULL_SYNC: Duration = Duration::from_secs(180);
/// MIRROR's metadata for 2 GiB (superblock, activity log, bitmaps for 7 peer slots) is a few
/// MiB; anything beyond this is not metadata.
const METADATA_BOUND: u64 = 64 << 20;

// LINSTOR's return codes (low bits) and masks, as python-linstor and golinstor test them.
const INFO_TIE_BREAKER_CREATED: u64 = 10003;
const INFO_TIE_BREAKER_DELETING: u64 = 10004;
const WARN_NOT_REPLICATED: u64 = 1900;
const INFO_REPLICATION_ENGINE: u64 = 19000;

fn resources(rest: &Rest) -> Result<Vec<Value>> {
    Ok(rest
        .get("/v1/view/resources?resources=my_ssd_res")?
        .json
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn on_node(rest: &Rest, node: &str) -> Result<Option<Value>> {
    Ok(resources(rest)?
        .into_iter()
        .find(|r| r["node_name"] == node))
}

fn node_name(resource: &Value) -> String {
    resource["node_name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn has_flag(resource: &Value, flag: &str) -> bool {
    resource["flags"]
        .as_array()
        .is_some_and(|f| f.contains(&json!(flag)))
}

fn backing_file(cluster: &Cluster, node: &str) -> PathBuf {
    cluster.pool_dir(node).join("my_ssd_res_00000.img")
}

/// Where the satellite's MIRROR engine links volume 0's block device: under the satellite's
/// `--device-root`, which the testkit sets to `<state-dir>/dev`.
fn engine_device(cluster: &Cluster, node: &str) -> PathBuf {
    cluster
        .satellite(node)
        .state_dir
        .join("dev")
        .join("my_ssd_res")
        .join("0")
}

/// Whether an answer holds an entry of type `mask` (bits 62–63) with code `code`.
fn has_entry(reply: &ferrite_testkit::Reply, mask: u64, code: u64) -> bool {
    reply.entries().iter().any(|e| {
        e["ret_code"]
            .as_i64()
            .is_some_and(|rc| (rc as u64) >> 62 == mask && (rc as u64) & 0x7FFF == code)
    })
}
const INFO: u64 = 1;
const WARN: u64 = 2;

/// Waits until the resource on `node` reports `disk_state` for volume 0, and returns it.
fn wait_disk_state(rest: &Rest, node: &str, state: &str, timeout: Duration) -> Result<Value> {
    let mut last = Value::Null;
    wait_until(timeout, || {
        if let Some(r) = on_node(rest, node)? {
            last = r.clone();
            return Ok(r["volumes"][0]["state"]["disk_state"] == state);
        }
        Ok(false)
    })
    .map_err(|e| e.context(format!("waiting for {state} on {node}; last seen: {last}")))?;
    Ok(last)
}

/// Waits until the member on `node` is connected to every peer, and the engine reports each
/// peer's replication state for volume 0; returns the resource.
fn wait_connected(rest: &Rest, node: &str) -> Result<Value> {
    let mut last = Value::Null;
    wait_until(WAIT, || {
        last = on_node(rest, node)?.unwrap_or(Value::Null);
        let connections = &last["layer_object"]["drbd"]["connections"];
        let peers = connections.as_object().map(|p| p.len()).unwrap_or(0);
        let replication = last["volumes"][0]["state"]["replication_states"]
            .as_object()
            .map(|r| r.len())
            .unwrap_or(0);
        Ok(peers > 0
            && replication == peers
            && connections
                .as_object()
                .is_some_and(|p| p.values().all(|c| c["connected"] == json!(true))))
    })
    .map_err(|e| {
        e.context(format!(
            "waiting for {node} to connect to its peers; last seen: {last}"
        ))
    })?;
    Ok(last)
}

/// The STORAGE layer's device of volume 0 (below the replication layer).
fn storage_device(resource: &Value) -> Option<String> {
    let children = resource["layer_object"]["children"].as_array()?;
    let storage = children.iter().find(|c| c["type"] == "STORAGE")?;
    storage["storage"]["storage_volumes"][0]["device_path"]
        .as_str()
        .map(str::to_string)
}

/// The file a loop device is attached to, from sysfs.
fn loop_backing_file(device: &str) -> Option<PathBuf> {
    let name = device.strip_prefix("/dev/")?;
    let text = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim()))
}

/// Checks the replication layer of a member: DRBD in LINSTOR's shape, run by MIRROR, over a
/// STORAGE child.
fn check_layers(resource: &Value) {
    let layer = &resource["layer_object"];
    assert_eq!(layer["type"], "DRBD", "{resource}");
    assert_eq!(layer["drbd"]["engine"], "MIRROR", "{resource}");
    let children: Vec<&Value> = layer["children"].as_array().into_iter().flatten().collect();
    assert_eq!(children.len(), 1, "{resource}");
    assert_eq!(children[0]["type"], "STORAGE", "{resource}");
    let volume_layers: Vec<&Value> = resource["volumes"][0]["layer_data_list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| &l["type"])
        .collect();
    assert_eq!(
        volume_layers,
        [&json!("DRBD"), &json!("STORAGE")],
        "{resource}"
    );
}

/// Waits until REST reports the engine's block device as volume 0's device on `node`, and
/// checks it: the link under the device root, to a block device when the host can have them.
fn check_engine_device(cluster: &Cluster, rest: &Rest, node: &str) -> Result<()> {
    let expected = engine_device(cluster, node);
    let mut last = Value::Null;
    wait_until(WAIT, || {
        last = on_node(rest, node)?.unwrap_or(Value::Null)["volumes"][0]["device_path"].clone();
        Ok(last == json!(expected.to_string_lossy()))
    })
    .map_err(|e| {
        e.context(format!(
            "waiting for {node}'s device {}; last seen: {last}",
            expected.display()
        ))
    })?;
    if ferrite_blockdev::probe().is_ok() {
        let link = std::fs::symlink_metadata(&expected)?;
        assert!(link.file_type().is_symlink(), "{}", expected.display());
        let device = std::fs::metadata(&expected)?;
        assert!(
            device.file_type().is_block_device(),
            "{} leads to a block device",
            expected.display()
        );
    }
    Ok(())
}

/// Checks a diskful member on disk: its STORAGE layer is a loop device of its backing file,
/// which holds the usable size plus MIRROR's metadata, sparse.
fn check_backing(cluster: &Cluster, resource: &Value) -> Result<()> {
    let node = node_name(resource);
    let file = backing_file(cluster, &node);
    let loop_device = storage_device(resource).context("a STORAGE device")?;
    assert!(
        loop_device.starts_with("/dev/loop") && Path::new(&loop_device).exists(),
        "{resource}"
    );
    assert_eq!(
        loop_backing_file(&loop_device).as_deref(),
        Some(file.as_path()),
        "{loop_device} on {node}"
    );
    let meta = std::fs::metadata(&file)?;
    assert!(
        meta.len() > 2 << 30 && meta.len() <= (2 << 30) + METADATA_BOUND,
        "{} is 2 GiB and MIRROR's metadata: {} bytes",
        file.display(),
        meta.len()
    );
    assert_eq!(
        resource["volumes"][0]["usable_size_kib"],
        json!(2 * GIB_KIB),
        "the user gets the size asked for: {resource}"
    );
    Ok(())
}

#[test]
fn tutorial_over_rest_with_real_satellites() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    let mut cluster = Cluster::start(4)?;
    let outcome = scenario(&mut cluster);
    if outcome.is_err() {
        for satellite in &cluster.satellites {
            satellite.print_log_tail();
        }
    }
    outcome
}

fn scenario(cluster: &mut Cluster) -> Result<()> {
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool_ssd")?;

    // node list: four online nodes that can run FILE_THIN and a replication layer.
    let nodes = rest.get("/v1/nodes")?.json;
    assert_eq!(nodes.as_array().unwrap().len(), 4);
    for node in nodes.as_array().unwrap() {
        assert_eq!(node["connection_status"], "ONLINE", "{node}");
        assert!(
            node["storage_providers"]
                .as_array()
                .unwrap()
                .contains(&json!("FILE_THIN")),
            "{node}"
        );
        assert!(
            node["resource_layers"]
                .as_array()
                .unwrap()
                .contains(&json!("MIRROR")),
            "every node runs the MIRROR engine: {node}"
        );
        assert!(
            node["unsupported_providers"]["ZFS"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "ZFS needs a reason: {node}"
        );
    }

    // storage-pool list: a pool_ssd with capacity and a default diskless pool per node.
    let pools = rest.get("/v1/view/storage-pools")?.json;
    let pools = pools.as_array().unwrap();
    assert_eq!(pools.len(), 8);
    wait_until(Duration::from_secs(10), || {
        let pools = rest
            .get("/v1/view/storage-pools?storage_pools=pool_ssd")?
            .json;
        Ok(pools
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["free_capacity"].as_i64().is_some_and(|f| f > 0)))
    })?;

    // resource-group create --storage-pool pool_ssd --place-count 2; volume-group create.
    rest.post("/v1/resource-groups", &json!({"name": "my_ssd_group", "select_filter": {"place_count": "2", "storage_pool_list": ["pool_ssd"]}}))?
        .expect_success()?;
    rest.post("/v1/resource-groups/my_ssd_group/volume-groups", &json!({}))?
        .expect_success()?;

    // A definition without a layer list answers no layer data until it is placed.
    // resource-group spawn-resources my_ssd_group my_ssd_res 2G
    let spawn = rest.post(
        "/v1/resource-groups/my_ssd_group/spawn",
        &json!({"resource_definition_name": "my_ssd_res", "volume_sizes": [2 * GIB_KIB], "partial": false, "definitions_only": false, "select_filter": {}}),
    )?;
    spawn.expect_success()?;
    assert_eq!(spawn.status, 201);
    assert!(
        has_entry(&spawn, INFO, INFO_REPLICATION_ENGINE),
        "spawn says which engine replicates: {}",
        spawn.json
    );
    assert!(
        !has_entry(&spawn, WARN, WARN_NOT_REPLICATED),
        "the default stack replicates: {}",
        spawn.json
    );
    assert!(
        has_entry(&spawn, INFO, INFO_TIE_BREAKER_CREATED),
        "two disks get a tiebreaker: {}",
        spawn.json
    );
    let definition = rest.get("/v1/resource-definitions/my_ssd_res")?.json;
    let stack: Vec<&Value> = definition["layer_data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| &l["type"])
        .collect();
    assert_eq!(stack, [&json!("DRBD"), &json!("STORAGE")], "{definition}");
    assert_eq!(definition["layer_data"][0]["data"]["engine"], "MIRROR");

    // Two replicas and a diskless tiebreaker on a third node.
    let placed = resources(&rest)?;
    assert_eq!(placed.len(), 3, "two replicas and a tiebreaker: {placed:?}");
    let tiebreakers: Vec<&Value> = placed
        .iter()
        .filter(|r| has_flag(r, "TIE_BREAKER"))
        .collect();
    assert_eq!(tiebreakers.len(), 1, "{placed:?}");
    for flag in ["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"] {
        assert!(has_flag(tiebreakers[0], flag), "{}", tiebreakers[0]);
    }
    let tiebreaker = node_name(tiebreakers[0]);
    let diskful: Vec<String> = placed
        .iter()
        .filter(|r| !has_flag(r, "DISKLESS"))
        .map(node_name)
        .collect();
    assert_eq!(diskful.len(), 2, "place count 2: {placed:?}");
    for resource in &placed {
        check_layers(resource);
    }

    // A new resource skips the initial sync: both replicas UpToDate, connected, Established,
    // and nothing written to their sparse backing files but metadata.
    for node in &diskful {
        wait_disk_state(&rest, node, "UpToDate", WAIT)?;
        let resource = wait_connected(&rest, node)?;
        assert_eq!(resource["volumes"][0]["state"]["disk_state"], "UpToDate");
        for (peer, state) in resource["volumes"][0]["state"]["replication_states"]
            .as_object()
            .unwrap()
        {
            assert_eq!(
                state["replication_state"], "Established",
                "{node} to {peer}: {resource}"
            );
        }
        check_backing(cluster, &resource)?;
        check_engine_device(cluster, &rest, node)?;
        let allocated = std::fs::metadata(backing_file(cluster, node))?.blocks() * 512;
        assert!(
            allocated <= METADATA_BOUND,
            "no initial sync wrote {node}'s backing file: {allocated} bytes allocated"
        );
    }
    // The tiebreaker has no disk and no backing file, but a device like every member.
    wait_disk_state(&rest, &tiebreaker, "Diskless", WAIT)?;
    wait_connected(&rest, &tiebreaker)?;
    check_engine_device(cluster, &rest, &tiebreaker)?;
    assert!(!backing_file(cluster, &tiebreaker).exists());

    // resource create <the free node> my_ssd_res --diskless: a third vote, so the tiebreaker
    // goes.
    let diskless_node = NODES
        .iter()
        .map(|n| n.to_string())
        .find(|n| !diskful.contains(n) && *n != tiebreaker)
        .context("a fourth node")?;
    let create = rest.post(
        "/v1/resource-definitions/my_ssd_res/resources",
        &json!([{"resource": {"node_name": diskless_node, "flags": ["DISKLESS"]}}]),
    )?;
    create.expect_success()?;
    assert!(
        has_entry(&create, INFO, INFO_TIE_BREAKER_DELETING),
        "{}",
        create.json
    );
    let resource = wait_disk_state(&rest, &diskless_node, "Diskless", WAIT)?;
    assert!(has_flag(&resource, "DISKLESS"), "{resource}");
    assert!(!has_flag(&resource, "TIE_BREAKER"), "{resource}");
    check_layers(&resource);
    wait_until(WAIT, || {
        Ok(resources(&rest)?.iter().all(|r| node_name(r) != tiebreaker))
    })
    .context("the tiebreaker goes once a diskless resource votes")?;
    assert_eq!(resources(&rest)?.len(), 3);
    wait_connected(&rest, &diskless_node)?;
    check_engine_device(cluster, &rest, &diskless_node)?;
    for node in [&diskless_node, &tiebreaker] {
        assert!(
            !backing_file(cluster, node).exists(),
            "a diskless resource has no backing file"
        );
    }
    wait_until(WAIT, || Ok(!engine_device(cluster, &tiebreaker).exists()))
        .context("the tiebreaker's device goes with it")?;

    // Restarting a satellite changes nothing that is right: its engine runs on, the devices
    // and the backing file stay.
    let node = diskful[0].clone();
    let before = wait_disk_state(&rest, &node, "UpToDate", WAIT)?;
    let storage_before = storage_device(&before);
    let link_before = std::fs::read_link(engine_device(cluster, &node)).ok();
    let inode_before = std::fs::metadata(backing_file(cluster, &node))?.ino();
    cluster.satellite_mut(&node).restart()?;
    cluster.wait_online(Duration::from_secs(20))?;
    let after = wait_disk_state(&rest, &node, "UpToDate", WAIT)?;
    check_engine_device(cluster, &rest, &node)?;
    assert_eq!(
        storage_before,
        storage_device(&after),
        "the loop device stays the same across a satellite restart"
    );
    assert_eq!(
        link_before,
        std::fs::read_link(engine_device(cluster, &node)).ok(),
        "the engine's block device stays the same across a satellite restart"
    );
    assert_eq!(
        inode_before,
        std::fs::metadata(backing_file(cluster, &node))?.ino()
    );
    wait_connected(&rest, &node)?;

    // resource toggle-disk <diskless node> --storage-pool pool_ssd (API 1.28 body form): a
    // full sync from the replicas, Inconsistent (SyncTarget) until it is UpToDate.
    rest.put(
        &format!("/v1/resource-definitions/my_ssd_res/resources/{diskless_node}/toggle-disk"),
        &json!({"operation": "INTO_DRBD_DISKFUL", "storage_pool": "pool_ssd"}),
    )?
    .expect_success()?;
    let mut seen: Vec<String> = Vec::new();
    let mut last = Value::Null;
    wait_until(FULL_SYNC, || {
        last = on_node(&rest, &diskless_node)?.unwrap_or(Value::Null);
        let volume = &last["volumes"][0];
        let state = volume["state"]["disk_state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let syncing = volume["state"]["replication_states"]
            .as_object()
            .is_some_and(|r| r.values().any(|s| s["replication_state"] == "SyncTarget"));
        let step = if syncing {
            format!("{state}/SyncTarget")
        } else {
            state.clone()
        };
        if seen.last() != Some(&step) {
            seen.push(step);
        }
        Ok(state == "UpToDate" && !has_flag(&last, "DISKLESS"))
    })
    .map_err(|e| {
        e.context(format!(
            "waiting for the full sync of {diskless_node}; states seen: {seen:?}; last: {last}"
        ))
    })?;
    // Nothing was written to the volume, so its sync can be over before the first look, and
    // `Inconsistent` is not always seen; what is seen goes the way of a sync, never through a
    // state that would mean lost or refused data.
    // (The engine's report at the end of a sync can show the disk UpToDate while the peer is
    // still SyncTarget, for a moment.)
    let sync_states = [
        "Diskless",
        "Inconsistent",
        "Inconsistent/SyncTarget",
        "UpToDate/SyncTarget",
        "UpToDate",
    ];
    assert!(
        seen.iter().all(|s| sync_states.contains(&s.as_str())),
        "a new disk is filled by a sync: {seen:?}"
    );
    let resource = wait_connected(&rest, &diskless_node)?;
    check_layers(&resource);
    check_backing(cluster, &resource)?;
    check_engine_device(cluster, &rest, &diskless_node)?;

    // resource toggle-disk <first diskful> --diskless (legacy URL form, as golinstor sends it):
    // the other two replicas are UpToDate, so it may go; its backing file and loop device go.
    rest.put(
        &format!("/v1/resource-definitions/my_ssd_res/resources/{node}/toggle-disk/diskless"),
        &json!(null),
    )?
    .expect_success()?;
    wait_disk_state(&rest, &node, "Diskless", WAIT)?;
    wait_until(WAIT, || Ok(!backing_file(cluster, &node).exists()))?;
    wait_until(WAIT, || {
        Ok(loop_devices_under(&cluster.pool_dir(&node)).is_empty())
    })
    .context("the loop device of a removed disk is detached")?;
    wait_connected(&rest, &node)?;
    check_engine_device(cluster, &rest, &node)?;
    assert!(
        resources(&rest)?
            .iter()
            .all(|r| !has_flag(r, "TIE_BREAKER")),
        "two disks and a diskless member need no tiebreaker"
    );

    // resource delete <that node> my_ssd_res: two disks are left and no diskless member, so a
    // tiebreaker comes back on a node without the resource (as LINSTOR's does).
    let delete = rest.delete(&format!(
        "/v1/resource-definitions/my_ssd_res/resources/{node}"
    ))?;
    delete.expect_success()?;
    assert!(
        has_entry(&delete, INFO, INFO_TIE_BREAKER_CREATED),
        "{}",
        delete.json
    );
    let mut left = Vec::new();
    wait_until(WAIT, || {
        left = resources(&rest)?;
        Ok(left.iter().all(|r| node_name(r) != node))
    })?;
    let tiebreakers: Vec<&Value> = left.iter().filter(|r| has_flag(r, "TIE_BREAKER")).collect();
    assert_eq!(tiebreakers.len(), 1, "{left:?}");
    for flag in ["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"] {
        assert!(has_flag(tiebreakers[0], flag), "{}", tiebreakers[0]);
    }
    let tiebreaker = node_name(tiebreakers[0]);
    wait_disk_state(&rest, &tiebreaker, "Diskless", WAIT)?;
    assert!(!backing_file(cluster, &tiebreaker).exists());
    let mut replicas: Vec<String> = left
        .iter()
        .filter(|r| !has_flag(r, "DISKLESS"))
        .map(node_name)
        .collect();
    replicas.sort();
    let mut expected = vec![diskful[1].clone(), diskless_node.clone()];
    expected.sort();
    assert_eq!(replicas, expected, "{left:?}");
    for replica in &replicas {
        wait_disk_state(&rest, replica, "UpToDate", WAIT)?;
    }
    wait_until(WAIT, || Ok(!engine_device(cluster, &node).exists()))
        .context("a deleted resource's device goes")?;

    // Deleting the definition removes every backing file, device and loop device.
    rest.delete("/v1/resource-definitions/my_ssd_res")?
        .expect_success()?;
    wait_until(WAIT, || Ok(resources(&rest)?.is_empty()))?;
    wait_until(WAIT, || {
        Ok(NODES.iter().all(|n| !backing_file(cluster, n).exists()))
    })?;
    wait_until(WAIT, || {
        Ok(NODES.iter().all(|n| !engine_device(cluster, n).exists()))
    })?;
    wait_until(WAIT, || {
        Ok(loop_devices_under(cluster.dir.path()).is_empty())
    })
    .with_context(|| {
        format!(
            "loop devices left: {:?}",
            loop_devices_under(cluster.dir.path())
        )
    })?;
    Ok(())
}
