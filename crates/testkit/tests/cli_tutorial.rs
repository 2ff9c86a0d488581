//! The article's tutorial typed as a user types it, with the `ferrite` CLI in place of `linstor`,
//! against a controller and four real satellites: exit codes, the tables users read, `-m` JSON,
//! and what the satellites did on disk.
//!
//! The tutorial gives its definition no layer list, so it gets LINSTOR's default stack,
//! DRBD,STORAGE, at its first placement, run here by the MIRROR engine (no node runs DRBD 9):
//! the tables show `MIRROR,STORAGE`, a diskless tiebreaker, disk states from the engine and
//! the engine's block devices.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrite_testkit::{Cluster, is_root, loop_devices_under, wait_until};
use serde_json::Value;

struct Cli<'a> {
    binary: &'a Path,
    controller: String,
}

impl Cli<'_> {
    fn output(&self, args: &[&str]) -> Result<Output> {
        Command::new(self.binary)
            .arg("--controllers")
            .arg(&self.controller)
            .args(args)
            .env_remove("FERRITE_CONTROLLERS")
            .env_remove("LS_CONTROLLERS")
            .output()
            .with_context(|| format!("running ferrite {}", args.join(" ")))
    }

    /// Runs a command that must succeed (exit 0) and returns its stdout.
    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.code() != Some(0) {
            bail!(
                "ferrite {} exited {:?}\nstdout:\n{stdout}\nstderr:\n{}",
                args.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// Runs a command with `-m` and parses its JSON.
    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["-m"];
        all.extend_from_slice(args);
        let stdout = self.ok(&all)?;
        serde_json::from_str(&stdout).with_context(|| format!("parsing -m output: {stdout}"))
    }

    /// `ferrite -m resource list -r my_ssd_res`: the resources as JSON, by node.
    fn resources(&self) -> Result<Vec<Value>> {
        let list = self.json(&["resource", "list", "-r", "my_ssd_res"])?;
        let mut resources = list[0]
            .as_array()
            .context("-m resource list is [[...]]")?
            .clone();
        resources.sort_by_key(|r| r["node_name"].as_str().unwrap_or_default().to_string());
        Ok(resources)
    }

    /// (node, diskless, tiebreaker) of each resource, by node.
    fn placement(&self) -> Result<Vec<(String, bool, bool)>> {
        Ok(self
            .resources()?
            .iter()
            .map(|r| {
                (
                    r["node_name"].as_str().unwrap_or_default().to_string(),
                    has_flag(r, "DISKLESS") || has_flag(r, "DRBD_DISKLESS"),
                    has_flag(r, "TIE_BREAKER"),
                )
            })
            .collect())
    }

    /// Waits until volume 0 of the resource on `node` shows `state` in `-m resource list`.
    fn wait_disk_state(&self, node: &str, state: &str, timeout: Duration) -> Result<Value> {
        let mut last = Value::Null;
        wait_until(timeout, || {
            last = self
                .resources()?
                .into_iter()
                .find(|r| r["node_name"] == node)
                .unwrap_or(Value::Null);
            Ok(last["volumes"][0]["state"]["disk_state"] == state)
        })
        .map_err(|e| e.context(format!("waiting for {state} on {node}; last seen: {last}")))?;
        Ok(last)
    }
}

