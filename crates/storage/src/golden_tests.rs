//! Golden tests: the exact command lines every provider runs, through the simulating fake host.
//! LVM_THIN, ZFS and ZFS_THIN can only be tested this way on a host without device-mapper and
//! ZFS; FILE and LVM are also tested against the real tools in `tests/`.

use std::sync::Arc;

use ferrite_types::{ProviderKind, ResourceName, SnapshotName};

use crate::fake::FakeHost;
use crate::{
    BackingVolumeName, HostPaths, PoolCapacity, ProviderOptions, Providers, StorageError,
    detect_providers,
};

fn name(resource: &str, volume: u16) -> BackingVolumeName {
    BackingVolumeName::new(&ResourceName::new(resource).unwrap(), volume.into())
}

fn providers(host: &Arc<FakeHost>, lvm_metadata_only: bool) -> Providers {
    Providers::new(host.clone(), ProviderOptions { lvm_metadata_only })
}

#[test]
fn file_thin_creates_sparse_files_and_attaches_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().to_str().unwrap().to_string();
    let host = Arc::new(FakeHost::new());
    let providers = providers(&host, false);
    let file = providers.get(ProviderKind::FileThin);
    let volume = name("web", 0);
    let image = format!("{pool}/web_00000.img");

    assert!(file.check_pool(&pool).unwrap().is_some());
    assert_eq!(file.volume(&pool, &volume).unwrap(), None);
    file.create_volume(&pool, &volume, 10240).unwrap();
    let active = file.activate_volume(&pool, &volume).unwrap();
    assert_eq!(active.device_path.unwrap().to_str(), Some("/dev/loop0"));
    assert_eq!(active.usable_kib, 10240);
    assert_eq!(
        host.take_commands(),
        [
            format!("truncate --size 10485760 {image}"),
            format!("losetup --list --json --output NAME --associated {image}"),
            format!("losetup --find --show {image}"),
        ]
    );

    // Activating again finds the attachment instead of making a second one.
    let again = file.activate_volume(&pool, &volume).unwrap();
    assert_eq!(again.device_path.unwrap().to_str(), Some("/dev/loop0"));
    assert_eq!(
        host.take_commands(),
        [format!(
            "losetup --list --json --output NAME --associated {image}"
        )]
    );

    file.grow_volume(&pool, &volume, 20480).unwrap();
    assert_eq!(
        host.take_commands(),
        [
            format!("truncate --size 20971520 {image}"),
            format!("losetup --list --json --output NAME --associated {image}"),
            "losetup --set-capacity /dev/loop0".to_string(),
        ]
    );
    let grown = file.volume(&pool, &volume).unwrap().unwrap();
    assert_eq!(grown.usable_kib, 20480);
    host.take_commands();

    file.delete_volume(&pool, &volume).unwrap();
    assert_eq!(
        host.take_commands(),
        [
            format!("losetup --list --json --output NAME --associated {image}"),
            "losetup --detach /dev/loop0".to_string(),
            format!("rm --force {image}"),
        ]
    );
    assert!(!std::path::Path::new(&image).exists());
    assert!(host.loop_devices().is_empty());

    // Deleting what is gone is a no-op.
    file.delete_volume(&pool, &volume).unwrap();
    assert!(host.take_commands().is_empty());
}

