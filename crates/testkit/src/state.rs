//! The desired state of a cluster as a client sees it, captured over REST and compared object
//! for object.
//!
//! [`ClusterState::capture`] reads every list endpoint and keeps what the controller was asked to
//! remember: controller properties; nodes with their network interfaces and storage pools;
//! resource groups with their volume groups; resource definitions with their volume definitions,
//! resources, the resources' volumes and resource connections, and their snapshots on each
//! node; node connections; the key-value store's instances. It strips what satellites report or the controller
//! works out at run time (connection status, capabilities, capacities, reports, disk states,
//! device paths, allocated sizes, `in_use`, whether a snapshot was taken), so two captures of the same desired state are
//! equal whether or not the satellites are connected.
//!
//! Every object is one entry keyed by its path (`nodes/node1/storage-pools/pool`,
//! `resource-definitions/web/resources/node2/volumes/0`); a parent's entry holds its own fields,
//! not its children. A [`StateDiff`] therefore names the objects that appeared, vanished or
//! changed, and for a changed one the fields, rather than printing two large documents.
//!
//! It does not judge whether a state is right; it only tells whether two are the same.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::rest::Rest;

/// Fields of a node that describe its satellite's connection and abilities, not its
/// configuration.
const NODE_RUNTIME_FIELDS: &[&str] = &[
    "connection_status",
    "connection_status_reason",
    "storage_providers",
    "resource_layers",
    "unsupported_providers",
    "unsupported_layers",
];

/// Fields of a storage pool that its satellite reports.
const POOL_RUNTIME_FIELDS: &[&str] = &["free_capacity", "total_capacity", "reports"];

/// Fields anywhere inside a resource or volume (including the layer objects) that its
/// satellite reports, the replication engine's view included (its peer connections, role,
/// quorum and promotion, the backing device and NBD export a volume got).
const VOLUME_RUNTIME_FIELDS: &[&str] = &[
    "state",
    "in_use",
    "disk_state",
    "device_path",
    "allocated_size_kib",
    "usable_size_kib",
    "reports",
    "connections",
    "may_promote",
    "promotion_score",
    "quorum",
    "role",
    "backing_device",
    "nbd_uri",
];

/// The part of a resource's flags that says a deletion is under way: the resource stays listed,
/// marked, until its satellite confirmed (on an offline node, until it comes back).
const DELETING_FLAG: &str = "DELETE";

/// The desired state of a cluster, one normalized JSON object per path.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    objects: BTreeMap<String, Value>,
    /// Paths of objects marked for deletion: their disappearance is expected progress, not a
    /// change anyone asked for.
    deleting: BTreeSet<String>,
    /// Nodes whose satellite was connected at capture time; not part of the comparison.
    online: BTreeSet<String>,
}

impl PartialEq for ClusterState {
    fn eq(&self, other: &Self) -> bool {
        self.objects == other.objects
    }
}

