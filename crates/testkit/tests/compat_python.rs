//! The python-linstor compatibility suite: `tests/compat/tutorial.py` drives a real cluster
//! through the whole article tutorial with python-linstor 1.29.1 from PyPI (installed by
//! `scripts/setup.sh`): a replicated definition with LINSTOR's default stack, run by the MIRROR
//! engine, checked through what python-linstor parses and on the satellites' disks; and
//! `tests/compat/parity.py` drives the calls beyond the tutorial.

use std::process::Command;

use anyhow::{Context, Result, bail};
use ferrite_testkit::{Cluster, is_root};

#[test]
fn python_linstor_runs_the_tutorial() -> Result<()> {
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
    let cluster = Cluster::start(4)?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/compat/tutorial.py"
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
        // Where the satellite's MIRROR engine links its block devices (the testkit gives
        // each satellite `--device-root <state-dir>/dev`).
        command.arg("--device-root").arg(format!(
            "{}={}",
            satellite.name,
            satellite.state_dir.join("dev").display()
        ));
    }
    let output = command
        .output()
        .context("running tests/compat/tutorial.py")?;
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
            "the python-linstor tutorial failed ({}):\n{stderr}",
            output.status
        );
    }
    Ok(())
}

/// `tests/compat/parity.py`: the calls beyond the tutorial that LINSTOR's integrations make
/// (size queries, space report, key-value store, connections, LINSTOR's answers to deleting
/// what does not exist, 501 for what Ferrite does not serve), with python-linstor on three
/// real satellites.
#[test]
fn python_linstor_runs_the_calls_beyond_the_tutorial() -> Result<()> {
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
    let cluster = Cluster::start(3)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/compat/parity.py");
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
    let output = command.output().context("running tests/compat/parity.py")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    if !output.status.success() {
        cluster.controller.print_log_tail();
        bail!(
            "the python-linstor parity calls failed ({}):\n{stderr}",
            output.status
        );
    }
    Ok(())
}
