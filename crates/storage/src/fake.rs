//! A recording, simulating host for tests: every command line is recorded, and the commands the
//! providers issue are simulated well enough that a sequence of them behaves like the real host.
//!
//! - files: `truncate`, `fallocate` and `rm` act on real files (tests point pools at temporary
//!   directories), so the FILE providers' `stat` sees them; a directory given a simulated file
//!   system ([`FakeHost::simulate_file_system`]) reports that size as its capacity, less the
//!   size of the files the simulated commands made in it, as a disk of its own would (kept as a
//!   running total, so asking costs the same however many files it holds); any other directory
//!   reports its real file system's;
//! - loop devices: `losetup --find/--associated/--set-capacity/--detach` against an in-memory
//!   table of `/dev/loopN` (the lowest free number first, found without a scan);
//! - LVM: volume groups and thin pools added with [`FakeHost::add_volume_group`] and
//!   [`FakeHost::add_thin_pool`], with `vgs`, `lvs`, `lvcreate`, `lvextend`, `lvremove`
//!   (sizes rounded up to 4 MiB extents, as LVM does);
//! - ZFS: pools added with [`FakeHost::add_zpool`], with `zfs get/list/create/set/destroy` and
//!   snapshots (`zfs snapshot/clone/rollback`, `zfs list -t snapshot`);
//! - LVM thin snapshots (`lvcreate --snapshot`), which copy their origin's size and pool;
//! - `cp`: a reflink copy fails as on a file system without reflinks (tmpfs, ext4) and the
//!   sparse copy copies the real file; `blockdev --flushbufs` succeeds.
//!
//! Failures are injected with [`FakeHost::fail_matching`]; missing tools with
//! [`FakeHost::remove_program`]. Every command line is recorded, except on a host made with
//! [`FakeHost::unrecorded`], for long runs (the benchmark's simulated nodes) that would
//! otherwise keep every line they ever ran.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::runner::{CommandError, CommandLine, CommandOutput, ExitReason, HostCommands};

/// LVM's default extent size.
const EXTENT_KIB: u64 = 4096;

#[derive(Debug, Default)]
struct LogicalVolume {
    size_kib: u64,
    /// Thin volumes: the thin pool they live in.
    thin_pool: Option<String>,
    /// Thin pools: percent of data used.
    is_thin_pool: bool,
}

#[derive(Debug, Default)]
struct VolumeGroup {
    size_kib: u64,
    /// A new one each time a volume group of the name is added, as a new disk would have.
    uuid: String,
    volumes: BTreeMap<String, LogicalVolume>,
}

impl VolumeGroup {
    fn used_kib(&self) -> u64 {
        self.volumes
            .values()
            .filter(|lv| lv.thin_pool.is_none())
            .map(|lv| lv.size_kib)
            .sum()
    }
}

#[derive(Debug, Default)]
struct Zvol {
    size_kib: u64,
    sparse: bool,
}

#[derive(Debug, Default)]
struct Zpool {
    size_kib: u64,
    guid: u64,
    volumes: BTreeMap<String, Zvol>,
    /// `<volume>@<snapshot>`, with the size of the volume when it was taken.
    snapshots: BTreeMap<String, u64>,
}

/// A directory with a simulated file system of its own.
#[derive(Debug)]
struct FileSystem {
    size_kib: u64,
    /// The sizes of the files the simulated commands made in it, in bytes.
    used_bytes: u64,
}

#[derive(Debug)]
struct Failure {
    prefix: String,
    exit_code: i32,
    stderr: String,
}

#[derive(Debug, Default)]
struct State {
    /// Command lines run, and whether each was read-only.
    log: Vec<(String, bool)>,
    missing_programs: BTreeSet<String>,
    failures: Vec<Failure>,
    /// Commands (by line prefix) that take this long, as a slow disk would.
    delays: Vec<(String, std::time::Duration)>,
    /// Loop device number → backing file.
    loops: BTreeMap<u32, PathBuf>,
    /// Numbers below `next_loop` that are free again, so `losetup --find` takes the lowest
    /// free number as the real one does without scanning the table.
    released_loops: BTreeSet<u32>,
    /// Every number from here up is free.
    next_loop: u32,
    /// Directories with a simulated file system, by path.
    file_systems: BTreeMap<PathBuf, FileSystem>,
    /// Keep no record of command lines ([`FakeHost::unrecorded`]).
    unrecorded: bool,
    volume_groups: BTreeMap<String, VolumeGroup>,
    zpools: BTreeMap<String, Zpool>,
    /// Counts added volume groups and zpools, for their UUIDs and GUIDs.
    added: u64,
}

/// A host that records command lines and simulates their effects.
#[derive(Debug, Default)]
pub struct FakeHost {
    state: Mutex<State>,
}

