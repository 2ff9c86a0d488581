//! The article's data story with the MIRROR engine, end to end with real processes: a
//! controller, four satellites, the `ferrite-mirrord` each starts, FILE_THIN pools on loop
//! devices, and data written and read through the volumes' NBD exports with `nbdcopy`.
//!
//! Two replicas and a tiebreaker; data written on one replica is read back on the other, on the
//! tiebreaker and on a diskless node; the diskless node becomes a replica (a full resync), the
//! first replica gives up its disk and then goes; restarts of the controller and of a satellite
//! in between change nothing. The same membership changes are made while a replica's block
//! device is open and written (in use): they go through, removing what is in use is refused,
//! and every write is on every replica left. And the article's file system story through the
//! block devices: ext4 made and written on the tiebreaker, read on a replica, on a fourth node
//! made available, and on the tiebreaker's node once it is a replica and the first is gone.
//! Every read checks every byte.

use std::time::Duration;

use anyhow::{Context, Result};
use ferrite_testkit::data::Pattern;
use ferrite_testkit::nbd::{verify_pattern, write_pattern};
use ferrite_testkit::{Cluster, Rest, UNUSED_STEADY, is_root, wait_until, wait_until_steady};
use serde_json::{Value, json};

const RESOURCE: &str = "mirror_res";
const SIZE_KIB: u64 = 32 * 1024;
const WAIT: Duration = Duration::from_secs(30);

