//! Node connections, resource connections and the key-value store: property containers of
//! their own. Their modify bodies are [`PropsModify`](super::PropsModify).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Props, schema};

/// A key-value store instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "csi", "props": {"volume/pvc-1": "web"}}))]
pub struct KeyValueStore {
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = schema::props)]
    pub props: Props,
}

/// The connection between two nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeConnection {
    #[schema(value_type = crate::NodeName)]
    pub node_a: String,
    #[schema(value_type = crate::NodeName)]
    pub node_b: String,
    #[serde(default)]
    #[schema(schema_with = schema::props)]
    pub props: Props,
}

/// The connection between a resource definition's resources on two nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceConnection {
    #[schema(value_type = crate::NodeName)]
    pub node_a: String,
    #[schema(value_type = crate::NodeName)]
    pub node_b: String,
    #[serde(default)]
    #[schema(schema_with = schema::props)]
    pub props: Props,
    #[serde(default)]
    pub flags: Vec<String>,
}
