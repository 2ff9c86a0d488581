//! Bad input on every endpoint family: malformed JSON, wrong JSON types, missing fields, unknown
//! and duplicate names, invalid characters and lengths, zero, negative and absurd sizes, unknown
//! providers and layers, objects that are in use, unknown paths and methods.
//!
//! Each request must be answered with a 4xx status and an `ApiCallRc` list whose first entry is
//! an error with the expected code, a message, a correction and (unless the case says the
//! message is enough) a cause — and must leave everything a client can observe exactly as it was
//! (`common::Fixture::snapshot`). Every case runs against the three-node cluster of
//! `common::Fixture::cluster`, built through the API with no satellite running, so every node
//! is OFFLINE. Deleting something that does not exist is not a refusal but LINSTOR's
//! `WARN_NOT_FOUND` warning with 200, and also changes nothing.

mod common;

use axum::http::Method;
use common::{Case, VOLUME_KIB, refuse_all};
use ferrite_types::api_call_rc::code::*;
use serde_json::{Value, json};

/// 2^62 KiB: far beyond the 1 EiB (2^50 KiB) limit, yet a valid i64.
const ABSURD_KIB: i64 = 1 << 62;

/// An address no fixture node uses.
const FREE_ADDRESS: &str = "127.77.0.4";

/// A node body with one interface on port 1.
fn node(name: &str, address: &str) -> Value {
    json!({
        "name": name,
        "type": "SATELLITE",
        "net_interfaces": [{"name": "default", "address": address, "satellite_port": 1}]
    })
}

/// A node `node4` whose only interface has `fields` added.
fn node4_interface(fields: Value) -> Value {
    let mut interface = json!({"name": "default", "address": FREE_ADDRESS});
    for (key, value) in fields.as_object().expect("an object") {
        interface[key] = value.clone();
    }
    json!({"name": "node4", "type": "SATELLITE", "net_interfaces": [interface]})
}

fn pool(name: &str, kind: &str, backing: &str) -> Value {
    json!({
        "storage_pool_name": name,
        "provider_kind": kind,
        "props": {"StorDriver/StorPoolName": backing}
    })
}

/// A spawn body for `res2` with one 1 GiB volume, `definitions_only`, and `fields` added.
fn spawn_res2(fields: Value) -> Value {
    let mut body = json!({
        "resource_definition_name": "res2",
        "volume_sizes": [VOLUME_KIB],
        "definitions_only": true
    });
    for (key, value) in fields.as_object().expect("an object") {
        body[key] = value.clone();
    }
    body
}

/// Malformed bodies, sent to `method path`: each must be a 400 parse error.
fn malformed(family: &str, method: Method, path: &str) -> Vec<Case> {
    let bodies: [(&str, Vec<u8>); 5] = [
        ("truncated JSON", b"{\"name\": ".to_vec()),
        ("not JSON", b"name=node4".to_vec()),
        ("trailing garbage", b"{} }".to_vec()),
        ("invalid UTF-8", vec![b'{', b'"', 0xff, 0xfe, b'"', b'}']),
        ("a JSON string", b"\"hello\"".to_vec()),
    ];
    bodies
        .into_iter()
        .map(|(what, body)| {
            Case::raw(format!("{family}: {what}"), method.clone(), path, body).unparsable()
        })
        .collect()
}

