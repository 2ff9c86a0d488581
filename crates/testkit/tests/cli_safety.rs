//! The data-safety commands of the `ferrite` CLI against a controller and two real satellites:
//! a backup of the store, read back with SQLite; the orphan commands on a node without
//! orphans; a node's refusal to create anew a volume that is not missing, and a volume whose
//! file was removed reported missing and created anew only when asked; then the backup
//! restored: the volumes the restored store does not know are kept by their nodes as orphans,
//! listed, and deleted only when named exactly.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ferrite_testkit::{Cluster, is_root, wait_until};
use serde_json::Value;

struct Cli<'a> {
    binary: &'a Path,
    controller: String,
}

/// What a run printed and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Result<Run> {
        let out: Output = Command::new(self.binary)
            .arg("--controllers")
            .arg(&self.controller)
            .args(args)
            .env_remove("FERRITE_CONTROLLERS")
            .env_remove("LS_CONTROLLERS")
            .output()
            .with_context(|| format!("running ferrite {}", args.join(" ")))?;
        Ok(Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs a command that must exit with `code`.
    fn expect(&self, code: i32, args: &[&str]) -> Result<Run> {
        let run = self.run(args)?;
        if run.code != Some(code) {
            bail!(
                "ferrite {} exited {:?}, not {code}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                run.code,
                run.stdout,
                run.stderr
            );
        }
        Ok(run)
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        Ok(self.expect(0, args)?.stdout)
    }

    /// `ferrite -m node orphans list`: the orphans, as the controller answered them.
    fn orphans(&self) -> Result<Vec<Value>> {
        let stdout = self.ok(&["-m", "node", "orphans", "list"])?;
        let listed: Value = serde_json::from_str(&stdout)
            .with_context(|| format!("parsing -m output: {stdout}"))?;
        Ok(listed[0]
            .as_array()
            .context("-m orphans is [[...]]")?
            .clone())
    }
}