impl ClusterState {
    /// Reads the whole desired state from the controller.
    pub fn capture(rest: &Rest) -> Result<ClusterState> {
        let mut state = ClusterState::default();

        let props = get_json(rest, "/v1/controller/properties")?;
        if !props.is_object() {
            bail!("GET /v1/controller/properties answered {props}, not an object");
        }
        state.insert("controller/properties".to_string(), props);

        for mut node in get_array(rest, "/v1/nodes")? {
            let name = field_str(&node, "name")?;
            if node["connection_status"] == "ONLINE" {
                state.online.insert(name.clone());
            }
            for interface in take_array(&mut node, "net_interfaces") {
                let interface_name = field_str(&interface, "name")?;
                state.insert(
                    format!("nodes/{name}/net-interfaces/{interface_name}"),
                    interface,
                );
            }
            remove_fields(&mut node, NODE_RUNTIME_FIELDS);
            state.insert(format!("nodes/{name}"), node);
        }

        for mut pool in get_array(rest, "/v1/view/storage-pools")? {
            let node = field_str(&pool, "node_name")?;
            let name = field_str(&pool, "storage_pool_name")?;
            remove_fields(&mut pool, POOL_RUNTIME_FIELDS);
            state.insert(format!("nodes/{node}/storage-pools/{name}"), pool);
        }

        for group in get_array(rest, "/v1/resource-groups")? {
            let name = field_str(&group, "name")?;
            for volume_group in
                get_array(rest, &format!("/v1/resource-groups/{name}/volume-groups"))?
            {
                let number = field_number(&volume_group, "volume_number")?;
                state.insert(
                    format!("resource-groups/{name}/volume-groups/{number}"),
                    volume_group,
                );
            }
            state.insert(format!("resource-groups/{name}"), group);
        }

        for store in get_array(rest, "/v1/key-value-store")? {
            let name = field_str(&store, "name")?;
            state.insert(format!("key-value-store/{name}"), store);
        }

        for connection in get_array(rest, "/v1/node-connections")? {
            let node_a = field_str(&connection, "node_a")?;
            let node_b = field_str(&connection, "node_b")?;
            state.insert(format!("node-connections/{node_a}/{node_b}"), connection);
        }

        for mut definition in get_array(
            rest,
            "/v1/resource-definitions?with_volume_definitions=true",
        )? {
            let name = field_str(&definition, "name")?;
            for connection in get_array(
                rest,
                &format!("/v1/resource-definitions/{name}/resource-connections"),
            )? {
                let node_a = field_str(&connection, "node_a")?;
                let node_b = field_str(&connection, "node_b")?;
                state.insert(
                    format!("resource-definitions/{name}/resource-connections/{node_a}/{node_b}"),
                    connection,
                );
            }
            for volume_definition in take_array(&mut definition, "volume_definitions") {
                let number = field_number(&volume_definition, "volume_number")?;
                state.insert(
                    format!("resource-definitions/{name}/volume-definitions/{number}"),
                    volume_definition,
                );
            }
            state.insert(format!("resource-definitions/{name}"), definition);
        }

        for mut resource in get_array(rest, "/v1/view/resources")? {
            let definition = field_str(&resource, "name")?;
            let node = field_str(&resource, "node_name")?;
            let path = format!("resource-definitions/{definition}/resources/{node}");
            for mut volume in take_array(&mut resource, "volumes") {
                let number = field_number(&volume, "volume_number")?;
                remove_fields_deep(&mut volume, VOLUME_RUNTIME_FIELDS);
                state.insert(format!("{path}/volumes/{number}"), volume);
            }
            remove_fields_deep(&mut resource, VOLUME_RUNTIME_FIELDS);
            state.insert(path, resource);
        }

        for mut definition in get_array(rest, "/v1/view/snapshots")? {
            let resource = field_str(&definition, "resource_name")?;
            let name = field_str(&definition, "name")?;
            let path = format!("resource-definitions/{resource}/snapshots/{name}");
            for mut taken in take_array(&mut definition, "snapshots") {
                let node = field_str(&taken, "node_name")?;
                // What each node reports of its snapshot volumes is the actual state.
                take_array(&mut taken, "snapshot_volumes");
                state.insert(format!("{path}/nodes/{node}"), taken);
            }
            keep_recorded_flags(&mut definition);
            state.insert(path, definition);
        }
        Ok(state)
    }

    /// Captures until the state holds still: two captures in a row are equal and no resource
    /// on a connected node is still being deleted. Deletions on offline nodes stay pending and
    /// are part of the settled state.
    pub fn capture_settled(rest: &Rest, timeout: Duration) -> Result<ClusterState> {
        let deadline = Instant::now() + timeout;
        let mut previous = ClusterState::capture(rest)?;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let current = ClusterState::capture(rest)?;
            let busy = current.deleting_on_online_nodes();
            if busy.is_empty() && current == previous {
                return Ok(current);
            }
            if Instant::now() > deadline {
                bail!(
                    "the cluster state did not settle within {timeout:?}: deletions under way on connected nodes: {busy:?}; last change: {}",
                    previous.diff(&current)
                );
            }
            previous = current;
        }
    }

    /// Every object, by path.
    pub fn objects(&self) -> &BTreeMap<String, Value> {
        &self.objects
    }

    /// One object.
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.objects.get(path)
    }

    /// Paths of objects marked for deletion (flag `DELETE`).
    pub fn deleting(&self) -> &BTreeSet<String> {
        &self.deleting
    }

    /// Nodes whose satellite was connected when this was captured.
    pub fn online_nodes(&self) -> &BTreeSet<String> {
        &self.online
    }

    /// Resources and snapshots marked for deletion whose satellite is connected: their
    /// deletion should finish shortly.
    fn deleting_on_online_nodes(&self) -> Vec<&String> {
        self.deleting
            .iter()
            .filter(|path| {
                let mut segments = path.rsplit('/');
                let node = segments.next();
                matches!(segments.next(), Some("resources") | Some("nodes"))
                    && node.is_some_and(|n| self.online.contains(n))
            })
            .collect()
    }

    /// What changed from `self` to `after`, object by object.
    pub fn diff(&self, after: &ClusterState) -> StateDiff {
        let mut differences = Vec::new();
        let paths: BTreeSet<&String> = self.objects.keys().chain(after.objects.keys()).collect();
        for path in paths {
            match (self.objects.get(path), after.objects.get(path)) {
                (Some(_), None) => differences.push(Difference::Vanished(path.clone())),
                (None, Some(_)) => differences.push(Difference::Appeared(path.clone())),
                (Some(old), Some(new)) if old != new => {
                    let (old, new) = (flatten(old), flatten(new));
                    let fields: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
                    let changes = fields
                        .into_iter()
                        .filter(|f| old.get(*f) != new.get(*f))
                        .map(|f| FieldChange {
                            field: f.clone(),
                            before: old.get(f).cloned(),
                            after: new.get(f).cloned(),
                        })
                        .collect();
                    differences.push(Difference::Changed(path.clone(), changes));
                }
                _ => {}
            }
        }
        StateDiff { differences }
    }

    /// Fails with a readable list of differences unless `after` equals `self`. `what` says
    /// which comparison this is (it heads the error).
    pub fn expect_same(&self, after: &ClusterState, what: &str) -> Result<()> {
        let diff = self.diff(after);
        if diff.is_empty() {
            Ok(())
        } else {
            bail!("{what}: {diff}")
        }
    }

    fn insert(&mut self, path: String, mut value: Value) {
        sort_flags(&mut value);
        let deleting = value["flags"]
            .as_array()
            .is_some_and(|flags| flags.iter().any(|f| f == DELETING_FLAG));
        if deleting {
            self.deleting.insert(path.clone());
        }
        self.objects.insert(path, value);
    }
}

