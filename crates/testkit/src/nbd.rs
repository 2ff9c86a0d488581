//! Reading and writing a replicated volume through its NBD export with `nbdcopy` (libnbd-bin),
//! the way an application on the node would.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::data::Pattern;

fn nbdcopy(from: &str, to: &str) -> Result<()> {
    let output = Command::new("nbdcopy")
        .args([from, to])
        .output()
        .context("running nbdcopy (scripts/setup.sh installs libnbd-bin)")?;
    if !output.status.success() {
        bail!(
            "nbdcopy {from} {to} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Writes `pattern` through the NBD export `uri`; `scratch` is a directory for the staging
/// file.
pub fn write_pattern(uri: &str, pattern: &Pattern, scratch: &Path) -> Result<()> {
    let file = scratch.join(format!("write-{}.img", std::process::id()));
    std::fs::File::create(&file)?.set_len(pattern.len())?;
    pattern.write(&file)?;
    let result = nbdcopy(&file.to_string_lossy(), uri);
    let _ = std::fs::remove_file(&file);
    result.with_context(|| format!("writing '{}' through {uri}", pattern.tag()))
}

/// Reads the whole export `uri` and checks it holds exactly `pattern`.
pub fn verify_pattern(uri: &str, pattern: &Pattern, scratch: &Path) -> Result<()> {
    let file = scratch.join(format!("read-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&file);
    nbdcopy(uri, &file.to_string_lossy())
        .with_context(|| format!("reading '{}' through {uri}", pattern.tag()))?;
    let result = pattern.verify(&file);
    let _ = std::fs::remove_file(&file);
    result.with_context(|| format!("the data read through {uri}"))
}
