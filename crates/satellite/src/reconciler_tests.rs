//! The reconciler against the simulating fake host: golden command sequences for create, grow
//! and delete; that only explicit deletions delete, and only volumes of the named identity;
//! refusals of stale, conflicting and volume-dropping states; orphans and the operator's
//! commands; missing volumes; pool identities; failed creates; name migration; deltas,
//! interrupted creates, restarts and unprompted reports; deltas that converge only what they
//! name, taken together when queued, and the full pass that finds drift.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferrite_proto::{
    DesiredState, NodeCommand, NodeReport, PoolSpec, ResourceSpec, SatelliteMessage, Stamp,
    StateRefusal, VolumeSpec, content_digest,
};
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
            epoch: 0,
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

    /// A controller session of the node registration `node_uuid`.
    fn connect(&mut self, node_uuid: &str) -> UnboundedReceiver<SatelliteMessage> {
        let (outbox, inbox) = unbounded_channel();
        self.reconciler.handle(Event::ControllerConnected {
            node_name: "node1".into(),
            node_uuid: node_uuid.into(),
            outbox,
        });
        inbox
    }

    fn command(&mut self, command: NodeCommand) -> Result<String, String> {
        let (outbox, mut inbox) = unbounded_channel();
        self.reconciler.handle(Event::Command {
            request_id: 7,
            command,
            reply: outbox,
        });
        match inbox.try_recv().unwrap() {
            SatelliteMessage::CommandDone {
                request_id: 7,
                result,
            } => result,
            other => panic!("expected CommandDone, got {other:?}"),
        }
    }

    /// Restarts the reconciler on the same state directory and host.
    fn restart(&mut self) {
        // Free the state directory lock first, as a process exit would.
        let placeholder = Node::new();
        let old = std::mem::replace(&mut self.reconciler, placeholder.reconciler);
        drop(old);
        self.reconciler = load(&self.host, self.state.path(), all_supported());
    }

    /// Stops the reconciler as a satellite that stops does, then restarts it.
    fn stop_and_restart(&mut self) {
        self.reconciler.stop();
        self.restart();
    }

    fn file(&self, name: &str) -> std::path::PathBuf {
        self.pool_dir.path().join(name)
    }
}

fn pool(name: &str, kind: ProviderKind, backing: &str) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        uuid: format!("uuid-of-{name}"),
        provider_kind: kind,
        pool_name: backing.into(),
        props: BTreeMap::new(),
    }
}

/// The identity of volume `number` of the current definition named `name`.
fn identity(name: &str, number: u16) -> String {
    format!("vd-{}-{number}", name.to_lowercase())
}

fn resource(name: &str, volumes: &[(u16, u64, &str)]) -> ResourceSpec {
    ResourceSpec {
        replication: None,
        snapshots: Vec::new(),
        suspend_io: false,
        name: name.into(),
        uuid: format!("rsc-{}", name.to_lowercase()),
        layers: vec![LayerKind::Storage],
        diskless: false,
        deleting: false,
        inactive: false,
        volumes: volumes
            .iter()
            .map(|(number, size, pool)| VolumeSpec {
                minor: None,
                restore_from: None,
                volume_number: *number,
                identity: identity(name, *number),
                size_kib: *size,
                storage_pool: pool.to_string(),
                deleting: false,
            })
            .collect(),
    }
}

/// The same resource, being deleted.
fn deleting(mut resource: ResourceSpec) -> ResourceSpec {
    resource.deleting = true;
    resource
}

/// The same resource with its volumes under other identities: a definition of the same name
/// made anew.
fn reborn(mut resource: ResourceSpec) -> ResourceSpec {
    for volume in &mut resource.volumes {
        volume.identity = format!("{}-reborn", volume.identity);
    }
    resource.uuid = format!("{}-reborn", resource.uuid);
    resource
}

fn diskless(name: &str) -> ResourceSpec {
    ResourceSpec {
        replication: None,
        snapshots: Vec::new(),
        suspend_io: false,
        diskless: true,
        ..resource(name, &[(0, 4096, "DfltDisklessStorPool")])
    }
}

fn refused(message: SatelliteMessage) -> (u64, StateRefusal, NodeReport) {
    match message {
        SatelliteMessage::NotApplied {
            generation,
            refusal,
            report,
        } => (generation, refusal, report),
        other => panic!("expected NotApplied, got {other:?}"),
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
            ("tiebreaker", 0, "Diskless", None, None),
            ("web", 0, "UpToDate", Some("/dev/loop0"), Some(10240)),
            ("web", 1, "UpToDate", Some("/dev/vg0/web_00001"), Some(8192)),
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
            ("DfltDisklessStorPool", true, false),
            ("files", true, true),
            ("lvm", true, true),
        ]
    );
    assert_eq!(
        report.storage_pools[2].free_capacity_kib,
        Some((1 << 20) - 8192)
    );

    // Both volumes are in the ledger; the diskless one has nothing to own.
    let owned: Vec<_> = node
        .reconciler
        .ledger()
        .volumes
        .iter()
        .map(|e| {
            (
                e.backing_name().to_string(),
                e.identity.clone().unwrap(),
                e.progress,
            )
        })
        .collect();
    assert_eq!(
        owned,
        [
            (
                "web_00000".to_string(),
                identity("web", 0),
                Progress::Created
            ),
            (
                "web_00001".to_string(),
                identity("web", 1),
                Progress::Created
            )
        ]
    );
    assert!(report.orphans.is_empty());
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
fn the_full_state_the_node_already_holds_is_answered_without_a_pass() {
    let mut node = Node::new();
    let web = resource("web", &[(0, 10240, "files"), (1, 8192, "lvm")]);
    let (_, first) = applied(node.apply(node.full(1, vec![web.clone()])));
    node.host.take_commands();
    // A restarted controller sends every node its full state at once, under a new generation.
    // What the node holds already is answered from the last pass: nothing runs on the host.
    let (generation, again) = applied(node.apply(node.full(2, vec![web.clone()])));
    assert_eq!(generation, 2);
    assert_eq!(node.host.take_commands(), Vec::<String>::new());
    assert_eq!(first.volumes, again.volumes);
    // The new stamp is durable all the same.
    node.restart();
    assert_eq!(node.reconciler.generation(), Some(2));
    node.reconciler.converge();
    node.host.take_commands();
    // A full state that differs gets its pass.
    let db = resource("db", &[(0, 4096, "lvm")]);
    let (_, changed) = applied(node.apply(node.full(3, vec![web, db])));
    assert!(!node.host.take_changes().is_empty());
    assert_eq!(changed.volumes.len(), 3);
}

#[test]
fn the_state_the_node_holds_is_taken_again_by_its_digest() {
    let mut node = Node::new();
    let web = resource("web", &[(0, 10240, "files"), (1, 8192, "lvm")]);
    let (_, first) = applied(node.apply(node.full(1, vec![web.clone()])));
    node.host.take_commands();
    // What the Welcome to a controller of the same registration says: the stamp, and the
    // digest of the full state that controller would send.
    let held = node.reconciler.held_state("").unwrap();
    assert_eq!(
        held.stamp,
        Stamp {
            epoch: 0,
            generation: 1
        }
    );
    let restarted = node.full(2, vec![web.clone()]);
    assert_eq!(
        held.digest,
        content_digest(&restarted.storage_pools, &restarted.resources)
    );
    // Another registration of the node is not told: its full state has checks of its own.
    assert!(node.reconciler.held_state("another-registration").is_none());

    // The same state under the restarted controller's stamp: taken and answered as that full
    // state is, from the last pass, with nothing run on the host.
    let stamp = |generation| Stamp {
        epoch: 0,
        generation,
    };
    let (generation, again) = applied(node.reconciler.apply_same(stamp(2), &held.digest));
    assert_eq!(generation, 2);
    assert_eq!(node.host.take_commands(), Vec::<String>::new());
    assert_eq!(first.volumes, again.volumes);
    // Deltas build on it, and the new stamp is durable.
    let db = resource("db", &[(0, 4096, "lvm")]);
    let (generation, _) = applied(node.apply(delta_of(&node, 3, 2, vec![db.clone()], &[])));
    assert_eq!(generation, 3);
    node.restart();
    assert_eq!(node.reconciler.generation(), Some(3));

    // A digest the node's state does not have: the full state is asked for, nothing changes.
    let held = node.reconciler.held_state("").unwrap();
    match node.reconciler.apply_same(stamp(4), "not-the-digest") {
        SatelliteMessage::NeedFullState { have_generation } => {
            assert_eq!(have_generation, Some(3))
        }
        other => panic!("expected NeedFullState, got {other:?}"),
    }
    // A stamp older than the node's: refused as the full state would be.
    match node.reconciler.apply_same(stamp(2), &held.digest) {
        SatelliteMessage::NotApplied {
            refusal: StateRefusal::Older { .. },
            ..
        } => {}
        other => panic!("expected NotApplied (older), got {other:?}"),
    }
    assert_eq!(node.reconciler.generation(), Some(3));
    // The same stamp: taken (a controller that reconnects without a change in between).
    let (generation, _) = applied(node.reconciler.apply_same(stamp(3), &held.digest));
    assert_eq!(generation, 3);
    assert_eq!(node.reconciler.desired().unwrap().resource_count(), 2);
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
fn only_volumes_the_satellite_created_are_deleted_and_only_when_asked() {
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

    // Both resources are deleted: only our volumes go, and both deletions are done.
    let (_, report) = applied(node.apply(node.full(
        2,
        vec![
            deleting(resource("web", &[(0, 10240, "files"), (1, 8192, "lvm")])),
            deleting(resource("other", &[(0, 4096, "lvm"), (1, 4, "files")])),
        ],
    )));
    assert!(report.volumes.is_empty(), "{report:?}");
    assert_eq!(
        node.host.take_changes(),
        [
            "losetup --detach /dev/loop0".to_string(),
            format!("rm --force {dir}/web_00000.img"),
            "lvremove -f vg0/web_00001".to_string(),
        ]
    );
    let deleted: Vec<_> = report
        .deleted_resources
        .iter()
        .map(|d| d.resource.as_str())
        .collect();
    assert_eq!(deleted, ["other", "web"]);
    assert_eq!(report.deleted_volumes.len(), 4);
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
        epoch: 0,
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

    // Removing web without deleting it first is refused: its volume would be forgotten.
    let (_, refusal, _) = refused(node.apply(delta(7, 6, vec![], vec!["WEB"])));
    assert!(
        matches!(refusal, StateRefusal::DropsVolumes { .. }),
        "{refusal}"
    );
    assert!(node.host.take_changes().is_empty());

    let delete_web = delta(
        7,
        6,
        vec![deleting(resource("web", &[(0, 4096, "files")]))],
        vec![],
    );
    let (_, report) = applied(node.apply(delete_web));
    assert_eq!(report.only_resources, Some(vec!["web".to_string()]));
    assert!(report.volumes.is_empty(), "web is gone: {report:?}");
    assert_eq!(report.deleted_resources.len(), 1);
    assert_eq!(
        node.host.take_changes(),
        [
            "losetup --detach /dev/loop0".to_string(),
            format!("rm --force {dir}/web_00000.img"),
        ]
    );
    let remove_web = delta(8, 7, vec![], vec!["WEB"]);
    let (_, report) = applied(node.apply(remove_web));
    assert_eq!(report.only_resources, Some(vec!["WEB".to_string()]));
    assert!(report.volumes.is_empty() && report.deleted_resources.is_empty());

    // The merged state is what was persisted.
    let persisted: serde_json::Value = persisted_desired(&node);
    assert_eq!(persisted["desired"]["generation"], 8);
    assert_eq!(persisted["desired"]["resources"][0]["name"], "db");
    assert_eq!(
        persisted["desired"]["resources"].as_array().unwrap().len(),
        1
    );

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
    assert!(error.contains("1 attempt(s)"), "{error}");
    assert!(error.contains("the partial volume was removed"), "{error}");
    let persisted: serde_json::Value = persisted_desired(&node);
    assert_eq!(persisted["desired"]["generation"], 1);
    // The volume was recorded before the create was tried, and the record went once the
    // create failed (the simulated truncate made no file, so there is nothing to remove).
    let dir = node.pool_dir();
    assert_eq!(
        node.host.take_changes(),
        [format!("truncate --size 4194304 {dir}/web_00000.img")]
    );
    let ledger: Ledger = persisted_ledger(&node);
    assert!(ledger.volumes.is_empty());
}

#[test]
fn a_failed_create_waits_longer_each_time_and_says_so() {
    let mut node = Node::new();
    node.reconciler
        .set_create_retry(Duration::from_secs(60), Duration::from_secs(600));
    node.host
        .fail_matching("lvcreate", 5, "  insufficient free space");
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    node.host.take_commands();
    // Within the wait nothing is tried, and the report says when it will be.
    let report = node.reconciler.converge();
    let error = report.volumes[0].error.as_deref().unwrap();
    assert!(error.contains("next attempt in 5"), "{error}");
    assert!(node.host.take_changes().is_empty());
    // A new desired state tries again at once.
    node.host.clear_failures();
    let (_, report) = applied(node.apply(node.full(2, vec![resource("web", &[(0, 4096, "lvm")])])));
    assert_eq!(report.volumes[0].disk_state, "UpToDate");
}

#[test]
fn a_retry_that_succeeds_is_reported_unprompted() {
    let mut node = Node::new();
    node.reconciler
        .set_create_retry(Duration::ZERO, Duration::ZERO);
    let (outbox, mut inbox): (_, UnboundedReceiver<SatelliteMessage>) = unbounded_channel();
    node.reconciler.handle(Event::ControllerConnected {
        node_name: "node1".into(),
        node_uuid: "n1".into(),
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

    // Nothing changed (the same failure again): no report.
    node.reconciler.handle(Event::Converge);
    match inbox.try_recv() {
        Err(_) => {}
        Ok(SatelliteMessage::Report { report }) => {
            // The attempt count is news; the state is still Failed.
            assert_eq!(report.volumes[0].disk_state, "Failed");
        }
        Ok(other) => panic!("unexpected {other:?}"),
    }

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
        identity: Some(identity("web", 0)),
        backing_name: Some("web_00000".into()),
        placement: None,
        storage_pool: "lvm".into(),
        progress: Progress::Creating,
        fresh_metadata: None,
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

    // And being ours, it is deleted when its deletion is asked for.
    applied(node.apply(node.full(2, vec![deleting(resource("web", &[(0, 4096, "lvm")]))])));
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

    // A state that moves the volume to a pool that does not work, or to one the state does
    // not define, would drop the volume where it is: refused, nothing done.
    let mut state = node.full(2, vec![resource("web", &[(0, 4096, "lvm")])]);
    state.storage_pools[1].pool_name = "vg_gone".into();
    let (_, refusal, _) = refused(node.apply(state));
    assert!(
        matches!(refusal, StateRefusal::DropsVolumes { .. }),
        "{refusal}"
    );
    let state = node.full(3, vec![resource("web", &[(0, 4096, "nosuchpool")])]);
    let (_, refusal, _) = refused(node.apply(state));
    assert!(
        matches!(refusal, StateRefusal::DropsVolumes { .. }),
        "{refusal}"
    );
    assert!(node.host.take_changes().is_empty());
    assert!(node.host.logical_volumes("vg0").contains_key("web_00000"));

    // The volume group is replaced by another of the same name (another disk): the pool is
    // not the one the volume was made in; nothing is created in it.
    node.host.add_volume_group("vg0", 1 << 20);
    let (_, report) = applied(node.apply(node.full(
        4,
        vec![
            resource("web", &[(0, 4096, "lvm")]),
            resource("db", &[(0, 4096, "lvm")]),
        ],
    )));
    let errors = &report
        .storage_pools
        .iter()
        .find(|p| p.name == "lvm")
        .unwrap()
        .errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("is not the storage this node's volumes were created in"),
        "{errors:?}"
    );
    assert!(
        report.volumes.iter().all(|v| v.disk_state == "Failed"),
        "{report:?}"
    );
    assert!(node.host.take_changes().is_empty());
    assert!(report.orphans.is_empty(), "web is still wanted: {report:?}");
}

#[test]
fn a_file_pool_whose_file_system_is_not_mounted_is_left_alone() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "files")])])));
    let marker = node.file(".ferrite-pool");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        "uuid-of-files"
    );
    node.host.take_commands();
    // The file system is not mounted: an empty directory, without marker or volumes.
    let mounted = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(node.pool_dir.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::rename(entry.path(), mounted.path().join(entry.file_name())).unwrap();
    }
    // The next pass finds it (a full state the node holds already is answered without one).
    let report = node.reconciler.converge();
    assert_eq!(report.volumes[0].disk_state, "Failed");
    let error = report.volumes[0].error.as_deref().unwrap();
    assert!(error.contains("no identity (no marker)"), "{error}");
    assert!(error.contains("not mounted"), "{error}");
    assert!(
        node.host.take_changes().is_empty(),
        "no empty volume is created in its place"
    );
    assert!(!node.file("web_00000.img").exists());
    // Mounted again: the volume is found and used.
    for entry in std::fs::read_dir(mounted.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::rename(entry.path(), node.pool_dir.path().join(entry.file_name())).unwrap();
    }
    let report = node.reconciler.converge();
    assert_eq!(report.volumes[0].disk_state, "UpToDate", "{report:?}");
    assert!(
        node.host
            .take_changes()
            .iter()
            .all(|c| !c.starts_with("truncate")),
        "found, not created"
    );
}