#[tokio::test]
async fn controller_properties() {
    const PROPS: &str = "/v1/controller/properties";
    let set = |name: &str, body: Value| Case::post(format!("props set: {name}"), PROPS, body);
    let set_one = |name: &str, key: &str, value: &str| {
        set(name, json!({"override_props": {key: value}})).bad_request(FAIL_INVLD_PROP)
    };
    let delete = |name: &str, key: &str| {
        Case::delete(format!("props delete: {name}"), format!("{PROPS}/{key}"))
    };
    let mut cases = malformed("props set", Method::POST, PROPS);
    cases.extend([
        set(
            "override_props is a list",
            json!({"override_props": ["Aux/a"]}),
        )
        .unparsable(),
        set(
            "a value is a number",
            json!({"override_props": {"Aux/a": 5}}),
        )
        .unparsable(),
        set("delete_props is a string", json!({"delete_props": "Aux/a"})).unparsable(),
        set_one("key with a space", "Aux/bad key", "v"),
        set_one("empty key", "", "v"),
        set_one("empty namespace segment", "Aux//a", "v"),
        set_one("key of 300 characters", &"a".repeat(300), "v"),
        set_one("value with a newline", "Aux/a", "x\ny"),
        set_one("value of 5000 characters", "Aux/a", &"v".repeat(5000)),
        set_one(
            "a replication engine that does not exist",
            "Ferrite/ReplicationEngine",
            "kernel",
        ),
        set(
            "one good and one bad key (all or nothing)",
            json!({"override_props": {"Aux/good": "1", "Aux/bad key": "2"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        set(
            "deleting an invalid key",
            json!({"delete_props": ["Aux/bad key"]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        delete("invalid key", "Aux/bad%20key").bad_request(FAIL_INVLD_PROP),
        delete("empty segment", "Aux//x").bad_request(FAIL_INVLD_PROP),
        delete("'..' segment", "Aux/%2E%2E/x").bad_request(FAIL_INVLD_PROP),
        set_one("key with a '..' segment", "Aux/../x", "v"),
        set_one("key that is '..'", "..", "v"),
        set_one("key with a '.' segment", "Aux/./x", "v"),
        set_one("key with a trailing '/'", "Aux/x/", "v"),
        set_one("key with a leading '/'", "/Aux/x", "v"),
        set(
            "deleting a key with a '..' segment",
            json!({"delete_props": ["Aux/../x"]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        set(
            "deleting an empty namespace",
            json!({"delete_namespaces": [""]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        set(
            "deleting the namespace '/'",
            json!({"delete_namespaces": ["/"]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        set(
            "deleting a namespace with a '..' segment",
            json!({"delete_namespaces": ["Aux/.."]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        set(
            "deleting a namespace with a space",
            json!({"delete_namespaces": ["A ux"]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        Case::bare("props: PUT on the collection", Method::PUT, PROPS)
            .refused(405, UNKNOWN_API_CALL)
            .with_correction(),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn nodes() {
    const NODES: &str = "/v1/nodes";
    let create = |name: &str, body: Value| Case::post(format!("node create: {name}"), NODES, body);
    let invalid_name = |name: &str, node_name: &str| {
        create(name, node(node_name, FREE_ADDRESS)).bad_request(FAIL_INVLD_NODE_NAME)
    };
    let invalid_address = |name: &str, address: &str| {
        create(name, node("node4", address)).bad_request(FAIL_INVLD_NET_ADDR)
    };
    let modify = |name: &str, node: &str, body: Value| {
        Case::put(
            format!("node modify: {name}"),
            format!("{NODES}/{node}"),
            body,
        )
    };
    let delete = |name: &str, path: &str| {
        Case::delete(format!("node delete: {name}"), format!("{NODES}/{path}"))
    };
    let mut cases = malformed("node create", Method::POST, NODES);
    cases.extend([
        // Body shape and types.
        Case::raw("node create: empty body", Method::POST, NODES, "").unparsable(),
        create("an array of nodes", json!([node("node4", FREE_ADDRESS)])).unparsable(),
        create("missing name", json!({"type": "SATELLITE"})).unparsable(),
        create("missing type", json!({"name": "node4"})).unparsable(),
        create("name is a number", json!({"name": 4, "type": "SATELLITE"})).unparsable(),
        create(
            "unknown node type",
            json!({"name": "node4", "type": "BANANA"}),
        )
        .unparsable(),
        // Names.
        create("duplicate name in other case", node("NODE1", FREE_ADDRESS))
            .conflict(FAIL_EXISTS_NODE)
            .with_correction(),
        invalid_name("name with a space", "node 4"),
        invalid_name("name too short", "n"),
        invalid_name("name too long", &"n".repeat(256)),
        invalid_name("label too long", &format!("{}.example", "a".repeat(64))),
        invalid_name("name starts with '-'", "-node4"),
        invalid_name("empty label", "node..4"),
        invalid_name("non-ASCII name", "nöde4"),
        invalid_name("name with a slash", "node/4"),
        // Interfaces.
        create(
            "no net interface",
            json!({"name": "node4", "type": "SATELLITE"}),
        )
        .bad_request(FAIL_INVLD_NET_ADDR),
        invalid_address("address out of range", "300.1.1.1"),
        invalid_address("address is a host name", "localhost"),
        invalid_address("empty address", ""),
        create("port 0", node4_interface(json!({"satellite_port": 0})))
            .bad_request(FAIL_INVLD_NET_PORT)
            .with_correction(),
        create(
            "negative port",
            node4_interface(json!({"satellite_port": -1})),
        )
        .bad_request(FAIL_INVLD_NET_PORT)
        .with_correction(),
        create(
            "port 70000",
            node4_interface(json!({"satellite_port": 70000})),
        )
        .bad_request(FAIL_INVLD_NET_PORT)
        .with_correction(),
        create(
            "port is a word",
            node4_interface(json!({"satellite_port": "ssh"})),
        )
        .unparsable(),
        create(
            "SSL encryption",
            node4_interface(json!({"satellite_encryption_type": "SSL"})),
        )
        .bad_request(FAIL_INVLD_ENCRYPT_TYPE)
        .with_correction(),
        create(
            "unknown encryption",
            node4_interface(json!({"satellite_encryption_type": "ROT13"})),
        )
        .unparsable(),
        create(
            "interface name too short",
            node4_interface(json!({"name": "x"})),
        )
        .bad_request(FAIL_INVLD_NET_NAME),
        create(
            "interface without address",
            json!({"name": "node4", "type": "SATELLITE", "net_interfaces": [{"name": "default"}]}),
        )
        .unparsable(),
        create(
            "the same interface twice, in other case",
            json!({"name": "node4", "type": "SATELLITE", "net_interfaces": [
                {"name": "default", "address": FREE_ADDRESS},
                {"name": "DEFAULT", "address": "127.77.0.5"}
            ]}),
        )
        .conflict(FAIL_EXISTS_NET_IF)
        .with_correction(),
        create(
            "invalid property",
            json!({"name": "node4", "type": "SATELLITE", "props": {"Aux/a b": "1"},
                   "net_interfaces": [{"name": "default", "address": FREE_ADDRESS}]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        // Get, modify, delete, lost, reconnect.
        Case::get("node get: unknown", "/v1/nodes/node9").not_found(FAIL_NOT_FOUND_NODE),
        Case::get("node get: invalid name", "/v1/nodes/n").bad_request(FAIL_INVLD_NODE_NAME),
        modify("unknown", "node9", json!({})).not_found(FAIL_NOT_FOUND_NODE),
        modify("unknown node type", "node1", json!({"node_type": "BANANA"})).unparsable(),
        modify(
            "invalid property",
            "node1",
            json!({"override_props": {"Aux/a b": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        modify(
            "deleting an empty key",
            "node1",
            json!({"delete_props": [""]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        Case::raw(
            "node modify: malformed JSON",
            Method::PUT,
            "/v1/nodes/node1",
            "{\"override_props\": {",
        )
        .unparsable(),
        delete("unknown", "node9").warns_not_found(),
        delete("invalid name", "no%20de").bad_request(FAIL_INVLD_NODE_NAME),
        // A node with resources is marked for deletion with them (LINSTOR's way), except
        // when one holds the only copy of data the others still need.
        delete("holds the last disk of a resource", "node1")
            .conflict(FAIL_INSUFFICIENT_REPLICA_COUNT),
        delete("lost, unknown", "node9/lost").not_found(FAIL_NOT_FOUND_NODE),
        Case::bare(
            "node reconnect: unknown",
            Method::PUT,
            "/v1/nodes/node9/reconnect",
        )
        .not_found(FAIL_NOT_FOUND_NODE),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn adjust_activate_evacuate_and_physical_storage() {
    const DEVICE_POOL: &str = "/v1/physical-storage/node1";
    let device_pool = |name: &str, body: Value| {
        Case::post(format!("create-device-pool: {name}"), DEVICE_POOL, body)
    };
    let mut cases = malformed(
        "adjust",
        Method::POST,
        "/v1/resource-groups/DfltRscGrp/adjust",
    );
    cases.extend(malformed("create-device-pool", Method::POST, DEVICE_POOL));
    cases.extend([
        Case::post(
            "adjust: unknown group",
            "/v1/resource-groups/no_group/adjust",
            json!({}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_GRP),
        Case::post(
            "adjust: place count 0",
            "/v1/resource-groups/DfltRscGrp/adjust",
            json!({"select_filter": {"place_count": 0}}),
        )
        .bad_request(FAIL_INVLD_PLACE_COUNT),
        Case::post(
            "adjustall: unknown storage pool",
            "/v1/resource-groups/adjustall",
            json!({"select_filter": {"storage_pool": "no_pool"}}),
        )
        .not_found(FAIL_NOT_FOUND_STOR_POOL_DFN),
        Case::bare(
            "activate: unknown resource definition",
            Method::POST,
            "/v1/resource-definitions/no_res/resources/node1/activate",
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::bare(
            "deactivate: no resource on the node",
            Method::POST,
            "/v1/resource-definitions/res1/resources/node3/deactivate",
        )
        .not_found(FAIL_NOT_FOUND_RSC),
        Case::put("evacuate: unknown node", "/v1/nodes/node9/evacuate", json!({}))
            .not_found(FAIL_NOT_FOUND_NODE),
        Case::put(
            "evacuate: unknown target",
            "/v1/nodes/node1/evacuate",
            json!({"target": ["node9"]}),
        )
        .not_found(FAIL_NOT_FOUND_NODE),
        Case::put(
            "evacuate: invalid target name",
            "/v1/nodes/node1/evacuate",
            json!({"do_not_target": ["n"]}),
        )
        .bad_request(FAIL_INVLD_NODE_NAME),
        Case::put("restore: not evacuated", "/v1/nodes/node1/restore", json!({}))
            .bad_request(FAIL_INVLD_REQUEST),
        Case::get("physical-storage: unknown node", "/v1/physical-storage/node9")
            .not_found(FAIL_NOT_FOUND_NODE),
        device_pool(
            "FILE is no device pool",
            json!({"provider_kind": "FILE", "device_paths": ["/dev/loop0"], "pool_name": "fast"}),
        )
        .bad_request(FAIL_INVLD_PROVIDER)
        .with_correction(),
        device_pool(
            "no device",
            json!({"provider_kind": "LVM", "device_paths": [], "pool_name": "fast"}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        device_pool(
            "not a device path",
            json!({"provider_kind": "LVM", "device_paths": ["/etc/passwd;rm"], "pool_name": "fast"}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        device_pool(
            "a device twice",
            json!({"provider_kind": "LVM", "device_paths": ["/dev/loop0", "/dev/loop0"], "pool_name": "fast"}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        device_pool(
            "no pool name",
            json!({"provider_kind": "LVM", "device_paths": ["/dev/loop0"]}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        device_pool(
            "an option for a volume group name",
            json!({"provider_kind": "LVM", "device_paths": ["/dev/loop0"], "pool_name": "-y"}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        device_pool(
            "VDO",
            json!({"provider_kind": "LVM", "device_paths": ["/dev/loop0"], "pool_name": "fast", "vdo_enable": true}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        device_pool(
            "invalid storage pool name",
            json!({"provider_kind": "LVM", "device_paths": ["/dev/loop0"], "pool_name": "fast",
                   "with_storage_pool": {"name": "p"}}),
        )
        .bad_request(FAIL_INVLD_STOR_POOL_NAME),
        device_pool(
            "the node is offline",
            json!({"provider_kind": "LVM", "device_paths": ["/dev/loop0"], "pool_name": "fast"}),
        )
        .conflict(FAIL_NOT_CONNECTED),
        Case::post(
            "create-device-pool: unknown node",
            "/v1/physical-storage/node9",
            json!({"provider_kind": "LVM", "device_paths": ["/dev/loop0"], "pool_name": "fast"}),
        )
        .not_found(FAIL_NOT_FOUND_NODE),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn net_interfaces() {
    const NODE1: &str = "/v1/nodes/node1/net-interfaces";
    let create = |name: &str, body: Value| Case::post(format!("netif create: {name}"), NODE1, body);
    let modify = |name: &str, netif: &str, body: Value| {
        Case::put(
            format!("netif modify: {name}"),
            format!("{NODE1}/{netif}"),
            body,
        )
    };
    let delete = |name: &str, path: &str| Case::delete(format!("netif delete: {name}"), path);
    let mut cases = malformed("netif create", Method::POST, NODE1);
    cases.extend([
        Case::get("netif list: unknown node", "/v1/nodes/node9/net-interfaces")
            .not_found(FAIL_NOT_FOUND_NODE),
        Case::get("netif get: unknown", format!("{NODE1}/eth9")).not_found(FAIL_NOT_FOUND_NET_IF),
        Case::post(
            "netif create: unknown node",
            "/v1/nodes/node9/net-interfaces",
            json!({"name": "second", "address": FREE_ADDRESS}),
        )
        .not_found(FAIL_NOT_FOUND_NODE),
        create(
            "duplicate name in other case",
            json!({"name": "DEFAULT", "address": FREE_ADDRESS}),
        )
        .conflict(FAIL_EXISTS_NET_IF)
        .with_correction(),
        create(
            "invalid name",
            json!({"name": "eth 0", "address": FREE_ADDRESS}),
        )
        .bad_request(FAIL_INVLD_NET_NAME),
        create(
            "name too long",
            json!({"name": "e".repeat(33), "address": FREE_ADDRESS}),
        )
        .bad_request(FAIL_INVLD_NET_NAME),
        create(
            "invalid address",
            json!({"name": "second", "address": "10.0.0"}),
        )
        .bad_request(FAIL_INVLD_NET_ADDR),
        create("missing address", json!({"name": "second"})).unparsable(),
        create(
            "is_active is not a boolean",
            json!({"name": "second", "address": FREE_ADDRESS, "is_active": "sometimes"}),
        )
        .unparsable(),
        modify(
            "unknown",
            "eth9",
            json!({"name": "eth9", "address": FREE_ADDRESS}),
        )
        .not_found(FAIL_NOT_FOUND_NET_IF),
        modify(
            "invalid address",
            "default",
            json!({"name": "default", "address": "::g"}),
        )
        .bad_request(FAIL_INVLD_NET_ADDR),
        delete("the active one", &format!("{NODE1}/DEFAULT"))
            .conflict(FAIL_IN_USE)
            .with_correction(),
        delete("unknown", &format!("{NODE1}/eth9")).warns_not_found(),
        delete("unknown node", "/v1/nodes/node9/net-interfaces/default")
            .not_found(FAIL_NOT_FOUND_NODE),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn storage_pools() {
    const NODE3: &str = "/v1/nodes/node3/storage-pools";
    let create = |name: &str, body: Value| Case::post(format!("pool create: {name}"), NODE3, body);
    let invalid_name = |name: &str, pool_name: &str| {
        create(name, pool(pool_name, "FILE_THIN", "/srv/hdd"))
            .bad_request(FAIL_INVLD_STOR_POOL_NAME)
    };
    let invalid_backing = |name: &str, kind: &str, backing: &str| {
        create(name, pool("pool_hdd", kind, backing)).bad_request(FAIL_INVLD_PROP)
    };
    let at = |name: &str, method: Method, path: &str, body: Value| {
        Case::json(
            format!("pool {name}"),
            method,
            format!("/v1/nodes/{path}"),
            body,
        )
    };
    let delete = |name: &str, path: &str| {
        Case::delete(format!("pool delete: {name}"), format!("/v1/nodes/{path}"))
    };
    let mut cases = malformed("pool create", Method::POST, NODE3);
    cases.extend([
        // Body shape and types.
        create(
            "missing provider kind",
            json!({"storage_pool_name": "pool_hdd"}),
        )
        .unparsable(),
        create("missing name", json!({"provider_kind": "FILE_THIN"})).unparsable(),
        create(
            "unknown provider kind",
            pool("pool_hdd", "BANANA", "/srv/hdd"),
        )
        .unparsable(),
        create(
            "provider kind is a number",
            json!({"storage_pool_name": "pool_hdd", "provider_kind": 7}),
        )
        .unparsable(),
        create(
            "props is a list",
            json!({"storage_pool_name": "pool_hdd", "provider_kind": "FILE", "props": ["/x"]}),
        )
        .unparsable(),
        // Nodes and names.
        at(
            "create: on an unknown node",
            Method::POST,
            "node9/storage-pools",
            pool("pool_hdd", "FILE_THIN", "/srv/hdd"),
        )
        .not_found(FAIL_NOT_FOUND_NODE),
        at(
            "create: on an invalid node name",
            Method::POST,
            "n/storage-pools",
            pool("pool_hdd", "FILE_THIN", "/srv/hdd"),
        )
        .bad_request(FAIL_INVLD_NODE_NAME),
        create(
            "duplicate name in other case",
            pool("POOL_SSD", "FILE_THIN", "/srv/other"),
        )
        .conflict(FAIL_EXISTS_STOR_POOL)
        .with_correction(),
        create(
            "duplicate of the diskless pool",
            json!({"storage_pool_name": "dfltdisklessstorpool", "provider_kind": "DISKLESS"}),
        )
        .conflict(FAIL_EXISTS_STOR_POOL)
        .with_correction(),
        invalid_name("name too short", "pp"),
        invalid_name("name too long", &"p".repeat(49)),
        invalid_name("name starts with a digit", "1pool"),
        invalid_name("name with a dot", "pool.hdd"),
        // Backing pools.
        invalid_backing("relative directory", "FILE_THIN", "srv/hdd"),
        create(
            "relative directory under a legacy key",
            json!({"storage_pool_name": "pool_hdd", "provider_kind": "FILE",
                   "props": {"StorDriver/FileDir": "./hdd"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        invalid_backing("directory with a newline", "FILE", "/srv/h\ndd"),
        create(
            "no backing directory",
            json!({"storage_pool_name": "pool_hdd", "provider_kind": "FILE_THIN"}),
        )
        .bad_request(FAIL_INVLD_PROP)
        .with_correction(),
        invalid_backing("LVM volume group starting with '-'", "LVM", "-vg"),
        invalid_backing("LVM_THIN without a thin pool", "LVM_THIN", "vg_hdd"),
        invalid_backing("ZFS pool given as a path", "ZFS", "/tank"),
        invalid_backing("DISKLESS with a backing pool", "DISKLESS", "/srv/x").with_correction(),
        create(
            "body names another node",
            json!({"storage_pool_name": "pool_hdd", "node_name": "node2",
                   "provider_kind": "FILE_THIN", "props": {"StorDriver/StorPoolName": "/srv/x"}}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        create(
            "invalid property",
            json!({"storage_pool_name": "pool_hdd", "provider_kind": "FILE_THIN",
                   "props": {"StorDriver/StorPoolName": "/srv/hdd", "Aux/a b": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        // Get, list, modify, delete.
        Case::get(
            "pool get: unknown",
            "/v1/nodes/node1/storage-pools/pool_hdd",
        )
        .not_found(FAIL_NOT_FOUND_STOR_POOL),
        Case::get(
            "pool get: unknown node",
            "/v1/nodes/node9/storage-pools/pool_ssd",
        )
        .not_found(FAIL_NOT_FOUND_NODE),
        Case::get("pool list: unknown node", "/v1/nodes/node9/storage-pools")
            .not_found(FAIL_NOT_FOUND_NODE),
        at(
            "modify: unknown",
            Method::PUT,
            "node1/storage-pools/pool_hdd",
            json!({}),
        )
        .not_found(FAIL_NOT_FOUND_STOR_POOL),
        at(
            "modify: moving the backing directory of a pool in use",
            Method::PUT,
            "node1/storage-pools/pool_ssd",
            json!({"override_props": {"StorDriver/StorPoolName": "/srv/elsewhere"}}),
        )
        .conflict(FAIL_IN_USE),
        at(
            "modify: relative backing directory",
            Method::PUT,
            "node3/storage-pools/pool_ssd",
            json!({"override_props": {"StorDriver/StorPoolName": "relative"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        at(
            "modify: invalid property",
            Method::PUT,
            "node3/storage-pools/pool_ssd",
            json!({"override_props": {"Aux/a b": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        delete("holds a diskful resource", "node1/storage-pools/pool_ssd").conflict(FAIL_IN_USE),
        delete(
            "diskless pool holds a diskless resource",
            "node2/storage-pools/DfltDisklessStorPool",
        )
        .conflict(FAIL_IN_USE),
        delete("unknown", "node1/storage-pools/pool_hdd").warns_not_found(),
        delete("invalid name", "node1/storage-pools/p").bad_request(FAIL_INVLD_STOR_POOL_NAME),
        delete("unknown node", "node9/storage-pools/pool_ssd").not_found(FAIL_NOT_FOUND_NODE),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn resource_groups_and_volume_groups() {
    const GROUPS: &str = "/v1/resource-groups";
    const VGS: &str = "/v1/resource-groups/my_ssd_group/volume-groups";
    let create =
        |name: &str, body: Value| Case::post(format!("group create: {name}"), GROUPS, body);
    let invalid_name = |name: &str, group: Value| {
        create(name, json!({"name": group})).bad_request(FAIL_INVLD_RSC_GRP_NAME)
    };
    let filter = |name: &str, filter: Value| {
        create(name, json!({"name": "group2", "select_filter": filter}))
    };
    let modify = |name: &str, group: &str, body: Value| {
        Case::put(
            format!("group modify: {name}"),
            format!("{GROUPS}/{group}"),
            body,
        )
    };
    let delete = |name: &str, group: &str| {
        Case::delete(format!("group delete: {name}"), format!("{GROUPS}/{group}"))
    };
    let vg = |name: &str, method: Method, tail: &str, body: Value| {
        Case::json(format!("vg {name}"), method, format!("{VGS}{tail}"), body)
    };
    let mut cases = malformed("group create", Method::POST, GROUPS);
    cases.extend([
        // Create.
        create("missing name", json!({"select_filter": {}})).unparsable(),
        create("name is a list", json!({"name": ["g"]})).unparsable(),
        create(
            "duplicate name in other case",
            json!({"name": "MY_SSD_GROUP"}),
        )
        .conflict(FAIL_EXISTS_RSC_GRP)
        .with_correction(),
        create(
            "duplicate of the default group",
            json!({"name": "dfltrscgrp"}),
        )
        .conflict(FAIL_EXISTS_RSC_GRP)
        .with_correction(),
        invalid_name("name too short", json!("g")),
        invalid_name("name too long", json!("g".repeat(49))),
        invalid_name("name starts with a digit", json!("2fast")),
        invalid_name("name with a space", json!("my group")),
        filter("place count 0", json!({"place_count": 0}))
            .bad_request(FAIL_INVLD_PLACE_COUNT)
            .with_correction(),
        filter("negative place count", json!({"place_count": -2}))
            .bad_request(FAIL_INVLD_PLACE_COUNT)
            .with_correction(),
        filter("place count 33", json!({"place_count": 33}))
            .bad_request(FAIL_INVLD_PLACE_COUNT)
            .with_correction(),
        filter(
            "place count beyond 32 bits",
            json!({"place_count": 1u64 << 40}),
        )
        .unparsable(),
        filter("place count is a word", json!({"place_count": "two"})).unparsable(),
        filter(
            "negative additional place count",
            json!({"additional_place_count": -1}),
        )
        .bad_request(FAIL_INVLD_PLACE_COUNT)
        .with_correction(),
        filter(
            "invalid storage pool name",
            json!({"storage_pool_list": ["p"]}),
        )
        .bad_request(FAIL_INVLD_STOR_POOL_NAME),
        filter("unknown node", json!({"node_name_list": ["node9"]})).not_found(FAIL_NOT_FOUND_NODE),
        filter("unknown provider", json!({"provider_list": ["BANANA"]}))
            .bad_request(FAIL_INVLD_PROVIDER),
        filter(
            "unknown layer",
            json!({"layer_stack": ["BANANA", "STORAGE"]}),
        )
        .bad_request(FAIL_INVLD_LAYER_KIND),
        filter(
            "two replication layers",
            json!({"layer_stack": ["DRBD", "MIRROR"]}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK),
        filter(
            "STORAGE twice",
            json!({"layer_stack": ["STORAGE", "STORAGE"]}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK),
        filter(
            "STORAGE above DRBD",
            json!({"layer_stack": ["STORAGE", "DRBD"]}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK),
        filter("layer stack is a string", json!({"layer_stack": "DRBD"})).unparsable(),
        create(
            "filter is an array",
            json!({"name": "group2", "select_filter": [null, null]}),
        )
        .unparsable(),
        filter(
            "invalid do-not-place-with regex",
            json!({"not_place_with_rsc_regex": "db-("}),
        )
        .bad_request(FAIL_INVLD_CONF),
        filter(
            "invalid do-not-place-with name",
            json!({"not_place_with_rsc": ["r"]}),
        )
        .bad_request(FAIL_INVLD_RSC_NAME),
        filter(
            "x-replicas-on-different of 0",
            json!({"x_replicas_on_different_map": {"Aux/rack": 0}}),
        )
        .bad_request(FAIL_INVLD_CONF)
        .with_correction(),
        filter(
            "replicas-on-same with an invalid key",
            json!({"replicas_on_same": ["Aux/r k"]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        filter(
            "unknown diskless type",
            json!({"diskless_type": "NVME_INITIATOR"}),
        )
        .bad_request(FAIL_INVLD_CONF)
        .with_correction(),
        create(
            "description with control characters",
            json!({"name": "group2", "description": "a\u{7}b"}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        create(
            "description of 5000 characters",
            json!({"name": "group2", "description": "d".repeat(5000)}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        create(
            "invalid property",
            json!({"name": "group2", "props": {"Aux/a b": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        // Get, modify, delete.
        Case::get("group get: unknown", "/v1/resource-groups/nope_group")
            .not_found(FAIL_NOT_FOUND_RSC_GRP),
        modify("unknown", "nope_group", json!({})).not_found(FAIL_NOT_FOUND_RSC_GRP),
        modify("invalid name", "g", json!({})).bad_request(FAIL_INVLD_RSC_GRP_NAME),
        modify(
            "place count 0",
            "my_ssd_group",
            json!({"select_filter": {"place_count": 0}}),
        )
        .bad_request(FAIL_INVLD_PLACE_COUNT)
        .with_correction(),
        modify(
            "unknown provider",
            "my_ssd_group",
            json!({"select_filter": {"provider_list": ["LVM", "TAPE"]}}),
        )
        .bad_request(FAIL_INVLD_PROVIDER),
        modify(
            "invalid property",
            "my_ssd_group",
            json!({"override_props": {"": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        modify(
            "description with control characters",
            "my_ssd_group",
            json!({"description": "\u{1b}[31m"}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        modify(
            "peer slots is a word",
            "my_ssd_group",
            json!({"peer_slots": "many"}),
        )
        .unparsable(),
        modify("peer slots 0", "my_ssd_group", json!({"peer_slots": 0}))
            .bad_request(FAIL_INVLD_REQUEST)
            .with_correction(),
        modify(
            "negative overprovision",
            "my_ssd_group",
            json!({"select_filter": {"overprovision": -1.5}}),
        )
        .bad_request(FAIL_INVLD_CONF)
        .with_correction(),
        modify(
            "port count 0",
            "my_ssd_group",
            json!({"select_filter": {"port_count": 0}}),
        )
        .bad_request(FAIL_INVLD_TCP_PORT)
        .with_correction(),
        modify(
            "x-replicas-on-different of 33",
            "my_ssd_group",
            json!({"select_filter": {"x_replicas_on_different_map": {"Aux/rack": 33}}}),
        )
        .bad_request(FAIL_INVLD_CONF)
        .with_correction(),
        modify(
            "layer name with blanks",
            "my_ssd_group",
            json!({"select_filter": {"layer_stack": [" DRBD"]}}),
        )
        .bad_request(FAIL_INVLD_LAYER_KIND),
        delete("used by res1", "MY_SSD_GROUP").conflict(FAIL_IN_USE),
        delete("the default group", "DfltRscGrp")
            .conflict(FAIL_IN_USE)
            .with_correction(),
        delete("unknown", "nope_group").warns_not_found(),
        // Volume groups.
        Case::get(
            "vg list: unknown group",
            "/v1/resource-groups/nope_group/volume-groups",
        )
        .not_found(FAIL_NOT_FOUND_RSC_GRP),
        Case::post(
            "vg create: unknown group",
            "/v1/resource-groups/nope_group/volume-groups",
            json!({}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_GRP),
        vg(
            "create: duplicate number",
            Method::POST,
            "",
            json!({"volume_number": 0}),
        )
        .conflict(FAIL_EXISTS_VLM_GRP)
        .with_correction(),
        vg(
            "create: negative number",
            Method::POST,
            "",
            json!({"volume_number": -1}),
        )
        .bad_request(FAIL_INVLD_VLM_NR),
        vg(
            "create: number 65536",
            Method::POST,
            "",
            json!({"volume_number": 65536}),
        )
        .bad_request(FAIL_INVLD_VLM_NR),
        vg(
            "create: number is a word",
            Method::POST,
            "",
            json!({"volume_number": "one"}),
        )
        .unparsable(),
        vg(
            "create: unknown flag",
            Method::POST,
            "",
            json!({"flags": ["ENCRYPTED"]}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        vg(
            "create: invalid property",
            Method::POST,
            "",
            json!({"props": {"Aux/a b": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        Case::raw(
            "vg create: malformed JSON",
            Method::POST,
            VGS,
            "{\"volume_number\": 1,}",
        )
        .unparsable(),
        Case::get("vg get: unknown number", format!("{VGS}/7")).not_found(FAIL_NOT_FOUND_VLM_GRP),
        Case::get("vg get: number is a word", format!("{VGS}/one")).bad_request(FAIL_INVLD_REQUEST),
        vg("modify: unknown number", Method::PUT, "/7", json!({}))
            .not_found(FAIL_NOT_FOUND_VLM_GRP),
        vg(
            "modify: number out of range",
            Method::PUT,
            "/70000",
            json!({}),
        )
        .bad_request(FAIL_INVLD_VLM_NR),
        vg(
            "modify: unknown flag",
            Method::PUT,
            "/0",
            json!({"flags": ["ENCRYPTED"]}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        vg(
            "modify: invalid property",
            Method::PUT,
            "/0",
            json!({"override_props": {"Aux/": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        Case::delete("vg delete: unknown number", format!("{VGS}/7"))
            .not_found(FAIL_NOT_FOUND_VLM_GRP),
        Case::delete("vg delete: negative number", format!("{VGS}/-1"))
            .bad_request(FAIL_INVLD_VLM_NR),
        Case::delete(
            "vg delete: unknown group",
            "/v1/resource-groups/nope_group/volume-groups/0",
        )
        .not_found(FAIL_NOT_FOUND_RSC_GRP),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn spawn() {
    const SPAWN: &str = "/v1/resource-groups/my_ssd_group/spawn";
    let spawn = |name: &str, body: Value| Case::post(format!("spawn: {name}"), SPAWN, body);
    let invalid_name = |name: &str, rd: &str| {
        spawn(name, spawn_res2(json!({"resource_definition_name": rd})))
            .bad_request(FAIL_INVLD_RSC_NAME)
    };
    let sizes = |name: &str, sizes: Value| spawn(name, spawn_res2(json!({"volume_sizes": sizes})));
    let mut cases = malformed("spawn", Method::POST, SPAWN);
    cases.extend([
        Case::post(
            "spawn: unknown group",
            "/v1/resource-groups/nope_group/spawn",
            spawn_res2(json!({})),
        )
        .not_found(FAIL_NOT_FOUND_RSC_GRP),
        spawn(
            "existing definition in other case",
            spawn_res2(json!({"resource_definition_name": "RES1"})),
        )
        .conflict(FAIL_EXISTS_RSC_DFN)
        .with_correction(),
        spawn(
            "missing name",
            json!({"volume_sizes": [VOLUME_KIB], "definitions_only": true}),
        )
        .bad_request(FAIL_INVLD_RSC_NAME),
        invalid_name("name too short", "r"),
        invalid_name("name too long", &"r".repeat(49)),
        invalid_name("name with a slash", "res/2"),
        invalid_name("reserved name 'all'", "All"),
        sizes("size 0", json!([0])).bad_request(FAIL_INVLD_VLM_SIZE),
        sizes("negative size", json!([-1024])).bad_request(FAIL_INVLD_VLM_SIZE),
        sizes("2^62 KiB", json!([ABSURD_KIB])).bad_request(FAIL_INVLD_VLM_SIZE),
        sizes("size beyond 64 bits", json!([u64::MAX])).unparsable(),
        sizes("size with a unit", json!(["1G"])).unparsable(),
        sizes("fractional size", json!([1.5])).unparsable(),
        sizes("sizes is a number", json!(VOLUME_KIB)).unparsable(),
        sizes(
            "two sizes for one volume group",
            json!([VOLUME_KIB, VOLUME_KIB]),
        )
        .bad_request(FAIL_INVLD_VLM_SIZES)
        .with_correction(),
        sizes("no size for one volume group", json!([]))
            .bad_request(FAIL_INVLD_VLM_SIZES)
            .with_correction(),
        spawn(
            "two sizes for one volume group, partial",
            spawn_res2(json!({"volume_sizes": [VOLUME_KIB, VOLUME_KIB], "partial": true})),
        )
        .bad_request(FAIL_INVLD_VLM_SIZES)
        .with_correction(),
        spawn(
            "invalid definition property",
            spawn_res2(json!({"resource_definition_props": {"Aux/a b": "1"}})),
        )
        .bad_request(FAIL_INVLD_PROP),
        spawn(
            "unknown provider",
            spawn_res2(json!({"select_filter": {"provider_list": ["BANANA"]}})),
        )
        .bad_request(FAIL_INVLD_PROVIDER),
        spawn(
            "unknown layer",
            spawn_res2(json!({"select_filter": {"layer_stack": ["NVME"]}})),
        )
        .bad_request(FAIL_INVLD_LAYER_KIND),
        spawn(
            "place count 0",
            spawn_res2(json!({"select_filter": {"place_count": 0}})),
        )
        .bad_request(FAIL_INVLD_PLACE_COUNT)
        .with_correction(),
        spawn(
            "definitions_only is a word",
            spawn_res2(json!({"definitions_only": "yes"})),
        )
        .unparsable(),
        spawn(
            "placement impossible with every node offline (all or nothing)",
            spawn_res2(json!({"definitions_only": false})),
        )
        .conflict(FAIL_NOT_ENOUGH_NODES),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn resource_definitions() {
    const RDS: &str = "/v1/resource-definitions";
    let create = |name: &str, body: Value| Case::post(format!("rd create: {name}"), RDS, body);
    let named = |name: &str, rd: &str| {
        create(name, json!({"resource_definition": {"name": rd}})).bad_request(FAIL_INVLD_RSC_NAME)
    };
    let with = |name: &str, fields: Value| {
        let mut rd = json!({"name": "res2"});
        for (key, value) in fields.as_object().expect("an object") {
            rd[key] = value.clone();
        }
        create(name, json!({"resource_definition": rd}))
    };
    let modify = |name: &str, rd: &str, body: Value| {
        Case::put(format!("rd modify: {name}"), format!("{RDS}/{rd}"), body)
    };
    let mut cases = malformed("rd create", Method::POST, RDS);
    cases.extend([
        create("missing name", json!({"resource_definition": {}})).bad_request(FAIL_INVLD_RSC_NAME),
        create("empty object", json!({})).bad_request(FAIL_INVLD_RSC_NAME),
        create(
            "volume definitions given with the definition",
            json!({"resource_definition": {"name": "res2",
                   "volume_definitions": [{"size_kib": VOLUME_KIB}]}}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        create(
            "the definition is an array",
            json!({"resource_definition": ["res2"]}),
        )
        .unparsable(),
        create(
            "definition is a string",
            json!({"resource_definition": "res2"}),
        )
        .unparsable(),
        create(
            "duplicate name in other case",
            json!({"resource_definition": {"name": "Res1"}}),
        )
        .conflict(FAIL_EXISTS_RSC_DFN)
        .with_correction(),
        named("name too short", "r"),
        named("name too long", &"r".repeat(49)),
        named("name starts with '-'", "-res2"),
        named("name with a space", "res 2"),
        named("non-ASCII name", "rés2"),
        named("reserved name 'all'", "ALL"),
        with(
            "unknown resource group",
            json!({"resource_group_name": "nope_group"}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_GRP),
        with(
            "invalid resource group name",
            json!({"resource_group_name": "g g"}),
        )
        .bad_request(FAIL_INVLD_RSC_GRP_NAME),
        with("unknown layer", json!({"layer_data": [{"type": "BCACHE"}]})).unparsable(),
        with(
            "two replication layers",
            json!({"layer_data": [{"type": "DRBD"}, {"type": "MIRROR"}]}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK),
        with(
            "STORAGE above MIRROR",
            json!({"layer_data": [{"type": "STORAGE"}, {"type": "MIRROR"}]}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK),
        with("invalid property", json!({"props": {"Aux/a\tb": "1"}})).bad_request(FAIL_INVLD_PROP),
        create(
            "drbd port is a word",
            json!({"resource_definition": {"name": "res2"}, "drbd_port": "seven"}),
        )
        .unparsable(),
        create(
            "drbd port 70000",
            json!({"resource_definition": {"name": "res2"}, "drbd_port": 70000}),
        )
        .bad_request(FAIL_INVLD_TCP_PORT)
        .with_correction(),
        create(
            "32 DRBD peer slots",
            json!({"resource_definition": {"name": "res2"}, "drbd_peer_slots": "32"}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        modify("drbd port 0", "res1", json!({"drbd_port": 0}))
            .bad_request(FAIL_INVLD_TCP_PORT)
            .with_correction(),
        modify(
            "deleting a namespace with a '..' segment",
            "res1",
            json!({"delete_namespaces": ["Aux/../x"]}),
        )
        .bad_request(FAIL_INVLD_PROP),
        Case::get("rd get: unknown", format!("{RDS}/res9")).not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::get("rd get: invalid name", format!("{RDS}/r")).bad_request(FAIL_INVLD_RSC_NAME),
        modify("unknown", "res9", json!({})).not_found(FAIL_NOT_FOUND_RSC_DFN),
        modify(
            "unknown resource group",
            "res1",
            json!({"resource_group": "nope_group"}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_GRP),
        modify(
            "layer stack change with resources",
            "res1",
            json!({"layer_stack": ["MIRROR", "STORAGE"]}),
        )
        .conflict(FAIL_IN_USE)
        .with_correction(),
        modify("unknown layer", "res1", json!({"layer_stack": ["BCACHE"]})).unparsable(),
        modify(
            "invalid property",
            "res1",
            json!({"override_props": {"Aux/a b": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        modify(
            "override_props is a string",
            "res1",
            json!({"override_props": "Aux/a=1"}),
        )
        .unparsable(),
        Case::delete("rd delete: unknown", format!("{RDS}/res9")).warns_not_found(),
        Case::delete("rd delete: invalid name", format!("{RDS}/r%2Fx"))
            .bad_request(FAIL_INVLD_RSC_NAME),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn volume_definitions() {
    const VDS: &str = "/v1/resource-definitions/res1/volume-definitions";
    let create = |name: &str, volume_definition: Value| {
        Case::post(
            format!("vd create: {name}"),
            VDS,
            json!({"volume_definition": volume_definition}),
        )
    };
    let size = |name: &str, size: Value| create(name, json!({"size_kib": size}));
    let modify = |name: &str, tail: &str, body: Value| {
        Case::put(format!("vd modify: {name}"), format!("{VDS}{tail}"), body)
    };
    let resize = |name: &str, size: Value| modify(name, "/0", json!({"size_kib": size}));
    let mut cases = malformed("vd create", Method::POST, VDS);
    cases.extend([
        Case::get(
            "vd list: unknown definition",
            "/v1/resource-definitions/res9/volume-definitions",
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::post(
            "vd create: unknown definition",
            "/v1/resource-definitions/res9/volume-definitions",
            json!({"volume_definition": {"size_kib": VOLUME_KIB}}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        create("missing size", json!({"volume_number": 1})).bad_request(FAIL_INVLD_VLM_SIZE),
        size("size 0", json!(0)).bad_request(FAIL_INVLD_VLM_SIZE),
        size("negative size", json!(-1)).bad_request(FAIL_INVLD_VLM_SIZE),
        size("2^62 KiB", json!(ABSURD_KIB)).bad_request(FAIL_INVLD_VLM_SIZE),
        size("largest i64", json!(i64::MAX)).bad_request(FAIL_INVLD_VLM_SIZE),
        size("size beyond 64 bits", json!(u64::MAX)).unparsable(),
        size("size with a unit", json!("1G")).unparsable(),
        Case::post(
            "vd create: DRBD minor beyond 20 bits",
            VDS,
            json!({"volume_definition": {"size_kib": VOLUME_KIB}, "drbd_minor_number": 1_048_576}),
        )
        .bad_request(FAIL_INVLD_MINOR_NR)
        .with_correction(),
        Case::post(
            "vd create: negative DRBD minor as a string",
            VDS,
            json!({"volume_definition": {"size_kib": VOLUME_KIB}, "drbd_minor_number": "-1"}),
        )
        .bad_request(FAIL_INVLD_MINOR_NR)
        .with_correction(),
        Case::post(
            "vd create: DRBD minor that is not a number",
            VDS,
            json!({"volume_definition": {"size_kib": VOLUME_KIB}, "drbd_minor_number": "minor"}),
        )
        .unparsable(),
        create(
            "duplicate number",
            json!({"volume_number": 0, "size_kib": VOLUME_KIB}),
        )
        .conflict(FAIL_EXISTS_VLM_DFN)
        .with_correction(),
        create(
            "number 65536",
            json!({"volume_number": 65536, "size_kib": VOLUME_KIB}),
        )
        .bad_request(FAIL_INVLD_VLM_NR),
        create(
            "negative number",
            json!({"volume_number": -3, "size_kib": VOLUME_KIB}),
        )
        .bad_request(FAIL_INVLD_VLM_NR),
        create(
            "unknown flag",
            json!({"size_kib": VOLUME_KIB, "flags": ["ENCRYPTED"]}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        create(
            "invalid property",
            json!({"size_kib": VOLUME_KIB, "props": {"Aux/a b": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        Case::get("vd get: unknown number", format!("{VDS}/3")).not_found(FAIL_NOT_FOUND_VLM_DFN),
        Case::get("vd get: number is a word", format!("{VDS}/zero"))
            .bad_request(FAIL_INVLD_REQUEST),
        resize("shrink", json!(VOLUME_KIB / 2)).bad_request(FAIL_INVLD_VLM_SIZE),
        resize("size 0", json!(0)).bad_request(FAIL_INVLD_VLM_SIZE),
        resize("negative size", json!(-VOLUME_KIB)).bad_request(FAIL_INVLD_VLM_SIZE),
        resize("2^62 KiB", json!(ABSURD_KIB)).bad_request(FAIL_INVLD_VLM_SIZE),
        resize("size is a word", json!("bigger")).unparsable(),
        modify("unknown number", "/3", json!({"size_kib": VOLUME_KIB * 2}))
            .not_found(FAIL_NOT_FOUND_VLM_DFN),
        modify("number out of range", "/65536", json!({})).bad_request(FAIL_INVLD_VLM_NR),
        modify("number is a word", "/first", json!({})).bad_request(FAIL_INVLD_REQUEST),
        modify("unknown flag", "/0", json!({"flags": ["ENCRYPTED"]}))
            .bad_request(FAIL_INVLD_REQUEST)
            .with_correction(),
        modify(
            "invalid property",
            "/0",
            json!({"override_props": {"Aux/a b": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        Case::put(
            "vd modify: unknown definition",
            "/v1/resource-definitions/res9/volume-definitions/0",
            json!({"size_kib": VOLUME_KIB * 2}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::delete("vd delete: unknown number", format!("{VDS}/3")).warns_not_found(),
        Case::delete("vd delete: negative number", format!("{VDS}/-1"))
            .bad_request(FAIL_INVLD_VLM_NR),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn autoplace() {
    const AUTOPLACE: &str = "/v1/resource-definitions/res1/autoplace";
    let place = |name: &str, body: Value| Case::post(format!("autoplace: {name}"), AUTOPLACE, body);
    let filter = |name: &str, filter: Value| place(name, json!({"select_filter": filter}));
    let mut cases = malformed("autoplace", Method::POST, AUTOPLACE);
    cases.extend([
        Case::post(
            "autoplace: unknown definition",
            "/v1/resource-definitions/res9/autoplace",
            json!({}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        place("every node offline", json!({})).conflict(FAIL_NOT_ENOUGH_NODES),
        filter(
            "two more replicas, every node offline",
            json!({"additional_place_count": 2}),
        )
        .conflict(FAIL_NOT_ENOUGH_NODES),
        filter("place count 0", json!({"place_count": 0}))
            .bad_request(FAIL_INVLD_PLACE_COUNT)
            .with_correction(),
        filter("place count is a word", json!({"place_count": "all"})).unparsable(),
        filter("unknown provider", json!({"provider_list": ["BANANA"]}))
            .bad_request(FAIL_INVLD_PROVIDER),
        filter(
            "unknown layer in the filter",
            json!({"layer_stack": ["BANANA"]}),
        )
        .bad_request(FAIL_INVLD_LAYER_KIND),
        place(
            "unknown layer in the layer list",
            json!({"layer_list": ["BANANA"]}),
        )
        .unparsable(),
        place(
            "another layer stack with resources placed",
            json!({"layer_list": ["MIRROR", "STORAGE"]}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK)
        .with_correction(),
        filter(
            "unknown storage pool",
            json!({"storage_pool_list": ["pool_hdd"]}),
        )
        .not_found(FAIL_NOT_FOUND_STOR_POOL_DFN),
        filter("unknown node", json!({"node_name_list": ["node9"]})).not_found(FAIL_NOT_FOUND_NODE),
        place(
            "diskless_on_remaining is a word",
            json!({"diskless_on_remaining": "maybe"}),
        )
        .unparsable(),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn resources_create_modify_delete() {
    const RESOURCES: &str = "/v1/resource-definitions/res1/resources";
    let create =
        |name: &str, body: Value| Case::post(format!("resource create: {name}"), RESOURCES, body);
    // One element placing res1 on node3, with `fields` added to the element.
    let on_node3 = |name: &str, fields: Value| {
        let mut element = json!({"resource": {"node_name": "node3"}});
        for (key, value) in fields.as_object().expect("an object") {
            element[key] = value.clone();
        }
        create(name, json!([element]))
    };
    let with_props = |name: &str, props: Value| {
        create(
            name,
            json!([{"resource": {"node_name": "node3", "props": props}}]),
        )
    };
    let at = |name: &str, method: Method, tail: &str, body: Value| {
        Case::json(
            format!("resource {name}"),
            method,
            format!("{RESOURCES}/{tail}"),
            body,
        )
    };
    let delete = |name: &str, tail: &str| {
        Case::delete(
            format!("resource delete: {name}"),
            format!("{RESOURCES}/{tail}"),
        )
    };
    let mut cases = malformed("resource create", Method::POST, RESOURCES);
    cases.extend([
        // Create, array form: all elements or none.
        create(
            "an object instead of an array",
            json!({"resource": {"node_name": "node3"}}),
        )
        .unparsable(),
        Case::raw("resource create: empty body", Method::POST, RESOURCES, "").unparsable(),
        create("empty array", json!([]))
            .bad_request(FAIL_INVLD_REQUEST)
            .with_correction(),
        Case::post(
            "resource create: unknown definition",
            "/v1/resource-definitions/res9/resources",
            json!([{"resource": {"node_name": "node3"}}]),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        create(
            "unknown node",
            json!([{"resource": {"node_name": "node9"}}]),
        )
        .not_found(FAIL_NOT_FOUND_NODE),
        create("missing node name", json!([{"resource": {}}])).bad_request(FAIL_INVLD_NODE_NAME),
        create(
            "node name is a number",
            json!([{"resource": {"node_name": 3}}]),
        )
        .unparsable(),
        create(
            "already on node1, other case",
            json!([{"resource": {"node_name": "NODE1"}}]),
        )
        .conflict(FAIL_EXISTS_RSC)
        .with_correction(),
        create(
            "node3 twice",
            json!([{"resource": {"node_name": "node3"}}, {"resource": {"node_name": "Node3"}}]),
        )
        .conflict(FAIL_EXISTS_RSC)
        .with_correction(),
        create(
            "a good and an unknown node",
            json!([{"resource": {"node_name": "node3"}}, {"resource": {"node_name": "node9"}}]),
        )
        .not_found(FAIL_NOT_FOUND_NODE),
        create(
            "unknown flag",
            json!([{"resource": {"node_name": "node3", "flags": ["TIE_BREAKER"]}}]),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        with_props("unknown storage pool", json!({"StorPoolName": "pool_hdd"}))
            .not_found(FAIL_NOT_FOUND_STOR_POOL),
        with_props("invalid storage pool name", json!({"StorPoolName": "p"}))
            .bad_request(FAIL_INVLD_STOR_POOL_NAME),
        with_props(
            "diskful in the diskless pool",
            json!({"StorPoolName": "DfltDisklessStorPool"}),
        )
        .bad_request(FAIL_INVLD_STOR_POOL_NAME)
        .with_correction(),
        with_props("invalid property", json!({"Aux/a b": "1"})).bad_request(FAIL_INVLD_PROP),
        on_node3("DRBD client without DRBD", json!({"drbd_client": true}))
            .bad_request(FAIL_INVLD_LAYER_STACK)
            .with_correction(),
        on_node3(
            "another layer stack",
            json!({"layer_list": ["DRBD", "STORAGE"]}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK)
        .with_correction(),
        on_node3("unknown layer", json!({"layer_list": ["BCACHE"]})).unparsable(),
        // Create, one node in the path.
        at(
            "create on node: unknown node",
            Method::POST,
            "node9",
            json!({"resource": {}}),
        )
        .not_found(FAIL_NOT_FOUND_NODE),
        at(
            "create on node: already there",
            Method::POST,
            "node1",
            json!({"resource": {}}),
        )
        .conflict(FAIL_EXISTS_RSC)
        .with_correction(),
        // Get, modify.
        Case::get(
            "resource list: unknown definition",
            "/v1/resource-definitions/res9/resources",
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::get("resource get: not on node3", format!("{RESOURCES}/node3"))
            .not_found(FAIL_NOT_FOUND_RSC),
        Case::get("resource get: invalid node name", format!("{RESOURCES}/n"))
            .bad_request(FAIL_INVLD_NODE_NAME),
        Case::get(
            "volume list: not on node3",
            format!("{RESOURCES}/node3/volumes"),
        )
        .not_found(FAIL_NOT_FOUND_RSC),
        Case::get(
            "volume get: unknown number",
            format!("{RESOURCES}/node1/volumes/4"),
        )
        .not_found(FAIL_NOT_FOUND_VLM_DFN),
        Case::get(
            "volume get: number is a word",
            format!("{RESOURCES}/node1/volumes/four"),
        )
        .bad_request(FAIL_INVLD_REQUEST),
        at("modify: not on node3", Method::PUT, "node3", json!({})).not_found(FAIL_NOT_FOUND_RSC),
        at(
            "modify: tiebreaker without DRBD",
            Method::PUT,
            "node2",
            json!({"drbd_tiebreaker": true}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK)
        .with_correction(),
        at(
            "modify: moving the disk by property",
            Method::PUT,
            "node1",
            json!({"override_props": {"StorPoolName": "DfltDisklessStorPool"}}),
        )
        .bad_request(FAIL_INVLD_PROP)
        .with_correction(),
        at(
            "modify: invalid property",
            Method::PUT,
            "node1",
            json!({"override_props": {"a b": "1"}}),
        )
        .bad_request(FAIL_INVLD_PROP),
        // Delete.
        delete("the last disk", "node1").conflict(FAIL_INSUFFICIENT_REPLICA_COUNT),
        delete("the last disk, other case", "NODE1").conflict(FAIL_INSUFFICIENT_REPLICA_COUNT),
        delete("not on node3", "node3").not_found(FAIL_NOT_FOUND_RSC),
        delete("unknown node", "node9").not_found(FAIL_NOT_FOUND_NODE),
        Case::delete(
            "resource delete: unknown definition",
            "/v1/resource-definitions/res9/resources/node2",
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        delete(
            "keep_tiebreaker that is not a boolean refuses the call",
            "node2?keep_tiebreaker=maybe",
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        delete(
            "keep_tiebreaker=1 is not read as true",
            "node2?keep_tiebreaker=1",
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        delete(
            "keep_tiebreaker given twice",
            "node2?keep_tiebreaker=true&keep_tiebreaker=false",
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        on_node3("DRBD node id 32", json!({"drbd_node_id": 32}))
            .bad_request(FAIL_INVLD_NODE_ID)
            .with_correction(),
        on_node3("negative DRBD node id", json!({"drbd_node_id": "-1"}))
            .bad_request(FAIL_INVLD_NODE_ID)
            .with_correction(),
        on_node3("TCP port 0", json!({"drbd_tcp_ports": [7000, 0]}))
            .bad_request(FAIL_INVLD_TCP_PORT)
            .with_correction(),
        on_node3("TCP port count 0", json!({"drbd_tcp_port_count": 0}))
            .bad_request(FAIL_INVLD_TCP_PORT)
            .with_correction(),
        on_node3("node id with blanks", json!({"drbd_node_id": " 1"})).unparsable(),
        create(
            "body names another resource",
            json!([{"resource": {"name": "res2", "node_name": "node3"}}]),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        Case::post(
            "resource create on a node: body names another node",
            format!("{RESOURCES}/node3"),
            json!({"resource": {"node_name": "node2"}}),
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        with_props(
            "key with a '..' segment",
            json!({"Aux/../StorPoolName": "x"}),
        )
        .bad_request(FAIL_INVLD_PROP),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn toggle_disk_and_make_available() {
    const RESOURCES: &str = "/v1/resource-definitions/res1/resources";
    let toggle = |name: &str, node: &str, body: Value| {
        Case::put(
            format!("toggle-disk: {name}"),
            format!("{RESOURCES}/{node}/toggle-disk"),
            body,
        )
    };
    let legacy = |name: &str, tail: &str| {
        Case::bare(
            format!("legacy: {name}"),
            Method::PUT,
            format!("{RESOURCES}/{tail}"),
        )
    };
    let available = |name: &str, node: &str, body: Value| {
        Case::post(
            format!("make-available: {name}"),
            format!("{RESOURCES}/{node}/make-available"),
            body,
        )
    };
    let mut cases = malformed(
        "toggle-disk",
        Method::PUT,
        &format!("{RESOURCES}/node2/toggle-disk"),
    );
    cases.extend([
        // Body form (API 1.28).
        toggle("missing operation", "node2", json!({})).unparsable(),
        toggle(
            "invalid migrate_from on a diskless resource",
            "node2",
            json!({"operation": "INTO_DRBD_DISKLESS", "migrate_from": "bad node"}),
        )
        .bad_request(FAIL_INVLD_NODE_NAME)
        .with_correction(),
        legacy(
            "invalid diskless pool on a diskless resource",
            "node2/toggle-disk/diskless/000",
        )
        .bad_request(FAIL_INVLD_STOR_POOL_NAME)
        .with_correction(),
        toggle(
            "unknown operation",
            "node2",
            json!({"operation": "INTO_TAPE"}),
        )
        .unparsable(),
        toggle(
            "into a DRBD client",
            "node2",
            json!({"operation": "INTO_DRBD_CLIENT"}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK)
        .with_correction(),
        toggle(
            "unknown storage pool",
            "node2",
            json!({"operation": "INTO_DRBD_DISKFUL", "storage_pool": "pool_hdd"}),
        )
        .not_found(FAIL_NOT_FOUND_STOR_POOL),
        toggle(
            "diskful into the diskless pool",
            "node2",
            json!({"operation": "INTO_DRBD_DISKFUL", "storage_pool": "DfltDisklessStorPool"}),
        )
        .bad_request(FAIL_INVLD_STOR_POOL_NAME)
        .with_correction(),
        toggle(
            "the last disk",
            "node1",
            json!({"operation": "INTO_DRBD_DISKLESS"}),
        )
        .conflict(FAIL_INSUFFICIENT_REPLICA_COUNT),
        toggle(
            "migrating an unreplicated disk",
            "node2",
            json!({"operation": "INTO_DRBD_DISKFUL", "migrate_from": "node1"}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK),
        toggle(
            "not on node3",
            "node3",
            json!({"operation": "INTO_DRBD_DISKFUL"}),
        )
        .not_found(FAIL_NOT_FOUND_RSC),
        Case::put(
            "toggle-disk: unknown definition",
            "/v1/resource-definitions/res9/resources/node2/toggle-disk",
            json!({"operation": "INTO_DRBD_DISKFUL"}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        // Legacy URL forms.
        legacy("diskful, not on node3", "node3/toggle-disk/diskful").not_found(FAIL_NOT_FOUND_RSC),
        legacy(
            "diskful into an unknown pool",
            "node2/toggle-disk/diskful/pool_hdd",
        )
        .not_found(FAIL_NOT_FOUND_STOR_POOL),
        legacy(
            "diskful into an invalid pool name",
            "node2/toggle-disk/diskful/p",
        )
        .bad_request(FAIL_INVLD_STOR_POOL_NAME),
        legacy(
            "diskful into the diskless pool",
            "node2/toggle-disk/diskful/DfltDisklessStorPool",
        )
        .bad_request(FAIL_INVLD_STOR_POOL_NAME)
        .with_correction(),
        legacy("diskless, the last disk", "node1/toggle-disk/diskless")
            .conflict(FAIL_INSUFFICIENT_REPLICA_COUNT),
        legacy(
            "diskless into a pool, the last disk",
            "node1/toggle-disk/diskless/DfltDisklessStorPool",
        )
        .conflict(FAIL_INSUFFICIENT_REPLICA_COUNT),
        Case::bare(
            "legacy: unknown definition",
            Method::PUT,
            "/v1/resource-definitions/res9/resources/node2/toggle-disk/diskful",
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        legacy("migrate-disk, unreplicated", "node2/migrate-disk/node1")
            .bad_request(FAIL_INVLD_LAYER_STACK),
        legacy(
            "migrate-disk into a pool, unreplicated",
            "node2/migrate-disk/node1/pool_ssd",
        )
        .bad_request(FAIL_INVLD_LAYER_STACK),
        legacy("migrate-disk, not on node3", "node3/migrate-disk/node1")
            .not_found(FAIL_NOT_FOUND_RSC),
        Case::bare(
            "legacy: GET is not a method",
            Method::GET,
            format!("{RESOURCES}/node2/toggle-disk/diskful"),
        )
        .refused(405, UNKNOWN_API_CALL)
        .with_correction(),
        // Make-available.
        Case::post(
            "make-available: unknown definition",
            "/v1/resource-definitions/res9/resources/node3/make-available",
            json!({}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        available("unknown node", "node9", json!({})).not_found(FAIL_NOT_FOUND_NODE),
        available("invalid node name", "-node3", json!({})).bad_request(FAIL_INVLD_NODE_NAME),
        available(
            "another layer stack",
            "node3",
            json!({"layer_list": ["DRBD", "STORAGE"]}),
        )
        .bad_request(FAIL_INVLD_LAYER_STACK)
        .with_correction(),
        available("unknown layer", "node3", json!({"layer_list": ["BCACHE"]})).unparsable(),
        available("diskful is a word", "node3", json!({"diskful": "maybe"})).unparsable(),
        Case::raw(
            "make-available: malformed JSON",
            Method::POST,
            format!("{RESOURCES}/node3/make-available"),
            "{\"diskful\": tru}",
        )
        .unparsable(),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn error_reports() {
    const REPORT: &str = "/v1/error-reports/65F0A1B2-00000-000001";
    refuse_all(vec![
        Case::get("error report get: unknown id", REPORT).not_found(FAIL_NOT_FOUND_ERROR_REPORT),
        Case::delete("error report delete: unknown id", REPORT)
            .not_found(FAIL_NOT_FOUND_ERROR_REPORT),
        Case::delete(
            "error report delete: odd characters",
            "/v1/error-reports/..%2F..%2Fetc",
        )
        .not_found(FAIL_NOT_FOUND_ERROR_REPORT),
        Case::bare("error reports: POST", Method::POST, "/v1/error-reports")
            .refused(405, UNKNOWN_API_CALL)
            .with_correction(),
    ])
    .await;
}

#[tokio::test]
async fn snapshots() {
    const SNAPSHOTS: &str = "/v1/resource-definitions/nores/snapshots";
    refuse_all(vec![
        Case::get("snapshot list: unknown definition", SNAPSHOTS).not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::post(
            "snapshot create: unknown definition",
            SNAPSHOTS,
            json!({"name": "snap1"}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::delete(
            "snapshot delete: unknown definition",
            format!("{SNAPSHOTS}/snap1"),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::post(
            "snapshot rollback: unknown definition",
            "/v1/resource-definitions/nores/snapshot-rollback/snap1",
            json!({}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::post(
            "snapshot restore: unknown definition",
            "/v1/resource-definitions/nores/snapshot-restore-resource/snap1",
            json!({"to_resource": "other"}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::post(
            "multi snapshot: none named",
            "/v1/actions/snapshot/multi",
            json!({"snapshots": []}),
        )
        .bad_request(FAIL_INVLD_REQUEST),
        Case::post(
            "multi snapshot: no resource",
            "/v1/actions/snapshot/multi",
            json!({"snapshots": [{"name": "snap1"}]}),
        )
        .bad_request(FAIL_INVLD_RSC_NAME),
        Case::post(
            "clone: unknown definition",
            "/v1/resource-definitions/nores/clone",
            json!({"name": "copy"}),
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
        Case::get(
            "clone status: unknown definition",
            "/v1/resource-definitions/nores/clone/copy",
        )
        .not_found(FAIL_NOT_FOUND_RSC_DFN),
    ])
    .await;
}

#[tokio::test]
async fn list_query_parameters() {
    let mut cases = Vec::new();
    for path in [
        "/v1/nodes",
        "/v1/view/storage-pools",
        "/v1/resource-groups",
        "/v1/resource-definitions",
        "/v1/view/resources",
        "/v1/nodes/node1/storage-pools",
    ] {
        for (what, query) in [
            ("limit is a word", "limit=abc"),
            ("negative offset", "offset=-1"),
            ("fractional limit", "limit=1.5"),
            ("empty limit", "limit="),
            ("limit beyond 64 bits", "limit=99999999999999999999999"),
            ("limit beyond 32 bits", "limit=2147483648"),
            ("limit given twice", "limit=1&limit=2"),
        ] {
            cases.push(
                Case::get(format!("{path}: {what}"), format!("{path}?{query}"))
                    .bad_request(FAIL_INVLD_REQUEST)
                    .with_correction(),
            );
        }
    }
    let rd_list = |what: &str, query: &str| {
        Case::get(
            format!("rd list: {what}"),
            format!("/v1/resource-definitions?{query}"),
        )
    };
    cases.extend([
        rd_list(
            "with_volume_definitions=null",
            "with_volume_definitions=null",
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        rd_list(
            "with_volume_definitions=maybe",
            "with_volume_definitions=maybe",
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        Case::get(
            "rd get: with_volume_definitions=2",
            "/v1/resource-definitions/res1?with_volume_definitions=2",
        )
        .bad_request(FAIL_INVLD_REQUEST)
        .with_correction(),
        Case::get("node list: invalid node name", "/v1/nodes?nodes=bad%20name")
            .bad_request(FAIL_INVLD_NODE_NAME)
            .with_correction(),
        Case::get(
            "resource view: invalid resource name",
            "/v1/view/resources?resources=1x",
        )
        .bad_request(FAIL_INVLD_RSC_NAME)
        .with_correction(),
        Case::get(
            "pool view: invalid pool name",
            "/v1/view/storage-pools?storage_pools=p",
        )
        .bad_request(FAIL_INVLD_STOR_POOL_NAME)
        .with_correction(),
        Case::get(
            "group list: invalid property filter",
            "/v1/resource-groups?props=Aux/../x",
        )
        .bad_request(FAIL_INVLD_PROP)
        .with_correction(),
    ]);
    refuse_all(cases).await;
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_oversized_bodies() {
    let unknown = |name: &str, method: Method, path: &str| {
        Case::bare(format!("unknown: {name}"), method, path)
            .refused(404, UNKNOWN_API_CALL)
            .with_correction()
    };
    let not_allowed = |name: &str, method: Method, path: &str| {
        Case::bare(format!("method: {name}"), method, path)
            .refused(405, UNKNOWN_API_CALL)
            .with_correction()
    };
    let huge = format!(
        "{{\"name\": \"node4\", \"type\": \"SATELLITE\", \"props\": {{\"Aux/a\": \"{}\"}}}}",
        "x".repeat(3 << 20)
    );
    refuse_all(vec![
        unknown("top level", Method::GET, "/v1/nope"),
        unknown("API version 2", Method::GET, "/v2/nodes"),
        unknown("below a node", Method::POST, "/v1/nodes/node1/bogus"),
        unknown(
            "below a definition",
            Method::GET,
            "/v1/resource-definitions/res1/bogus",
        ),
        unknown("trailing slash", Method::GET, "/v1/nodes/"),
        unknown("root", Method::DELETE, "/"),
        not_allowed("PATCH on nodes", Method::PATCH, "/v1/nodes"),
        not_allowed("DELETE on the node collection", Method::DELETE, "/v1/nodes"),
        not_allowed(
            "PUT on the resource view",
            Method::PUT,
            "/v1/view/resources",
        ),
        not_allowed(
            "POST on the version",
            Method::POST,
            "/v1/controller/version",
        ),
        not_allowed(
            "DELETE on the groups",
            Method::DELETE,
            "/v1/resource-groups",
        ),
        not_allowed(
            "GET on spawn",
            Method::GET,
            "/v1/resource-groups/my_ssd_group/spawn",
        ),
        not_allowed(
            "GET on autoplace",
            Method::GET,
            "/v1/resource-definitions/res1/autoplace",
        ),
        not_allowed("DELETE on /metrics", Method::DELETE, "/metrics"),
        Case::raw("body: more than 2 MiB", Method::POST, "/v1/nodes", huge)
            .refused(413, API_CALL_PARSE_ERROR),
    ])
    .await;
}

/// A JSON array where the call takes an object is refused as a parse error. serde's derived
/// `Deserialize` would read a struct from a sequence of its fields in declaration order, so
/// without the check in `JsonBody` (src/http/response.rs) `["node4", "SATELLITE", [], {}, [...]]`
/// would register a node.
#[tokio::test]
async fn arrays_are_not_objects() {
    refuse_all(vec![
        Case::post(
            "node create: the fields as an array",
            "/v1/nodes",
            json!(["node4", "SATELLITE", [], {}, [
                {"name": "default", "address": FREE_ADDRESS, "satellite_port": 1}
            ]]),
        )
        .unparsable(),
        Case::post(
            "resource create on node: an array body",
            "/v1/resource-definitions/res1/resources/node3",
            json!([{"resource": {}}]),
        )
        .unparsable(),
        Case::post(
            "rd create: an array",
            "/v1/resource-definitions",
            json!([{"resource_definition": {"name": "res2"}}]),
        )
        .unparsable(),
        Case::post(
            "props set: the fields as an array",
            "/v1/controller/properties",
            json!([{"Aux/a": "1"}]),
        )
        .unparsable(),
    ])
    .await;
}
