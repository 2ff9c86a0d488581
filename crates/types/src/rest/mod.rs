//! JSON shapes of LINSTOR's REST API v1, as Ferrite serves and accepts them.
//!
//! Field names follow `linstor-rest-v1-openapi.yaml`. One struct serves both directions where
//! LINSTOR uses one schema: optional fields are `Option`s or empty collections and are left out
//! of the output when empty. Names arrive as plain strings and are validated by the controller,
//! so a bad name gets LINSTOR's `FAIL_INVLD_*` code rather than a generic parse error; their
//! schemas still carry the rules (`pattern`, lengths, ranges: see [`schema`]), and
//! [`validate`] checks the ranges that need nothing but the body.

mod connections;
mod controller;
mod drbd;
pub mod lenient;
mod node;
mod orphan;
mod physical_storage;
mod resource;
mod resource_definition;
mod resource_group;
pub mod schema;
mod size_info;
mod snapshot;
mod storage_pool;
pub mod validate;

pub use connections::*;
pub use controller::*;
pub use drbd::*;
pub use node::*;
pub use orphan::*;
pub use physical_storage::*;
pub use resource::*;
pub use resource_definition::*;
pub use resource_group::*;
pub use size_info::*;
pub use snapshot::*;
pub use storage_pool::*;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A property container: namespaced keys (`Aux/rack`, `StorDriver/StorPoolName`) to values.
pub type Props = BTreeMap<String, String>;

/// The body of every `modify`/`set-property` call on a property container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"override_props": {"Aux/rack": "r1"}, "delete_props": ["Aux/old"]}))]
pub struct PropsModify {
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
