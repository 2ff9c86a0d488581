//! Resources (a resource definition placed on a node) and their volumes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DrbdResource, DrbdVolume, Props, lenient, schema};
use crate::api_call_rc::ApiCallRc;
use crate::kinds::{LayerKind, ProviderKind};

/// A resource on one node. As input (inside [`ResourceCreate`]) only `node_name`, `flags` and
/// `props` matter; `name`, if given, must be the resource in the path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Resource {
    /// The resource definition's name.
    pub name: String,
    /// The node's name; `POST …/resources/{node}` takes it from the path.
    pub node_name: String,
    #[schema(schema_with = schema::props)]
    pub props: Props,
    pub flags: Vec<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_object"
    )]
    pub layer_object: Option<ResourceLayer>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_object"
    )]
    pub state: Option<ResourceState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Milliseconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_props: Option<BTreeMap<String, serde_json::Value>>,
}

/// `GET /v1/view/resources`: a resource with its volumes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceWithVolumes {
    #[serde(flatten)]
    pub resource: Resource,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_name: Option<String>,
}

/// The runtime state of a resource on its node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ResourceState {
    /// Whether the resource is open (Primary) on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_use: Option<bool>,
}

/// One layer of a resource's stack on a node, top first, with the layer's per-node data. The
/// type is `DRBD` or `STORAGE`: a MIRROR resource shows the DRBD layer, `drbd.engine` naming
/// the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceLayer {
    #[serde(default)]
    #[schema(no_recursion)]
    pub children: Vec<ResourceLayer>,
    #[serde(default)]
    pub resource_name_suffix: String,
    #[serde(rename = "type")]
    pub layer_type: LayerKind,
    /// The replication layer's data, whichever engine runs it (see [`DrbdResource`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drbd: Option<DrbdResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageResource>,
}

/// The STORAGE layer's data of a resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct StorageResource {
    pub storage_volumes: Vec<StorageVolume>,
}

/// A backing volume as the STORAGE layer sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct StorageVolume {
    #[schema(required = true)]
    pub volume_number: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_size_kib: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usable_size_kib: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_state: Option<String>,
}

/// A volume of a resource on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Volume {
    pub volume_number: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_pool_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_kind: Option<ProviderKind>,
    /// The top-most device of the stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_size_kib: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usable_size_kib: Option<i64>,
    #[schema(schema_with = schema::props)]
    pub props: Props,
    pub flags: Vec<String>,
    pub state: VolumeState,
    pub layer_data_list: Vec<VolumeLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Problems the satellite reported with this volume.
    pub reports: Vec<ApiCallRc>,
}

/// A volume's runtime state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct VolumeState {
    /// DRBD's words: UpToDate, Inconsistent, Outdated, Diskless, DUnknown, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_state: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub replication_states: BTreeMap<String, ReplicationState>,
}

/// Replication towards one peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ReplicationState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_percentage: Option<f64>,
}

/// One layer's data for a volume: a [`DrbdVolume`] for `DRBD`, a [`StorageVolume`] for
/// `STORAGE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeLayer {
    #[serde(rename = "type")]
    pub layer_type: LayerKind,
    #[schema(schema_with = volume_layer_data)]
    pub data: VolumeLayerData,
}

/// A volume layer's `data`. The controller builds it typed and writes it as it is, with no
/// JSON tree in between (the whole resource view at 100,000 × 2 builds 200,000 of them); a
/// client decodes it as JSON ([`VolumeLayerData::Json`]), whatever the server put in it.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeLayerData {
    Drbd(DrbdVolume),
    Storage(StorageVolume),
    Json(serde_json::Value),
}

impl VolumeLayerData {
    /// The data as a client decoded it; `None` for data built typed.
    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            VolumeLayerData::Json(value) => Some(value),
            _ => None,
        }
    }
}

