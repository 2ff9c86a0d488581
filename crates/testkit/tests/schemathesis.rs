//! Schemathesis (from PyPI, pinned in `scripts/setup.sh`) against a real `ferrite-controller`:
//! every operation of the OpenAPI document the controller serves, in all four phases
//! (examples, coverage, fuzzing, stateful), with the checks and exclusions of
//! `tests/schemathesis/schemathesis.toml`. The test fails on any 5xx, any answer that does not
//! conform to the document (status, content type, body), a request that breaks the document
//! and is not refused, a crash of the controller, or a run that does not end in time.
//!
//! No satellite runs: nodes are registered with addresses where nothing listens, stay OFFLINE,
//! and mutations answer with warnings. Generation is deterministic, so CI sends the same
//! requests every time.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrite_testkit::{Binaries, ControllerProcess};

/// The schemathesis release `scripts/setup.sh` installs.
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// The longest the whole run may take before it counts as a hang (it takes about two minutes
/// on two cores; nextest's CI profile ends any test at 300 s).
const RUN_DEADLINE: Duration = Duration::from_secs(280);

/// How long a mutating call waits for satellites: none will answer, so waiting is pointless.
const CONTROLLER_ARGS: [&str; 4] = ["--apply-timeout", "1", "--node-online-timeout", "0"];

/// `python3 -m schemathesis.cli`: found wherever pip put the package, on PATH or not.
fn schemathesis() -> Command {
    let mut command = Command::new("python3");
    command.args(["-m", "schemathesis.cli"]);
    command
}

fn schemathesis_version() -> Option<String> {
    let output = schemathesis().arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().last().map(str::to_owned)
}

#[test]
fn the_served_document_holds_under_schemathesis() -> Result<()> {
    match schemathesis_version() {
        Some(version) if version == SCHEMATHESIS_VERSION => {}
        found => bail!(
            "schemathesis {SCHEMATHESIS_VERSION} is not installed (found {found:?}); run \
             scripts/setup.sh (it installs schemathesis=={SCHEMATHESIS_VERSION} from PyPI)"
        ),
    }
    let binaries = Binaries::locate()?;
    let dir = tempfile::Builder::new()
        .prefix("ferrite-schemathesis-")
        .tempdir()?;
    let args: Vec<String> = CONTROLLER_ARGS.iter().map(|a| a.to_string()).collect();
    let mut controller = ControllerProcess::start_with(&binaries, dir.path(), &args)?;
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/schemathesis/schemathesis.toml"
    );
    let started = Instant::now();
    let mut run = schemathesis()
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{}/openapi.json", controller.url()))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting schemathesis")?;
    // Read the output on threads, so a full pipe cannot stall the run.
    let mut stdout = run.stdout.take().context("schemathesis stdout")?;
    let mut stderr = run.stderr.take().context("schemathesis stderr")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = run.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > RUN_DEADLINE {
            let _ = run.kill();
            let _ = run.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    print!("{stdout}");
    eprint!("{stderr}");
    eprintln!("schemathesis ran for {:.0?}", started.elapsed());
    let alive = controller.is_running();
    let healthy = alive
        && controller
            .rest()
            .get("/health")
            .is_ok_and(|reply| reply.status == 200);
    if !healthy {
        controller.print_log_tail();
        bail!("the controller did not survive the run (running: {alive})");
    }
    match status {
        None => bail!("schemathesis did not finish within {RUN_DEADLINE:?}"),
        Some(status) if !status.success() => {
            controller.print_log_tail();
            bail!("schemathesis found problems ({status}); see its report above")
        }
        Some(_) => Ok(()),
    }
}
