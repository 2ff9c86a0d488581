//! Query parameters, parsed strictly and documented from the same table.
//!
//! Each endpoint that takes query parameters names its set with a marker type ([`ListNodes`],
//! [`DeleteResource`], ...). The [`Query`] extractor reads exactly the parameters of that set
//! and the set's `IntoParams` implementation documents exactly those, so the OpenAPI document
//! cannot promise a parameter the code ignores. A value that is not what the parameter takes
//! (`keep_tiebreaker=maybe`, `limit=-1`, `nodes=bad name`, `limit` given twice) is refused with
//! a 400 `ApiCallRc`; it is never read as a default. Parameters outside the set are ignored, as
//! LINSTOR's clients send some that Ferrite has no use for (e.g. `cached`).

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use ferrite_types::api_call_rc::code;
use ferrite_types::{
    ApiCallRc, NameError, NodeName, ResourceGroupName, ResourceName, RetCode, StorPoolName,
    property,
};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, Required};
use utoipa::{IntoParams, PartialSchema};

use super::response::ApiResponse;
use crate::app::views::ListFilter;

/// The largest `offset` and `limit`: LINSTOR reads them as 32-bit integers.
pub const MAX_PAGE_NUMBER: usize = i32::MAX as usize;

/// One query parameter an endpoint may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Nodes,
    Resources,
    ResourceDefinitions,
    StoragePools,
    ResourceGroups,
    Props,
    Offset,
    Limit,
    WithVolumeDefinitions,
    KeepTiebreaker,
    NodeA,
    NodeB,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Nodes => "nodes",
            Param::Resources => "resources",
            Param::ResourceDefinitions => "resource_definitions",
            Param::StoragePools => "storage_pools",
            Param::ResourceGroups => "resource_groups",
            Param::Props => "props",
            Param::Offset => "offset",
            Param::Limit => "limit",
            Param::WithVolumeDefinitions => "with_volume_definitions",
            Param::KeepTiebreaker => "keep_tiebreaker",
            Param::NodeA => "node_a",
            Param::NodeB => "node_b",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Param::Nodes => "Only these nodes (repeat the parameter for more).",
            Param::Resources | Param::ResourceDefinitions => {
                "Only these resource definitions (repeat the parameter for more)."
            }
            Param::StoragePools => "Only these storage pools (repeat the parameter for more).",
            Param::ResourceGroups => "Only these resource groups (repeat the parameter for more).",
            Param::Props => {
                "Only objects with these properties: 'Key' (set) or 'Key=Value' (set to Value)."
            }
            Param::Offset => "Skip this many items.",
            Param::Limit => "Answer at most this many items; 0 means no limit.",
            Param::WithVolumeDefinitions => "Include each definition's volume definitions.",
            Param::KeepTiebreaker => {
                "Keep a diskless resource as its definition's quorum tiebreaker, instead of \
                 deleting it, if the definition needs one without it."
            }
            Param::NodeA => "Only connections of this node.",
            Param::NodeB => "Only connections of this node (with node_a: only that pair).",
        }
    }

    /// Whether the parameter may be given more than once.
    fn repeats(self) -> bool {
        matches!(
            self,
            Param::Nodes
                | Param::Resources
                | Param::ResourceDefinitions
                | Param::StoragePools
                | Param::ResourceGroups
                | Param::Props
        )
    }

    fn schema(self) -> RefOr<Schema> {
        let list = |item: RefOr<Schema>| ArrayBuilder::new().items(item).into();
        match self {
            Param::Nodes => list(NodeName::schema()),
            Param::NodeA | Param::NodeB => NodeName::schema(),
            Param::Resources | Param::ResourceDefinitions => list(ResourceName::schema()),
            Param::StoragePools => list(StorPoolName::schema()),
            Param::ResourceGroups => list(ResourceGroupName::schema()),
            Param::Props => list(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(property::MAX_KEY_LEN + 1 + property::MAX_VALUE_LEN))
                    .pattern(Some(property::FILTER_PATTERN))
                    .into(),
            ),
            Param::Offset | Param::Limit => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(MAX_PAGE_NUMBER))
                .into(),
            Param::WithVolumeDefinitions | Param::KeepTiebreaker => {
                ObjectBuilder::new().schema_type(Type::Boolean).into()
            }
        }
    }

    fn documented(self) -> Parameter {
        let mut builder = ParameterBuilder::new()
            .name(self.name())
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(self.description()))
            .schema(Some(self.schema()));
        if self.repeats() {
            builder = builder
                .style(Some(ParameterStyle::Form))
                .explode(Some(true));
        }
        builder.build()
    }

    /// Reads one occurrence of the parameter into `query`.
    fn read(self, value: &str, query: &mut ParsedQuery) -> Result<(), ApiResponse> {
        let filter = &mut query.filter;
        match self {
            Param::Nodes => {
                name::<NodeName>(self, value, code::FAIL_INVLD_NODE_NAME)?;
                filter.nodes.push(value.to_string());
            }
            Param::Resources | Param::ResourceDefinitions => {
                name::<ResourceName>(self, value, code::FAIL_INVLD_RSC_NAME)?;
                filter.resources.push(value.to_string());
            }
            Param::StoragePools => {
                name::<StorPoolName>(self, value, code::FAIL_INVLD_STOR_POOL_NAME)?;
                filter.storage_pools.push(value.to_string());
            }
            Param::ResourceGroups => {
                name::<ResourceGroupName>(self, value, code::FAIL_INVLD_RSC_GRP_NAME)?;
                filter.resource_groups.push(value.to_string());
            }
            Param::Props => {
                property_filter(value)?;
                filter.props.push(value.to_string());
            }
            Param::Offset => filter.offset = page_number(self, value)?,
            Param::Limit => filter.limit = page_number(self, value)?,
            Param::WithVolumeDefinitions => query.with_volume_definitions = boolean(self, value)?,
            Param::KeepTiebreaker => query.keep_tiebreaker = boolean(self, value)?,
            Param::NodeA | Param::NodeB => {
                name::<NodeName>(self, value, code::FAIL_INVLD_NODE_NAME)?;
                let slot = if self == Param::NodeA {
                    &mut query.node_a
                } else {
                    &mut query.node_b
                };
                *slot = Some(value.to_string());
            }
        }
        Ok(())
    }
}

