//! LVM in metadata-only mode against the real LVM tools, on a volume group made from a loop
//! device (this host has no device-mapper, so volumes are never activated).

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{LoopCleanup, run, running_as_root};
use ferrite_storage::{
    BackingVolumeName, CommandLine, HostCommands, ProviderOptions, Providers, StorageError,
    SystemCommands,
};
use ferrite_types::{ProviderKind, ResourceName};

/// A volume group on a loop device over a sparse file; removed with its physical volume and
/// loop device when dropped.
struct TestVolumeGroup {
    name: String,
    device: String,
    _loops: LoopCleanup,
    _dir: tempfile::TempDir,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestVolumeGroup {
    fn new(size_mib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let loops = LoopCleanup {
            dir: dir.path().to_path_buf(),
        };
        let image: PathBuf = dir.path().join("pv.img");
        run(CommandLine::new("truncate")
            .args(["--size", &format!("{size_mib}M")])
            .arg(image.to_str().unwrap()));
        let device = run(CommandLine::new("losetup")
            .args(["--find", "--show"])
            .arg(image.to_str().unwrap()))
        .trim()
        .to_string();
        let name = format!(
            "ferrite_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let group = TestVolumeGroup {
            name,
            device,
            _loops: loops,
            _dir: dir,
        };
        run(CommandLine::new("pvcreate").args(["-y", &group.device]));
        run(CommandLine::new("vgcreate").args([&group.name, &group.device]));
        group
    }
}

impl Drop for TestVolumeGroup {
    fn drop(&mut self) {
        let runner = SystemCommands::new();
        let _ = runner.run(&CommandLine::new("vgremove").args([
            "--driverloaded",
            "n",
            "-f",
            &self.name,
        ]));
        let _ = runner.run(&CommandLine::new("pvremove").args(["-y", &self.device]));
        // The loop device goes with `_loops`.
    }
}

fn name(resource: &str, volume: u16) -> BackingVolumeName {
    BackingVolumeName::new(&ResourceName::new(resource).unwrap(), volume.into())
}

#[test]
fn lvm_metadata_only_volume_lifecycle() {
    if !running_as_root("lvm_metadata_only_volume_lifecycle") {
        return;
    }
    let vg = TestVolumeGroup::new(64);
    let providers = Providers::new(
        Arc::new(SystemCommands::new()),
        ProviderOptions {
            lvm_metadata_only: true,
        },
    );
    let lvm = providers.get(ProviderKind::Lvm);
    let volume = name("real_lvm", 0);

    let capacity = lvm.check_pool(&vg.name).unwrap().unwrap();
    assert!(capacity.total_kib >= 56 * 1024, "{capacity:?}");
    assert_eq!(capacity.free_kib, capacity.total_kib);

    assert_eq!(lvm.volume(&vg.name, &volume).unwrap(), None);
    lvm.create_volume(&vg.name, &volume, 6000).unwrap();
    let created = lvm.activate_volume(&vg.name, &volume).unwrap();
    assert_eq!(created.usable_kib, 8192, "rounded up to 4 MiB extents");
    assert_eq!(
        created.device_path.unwrap().to_str().unwrap(),
        format!("/dev/{}/real_lvm_00000", vg.name)
    );
    let after_create = lvm.check_pool(&vg.name).unwrap().unwrap();
    assert_eq!(after_create.free_kib, capacity.free_kib - 8192);

    lvm.grow_volume(&vg.name, &volume, 8192).unwrap();
    lvm.grow_volume(&vg.name, &volume, 16384).unwrap();
    assert_eq!(
        lvm.volume(&vg.name, &volume).unwrap().unwrap().usable_kib,
        16384
    );

    // Someone else's LV in the same group is listed only if it has our naming shape.
    run(CommandLine::new("lvcreate").args([
        "--driverloaded",
        "n",
        "-an",
        "-Zn",
        "-L",
        "4m",
        "-n",
        "users_lv",
        "-y",
        &vg.name,
    ]));
    let listed = lvm.list_volumes(&vg.name).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");

    lvm.delete_volume(&vg.name, &volume).unwrap();
    assert_eq!(lvm.volume(&vg.name, &volume).unwrap(), None);
    lvm.delete_volume(&vg.name, &volume).unwrap();
    let lvs = run(CommandLine::new("lvs").args(["--noheadings", "-o", "lv_name", &vg.name]));
    assert_eq!(lvs.trim(), "users_lv", "only our volume was removed");
}

#[test]
fn lvm_missing_volume_group_is_reported_as_such() {
    if !running_as_root("lvm_missing_volume_group_is_reported_as_such") {
        return;
    }
    let providers = Providers::new(
        Arc::new(SystemCommands::new()),
        ProviderOptions {
            lvm_metadata_only: true,
        },
    );
    let err = providers
        .get(ProviderKind::Lvm)
        .check_pool("ferrite_no_such_vg")
        .unwrap_err();
    assert!(matches!(err, StorageError::PoolUnusable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "LVM pool 'ferrite_no_such_vg' is not usable: Volume group \"ferrite_no_such_vg\" not found"
    );
}

#[test]
fn lvm_runner_errors_carry_command_status_and_stderr() {
    if !running_as_root("lvm_runner_errors_carry_command_status_and_stderr") {
        return;
    }
    let err = SystemCommands::new()
        .run(&CommandLine::new("lvremove").args([
            "--driverloaded",
            "n",
            "-f",
            "ferrite_no_such_vg/x",
        ]))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "`lvremove --driverloaded n -f ferrite_no_such_vg/x` failed with exit status 5"
        ),
        "{text}"
    );
    assert!(text.contains("ferrite_no_such_vg"), "{text}");
}
