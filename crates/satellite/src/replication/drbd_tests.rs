//! The DRBD driver's command sequences, in a dry run and against a recording host, and its
//! handling of the resource files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferrite_proto::{PeerSpec, ReplicationEngine, ReplicationSpec, Role};
use ferrite_storage::runner::ExitReason;
use ferrite_storage::{CommandError, CommandLine, CommandOutput, HostCommands};

use super::drbd::{DRY_RUN_LOG, DrbdDriver, Feed, Mode, follow_events, metadata_kib};
use super::{Member, MemberVolume, ReplicationDriver};

fn peer(node: u8, diskless: bool) -> PeerSpec {
    PeerSpec {
        node_name: format!("node{node}"),
        node_id: node - 1,
        address: format!("127.0.0.1{node}").parse().unwrap(),
        port: 7000,
        diskless,
    }
}

fn spec(peers: Vec<PeerSpec>) -> ReplicationSpec {
    ReplicationSpec {
        engine: ReplicationEngine::Drbd,
        node_id: 0,
        address: "127.0.0.11".parse().unwrap(),
        port: 7000,
        secret: "s3cret".to_string(),
        peers,
        options: [
            ("Resource/quorum".to_string(), "majority".to_string()),
            ("Resource/on-no-quorum".to_string(), "io-error".to_string()),
        ]
        .into(),
        volume_options: BTreeMap::new(),
        connection_options: BTreeMap::new(),
    }
}

fn volume(backing: Option<&str>, usable_kib: u64) -> MemberVolume {
    MemberVolume {
        number: 0,
        minor: Some(1000),
        usable_kib,
        backing: backing.map(PathBuf::from),
        new_volume: true,
        fresh_metadata: None,
    }
}

fn member<'a>(spec: &'a ReplicationSpec, volumes: Vec<MemberVolume>) -> Member<'a> {
    Member {
        resource: "web",
        node_name: "node1",
        replication: spec,
        volumes,
    }
}

fn logged(dir: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(dir.join(DRY_RUN_LOG)).unwrap_or_default();
    std::fs::remove_file(dir.join(DRY_RUN_LOG)).ok();
    log.lines()
        .map(|l| l.replace(&dir.display().to_string(), "DIR"))
        .collect()
}

/// A host whose drbdadm and drbdsetup answer as told, recording every command.
#[derive(Default)]
struct RecordingHost {
    commands: Mutex<Vec<String>>,
    /// Prefix of a command line → the stderr it fails with.
    failures: Mutex<BTreeMap<String, String>>,
}

impl HostCommands for RecordingHost {
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
        let line = command.to_string();
        self.commands.lock().unwrap().push(line.clone());
        for (prefix, stderr) in self.failures.lock().unwrap().iter() {
            if line.contains(prefix.as_str()) {
                return Err(CommandError::Failed {
                    command: line,
                    exit: ExitReason::Code(10),
                    stdout: String::new(),
                    stderr: stderr.clone(),
                });
            }
        }
        Ok(CommandOutput::default())
    }
}

impl RecordingHost {
    fn take(&self, dir: &Path) -> Vec<String> {
        std::mem::take(&mut *self.commands.lock().unwrap())
            .into_iter()
            .map(|l| l.replace(&dir.display().to_string(), "DIR"))
            .collect()
    }
}

