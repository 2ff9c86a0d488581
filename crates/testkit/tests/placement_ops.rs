//! Placement operations against real processes: `resource-group modify --place-count` and
//! `adjust` adding and removing replicas, `resource deactivate`/`activate` taking a volume's
//! device away and back, `node delete` of a node with resources (marked, then gone once its
//! satellite confirms), and `physical-storage list`/`create-device-pool` on a real loop device
//! with the real LVM tools. Those definitions are STORAGE only, so no replication engine runs;
//! `node evacuate` moves a MIRROR replica, with the engine's resync, to a third node.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrite_testkit::{Cluster, Rest, is_root, loop_devices_under, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(40);

fn resources(rest: &Rest, name: &str) -> Result<Vec<Value>> {
    Ok(rest
        .get(&format!("/v1/view/resources?resources={name}"))?
        .json
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn image(cluster: &Cluster, node: &str) -> PathBuf {
    cluster.pool_dir(node).join("web_00000.img")
}

fn code_of(entry: &Value) -> u64 {
    entry["ret_code"].as_i64().unwrap_or(0) as u64 & 0x7FFF
}

#[test]
fn place_count_activation_and_node_delete_with_real_satellites() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    let mut cluster = Cluster::start(3)?;
    cluster.register_nodes_with_pool("pool_ssd")?;
    let rest = cluster.rest();
    rest.post(
        "/v1/resource-groups",
        &json!({"name": "grp", "select_filter": {
            "place_count": 1, "storage_pool": "pool_ssd", "layer_stack": ["storage"]}}),
    )?
    .expect_success()?;
    rest.post("/v1/resource-groups/grp/volume-groups", &json!({}))?
        .expect_success()?;
    rest.post(
        "/v1/resource-groups/grp/spawn",
        &json!({"resource_definition_name": "web", "volume_sizes": [65536]}),
    )?
    .expect_success()?;
    assert_eq!(resources(&rest, "web")?.len(), 1);

    // modify --place-count 3: two more replicas, their volumes made on their nodes.
    rest.put(
        "/v1/resource-groups/grp",
        &json!({"select_filter": {"place_count": 3}}),
    )?
    .expect_success()?;
    wait_until(WAIT, || {
        Ok(["node1", "node2", "node3"]
            .iter()
            .all(|n| image(&cluster, n).exists()))
    })
    .context("three replicas after --place-count 3")?;
    // adjust at the place count: LINSTOR's "already deployed" warning, nothing changes.
    let reply = rest.post("/v1/resource-groups/grp/adjust", &json!({}))?;
    assert!(
        reply.entries().iter().any(|e| code_of(e) == 1006),
        "{:?}",
        reply.json
    );

    // Deactivate one: its node keeps the file but detaches its loop device.
    let reply = rest.post(
        "/v1/resource-definitions/web/resources/node1/deactivate",
        &json!({}),
    )?;
    reply.expect_success()?;
    let pool1 = cluster.pool_dir("node1");
    wait_until(WAIT, || Ok(loop_devices_under(&pool1).is_empty()))
        .context("the inactive resource's loop device is detached")?;
    assert!(image(&cluster, "node1").exists(), "the volume is kept");
    let web1 = resources(&rest, "web")?
        .into_iter()
        .find(|r| r["node_name"] == "node1")
        .unwrap();
    assert!(
        web1["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("INACTIVE"))
    );
    // Deactivating twice is a no-op.
    let again = rest.post(
        "/v1/resource-definitions/web/resources/node1/deactivate",
        &json!({}),
    )?;
    assert!(again.entries().iter().any(|e| code_of(e) == 10007));
    // A controller restart (kill -9) keeps the resource inactive, and its volume detached.
    cluster.controller.restart()?;
    cluster.wait_online(WAIT)?;
    let web1 = resources(&rest, "web")?
        .into_iter()
        .find(|r| r["node_name"] == "node1")
        .unwrap();
    assert!(
        web1["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("INACTIVE")),
        "{web1}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        loop_devices_under(&pool1).is_empty(),
        "the satellite leaves an inactive volume detached after the restart"
    );
    assert!(image(&cluster, "node1").exists());
    rest.post(
        "/v1/resource-definitions/web/resources/node1/activate",
        &json!({}),
    )?
    .expect_success()?;
    wait_until(WAIT, || Ok(!loop_devices_under(&pool1).is_empty()))
        .context("the activated resource's loop device is back")?;

    // adjust with place count 2 removes one replica, which its node deletes.
    rest.post(
        "/v1/resource-groups/grp/adjust",
        &json!({"select_filter": {"place_count": 2}}),
    )?
    .expect_success()?;
    wait_until(WAIT, || Ok(resources(&rest, "web")?.len() == 2)).context("down to two replicas")?;
    let left: Vec<String> = resources(&rest, "web")?
        .iter()
        .map(|r| r["node_name"].as_str().unwrap_or_default().to_string())
        .collect();
    let gone = ["node1", "node2", "node3"]
        .into_iter()
        .find(|n| !left.iter().any(|l| l == n))
        .unwrap();
    assert!(!image(&cluster, gone).exists(), "its volume was deleted");

    // node delete of a node with a resource: marked, then gone once its satellite deleted it.
    let node = left[0].clone();
    let reply = rest.delete(&format!("/v1/nodes/{node}"))?;
    reply.expect_success()?;
    wait_until(WAIT, || {
        Ok(rest.get(&format!("/v1/nodes/{node}"))?.status == 404)
    })
    .context("the node goes with its last resource")?;
    assert!(!image(&cluster, &node).exists());
    assert_eq!(resources(&rest, "web")?.len(), 1);
    Ok(())
}

/// A sparse file on a loop device: a disk nothing uses.
struct LoopDisk {
    device: String,
    _dir: tempfile::TempDir,
}

impl LoopDisk {
    fn new() -> Result<LoopDisk> {
        let dir = tempfile::tempdir()?;
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)?.set_len(2 << 30)?;
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()?;
        if !out.status.success() {
            bail!("losetup: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(LoopDisk {
            device: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            _dir: dir,
        })
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["--detach", &self.device])
            .status();
    }
}

/// The nodes whose replica of `name` is diskful, not being deleted, and UpToDate.
fn up_to_date_nodes(rest: &Rest, name: &str) -> Result<Vec<String>> {
    Ok(resources(rest, name)?
        .iter()
        .filter(|r| {
            let flags = r["flags"].as_array().cloned().unwrap_or_default();
            let volumes = r["volumes"].as_array().cloned().unwrap_or_default();
            !flags.iter().any(|f| f == "DELETE" || f == "DISKLESS")
                && !volumes.is_empty()
                && volumes
                    .iter()
                    .all(|v| v["state"]["disk_state"] == "UpToDate")
        })
        .filter_map(|r| r["node_name"].as_str().map(str::to_string))
        .collect())
}

/// Waits until exactly `count` replicas of `name` are UpToDate ([`up_to_date_nodes`]) and
/// answers their nodes, sorted.
fn wait_up_to_date(rest: &Rest, name: &str, count: usize) -> Result<Vec<String>> {
    let mut nodes = Vec::new();
    wait_until(WAIT, || {
        nodes = up_to_date_nodes(rest, name)?;
        Ok(nodes.len() == count)
    })
    .with_context(|| format!("{count} UpToDate replicas of {name}; last seen {nodes:?}"))?;
    nodes.sort();
    Ok(nodes)
}

/// Four nodes: two replicas, the diskless tiebreaker the controller adds for them, and one
/// free node for the replacement. (On three nodes the third holds the tiebreaker, the
/// autoplacer does not turn it into a disk, and the evacuated replica stays marked.)
#[test]
fn evacuation_moves_a_replica_and_never_leaves_fewer_up_to_date_copies() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    let cluster = Cluster::start(4)?;
    cluster.register_nodes_with_pool("pool")?;
    let rest = cluster.rest();
    // Two MIRROR replicas (the DRBD layer of a node without DRBD).
    rest.post(
        "/v1/resource-groups",
        &json!({"name": "grp", "select_filter": {
            "place_count": 2, "storage_pool": "pool", "layer_stack": ["DRBD", "STORAGE"]}}),
    )?
    .expect_success()?;
    rest.post("/v1/resource-groups/grp/volume-groups", &json!({}))?
        .expect_success()?;
    rest.post(
        "/v1/resource-groups/grp/spawn",
        &json!({"resource_definition_name": "moved", "volume_sizes": [65536]}),
    )?
    .expect_success()?;
    let holders = wait_up_to_date(&rest, "moved", 2)?;
    let (source, kept) = (holders[0].clone(), holders[1].clone());
    let source_image = cluster.pool_dir(&source).join("moved_00000.img");
    assert!(source_image.exists());

    let reply = rest.put(&format!("/v1/nodes/{source}/evacuate"), &json!({}))?;
    reply.expect_success()?;
    // Until the evacuated replica is gone, and while the replacement syncs, at least two
    // copies are UpToDate at every look; the evacuated one goes only after the replacement is
    // UpToDate.
    let mut looks = 0;
    let mut seen_syncing = false;
    let mut last = Vec::new();
    let mut replacement = None;
    wait_until(WAIT, || {
        let up_to_date = up_to_date_nodes(&rest, "moved")?;
        let all = resources(&rest, "moved")?;
        last = all.clone();
        looks += 1;
        if up_to_date.len() < 2 {
            bail!("only {up_to_date:?} UpToDate during the evacuation: {all:?}");
        }
        replacement = all
            .iter()
            .filter(|r| {
                !r["flags"]
                    .as_array()
                    .is_some_and(|f| f.contains(&json!("DISKLESS")))
            })
            .filter_map(|r| r["node_name"].as_str())
            .find(|n| !holders.iter().any(|h| h == n))
            .map(str::to_string);
        let Some(new) = &replacement else {
            return Ok(false);
        };
        if !up_to_date.contains(new) {
            seen_syncing = true;
        }
        let source_present = all.iter().any(|r| r["node_name"] == source.as_str());
        Ok(!source_present && up_to_date.contains(new))
    })
    .with_context(|| {
        let seen: Vec<String> = last
            .iter()
            .map(|r| format!("{} flags {}", r["node_name"], r["flags"]))
            .collect();
        format!(
            "the evacuated replica goes once its replacement is UpToDate; answer {}; last seen: {seen:?}",
            reply.json
        )
    })?;
    let replacement = replacement.expect("a replacement");
    eprintln!("{looks} looks; the replacement on {replacement} seen syncing: {seen_syncing}");
    let mut expected = vec![kept, replacement.clone()];
    expected.sort();
    assert_eq!(
        wait_up_to_date(&rest, "moved", 2)?,
        expected,
        "the replicas after the evacuation"
    );
    wait_until(WAIT, || Ok(!source_image.exists()))
        .context("the evacuated node deletes its volume")?;
    assert!(
        cluster
            .pool_dir(&replacement)
            .join("moved_00000.img")
            .exists()
    );
    let node = rest.get(&format!("/v1/nodes/{source}"))?;
    assert!(
        node.json["flags"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("EVACUATE"))),
        "{}",
        node.json
    );
    rest.put(&format!("/v1/nodes/{source}/restore"), &json!({}))?
        .expect_success()?;
    Ok(())
}

