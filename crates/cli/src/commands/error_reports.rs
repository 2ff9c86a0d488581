//! `error-reports` (`err`): the records of unexpected failures that `ApiCallRc` entries refer
//! to by id.
//!
//! The controller lists every report; `--since`, `--to`, `--nodes` and `--report-id` filter here.

use chrono::{Local, NaiveDate, TimeZone as _};
use ferrite_types::rest::ErrorReport;

use super::{Ctx, Failure, Outcome, emit, local_datetime};
use crate::args::error_reports::{ErrorReportCommand, ErrorReportList};
use crate::json;
use crate::output::{Exit, Style};
use crate::table::{Column, Table};

/// Exception messages longer than this are cut in the list.
const MESSAGE_LIMIT: usize = 60;

pub fn run(ctx: &Ctx, command: ErrorReportCommand) -> Outcome {
    match command {
        ErrorReportCommand::List(list) => {
            let filter = ReportFilter::new(&list, Local::now().timestamp_millis())?;
            let reports = ctx.client.error_reports()?;
            let shown: Vec<&ErrorReport> =
                reports.items.iter().filter(|r| filter.keeps(r)).collect();
            if ctx.machine_readable {
                let text = serde_json::to_string(&shown).expect("reports serialize");
                emit(&format!("{}\n", json::pretty(&text)));
                return Ok(Exit::Ok);
            }
            emit(&render_reports(
                &shown,
                list.full,
                &ctx.table_style(list.pastable),
            ));
            Ok(Exit::Ok)
        }
        ErrorReportCommand::Show(show) => {
            let mut raws = Vec::new();
            for id in &show.report_id {
                let reports = ctx.client.error_report(id)?;
                if !ctx.machine_readable {
                    for report in &reports.items {
                        let text = report.text.as_deref().unwrap_or("");
                        emit(&format!("{}\n", text.strip_suffix('\n').unwrap_or(text)));
                    }
                }
                raws.push(reports.raw);
            }
            if ctx.machine_readable {
                let all = json::concat_arrays(raws.iter().map(String::as_str));
                emit(&format!("{}\n", json::pretty(&all)));
            }
            Ok(Exit::Ok)
        }
        ErrorReportCommand::Delete(delete) => ctx.run_all(delete.report_id, |client, id| {
            client.delete_error_report(&id)
        }),
    }
}

/// Which reports `error-reports list` keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFilter {
    since_millis: Option<i64>,
    to_millis: Option<i64>,
    nodes: Vec<String>,
    ids: Vec<String>,
}

impl ReportFilter {
    pub fn new(list: &ErrorReportList, now_millis: i64) -> Result<ReportFilter, Failure> {
        let since_millis = list
            .since
            .as_deref()
            .map(|since| parse_age(since).map(|age| now_millis - age))
            .transpose()?;
        let to_millis = list.to.as_deref().map(end_of_day).transpose()?;
        Ok(ReportFilter {
            since_millis,
            to_millis,
            nodes: list.nodes.clone(),
            ids: list.report_id.clone(),
        })
    }

    pub fn keeps(&self, report: &ErrorReport) -> bool {
        let node = report.node_name.as_deref().unwrap_or("");
        let id = report.filename.as_deref().unwrap_or("");
        self.since_millis.is_none_or(|s| report.error_time >= s)
            && self.to_millis.is_none_or(|t| report.error_time <= t)
            && (self.nodes.is_empty() || self.nodes.iter().any(|n| n.eq_ignore_ascii_case(node)))
            && (self.ids.is_empty()
                || self
                    .ids
                    .iter()
                    .any(|prefix| id.starts_with(prefix.as_str())))
    }
}

/// `3d`, `10h`, `1d10h` as milliseconds.
pub fn parse_age(text: &str) -> Result<i64, Failure> {
    let bad = || {
        Failure::usage(format!(
            "Unable to parse time string: '{text}'. Format should be e.g.: '1d10h' or '3h'"
        ))
    };
    let text = text.trim();
    let (days, rest) = match text.split_once('d') {
        Some((days, rest)) => (days.trim().parse::<i64>().map_err(|_| bad())?, rest.trim()),
        None => (0, text),
    };
    let hours = match rest {
        "" => 0,
        hours => hours
            .strip_suffix('h')
            .unwrap_or(hours)
            .trim()
            .parse::<i64>()
            .map_err(|_| bad())?,
    };
    if text.is_empty() || days < 0 || hours < 0 {
        return Err(bad());
    }
    Ok((days * 24 + hours) * 3_600_000)
}