/// How one object differs between two captures.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// Present before, absent after.
    Vanished(String),
    /// Absent before, present after.
    Appeared(String),
    /// Present in both with different fields.
    Changed(String, Vec<FieldChange>),
}

impl Difference {
    /// The object's path.
    pub fn path(&self) -> &str {
        match self {
            Difference::Vanished(path)
            | Difference::Appeared(path)
            | Difference::Changed(path, _) => path,
        }
    }
}

/// One field of a changed object, by its path inside the object (`props/Aux/rack`); `None`
/// where it was absent.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The differences between two captures, in path order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDiff {
    pub differences: Vec<Difference>,
}

/// How many differing objects a [`StateDiff`] prints before it only counts the rest.
const SHOWN_DIFFERENCES: usize = 25;

impl StateDiff {
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
    }

    /// The differences outside the given objects and their children: e.g. the resources that
    /// were already being deleted before a request, whose deletion may finish meanwhile.
    pub fn outside(self, paths: &BTreeSet<String>) -> StateDiff {
        let inside = |path: &str| {
            paths
                .iter()
                .any(|p| path == p || path.starts_with(&format!("{p}/")))
        };
        StateDiff {
            differences: self
                .differences
                .into_iter()
                .filter(|d| !inside(d.path()))
                .collect(),
        }
    }
}

impl fmt::Display for StateDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.differences.is_empty() {
            return write!(f, "no differences");
        }
        write!(f, "{} object(s) differ:", self.differences.len())?;
        for difference in self.differences.iter().take(SHOWN_DIFFERENCES) {
            match difference {
                Difference::Vanished(path) => write!(f, "\n  - {path}: vanished")?,
                Difference::Appeared(path) => write!(f, "\n  + {path}: appeared")?,
                Difference::Changed(path, changes) => {
                    write!(f, "\n  ~ {path}:")?;
                    for change in changes {
                        write!(
                            f,
                            "\n      {}: {} -> {}",
                            change.field,
                            shown(&change.before),
                            shown(&change.after)
                        )?;
                    }
                }
            }
        }
        if self.differences.len() > SHOWN_DIFFERENCES {
            write!(
                f,
                "\n  ... and {} more",
                self.differences.len() - SHOWN_DIFFERENCES
            )?;
        }
        Ok(())
    }
}

fn shown(value: &Option<Value>) -> String {
    match value {
        None => "(absent)".to_string(),
        Some(value) => {
            let text = value.to_string();
            if text.len() > 200 {
                format!("{}...", &text[..text.floor_char_boundary(200)])
            } else {
                text
            }
        }
    }
}

fn get_json(rest: &Rest, path: &str) -> Result<Value> {
    let reply = rest.get(path).with_context(|| format!("GET {path}"))?;
    if reply.status != 200 {
        bail!("GET {path} answered {}: {}", reply.status, reply.json);
    }
    Ok(reply.json)
}

fn get_array(rest: &Rest, path: &str) -> Result<Vec<Value>> {
    match get_json(rest, path)? {
        Value::Array(items) => Ok(items),
        other => bail!("GET {path} answered {other}, not an array"),
    }
}

fn field_str(object: &Value, field: &str) -> Result<String> {
    object[field]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no string '{field}' in {object}"))
}

fn field_number(object: &Value, field: &str) -> Result<i64> {
    object[field]
        .as_i64()
        .with_context(|| format!("no number '{field}' in {object}"))
}

