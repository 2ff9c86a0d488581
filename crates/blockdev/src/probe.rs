//! Whether this host can give volumes block devices, through the kernel's nbd driver or the
//! FUSE + loop way, and if not, why not.
//!
//! The satellite reports the reasons as unsupported reasons, so every check says what is
//! missing in words an operator can act on.

use std::path::{Path, PathBuf};

use ferrite_storage::{CommandLine, HostCommands, SystemCommands};

use crate::kernel_nbd::{self, NbdPaths};

/// `CAP_SYS_ADMIN`: mounting (the FUSE file system), configuring loop devices and the nbd
/// driver's ioctls need it.
const CAP_SYS_ADMIN: u32 = 21;

/// The device nodes and files the probe looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePaths {
    pub fuse: PathBuf,
    pub loop_control: PathBuf,
    /// The process status file with the effective capabilities (`CapEff`).
    pub process_status: PathBuf,
    pub nbd: NbdPaths,
}

impl Default for ProbePaths {
    fn default() -> Self {
        ProbePaths {
            fuse: PathBuf::from("/dev/fuse"),
            loop_control: PathBuf::from("/dev/loop-control"),
            process_status: PathBuf::from("/proc/self/status"),
            nbd: NbdPaths::default(),
        }
    }
}

/// Whether this host can provide block devices, through the kernel's nbd driver or through
/// FUSE and loop devices, with the reasons when it cannot (those of both ways).
pub fn probe() -> Result<(), Vec<String>> {
    probe_with(&ProbePaths::default(), &SystemCommands::new())
}

/// [`probe`] with other paths and another command runner.
pub fn probe_with(paths: &ProbePaths, runner: &dyn HostCommands) -> Result<(), Vec<String>> {
    let nbd = kernel_nbd::usable(&paths.nbd);
    let mut reasons = Vec::new();
    if let Some(reason) = device_unusable(&paths.fuse, "the FUSE driver (modprobe fuse)") {
        reasons.push(reason);
    }
    if let Some(reason) = device_unusable(&paths.loop_control, "the loop driver (modprobe loop)") {
        reasons.push(reason);
    }
    match effective_capabilities(&paths.process_status) {
        Some(capabilities) if capabilities & (1 << CAP_SYS_ADMIN) != 0 => {}
        Some(_) => reasons.push(
            "the process lacks CAP_SYS_ADMIN, which mounting the FUSE file system and attaching \
             loop devices need (run as root, or grant the capability)"
                .to_string(),
        ),
        None => reasons.push(format!(
            "cannot read the process's capabilities from {}",
            paths.process_status.display()
        )),
    }
    match runner.run(&CommandLine::query("losetup").arg("--version")) {
        Ok(_) => {}
        Err(error) if error.is_not_found() => reasons.push(
            "losetup: command not found (install util-linux), it attaches the loop devices"
                .to_string(),
        ),
        Err(error) => reasons.push(format!("losetup does not work: {error}")),
    }
    let capable = !reasons
        .iter()
        .any(|reason| reason.contains("CAP_SYS_ADMIN"));
    match nbd {
        Ok(()) if capable => Ok(()),
        _ if reasons.is_empty() => Ok(()),
        Ok(()) => Err(reasons),
        Err(nbd) => {
            reasons.push(nbd);
            Err(reasons)
        }
    }
}

/// Opens a control device read-write; the reason if that fails. A device node can exist while
/// its driver does not (the open then fails with ENODEV), so existence is not enough.
fn device_unusable(path: &Path, provider: &str) -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => None,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "{} is missing: {provider} is not available",
            path.display()
        )),
        Err(error) => Some(format!(
            "cannot open {}: {error}; {provider} is not usable",
            path.display()
        )),
    }
}

/// The `CapEff` bit set of a `/proc/<pid>/status` file.
fn effective_capabilities(status: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find(|line| line.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_storage::{CommandError, CommandOutput};

    struct NoCommands;

    impl HostCommands for NoCommands {
        fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
            Err(CommandError::NotFound {
                program: command.program.clone(),
                command: command.to_string(),
            })
        }
    }

    #[test]
    fn every_missing_piece_is_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status");
        std::fs::write(&status, "Name:\tx\nCapEff:\t0000000000000000\n").unwrap();
        let paths = ProbePaths {
            fuse: dir.path().join("fuse"),
            loop_control: dir.path().join("loop-control"),
            process_status: status.clone(),
            nbd: NbdPaths {
                module: dir.path().join("module/nbd"),
                sys_block: dir.path().join("block"),
                dev: dir.path().join("dev"),
            },
        };
        let reasons = probe_with(&paths, &NoCommands).unwrap_err();
        assert_eq!(reasons.len(), 5, "{reasons:#?}");
        assert!(reasons[0].contains("fuse is missing: the FUSE driver"));
        assert!(reasons[1].contains("loop-control is missing: the loop driver"));
        assert!(reasons[2].contains("lacks CAP_SYS_ADMIN"));
        assert!(reasons[3].starts_with("losetup: command not found"));
        assert!(reasons[4].contains("nbd driver is not loaded"));

        // With the nbd driver loaded and its devices there, the missing FUSE and loop pieces
        // no longer matter; the capability still does.
        std::fs::create_dir_all(&paths.nbd.module).unwrap();
        std::fs::create_dir_all(paths.nbd.sys_block.join("nbd0")).unwrap();
        std::fs::create_dir_all(&paths.nbd.dev).unwrap();
        let loop0 = std::fs::read_dir("/dev")
            .unwrap()
            .filter_map(|entry| entry.ok())
            .find(|entry| {
                entry
                    .file_type()
                    .is_ok_and(|t| std::os::unix::fs::FileTypeExt::is_block_device(&t))
            });
        let Some(block_device) = loop0 else {
            eprintln!(
                "no block device node in /dev to stand in for /dev/nbd0; the rest is skipped"
            );
            return;
        };
        std::os::unix::fs::symlink(block_device.path(), paths.nbd.dev.join("nbd0")).unwrap();
        let reasons = probe_with(&paths, &NoCommands).unwrap_err();
        assert_eq!(reasons.len(), 4, "{reasons:#?}");
        assert!(reasons[2].contains("lacks CAP_SYS_ADMIN"));
        std::fs::write(&status, "Name:\tx\nCapEff:\t0000000000200000\n").unwrap();
        assert_eq!(probe_with(&paths, &NoCommands), Ok(()));
    }

    #[test]
    fn capabilities_are_read_from_cap_eff() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status");
        std::fs::write(&status, "CapInh:\t0\nCapEff:\t000001ffffffffff\n").unwrap();
        assert_eq!(effective_capabilities(&status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities(&dir.path().join("none")), None);
    }

    #[test]
    fn a_root_host_with_fuse_and_loop_is_supported() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let devices = ["/dev/fuse", "/dev/loop-control"]
            .iter()
            .all(|path| Path::new(path).exists());
        match probe() {
            Ok(()) => {}
            Err(reasons) if root && devices => panic!("unsupported: {reasons:?}"),
            Err(reasons) => eprintln!("block devices unsupported here: {reasons:?}"),
        }
    }
}
