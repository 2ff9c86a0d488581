//! The reconciler against the simulating fake host: golden command sequences for create, grow
//! and delete, ownership, deltas, interrupted creates, restarts and unprompted reports.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ferrite_proto::{DesiredState, PoolSpec, ResourceSpec, SatelliteMessage, VolumeSpec};
use ferrite_storage::fake::FakeHost;
use ferrite_storage::{ProviderOptions, ProviderSupport, Providers};
use ferrite_types::{LayerKind, ProviderKind, ResourceName};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::ledger::{Ledger, LedgerEntry, Progress, VolumeKey};
use crate::persist::{DESIRED_STATE_FILE, LEDGER_FILE, StateDir};
use crate::reconciler::{Event, Reconciler, differs_noticeably};

struct Node {
    host: Arc<FakeHost>,
    state: tempfile::TempDir,
    pool_dir: tempfile::TempDir,
    reconciler: Reconciler,
}

fn all_supported() -> ProviderSupport {
    ProviderSupport {
        supported: ProviderKind::ALL.to_vec(),
        unsupported: BTreeMap::new(),
    }
}

fn load(host: &Arc<FakeHost>, state: &Path, support: ProviderSupport) -> Reconciler {
    let state_dir = Arc::new(StateDir::open(state).unwrap());
    let providers = Arc::new(Providers::new(host.clone(), ProviderOptions::default()));
    Reconciler::load("node1".into(), state_dir, providers, support).unwrap()
}

impl Node {
    fn new() -> Node {
        let host = Arc::new(FakeHost::new());
        host.add_volume_group("vg0", 1 << 20);
        let state = tempfile::tempdir().unwrap();
        let pool_dir = tempfile::tempdir().unwrap();
        let reconciler = load(&host, state.path(), all_supported());
        Node {
            host,
            state,
            pool_dir,
            reconciler,
        }
    }

    fn pool_dir(&self) -> String {
        self.pool_dir.path().to_str().unwrap().to_string()
    }

    fn pools(&self) -> Vec<PoolSpec> {
        vec![
            pool("files", ProviderKind::FileThin, &self.pool_dir()),
            pool("lvm", ProviderKind::Lvm, "vg0"),
            pool("DfltDisklessStorPool", ProviderKind::Diskless, ""),
        ]
    }

    fn full(&self, generation: u64, resources: Vec<ResourceSpec>) -> DesiredState {
        DesiredState {
            generation,
            base_generation: None,
            storage_pools: self.pools(),
            resources,
            removed_resources: Vec::new(),
        }
    }

    fn apply(&mut self, state: DesiredState) -> SatelliteMessage {
        self.reconciler.apply(state)
    }

    /// Restarts the reconciler on the same state directory and host.
    fn restart(&mut self) {
        // Free the state directory lock first, as a process exit would.
        let placeholder = Node::new();
        let old = std::mem::replace(&mut self.reconciler, placeholder.reconciler);
        drop(old);
        self.reconciler = load(&self.host, self.state.path(), all_supported());
    }
}

fn pool(name: &str, kind: ProviderKind, backing: &str) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        provider_kind: kind,
        pool_name: backing.into(),
        props: BTreeMap::new(),
    }
}

fn resource(name: &str, volumes: &[(u16, u64, &str)]) -> ResourceSpec {
    ResourceSpec {
        name: name.into(),
        layers: vec![LayerKind::Storage],
        diskless: false,
        volumes: volumes
            .iter()
            .map(|(number, size, pool)| VolumeSpec {
                volume_number: *number,
                size_kib: *size,
                storage_pool: pool.to_string(),
            })
            .collect(),
    }
}

fn diskless(name: &str) -> ResourceSpec {
    ResourceSpec {
        diskless: true,
        ..resource(name, &[(0, 4096, "DfltDisklessStorPool")])
    }
}

fn applied(message: SatelliteMessage) -> (u64, ferrite_proto::NodeReport) {
    match message {
        SatelliteMessage::Applied { generation, report } => (generation, report),
        other => panic!("expected Applied, got {other:?}"),
    }
}