#[test]
fn a_missing_volume_is_reported_and_made_again_only_when_the_operator_says_so() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    node.host.take_commands();
    // Someone removed the LV behind the satellite's back.
    node.host.fail_matching("nothing", 0, "");
    let lvs = node.host.logical_volumes("vg0");
    assert!(lvs.contains_key("web_00000"));
    node.host.clear_failures();
    let runner: &dyn ferrite_storage::HostCommands = node.host.as_ref();
    runner
        .run(&ferrite_storage::CommandLine::new("lvremove").args(["-f", "vg0/web_00000"]))
        .unwrap();
    node.host.take_commands();
    let report = node.reconciler.converge();
    assert_eq!(report.volumes[0].disk_state, "Failed");
    let error = report.volumes[0].error.as_deref().unwrap();
    assert!(
        error.contains("was created by this node but is missing"),
        "{error}"
    );
    assert!(
        error.contains("ferrite volume recreate-missing node1 web 0"),
        "{error}"
    );
    assert!(node.host.take_changes().is_empty(), "not created again");
    // A command for another identity does nothing.
    let wrong = node.command(NodeCommand::RecreateMissing {
        resource: "web".into(),
        volume_number: 0,
        identity: "something-else".into(),
    });
    assert!(wrong.is_err(), "{wrong:?}");
    let done = node
        .command(NodeCommand::RecreateMissing {
            resource: "web".into(),
            volume_number: 0,
            identity: identity("web", 0),
        })
        .unwrap();
    assert!(done.contains("created anew, empty"), "{done}");
    assert_eq!(
        node.host.take_changes(),
        ["lvcreate -L 4096k -n web_00000 -y vg0"]
    );
    // Asked again while it exists: refused.
    let again = node.command(NodeCommand::RecreateMissing {
        resource: "web".into(),
        volume_number: 0,
        identity: identity("web", 0),
    });
    assert!(again.unwrap_err().contains("it is not missing"));
}

#[test]
fn stale_and_conflicting_states_are_refused_and_change_nothing() {
    let mut node = Node::new();
    applied(node.apply(node.full(5, vec![resource("web", &[(0, 4096, "lvm")])])));
    node.host.take_commands();
    let (generation, refusal, report) = refused(node.apply(node.full(4, vec![])));
    assert_eq!(generation, 4);
    assert!(matches!(refusal, StateRefusal::Older { .. }), "{refusal}");
    assert_eq!(report.generation, Some(5));
    // The content the node holds does not make an older stamp acceptable.
    let (_, refusal, _) =
        refused(node.apply(node.full(4, vec![resource("web", &[(0, 4096, "lvm")])])));
    assert!(matches!(refusal, StateRefusal::Older { .. }), "{refusal}");
    let (_, refusal, _) = refused(node.apply(node.full(
        5,
        vec![
            resource("web", &[(0, 4096, "lvm")]),
            resource("db", &[(0, 4096, "lvm")]),
        ],
    )));
    assert!(
        matches!(refusal, StateRefusal::Conflicting { .. }),
        "{refusal}"
    );
    assert!(node.host.take_changes().is_empty());
    assert_eq!(node.reconciler.generation(), Some(5));
    // The same state again (a controller reconnecting) is fine.
    applied(node.apply(node.full(5, vec![resource("web", &[(0, 4096, "lvm")])])));
}

#[test]
fn a_state_that_drops_volumes_is_refused_unless_the_store_was_restored() {
    let mut node = Node::new();
    applied(node.apply(node.full(
        5,
        vec![
            resource("web", &[(0, 4096, "lvm")]),
            resource("db", &[(0, 4096, "lvm")]),
        ],
    )));
    node.host.take_commands();
    // A full state without db, and without its deletion.
    let (_, refusal, _) =
        refused(node.apply(node.full(6, vec![resource("web", &[(0, 4096, "lvm")])])));
    let StateRefusal::DropsVolumes { volumes } = &refusal else {
        panic!("{refusal}");
    };
    assert_eq!(volumes, &["volume db/0 (db_00000)"]);
    // Nor may a volume be replaced by another of the same name.
    let (_, refusal, _) = refused(node.apply(node.full(
        6,
        vec![
            resource("web", &[(0, 4096, "lvm")]),
            reborn(resource("db", &[(0, 4096, "lvm")])),
        ],
    )));
    assert!(
        matches!(refusal, StateRefusal::DropsVolumes { .. }),
        "{refusal}"
    );
    assert!(node.host.take_changes().is_empty());

    // A restored store (a newer epoch, an older generation) is taken: db is kept as an orphan.
    let mut restored = node.full(3, vec![resource("web", &[(0, 4096, "lvm")])]);
    restored.epoch = 1;
    let (_, report) = applied(node.apply(restored));
    assert!(node.host.take_changes().is_empty(), "nothing deleted");
    assert_eq!(report.orphans.len(), 1, "{report:?}");
    let orphan = &report.orphans[0];
    assert_eq!(orphan.backing_name, "db_00000");
    assert_eq!(orphan.identity.as_deref(), Some(identity("db", 0).as_str()));
    assert_eq!(
        orphan.reason,
        "its resource is not in this node's desired state"
    );
    assert!(node.host.logical_volumes("vg0").contains_key("db_00000"));
    // The older epoch is now refused.
    let (_, refusal, _) =
        refused(node.apply(node.full(9, vec![resource("web", &[(0, 4096, "lvm")])])));
    assert!(matches!(refusal, StateRefusal::Older { .. }), "{refusal}");
}

#[test]
fn after_a_refused_full_state_no_delta_is_taken_until_a_full_state_is() {
    let mut node = Node::new();
    let _session = node.connect("registration-1");
    applied(node.apply(node.full(
        13,
        vec![
            resource("early", &[(0, 4096, "lvm")]),
            resource("later", &[(0, 4096, "lvm")]),
        ],
    )));
    node.host.take_changes();

    // A controller on a stale copy of its store connects: its full state at generation 13
    // (its own history) is not the node's generation 13.
    let _session = node.connect("registration-1");
    let stale = node.full(13, vec![resource("early", &[(0, 4096, "lvm")])]);
    let (_, refusal, _) = refused(node.apply(stale));
    assert!(
        matches!(refusal, StateRefusal::Conflicting { .. }),
        "{refusal}"
    );
    // Its next change is a delta on "generation 13": not the node's, so it is not merged.
    let delta = DesiredState {
        epoch: 0,
        generation: 14,
        base_generation: Some(13),
        storage_pools: node.pools(),
        resources: vec![resource("extra", &[(0, 4096, "lvm")])],
        removed_resources: Vec::new(),
    };
    assert_eq!(
        node.apply(delta.clone()),
        SatelliteMessage::NeedFullState {
            have_generation: Some(13)
        }
    );
    assert!(node.host.take_changes().is_empty(), "nothing was acted on");
    assert_eq!(node.reconciler.generation(), Some(13));
    // The full state it then sends is checked whole, and refused: it drops 'later'.
    let (_, refusal, _) = refused(node.apply(node.full(
        14,
        vec![
            resource("early", &[(0, 4096, "lvm")]),
            resource("extra", &[(0, 4096, "lvm")]),
        ],
    )));
    assert!(
        matches!(refusal, StateRefusal::DropsVolumes { .. }),
        "{refusal}"
    );
    assert_eq!(
        node.apply(delta.clone()),
        SatelliteMessage::NeedFullState {
            have_generation: Some(13)
        }
    );

    // A full state the node takes makes deltas welcome again.
    applied(node.apply(node.full(
        14,
        vec![
            resource("early", &[(0, 4096, "lvm")]),
            resource("later", &[(0, 4096, "lvm")]),
        ],
    )));
    let mut next = delta;
    next.generation = 15;
    next.base_generation = Some(14);
    let (generation, _) = applied(node.apply(next));
    assert_eq!(generation, 15);
}

#[test]
fn a_node_registered_anew_keeps_the_old_volumes_as_orphans() {
    let mut node = Node::new();
    let _session = node.connect("registration-1");
    applied(node.apply(node.full(5, vec![resource("web", &[(0, 4096, "lvm")])])));
    // Same registration, state without web: refused.
    let (_, refusal, _) = refused(node.apply(node.full(6, vec![])));
    assert!(
        matches!(refusal, StateRefusal::DropsVolumes { .. }),
        "{refusal}"
    );
    // The node was declared lost and registered again: a new UUID.
    let _session = node.connect("registration-2");
    let (_, report) = applied(node.apply(node.full(6, vec![])));
    assert_eq!(report.orphans.len(), 1);
    assert!(node.host.logical_volumes("vg0").contains_key("web_00000"));
}

#[test]
fn a_command_is_answered_after_the_report_of_what_it_did() {
    let mut node = Node::new();
    // One session: unprompted reports and answers share its outbox, in order.
    let (outbox, mut session) = unbounded_channel();
    node.reconciler.handle(Event::ControllerConnected {
        node_name: "node1".into(),
        node_uuid: "registration-1".into(),
        outbox: outbox.clone(),
    });
    applied(node.apply(node.full(5, vec![resource("web", &[(0, 4096, "lvm")])])));
    let mut restored = node.full(3, vec![]);
    restored.epoch = 1;
    let (_, report) = applied(node.apply(restored));
    let orphan = report.orphans[0].clone();
    while session.try_recv().is_ok() {}

    // The answer travels on the session, behind the report that no longer lists the orphan:
    // the controller has taken the report in when it answers the operator.
    node.reconciler.handle(Event::Command {
        request_id: 9,
        command: NodeCommand::DeleteOrphan {
            resource: orphan.resource,
            volume_number: orphan.volume_number,
            identity: orphan.identity,
            pool_name: orphan.pool_name,
        },
        reply: outbox,
    });
    match session.try_recv().unwrap() {
        SatelliteMessage::Report { report } => assert!(report.orphans.is_empty(), "{report:?}"),
        other => panic!("expected the report first, got {other:?}"),
    }
    match session.try_recv().unwrap() {
        SatelliteMessage::CommandDone {
            request_id: 9,
            result: Ok(done),
        } => assert!(
            done.contains("Deleted orphaned backing volume 'web_00000'"),
            "{done}"
        ),
        other => panic!("expected CommandDone, got {other:?}"),
    }
}