#[test]
fn a_pass_reads_the_loop_table_once_and_keeps_it_current() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().to_str().unwrap().to_string();
    let host = Arc::new(FakeHost::new());
    let providers = providers(&host, false);
    let file = providers.get(ProviderKind::FileThin);
    let volumes: Vec<_> = (0..5).map(|n| name("web", n)).collect();

    providers.begin_pass();
    for volume in &volumes {
        file.create_volume(&pool, volume, 4096).unwrap();
        file.activate_volume(&pool, volume).unwrap();
    }
    // Attached during the pass: found again without a second attach.
    let again = file.activate_volume(&pool, &volumes[2]).unwrap();
    assert_eq!(again.device_path.unwrap().to_str(), Some("/dev/loop2"));
    file.delete_volume(&pool, &volumes[4]).unwrap();
    assert_eq!(file.volume(&pool, &volumes[4]).unwrap(), None);
    providers.end_pass();
    let queries: Vec<String> = host
        .take_commands()
        .into_iter()
        .filter(|c| c.starts_with("losetup --list"))
        .collect();
    assert_eq!(queries, ["losetup --list --json --output NAME,BACK-FILE"]);
    assert_eq!(host.loop_devices().len(), 4);

    // The next pass reads the table afresh: a device detached behind its back is not trusted.
    host.detach_all_loop_devices();
    providers.begin_pass();
    let reattached = file.activate_volume(&pool, &volumes[0]).unwrap();
    assert_eq!(reattached.device_path.unwrap().to_str(), Some("/dev/loop0"));
    providers.end_pass();
    assert_eq!(
        host.take_commands(),
        [
            "losetup --list --json --output NAME,BACK-FILE".to_string(),
            format!("losetup --find --show {pool}/web_00000.img"),
        ]
    );

    // Outside a pass, every lookup asks losetup.
    file.volume(&pool, &volumes[0]).unwrap();
    assert_eq!(
        host.take_commands(),
        [format!(
            "losetup --list --json --output NAME --associated {pool}/web_00000.img"
        )]
    );
}

#[test]
fn file_preallocates_with_fallocate() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().to_str().unwrap().to_string();
    let host = Arc::new(FakeHost::new());
    let providers = providers(&host, false);
    let file = providers.get(ProviderKind::File);
    let volume = name("db", 1);
    file.create_volume(&pool, &volume, 4096).unwrap();
    file.grow_volume(&pool, &volume, 8192).unwrap();
    assert_eq!(
        host.take_changes(),
        [
            format!("fallocate --length 4194304 {pool}/db_00001.img"),
            format!("fallocate --length 8388608 {pool}/db_00001.img"),
        ]
    );
    let listed = file.list_volumes(&pool).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, volume);
}

#[test]
fn file_pools_must_be_existing_absolute_directories() {
    let host = Arc::new(FakeHost::new());
    let providers = providers(&host, false);
    let file = providers.get(ProviderKind::FileThin);
    let err = file.check_pool("relative/dir").unwrap_err();
    assert!(err.to_string().contains("absolute path"), "{err}");
    let err = file.check_pool("/nonexistent/ferrite-pool").unwrap_err();
    assert!(
        err.to_string().contains(
            "FILE_THIN pool '/nonexistent/ferrite-pool' is not usable: directory '/nonexistent/ferrite-pool' does not exist"
        ),
        "{err}"
    );
    assert!(host.commands().is_empty());
}

#[test]
fn lvm_command_lines() {
    let host = Arc::new(FakeHost::new());
    host.add_volume_group("vg_ssd", 1 << 20);
    let providers = providers(&host, false);
    let lvm = providers.get(ProviderKind::Lvm);
    let volume = name("web", 0);

    assert_eq!(
        lvm.check_pool("vg_ssd").unwrap(),
        Some(PoolCapacity {
            total_kib: 1 << 20,
            free_kib: 1 << 20
        })
    );
    lvm.create_volume("vg_ssd", &volume, 10000).unwrap();
    let active = lvm.activate_volume("vg_ssd", &volume).unwrap();
    assert_eq!(
        active.device_path.unwrap().to_str(),
        Some("/dev/vg_ssd/web_00000")
    );
    assert_eq!(active.usable_kib, 12288, "rounded up to 4 MiB extents");
    lvm.grow_volume("vg_ssd", &volume, 12288).unwrap();
    lvm.grow_volume("vg_ssd", &volume, 20000).unwrap();
    lvm.delete_volume("vg_ssd", &volume).unwrap();
    lvm.delete_volume("vg_ssd", &volume).unwrap();
    let lvs = "lvs --noheadings --nosuffix --units k --separator ';' --options lv_name,lv_size,data_percent,lv_attr,pool_lv vg_ssd";
    assert_eq!(
        host.take_commands(),
        [
            "vgs --noheadings --nosuffix --units k --separator ';' --options vg_name,vg_size,vg_free vg_ssd",
            "lvcreate -L 10000k -n web_00000 -y vg_ssd",
            lvs,
            lvs,
            lvs,
            "lvextend -L 20000k vg_ssd/web_00000",
            lvs,
            "lvremove -f vg_ssd/web_00000",
            lvs,
        ]
    );
}