#[test]
fn creates_missing_volumes_in_the_right_pools() {
    let mut node = Node::new();
    let dir = node.pool_dir();
    let state = node.full(
        1,
        vec![
            resource("web", &[(0, 10240, "files"), (1, 8192, "lvm")]),
            diskless("tiebreaker"),
        ],
    );
    let (generation, report) = applied(node.apply(state));
    assert_eq!(generation, 1);
    assert_eq!(
        node.host.take_changes(),
        [
            format!("truncate --size 10485760 {dir}/web_00000.img"),
            format!("losetup --find --show {dir}/web_00000.img"),
            "lvcreate -L 8192k -n web_00001 -y vg0".to_string(),
        ]
    );
    assert_eq!(report.generation, Some(1));
    let volumes: Vec<_> = report
        .volumes
        .iter()
        .map(|v| {
            (
                v.resource.as_str(),
                v.volume_number,
                v.disk_state.as_str(),
                v.device_path.as_deref(),
                v.usable_size_kib,
            )
        })
        .collect();
    assert_eq!(
        volumes,
        [
            ("web", 0, "UpToDate", Some("/dev/loop0"), Some(10240)),
            ("web", 1, "UpToDate", Some("/dev/vg0/web_00001"), Some(8192)),
            ("tiebreaker", 0, "Diskless", None, None),
        ]
    );
    assert!(report.volumes.iter().all(|v| v.error.is_none()));
    let pools: Vec<_> = report
        .storage_pools
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.errors.is_empty(),
                p.total_capacity_kib.is_some(),
            )
        })
        .collect();
    assert_eq!(
        pools,
        [
            ("files", true, true),
            ("lvm", true, true),
            ("DfltDisklessStorPool", true, false)
        ]
    );
    assert_eq!(
        report.storage_pools[1].free_capacity_kib,
        Some((1 << 20) - 8192)
    );

    // Both volumes are in the ledger; the diskless one has nothing to own.
    let owned: Vec<_> = node
        .reconciler
        .ledger()
        .volumes
        .iter()
        .map(|e| (e.key.backing_name().to_string(), e.progress))
        .collect();
    assert_eq!(
        owned,
        [
            ("web_00000".to_string(), Progress::Created),
            ("web_00001".to_string(), Progress::Created)
        ]
    );
}

#[test]
fn a_second_pass_over_a_converged_node_only_looks() {
    let mut node = Node::new();
    let state = node.full(
        1,
        vec![resource("web", &[(0, 10240, "files"), (1, 8192, "lvm")])],
    );
    let (_, first) = applied(node.apply(state.clone()));
    node.host.take_commands();
    let second = node.reconciler.converge();
    assert!(node.host.take_changes().is_empty());
    // (Pool capacity is left out: the FILE_THIN pool is on a real file system others write to.)
    assert_eq!(first.volumes, second.volumes);
    // The same full state again (a controller reconnecting) changes nothing either.
    applied(node.apply(state));
    assert!(node.host.take_changes().is_empty());
}

#[test]
fn volumes_grow_when_the_desired_size_grows() {
    let mut node = Node::new();
    let dir = node.pool_dir();
    applied(node.apply(node.full(
        1,
        vec![resource("web", &[(0, 10240, "files"), (1, 8192, "lvm")])],
    )));
    node.host.take_commands();
    let (_, report) = applied(node.apply(node.full(
        2,
        vec![resource("web", &[(0, 20480, "files"), (1, 12288, "lvm")])],
    )));
    assert_eq!(
        node.host.take_changes(),
        [
            format!("truncate --size 20971520 {dir}/web_00000.img"),
            "losetup --set-capacity /dev/loop0".to_string(),
            "lvextend -L 12288k vg0/web_00001".to_string(),
        ]
    );
    assert_eq!(report.volumes[0].usable_size_kib, Some(20480));
    assert_eq!(report.volumes[1].usable_size_kib, Some(12288));

    // A smaller desired size never shrinks anything.
    applied(node.apply(node.full(
        3,
        vec![resource("web", &[(0, 4096, "files"), (1, 4096, "lvm")])],
    )));
    assert!(node.host.take_changes().is_empty());
}

