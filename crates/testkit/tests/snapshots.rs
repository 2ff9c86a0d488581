//! Snapshots end to end with a real client: `tests/compat/snapshots.py` drives a controller
//! and two real satellites through python-linstor 1.29.1 (the library behind the `linstor` CLI)
//! — snapshot create (all nodes, one node, several resources at once), list, delete, restore
//! into a new definition, rollback and `resource-definition clone` — and checks the bytes each
//! step leaves in the FILE_THIN pools' files.

use std::process::Command;

use anyhow::{Context, Result, bail};
use ferrite_testkit::{Cluster, is_root};

#[test]
fn python_linstor_takes_restores_rolls_back_and_clones_snapshots() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the satellites attach loop devices, which needs root (CI runs as root)"
        );
        return Ok(());
    }
    let probe = Command::new("python3")
        .args(["-c", "import linstor"])
        .output()
        .context("running python3")?;
    if !probe.status.success() {
        bail!(
            "python-linstor is not installed; run scripts/setup.sh (it installs python-linstor==1.29.1 from PyPI)"
        );
    }
    let cluster = Cluster::start(2)?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/compat/snapshots.py"
    );
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg("--controller")
        .arg(format!("linstor://{}", cluster.controller.listen));
    for satellite in &cluster.satellites {
        command
            .arg("--node")
            .arg(format!("{}={}", satellite.name, satellite.address));
        command.arg("--pool-dir").arg(format!(
            "{}={}",
            satellite.name,
            cluster.pool_dir(&satellite.name).display()
        ));
    }
    let output = command
        .output()
        .context("running tests/compat/snapshots.py")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    if !output.status.success() {
        cluster.controller.print_log_tail();
        for satellite in &cluster.satellites {
            satellite.print_log_tail();
        }
        bail!(
            "the python-linstor snapshot suite failed ({}):\n{stderr}",
            output.status
        );
    }
    Ok(())
}