#[test]
fn lvm_metadata_only_never_touches_device_mapper() {
    let host = Arc::new(FakeHost::new());
    host.add_volume_group("vg0", 1 << 20);
    let providers = providers(&host, true);
    let lvm = providers.get(ProviderKind::Lvm);
    let volume = name("web", 0);
    lvm.create_volume("vg0", &volume, 4096).unwrap();
    lvm.grow_volume("vg0", &volume, 8192).unwrap();
    lvm.delete_volume("vg0", &volume).unwrap();
    assert_eq!(
        host.take_changes(),
        [
            "lvcreate --driverloaded n -an -Zn -L 4096k -n web_00000 -y vg0",
            "lvextend --driverloaded n -L 8192k vg0/web_00000",
            "lvremove --driverloaded n -f vg0/web_00000",
        ]
    );
}

#[test]
fn lvm_missing_volume_group_is_a_pool_error() {
    let host = Arc::new(FakeHost::new());
    let providers = providers(&host, false);
    let lvm = providers.get(ProviderKind::Lvm);
    let err = lvm.check_pool("vg_missing").unwrap_err();
    assert!(matches!(err, StorageError::PoolUnusable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "LVM pool 'vg_missing' is not usable: Volume group \"vg_missing\" not found"
    );
    assert!(lvm.volume("vg_missing", &name("web", 0)).is_err());
    let err = lvm.check_pool("-ff").unwrap_err();
    assert!(err.to_string().contains("not a volume group name"), "{err}");
}

#[test]
fn lvm_ignores_volumes_not_named_like_ours() {
    let host = Arc::new(FakeHost::new());
    host.add_volume_group("vg0", 1 << 20);
    host.add_logical_volume("vg0", "root", 4096);
    host.add_logical_volume("vg0", "web_00000", 4096);
    let providers = providers(&host, false);
    let listed = providers
        .get(ProviderKind::Lvm)
        .list_volumes("vg0")
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, name("web", 0));
}

#[test]
fn a_pass_lists_a_volume_group_once_until_lvm_changes() {
    let host = Arc::new(FakeHost::new());
    host.add_volume_group("vg0", 1 << 20);
    host.add_thin_pool("vg0", "thin", 512 * 1024);
    for n in 0..3 {
        host.add_logical_volume("vg0", &format!("web_0000{n}"), 4096);
    }
    let providers = providers(&host, false);
    let lvm = providers.get(ProviderKind::Lvm);
    let thin = providers.get(ProviderKind::LvmThin);
    let lists = |host: &FakeHost| {
        host.take_commands()
            .iter()
            .filter(|c| c.starts_with("lvs ") && c.ends_with(" vg0"))
            .count()
    };
    host.take_commands();

    providers.begin_pass();
    for n in 0..3 {
        assert!(lvm.volume("vg0", &name("web", n)).unwrap().is_some());
    }
    assert_eq!(lvm.volume("vg0", &name("db", 0)).unwrap(), None);
    assert_eq!(
        lists(&host),
        1,
        "one listing answers every look-up of the pass"
    );

    // A change drops the listing: the volume made is found, by a listing read after it.
    lvm.create_volume("vg0", &name("db", 0), 4096).unwrap();
    assert!(lvm.volume("vg0", &name("db", 0)).unwrap().is_some());
    assert!(lvm.volume("vg0", &name("web", 0)).unwrap().is_some());
    assert_eq!(lists(&host), 1);
    // Made by the LVM_THIN provider in the same group: the LVM provider's listing goes too.
    assert_eq!(lvm.volume("vg0", &name("app", 0)).unwrap(), None);
    thin.create_volume("vg0/thin", &name("app", 0), 4096)
        .unwrap();
    assert!(lvm.volume("vg0", &name("app", 0)).unwrap().is_some());
    assert_eq!(lists(&host), 1);
    providers.end_pass();

    // A create of a name that is taken fails as such, for the caller to leave it alone.
    assert!(matches!(
        lvm.create_volume("vg0", &name("web", 0), 4096),
        Err(StorageError::VolumeExists { .. })
    ));
    assert!(matches!(
        thin.create_volume("vg0/thin", &name("app", 0), 4096),
        Err(StorageError::VolumeExists { .. })
    ));

    // Outside a pass every look-up lists the group.
    host.take_commands();
    lvm.volume("vg0", &name("web", 0)).unwrap();
    lvm.volume("vg0", &name("web", 1)).unwrap();
    assert_eq!(lists(&host), 2);
}