fn resources(rest: &Rest) -> Result<Vec<Value>> {
    Ok(rest
        .get(&format!("/v1/view/resources?resources={RESOURCE}"))?
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

/// Waits until volume 0 of the resource on `node` shows `state`, and returns the resource.
fn wait_disk_state(rest: &Rest, node: &str, state: &str) -> Result<Value> {
    let mut last = Value::Null;
    wait_until(WAIT, || {
        if let Some(r) = on_node(rest, node)? {
            last = r.clone();
            return Ok(r["volumes"][0]["state"]["disk_state"] == state);
        }
        Ok(false)
    })
    .map_err(|e| e.context(format!("waiting for {state} on {node}; last seen: {last}")))?;
    Ok(last)
}

/// Waits until no member of the resource is in use (an NBD client that just left is reported
/// a moment later).
/// Until no member is in use nor Primary: a Primary demotes a moment after its last user left
/// (DEMOTE_GRACE), and only then are its writes known to be on every replica's device.
fn wait_unused(rest: &Rest) -> Result<()> {
    wait_until_steady(WAIT, UNUSED_STEADY, || {
        Ok(resources(rest)?.iter().all(|r| {
            r["state"]["in_use"] != json!(true) && r["layer_object"]["drbd"]["role"] != "Primary"
        }))
    })
}

/// The NBD URI of volume 0 on `node`, from the replication layer's data.
fn nbd_uri(rest: &Rest, node: &str) -> Result<String> {
    let mut uri = None;
    wait_until(WAIT, || {
        let resource = on_node(rest, node)?.unwrap_or(Value::Null);
        uri = resource["volumes"][0]["layer_data_list"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|layer| layer["data"]["nbd_uri"].as_str().map(str::to_string));
        Ok(uri.is_some())
    })
    .with_context(|| format!("no NBD export reported for {node}"))?;
    Ok(uri.expect("found above"))
}

/// Waits until the member on `node` is connected to every peer (a member whose configuration
/// changed reconnects; a diskless one reads through its peers).
fn wait_connected(rest: &Rest, node: &str) -> Result<()> {
    let mut last = Value::Null;
    wait_until(WAIT, || {
        let resource = on_node(rest, node)?.unwrap_or(Value::Null);
        last = resource["layer_object"]["drbd"]["connections"].clone();
        Ok(last.as_object().is_some_and(|peers| {
            !peers.is_empty() && peers.values().all(|p| p["connected"] == json!(true))
        }))
    })
    .map_err(|e| {
        e.context(format!(
            "waiting for {node} to connect to its peers; last seen: {last}"
        ))
    })
}

fn check_on(rest: &Rest, node: &str, pattern: &Pattern, scratch: &std::path::Path) -> Result<()> {
    wait_connected(rest, node)?;
    verify_pattern(&nbd_uri(rest, node)?, pattern, scratch)
        .with_context(|| format!("reading on {node}"))?;
    wait_unused(rest)
}

fn nodes_with_flag(rest: &Rest, flag: &str) -> Result<Vec<String>> {
    Ok(resources(rest)?
        .iter()
        .filter(|r| {
            r["flags"]
                .as_array()
                .is_some_and(|f| f.contains(&json!(flag)))
        })
        .map(|r| r["node_name"].as_str().unwrap_or_default().to_string())
        .collect())
}

#[test]
fn replicated_data_survives_the_tutorial_and_restarts() -> Result<()> {
    with_cluster(4, scenario)
}

/// Runs `scenario` on a fresh cluster of `nodes` satellites, printing the satellites' and
/// their engines' logs when it fails. Root only: the satellites attach loop devices.
fn with_cluster(nodes: usize, scenario: fn(&mut Cluster) -> Result<()>) -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices and mount, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    let mut cluster = Cluster::start_with(
        nodes,
        &[
            "--reconcile-interval",
            "2",
            "--mirror-nbd-tcp",
            "127.0.0.1:0",
        ],
    )?;
    let outcome = scenario(&mut cluster);
    if outcome.is_err() {
        print_logs(&cluster);
    }
    outcome
}

/// Spawns [`RESOURCE`] of `size_kib` from a group of two replicas on `pool` with LINSTOR's
/// replication layer (run by MIRROR here; the controller adds the tiebreaker).
fn spawn_replicated(rest: &Rest, size_kib: u64) -> Result<()> {
    rest.post(
        "/v1/resource-groups",
        &json!({"name": "mirror_group", "select_filter": {"place_count": 2, "storage_pool_list": ["pool"], "layer_stack": ["DRBD", "STORAGE"]}}),
    )?
    .expect_success()?;
    rest.post("/v1/resource-groups/mirror_group/volume-groups", &json!({}))?
        .expect_success()?;
    rest.post(
        "/v1/resource-groups/mirror_group/spawn",
        &json!({"resource_definition_name": RESOURCE, "volume_sizes": [size_kib], "partial": false, "definitions_only": false, "select_filter": {}}),
    )?
    .expect_success()?;
    Ok(())
}

fn print_logs(cluster: &Cluster) {
    for satellite in &cluster.satellites {
        satellite.print_logs_with_mirrord();
    }
}

fn scenario(cluster: &mut Cluster) -> Result<()> {
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool")?;
    let scratch = cluster.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch)?;

    spawn_replicated(&rest, SIZE_KIB)?;
    let all = resources(&rest)?;
    let tiebreakers = nodes_with_flag(&rest, "TIE_BREAKER")?;
    assert_eq!(tiebreakers.len(), 1, "two disks get a tiebreaker: {all:?}");
    let diskful: Vec<String> = all
        .iter()
        .filter(|r| {
            !r["flags"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("DISKLESS")))
        })
        .map(|r| r["node_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(diskful.len(), 2, "{all:?}");
    let (first, second) = (diskful[0].clone(), diskful[1].clone());
    let tiebreaker = tiebreakers[0].clone();
    let spare = ["node1", "node2", "node3", "node4"]
        .into_iter()
        .find(|n| !diskful.contains(&n.to_string()) && *n != tiebreaker)
        .expect("a fourth node")
        .to_string();
    for node in &diskful {
        let resource = wait_disk_state(&rest, node, "UpToDate")?;
        assert_eq!(resource["layer_object"]["type"], "DRBD", "{resource}");
        assert_eq!(
            resource["layer_object"]["drbd"]["engine"], "MIRROR",
            "{resource}"
        );
    }

    // Written on the first replica: every other member reads it.
    let v1 = Pattern::for_volume("mirror_res v1", SIZE_KIB);
    wait_connected(&rest, &first)?;
    write_pattern(&nbd_uri(&rest, &first)?, &v1, &scratch)?;
    wait_unused(&rest)?;
    check_on(&rest, &second, &v1, &scratch)?;
    check_on(&rest, &tiebreaker, &v1, &scratch)?;
    // The same export over TCP on loopback (the satellites run with `--mirror-nbd-tcp`).
    let tcp = on_node(&rest, &tiebreaker)?.unwrap_or(Value::Null)["volumes"][0]["layer_data_list"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|layer| layer["data"]["nbd_tcp_uri"].as_str().map(str::to_string))
        .context("the tiebreaker reports no NBD export over TCP")?;
    assert!(tcp.starts_with("nbd://127.0.0.1:"), "{tcp}");
    verify_pattern(&tcp, &v1, &scratch).context("reading over TCP")?;
    wait_unused(&rest)?;
    for node in &diskful {
        // Each replica's backing store holds the data itself, the metadata after it.
        let backing = cluster.pool_dir(node).join(format!("{RESOURCE}_00000.img"));
        v1.verify_start(&backing)
            .with_context(|| format!("the backing store on {node}"))?;
    }

    // A controller restart changes nothing.
    cluster.controller.restart()?;
    cluster.wait_online(WAIT)?;
    for node in &diskful {
        wait_disk_state(&rest, node, "UpToDate")?;
    }
    check_on(&rest, &first, &v1, &scratch)?;

    // resource create <spare> --diskless: it reads the replicas' data.
    rest.post(
        &format!("/v1/resource-definitions/{RESOURCE}/resources"),
        &json!([{"resource": {"node_name": spare, "flags": ["DISKLESS"]}}]),
    )?
    .expect_success()?;
    wait_disk_state(&rest, &spare, "Diskless")?;
    check_on(&rest, &spare, &v1, &scratch)?;

    // New data written on the diskless node: on every member and in both backing stores;
    // then the diskless node becomes a replica.
    let v2 = Pattern::for_volume("mirror_res v2", SIZE_KIB);
    wait_connected(&rest, &spare)?;
    write_pattern(&nbd_uri(&rest, &spare)?, &v2, &scratch)?;
    wait_unused(&rest)?;
    // (The tiebreaker went when the diskless member came: three voters need none.)
    assert!(
        nodes_with_flag(&rest, "TIE_BREAKER")?.is_empty(),
        "{:?}",
        resources(&rest)?
    );
    for node in [&first, &second] {
        check_on(&rest, node, &v2, &scratch)?;
    }
    for node in &diskful {
        let backing = cluster.pool_dir(node).join(format!("{RESOURCE}_00000.img"));
        v2.verify_start(&backing)
            .with_context(|| format!("the backing store on {node}"))?;
    }
    make_replica(&rest, &spare)?;
    check_on(&rest, &spare, &v2, &scratch)?;

    // A satellite killed and restarted: its engine ran on; nothing changes.
    cluster.satellite_mut(&second).restart()?;
    cluster.wait_online(WAIT)?;
    wait_disk_state(&rest, &second, "UpToDate")?;
    check_on(&rest, &second, &v2, &scratch)?;

    // The first replica gives up its disk (it reads from the others), then goes.
    rest.put(
        &format!("/v1/resource-definitions/{RESOURCE}/resources/{first}/toggle-disk/diskless"),
        &json!(null),
    )?
    .expect_success()?;
    wait_disk_state(&rest, &first, "Diskless")?;
    check_on(&rest, &first, &v2, &scratch)?;
    rest.delete(&format!(
        "/v1/resource-definitions/{RESOURCE}/resources/{first}"
    ))?
    .expect_success()?;
    check_on(&rest, &second, &v2, &scratch)?;
    check_on(&rest, &spare, &v2, &scratch)?;

    // Deleting the definition takes every member down and removes every backing file.
    rest.delete(&format!("/v1/resource-definitions/{RESOURCE}"))?
        .expect_success()?;
    wait_until(WAIT, || Ok(resources(&rest)?.is_empty()))?;
    for node in ["node1", "node2", "node3", "node4"] {
        let pool = cluster.pool_dir(node);
        wait_until(WAIT, || {
            Ok(!std::fs::read_dir(&pool)?
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".img")))
        })
        .with_context(|| format!("backing files left in {}", pool.display()))?;
        let files = cluster
            .satellite(node)
            .state_dir
            .join("mirror")
            .join("resources");
        let left: Vec<_> = std::fs::read_dir(&files)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "MIRROR resource files left on {node}: {left:?}"
        );
    }
    Ok(())
}

