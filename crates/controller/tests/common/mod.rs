//! An in-process controller for integration tests: the REST router driven with
//! `tower::ServiceExt::oneshot`, a small cluster built through the API, a snapshot of everything
//! a client can observe, and a runner for tables of requests that must be refused.
//!
//! No satellite runs: every node is registered with a loopback address on port 1, where nothing
//! listens, so each link fails to connect at once and the node stays OFFLINE for the whole test.

use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ferrite_controller::Controller;
use ferrite_controller::satellites::Timeouts;
use ferrite_types::ApiCallRc;
use ferrite_types::api_call_rc::{code, mask};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Thresholds that keep a test without satellites fast: creating a node waits 50 ms for its
/// satellite, a mutating call 200 ms, a storage pool check 200 ms.
pub fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(200),
        node_online: Duration::from_millis(50),
        apply: Duration::from_millis(200),
        check_pool: Duration::from_millis(200),
        ..Default::default()
    }
}

/// The satellite address of the fixture's node `i`: nothing listens on port 1.
pub fn node_address(i: u8) -> String {
    format!("127.77.0.{i}")
}

/// The size of the fixture's volume: 1 GiB, in KiB.
pub const VOLUME_KIB: i64 = 1 << 20;

/// A running controller with its data directory (removed with the fixture unless the test owns
/// it: see [`Fixture::in_dir`]).
pub struct Fixture {
    router: Router,
    _data_dir: Option<tempfile::TempDir>,
}

/// An answer: status, Content-Type and body.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {}", self.text()))
    }
}

impl Fixture {
    /// A controller on an empty store.
    pub async fn empty() -> Fixture {
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let mut fixture = Fixture::in_dir(data_dir.path()).await;
        fixture._data_dir = Some(data_dir);
        fixture
    }

    /// A controller on the store in `dir`, empty or left by an earlier controller: a restart.
    /// The controller holds the directory's lock until the runtime it runs in is dropped.
    pub async fn in_dir(dir: &std::path::Path) -> Fixture {
        let controller = Controller::start(
            ferrite_controller::DataDirLock::acquire(dir).expect("lock"),
            timeouts(),
        )
        .await
        .expect("controller starts");
        Fixture {
            router: ferrite_controller::http::router(controller),
            _data_dir: None,
        }
    }

    /// A small cluster, built through the REST API:
    ///
    /// - nodes `node1`, `node2`, `node3` (SATELLITE, interface `default`), all OFFLINE;
    /// - a FILE_THIN pool `pool_ssd` on each, in an absolute directory;
    /// - resource group `my_ssd_group` (place count 2, `pool_ssd`) with volume group 0;
    /// - resource definition `res1` spawned from it with `definitions_only`, one 1 GiB volume;
    /// - `res1` placed diskful on `node1` (in `pool_ssd`) and diskless on `node2`; nothing on
    ///   `node3`.
    pub async fn cluster() -> Fixture {
        let fixture = Fixture::empty().await;
        fixture.build_cluster().await;
        fixture
    }

    /// Builds [`Fixture::cluster`]'s cluster on this controller's empty store.
    pub async fn build_cluster(&self) {
        let fixture = self;
        for i in 1..=3u8 {
            fixture
                .expect_success(
                    Method::POST,
                    "/v1/nodes",
                    json!({
                        "name": format!("node{i}"),
                        "type": "SATELLITE",
                        "net_interfaces": [{
                            "name": "default",
                            "address": node_address(i),
                            "satellite_port": 1,
                            "satellite_encryption_type": "PLAIN",
                            "is_active": true
                        }]
                    }),
                )
                .await;
            fixture
                .expect_success(
                    Method::POST,
                    &format!("/v1/nodes/node{i}/storage-pools"),
                    json!({
                        "storage_pool_name": "pool_ssd",
                        "provider_kind": "FILE_THIN",
                        "props": {"StorDriver/StorPoolName": format!("/srv/ferrite/node{i}/ssd")}
                    }),
                )
                .await;
        }
        fixture
            .expect_success(
                Method::POST,
                "/v1/resource-groups",
                json!({
                    "name": "my_ssd_group",
                    "select_filter": {"place_count": 2, "storage_pool_list": ["pool_ssd"]}
                }),
            )
            .await;
        fixture
            .expect_success(
                Method::POST,
                "/v1/resource-groups/my_ssd_group/volume-groups",
                json!({"volume_number": 0}),
            )
            .await;
        fixture
            .expect_success(
                Method::POST,
                "/v1/resource-groups/my_ssd_group/spawn",
                json!({
                    "resource_definition_name": "res1",
                    "volume_sizes": [VOLUME_KIB],
                    "definitions_only": true
                }),
            )
            .await;
        fixture
            .expect_success(
                Method::POST,
                "/v1/resource-definitions/res1/resources",
                json!([
                    {"resource": {"node_name": "node1"}},
                    {"resource": {"node_name": "node2", "flags": ["DISKLESS"]}}
                ]),
            )
            .await;
        fixture.check_cluster_shape().await;
    }

