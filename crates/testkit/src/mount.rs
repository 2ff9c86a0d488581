//! A small ext4 file system in an image file, mounted on a directory of its own: a storage pool
//! whose file system can be unmounted (as after a boot where it failed to mount) or filled.
//!
//! [`MountedImage`] owns a temporary directory holding the image and the mount point. Dropping
//! it (also while a test panics) detaches the loop devices of files inside the file system,
//! unmounts it, and removes the directory. Keep it alive longer than the cluster whose pool it
//! is (declare it first), so the satellites are gone when it unmounts.
//!
//! Needs root (mount, losetup).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// An ext4 image mounted at [`MountedImage::path`].
pub struct MountedImage {
    dir: tempfile::TempDir,
    image: PathBuf,
    mount_point: PathBuf,
    mounted: bool,
}

impl MountedImage {
    /// Creates a `size_mib` MiB ext4 image (no blocks reserved for root, so all free space is
    /// usable) and mounts it.
    pub fn create(size_mib: u64) -> Result<MountedImage> {
        let dir = tempfile::Builder::new()
            .prefix("ferrite-mount-")
            .tempdir()?;
        let image = dir.path().join("fs.img");
        let mount_point = dir.path().join("mnt");
        std::fs::create_dir(&mount_point)?;
        std::fs::File::create(&image)?.set_len(size_mib << 20)?;
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-E", "nodiscard"])
            .arg(&image))?;
        let mut mounted = MountedImage {
            dir,
            image,
            mount_point,
            mounted: false,
        };
        mounted.mount()?;
        Ok(mounted)
    }

    /// The mount point: the file system's root while mounted, an empty directory otherwise.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// Mounts the file system (again).
    pub fn mount(&mut self) -> Result<()> {
        if self.mounted {
            return Ok(());
        }
        run(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop"])
            .arg(&self.image)
            .arg(&self.mount_point))?;
        self.mounted = true;
        Ok(())
    }

    /// Unmounts the file system, as a reboot after which it did not mount would: the loop
    /// devices of files inside it are detached first (a reboot loses them too). The mount point
    /// is then an empty directory.
    pub fn unmount(&mut self) -> Result<()> {
        if !self.mounted {
            return Ok(());
        }
        detach_loop_devices_under(&self.mount_point);
        let mut last = None;
        for _ in 0..50 {
            match run(Command::new("umount").arg(&self.mount_point)) {
                Ok(()) => {
                    self.mounted = false;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            // A loop device being set up or torn down keeps the file system busy briefly.
            std::thread::sleep(Duration::from_millis(100));
            detach_loop_devices_under(&self.mount_point);
        }
        Err(last.expect("tried at least once")).context("unmounting")
    }

    /// The image file, for tests that look at it from outside.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// The temporary directory holding image and mount point.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        if self.unmount().is_err() {
            // Never leave it mounted under a directory about to be removed: removing the
            // directory would delete the files inside the file system. A lazy unmount detaches
            // it now and frees it when its last user (a loop device) goes.
            let _ = Command::new("umount")
                .arg("--lazy")
                .arg(&self.mount_point)
                .status();
            detach_loop_devices_under(&self.mount_point);
        }
    }
}

/// Detaches every loop device whose backing file is under `dir`.
pub fn detach_loop_devices_under(dir: &Path) {
    for device in crate::loop_devices_under(dir) {
        let _ = Command::new("losetup").args(["-d", &device]).status();
    }
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
