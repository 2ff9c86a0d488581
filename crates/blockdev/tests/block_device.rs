//! The block device against the real kernel: FUSE mounts, loop devices, ext4, as root.
//!
//! Each test makes its own FUSE mount and device root in a temporary directory, attaches its
//! own loop devices and removes them again; guards unmount and detach also when a test fails.
//! Without root or /dev/fuse the tests say so and return.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferrite_block::IoError;
use ferrite_blockdev::{BlockDevError, InUseReason};
use ferrite_types::{ResourceName, VolumeNumber};

use common::{
    Counters, MemoryVolume, Mounted, Node, can_run, open_direct, pattern, read_direct, run,
    runtime, write_direct,
};

const MIB: usize = 1 << 20;
const BLOCK: usize = 4096;

fn resource(name: &str) -> ResourceName {
    ResourceName::new(name).unwrap()
}

fn volume_number(number: u16) -> VolumeNumber {
    VolumeNumber::from(number)
}

/// Waits up to 5 s for `condition`.
fn wait_for(condition: impl Fn() -> bool) -> Result<()> {
    let started = std::time::Instant::now();
    while !condition() {
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "timed out waiting"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Whether the loop device is attached to `file`. (Only to that file: once detached, another
/// test may attach the same loop device at once.)
fn attached(device: &Path, file: &Path) -> bool {
    let name = device.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_to_string(Path::new("/sys/block").join(name).join("loop/backing_file"))
        .is_ok_and(|backing| Path::new(backing.trim_end()) == file)
}

#[test]
fn ext4_made_and_written_through_the_loop_device_lands_in_the_volume() -> Result<()> {
    if !can_run("ext4_made_and_written_through_the_loop_device_lands_in_the_volume") {
        return Ok(());
    }
    let runtime = runtime();
    let mut node = Node::start(&runtime)?;
    let volume = MemoryVolume::new(64 * MIB);
    let web = resource("web");
    let device = node.devices.add(&web, volume_number(0), volume.clone())?;

    // The paths: the FUSE file with the volume's size, the loop device with direct I/O, and
    // both symlinks.
    let root = node.dir.path().join("dev");
    assert_eq!(device.path(), root.join("web/0"));
    assert_eq!(
        device.drbd_path(),
        Some(root.join("drbd/by-res/web/0").as_path())
    );
    assert_eq!(std::fs::read_link(device.path())?, device.device());
    assert_eq!(
        std::fs::read_link(device.drbd_path().unwrap())?,
        device.device()
    );
    assert_eq!(
        device.file().expect("a FUSE file"),
        node.dir.path().join("fuse/web_0")
    );
    assert_eq!(
        std::fs::metadata(device.file().expect("a FUSE file"))?.len(),
        64 * MIB as u64
    );
    assert!(device.direct_io(), "the loop device does direct I/O");
    assert_eq!(
        device.open_counts().open_now,
        1,
        "the loop device's own open"
    );
    assert!(!device.is_in_use());

    let link = device.path().to_string_lossy().into_owned();
    run("mkfs.ext4", &["-q", "-F", "-E", "nodiscard", &link])?;
    let mountpoint = node.dir.path().join("mnt");
    let mut mounted = Mounted::new(device.path(), &mountpoint)?;
    assert!(device.is_in_use(), "a mounted device is in use");
    assert!(device.is_in_use(), "and stays so while mounted");
    assert_eq!(Counters::get(&volume.counters.opened), 1, "opened once");

    let small = b"written through FUSE and a loop device\n".repeat(10);
    std::fs::write(mountpoint.join("hello.txt"), &small)?;
    let large = pattern(7, 3 * MIB);
    std::fs::write(mountpoint.join("large.bin"), &large[..])?;
    run("sync", &[])?;
    mounted.unmount()?;
    assert!(!device.is_in_use());
    assert_eq!(Counters::get(&volume.counters.closed), 1, "closed once");
    assert!(
        Counters::get(&volume.counters.flushes) > 0,
        "ext4's journal commits flushed the volume"
    );

    // Read the files back from the volume's own bytes.
    let image = node.dir.path().join("image");
    std::fs::write(&image, volume.contents())?;
    let image = image.to_string_lossy().into_owned();
    let dumped = node.dir.path().join("large.out");
    run(
        "debugfs",
        &[
            "-R",
            &format!("dump /large.bin {}", dumped.display()),
            &image,
        ],
    )?;
    assert_eq!(
        run("debugfs", &["-R", "cat /hello.txt", &image])?.as_bytes(),
        &small[..]
    );
    assert!(std::fs::read(&dumped)? == large[..], "large.bin differs");

    let loop_device = device.device().to_path_buf();
    node.devices.remove(&web, volume_number(0))?;
    assert!(
        !attached(&loop_device, device.file().expect("a FUSE file")),
        "detached"
    );
    assert!(!device.path().exists() && std::fs::symlink_metadata(device.path()).is_err());
    assert!(std::fs::symlink_metadata(device.drbd_path().unwrap()).is_err());
    assert!(
        !root.join("web").exists(),
        "the resource's directory went with its last volume"
    );
    assert!(
        std::fs::metadata(device.file().expect("a FUSE file")).is_err(),
        "the FUSE file is gone"
    );
    assert_eq!(
        device.open_counts().open_now,
        0,
        "the loop device closed the file"
    );
    assert!(!device.is_in_use(), "a removed device is never in use");
    Ok(())
}

#[test]
fn concurrent_writes_are_in_flight_together_and_all_land() -> Result<()> {
    if !can_run("concurrent_writes_are_in_flight_together_and_all_land") {
        return Ok(());
    }
    let runtime = runtime();
    let mut node = Node::start(&runtime)?;
    // Slow enough that requests overlap if anything lets them.
    let volume = MemoryVolume::with_delay(16 * MIB, Some(Duration::from_millis(2)));
    let device = node
        .devices
        .add(&resource("busy"), volume_number(3), volume.clone())?;

    const THREADS: u64 = 8;
    const WRITES: u64 = 32;
    let loop_device = device.device().to_path_buf();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let loop_device = loop_device.clone();
                scope.spawn(move || -> Result<()> {
                    let file = open_direct(&loop_device, 0)?;
                    for write in 0..WRITES {
                        let block = write * THREADS + thread;
                        write_direct(&file, block * BLOCK as u64, &pattern(block, BLOCK))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("writer thread")?;
        }
        Ok(())
    })?;
    for block in 0..THREADS * WRITES {
        let offset = (block as usize) * BLOCK;
        ensure!(
            volume.snapshot(offset, BLOCK) == pattern(block, BLOCK)[..],
            "block {block} differs"
        );
    }
    let most = Counters::get(&volume.counters.max_in_flight);
    assert!(most >= 4, "at most {most} requests were in flight together");
    node.devices.remove(&resource("busy"), volume_number(3))?;
    Ok(())
}

#[test]
fn a_write_through_one_node_is_read_through_the_other_right_after() -> Result<()> {
    if !can_run("a_write_through_one_node_is_read_through_the_other_right_after") {
        return Ok(());
    }
    let runtime = runtime();
    // Two "nodes" (two FUSE mounts, two loop devices) over one shared volume.
    let shared = MemoryVolume::new(8 * MIB);
    let mut first = Node::start(&runtime)?;
    let mut second = Node::start(&runtime)?;
    let name = resource("shared");
    let one = first.devices.add(&name, volume_number(0), shared.clone())?;
    let two = second
        .devices
        .add(&name, volume_number(0), shared.clone())?;
    assert_ne!(one.device(), two.device());

    let writer = open_direct(one.device(), 0)?;
    for round in 0..16u64 {
        let offset = (round % 4) * 64 * BLOCK as u64;
        let range = offset as usize..offset as usize + BLOCK;
        // The second node reads (and, buffered, caches) the old contents first.
        let before = std::fs::read(two.device())?[range.clone()].to_vec();
        let data = pattern(1000 + round, BLOCK);
        assert!(before != data[..]);
        write_direct(&writer, offset, &data)?;
        let direct_reader = open_direct(two.device(), 0)?;
        assert!(
            read_direct(&direct_reader, offset, BLOCK)? == data[..],
            "round {round}: an O_DIRECT read through the other loop device is stale"
        );
        drop(direct_reader);
        // The FUSE file below the loop device has no cache either. (Buffered reads of the
        // loop device itself go through the kernel's cache of that block device, dropped at
        // its last close, which another process's open can postpone: not this crate's.)
        assert!(
            std::fs::read(two.file().expect("a FUSE file"))?[range] == data[..],
            "round {round}: a buffered read of the other node's FUSE file is stale"
        );
    }
    drop(writer);
    first.devices.remove(&name, volume_number(0))?;
    second.devices.remove(&name, volume_number(0))?;
    Ok(())
}

#[test]
fn a_device_in_use_is_not_removed_and_says_why() -> Result<()> {
    if !can_run("a_device_in_use_is_not_removed_and_says_why") {
        return Ok(());
    }
    let runtime = runtime();
    let mut node = Node::start(&runtime)?;
    let volume = MemoryVolume::new(32 * MIB);
    let db = resource("db");
    let device = node.devices.add(&db, volume_number(1), volume.clone())?;
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-E",
            "nodiscard",
            &device.device().to_string_lossy(),
        ],
    )?;
    let mountpoint = node.dir.path().join("mnt");
    let mut mounted = Mounted::new(device.device(), &mountpoint)?;

    let error = node.devices.remove(&db, volume_number(1)).unwrap_err();
    match &error {
        BlockDevError::InUse {
            reason: InUseReason::Mounted { mount_points },
            ..
        } => assert_eq!(mount_points, std::slice::from_ref(&mountpoint)),
        other => panic!("expected InUse(Mounted), got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&format!("mounted on {}", mountpoint.display())),
        "{message}"
    );
    // Still attached and working.
    assert!(attached(
        device.device(),
        device.file().expect("a FUSE file")
    ));
    std::fs::write(mountpoint.join("after-refusal"), b"still here")?;
    assert!(node.devices.get(&db, volume_number(1)).is_some());
    mounted.unmount()?;

    // A process with the device open (not exclusively) is named too.
    let holder = HeldOpen::start(device.device())?;
    let error = node.devices.remove(&db, volume_number(1)).unwrap_err();
    match &error {
        BlockDevError::InUse {
            reason: InUseReason::OpenBy { processes },
            ..
        } => assert!(
            processes.iter().any(|p| p.pid == holder.pid()),
            "{processes:?}"
        ),
        other => panic!("expected InUse(OpenBy), got {other:?}"),
    }
    assert!(error.to_string().contains("open by sleep (pid"), "{error}");
    drop(holder);

    node.devices.remove(&db, volume_number(1))?;
    assert!(!attached(
        device.device(),
        device.file().expect("a FUSE file")
    ));
    assert!(matches!(
        node.devices.remove(&db, volume_number(1)),
        Err(BlockDevError::NotExported { .. })
    ));
    Ok(())
}

/// A `sleep` whose standard input is the device: a process that has it open without O_EXCL.
struct HeldOpen(std::process::Child);

impl HeldOpen {
    #[allow(clippy::disallowed_types)] // the runner waits for its commands; this must not end
    fn start(device: &Path) -> Result<HeldOpen> {
        let input = std::fs::File::open(device)?;
        let child = std::process::Command::new("sleep")
            .arg("60")
            .stdin(input)
            .spawn()
            .context("starting sleep")?;
        Ok(HeldOpen(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for HeldOpen {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn in_use_follows_exclusive_opens_and_tells_the_volume_once_per_change() -> Result<()> {
    if !can_run("in_use_follows_exclusive_opens_and_tells_the_volume_once_per_change") {
        return Ok(());
    }
    let runtime = runtime();
    let mut node = Node::start(&runtime)?;
    let volume = MemoryVolume::new(4 * MIB);
    let device = node
        .devices
        .add(&resource("poll"), volume_number(0), volume.clone())?;

    // A plain open is not usage.
    let plain = std::fs::File::open(device.device())?;
    assert!(!device.is_in_use());
    drop(plain);

    let exclusive = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(device.device())?
    };
    for _ in 0..3 {
        assert!(device.is_in_use());
    }
    assert_eq!(Counters::get(&volume.counters.opened), 1);
    assert_eq!(Counters::get(&volume.counters.closed), 0);
    drop(exclusive);
    for _ in 0..3 {
        assert!(!device.is_in_use());
    }
    assert_eq!(Counters::get(&volume.counters.opened), 1);
    assert_eq!(Counters::get(&volume.counters.closed), 1);
    node.devices.remove(&resource("poll"), volume_number(0))?;
    Ok(())
}

#[test]
fn sync_writes_are_fua_fsync_flushes_and_errors_keep_their_errno() -> Result<()> {
    if !can_run("sync_writes_are_fua_fsync_flushes_and_errors_keep_their_errno") {
        return Ok(());
    }
    let runtime = runtime();
    let mut node = Node::start(&runtime)?;
    let volume = MemoryVolume::new(4 * MIB);
    let device = node
        .devices
        .add(&resource("sync"), volume_number(0), volume.clone())?;

    // The FUSE file opened directly (as a VM could): O_DSYNC writes reach the volume as FUA.
    let file = open_direct(device.file().expect("a FUSE file"), libc::O_DSYNC)?;
    assert_eq!(
        device.open_counts().open_now,
        2,
        "the loop device and this open"
    );
    write_direct(&file, 8 * BLOCK as u64, &pattern(1, BLOCK))?;
    assert_eq!(Counters::get(&volume.counters.fua_writes), 1);
    let plain = open_direct(device.file().expect("a FUSE file"), 0)?;
    write_direct(&plain, 9 * BLOCK as u64, &pattern(2, BLOCK))?;
    assert_eq!(
        Counters::get(&volume.counters.fua_writes),
        1,
        "a plain write is not FUA"
    );
    let flushes = Counters::get(&volume.counters.flushes);
    plain.sync_all()?;
    assert!(
        Counters::get(&volume.counters.flushes) > flushes,
        "fsync flushed"
    );

    // The volume's errors reach the caller with their errno.
    volume.fail_with(Some(IoError::ReadOnly("another member is Primary".into())));
    let error = write_direct(&plain, 0, &pattern(3, BLOCK)).unwrap_err();
    let errno = error
        .downcast_ref::<std::io::Error>()
        .and_then(|e| e.raw_os_error());
    assert_eq!(errno, Some(libc::EROFS), "{error:#}");
    volume.fail_with(Some(IoError::NoSpace("backing store full".into())));
    let error = read_direct(&plain, 0, BLOCK).unwrap_err();
    let errno = error
        .downcast_ref::<std::io::Error>()
        .and_then(|e| e.raw_os_error());
    assert_eq!(errno, Some(libc::ENOSPC), "{error:#}");
    volume.fail_with(None);

    // Writes and reads stop at the volume's end, like a block device's.
    let end = 4 * MIB as u64;
    let error = write_direct(&plain, end, &pattern(4, BLOCK)).unwrap_err();
    let errno = error
        .downcast_ref::<std::io::Error>()
        .and_then(|e| e.raw_os_error());
    assert_eq!(errno, Some(libc::ENOSPC), "{error:#}");
    let mut buf = ferrite_block::AlignedBuf::zeroed(BLOCK);
    use std::os::unix::fs::FileExt;
    assert_eq!(
        plain.read_at(&mut buf, end)?,
        0,
        "a read at the end returns nothing"
    );

    drop((file, plain));
    // The kernel sends the release after close returned.
    wait_for(|| device.open_counts().open_now == 1)?;
    assert_eq!(device.open_counts().opens, 3);
    assert_eq!(device.open_counts().releases, 2);
    node.devices.remove(&resource("sync"), volume_number(0))?;
    Ok(())
}

#[test]
fn discard_and_zeroing_through_the_loop_device_reach_the_volume() -> Result<()> {
    if !can_run("discard_and_zeroing_through_the_loop_device_reach_the_volume") {
        return Ok(());
    }
    let runtime = runtime();
    let mut node = Node::start(&runtime)?;
    let volume = MemoryVolume::new(8 * MIB);
    let device = node
        .devices
        .add(&resource("trim"), volume_number(0), volume.clone())?;
    let loop_device = open_direct(device.device(), 0)?;
    let data = pattern(5, MIB);
    write_direct(&loop_device, 0, &data)?;
    write_direct(&loop_device, 2 * MIB as u64, &data)?;
    drop(loop_device);

    let path = device.device().to_string_lossy().into_owned();
    run(
        "blkdiscard",
        &["--offset", "0", "--length", &MIB.to_string(), &path],
    )?;
    assert!(
        Counters::get(&volume.counters.trims) > 0,
        "the discard became a trim"
    );
    assert!(volume.snapshot(0, MIB).iter().all(|b| *b == 0));

    run(
        "blkdiscard",
        &[
            "--zeroout",
            "--offset",
            &(2 * MIB).to_string(),
            "--length",
            &MIB.to_string(),
            &path,
        ],
    )?;
    assert!(volume.snapshot(2 * MIB, MIB).iter().all(|b| *b == 0));
    eprintln!(
        "zeroing reached the volume as {} write_zeroes and {} writes",
        Counters::get(&volume.counters.zeroes),
        Counters::get(&volume.counters.writes)
    );
    node.devices.remove(&resource("trim"), volume_number(0))?;
    Ok(())
}

#[test]
fn files_come_and_go_with_their_volumes() -> Result<()> {
    if !can_run("files_come_and_go_with_their_volumes") {
        return Ok(());
    }
    let runtime = runtime();
    let mut node = Node::start(&runtime)?;
    let mount = node.dir.path().join("fuse");
    let list = || -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&mount)?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        names.sort();
        Ok(names)
    };
    assert!(list()?.is_empty());
    let a = MemoryVolume::new(MIB);
    let b = MemoryVolume::new(2 * MIB);
    node.devices
        .add(&resource("alpha"), volume_number(0), a.clone())?;
    let beta = node
        .devices
        .add(&resource("alpha"), volume_number(1), b.clone())?;
    assert_eq!(list()?, ["alpha_0", "alpha_1"]);
    assert!(matches!(
        node.devices
            .add(&resource("ALPHA"), volume_number(1), b.clone()),
        Err(BlockDevError::AlreadyExported { .. })
    ));
    let unaligned = MemoryVolume::new(MIB + 100);
    assert!(matches!(
        node.devices
            .add(&resource("odd"), volume_number(0), unaligned),
        Err(BlockDevError::UnalignedSize { .. })
    ));

    node.devices.remove(&resource("alpha"), volume_number(0))?;
    assert_eq!(list()?, ["alpha_1"]);
    assert!(std::fs::metadata(mount.join("alpha_0")).is_err());
    // The other volume is untouched.
    let file = open_direct(beta.device(), 0)?;
    write_direct(&file, 0, &pattern(9, BLOCK))?;
    assert_eq!(b.snapshot(0, BLOCK), pattern(9, BLOCK)[..]);
    drop(file);
    assert_eq!(Arc::strong_count(&a), 1, "nothing holds the removed volume");
    assert!(node.dir.path().join("dev/alpha/1").exists());
    assert_eq!(node.devices.devices().count(), 1);
    let Node { devices, dir: _dir } = node;
    let errors = devices.shutdown();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        !attached(beta.device(), beta.file().expect("a FUSE file")),
        "shutdown detached the rest"
    );
    assert_eq!(b.counters.opened.load(Ordering::SeqCst), 0);
    Ok(())
}

/// Set in the child process of the crash test: the directory it serves its devices from.
const CRASH_CHILD_DIR: &str = "FERRITE_BLOCKDEV_TEST_CRASH_CHILD_DIR";

#[test]
fn a_mount_left_by_a_killed_process_is_cleared_on_start() -> Result<()> {
    let test = "a_mount_left_by_a_killed_process_is_cleared_on_start";
    if let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) {
        // The child: serve a device, say which, and wait to be killed.
        let dir = std::path::PathBuf::from(dir);
        let runtime = runtime();
        let config = common::config(&dir);
        let mut devices = ferrite_blockdev::BlockDevices::start(
            config,
            common::host(),
            runtime.handle().clone(),
        )?;
        let device = devices.add(&resource("crash"), volume_number(0), MemoryVolume::new(MIB))?;
        std::fs::write(
            dir.join("ready"),
            device.device().to_string_lossy().as_bytes(),
        )?;
        std::thread::sleep(Duration::from_secs(60));
        return Ok(());
    }
    if !can_run(test) {
        return Ok(());
    }
    let dir = tempfile::Builder::new()
        .prefix("ferrite-blockdev-test")
        .tempdir()?;
    let child = Child::start(test, dir.path())?;
    wait_for(|| dir.path().join("ready").exists())?;
    let stale_device = std::path::PathBuf::from(std::fs::read_to_string(dir.path().join("ready"))?);
    let mountpoint = dir.path().join("fuse");
    let _cleanup = StaleCleanup {
        device: stale_device.clone(),
        file: mountpoint.join("crash_0"),
        mountpoint: mountpoint.clone(),
    };
    drop(child); // SIGKILL: the FUSE mount and the loop device stay behind
    let error = std::fs::metadata(&mountpoint).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ENOTCONN), "{error}");
    let stale_file = mountpoint.join("crash_0");
    assert!(attached(&stale_device, &stale_file));

    let runtime = runtime();
    let mut devices = ferrite_blockdev::BlockDevices::start(
        common::config(dir.path()),
        common::host(),
        runtime.handle().clone(),
    )?;
    wait_for(|| !attached(&stale_device, &stale_file))?;
    let volume = MemoryVolume::new(MIB);
    let device = devices.add(&resource("crash"), volume_number(0), volume.clone())?;
    let file = open_direct(device.path(), 0)?;
    write_direct(&file, 0, &pattern(11, BLOCK))?;
    assert!(volume.snapshot(0, BLOCK) == pattern(11, BLOCK)[..]);
    drop(file);

    // A live mount is not mounted over.
    let second = ferrite_blockdev::BlockDevices::<MemoryVolume>::start(
        common::config(dir.path()),
        common::host(),
        runtime.handle().clone(),
    );
    assert!(
        matches!(&second, Err(BlockDevError::Mount { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{:?}",
        second.err()
    );
    let errors = devices.shutdown();
    assert!(errors.is_empty(), "{errors:?}");
    Ok(())
}

/// Detaches the killed child's loop device and unmounts its FUSE mount if the test failed
/// before the code under test did.
struct StaleCleanup {
    device: std::path::PathBuf,
    file: std::path::PathBuf,
    mountpoint: std::path::PathBuf,
}

impl Drop for StaleCleanup {
    fn drop(&mut self) {
        if attached(&self.device, &self.file) {
            let _ = run("losetup", &["--detach", &self.device.to_string_lossy()]);
        }
        if std::fs::metadata(&self.mountpoint)
            .is_err_and(|error| error.raw_os_error() == Some(libc::ENOTCONN))
        {
            let _ = run("umount", &["--lazy", &self.mountpoint.to_string_lossy()]);
        }
    }
}

/// This test binary again, running only the crash test as the child; killed when dropped.
struct Child(std::process::Child);

impl Child {
    #[allow(clippy::disallowed_types)] // the runner waits for its commands; this one is killed
    fn start(test: &str, dir: &Path) -> Result<Child> {
        let child = std::process::Command::new(std::env::current_exe()?)
            .args([test, "--exact", "--nocapture"])
            .env(CRASH_CHILD_DIR, dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting the child test process")?;
        Ok(Child(child))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