#[test]
fn a_definition_made_anew_never_gets_the_old_volume() {
    let mut node = Node::new();
    let _session = node.connect("registration-1");
    applied(node.apply(node.full(1, vec![resource("Cs", &[(0, 4096, "lvm")])])));
    node.host.take_commands();
    // The controller forgot Cs without deleting it here (say the node was restored), and a new
    // cs (the same name, compared case-insensitively) is wanted, bigger.
    let _session = node.connect("registration-2");
    let (_, report) =
        applied(node.apply(node.full(2, vec![reborn(resource("cs", &[(0, 8192, "lvm")]))])));
    assert_eq!(report.volumes[0].disk_state, "Failed");
    let error = report.volumes[0].error.as_deref().unwrap();
    assert!(
        error.contains("taken by an earlier volume of the same name"),
        "{error}"
    );
    assert_eq!(report.orphans.len(), 1);
    assert!(
        report.orphans[0]
            .reason
            .contains("earlier volume of the same name"),
        "{:?}",
        report.orphans[0]
    );
    assert!(node.host.take_changes().is_empty(), "the old data stays");
    assert_eq!(node.host.logical_volumes("vg0")["cs_00000"], 4096);

    // The operator removes the orphan; the new volume is made, empty and of its own size.
    let orphan = report.orphans[0].clone();
    let done = node
        .command(NodeCommand::DeleteOrphan {
            resource: orphan.resource.clone(),
            volume_number: orphan.volume_number,
            identity: orphan.identity.clone(),
            pool_name: orphan.pool_name.clone(),
        })
        .unwrap();
    assert!(
        done.contains("Deleted orphaned backing volume 'cs_00000'"),
        "{done}"
    );
    assert_eq!(
        node.host.take_changes(),
        [
            "lvremove -f vg0/cs_00000",
            "lvcreate -L 8192k -n cs_00000 -y vg0"
        ]
    );
    // A wanted volume is no orphan: the command refuses it.
    let refused_command = node.command(NodeCommand::DeleteOrphan {
        resource: "cs".into(),
        volume_number: 0,
        identity: Some(identity("cs", 0) + "-reborn"),
        pool_name: "vg0".into(),
    });
    assert!(refused_command.unwrap_err().contains("has no orphan"));
    assert_eq!(node.host.logical_volumes("vg0")["cs_00000"], 8192);
}

#[test]
fn a_deletion_of_another_identity_leaves_the_volume_alone() {
    let mut node = Node::new();
    let _session = node.connect("registration-1");
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    node.host.take_commands();
    let _session = node.connect("registration-2");
    // A deletion of a web of another identity: done at once, nothing of that identity here.
    let (_, report) = applied(node.apply(node.full(
        2,
        vec![deleting(reborn(resource("web", &[(0, 4096, "lvm")])))],
    )));
    assert!(node.host.take_changes().is_empty());
    assert_eq!(report.deleted_resources.len(), 1);
    assert_eq!(report.orphans.len(), 1, "the old web is kept: {report:?}");
}

#[test]
fn volumes_named_before_case_folding_are_renamed_and_kept() {
    let mut node = Node::new();
    let dir = node.pool_dir();
    // Written by an older satellite: a format 1 ledger and the name as spelled.
    std::fs::write(format!("{dir}/Web_00000.img"), vec![7u8; 4096]).unwrap();
    std::fs::write(
        node.state.path().join(LEDGER_FILE),
        serde_json::to_vec(&serde_json::json!({
            "format_version": 1,
            "volumes": [{"resource": "Web", "volume_number": 0, "provider_kind": "FILE_THIN",
                         "pool_name": dir, "storage_pool": "files", "progress": "created"}]
        }))
        .unwrap(),
    )
    .unwrap();
    // Its desired state from before identities.
    let mut old = node.full(1, vec![resource("Web", &[(0, 4, "files")])]);
    old.resources[0].volumes[0].identity = String::new();
    std::fs::write(
        node.state.path().join(DESIRED_STATE_FILE),
        serde_json::to_vec(&serde_json::json!({"format_version": 1, "desired": old})).unwrap(),
    )
    .unwrap();
    node.restart();
    let report = node.reconciler.converge();
    assert_eq!(report.volumes[0].disk_state, "UpToDate", "{report:?}");
    assert_eq!(
        node.host.take_changes(),
        [
            format!(
                "mv --no-clobber --no-target-directory {dir}/Web_00000.img {dir}/web_00000.img"
            ),
            format!("losetup --find --show {dir}/web_00000.img"),
        ]
    );
    assert_eq!(
        std::fs::read(format!("{dir}/web_00000.img")).unwrap(),
        vec![7u8; 4096]
    );
    // The first state with identities names it.
    let (_, report) = applied(node.apply(node.full(2, vec![resource("Web", &[(0, 4, "files")])])));
    assert!(report.orphans.is_empty(), "{report:?}");
    let entry = &node.reconciler.ledger().volumes[0];
    assert_eq!(entry.identity.as_deref(), Some(identity("web", 0).as_str()));
    assert_eq!(entry.backing_name.as_deref(), Some("web_00000"));
}

#[test]
fn a_volume_created_without_identity_after_a_look_found_none_still_takes_one() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("app", &[(0, 4, "files")])])));
    // A state that names no identity (from an older controller); every state's look for
    // volumes without identity has found none so far.
    let mut nameless = resource("web", &[(0, 4, "files")]);
    nameless.volumes[0].identity = String::new();
    let state = node.full(2, vec![resource("app", &[(0, 4, "files")]), nameless]);
    applied(node.apply(state));
    let web = |node: &Node| {
        node.reconciler
            .ledger()
            .volumes
            .iter()
            .find(|e| e.key.resource.as_str() == "web")
            .cloned()
            .unwrap()
    };
    assert_eq!(web(&node).identity, None);
    // The next state names it: the same volume, now with its identity, and no orphan.
    let state = node.full(
        3,
        vec![
            resource("app", &[(0, 4, "files")]),
            resource("web", &[(0, 4, "files")]),
        ],
    );
    let (_, report) = applied(node.apply(state));
    assert!(report.orphans.is_empty(), "{report:?}");
    assert_eq!(web(&node).identity, Some(identity("web", 0)));
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
        epoch: 0,
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
fn toggling_a_resource_diskless_deletes_its_backing_volume_when_asked() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    node.host.take_commands();
    // Diskless without the deletion of the disk: refused.
    let (_, refusal, _) = refused(node.apply(node.full(2, vec![diskless("web")])));
    assert!(
        matches!(refusal, StateRefusal::DropsVolumes { .. }),
        "{refusal}"
    );
    let mut removing = resource("web", &[(0, 4096, "lvm")]);
    removing.diskless = true;
    removing.volumes[0].deleting = true;
    let (_, report) = applied(node.apply(node.full(2, vec![removing])));
    assert_eq!(report.volumes[0].disk_state, "Diskless");
    assert_eq!(report.deleted_volumes.len(), 1);
    assert!(report.deleted_resources.is_empty(), "the resource stays");
    assert_eq!(node.host.take_changes(), ["lvremove -f vg0/web_00000"]);
    // Then plainly diskless: nothing held, nothing dropped.
    let (_, report) = applied(node.apply(node.full(3, vec![diskless("web")])));
    assert_eq!(report.volumes[0].disk_state, "Diskless");
}

#[test]
fn small_capacity_changes_are_not_news() {
    let mut node = Node::new();
    let (_, report) = applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    let mut nudged = report.clone();
    let lvm = nudged
        .storage_pools
        .iter()
        .position(|p| p.name == "lvm")
        .unwrap();
    let free = nudged.storage_pools[lvm].free_capacity_kib.unwrap();
    nudged.storage_pools[lvm].free_capacity_kib = Some(free - 1024);
    assert!(!differs_noticeably(&report, &nudged), "0.1% of the pool");
    nudged.storage_pools[lvm].free_capacity_kib = Some(free - 20 * 1024);
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
    let (generation, refusal, report) = refused(answer);
    assert_eq!(generation, 2);
    assert!(refusal.is_transient());
    let reason = refusal.to_string();
    assert!(
        reason.contains("could not persist the desired state: generation 2"),
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
    let gone = || vec![deleting(resource("web", &[(0, 4096, "files")]))];
    let (_, report) = applied(node.apply(node.full(2, gone())));
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.deleted_resources.is_empty() && report.deleted_volumes.is_empty());
    assert!(
        report.orphans.is_empty(),
        "a volume being deleted is no orphan"
    );
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
    let (_, report) = applied(node.apply(node.full(3, gone())));
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.deleted_resources.len(), 1);
}

#[test]
fn a_stack_the_satellite_cannot_apply_creates_nothing() {
    let mut node = Node::new();
    let mut mirrored = resource("web", &[(0, 4096, "lvm")]);
    mirrored.layers = vec![LayerKind::Mirror, LayerKind::Storage];
    let (_, report) = applied(node.apply(node.full(1, vec![mirrored.clone()])));
    let error = report.volumes[0].error.as_deref().unwrap();
    assert!(error.contains("does not apply the MIRROR layer"), "{error}");
    assert!(node.host.take_changes().is_empty());
    // Deleting it needs nothing of the layer.
    let (_, report) = applied(node.apply(node.full(2, vec![deleting(mirrored)])));
    assert_eq!(report.deleted_resources.len(), 1);
}

#[test]
fn a_resource_placed_again_never_takes_over_the_old_placements_volume() {
    let mut node = Node::new();
    let _session = node.connect("registration-1");
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "lvm")])])));
    node.host.take_commands();
    // The node was declared lost and registered again; the definition is the same (same volume
    // identity) but the resource placed on the new registration is another placement.
    let _session = node.connect("registration-2");
    let mut again = resource("web", &[(0, 4096, "lvm")]);
    again.uuid = "rsc-web-placed-again".into();
    let (_, report) = applied(node.apply(node.full(2, vec![again])));
    assert_eq!(report.volumes[0].disk_state, "Failed");
    let error = report.volumes[0].error.as_deref().unwrap();
    assert!(
        error.contains("an earlier placement of this resource here"),
        "{error}"
    );
    assert_eq!(report.orphans.len(), 1);
    assert!(
        report.orphans[0].reason.contains("earlier placement"),
        "{:?}",
        report.orphans[0]
    );
    assert!(
        node.host.take_changes().is_empty(),
        "the old data is left alone"
    );
}

/// A replication engine that records what it is asked, with how many host commands had run
/// by then (to check the order against the storage's commands), and refuses `down` while
/// `in_use` is set.
struct FakeEngine {
    host: Arc<FakeHost>,
    calls: Arc<std::sync::Mutex<Vec<(usize, String)>>>,
    in_use: Arc<std::sync::atomic::AtomicBool>,
    /// Why `suspend_io` fails, if it does.
    suspend_fails: Option<String>,
    /// Confirmations of a hold answered before the hold ends (the lease); `None`: never ends.
    confirms_left: Arc<std::sync::Mutex<Option<usize>>>,
}

impl crate::replication::ReplicationDriver for FakeEngine {
    fn engine(&self) -> ferrite_proto::ReplicationEngine {
        ferrite_proto::ReplicationEngine::Mirror
    }

    fn backing_kib(
        &self,
        usable_kib: u64,
        _replication: &ferrite_proto::ReplicationSpec,
        _volumes: &[u16],
    ) -> Result<u64, String> {
        if usable_kib > 1 << 40 {
            return Err(format!(
                "{usable_kib} KiB is too large for the engine's metadata"
            ));
        }
        Ok(usable_kib + 1024)
    }

    fn begin_pass(&mut self) {}

