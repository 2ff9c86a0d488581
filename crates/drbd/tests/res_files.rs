//! Golden resource files for the article's scenarios, each accepted by the real drbd-utils:
//! `drbdadm dump`, `drbdadm -d up` and `drbdadm -d adjust` run in a UTS namespace whose hostname
//! is the node's name, so drbdadm reads the file as that node would (no kernel module needed:
//! `-d` prints the drbdsetup/drbdmeta commands instead of running them).
//!
//! `FERRITE_BLESS=1` rewrites the golden files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrite_drbd::version::{TIEBREAKER_MIN_KERNEL, TIEBREAKER_MIN_UTILS};
use ferrite_drbd::{DrbdOptions, DrbdVersions, Member, ResourceFile, Version, Volume};

const RESOURCE: &str = "my_ssd_res";
const SECRET: &str = "Zq3vXk7pLm2Rt9Wn";

fn member(node: u8, diskless: bool) -> Member {
    Member {
        node_name: format!("node{node}"),
        node_id: node - 1,
        address: format!("127.0.0.1{node}:7000").parse().unwrap(),
        diskless,
    }
}

fn options(pairs: &[(&str, &str)]) -> DrbdOptions {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    DrbdOptions::parse(&map).unwrap()
}

/// The node's DRBD in the golden files: the drbd-utils the option table was generated from, no
/// kernel module (what the tests' machine has), so `tiebreaker` is written as a comment.
const VERSIONS: DrbdVersions = DrbdVersions {
    utils: Some(Version::new(9, 22, 0)),
    kernel: None,
};

/// What auto-quorum sets for 3 or more members with 2 disks (the controller adds it).
const QUORUM: &[(&str, &str)] = &[
    ("Resource/quorum", "majority"),
    ("Resource/on-no-quorum", "io-error"),
];

/// The file of node `local` among `members` (node number, diskless), volumes by minor.
fn file(members: &[(u8, bool)], local: u8, minors: &[u32], options: DrbdOptions) -> ResourceFile {
    let (_, local_diskless) = *members.iter().find(|(n, _)| *n == local).unwrap();
    ResourceFile {
        resource: RESOURCE.to_string(),
        local: member(local, local_diskless),
        peers: members
            .iter()
            .filter(|(n, _)| *n != local)
            .map(|(n, d)| member(*n, *d))
            .collect(),
        secret: SECRET.to_string(),
        volumes: minors
            .iter()
            .enumerate()
            .map(|(number, minor)| Volume {
                number: number as u16,
                minor: *minor,
                backing: (!local_diskless)
                    .then(|| PathBuf::from(format!("/dev/loop{}{number}", local))),
                options: DrbdOptions::default(),
            })
            .collect(),
        options,
        versions: VERSIONS,
        connection_options: BTreeMap::new(),
    }
}

fn golden_dir(scenario: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(scenario)
}

/// Why drbd-utils cannot be run here, if it cannot.
fn drbd_utils_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: unshare --uts needs CAP_SYS_ADMIN".to_string());
    }
    for program in ["drbdadm", "unshare"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Some(format!(
                "{program} is not installed (scripts/setup.sh installs drbd-utils)"
            ));
        }
    }
    None
}

