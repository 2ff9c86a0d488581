//! OpenAPI schemas of fields whose JSON type alone does not say what is accepted: property
//! maps and keys, numbers with ranges, and the fields python-linstor sends as strings.
//!
//! Each function is named for a field's meaning and used with `#[schema(schema_with = …)]`.
//! The rules come from the code that enforces them (`crate::property`, `crate::limits`,
//! [`super::lenient`]), so the document cannot promise more or less than the controller does.

use std::ops::RangeInclusive;

use utoipa::openapi::KnownFormat;
use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type,
};

use super::lenient::{BOOLEAN_STRING_PATTERN, INTEGER_STRING_PATTERN};
use crate::kinds::{DISKLESS_TYPE, VOLUME_FLAGS};
use crate::limits;
use crate::property::{KEY_PATTERN, MAX_KEY_LEN, MAX_VALUE_LEN, NAMESPACE_PATTERN, VALUE_PATTERN};
use crate::size::MAX_VOLUME_SIZE_KIB;

/// Free text: no control characters other than line feed and tab.
pub const DESCRIPTION_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$";

fn null() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

fn property_key() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_KEY_LEN))
        .pattern(Some(KEY_PATTERN))
}

/// A property container: keys are namespaced paths, values printable strings.
pub fn props() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(property_key()))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_VALUE_LEN))
                .pattern(Some(VALUE_PATTERN)),
        ))
        .description(Some(
            "Properties: keys are '/'-separated namespace segments of letters, digits, '_', '-', \
             '.' and ':' (no empty, '.' or '..' segment); values are printable.",
        ))
        .into()
}

/// The schema of a whole property container, for answers that are one (`GET
/// /v1/controller/properties`).
pub struct PropertyMap;

impl utoipa::PartialSchema for PropertyMap {
    fn schema() -> utoipa::openapi::RefOr<Schema> {
        props().into()
    }
}

impl utoipa::ToSchema for PropertyMap {}

/// A list of property keys (`delete_props`).
pub fn property_keys() -> Schema {
    ArrayBuilder::new().items(property_key()).into()
}

/// A list of property namespaces (`delete_namespaces`): keys, optionally ending with '/'.
pub fn property_namespaces() -> Schema {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_KEY_LEN + 1))
                .pattern(Some(NAMESPACE_PATTERN)),
        )
        .into()
}

/// An optional integer in `range`, as a JSON number or (python-linstor) a decimal string.
fn lenient_integer(range: RangeInclusive<i32>, description: &str) -> Schema {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(*range.start()))
                .maximum(Some(*range.end())),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(INTEGER_STRING_PATTERN)),
        )
        .item(null())
        .description(Some(format!(
            "{description} From {} to {}; a decimal string is read as the number.",
            range.start(),
            range.end()
        )))
        .into()
}

/// An optional boolean, as a JSON boolean or (python-linstor) a string.
pub fn lenient_boolean() -> Schema {
    AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(BOOLEAN_STRING_PATTERN)),
        )
        .item(null())
        .description(Some(
            "A boolean; the strings true, false, yes and no (any case) are read too.",
        ))
        .into()
}

pub fn tcp_port() -> Schema {
    lenient_integer(limits::TCP_PORT, "A TCP port.")
}

pub fn tcp_port_count() -> Schema {
    lenient_integer(
        limits::TCP_PORT_COUNT,
        "How many TCP ports the resource takes.",
    )
}

pub fn drbd_minor_number() -> Schema {
    lenient_integer(limits::DRBD_MINOR_NUMBER, "The DRBD minor number.")
}

pub fn drbd_node_id() -> Schema {
    lenient_integer(limits::DRBD_NODE_ID, "The DRBD node id.")
}

pub fn drbd_peer_slots() -> Schema {
    lenient_integer(limits::DRBD_PEER_SLOTS, "DRBD peer slots.")
}

pub fn place_count() -> Schema {
    lenient_integer(limits::PLACE_COUNT, "Diskful replicas in total.")
}