/// The block device of volume 0 on `node`, as REST reports it (once the engine has made it).
fn device_path(rest: &Rest, node: &str) -> Result<String> {
    let mut path = None;
    wait_until(WAIT, || {
        let resource = on_node(rest, node)?.unwrap_or(Value::Null);
        path = resource["volumes"][0]["device_path"]
            .as_str()
            .filter(|p| !p.starts_with("/dev/drbd") && std::path::Path::new(p).exists())
            .map(str::to_string);
        Ok(path.is_some())
    })
    .with_context(|| format!("no block device reported for {node}"))?;
    Ok(path.expect("found above"))
}

/// `toggle-disk` of `node` into a replica in `pool`, waited for until it is UpToDate.
fn make_replica(rest: &Rest, node: &str) -> Result<()> {
    rest.put(
        &format!("/v1/resource-definitions/{RESOURCE}/resources/{node}/toggle-disk"),
        &json!({"operation": "INTO_DRBD_DISKFUL", "storage_pool": "pool"}),
    )?
    .expect_success()?;
    wait_disk_state(rest, node, "UpToDate")?;
    Ok(())
}

/// Deletes the resource on `node` and waits until it is gone.
fn remove_member(rest: &Rest, node: &str) -> Result<()> {
    rest.delete(&format!(
        "/v1/resource-definitions/{RESOURCE}/resources/{node}"
    ))?
    .expect_success()?;
    wait_until(WAIT, || Ok(on_node(rest, node)?.is_none()))
        .with_context(|| format!("the resource on {node} removed"))
}