#[test]
fn a_dry_run_writes_the_file_and_logs_what_it_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = DrbdDriver::new(
        Arc::new(RecordingHost::default()),
        dir.path().to_path_buf(),
        Mode::DryRun,
    );
    let spec = spec(vec![peer(2, false), peer(3, true)]);
    driver.begin_pass();
    driver
        .apply(&member(&spec, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    assert_eq!(
        logged(dir.path()),
        [
            "drbdadm -c DIR/web.res.next --max-peers 7 -- --force create-md web/0",
            "drbdadm -c DIR/web.res.next adjust web",
            // node1 has the lowest node-id of the disks: it starts the data generation.
            "drbdadm -c DIR/web.res -- --clear-bitmap new-current-uuid web/0",
        ]
    );
    let text = std::fs::read_to_string(dir.path().join("web.res")).unwrap();
    assert!(text.contains("disk        /dev/loop3;"), "{text}");
    assert!(text.contains("quorum majority;"), "{text}");
    assert!(!dir.path().join("web.res.next").exists());
    let report = driver.report("web", None);
    assert_eq!(report.engine, ReplicationEngine::Drbd);
    assert_eq!(report.role, Role::Secondary);
    assert_eq!(report.error, None);
    assert_eq!(
        report.volumes[0].device_path.as_deref(),
        Some("/dev/drbd1000")
    );
    assert_eq!(report.peers[0].connection, "DryRun");

    // Nothing changed: nothing is written or run.
    let modified = std::fs::metadata(dir.path().join("web.res"))
        .unwrap()
        .modified()
        .unwrap();
    driver.begin_pass();
    driver
        .apply(&member(&spec, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    assert!(logged(dir.path()).is_empty());
    assert_eq!(
        std::fs::metadata(dir.path().join("web.res"))
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );

    // Made available on a fourth node: adjusted, no metadata again; then grown.
    let four = self::spec(vec![peer(2, false), peer(3, true), peer(4, true)]);
    driver
        .apply(&member(&four, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    assert_eq!(
        logged(dir.path()),
        ["drbdadm -c DIR/web.res.next adjust web"]
    );
    driver
        .apply(&member(&four, vec![volume(Some("/dev/loop3"), 2048)]))
        .unwrap_or_else(|e| panic!("{e}"));
    // The size is not in the file: nothing to adjust, but the grown volume is resized, once.
    assert_eq!(logged(dir.path()), ["drbdadm -c DIR/web.res resize web/0"]);
    driver
        .apply(&member(&four, vec![volume(Some("/dev/loop3"), 2048)]))
        .unwrap();
    assert!(logged(dir.path()).is_empty());

    // Toggled to diskless: detached and wiped with the file that names the disk.
    driver
        .apply(&member(&four, vec![volume(None, 2048)]))
        .unwrap();
    assert_eq!(
        logged(dir.path()),
        [
            "drbdadm -c DIR/web.res detach web/0",
            "drbdadm -c DIR/web.res -- --force wipe-md web/0",
            "drbdadm -c DIR/web.res.next adjust web",
        ]
    );
    assert!(
        std::fs::read_to_string(dir.path().join("web.res"))
            .unwrap()
            .contains("disk        none;")
    );

    driver.down("web").unwrap();
    assert_eq!(logged(dir.path()), ["drbdadm -c DIR/web.res down web"]);
    assert!(!dir.path().join("web.res").exists());
    driver.down("web").unwrap();
    assert!(logged(dir.path()).is_empty(), "down twice is down");
}

#[test]
fn a_volume_that_grows_is_resized_after_its_file_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = DrbdDriver::new(
        Arc::new(RecordingHost::default()),
        dir.path().to_path_buf(),
        Mode::DryRun,
    );
    let two = spec(vec![peer(2, false)]);
    driver
        .apply(&member(&two, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    logged(dir.path());
    // A peer comes along with the growth, so the file changes too.
    let three = spec(vec![peer(2, false), peer(3, true)]);
    driver
        .apply(&member(&three, vec![volume(Some("/dev/loop3"), 4096)]))
        .unwrap();
    assert_eq!(
        logged(dir.path()),
        [
            "drbdadm -c DIR/web.res.next adjust web",
            "drbdadm -c DIR/web.res resize web/0",
        ]
    );
}

fn events(disk: &str, peer_disk: &str) -> String {
    format!(
        "2026-11-30T02:10:00.000000+00:00 exists resource name:web role:Secondary suspended:no\n\
         2026-11-30T02:10:00.000000+00:00 exists connection name:web peer-node-id:1 conn-name:node2 connection:Connected role:Secondary\n\
         2026-11-30T02:10:00.000000+00:00 exists device name:web volume:0 minor:1000 disk:{disk} client:no quorum:yes\n\
         2026-11-30T02:10:00.000000+00:00 exists peer-device name:web peer-node-id:1 conn-name:node2 volume:0 replication:Established peer-disk:{peer_disk} out-of-sync:1024\n\
         2026-11-30T02:10:00.000000+00:00 exists -\n"
    )
}

/// Feeds `text` to the driver as a freshly started stream would hand it over.
fn feed(driver: &mut DrbdDriver, text: &str) {
    driver.feed(Feed::Started);
    for line in text.lines() {
        driver.feed(Feed::Line(line.to_string()));
    }
}

#[test]
fn the_initial_sync_is_skipped_only_once_both_new_disks_are_connected() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(RecordingHost::default());
    host.failures.lock().unwrap().insert(
        "dump-md".to_string(),
        "No valid meta data found".to_string(),
    );
    let mut driver = DrbdDriver::new(host.clone(), dir.path().to_path_buf(), Mode::Real);
    let spec = spec(vec![peer(2, false)]);
    driver.begin_pass();
    driver
        .apply(&member(&spec, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    assert_eq!(
        host.take(dir.path()),
        [
            "drbdadm -c DIR/web.res.next -- --force dump-md web/0",
            "drbdadm -c DIR/web.res.next --max-peers 7 -- --force create-md web/0",
            "drbdadm -c DIR/web.res.next adjust web",
        ]
    );
    assert!(
        driver.report("web", None).error.is_some(),
        "no stream has told the state yet"
    );

    // Up, but the peer is still UpToDate from an older life: no shortcut.
    feed(&mut driver, &events("Inconsistent", "UpToDate"));
    driver.begin_pass();
    driver
        .apply(&member(&spec, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    assert!(host.take(dir.path()).is_empty());

    feed(&mut driver, &events("Inconsistent", "Inconsistent"));
    driver.begin_pass();
    driver
        .apply(&member(&spec, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    assert_eq!(
        host.take(dir.path()),
        ["drbdadm -c DIR/web.res -- --clear-bitmap new-current-uuid web/0"]
    );
    let report = driver.report("web", None);
    assert_eq!(report.volumes[0].disk_state, "Inconsistent");
    assert_eq!(report.peers[0].node_name, "node2");
    assert_eq!(report.peers[0].connection, "Connected");
    assert_eq!(report.peers[0].volumes[0].out_of_sync_kib, 1024);
    assert!(report.quorum);

    driver.begin_pass();
    driver
        .apply(&member(&spec, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    assert!(host.take(dir.path()).is_empty(), "once");
}

#[test]
fn a_thick_volume_gets_its_full_initial_sync_from_the_lowest_node_once_both_are_connected() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(RecordingHost::default());
    host.failures.lock().unwrap().insert(
        "dump-md".to_string(),
        "No valid meta data found".to_string(),
    );
    let mut driver = DrbdDriver::new(host.clone(), dir.path().to_path_buf(), Mode::Real);
    let spec = spec(vec![peer(2, false)]);
    let thick = || MemberVolume {
        new_volume: false,
        ..volume(Some("/dev/vg/web_00000"), 1024)
    };
    driver.begin_pass();
    driver.apply(&member(&spec, vec![thick()])).unwrap();
    assert_eq!(
        host.take(dir.path()),
        [
            "drbdadm -c DIR/web.res.next -- --force dump-md web/0",
            "drbdadm -c DIR/web.res.next --max-peers 7 -- --force create-md web/0",
            "drbdadm -c DIR/web.res.next adjust web",
        ]
    );
    // The peer still UpToDate from an older life: nothing is forced.
    feed(&mut driver, &events("Inconsistent", "UpToDate"));
    driver.begin_pass();
    driver.apply(&member(&spec, vec![thick()])).unwrap();
    assert!(host.take(dir.path()).is_empty());

    // Both new and connected: this node's data becomes the first generation, once.
    feed(&mut driver, &events("Inconsistent", "Inconsistent"));
    driver.begin_pass();
    driver.apply(&member(&spec, vec![thick()])).unwrap();
    assert_eq!(
        host.take(dir.path()),
        [
            "drbdadm -c DIR/web.res primary --force web",
            "drbdadm -c DIR/web.res secondary web",
        ]
    );
    driver.begin_pass();
    driver.apply(&member(&spec, vec![thick()])).unwrap();
    assert!(host.take(dir.path()).is_empty(), "once");
}

#[test]
fn a_new_volume_already_up_to_date_has_no_initial_sync_left_to_start() {
    // Synced from a peer before the others looked new: the entry goes, and a later moment with
    // every member Inconsistent does not make this node force its data on them.
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(RecordingHost::default());
    host.failures.lock().unwrap().insert(
        "dump-md".to_string(),
        "No valid meta data found".to_string(),
    );
    let mut driver = DrbdDriver::new(host.clone(), dir.path().to_path_buf(), Mode::Real);
    let spec = spec(vec![peer(2, false)]);
    let thick = || MemberVolume {
        new_volume: false,
        ..volume(Some("/dev/vg/web_00000"), 1024)
    };
    driver.begin_pass();
    driver.apply(&member(&spec, vec![thick()])).unwrap();
    host.take(dir.path());
    feed(&mut driver, &events("UpToDate", "UpToDate"));
    driver.begin_pass();
    driver.apply(&member(&spec, vec![thick()])).unwrap();
    assert!(host.take(dir.path()).is_empty());
    feed(&mut driver, &events("Inconsistent", "Inconsistent"));
    driver.begin_pass();
    driver.apply(&member(&spec, vec![thick()])).unwrap();
    assert!(host.take(dir.path()).is_empty());
}

#[test]
fn existing_metadata_is_kept_and_a_failed_adjust_keeps_the_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(RecordingHost::default());
    let mut driver = DrbdDriver::new(host.clone(), dir.path().to_path_buf(), Mode::Real);
    let two = spec(vec![peer(2, false)]);
    driver.begin_pass();
    driver
        .apply(&member(&two, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    let commands = host.take(dir.path());
    assert!(
        !commands.iter().any(|c| c.contains("create-md")),
        "dump-md found metadata: {commands:?}"
    );
    let before = std::fs::read_to_string(dir.path().join("web.res")).unwrap();

    host.failures.lock().unwrap().insert(
        " adjust ".to_string(),
        "web: Failure: (162) Invalid configuration request".to_string(),
    );
    let three = spec(vec![peer(2, false), peer(3, true)]);
    let error = driver
        .apply(&member(&three, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap_err();
    assert!(error.contains("Invalid configuration request"), "{error}");
    assert!(error.contains("adjust web"), "{error}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("web.res")).unwrap(),
        before,
        "the applied file stays until a new one is applied"
    );
}

#[test]
fn down_is_refused_while_the_resource_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(RecordingHost::default());
    let mut driver = DrbdDriver::new(host.clone(), dir.path().to_path_buf(), Mode::Real);
    let two = spec(vec![peer(2, false)]);
    feed(
        &mut driver,
        &events("UpToDate", "UpToDate").replace(
            "exists resource name:web role:Secondary",
            "exists resource name:web role:Primary",
        ),
    );
    driver.begin_pass();
    driver
        .apply(&member(&two, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    host.take(dir.path());
    let error = driver.down("web").unwrap_err();
    assert!(error.contains("in use"), "{error}");
    assert!(host.take(dir.path()).is_empty());

    feed(&mut driver, &events("UpToDate", "UpToDate"));
    driver.begin_pass();
    driver.down("web").unwrap();
    assert_eq!(
        host.take(dir.path()),
        [
            "drbdadm -c DIR/web.res down web",
            "drbdadm -c DIR/web.res -- --force wipe-md web/0",
        ]
    );
}

#[test]
fn a_volume_definitions_disk_options_go_to_its_volume() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = DrbdDriver::new(
        Arc::new(RecordingHost::default()),
        dir.path().to_path_buf(),
        Mode::DryRun,
    );
    let mut with_options = spec(vec![peer(2, false)]);
    with_options
        .options
        .insert("Disk/al-extents".to_string(), "6007".to_string());
    with_options.volume_options.insert(
        0,
        [("Disk/disk-flushes".to_string(), "no".to_string())].into(),
    );
    driver
        .apply(&member(
            &with_options,
            vec![volume(Some("/dev/loop3"), 1024)],
        ))
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("web.res")).unwrap();
    let volume = text.split("volume 0").nth(1).unwrap();
    assert!(
        volume
            .split("node-id")
            .next()
            .unwrap()
            .contains("disk-flushes no;"),
        "{text}"
    );
    assert!(text.contains("al-extents 6007;"), "{text}");
}

#[test]
fn this_nodes_section_is_named_as_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(RecordingHost::default());
    let mut driver = DrbdDriver::new(host.clone(), dir.path().to_path_buf(), Mode::Real)
        .with_local_host("storage-01.example".to_string());
    let two = spec(vec![peer(2, false)]);
    driver.begin_pass();
    driver
        .apply(&member(&two, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("web.res")).unwrap();
    assert!(text.contains("on \"storage-01.example\""), "{text}");
    assert!(text.contains("host \"storage-01.example\" address ipv4 127.0.0.11:7000;"));
    assert!(text.contains("on \"node2\""), "{text}");
    host.take(dir.path());
    // Toggled to diskless: the disk in the host's section is found and wiped.
    driver
        .apply(&member(&two, vec![volume(None, 1024)]))
        .unwrap();
    assert!(
        host.take(dir.path())
            .iter()
            .any(|c| c.ends_with("wipe-md web/0")),
    );
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = DrbdDriver::new(
        Arc::new(RecordingHost::default()),
        dir.path().to_path_buf(),
        Mode::DryRun,
    );
    let mut bad = spec(vec![peer(2, false)]);
    bad.options
        .insert("Net/protocol".to_string(), "D".to_string());
    let error = driver
        .apply(&member(&bad, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap_err();
    assert!(error.contains("Net/protocol"), "{error}");
    assert!(!dir.path().join("web.res").exists());
    assert!(logged(dir.path()).is_empty());
}

#[test]
fn the_backing_volume_has_room_for_drbds_metadata() {
    // 1 GiB with 7 peer slots: 32 KiB of bitmap per peer, the activity log and a superblock.
    assert_eq!(metadata_kib(1 << 20, 7), 4 + 32 + 7 * 32);
    let driver = DrbdDriver::new(
        Arc::new(RecordingHost::default()),
        PathBuf::from("/nonexistent"),
        Mode::DryRun,
    );
    let gross = driver
        .backing_kib(1 << 20, &spec(Vec::new()), &[0])
        .unwrap();
    assert_eq!(gross, (1 << 20) + 260);
}

/// A host whose `drbdsetup events2` prints `lines` and ends, every time it is started.
struct StreamingHost {
    lines: Vec<String>,
    starts: std::sync::atomic::AtomicUsize,
}

impl HostCommands for StreamingHost {
    fn run(&self, _command: &CommandLine) -> Result<CommandOutput, CommandError> {
        Ok(CommandOutput::default())
    }

    fn follow(
        &self,
        command: &CommandLine,
        on_line: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), CommandError> {
        assert_eq!(
            command.to_string(),
            "drbdsetup events2 --timestamps --statistics all"
        );
        self.starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for line in &self.lines {
            if !on_line(line) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }
}

#[test]
fn the_event_stream_is_handed_over_and_followed_again_when_it_ends() {
    let host = Arc::new(StreamingHost {
        lines: events("UpToDate", "UpToDate")
            .lines()
            .map(str::to_string)
            .chain([
                "2026-11-30T02:10:01.000000+00:00 change peer-device name:web peer-node-id:1 conn-name:node2 volume:0 replication:SyncSource done:10.00".to_string(),
                "2026-11-30T02:10:01.000000+00:00 change peer-device name:web peer-node-id:1 conn-name:node2 volume:0 done:20.00".to_string(),
            ])
            .collect(),
        starts: Default::default(),
    });
    let (feed, pieces) = std::sync::mpsc::channel();
    let (sender, receiver) = std::sync::mpsc::channel();
    let handle = follow_events(host.clone(), feed, move || sender.send(()).is_ok()).unwrap();
    let wait = std::time::Duration::from_secs(5);
    // The initial dump and the changes after it are told; then the end, then a new stream.
    receiver
        .recv_timeout(wait)
        .expect("told after the initial state");
    receiver
        .recv_timeout(wait)
        .expect("told again after a restart");
    assert!(host.starts.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let mut seen = Vec::new();
    while seen.iter().filter(|p| **p == Feed::Started).count() < 2 {
        seen.push(pieces.recv_timeout(wait).unwrap());
    }
    assert_eq!(seen[0], Feed::Started);
    assert_eq!(seen.len(), 1 + host.lines.len() + 1 + 1, "{seen:?}");
    assert_eq!(
        seen[1..=host.lines.len()],
        host.lines
            .iter()
            .cloned()
            .map(Feed::Line)
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(
        seen[host.lines.len() + 1],
        Feed::Ended("drbdsetup events2 ended".to_string())
    );
    drop(receiver);
    drop(pieces);
    handle.join().unwrap();
}

/// The host's real runner, with programs taken from `bin` rather than from PATH: a fake
/// `drbdsetup` there runs as a real process, through the same `follow` as the real one.
struct FakeBin {
    bin: PathBuf,
    inner: ferrite_storage::SystemCommands,
}

impl FakeBin {
    fn redirect(&self, command: &CommandLine) -> CommandLine {
        let mut command = command.clone();
        command.program = self.bin.join(&command.program).display().to_string();
        command
    }
}

impl HostCommands for FakeBin {
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
        self.inner.run(&self.redirect(command))
    }

    fn follow(
        &self,
        command: &CommandLine,
        on_line: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), CommandError> {
        self.inner.follow(&self.redirect(command), on_line)
    }
}

/// A `drbdsetup` that prints recorded events2 runs: the first start prints `events2-run1.log`,
/// the next `events2-run2.log`, later ones wait to be stopped. A line `STEP <name>` waits for
/// the file `go-<name>` in `dir`; `EXIT <code>` ends the process with that status.
fn fake_drbdsetup(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/replication/testdata");
    let script = format!(
        r#"#!/bin/bash
# A recorded drbdsetup events2, for tests.
[ "$1" = events2 ] || {{ echo "fake drbdsetup: only events2" >&2; exit 1; }}
dir='{dir}'
runs=$(( $(cat "$dir/runs" 2>/dev/null || echo 0) + 1 ))
echo "$runs" > "$dir/runs"
wait_for() {{
    for _ in $(seq 300); do [ -e "$dir/go-$1" ] && return 0; sleep 0.1; done
    exit 1
}}
log='{data}'/events2-run$runs.log
[ -e "$log" ] || {{ wait_for stop; exit 0; }}
while IFS= read -r line; do
    case "$line" in
        "STEP "*) wait_for "${{line#STEP }}" ;;
        "EXIT "*) exit "${{line#EXIT }}" ;;
        *) echo "$line" ;;
    esac
done < "$log"
"#,
        dir = dir.display(),
        data = data.display()
    );
    let path = bin.join("drbdsetup");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Runs passes until `done` holds for the report of `web`, for up to 10 s.
fn report_when(
    driver: &mut DrbdDriver,
    what: &str,
    done: impl Fn(&ferrite_proto::ReplicationReport) -> bool,
) -> ferrite_proto::ReplicationReport {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        driver.begin_pass();
        let report = driver.report("web", None);
        if done(&report) {
            return report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: never reported; last report {report:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn step(dir: &Path, name: &str) {
    std::fs::write(dir.join(format!("go-{name}")), "").unwrap();
}

#[test]
fn a_followed_drbdsetup_process_is_reported_and_unknown_while_it_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(FakeBin {
        bin: fake_drbdsetup(dir.path()),
        inner: ferrite_storage::SystemCommands::new(),
    });
    let (notified, notifications) = std::sync::mpsc::channel();
    let mut driver = DrbdDriver::new(host, dir.path().join("res"), Mode::Real)
        .follow_events(move || notified.send(()).is_ok())
        .unwrap();

    // The initial dump and a resync's progress.
    let report = report_when(&mut driver, "the resync", |r| {
        r.peers
            .first()
            .and_then(|p| p.volumes.first())
            .is_some_and(|v| v.done_percent == Some(43.2))
    });
    notifications
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("the reconciler is told");
    assert_eq!(report.engine, ReplicationEngine::Drbd);
    assert_eq!(report.error, None);
    assert_eq!(report.role, Role::Secondary);
    assert_eq!(report.volumes[0].disk_state, "Inconsistent");
    assert_eq!(
        report.volumes[0].device_path.as_deref(),
        Some("/dev/drbd1000")
    );
    assert_eq!(report.volumes[0].usable_size_kib, Some(1048576));
    let node2 = &report.peers[0];
    assert_eq!((node2.node_name.as_str(), node2.node_id), ("node2", 1));
    assert_eq!(node2.connection, "Connected");
    assert_eq!(node2.volumes[0].replication, "SyncTarget");
    assert_eq!(node2.volumes[0].out_of_sync_kib, 595968);
    assert_eq!(report.peers[1].volumes[0].peer_disk, "Diskless");
    assert_eq!(
        (report.may_promote, report.promotion_score),
        (Some(false), Some(10101))
    );
    assert!(report.quorum);

    // The resync ends.
    step(dir.path(), "sync-done");
    let report = report_when(&mut driver, "the end of the resync", |r| {
        r.volumes
            .first()
            .is_some_and(|v| v.disk_state == "UpToDate")
    });
    assert_eq!(report.peers[0].volumes[0].replication, "Established");
    assert_eq!(report.peers[0].volumes[0].done_percent, None);
    assert_eq!(report.peers[0].volumes[0].out_of_sync_kib, 0);
    assert_eq!(
        (report.may_promote, report.promotion_score),
        (Some(true), Some(10102))
    );

    // Both peers go: a disconnect, then quorum lost.
    step(dir.path(), "disconnect");
    let report = report_when(&mut driver, "quorum loss", |r| !r.quorum);
    assert_eq!(report.peers[0].connection, "Connecting");
    assert_eq!(report.peers[0].volumes[0].replication, "Off");
    assert_eq!(report.peers[0].volumes[0].peer_disk, "DUnknown");
    assert_eq!(report.peers[1].connection, "Connecting");
    assert_eq!(report.may_promote, Some(false));
    assert_eq!(report.error, None);

    // drbdsetup dies: nothing of the old state is reported until the next one listed its own.
    step(dir.path(), "die");
    let report = report_when(&mut driver, "the unknown state", |r| r.error.is_some());
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("the DRBD state is unknown"), "{error}");
    assert!(error.contains("exit"), "the cause is said: {error}");
    assert_eq!(report.role, Role::Unknown);
    assert!(report.peers.is_empty());
    assert!(!report.quorum && !report.in_use);
    assert_eq!((report.may_promote, report.promotion_score), (None, None));
    // Restarted, but the dump is not listed yet: still unknown.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_to_string(dir.path().join("runs"))
        .unwrap()
        .trim()
        != "2"
    {
        assert!(std::time::Instant::now() < deadline, "never restarted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    driver.begin_pass();
    let report = driver.report("web", None);
    assert!(
        report.error.as_deref().unwrap().contains("unknown"),
        "{report:?}"
    );

    // The new stream's dump is the state: quorum again, node2 still away.
    step(dir.path(), "restart");
    let report = report_when(&mut driver, "the rebuilt state", |r| r.error.is_none());
    assert!(report.quorum);
    assert_eq!(report.volumes[0].disk_state, "UpToDate");
    assert_eq!(report.peers[0].connection, "Connecting");
    assert_eq!(report.peers[0].volumes[0].out_of_sync_kib, 4096);
    assert_eq!(report.peers[1].connection, "Connected");

    // node2 comes back as a Primary of its own: split brain, StandAlone.
    step(dir.path(), "split-brain");
    let report = report_when(&mut driver, "the split brain", |r| {
        r.peers
            .first()
            .is_some_and(|p| p.connection == "StandAlone")
    });
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("split brain with 'node2'"), "{error}");
    step(dir.path(), "stop");
}

#[test]
fn a_connections_options_go_into_that_connections_section() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = DrbdDriver::new(
        Arc::new(RecordingHost::default()),
        dir.path().to_path_buf(),
        Mode::DryRun,
    );
    let mut spec = spec(vec![peer(2, false), peer(3, true)]);
    spec.connection_options.insert(
        "node2".into(),
        [
            ("Net/max-buffers".to_string(), "8000".to_string()),
            ("PeerDevice/c-max-rate".to_string(), "102400".to_string()),
        ]
        .into(),
    );
    driver
        .apply(&member(&spec, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("web.res")).unwrap();
    let connections: Vec<&str> = text.split("connection\n").skip(1).collect();
    let to = |peer: &str| {
        connections
            .iter()
            .find(|c| c.contains(&format!("host \"{peer}\"")))
            .unwrap()
    };
    assert!(to("node2").contains("max-buffers 8000;"), "{text}");
    assert!(to("node2").contains("c-max-rate 102400;"), "{text}");
    assert!(!to("node3").contains("max-buffers"), "{text}");

    spec.connection_options.insert(
        "node3".into(),
        [("Net/max-buffers".to_string(), "lots".to_string())].into(),
    );
    let error = driver
        .apply(&member(&spec, vec![volume(Some("/dev/loop3"), 1024)]))
        .unwrap_err();
    assert!(error.contains("connection to 'node3'"), "{error}");
}
