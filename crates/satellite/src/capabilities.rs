//! What this node can run, for the handshake: storage providers (detected by ferrite-storage)
//! and resource layers (detected here), each unsupported one with the reasons why.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ferrite_proto::Capabilities;
use ferrite_storage::{CommandLine, HostCommands, ProviderSupport};
use ferrite_types::LayerKind;

/// The executable of the MIRROR layer's data path.
pub const MIRRORD_PROGRAM: &str = "ferrite-mirrord";

/// Where the layer checks look.
#[derive(Debug, Clone)]
pub struct LayerProbe {
    /// DRBD's status file; it exists while the module is loaded.
    pub proc_drbd: PathBuf,
    /// The loaded module's version (`/sys/module/drbd/version`), read when the status file
    /// says none.
    pub sys_drbd_version: PathBuf,
    /// `--mirrord`: an explicit path to `ferrite-mirrord`.
    pub mirrord: Option<PathBuf>,
    /// The directory of the running satellite binary, searched before PATH.
    pub satellite_dir: Option<PathBuf>,
    /// The PATH to search.
    pub search_path: Option<std::ffi::OsString>,
    /// Where the check for MIRROR's block devices (FUSE and loop) looks.
    pub block_devices: ferrite_blockdev::ProbePaths,
    /// `--drbd-dry-run`: DRBD is a dry run here, whatever the host has.
    pub drbd_dry_run: bool,
}

