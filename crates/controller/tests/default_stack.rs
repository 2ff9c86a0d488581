//! A definition created without a layer list keeps its default across controller restarts.
//!
//! The default is stored as LINSTOR stores it, an empty layer stack, and chosen when the
//! definition's first resources are placed (`app::engine::complete`). These tests restart a real
//! controller on the same store (each life in its own runtime, whose end releases the data
//! directory's lock) and check that a definition still waiting for its default is still waiting,
//! and that the stack chosen stays chosen. No satellite runs, so the nodes' layers are never
//! known and the default chosen is STORAGE; the choice between the engines is unit tested in
//! `app::engine`.

#[allow(dead_code)]
mod common;

use std::future::Future;
use std::path::Path;

use axum::http::Method;
use common::{Fixture, Snapshot, VOLUME_KIB};
use ferrite_types::ApiCallRc;
use ferrite_types::api_call_rc::code;
use serde_json::{Value, json};

/// Runs one life of a controller on the store in `dir`; the controller's tasks end with it.
fn life<T, Fut>(dir: &Path, body: impl FnOnce(Fixture) -> Fut) -> T
where
    Fut: Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async { body(Fixture::in_dir(dir).await).await });
    drop(runtime);
    result
}

/// The layer types of definition `name` and of its first volume definition.
async fn layers(fixture: &Fixture, name: &str) -> (Value, Value) {
    let definition = fixture
        .get_json(&format!(
            "/v1/resource-definitions/{name}?with_volume_definitions=true"
        ))
        .await;
    let types = |layer_data: &Value| -> Value {
        layer_data
            .as_array()
            .unwrap_or_else(|| panic!("layer_data is a list: {definition}"))
            .iter()
            .map(|l| l["type"].clone())
            .collect()
    };
    (
        types(&definition["layer_data"]),
        types(&definition["volume_definitions"][0]["layer_data"]),
    )
}

fn entries(replies: &[ApiCallRc], code_value: u64) -> Vec<&ApiCallRc> {
    replies
        .iter()
        .filter(|r| r.ret_code().code() == code_value)
        .collect()
}

#[test]
fn a_definition_without_layers_keeps_its_default_across_restarts() {
    let dir = tempfile::tempdir().expect("temporary data directory");

    // First life: the fixture's cluster (res1 placed from my_ssd_group, which has no layer
    // list) and `later`, spawned from the same group with definitions only.
    let before: Snapshot = life(dir.path(), |fixture| async move {
        fixture.build_cluster().await;
        fixture
            .expect_success(
                Method::POST,
                "/v1/resource-groups/my_ssd_group/spawn",
                json!({
                    "resource_definition_name": "later",
                    "volume_sizes": [VOLUME_KIB],
                    "definitions_only": true
                }),
            )
            .await;
        assert_eq!(layers(&fixture, "later").await, (json!([]), json!([])));
        assert_eq!(
            layers(&fixture, "res1").await,
            (json!(["STORAGE"]), json!(["STORAGE"]))
        );
        fixture.snapshot().await
    });

    // Second life: everything as it was; `later` is still waiting for its default, which its
    // first placement chooses and explains.
    let placed: Snapshot = life(dir.path(), |fixture| async move {
        let after = fixture.snapshot().await;
        if let Some(difference) = before.difference(&after) {
            panic!("the restart changed the cluster: {difference}");
        }
        let replies = fixture
            .expect_success(
                Method::POST,
                "/v1/resource-definitions/later/resources",
                json!([
                    {"resource": {"node_name": "node1"}},
                    {"resource": {"node_name": "node3"}}
                ]),
            )
            .await;
        let notes = entries(&replies, code::INFO_REPLICATION_ENGINE);
        assert_eq!(notes.len(), 1, "{replies:?}");
        assert!(
            notes[0].message.contains("no layer list")
                && notes[0].message.contains("its layers are not known yet"),
            "{}",
            notes[0].message
        );
        assert_eq!(entries(&replies, code::WARN_NOT_REPLICATED).len(), 1);
        assert_eq!(
            layers(&fixture, "later").await,
            (json!(["STORAGE"]), json!(["STORAGE"]))
        );
        fixture.snapshot().await
    });

    // Third life: the stack chosen stays.
    life(dir.path(), |fixture| async move {
        let after = fixture.snapshot().await;
        if let Some(difference) = placed.difference(&after) {
            panic!("the restart changed the cluster: {difference}");
        }
        assert_eq!(
            layers(&fixture, "later").await,
            (json!(["STORAGE"]), json!(["STORAGE"]))
        );
    });
}