    fn apply(&mut self, member: &crate::replication::Member) -> Result<(), String> {
        let volumes: Vec<String> = member
            .volumes
            .iter()
            .map(|v| {
                let backing = v
                    .backing
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "diskless".into());
                format!("{}:{}:{backing}", v.number, v.usable_kib)
            })
            .collect();
        self.calls.lock().unwrap().push((
            self.host.commands().len(),
            format!("apply {} {}", member.resource, volumes.join(",")),
        ));
        Ok(())
    }

    fn write_fresh_metadata(
        &mut self,
        member: &crate::replication::Member,
        volume: &crate::replication::MemberVolume,
        fresh: crate::replication::FreshMetadata,
    ) -> Result<(), String> {
        self.calls.lock().unwrap().push((
            self.host.commands().len(),
            format!(
                "fresh-metadata {} {} {:?}",
                member.resource, volume.number, fresh.generation
            ),
        ));
        Ok(())
    }

    fn down(&mut self, resource: &str) -> Result<(), String> {
        self.calls
            .lock()
            .unwrap()
            .push((self.host.commands().len(), format!("down {resource}")));
        if self.in_use.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!("'{resource}' is in use on this node"));
        }
        Ok(())
    }

    fn suspend_io(&mut self, resource: &str) -> Result<(), String> {
        self.calls
            .lock()
            .unwrap()
            .push((self.host.commands().len(), format!("suspend-io {resource}")));
        match &self.suspend_fails {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    fn confirm_suspended(&mut self, resource: &str) -> Result<(), String> {
        self.calls
            .lock()
            .unwrap()
            .push((self.host.commands().len(), format!("confirm-io {resource}")));
        match &mut *self.confirms_left.lock().unwrap() {
            Some(0) => Err(format!("the hold of '{resource}' ended at its lease")),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn resume_io(&mut self, resource: &str) -> Result<(), String> {
        self.calls
            .lock()
            .unwrap()
            .push((self.host.commands().len(), format!("resume-io {resource}")));
        Ok(())
    }

    fn report(&self, resource: &str, error: Option<String>) -> ferrite_proto::ReplicationReport {
        ferrite_proto::ReplicationReport {
            resource: resource.to_string(),
            engine: ferrite_proto::ReplicationEngine::Mirror,
            role: ferrite_proto::Role::Secondary,
            in_use: self.in_use.load(std::sync::atomic::Ordering::SeqCst),
            quorum: true,
            volumes: Vec::new(),
            peers: Vec::new(),
            error,
            may_promote: None,
            promotion_score: None,
        }
    }
}

type EngineCalls = Arc<std::sync::Mutex<Vec<(usize, String)>>>;

fn with_engine(node: &mut Node) -> (EngineCalls, Arc<std::sync::atomic::AtomicBool>) {
    with_engine_suspending(node, None)
}

fn with_engine_suspending(
    node: &mut Node,
    suspend_fails: Option<&str>,
) -> (EngineCalls, Arc<std::sync::atomic::AtomicBool>) {
    let calls: EngineCalls = Arc::default();
    let in_use = Arc::new(std::sync::atomic::AtomicBool::new(false));
    node.reconciler.add_replication_driver(Box::new(FakeEngine {
        host: node.host.clone(),
        calls: calls.clone(),
        in_use: in_use.clone(),
        suspend_fails: suspend_fails.map(str::to_string),
        confirms_left: Arc::default(),
    }));
    (calls, in_use)
}

/// The engine's suspend-io and resume-io calls, in order.
fn io_calls(calls: &EngineCalls) -> Vec<String> {
    calls
        .lock()
        .unwrap()
        .iter()
        .map(|(_, c)| c.clone())
        .filter(|c| c.contains("-io "))
        .collect()
}

fn with_snapshot(mut resource: ResourceSpec, name: &str) -> ResourceSpec {
    resource.snapshots.push(ferrite_proto::SnapshotSpec {
        name: name.into(),
        uuid: format!("snap-{name}"),
        deleting: false,
        volumes: vec![ferrite_proto::SnapshotVolumeSpec {
            volume_number: 0,
            identity: identity(&resource.name, 0),
        }],
        storage_pool: "files".into(),
        requested_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        cut: ferrite_proto::SnapshotCut::Take,
    });
    resource
}

/// The resources whose writes the report says the node holds.
fn held(report: &NodeReport) -> Vec<&str> {
    report
        .io_suspended
        .iter()
        .map(|h| h.resource.as_str())
        .collect()
}

#[test]
fn a_hold_that_began_once_the_cut_was_under_way_takes_nothing() {
    use ferrite_proto::SnapshotCut::Take;
    // This satellite restarted during the cut: the first state it sees asks to take already.
    let mut node = Node::new();
    let (calls, _) = with_engine(&mut node);
    let web = replicated(resource("web", &[(0, 10240, "files")]));
    applied(node.apply(node.full(1, vec![web.clone()])));
    let snap = at_cut(with_snapshot(web, "s1"), Take);
    let (_, report) = applied(node.apply(node.full(2, vec![holding(snap, true)])));
    assert_eq!(held(&report), ["web"]);
    let error = report.snapshots[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("began after the cut"), "{report:?}");
    assert!(!node.host.commands().iter().any(|c| c.starts_with("cp ")));
    assert_eq!(io_calls(&calls), ["suspend-io web"]);
}

/// `resource` with its writes held for a cut (or not).
fn holding(mut resource: ResourceSpec, hold: bool) -> ResourceSpec {
    resource.suspend_io = hold;
    resource
}

/// `resource` with every snapshot at `cut`.
fn at_cut(mut resource: ResourceSpec, cut: ferrite_proto::SnapshotCut) -> ResourceSpec {
    for snapshot in &mut resource.snapshots {
        snapshot.cut = cut;
    }
    resource
}

#[test]
fn a_replicated_snapshot_is_taken_only_while_the_writes_are_held_for_the_cut() {
    use ferrite_proto::SnapshotCut::{Take, Wait};
    let mut node = Node::new();
    let (calls, _) = with_engine(&mut node);
    let web = replicated(resource("web", &[(0, 10240, "files")]));
    applied(node.apply(node.full(1, vec![web.clone()])));
    calls.lock().unwrap().clear();

    // 1. Hold the writes; the snapshot waits.
    let snap = with_snapshot(web.clone(), "s1");
    let (_, report) =
        applied(node.apply(node.full(2, vec![holding(at_cut(snap.clone(), Wait), true)])));
    assert_eq!(held(&report), ["web"]);
    assert!(
        report.snapshots[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("waiting")),
        "{report:?}"
    );
    assert!(!node.host.commands().iter().any(|c| c.starts_with("cp ")));
    assert_eq!(io_calls(&calls), ["suspend-io web"]);

    // 2. Take it: confirmed (and flushed) right before and right after the copy.
    calls.lock().unwrap().clear();
    let (_, report) =
        applied(node.apply(node.full(3, vec![holding(at_cut(snap.clone(), Take), true)])));
    assert_eq!(report.snapshots[0].error, None, "{report:?}");
    assert_eq!(held(&report), ["web"]);
    let confirms: Vec<usize> = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c)| c.starts_with("confirm"))
        .map(|(at, _)| *at)
        .collect();
    // The pass checks the hold stands, then confirms right before and right after the copy.
    assert_eq!(
        io_calls(&calls),
        ["confirm-io web", "confirm-io web", "confirm-io web"]
    );
    let copied = position(&node.host, "cp --reflink=always");
    assert!(
        confirms[1] <= copied && copied < confirms[2],
        "{confirms:?} around the copy at {copied}"
    );

    // 3. The writes go on; the snapshot stays.
    calls.lock().unwrap().clear();
    let (_, report) = applied(node.apply(node.full(4, vec![holding(snap.clone(), false)])));
    assert!(held(&report).is_empty());
    assert_eq!(report.snapshots[0].error, None, "{report:?}");
    assert_eq!(io_calls(&calls), ["resume-io web"]);
}

#[test]
fn a_node_that_cannot_hold_the_writes_takes_nothing() {
    use ferrite_proto::SnapshotCut::{Abandoned, Take, Wait};
    let mut node = Node::new();
    let (calls, _) = with_engine_suspending(&mut node, Some("web: State change failed"));
    let web = replicated(resource("web", &[(0, 10240, "files")]));
    applied(node.apply(node.full(1, vec![web.clone()])));
    calls.lock().unwrap().clear();
    let snap = with_snapshot(web, "s1");
    let (_, report) =
        applied(node.apply(node.full(2, vec![holding(at_cut(snap.clone(), Wait), true)])));
    assert!(held(&report).is_empty());
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("resource 'web'") && e.contains("State change failed")),
        "{report:?}"
    );
    // Asked to take it all the same: not without the hold.
    let (_, report) =
        applied(node.apply(node.full(3, vec![holding(at_cut(snap.clone(), Take), true)])));
    let error = report.snapshots[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("not held"), "{report:?}");
    assert!(
        !node.host.commands().iter().any(|c| c.starts_with("cp ")),
        "no copy without the cut: {:?}",
        node.host.commands()
    );
    // An abandoned cut is never taken.
    let (_, report) = applied(node.apply(node.full(4, vec![at_cut(snap, Abandoned)])));
    assert!(report.snapshots[0].error.is_some(), "{report:?}");
    assert!(!node.host.commands().iter().any(|c| c.starts_with("cp ")));
    assert!(!io_calls(&calls).iter().any(|c| c.starts_with("confirm")));
}

#[test]
fn a_snapshot_whose_hold_ended_during_the_copy_is_discarded() {
    use ferrite_proto::SnapshotCut::{Take, Wait};
    let mut node = Node::new();
    let (_calls, _) = with_engine(&mut node);
    let confirms = {
        // The engine answers the pass's check and the confirmation before the copy, not the
        // one after.
        let driver_confirms: Arc<std::sync::Mutex<Option<usize>>> =
            Arc::new(std::sync::Mutex::new(Some(2)));
        node.reconciler.add_replication_driver(Box::new(FakeEngine {
            host: node.host.clone(),
            calls: Arc::default(),
            in_use: Arc::default(),
            suspend_fails: None,
            confirms_left: driver_confirms.clone(),
        }));
        driver_confirms
    };
    let web = replicated(resource("web", &[(0, 10240, "files")]));
    applied(node.apply(node.full(1, vec![web.clone()])));
    let snap = with_snapshot(web, "s1");
    applied(node.apply(node.full(2, vec![holding(at_cut(snap.clone(), Wait), true)])));
    let (_, report) =
        applied(node.apply(node.full(3, vec![holding(at_cut(snap.clone(), Take), true)])));
    assert_eq!(*confirms.lock().unwrap(), Some(0));
    let error = report.snapshots[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("not kept"), "{report:?}");
    // It stays failed, and nothing of it is left to restore from.
    let (_, report) = applied(node.apply(node.full(4, vec![holding(snap, false)])));
    let error = report.snapshots[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("not kept"), "{report:?}");
    assert!(
        node.host
            .commands()
            .iter()
            .any(|c| c.starts_with("rm ") || c.contains("delete")),
        "the copy is deleted: {:?}",
        node.host.commands()
    );
}

fn replicated(mut resource: ResourceSpec) -> ResourceSpec {
    resource.layers = vec![LayerKind::Mirror, LayerKind::Storage];
    resource.replication = Some(ferrite_proto::ReplicationSpec {
        engine: ferrite_proto::ReplicationEngine::Mirror,
        node_id: 0,
        address: "127.0.0.1".parse().unwrap(),
        port: 7000,
        secret: "s3cret".into(),
        peers: Vec::new(),
        options: BTreeMap::new(),
        volume_options: BTreeMap::new(),
        connection_options: BTreeMap::new(),
    });
    resource
}

/// Where in the host's command log `needle` first appears.
fn position(host: &FakeHost, needle: &str) -> usize {
    host.commands()
        .iter()
        .position(|c| c.contains(needle))
        .unwrap_or_else(|| panic!("'{needle}' was not run: {:?}", host.commands()))
}

#[test]
fn a_replicated_volume_is_made_bottom_up_and_removed_top_down() {
    let mut node = Node::new();
    let (calls, in_use) = with_engine(&mut node);
    let web = replicated(resource("web", &[(0, 10240, "files")]));

    // Up: the backing volume holds the engine's metadata too, and exists before the engine
    // is asked to use it.
    let (_, report) = applied(node.apply(node.full(1, vec![web.clone()])));
    let created = position(&node.host, "truncate --size");
    assert!(
        node.host.commands()[created].contains(&format!("--size {}", (10240 + 1024) * 1024)),
        "{:?}",
        node.host.commands()
    );
    let applied_at = calls.lock().unwrap()[0].clone();
    assert!(applied_at.0 > created, "{applied_at:?} before the create");
    assert!(
        applied_at.1.starts_with("apply web 0:10240:/dev/loop"),
        "{applied_at:?}"
    );
    assert_eq!(report.replication.len(), 1);
    assert_eq!(report.replication[0].error, None);

    // Deleted while in use: the engine refuses to let go, so the backing volume stays and the
    // deletion is not confirmed.
    in_use.store(true, std::sync::atomic::Ordering::SeqCst);
    let (_, report) = applied(node.apply(node.full(2, vec![deleting(web.clone())])));
    assert!(node.file("web_00000.img").exists());
    assert!(report.deleted_resources.is_empty(), "{report:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("not released") && e.contains("in use")),
        "{:?}",
        report.errors
    );

    // No longer in use: down first, then the backing volume goes.
    in_use.store(false, std::sync::atomic::Ordering::SeqCst);
    let (_, report) = applied(node.apply(node.full(3, vec![deleting(web)])));
    let down_at = calls
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(_, call)| call == "down web")
        .cloned()
        .expect("down");
    let deleted = position(&node.host, "rm --force");
    assert!(down_at.0 <= deleted, "down {down_at:?} after the delete");
    assert!(!node.file("web_00000.img").exists());
    assert_eq!(report.deleted_resources.len(), 1, "{report:?}");
}

#[test]
fn a_member_losing_its_disk_is_diskless_in_the_engine_before_the_disk_goes() {
    let mut node = Node::new();
    let (calls, _) = with_engine(&mut node);
    let web = replicated(resource("web", &[(0, 10240, "files")]));
    applied(node.apply(node.full(1, vec![web.clone()])));
    let mut toggled = web;
    toggled.diskless = true;
    toggled.volumes[0].deleting = true;
    let (_, report) = applied(node.apply(node.full(2, vec![toggled])));
    let (at, call) = calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(call, "apply web 0:10240:diskless");
    assert!(at <= position(&node.host, "rm --force"));
    assert!(!node.file("web_00000.img").exists());
    assert_eq!(report.deleted_volumes.len(), 1, "{report:?}");
}

