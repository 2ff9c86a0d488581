//! The real `ferrite-satellite` binary, driven over TCP by a fake controller: handshake and its
//! refusals, desired state on real FILE_THIN pools and loop devices, deltas, deletes, garbage on
//! the wire, restarts and crashes.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::{
    Controller, SatelliteProcess, applied, deleting, device_size_kib, diskless, loop_devices_of,
    resource, running_as_root,
};
use ferrite_proto::{
    ControllerMessage, DesiredState, PROTOCOL_VERSION, Refusal, SatelliteMessage, StateRefusal,
    content_digest,
};
use ferrite_types::{LayerKind, ProviderKind};

fn refusal(message: SatelliteMessage) -> Refusal {
    match message {
        SatelliteMessage::Refused { reason } => reason,
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn handshake_welcomes_with_capabilities_and_refuses_strangers() {
    let satellite = SatelliteProcess::start(&["--node-name", "node1"]);

    // Wrong protocol version: refused, then closed.
    let mut old = Controller::connect(&satellite).await;
    let reason = refusal(
        old.hello_with(PROTOCOL_VERSION + 100, "cluster-a", "node1")
            .await,
    );
    assert!(
        matches!(reason, Refusal::VersionMismatch { .. }),
        "{reason}"
    );
    old.expect_closed().await;

    // Wrong node name.
    let mut misnamed = Controller::connect(&satellite).await;
    assert_eq!(
        refusal(misnamed.hello("cluster-a", "node2").await),
        Refusal::NodeNameMismatch {
            controller: "node2".into(),
            satellite: "node1".into()
        }
    );
    misnamed.expect_closed().await;

    // The first controller of a cluster is welcomed, and its cluster adopted.
    let mut controller = Controller::connect(&satellite).await;
    match controller.hello("cluster-a", "NODE1").await {
        SatelliteMessage::Welcome {
            protocol_version,
            node_name,
            hostname,
            satellite_version,
            capabilities,
            holds,
        } => {
            assert_eq!(protocol_version, PROTOCOL_VERSION);
            // A node that has never been sent a state holds none.
            assert_eq!(holds, None);
            assert_eq!(node_name, "node1");
            assert!(!hostname.is_empty());
            assert!(!satellite_version.is_empty());
            assert!(capabilities.supports_provider(ProviderKind::Diskless));
            assert!(capabilities.supports_layer(LayerKind::Storage));
            if running_as_root("(capabilities part)") {
                assert!(
                    capabilities.supports_provider(ProviderKind::FileThin),
                    "{capabilities:?}"
                );
            }
            // MIRROR is supported only where the satellite applies it; until then it says why.
            if !capabilities.supports_layer(LayerKind::Mirror) {
                let mirror = &capabilities.unsupported_layers[&LayerKind::Mirror];
                assert!(!mirror.is_empty(), "{capabilities:?}");
            }
            if !capabilities.supports_provider(ProviderKind::Zfs) {
                assert!(!capabilities.unsupported_providers[&ProviderKind::Zfs].is_empty());
            }
        }
        other => panic!("expected Welcome, got {other:?}"),
    }

    // One controller at a time.
    let mut second = Controller::connect(&satellite).await;
    assert_eq!(
        refusal(second.hello("cluster-a", "node1").await),
        Refusal::AlreadyConnected
    );
    second.expect_closed().await;

    controller.send(&ControllerMessage::Ping).await;
    assert_eq!(controller.recv().await, SatelliteMessage::Pong);
    drop(controller);

    // Another cluster's controller is refused, with a way out.
    let mut stranger = Controller::connect(&satellite).await;
    // The slot frees as soon as the satellite notices the close; retry briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let reason = loop {
        let reason = refusal(stranger.hello("cluster-b", "node1").await);
        if reason != Refusal::AlreadyConnected || Instant::now() > deadline {
            break reason;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stranger = Controller::connect(&satellite).await;
    };
    match &reason {
        Refusal::OtherController {
            controller_cluster,
            satellite_cluster,
            correction,
        } => {
            assert_eq!(controller_cluster, "cluster-b");
            assert_eq!(satellite_cluster, "cluster-a");
            let identity = satellite.state_dir().join("identity.json");
            assert!(
                correction.contains(&format!("remove {}", identity.display())),
                "{correction}"
            );
        }
        other => panic!("expected OtherController, got {other:?}"),
    }

    // The refused ones did not disturb the cluster's own controller. The stranger may have
    // been refused for its cluster before the satellite noticed the first controller's close,
    // so the slot may still be taken for a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut own = Controller::connect(&satellite).await;
        match own.hello("cluster-a", "node1").await {
            SatelliteMessage::Welcome { .. } => break,
            SatelliteMessage::Refused {
                reason: Refusal::AlreadyConnected,
            } if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("expected Welcome, got {other:?}\n{}", satellite.log()),
        }
    }
}

#[tokio::test]
async fn the_first_name_is_adopted_and_kept_across_restarts() {
    let mut satellite = SatelliteProcess::start(&[]);
    let mut controller = Controller::connect(&satellite).await;
    match controller.hello("cluster-a", "node7").await {
        SatelliteMessage::Welcome { node_name, .. } => assert_eq!(node_name, "node7"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    drop(controller);
    satellite.restart();
    let mut renamed = Controller::connect(&satellite).await;
    assert_eq!(
        refusal(renamed.hello("cluster-a", "node8").await),
        Refusal::NodeNameMismatch {
            controller: "node8".into(),
            satellite: "node7".into()
        }
    );
    let mut same = Controller::connect(&satellite).await;
    assert!(matches!(
        same.hello("cluster-a", "node7").await,
        SatelliteMessage::Welcome { .. }
    ));
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let satellite = SatelliteProcess::start(&[]);

    // Not our protocol at all: the length prefix reads as ~1.2 GB.
    let mut http = Controller::connect(&satellite).await;
    http.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    http.expect_closed().await;

    // A frame of the right shape that is not JSON.
    let mut junk = Controller::connect(&satellite).await;
    junk.send_raw(&[0, 0, 0, 5, b'n', b'o', b'p', b'e', b'!'])
        .await;
    junk.expect_closed().await;

    // Valid JSON, unknown message.
    let mut unknown = Controller::connect(&satellite).await;
    let body = br#"{"type":"Format","disk":"all"}"#;
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    unknown.send_raw(&frame).await;
    unknown.expect_closed().await;

    // A message other than Hello first.
    let mut rude = Controller::connect(&satellite).await;
    rude.send(&ControllerMessage::Ping).await;
    rude.expect_closed().await;

    // Garbage in the middle of a session ends the session and frees the slot.
    let mut session = Controller::session(&satellite).await;
    session.send_raw(&[0, 0, 0, 2, b'{', b'{']).await;
    session.expect_closed().await;
    let mut next = Controller::session(&satellite).await;
    next.send(&ControllerMessage::Ping).await;
    assert_eq!(next.recv().await, SatelliteMessage::Pong);
    assert!(satellite.log().contains("bad frame"), "{}", satellite.log());
}

#[tokio::test]
async fn desired_state_creates_deltas_change_and_removal_deletes() {
    if !running_as_root("desired_state_creates_deltas_change_and_removal_deletes") {
        return;
    }
    let satellite = SatelliteProcess::start(&[]);
    let mut controller = Controller::session(&satellite).await;

    let state = satellite.full_state(
        10,
        vec![resource("web", &[4096, 8192]), diskless("tiebreaker")],
    );
    let (generation, report) = applied(controller.apply(state).await);
    assert_eq!(generation, 10);
    assert_eq!(report.generation, Some(10));
    assert_eq!(report.volumes.len(), 3);
    // Reported in name order: the tiebreaker first.
    assert_eq!(report.volumes[0].disk_state, "Diskless");
    for (volume, size) in report.volumes[1..].iter().zip([4096, 8192]) {
        assert_eq!(volume.disk_state, "UpToDate", "{volume:?}");
        let device = volume.device_path.as_deref().unwrap();
        let image = satellite.image(&format!("web_{:05}", volume.volume_number));
        assert_eq!(loop_devices_of(&image), [device]);
        assert_eq!(device_size_kib(device), size);
        assert_eq!(volume.usable_size_kib, Some(size));
    }
    let pool = report
        .storage_pools
        .iter()
        .find(|p| p.name == "files")
        .unwrap();
    assert!(
        pool.errors.is_empty() && pool.free_capacity_kib.is_some(),
        "{pool:?}"
    );

    // A delta on top: db added, web's first volume grown.
    let delta = DesiredState {
        epoch: 0,
        generation: 11,
        base_generation: Some(10),
        resources: vec![resource("db", &[4096]), resource("web", &[6144, 8192])],
        ..satellite.full_state(0, vec![])
    };
    let (generation, report) = applied(controller.apply(delta).await);
    assert_eq!(generation, 11);
    // The answer reports what the delta named: db and web, not the diskless cache.
    assert_eq!(report.only_resources, Some(vec!["db".into(), "web".into()]));
    assert_eq!(report.volumes.len(), 3, "{report:?}");
    let web0 = loop_devices_of(&satellite.image("web_00000"));
    assert_eq!(device_size_kib(&web0[0]), 6144);
    assert_eq!(loop_devices_of(&satellite.image("db_00000")).len(), 1);

    // A delta on a generation the satellite does not have.
    let stale = DesiredState {
        epoch: 0,
        generation: 13,
        base_generation: Some(12),
        ..satellite.full_state(0, vec![])
    };
    assert_eq!(
        controller.apply(stale).await,
        SatelliteMessage::NeedFullState {
            have_generation: Some(11)
        }
    );

    // The full state without web is refused: web's volumes would be forgotten, not deleted.
    let refused = controller
        .apply(satellite.full_state(13, vec![resource("db", &[4096])]))
        .await;
    assert!(
        matches!(
            &refused,
            SatelliteMessage::NotApplied {
                refusal: StateRefusal::DropsVolumes { .. },
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(satellite.image("web_00000").exists());
    // Deleting web: its volumes go, db stays.
    let (_, report) = applied(
        controller
            .apply(satellite.full_state(
                13,
                vec![
                    resource("db", &[4096]),
                    deleting(resource("web", &[6144, 8192])),
                ],
            ))
            .await,
    );
    assert_eq!(report.volumes.len(), 1);
    assert_eq!(report.deleted_resources.len(), 1);
    for number in 0..2 {
        let image = satellite.image(&format!("web_{number:05}"));
        assert!(!image.exists(), "{} deleted", image.display());
        assert!(loop_devices_of(&image).is_empty());
    }
    assert_eq!(loop_devices_of(&satellite.image("db_00000")).len(), 1);

    // A file in the pool the satellite did not create survives everything.
    let foreign = satellite.image("users_00000");
    std::fs::write(&foreign, b"precious").unwrap();
    let (_, report) = applied(
        controller
            .apply(satellite.full_state(14, vec![resource("users", &[4]), resource("db", &[4096])]))
            .await,
    );
    let users = report
        .volumes
        .iter()
        .find(|v| v.resource == "users")
        .unwrap();
    assert_eq!(users.disk_state, "Failed");
    assert!(
        users
            .error
            .as_deref()
            .unwrap()
            .contains("did not create it")
    );
    applied(
        controller
            .apply(satellite.full_state(
                15,
                vec![
                    deleting(resource("db", &[4096])),
                    deleting(resource("users", &[4])),
                ],
            ))
            .await,
    );
    assert_eq!(std::fs::read(&foreign).unwrap(), b"precious");
    assert!(!satellite.image("db_00000").exists());
}

/// The image files and their loop devices, to compare before and after a restart.
fn snapshot(satellite: &SatelliteProcess, names: &[&str]) -> Vec<(u64, Vec<String>)> {
    names
        .iter()
        .map(|name| {
            let image = satellite.image(name);
            (
                std::fs::metadata(&image).unwrap().ino(),
                loop_devices_of(&image),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_restart_finds_everything_in_place() {
    if !running_as_root("a_restart_finds_everything_in_place") {
        return;
    }
    let mut satellite = SatelliteProcess::start(&[]);
    let state = satellite.full_state(3, vec![resource("web", &[4096, 4096])]);
    let mut controller = Controller::session(&satellite).await;
    let (_, before_report) = applied(controller.apply(state.clone()).await);
    drop(controller);
    let before = snapshot(&satellite, &["web_00000", "web_00001"]);
    assert!(before.iter().all(|(_, devices)| devices.len() == 1));

    satellite.restart();
    // The Welcome says which state the node holds; a controller whose full state has that
    // content (one restarted too, say) sends its stamp only.
    let (mut controller, holds) = Controller::session_holding(&satellite).await;
    let held = holds.expect("a node with a state says which it holds");
    assert_eq!(held.stamp.generation, 3);
    assert_eq!(
        held.digest,
        content_digest(&state.storage_pools, &state.resources)
    );
    let (generation, after_report) = applied(controller.apply_same(4, &held.digest).await);
    assert_eq!(generation, 4);
    assert_eq!(after_report.volumes, before_report.volumes);
    // A digest that is not the node's: it asks for the full state, which it then takes.
    match controller.apply_same(5, "another-state").await {
        SatelliteMessage::NeedFullState { have_generation } => {
            assert_eq!(have_generation, Some(4))
        }
        other => panic!("expected NeedFullState, got {other:?}"),
    }
    let (generation, _) = applied(
        controller
            .apply(DesiredState {
                generation: 5,
                ..state
            })
            .await,
    );
    assert_eq!(generation, 5);
    assert_eq!(snapshot(&satellite, &["web_00000", "web_00001"]), before);
    let log = satellite.log();
    let second_start = log.rfind("satellite started").unwrap();
    // `losetup /dev/loopN FILE` on a host that names a free device, else `losetup --find`.
    let attached =
        |log: &str| log.contains("command=losetup /dev/loop") || log.contains("losetup --find");
    assert!(
        attached(&log[..second_start]),
        "the first start attached the volumes:\n{log}"
    );
    assert!(
        !log[second_start..].contains("creating backing volume") && !attached(&log[second_start..]),
        "nothing created or attached after the restart:\n{}",
        &log[second_start..]
    );
}

#[tokio::test]
async fn after_kill_9_the_satellite_converges_without_its_controller() {
    if !running_as_root("after_kill_9_the_satellite_converges_without_its_controller") {
        return;
    }
    let mut satellite = SatelliteProcess::start(&[]);
    let mut controller = Controller::session(&satellite).await;
    applied(
        controller
            .apply(satellite.full_state(1, vec![resource("web", &[4096])]))
            .await,
    );
    drop(controller);
    let before = snapshot(&satellite, &["web_00000"]);

    // Crash, and lose the loop devices as a reboot would.
    satellite.kill_9();
    common::detach_loop_devices_under(&satellite.pool_dir());
    assert!(loop_devices_of(&satellite.image("web_00000")).is_empty());
    satellite.restart_after_kill_9();

    // No controller connects: the persisted state is enough.
    let image = satellite.image("web_00000");
    let deadline = Instant::now() + Duration::from_secs(10);
    while loop_devices_of(&image).is_empty() {
        assert!(
            Instant::now() < deadline,
            "not re-attached:\n{}",
            satellite.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::metadata(&image).unwrap().ino(),
        before[0].0,
        "the same file"
    );

    // The controller comes back with the same state: nothing to do.
    let mut controller = Controller::session(&satellite).await;
    let (_, report) = applied(
        controller
            .apply(satellite.full_state(1, vec![resource("web", &[4096])]))
            .await,
    );
    assert_eq!(report.volumes[0].disk_state, "UpToDate");
    assert_eq!(loop_devices_of(&image).len(), 1);
}
