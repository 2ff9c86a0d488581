//! Runs one of the python-linstor suites in `tests/compat/` (python-linstor 1.29.1 from PyPI,
//! installed by `scripts/setup.sh`) against a fresh cluster of real satellites: the script gets
//! the controller's URL and, per node, its satellite address and pool directory (and, when
//! asked, the directory its MIRROR engine links block devices in).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{Cluster, is_root};

/// Runs `tests/compat/<script>` on `nodes` satellites; `what` names the suite in a failure.
/// Without root (the satellites attach loop devices) it says why and passes.
pub fn run_python_linstor(
    script: &str,
    nodes: usize,
    device_roots: bool,
    what: &str,
) -> Result<()> {
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
    let cluster = Cluster::start(nodes)?;
    let path = format!("{}/../../tests/compat/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new("python3");
    command
        .arg(&path)
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
        if device_roots {
            // The testkit gives each satellite `--device-root <state-dir>/dev`.
            command.arg("--device-root").arg(format!(
                "{}={}",
                satellite.name,
                satellite.state_dir.join("dev").display()
            ));
        }
    }
    let output = command
        .output()
        .with_context(|| format!("running tests/compat/{script}"))?;
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
            "the python-linstor {what} failed ({}):\n{stderr}",
            output.status
        );
    }
    Ok(())
}