#[test]
fn only_volumes_the_satellite_created_are_deleted() {
    let mut node = Node::new();
    let dir = node.pool_dir();
    // Someone else's volumes, named as ours would be.
    node.host.add_logical_volume("vg0", "other_00000", 4096);
    node.host.add_logical_volume("vg0", "root", 4096);
    std::fs::write(format!("{dir}/other_00001.img"), b"user data").unwrap();

    let state = node.full(
        1,
        vec![
            resource("web", &[(0, 10240, "files"), (1, 8192, "lvm")]),
            resource("other", &[(0, 4096, "lvm"), (1, 4, "files")]),
        ],
    );
    let (_, report) = applied(node.apply(state));
    let other: Vec<_> = report
        .volumes
        .iter()
        .filter(|v| v.resource == "other")
        .collect();
    assert_eq!(other.len(), 2);
    for volume in &other {
        assert_eq!(volume.disk_state, "Failed");
        let error = volume.error.as_deref().unwrap();
        assert!(
            error.contains("this satellite did not create it"),
            "{error}"
        );
    }
    let changes = node.host.take_changes();
    assert!(
        changes.iter().all(|line| !line.contains("other_")),
        "foreign volumes untouched: {changes:?}"
    );

    // Nothing desired any more: only our volumes go.
    let (_, report) = applied(node.apply(node.full(2, vec![])));
    assert!(report.volumes.is_empty());
    assert_eq!(
        node.host.take_changes(),
        [
            "losetup --detach /dev/loop0".to_string(),
            format!("rm --force {dir}/web_00000.img"),
            "lvremove -f vg0/web_00001".to_string(),
        ]
    );
    assert!(node.reconciler.ledger().volumes.is_empty());
    assert_eq!(
        node.host
            .logical_volumes("vg0")
            .into_keys()
            .collect::<Vec<_>>(),
        ["other_00000", "root"]
    );
    assert_eq!(
        std::fs::read(format!("{dir}/other_00001.img")).unwrap(),
        b"user data"
    );
}

#[test]
fn deltas_apply_on_their_base_generation_only() {
    let mut node = Node::new();
    let dir = node.pool_dir();
    applied(node.apply(node.full(5, vec![resource("web", &[(0, 4096, "files")])])));
    node.host.take_commands();

    let pools = node.pools();
    let delta = |generation, base, resources, removed: Vec<&str>| DesiredState {
        generation,
        base_generation: Some(base),
        storage_pools: pools.clone(),
        resources,
        removed_resources: removed.into_iter().map(String::from).collect(),
    };
    let wrong_base = delta(7, 6, vec![resource("db", &[(0, 4096, "lvm")])], vec![]);
    assert_eq!(
        node.apply(wrong_base),
        SatelliteMessage::NeedFullState {
            have_generation: Some(5)
        }
    );
    assert!(
        node.host.take_changes().is_empty(),
        "a refused delta does nothing"
    );

    let add_db = delta(6, 5, vec![resource("db", &[(0, 4096, "lvm")])], vec![]);
    let (generation, report) = applied(node.apply(add_db));
    assert_eq!(generation, 6);
    // The answer to a delta reports the resources it named; web is as last reported.
    assert_eq!(report.only_resources, Some(vec!["db".to_string()]));
    assert_eq!(report.volumes.len(), 1, "{report:?}");
    assert_eq!(report.volumes[0].resource, "db");
    assert_eq!(
        node.host.take_changes(),
        ["lvcreate -L 4096k -n db_00000 -y vg0"]
    );
    assert_eq!(
        node.reconciler.converge().volumes.len(),
        2,
        "web is still desired"
    );
    node.host.take_changes();

    let remove_web = delta(7, 6, vec![], vec!["WEB"]);
    let (_, report) = applied(node.apply(remove_web));
    assert_eq!(report.only_resources, Some(vec!["WEB".to_string()]));
    assert!(report.volumes.is_empty(), "web is gone: {report:?}");
    assert_eq!(
        node.host.take_changes(),
        [
            "losetup --detach /dev/loop0".to_string(),
            format!("rm --force {dir}/web_00000.img"),
        ]
    );

    // The merged state is what was persisted.
    let persisted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.state.path().join(DESIRED_STATE_FILE)).unwrap())
            .unwrap();
    assert_eq!(persisted["desired"]["generation"], 7);
    assert_eq!(persisted["desired"]["resources"][0]["name"], "db");

    // Without any state, a delta cannot apply.
    let mut fresh = Node::new();
    assert_eq!(
        fresh.apply(delta(2, 1, vec![], vec![])),
        SatelliteMessage::NeedFullState {
            have_generation: None
        }
    );
}