/// Runs drbdadm on `file` as node `node` would; panics with drbdadm's words when it refuses.
fn drbdadm_accepts(node: &str, file: &Path, args: &str) -> String {
    let script = format!(
        "hostname {node} && drbdadm -c {} {args} {RESOURCE}",
        file.display()
    );
    let output = Command::new("unshare")
        .args(["--uts", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "drbdadm {args} refused {} on {node}:\n{stderr}\n{stdout}",
        file.display()
    );
    stdout
}

/// Renders the file of every node of a scenario, compares it with the golden file, and has
/// drbd-utils accept it. Returns the `-d up` commands per node.
fn scenario(name: &str, files: Vec<ResourceFile>) -> BTreeMap<String, String> {
    let dir = golden_dir(name);
    let bless = std::env::var_os("FERRITE_BLESS").is_some();
    let skip = drbd_utils_unavailable();
    if let Some(why) = &skip {
        eprintln!("drbdadm checks skipped: {why}");
    }
    let mut up = BTreeMap::new();
    for file in files {
        let node = file.local.node_name.clone();
        let text = file.render().unwrap();
        let path = dir.join(format!("{node}.res"));
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (FERRITE_BLESS=1 writes it)", path.display()));
        assert_eq!(text, golden, "{} differs", path.display());
        if skip.is_none() {
            let dump = drbdadm_accepts(&node, &path, "dump");
            assert!(dump.contains(&format!("resource {RESOURCE}")), "{dump}");
            up.insert(node.clone(), drbdadm_accepts(&node, &path, "-d up"));
            drbdadm_accepts(&node, &path, "-d adjust");
            drbdadm_accepts(&node, &path, "-d down");
        }
    }
    up
}

#[test]
fn two_diskful_and_a_tiebreaker() {
    let members = [(1, false), (2, false), (3, true)];
    let up = scenario(
        "two-diskful-tiebreaker",
        (1..=3)
            .map(|n| file(&members, n, &[1000], options(QUORUM)))
            .collect(),
    );
    if let Some(node1) = up.get("node1") {
        assert!(node1.contains("drbdsetup attach 1000 /dev/loop10 /dev/loop10 internal"));
        assert!(node1.contains("--quorum=majority"), "{node1}");
        assert!(node1.contains("--on-no-quorum=io-error"), "{node1}");
        assert!(node1.contains("drbdsetup new-peer my_ssd_res 2 --_name=node3"));
        let node3 = &up["node3"];
        assert!(
            !node3.contains("attach"),
            "the tiebreaker has no disk: {node3}"
        );
        assert!(node3.contains("drbdsetup new-minor my_ssd_res 1000 0"));
    }
}

#[test]
fn make_available_on_a_fourth_node() {
    let members = [(1, false), (2, false), (3, true), (4, true)];
    let up = scenario(
        "make-available",
        (1..=4)
            .map(|n| file(&members, n, &[1000], options(QUORUM)))
            .collect(),
    );
    if let Some(node4) = up.get("node4") {
        // Diskless members do not connect to each other.
        assert!(node4.contains("--_name=node1"));
        assert!(!node4.contains("--_name=node3"), "{node4}");
    }
}

#[test]
fn toggle_disk_makes_the_tiebreaker_a_replica() {
    let members = [(1, false), (2, false), (3, false)];
    let up = scenario(
        "toggle-disk",
        (1..=3)
            .map(|n| file(&members, n, &[1000], options(QUORUM)))
            .collect(),
    );
    if let Some(node3) = up.get("node3") {
        assert!(node3.contains("drbdsetup attach 1000 /dev/loop30 /dev/loop30 internal"));
    }
}

#[test]
fn three_diskful_with_quorum() {
    let members = [(1, false), (2, false), (3, false)];
    scenario(
        "three-diskful-quorum",
        (1..=3)
            .map(|n| file(&members, n, &[1000], options(QUORUM)))
            .collect(),
    );
}

#[test]
fn a_resource_with_two_volumes() {
    let members = [(1, false), (2, false), (3, true)];
    let up = scenario(
        "two-volumes",
        (1..=3)
            .map(|n| file(&members, n, &[1000, 1001], options(QUORUM)))
            .collect(),
    );
    if let Some(node2) = up.get("node2") {
        assert!(node2.contains("drbdsetup new-minor my_ssd_res 1000 0"));
        assert!(node2.contains("drbdsetup new-minor my_ssd_res 1001 1"));
        assert!(node2.contains("drbdsetup attach 1001 /dev/loop21 /dev/loop21 internal"));
    }
}

#[test]
fn drbd_options_at_several_levels() {
    // What the controller hands down after LINSTOR's inheritance: the member's own options
    // (resource, definition, group, node, controller), each volume's `Disk` options whole (the
    // resource's over the volume definition's, the volume group's, the rest), and each
    // connection's `Net` and `PeerDevice` options whole (to node2 through a resource
    // connection, to node3 without one).
    let merged = options(&[
        ("Resource/quorum", "majority"),
        ("Resource/on-no-quorum", "suspend-io"),
        ("Resource/auto-promote", "no"),
        ("Net/max-buffers", "10000"),
        ("Net/after-sb-0pri", "discard-zero-changes"),
        ("Net/verify-alg", "crc32c"),
        ("Disk/disk-flushes", "no"),
        ("Disk/al-extents", "6007"),
        ("PeerDevice/c-max-rate", "100M"),
        ("PeerDevice/resync-rate", "40960"),
        ("Handlers/quorum-lost", "/usr/bin/logger quorum lost"),
    ]);
    let volume_disk = [("Disk/disk-flushes", "no"), ("Disk/al-extents", "6007")];
    let members = [(1, false), (2, false), (3, true)];
    let files = (1..=3)
        .map(|n| {
            let mut f = file(&members, n, &[1000, 1001], merged.clone());
            f.volumes[0].options = options(&volume_disk);
            f.volumes[1].options =
                options(&[volume_disk[0], volume_disk[1], ("Disk/disk-barrier", "yes")]);
            for peer in members.iter().map(|(p, _)| *p).filter(|p| *p != n) {
                let through_resource_connection = n == 2 || peer == 2;
                let connection = if through_resource_connection {
                    options(&[
                        ("Net/max-buffers", "10000"),
                        ("Net/ping-timeout", "20"),
                        ("PeerDevice/c-max-rate", "250M"),
                    ])
                } else {
                    options(&[
                        ("Net/max-buffers", "10000"),
                        ("PeerDevice/c-max-rate", "100M"),
                        ("PeerDevice/resync-rate", "40960"),
                    ])
                };
                f.connection_options
                    .insert(format!("node{peer}"), connection);
            }
            f
        })
        .collect();
    let up = scenario("drbd-options", files);
    if let Some(node1) = up.get("node1") {
        assert!(node1.contains("--on-no-quorum=suspend-io"), "{node1}");
        assert!(node1.contains("--auto-promote=no"), "{node1}");
        assert!(node1.contains("--al-extents=6007"), "{node1}");
        assert!(node1.contains("--disk-barrier=yes"), "{node1}");
        assert!(node1.contains("--ping-timeout=20"), "{node1}");
        assert!(node1.contains("--c-max-rate=250M"), "{node1}");
        assert!(node1.contains("--c-max-rate=100M"), "{node1}");
        assert!(node1.contains("--verify-alg=crc32c"), "{node1}");
    }
}

#[test]
fn the_tiebreaker_word_is_written_only_for_a_drbd_utils_that_takes_it() {
    if let Some(why) = drbd_utils_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let installed = Command::new("drbdadm")
        .arg("--version")
        .output()
        .map(|o| DrbdVersions::from_drbdadm_version(&String::from_utf8_lossy(&o.stdout)))
        .unwrap();
    let members = [(1, false), (2, false), (3, true)];
    let mut with_word = file(&members, 3, &[1000], options(QUORUM));
    with_word.versions = DrbdVersions {
        utils: Some(TIEBREAKER_MIN_UTILS),
        kernel: Some(TIEBREAKER_MIN_KERNEL),
    };
    let text = with_word.render().unwrap();
    assert!(text.contains("            tiebreaker yes;\n"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiebreaker.res");
    std::fs::write(&path, &text).unwrap();
    let output = Command::new("unshare")
        .args([
            "--uts",
            "sh",
            "-c",
            &format!(
                "hostname node3 && drbdadm -c {} dump {RESOURCE}",
                path.display()
            ),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if installed.utils.is_some_and(|v| v >= TIEBREAKER_MIN_UTILS) {
        assert!(output.status.success(), "{stderr}");
    } else {
        // Why the word waits for the version: this drbd-utils refuses the whole file.
        assert!(!output.status.success(), "drbd-utils {installed} took it");
        assert!(stderr.contains("tiebreaker"), "{stderr}");
    }
}