#[test]
fn a_replicated_stack_without_its_engine_makes_nothing() {
    let mut node = Node::new();
    let web = replicated(resource("web", &[(0, 10240, "files")]));
    let (_, report) = applied(node.apply(node.full(1, vec![web])));
    assert!(!node.file("web_00000.img").exists());
    assert!(
        report.volumes[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("does not apply the MIRROR layer")),
        "{report:?}"
    );
}

/// `resource`'s volume 0 restored from snapshot `snapshot` of `source`, starting at
/// `generation` when replicated.
fn restored_from(
    mut resource: ResourceSpec,
    source: &str,
    snapshot: &str,
    generation: Option<u64>,
) -> ResourceSpec {
    resource.volumes[0].restore_from = Some(ferrite_proto::RestoreSpec {
        resource: source.into(),
        snapshot: snapshot.into(),
        volume_number: 0,
        identity: identity(source, 0),
        fresh_generation: generation,
    });
    resource
}

#[test]
fn a_restored_replicated_volume_gets_fresh_metadata_once_before_its_engine_runs_it() {
    let mut node = Node::new();
    let (calls, _) = with_engine(&mut node);
    let src = with_snapshot(resource("src", &[(0, 10240, "files")]), "s1");
    let (_, report) = applied(node.apply(node.full(1, vec![src.clone()])));
    assert_eq!(report.snapshots[0].error, None, "{report:?}");
    calls.lock().unwrap().clear();

    let copy = restored_from(
        replicated(resource("copy", &[(0, 10240, "files")])),
        "src",
        "s1",
        Some(42),
    );
    let (_, report) = applied(node.apply(node.full(2, vec![src.clone(), copy.clone()])));
    assert_eq!(report.replication[0].error, None, "{report:?}");
    let engine: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(engine.len(), 2, "{engine:?}");
    assert_eq!(engine[0], "fresh-metadata copy 0 Some(42)");
    assert!(engine[1].starts_with("apply copy 0:10240:"), "{engine:?}");
    let ledger: Ledger = persisted_ledger(&node);
    let entry = ledger
        .volumes
        .iter()
        .find(|e| e.key.resource.as_str() == "copy")
        .cloned()
        .unwrap();
    assert_eq!(
        entry.fresh_metadata,
        Some(crate::ledger::FreshMetadata {
            generation: Some(42),
            written: true,
        }),
        "recorded, and never taken for a volume that reads as zeros"
    );

    // The next pass runs the volume as it is.
    calls.lock().unwrap().clear();
    applied(node.apply(node.full(3, vec![src, copy])));
    assert!(
        !calls
            .lock()
            .unwrap()
            .iter()
            .any(|(_, c)| c.starts_with("fresh-metadata")),
        "{:?}",
        calls.lock().unwrap()
    );
}

#[test]
fn a_replicated_rollback_is_refused_while_the_member_is_up() {
    let mut node = Node::new();
    let _ = with_engine(&mut node);
    let web = replicated(resource("web", &[(0, 10240, "files")]));
    applied(node.apply(node.full(1, vec![web])));
    let refused = node
        .command(NodeCommand::RollbackSnapshot {
            resource: "web".into(),
            resource_uuid: "rsc-web".into(),
            snapshot: "s1".into(),
            snapshot_uuid: "snap-s1".into(),
            volumes: vec![ferrite_proto::RollbackVolume {
                volume_number: 0,
                identity: identity("web", 0),
            }],
            fresh_generation: Some(7),
        })
        .unwrap_err();
    assert!(refused.contains("is not down"), "{refused}");
}

/// A delta on top of generation `base` of `node`'s state.
fn delta_of(
    node: &Node,
    generation: u64,
    base: u64,
    resources: Vec<ResourceSpec>,
    removed: &[&str],
) -> DesiredState {
    DesiredState {
        base_generation: Some(base),
        removed_resources: removed.iter().map(|r| r.to_string()).collect(),
        ..node.full(generation, resources)
    }
}

/// The commands run since the last call, without the pools' own queries (one `vgs` per LVM
/// pool and pass, whatever the number of volumes).
fn volume_commands(node: &Node) -> Vec<String> {
    node.host
        .take_commands()
        .into_iter()
        .filter(|c| !c.starts_with("vgs "))
        .collect()
}

fn volume_of<'a>(report: &'a NodeReport, resource: &str) -> &'a ferrite_proto::VolumeReport {
    report
        .volumes
        .iter()
        .find(|v| v.resource == resource)
        .unwrap_or_else(|| panic!("no volume of {resource} in {report:?}"))
}

#[test]
fn a_delta_converges_only_the_resources_it_names() {
    let mut node = Node::new();
    let dir = node.pool_dir();
    let web = resource("web", &[(0, 4096, "files")]);
    let db = resource("db", &[(0, 4096, "files")]);
    let (_, first) = applied(node.apply(node.full(1, vec![web, db])));
    let web_device = volume_of(&first, "web").device_path.clone().unwrap();
    node.host.take_commands();

    // db's backing file goes behind the satellite's back: a delta about another resource
    // neither looks at db nor reads a table of every loop device.
    std::fs::remove_file(node.file("db_00000.img")).unwrap();
    let app = resource("app", &[(0, 4096, "files")]);
    let (_, report) = applied(node.apply(delta_of(&node, 2, 1, vec![app], &[])));
    assert_eq!(
        volume_commands(&node),
        [
            format!("truncate --size 4194304 {dir}/app_00000.img"),
            format!("losetup --find --show {dir}/app_00000.img"),
        ],
        "a file created in the pass has no loop device to look up"
    );
    assert_eq!(report.only_resources, Some(vec!["app".to_string()]));
    assert_eq!(report.volumes.len(), 1);
    assert_eq!(volume_of(&report, "app").disk_state, "UpToDate");

    // A delta that names web finds web's device from what the full pass saw, confirmed with
    // the kernel, without asking losetup.
    let grown = resource("web", &[(0, 8192, "files")]);
    let (_, report) = applied(node.apply(delta_of(&node, 3, 2, vec![grown], &[])));
    assert_eq!(
        volume_commands(&node),
        [
            format!("truncate --size 8388608 {dir}/web_00000.img"),
            format!("losetup --set-capacity {web_device}"),
        ]
    );
    assert_eq!(volume_of(&report, "web").usable_size_kib, Some(8192));

    // The full pass reads the loop-device table and finds db missing.
    let full = node.reconciler.converge();
    assert!(
        node.host
            .take_commands()
            .iter()
            .any(|c| c.starts_with("losetup --list --json --output NAME,BACK-FILE")),
        "the full pass reads every loop device"
    );
    let db_volume = volume_of(&full, "db");
    assert_eq!(db_volume.disk_state, "Failed");
    assert!(
        db_volume
            .error
            .as_deref()
            .is_some_and(|e| e.contains("was created by this node but is missing")),
        "{db_volume:?}"
    );
    assert_eq!(volume_of(&full, "app").disk_state, "UpToDate");
    assert_eq!(volume_of(&full, "web").usable_size_kib, Some(8192));
}

#[test]
fn a_delta_looks_up_a_device_that_changed_behind_its_back() {
    let mut node = Node::new();
    let dir = node.pool_dir();
    let web = resource("web", &[(0, 4096, "files")]);
    applied(node.apply(node.full(1, vec![web.clone()])));
    // Someone detaches web's loop device.
    ferrite_storage::HostCommands::run(
        node.host.as_ref(),
        &ferrite_storage::CommandLine::new("losetup").args(["--detach", "/dev/loop0"]),
    )
    .unwrap();
    node.host.take_commands();
    let (_, report) = applied(node.apply(delta_of(&node, 2, 1, vec![web], &[])));
    assert_eq!(
        volume_commands(&node),
        [
            format!("losetup --list --json --output NAME --associated {dir}/web_00000.img"),
            format!("losetup --find --show {dir}/web_00000.img"),
        ],
        "the remembered device fails the kernel's check; the file is looked up, then attached"
    );
    assert_eq!(
        volume_of(&report, "web").device_path.as_deref(),
        Some("/dev/loop0")
    );
}

#[test]
fn a_delta_keeps_what_it_does_not_name_in_the_node_report() {
    let mut node = Node::new();
    let mut inbox = node.connect("");
    let web = resource("web", &[(0, 4096, "files")]);
    applied(node.apply(node.full(1, vec![web.clone()])));
    let db = resource("db", &[(0, 4096, "lvm")]);
    applied(node.apply(delta_of(&node, 2, 1, vec![db], &[])));
    // Nothing changed since the delta: the full pass has nothing new to report, web included.
    node.reconciler.handle(Event::Converge);
    assert!(
        inbox.try_recv().is_err(),
        "the report after the delta already held every resource"
    );
    // Removing a deleted resource drops it from the node's report.
    applied(node.apply(delta_of(&node, 3, 2, vec![deleting(web)], &[])));
    applied(node.apply(delta_of(&node, 4, 3, vec![], &["web"])));
    let full = node.reconciler.converge();
    assert_eq!(
        full.volumes
            .iter()
            .map(|v| v.resource.as_str())
            .collect::<Vec<_>>(),
        ["db"]
    );
    assert!(full.orphans.is_empty(), "{:?}", full.orphans);
}

#[test]
fn the_full_pass_comes_on_time_however_many_deltas_arrive() {
    full_pass_reports_a_loss_amid_deltas(Duration::from_millis(20));
}

/// Deltas sent back to back, faster than a debug build takes them: the queue is never empty,
/// and the pass still gets its slices.
#[test]
fn the_full_pass_ends_when_deltas_come_faster_than_they_are_taken() {
    full_pass_reports_a_loss_amid_deltas(Duration::from_millis(1));
}

/// A volume goes missing while a delta, each about a new resource, arrives every `every`
/// for longer than the interval of full passes: a full pass reports the loss within 5 s.
fn full_pass_reports_a_loss_amid_deltas(every: Duration) {
    let mut node = Node::new();
    let (events, receiver) = std::sync::mpsc::channel();
    let (outbox, mut inbox) = unbounded_channel();
    let web = resource("web", &[(0, 4096, "files")]);
    let db = resource("db", &[(0, 4096, "files")]);
    let full = node.full(1, vec![web, db]);
    let pools = node.pools();
    let placeholder = Node::new();
    let reconciler = std::mem::replace(&mut node.reconciler, placeholder.reconciler);
    let interval = Duration::from_millis(300);
    let running = std::thread::spawn(move || reconciler.run(receiver, interval));
    events
        .send(Event::ControllerConnected {
            node_name: "node1".into(),
            node_uuid: String::new(),
            outbox: outbox.clone(),
        })
        .unwrap();
    events
        .send(Event::Apply {
            state: full,
            reply: outbox.clone(),
        })
        .unwrap();
    let wait_for = |inbox: &mut UnboundedReceiver<SatelliteMessage>,
                    what: &dyn Fn(&SatelliteMessage) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match inbox.try_recv() {
                Ok(message) if what(&message) => return true,
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        false
    };
    assert!(wait_for(&mut inbox, &|m| matches!(
        m,
        SatelliteMessage::Applied { generation: 1, .. }
    )));
    std::fs::remove_file(node.file("db_00000.img")).unwrap();
    let started = std::time::Instant::now();
    let mut generation = 1;
    let mut seen = false;
    while started.elapsed() < Duration::from_secs(5) && !seen {
        generation += 1;
        events
            .send(Event::Apply {
                state: DesiredState {
                    epoch: 0,
                    generation,
                    base_generation: Some(generation - 1),
                    storage_pools: pools.clone(),
                    resources: vec![resource(&format!("r{generation}"), &[(0, 4096, "lvm")])],
                    removed_resources: Vec::new(),
                },
                reply: outbox.clone(),
            })
            .unwrap();
        std::thread::sleep(every);
        while let Ok(message) = inbox.try_recv() {
            if let SatelliteMessage::Report { report } = message {
                seen |= report
                    .volumes
                    .iter()
                    .any(|v| v.resource == "db" && v.disk_state == "Failed");
            }
        }
    }
    events.send(Event::Shutdown).unwrap();
    running.join().unwrap();
    assert!(
        seen,
        "no full pass reported the missing volume within {:?} of deltas every {every:?}",
        started.elapsed()
    );
}

#[test]
fn deltas_queued_together_are_answered_each_and_a_misfit_ends_the_batch() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "files")])])));
    let (outbox, mut inbox) = unbounded_channel();
    let db = delta_of(&node, 2, 1, vec![resource("db", &[(0, 4096, "lvm")])], &[]);
    let app = delta_of(&node, 3, 2, vec![resource("app", &[(0, 4096, "lvm")])], &[]);
    // On a generation the node will not have: asks for the full state, after the others.
    let stray = delta_of(&node, 9, 7, vec![resource("x", &[(0, 4096, "lvm")])], &[]);
    node.reconciler.apply_deltas(vec![
        (db, outbox.clone()),
        (app, outbox.clone()),
        (stray, outbox.clone()),
    ]);
    let (generation, report) = applied(inbox.try_recv().unwrap());
    assert_eq!(generation, 2);
    assert_eq!(report.only_resources, Some(vec!["db".to_string()]));
    assert_eq!(volume_of(&report, "db").disk_state, "UpToDate");
    assert_eq!(report.volumes.len(), 1);
    let (generation, report) = applied(inbox.try_recv().unwrap());
    assert_eq!(generation, 3);
    assert_eq!(report.only_resources, Some(vec!["app".to_string()]));
    assert_eq!(
        inbox.try_recv().unwrap(),
        SatelliteMessage::NeedFullState {
            have_generation: Some(3)
        }
    );
    assert_eq!(node.reconciler.generation(), Some(3));
    // Both deltas are in the persisted state.
    node.restart();
    let names: Vec<_> = node
        .reconciler
        .desired()
        .unwrap()
        .resources()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(names, ["app", "db", "web"]);
}

