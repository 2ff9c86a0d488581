//! Shared by the real-tool tests: root check and cleanup guards.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ferrite_storage::{CommandLine, HostCommands, SystemCommands};

/// Whether the test can touch loop devices and LVM. CI runs as root; elsewhere the test says
/// why it does nothing.
pub fn running_as_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping {test}: it needs root to create loop devices and volume groups");
    }
    root
}

pub fn run(line: CommandLine) -> String {
    SystemCommands::new()
        .run(&line)
        .unwrap_or_else(|e| panic!("{e}"))
        .stdout
}

/// Detaches every loop device backed by a file under `dir` when dropped, so a failing test
/// leaves no loop devices behind.
pub struct LoopCleanup {
    pub dir: PathBuf,
}

impl Drop for LoopCleanup {
    fn drop(&mut self) {
        let runner = SystemCommands::new();
        let Ok(out) = runner.run(&CommandLine::new("losetup").args([
            "--list",
            "--noheadings",
            "--raw",
            "--output",
            "NAME,BACK-FILE",
        ])) else {
            return;
        };
        for line in out.stdout.lines() {
            let mut parts = line.splitn(2, ' ');
            let (Some(device), Some(file)) = (parts.next(), parts.next()) else {
                continue;
            };
            if Path::new(file.trim_end_matches(" (deleted)")).starts_with(&self.dir) {
                let _ = runner.run(&CommandLine::new("losetup").args(["--detach", device]));
            }
        }
    }
}

/// The loop devices backed by `file`, from the kernel's view in /sys.
pub fn loop_devices_of(file: &Path) -> Vec<String> {
    let mut devices = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return devices;
    };
    for entry in entries.flatten() {
        let backing = entry.path().join("loop/backing_file");
        if let Ok(text) = std::fs::read_to_string(&backing)
            && Path::new(text.trim()) == file
        {
            devices.push(format!("/dev/{}", entry.file_name().to_string_lossy()));
        }
    }
    devices
}

/// Size of a block device in KiB, from /sys.
pub fn device_size_kib(device: &str) -> u64 {
    let name = device.trim_start_matches("/dev/");
    let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    sectors / 2
}
