//! Answers that LINSTOR's clients and the scripts written for them read, kept as LINSTOR gives
//! them: the entries of a property change, deleting what does not exist, a resource group
//! naming a pool no node has yet, the shape of a select filter, network-interface calls on an
//! offline node, shared satellite addresses and default ports.
//!
//! Every case runs against `common::Fixture::cluster` (three OFFLINE nodes, no satellite).

#[allow(dead_code)]
mod common;

use axum::http::{Method, StatusCode};
use common::Fixture;
use ferrite_types::ApiCallRc;
use ferrite_types::api_call_rc::{code, mask};
use serde_json::{Value, json};

fn codes(entries: &[ApiCallRc]) -> Vec<u64> {
    entries.iter().map(|e| e.ret_code().code()).collect()
}

#[tokio::test]
async fn setting_properties_answers_the_keys_set_before_modified() {
    let fixture = Fixture::cluster().await;
    for (path, object) in [
        ("/v1/nodes/node1", mask::NODE),
        ("/v1/resource-groups/my_ssd_group", mask::RSC_GRP),
        ("/v1/resource-definitions/res1", mask::RSC_DFN),
        ("/v1/nodes/node1/storage-pools/pool_ssd", mask::STOR_POOL),
    ] {
        let entries = fixture
            .expect_success(
                Method::PUT,
                path,
                json!({"override_props": {"Aux/b": "2", "Aux/a": "1"}}),
            )
            .await;
        let set = entries
            .iter()
            .position(|e| e.message == "Successfully set property key(s): Aux/a,Aux/b")
            .unwrap_or_else(|| panic!("{path}: no set-property entry in {entries:?}"));
        let rc = entries[set].ret_code();
        assert_eq!(rc.code(), code::CREATED, "{path}");
        assert_eq!(rc.bits() & mask::OBJ_BITS, object, "{path}");
        assert_eq!(rc.bits() & mask::OP_BITS, mask::CRT, "{path}");
        let modified = entries
            .iter()
            .position(|e| e.ret_code().code() == code::MODIFIED)
            .unwrap_or_else(|| panic!("{path}: no modified entry in {entries:?}"));
        assert!(set < modified, "{path}: {entries:?}");
    }
    // Deleting a key alone sets nothing: no such entry.
    let entries = fixture
        .expect_success(
            Method::PUT,
            "/v1/nodes/node1",
            json!({"delete_props": ["Aux/a"]}),
        )
        .await;
    assert!(
        entries
            .iter()
            .all(|e| !e.message.starts_with("Successfully set")),
        "{entries:?}"
    );
    // The controller's properties: one entry per key, with its value, as LINSTOR answers.
    let entries = fixture
        .expect_success(
            Method::POST,
            "/v1/controller/properties",
            json!({"override_props": {"Aux/x": "y"}}),
        )
        .await;
    assert_eq!(
        entries[0].message,
        "Successfully set property 'Aux/x' to value 'y'"
    );
    assert_eq!(
        entries[0].ret_code().bits() & mask::OBJ_BITS,
        mask::CTRL_CONF
    );
}

