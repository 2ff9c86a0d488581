//! The article's tutorial, command by command, with `ferrite` in place of `linstor`, against a
//! fake controller that answers what a LINSTOR 1.28 controller answered in the reference run
//! (`tests/data/tutorial_out.txt` is that run's transcript).
//!
//! For each command the test checks the HTTP request the binary sent (method, path, JSON body,
//! as the `linstor` CLI sends them) and that its output and exit code are the transcript's.
//! Where Ferrite deliberately differs, the step says how:
//! - enum values are sent in LINSTOR's canonical spelling (`COMBINED`, `PLAIN`), where the
//!   `linstor` CLI passes the user's lower-case input through;
//! - `place_count` is sent as a JSON number (LINSTOR's OpenAPI type), where the `linstor` CLI
//!   passes the argument through as a string;
//! - `controller version` names the product: `ferrite controller …`.
//!
//! The snapshot steps of the transcript are skipped: the controller serves no snapshots yet.

mod common;

use common::{Canned, FakeController, Recorded, data, ferrite};
use serde_json::{Value, json};

/// One `$ linstor ...` block of the transcript.
struct Block {
    args: Vec<String>,
    output: String,
    code: i32,
}

fn transcript() -> Vec<Block> {
    let text = std::fs::read_to_string(data("tutorial_out.txt")).unwrap();
    let mut blocks = Vec::new();
    for chunk in text.split("$ linstor ").skip(1) {
        let (command, rest) = chunk.split_once('\n').unwrap();
        let (output, code) = rest.rsplit_once("[rc=").unwrap();
        blocks.push(Block {
            args: command.split_whitespace().map(str::to_string).collect(),
            output: output.to_string(),
            code: code.trim().trim_end_matches(']').parse().unwrap(),
        });
    }
    blocks
}

fn file(name: &str) -> String {
    std::fs::read_to_string(data(name)).unwrap()
}

fn success(messages: &[&str]) -> String {
    let entries: Vec<Value> = messages
        .iter()
        .map(|m| json!({"ret_code": 20709377, "message": m, "obj_refs": {"Node": "x"}}))
        .collect();
    Value::Array(entries).to_string()
}

/// What one step answers and expects.
struct Step {
    /// The request(s) the step must send, in order, after the handshake, with their answers.
    exchanges: Vec<(&'static str, &'static str, Option<Value>, Canned)>,
}

fn exchange(
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    answer: Canned,
) -> (&'static str, &'static str, Option<Value>, Canned) {
    (method, path, body, answer)
}

fn ok(body: String) -> Canned {
    Canned::json(200, body)
}

fn created(messages: &[&str]) -> Canned {
    Canned::json(201, success(messages))
}

