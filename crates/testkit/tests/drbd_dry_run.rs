//! The article's tutorial on the kernel's DRBD engine, with satellites that dry-run it
//! (`--drbd-dry-run`: this host has no DRBD module): the controller is told to use DRBD
//! (`Ferrite/ReplicationEngine=drbd`), every node writes its resource file, and each file is
//! accepted by the real drbd-utils as that node would read it (`drbdadm dump`, `-d up`,
//! `-d adjust` in a UTS namespace with the node's hostname). The commands each satellite
//! would have run are checked step by step: create-md and adjust on the replicas, the initial
//! sync skipped once, adjust only on diskless members, create-md when a diskless member gets a
//! disk, down and wipe-md when the definition goes.
//!
//! Needs root (loop devices for the FILE_THIN pools, `unshare --uts`) and drbd-utils
//! (`scripts/setup.sh` installs it); skipped with the reason otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ferrite_testkit::{Cluster, Rest, drbd, wait_until};
use serde_json::{Value, json};

const GIB_KIB: i64 = 1 << 20;
const RESOURCE: &str = "my_ssd_res";
const WAIT: Duration = Duration::from_secs(60);

fn res_file(cluster: &Cluster, node: &str) -> PathBuf {
    res_file_of(cluster, node, RESOURCE)
}

fn res_file_of(cluster: &Cluster, node: &str, resource: &str) -> PathBuf {
    cluster
        .satellite(node)
        .drbd_resource_dir()
        .join(format!("{resource}.res"))
}