#[tokio::test]
async fn deleting_what_does_not_exist_warns_with_200_and_changes_nothing() {
    let fixture = Fixture::cluster().await;
    let before = fixture.snapshot().await;
    for path in [
        "/v1/nodes/node9",
        "/v1/nodes/node1/storage-pools/pool_hdd",
        "/v1/nodes/node1/net-interfaces/eth9",
        "/v1/resource-groups/nope_group",
        "/v1/resource-definitions/res9",
        "/v1/resource-definitions/res1/volume-definitions/5",
    ] {
        let answer = fixture.send(Method::DELETE, path, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
        let entries: Vec<ApiCallRc> = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(codes(&entries), vec![code::WARN_NOT_FOUND], "{path}");
        assert!(entries[0].ret_code().is_warning(), "{path}");
        assert!(entries[0].cause.is_some(), "{path}");
    }
    assert_eq!(before.difference(&fixture.snapshot().await), None);
    // The parent must exist: that is still an error.
    let answer = fixture
        .send(
            Method::DELETE,
            "/v1/nodes/node9/storage-pools/pool_ssd",
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_group_may_name_a_pool_no_node_has_yet_with_a_warning() {
    let fixture = Fixture::cluster().await;
    let entries = fixture
        .expect_success(
            Method::POST,
            "/v1/resource-groups",
            json!({"name": "later", "select_filter": {"storage_pool_list": ["pool_hdd"]}}),
        )
        .await;
    assert_eq!(entries[0].ret_code().code(), code::WARN_NOT_FOUND);
    assert!(entries[0].message.contains("pool_hdd"), "{entries:?}");
    assert_eq!(entries[1].ret_code().code(), code::CREATED);
    let entries = fixture
        .expect_success(
            Method::PUT,
            "/v1/resource-groups/my_ssd_group",
            json!({"select_filter": {"storage_pool_list": ["pool_ssd", "pool_nvme"]}}),
        )
        .await;
    assert!(
        entries
            .iter()
            .any(|e| e.ret_code().code() == code::WARN_NOT_FOUND && e.message.contains("pool_nvme")),
        "{entries:?}"
    );
}

async fn filter_of(fixture: &Fixture, group: &str) -> Value {
    fixture
        .get_json(&format!("/v1/resource-groups/{group}"))
        .await["select_filter"]
        .clone()
}

#[tokio::test]
async fn the_select_filter_has_linstors_shape() {
    let fixture = Fixture::cluster().await;
    // One pool: echoed in storage_pool and listed.
    let filter = filter_of(&fixture, "my_ssd_group").await;
    assert_eq!(filter["storage_pool"], "pool_ssd", "{filter}");
    assert_eq!(filter["storage_pool_list"], json!(["pool_ssd"]), "{filter}");
    // The legacy single pool alone is listed too.
    fixture
        .expect_success(
            Method::POST,
            "/v1/resource-groups",
            json!({"name": "legacy", "select_filter": {"storage_pool": "pool_ssd",
                   "layer_stack": ["DRBD", "STORAGE"], "node_name_list": []}}),
        )
        .await;
    let filter = filter_of(&fixture, "legacy").await;
    assert_eq!(filter["storage_pool_list"], json!(["pool_ssd"]), "{filter}");
    assert_eq!(filter["storage_pool"], "pool_ssd", "{filter}");
    assert!(filter.get("node_name_list").is_none(), "{filter}");
    // Clearing the layer list and the pools (`--layer-list=`, `--storage-pool=`) removes them.
    fixture
        .expect_success(
            Method::PUT,
            "/v1/resource-groups/legacy",
            json!({"select_filter": {"layer_stack": [], "storage_pool_list": []}}),
        )
        .await;
    let filter = filter_of(&fixture, "legacy").await;
    for field in ["layer_stack", "storage_pool_list", "storage_pool"] {
        assert!(filter.get(field).is_none(), "{field} in {filter}");
    }
    // Two pools: listed, no single pool echoed.
    fixture
        .expect_success(
            Method::PUT,
            "/v1/resource-groups/legacy",
            json!({"select_filter": {"storage_pool_list": ["pool_ssd", "DfltDisklessStorPool"]}}),
        )
        .await;
    let filter = filter_of(&fixture, "legacy").await;
    assert!(filter.get("storage_pool").is_none(), "{filter}");
    assert_eq!(filter["storage_pool_list"].as_array().unwrap().len(), 2);
    // A new single pool replaces the list.
    fixture
        .expect_success(
            Method::PUT,
            "/v1/resource-groups/legacy",
            json!({"select_filter": {"storage_pool": "pool_ssd"}}),
        )
        .await;
    let filter = filter_of(&fixture, "legacy").await;
    assert_eq!(filter["storage_pool_list"], json!(["pool_ssd"]), "{filter}");
}

#[tokio::test]
async fn net_interface_calls_on_an_offline_node_answer_without_a_connection_warning() {
    let fixture = Fixture::cluster().await;
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/nodes/node1/net-interfaces",
            Some(json!({"name": "second", "address": "10.9.9.9"})),
        ),
        (
            Method::PUT,
            "/v1/nodes/node1/net-interfaces/second",
            Some(json!({"name": "second", "address": "10.9.9.8"})),
        ),
        (
            Method::DELETE,
            "/v1/nodes/node1/net-interfaces/second",
            None,
        ),
    ] {
        let answer = fixture
            .send(
                method.clone(),
                path,
                body.map(|b| b.to_string().into_bytes()),
            )
            .await;
        assert!(
            answer.status.is_success(),
            "{method} {path}: {}",
            answer.text()
        );
        let entries: Vec<ApiCallRc> = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(entries.len(), 1, "{method} {path}: {entries:?}");
        assert!(!entries[0].ret_code().is_warning() && !entries[0].is_error());
    }
}

#[tokio::test]
async fn interfaces_without_a_port_get_linstors_default_and_addresses_may_be_shared() {
    let fixture = Fixture::cluster().await;
    fixture
        .expect_success(
            Method::POST,
            "/v1/nodes/node1/net-interfaces",
            json!({"name": "second", "address": "10.9.9.9"}),
        )
        .await;
    let interface = fixture
        .get_json("/v1/nodes/node1/net-interfaces/second")
        .await;
    assert_eq!(interface["satellite_port"], 3366, "{interface}");
    fixture
        .expect_success(
            Method::POST,
            "/v1/nodes",
            json!({"name": "ctrl1", "type": "CONTROLLER",
                   "net_interfaces": [{"name": "default", "address": "10.9.9.7"}]}),
        )
        .await;
    let interface = fixture
        .get_json("/v1/nodes/ctrl1/net-interfaces/default")
        .await;
    assert_eq!(interface["satellite_port"], 3376, "{interface}");
    // node1's satellite address for a new node: accepted, with a warning that says why the
    // satellite will serve only one of them.
    let entries = fixture
        .expect_success(
            Method::POST,
            "/v1/nodes",
            json!({"name": "node4", "type": "SATELLITE", "net_interfaces": [{
                "name": "default", "address": common::node_address(1), "satellite_port": 1}]}),
        )
        .await;
    assert!(
        entries
            .iter()
            .any(|e| e.ret_code().is_warning() && e.message.contains("node1")),
        "{entries:?}"
    );
    assert_eq!(
        fixture
            .get_json("/v1/nodes")
            .await
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test]
async fn linstor_calls_ferrite_does_not_serve_answer_501_not_404() {
    let fixture = Fixture::cluster().await;
    for (method, path) in [
        (Method::GET, "/v1/schedules"),
        (Method::GET, "/v1/remotes"),
        (Method::GET, "/v1/remotes/s3"),
        (Method::GET, "/v1/remotes/my_remote/backups"),
        (Method::GET, "/v1/view/schedules-by-resource/res1"),
        (Method::GET, "/v1/view/backup/queue"),
        (Method::GET, "/v1/files"),
        (Method::PUT, "/v1/files/etc%2Ffoo"),
        (Method::GET, "/v1/encryption/passphrase"),
        (Method::PATCH, "/v1/encryption/passphrase"),
        (
            Method::POST,
            "/v1/resource-definitions/res1/files/etc%2Ffoo",
        ),
        (Method::GET, "/v1/controller/auth/token"),
    ] {
        let answer = fixture.send(method.clone(), path, None).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_IMPLEMENTED,
            "{method} {path}: {}",
            answer.text()
        );
        let entries: Vec<ApiCallRc> = serde_json::from_slice(&answer.body).unwrap();
        assert!(entries[0].is_error(), "{method} {path}");
        assert_eq!(entries[0].ret_code().code(), code::FAIL_NOT_IMPLEMENTED);
        assert!(entries[0].correction.is_some());
    }
    // Not LINSTOR's calls: still 404 and 405; and a LINSTOR method on a path Ferrite serves
    // with other methods is 405.
    let answer = fixture.send(Method::GET, "/v1/schedulez", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    for (method, path) in [
        (Method::PATCH, "/v1/nodes"),
        (Method::PATCH, "/v1/error-reports"),
    ] {
        let answer = fixture.send(method.clone(), path, None).await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
    }
}