#[test]
fn physical_storage_lists_an_unused_disk_and_makes_an_lvm_pool_of_it() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: attaching a loop device and running LVM need root");
        return Ok(());
    }
    let cluster = Cluster::start_with(1, &["--lvm-metadata-only"])?;
    cluster.register_nodes()?;
    let rest = cluster.rest();
    let disk = LoopDisk::new()?;
    let group = format!("ferrite_ps_{}", std::process::id());
    let cleanup = scopeguard(&group, &disk.device);

    let listed = rest.get("/v1/physical-storage/node1")?;
    assert_eq!(listed.status, 200, "{}", listed.json);
    assert!(
        listed
            .json
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device"] == disk.device.as_str() && d["size"] == json!(2i64 << 30)),
        "{} not in {}",
        disk.device,
        listed.json
    );
    let all = rest.get("/v1/physical-storage")?;
    assert!(all.json.to_string().contains(&disk.device), "{}", all.json);

    // ZFS is absent here: a clear error, nothing made.
    let zfs = rest.post(
        "/v1/physical-storage/node1",
        &json!({"provider_kind": "ZFS", "device_paths": [disk.device], "pool_name": group}),
    )?;
    assert!(zfs.status >= 400, "{}", zfs.json);
    assert!(zfs.json.to_string().contains("zpool"), "{}", zfs.json);

    let made = rest.post(
        "/v1/physical-storage/node1",
        &json!({"provider_kind": "LVM", "device_paths": [disk.device], "pool_name": group,
                "with_storage_pool": {"name": "lvm_pool"}}),
    )?;
    made.expect_success()?;
    let vgs = std::process::Command::new("vgs")
        .args(["--noheadings", "-o", "vg_name", &group])
        .output()?;
    assert!(vgs.status.success(), "the volume group exists");
    let pool = rest.get("/v1/nodes/node1/storage-pools/lvm_pool")?;
    assert_eq!(pool.status, 200, "{}", pool.json);
    assert_eq!(
        pool.json["props"]["StorDriver/StorPoolName"],
        group.as_str()
    );
    // The disk is in use now: no longer listed, and a second pool on it is refused.
    let listed = rest.get("/v1/physical-storage/node1")?;
    assert!(!listed.json.to_string().contains(&disk.device));
    let again = rest.post(
        "/v1/physical-storage/node1",
        &json!({"provider_kind": "LVM", "device_paths": [disk.device], "pool_name": "other"}),
    )?;
    assert!(again.status >= 400);
    assert!(
        again.json.to_string().contains("not an unused disk"),
        "{}",
        again.json
    );
    drop(cleanup);
    Ok(())
}

/// Removes the volume group and the physical volume when dropped.
struct VolumeGroupCleanup(String, String);

impl Drop for VolumeGroupCleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("vgremove")
            .args(["--driverloaded", "n", "-f", &self.0])
            .status();
        let _ = std::process::Command::new("pvremove")
            .args(["-y", &self.1])
            .status();
    }
}

fn scopeguard(group: &str, device: &str) -> VolumeGroupCleanup {
    VolumeGroupCleanup(group.to_string(), device.to_string())
}
