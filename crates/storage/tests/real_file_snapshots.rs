//! FILE and FILE_THIN snapshots with the real `cp`: a reflink copy on btrfs and xfs (each on a
//! loop device, when `mkfs.btrfs`/`mkfs.xfs` are installed), a sparse copy on a file system
//! without reflinks (the test directory's); restore and rollback bring back the bytes written
//! before the snapshot, also through a volume's attached loop device.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use common::{LoopCleanup, running_as_root};
use ferrite_storage::{
    BackingVolumeName, CommandLine, HostCommands, ProviderOptions, Providers, REFLINK_COPY,
    SPARSE_COPY, SystemCommands,
};
use ferrite_types::{ProviderKind, ResourceName, SnapshotName};

fn name(resource: &str) -> BackingVolumeName {
    BackingVolumeName::new(&ResourceName::new(resource).unwrap(), 0.into())
}

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(data).unwrap();
    file.sync_all().unwrap();
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut data = vec![0; len];
    file.read_exact(&mut data).unwrap();
    data
}

/// Takes, restores, rolls back and deletes a snapshot in `pool`; returns how it was taken.
fn round_trip(pool: &Path, kind: ProviderKind) -> String {
    let providers = Providers::new(Arc::new(SystemCommands::new()), ProviderOptions::default());
    let file = providers.get(kind);
    let pool_name = pool.to_str().unwrap();
    let volume = name("snapvol");
    let copy = name("snapcopy");
    let snapshot = SnapshotName::new("Snap1").unwrap();
    file.create_volume(pool_name, &volume, 8192).unwrap();
    let active = file.activate_volume(pool_name, &volume).unwrap();
    let device = active.device_path.unwrap();
    let image = pool.join("snapvol_00000.img");
    write_at(&image, 4096, b"before the snapshot");

    let method = file.create_snapshot(pool_name, &volume, &snapshot).unwrap();
    assert!(file.snapshot_exists(pool_name, &volume, &snapshot).unwrap());
    write_at(&device, 4096, b"after the snapshot!");
    assert_eq!(read_at(&image, 4096, 19), b"after the snapshot!");

    file.restore_snapshot(pool_name, &volume, &snapshot, &copy)
        .unwrap();
    let restored = pool.join("snapcopy_00000.img");
    assert_eq!(read_at(&restored, 4096, 19), b"before the snapshot");
    assert_eq!(
        file.volume(pool_name, &copy).unwrap().unwrap().usable_kib,
        8192
    );

    file.rollback_snapshot(pool_name, &volume, &snapshot)
        .unwrap();
    assert_eq!(read_at(&image, 4096, 19), b"before the snapshot");
    assert_eq!(
        read_at(&device, 4096, 19),
        b"before the snapshot",
        "the attached loop device reads the rolled back data"
    );

    file.delete_snapshot(pool_name, &volume, &snapshot).unwrap();
    assert!(!file.snapshot_exists(pool_name, &volume, &snapshot).unwrap());
    file.delete_volume(pool_name, &volume).unwrap();
    file.delete_volume(pool_name, &copy).unwrap();
    method
}

#[test]
fn without_reflinks_a_snapshot_is_a_sparse_copy() {
    if !running_as_root("without_reflinks_a_snapshot_is_a_sparse_copy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = LoopCleanup {
        dir: dir.path().to_path_buf(),
    };
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"x").unwrap();
    let reflinks = SystemCommands::new()
        .run(
            &CommandLine::new("cp")
                .args(["--reflink=always", "--no-target-directory"])
                .arg(probe.to_string_lossy())
                .arg(dir.path().join("probe2").to_string_lossy()),
        )
        .is_ok();
    let method = round_trip(dir.path(), ProviderKind::FileThin);
    let expected = if reflinks { REFLINK_COPY } else { SPARSE_COPY };
    assert_eq!(method, expected);
}

/// A file system of `mkfs` on a loop device, mounted in a temporary directory.
struct Mounted {
    dir: tempfile::TempDir,
    image: std::path::PathBuf,
}

impl Mounted {
    fn new(mkfs: &str) -> Option<Mounted> {
        let installed = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|dir| Path::new(dir).join(mkfs).exists());
        if !installed {
            eprintln!("skipped: {mkfs} is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = std::env::temp_dir().join(format!("ferrite-{mkfs}-{}.img", std::process::id()));
        std::fs::File::create(&image)
            .unwrap()
            .set_len(320 << 20)
            .unwrap();
        let host = SystemCommands::new();
        host.run(
            &CommandLine::new(mkfs)
                .arg("-q")
                .arg(image.to_string_lossy()),
        )
        .unwrap();
        host.run(
            &CommandLine::new("mount")
                .args(["-o", "loop"])
                .arg(image.to_string_lossy())
                .arg(dir.path().to_string_lossy()),
        )
        .unwrap();
        Some(Mounted { dir, image })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = SystemCommands::new()
            .run(&CommandLine::new("umount").arg(self.dir.path().to_string_lossy()));
        let _ = std::fs::remove_file(&self.image);
    }
}

#[test]
fn on_btrfs_and_xfs_a_snapshot_is_a_reflink_copy() {
    if !running_as_root("on_btrfs_and_xfs_a_snapshot_is_a_reflink_copy") {
        return;
    }
    for (mkfs, kind) in [
        ("mkfs.btrfs", ProviderKind::FileThin),
        ("mkfs.xfs", ProviderKind::File),
    ] {
        let Some(mounted) = Mounted::new(mkfs) else {
            continue;
        };
        let pool = mounted.dir.path().join("pool");
        std::fs::create_dir(&pool).unwrap();
        let _cleanup = LoopCleanup { dir: pool.clone() };
        assert_eq!(round_trip(&pool, kind), REFLINK_COPY, "{mkfs}");
    }
}