    /// Asserts the fixture is what [`Fixture::cluster`] says, so the bad-input cases test what
    /// they claim to.
    async fn check_cluster_shape(&self) {
        let nodes = self.get_json("/v1/nodes").await;
        let nodes = nodes.as_array().expect("node list");
        assert_eq!(nodes.len(), 3, "three nodes: {nodes:?}");
        for node in nodes {
            assert_eq!(node["connection_status"], "OFFLINE", "{node}");
        }
        let resources = self.get_json("/v1/view/resources").await;
        let placed: Vec<(String, bool)> = resources
            .as_array()
            .expect("resource list")
            .iter()
            .map(|r| {
                let diskless = r["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f == "DISKLESS"));
                (r["node_name"].as_str().unwrap_or("").to_string(), diskless)
            })
            .collect();
        assert_eq!(
            placed,
            vec![("node1".to_string(), false), ("node2".to_string(), true)],
            "res1 diskful on node1 and diskless on node2: {resources}"
        );
        let rds = self
            .get_json("/v1/resource-definitions?with_volume_definitions=true")
            .await;
        assert_eq!(
            rds[0]["volume_definitions"][0]["size_kib"], VOLUME_KIB,
            "{rds}"
        );
    }

    /// Sends one request. `body` is sent as is.
    pub async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("request builds");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("response body")
            .to_vec();
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// GETs a JSON document, which must come with 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let answer = self.send(Method::GET, path, None).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "GET {path}: {}",
            answer.text()
        );
        answer.json()
    }

    /// Sends a JSON body and requires a 2xx answer without error entries.
    pub async fn expect_success(&self, method: Method, path: &str, body: Value) -> Vec<ApiCallRc> {
        let answer = self
            .send(method.clone(), path, Some(body.to_string().into_bytes()))
            .await;
        assert!(
            answer.status.is_success(),
            "{method} {path} failed with {}: {}",
            answer.status,
            answer.text()
        );
        let entries: Vec<ApiCallRc> = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not an ApiCallRc list ({e})"));
        assert!(
            entries.iter().all(|e| !e.is_error()),
            "{method} {path} answered with errors: {}",
            answer.text()
        );
        entries
    }

    /// Everything a client can observe, endpoint by endpoint.
    pub async fn snapshot(&self) -> Snapshot {
        let mut parts = Vec::new();
        for path in [
            "/v1/nodes",
            "/v1/view/storage-pools",
            "/v1/resource-groups",
            "/v1/resource-definitions?with_volume_definitions=true",
            "/v1/view/resources",
            "/v1/controller/properties",
            "/v1/error-reports",
        ] {
            parts.push((path.to_string(), self.get_json(path).await));
        }
        let groups: Vec<String> = parts[2]
            .1
            .as_array()
            .expect("resource group list")
            .iter()
            .map(|g| g["name"].as_str().expect("group name").to_string())
            .collect();
        for group in groups {
            let path = format!("/v1/resource-groups/{group}/volume-groups");
            let volume_groups = self.get_json(&path).await;
            parts.push((path, volume_groups));
        }
        let metrics = self.send(Method::GET, "/metrics", None).await;
        assert_eq!(metrics.status, StatusCode::OK);
        let revision = metrics
            .text()
            .lines()
            .find(|l| l.starts_with("ferrite_store_revision "))
            .expect("/metrics has ferrite_store_revision")
            .to_string();
        parts.push(("/metrics".to_string(), Value::String(revision)));
        Snapshot(parts)
    }
}