#[test]
fn lvm_thin_command_lines() {
    let host = Arc::new(FakeHost::new());
    host.add_volume_group("vg0", 1 << 20);
    host.add_thin_pool("vg0", "thin", 512 * 1024);
    let providers = providers(&host, false);
    let thin = providers.get(ProviderKind::LvmThin);
    let volume = name("web", 0);
    let capacity = thin.check_pool("vg0/thin").unwrap().unwrap();
    assert_eq!(capacity.total_kib, 512 * 1024);
    assert_eq!(capacity.free_kib, 512 * 1024);
    thin.create_volume("vg0/thin", &volume, 102400).unwrap();
    let created = thin.activate_volume("vg0/thin", &volume).unwrap();
    assert_eq!(created.usable_kib, 102400);
    assert_eq!(
        created.allocated_kib, 10240,
        "10% of the thin volume is used"
    );
    let capacity = thin.check_pool("vg0/thin").unwrap().unwrap();
    // data_percent has two decimals, so the free space is close to, not exactly, 10 MiB less.
    assert!(
        capacity.free_kib.abs_diff(512 * 1024 - 10240) < 64,
        "{capacity:?}"
    );
    thin.grow_volume("vg0/thin", &volume, 204800).unwrap();
    thin.delete_volume("vg0/thin", &volume).unwrap();
    assert_eq!(
        host.take_changes(),
        [
            "lvcreate -V 102400k -T vg0/thin -n web_00000 -y",
            "lvextend -L 204800k vg0/web_00000",
            "lvremove -f vg0/web_00000",
        ]
    );

    let err = thin.check_pool("vg0").unwrap_err();
    assert!(
        err.to_string().contains("<volume group>/<thin pool>"),
        "{err}"
    );
    let err = thin.check_pool("vg0/nothin").unwrap_err();
    assert_eq!(
        err.to_string(),
        "LVM_THIN pool 'vg0/nothin' is not usable: Failed to find logical volume \"vg0/nothin\""
    );
}

#[test]
fn a_pass_lists_a_dataset_once_until_zfs_changes() {
    let host = Arc::new(FakeHost::new());
    host.add_zpool("tank", 1 << 20);
    let providers = providers(&host, false);
    let zfs = providers.get(ProviderKind::Zfs);
    let thin = providers.get(ProviderKind::ZfsThin);
    for n in 0..3 {
        zfs.create_volume("tank", &name("web", n), 4096).unwrap();
    }
    let lists = |host: &FakeHost| {
        host.take_commands()
            .iter()
            .filter(|c| c.starts_with("zfs list") && c.ends_with(" tank"))
            .count()
    };
    host.take_commands();

    providers.begin_pass();
    for n in 0..3 {
        assert!(zfs.volume("tank", &name("web", n)).unwrap().is_some());
        zfs.activate_volume("tank", &name("web", n)).unwrap();
    }
    assert_eq!(zfs.volume("tank", &name("db", 0)).unwrap(), None);
    assert_eq!(
        lists(&host),
        1,
        "one listing answers every look-up of the pass"
    );
    // A change by the ZFS_THIN provider in the same dataset drops the listing.
    thin.create_volume("tank", &name("db", 0), 4096).unwrap();
    assert!(zfs.volume("tank", &name("db", 0)).unwrap().is_some());
    assert_eq!(lists(&host), 1);
    // A create of a name that is taken fails as such, for the caller to leave it alone.
    assert!(matches!(
        zfs.create_volume("tank", &name("web", 0), 4096),
        Err(StorageError::VolumeExists { .. })
    ));
    providers.end_pass();

    // Outside a pass every look-up lists the dataset.
    host.take_commands();
    zfs.volume("tank", &name("web", 0)).unwrap();
    zfs.volume("tank", &name("web", 1)).unwrap();
    assert_eq!(lists(&host), 2);
}