/// The commands `node` logged since the last call, with its resource directory as `DIR`.
fn take_commands(cluster: &Cluster, node: &str) -> Vec<String> {
    let dir = cluster.satellite(node).drbd_resource_dir();
    let log = dir.join("dry-run-commands.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    text.lines()
        .map(|l| l.replace(&dir.display().to_string(), "DIR"))
        .collect()
}

/// drbdadm, as `node` would run it, accepts `file`; its `-d up` commands.
fn drbdadm_accepts(node: &str, file: &Path) -> Result<String> {
    drbdadm_accepts_resource(node, file, RESOURCE)
}

/// drbdadm, as `node` would run it, accepts `file` of `resource`; its `-d up` commands.
fn drbdadm_accepts_resource(node: &str, file: &Path, resource: &str) -> Result<String> {
    let mut outputs = drbd::drbdadm_accepts(node, file, resource, &["dump", "-d up", "-d adjust"])?;
    Ok(outputs.swap_remove(1))
}

fn members(rest: &Rest) -> Result<Vec<Value>> {
    Ok(rest
        .get(&format!("/v1/view/resources?resources={RESOURCE}"))?
        .json
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn has_flag(resource: &Value, flag: &str) -> bool {
    resource["flags"]
        .as_array()
        .is_some_and(|f| f.contains(&json!(flag)))
}

fn name(resource: &Value) -> String {
    resource["node_name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until `node`'s file exists and names every member in `expected`, and no other.
fn wait_file(cluster: &Cluster, node: &str, expected: &[&str]) -> Result<String> {
    let path = res_file(cluster, node);
    let mut last = String::new();
    wait_until(WAIT, || {
        last = std::fs::read_to_string(&path).unwrap_or_default();
        let named = cluster
            .satellites
            .iter()
            .filter(|s| last.contains(&format!("on \"{}\"", s.name)))
            .count();
        Ok(named == expected.len()
            && expected
                .iter()
                .all(|n| last.contains(&format!("on \"{n}\""))))
    })
    .with_context(|| format!("{node}'s resource file naming {expected:?}; last:\n{last}"))?;
    Ok(last)
}

#[test]
fn the_tutorial_on_dry_run_drbd_gives_files_drbd_utils_accepts() -> Result<()> {
    if let Some(why) = drbd::drbdadm_unavailable() {
        eprintln!("skipped: {why}");
        return Ok(());
    }
    let cluster = Cluster::start_with(4, &["--drbd-dry-run", "--reconcile-interval", "2"])?;
    let rest = cluster.rest();
    cluster.register_nodes_with_pool("pool_ssd")?;

    // Each node says DRBD is a dry run there, never supported.
    let nodes = rest.get("/v1/nodes")?.json;
    for node in nodes.as_array().context("nodes")? {
        let reasons = node["unsupported_layers"]["DRBD"].to_string();
        assert!(reasons.contains("--drbd-dry-run"), "{node}");
        assert!(
            !node["resource_layers"]
                .as_array()
                .is_some_and(|l| l.contains(&json!("DRBD"))),
            "{node}"
        );
    }

    // A bad DRBD option is refused before anything is written.
    let refused = rest.post(
        "/v1/controller/properties",
        &json!({"override_props": {"DrbdOptions/Net/protocol": "D"}}),
    )?;
    assert_eq!(refused.status, 400, "{}", refused.json);
    assert!(
        refused.json.to_string().contains("takes one of A, B, C"),
        "{}",
        refused.json
    );

    rest.post(
        "/v1/controller/properties",
        &json!({"override_props": {
            "Ferrite/ReplicationEngine": "drbd",
            "DrbdOptions/PeerDevice/c-max-rate": "250M",
        }}),
    )?
    .expect_success()?;
    rest.post(
        "/v1/resource-groups",
        &json!({"name": "my_ssd_group", "select_filter": {"place_count": "2", "storage_pool_list": ["pool_ssd"]}}),
    )?
    .expect_success()?;
    rest.post("/v1/resource-groups/my_ssd_group/volume-groups", &json!({}))?
        .expect_success()?;
    rest.post(
        "/v1/resource-groups/my_ssd_group/spawn",
        &json!({"resource_definition_name": RESOURCE, "volume_sizes": [2 * GIB_KIB]}),
    )?
    .expect_success()?;
    let definition = rest
        .get(&format!("/v1/resource-definitions/{RESOURCE}"))?
        .json;
    assert_eq!(definition["layer_data"][0]["type"], "DRBD", "{definition}");
    assert_eq!(
        definition["layer_data"][0]["data"]["engine"], "DRBD",
        "{definition}"
    );

    let placed = members(&rest)?;
    assert_eq!(placed.len(), 3, "two replicas and a tiebreaker: {placed:?}");
    let tiebreaker = placed
        .iter()
        .find(|r| has_flag(r, "TIE_BREAKER"))
        .map(name)
        .context("a tiebreaker")?;
    let mut diskful: Vec<String> = placed
        .iter()
        .filter(|r| !has_flag(r, "DISKLESS"))
        .map(name)
        .collect();
    diskful.sort();
    let all: Vec<&str> = placed
        .iter()
        .map(|r| r["node_name"].as_str().unwrap())
        .collect();
    for node in &all {
        let text = wait_file(&cluster, node, &all)?;
        assert!(text.contains("quorum majority;"), "{text}");
        assert!(text.contains("on-no-quorum io-error;"), "{text}");
        assert!(text.contains("c-max-rate 250M;"), "{text}");
        assert!(text.contains("protocol C;"), "{text}");
        let up = drbdadm_accepts(node, &res_file(&cluster, node))?;
        assert_eq!(
            up.contains("drbdsetup attach"),
            diskful.contains(&node.to_string()),
            "{node}: {up}"
        );
    }
    // The backing device in each replica's file is its STORAGE volume (a loop device).
    for node in &diskful {
        let text = std::fs::read_to_string(res_file(&cluster, node))?;
        let own = text.split("on \"").nth(1).unwrap_or_default().to_string();
        assert!(own.contains("disk        /dev/loop"), "{node}: {text}");
    }

    // What each satellite would have run: create-md, adjust; the replica with the lowest
    // node-id starts the data generation once (no initial sync).
    let mut clear_bitmap = 0;
    for node in &diskful {
        let commands = take_commands(&cluster, node);
        assert_eq!(
            &commands[..2],
            [
                format!(
                    "drbdadm -c DIR/{RESOURCE}.res.next --max-peers 7 -- --force create-md {RESOURCE}/0"
                ),
                format!("drbdadm -c DIR/{RESOURCE}.res.next adjust {RESOURCE}"),
            ],
            "{node}: {commands:?}"
        );
        clear_bitmap += commands
            .iter()
            .filter(|c| c.contains("--clear-bitmap new-current-uuid"))
            .count();
    }
    assert_eq!(
        clear_bitmap, 1,
        "one replica skips the initial sync for all"
    );
    let commands = take_commands(&cluster, &tiebreaker);
    assert!(
        commands
            .iter()
            .all(|c| c.ends_with(&format!("adjust {RESOURCE}"))),
        "{tiebreaker}: {commands:?}"
    );

    // resource create <fourth node> --diskless (make-available): the tiebreaker goes.
    let fourth = cluster
        .satellites
        .iter()
        .map(|s| s.name.clone())
        .find(|n| !all.contains(&n.as_str()))
        .context("a fourth node")?;
    rest.post(
        &format!("/v1/resource-definitions/{RESOURCE}/resources"),
        &json!([{"resource": {"node_name": fourth, "flags": ["DISKLESS"]}}]),
    )?
    .expect_success()?;
    let now: Vec<&str> = diskful
        .iter()
        .map(String::as_str)
        .chain([fourth.as_str()])
        .collect();
    for node in &now {
        wait_file(&cluster, node, &now)?;
        drbdadm_accepts(node, &res_file(&cluster, node))?;
    }
    wait_until(WAIT, || Ok(!res_file(&cluster, &tiebreaker).exists()))
        .context("the tiebreaker's file goes with it")?;
    assert_eq!(
        take_commands(&cluster, &tiebreaker),
        [format!("drbdadm -c DIR/{RESOURCE}.res down {RESOURCE}")]
    );
    let commands = take_commands(&cluster, &fourth);
    assert_eq!(
        commands,
        [format!(
            "drbdadm -c DIR/{RESOURCE}.res.next adjust {RESOURCE}"
        )],
        "{fourth}"
    );

    // toggle-disk: the fourth node gets a disk, with new metadata.
    rest.put(
        &format!("/v1/resource-definitions/{RESOURCE}/resources/{fourth}/toggle-disk"),
        &json!({"operation": "INTO_DRBD_DISKFUL", "storage_pool": "pool_ssd"}),
    )?
    .expect_success()?;
    let mut commands = Vec::new();
    wait_until(WAIT, || {
        commands.extend(take_commands(&cluster, &fourth));
        Ok(commands.iter().any(|c| c.contains("adjust")))
    })
    .context("the fourth node adjusts to its disk")?;
    assert_eq!(
        commands,
        [
            format!(
                "drbdadm -c DIR/{RESOURCE}.res.next --max-peers 7 -- --force create-md {RESOURCE}/0"
            ),
            format!("drbdadm -c DIR/{RESOURCE}.res.next adjust {RESOURCE}"),
        ],
        "{fourth}"
    );
    for node in &now {
        let text = wait_file(&cluster, node, &now)?;
        assert!(
            !text.contains("disk        none;"),
            "three disks now: {text}"
        );
        drbdadm_accepts(node, &res_file(&cluster, node))?;
    }

    // snapshot create: every diskful member holds its I/O for the cut (suspend-io), copies
    // its backing volume and lets the I/O go on (resume-io).
    for node in &now {
        take_commands(&cluster, node);
    }
    rest.post(
        &format!("/v1/resource-definitions/{RESOURCE}/snapshots"),
        &json!({"name": "snap1"}),
    )?
    .expect_success()?;
    let mut flags = Value::Null;
    wait_until(WAIT, || {
        flags = rest
            .get(&format!(
                "/v1/resource-definitions/{RESOURCE}/snapshots/snap1"
            ))?
            .json["flags"]
            .clone();
        Ok(flags
            .as_array()
            .is_some_and(|f| f.contains(&json!("SUCCESSFUL"))))
    })
    .with_context(|| format!("the snapshot is taken on every node: {flags}"))?;
    for node in &now {
        assert_eq!(
            take_commands(&cluster, node),
            [
                format!("drbdadm -c DIR/{RESOURCE}.res suspend-io {RESOURCE}"),
                format!("drbdadm -c DIR/{RESOURCE}.res resume-io {RESOURCE}"),
            ],
            "{node}"
        );
    }

    // snapshot resource restore into a new definition: replicated like the source, on the
    // snapshot's nodes. Each writes new metadata over the restored data (create-md --force)
    // and sets the one generation every restored replica shares (drbdmeta set-gi, UpToDate):
    // they hold the same cut, so no initial sync, and no new-current-uuid either.
    const COPY: &str = "my_ssd_copy";
    rest.post(
        "/v1/resource-definitions",
        &json!({"resource_definition": {"name": COPY}}),
    )?
    .expect_success()?;
    rest.post(
        &format!("/v1/resource-definitions/{RESOURCE}/snapshot-restore-resource/snap1"),
        &json!({"to_resource": COPY}),
    )?
    .expect_success()?;
    let copy = rest.get(&format!("/v1/resource-definitions/{COPY}"))?.json;
    assert_eq!(copy["layer_data"][0]["type"], "DRBD", "{copy}");
    let mut generations = Vec::new();
    for node in &now {
        let file = res_file_of(&cluster, node, COPY);
        if let Err(e) = wait_until(WAIT, || Ok(file.exists())) {
            cluster.satellite(node).print_log_tail();
            let seen = rest
                .get(&format!("/v1/view/resources?resources={COPY}"))?
                .json;
            return Err(e.context(format!(
                "{node} writes the restored definition's file; the resources: {seen}"
            )));
        }
        let text = std::fs::read_to_string(&file)?;
        assert!(!text.contains("disk        none;"), "{node}: {text}");
        drbdadm_accepts_resource(node, &res_file_of(&cluster, node, COPY), COPY)?;
        let commands: Vec<String> = take_commands(&cluster, node)
            .into_iter()
            .filter(|c| c.contains(COPY) || c.starts_with("drbdmeta"))
            .collect();
        assert_eq!(commands.len(), 3, "{node}: {commands:?}");
        assert_eq!(
            commands[0],
            format!("drbdadm -c DIR/{COPY}.res.next --max-peers 7 -- --force create-md {COPY}/0"),
            "{node}"
        );
        let set_gi = &commands[1];
        assert!(
            set_gi.starts_with("drbdmeta --force --node-id ")
                && set_gi.contains(" v09 /dev/loop")
                && set_gi.contains(" internal set-gi ")
                && set_gi.ends_with(":0:0:0:1:1"),
            "{node}: {set_gi}"
        );
        generations.push(set_gi.rsplit(' ').next().unwrap_or_default().to_string());
        assert_eq!(
            commands[2],
            format!("drbdadm -c DIR/{COPY}.res.next adjust {COPY}"),
            "{node}"
        );
    }
    assert!(
        generations.windows(2).all(|w| w[0] == w[1]),
        "one generation for every restored replica: {generations:?}"
    );
    rest.delete(&format!("/v1/resource-definitions/{COPY}"))?
        .expect_success()?;
    for node in &now {
        wait_until(WAIT, || Ok(!res_file_of(&cluster, node, COPY).exists()))
            .with_context(|| format!("{node}'s file of the restored definition goes"))?;
    }

    rest.delete(&format!(
        "/v1/resource-definitions/{RESOURCE}/snapshots/snap1"
    ))?
    .expect_success()?;
    wait_until(WAIT, || {
        Ok(rest
            .get(&format!(
                "/v1/resource-definitions/{RESOURCE}/snapshots/snap1"
            ))?
            .status
            == 404)
    })
    .context("the snapshot is deleted")?;

    // resource delete <first replica>: a dry run holds no DRBD data (its disks report
    // DUnknown), so nothing is kept for its sake: the node takes its member down and wipes its
    // metadata; the others drop it from their files.
    for node in &now {
        take_commands(&cluster, node);
    }
    rest.delete(&format!(
        "/v1/resource-definitions/{RESOURCE}/resources/{}",
        diskful[0]
    ))?
    .expect_success()?;
    wait_until(WAIT, || Ok(!res_file(&cluster, &diskful[0]).exists()))
        .context("the deleted replica's file goes")?;
    assert_eq!(
        take_commands(&cluster, &diskful[0]),
        [
            format!("drbdadm -c DIR/{RESOURCE}.res down {RESOURCE}"),
            format!("drbdadm -c DIR/{RESOURCE}.res -- --force wipe-md {RESOURCE}/0"),
        ],
        "{}",
        diskful[0]
    );
    // Two disks are left: a diskless tiebreaker joins them again.
    let mut left = Vec::new();
    wait_until(WAIT, || {
        left = members(&rest)?.iter().map(name).collect();
        Ok(!left.contains(&diskful[0]) && left.len() == 3)
    })
    .with_context(|| format!("the deleted replica is forgotten, a tiebreaker added: {left:?}"))?;
    let now: Vec<&str> = left.iter().map(String::as_str).collect();
    for node in &now {
        wait_file(&cluster, node, &now)?;
        drbdadm_accepts(node, &res_file(&cluster, node))?;
    }

    // resource-definition delete takes every member down, wipes the replicas' metadata and
    // removes the files.
    let tiebreakers: Vec<String> = members(&rest)?
        .iter()
        .filter(|r| has_flag(r, "DISKLESS"))
        .map(name)
        .collect();
    assert_eq!(tiebreakers.len(), 1, "{left:?}");
    for node in &now {
        take_commands(&cluster, node);
    }
    rest.delete(&format!("/v1/resource-definitions/{RESOURCE}"))?
        .expect_success()?;
    for node in &now {
        wait_until(WAIT, || Ok(!res_file(&cluster, node).exists()))
            .with_context(|| format!("{node}'s file goes with the definition"))?;
        let mut expected = vec![format!("drbdadm -c DIR/{RESOURCE}.res down {RESOURCE}")];
        if !tiebreakers.iter().any(|t| t == node) {
            expected.push(format!(
                "drbdadm -c DIR/{RESOURCE}.res -- --force wipe-md {RESOURCE}/0"
            ));
        }
        assert_eq!(take_commands(&cluster, node), expected, "{node}");
    }
    Ok(())
}
