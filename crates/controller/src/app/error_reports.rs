//! Error reports: the record of every unexpected failure, referred to by id from the
//! `ApiCallRc` that reported it, so an operator can read the whole story later with
//! `ferrite error-reports show ID`.

use ferrite_types::rest::ErrorReport;

use crate::model::StoredErrorReport;

/// The REST shape of a stored report.
pub fn view(report: &StoredErrorReport, with_text: bool) -> ErrorReport {
    ErrorReport {
        node_name: Some("controller".to_string()),
        error_time: report.time,
        filename: Some(report.id.clone()),
        text: with_text.then(|| report.text.clone()),
        module: Some(report.module.clone()),
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        peer: None,
        exception: Some("Error".to_string()),
        exception_message: Some(report.message.clone()),
        origin_file: None,
        origin_method: None,
        origin_line: None,
    }
}
