//! Resource definitions and volume definitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Props, lenient, schema};
use crate::kinds::LayerKind;

/// A resource definition: the cluster-wide description of a replicated resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ResourceDefinition {
    #[schema(value_type = crate::ResourceName)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    #[schema(schema_with = schema::props)]
    pub props: Props,
    pub flags: Vec<String>,
    /// The layer stack, top first. Empty, as in LINSTOR, for a definition created without a
    /// layer list (nor one in its resource group) whose first resources are not placed yet:
    /// their placement chooses the default.
    #[serde(deserialize_with = "lenient::objects")]
    pub layer_data: Vec<ResourceDefinitionLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::ResourceGroupName>)]
    pub resource_group_name: Option<String>,
    /// Present with `?with_volume_definitions=true`; a request may not give them (create
    /// volume definitions with their own call).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_objects"
    )]
    pub volume_definitions: Option<Vec<VolumeDefinition>>,
}

/// One layer of a resource definition's stack, with the layer's definition-wide data: a
/// [`DrbdResourceDefinitionLayer`](super::DrbdResourceDefinitionLayer) for `DRBD`. Answers
/// name a MIRROR definition's replication layer `DRBD` (`data.engine` says `MIRROR`); requests
/// may name `MIRROR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceDefinitionLayer {
    #[serde(rename = "type")]
    pub layer_type: LayerKind,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "layer_data"
    )]
    #[schema(schema_with = resource_definition_layer_data)]
    pub data: Option<serde_json::Value>,
}

/// Reads a layer's data; its `engine`, when given, must be `MIRROR` or `DRBD`, not null (a value the
/// controller would otherwise ignore is refused, as the document says).
fn layer_data<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    let value = <Option<serde_json::Value> as serde::Deserialize>::deserialize(d)?;
    if let Some(engine) = value.as_ref().and_then(|v| v.get("engine"))
        && engine != "MIRROR"
        && engine != "DRBD"
    {
        return Err(serde::de::Error::custom(format!(
            "{engine} is not a replication engine: MIRROR or DRBD"
        )));
    }
    Ok(value)
}

fn resource_definition_layer_data() -> utoipa::openapi::schema::Schema {
    // Free-form: in answers it is a `DrbdResourceDefinitionLayer` for DRBD (or null); in requests only the layer's
    // `type` and an `engine` (MIRROR or DRBD) are read, the rest is ignored, as LINSTOR does.
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some(
            "In answers: the DRBD layer's data (see DrbdResourceDefinitionLayer), or null. In requests only `engine` \
             (MIRROR or DRBD) is read; anything else is ignored.",
        ))
        .into()
}

/// `POST /v1/resource-definitions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"resource_definition": {"name": "res1", "resource_group_name": "DfltRscGrp"}}))]
pub struct ResourceDefinitionCreate {
    #[schema(required = true)]
    #[serde(deserialize_with = "lenient::object")]
    pub resource_definition: ResourceDefinition,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::tcp_port)]
    pub drbd_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drbd_secret: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::drbd_peer_slots)]
    pub drbd_peer_slots: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drbd_transport_type: Option<String>,
}

/// `PUT /v1/resource-definitions/{rd}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ResourceDefinitionModify {
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
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::tcp_port)]
    pub drbd_port: Option<i32>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::drbd_peer_slots)]
    pub drbd_peer_slots: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_stack: Option<Vec<LayerKind>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::ResourceGroupName>)]
    pub resource_group: Option<String>,
}

/// A volume definition: one volume of a resource definition, with its size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct VolumeDefinition {
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::volume_number)]
    pub volume_number: Option<i32>,
    /// KiB.
    #[schema(schema_with = schema::volume_size_kib, required = true)]
    pub size_kib: i64,
    #[schema(schema_with = schema::props)]
    pub props: Props,
    #[schema(schema_with = schema::volume_flags)]
    pub flags: Vec<String>,
    #[serde(deserialize_with = "lenient::objects")]
    pub layer_data: Vec<VolumeDefinitionLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// One layer's data for a volume definition: a
/// [`DrbdVolumeDefinition`](super::DrbdVolumeDefinition) (the minor number) for `DRBD`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeDefinitionLayer {
    #[serde(rename = "type")]
    pub layer_type: LayerKind,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "layer_data"
    )]
    #[schema(schema_with = volume_definition_layer_data)]
    pub data: Option<serde_json::Value>,
}

fn volume_definition_layer_data() -> utoipa::openapi::schema::Schema {
    // Free-form: in answers it is a `DrbdVolumeDefinition` for DRBD (or null); in requests only the layer's
    // `type` and an `engine` (MIRROR or DRBD) are read, the rest is ignored, as LINSTOR does.
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some(
            "In answers: the DRBD layer's data (see DrbdVolumeDefinition), or null. In requests only `engine` \
             (MIRROR or DRBD) is read; anything else is ignored.",
        ))
        .into()
}

/// `POST /v1/resource-definitions/{rd}/volume-definitions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"volume_definition": {"volume_number": 0, "size_kib": 1_048_576}}))]
pub struct VolumeDefinitionCreate {
    #[schema(required = true)]
    #[serde(deserialize_with = "lenient::object")]
    pub volume_definition: VolumeDefinition,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::drbd_minor_number)]
    pub drbd_minor_number: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
}

/// `PUT /v1/resource-definitions/{rd}/volume-definitions/{nr}`; `size_kib` resizes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct VolumeDefinitionModify {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::new_volume_size_kib)]
    pub size_kib: Option<i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = schema::props)]
    pub override_props: Props,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = schema::property_keys)]
    pub delete_props: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = schema::property_namespaces)]
    pub delete_namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::optional_volume_flags)]
    pub flags: Option<Vec<String>>,
}