/// Mounts `device` on `mnt`, reads the file the test wrote, and unmounts.
fn read_hello(device: &str, mnt: &str) -> Result<String> {
    run("mount", &[device, mnt])?;
    let text = std::fs::read_to_string(format!("{mnt}/hello.txt"));
    run("umount", &[mnt])?;
    Ok(text?)
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    // A mount or mkfs can meet the engine's in-use probe holding the device for an instant.
    let mut last = String::new();
    for _ in 0..5 {
        let output = std::process::Command::new(program).args(args).output()?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        last = String::from_utf8_lossy(&output.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(200));
    }
    anyhow::bail!("{program} {args:?} failed: {}", last.trim())
}

#[test]
fn a_file_system_made_on_the_tiebreaker_is_read_wherever_the_article_reads_it() -> Result<()> {
    if let Err(reasons) = ferrite_blockdev::probe() {
        eprintln!(
            "skipped: no block devices on this host: {}",
            reasons.join("; ")
        );
        return Ok(());
    }
    with_cluster(4, file_system_scenario)
}

fn file_system_scenario(cluster: &mut Cluster) -> Result<()> {
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool")?;
    spawn_replicated(&rest, SIZE_KIB)?;
    let tiebreaker = nodes_with_flag(&rest, "TIE_BREAKER")?
        .pop()
        .context("a tiebreaker")?;
    let replica = resources(&rest)?
        .iter()
        .map(|r| r["node_name"].as_str().unwrap_or_default().to_string())
        .find(|n| *n != tiebreaker)
        .context("a replica")?;
    wait_disk_state(&rest, &replica, "UpToDate")?;
    wait_connected(&rest, &tiebreaker)?;

    let mnt = cluster.dir.path().join("mnt");
    std::fs::create_dir_all(&mnt)?;
    let mnt = mnt.to_string_lossy().to_string();
    let on_tiebreaker = device_path(&rest, &tiebreaker)?;
    run("mkfs.ext4", &["-q", "-F", &on_tiebreaker])?;
    run("mount", &[&on_tiebreaker, &mnt])?;
    std::fs::write(format!("{mnt}/hello.txt"), "written on the tiebreaker\n")?;
    // Mounted, the tiebreaker is Primary and in use, and the replica's device is read-only.
    wait_until(WAIT, || {
        Ok(on_node(&rest, &tiebreaker)?.is_some_and(|r| r["state"]["in_use"] == json!(true)))
    })
    .context("the mounted tiebreaker is reported in use")?;
    let on_replica = device_path(&rest, &replica)?;
    let second_mount = cluster.dir.path().join("mnt2");
    std::fs::create_dir_all(&second_mount)?;
    let refused = std::process::Command::new("mount")
        .arg(&on_replica)
        .arg(&second_mount)
        .output()?;
    if refused.status.success() {
        let _ = std::process::Command::new("umount")
            .arg(&second_mount)
            .status();
    }
    assert!(
        !refused.status.success(),
        "a second node mounted the file system while the first had it mounted"
    );
    run("umount", &[&mnt])?;
    wait_unused(&rest)?;

    assert_eq!(
        read_hello(&on_replica, &mnt)?,
        "written on the tiebreaker\n"
    );

    // The rest of the article, through the block devices: used, the tiebreaker stayed as a
    // diskless resource; made available on the fourth node and read there; the tiebreaker's
    // node made a replica; the first replica removed; the file read again on the new replica.
    wait_until(WAIT, || {
        Ok(nodes_with_flag(&rest, "TIE_BREAKER")?.is_empty())
    })
    .context("the tiebreaker used on its node is kept as a diskless resource")?;
    let fourth = ["node1", "node2", "node3", "node4"]
        .into_iter()
        .find(|n| on_node(&rest, n).ok().flatten().is_none())
        .context("a node without the resource")?
        .to_string();
    wait_unused(&rest)?;
    rest.post(
        &format!("/v1/resource-definitions/{RESOURCE}/resources/{fourth}/make-available"),
        &json!({"diskful": false}),
    )?
    .expect_success()?;
    wait_disk_state(&rest, &fourth, "Diskless")?;
    wait_connected(&rest, &fourth)?;
    assert!(
        on_node(&rest, &tiebreaker)?.is_some(),
        "the former tiebreaker stays when a diskless member comes"
    );
    let on_fourth = device_path(&rest, &fourth)?;
    assert_eq!(
        read_hello(&on_fourth, &mnt)?,
        "written on the tiebreaker\n",
        "read on {fourth}"
    );
    wait_unused(&rest)?;
    make_replica(&rest, &tiebreaker)?;
    remove_member(&rest, &replica)?;
    wait_connected(&rest, &tiebreaker)?;
    let on_new_replica = device_path(&rest, &tiebreaker)?;
    assert_eq!(
        read_hello(&on_new_replica, &mnt)?,
        "written on the tiebreaker\n",
        "read on {tiebreaker}, a replica now"
    );
    Ok(())
}

