//! `error-reports` (`err`).

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ErrorReportCommand {
    /// List error reports.
    #[command(visible_alias = "l")]
    List(ErrorReportList),
    /// Print error reports.
    #[command(visible_alias = "s")]
    Show(ErrorReportIds),
    /// Delete error reports.
    #[command(visible_alias = "d")]
    Delete(ErrorReportIds),
}

#[derive(Debug, Args)]
pub struct ErrorReportList {
    /// Only reports of the last days/hours, e.g. 3d, 1d10h, 5h.
    #[arg(short = 's', long)]
    pub since: Option<String>,
    /// Only reports up to this date (YYYY-MM-DD).
    #[arg(short = 't', long)]
    pub to: Option<String>,
    /// Only reports from these nodes.
    #[arg(short = 'n', long, num_args = 1..)]
    pub nodes: Vec<String>,
    /// Generate pastable output (ASCII, no colors).
    #[arg(short = 'p', long)]
    pub pastable: bool,
    /// Only reports whose id begins with one of these.
    #[arg(long, num_args = 1..)]
    pub report_id: Vec<String>,
    /// Show every field.
    #[arg(short = 'f', long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct ErrorReportIds {
    /// Report ids.
    #[arg(required = true)]
    pub report_id: Vec<String>,
}
