//! FILE and FILE_THIN against the real `losetup`, `truncate` and `fallocate`.

mod common;

use std::sync::Arc;

use common::{LoopCleanup, device_size_kib, loop_devices_of, running_as_root};
use ferrite_storage::{
    BackingVolumeName, HostPaths, ProviderOptions, Providers, SystemCommands, detect_providers,
};
use ferrite_types::{ProviderKind, ResourceName};

fn name(resource: &str, volume: u16) -> BackingVolumeName {
    BackingVolumeName::new(&ResourceName::new(resource).unwrap(), volume.into())
}

#[test]
fn file_thin_volume_lifecycle_on_real_loop_devices() {
    if !running_as_root("file_thin_volume_lifecycle_on_real_loop_devices") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = LoopCleanup {
        dir: dir.path().to_path_buf(),
    };
    let pool = dir.path().to_str().unwrap();
    let providers = Providers::new(Arc::new(SystemCommands::new()), ProviderOptions::default());
    let file = providers.get(ProviderKind::FileThin);
    let volume = name("real_thin", 0);
    let image = dir.path().join("real_thin_00000.img");

    let capacity = file.check_pool(pool).unwrap().unwrap();
    assert!(capacity.total_kib > 0 && capacity.free_kib <= capacity.total_kib);

    file.create_volume(pool, &volume, 8192).unwrap();
    let created = file.volume(pool, &volume).unwrap().unwrap();
    assert_eq!(created.usable_kib, 8192);
    assert!(created.allocated_kib < 8192, "sparse: {created:?}");
    assert_eq!(created.device_path, None, "not attached before activation");

    let active = file.activate_volume(pool, &volume).unwrap();
    let device = active.device_path.clone().unwrap();
    let device = device.to_str().unwrap();
    assert_eq!(loop_devices_of(&image), [device]);
    assert_eq!(device_size_kib(device), 8192);

    // Idempotent: a second activation finds the same device.
    let again = file.activate_volume(pool, &volume).unwrap();
    assert_eq!(again.device_path, active.device_path);
    assert_eq!(loop_devices_of(&image).len(), 1);

    file.grow_volume(pool, &volume, 16384).unwrap();
    assert_eq!(
        device_size_kib(device),
        16384,
        "the loop device sees the new size"
    );
    assert_eq!(
        file.volume(pool, &volume).unwrap().unwrap().usable_kib,
        16384
    );

    let listed = file.list_volumes(pool).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].device_path, active.device_path);

    file.delete_volume(pool, &volume).unwrap();
    assert!(loop_devices_of(&image).is_empty());
    assert!(!image.exists());
    file.delete_volume(pool, &volume).unwrap();
}

#[test]
fn file_volumes_are_preallocated() {
    if !running_as_root("file_volumes_are_preallocated") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = LoopCleanup {
        dir: dir.path().to_path_buf(),
    };
    let pool = dir.path().to_str().unwrap();
    let providers = Providers::new(Arc::new(SystemCommands::new()), ProviderOptions::default());
    let file = providers.get(ProviderKind::File);
    let volume = name("real_thick", 2);
    file.create_volume(pool, &volume, 4096).unwrap();
    let active = file.activate_volume(pool, &volume).unwrap();
    assert_eq!(active.usable_kib, 4096);
    assert!(active.allocated_kib >= 4096, "preallocated: {active:?}");
    file.grow_volume(pool, &volume, 6144).unwrap();
    let grown = file.volume(pool, &volume).unwrap().unwrap();
    assert!(grown.allocated_kib >= 6144, "{grown:?}");
    assert_eq!(
        device_size_kib(active.device_path.as_ref().unwrap().to_str().unwrap()),
        6144
    );
    file.delete_volume(pool, &volume).unwrap();
    assert!(file.list_volumes(pool).unwrap().is_empty());
}

#[test]
fn this_host_supports_file_pools_and_says_why_not_zfs() {
    if !running_as_root("this_host_supports_file_pools_and_says_why_not_zfs") {
        return;
    }
    let support = detect_providers(
        &SystemCommands::new(),
        &HostPaths::default(),
        ProviderOptions::default(),
    );
    assert!(support.supports(ProviderKind::Diskless));
    assert!(support.supports(ProviderKind::File), "{support:?}");
    assert!(support.supports(ProviderKind::FileThin), "{support:?}");
    if !support.supports(ProviderKind::Zfs) {
        let reasons = support.reasons(ProviderKind::Zfs).join("; ");
        assert!(
            reasons.contains("zfs: command not found") || reasons.contains("/dev/zfs"),
            "{reasons}"
        );
    }
    if !support.supports(ProviderKind::Lvm) {
        let reasons = support.reasons(ProviderKind::Lvm).join("; ");
        assert!(
            reasons.contains("device-mapper") || reasons.contains("lvm"),
            "{reasons}"
        );
    }
}