#[test]
fn membership_changes_while_the_volume_is_in_use_keep_every_write() -> Result<()> {
    if let Err(reasons) = ferrite_blockdev::probe() {
        eprintln!(
            "skipped: no block devices on this host: {}",
            reasons.join("; ")
        );
        return Ok(());
    }
    with_cluster(4, in_use_scenario)
}

/// Rewrites `pattern` over the block device at `path`, opened exclusively as a mounted file
/// system holds it (so the member is in use and Primary), pass after pass with a flush after
/// each, until `stop` is set; then closes it. Returns the passes completed.
fn keep_writing(
    path: &str,
    pattern: &Pattern,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut device = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(path)
        .with_context(|| format!("opening {path} exclusively"))?;
    let blocks = pattern.len() / ferrite_testkit::data::BLOCK as u64;
    let mut passes = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        device.seek(SeekFrom::Start(0))?;
        for index in 0..blocks {
            device.write_all(&pattern.block(index))?;
        }
        device
            .sync_all()
            .with_context(|| format!("flushing pass {passes} to {path}"))?;
        passes += 1;
    }
    Ok(passes)
}

/// While the first replica's block device is open and written (Primary, in use): a diskless
/// member is added, made a replica (a resync under the writes), the other replica is removed;
/// removing the replica in use, or the definition, is refused with the reason. Every write
/// reaches every replica that is left.
fn in_use_scenario(cluster: &mut Cluster) -> Result<()> {
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool")?;
    let scratch = cluster.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch)?;
    spawn_replicated(&rest, SIZE_KIB)?;
    let all = resources(&rest)?;
    let tiebreaker = nodes_with_flag(&rest, "TIE_BREAKER")?
        .pop()
        .context("a tiebreaker")?;
    let diskful: Vec<String> = all
        .iter()
        .map(|r| r["node_name"].as_str().unwrap_or_default().to_string())
        .filter(|n| *n != tiebreaker)
        .collect();
    assert_eq!(diskful.len(), 2, "{all:?}");
    let (first, second) = (diskful[0].clone(), diskful[1].clone());
    let spare = ["node1", "node2", "node3", "node4"]
        .into_iter()
        .find(|n| !diskful.contains(&n.to_string()) && *n != tiebreaker)
        .expect("a fourth node")
        .to_string();
    for node in &diskful {
        wait_disk_state(&rest, node, "UpToDate")?;
    }
    wait_connected(&rest, &first)?;

    let pattern = Pattern::for_volume("written while members change", SIZE_KIB);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, pattern, stop) = (device_path(&rest, &first)?, pattern.clone(), stop.clone());
        std::thread::spawn(move || keep_writing(&path, &pattern, &stop))
    };
    let in_use = wait_until(WAIT, || {
        Ok(on_node(&rest, &first)?.is_some_and(|r| r["state"]["in_use"] == json!(true)))
    })
    .context("the written replica is reported in use");
    let changes = in_use.and_then(|()| {
        // Made available on the spare, then a replica there: it resyncs under the writes.
        rest.post(
            &format!("/v1/resource-definitions/{RESOURCE}/resources"),
            &json!([{"resource": {"node_name": spare, "flags": ["DISKLESS"]}}]),
        )?
        .expect_success()?;
        wait_disk_state(&rest, &spare, "Diskless")?;
        make_replica(&rest, &spare)?;
        // The other replica goes; the one in use and the definition may not.
        remove_member(&rest, &second)?;
        for path in [
            format!("/v1/resource-definitions/{RESOURCE}/resources/{first}"),
            format!("/v1/resource-definitions/{RESOURCE}"),
        ] {
            let refused = rest.delete(&path)?;
            assert!(
                refused.status >= 400,
                "DELETE {path} while in use: {refused:?}"
            );
            assert!(
                refused
                    .json
                    .to_string()
                    .contains(&format!("in use on node '{first}'")),
                "DELETE {path} says why: {refused:?}"
            );
        }
        assert!(on_node(&rest, &first)?.is_some(), "nothing was removed");
        Ok(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))?
        .context("writing while the members changed")?;
    changes?;
    println!("{passes} passes written while the members changed");
    wait_unused(&rest)?;
    for node in [&first, &spare] {
        wait_disk_state(&rest, node, "UpToDate")?;
        let backing = cluster.pool_dir(node).join(format!("{RESOURCE}_00000.img"));
        pattern
            .verify_start(&backing)
            .with_context(|| format!("the backing store on {node}"))?;
        check_on(&rest, node, &pattern, &scratch)?;
    }
    Ok(())
}