pub fn additional_place_count() -> Schema {
    lenient_integer(
        limits::ADDITIONAL_PLACE_COUNT,
        "Diskful replicas on top of the existing ones.",
    )
}

pub fn volume_number() -> Schema {
    lenient_integer(
        0..=i32::from(u16::MAX),
        "The volume number; left out, the next free one.",
    )
}

/// TCP ports given one by one.
pub fn tcp_ports() -> Schema {
    AnyOfBuilder::new()
        .item(
            ArrayBuilder::new().items(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                    .minimum(Some(*limits::TCP_PORT.start()))
                    .maximum(Some(*limits::TCP_PORT.end())),
            ),
        )
        .item(null())
        .into()
}

/// At most N replicas per distinct value of each node property key.
pub fn replicas_per_value() -> Schema {
    let map = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(property_key()))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(*limits::REPLICAS_PER_VALUE.start()))
                .maximum(Some(*limits::REPLICAS_PER_VALUE.end())),
        ));
    AnyOfBuilder::new()
        .item(map)
        .item(null())
        .description(Some(
            "At most this many replicas per distinct value of each node property key.",
        ))
        .into()
}

/// An overprovisioning factor: not negative.
pub fn overprovision() -> Schema {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
                .minimum(Some(0)),
        )
        .item(null())
        .into()
}

/// One size in KiB: 1 KiB to 1 EiB.
fn size_kib() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(MAX_VOLUME_SIZE_KIB))
}

/// A volume size in KiB.
pub fn volume_size_kib() -> Schema {
    size_kib()
        .description(Some("KiB, from 1 KiB to 1 EiB."))
        .into()
}

/// An optional new volume size in KiB.
pub fn new_volume_size_kib() -> Schema {
    AnyOfBuilder::new()
        .item(size_kib())
        .item(null())
        .description(Some(
            "The new size in KiB (from 1 KiB to 1 EiB); a volume only grows.",
        ))
        .into()
}

/// Volume sizes in KiB, one per volume group.
pub fn volume_sizes_kib() -> Schema {
    ArrayBuilder::new()
        .items(size_kib())
        .description(Some("KiB, one per volume group; each from 1 KiB to 1 EiB."))
        .into()
}

/// A pattern that matches exactly `words` in any letter case (words of letters and `_`).
fn any_case(words: &[&str]) -> String {
    let alternatives: Vec<String> = words
        .iter()
        .map(|word| {
            word.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

fn volume_flag() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(any_case(VOLUME_FLAGS)))
        .description(Some(format!(
            "One of {} (any case).",
            VOLUME_FLAGS.join(", ")
        )))
}

/// Flags of a volume definition or volume group.
pub fn volume_flags() -> Schema {
    ArrayBuilder::new().items(volume_flag()).into()
}

/// Optional flags of a volume definition or volume group: given, they replace the current ones.
pub fn optional_volume_flags() -> Schema {
    AnyOfBuilder::new()
        .item(ArrayBuilder::new().items(volume_flag()))
        .item(null())
        .into()
}

/// The diskless type of an auto-select filter: DRBD's is the only one.
pub fn diskless_type() -> Schema {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(any_case(&[DISKLESS_TYPE]))),
        )
        .item(null())
        .description(Some(format!("{DISKLESS_TYPE} (any case).")))
        .into()
}

/// Free text such as a resource group's description.
pub fn description() -> Schema {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(limits::MAX_DESCRIPTION_LEN))
                .pattern(Some(DESCRIPTION_PATTERN)),
        )
        .item(null())
        .description(Some(format!(
            "Printable text (line breaks and tabs allowed) of at most {} characters.",
            limits::MAX_DESCRIPTION_LEN
        )))
        .into()
}

/// An IPv4 or IPv6 address.
pub fn ip_address() -> Schema {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::Custom("ipv4".into()))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::Custom("ipv6".into()))),
        )
        .description(Some("An IPv4 or IPv6 address."))
        .into()
}