#[test]
fn the_desired_state_is_persisted_before_acting() {
    let mut node = Node::new();
    node.host
        .fail_matching("truncate", 1, "truncate: No space left on device");
    let (generation, report) =
        applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "files")])])));
    assert_eq!(generation, 1);
    assert_eq!(report.volumes[0].disk_state, "Failed");
    let error = report.volumes[0].error.as_deref().unwrap();
    assert!(error.contains("No space left on device"), "{error}");
    assert!(error.contains("truncate --size 4194304"), "{error}");
    let persisted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.state.path().join(DESIRED_STATE_FILE)).unwrap())
            .unwrap();
    assert_eq!(persisted["desired"]["generation"], 1);
    // The volume was recorded before the create was tried.
    let ledger: Ledger =
        serde_json::from_slice(&std::fs::read(node.state.path().join(LEDGER_FILE)).unwrap())
            .unwrap();
    assert_eq!(ledger.volumes[0].progress, Progress::Creating);
}

#[test]
fn a_retry_that_succeeds_is_reported_unprompted() {
    let mut node = Node::new();
    let (outbox, mut inbox): (_, UnboundedReceiver<SatelliteMessage>) = unbounded_channel();
    node.reconciler.handle(Event::ControllerConnected {
        node_name: "node1".into(),
        outbox: outbox.clone(),
    });
    node.host.fail_matching(
        "lvcreate",
        5,
        "  Volume group \"vg0\" has insufficient free space",
    );
    node.reconciler.handle(Event::Apply {
        state: node.full(1, vec![resource("web", &[(0, 4096, "lvm")])]),
        reply: outbox.clone(),
    });
    let (_, report) = applied(inbox.try_recv().unwrap());
    assert_eq!(report.volumes[0].disk_state, "Failed");

    // Nothing changed: no report.
    node.reconciler.handle(Event::Converge);
    assert!(inbox.try_recv().is_err());

    node.host.clear_failures();
    node.reconciler.handle(Event::Converge);
    match inbox.try_recv().unwrap() {
        SatelliteMessage::Report { report } => {
            assert_eq!(report.volumes[0].disk_state, "UpToDate");
            assert_eq!(report.volumes[0].error, None);
        }
        other => panic!("expected a Report, got {other:?}"),
    }
    node.reconciler.handle(Event::Converge);
    assert!(inbox.try_recv().is_err(), "no news, no report");
}

