//! The binary against the real controller, started in this process on an empty store, with no
//! satellite running: every node stays OFFLINE, so this checks that the controller accepts what
//! `ferrite` sends and that `ferrite` reads what the controller answers — not what satellites do
//! (the testkit's end-to-end tutorial covers that).

mod common;

use std::time::Duration;

use common::{Run, ferrite};
use ferrite_controller::Controller;
use ferrite_controller::satellites::Timeouts;

/// A controller serving on loopback from a runtime of its own.
struct LiveController {
    address: String,
    _runtime: tokio::runtime::Runtime,
    _data_dir: tempfile::TempDir,
}

impl LiveController {
    fn start() -> LiveController {
        let data_dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Nothing listens where the nodes' satellites would be, so waiting for them is short.
        let timeouts = Timeouts {
            connect: Duration::from_millis(200),
            node_online: Duration::from_millis(50),
            apply: Duration::from_millis(200),
            check_pool: Duration::from_millis(200),
            ..Default::default()
        };
        let path = data_dir.path().to_path_buf();
        let address = runtime.block_on(async move {
            let controller = Controller::start(
                ferrite_controller::DataDirLock::acquire(&path).unwrap(),
                timeouts,
            )
            .await
            .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move {
                axum::serve(listener, ferrite_controller::http::router(controller))
                    .await
                    .unwrap();
            });
            address
        });
        LiveController {
            address: address.to_string(),
            _runtime: runtime,
            _data_dir: data_dir,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        ferrite(&self.address, args)
    }

    /// Runs a command that must not fail (warnings are fine: the satellites are offline).
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "ferrite {}: {run:?}", args.join(" "));
        assert!(!run.stdout.contains("ERROR:"), "{}", run.stdout);
        run
    }
}

