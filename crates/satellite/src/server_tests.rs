//! The session against an in-process satellite on the fake host: what needs a slow or scripted
//! host to show (the process-level tests in `tests/` use the real one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrite_proto::{
    ControllerMessage, DesiredState, Frames, PROTOCOL_VERSION, PoolSpec, ResourceSpec,
    SatelliteMessage, VolumeSpec, frames, read_frame, write_frame,
};
use ferrite_storage::HostPaths;
use ferrite_storage::fake::FakeHost;
use ferrite_types::{LayerKind, ProviderKind};
use tokio::net::TcpStream;

use crate::capabilities::LayerProbe;
use crate::config::SatelliteConfig;
use crate::{Host, Satellite};

struct Fixture {
    host: Arc<FakeHost>,
    satellite: Satellite,
    pool_dir: tempfile::TempDir,
    _state_dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut SatelliteConfig)) -> Fixture {
    let host = Arc::new(FakeHost::new());
    let state_dir = tempfile::tempdir().unwrap();
    let pool_dir = tempfile::tempdir().unwrap();
    let present = pool_dir.path().join("present");
    std::fs::write(&present, b"").unwrap();
    let paths = HostPaths {
        loop_control: present,
        device_mapper_control: pool_dir.path().join("no-mapper"),
        zfs_control: pool_dir.path().join("no-zfs"),
    };
    let mut config = SatelliteConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        state_dir.path().to_path_buf(),
    );
    config.reconcile_interval = Duration::from_secs(3600);
    config.lvm_metadata_only = true;
    adjust(&mut config);
    let satellite = Satellite::start(
        config,
        Host {
            runner: host.clone(),
            paths,
            layers: LayerProbe::default(),
        },
    )
    .await
    .unwrap();
    Fixture {
        host,
        satellite,
        pool_dir,
        _state_dir: state_dir,
    }
}

async fn recv(stream: &mut Frames<TcpStream>) -> SatelliteMessage {
    tokio::time::timeout(Duration::from_secs(10), read_frame(stream))
        .await
        .expect("an answer within 10 s")
        .expect("a valid frame")
}