#[test]
fn zfs_command_lines() {
    let host = Arc::new(FakeHost::new());
    host.add_zpool("tank", 1 << 20);
    let providers = providers(&host, false);
    let zfs = providers.get(ProviderKind::Zfs);
    let volume = name("web", 0);
    assert_eq!(
        zfs.check_pool("tank").unwrap(),
        Some(PoolCapacity {
            total_kib: 1 << 20,
            free_kib: 1 << 20
        })
    );
    zfs.create_volume("tank", &volume, 10000).unwrap();
    let active = zfs.activate_volume("tank", &volume).unwrap();
    assert_eq!(
        active.device_path.unwrap().to_str(),
        Some("/dev/zvol/tank/web_00000")
    );
    assert_eq!(active.usable_kib, 10000, "10000 is a multiple of 16");
    zfs.grow_volume("tank", &volume, 20001).unwrap();
    zfs.delete_volume("tank", &volume).unwrap();
    let list = "zfs list -H -p -t volume -d 1 -o name,volsize,used tank";
    assert_eq!(
        host.take_commands(),
        [
            "zfs get -H -p -o property,value available,used tank",
            "zfs create -V 10000K tank/web_00000",
            list,
            list,
            "zfs set volsize=20016K tank/web_00000",
            list,
            "zfs destroy tank/web_00000",
        ]
    );
    let err = zfs.check_pool("nopool").unwrap_err();
    assert_eq!(
        err.to_string(),
        "ZFS pool 'nopool' is not usable: cannot open 'nopool': dataset does not exist"
    );
}

#[test]
fn zfs_thin_creates_sparse_zvols() {
    let host = Arc::new(FakeHost::new());
    host.add_zpool("tank", 1 << 20);
    let providers = providers(&host, false);
    let zfs = providers.get(ProviderKind::ZfsThin);
    zfs.create_volume("tank", &name("web", 0), 102400).unwrap();
    let volume = zfs.volume("tank", &name("web", 0)).unwrap().unwrap();
    assert_eq!(volume.allocated_kib, 10240);
    assert_eq!(
        host.take_changes(),
        ["zfs create -s -V 102400K tank/web_00000"]
    );
}

#[test]
fn diskless_has_no_volumes() {
    let host = Arc::new(FakeHost::new());
    let providers = providers(&host, false);
    let diskless = providers.get(ProviderKind::Diskless);
    assert_eq!(diskless.check_pool("").unwrap(), None);
    assert!(diskless.create_volume("", &name("web", 0), 1).is_err());
    diskless.delete_volume("", &name("web", 0)).unwrap();
    assert!(host.commands().is_empty());
}

#[test]
fn capabilities_say_why_not() {
    let host = FakeHost::new();
    host.remove_program("zfs");
    let dir = tempfile::tempdir().unwrap();
    let present = dir.path().join("present");
    std::fs::write(&present, b"").unwrap();
    let paths = HostPaths {
        loop_control: present.clone(),
        device_mapper_control: dir.path().join("no-mapper"),
        zfs_control: dir.path().join("no-zfs"),
    };
    let support = detect_providers(&host, &paths, ProviderOptions::default());
    assert!(support.supports(ProviderKind::Diskless));
    assert!(support.supports(ProviderKind::File));
    assert!(support.supports(ProviderKind::FileThin));
    assert!(!support.supports(ProviderKind::Lvm));
    assert!(
        support.reasons(ProviderKind::Lvm)[0].starts_with("device-mapper not available"),
        "{:?}",
        support.reasons(ProviderKind::Lvm)
    );
    assert_eq!(
        support.reasons(ProviderKind::Zfs),
        [
            "zfs: command not found".to_string(),
            format!(
                "ZFS kernel module not loaded ({} missing)",
                dir.path().join("no-zfs").display()
            )
        ]
    );
    assert_eq!(
        support.reasons(ProviderKind::ZfsThin),
        support.reasons(ProviderKind::Zfs)
    );

    let metadata_only = detect_providers(
        &host,
        &paths,
        ProviderOptions {
            lvm_metadata_only: true,
        },
    );
    assert!(metadata_only.supports(ProviderKind::Lvm));
    assert!(!metadata_only.supports(ProviderKind::LvmThin));
    assert!(
        metadata_only.reasons(ProviderKind::LvmThin)[0].contains("metadata-only"),
        "{:?}",
        metadata_only.reasons(ProviderKind::LvmThin)
    );

    host.remove_program("losetup");
    let no_loop = detect_providers(&host, &paths, ProviderOptions::default());
    assert_eq!(
        no_loop.reasons(ProviderKind::FileThin),
        ["losetup: command not found"]
    );
}

