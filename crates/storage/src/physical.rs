//! Physical storage: the node's unused disks (`lsblk`) and turning some of them into a device
//! pool (`pvcreate`/`vgcreate`, a thin pool, or `zpool create`), LINSTOR's `physical-storage`.
//!
//! A disk is a candidate when, as LINSTOR has it, it has no parent (it is not a partition or
//! a mapped device), no children (no partitions, no holders such as LVM or device-mapper),
//! no file system or signature (`FSTYPE`), no mount point, is not a DRBD device, and is at
//! least 1 GiB. Loop devices count (they are the test disks here), except those backing a
//! volume this node made (the caller names them). Nothing here decides which disks to use:
//! the operator names them, and each is checked again before anything is written.

use std::collections::BTreeSet;

use ferrite_types::ProviderKind;
use serde::Deserialize;

use crate::runner::{CommandLine, HostCommands};
use crate::{StorageError, first_line};

/// Disks smaller than this are not offered (LINSTOR's limit).
pub const MINIMAL_DEVICE_BYTES: u64 = 1024 * 1024 * 1024;

/// DRBD's block device major number: its devices are never candidates.
const DRBD_MAJOR: &str = "147";

/// The `lsblk` columns read.
const LSBLK_COLUMNS: &str = "NAME,SIZE,ROTA,TYPE,FSTYPE,MOUNTPOINT,MAJ:MIN,MODEL,SERIAL,WWN";

/// An unused disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalDisk {
    pub device: String,
    pub size_bytes: u64,
    pub rotational: bool,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LsblkOutput {
    blockdevices: Vec<LsblkDevice>,
}

/// One device of `lsblk -J -b`; numbers and booleans come as numbers, strings or null
/// depending on the util-linux version.
#[derive(Debug, Deserialize)]
struct LsblkDevice {
    name: String,
    size: Option<serde_json::Value>,
    rota: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
    fstype: Option<String>,
    mountpoint: Option<String>,
    #[serde(rename = "maj:min")]
    major_minor: Option<String>,
    model: Option<String>,
    serial: Option<String>,
    wwn: Option<String>,
    #[serde(default)]
    children: Vec<LsblkDevice>,
}

