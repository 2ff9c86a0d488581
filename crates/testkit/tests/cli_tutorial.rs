//! The article's tutorial typed as a user types it, with the `ferrite` CLI in place of `linstor`,
//! against a controller and four real satellites: exit codes, the tables users read, `-m` JSON,
//! and what the satellites did on disk.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use ferrite_testkit::{Cluster, is_root};
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

    /// `ferrite -m resource list -r my_ssd_res`: (node, diskless) of each resource, by node.
    fn placement(&self) -> Result<Vec<(String, bool)>> {
        let list = self.json(&["resource", "list", "-r", "my_ssd_res"])?;
        let resources = list[0].as_array().context("-m resource list is [[...]]")?;
        let mut placed: Vec<(String, bool)> = resources
            .iter()
            .map(|r| {
                let diskless = r["flags"].as_array().is_some_and(|flags| {
                    flags
                        .iter()
                        .any(|f| f == "DISKLESS" || f == "DRBD_DISKLESS")
                });
                (
                    r["node_name"].as_str().unwrap_or_default().to_string(),
                    diskless,
                )
            })
            .collect();
        placed.sort();
        Ok(placed)
    }
}

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
    // No replication layer yet: the warning says so.
    assert!(spawn.contains("WARNING"), "{spawn}");

    let placed = cli.placement()?;
    assert_eq!(placed.len(), 2, "{placed:?}");
    assert!(placed.iter().all(|(_, diskless)| !diskless), "{placed:?}");
    for (node, _) in &placed {
        let image = cluster.pool_dir(node).join("my_ssd_res_00000.img");
        assert_eq!(
            std::fs::metadata(&image)?.len(),
            2 << 30,
            "{}",
            image.display()
        );
    }
    let resources = cli.ok(&["r", "l"])?;
    assert_eq!(rows(&resources, "my_ssd_res "), 2, "{resources}");
    let volumes = cli.ok(&["v", "l"])?;
    assert!(volumes.contains("/dev/loop"), "{volumes}");
    assert_eq!(volumes.matches("UpToDate").count(), 2, "{volumes}");
    let definitions = cli.ok(&["rd", "l"])?;
    assert!(
        definitions.contains("my_ssd_res") && definitions.contains("my_ssd_group"),
        "{definitions}"
    );

    // A diskless resource on a node without a replica.
    let spare = cluster
        .satellites
        .iter()
        .map(|s| s.name.clone())
        .rfind(|n| !placed.iter().any(|(p, _)| p == n))
        .context("a node without a replica")?;
    cli.ok(&["resource", "create", &spare, "my_ssd_res", "--diskless"])?;
    assert!(cli.placement()?.contains(&(spare.clone(), true)));
    assert!(
        !cluster
            .pool_dir(&spare)
            .join("my_ssd_res_00000.img")
            .exists()
    );

    // toggle-disk both ways: the spare gets a disk, the first replica gives its disk away.
    cli.ok(&[
        "r",
        "td",
        &spare,
        "my_ssd_res",
        "--storage-pool",
        "pool_ssd",
    ])?;
    let first = placed[0].0.clone();
    cli.ok(&[
        "resource",
        "toggle-disk",
        &first,
        "my_ssd_res",
        "--diskless",
    ])?;
    let after = cli.placement()?;
    assert!(after.contains(&(spare.clone(), false)), "{after:?}");
    assert!(after.contains(&(first.clone(), true)), "{after:?}");
    assert!(
        cluster
            .pool_dir(&spare)
            .join("my_ssd_res_00000.img")
            .exists()
    );
    assert!(
        !cluster
            .pool_dir(&first)
            .join("my_ssd_res_00000.img")
            .exists()
    );

    cli.ok(&["resource", "delete", &first, "my_ssd_res"])?;
    assert_eq!(cli.placement()?.len(), 2);

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
    Ok(())
}