/// Sends every case to a [`Fixture::cluster`] and checks that each was refused as expected and
/// changed nothing. A case that changed the cluster is reported, and the cases after it run on a
/// freshly built cluster, so one failure does not cascade. Panics at the end with every failed
/// case.
pub async fn refuse_all(cases: Vec<Case>) {
    assert!(!cases.is_empty());
    let mut names = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name.clone()),
            "case name {:?} repeated",
            case.name
        );
    }
    let mut fixture = Fixture::cluster().await;
    let mut before = fixture.snapshot().await;
    let mut failures = Vec::new();
    for case in &cases {
        let answer = fixture
            .send(case.method.clone(), &case.path, case.body.clone())
            .await;
        let mut problems = case.check(&answer);
        let after = fixture.snapshot().await;
        if let Some(difference) = before.difference(&after) {
            problems.push(format!("the request changed the cluster: {difference}"));
            fixture = Fixture::cluster().await;
            before = fixture.snapshot().await;
        }
        if !problems.is_empty() {
            failures.push(format!(
                "[{}] {} {}\n    answer {}: {}\n    - {}",
                case.name,
                case.method,
                case.path,
                answer.status,
                truncate(&answer.text(), 600),
                problems.join("\n    - ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad requests were not refused properly:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// The observable state: each endpoint's document, in a fixed order.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot(pub Vec<(String, Value)>);

impl Snapshot {
    /// Which endpoints differ, with both documents; `None` when equal.
    pub fn difference(&self, other: &Snapshot) -> Option<String> {
        if self == other {
            return None;
        }
        let mut out = String::new();
        let paths: Vec<&String> = self.0.iter().chain(&other.0).map(|(p, _)| p).collect();
        let mut seen = std::collections::BTreeSet::new();
        for path in paths {
            if !seen.insert(path) {
                continue;
            }
            let find = |s: &Snapshot| s.0.iter().find(|(p, _)| p == path).map(|(_, v)| v.clone());
            let (was, now) = (find(self), find(other));
            if was != now {
                let _ = write!(
                    out,
                    "\n      {path}\n        before: {}\n        after:  {}",
                    truncate(&was.map(|v| v.to_string()).unwrap_or_default(), 800),
                    truncate(&now.map(|v| v.to_string()).unwrap_or_default(), 800)
                );
            }
        }
        Some(out)
    }
}

/// What the first error entry must explain besides its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explains {
    /// A cause (what was wrong in detail) and a correction (what to send instead).
    CauseAndCorrection,
    /// A correction only: the message says all there is to say about the cause.
    Correction,
    /// Not a refusal: LINSTOR's warning that there was nothing to delete, with its cause.
    Warning,
}

/// One request that must be refused.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub method: Method,
    pub path: String,
    pub body: Option<Vec<u8>>,
    pub status: StatusCode,
    /// The expected code: the low bits of `ret_code`, or a whole special code such as
    /// `API_CALL_PARSE_ERROR`.
    pub code: u64,
    pub explains: Explains,
}

impl Case {
    fn new(name: impl Into<String>, method: Method, path: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            method,
            path: path.into(),
            body: None,
            status: StatusCode::IM_A_TEAPOT,
            code: u64::MAX,
            explains: Explains::CauseAndCorrection,
        }
    }

    pub fn get(name: impl Into<String>, path: impl Into<String>) -> Case {
        Case::new(name, Method::GET, path)
    }

    pub fn delete(name: impl Into<String>, path: impl Into<String>) -> Case {
        Case::new(name, Method::DELETE, path)
    }

    /// A request with a JSON body.
    pub fn json(
        name: impl Into<String>,
        method: Method,
        path: impl Into<String>,
        body: Value,
    ) -> Case {
        Case::new(name, method, path).body(body.to_string().into_bytes())
    }

    pub fn post(name: impl Into<String>, path: impl Into<String>, body: Value) -> Case {
        Case::json(name, Method::POST, path, body)
    }

    pub fn put(name: impl Into<String>, path: impl Into<String>, body: Value) -> Case {
        Case::json(name, Method::PUT, path, body)
    }

    /// A request with a body sent byte for byte (malformed JSON, other encodings).
    pub fn raw(
        name: impl Into<String>,
        method: Method,
        path: impl Into<String>,
        body: impl Into<Vec<u8>>,
    ) -> Case {
        Case::new(name, method, path).body(body.into())
    }

    /// A request with no body at all.
    pub fn bare(name: impl Into<String>, method: Method, path: impl Into<String>) -> Case {
        Case::new(name, method, path)
    }

    fn body(mut self, body: Vec<u8>) -> Case {
        self.body = Some(body);
        self
    }

    /// The expected status and code.
    pub fn refused(mut self, status: u16, code_value: u64) -> Case {
        self.status = StatusCode::from_u16(status).expect("valid status");
        self.code = code_value;
        self
    }

    pub fn bad_request(self, code_value: u64) -> Case {
        self.refused(400, code_value)
    }

    pub fn not_found(self, code_value: u64) -> Case {
        self.refused(404, code_value)
    }

    pub fn conflict(self, code_value: u64) -> Case {
        self.refused(409, code_value)
    }

    /// A deletion of something that does not exist: LINSTOR's `WARN_NOT_FOUND` warning with
    /// 200 and a cause, no error, and nothing changed.
    pub fn warns_not_found(mut self) -> Case {
        self.status = StatusCode::OK;
        self.code = code::WARN_NOT_FOUND;
        self.explains = Explains::Warning;
        self
    }

    /// A body that does not parse for the call: 400 `API_CALL_PARSE_ERROR`.
    pub fn unparsable(self) -> Case {
        self.refused(400, code::API_CALL_PARSE_ERROR)
    }

    /// The answer explains with a correction only (the default is a cause and a correction).
    pub fn with_correction(mut self) -> Case {
        self.explains = Explains::Correction;
        self
    }

    /// What is wrong with `answer` for this case.
    fn check(&self, answer: &Answer) -> Vec<String> {
        let mut problems = Vec::new();
        assert!(
            self.code != u64::MAX
                && (self.status.is_client_error() || self.explains == Explains::Warning),
            "case {:?} has no 4xx expectation",
            self.name
        );
        if answer.status != self.status {
            problems.push(format!(
                "status {} instead of {}",
                answer.status, self.status
            ));
        }
        if answer.content_type.as_deref() != Some("application/json") {
            problems.push(format!(
                "Content-Type {:?} instead of application/json",
                answer.content_type
            ));
        }
        let entries: Vec<ApiCallRc> = match serde_json::from_slice(&answer.body) {
            Ok(entries) => entries,
            Err(e) => {
                problems.push(format!("the body is not an ApiCallRc list: {e}"));
                return problems;
            }
        };
        if self.explains == Explains::Warning {
            match entries.as_slice() {
                [warning] if !warning.is_error() && warning.ret_code().is_warning() => {
                    if warning.ret_code().code() != self.code {
                        problems.push(format!(
                            "warning code {} instead of {}",
                            warning.ret_code().code(),
                            self.code
                        ));
                    }
                    if warning.cause.as_deref().is_none_or(|c| c.trim().is_empty()) {
                        problems.push("no cause".to_string());
                    }
                }
                _ => problems.push(format!("not one warning entry: {entries:?}")),
            }
            return problems;
        }
        let Some(error) = entries.iter().find(|e| e.is_error()) else {
            problems.push("no entry has the error mask".to_string());
            return problems;
        };
        if !std::ptr::eq(error, &entries[0]) {
            problems.push("the first entry is not the error".to_string());
        }
        let rc = error.ret_code();
        if rc.bits() & mask::TYPE_BITS != mask::ERROR || error.ret_code >= 0 {
            problems.push(format!("ret_code {} lacks the error mask", error.ret_code));
        }
        let matches = if self.code > mask::CODE_BITS {
            rc.bits() & !mask::TYPE_BITS == self.code
        } else {
            rc.code() == self.code
        };
        if !matches {
            problems.push(format!(
                "code {} (ret_code {}) instead of {}",
                rc.code(),
                error.ret_code,
                self.code
            ));
        }
        if error.message.trim().is_empty() {
            problems.push("empty message".to_string());
        }
        let present =
            |field: &Option<String>| field.as_deref().is_some_and(|t| !t.trim().is_empty());
        if self.explains == Explains::CauseAndCorrection && !present(&error.cause) {
            problems.push("no cause".to_string());
        }
        if !present(&error.correction) {
            problems.push("no correction".to_string());
        }
        problems
    }
}
