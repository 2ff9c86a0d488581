//! The article's tutorial against real processes: a controller and four satellites with
//! FILE_THIN pools, driven over REST exactly as the `linstor`/`ferrite` CLI drives it, checking
//! what the satellites did on disk at every step.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use ferrite_testkit::{Cluster, Rest, is_root, loop_devices_under, wait_until};
use serde_json::{Value, json};

const GIB_KIB: i64 = 1 << 20;

fn resources(rest: &Rest) -> Result<Vec<Value>> {
    Ok(rest
        .get("/v1/view/resources?resources=my_ssd_res")?
        .json
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn on_node<'a>(resources: &'a [Value], node: &str) -> Option<&'a Value> {
    resources.iter().find(|r| r["node_name"] == node)
}

fn backing_file(cluster: &Cluster, node: &str) -> std::path::PathBuf {
    cluster.pool_dir(node).join("my_ssd_res_00000.img")
}

/// Waits until the resource on `node` reports `disk_state` for volume 0.
fn wait_disk_state(rest: &Rest, node: &str, state: &str) -> Result<Value> {
    let mut last = Value::Null;
    wait_until(Duration::from_secs(20), || {
        let all = resources(rest)?;
        if let Some(r) = on_node(&all, node) {
            last = r.clone();
            return Ok(r["volumes"][0]["state"]["disk_state"] == state);
        }
        Ok(false)
    })
    .map_err(|e| e.context(format!("waiting for {state} on {node}; last seen: {last}")))?;
    Ok(last)
}

fn is_loop_device(path: &Value) -> bool {
    path.as_str()
        .is_some_and(|p| p.starts_with("/dev/loop") && Path::new(p).exists())
}

#[test]
fn tutorial_over_rest_with_real_satellites() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    let cluster = Cluster::start(4)?;
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool_ssd")?;

    // node list: four online nodes that can run FILE_THIN.
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

    // resource-group spawn-resources my_ssd_group my_ssd_res 2G
    let spawn = rest.post(
        "/v1/resource-groups/my_ssd_group/spawn",
        &json!({"resource_definition_name": "my_ssd_res", "volume_sizes": [2 * GIB_KIB], "partial": false, "definitions_only": false, "select_filter": {}}),
    )?;
    spawn.expect_success()?;
    assert_eq!(spawn.status, 201);
    assert!(
        spawn
            .entries()
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("not replicated")),
        "spawn must warn that STORAGE-only is not replicated: {}",
        spawn.json
    );
    let placed = resources(&rest)?;
    assert_eq!(placed.len(), 2, "place count 2: {placed:?}");
    let diskful: Vec<String> = placed
        .iter()
        .map(|r| r["node_name"].as_str().unwrap().to_string())
        .collect();
    for node in &diskful {
        let resource = wait_disk_state(&rest, node, "UpToDate")?;
        assert!(
            is_loop_device(&resource["volumes"][0]["device_path"]),
            "{resource}"
        );
        assert_eq!(resource["layer_object"]["type"], "STORAGE");
        let file = backing_file(&cluster, node);
        let meta = std::fs::metadata(&file)?;
        assert_eq!(meta.len(), 2 << 30, "{} is 2 GiB", file.display());
    }
    let spare: Vec<String> = ["node1", "node2", "node3", "node4"]
        .iter()
        .map(|s| s.to_string())
        .filter(|n| !diskful.contains(n))
        .collect();

    // resource create <spare> my_ssd_res --diskless
    let diskless_node = &spare[0];
    rest.post(
        "/v1/resource-definitions/my_ssd_res/resources",
        &json!([{"resource": {"node_name": diskless_node, "flags": ["DISKLESS"]}}]),
    )?
    .expect_success()?;
    let resource = wait_disk_state(&rest, diskless_node, "Diskless")?;
    assert!(
        resource["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("DISKLESS"))
    );
    assert!(
        !backing_file(&cluster, diskless_node).exists(),
        "a diskless resource has no backing file"
    );

    // Restarting a satellite changes nothing that is right.
    let node = &diskful[0];
    let before = wait_disk_state(&rest, node, "UpToDate")?["volumes"][0]["device_path"].clone();
    let inode_before =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(backing_file(&cluster, node))?);
    let mut cluster = cluster;
    cluster.satellite_mut(node).restart()?;
    cluster.wait_online(Duration::from_secs(20))?;
    let after = wait_disk_state(&rest, node, "UpToDate")?["volumes"][0]["device_path"].clone();
    assert_eq!(
        before, after,
        "the loop device stays the same across a satellite restart"
    );
    assert_eq!(
        inode_before,
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(backing_file(&cluster, node))?)
    );

    // resource toggle-disk <diskless node> --storage-pool pool_ssd (API 1.28 body form)
    rest.put(
        &format!("/v1/resource-definitions/my_ssd_res/resources/{diskless_node}/toggle-disk"),
        &json!({"operation": "INTO_DRBD_DISKFUL", "storage_pool": "pool_ssd"}),
    )?
    .expect_success()?;
    let resource = wait_disk_state(&rest, diskless_node, "UpToDate")?;
    assert!(
        is_loop_device(&resource["volumes"][0]["device_path"]),
        "{resource}"
    );
    assert!(backing_file(&cluster, diskless_node).exists());

    // resource toggle-disk <first diskful> --diskless (legacy URL form, as golinstor sends it)
    rest.put(
        &format!("/v1/resource-definitions/my_ssd_res/resources/{node}/toggle-disk/diskless"),
        &json!(null),
    )?
    .expect_success()?;
    wait_disk_state(&rest, node, "Diskless")?;
    wait_until(Duration::from_secs(10), || {
        Ok(!backing_file(&cluster, node).exists())
    })?;

    // resource delete <that node> my_ssd_res
    rest.delete(&format!(
        "/v1/resource-definitions/my_ssd_res/resources/{node}"
    ))?
    .expect_success()?;
    assert_eq!(resources(&rest)?.len(), 2);

    // Deleting the definition removes every backing file and loop device.
    rest.delete("/v1/resource-definitions/my_ssd_res")?
        .expect_success()?;
    wait_until(Duration::from_secs(10), || {
        Ok(["node1", "node2", "node3", "node4"]
            .iter()
            .all(|n| !backing_file(&cluster, n).exists()))
    })?;
    wait_until(Duration::from_secs(10), || {
        Ok(loop_devices_under(cluster.dir.path()).is_empty())
    })?;
    Ok(())
}
