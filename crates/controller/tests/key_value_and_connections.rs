//! The key-value store, node connections and resource connections over REST: LINSTOR's paths
//! and shapes, and every change kept across a controller restart.

#[allow(dead_code)]
mod common;

use axum::http::{Method, StatusCode};
use common::Fixture;
use serde_json::json;

#[tokio::test]
async fn key_value_stores_and_connections_are_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let fixture = Fixture::in_dir(dir.path()).await;
        fixture.build_cluster().await;
        // python-linstor's KV sends its namespace with a leading '/'.
        let entries = fixture
            .expect_success(
                Method::PUT,
                "/v1/key-value-store/csi_kv",
                json!({"override_props": {"/ns/a": "1", "/ns/b": "2"}}),
            )
            .await;
        assert!(
            entries[0]
                .message
                .starts_with("Successfully set property key(s)")
        );
        fixture
            .expect_success(
                Method::PUT,
                "/v1/key-value-store/CSI_KV",
                json!({"delete_props": ["/ns/b"]}),
            )
            .await;
        fixture
            .expect_success(
                Method::PUT,
                "/v1/key-value-store/gone_kv",
                json!({"override_props": {"x": "1"}}),
            )
            .await;
        fixture
            .expect_success(Method::DELETE, "/v1/key-value-store/gone_kv", json!(null))
            .await;
        fixture
            .expect_success(
                Method::PUT,
                "/v1/node-connections/node2/node1",
                json!({"override_props": {"Aux/link": "fast"}}),
            )
            .await;
        fixture
            .expect_success(
                Method::PUT,
                "/v1/resource-definitions/res1/resource-connections/node1/node2",
                json!({"override_props": {"DrbdOptions/Net/max-buffers": "8000"}}),
            )
            .await;
        // Refusals: an unknown node, a node paired with itself, a resource that does not exist
        // there, an invalid instance name.
        for (path, status) in [
            ("/v1/node-connections/node1/node9", StatusCode::NOT_FOUND),
            ("/v1/node-connections/node1/NODE1", StatusCode::BAD_REQUEST),
            (
                "/v1/resource-definitions/res1/resource-connections/node1/node3",
                StatusCode::NOT_FOUND,
            ),
            ("/v1/key-value-store/9lives", StatusCode::BAD_REQUEST),
        ] {
            let answer = fixture
                .send(
                    Method::PUT,
                    path,
                    Some(br#"{"override_props": {"Aux/a": "1"}}"#.to_vec()),
                )
                .await;
            assert_eq!(answer.status, status, "{path}: {}", answer.text());
        }
    }
    let fixture = Fixture::in_dir(dir.path()).await;
    assert_eq!(
        fixture.get_json("/v1/key-value-store").await,
        json!([{"name": "csi_kv", "props": {"ns/a": "1"}}])
    );
    assert_eq!(
        fixture.get_json("/v1/key-value-store/csi_kv").await,
        json!([{"name": "csi_kv", "props": {"ns/a": "1"}}])
    );
    let answer = fixture
        .send(Method::GET, "/v1/key-value-store/gone_kv", None)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(
        fixture.get_json("/v1/node-connections?node_a=node1").await,
        json!([{"node_a": "node1", "node_b": "node2", "props": {"Aux/link": "fast"}}])
    );
    assert_eq!(
        fixture.get_json("/v1/node-connections?node_a=node3").await,
        json!([])
    );
    let connections = fixture
        .get_json("/v1/resource-definitions/res1/resource-connections")
        .await;
    assert_eq!(
        connections[0]["props"]["DrbdOptions/Net/max-buffers"], "8000",
        "{connections}"
    );
    assert_eq!(
        fixture
            .get_json("/v1/resource-definitions/res1/resource-connections/node2/node1")
            .await[0]["node_a"],
        "node1"
    );
    // A resource connection goes with either resource; deleting the last property deletes a
    // node connection.
    fixture
        .expect_success(
            Method::DELETE,
            "/v1/resource-definitions/res1/resources/node2",
            json!(null),
        )
        .await;
    fixture
        .expect_success(
            Method::PUT,
            "/v1/node-connections/node1/node2",
            json!({"delete_props": ["Aux/link"]}),
        )
        .await;
    assert_eq!(fixture.get_json("/v1/node-connections").await, json!([]));
}
