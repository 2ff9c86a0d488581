//! Resource groups, volume groups and the auto-select filter they carry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Props, lenient, schema};
use crate::kinds::{LayerKind, ProviderKind};

/// Where the autoplacer may put a resource's replicas. Every field is optional; a spawn or
/// autoplace call's filter overrides the resource group's field by field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AutoSelectFilter {
    /// Diskful replicas wanted in total.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::place_count)]
    pub place_count: Option<i32>,
    /// Diskful replicas wanted on top of the existing ones.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::additional_place_count)]
    pub additional_place_count: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::NodeName>>)]
    pub node_name_list: Option<Vec<String>>,
    /// Legacy single pool; `storage_pool_list` supersedes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::StorPoolName>)]
    pub storage_pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::StorPoolName>>)]
    pub storage_pool_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::StorPoolName>>)]
    pub storage_pool_diskless_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::ResourceName>>)]
    pub not_place_with_rsc: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_place_with_rsc_regex: Option<String>,
    /// Node property keys (`Aux/rack` or `Aux/rack=r1`) whose values must be equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_on_same: Option<Vec<String>>,
    /// Node property keys whose values must differ between replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_on_different: Option<Vec<String>>,
    /// At most N replicas per distinct value of the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::replicas_per_value)]
    pub x_replicas_on_different_map: Option<BTreeMap<String, i32>>,
    /// Layer names, top first; validated by the controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<LayerKind>>)]
    pub layer_stack: Option<Vec<String>>,
    /// Provider kinds allowed for diskful replicas; validated by the controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<ProviderKind>>)]
    pub provider_list: Option<Vec<String>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = schema::lenient_boolean)]
    pub diskless_on_remaining: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::diskless_type)]
    pub diskless_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::overprovision)]
    pub overprovision: Option<f64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::tcp_port_count)]
    pub port_count: Option<i32>,
}

impl AutoSelectFilter {
    /// This filter with every field that `overrides` sets taken from `overrides`. The legacy
    /// `storage_pool` and `storage_pool_list` are one setting: an override of either replaces
    /// both.
    pub fn overridden_by(&self, overrides: &AutoSelectFilter) -> AutoSelectFilter {
        macro_rules! pick {
            ($($field:ident),*) => {
                AutoSelectFilter { $($field: overrides.$field.clone().or_else(|| self.$field.clone())),* }
            };
        }
        let mut merged = pick!(
            place_count,
            additional_place_count,
            node_name_list,
            storage_pool,
            storage_pool_list,
            storage_pool_diskless_list,
            not_place_with_rsc,
            not_place_with_rsc_regex,
            replicas_on_same,
            replicas_on_different,
            x_replicas_on_different_map,
            layer_stack,
            provider_list,
            diskless_on_remaining,
            diskless_type,
            overprovision,
            port_count
        );
        if overrides.storage_pool.is_some() || overrides.storage_pool_list.is_some() {
            merged.storage_pool = overrides.storage_pool.clone();
            merged.storage_pool_list = overrides.storage_pool_list.clone();
        }
        merged
    }

    /// The diskful pools allowed: `storage_pool_list`, else the legacy `storage_pool`.
    pub fn storage_pools(&self) -> Vec<String> {
        match (&self.storage_pool_list, &self.storage_pool) {
            (Some(list), _) if !list.is_empty() => list.clone(),
            (_, Some(pool)) => vec![pool.clone()],
            _ => Vec::new(),
        }
    }
}

/// A resource group: a template for resource definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "name": "my_ssd_group",
    "select_filter": {"place_count": 2, "storage_pool_list": ["pool_ssd"]}
}))]
pub struct ResourceGroup {
    #[schema(value_type = crate::ResourceGroupName)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::description)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::props)]
    pub props: Props,
    #[serde(default, deserialize_with = "lenient::object")]
    pub select_filter: AutoSelectFilter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::drbd_peer_slots)]
    pub peer_slots: Option<i32>,
}

/// `PUT /v1/resource-groups/{rg}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ResourceGroupModify {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::description)]
    pub description: Option<String>,
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
        deserialize_with = "lenient::opt_object"
    )]
    pub select_filter: Option<AutoSelectFilter>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::drbd_peer_slots)]
    pub peer_slots: Option<i32>,
}

/// `POST /v1/resource-groups/{rg}/spawn`: a resource definition from the group's template,
/// with its volumes, placed by the group's filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({
    "resource_definition_name": "my_ssd_res",
    "volume_sizes": [2_097_152],
    "definitions_only": true
}))]
pub struct ResourceGroupSpawn {
    #[schema(value_type = crate::ResourceName, required = true)]
    pub resource_definition_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_definition_external_name: Option<String>,
    /// KiB, one per volume group.
    #[schema(schema_with = schema::volume_sizes_kib)]
    pub volume_sizes: Vec<i64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_object"
    )]
    pub select_filter: Option<AutoSelectFilter>,
    pub partial: bool,
    pub definitions_only: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::drbd_peer_slots)]
    pub peer_slots: Option<i32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = schema::props)]
    pub resource_definition_props: Props,
}

/// A volume group: the template of one volume of a resource group's definitions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"volume_number": 0}))]
pub struct VolumeGroup {
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i32"
    )]
    #[schema(schema_with = schema::volume_number)]
    pub volume_number: Option<i32>,
    #[schema(schema_with = schema::props)]
    pub props: Props,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[schema(schema_with = schema::volume_flags)]
    pub flags: Vec<String>,
}

/// `PUT /v1/resource-groups/{rg}/volume-groups/{nr}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct VolumeGroupModify {
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

/// `POST /v1/resource-definitions/{rd}/autoplace`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AutoPlaceRequest {
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schema(schema_with = schema::lenient_boolean)]
    pub diskless_on_remaining: Option<bool>,
    #[serde(deserialize_with = "lenient::object")]
    pub select_filter: AutoSelectFilter,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_list: Option<Vec<LayerKind>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_count_as_string_from_python_linstor() {
        let rg: ResourceGroup = serde_json::from_str(
            r#"{"name":"G","select_filter":{"place_count":"2","storage_pool_list":["pool_ssd"]}}"#,
        )
        .unwrap();
        assert_eq!(rg.select_filter.place_count, Some(2));
        assert_eq!(
            rg.select_filter.storage_pools(),
            vec!["pool_ssd".to_string()]
        );
        let out = serde_json::to_value(&rg).unwrap();
        assert_eq!(
            out["select_filter"]["place_count"], 2,
            "output is an integer"
        );
    }

    #[test]
    fn overrides_replace_field_by_field() {
        let group = AutoSelectFilter {
            place_count: Some(2),
            storage_pool_list: Some(vec!["a".into()]),
            ..Default::default()
        };
        let spawn = AutoSelectFilter {
            place_count: Some(3),
            ..Default::default()
        };
        let merged = group.overridden_by(&spawn);
        assert_eq!(merged.place_count, Some(3));
        assert_eq!(merged.storage_pool_list, Some(vec!["a".to_string()]));
    }

    #[test]
    fn autoplace_accepts_null_diskless_on_remaining() {
        let req: AutoPlaceRequest = serde_json::from_str(
            r#"{"diskless_on_remaining": null, "select_filter": {"place_count": 2}}"#,
        )
        .unwrap();
        assert_eq!(req.diskless_on_remaining, None);
        assert_eq!(req.select_filter.place_count, Some(2));
    }
}