impl Serialize for VolumeLayerData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            VolumeLayerData::Drbd(drbd) => drbd.serialize(serializer),
            VolumeLayerData::Storage(storage) => storage.serialize(serializer),
            VolumeLayerData::Json(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for VolumeLayerData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(VolumeLayerData::Json)
    }
}

fn volume_layer_data() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(utoipa::openapi::Ref::from_schema_name("DrbdVolume"))
        .item(utoipa::openapi::Ref::from_schema_name("StorageVolume"))
        .into()
}

/// One element of the array `POST /v1/resource-definitions/{rd}/resources` takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"resource": {"node_name": "node1", "props": {"StorPoolName": "pool_ssd"}}}))]
pub struct ResourceCreate {
    #[serde(deserialize_with = "lenient::object")]
    pub resource: Resource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_list: Option<Vec<LayerKind>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::drbd_node_id)]
    pub drbd_node_id: Option<i32>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::tcp_port_count)]
    pub drbd_tcp_port_count: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::tcp_ports)]
    pub drbd_tcp_ports: Option<Vec<i32>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = schema::lenient_boolean)]
    pub drbd_client: Option<bool>,
}

/// `PUT /v1/resource-definitions/{rd}/resources/{node}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ResourceModify {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = schema::props)]
    pub override_props: Props,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = schema::property_keys)]
    pub delete_props: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = schema::property_namespaces)]
    pub delete_namespaces: Vec<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = schema::lenient_boolean)]
    pub drbd_tiebreaker: Option<bool>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = schema::lenient_boolean)]
    pub drbd_client: Option<bool>,
}

/// `POST /v1/resource-definitions/{rd}/resources/{node}/make-available`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ResourceMakeAvailable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_list: Option<Vec<LayerKind>>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    #[schema(schema_with = schema::lenient_boolean)]
    pub diskful: Option<bool>,
}

/// What `toggle-disk` should turn a resource into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ToggleDiskOperation {
    IntoDrbdDiskful,
    IntoDrbdDiskless,
    IntoDrbdClient,
}

/// `PUT /v1/resource-definitions/{rd}/resources/{node}/toggle-disk` (API 1.28).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"operation": "INTO_DRBD_DISKLESS"}))]
pub struct ToggleDiskRequest {
    pub operation: ToggleDiskOperation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::StorPoolName>)]
    pub storage_pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::NodeName>)]
    pub migrate_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_list: Option<Vec<LayerKind>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_create_as_python_linstor_sends_it() {
        let body: Vec<ResourceCreate> = serde_json::from_str(
            r#"[{"resource": {"node_name": "delta", "flags": ["DISKLESS"]}}]"#,
        )
        .unwrap();
        assert_eq!(body[0].resource.node_name, "delta");
        assert_eq!(body[0].resource.flags, vec!["DISKLESS".to_string()]);
    }

    #[test]
    fn view_resource_flattens_resource_fields() {
        let view = ResourceWithVolumes {
            resource: Resource {
                name: "r1".into(),
                node_name: "n1".into(),
                layer_object: Some(ResourceLayer {
                    children: vec![],
                    resource_name_suffix: String::new(),
                    layer_type: LayerKind::Storage,
                    drbd: None,
                    storage: Some(StorageResource::default()),
                }),
                ..Default::default()
            },
            volumes: vec![Volume {
                volume_number: 0,
                ..Default::default()
            }],
            shared_name: None,
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["name"], "r1");
        assert_eq!(json["layer_object"]["type"], "STORAGE");
        assert_eq!(json["volumes"][0]["volume_number"], 0);
    }

    #[test]
    fn toggle_disk_operations() {
        let req: ToggleDiskRequest =
            serde_json::from_str(r#"{"operation": "INTO_DRBD_DISKFUL", "storage_pool": "p1"}"#)
                .unwrap();
        assert_eq!(req.operation, ToggleDiskOperation::IntoDrbdDiskful);
        assert!(serde_json::from_str::<ToggleDiskRequest>(r#"{"operation": "SIDEWAYS"}"#).is_err());
    }
}