fn fail(line: &str, exit_code: i32, stderr: impl Into<String>) -> CommandError {
    CommandError::Failed {
        command: line.to_string(),
        exit: ExitReason::Code(exit_code),
        stdout: String::new(),
        stderr: stderr.into(),
    }
}

fn ok(stdout: impl Into<String>) -> Result<CommandOutput, CommandError> {
    Ok(CommandOutput::stdout(stdout))
}

/// Parses `1024k` / `1024K` into KiB.
fn kib(value: &str) -> Option<u64> {
    value.strip_suffix(['k', 'K']).and_then(|n| n.parse().ok())
}

/// The value after `flag` in `args`.
fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn round_to_extent(size_kib: u64) -> u64 {
    size_kib.div_ceil(EXTENT_KIB) * EXTENT_KIB
}

impl FakeHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// A host that keeps no record of the command lines it runs: for long runs (the benchmark's
    /// simulated nodes, hundreds of thousands of commands each), where [`FakeHost::commands`]
    /// would hold every one. Everything else is as with [`FakeHost::new`].
    pub fn unrecorded() -> Self {
        let host = Self::default();
        host.state().unrecorded = true;
        host
    }

    /// Gives `dir` a simulated file system of `size_kib`: its capacity is that size less the
    /// sizes of the files the simulated commands (`truncate`, `fallocate`, `cp`, `mv`, `rm`)
    /// made in it, whether sparse or not, as on a disk of its own holding FILE volumes. Files
    /// already there, and files made otherwise (a pool's marker), are not counted.
    pub fn simulate_file_system(&self, dir: &std::path::Path, size_kib: u64) {
        self.state().file_systems.insert(
            dir.to_path_buf(),
            FileSystem {
                size_kib,
                used_bytes: 0,
            },
        );
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every command line run so far.
    pub fn commands(&self) -> Vec<String> {
        self.state()
            .log
            .iter()
            .map(|(line, _)| line.clone())
            .collect()
    }

    /// The command lines run so far, clearing the record.
    pub fn take_commands(&self) -> Vec<String> {
        std::mem::take(&mut self.state().log)
            .into_iter()
            .map(|(line, _)| line)
            .collect()
    }

    /// The command lines run so far that may change something (not marked read-only),
    /// clearing the record.
    pub fn take_changes(&self) -> Vec<String> {
        std::mem::take(&mut self.state().log)
            .into_iter()
            .filter(|(_, read_only)| !read_only)
            .map(|(line, _)| line)
            .collect()
    }

    /// Makes `program` missing, as if it were not installed.
    pub fn remove_program(&self, program: &str) {
        self.state().missing_programs.insert(program.to_string());
    }

    /// Makes every command whose line starts with `prefix` fail with `stderr`, until
    /// [`FakeHost::clear_failures`].
    pub fn fail_matching(&self, prefix: &str, exit_code: i32, stderr: &str) {
        self.state().failures.push(Failure {
            prefix: prefix.to_string(),
            exit_code,
            stderr: stderr.to_string(),
        });
    }

    pub fn clear_failures(&self) {
        self.state().failures.clear();
    }

    /// Makes every command whose line starts with `prefix` take `delay` before it runs.
    pub fn delay_matching(&self, prefix: &str, delay: std::time::Duration) {
        self.state().delays.push((prefix.to_string(), delay));
    }

    /// Adds (or replaces, as a new disk would) a volume group.
    pub fn add_volume_group(&self, name: &str, size_kib: u64) {
        let mut state = self.state();
        state.added += 1;
        let uuid = format!("fakevg-{name}-{}", state.added);
        state.volume_groups.insert(
            name.to_string(),
            VolumeGroup {
                size_kib,
                uuid,
                volumes: BTreeMap::new(),
            },
        );
    }

    /// Adds a logical volume that someone else made (not through the runner).
    pub fn add_logical_volume(&self, volume_group: &str, name: &str, size_kib: u64) {
        if let Some(vg) = self.state().volume_groups.get_mut(volume_group) {
            vg.volumes.insert(
                name.to_string(),
                LogicalVolume {
                    size_kib,
                    ..Default::default()
                },
            );
        }
    }

    pub fn add_thin_pool(&self, volume_group: &str, name: &str, size_kib: u64) {
        if let Some(vg) = self.state().volume_groups.get_mut(volume_group) {
            vg.volumes.insert(
                name.to_string(),
                LogicalVolume {
                    size_kib,
                    thin_pool: None,
                    is_thin_pool: true,
                },
            );
        }
    }

    /// Adds (or replaces, as a new disk would) a zpool.
    pub fn add_zpool(&self, name: &str, size_kib: u64) {
        let mut state = self.state();
        state.added += 1;
        let guid = 1_000_000 + state.added;
        state.zpools.insert(
            name.to_string(),
            Zpool {
                size_kib,
                guid,
                volumes: BTreeMap::new(),
                snapshots: BTreeMap::new(),
            },
        );
    }

    /// The logical volumes of a volume group and their sizes in KiB.
    pub fn logical_volumes(&self, volume_group: &str) -> BTreeMap<String, u64> {
        self.state()
            .volume_groups
            .get(volume_group)
            .map(|vg| {
                vg.volumes
                    .iter()
                    .map(|(name, lv)| (name.clone(), lv.size_kib))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The zvols of a pool and their sizes in KiB.
    pub fn zvols(&self, pool: &str) -> BTreeMap<String, u64> {
        self.state()
            .zpools
            .get(pool)
            .map(|p| {
                p.volumes
                    .iter()
                    .map(|(name, zvol)| (name.clone(), zvol.size_kib))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The attached loop devices and their backing files.
    pub fn loop_devices(&self) -> BTreeMap<String, PathBuf> {
        self.state()
            .loops
            .iter()
            .map(|(n, path)| (format!("/dev/loop{n}"), path.clone()))
            .collect()
    }

    /// Forgets every loop device, as a reboot would.
    pub fn detach_all_loop_devices(&self) {
        let mut state = self.state();
        state.loops.clear();
        state.released_loops.clear();
        state.next_loop = 0;
    }

    /// Attaches `path` to the lowest free loop device; returns its number.
    fn attach_loop(state: &mut State, path: PathBuf) -> u32 {
        let number = match state.released_loops.pop_first() {
            Some(number) => number,
            None => {
                state.next_loop += 1;
                state.next_loop - 1
            }
        };
        state.loops.insert(number, path);
        number
    }

    fn detach_loop(state: &mut State, number: u32) {
        if state.loops.remove(&number).is_some() {
            state.released_loops.insert(number);
        }
    }

    /// Counts a change of `delta` bytes in the size of the file at `path`, if it is in a
    /// simulated file system.
    fn count_bytes(state: &mut State, path: &std::path::Path, delta: i128) {
        let Some(dir) = path
            .ancestors()
            .skip(1)
            .find(|dir| state.file_systems.contains_key(*dir))
        else {
            return;
        };
        let Some(file_system) = state.file_systems.get_mut(dir) else {
            return;
        };
        file_system.used_bytes = (file_system.used_bytes as i128 + delta).max(0) as u64;
    }

    /// The length of the file at `path`, 0 if there is none.
    fn file_len(path: impl AsRef<std::path::Path>) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    fn simulate(
        state: &mut State,
        line: &str,
        command: &CommandLine,
    ) -> Result<CommandOutput, CommandError> {
        let args = &command.args;
        if args
            .last()
            .is_some_and(|a| a == "--version" || a == "version")
            && args.len() == 1
        {
            if command.program == "drbdadm" {
                // As drbd-utils 9 prints it.
                return ok("DRBDADM_API_VERSION=2\nDRBDADM_VERSION=9.22.0\n");
            }
            return ok(format!("{} (simulated)\n", command.program));
        }
        match command.program.as_str() {
            "truncate" | "fallocate" => {
                let flag = if command.program == "truncate" {
                    "--size"
                } else {
                    "--length"
                };
                let (Some(bytes), Some(path)) = (
                    value_of(args, flag).and_then(|b| b.parse::<u64>().ok()),
                    args.last(),
                ) else {
                    return Err(fail(line, 1, "simulated: bad arguments"));
                };
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(path)
                    .map_err(|e| fail(line, 1, format!("{path}: {e}")))?;
                let current = file.metadata().map(|m| m.len()).unwrap_or(0);
                if command.program == "truncate" || bytes > current {
                    file.set_len(bytes)
                        .map_err(|e| fail(line, 1, format!("{path}: {e}")))?;
                    Self::count_bytes(
                        state,
                        std::path::Path::new(path),
                        bytes as i128 - current as i128,
                    );
                }
                ok("")
            }
            "rm" => {
                let path = args.last().cloned().unwrap_or_default();
                let len = Self::file_len(&path);
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        Self::count_bytes(state, std::path::Path::new(&path), -(len as i128));
                        ok("")
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => ok(""),
                    Err(e) => Err(fail(line, 1, format!("rm: {path}: {e}"))),
                }
            }
            "mv" => {
                let [.., from, to] = &args[..] else {
                    return Err(fail(line, 1, "simulated: bad arguments"));
                };
                if std::path::Path::new(to).exists() {
                    // --no-clobber: nothing happens, and (coreutils 9.1) no error.
                    return ok("");
                }
                let len = Self::file_len(from);
                std::fs::rename(from, to).map_err(|e| fail(line, 1, format!("mv: {from}: {e}")))?;
                Self::count_bytes(state, std::path::Path::new(from), -(len as i128));
                Self::count_bytes(state, std::path::Path::new(to), len as i128);
                ok("")
            }
            "losetup" => Self::losetup(state, line, args),
            "cp" if args.iter().any(|a| a == "--reflink=always") => Err(fail(
                line,
                1,
                "cp: failed to clone: Operation not supported\n",
            )),
            "cp" => {
                let [.., from, to] = &args[..] else {
                    return Err(fail(line, 1, "simulated: bad arguments"));
                };
                let before = Self::file_len(to);
                std::fs::copy(from, to).map_err(|e| fail(line, 1, format!("cp: {from}: {e}")))?;
                let after = Self::file_len(to);
                Self::count_bytes(
                    state,
                    std::path::Path::new(to),
                    after as i128 - before as i128,
                );
                ok("")
            }
            "blockdev" => ok(""),
            "lvcreate" if args.iter().any(|a| a == "--snapshot") => {
                let name = value_of(args, "--name").unwrap_or_default().to_string();
                let Some((vg_name, origin)) = args
                    .iter()
                    .find(|a| a.contains('/'))
                    .and_then(|a| a.split_once('/'))
                else {
                    return Err(fail(line, 3, "simulated: no origin"));
                };
                let Some(vg) = state.volume_groups.get_mut(vg_name) else {
                    return Err(fail(
                        line,
                        5,
                        format!("  Volume group \"{vg_name}\" not found\n"),
                    ));
                };
                let Some(source) = vg.volumes.get(origin) else {
                    return Err(fail(
                        line,
                        5,
                        format!(
                            "  Snapshot origin LV {origin} not found in Volume group {vg_name}.\n"
                        ),
                    ));
                };
                if source.thin_pool.is_none() {
                    return Err(fail(line, 5, "simulated: only thin snapshots"));
                }
                if vg.volumes.contains_key(&name) {
                    return Err(fail(
                        line,
                        5,
                        format!(
                            "  Logical Volume \"{name}\" already exists in volume group \"{vg_name}\"\n"
                        ),
                    ));
                }
                let copy = LogicalVolume {
                    size_kib: source.size_kib,
                    thin_pool: source.thin_pool.clone(),
                    is_thin_pool: false,
                };
                vg.volumes.insert(name.clone(), copy);
                ok(format!("  Logical volume \"{name}\" created.\n"))
            }
            "vgs" if value_of(args, "--options") == Some("vg_uuid") => {
                let name = args.last().cloned().unwrap_or_default();
                match state.volume_groups.get(&name) {
                    Some(vg) => ok(format!("  {}\n", vg.uuid)),
                    None => Err(fail(
                        line,
                        5,
                        format!("  Volume group \"{name}\" not found\n"),
                    )),
                }
            }
            "lvs" if value_of(args, "--options") == Some("lv_uuid") => {
                let target = args.last().cloned().unwrap_or_default();
                let (vg_name, lv_name) = target.split_once('/').unwrap_or((&target, ""));
                match state.volume_groups.get(vg_name) {
                    Some(vg) if vg.volumes.contains_key(lv_name) => {
                        ok(format!("  {}-{lv_name}\n", vg.uuid))
                    }
                    _ => Err(fail(
                        line,
                        5,
                        format!("  Failed to find logical volume \"{target}\"\n"),
                    )),
                }
            }
            "lvrename" => {
                let [.., vg_name, from, to] = &args[..] else {
                    return Err(fail(line, 3, "simulated: bad arguments"));
                };
                let Some(vg) = state.volume_groups.get_mut(vg_name) else {
                    return Err(fail(
                        line,
                        5,
                        format!("  Volume group \"{vg_name}\" not found\n"),
                    ));
                };
                if vg.volumes.contains_key(to) {
                    return Err(fail(
                        line,
                        5,
                        format!(
                            "  Logical Volume \"{to}\" already exists in volume group \"{vg_name}\"\n"
                        ),
                    ));
                }
                match vg.volumes.remove(from) {
                    Some(lv) => {
                        vg.volumes.insert(to.clone(), lv);
                        ok(format!(
                            "  Renamed \"{from}\" to \"{to}\" in volume group \"{vg_name}\"\n"
                        ))
                    }
                    None => Err(fail(
                        line,
                        5,
                        format!(
                            "  Existing logical volume \"{from}\" not found in volume group \"{vg_name}\"\n"
                        ),
                    )),
                }
            }
            "vgs" => {
                let name = args.last().cloned().unwrap_or_default();
                match state.volume_groups.get(&name) {
                    Some(vg) => ok(format!(
                        "  {name};{:.2};{:.2}\n",
                        vg.size_kib as f64,
                        (vg.size_kib - vg.used_kib()) as f64
                    )),
                    None => Err(fail(
                        line,
                        5,
                        format!(
                            "  Volume group \"{name}\" not found\n  Cannot process volume group {name}\n"
                        ),
                    )),
                }
            }
            "lvs" => {
                let target = args.last().cloned().unwrap_or_default();
                let (vg_name, only) = match target.split_once('/') {
                    Some((vg, lv)) => (vg.to_string(), Some(lv.to_string())),
                    None => (target.clone(), None),
                };
                let Some(vg) = state.volume_groups.get(&vg_name) else {
                    return Err(fail(
                        line,
                        5,
                        format!(
                            "  Volume group \"{vg_name}\" not found\n  Cannot process volume group {vg_name}\n"
                        ),
                    ));
                };
                if let Some(only) = &only
                    && !vg.volumes.contains_key(only)
                {
                    return Err(fail(
                        line,
                        5,
                        format!("  Failed to find logical volume \"{target}\"\n"),
                    ));
                }
                let mut out = String::new();
                for (name, lv) in &vg.volumes {
                    if only.as_ref().is_some_and(|o| o != name) {
                        continue;
                    }
                    let (percent, attributes) = if lv.is_thin_pool {
                        let used: u64 = vg
                            .volumes
                            .values()
                            .filter(|v| v.thin_pool.as_deref() == Some(name))
                            .map(|v| v.size_kib / 10)
                            .sum();
                        (
                            format!("{:.2}", used as f64 * 100.0 / lv.size_kib as f64),
                            "twi-a-tz--",
                        )
                    } else if lv.thin_pool.is_some() {
                        ("10.00".to_string(), "Vwi-a-tz--")
                    } else {
                        (String::new(), "-wi-a-----")
                    };
                    out.push_str(&format!(
                        "  {name};{:.2};{percent};{attributes};{}\n",
                        lv.size_kib as f64,
                        lv.thin_pool.as_deref().unwrap_or("")
                    ));
                }
                ok(out)
            }
            "lvcreate" => {
                let name = value_of(args, "-n").unwrap_or_default().to_string();
                let (vg_name, thin_pool, size) = if let Some(pool) = value_of(args, "-T") {
                    let (vg, tp) = pool.split_once('/').unwrap_or((pool, ""));
                    (vg.to_string(), Some(tp.to_string()), value_of(args, "-V"))
                } else {
                    (
                        args.last().cloned().unwrap_or_default(),
                        None,
                        value_of(args, "-L"),
                    )
                };
                let Some(size_kib) = size.and_then(kib) else {
                    return Err(fail(line, 3, "simulated: no size"));
                };
                let size_kib = round_to_extent(size_kib);
                let Some(vg) = state.volume_groups.get_mut(&vg_name) else {
                    return Err(fail(
                        line,
                        5,
                        format!("  Volume group \"{vg_name}\" not found\n"),
                    ));
                };
                if vg.volumes.contains_key(&name) {
                    return Err(fail(
                        line,
                        5,
                        format!(
                            "  Logical Volume \"{name}\" already exists in volume group \"{vg_name}\"\n"
                        ),
                    ));
                }
                if thin_pool.is_none() && vg.size_kib - vg.used_kib() < size_kib {
                    return Err(fail(
                        line,
                        5,
                        format!("  Volume group \"{vg_name}\" has insufficient free space\n"),
                    ));
                }
                vg.volumes.insert(
                    name.clone(),
                    LogicalVolume {
                        size_kib,
                        thin_pool,
                        is_thin_pool: false,
                    },
                );
                ok(format!("  Logical volume \"{name}\" created.\n"))
            }
            "lvextend" => {
                let target = args.last().cloned().unwrap_or_default();
                let size_kib = value_of(args, "-L").and_then(kib).map(round_to_extent);
                let (vg_name, lv_name) = target.split_once('/').unwrap_or((&target, ""));
                let lv = state
                    .volume_groups
                    .get_mut(vg_name)
                    .and_then(|vg| vg.volumes.get_mut(lv_name));
                match (lv, size_kib) {
                    (Some(lv), Some(size)) if size > lv.size_kib => {
                        lv.size_kib = size;
                        ok("")
                    }
                    (Some(_), Some(_)) => Err(fail(
                        line,
                        5,
                        "  New size given not larger than existing size\n",
                    )),
                    _ => Err(fail(
                        line,
                        5,
                        format!("  Failed to find logical volume \"{target}\"\n"),
                    )),
                }
            }
            "lvremove" => {
                let target = args.last().cloned().unwrap_or_default();
                let (vg_name, lv_name) = target.split_once('/').unwrap_or((&target, ""));
                let removed = state
                    .volume_groups
                    .get_mut(vg_name)
                    .and_then(|vg| vg.volumes.remove(lv_name));
                match removed {
                    Some(_) => ok(""),
                    None => Err(fail(
                        line,
                        5,
                        format!("  Failed to find logical volume \"{target}\"\n"),
                    )),
                }
            }
            "zfs" => Self::zfs(state, line, args),
            other => Err(CommandError::NotFound {
                program: other.to_string(),
                command: line.to_string(),
            }),
        }
    }

    fn losetup(
        state: &mut State,
        line: &str,
        args: &[String],
    ) -> Result<CommandOutput, CommandError> {
        let target = args.last().cloned().unwrap_or_default();
        let first = args.first().map(String::as_str).unwrap_or_default();
        match first {
            "--list" if !args.iter().any(|a| a == "--associated") => {
                let devices: Vec<String> = state
                    .loops
                    .iter()
                    .map(|(n, path)| {
                        format!(
                            "{{\"name\": \"/dev/loop{n}\", \"back-file\": {}}}",
                            serde_json::to_string(&path.to_string_lossy()).expect("a string")
                        )
                    })
                    .collect();
                ok(format!(
                    "{{\n   \"loopdevices\": [\n      {}\n   ]\n}}\n",
                    devices.join(",\n      ")
                ))
            }
            "--list" => {
                let wanted = std::fs::canonicalize(&target).ok();
                let devices: Vec<String> = state
                    .loops
                    .iter()
                    .filter(|(_, path)| wanted.as_ref() == Some(*path))
                    .map(|(n, _)| format!("{{\"name\": \"/dev/loop{n}\"}}"))
                    .collect();
                ok(format!(
                    "{{\n   \"loopdevices\": [\n      {}\n   ]\n}}\n",
                    devices.join(",\n      ")
                ))
            }
            "--find" => {
                let path = std::fs::canonicalize(&target).map_err(|e| {
                    fail(
                        line,
                        1,
                        format!("losetup: {target}: failed to set up loop device: {e}"),
                    )
                })?;
                let number = Self::attach_loop(state, path);
                ok(format!("/dev/loop{number}\n"))
            }
            "--set-capacity" | "--detach" => {
                let number = target
                    .strip_prefix("/dev/loop")
                    .and_then(|n| n.parse::<u32>().ok());
                match number {
                    Some(n) if state.loops.contains_key(&n) => {
                        if first == "--detach" {
                            Self::detach_loop(state, n);
                        }
                        ok("")
                    }
                    _ => Err(fail(
                        line,
                        1,
                        format!("losetup: {target}: No such device or address"),
                    )),
                }
            }
            _ => Err(fail(line, 1, "simulated: unsupported losetup call")),
        }
    }

    fn zfs(state: &mut State, line: &str, args: &[String]) -> Result<CommandOutput, CommandError> {
        let target = args.last().cloned().unwrap_or_default();
        let missing = |name: &str| {
            fail(
                line,
                1,
                format!("cannot open '{name}': dataset does not exist\n"),
            )
        };
        let split = |target: &str| -> (String, String) {
            let (pool, name) = target.rsplit_once('/').unwrap_or((target, ""));
            (pool.to_string(), name.to_string())
        };
        let snapshot_of = |target: &str| -> Option<(String, String, String)> {
            let (dataset, snapshot) = target.split_once('@')?;
            let (pool, volume) = dataset.rsplit_once('/')?;
            Some((pool.to_string(), volume.to_string(), snapshot.to_string()))
        };
        match args.first().map(String::as_str) {
            Some("list") if args.iter().any(|a| a == "snapshot") => {
                let (pool, volume, snapshot) =
                    snapshot_of(&target).ok_or_else(|| missing(&target))?;
                let key = format!("{volume}@{snapshot}");
                match state.zpools.get(&pool) {
                    Some(p) if p.snapshots.contains_key(&key) => ok(format!("{target}\n")),
                    _ => Err(missing(&target)),
                }
            }
            Some("snapshot") => {
                let (pool_name, volume, snapshot) =
                    snapshot_of(&target).ok_or_else(|| missing(&target))?;
                let pool = state
                    .zpools
                    .get_mut(&pool_name)
                    .ok_or_else(|| missing(&pool_name))?;
                let size = pool
                    .volumes
                    .get(&volume)
                    .map(|v| v.size_kib)
                    .ok_or_else(|| missing(&format!("{pool_name}/{volume}")))?;
                let key = format!("{volume}@{snapshot}");
                if pool.snapshots.contains_key(&key) {
                    return Err(fail(
                        line,
                        1,
                        format!("cannot create snapshot '{target}': dataset already exists\n"),
                    ));
                }
                pool.snapshots.insert(key, size);
                ok("")
            }
            Some("clone") => {
                let source = args.get(1).cloned().unwrap_or_default();
                let (pool_name, volume, snapshot) =
                    snapshot_of(&source).ok_or_else(|| missing(&source))?;
                let (_, name) = split(&target);
                let pool = state
                    .zpools
                    .get_mut(&pool_name)
                    .ok_or_else(|| missing(&pool_name))?;
                let size_kib = *pool
                    .snapshots
                    .get(&format!("{volume}@{snapshot}"))
                    .ok_or_else(|| missing(&source))?;
                if pool.volumes.contains_key(&name) {
                    return Err(fail(
                        line,
                        1,
                        format!("cannot create '{target}': dataset already exists\n"),
                    ));
                }
                pool.volumes.insert(
                    name,
                    Zvol {
                        size_kib,
                        sparse: true,
                    },
                );
                ok("")
            }
            Some("rollback") => {
                let (pool_name, volume, snapshot) =
                    snapshot_of(&target).ok_or_else(|| missing(&target))?;
                let pool = state
                    .zpools
                    .get(&pool_name)
                    .ok_or_else(|| missing(&pool_name))?;
                if !pool.snapshots.contains_key(&format!("{volume}@{snapshot}")) {
                    return Err(missing(&target));
                }
                let newer = pool
                    .snapshots
                    .keys()
                    .filter(|k| k.starts_with(&format!("{volume}@")))
                    .any(|k| k > &format!("{volume}@{snapshot}"));
                if newer {
                    return Err(fail(
                        line,
                        1,
                        format!(
                            "cannot rollback to '{target}': more recent snapshots or bookmarks exist\n"
                        ),
                    ));
                }
                ok("")
            }
            Some("destroy") if target.contains('@') => {
                let (pool_name, volume, snapshot) =
                    snapshot_of(&target).ok_or_else(|| missing(&target))?;
                state
                    .zpools
                    .get_mut(&pool_name)
                    .and_then(|p| p.snapshots.remove(&format!("{volume}@{snapshot}")))
                    .ok_or_else(|| missing(&target))?;
                ok("")
            }
            Some("get") if args.iter().any(|a| a == "guid") => {
                let pool = state.zpools.get(&target).ok_or_else(|| missing(&target))?;
                ok(format!("{}\n", pool.guid))
            }
            Some("rename") => {
                let from = args
                    .get(args.len().saturating_sub(2))
                    .cloned()
                    .unwrap_or_default();
                let (pool_name, from_name) = split(&from);
                let (_, to_name) = split(&target);
                let pool = state
                    .zpools
                    .get_mut(&pool_name)
                    .ok_or_else(|| missing(&pool_name))?;
                if pool.volumes.contains_key(&to_name) {
                    return Err(fail(
                        line,
                        1,
                        format!("cannot rename to '{target}': dataset already exists\n"),
                    ));
                }
                let zvol = pool
                    .volumes
                    .remove(&from_name)
                    .ok_or_else(|| missing(&from))?;
                pool.volumes.insert(to_name, zvol);
                ok("")
            }
            Some("get") => {
                let pool = state.zpools.get(&target).ok_or_else(|| missing(&target))?;
                let used: u64 = pool
                    .volumes
                    .values()
                    .map(|v| {
                        if v.sparse {
                            v.size_kib / 10
                        } else {
                            v.size_kib
                        }
                    })
                    .sum();
                ok(format!(
                    "available\t{}\nused\t{}\n",
                    (pool.size_kib - used.min(pool.size_kib)) * 1024,
                    used * 1024
                ))
            }
            Some("list") => {
                let pool = state.zpools.get(&target).ok_or_else(|| missing(&target))?;
                let mut out = String::new();
                for (name, zvol) in &pool.volumes {
                    let used = if zvol.sparse {
                        zvol.size_kib / 10
                    } else {
                        zvol.size_kib
                    };
                    out.push_str(&format!(
                        "{target}/{name}\t{}\t{}\n",
                        zvol.size_kib * 1024,
                        used * 1024
                    ));
                }
                ok(out)
            }
            Some("create") => {
                let (pool_name, name) = split(&target);
                let sparse = args.iter().any(|a| a == "-s");
                let size_kib = value_of(args, "-V").and_then(kib).unwrap_or(0);
                let pool = state
                    .zpools
                    .get_mut(&pool_name)
                    .ok_or_else(|| missing(&pool_name))?;
                if pool.volumes.contains_key(&name) {
                    return Err(fail(
                        line,
                        1,
                        format!("cannot create '{target}': dataset already exists\n"),
                    ));
                }
                pool.volumes.insert(name, Zvol { size_kib, sparse });
                ok("")
            }
            Some("set") => {
                let (pool_name, name) = split(&target);
                let size_kib = args
                    .get(1)
                    .and_then(|a| a.strip_prefix("volsize="))
                    .and_then(kib);
                let zvol = state
                    .zpools
                    .get_mut(&pool_name)
                    .and_then(|p| p.volumes.get_mut(&name))
                    .ok_or_else(|| missing(&target))?;
                zvol.size_kib = size_kib.ok_or_else(|| fail(line, 2, "bad volsize"))?;
                ok("")
            }
            Some("destroy") => {
                let (pool_name, name) = split(&target);
                let has_snapshots = state.zpools.get(&pool_name).is_some_and(|p| {
                    p.snapshots
                        .keys()
                        .any(|k| k.starts_with(&format!("{name}@")))
                });
                if has_snapshots {
                    return Err(fail(
                        line,
                        1,
                        format!(
                            "cannot destroy '{target}': filesystem has children\nuse '-r' to destroy the following datasets:\n"
                        ),
                    ));
                }
                state
                    .zpools
                    .get_mut(&pool_name)
                    .and_then(|p| p.volumes.remove(&name))
                    .ok_or_else(|| missing(&target))?;
                ok("")
            }
            _ => Err(fail(line, 2, "simulated: unsupported zfs call")),
        }
    }
}

impl HostCommands for FakeHost {
    fn file_system_capacity(&self, dir: &std::path::Path) -> std::io::Result<crate::PoolCapacity> {
        if let Some(file_system) = self.state().file_systems.get(dir) {
            return Ok(crate::PoolCapacity {
                total_kib: file_system.size_kib,
                free_kib: file_system
                    .size_kib
                    .saturating_sub(file_system.used_bytes.div_ceil(1024)),
            });
        }
        crate::file::statvfs(dir)
    }

    fn loop_backing_file(&self, device: &std::path::Path) -> Option<String> {
        let number = device
            .to_str()?
            .strip_prefix("/dev/loop")?
            .parse::<u32>()
            .ok()?;
        let file = self.state().loops.get(&number)?.clone();
        // The kernel keeps a deleted file and says so.
        Some(if file.exists() {
            file.to_string_lossy().into_owned()
        } else {
            format!("{} (deleted)", file.display())
        })
    }

    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
        let line = command.to_string();
        let delay = self
            .state()
            .delays
            .iter()
            .find(|(prefix, _)| line.starts_with(prefix))
            .map(|(_, delay)| *delay);
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        let mut state = self.state();
        if !state.unrecorded {
            state.log.push((line.clone(), command.read_only));
        }
        if state.missing_programs.contains(&command.program) {
            return Err(CommandError::NotFound {
                program: command.program.clone(),
                command: line,
            });
        }
        if let Some(failure) = state.failures.iter().find(|f| line.starts_with(&f.prefix)) {
            return Err(fail(&line, failure.exit_code, failure.stderr.clone()));
        }
        Self::simulate(&mut state, &line, command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackingVolumeName, FileProvider, Provider};
    use std::sync::Arc;

    #[test]
    fn a_simulated_file_system_counts_the_files_made_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(FakeHost::unrecorded());
        host.simulate_file_system(dir.path(), 1 << 30);
        let provider = FileProvider::new(host.clone(), true);
        let pool = dir.path().to_str().unwrap();
        let free = || provider.check_pool(pool).unwrap().unwrap().free_kib;
        assert_eq!(free(), 1 << 30);
        let name = |n: &str| {
            BackingVolumeName::new(&ferrite_types::ResourceName::new(n).unwrap(), 0.into())
        };
        let a = name("alpha");
        let b = name("beta");
        provider.create_volume(pool, &a, 4096).unwrap();
        provider.create_volume(pool, &b, 1024).unwrap();
        assert_eq!(free(), (1 << 30) - 5120);
        provider.grow_volume(pool, &b, 2048).unwrap();
        assert_eq!(free(), (1 << 30) - 6144);
        provider.delete_volume(pool, &a).unwrap();
        assert_eq!(free(), (1 << 30) - 2048);
        // Another directory reports its real file system.
        let other = tempfile::tempdir().unwrap();
        let real = host.file_system_capacity(other.path()).unwrap();
        let statvfs = crate::file::statvfs(other.path()).unwrap();
        assert_eq!(real.total_kib, statvfs.total_kib);
        assert!(
            host.commands().is_empty(),
            "an unrecorded host keeps no lines"
        );
    }

    #[test]
    fn loop_devices_take_the_lowest_free_number() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new();
        let attach = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, b"").unwrap();
            let output = host
                .run(
                    &CommandLine::new("losetup")
                        .args(["--find", "--show"])
                        .arg(path.to_string_lossy()),
                )
                .unwrap();
            output.stdout.trim().to_string()
        };
        assert_eq!(attach("a"), "/dev/loop0");
        assert_eq!(attach("b"), "/dev/loop1");
        assert_eq!(attach("c"), "/dev/loop2");
        host.run(&CommandLine::new("losetup").args(["--detach", "/dev/loop1"]))
            .unwrap();
        assert_eq!(attach("d"), "/dev/loop1");
        assert_eq!(attach("e"), "/dev/loop3");
        host.detach_all_loop_devices();
        assert_eq!(attach("f"), "/dev/loop0");
        assert_eq!(host.commands().len(), 7);
    }
}