/// The steps, in transcript order, keyed by the transcript's command line.
fn steps() -> Vec<(&'static str, Step)> {
    let node = |name: &'static str, address: &str| {
        (
            Box::leak(format!("node create {name} {address} --node-type combined").into_boxed_str())
                as &'static str,
            Step {
                exchanges: vec![exchange(
                    "POST",
                    "/v1/nodes",
                    Some(
                        json!({"name": name, "type": "COMBINED", "net_interfaces": [{
                        "name": "default", "address": address, "satellite_port": 3366,
                        "satellite_encryption_type": "PLAIN", "is_active": true}]}),
                    ),
                    created(&[&format!("New node '{name}' registered.")]),
                )],
            },
        )
    };
    let pool = |name: &'static str, path: &'static str| {
        (
            Box::leak(format!("storage-pool create lvm {name} pool_ssd drbdpool").into_boxed_str())
                as &'static str,
            Step {
                exchanges: vec![exchange(
                    "POST",
                    path,
                    Some(
                        json!({"storage_pool_name": "pool_ssd", "provider_kind": "LVM",
                        "props": {"StorDriver/StorPoolName": "drbdpool"}}),
                    ),
                    created(&[&format!(
                        "Successfully created storage pool 'pool_ssd' on node '{name}'."
                    )]),
                )],
            },
        )
    };
    let get = |path: &'static str, body: String| exchange("GET", path, None, ok(body));
    let resource_list = |file_name: &str| Step {
        exchanges: vec![get("/v1/view/resources", file(file_name))],
    };
    vec![
        node("alpha", "10.43.70.2"),
        node("bravo", "10.43.70.3"),
        node("charlie", "10.43.70.4"),
        node("delta", "10.43.70.5"),
        (
            "node list",
            Step {
                exchanges: vec![get("/v1/nodes", file("nodes.json"))],
            },
        ),
        pool("alpha", "/v1/nodes/alpha/storage-pools"),
        pool("bravo", "/v1/nodes/bravo/storage-pools"),
        pool("charlie", "/v1/nodes/charlie/storage-pools"),
        pool("delta", "/v1/nodes/delta/storage-pools"),
        (
            "storage-pool list",
            Step {
                exchanges: vec![get("/v1/view/storage-pools", file("storage_pools.json"))],
            },
        ),
        (
            "resource-group create --storage-pool pool_ssd --place-count 2 my_ssd_group",
            Step {
                exchanges: vec![exchange(
                    "POST",
                    "/v1/resource-groups",
                    Some(json!({"name": "my_ssd_group", "select_filter": {
                        "place_count": 2, "storage_pool_list": ["pool_ssd"]}})),
                    created(&["New resource group 'my_ssd_group' created."]),
                )],
            },
        ),
        (
            "volume-group create my_ssd_group",
            Step {
                exchanges: vec![exchange(
                    "POST",
                    "/v1/resource-groups/my_ssd_group/volume-groups",
                    Some(json!({})),
                    created(&[
                        "New volume group with number '0' of resource group 'my_ssd_group' created.",
                    ]),
                )],
            },
        ),
        (
            "resource-group list",
            Step {
                exchanges: vec![
                    get("/v1/resource-groups", file("resource_groups.json")),
                    get("/v1/resource-groups/DfltRscGrp/volume-groups", "[]".into()),
                    get(
                        "/v1/resource-groups/my_ssd_group/volume-groups",
                        file("volume_groups.json"),
                    ),
                ],
            },
        ),
        (
            "volume-group list my_ssd_group",
            Step {
                exchanges: vec![get(
                    "/v1/resource-groups/my_ssd_group/volume-groups",
                    file("volume_groups.json"),
                )],
            },
        ),
        (
            "resource-group spawn-resources my_ssd_group my_ssd_res 20G",
            Step {
                exchanges: vec![exchange(
                    "POST",
                    "/v1/resource-groups/my_ssd_group/spawn",
                    Some(json!({"resource_definition_name": "my_ssd_res",
                        "volume_sizes": [20971520], "partial": false,
                        "definitions_only": false, "select_filter": {}})),
                    created(&[
                        "Resource definition 'my_ssd_res' created.",
                        "Volume definition with number '0' successfully  created in resource definition 'my_ssd_res'.",
                        "Created resource 'my_ssd_res' on 'alpha'",
                        "Resource 'my_ssd_res' successfully autoplaced on 2 nodes",
                    ]),
                )],
            },
        ),
        ("resource list", resource_list("resources_spawned.json")),
        ("volume list", resource_list("resources_spawned.json")),
        (
            "resource-definition list",
            Step {
                exchanges: vec![get(
                    "/v1/resource-definitions",
                    file("resource_definitions.json"),
                )],
            },
        ),
        (
            "resource create delta my_ssd_res --diskless",
            Step {
                exchanges: vec![exchange(
                    "POST",
                    "/v1/resource-definitions/my_ssd_res/resources",
                    Some(json!([{"resource": {"node_name": "delta", "flags": ["DISKLESS"]}}])),
                    created(&[
                        "Resource 'my_ssd_res' on node 'delta' successfully created.",
                        "Created resource 'my_ssd_res' on 'delta'",
                    ]),
                )],
            },
        ),
        (
            "resource list",
            resource_list("resources_with_diskless.json"),
        ),
        (
            "resource toggle-disk delta my_ssd_res --storage-pool pool_ssd",
            Step {
                exchanges: vec![exchange(
                    "PUT",
                    "/v1/resource-definitions/my_ssd_res/resources/delta/toggle-disk",
                    Some(json!({"operation": "INTO_DRBD_DISKFUL", "storage_pool": "pool_ssd"})),
                    ok(success(&["Added disk on 'delta'"])),
                )],
            },
        ),
        (
            "resource toggle-disk alpha my_ssd_res --diskless",
            Step {
                exchanges: vec![exchange(
                    "PUT",
                    "/v1/resource-definitions/my_ssd_res/resources/alpha/toggle-disk",
                    Some(json!({"operation": "INTO_DRBD_DISKLESS"})),
                    ok(success(&["Removed disk on 'alpha'"])),
                )],
            },
        ),
        ("resource list", resource_list("resources_toggled.json")),
        ("volume list", resource_list("resources_toggled.json")),
        (
            "resource delete alpha my_ssd_res",
            Step {
                exchanges: vec![exchange(
                    "DELETE",
                    "/v1/resource-definitions/my_ssd_res/resources/alpha",
                    None,
                    ok(success(&["Resource 'my_ssd_res' on node 'alpha' deleted."])),
                )],
            },
        ),
        ("resource list", resource_list("resources_final.json")),
        (
            "-m node list",
            Step {
                exchanges: vec![get("/v1/nodes", file("nodes.json"))],
            },
        ),
        ("-m resource list", resource_list("resources_final.json")),
        ("controller version", Step { exchanges: vec![] }),
        (
            "resource delete zulu my_ssd_res",
            Step {
                exchanges: vec![exchange(
                    "DELETE",
                    "/v1/resource-definitions/my_ssd_res/resources/zulu",
                    None,
                    Canned::json(
                        404,
                        r#"[{"ret_code":-4611686018427387602,"message":"Resource 'my_ssd_res' on node 'zulu' not found.","obj_refs":{"RscDfn":"my_ssd_res","Node":"zulu"}}]"#,
                    ),
                )],
            },
        ),
    ]
}