fn has_flag(resource: &Value, flag: &str) -> bool {
    resource["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

/// Engine state reaches the controller a moment after the answer that caused it. Longer than
/// the satellite's reconcile interval (30 s): a change the engine fails to apply is retried at
/// the next pass, and a MIRROR restart for a changed configuration sometimes fails to bind its
/// port while the old listener is still open ("Address already in use"), a known engine bug.
const WAIT: Duration = Duration::from_secs(75);
/// A full sync of 2 GiB between two user-space engines on a loaded 2-core machine.
const FULL_SYNC: Duration = Duration::from_secs(180);

#[test]
fn the_article_tutorial_with_the_ferrite_cli() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    let cluster = Cluster::start(4)?;
    if !cluster.binaries.cli.exists() {
        bail!(
            "{} is missing; build the binaries first (cargo build --workspace --bins)",
            cluster.binaries.cli.display()
        );
    }
    let cli = Cli {
        binary: &cluster.binaries.cli,
        controller: cluster.controller.listen.to_string(),
    };

    // An empty cluster lists no nodes.
    assert_eq!(cli.json(&["node", "list"])?, serde_json::json!([[]]));

    for satellite in &cluster.satellites {
        let port = satellite.address.port().to_string();
        let ip = satellite.address.ip().to_string();
        let out = cli.ok(&[
            "node",
            "create",
            &satellite.name,
            &ip,
            "--node-type",
            "combined",
            "-p",
            &port,
        ])?;
        assert!(out.contains("SUCCESS"), "{out}");
        assert!(
            out.contains(&format!("New node '{}' registered.", satellite.name)),
            "{out}"
        );
    }
    cluster.wait_online(std::time::Duration::from_secs(20))?;
    let nodes = cli.ok(&["n", "l"])?;
    for column in ["Node", "NodeType", "Addresses", "State"] {
        assert!(nodes.contains(column), "{nodes}");
    }
    assert_eq!(nodes.matches("COMBINED").count(), 4, "{nodes}");
    assert_eq!(nodes.matches("Online").count(), 4, "{nodes}");

    for satellite in &cluster.satellites {
        let dir = cluster.pool_dir(&satellite.name);
        std::fs::create_dir_all(&dir)?;
        let out = cli.ok(&[
            "storage-pool",
            "create",
            "filethin",
            &satellite.name,
            "pool_ssd",
            &dir.to_string_lossy(),
        ])?;
        assert!(out.contains("SUCCESS"), "{out}");
    }
    let pools = cli.ok(&["sp", "l"])?;
    let rows = |table: &str, first: &str| {
        table
            .lines()
            .filter(|l| l.trim_start_matches(['|', '┊', ' ']).starts_with(first))
            .count()
    };
    assert_eq!(rows(&pools, "pool_ssd "), 4, "{pools}");
    assert_eq!(pools.matches("FILE_THIN").count(), 4, "{pools}");

    cli.ok(&[
        "resource-group",
        "create",
        "my_ssd_group",
        "--storage-pool",
        "pool_ssd",
        "--place-count",
        "2",
    ])?;
    cli.ok(&["volume-group", "create", "my_ssd_group"])?;
    let spawn = cli.ok(&[
        "resource-group",
        "spawn-resources",
        "my_ssd_group",
        "my_ssd_res",
        "2G",
    ])?;
    assert!(spawn.contains("SUCCESS"), "{spawn}");
    // Replicated: the note says by which engine, and no warning says otherwise.
    assert!(spawn.contains("INFO"), "{spawn}");
    assert!(
        spawn.contains("is replicated by the MIRROR engine"),
        "{spawn}"
    );
    assert!(spawn.contains("Tie breaker resource"), "{spawn}");
    assert!(!spawn.contains("WARNING"), "{spawn}");

    // Two replicas and a diskless tiebreaker on a third node.
    let placed = cli.placement()?;
    assert_eq!(placed.len(), 3, "{placed:?}");
    let diskful: Vec<String> = placed
        .iter()
        .filter(|(_, diskless, _)| !diskless)
        .map(|(node, _, _)| node.clone())
        .collect();
    assert_eq!(diskful.len(), 2, "{placed:?}");
    let tiebreakers: Vec<&(String, bool, bool)> = placed.iter().filter(|p| p.2).collect();
    assert_eq!(tiebreakers.len(), 1, "{placed:?}");
    assert!(tiebreakers[0].1, "a tiebreaker is diskless: {placed:?}");
    let tiebreaker = tiebreakers[0].0.clone();
    let image = |node: &str| cluster.pool_dir(node).join("my_ssd_res_00000.img");
    let device = |node: &str| -> PathBuf {
        cluster
            .satellite(node)
            .state_dir
            .join("dev")
            .join("my_ssd_res")
            .join("0")
    };
    for node in &diskful {
        cli.wait_disk_state(node, "UpToDate", WAIT)?;
        // The usable 2 GiB and MIRROR's metadata after it, sparse.
        let meta = std::fs::metadata(image(node))?;
        assert!(
            meta.len() > 2 << 30 && meta.len() < (2 << 30) + (64 << 20),
            "{}: {} bytes",
            image(node).display(),
            meta.len()
        );
        assert!(
            std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 64 << 20,
            "no initial sync filled {}",
            image(node).display()
        );
    }
    cli.wait_disk_state(&tiebreaker, "Diskless", WAIT)?;
    assert!(!image(&tiebreaker).exists());
    // The engine's devices and connections reach the controller a moment after the disk
    // states: every member shows its block device and is connected to both others.
    let mut volumes = String::new();
    wait_until(WAIT, || {
        volumes = cli.ok(&["v", "l"])?;
        Ok(placed
            .iter()
            .all(|(node, _, _)| volumes.contains(&*device(node).to_string_lossy()))
            && volumes.matches("Established(2)").count() == 3)
    })
    .with_context(|| format!("every member's block device and peers in:\n{volumes}"))?;
    assert!(!volumes.contains("/dev/loop"), "{volumes}");
    assert_eq!(volumes.matches("UpToDate").count(), 2, "{volumes}");
    assert_eq!(volumes.matches("TieBreaker").count(), 1, "{volumes}");

    let resources = cli.ok(&["r", "l"])?;
    assert_eq!(rows(&resources, "my_ssd_res "), 3, "{resources}");
    assert_eq!(
        resources.matches("MIRROR,STORAGE").count(),
        3,
        "{resources}"
    );
    assert_eq!(resources.matches("UpToDate").count(), 2, "{resources}");
    assert_eq!(resources.matches("TieBreaker").count(), 1, "{resources}");
    let definitions = cli.ok(&["rd", "l"])?;
    assert!(
        definitions.contains("my_ssd_res")
            && definitions.contains("my_ssd_group")
            && definitions.contains("MIRROR,STORAGE"),
        "{definitions}"
    );

    // A diskless resource on the tiebreaker's node takes the tiebreaker over.
    let created = cli.ok(&[
        "resource",
        "create",
        &tiebreaker,
        "my_ssd_res",
        "--diskless",
    ])?;
    assert!(created.contains("taken over"), "{created}");
    let after = cli.placement()?;
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        after.contains(&(tiebreaker.clone(), true, false)),
        "{after:?}"
    );
    cli.wait_disk_state(&tiebreaker, "Diskless", WAIT)?;
    assert!(!image(&tiebreaker).exists());
    let resources = cli.ok(&["r", "l"])?;
    assert!(!resources.contains("TieBreaker"), "{resources}");

    // toggle-disk both ways: the diskless node gets a disk and a full sync; once it is
    // UpToDate, the first replica gives its disk away.
    let spare = tiebreaker;
    cli.ok(&[
        "r",
        "td",
        &spare,
        "my_ssd_res",
        "--storage-pool",
        "pool_ssd",
    ])?;
    assert!(image(&spare).exists());
    cli.wait_disk_state(&spare, "UpToDate", FULL_SYNC)?;
    let first = diskful[0].clone();
    cli.ok(&[
        "resource",
        "toggle-disk",
        &first,
        "my_ssd_res",
        "--diskless",
    ])?;
    cli.wait_disk_state(&first, "Diskless", WAIT)?;
    let after = cli.placement()?;
    assert!(after.contains(&(spare.clone(), false, false)), "{after:?}");
    assert!(after.contains(&(first.clone(), true, false)), "{after:?}");
    assert!(image(&spare).exists());
    wait_until(WAIT, || Ok(!image(&first).exists()))?;
    wait_until(WAIT, || {
        Ok(loop_devices_under(&cluster.pool_dir(&first)).is_empty())
    })
    .context("the removed disk's loop device is detached")?;
    // `Removing disk` until the satellite confirms the deletion.
    let mut resources = String::new();
    wait_until(WAIT, || {
        resources = cli.ok(&["r", "l"])?;
        Ok(
            resources.matches("UpToDate").count() == 2
                && resources.matches("Diskless").count() == 1,
        )
    })
    .with_context(|| format!("two UpToDate replicas and a Diskless resource in:\n{resources}"))?;

    // resource delete: two disks are left and no diskless member, so a tiebreaker comes back
    // on the node that had nothing.
    let deleted = cli.ok(&["resource", "delete", &first, "my_ssd_res"])?;
    assert!(deleted.contains("Tie breaker resource"), "{deleted}");
    wait_until(WAIT, || {
        Ok(cli.placement()?.iter().all(|(node, _, _)| *node != first))
    })?;
    let untouched = cluster
        .satellites
        .iter()
        .map(|s| s.name.clone())
        .find(|n| !placed.iter().any(|(p, _, _)| p == n))
        .context("a node the tutorial did not use")?;
    let after = cli.placement()?;
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        after.contains(&(untouched.clone(), true, true)),
        "{after:?}"
    );
    cli.wait_disk_state(&untouched, "Diskless", WAIT)?;
    assert!(!image(&untouched).exists());
    wait_until(WAIT, || Ok(!device(&first).exists()))
        .context("a deleted resource's block device goes")?;

    // Errors: exit 10 with the cause and the correction; no controller: exit 20.
    let unknown = cli.output(&["resource", "delete", "node9", "my_ssd_res"])?;
    assert_eq!(unknown.status.code(), Some(10));
    let text = String::from_utf8_lossy(&unknown.stdout).to_string()
        + &String::from_utf8_lossy(&unknown.stderr);
    assert!(text.contains("ERROR") && text.contains("node9"), "{text}");
    let nobody = Cli {
        binary: &cluster.binaries.cli,
        controller: format!("127.0.0.1:{}", ferrite_testkit::free_port()),
    }
    .output(&["node", "list"])?;
    assert_eq!(nobody.status.code(), Some(20));

    // resource-definition delete: nothing is left on any node.
    cli.ok(&["resource-definition", "delete", "my_ssd_res"])?;
    wait_until(WAIT, || Ok(cli.placement()?.is_empty()))?;
    for satellite in &cluster.satellites {
        let node = satellite.name.as_str();
        wait_until(WAIT, || Ok(!image(node).exists() && !device(node).exists()))
            .with_context(|| format!("files left on {node}"))?;
    }
    wait_until(WAIT, || {
        Ok(loop_devices_under(cluster.dir.path()).is_empty())
    })
    .context("loop devices left")?;
    Ok(())
}