fn snapshot(name: &str) -> SnapshotName {
    SnapshotName::new(name).unwrap()
}

#[test]
fn zfs_snapshot_command_lines() {
    for (kind, create) in [
        (ProviderKind::Zfs, "zfs create -V 10000K tank/web_00000"),
        (
            ProviderKind::ZfsThin,
            "zfs create -s -V 10000K tank/web_00000",
        ),
    ] {
        let host = Arc::new(FakeHost::new());
        host.add_zpool("tank", 1 << 30);
        let providers = providers(&host, false);
        let zfs = providers.get(kind);
        let volume = name("web", 0);
        let copy = name("copy", 0);
        assert!(zfs.supports_snapshots());
        zfs.create_volume("tank", &volume, 10000).unwrap();
        assert!(
            !zfs.snapshot_exists("tank", &volume, &snapshot("Snap1"))
                .unwrap()
        );
        assert_eq!(
            zfs.create_snapshot("tank", &volume, &snapshot("Snap1"))
                .unwrap(),
            "zfs snapshot"
        );
        assert!(
            zfs.snapshot_exists("tank", &volume, &snapshot("snap1"))
                .unwrap()
        );
        zfs.restore_snapshot("tank", &volume, &snapshot("snap1"), &copy)
            .unwrap();
        zfs.rollback_snapshot("tank", &volume, &snapshot("snap1"))
            .unwrap();
        // The volume cannot go while its snapshot exists: ZFS refuses, nothing is forced.
        assert!(zfs.delete_volume("tank", &volume).is_err());
        zfs.delete_snapshot("tank", &volume, &snapshot("snap1"))
            .unwrap();
        // Deleting a deleted snapshot is done already.
        zfs.delete_snapshot("tank", &volume, &snapshot("snap1"))
            .unwrap();
        let commands: Vec<String> = host
            .take_commands()
            .into_iter()
            .filter(|c| !c.starts_with("zfs list -H -p -t volume"))
            .collect();
        assert_eq!(
            commands,
            [
                create,
                "zfs list -H -t snapshot -o name tank/web_00000@snap1",
                "zfs snapshot tank/web_00000@snap1",
                "zfs list -H -t snapshot -o name tank/web_00000@snap1",
                "zfs clone tank/web_00000@snap1 tank/copy_00000",
                "zfs rollback tank/web_00000@snap1",
                "zfs destroy tank/web_00000",
                "zfs list -H -t snapshot -o name tank/web_00000@snap1",
                "zfs destroy tank/web_00000@snap1",
                "zfs list -H -t snapshot -o name tank/web_00000@snap1",
            ],
            "{kind}"
        );
        assert_eq!(host.zvols("tank").len(), 2);
    }
}

#[test]
fn zfs_rollback_fails_rather_than_destroying_newer_snapshots() {
    let host = Arc::new(FakeHost::new());
    host.add_zpool("tank", 1 << 30);
    let providers = providers(&host, false);
    let zfs = providers.get(ProviderKind::ZfsThin);
    let volume = name("web", 0);
    zfs.create_volume("tank", &volume, 10000).unwrap();
    zfs.create_snapshot("tank", &volume, &snapshot("a1"))
        .unwrap();
    zfs.create_snapshot("tank", &volume, &snapshot("b2"))
        .unwrap();
    let error = zfs
        .rollback_snapshot("tank", &volume, &snapshot("a1"))
        .unwrap_err();
    assert!(
        error.to_string().contains("more recent snapshots"),
        "{error}"
    );
    assert!(!host.commands().iter().any(|c| c.contains(" -r")));
}

