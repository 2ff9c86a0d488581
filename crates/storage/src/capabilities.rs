//! Which storage providers this host can run, and for each one it cannot, why not.
//!
//! A provider needs its tools (found by running them through the runner, so a missing tool reads
//! "zfs: command not found") and its kernel interface (a device node that opens). The answer goes
//! into the satellite's handshake, so the controller never places a volume where it cannot be
//! created.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferrite_types::ProviderKind;

use crate::ProviderOptions;
use crate::runner::{CommandLine, HostCommands};

/// The device nodes that tell whether a kernel driver is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    pub loop_control: PathBuf,
    pub device_mapper_control: PathBuf,
    pub zfs_control: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            loop_control: PathBuf::from("/dev/loop-control"),
            device_mapper_control: PathBuf::from("/dev/mapper/control"),
            zfs_control: PathBuf::from("/dev/zfs"),
        }
    }
}

/// The providers a host supports, and the reasons for the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSupport {
    pub supported: Vec<ProviderKind>,
    pub unsupported: BTreeMap<ProviderKind, Vec<String>>,
}

impl ProviderSupport {
    pub fn supports(&self, kind: ProviderKind) -> bool {
        self.supported.contains(&kind)
    }

    /// Why `kind` is not supported (empty if it is).
    pub fn reasons(&self, kind: ProviderKind) -> &[String] {
        self.unsupported
            .get(&kind)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn record(&mut self, kind: ProviderKind, reasons: Vec<String>) {
        if reasons.is_empty() {
            self.supported.push(kind);
        } else {
            self.unsupported.insert(kind, reasons);
        }
    }
}

/// Runs `program args` to see whether the tool is installed; the reason if it is not.
fn tool_missing(runner: &dyn HostCommands, program: &str, args: &[&str]) -> Option<String> {
    match runner.run(&CommandLine::query(program).args(args.iter().copied())) {
        Ok(_) => None,
        Err(e) if e.is_not_found() => Some(format!("{program}: command not found")),
        Err(e) => Some(format!("{program} does not work: {e}")),
    }
}

/// Opens a control device read-write; if that fails, `problem` with the cause. A device node
/// can exist while its driver does not (opening `/dev/mapper/control` then fails with ENODEV),
/// so existence is not enough.
fn control_device_missing(path: &Path, problem: &str) -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("{problem} ({} missing)", path.display()))
        }
        Err(e) => Some(format!("{problem} ({}: {e})", path.display())),
    }
}

/// Finds out which providers this host can run.
pub fn detect_providers(
    runner: &dyn HostCommands,
    paths: &HostPaths,
    options: ProviderOptions,
) -> ProviderSupport {
    let mut support = ProviderSupport::default();
    support.record(ProviderKind::Diskless, Vec::new());

    let loop_reasons: Vec<String> = [
        tool_missing(runner, "losetup", &["--version"]),
        control_device_missing(&paths.loop_control, "loop device driver not available"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut file = loop_reasons.clone();
    file.extend(tool_missing(runner, "fallocate", &["--version"]));
    support.record(ProviderKind::File, file);
    let mut file_thin = loop_reasons;
    file_thin.extend(tool_missing(runner, "truncate", &["--version"]));
    support.record(ProviderKind::FileThin, file_thin);

    let lvm_tools = tool_missing(runner, "lvm", &["version"]);
    let device_mapper =
        control_device_missing(&paths.device_mapper_control, "device-mapper not available");
    let mut lvm: Vec<String> = lvm_tools.iter().cloned().collect();
    if !options.lvm_metadata_only
        && let Some(reason) = &device_mapper
    {
        lvm.push(format!(
            "{reason}; LVM volumes cannot be activated (the satellite's --lvm-metadata-only \
             flag creates them in the metadata only)"
        ));
    }
    support.record(ProviderKind::Lvm, lvm);
    let mut lvm_thin: Vec<String> = lvm_tools.into_iter().collect();
    if options.lvm_metadata_only {
        lvm_thin.push(
            "LVM runs in metadata-only mode (--lvm-metadata-only): thin volumes cannot be \
             created without device-mapper"
                .to_string(),
        );
    } else if let Some(reason) = device_mapper {
        lvm_thin.push(format!("{reason}; thin pools need device-mapper"));
    }
    support.record(ProviderKind::LvmThin, lvm_thin);

    let zfs: Vec<String> = [
        tool_missing(runner, "zfs", &["version"]),
        control_device_missing(&paths.zfs_control, "ZFS kernel module not loaded"),
    ]
    .into_iter()
    .flatten()
    .collect();
    support.record(ProviderKind::Zfs, zfs.clone());
    support.record(ProviderKind::ZfsThin, zfs);

    support
}