#[test]
fn the_controller_accepts_what_ferrite_sends() {
    let controller = LiveController::start();

    for (i, node) in ["alpha", "bravo", "charlie"].iter().enumerate() {
        let address = format!("127.77.0.{}", i + 1);
        let run = controller.ok(&["node", "create", node, &address, "--node-type", "combined"]);
        assert!(run.stdout.starts_with("SUCCESS:"), "{}", run.stdout);
    }
    let run = controller.ok(&["n", "l"]);
    assert!(
        run.stdout
            .contains("| alpha   | COMBINED | 127.77.0.1:3366 (PLAIN) | OFFLINE |"),
        "{}",
        run.stdout
    );
    let run = controller.ok(&["-m", "n", "l"]);
    let nodes: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(nodes[0].as_array().unwrap().len(), 3);

    // Properties and network interfaces.
    controller.ok(&["n", "sp", "alpha", "--aux", "rack", "r1"]);
    let run = controller.ok(&["n", "lp", "alpha"]);
    assert!(run.stdout.contains("| Aux/rack "), "{}", run.stdout);
    controller.ok(&["n", "i", "c", "alpha", "backup", "127.78.0.1"]);
    controller.ok(&["n", "i", "m", "alpha", "backup", "--ip", "127.78.0.2"]);
    let run = controller.ok(&["n", "i", "l", "alpha"]);
    assert!(
        run.stdout.contains("| + StltCon | default "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("| backup       | 127.78.0.2 "),
        "{}",
        run.stdout
    );
    controller.ok(&["n", "i", "d", "alpha", "backup"]);
    controller.ok(&["c", "sp", "Aux/site", "lab"]);
    let run = controller.ok(&["c", "lp"]);
    assert!(
        run.stdout.contains("| Aux/site | lab   |"),
        "{}",
        run.stdout
    );

    // Pools are recorded even while their satellites are offline.
    for node in ["alpha", "bravo", "charlie"] {
        controller.run(&["sp", "c", "filethin", node, "pool_ssd", "/srv/ferrite/ssd"]);
    }
    let run = controller.ok(&["sp", "l", "-s", "pool_ssd"]);
    assert!(
        run.stdout
            .contains("| pool_ssd    | alpha   | FILE_THIN | /srv/ferrite/ssd |"),
        "{}",
        run.stdout
    );

    // Groups, and a definition spawned from them.
    controller.ok(&[
        "rg",
        "c",
        "my_ssd_group",
        "--storage-pool",
        "pool_ssd",
        "--place-count",
        "2",
        "--replicas-on-different",
        "rack",
        "-d",
        "SSD replicas",
    ]);
    controller.ok(&["vg", "c", "my_ssd_group"]);
    let run = controller.ok(&["rg", "l"]);
    assert!(
        run.stdout.contains("| my_ssd_group  | PlaceCount: 2 "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("ReplicasOnDifferent: ['Aux/rack']"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("| SSD replicas |"), "{}", run.stdout);
    let run = controller.ok(&["vg", "l", "my_ssd_group"]);
    assert!(run.stdout.contains("| 0        |"), "{}", run.stdout);
    controller.ok(&["rg", "m", "my_ssd_group", "--place-count", "3"]);
    controller.ok(&["rg", "sp", "my_ssd_group", "Aux/tier", "gold"]);
    let run = controller.ok(&["rg", "lp", "my_ssd_group"]);
    assert!(
        run.stdout.contains("| Aux/tier | gold  |"),
        "{}",
        run.stdout
    );
    controller.ok(&["rg", "spawn", "-d", "my_ssd_group", "my_ssd_res", "2G"]);
    let run = controller.ok(&["rd", "l"]);
    assert!(
        run.stdout.contains("| my_ssd_res   | my_ssd_group  |"),
        "{}",
        run.stdout
    );
    let run = controller.ok(&["vd", "l"]);
    assert!(
        run.stdout
            .contains("| my_ssd_res   | 0        |             | 2 GiB |"),
        "{}",
        run.stdout
    );
    controller.ok(&["vd", "size", "my_ssd_res", "0", "3G"]);
    let run = controller.ok(&["vd", "l", "-r", "my_ssd_res"]);
    assert!(run.stdout.contains("| 3 GiB |"), "{}", run.stdout);
    controller.ok(&["rd", "sp", "my_ssd_res", "Aux/app", "db"]);
    let run = controller.ok(&["rd", "lp", "my_ssd_res"]);
    assert!(run.stdout.contains("| Aux/app "), "{}", run.stdout);

    // Definitions made by hand.
    controller.ok(&["rd", "c", "r2", "--resource-group", "my_ssd_group"]);
    controller.ok(&["vd", "c", "r2", "1G"]);
    controller.ok(&["vd", "sp", "r2", "0", "Aux/x", "y"]);
    let run = controller.ok(&["vd", "lp", "r2", "0"]);
    assert!(run.stdout.contains("| Aux/x | y     |"), "{}", run.stdout);

    // Resources on explicit nodes: recorded while the satellites are away.
    controller.run(&["r", "c", "alpha", "my_ssd_res", "-s", "pool_ssd"]);
    controller.run(&["r", "c", "bravo", "my_ssd_res", "--drbd-diskless"]);
    let run = controller.ok(&["r", "l"]);
    assert!(
        run.stdout.contains("| my_ssd_res   | alpha |"),
        "{}",
        run.stdout
    );
    let run = controller.ok(&["v", "l", "-r", "my_ssd_res"]);
    assert!(
        run.stdout.contains("| my_ssd_res | alpha | pool_ssd "),
        "{}",
        run.stdout
    );
    controller.ok(&["r", "sp", "alpha", "my_ssd_res", "Aux/owner", "me"]);
    let run = controller.ok(&["r", "lp", "alpha", "my_ssd_res"]);
    assert!(run.stdout.contains("| Aux/owner "), "{}", run.stdout);

    // Refusals come back as error entries, exit 10.
    let run = controller.run(&["r", "d", "zulu", "my_ssd_res"]);
    assert_eq!(run.code, 10, "{run:?}");
    assert!(run.stdout.starts_with("ERROR:"), "{}", run.stdout);
    let run = controller.run(&["rg", "c", "my_ssd_group"]);
    assert_eq!(run.code, 10, "{run:?}");
    let run = controller.run(&["vg", "l", "no_such_group"]);
    assert_eq!(run.code, 10, "{run:?}");

    // Clean-up commands.
    controller.run(&["r", "d", "alpha", "bravo", "my_ssd_res"]);
    controller.ok(&["rd", "d", "r2"]);
    controller.ok(&["err", "l"]);
    let run = controller.ok(&["c", "v"]);
    assert!(
        run.stdout.starts_with("ferrite controller "),
        "{}",
        run.stdout
    );
}

#[test]
fn the_controller_accepts_the_data_safety_commands() {
    let controller = LiveController::start();
    controller.ok(&["n", "c", "alpha", "127.77.1.1", "--node-type", "combined"]);

    // A backup is written by the controller, at the absolute path given; never over a file.
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("ferrite.db");
    let backup = backup.to_str().unwrap();
    let run = controller.ok(&["controller", "backup", backup]);
    assert!(
        run.stdout.starts_with(&format!(
            "SUCCESS:\n    Backup of the controller's store written to {backup} ("
        )),
        "{}",
        run.stdout
    );
    assert!(std::fs::metadata(backup).unwrap().len() > 0);
    let run = controller.run(&["c", "bakdb", backup]);
    assert_eq!(run.code, 10, "{run:?}");
    assert!(run.stdout.contains("already exists"), "{}", run.stdout);
    let run = controller.run(&["c", "backupdb", "ferrite.db"]);
    assert_eq!(run.code, 2, "{run:?}");

    // No satellite, no orphans; an orphan that is not listed is refused by name.
    let run = controller.ok(&["n", "orphans", "l"]);
    assert_eq!(run.stdout.lines().count(), 4, "{}", run.stdout);
    assert_eq!(
        controller.ok(&["-m", "n", "orphans", "l", "alpha"]).stdout,
        "[\n  []\n]\n"
    );
    let run = controller.run(&["n", "orphans", "l", "zulu"]);
    assert_eq!(run.code, 10, "{run:?}");
    assert!(run.stdout.contains("zulu"), "{}", run.stdout);
    let run = controller.run(&[
        "n",
        "orphans",
        "d",
        "alpha",
        "web",
        "0",
        "--pool-name",
        "/srv/p",
    ]);
    assert_eq!(run.code, 10, "{run:?}");
    assert!(
        run.stdout
            .contains("Node 'alpha' reports no orphan web/0 in '/srv/p' with no identity."),
        "{}",
        run.stdout
    );
    let run = controller.run(&[
        "n",
        "orphans",
        "d",
        "alpha",
        "web",
        "0",
        "--pool-name",
        "/srv/p",
        "--identity",
        "x",
    ]);
    assert_eq!(run.code, 10, "{run:?}");
    assert!(run.stdout.contains("with identity x."), "{}", run.stdout);

    // recreate-missing: an unknown resource, then a volume whose node cannot be asked.
    let run = controller.run(&["v", "recreate-missing", "alpha", "web", "0"]);
    assert_eq!(run.code, 10, "{run:?}");
    controller.run(&[
        "sp",
        "c",
        "filethin",
        "alpha",
        "pool_ssd",
        "/srv/ferrite/ssd",
    ]);
    controller.ok(&["rd", "c", "web"]);
    controller.ok(&["vd", "c", "web", "1G"]);
    controller.run(&["r", "c", "alpha", "web", "-s", "pool_ssd"]);
    let run = controller.run(&["v", "recreate-missing", "alpha", "web", "0"]);
    assert_eq!(run.code, 10, "{run:?}");
    assert!(
        run.stdout
            .contains("Node 'alpha' did not carry out the command."),
        "{}",
        run.stdout
    );
    // Its volume's state is unknown while the node is offline.
    let run = controller.ok(&["v", "l", "-r", "web"]);
    assert!(run.stdout.contains("| Unknown |"), "{}", run.stdout);

    // The node is offline, and node list says why below the table.
    let mut reason = None;
    for _ in 0..100 {
        let run = controller.ok(&["-m", "n", "l"]);
        let nodes: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        if let Some(text) = nodes[0][0]["connection_status_reason"].as_str() {
            reason = Some(text.to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let reason = reason.expect("the controller says why alpha is offline");
    let run = controller.ok(&["n", "l"]);
    assert!(
        run.stdout.contains(&format!(
            "+\nalpha: OFFLINE\n    {}",
            reason.lines().next().unwrap()
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn key_value_store_connections_size_queries_and_space_report() {
    let controller = LiveController::start();
    for (i, node) in ["alpha", "bravo"].iter().enumerate() {
        let address = format!("127.77.0.{}", i + 1);
        controller.ok(&["node", "create", node, &address]);
        controller.run(&["sp", "c", "filethin", node, "pool_ssd", "/srv/ferrite/ssd"]);
    }

    // key-value-store (kv): modify creates, show, list, delete.
    controller.ok(&["kv", "m", "csi_kv", "volume/pvc-1", "web"]);
    controller.ok(&["kv", "modify", "csi_kv", "volume/pvc-2", "db"]);
    controller.ok(&["kv", "m", "csi_kv", "volume/pvc-2"]);
    let run = controller.ok(&["kv", "s", "csi_kv"]);
    assert!(
        run.stdout.contains("| volume/pvc-1 | web   |"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("pvc-2"), "{}", run.stdout);
    let run = controller.ok(&["kv", "l"]);
    assert!(run.stdout.contains("| csi_kv "), "{}", run.stdout);
    controller.ok(&["kv", "d", "csi_kv"]);
    let run = controller.run(&["kv", "s", "csi_kv"]);
    assert_ne!(run.code, 0, "{run:?}");
    // Deleting it again is LINSTOR's warning, not an error.
    let run = controller.ok(&["kv", "d", "csi_kv"]);
    assert!(run.stdout.contains("WARNING"), "{}", run.stdout);

    // node-connection (nc).
    controller.ok(&["nc", "sp", "bravo", "alpha", "--aux", "link", "fast"]);
    let run = controller.ok(&["nc", "l"]);
    assert!(
        run.stdout.contains("| alpha  | bravo  | Aux/link=fast |"),
        "{}",
        run.stdout
    );
    let run = controller.ok(&["nc", "lp", "alpha", "bravo"]);
    assert!(
        run.stdout.contains("| Aux/link | fast  |"),
        "{}",
        run.stdout
    );

    // resource-connection (rc) between two resources of a definition.
    controller.ok(&["rd", "c", "res1"]);
    controller.ok(&["vd", "c", "res1", "10M"]);
    controller.run(&["r", "c", "alpha", "res1", "--storage-pool", "pool_ssd"]);
    controller.run(&["r", "c", "bravo", "res1", "--storage-pool", "pool_ssd"]);
    controller.ok(&[
        "rc",
        "sp",
        "alpha",
        "bravo",
        "res1",
        "DrbdOptions/Net/max-buffers",
        "8000",
    ]);
    let run = controller.ok(&["rc", "l", "res1"]);
    assert!(
        run.stdout.contains("DrbdOptions/Net/max-buffers=8000"),
        "{}",
        run.stdout
    );
    let run = controller.ok(&["rc", "lp", "bravo", "alpha", "res1"]);
    assert!(
        run.stdout
            .contains("| DrbdOptions/Net/max-buffers | 8000  |"),
        "{}",
        run.stdout
    );

    // Size queries: the nodes are offline, so nothing can be placed; the columns are there and
    // the report says why.
    controller.ok(&[
        "rg",
        "c",
        "sized",
        "--storage-pool",
        "pool_ssd",
        "--place-count",
        "2",
    ]);
    let run = controller.ok(&["rg", "qsi", "sized"]);
    assert!(
        run.stdout
            .contains("| MaxVolumeSize | AvailableSize | Capacity | Next Spawn Result |"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("| 0 KiB "), "{}", run.stdout);
    let run = controller.ok(&["rg", "qmvs", "sized"]);
    assert!(
        run.stdout
            .contains("| StoragePool | MaxVolumeSize | Provisioning | Nodes |"),
        "{}",
        run.stdout
    );
    let run = controller.ok(&["-m", "rg", "qsi", "sized"]);
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer[0]["space_info"]["max_vlm_size_in_kib"], 0);

    // space-reporting (spr) query.
    let run = controller.ok(&["spr", "qry"]);
    assert!(
        run.stdout.contains("storage pool pool_ssd (FILE_THIN)"),
        "{}",
        run.stdout
    );
}

#[test]
fn wait_sync_is_done_at_once_without_a_replication_layer_and_times_out_otherwise() {
    let controller = LiveController::start();
    controller.ok(&["node", "create", "alpha", "127.77.0.1"]);
    controller.run(&[
        "sp",
        "c",
        "filethin",
        "alpha",
        "pool_ssd",
        "/srv/ferrite/ssd",
    ]);
    controller.ok(&["rd", "c", "plain", "-l", "storage"]);
    controller.ok(&["vd", "c", "plain", "10M"]);
    let run = controller.ok(&["rd", "wait-sync", "plain", "--timeout", "5"]);
    assert!(run.stdout.contains("is in sync"), "{}", run.stdout);
    // A replicated definition whose only replica's node is offline never reports UpToDate.
    controller.ok(&["rd", "c", "mirrored", "-l", "mirror,storage"]);
    controller.ok(&["vd", "c", "mirrored", "10M"]);
    controller.run(&["r", "c", "alpha", "mirrored", "--storage-pool", "pool_ssd"]);
    let run = controller.run(&[
        "rd",
        "wait-sync",
        "mirrored",
        "--timeout",
        "0.3",
        "--wait-interval",
        "0.1",
    ]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("did not get in sync"), "{run:?}");
}
