//! The data-safety commands against a fake controller: what `ferrite` sends for `controller
//! backup`, `node orphans list/delete` and `volume recreate-missing`, how it prints the answers
//! and the lists, `-m` passing the controller's JSON through, and the exit codes.

mod common;

use common::{FakeController, ferrite};
use serde_json::{Value, json};

const ORPHANS_NODE1: &str = r#"[{"node_name":"node1","resource_name":"web","volume_number":0,"identity":"6b1f0c2e-8d6a-4e55-9d1e-2f0a7c3b9e41","provider_kind":"FILE_THIN","pool_name":"/srv/node1/pool","storage_pool_name":"pool_ssd","backing_name":"web_00000","reason":"no resource on this node wants it"}]"#;
const ORPHANS_NODE2: &str = r#"[{"node_name":"node2","resource_name":"db","volume_number":1,"identity":null,"provider_kind":"LVM","pool_name":"vg0","storage_pool_name":"pool_hdd","backing_name":"db_00001","reason":"made before volumes had identities"}]"#;

fn sent(fake: &FakeController) -> Vec<(String, String, Option<Value>)> {
    fake.requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.body))
        .collect()
}

#[test]
fn backup_sends_the_path_and_prints_the_answer() {
    let fake = FakeController::start();
    let answer = r#"[{"ret_code":20709377,"message":"Backup of the controller's store written to /var/backups/ferrite.db (16384 bytes, revision 12, epoch 1)."}]"#;
    fake.on_json("POST", "/v1/controller/backup/db", 201, answer);
    let run = ferrite(
        &fake.address(),
        &["controller", "backup", "/var/backups/ferrite.db"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "SUCCESS:\n    Backup of the controller's store written to /var/backups/ferrite.db \
         (16384 bytes, revision 12, epoch 1).\n"
    );
    assert_eq!(
        sent(&fake),
        vec![(
            "POST".into(),
            "/v1/controller/backup/db".into(),
            Some(json!({"backup_name": "/var/backups/ferrite.db"}))
        )]
    );

    // LINSTOR's names for the command, and -m.
    fake.clear();
    let run = ferrite(
        &fake.address(),
        &["-m", "c", "bakdb", "/var/backups/ferrite.db"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(printed, serde_json::from_str::<Value>(answer).unwrap());
    let run = ferrite(
        &fake.address(),
        &["controller", "backupdb", "/var/backups/ferrite.db"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn a_relative_backup_path_is_refused_before_anything_is_sent() {
    let fake = FakeController::start();
    let run = ferrite(&fake.address(), &["controller", "backup", "ferrite.db"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.contains("'ferrite.db' is a relative path"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("absolute path on the controller's host"),
        "{}",
        run.stderr
    );
    assert!(fake.all_requests().is_empty(), "nothing is sent");
}

#[test]
fn a_refused_backup_exits_10_with_the_cause() {
    let fake = FakeController::start();
    fake.on_json(
        "POST",
        "/v1/controller/backup/db",
        400,
        r#"[{"ret_code":-4611686018407201808,"message":"The store could not be backed up.","cause":"'/var/backups/ferrite.db' already exists; choose a new file name (a backup never overwrites a file)","correction":"Choose a file name that does not exist yet."}]"#,
    );
    let run = ferrite(
        &fake.address(),
        &["controller", "backup", "/var/backups/ferrite.db"],
    );
    assert_eq!(run.code, 10, "{run:?}");
    assert!(run.stdout.starts_with("ERROR:\n"), "{}", run.stdout);
    assert!(run.stdout.contains("already exists"), "{}", run.stdout);
}

#[test]
fn orphans_of_every_node_or_of_the_named_ones() {
    let fake = FakeController::start();
    let all = format!(
        "[{},{}]",
        &ORPHANS_NODE2[1..ORPHANS_NODE2.len() - 1],
        &ORPHANS_NODE1[1..ORPHANS_NODE1.len() - 1]
    );
    fake.on_json("GET", "/v1/view/orphans", 200, &all);
    fake.on_json("GET", "/v1/nodes/node1/orphans", 200, ORPHANS_NODE1);
    fake.on_json("GET", "/v1/nodes/node2/orphans", 200, ORPHANS_NODE2);

    let run = ferrite(&fake.address(), &["node", "orphans", "list"]);
    assert_eq!(run.code, 0, "{run:?}");
    let rows: Vec<&str> = run.stdout.lines().skip(3).collect();
    assert!(
        rows[0].starts_with(
            "| node1 | web      |     0 | pool_ssd | /srv/node1/pool/web_00000 | \
             6b1f0c2e-8d6a-4e55-9d1e-2f0a7c3b9e41 | no resource on this node wants it "
        ),
        "{}",
        run.stdout
    );
    assert!(
        rows[1].starts_with(&format!(
            "| node2 | db       |     1 | pool_hdd | vg0/db_00001              | {:36} | \
             made before volumes had identities ",
            ""
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        sent(&fake),
        vec![("GET".into(), "/v1/view/orphans".into(), None)]
    );

    // Named nodes: one call each, and -m prints one list of all of them, as sent.
    fake.clear();
    let run = ferrite(
        &fake.address(),
        &["-m", "n", "orphans", "l", "node1", "node2"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    let node1: Value = serde_json::from_str(ORPHANS_NODE1).unwrap();
    let node2: Value = serde_json::from_str(ORPHANS_NODE2).unwrap();
    assert_eq!(printed, json!([[node1[0], node2[0]]]));
    assert_eq!(
        sent(&fake),
        vec![
            ("GET".into(), "/v1/nodes/node1/orphans".into(), None),
            ("GET".into(), "/v1/nodes/node2/orphans".into(), None)
        ]
    );

    // An empty list is a table with its header, and [[]] with -m.
    let empty = FakeController::start();
    empty.on_json("GET", "/v1/view/orphans", 200, "[]");
    let run = ferrite(&empty.address(), &["n", "orphans", "l"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("| Node | Resource | VlmNr | Pool | BackingVolume | Identity | Reason |"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 4, "{}", run.stdout);
    let run = ferrite(&empty.address(), &["-m", "n", "orphans", "l"]);
    assert_eq!(run.stdout, "[\n  []\n]\n");
}

#[test]
fn orphans_of_an_unknown_node_are_an_error() {
    let fake = FakeController::start();
    fake.on_json(
        "GET",
        "/v1/nodes/zulu/orphans",
        404,
        r#"[{"ret_code":-4611686018407200756,"message":"Node 'zulu' not found."}]"#,
    );
    let run = ferrite(&fake.address(), &["node", "orphans", "list", "zulu"]);
    assert_eq!(run.code, 10, "{run:?}");
    assert_eq!(run.stdout, "ERROR:\n    Node 'zulu' not found.\n");
}

#[test]
fn an_orphan_is_deleted_by_its_exact_name() {
    let fake = FakeController::start();
    let done = r#"[{"ret_code":54722563,"message":"Deleted orphaned backing volume 'web_00000' (FILE_THIN pool '/srv/node1/pool') on node 'node1'.","obj_refs":{"Node":"node1"}}]"#;
    fake.on_json("POST", "/v1/nodes/node1/orphans/delete", 200, done);
    let run = ferrite(
        &fake.address(),
        &[
            "node",
            "orphans",
            "delete",
            "node1",
            "web",
            "0",
            "--pool-name",
            "/srv/node1/pool",
            "--identity",
            "6b1f0c2e-8d6a-4e55-9d1e-2f0a7c3b9e41",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "SUCCESS:\n    Deleted orphaned backing volume 'web_00000' (FILE_THIN pool \
         '/srv/node1/pool') on node 'node1'.\n"
    );
    // Without --identity the body says "no identity" explicitly.
    let run = ferrite(
        &fake.address(),
        &[
            "n",
            "orphans",
            "d",
            "node1",
            "web",
            "0",
            "--pool-name",
            "/srv/node1/pool",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        sent(&fake),
        vec![
            (
                "POST".into(),
                "/v1/nodes/node1/orphans/delete".into(),
                Some(json!({"resource_name": "web", "volume_number": 0,
                    "identity": "6b1f0c2e-8d6a-4e55-9d1e-2f0a7c3b9e41",
                    "pool_name": "/srv/node1/pool"}))
            ),
            (
                "POST".into(),
                "/v1/nodes/node1/orphans/delete".into(),
                Some(
                    json!({"resource_name": "web", "volume_number": 0, "identity": null,
                    "pool_name": "/srv/node1/pool"})
                )
            ),
        ]
    );
}

#[test]
fn an_orphan_that_is_not_listed_is_not_deleted() {
    let fake = FakeController::start();
    let refusal = r#"[{"ret_code":-4611686018407201485,"message":"Node 'node1' reports no orphan web/0 in '/srv/node1/pool' with no identity.","correction":"List the orphans with 'ferrite node orphans list node1' and name one exactly."}]"#;
    fake.on_json("POST", "/v1/nodes/node1/orphans/delete", 404, refusal);
    let args = [
        "n",
        "orphans",
        "d",
        "node1",
        "web",
        "0",
        "--pool-name",
        "/srv/node1/pool",
    ];
    let run = ferrite(&fake.address(), &args);
    assert_eq!(run.code, 10, "{run:?}");
    assert_eq!(
        run.stdout,
        "ERROR:\nDescription:\n    Node 'node1' reports no orphan web/0 in '/srv/node1/pool' \
         with no identity.\nCorrection:\n    List the orphans with 'ferrite node orphans list \
         node1' and name one exactly.\n"
    );
    let mut machine = vec!["-m"];
    machine.extend(args);
    let run = ferrite(&fake.address(), &machine);
    assert_eq!(run.code, 10, "{run:?}");
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(printed, serde_json::from_str::<Value>(refusal).unwrap());
}

#[test]
fn recreate_missing_asks_the_node_and_reports_its_refusal() {
    let fake = FakeController::start();
    let path = "/v1/resource-definitions/web/resources/node1/volumes/0/recreate-missing";
    fake.on_json(
        "POST",
        path,
        201,
        r#"[{"ret_code":20709377,"message":"Volume web/0 on node 'node1' is created anew, empty.","obj_refs":{"Node":"node1"}}]"#,
    );
    let run = ferrite(
        &fake.address(),
        &["volume", "recreate-missing", "node1", "web", "0"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "SUCCESS:\n    Volume web/0 on node 'node1' is created anew, empty.\n"
    );
    assert_eq!(sent(&fake), vec![("POST".into(), path.into(), None)]);

    let refused = FakeController::start();
    refused.on_json(
        "POST",
        path,
        500,
        r#"[{"ret_code":-4611686018407201791,"message":"Node 'node1' did not carry out the command.","cause":"backing volume 'web_00000' exists in pool '/srv/node1/pool'; it is not missing","correction":"Nothing was changed on the node; fix the cause and ask again."}]"#,
    );
    let run = ferrite(
        &refused.address(),
        &["v", "recreate-missing", "node1", "web", "0"],
    );
    assert_eq!(run.code, 10, "{run:?}");
    assert!(
        run.stdout.contains("Cause:\n    backing volume 'web_00000' exists in pool '/srv/node1/pool'; it is not missing\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn node_list_shows_why_a_node_is_not_online() {
    let fake = FakeController::start();
    let nodes = r#"[
        {"name":"node1","type":"COMBINED","flags":[],"props":{},"net_interfaces":[{"name":"default","address":"127.0.0.11","satellite_port":3366,"satellite_encryption_type":"PLAIN","is_active":true}],"connection_status":"ONLINE"},
        {"name":"node2","type":"COMBINED","flags":[],"props":{},"net_interfaces":[{"name":"default","address":"127.0.0.12","satellite_port":3366,"satellite_encryption_type":"PLAIN","is_active":true}],"connection_status":"FULL_SYNC_FAILED","connection_status_reason":"the offered state no longer wants web/0 without asking for its deletion: the node keeps it"}
    ]"#;
    fake.on_json("GET", "/v1/nodes", 200, nodes);
    let run = ferrite(&fake.address(), &["node", "list"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("| node2 | COMBINED | 127.0.0.12:3366 (PLAIN) | OFFLINE(FULL SYNC FAILED) |"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with(
            "+\nnode2: OFFLINE(FULL SYNC FAILED)\n    the offered state no longer wants web/0 \
             without asking for its deletion: the node keeps it\n"
        ),
        "{}",
        run.stdout
    );
    // -m is the controller's JSON, the reason included.
    let run = ferrite(&fake.address(), &["-m", "node", "list"]);
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        printed[0][1]["connection_status_reason"],
        "the offered state no longer wants web/0 without asking for its deletion: the node keeps it"
    );
}
