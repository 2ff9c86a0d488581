//! The committed OpenAPI document must be the one the code generates.

#[test]
fn committed_openapi_document_matches_the_code() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/ferrite-controller.json"
    );
    let committed =
        std::fs::read_to_string(path).expect("openapi/ferrite-controller.json is committed");
    let generated = ferrite_controller::http::openapi_json();
    assert!(
        committed == generated,
        "openapi/ferrite-controller.json is stale; regenerate it with\n  \
         cargo run -p ferrite-controller -- --print-openapi > openapi/ferrite-controller.json"
    );
}