#[test]
fn io_goes_on_while_the_satellite_and_the_controller_are_killed() -> Result<()> {
    with_cluster(3, kill_during_io_scenario)
}

fn kill_during_io_scenario(cluster: &mut Cluster) -> Result<()> {
    const BIG_KIB: u64 = 256 * 1024;
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool")?;
    spawn_replicated(&rest, BIG_KIB)?;
    let diskful: Vec<String> = resources(&rest)?
        .iter()
        .filter(|r| {
            !r["flags"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("DISKLESS")))
        })
        .map(|r| r["node_name"].as_str().unwrap_or_default().to_string())
        .collect();
    for node in &diskful {
        wait_disk_state(&rest, node, "UpToDate")?;
    }
    let writer = diskful[0].clone();
    wait_connected(&rest, &writer)?;
    let uri = nbd_uri(&rest, &writer)?;
    let scratch = cluster.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch)?;

    // The write runs while every satellite and the controller are killed: neither is in the
    // I/O path.
    let pattern = Pattern::for_volume("written through kills", BIG_KIB);
    let write = {
        let (uri, pattern, scratch) = (uri.clone(), pattern.clone(), scratch.clone());
        std::thread::spawn(move || write_pattern(&uri, &pattern, &scratch))
    };
    std::thread::sleep(Duration::from_millis(300));
    cluster.controller.kill();
    for satellite in &mut cluster.satellites {
        satellite.kill();
    }
    write
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))?
        .context("the write while the satellites and the controller were down")?;
    // The other replica has every byte, read through its own export while the control plane
    // is still down.
    let other = &diskful[1];
    let other_uri = uri.replace(
        &format!("/satellites/{writer}/"),
        &format!("/satellites/{other}/"),
    );
    let waited = std::time::Instant::now();
    let read = loop {
        // The writer's node hands the Primary role back a moment after its client left.
        match verify_pattern(&other_uri, &pattern, &scratch) {
            Ok(()) => break Ok(()),
            Err(e) if waited.elapsed() < WAIT => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => break Err(e),
        }
    };
    read.with_context(|| format!("reading on {other} with the control plane down"))?;

    // Everything comes back as it was.
    cluster.controller.start_again()?;
    for satellite in &mut cluster.satellites {
        satellite.restart()?;
    }
    cluster.wait_online(WAIT)?;
    for node in &diskful {
        wait_disk_state(&rest, node, "UpToDate")?;
    }
    Ok(())
}

