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

/// Every operation of the document, with its method and path.
fn operations(doc: &serde_json::Value) -> Vec<(String, String, &serde_json::Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            found.push((method.to_uppercase(), path.clone(), operation));
        }
    }
    found
}

fn document() -> serde_json::Value {
    serde_json::to_value(ferrite_controller::http::openapi()).expect("the document is JSON")
}

#[test]
fn every_path_parameter_is_declared_with_a_schema() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let in_path: Vec<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: Vec<&serde_json::Value> = operation["parameters"]
            .as_array()
            .map(|p| p.iter().filter(|p| p["in"] == "path").collect())
            .unwrap_or_default();
        let names: Vec<&str> = declared.iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, in_path, "{method} {path}: path parameters");
        for parameter in declared {
            assert_eq!(parameter["required"], true, "{method} {path}: {parameter}");
            let schema = &parameter["schema"];
            assert!(
                schema["pattern"].is_string()
                    || schema["type"] == "integer"
                    || path.contains("{reportid}"),
                "{method} {path}: parameter {} has no pattern or range",
                parameter["name"]
            );
        }
    }
}

#[test]
fn every_operation_that_takes_input_documents_its_refusals() {
    let doc = document();
    let api_call_rc_list = serde_json::json!({
        "type": "array",
        "items": {"$ref": "#/components/schemas/ApiCallRc"}
    });
    for (method, path, operation) in operations(&doc) {
        let takes_input = path.contains('{')
            || operation["parameters"].is_array()
            || operation["requestBody"].is_object();
        let responses = &operation["responses"];
        assert!(responses["414"].is_object(), "{method} {path}: 414");
        if !takes_input {
            continue;
        }
        for status in ["400"]
            .into_iter()
            .chain(path.contains('{').then_some("404"))
            .chain(operation["requestBody"].is_object().then_some("413"))
        {
            assert_eq!(
                responses[status]["content"]["application/json"]["schema"], api_call_rc_list,
                "{method} {path}: {status} must answer an ApiCallRc list"
            );
        }
    }
}

#[test]
fn names_and_keys_carry_their_rules() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    for name in [
        "NodeName",
        "ResourceName",
        "ResourceGroupName",
        "StorPoolName",
        "NetInterfaceName",
    ] {
        assert!(schemas[name]["pattern"].is_string(), "{name}");
        assert!(schemas[name]["maxLength"].is_u64(), "{name}");
        assert!(schemas[name]["minLength"].is_u64(), "{name}");
    }
    let props = &schemas["Node"]["properties"]["props"];
    assert!(props["propertyNames"]["pattern"].is_string(), "{props}");
    assert_eq!(props["propertyNames"]["maxLength"], 256);
    let minor = &schemas["VolumeDefinitionCreate"]["properties"]["drbd_minor_number"];
    assert_eq!(minor["anyOf"][0]["maximum"], 1_048_575, "{minor}");
}

#[test]
fn required_bodies_are_marked_required() {
    let doc = document();
    for (method, path) in [
        ("post", "/v1/nodes"),
        ("post", "/v1/resource-groups"),
        ("post", "/v1/resource-definitions"),
        ("post", "/v1/resource-groups/{resource_group}/spawn"),
        ("post", "/v1/resource-definitions/{resource}/resources"),
        (
            "post",
            "/v1/resource-definitions/{resource}/volume-definitions",
        ),
        ("post", "/v1/nodes/{node}/storage-pools"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["requestBody"]["required"], true,
            "{method} {path}"
        );
    }
}