fn refused(
    code_value: u64,
    message: String,
    cause: impl Into<String>,
    correction: impl Into<String>,
) -> ApiResponse {
    ApiResponse::error(
        StatusCode::BAD_REQUEST,
        ApiCallRc::new(RetCode::error(code_value), message)
            .cause(cause)
            .correction(correction),
    )
}

fn name<T: std::str::FromStr<Err = NameError>>(
    param: Param,
    value: &str,
    code_value: u64,
) -> Result<(), ApiResponse> {
    value.parse::<T>().map(drop).map_err(|err| {
        refused(
            code_value,
            format!("Query parameter {}: {err}.", param.name()),
            err.reason.clone(),
            err.correction(),
        )
    })
}

fn property_filter(value: &str) -> Result<(), ApiResponse> {
    property::check_filter(value).map_err(|cause| {
        refused(
            code::FAIL_INVLD_PROP,
            format!("Query parameter props='{value}' is not a valid property filter."),
            cause.to_string(),
            "Give props as 'Key' or 'Key=Value' with a valid property key (e.g. 'Aux/rack=r1').",
        )
    })
}

fn page_number(param: Param, value: &str) -> Result<usize, ApiResponse> {
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    value
        .parse::<usize>()
        .ok()
        .filter(|number| digits && *number <= MAX_PAGE_NUMBER)
        .ok_or_else(|| {
            refused(
                code::FAIL_INVLD_REQUEST,
                format!(
                    "Query parameter {}='{value}' is not a valid number.",
                    param.name()
                ),
                format!("{} is a whole number from 0 to {MAX_PAGE_NUMBER}", param.name()),
                format!(
                    "Give {} as a whole number from 0 to {MAX_PAGE_NUMBER} (limit=0 means no limit).",
                    param.name()
                ),
            )
        })
}

fn boolean(param: Param, value: &str) -> Result<bool, ApiResponse> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(refused(
            code::FAIL_INVLD_REQUEST,
            format!(
                "Query parameter {}='{value}' is not a boolean.",
                param.name()
            ),
            format!("{} is true or false", param.name()),
            format!("Give {} as true or false.", param.name()),
        ))
    }
}

/// The set of query parameters one endpoint takes.
pub trait QuerySet {
    const PARAMS: &'static [Param];
}

/// What the query parameters said.
#[derive(Debug, Clone, Default)]
pub struct ParsedQuery {
    pub filter: ListFilter,
    pub with_volume_definitions: bool,
    pub keep_tiebreaker: bool,
    /// `node_a` and `node_b` of a connection listing.
    pub node_a: Option<String>,
    pub node_b: Option<String>,
}

/// The query parameters of an endpoint whose set is `S`.
pub struct Query<S> {
    pub parsed: ParsedQuery,
    set: PhantomData<S>,
}

impl<S> std::ops::Deref for Query<S> {
    type Target = ParsedQuery;

    fn deref(&self) -> &ParsedQuery {
        &self.parsed
    }
}

/// Parses `raw` (the URL's query string) for the parameters `params`.
fn parse(raw: &str, params: &[Param]) -> Result<ParsedQuery, ApiResponse> {
    let mut parsed = ParsedQuery::default();
    let mut seen: Vec<Param> = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        let Some(param) = params.iter().copied().find(|p| p.name() == key) else {
            continue;
        };
        if !param.repeats() {
            if seen.contains(&param) {
                return Err(refused(
                    code::FAIL_INVLD_REQUEST,
                    format!("Query parameter {} is given more than once.", param.name()),
                    "it takes one value",
                    format!("Give {} once.", param.name()),
                ));
            }
            seen.push(param);
        }
        param.read(&value, &mut parsed)?;
    }
    Ok(parsed)
}

