//! Loop devices over the volumes' FUSE files: attach, detach, and who is using one.
//!
//! Attaching and detaching go through the host-command runner (`losetup`), so each command line
//! is logged. Usage is read from the kernel without commands:
//!
//! - an exclusive open (`O_EXCL` on a block device) fails with `EBUSY` while the device is
//!   mounted, has a `mkfs` or another exclusive user, or has a device-mapper or md device on it;
//! - `/proc/self/mountinfo` says where it is mounted (in this mount namespace);
//! - `/sys/block/<loop>/holders` names stacked devices;
//! - `/proc/<pid>/fd` shows processes that opened it without `O_EXCL` (`dd`, a VM).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrite_storage::{CommandLine, HostCommands};

use crate::error::Opener;

/// How long a detached loop device may take to let go of its backing file.
pub const DETACH_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the detach is checked while waiting for it.
const DETACH_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Where the kernel describes block devices.
const SYS_BLOCK: &str = "/sys/block";

/// Processes that open every new block device briefly to probe it (udev's blkid); an open by
/// one of them is not a user.
const TRANSIENT_OPENERS: &[&str] = &["systemd-udevd", "(udev-worker)", "udevd"];

/// How long an open by another process may last before it counts as a user, and how often it
/// is looked for meanwhile. Tools open loop devices for a moment (`losetup --find` looks at
/// attached devices for overlaps, `blkid` probes them); a user keeps it open.
pub const OPENER_GRACE: Duration = Duration::from_secs(1);
const OPENER_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// An attached loop device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    /// `loopN`, its name under `/sys/block`.
    pub name: String,
    /// Its device number.
    pub rdev: u64,
    /// Whether the kernel does direct I/O on the backing file (`/sys/block/loopN/loop/dio`).
    pub direct_io: bool,
}

/// The command that attaches `file` to a free loop device with direct I/O and prints it.
pub(crate) fn attach_command(file: &Path, sector_size: u32) -> CommandLine {
    CommandLine::new("losetup")
        .args(["--find", "--show", "--direct-io=on", "--sector-size"])
        .arg(sector_size.to_string())
        .arg(file.to_string_lossy())
}

/// The command that detaches a loop device.
pub(crate) fn detach_command(device: &Path) -> CommandLine {
    CommandLine::new("losetup")
        .arg("--detach")
        .arg(device.to_string_lossy())
}

/// Reads what `losetup --find --show` printed and what the kernel says about the device.
pub(crate) fn attached(stdout: &str) -> Option<LoopDevice> {
    let path = PathBuf::from(stdout.trim());
    let name = path.file_name()?.to_str()?.to_string();
    if !name.starts_with("loop") || !path.starts_with("/dev") {
        return None;
    }
    let rdev = block_device_number(&path).ok()?;
    let direct_io =
        std::fs::read_to_string(sys_path(&name, "loop/dio")).is_ok_and(|value| value.trim() == "1");
    Some(LoopDevice {
        path,
        name,
        rdev,
        direct_io,
    })
}

/// The device number of a block device node.
pub(crate) fn block_device_number(path: &Path) -> io::Result<u64> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.file_type().is_block_device() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a block device", path.display()),
        ));
    }
    Ok(metadata.rdev())
}

fn sys_path(name: &str, attribute: &str) -> PathBuf {
    Path::new(SYS_BLOCK).join(name).join(attribute)
}

/// The file a loop device is attached to, or `None` once it is detached.
pub(crate) fn backing_file(name: &str) -> Option<PathBuf> {
    std::fs::read_to_string(sys_path(name, "loop/backing_file"))
        .ok()
        .map(|path| PathBuf::from(path.trim_end_matches('\n')))
}

/// Opens the device exclusively: `Ok(None)` if that fails with `EBUSY` (someone holds it
/// exclusively), else the open device. Holding it keeps mounts and `mkfs` away.
pub(crate) fn open_exclusive(path: &Path) -> io::Result<Option<File>> {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.raw_os_error() == Some(libc::EBUSY) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Attaches `file` through `runner`; the device, or the command's error.
pub(crate) fn attach(
    runner: &dyn HostCommands,
    file: &Path,
    sector_size: u32,
) -> Result<Result<LoopDevice, String>, ferrite_storage::CommandError> {
    let output = runner.run(&attach_command(file, sector_size))?;
    Ok(attached(&output.stdout).ok_or(output.stdout))
}

/// Detaches `device` while `exclusive` (an exclusive open of it) is held, then waits until the
/// kernel let go of the backing file.
///
/// The kernel defers a detach while the device is open, and clears it at the last close: with
/// our exclusive open held, nothing can mount the device between the check that it is unused
/// and the detach, and the detach completes when `exclusive` is closed here.
pub(crate) fn detach(
    runner: &dyn HostCommands,
    device: &LoopDevice,
    exclusive: File,
    timeout: Duration,
) -> Result<Result<(), Duration>, ferrite_storage::CommandError> {
    let result = runner.run(&detach_command(&device.path));
    drop(exclusive);
    result?;
    let started = Instant::now();
    while backing_file(&device.name).is_some() {
        if started.elapsed() >= timeout {
            return Ok(Err(timeout));
        }
        std::thread::sleep(DETACH_POLL_INTERVAL);
    }
    Ok(Ok(()))
}

/// Where a block device is mounted in this mount namespace.
pub(crate) fn mount_points(rdev: u64) -> Vec<PathBuf> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    mount_points_in(&mountinfo, major(rdev), minor(rdev))
}

