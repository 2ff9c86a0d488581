//! Nodes and their network interfaces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Props, schema};
use crate::kinds::{ConnectionStatus, EncryptionType, LayerKind, NodeType, ProviderKind};

/// A node: `POST /v1/nodes` takes it, `GET /v1/nodes` returns a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "name": "node1",
    "type": "SATELLITE",
    "net_interfaces": [{"name": "default", "address": "127.0.0.1", "satellite_port": 3366}]
}))]
pub struct Node {
    #[schema(value_type = crate::NodeName)]
    pub name: String,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = schema::props)]
    pub props: Props,
    #[serde(default, deserialize_with = "super::lenient::objects")]
    pub net_interfaces: Vec<NetInterface>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_status: Option<ConnectionStatus>,
    /// Why the node is not ONLINE, when the controller knows: the satellite's refusal of its
    /// desired state (FULL_SYNC_FAILED) or why it cannot be reached. Ferrite's own field;
    /// LINSTOR's clients ignore it. Answers only: ignored in requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Providers the node's satellite can run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_providers: Option<Vec<ProviderKind>>,
    /// Layers the node's satellite can run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_layers: Option<Vec<LayerKind>>,
    /// For each provider the node cannot run, why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported_providers: Option<BTreeMap<String, Vec<String>>>,
    /// For each layer the node cannot run, why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported_layers: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_timestamp: Option<i64>,
}

/// A node's network interface; the active one is where the controller reaches the satellite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetInterface {
    #[schema(value_type = crate::NetInterfaceName)]
    pub name: String,
    #[schema(schema_with = schema::ip_address)]
    pub address: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::opt_i32"
    )]
    #[schema(schema_with = schema::tcp_port)]
    pub satellite_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satellite_encryption_type: Option<EncryptionType>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::opt_bool"
    )]
    #[schema(schema_with = schema::lenient_boolean)]
    pub is_active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// `PUT /v1/nodes/{node}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct NodeModify {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_type: Option<NodeType>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = schema::props)]
    pub override_props: Props,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = schema::property_keys)]
    pub delete_props: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = schema::property_namespaces)]
    pub delete_namespaces: Vec<String>,
}