impl Default for LayerProbe {
    fn default() -> Self {
        LayerProbe {
            proc_drbd: PathBuf::from("/proc/drbd"),
            sys_drbd_version: PathBuf::from("/sys/module/drbd/version"),
            mirrord: None,
            satellite_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
            search_path: std::env::var_os("PATH"),
            block_devices: ferrite_blockdev::ProbePaths::default(),
            drbd_dry_run: false,
        }
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Why DRBD 9 cannot run here, if it cannot.
fn drbd_reasons(runner: &dyn HostCommands, probe: &LayerProbe) -> Vec<String> {
    let mut reasons = Vec::new();
    match std::fs::read_to_string(&probe.proc_drbd) {
        Ok(status) => {
            let sys_version = std::fs::read_to_string(&probe.sys_drbd_version).ok();
            let version = status
                .lines()
                .find_map(|line| line.strip_prefix("version:"))
                .and_then(|rest| rest.split_whitespace().next())
                .or_else(|| sys_version.as_deref().map(str::trim))
                .unwrap_or("unknown");
            if !version.starts_with("9.") {
                reasons.push(format!(
                    "DRBD kernel module is version {version}; DRBD 9 is needed"
                ));
            }
        }
        Err(_) => reasons.push(format!(
            "DRBD kernel module not loaded ({} missing)",
            probe.proc_drbd.display()
        )),
    }
    match runner.run(&CommandLine::query("drbdadm").arg("--version")) {
        Ok(output) => reasons.extend(drbd_utils_reason(&output.stdout)),
        Err(e) if e.is_not_found() => reasons.push("drbdadm: command not found".to_string()),
        Err(e) => reasons.push(format!("drbdadm does not work: {e}")),
    }
    reasons
}

/// drbd-utils' and the kernel module's versions, as `drbdadm --version` prints them; unknown
/// when it cannot be run.
pub fn drbd_versions(runner: &dyn HostCommands) -> ferrite_drbd::DrbdVersions {
    runner
        .run(&CommandLine::query("drbdadm").arg("--version"))
        .map(|output| ferrite_drbd::DrbdVersions::from_drbdadm_version(&output.stdout))
        .unwrap_or_default()
}

/// Why the drbd-utils that printed `version` (`drbdadm --version`) cannot drive DRBD 9.
fn drbd_utils_reason(version: &str) -> Option<String> {
    let version = version
        .lines()
        .find_map(|line| line.strip_prefix("DRBDADM_VERSION="))
        .map(str::trim)
        .unwrap_or("unknown");
    (!version.starts_with("9."))
        .then(|| format!("drbd-utils is version {version}; drbd-utils 9 is needed"))
}

/// What a dry-run satellite says of its DRBD layer.
pub const DRBD_DRY_RUN_REASON: &str = "DRBD runs as a dry run here (--drbd-dry-run): resource \
     files are written and drbdadm commands logged, nothing is applied";

/// Where `ferrite-mirrord` is, or why it was not found.
pub fn find_mirrord(probe: &LayerProbe) -> Result<PathBuf, String> {
    if let Some(path) = &probe.mirrord {
        return if is_executable(path) {
            Ok(path.clone())
        } else {
            Err(format!(
                "{MIRRORD_PROGRAM} not found at {} (given with --mirrord)",
                path.display()
            ))
        };
    }
    let beside = probe
        .satellite_dir
        .as_ref()
        .map(|d| d.join(MIRRORD_PROGRAM));
    if let Some(path) = beside.as_ref().filter(|p| is_executable(p)) {
        return Ok(path.clone());
    }
    if let Some(search_path) = &probe.search_path {
        for dir in std::env::split_paths(search_path) {
            let candidate = dir.join(MIRRORD_PROGRAM);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(match &probe.satellite_dir {
        Some(dir) => format!(
            "{MIRRORD_PROGRAM} not found next to the satellite ({}) or in PATH",
            dir.display()
        ),
        None => format!("{MIRRORD_PROGRAM} not found in PATH"),
    })
}

/// The layers this satellite's reconciler applies. A layer the host could run but the
/// reconciler does not apply is reported unsupported: placing a replicated resource on a node
/// that would silently give it unreplicated volumes is worse than refusing it.
pub const APPLIED_LAYERS: &[LayerKind] = &[LayerKind::Drbd, LayerKind::Mirror, LayerKind::Storage];

/// Why this satellite does not apply `layer`, if it does not.
fn not_applied(layer: LayerKind) -> Option<String> {
    (!APPLIED_LAYERS.contains(&layer))
        .then(|| format!("this version of ferrite-satellite does not apply the {layer} layer yet"))
}

/// The handshake's capabilities from the provider support and the layer checks.
pub fn capabilities(
    runner: &dyn HostCommands,
    providers: &ProviderSupport,
    probe: &LayerProbe,
) -> Capabilities {
    let mut resource_layers = vec![LayerKind::Storage];
    let mut unsupported_layers = BTreeMap::new();
    let mut dry_run_layers = Vec::new();
    let mut drbd = drbd_reasons(runner, probe);
    drbd.extend(not_applied(LayerKind::Drbd));
    if probe.drbd_dry_run {
        // Never supported for real I/O, whatever the host has.
        drbd.insert(0, DRBD_DRY_RUN_REASON.to_string());
        dry_run_layers.push(LayerKind::Drbd);
        unsupported_layers.insert(LayerKind::Drbd, drbd);
    } else if drbd.is_empty() {
        resource_layers.insert(0, LayerKind::Drbd);
    } else {
        unsupported_layers.insert(LayerKind::Drbd, drbd);
    }
    let mut mirror: Vec<String> = find_mirrord(probe).err().into_iter().collect();
    mirror.extend(not_applied(LayerKind::Mirror));
    if mirror.is_empty() {
        resource_layers.insert(resource_layers.len() - 1, LayerKind::Mirror);
        // The layer runs without block devices (its volumes have NBD exports), but an operator
        // who expects a device path must learn why there is none: listed as the layer's
        // reasons, while the layer stays among the supported ones.
        if let Err(reasons) = ferrite_blockdev::probe_with(&probe.block_devices, runner) {
            unsupported_layers.insert(
                LayerKind::Mirror,
                reasons
                    .into_iter()
                    .map(|reason| {
                        format!(
                            "MIRROR volumes get no block device here, only NBD exports: {reason}"
                        )
                    })
                    .collect(),
            );
        }
    } else {
        unsupported_layers.insert(LayerKind::Mirror, mirror);
    }
    Capabilities {
        storage_providers: providers.supported.clone(),
        unsupported_providers: providers.unsupported.clone(),
        resource_layers,
        unsupported_layers,
        dry_run_layers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_storage::fake::FakeHost;
    use ferrite_types::ProviderKind;

    fn probe(dir: &Path) -> LayerProbe {
        LayerProbe {
            proc_drbd: dir.join("drbd"),
            sys_drbd_version: dir.join("drbd-version"),
            mirrord: None,
            satellite_dir: Some(dir.join("bin")),
            search_path: Some(dir.join("path").into_os_string()),
            block_devices: ferrite_blockdev::ProbePaths {
                fuse: dir.join("fuse"),
                loop_control: dir.join("loop-control"),
                process_status: dir.join("status"),
                nbd: ferrite_blockdev::NbdPaths {
                    module: dir.join("module/nbd"),
                    sys_block: dir.join("block"),
                    dev: dir.join("dev"),
                },
            },
            drbd_dry_run: false,
        }
    }

    #[test]
    fn layers_say_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new();
        host.remove_program("drbdadm");
        let support = ProviderSupport {
            supported: vec![ProviderKind::Diskless],
            unsupported: BTreeMap::new(),
        };
        let caps = capabilities(&host, &support, &probe(dir.path()));
        assert_eq!(caps.resource_layers, [LayerKind::Storage]);
        assert_eq!(
            caps.unsupported_layers[&LayerKind::Drbd],
            [
                format!(
                    "DRBD kernel module not loaded ({} missing)",
                    dir.path().join("drbd").display()
                ),
                "drbdadm: command not found".to_string(),
            ]
        );
        assert_eq!(
            caps.unsupported_layers[&LayerKind::Mirror],
            [format!(
                "ferrite-mirrord not found next to the satellite ({}) or in PATH",
                dir.path().join("bin").display()
            )]
        );
        assert_eq!(caps.storage_providers, [ProviderKind::Diskless]);
    }

    #[test]
    fn drbd_8_is_not_enough_and_9_is() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new();
        let probe = probe(dir.path());
        std::fs::write(&probe.proc_drbd, "version: 8.4.11 (api:1/proto:86-101)\n").unwrap();
        assert_eq!(
            drbd_reasons(&host, &probe),
            ["DRBD kernel module is version 8.4.11; DRBD 9 is needed"]
        );
        std::fs::write(&probe.proc_drbd, "version: 9.2.12 (api:2/proto:86-122)\n").unwrap();
        assert!(drbd_reasons(&host, &probe).is_empty());
        // A status file without a version line: the module's version from sysfs.
        std::fs::write(&probe.proc_drbd, "").unwrap();
        std::fs::write(&probe.sys_drbd_version, "9.2.12\n").unwrap();
        assert!(drbd_reasons(&host, &probe).is_empty());
        let caps = capabilities(&host, &ProviderSupport::default(), &probe);
        assert!(caps.resource_layers.contains(&LayerKind::Drbd));
        assert!(caps.dry_run_layers.is_empty());

        assert_eq!(
            drbd_utils_reason(
                "DRBDADM_API_VERSION=1\nDRBDADM_VERSION_CODE=0x080411\nDRBDADM_VERSION=8.4.11\n"
            )
            .as_deref(),
            Some("drbd-utils is version 8.4.11; drbd-utils 9 is needed")
        );
        assert_eq!(
            drbd_utils_reason("DRBDADM_API_VERSION=2\nDRBDADM_VERSION=9.22.0\n"),
            None
        );
    }

    #[test]
    fn a_dry_run_is_never_supported_for_real() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new();
        let probe = LayerProbe {
            drbd_dry_run: true,
            ..probe(dir.path())
        };
        // Even with DRBD 9 loaded.
        std::fs::write(&probe.proc_drbd, "version: 9.2.12 (api:2/proto:86-122)\n").unwrap();
        let caps = capabilities(&host, &ProviderSupport::default(), &probe);
        assert!(!caps.resource_layers.contains(&LayerKind::Drbd));
        assert_eq!(caps.dry_run_layers, [LayerKind::Drbd]);
        assert_eq!(
            caps.unsupported_layers[&LayerKind::Drbd],
            [DRBD_DRY_RUN_REASON]
        );
    }

    #[test]
    fn mirrord_is_found_beside_the_satellite_or_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe(dir.path());
        let in_path = dir.path().join("path");
        std::fs::create_dir_all(&in_path).unwrap();
        let program = in_path.join(MIRRORD_PROGRAM);
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        assert!(find_mirrord(&probe).is_err(), "not executable yet");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_mirrord(&probe).unwrap(), program);
        let caps = capabilities(&FakeHost::new(), &ProviderSupport::default(), &probe);
        assert_eq!(
            caps.resource_layers.contains(&LayerKind::Mirror),
            APPLIED_LAYERS.contains(&LayerKind::Mirror)
        );

        let explicit = LayerProbe {
            mirrord: Some(dir.path().join("elsewhere")),
            ..probe
        };
        assert!(
            find_mirrord(&explicit)
                .unwrap_err()
                .contains("given with --mirrord")
        );
    }

    #[test]
    fn a_host_without_fuse_loop_or_nbd_runs_mirror_and_says_it_has_no_block_devices() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe(dir.path());
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let program = bin.join(MIRRORD_PROGRAM);
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Root's capabilities, but no /dev/fuse, no /dev/loop-control and no nbd driver.
        std::fs::write(
            &probe.block_devices.process_status,
            "CapEff:\t000001ffffffffff\n",
        )
        .unwrap();
        let caps = capabilities(&FakeHost::new(), &ProviderSupport::default(), &probe);
        assert!(
            caps.supports_layer(LayerKind::Mirror),
            "NBD exports still work"
        );
        let reasons = &caps.unsupported_layers[&LayerKind::Mirror];
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].starts_with("MIRROR volumes get no block device here"));
        assert!(reasons[0].contains("modprobe fuse"), "{reasons:?}");
        assert!(reasons[1].contains("modprobe loop"), "{reasons:?}");
        assert!(reasons[2].contains("modprobe nbd"), "{reasons:?}");
    }
}