/// The desired state on disk (snapshot and journal), as JSON shaped like `desired-state.json`.
fn persisted_desired(node: &Node) -> serde_json::Value {
    let (_, persisted) =
        crate::desired::DesiredStateFile::load(node.state.path().join(DESIRED_STATE_FILE)).unwrap();
    let persisted = persisted.expect("a persisted desired state");
    serde_json::json!({"node_uuid": persisted.node_uuid, "desired": persisted.desired})
}

/// The ledger on disk (snapshot and journal).
fn persisted_ledger(node: &Node) -> Ledger {
    crate::ledger::LedgerFile::load(node.state.path().join(LEDGER_FILE))
        .unwrap()
        .1
}

/// Deltas and ledger changes go to the journals; a restart replays them over the snapshots and
/// has exactly the state and ledger it had (and folds the journals into the snapshots), and
/// the snapshots were not rewritten per delta.
#[test]
fn a_restart_after_many_deltas_has_the_state_and_ledger_it_had() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("base", &[(0, 4096, "files")])])));
    let snapshot = std::fs::read(node.state.path().join(DESIRED_STATE_FILE)).unwrap();
    let mut generation = 1;
    for i in 0..40 {
        let mut named = vec![resource(&format!("r{i}"), &[(0, 4096, "files")])];
        if i % 5 == 4 {
            // An earlier one is deleted (its volume and ledger entry go), then dropped.
            let mut gone = resource(&format!("r{}", i - 2), &[(0, 4096, "files")]);
            gone.deleting = true;
            named.push(gone);
        }
        let removed: Vec<String> = (i % 5 == 0 && i >= 5)
            .then(|| format!("r{}", i - 3))
            .into_iter()
            .collect();
        let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
        applied(node.apply(delta_of(&node, generation + 1, generation, named, &removed)));
        generation += 1;
    }
    // Deltas taken together are one record.
    let (outbox, mut inbox) = unbounded_channel();
    let first = delta_of(
        &node,
        generation + 1,
        generation,
        vec![resource("together1", &[(0, 4096, "files")])],
        &[],
    );
    let second = delta_of(
        &node,
        generation + 2,
        generation + 1,
        vec![resource("together2", &[(0, 4096, "files")])],
        &["r37"],
    );
    node.reconciler
        .apply_deltas(vec![(first, outbox.clone()), (second, outbox)]);
    applied(inbox.try_recv().unwrap());
    applied(inbox.try_recv().unwrap());

    let desired = node.reconciler.desired().cloned().unwrap();
    let ledger = node.reconciler.ledger().clone();
    assert_eq!(desired.generation, generation + 2);
    assert!(
        desired.resource_count() > 30,
        "{}",
        desired.resource_count()
    );
    assert!(ledger.volumes.len() > 30, "{}", ledger.volumes.len());
    assert!(
        ledger
            .volumes
            .iter()
            .all(|e| e.key.resource.as_str() != "r2"),
        "deleted volumes leave the ledger"
    );
    assert_eq!(
        std::fs::read(node.state.path().join(DESIRED_STATE_FILE)).unwrap(),
        snapshot,
        "a delta is journaled, not written whole"
    );
    // A restart without a stop (a crash): the volumes of the last batch, recorded together
    // ahead of their creates, were not saved as seen to exist yet, so they are still recorded
    // as being created; everything else is as it was.
    node.restart();
    assert_eq!(node.reconciler.desired(), Some(&desired));
    let reloaded = node.reconciler.ledger().clone();
    let differing: Vec<_> = reloaded
        .volumes
        .iter()
        .zip(&ledger.volumes)
        .filter(|(after, before)| after != before)
        .collect();
    assert_eq!(reloaded.volumes.len(), ledger.volumes.len());
    assert_eq!(reloaded.snapshots, ledger.snapshots);
    assert_eq!(differing.len(), 2, "{differing:?}");
    for ((after, before), name) in differing.iter().zip(["together1", "together2"]) {
        assert_eq!(after.key.resource.as_str(), name);
        assert_eq!(
            (after.progress, before.progress),
            (Progress::Creating, Progress::Created)
        );
    }
    // The start folded both journals into the JSON files, which now hold everything.
    for file in [DESIRED_STATE_FILE, LEDGER_FILE] {
        let journal = crate::journal::journal_path(&node.state.path().join(file));
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0, "{file}");
    }
    assert_eq!(persisted_ledger(&node), reloaded);
    // The first pass finds the volume and adopts it, and saves that.
    node.host.take_changes();
    node.reconciler.converge();
    assert!(node.host.take_changes().is_empty(), "adopted, not created");
    assert_eq!(node.reconciler.ledger(), &ledger);
    assert_eq!(persisted_ledger(&node), ledger);
    node.restart();
    assert_eq!(node.reconciler.desired(), Some(&desired));
    assert_eq!(node.reconciler.ledger(), &ledger);
}