#[test]
fn an_interrupted_create_is_adopted_and_an_unrecorded_one_is_not() {
    let mut node = Node::new();
    // A crash after the ledger entry was written and the LV created, before it was marked.
    let key = VolumeKey {
        resource: ResourceName::new("web").unwrap(),
        volume_number: 0.into(),
        provider_kind: ProviderKind::Lvm,
        pool_name: "vg0".into(),
    };
    let mut ledger = Ledger::new();
    ledger.record(LedgerEntry {
        key: key.clone(),
        storage_pool: "lvm".into(),
        progress: Progress::Creating,
    });
    std::fs::write(
        node.state.path().join(LEDGER_FILE),
        serde_json::to_vec(&ledger).unwrap(),
    )
    .unwrap();
    node.host.add_logical_volume("vg0", "web_00000", 4096);
    node.restart();
    let (_, report) = applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    assert_eq!(report.volumes[0].disk_state, "UpToDate");
    assert!(
        node.host.take_changes().is_empty(),
        "adopted, not created again"
    );
    assert_eq!(
        node.reconciler.ledger().get(&key).unwrap().progress,
        Progress::Created
    );

    // And being ours, it is deleted when no longer desired.
    applied(node.apply(node.full(2, vec![])));
    assert_eq!(node.host.take_changes(), ["lvremove -f vg0/web_00000"]);
}

#[test]
fn a_restart_changes_nothing_that_is_right_and_repairs_what_is_not() {
    let mut node = Node::new();
    let dir = node.pool_dir();
    applied(node.apply(node.full(
        3,
        vec![resource("web", &[(0, 4096, "files"), (1, 4096, "lvm")])],
    )));
    node.host.take_commands();

    node.restart();
    assert_eq!(node.reconciler.generation(), Some(3));
    let report = node.reconciler.converge();
    assert!(node.host.take_changes().is_empty());
    assert_eq!(report.volumes[0].device_path.as_deref(), Some("/dev/loop0"));

    // After a reboot the loop devices are gone: they are attached again, nothing is created.
    node.host.detach_all_loop_devices();
    node.restart();
    let report = node.reconciler.converge();
    assert_eq!(
        node.host.take_changes(),
        [format!("losetup --find --show {dir}/web_00000.img")]
    );
    assert_eq!(report.volumes[0].disk_state, "UpToDate");
}

#[test]
fn unusable_pools_and_unknown_pools_fail_volumes_without_deleting_anything() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    node.host.take_commands();

    // The volume group disappears (a disk was pulled): the pool reports it, the volume fails,
    // and nothing is deleted or created.
    let mut state = node.full(2, vec![resource("web", &[(0, 4096, "lvm")])]);
    state.storage_pools[1].pool_name = "vg_gone".into();
    let (_, report) = applied(node.apply(state));
    assert_eq!(
        report.storage_pools[1].errors,
        ["LVM pool 'vg_gone' is not usable: Volume group \"vg_gone\" not found"]
    );
    assert!(
        report.volumes[0]
            .error
            .as_deref()
            .unwrap()
            .contains("is not usable")
    );
    assert!(
        node.host.take_changes().is_empty(),
        "the old volume in vg0 is only moved away from if the new pool works"
    );

    // A volume in a pool the state does not define fails; its old volume stays.
    let state = node.full(3, vec![resource("web", &[(0, 4096, "nosuchpool")])]);
    let (_, report) = applied(node.apply(state));
    assert_eq!(
        report.volumes[0].error.as_deref(),
        Some("storage pool 'nosuchpool' is not among this node's storage pools")
    );
    assert!(node.host.take_changes().is_empty());
    assert!(node.host.logical_volumes("vg0").contains_key("web_00000"));
}

#[test]
fn unsupported_providers_are_reported_with_the_reason() {
    let host = Arc::new(FakeHost::new());
    let state_dir = tempfile::tempdir().unwrap();
    let mut support = all_supported();
    support.supported.retain(|k| *k != ProviderKind::Zfs);
    support
        .unsupported
        .insert(ProviderKind::Zfs, vec!["zfs: command not found".into()]);
    let mut reconciler = load(&host, state_dir.path(), support);
    let state = DesiredState {
        generation: 1,
        base_generation: None,
        storage_pools: vec![pool("zpool", ProviderKind::Zfs, "tank")],
        resources: vec![resource("web", &[(0, 4096, "zpool")])],
        removed_resources: vec![],
    };
    let (_, report) = applied(reconciler.apply(state));
    let expected = "storage provider ZFS is not supported on this node: zfs: command not found";
    assert_eq!(report.storage_pools[0].errors, [expected]);
    assert!(
        report.volumes[0]
            .error
            .as_deref()
            .unwrap()
            .contains(expected)
    );
    assert!(host.commands().is_empty());
}

