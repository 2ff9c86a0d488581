//! How the binary behaves when things go wrong, and how it finds its controller: exit codes
//! 2 (usage), 10 (error entry), 20 (no controller), 21 (timeout), 22 (not LINSTOR's JSON), the
//! controller list from flag, environment and config file, and `-m` for mutations.

mod common;

use std::time::{Duration, Instant};

use common::{Canned, FakeController, dead_address, ferrite, ferrite_command};

const NOT_FOUND: &str = r#"[{"ret_code":-4611686018427387602,"message":"Resource 'r' on node 'zulu' not found.","cause":"The node has no such resource.","correction":"List them with 'ferrite resource list'.","details":"Node: zulu","error_report_ids":["6F0A-000001"]}]"#;

#[test]
fn nothing_listening_exits_20_and_names_every_controller_tried() {
    let (first, second) = (dead_address(), dead_address());
    let run = ferrite(&format!("{first},{second}"), &["node", "list"]);
    assert_eq!(run.code, 20, "{run:?}");
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with(
            "Error: no controller could be reached (controllers from --controllers):\n"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("  {first}: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("  {second}: ")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Correction: start ferrite-controller"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_next_controller_answers_when_the_first_does_not() {
    let fake = FakeController::start();
    fake.on_json("GET", "/v1/nodes", 200, "[]");
    let run = ferrite(
        &format!("{},{}", dead_address(), fake.address()),
        &["n", "l"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn controllers_from_environment_and_config_file() {
    let fake = FakeController::start();
    fake.on_json("GET", "/v1/nodes", 200, "[]");
    let home = tempfile::tempdir().unwrap();
    let run_with = |vars: &[(&str, String)]| {
        let mut command = ferrite_command(home.path());
        for (name, value) in vars {
            command.env(name, value);
        }
        common::Run::from(command.args(["node", "list"]).output().unwrap())
    };

    let run = run_with(&[("FERRITE_CONTROLLERS", fake.address())]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = run_with(&[("LS_CONTROLLERS", format!("linstor://{}", fake.address()))]);
    assert_eq!(run.code, 0, "{run:?}");

    // FERRITE_CONTROLLERS wins over LS_CONTROLLERS.
    let run = run_with(&[
        ("FERRITE_CONTROLLERS", dead_address()),
        ("LS_CONTROLLERS", fake.address()),
    ]);
    assert_eq!(run.code, 20, "{run:?}");
    assert!(
        run.stderr
            .contains("controllers from environment variable FERRITE_CONTROLLERS"),
        "{}",
        run.stderr
    );

    // The config file is read when no variable is set.
    let config = home.path().join("config/ferrite");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("client.toml"),
        format!(
            "controllers = [\"{}\", \"http://{}\"]\n",
            dead_address(),
            fake.address()
        ),
    )
    .unwrap();
    let run = run_with(&[]);
    assert_eq!(run.code, 0, "{run:?}");

    // A broken config file is reported, not skipped.
    std::fs::write(config.join("client.toml"), "controllers = [\n").unwrap();
    let run = run_with(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("client.toml"), "{}", run.stderr);
}

#[test]
fn bad_arguments_exit_2_before_anything_is_sent() {
    let fake = FakeController::start();
    for args in [
        vec!["resource-group", "spawn-resources", "g", "r", "2X"],
        vec![
            "node",
            "create",
            "alpha",
            "10.0.0.1",
            "--node-type",
            "toaster",
        ],
        vec!["storage-pool", "create", "tape", "n", "p", "x"],
        vec!["volume-definition", "create", "r", "0"],
        vec!["resource", "toggle-disk", "n", "r", "--diskless", "-s", "p"],
        vec!["no-such-command"],
    ] {
        let run = ferrite(&fake.address(), &args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("error:") || run.stderr.contains("Usage"),
            "{run:?}"
        );
    }
    assert!(
        fake.all_requests().is_empty(),
        "usage errors contact nobody"
    );
    let run = ferrite("https://controller:3371", &["node", "list"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("plain HTTP only"), "{}", run.stderr);
}

#[test]
fn an_error_entry_exits_10_and_prints_every_part() {
    let fake = FakeController::start();
    fake.on_json(
        "DELETE",
        "/v1/resource-definitions/r/resources/zulu",
        404,
        NOT_FOUND,
    );
    let run = ferrite(&fake.address(), &["r", "d", "zulu", "r"]);
    assert_eq!(run.code, 10, "{run:?}");
    assert_eq!(
        run.stdout,
        "ERROR:\nDescription:\n    Resource 'r' on node 'zulu' not found.\nCause:\n    \
         The node has no such resource.\nCorrection:\n    List them with 'ferrite resource list'.\n\
         Details:\n    Node: zulu\nShow reports:\n    ferrite error-reports show 6F0A-000001\n"
    );

    // -m prints the entries as JSON and still exits 10.
    let run = ferrite(&fake.address(), &["-m", "r", "d", "zulu", "r"]);
    assert_eq!(run.code, 10, "{run:?}");
    let printed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        printed,
        serde_json::from_str::<serde_json::Value>(NOT_FOUND).unwrap()
    );
    assert!(
        run.stdout
            .starts_with("[\n  {\n    \"ret_code\": -4611686018427387602,\n")
    );
}

#[test]
fn a_refused_list_exits_10() {
    let fake = FakeController::start();
    fake.on_json(
        "GET",
        "/v1/resource-groups/nope/volume-groups",
        404,
        r#"[{"ret_code":-4611686018427387587,"message":"Resource group 'nope' not found."}]"#,
    );
    let run = ferrite(&fake.address(), &["vg", "l", "nope"]);
    assert_eq!(run.code, 10, "{run:?}");
    assert_eq!(run.stdout, "ERROR:\n    Resource group 'nope' not found.\n");
}

#[test]
fn warnings_pass_unless_warn_as_error() {
    let fake = FakeController::start();
    fake.on_json(
        "DELETE",
        "/v1/nodes/alpha",
        200,
        r#"[{"ret_code":-9223372036837998590,"message":"No active connection to satellite 'alpha'."},{"ret_code":54722562,"message":"Node 'alpha' deleted."}]"#,
    );
    let run = ferrite(&fake.address(), &["n", "d", "alpha"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "WARNING:\n    No active connection to satellite 'alpha'.\nSUCCESS:\n    Node 'alpha' deleted.\n"
    );
    let home = tempfile::tempdir().unwrap();
    let run = common::Run::from(
        ferrite_command(home.path())
            .args([
                "--warn-as-error",
                "--controllers",
                &fake.address(),
                "n",
                "d",
                "alpha",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 10, "{run:?}");
}

#[test]
fn replies_that_are_not_linstor_json_exit_22() {
    let fake = FakeController::start();
    fake.on(
        "POST",
        "/v1/resource-groups",
        Canned {
            status: 500,
            content_type: "text/html",
            body: "<html><body>Internal Server Error</body></html>".into(),
            delay: Duration::ZERO,
        },
    );
    fake.on_json("GET", "/v1/nodes", 200, "{\"not\": \"a list\"}");
    let run = ferrite(&fake.address(), &["rg", "c", "g"]);
    assert_eq!(run.code, 22, "{run:?}");
    assert!(run.stderr.contains("HTTP status 500"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Internal Server Error"),
        "{}",
        run.stderr
    );
    let run = ferrite(&fake.address(), &["n", "l"]);
    assert_eq!(run.code, 22, "{run:?}");
    assert!(run.stderr.contains("could not be read"), "{}", run.stderr);
}

#[test]
fn a_controller_that_does_not_answer_in_time_exits_21() {
    let fake = FakeController::start();
    fake.on(
        "GET",
        "/v1/view/resources",
        Canned {
            delay: Duration::from_secs(4),
            ..Canned::json(200, "[]")
        },
    );
    let started = Instant::now();
    let home = tempfile::tempdir().unwrap();
    let run = common::Run::from(
        ferrite_command(home.path())
            .args(["-t", "1", "--controllers", &fake.address(), "r", "l"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 21, "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        run.stderr
            .contains("did not answer GET /v1/view/resources within 1 s"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_server_that_is_not_a_controller_is_skipped() {
    let not_linstor = FakeController::start();
    not_linstor.on_json("GET", "/v1/controller/version", 404, "[]");
    let too_old = FakeController::start();
    too_old.on_json(
        "GET",
        "/v1/controller/version",
        200,
        r#"{"version":"0.9","build_time":"x","rest_api_version":"1.0.0"}"#,
    );
    let run = ferrite(
        &format!("{},{}", not_linstor.address(), too_old.address()),
        &["n", "l"],
    );
    assert_eq!(run.code, 20, "{run:?}");
    assert!(run.stderr.contains("HTTP status 404"), "{}", run.stderr);
    assert!(
        run.stderr.contains("speaks REST API 1.0.0"),
        "{}",
        run.stderr
    );
}

#[test]
fn machine_readable_mutations_print_one_list_of_all_answers() {
    let fake = FakeController::start();
    fake.on_json(
        "DELETE",
        "/v1/resource-definitions/r/resources/a",
        200,
        r#"[{"ret_code":53739522,"message":"Resource 'r' on node 'a' deleted.","obj_refs":{"Node":"a"}}]"#,
    );
    fake.on_json(
        "DELETE",
        "/v1/resource-definitions/r/resources/b",
        200,
        r#"[{"ret_code":53739522,"message":"Resource 'r' on node 'b' deleted.","obj_refs":{"Node":"b"}}]"#,
    );
    let run = ferrite(&fake.address(), &["-m", "r", "d", "a", "b", "r"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "[\n  {\n    \"ret_code\": 53739522,\n    \"message\": \"Resource 'r' on node 'a' deleted.\",\n    \
         \"obj_refs\": {\n      \"Node\": \"a\"\n    }\n  },\n  {\n    \"ret_code\": 53739522,\n    \
         \"message\": \"Resource 'r' on node 'b' deleted.\",\n    \"obj_refs\": {\n      \
         \"Node\": \"b\"\n    }\n  }\n]\n"
    );
}

#[test]
fn toggle_disk_uses_the_url_form_before_api_1_28() {
    let fake = FakeController::start();
    fake.on_json(
        "GET",
        "/v1/controller/version",
        200,
        r#"{"version":"1.20.0","build_time":"x","rest_api_version":"1.27.0"}"#,
    );
    let answer = r#"[{"ret_code":53608451,"message":"done"}]"#;
    fake.on_json(
        "PUT",
        "/v1/resource-definitions/r/resources/n/toggle-disk/diskful/pool_ssd",
        200,
        answer,
    );
    fake.on_json(
        "PUT",
        "/v1/resource-definitions/r/resources/n/migrate-disk/old",
        200,
        answer,
    );
    let run = ferrite(&fake.address(), &["r", "td", "n", "r", "-s", "pool_ssd"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = ferrite(
        &fake.address(),
        &["r", "td", "n", "r", "--migrate-from", "old"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let sent: Vec<_> = fake
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.body))
        .collect();
    assert_eq!(
        sent,
        vec![
            (
                "PUT".to_string(),
                "/v1/resource-definitions/r/resources/n/toggle-disk/diskful/pool_ssd".to_string(),
                None
            ),
            (
                "PUT".to_string(),
                "/v1/resource-definitions/r/resources/n/migrate-disk/old".to_string(),
                None
            ),
        ]
    );
}

#[test]
fn a_node_name_that_resolves_to_loopback_only_is_refused() {
    let fake = FakeController::start();
    let run = ferrite(&fake.address(), &["node", "create", "localhost"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("Unable to determine a valid ip address"),
        "{}",
        run.stderr
    );
    assert!(fake.requests().is_empty(), "nothing was created");
}

#[test]
fn a_controller_that_hangs_in_the_handshake_is_passed_over() {
    let hung = FakeController::start();
    hung.on(
        "GET",
        "/v1/controller/version",
        Canned {
            delay: Duration::from_secs(4),
            ..Canned::json(200, common::VERSION)
        },
    );
    let fake = FakeController::start();
    fake.on_json("GET", "/v1/nodes", 200, "[]");
    let started = Instant::now();
    let home = tempfile::tempdir().unwrap();
    let controllers = format!("{},{}", hung.address(), fake.address());
    let run = common::Run::from(
        ferrite_command(home.path())
            .args(["-t", "1", "--controllers", &controllers, "n", "l"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests().len(), 1);
}