/// A state directory written by a satellite from before the journals: whole JSON files, no
/// journal. It loads as it is, and what follows is kept on top of it.
#[test]
fn state_files_from_before_the_journals_load_and_go_on() {
    let mut node = Node::new();
    applied(node.apply(node.full(
        1,
        vec![
            resource("web", &[(0, 4096, "files")]),
            resource("db", &[(0, 4096, "files")]),
        ],
    )));
    let desired = node.reconciler.desired().cloned().unwrap();
    let ledger = node.reconciler.ledger().clone();
    node.host.take_changes();
    node.restart();
    // As the earlier version wrote them: whole, without `journal_sequence`, and no journals.
    for journal in ["desired-state.journal", "ledger.journal"] {
        std::fs::remove_file(node.state.path().join(journal)).unwrap();
    }
    std::fs::write(
        node.state.path().join(DESIRED_STATE_FILE),
        serde_json::to_vec_pretty(&serde_json::json!({
            "format_version": 2,
            "node_uuid": "",
            "desired": desired,
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        node.state.path().join(LEDGER_FILE),
        serde_json::to_vec_pretty(&ledger).unwrap(),
    )
    .unwrap();
    node.restart();
    assert_eq!(node.reconciler.desired(), Some(&desired));
    assert_eq!(node.reconciler.ledger(), &ledger);
    assert!(node.host.take_changes().is_empty());

    // The controller's full state, then a delta: journaled on top of the old files.
    applied(node.apply(desired.to_desired()));
    applied(node.apply(delta_of(
        &node,
        2,
        1,
        vec![resource("app", &[(0, 4096, "files")])],
        &[],
    )));
    let desired = node.reconciler.desired().cloned().unwrap();
    let ledger = node.reconciler.ledger().clone();
    assert_eq!(ledger.volumes.len(), 3);
    node.stop_and_restart();
    assert_eq!(node.reconciler.desired(), Some(&desired));
    assert_eq!(node.reconciler.ledger(), &ledger);
}

#[test]
fn a_delta_merges_into_the_state_by_case_insensitive_name() {
    use crate::reconciler::{Change, NodeState};
    let state = |resources: Vec<ResourceSpec>, removed: Vec<String>| DesiredState {
        epoch: 1,
        generation: 2,
        base_generation: Some(1),
        storage_pools: vec![pool("pool", ProviderKind::FileThin, "/p")],
        resources,
        removed_resources: removed,
    };
    let mut merged = NodeState::from_full(state(
        ["Web", "db", "Cache", "logs"]
            .iter()
            .map(|n| resource(n, &[(0, 1024, "pool")]))
            .collect(),
        Vec::new(),
    ));
    // "WEB" replaces "Web", "Logs" removes "logs", "new" is added: names compare as keys.
    merged.apply(Change::from_delta(state(
        vec![
            resource("new", &[(0, 1024, "pool")]),
            resource("WEB", &[(0, 2048, "pool")]),
        ],
        vec!["Logs".to_string()],
    )));
    let held: Vec<(&str, u64)> = merged
        .resources()
        .map(|r| (r.name.as_str(), r.volumes[0].size_kib))
        .collect();
    assert_eq!(
        held,
        [("Cache", 1024), ("db", 1024), ("new", 1024), ("WEB", 2048)]
    );
    let whole = merged.to_desired();
    assert_eq!(whole.base_generation, None);
    assert!(whole.removed_resources.is_empty());
}

/// Deltas taken together that cannot be persisted leave the node's state exactly as it was
/// before the batch (what the undo record puts back), create nothing, and are answered
/// `CannotPersist`; the same deltas are taken once the state can be written again.
#[test]
fn a_batch_of_deltas_that_cannot_be_persisted_leaves_the_state_as_it_was() {
    let mut node = Node::new();
    applied(node.apply(node.full(
        1,
        vec![
            resource("web", &[(0, 4096, "files")]),
            resource("old", &[(0, 4096, "files")]),
        ],
    )));
    // A record this large makes the journal want compaction: the next delta is written as a
    // whole new snapshot, which the directory below makes fail.
    let mut big = resource("big", &[]);
    big.uuid = "u".repeat(1 << 21);
    applied(node.apply(delta_of(&node, 2, 1, vec![big], &[])));
    let before = node.reconciler.desired().cloned().unwrap();
    let ledger = node.reconciler.ledger().clone();
    node.host.take_changes();
    let tmp = node.state.path().join(format!(".{DESIRED_STATE_FILE}.tmp"));
    std::fs::create_dir(&tmp).unwrap();

    let batch = |node: &Node| {
        vec![
            // Removes "Big", grows web, adds db.
            delta_of(
                node,
                3,
                2,
                vec![resource("WEB", &[(0, 8192, "files")])],
                &["Big"],
            ),
            delta_of(node, 4, 3, vec![resource("db", &[(0, 4096, "files")])], &[]),
            // Removes db again and gives back "big" (another spec).
            delta_of(
                node,
                5,
                4,
                vec![resource("BIG", &[(0, 4096, "files")])],
                &["db"],
            ),
        ]
    };
    let (outbox, mut inbox) = unbounded_channel();
    node.reconciler.apply_deltas(
        batch(&node)
            .into_iter()
            .map(|d| (d, outbox.clone()))
            .collect(),
    );
    for generation in 3..=5 {
        let (refused_generation, refusal, report) = refused(inbox.try_recv().unwrap());
        assert_eq!(refused_generation, generation);
        assert!(
            matches!(refusal, StateRefusal::CannotPersist { .. }),
            "{refusal}"
        );
        assert_eq!(report.generation, Some(2));
    }
    assert!(inbox.try_recv().is_err());
    assert_eq!(node.reconciler.desired(), Some(&before));
    assert_eq!(node.reconciler.ledger(), &ledger);
    assert!(node.host.take_changes().is_empty(), "nothing acted on");

    // Written again: the same deltas are taken.
    std::fs::remove_dir(&tmp).unwrap();
    node.reconciler.apply_deltas(
        batch(&node)
            .into_iter()
            .map(|d| (d, outbox.clone()))
            .collect(),
    );
    for generation in 3..=5 {
        assert_eq!(applied(inbox.try_recv().unwrap()).0, generation);
    }
    let names: Vec<_> = node
        .reconciler
        .desired()
        .unwrap()
        .resources()
        .map(|r| (r.name.clone(), r.volumes.first().map(|v| v.size_kib)))
        .collect();
    assert_eq!(
        names,
        [
            ("BIG".to_string(), Some(4096)),
            ("old".to_string(), Some(4096)),
            ("WEB".to_string(), Some(8192))
        ]
    );
    let desired = node.reconciler.desired().cloned().unwrap();
    node.restart();
    assert_eq!(node.reconciler.desired(), Some(&desired));
}

/// After every answer, the last report sent is what the passes found, whole: also after full
/// passes whose reports were not sent, found a change and left it for the next answer to
/// carry (the parts are copied then, not per delta).
#[test]
fn after_every_answer_the_last_report_sent_is_what_the_passes_found() {
    let mut node = Node::new();
    let check = |node: &Node, what: &str| {
        let (sent, found) = node.reconciler.last_sent_and_found();
        assert_eq!(sent.as_ref(), Some(&found), "{what}");
    };
    applied(node.apply(node.full(
        1,
        vec![
            resource("web", &[(0, 4096, "files")]),
            resource("db", &[(0, 4096, "files")]),
        ],
    )));
    check(&node, "full state");
    applied(node.apply(delta_of(
        &node,
        2,
        1,
        vec![resource("app", &[(0, 4096, "files")])],
        &[],
    )));
    check(&node, "a delta");
    // db's file goes behind the satellite's back; a full pass finds it missing, and with no
    // controller to send to, the last report sent stays as it was.
    std::fs::remove_file(node.file("db_00000.img")).unwrap();
    node.reconciler.handle(Event::Converge);
    let (sent, found) = node.reconciler.last_sent_and_found();
    assert_ne!(sent, Some(found), "the pass found db missing");
    // A delta about another resource: the answer's record carries db's change too.
    applied(node.apply(delta_of(
        &node,
        3,
        2,
        vec![
            resource("WEB", &[(0, 8192, "files")]),
            deleting(resource("app", &[(0, 4096, "files")])),
        ],
        &[],
    )));
    check(&node, "a delta after an unsent full pass");
    let mut deltas = Vec::new();
    let (outbox, mut inbox) = unbounded_channel();
    for (generation, name) in [(4, "x1"), (5, "x2")] {
        deltas.push((
            delta_of(
                &node,
                generation,
                generation - 1,
                vec![resource(name, &[(0, 4096, "files")])],
                &[],
            ),
            outbox.clone(),
        ));
    }
    node.reconciler.apply_deltas(deltas);
    applied(inbox.try_recv().unwrap());
    applied(inbox.try_recv().unwrap());
    check(&node, "deltas taken together");
    // A new session forgets what was sent; its first state is whole, and deltas follow.
    let _session = node.connect("");
    let whole = node.reconciler.desired().unwrap().to_desired();
    applied(node.apply(DesiredState {
        generation: 6,
        ..whole
    }));
    check(&node, "the first state of a session");
    applied(node.apply(delta_of(
        &node,
        7,
        6,
        vec![deleting(resource("x1", &[(0, 4096, "files")]))],
        &[],
    )));
    check(&node, "a delta in a new session");
}

/// The periodic pass runs in slices, and a delta taken between two of them converges within
/// the pass: it looks devices up as the pass does (here, a pass after the first, by confirming
/// the devices it remembers: no table, no query per file), nothing is reported before the pass
/// ends, and the pass finds and reports what a whole pass finds, the delta's resources
/// included.
#[test]
fn a_full_pass_in_slices_takes_deltas_between_them_and_finds_what_a_whole_pass_finds() {
    let mut node = Node::new();
    let dir = node.pool_dir();
    let resources: Vec<ResourceSpec> = (0..6)
        .map(|i| resource(&format!("r{i}"), &[(0, 4096, "files")]))
        .collect();
    applied(node.apply(node.full(1, resources.clone())));
    let mut inbox = node.connect("");
    applied(node.apply(node.full(2, resources)));
    // r4's file goes behind the satellite's back.
    std::fs::remove_file(node.file("r4_00000.img")).unwrap();
    node.host.take_commands();

    node.reconciler.begin_sliced_pass();
    // With no time to spare, each slice visits one resource: r0, then r1.
    assert!(node.reconciler.converge_slice(Duration::ZERO));
    assert!(node.reconciler.converge_slice(Duration::ZERO));
    // A delta between slices: one resource before the pass's cursor, one after it, and a
    // visited one grown.
    let (generation, report) = applied(node.apply(delta_of(
        &node,
        3,
        2,
        vec![
            resource("aa", &[(0, 4096, "files")]),
            resource("r1", &[(0, 8192, "files")]),
            resource("r9", &[(0, 4096, "files")]),
        ],
        &[],
    )));
    assert_eq!(generation, 3);
    assert_eq!(volume_of(&report, "aa").disk_state, "UpToDate");
    assert_eq!(volume_of(&report, "r1").usable_size_kib, Some(8192));
    let during = volume_commands(&node);
    assert!(
        !during.iter().any(|c| c.starts_with("losetup --list")),
        "every device the slices and the delta looked at was as remembered: {during:?}"
    );
    assert!(
        during.contains(&format!("losetup --find --show {dir}/r9_00000.img")),
        "{during:?}"
    );
    assert!(inbox.try_recv().is_err(), "nothing is reported mid-pass");

    // The rest of the pass: r2, r3, r4, r5 and r9, one slice each; the last ends it.
    let mut slices = 0;
    loop {
        slices += 1;
        if !node.reconciler.converge_slice(Duration::ZERO) {
            break;
        }
    }
    assert_eq!(slices, 5);
    assert!(
        !node.reconciler.converge_slice(Duration::ZERO),
        "no pass is under way"
    );
    let after = volume_commands(&node);
    let SatelliteMessage::Report { report } = inbox.try_recv().unwrap() else {
        panic!("the pass ends with its report");
    };
    let missing = volume_of(&report, "r4");
    assert!(
        missing
            .error
            .as_deref()
            .is_some_and(|e| e.contains("was created by this node but is missing")),
        "{missing:?}"
    );
    assert_eq!(report.volumes.len(), 8);
    let (sent, found) = node.reconciler.last_sent_and_found();
    assert_eq!(sent, Some(found));
    // A whole pass finds the same, and asks losetup as often (neither reads the table: r4's
    // file is gone, and every other device is as remembered).
    // (Not the pools: the test's pool is on a real file system, whose free space moves.)
    let again = node.reconciler.converge();
    assert_eq!(
        (again.volumes, again.orphans, again.errors),
        (report.volumes, report.orphans, report.errors)
    );
    let whole = volume_commands(&node);
    let tables = |commands: &[String]| {
        commands
            .iter()
            .filter(|c| c.starts_with("losetup --list"))
            .count()
    };
    assert_eq!(
        tables(&during) + tables(&after),
        tables(&whole),
        "sliced: {during:?} {after:?}; whole: {whole:?}"
    );

    // A whole pass (a full state's, a command's) visits what a sliced one had left: that
    // one is over.
    node.reconciler.begin_sliced_pass();
    assert!(node.reconciler.converge_slice(Duration::ZERO));
    node.reconciler.converge();
    assert!(!node.reconciler.converge_slice(Duration::ZERO));
}

/// Under `run`, the events that come during a full pass are taken between its slices, not
/// after it: a delta queued behind the request to converge is answered before the pass's
/// report. (The delta asks for the full state: a session starts with one.)
#[test]
fn a_delta_is_answered_between_the_slices_of_a_full_pass() {
    let mut node = Node::new();
    let resources: Vec<ResourceSpec> = (0..20)
        .map(|i| resource(&format!("r{i:02}"), &[(0, 4096, "files")]))
        .collect();
    applied(node.apply(node.full(1, resources)));
    let (events, receiver) = std::sync::mpsc::channel();
    let (outbox, mut inbox) = unbounded_channel();
    // Queued before the reconciler runs, so the order it takes them in is fixed.
    events
        .send(Event::ControllerConnected {
            node_name: "node1".into(),
            node_uuid: String::new(),
            outbox: outbox.clone(),
        })
        .unwrap();
    events.send(Event::Converge).unwrap();
    let delta = delta_of(
        &node,
        2,
        1,
        vec![resource("app", &[(0, 4096, "files")])],
        &[],
    );
    events
        .send(Event::Apply {
            state: delta,
            reply: outbox,
        })
        .unwrap();
    let placeholder = Node::new();
    let reconciler = std::mem::replace(&mut node.reconciler, placeholder.reconciler);
    let running = std::thread::spawn(move || reconciler.run(receiver, Duration::from_secs(3600)));
    let next = |inbox: &mut UnboundedReceiver<SatelliteMessage>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match inbox.try_recv() {
                Ok(message) => return message,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(_) => panic!("no message within 10 s"),
            }
        }
    };
    let first = next(&mut inbox);
    let second = next(&mut inbox);
    events.send(Event::Shutdown).unwrap();
    running.join().unwrap();
    assert_eq!(
        first,
        SatelliteMessage::NeedFullState {
            have_generation: Some(1)
        }
    );
    let SatelliteMessage::Report { report } = second else {
        panic!("the pass's report comes after the answer: {second:?}");
    };
    assert_eq!(report.volumes.len(), 20);
}

/// A controller that restarts reconnects every node at once. The node makes its Hello's digest
/// when the session ends, not when the next controller waits for it, and keeps it when the
/// same content is taken under the new stamp. Its first answer to the new session records
/// what the passes found, also what a pass found while no controller listened.
#[test]
fn a_reconnecting_controller_finds_the_digest_made_and_the_record_what_was_found() {
    let mut node = Node::new();
    let resources: Vec<ResourceSpec> = (0..4)
        .map(|i| resource(&format!("r{i}"), &[(0, 4096, "files")]))
        .collect();
    let _first = node.connect("");
    let (_, first) = applied(node.apply(node.full(1, resources)));
    assert_eq!(node.reconciler.digest_made(), None, "not asked for yet");

    node.reconciler.handle(Event::ControllerLost);
    let digest = node.reconciler.digest_made().map(str::to_string);
    let held = node.reconciler.held_state("").unwrap();
    assert_eq!(digest.as_deref(), Some(held.digest.as_str()));

    // While no controller listens, r1's volume takes data: a pass in slices notes it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(node.file("r1_00000.img"))
        .and_then(|f| {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&[7u8; 256 * 1024], 0)
                .and_then(|()| f.sync_all())
        })
        .unwrap();
    node.reconciler.begin_sliced_pass();
    while node.reconciler.converge_slice(Duration::ZERO) {}
    assert_eq!(node.reconciler.unsent_keys(), Some(vec!["R1".to_string()]));

    // The restarted controller: the same content under its stamp, answered from the last pass.
    let mut inbox = node.connect("");
    let stamp = Stamp {
        epoch: 1,
        generation: 1,
    };
    let (generation, report) = applied(node.reconciler.apply_same(stamp, &held.digest));
    assert_eq!(generation, 1);
    assert_eq!(report.volumes.len(), 4);
    assert_ne!(
        volume_of(&report, "r1").allocated_size_kib,
        volume_of(&first, "r1").allocated_size_kib,
        "the answer carries what the pass found"
    );
    let (sent, found) = node.reconciler.last_sent_and_found();
    assert_eq!(sent, Some(found));
    assert_eq!(node.reconciler.unsent_keys(), Some(Vec::new()));
    assert_eq!(
        node.reconciler.digest_made(),
        Some(held.digest.as_str()),
        "the digest goes on under the new stamp"
    );
    let whole = node.reconciler.desired().unwrap().to_desired();
    assert_eq!(
        held.digest,
        content_digest(&whole.storage_pools, &whole.resources)
    );
    // Nothing is left to report unprompted.
    node.reconciler.begin_sliced_pass();
    while node.reconciler.converge_slice(Duration::ZERO) {}
    assert!(inbox.try_recv().is_err());
}

/// A pass in slices notes only the resources whose outcome changed: over a converged node it
/// sends nothing and leaves nothing for the next answer to copy; a resource that changed is
/// reported, and the record of what was sent is what the passes found.
#[test]
fn a_pass_in_slices_notes_only_what_changed() {
    let mut node = Node::new();
    let resources: Vec<ResourceSpec> = (0..4)
        .map(|i| resource(&format!("r{i}"), &[(0, 4096, "files")]))
        .collect();
    let mut inbox = node.connect("");
    applied(node.apply(node.full(1, resources)));
    assert_eq!(node.reconciler.unsent_keys(), Some(Vec::new()));

    let vgs = |node: &Node| {
        node.host
            .take_commands()
            .iter()
            .filter(|c| c.starts_with("vgs "))
            .count()
    };
    vgs(&node);
    node.reconciler.begin_sliced_pass();
    while node.reconciler.converge_slice(Duration::ZERO) {}
    assert!(
        inbox.try_recv().is_err(),
        "nothing changed: nothing is sent"
    );
    assert_eq!(node.reconciler.unsent_keys(), Some(Vec::new()));
    let sliced = vgs(&node);

    // The same content under a new stamp (what a restarted controller sends) is answered
    // from the last pass, for the new generation: the next pass has nothing to report.
    let whole = node.reconciler.desired().unwrap().to_desired();
    let (generation, report) = applied(node.apply(DesiredState {
        generation: 2,
        ..whole
    }));
    assert_eq!((generation, report.generation), (2, Some(2)));
    node.reconciler.begin_sliced_pass();
    while node.reconciler.converge_slice(Duration::ZERO) {}
    assert!(inbox.try_recv().is_err(), "the new stamp was in the answer");

    std::fs::remove_file(node.file("r2_00000.img")).unwrap();
    node.reconciler.begin_sliced_pass();
    while node.reconciler.converge_slice(Duration::ZERO) {}
    let SatelliteMessage::Report { report } = inbox.try_recv().unwrap() else {
        panic!("r2 went missing: reported");
    };
    assert_eq!(volume_of(&report, "r2").disk_state, "Failed");
    assert_eq!(node.reconciler.unsent_keys(), Some(Vec::new()));
    let (sent, found) = node.reconciler.last_sent_and_found();
    assert_eq!(sent, Some(found));
    vgs(&node);
    node.reconciler.converge();
    assert_eq!(
        sliced,
        vgs(&node),
        "the pools are read once per pass, not per slice"
    );
}

/// After a full pass the node did not time itself (here, for a full state), the next periodic
/// pass is due anywhere from half an interval to one and a half, so nodes sent their full
/// states together part; after a periodic pass, a tenth either way of the interval.
#[test]
fn the_wait_after_a_prompted_pass_is_drawn_over_a_whole_interval() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("web", &[(0, 4096, "files")])])));
    let interval = Duration::from_secs(30);
    let first = node.reconciler.next_wait(interval);
    assert_eq!(
        node.reconciler.next_wait(interval),
        first,
        "drawn once per pass"
    );
    let prompted: Vec<Duration> = (0..300)
        .map(|_| {
            node.reconciler.converge();
            node.reconciler.next_wait(interval)
        })
        .collect();
    let within = |waits: &[Duration], low: f64, high: f64| {
        waits
            .iter()
            .all(|w| (low..=high).contains(&w.as_secs_f64()))
    };
    assert!(within(&prompted, 15.0, 45.0), "{prompted:?}");
    assert!(
        prompted.iter().any(|w| w.as_secs_f64() < 25.0)
            && prompted.iter().any(|w| w.as_secs_f64() > 35.0),
        "{prompted:?}"
    );
    let periodic: Vec<Duration> = (0..50)
        .map(|_| {
            node.reconciler.begin_sliced_pass();
            while node.reconciler.converge_slice(Duration::from_millis(5)) {}
            node.reconciler.next_wait(interval)
        })
        .collect();
    assert!(within(&periodic, 27.0, 33.0), "{periodic:?}");
}

/// The records in the journal at `path`: frames up to the first of length zero (the space
/// made ahead).
fn journal_records(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut records = 0;
    while at + 16 <= bytes.len() {
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if length == 0 {
            break;
        }
        at += 16 + length;
        records += 1;
    }
    records
}