#[test]
fn snapshots_taken_while_a_replicated_volume_is_written_are_the_same_on_every_replica() -> Result<()>
{
    with_cluster(3, snapshot_cut_scenario)
}

/// While one writer after another overwrites the whole volume — first on the diskless
/// tiebreaker, then on a replica — snapshots are taken; each must hold the same bytes on both
/// replicas (one write boundary: the cut), and the writes go on after it.
fn snapshot_cut_scenario(cluster: &mut Cluster) -> Result<()> {
    const CUT_KIB: u64 = 64 * 1024;
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool")?;
    spawn_replicated(&rest, CUT_KIB)?;
    let all = resources(&rest)?;
    let node_of = |r: &Value| r["node_name"].as_str().unwrap_or_default().to_string();
    let is_diskless = |r: &Value| {
        r["flags"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("DISKLESS")))
    };
    let diskful: Vec<String> = all
        .iter()
        .filter(|r| !is_diskless(r))
        .map(node_of)
        .collect();
    let tiebreaker = all
        .iter()
        .find(|r| is_diskless(r))
        .map(node_of)
        .context("no diskless tiebreaker")?;
    for node in &diskful {
        wait_disk_state(&rest, node, "UpToDate")?;
    }
    let scratch = cluster.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch)?;

    let mut last = None;
    for (writer, snapshots) in [
        (tiebreaker.clone(), ["cut1", "cut2"]),
        (diskful[0].clone(), ["cut3", "cut4"]),
    ] {
        wait_connected(&rest, &writer)?;
        let uri = nbd_uri(&rest, &writer)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let passes = {
            let (uri, scratch, stop) = (uri.clone(), scratch.clone(), stop.clone());
            std::thread::spawn(move || -> Result<Option<Pattern>> {
                let mut pass = 0;
                let mut written = None;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    pass += 1;
                    let pattern =
                        Pattern::for_volume(&format!("pass {pass} through {uri}"), CUT_KIB);
                    write_pattern(&uri, &pattern, &scratch)?;
                    written = Some(pattern);
                }
                Ok(written)
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        for name in snapshots {
            rest.post(
                &format!("/v1/resource-definitions/{RESOURCE}/snapshots"),
                &json!({"name": name}),
            )?
            .expect_success()
            .with_context(|| format!("snapshot {name} while {writer} writes"))?;
            let listed = rest.get(&format!(
                "/v1/resource-definitions/{RESOURCE}/snapshots/{name}"
            ))?;
            anyhow::ensure!(
                listed.json["flags"]
                    .as_array()
                    .is_some_and(|f| f.contains(&json!("SUCCESSFUL"))),
                "snapshot {name} is not SUCCESSFUL: {}",
                listed.json
            );
            same_on_every_replica(cluster, &diskful, name, CUT_KIB)?;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        last = passes
            .join()
            .map_err(|_| anyhow::anyhow!("the writer panicked"))?
            .with_context(|| format!("the writes on {writer} across the snapshots"))?;
        wait_unused(&rest)?;
    }
    // The last pass is on every replica: the writes went on after the cuts.
    let last = last.context("no pass was written")?;
    check_on(&rest, &diskful[1], &last, &scratch)?;
    Ok(())
}

/// The usable bytes of snapshot `name` (each replica's metadata follows them) are the same in
/// every replica's pool.
fn same_on_every_replica(
    cluster: &Cluster,
    nodes: &[String],
    name: &str,
    size_kib: u64,
) -> Result<()> {
    let mut first: Option<(String, Vec<u8>)> = None;
    for node in nodes {
        let dir = cluster.pool_dir(node);
        let file = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(RESOURCE) && n.contains(&format!("@{name}")))
            })
            .with_context(|| format!("no file of snapshot {name} in {}", dir.display()))?;
        let mut bytes = std::fs::read(&file)?;
        bytes.truncate((size_kib * 1024) as usize);
        match &first {
            None => first = Some((node.clone(), bytes)),
            Some((other, theirs)) => {
                if let Some(at) = theirs.iter().zip(&bytes).position(|(a, b)| a != b) {
                    anyhow::bail!(
                        "snapshot {name} differs between {other} and {node} from byte {at}: the \
                         replicas did not capture one write boundary"
                    );
                }
            }
        }
    }
    Ok(())
}