#[test]
fn lvm_thin_snapshot_command_lines() {
    let host = Arc::new(FakeHost::new());
    host.add_volume_group("vg", 1 << 30);
    host.add_thin_pool("vg", "thin", 1 << 29);
    let providers = providers(&host, false);
    let thin = providers.get(ProviderKind::LvmThin);
    let volume = name("web", 0);
    let copy = name("copy", 0);
    assert!(thin.supports_snapshots());
    thin.create_volume("vg/thin", &volume, 8192).unwrap();
    host.take_commands();
    assert_eq!(
        thin.create_snapshot("vg/thin", &volume, &snapshot("Snap1"))
            .unwrap(),
        "thin snapshot"
    );
    thin.restore_snapshot("vg/thin", &volume, &snapshot("snap1"), &copy)
        .unwrap();
    thin.rollback_snapshot("vg/thin", &volume, &snapshot("snap1"))
        .unwrap();
    thin.delete_snapshot("vg/thin", &volume, &snapshot("snap1"))
        .unwrap();
    let lvs = "lvs --noheadings --nosuffix --units k --separator ';' --options lv_name,lv_size,data_percent,lv_attr,pool_lv vg";
    assert_eq!(
        host.take_commands(),
        [
            "lvcreate --snapshot --setactivationskip y --name web_00000.snap1 vg/web_00000 -y"
                .to_string(),
            lvs.to_string(),
            "lvcreate --snapshot --setactivationskip n --name copy_00000 vg/web_00000.snap1 -y"
                .to_string(),
            lvs.to_string(),
            "lvcreate --snapshot --setactivationskip n --name web_00000+rollback vg/web_00000.snap1 -y"
                .to_string(),
            "lvremove -f vg/web_00000".to_string(),
            "lvrename vg web_00000+rollback web_00000".to_string(),
            lvs.to_string(),
            "lvremove -f vg/web_00000.snap1".to_string(),
        ]
    );
    let volumes = host.logical_volumes("vg");
    assert!(volumes.contains_key("web_00000") && volumes.contains_key("copy_00000"));
    assert!(!volumes.contains_key("web_00000.snap1"));
    // A snapshot's LV is not taken for a volume.
    let listed: Vec<String> = thin
        .list_volumes("vg/thin")
        .unwrap()
        .into_iter()
        .map(|v| v.name.to_string())
        .collect();
    assert_eq!(listed, ["copy_00000", "web_00000"]);
}

#[test]
fn thick_lvm_and_diskless_take_no_snapshots() {
    let host = Arc::new(FakeHost::new());
    let providers = providers(&host, true);
    for kind in [ProviderKind::Lvm, ProviderKind::Diskless] {
        let provider = providers.get(kind);
        assert!(!provider.supports_snapshots());
        let error = provider
            .create_snapshot("vg", &name("web", 0), &snapshot("s1"))
            .unwrap_err();
        assert!(matches!(error, StorageError::SnapshotsUnsupported { .. }));
    }
    assert!(host.commands().is_empty());
}

#[test]
fn file_snapshots_fall_back_to_a_sparse_copy_without_reflinks() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().to_str().unwrap().to_string();
    let host = Arc::new(FakeHost::new());
    let providers = providers(&host, false);
    let file = providers.get(ProviderKind::FileThin);
    let volume = name("web", 0);
    let copy = name("copy", 0);
    file.create_volume(&pool, &volume, 1024).unwrap();
    host.take_commands();
    let method = file
        .create_snapshot(&pool, &volume, &snapshot("Snap1"))
        .unwrap();
    assert_eq!(method, crate::SPARSE_COPY);
    let image = format!("{pool}/web_00000.img");
    let snap = format!("{pool}/web_00000@snap1.snap");
    assert_eq!(
        host.take_commands(),
        [
            format!("rm --force {snap}.partial"),
            format!("cp --reflink=always --no-target-directory {image} {snap}.partial"),
            format!("cp --sparse=always --no-target-directory {image} {snap}.partial"),
            format!("mv --no-clobber --no-target-directory {snap}.partial {snap}"),
        ]
    );
    // A snapshot file is not a volume.
    assert_eq!(file.list_volumes(&pool).unwrap().len(), 1);
    file.restore_snapshot(&pool, &volume, &snapshot("snap1"), &copy)
        .unwrap();
    assert!(file.volume(&pool, &copy).unwrap().is_some());
    // Restoring onto an existing volume is refused.
    assert!(matches!(
        file.restore_snapshot(&pool, &volume, &snapshot("snap1"), &copy),
        Err(StorageError::VolumeExists { .. })
    ));
    file.delete_snapshot(&pool, &volume, &snapshot("snap1"))
        .unwrap();
    assert!(
        !file
            .snapshot_exists(&pool, &volume, &snapshot("snap1"))
            .unwrap()
    );
    assert!(matches!(
        file.rollback_snapshot(&pool, &volume, &snapshot("snap1")),
        Err(StorageError::SnapshotMissing { .. })
    ));
}
