//! Controller-wide shapes: version, error reports.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/controller/version`. Clients refuse to talk to a controller without
/// `rest_api_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ControllerVersion {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_hash: Option<String>,
    pub build_time: String,
    pub rest_api_version: String,
}

/// An error report: the record of an unexpected failure, referred to by id from `ApiCallRc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Milliseconds since the epoch.
    pub error_time: i64,
    /// The report's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_line: Option<i64>,
}