#[test]
fn the_tutorial_sends_linstors_requests_and_prints_linstors_output() {
    let fake = FakeController::start();
    let mut blocks = transcript().into_iter();
    for (command, step) in steps() {
        let args: Vec<String> = command.split_whitespace().map(str::to_string).collect();
        let block = loop {
            let block = blocks
                .next()
                .unwrap_or_else(|| panic!("no transcript block for {command}"));
            if block.args == args {
                break block;
            }
            assert!(
                block.args.first().is_some_and(|a| a == "snapshot"),
                "transcript step {:?} has no test step (next test step: {command})",
                block.args
            );
        };
        for (method, path, _, answer) in &step.exchanges {
            fake.on(method, path, answer.clone());
        }
        fake.clear();
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = ferrite(&fake.address(), &arg_refs);

        let sent: Vec<(String, String, Option<Value>)> = fake
            .requests()
            .into_iter()
            .map(
                |Recorded {
                     method, path, body, ..
                 }| (method, path, body),
            )
            .collect();
        let expected: Vec<(String, String, Option<Value>)> = step
            .exchanges
            .iter()
            .map(|(m, p, b, _)| (m.to_string(), p.to_string(), b.clone()))
            .collect();
        assert_eq!(sent, expected, "requests of '{command}'");

        let expected_output = if command == "controller version" {
            block
                .output
                .replace("linstor controller", "ferrite controller")
        } else {
            block.output.clone()
        };
        assert_eq!(
            run.stdout, expected_output,
            "output of '{command}'; stderr: {}",
            run.stderr
        );
        assert_eq!(run.code, block.code, "exit code of '{command}'");
    }
    let rest: Vec<Vec<String>> = blocks.map(|b| b.args).collect();
    assert!(
        rest.is_empty(),
        "transcript steps without a test step: {rest:?}"
    );
}

#[test]
fn every_call_starts_with_one_version_handshake() {
    let fake = FakeController::start();
    fake.on_json("GET", "/v1/nodes", 200, "[]");
    let run = ferrite(&fake.address(), &["node", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = fake.all_requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/controller/version", "/v1/nodes"]);
    let agent = requests[1].headers.get("user-agent").unwrap();
    assert!(agent.starts_with("ferrite/"), "{agent}");
    assert_eq!(
        run.stdout,
        "+-------------------------------------+\n| Node | NodeType | Addresses | State |\n\
         |=====================================|\n+-------------------------------------+\n"
    );
}