async fn session(fixture: &Fixture) -> Frames<TcpStream> {
    let mut stream = frames(
        TcpStream::connect(fixture.satellite.local_addr())
            .await
            .unwrap(),
    );
    write_frame(
        &mut stream,
        &ControllerMessage::Hello {
            node_uuid: String::new(),
            protocol_version: PROTOCOL_VERSION,
            cluster_id: "cluster-a".into(),
            node_name: "node1".into(),
            controller_version: "test".into(),
        },
    )
    .await
    .unwrap();
    match recv(&mut stream).await {
        SatelliteMessage::Welcome { .. } => stream,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

fn pool(fixture: &Fixture) -> PoolSpec {
    PoolSpec {
        uuid: String::new(),
        name: "files".into(),
        provider_kind: ProviderKind::FileThin,
        pool_name: fixture.pool_dir.path().to_str().unwrap().into(),
        props: BTreeMap::new(),
    }
}

#[tokio::test]
async fn ping_is_answered_while_a_long_reconcile_runs() {
    let fixture = start().await;
    fixture
        .host
        .delay_matching("truncate", Duration::from_millis(1500));
    let mut stream = session(&fixture).await;
    let state = DesiredState {
        epoch: 0,
        generation: 1,
        base_generation: None,
        storage_pools: vec![pool(&fixture)],
        resources: vec![ResourceSpec {
            replication: None,
            snapshots: Vec::new(),
            suspend_io: false,
            uuid: String::new(),
            deleting: false,
            inactive: false,
            name: "slow".into(),
            layers: vec![LayerKind::Storage],
            diskless: false,
            volumes: vec![VolumeSpec {
                minor: None,
                restore_from: None,
                identity: String::new(),
                deleting: false,
                volume_number: 0,
                size_kib: 4096,
                storage_pool: "files".into(),
            }],
        }],
        removed_resources: vec![],
    };
    write_frame(&mut stream, &ControllerMessage::ApplyState(state))
        .await
        .unwrap();
    let sent = Instant::now();
    write_frame(&mut stream, &ControllerMessage::Ping)
        .await
        .unwrap();
    assert_eq!(recv(&mut stream).await, SatelliteMessage::Pong);
    assert!(
        sent.elapsed() < Duration::from_millis(1000),
        "Pong took {:?}",
        sent.elapsed()
    );
    match recv(&mut stream).await {
        SatelliteMessage::Applied { generation, report } => {
            assert_eq!(generation, 1);
            assert_eq!(report.volumes[0].disk_state, "UpToDate");
        }
        other => panic!("expected Applied, got {other:?}"),
    }
    fixture.satellite.shutdown().await;
}

#[tokio::test]
async fn check_pool_says_whether_a_pool_is_usable() {
    let fixture = start().await;
    let mut stream = session(&fixture).await;
    write_frame(
        &mut stream,
        &ControllerMessage::CheckPool {
            request_id: 7,
            pool: pool(&fixture),
        },
    )
    .await
    .unwrap();
    match recv(&mut stream).await {
        SatelliteMessage::PoolChecked { request_id, report } => {
            assert_eq!(request_id, 7);
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            assert!(report.free_capacity_kib.is_some());
        }
        other => panic!("expected PoolChecked, got {other:?}"),
    }

    fixture.host.add_volume_group("vg_real", 1 << 20);
    for (id, kind, backing, expected) in [
        (
            8,
            ProviderKind::Lvm,
            "vg_missing",
            "LVM pool 'vg_missing' is not usable: Volume group \"vg_missing\" not found",
        ),
        (
            9,
            ProviderKind::LvmThin,
            "vg_real/thin",
            "storage provider LVM_THIN is not supported on this node: ",
        ),
        (
            10,
            ProviderKind::FileThin,
            "/nonexistent/ferrite",
            "FILE_THIN pool '/nonexistent/ferrite' is not usable: directory '/nonexistent/ferrite' does not exist",
        ),
    ] {
        let pool = PoolSpec {
            uuid: String::new(),
            name: "p".into(),
            provider_kind: kind,
            pool_name: backing.into(),
            props: BTreeMap::new(),
        };
        write_frame(
            &mut stream,
            &ControllerMessage::CheckPool {
                request_id: id,
                pool,
            },
        )
        .await
        .unwrap();
        match recv(&mut stream).await {
            SatelliteMessage::PoolChecked { request_id, report } => {
                assert_eq!(request_id, id);
                assert_eq!(report.errors.len(), 1);
                assert!(
                    report.errors[0].starts_with(expected),
                    "{:?}",
                    report.errors
                );
            }
            other => panic!("expected PoolChecked, got {other:?}"),
        }
    }
    fixture.satellite.shutdown().await;
}

#[tokio::test]
async fn silent_peers_are_dropped_and_free_the_session() {
    let fixture = start_with(|config| {
        config.handshake_timeout = Duration::from_millis(200);
        config.session_idle_timeout = Duration::from_millis(500);
    })
    .await;

    // Connects and never says Hello.
    let mut mute = frames(
        TcpStream::connect(fixture.satellite.local_addr())
            .await
            .unwrap(),
    );
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        read_frame::<_, SatelliteMessage>(&mut mute),
    )
    .await
    .expect("closed after the handshake timeout");
    assert!(closed.is_err());

    // A controller that goes silent mid-session (a partition, a hung host) loses the session,
    // so its successor is not refused as AlreadyConnected forever.
    let mut silent = session(&fixture).await;
    let started = Instant::now();
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        read_frame::<_, SatelliteMessage>(&mut silent),
    )
    .await
    .expect("closed after the idle timeout");
    assert!(closed.is_err());
    assert!(started.elapsed() >= Duration::from_millis(500));
    let mut successor = session(&fixture).await;

    // One that keeps pinging keeps its session past the idle timeout.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        write_frame(&mut successor, &ControllerMessage::Ping)
            .await
            .unwrap();
        assert_eq!(recv(&mut successor).await, SatelliteMessage::Pong);
    }
    fixture.satellite.shutdown().await;
}

#[tokio::test]
async fn the_reconcile_interval_retries_and_reports_unprompted() {
    let fixture = start_with(|config| {
        config.reconcile_interval = Duration::from_millis(300);
    })
    .await;
    fixture
        .host
        .fail_matching("truncate", 1, "truncate: Input/output error");
    let mut stream = session(&fixture).await;
    let state = DesiredState {
        epoch: 0,
        generation: 4,
        base_generation: None,
        storage_pools: vec![pool(&fixture)],
        resources: vec![ResourceSpec {
            replication: None,
            snapshots: Vec::new(),
            suspend_io: false,
            uuid: String::new(),
            deleting: false,
            inactive: false,
            name: "web".into(),
            layers: vec![LayerKind::Storage],
            diskless: false,
            volumes: vec![VolumeSpec {
                minor: None,
                restore_from: None,
                identity: String::new(),
                deleting: false,
                volume_number: 0,
                size_kib: 4096,
                storage_pool: "files".into(),
            }],
        }],
        removed_resources: vec![],
    };
    write_frame(&mut stream, &ControllerMessage::ApplyState(state))
        .await
        .unwrap();
    let mut message = recv(&mut stream).await;
    // A pass may have run between the session opening and the state arriving.
    while matches!(message, SatelliteMessage::Report { .. }) {
        message = recv(&mut stream).await;
    }
    match message {
        SatelliteMessage::Applied { report, .. } => {
            assert_eq!(report.volumes[0].disk_state, "Failed");
        }
        other => panic!("expected Applied, got {other:?}"),
    }
    fixture.host.clear_failures();
    let started = Instant::now();
    match recv(&mut stream).await {
        SatelliteMessage::Report { report } => {
            assert_eq!(report.generation, Some(4));
            assert_eq!(report.volumes[0].disk_state, "UpToDate");
        }
        other => panic!("expected an unprompted Report, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    fixture.satellite.shutdown().await;
}