#[test]
fn backup_orphans_and_missing_volumes_with_the_ferrite_cli() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    // Storage only: the orphans, missing volumes and backups of the storage layer (no engine).
    let mut cluster = Cluster::start_with(2, &["--mirrord", "/nonexistent/ferrite-mirrord"])?;
    if !cluster.binaries.cli.exists() {
        bail!(
            "{} is missing; build the binaries first (cargo build --workspace --bins)",
            cluster.binaries.cli.display()
        );
    }
    cluster.register_nodes_with_pool("pool_ssd")?;
    let binary = cluster.binaries.cli.clone();
    let cli = Cli {
        binary: &binary,
        controller: cluster.controller.listen.to_string(),
    };
    let nodes = cli.ok(&["node", "list"])?;
    assert_eq!(nodes.matches("Online").count(), 2, "{nodes}");
    assert!(
        nodes.trim_end().ends_with('+'),
        "online nodes need no explanation: {nodes}"
    );

    // A backup of the store, written by the controller where it was told.
    let backups = cluster.dir.path().join("backups");
    std::fs::create_dir_all(&backups)?;
    let backup = backups.join("ferrite-1.db");
    let backup_arg = backup.to_str().context("a UTF-8 path")?;
    let out = cli.ok(&["controller", "backup", backup_arg])?;
    assert!(
        out.starts_with(&format!(
            "SUCCESS:\n    Backup of the controller's store written to {backup_arg} ("
        )),
        "{out}"
    );
    let db =
        rusqlite::Connection::open_with_flags(&backup, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    assert_eq!(check, "ok");
    let mut names = Vec::new();
    let mut statement = db.prepare("SELECT data FROM nodes ORDER BY name")?;
    for data in statement.query_map([], |row| row.get::<_, String>(0))? {
        let node: Value = serde_json::from_str(&data?)?;
        names.push(node["name"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(names, vec!["node1", "node2"]);
    drop(statement);
    drop(db);
    // Never over an existing file; never a path relative to this client (exit 2, nothing sent).
    let refused = cli.expect(10, &["c", "bakdb", backup_arg])?;
    assert!(
        refused.stdout.contains("already exists"),
        "{}",
        refused.stdout
    );
    let relative = cli.expect(2, &["c", "backupdb", "ferrite-2.db"])?;
    assert!(
        relative.stderr.contains("relative path"),
        "{}",
        relative.stderr
    );

    // No orphans yet; deleting one that is not there is refused with what was asked for.
    assert!(cli.orphans()?.is_empty());
    let table = cli.ok(&["node", "orphans", "list"])?;
    assert_eq!(table.lines().count(), 4, "a header only: {table}");
    let pool1 = cluster.pool_dir("node1");
    let pool1_arg = pool1.to_str().context("a UTF-8 path")?;
    let refused = cli.expect(
        10,
        &[
            "node",
            "orphans",
            "delete",
            "node1",
            "web",
            "0",
            "--pool-name",
            pool1_arg,
        ],
    )?;
    assert!(
        refused.stdout.contains(&format!(
            "Node 'node1' reports no orphan web/0 in '{pool1_arg}' with no identity."
        )),
        "{}",
        refused.stdout
    );

    // A resource on both nodes; its volume is there, so it is not missing and the node says so.
    cli.ok(&[
        "rg",
        "c",
        "grp",
        "--storage-pool",
        "pool_ssd",
        "--place-count",
        "2",
    ])?;
    cli.ok(&["vg", "c", "grp"])?;
    cli.ok(&["rg", "spawn", "grp", "web", "64M"])?;
    let image1 = pool1.join("web_00000.img");
    let image2 = cluster.pool_dir("node2").join("web_00000.img");
    assert!(image1.exists() && image2.exists());
    let volumes = cli.ok(&["v", "l", "-r", "web"])?;
    assert_eq!(volumes.matches("UpToDate").count(), 2, "{volumes}");
    let refused = cli.expect(10, &["volume", "recreate-missing", "node1", "web", "0"])?;
    assert!(
        refused
            .stdout
            .contains("Node 'node1' did not carry out the command."),
        "{}",
        refused.stdout
    );
    assert!(
        refused.stdout.contains("it is not missing"),
        "{}",
        refused.stdout
    );
    assert!(image1.exists(), "the refusal changed nothing");

    // A volume whose backing file disappears is reported missing and not created again, until
    // the loss is accepted with recreate-missing: then it is created anew, empty.
    std::fs::remove_file(&image2)?;
    // Any change makes the node converge now rather than at its next pass.
    cli.ok(&["r", "sp", "node2", "web", "Aux/poke", "1"])?;
    let mut listed = String::new();
    wait_until(Duration::from_secs(20), || {
        listed = cli.ok(&["v", "l", "-r", "web", "-n", "node2"])?;
        Ok(listed.contains("is missing"))
    })
    .context("waiting for node2 to report web/0 missing")?;
    assert!(listed.contains("| Error |"), "{listed}");
    assert!(
        listed.contains("ferrite volume recreate-missing node2 web 0"),
        "the report names the command: {listed}"
    );
    assert!(
        !image2.exists(),
        "a missing volume is not created again by itself"
    );
    let out = cli.ok(&["volume", "recreate-missing", "node2", "web", "0"])?;
    assert!(
        out.contains("Volume web/0 on node 'node2' is created anew, empty."),
        "{out}"
    );
    wait_until(Duration::from_secs(20), || {
        Ok(image2.exists()
            && cli
                .ok(&["v", "l", "-r", "web"])?
                .matches("UpToDate")
                .count()
                == 2)
    })
    .context("waiting for node2 to create web/0 anew")?;

    // The backup restored: the store no longer knows 'web', and its volumes become orphans.
    cluster.controller.stop()?;
    let restore = Command::new(&cluster.binaries.controller)
        .arg("--restore")
        .arg(&backup)
        .arg("--data-dir")
        .arg(&cluster.controller.data_dir)
        .args(["--config", "/dev/null"])
        .output()?;
    ensure!(
        restore.status.success(),
        "ferrite-controller --restore failed: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    cluster.controller.restart_clean()?;
    cluster.wait_online(Duration::from_secs(20))?;
    wait_until(Duration::from_secs(30), || Ok(cli.orphans()?.len() == 2))
        .context("waiting for both nodes to report web's volume as an orphan")?;
    let orphans = cli.orphans()?;
    let node1 = orphans
        .iter()
        .find(|o| o["node_name"] == "node1")
        .context("node1's orphan")?;
    assert_eq!(node1["resource_name"], "web");
    assert_eq!(node1["volume_number"], 0);
    assert_eq!(node1["storage_pool_name"], "pool_ssd");
    assert_eq!(node1["backing_name"], "web_00000");
    let location = node1["pool_name"]
        .as_str()
        .context("pool_name")?
        .to_string();
    let identity = node1["identity"]
        .as_str()
        .context("web's volume has an identity")?
        .to_string();
    let table = cli.ok(&["node", "orphans", "list", "node1"])?;
    assert!(
        table.contains(&format!(
            "| node1 | web      |     0 | pool_ssd | {location}/web_00000 | {identity} |"
        )),
        "{table}"
    );
    let nodes = cli.ok(&["node", "list"])?;
    assert_eq!(
        nodes.matches("Online").count(),
        2,
        "a restored store is taken, not refused: {nodes}"
    );

    // Named inexactly (another identity, or none), nothing is deleted.
    for wrong in [
        vec!["--identity", "00000000-0000-0000-0000-000000000000"],
        vec![],
    ] {
        let mut args = vec![
            "n",
            "orphans",
            "d",
            "node1",
            "web",
            "0",
            "--pool-name",
            location.as_str(),
        ];
        args.extend(wrong);
        cli.expect(10, &args)?;
        assert!(image1.exists());
    }
    // Named exactly, it is deleted on its node, and only there.
    let out = cli.ok(&[
        "node",
        "orphans",
        "delete",
        "node1",
        "web",
        "0",
        "--pool-name",
        &location,
        "--identity",
        &identity,
    ])?;
    assert!(out.starts_with("SUCCESS:"), "{out}");
    assert!(!image1.exists(), "{}", image1.display());
    assert!(image2.exists(), "node2's orphan is untouched");
    wait_until(Duration::from_secs(10), || {
        let left = cli.orphans()?;
        Ok(left.len() == 1 && left[0]["node_name"] == "node2")
    })
    .context("node1's orphan leaves the list")?;
    Ok(())
}
