//! Path parameters as the OpenAPI document declares them: each with the schema of the name or
//! number it holds (`pattern`, lengths, range), so a client can check a URL before sending it.
//!
//! The handlers read path parameters as plain strings and the object model validates them,
//! answering a malformed name with its own `FAIL_INVLD_*` code (400) and an unknown one with
//! `FAIL_NOT_FOUND_*` (404).

use ferrite_types::{
    NetInterfaceName, NodeName, ResourceGroupName, ResourceName, SnapshotName, StorPoolName,
    VolumeNumber,
};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Required, schema::Schema};
use utoipa::{IntoParams, PartialSchema};

fn path_parameter(
    name: &str,
    description: &str,
    schema: RefOr<Schema>,
    example: serde_json::Value,
) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .example(Some(example))
        .build()
}

/// An error report's id: any text; an unknown one is not found.
fn report_id() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).into()
}

/// A property key; `/` in it may be sent as is or as `%2F`.
fn property_key() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(ferrite_types::property::MAX_KEY_LEN))
        .pattern(Some(ferrite_types::property::KEY_PATTERN))
        .into()
}

macro_rules! path_params {
    ($($(#[$doc:meta])* $marker:ident: $name:literal = $schema:expr, $description:literal, $example:expr;)+) => {
        $(
            $(#[$doc])*
            pub struct $marker;

            impl IntoParams for $marker {
                fn into_params(
                    _parameter_in_provider: impl Fn() -> Option<ParameterIn>,
                ) -> Vec<Parameter> {
                    vec![path_parameter($name, $description, $schema, serde_json::json!($example))]
                }
            }
        )+
    };
}

path_params! {
    /// `{node}`.
    NodeParam: "node" = NodeName::schema(), "The node's name.", "node1";
    /// `{fromnode}`: the node a disk moves away from.
    FromNodeParam: "fromnode" = NodeName::schema(), "The node the disk moves from.", "node2";
    /// `{netif}`.
    NetInterfaceParam: "netif" = NetInterfaceName::schema(), "The network interface's name.",
        "default";
    /// `{storagepool}`.
    StoragePoolParam: "storagepool" = StorPoolName::schema(), "The storage pool's name.",
        "pool_ssd";
    /// `{disklesspool}`.
    DisklessPoolParam: "disklesspool" = StorPoolName::schema(),
        "The diskless storage pool's name.", "DfltDisklessStorPool";
    /// `{resource}`.
    ResourceParam: "resource" = ResourceName::schema(), "The resource definition's name.",
        "res1";
    /// `{snapshot}`.
    SnapshotParam: "snapshot" = SnapshotName::schema(), "The snapshot's name.", "snap1";
    /// `{resourceClone}`: the clone's resource definition.
    ResourceCloneParam: "resourceClone" = ResourceName::schema(),
        "The clone's resource definition name.", "res1-clone";
    /// `{resource_group}`.
    ResourceGroupParam: "resource_group" = ResourceGroupName::schema(),
        "The resource group's name.", "my_ssd_group";
    /// `{volume_number}`.
    VolumeNumberParam: "volume_number" = VolumeNumber::schema(), "The volume number.", 0;
    /// `{reportid}`.
    ReportIdParam: "reportid" = report_id(), "The error report's id.", "6A1F-0000-000001";
    /// `{node_a}`: one end of a connection.
    NodeAParam: "node_a" = NodeName::schema(), "One node of the connection.", "node1";
    /// `{node_b}`: the other end of a connection.
    NodeBParam: "node_b" = NodeName::schema(), "The other node of the connection.", "node2";
    /// `{instance}`: a key-value store.
    InstanceParam: "instance" = ResourceGroupName::schema(),
        "The key-value store's name (the rules of a resource group's name).", "csi_kv";
    /// `{key}`: a controller property key.
    PropertyKeyParam: "key" = property_key(), "The property key, e.g. Aux/rack.", "Aux/rack";
}