fn number(value: &Option<serde_json::Value>) -> Option<u64> {
    match value {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

fn flag(value: &Option<serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
        Some(serde_json::Value::String(s)) => s.trim() == "1",
        _ => false,
    }
}

fn text(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The command that lists block devices.
pub fn lsblk_command() -> CommandLine {
    CommandLine::query("lsblk").args(["-J", "-b", "--paths", "-o", LSBLK_COLUMNS])
}

/// The candidates among `lsblk`'s answer, leaving out `exclude` (devices the node uses).
pub fn parse_candidates(
    stdout: &str,
    exclude: &BTreeSet<String>,
) -> Result<Vec<PhysicalDisk>, String> {
    let output: LsblkOutput =
        serde_json::from_str(stdout).map_err(|e| format!("not lsblk's JSON: {e}"))?;
    let mut disks = Vec::new();
    for device in output.blockdevices {
        let size = number(&device.size).unwrap_or(0);
        let kind = device.kind.as_deref().unwrap_or("");
        let unused = device.children.is_empty()
            && text(&device.fstype).is_none()
            && text(&device.mountpoint).is_none()
            && matches!(kind, "disk" | "loop")
            && size >= MINIMAL_DEVICE_BYTES
            && device
                .major_minor
                .as_deref()
                .and_then(|m| m.split(':').next())
                != Some(DRBD_MAJOR)
            && !exclude.contains(&device.name);
        if unused {
            disks.push(PhysicalDisk {
                device: device.name.clone(),
                size_bytes: size,
                rotational: flag(&device.rota),
                model: text(&device.model),
                serial: text(&device.serial),
                wwn: text(&device.wwn),
            });
        }
    }
    disks.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(disks)
}

/// The command that probes a device for a signature (a file system, an LVM physical volume,
/// a zpool member): `lsblk` reads udev's database, which lags or is absent in containers, so
/// each candidate is probed directly, as LINSTOR does with `blkid`.
pub fn blkid_command(device: &str) -> CommandLine {
    CommandLine::query("blkid").args(["-p", "-s", "TYPE", "-o", "value", device])
}

/// The node's unused disks.
pub fn list_candidates(
    runner: &dyn HostCommands,
    exclude: &BTreeSet<String>,
) -> Result<Vec<PhysicalDisk>, StorageError> {
    let command = lsblk_command();
    let output = runner.run(&command)?;
    let candidates = parse_candidates(&output.stdout, exclude).map_err(|reason| {
        StorageError::UnexpectedOutput {
            command: command.to_string(),
            reason,
        }
    })?;
    let mut unused = Vec::new();
    for disk in candidates {
        // blkid exits 2 when it finds no signature.
        match runner.run(&blkid_command(&disk.device)) {
            Ok(found) if !found.stdout.trim().is_empty() => {}
            Ok(_) => unused.push(disk),
            Err(crate::runner::CommandError::Failed { .. }) => unused.push(disk),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(unused)
}

/// A device pool to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePool {
    pub provider_kind: ProviderKind,
    pub devices: Vec<String>,
    /// The pool's name as the operator gave it.
    pub pool_name: String,
}

impl DevicePool {
    /// What a storage pool on it names as `StorDriver/StorPoolName`, LINSTOR's naming: the
    /// volume group `<pool>` (LVM), the thin pool `linstor_<pool>/<pool>` (LVM_THIN), the
    /// zpool `<pool>` (ZFS, ZFS_THIN).
    pub fn backing_name(&self) -> String {
        match self.provider_kind {
            ProviderKind::LvmThin => format!("linstor_{0}/{0}", self.pool_name),
            _ => self.pool_name.clone(),
        }
    }

    /// The command lines that make it, in order.
    pub fn commands(&self, lvm_metadata_only: bool) -> Result<Vec<CommandLine>, String> {
        let driver: &[&str] = if lvm_metadata_only {
            &["--driverloaded", "n"]
        } else {
            &[]
        };
        match self.provider_kind {
            ProviderKind::Lvm | ProviderKind::LvmThin => {
                let volume_group = match self.provider_kind {
                    ProviderKind::LvmThin => format!("linstor_{}", self.pool_name),
                    _ => self.pool_name.clone(),
                };
                let mut commands = vec![
                    CommandLine::new("pvcreate")
                        .args(driver.iter().copied())
                        .args(self.devices.iter().map(String::as_str)),
                    CommandLine::new("vgcreate")
                        .args(driver.iter().copied())
                        .arg(volume_group.as_str())
                        .args(self.devices.iter().map(String::as_str)),
                ];
                if self.provider_kind == ProviderKind::LvmThin {
                    let mut thin = CommandLine::new("lvcreate");
                    if lvm_metadata_only {
                        thin = thin.args(["--driverloaded", "n", "-an", "-Zn"]);
                    }
                    commands.push(
                        thin.args(["-l", "100%FREE", "-T"])
                            .arg(format!("{volume_group}/{}", self.pool_name)),
                    );
                }
                Ok(commands)
            }
            ProviderKind::Zfs | ProviderKind::ZfsThin => Ok(vec![
                CommandLine::new("zpool")
                    .args(["create", "-f", "-m", "none"])
                    .arg(self.pool_name.as_str())
                    .args(self.devices.iter().map(String::as_str)),
            ]),
            other => Err(format!(
                "a device pool is LVM, LVM_THIN, ZFS or ZFS_THIN, not {other}"
            )),
        }
    }
}

/// Makes `pool` on the named disks, after checking that each is an unused disk of this node.
/// Returns what a storage pool on it names as `StorDriver/StorPoolName`.
pub fn create_device_pool(
    runner: &dyn HostCommands,
    pool: &DevicePool,
    exclude: &BTreeSet<String>,
    lvm_metadata_only: bool,
) -> Result<String, String> {
    let commands = pool.commands(lvm_metadata_only)?;
    if pool.devices.is_empty() {
        return Err("no device named".to_string());
    }
    let candidates = list_candidates(runner, exclude).map_err(|e| e.to_string())?;
    let unusable: Vec<&String> = pool
        .devices
        .iter()
        .filter(|d| !candidates.iter().any(|c| &c.device == *d))
        .collect();
    if !unusable.is_empty() {
        return Err(format!(
            "{} {} not an unused disk of this node (it has partitions, holders, a file system \
             or a mount point, is smaller than 1 GiB, or does not exist); 'ferrite \
             physical-storage list' shows the unused disks",
            unusable
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if unusable.len() == 1 { "is" } else { "are" }
        ));
    }
    for command in &commands {
        runner.run(command).map_err(|e| {
            let stderr = if e.stderr().is_empty() {
                e.to_string()
            } else {
                first_line(e.stderr())
            };
            if e.is_not_found() {
                format!(
                    "`{command}` failed: {} is not installed on this node",
                    command.program
                )
            } else {
                format!("`{command}` failed: {stderr}")
            }
        })?;
    }
    Ok(pool.backing_name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{CommandError, CommandOutput};
    use std::sync::Mutex;

    const LSBLK: &str = r#"{"blockdevices": [
      {"name":"/dev/loop0","size":2147483648,"rota":false,"type":"loop","fstype":null,"mountpoint":null,"maj:min":"7:0","model":null,"serial":null,"wwn":null},
      {"name":"/dev/loop1","size":"2147483648","rota":"1","type":"loop","fstype":"LVM2_member","mountpoint":null,"maj:min":"7:1","model":null,"serial":null,"wwn":null},
      {"name":"/dev/loop2","size":1048576,"rota":false,"type":"loop","fstype":null,"mountpoint":null,"maj:min":"7:2"},
      {"name":"/dev/sda","size":10737418240,"rota":true,"type":"disk","fstype":null,"mountpoint":null,"maj:min":"8:0","model":"QEMU HARDDISK","serial":"QM1","wwn":null,
        "children":[{"name":"/dev/sda1","size":10737418240,"rota":true,"type":"part","fstype":"ext4","mountpoint":"/"}]},
      {"name":"/dev/sdb","size":10737418240,"rota":true,"type":"disk","fstype":null,"mountpoint":null,"maj:min":"8:16","model":"QEMU HARDDISK ","serial":"QM2","wwn":"0x5000"},
      {"name":"/dev/drbd1000","size":10737418240,"rota":false,"type":"disk","maj:min":"147:1000"},
      {"name":"/dev/loop3","size":2147483648,"rota":false,"type":"loop","maj:min":"7:3"}
    ]}"#;

    #[test]
    fn candidates_have_no_partitions_holders_file_systems_or_mounts() {
        let exclude: BTreeSet<String> = ["/dev/loop3".to_string()].into();
        let disks = parse_candidates(LSBLK, &exclude).unwrap();
        let names: Vec<&str> = disks.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(names, ["/dev/loop0", "/dev/sdb"]);
        assert_eq!(disks[1].model.as_deref(), Some("QEMU HARDDISK"));
        assert_eq!(disks[1].wwn.as_deref(), Some("0x5000"));
        assert!(disks[1].rotational && !disks[0].rotational);
        assert_eq!(disks[0].size_bytes, 2147483648);
        assert!(parse_candidates("garbage", &exclude).is_err());
    }

    fn pool(kind: ProviderKind) -> DevicePool {
        DevicePool {
            provider_kind: kind,
            devices: vec!["/dev/loop0".into(), "/dev/sdb".into()],
            pool_name: "fast".into(),
        }
    }

    fn lines(pool: &DevicePool, metadata_only: bool) -> Vec<String> {
        pool.commands(metadata_only)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn device_pool_command_lines_are_linstors() {
        assert_eq!(
            lines(&pool(ProviderKind::Lvm), false),
            [
                "pvcreate /dev/loop0 /dev/sdb",
                "vgcreate fast /dev/loop0 /dev/sdb"
            ]
        );
        assert_eq!(
            lines(&pool(ProviderKind::LvmThin), true),
            [
                "pvcreate --driverloaded n /dev/loop0 /dev/sdb",
                "vgcreate --driverloaded n linstor_fast /dev/loop0 /dev/sdb",
                "lvcreate --driverloaded n -an -Zn -l 100%FREE -T linstor_fast/fast"
            ]
        );
        assert_eq!(
            pool(ProviderKind::LvmThin).backing_name(),
            "linstor_fast/fast"
        );
        for kind in [ProviderKind::Zfs, ProviderKind::ZfsThin] {
            assert_eq!(
                lines(&pool(kind), false),
                ["zpool create -f -m none fast /dev/loop0 /dev/sdb"]
            );
            assert_eq!(pool(kind).backing_name(), "fast");
        }
        assert!(pool(ProviderKind::FileThin).commands(false).is_err());
    }

    /// Answers lsblk with [`LSBLK`], records the rest, and has no `zpool`.
    struct Host(Mutex<Vec<String>>, Option<&'static str>);

    impl HostCommands for Host {
        fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
            self.0.lock().unwrap().push(command.to_string());
            match command.program.as_str() {
                "lsblk" => Ok(CommandOutput::stdout(LSBLK)),
                "blkid" if command.args.last().map(String::as_str) == self.1 => {
                    Ok(CommandOutput::stdout("LVM2_member\n"))
                }
                "blkid" if command.args.last().is_some_and(|d| d == "/dev/sdb") => {
                    Ok(CommandOutput::stdout(""))
                }
                "blkid" => Err(CommandError::Failed {
                    command: command.to_string(),
                    exit: crate::runner::ExitReason::Code(2),
                    stdout: String::new(),
                    stderr: String::new(),
                }),
                "zpool" => Err(CommandError::NotFound {
                    program: "zpool".into(),
                    command: command.to_string(),
                }),
                _ => Ok(CommandOutput::stdout("")),
            }
        }
    }

    #[test]
    fn a_device_pool_is_made_only_of_unused_disks() {
        let host = Host(Mutex::new(Vec::new()), None);
        let none = BTreeSet::new();
        let mut used = pool(ProviderKind::Lvm);
        used.devices = vec!["/dev/loop0".into(), "/dev/sda".into()];
        let err = create_device_pool(&host, &used, &none, false).unwrap_err();
        assert!(err.contains("/dev/sda is not an unused disk"), "{err}");
        assert!(
            host.0
                .lock()
                .unwrap()
                .iter()
                .all(|c| c.starts_with("lsblk") || c.starts_with("blkid")),
            "nothing is written before every disk is checked"
        );
        // A disk with a signature udev has not told lsblk about is not unused.
        let signed = Host(Mutex::new(Vec::new()), Some("/dev/sdb"));
        let err = create_device_pool(&signed, &pool(ProviderKind::Lvm), &none, false).unwrap_err();
        assert!(err.contains("/dev/sdb is not an unused disk"), "{err}");

        let err = create_device_pool(&host, &pool(ProviderKind::Zfs), &none, false).unwrap_err();
        assert!(err.contains("zpool is not installed"), "{err}");

        assert_eq!(
            create_device_pool(&host, &pool(ProviderKind::Lvm), &none, false).unwrap(),
            "fast"
        );
        let commands = host.0.lock().unwrap().clone();
        assert!(commands.contains(&"vgcreate fast /dev/loop0 /dev/sdb".to_string()));
    }
}