impl<St: Send + Sync, S: QuerySet> FromRequestParts<St> for Query<S> {
    type Rejection = ApiResponse;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        parse(parts.uri.query().unwrap_or(""), S::PARAMS).map(|parsed| Query {
            parsed,
            set: PhantomData,
        })
    }
}

macro_rules! query_sets {
    ($($(#[$doc:meta])* $set:ident: [$($param:ident),+];)+) => {
        $(
            $(#[$doc])*
            pub struct $set;

            impl QuerySet for $set {
                const PARAMS: &'static [Param] = &[$(Param::$param),+];
            }

            impl IntoParams for $set {
                fn into_params(
                    _parameter_in_provider: impl Fn() -> Option<ParameterIn>,
                ) -> Vec<Parameter> {
                    Self::PARAMS.iter().map(|p| p.documented()).collect()
                }
            }
        )+
    };
}

query_sets! {
    /// `GET /v1/nodes`.
    ListNodes: [Nodes, Props, Offset, Limit];
    /// `GET /v1/view/storage-pools`.
    ListStoragePools: [Nodes, StoragePools, Props, Offset, Limit];
    /// `GET /v1/nodes/{node}/storage-pools`.
    ListNodeStoragePools: [StoragePools, Props, Offset, Limit];
    /// `GET /v1/resource-definitions`.
    ListResourceDefinitions: [
        ResourceDefinitions, Resources, ResourceGroups, Props, WithVolumeDefinitions, Offset, Limit
    ];
    /// `GET /v1/resource-definitions/{resource}`.
    ShowResourceDefinition: [WithVolumeDefinitions];
    /// `GET /v1/resource-groups`.
    ListResourceGroups: [ResourceGroups, Props, Offset, Limit];
    /// `GET /v1/view/resources`.
    ListResources: [Nodes, Resources, StoragePools, Props, Offset, Limit];
    /// `DELETE /v1/resource-definitions/{resource}/resources/{node}`.
    DeleteResource: [KeepTiebreaker];
    /// `GET /v1/node-connections`.
    ListNodeConnections: [NodeA, NodeB];
    /// `GET /v1/view/snapshots`.
    ListSnapshots: [Nodes, Resources, Offset, Limit];
    /// `DELETE /v1/resource-definitions/{resource}/snapshots/{snapshot}`.
    DeleteSnapshot: [Nodes];
    /// `GET /v1/physical-storage`.
    ListPhysicalStorage: [Offset, Limit];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(raw: &str) -> Result<ParsedQuery, String> {
        const ALL: &[Param] = &[
            Param::Nodes,
            Param::Resources,
            Param::StoragePools,
            Param::Props,
            Param::Offset,
            Param::Limit,
            Param::WithVolumeDefinitions,
            Param::KeepTiebreaker,
        ];
        parse(raw, ALL).map_err(|_| raw.to_string())
    }

    #[test]
    fn booleans_are_true_or_false() {
        assert!(parse_all("keep_tiebreaker=true").unwrap().keep_tiebreaker);
        assert!(parse_all("keep_tiebreaker=TRUE").unwrap().keep_tiebreaker);
        assert!(!parse_all("keep_tiebreaker=false").unwrap().keep_tiebreaker);
        for bad in [
            "keep_tiebreaker=maybe",
            "keep_tiebreaker=",
            "keep_tiebreaker=1",
            "with_volume_definitions=null",
            "with_volume_definitions=yes",
            "keep_tiebreaker=true&keep_tiebreaker=false",
        ] {
            assert!(parse_all(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_numbers_are_bounded_whole_numbers() {
        let page = parse_all("offset=3&limit=0").unwrap();
        assert_eq!((page.filter.offset, page.filter.limit), (3, 0));
        assert_eq!(
            parse_all("limit=2147483647").unwrap().filter.limit,
            MAX_PAGE_NUMBER
        );
        for bad in [
            "limit=-1",
            "limit=2147483648",
            "limit=+1",
            "limit=1.0",
            "limit=",
            "offset=95827946968916180992",
            "limit=1&limit=2",
        ] {
            assert!(parse_all(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_names_and_property_keys() {
        let parsed = parse_all("nodes=node1&nodes=NODE2&props=Aux/rack=r1&props=Aux/x").unwrap();
        assert_eq!(parsed.filter.nodes, ["node1", "NODE2"]);
        assert_eq!(parsed.filter.props, ["Aux/rack=r1", "Aux/x"]);
        for bad in [
            "nodes=",
            "nodes=bad%20name",
            "resources=1abc",
            "storage_pools=p",
            "props=",
            "props=Aux/../x",
            "props=Aux/x=a%0Ab",
        ] {
            assert!(parse_all(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_parameters_are_ignored() {
        assert!(parse("cached=maybe&limit=nonsense", &[Param::Nodes]).is_ok());
    }
}