/// Parses `/proc/self/mountinfo`: the fifth field is the mount point (octal-escaped), the
/// third the device's `major:minor`.
fn mount_points_in(mountinfo: &str, major: u32, minor: u32) -> Vec<PathBuf> {
    let wanted = format!("{major}:{minor}");
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.len() > 4 && fields[2] == wanted).then(|| PathBuf::from(unescape(fields[4])))
        })
        .collect()
}

/// Whether something is mounted at `path` (in this mount namespace).
pub(crate) fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|mountinfo| mounted_at(&mountinfo, path))
}

fn mounted_at(mountinfo: &str, path: &Path) -> bool {
    mountinfo.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|mount_point| Path::new(&unescape(mount_point)) == path)
    })
}

/// Undoes mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(digits) = std::str::from_utf8(&bytes[i + 1..i + 4])
            && let Ok(value) = u8::from_str_radix(digits, 8)
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The block devices stacked on a device (device mapper, md).
pub(crate) fn holders(name: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sys_path(name, "holders")) else {
        return Vec::new();
    };
    let mut holders: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    holders.sort();
    holders
}

/// Processes that keep the device open for longer than [`OPENER_GRACE`]; empty as soon as
/// none has it open.
pub(crate) fn lasting_openers(rdev: u64) -> Vec<Opener> {
    let started = Instant::now();
    loop {
        let openers = openers(rdev);
        if openers.is_empty() || started.elapsed() >= OPENER_GRACE {
            return openers;
        }
        std::thread::sleep(OPENER_POLL_INTERVAL);
    }
}

/// Processes other than this one with the device open (read from `/proc/<pid>/fd`), except
/// udev's short probes.
pub(crate) fn openers(rdev: u64) -> Vec<Opener> {
    let own = std::process::id();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut openers = Vec::new();
    for process in processes.filter_map(|entry| entry.ok()) {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        // A process can exit while we look: everything below may fail, and that is no opener.
        let Ok(descriptors) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        let holds = descriptors.filter_map(|entry| entry.ok()).any(|entry| {
            std::fs::metadata(entry.path())
                .is_ok_and(|meta| meta.file_type().is_block_device() && meta.rdev() == rdev)
        });
        if !holds {
            continue;
        }
        let command = std::fs::read_to_string(process.path().join("comm"))
            .map(|comm| comm.trim().to_string())
            .unwrap_or_default();
        if TRANSIENT_OPENERS.contains(&command.as_str()) {
            continue;
        }
        openers.push(Opener { pid, command });
    }
    openers
}

/// glibc's `gnu_dev_major`.
pub(crate) fn major(rdev: u64) -> u32 {
    (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff)) as u32
}

/// glibc's `gnu_dev_minor`.
pub(crate) fn minor(rdev: u64) -> u32 {
    (((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attach_and_detach_command_lines() {
        assert_eq!(
            attach_command(Path::new("/run/ferrite/blockdev/web_0"), 512).to_string(),
            "losetup --find --show --direct-io=on --sector-size 512 /run/ferrite/blockdev/web_0"
        );
        assert_eq!(
            detach_command(Path::new("/dev/loop7")).to_string(),
            "losetup --detach /dev/loop7"
        );
    }

    #[test]
    fn mount_points_come_from_mountinfo_with_escapes_undone() {
        let mountinfo = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
97 30 7:3 / /mnt/my\\040data rw,relatime shared:50 - ext4 /dev/loop3 rw
98 30 7:3 / /srv/again rw,relatime - ext4 /dev/loop3 rw
99 30 7:30 / /srv/other rw,relatime - ext4 /dev/loop30 rw
";
        assert_eq!(
            mount_points_in(mountinfo, 7, 3),
            vec![PathBuf::from("/mnt/my data"), PathBuf::from("/srv/again")]
        );
        assert!(mount_points_in(mountinfo, 7, 4).is_empty());
        assert!(mounted_at(mountinfo, Path::new("/mnt/my data")));
        assert!(!mounted_at(mountinfo, Path::new("/mnt")));
    }

    #[test]
    fn device_numbers_split_as_glibc_does() {
        // makedev(7, 3) and makedev(259, 1048577).
        assert_eq!((major(0x703), minor(0x703)), (7, 3));
        let big = (259u64 << 8) | ((1_048_577u64 & 0xff) | ((1_048_577u64 & !0xff) << 12));
        assert_eq!((major(big), minor(big)), (259, 1_048_577));
    }

    #[test]
    fn losetup_output_that_names_no_loop_device_is_refused() {
        assert_eq!(attached(""), None);
        assert_eq!(attached("/tmp/loop0\n"), None);
        assert_eq!(attached("/dev/sda\n"), None);
    }
}