/// The last millisecond of a local date `YYYY-MM-DD`.
fn end_of_day(text: &str) -> Result<i64, Failure> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
        Failure::usage(format!(
            "Unable to parse date '{text}'; write it as YYYY-MM-DD."
        ))
    })?;
    let end = date
        .and_hms_milli_opt(23, 59, 59, 999)
        .expect("a valid time of day");
    Local
        .from_local_datetime(&end)
        .latest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| Failure::usage(format!("The date '{text}' does not exist here.")))
}

pub fn render_reports(reports: &[&ErrorReport], full: bool, style: &Style) -> String {
    let mut columns = vec![
        Column::new("Id"),
        Column::new("Datetime"),
        Column::new("Node"),
        Column::new("Exception"),
    ];
    if full {
        columns.extend([Column::new("Location"), Column::new("Version")]);
    }
    let mut table = Table::new(columns).unsorted();
    for report in reports {
        let message = report.exception_message.as_deref().unwrap_or("");
        let message = if message.chars().count() < MESSAGE_LIMIT {
            message.to_string()
        } else {
            format!(
                "{}...",
                message.chars().take(MESSAGE_LIMIT - 3).collect::<String>()
            )
        };
        let module = report
            .module
            .as_deref()
            .and_then(|m| m.chars().next())
            .map(|c| format!("{c}|"))
            .unwrap_or_default();
        let mut exception = report.exception.clone().unwrap_or_default();
        if !message.is_empty() {
            exception.push_str(": ");
            exception.push_str(&message);
        }
        let mut row = vec![
            report.filename.clone().unwrap_or_default().into(),
            local_datetime(report.error_time).into(),
            format!("{module}{}", report.node_name.as_deref().unwrap_or("")).into(),
            exception.into(),
        ];
        if full {
            row.push(
                match (&report.origin_file, report.origin_line) {
                    (Some(file), Some(line)) => format!("{file}:{line}"),
                    (Some(file), None) => file.clone(),
                    _ => String::new(),
                }
                .into(),
            );
            row.push(report.version.clone().unwrap_or_default().into());
        }
        table.row(row);
    }
    table.render(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, node: &str, time: i64) -> ErrorReport {
        ErrorReport {
            node_name: Some(node.into()),
            error_time: time,
            filename: Some(id.into()),
            text: None,
            module: Some("CONTROLLER".into()),
            version: Some("0.1.0".into()),
            peer: None,
            exception: Some("Error".into()),
            exception_message: Some("x".repeat(70)),
            origin_file: None,
            origin_line: None,
            origin_method: None,
        }
    }

    fn list(since: Option<&str>, nodes: &[&str], ids: &[&str]) -> ErrorReportList {
        ErrorReportList {
            since: since.map(str::to_string),
            to: None,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            pastable: false,
            report_id: ids.iter().map(|n| n.to_string()).collect(),
            full: false,
        }
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("3d").unwrap(), 3 * 86_400_000);
        assert_eq!(parse_age("5h").unwrap(), 5 * 3_600_000);
        assert_eq!(parse_age("1d10h").unwrap(), 34 * 3_600_000);
        assert_eq!(parse_age("2").unwrap(), 2 * 3_600_000);
        for bad in ["", "x", "3days", "-1d", "d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters() {
        let now = 100 * 3_600_000;
        let old = report("A-1", "controller", 0);
        let new = report("B-2", "controller", now - 1000);
        let filter = ReportFilter::new(&list(Some("1h"), &[], &[]), now).unwrap();
        assert!(!filter.keeps(&old) && filter.keeps(&new));
        let filter = ReportFilter::new(&list(None, &["CONTROLLER"], &["A"]), now).unwrap();
        assert!(filter.keeps(&old) && !filter.keeps(&new));
        let filter = ReportFilter::new(&list(None, &["alpha"], &[]), now).unwrap();
        assert!(!filter.keeps(&old));
        let mut dated = list(None, &[], &[]);
        dated.to = Some("1970-01-02".into());
        let filter = ReportFilter::new(&dated, now).unwrap();
        assert!(filter.keeps(&old) && !filter.keeps(&new));
        dated.to = Some("yesterday".into());
        assert!(ReportFilter::new(&dated, now).is_err());
    }

    #[test]
    fn long_messages_are_cut() {
        let r = report("6F0A-000001", "controller", 0);
        let text = render_reports(
            &[&r],
            true,
            &Style {
                utf8: false,
                color: false,
            },
        );
        assert!(
            text.contains(&format!("| C|controller | Error: {}... |", "x".repeat(57))),
            "{text}"
        );
        assert!(text.contains("| Location | Version |"));
    }
}