/// Removes `field` from `object` and returns its elements (none if it was absent or null).
fn take_array(object: &mut Value, field: &str) -> Vec<Value> {
    match object.as_object_mut().and_then(|o| o.remove(field)) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

fn remove_fields(object: &mut Value, fields: &[&str]) {
    if let Some(map) = object.as_object_mut() {
        for field in fields {
            map.remove(*field);
        }
    }
}

/// Removes `fields` from `value` and every object inside it, except inside property maps,
/// whose keys are the user's.
/// A snapshot definition's `SUCCESSFUL` and `FAILED_DEPLOYMENT` flags say what its nodes
/// report (they are not stored): only `DELETE` is part of the desired state.
fn keep_recorded_flags(definition: &mut Value) {
    if let Some(flags) = definition["flags"].as_array_mut() {
        flags.retain(|f| f == DELETING_FLAG);
    }
}

fn remove_fields_deep(value: &mut Value, fields: &[&str]) {
    match value {
        Value::Object(map) => {
            for field in fields {
                map.remove(*field);
            }
            for (key, child) in map.iter_mut() {
                if key != "props" {
                    remove_fields_deep(child, fields);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                remove_fields_deep(item, fields);
            }
        }
        _ => {}
    }
}

/// Flags are a set; their order carries no meaning.
fn sort_flags(object: &mut Value) {
    if let Some(Value::Array(flags)) = object.get_mut("flags") {
        flags.sort_by_key(|f| f.to_string());
    }
}

/// The leaves of an object by their path inside it; arrays are leaves.
fn flatten(value: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}/{key}")
                    };
                    walk(&path, child, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), value.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(objects: &[(&str, Value)]) -> ClusterState {
        let mut state = ClusterState::default();
        for (path, value) in objects {
            state.insert(path.to_string(), value.clone());
        }
        state
    }

    #[test]
    fn a_diff_names_objects_and_fields() {
        let before = state(&[
            ("nodes/n1", json!({"name": "n1", "props": {"Aux/a": "1"}})),
            (
                "resource-definitions/r/volume-definitions/0",
                json!({"size_kib": 4096}),
            ),
        ]);
        let after = state(&[
            (
                "nodes/n1",
                json!({"name": "n1", "props": {"Aux/a": "2", "Aux/b": "3"}}),
            ),
            ("nodes/n2", json!({"name": "n2"})),
        ]);
        let diff = before.diff(&after);
        assert_eq!(diff.differences.len(), 3);
        let text = diff.to_string();
        assert!(text.contains("~ nodes/n1:"), "{text}");
        assert!(text.contains("props/Aux/a: \"1\" -> \"2\""), "{text}");
        assert!(text.contains("props/Aux/b: (absent) -> \"3\""), "{text}");
        assert!(text.contains("+ nodes/n2: appeared"), "{text}");
        assert!(
            text.contains("- resource-definitions/r/volume-definitions/0: vanished"),
            "{text}"
        );
    }

    #[test]
    fn flag_order_does_not_matter_and_runtime_fields_are_stripped() {
        let a = state(&[("x", json!({"flags": ["B", "A"]}))]);
        let b = state(&[("x", json!({"flags": ["A", "B"]}))]);
        assert!(a.diff(&b).is_empty());

        let mut volume = json!({
            "volume_number": 0, "storage_pool_name": "pool", "device_path": "/dev/loop3",
            "state": {"disk_state": "UpToDate"}, "allocated_size_kib": 12,
            "layer_data_list": [{"type": "STORAGE", "data": {"volume_number": 0, "disk_state": "UpToDate", "device_path": "/dev/loop3"}}]
        });
        remove_fields_deep(&mut volume, VOLUME_RUNTIME_FIELDS);
        assert_eq!(
            volume,
            json!({"volume_number": 0, "storage_pool_name": "pool",
                   "layer_data_list": [{"type": "STORAGE", "data": {"volume_number": 0}}]})
        );
    }

    #[test]
    fn differences_inside_given_objects_can_be_set_aside() {
        let before = state(&[
            (
                "resource-definitions/r/resources/n1",
                json!({"flags": ["DELETE"]}),
            ),
            ("resource-definitions/r/resources/n1/volumes/0", json!({})),
            ("nodes/n1", json!({"props": {}})),
        ]);
        let after = state(&[("nodes/n1", json!({"props": {"Aux/x": "1"}}))]);
        let deleting: BTreeSet<String> = ["resource-definitions/r/resources/n1".to_string()].into();
        let diff = before.diff(&after).outside(&deleting);
        assert_eq!(diff.differences.len(), 1);
        assert_eq!(diff.differences[0].path(), "nodes/n1");
    }

    #[test]
    fn long_values_are_shortened() {
        let long = Some(Value::String("x".repeat(500)));
        assert!(shown(&long).len() < 220);
        assert_eq!(shown(&None), "(absent)");
    }
}