#[test]
fn invalid_resource_names_are_refused_per_volume() {
    let mut node = Node::new();
    let (_, report) =
        applied(node.apply(node.full(1, vec![resource("../etc", &[(0, 4096, "files")])])));
    assert_eq!(report.volumes[0].disk_state, "Failed");
    assert!(
        report.volumes[0]
            .error
            .as_deref()
            .unwrap()
            .contains("Invalid resource name '../etc'")
    );
    assert!(node.host.take_changes().is_empty());
}

#[test]
fn a_trailing_slash_does_not_make_a_directory_another_pool() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "files")])])));
    node.host.take_commands();
    let mut state = node.full(2, vec![resource("web", &[(0, 4096, "files")])]);
    state.storage_pools[0].pool_name.push('/');
    let (_, report) = applied(node.apply(state));
    assert_eq!(report.volumes[0].disk_state, "UpToDate");
    assert!(node.host.take_changes().is_empty());
}

#[test]
fn toggling_a_resource_diskless_deletes_its_backing_volume() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    node.host.take_commands();
    let (_, report) = applied(node.apply(node.full(2, vec![diskless("web")])));
    assert_eq!(report.volumes[0].disk_state, "Diskless");
    assert_eq!(node.host.take_changes(), ["lvremove -f vg0/web_00000"]);
}

#[test]
fn small_capacity_changes_are_not_news() {
    let mut node = Node::new();
    let (_, report) = applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    let mut nudged = report.clone();
    let free = nudged.storage_pools[1].free_capacity_kib.unwrap();
    nudged.storage_pools[1].free_capacity_kib = Some(free - 1024);
    assert!(!differs_noticeably(&report, &nudged), "0.1% of the pool");
    nudged.storage_pools[1].free_capacity_kib = Some(free - 20 * 1024);
    assert!(differs_noticeably(&report, &nudged), "2% of the pool");
    let mut failed = report.clone();
    failed.volumes[0].disk_state = "Failed".into();
    assert!(differs_noticeably(&report, &failed));
}

#[test]
fn a_state_that_cannot_be_persisted_is_not_applied_and_says_why() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "files")])])));
    // A directory where the temporary file must go makes the atomic write fail, even for root.
    std::fs::create_dir(node.state.path().join(format!(".{DESIRED_STATE_FILE}.tmp"))).unwrap();
    let answer = node.apply(node.full(
        2,
        vec![
            resource("web", &[(0, 4096, "files")]),
            resource("db", &[(0, 4096, "files")]),
        ],
    ));
    let SatelliteMessage::NotApplied {
        generation,
        reason,
        report,
    } = answer
    else {
        panic!("expected NotApplied, got {answer:?}");
    };
    assert_eq!(generation, 2);
    assert!(
        reason.contains("could not persist desired state generation 2"),
        "{reason}"
    );
    // Still at generation 1, and nothing of generation 2 was created.
    assert_eq!(report.generation, Some(1));
    assert!(
        report.volumes.iter().all(|v| v.resource == "web"),
        "{report:?}"
    );
}

#[test]
fn a_volume_that_cannot_be_deleted_is_reported_on_the_node() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "files")])])));
    node.host.fail_matching(
        "rm --force",
        1,
        "rm: cannot remove: Device or resource busy",
    );
    let (_, report) = applied(node.apply(node.full(2, Vec::new())));
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(
        report.errors[0].contains("could not be deleted"),
        "{:?}",
        report.errors
    );
    assert!(
        report.errors[0].contains("Device or resource busy"),
        "{:?}",
        report.errors
    );
    // Retried at the next convergence, and once the cause is gone so is the error.
    node.host.clear_failures();
    let (_, report) = applied(node.apply(node.full(3, Vec::new())));
    assert!(report.errors.is_empty(), "{report:?}");
}
