//! The real drbd-utils on a resource file a satellite wrote, as the file's node would read it:
//! `drbdadm` runs in a UTS namespace whose hostname is the node's name (`unshare --uts`), so it
//! finds that node's `on` section. No kernel module is needed: `dump` only parses, and `-d`
//! prints the drbdsetup/drbdmeta commands instead of running them.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::is_root;

/// Why drbdadm cannot be run this way here, if it cannot: a test says so and passes.
pub fn drbdadm_unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root: drbdadm runs in a UTS namespace (unshare --uts)".into());
    }
    for program in ["drbdadm", "unshare"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{program} is not installed (scripts/setup.sh installs drbd-utils)"
            ));
        }
    }
    None
}

/// Runs `drbdadm -c <file> <args> <resource>` as `node` for each of `commands` (e.g. `dump`,
/// `-d up`, `-d adjust`) and returns each one's standard output; the first refusal is an
/// error with drbdadm's words.
pub fn drbdadm_accepts(
    node: &str,
    file: &Path,
    resource: &str,
    commands: &[&str],
) -> Result<Vec<String>> {
    let mut outputs = Vec::new();
    for args in commands {
        let script = format!(
            "hostname {node} && drbdadm -c {} {args} {resource}",
            file.display()
        );
        let output = Command::new("unshare")
            .args(["--uts", "sh", "-c", &script])
            .output()?;
        if !output.status.success() {
            bail!(
                "drbdadm {args} refused {} as {node}: {}",
                file.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        outputs.push(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Ok(outputs)
}
