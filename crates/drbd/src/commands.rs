//! The drbdadm and drbdsetup command lines the satellite runs, in one place so they are logged,
//! golden-tested and dry-run alike. Every drbdadm command names the resource's own file
//! (`-c <dir>/<resource>.res`), so nothing in `/etc/drbd.d` has to include Ferrite's directory.
//!
//! Owns the argument lists; not when they run (the satellite's driver decides).

use std::path::Path;

use ferrite_storage::CommandLine;

/// Peer slots in new metadata: room for this many peers, as LINSTOR's default.
pub const DEFAULT_PEER_SLOTS: u8 = 7;

/// The program names.
pub const DRBDADM: &str = "drbdadm";
pub const DRBDSETUP: &str = "drbdsetup";
pub const DRBDMETA: &str = "drbdmeta";

fn drbdadm(file: &Path) -> CommandLine {
    CommandLine::new(DRBDADM)
        .arg("-c")
        .arg(file.to_string_lossy())
}

fn target(resource: &str, volume: Option<u16>) -> String {
    match volume {
        Some(number) => format!("{resource}/{number}"),
        None => resource.to_string(),
    }
}

/// Writes fresh DRBD metadata on a new backing volume, with room for `peer_slots` peers.
pub fn create_md(file: &Path, resource: &str, volume: u16, peer_slots: u8) -> CommandLine {
    drbdadm(file)
        .arg("--max-peers")
        .arg(peer_slots.to_string())
        .args(["--", "--force", "create-md"])
        .arg(target(resource, Some(volume)))
}

/// Makes this member's data of every Inconsistent volume of a new resource UpToDate and the
/// first generation, so that its peers get a full initial sync from it: for volumes not known to
/// read zeros (thick), where the sync cannot be skipped. Followed by [`secondary`] at once.
pub fn primary_force(file: &Path, resource: &str) -> CommandLine {
    drbdadm(file).args(["primary", "--force", resource])
}

/// Gives up the Primary role taken by [`primary_force`].
pub fn secondary(file: &Path, resource: &str) -> CommandLine {
    drbdadm(file).args(["secondary", resource])
}

/// Sets the generation identifiers of new metadata on a backing volume with internal
/// metadata (`drbdmeta set-gi`), as seen by node `node_id`: `generation` as its current
/// generation, no bitmap or history generations, consistent and UpToDate. Run on every diskful
/// member restored or rolled back to the same cut right after `create-md --force`: they hold
/// the same data, so they start in sync without a resync. `drbdmeta` reads no resource file; it
/// names the minor and the backing device.
pub fn set_gi(minor: u32, backing: &Path, node_id: u8, generation: u64) -> CommandLine {
    // current:bitmap:history1:history2:consistent:was-up-to-date; DRBD keeps the Primary
    // flag in a UUID's lowest bit, which a new generation does not have.
    let gi = format!("{:016X}:0:0:0:1:1", generation & !1);
    CommandLine::new(DRBDMETA)
        .args(["--force", "--node-id"])
        .arg(node_id.to_string())
        .arg(minor.to_string())
        .arg("v09")
        .arg(backing.to_string_lossy())
        .args(["internal", "set-gi"])
        .arg(gi)
}

/// Brings the kernel's resource to what the file says: creates it, attaches disks, connects
/// peers, changes options; detaches and disconnects what the file no longer names.
pub fn adjust(file: &Path, resource: &str) -> CommandLine {
    drbdadm(file).arg("adjust").arg(resource)
}

/// Starts a new data generation without a resync: every member of a new, zeroed volume holds
/// the same data already.
pub fn new_current_uuid_clear_bitmap(file: &Path, resource: &str, volume: u16) -> CommandLine {
    drbdadm(file)
        .args(["--", "--clear-bitmap", "new-current-uuid"])
        .arg(target(resource, Some(volume)))
}

/// Grows the DRBD device after its backing volume grew.
pub fn resize(file: &Path, resource: &str, volume: u16) -> CommandLine {
    drbdadm(file)
        .arg("resize")
        .arg(target(resource, Some(volume)))
}

/// Takes the resource down (detach, disconnect, remove from the kernel).
pub fn down(file: &Path, resource: &str) -> CommandLine {
    drbdadm(file).arg("down").arg(resource)
}

/// Removes the DRBD metadata of a volume whose backing volume is about to be deleted.
pub fn wipe_md(file: &Path, resource: &str, volume: u16) -> CommandLine {
    drbdadm(file)
        .args(["--", "--force", "wipe-md"])
        .arg(target(resource, Some(volume)))
}

/// Detaches a volume's disk (toggle-disk to diskless) before the file says `disk none`.
pub fn detach(file: &Path, resource: &str, volume: u16) -> CommandLine {
    drbdadm(file)
        .arg("detach")
        .arg(target(resource, Some(volume)))
}

/// Holds every new I/O request of the resource on this node (in-flight ones complete), so a
/// snapshot of its backing volumes is a cut no write crosses.
pub fn suspend_io(file: &Path, resource: &str) -> CommandLine {
    drbdadm(file).arg("suspend-io").arg(resource)
}

/// Lets the held I/O requests go on.
pub fn resume_io(file: &Path, resource: &str) -> CommandLine {
    drbdadm(file).arg("resume-io").arg(resource)
}

/// Checks and prints the file as drbdadm understands it.
pub fn dump(file: &Path, resource: &str) -> CommandLine {
    CommandLine::query(DRBDADM)
        .arg("-c")
        .arg(file.to_string_lossy())
        .arg("dump")
        .arg(resource)
}

/// The state of every resource and then its changes, for as long as it runs.
pub fn events2() -> CommandLine {
    CommandLine::query(DRBDSETUP).args(["events2", "--timestamps", "--statistics", "all"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_name_the_resource_file() {
        let file = Path::new("/var/lib/ferrite.d/web.res");
        let lines: Vec<String> = [
            create_md(file, "web", 0, DEFAULT_PEER_SLOTS),
            adjust(file, "web"),
            new_current_uuid_clear_bitmap(file, "web", 0),
            resize(file, "web", 1),
            detach(file, "web", 0),
            down(file, "web"),
            wipe_md(file, "web", 0),
            suspend_io(file, "web"),
            resume_io(file, "web"),
            set_gi(1000, Path::new("/dev/loop3"), 1, 0x1234_5678_9ABC_DEF1),
            events2(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            lines,
            [
                "drbdadm -c /var/lib/ferrite.d/web.res --max-peers 7 -- --force create-md web/0",
                "drbdadm -c /var/lib/ferrite.d/web.res adjust web",
                "drbdadm -c /var/lib/ferrite.d/web.res -- --clear-bitmap new-current-uuid web/0",
                "drbdadm -c /var/lib/ferrite.d/web.res resize web/1",
                "drbdadm -c /var/lib/ferrite.d/web.res detach web/0",
                "drbdadm -c /var/lib/ferrite.d/web.res down web",
                "drbdadm -c /var/lib/ferrite.d/web.res -- --force wipe-md web/0",
                "drbdadm -c /var/lib/ferrite.d/web.res suspend-io web",
                "drbdadm -c /var/lib/ferrite.d/web.res resume-io web",
                "drbdmeta --force --node-id 1 1000 v09 /dev/loop3 internal set-gi 123456789ABCDEF0:0:0:0:1:1",
                "drbdsetup events2 --timestamps --statistics all",
            ]
        );
    }
}