/// The progress of `resource`'s volume 0 in the `files` pool, in `ledger`.
fn progress_of(node: &Node, ledger: &Ledger, resource: &str) -> Option<Progress> {
    let key = VolumeKey {
        resource: resource.parse().unwrap(),
        volume_number: 0.into(),
        provider_kind: ProviderKind::FileThin,
        pool_name: node.pool_dir(),
    };
    ledger.get(&key).map(|e| e.progress)
}

/// A volume seen to exist after a delta created it is saved as such with the ledger's next
/// save, not with a synced write of its own: until then the ledger on disk says it is being
/// created, which a restart resolves by looking. A full pass saves what waited, and so does
/// a reconciler that stops.
#[test]
fn a_volume_seen_to_exist_is_saved_with_the_next_save() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("ra", &[(0, 4096, "files")])])));
    let on_disk = |node: &Node, name| progress_of(node, &persisted_ledger(node), name);
    assert_eq!(
        on_disk(&node, "ra"),
        Some(Progress::Created),
        "a full pass saves"
    );

    let journal = crate::journal::journal_path(&node.state.path().join(LEDGER_FILE));
    let before = journal_records(&journal);
    applied(node.apply(delta_of(
        &node,
        2,
        1,
        vec![resource("rb", &[(0, 4096, "files")])],
        &[],
    )));
    let in_memory = |node: &Node, name| progress_of(node, node.reconciler.ledger(), name);
    assert_eq!(in_memory(&node, "rb"), Some(Progress::Created));
    assert_eq!(on_disk(&node, "rb"), Some(Progress::Creating));
    assert_eq!(
        journal_records(&journal),
        before + 1,
        "one record per create"
    );

    // The next create's record carries it.
    applied(node.apply(delta_of(
        &node,
        3,
        2,
        vec![resource("rc", &[(0, 4096, "files")])],
        &[],
    )));
    assert_eq!(on_disk(&node, "rb"), Some(Progress::Created));
    assert_eq!(on_disk(&node, "rc"), Some(Progress::Creating));
    assert_eq!(
        journal_records(&journal),
        before + 2,
        "one record per create"
    );

    // A full pass saves what waited.
    node.reconciler.converge();
    assert_eq!(on_disk(&node, "rc"), Some(Progress::Created));

    // So does a reconciler that stops.
    applied(node.apply(delta_of(
        &node,
        4,
        3,
        vec![resource("rd", &[(0, 4096, "files")])],
        &[],
    )));
    assert_eq!(on_disk(&node, "rd"), Some(Progress::Creating));
    let (events, receiver) = std::sync::mpsc::channel();
    let placeholder = Node::new();
    let reconciler = std::mem::replace(&mut node.reconciler, placeholder.reconciler);
    let running = std::thread::spawn(move || reconciler.run(receiver, Duration::from_secs(3600)));
    events.send(Event::Shutdown).unwrap();
    running.join().unwrap();
    assert_eq!(on_disk(&node, "rd"), Some(Progress::Created));
}

/// Every volume entry of `ledger`: resource, volume number and progress, in ledger order.
fn progress_of_all(ledger: &Ledger) -> Vec<(String, u16, Progress)> {
    ledger
        .volumes
        .iter()
        .map(|e| {
            (
                e.key.resource.to_string(),
                e.key.volume_number.get(),
                e.progress,
            )
        })
        .collect()
}

/// A batch of deltas that places several resources records all the volumes it creates in one
/// synced ledger record, before the first is made, rather than one record per volume; each
/// entry is on disk before its volume exists, and a restart finds every volume its own.
#[test]
fn a_batch_of_deltas_records_the_volumes_it_creates_in_one_save() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("base", &[(0, 4096, "files")])])));
    let journal = crate::journal::journal_path(&node.state.path().join(LEDGER_FILE));
    let before = journal_records(&journal);
    let (outbox, mut inbox) = unbounded_channel();
    let ra = resource("ra", &[(0, 4096, "files"), (1, 4096, "lvm")]);
    let first = delta_of(&node, 2, 1, vec![ra], &[]);
    let second = delta_of(
        &node,
        3,
        2,
        vec![resource("rb", &[(0, 4096, "files")])],
        &[],
    );
    let third = delta_of(&node, 4, 3, vec![resource("rc", &[(0, 4096, "lvm")])], &[]);
    node.host.take_commands();
    node.reconciler.apply_deltas(vec![
        (first, outbox.clone()),
        (second, outbox.clone()),
        (third, outbox),
    ]);
    let commands = node.host.take_commands();
    let lookups = commands.iter().filter(|c| c.starts_with("lvs ")).count();
    assert_eq!(
        lookups, 3,
        "one listing of the group for both LVM volumes recorded ahead, none again before a \
         create, one after each (a change drops the listing): {commands:#?}"
    );
    for _ in 0..3 {
        let (_, report) = applied(inbox.try_recv().unwrap());
        assert!(
            report.volumes.iter().all(|v| v.disk_state == "UpToDate"),
            "{report:?}"
        );
    }
    assert_eq!(
        journal_records(&journal),
        before + 1,
        "one record for the four volumes, made before the first"
    );
    let creating = |name: &str, volume| (name.to_string(), volume, Progress::Creating);
    let created = |name: &str, volume| (name.to_string(), volume, Progress::Created);
    assert_eq!(
        progress_of_all(&persisted_ledger(&node)),
        [
            created("base", 0),
            creating("ra", 0),
            creating("ra", 1),
            creating("rb", 0),
            creating("rc", 0),
        ]
    );
    assert_eq!(
        progress_of_all(node.reconciler.ledger()),
        [
            created("base", 0),
            created("ra", 0),
            created("ra", 1),
            created("rb", 0),
            created("rc", 0),
        ]
    );

    // A restart looks, finds each volume, and adopts it: nothing is created again or orphaned.
    node.restart();
    node.host.take_commands();
    let report = node.reconciler.converge();
    assert!(
        report.volumes.iter().all(|v| v.disk_state == "UpToDate"),
        "{report:?}"
    );
    assert!(report.orphans.is_empty(), "{:?}", report.orphans);
    assert!(
        !node
            .host
            .commands()
            .iter()
            .any(|c| c.starts_with("lvcreate")),
        "{:?}",
        node.host.commands()
    );
    assert_eq!(
        progress_of_all(&persisted_ledger(&node)),
        progress_of_all(node.reconciler.ledger())
    );
}

/// A volume recorded ahead whose create fails leaves the ledger, on disk too, as a volume that
/// was recorded alone does; the other volumes of the batch are made.
#[test]
fn a_failed_create_among_volumes_recorded_ahead_leaves_no_entry() {
    let mut node = Node::new();
    applied(node.apply(node.full(1, vec![resource("base", &[(0, 4096, "files")])])));
    let (outbox, mut inbox) = unbounded_channel();
    let small = delta_of(
        &node,
        2,
        1,
        vec![resource("small", &[(0, 4096, "files")])],
        &[],
    );
    // Larger than the volume group.
    let huge = delta_of(
        &node,
        3,
        2,
        vec![resource("huge", &[(0, 1 << 30, "lvm")])],
        &[],
    );
    node.reconciler
        .apply_deltas(vec![(small, outbox.clone()), (huge, outbox)]);
    let (_, report) = applied(inbox.try_recv().unwrap());
    assert_eq!(volume_of(&report, "small").disk_state, "UpToDate");
    let (_, report) = applied(inbox.try_recv().unwrap());
    let failed = volume_of(&report, "huge");
    assert_eq!(failed.disk_state, "Failed");
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("creating the volume failed")),
        "{failed:?}"
    );
    let entries = [("base".to_string(), 0, Progress::Created)];
    assert_eq!(progress_of_all(node.reconciler.ledger())[..1], entries);
    assert_eq!(progress_of_all(node.reconciler.ledger()).len(), 2);
    assert!(
        progress_of_all(&persisted_ledger(&node))
            .iter()
            .all(|(name, _, _)| name != "huge"),
        "{:?}",
        persisted_ledger(&node)
    );
    node.restart();
    let report = node.reconciler.converge();
    assert!(report.orphans.is_empty(), "{:?}", report.orphans);
}

/// A volume recorded ahead that the pass does not go on to create (here: its member cannot
/// be sized) is withdrawn when the pass ends, and the withdrawal is saved: the ledger keeps no
/// entry, in memory or on disk, for a volume that was not made, and reports no orphan.
#[test]
fn a_volume_recorded_ahead_and_not_created_is_withdrawn() {
    let mut node = Node::new();
    with_engine(&mut node);
    applied(node.apply(node.full(1, vec![resource("base", &[(0, 4096, "files")])])));
    let both = replicated(resource(
        "both",
        &[(0, 4096, "files"), (1, 1 << 41, "files")],
    ));
    let (_, report) = applied(node.apply(delta_of(&node, 2, 1, vec![both], &[])));
    let volume = |number| {
        report
            .volumes
            .iter()
            .find(|v| v.resource == "both" && v.volume_number == number)
            .unwrap()
    };
    assert_eq!(volume(0).disk_state, "UpToDate");
    assert_eq!(volume(1).disk_state, "Failed");
    assert!(
        volume(1)
            .error
            .as_deref()
            .is_some_and(|e| e.contains("too large")),
        "{report:?}"
    );
    assert!(report.orphans.is_empty(), "{:?}", report.orphans);
    let expected = [
        ("base".to_string(), 0, Progress::Created),
        ("both".to_string(), 0, Progress::Created),
    ];
    assert_eq!(progress_of_all(node.reconciler.ledger()), expected);
    assert!(
        progress_of_all(&persisted_ledger(&node))
            .iter()
            .all(|(name, volume, _)| (name.as_str(), *volume) != ("both", 1)),
        "{:?}",
        persisted_ledger(&node)
    );
    assert!(!node.file("both_00001.img").exists());
}

/// A slice of the periodic pass that finds a volume gone, then a delta about another resource
/// before the pass ends: the delta's answer carries the resources it names, not the one the
/// slice found, so the report at the end of the pass still says the volume is gone. (Before,
/// the answer recorded every resource noted since the last report as sent, and the loss
/// reached the controller only with the next change of that resource.)
#[test]
fn a_delta_between_slices_does_not_swallow_what_an_earlier_slice_found() {
    let mut node = Node::new();
    let resources = vec![
        resource("db", &[(0, 4096, "files")]),
        resource("web", &[(0, 4096, "files")]),
    ];
    applied(node.apply(node.full(1, resources.clone())));
    let mut inbox = node.connect("");
    applied(node.apply(node.full(2, resources)));
    while inbox.try_recv().is_ok() {}
    std::fs::remove_file(node.file("db_00000.img")).unwrap();

    node.reconciler.begin_sliced_pass();
    // With no time to spare, the first slice visits db only.
    assert!(node.reconciler.converge_slice(Duration::ZERO));
    let (_, report) = applied(node.apply(delta_of(
        &node,
        3,
        2,
        vec![resource("app", &[(0, 4096, "files")])],
        &[],
    )));
    assert_eq!(report.only_resources, Some(vec!["app".to_string()]));
    assert!(
        report.volumes.iter().all(|v| v.resource == "app"),
        "{report:?}"
    );
    while node.reconciler.converge_slice(Duration::ZERO) {}
    let mut reported = None;
    while let Ok(message) = inbox.try_recv() {
        if let SatelliteMessage::Report { report } = message {
            reported = Some(report);
        }
    }
    let report = reported.expect("the pass reports what it found");
    assert_eq!(volume_of(&report, "db").disk_state, "Failed", "{report:?}");
}

#[test]
fn a_volume_that_appears_while_it_is_created_is_left_alone_and_not_recorded() {
    let mut node = Node::new();
    let resources: Vec<ResourceSpec> = (0..3)
        .map(|i| resource(&format!("r{i}"), &[(0, 4096, "lvm")]))
        .collect();
    applied(node.apply(node.full(1, resources.clone())));
    let _inbox = node.connect("");
    applied(node.apply(node.full(2, resources)));
    // A whole pass looks up and activates every volume from one listing of the group.
    node.host.take_commands();
    node.reconciler.converge();
    let listings = node
        .host
        .take_commands()
        .iter()
        .filter(|c| c.starts_with("lvs "))
        .count();
    assert_eq!(listings, 1, "one `lvs` for the pass, not one per volume");

    // A slice of a full pass lists the volume group; then someone else makes 'web_00000' in
    // it, and a delta asks for 'web' before the pass lists the group again.
    node.reconciler.begin_sliced_pass();
    assert!(node.reconciler.converge_slice(Duration::ZERO));
    node.host.add_logical_volume("vg0", "web_00000", 4096);
    let (_, report) = applied(node.apply(delta_of(
        &node,
        3,
        2,
        vec![resource("web", &[(0, 8192, "lvm")])],
        &[],
    )));

    let web = volume_of(&report, "web");
    assert_eq!(web.disk_state, "Failed");
    let error = web.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("this satellite did not create it, so it leaves it alone"),
        "{error}"
    );
    assert_eq!(
        node.host.logical_volumes("vg0").get("web_00000"),
        Some(&4096),
        "the other's volume is neither removed nor grown"
    );
    assert!(
        !progress_of_all(node.reconciler.ledger())
            .iter()
            .any(|(name, _, _)| name == "web"),
        "nor recorded as this satellite's"
    );
    assert!(
        !progress_of_all(&persisted_ledger(&node))
            .iter()
            .any(|(name, _, _)| name == "web")
    );
}
