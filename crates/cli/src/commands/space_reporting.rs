//! `space-reporting` (`spr`): the controller's report of the space of every storage pool.

use clap::Subcommand;

use super::{Ctx, Outcome, emit};
use crate::output::Exit;

#[derive(Debug, Subcommand)]
pub enum SpaceReportingCommand {
    /// Print the space report.
    #[command(visible_alias = "qry")]
    Query,
}

pub fn run(ctx: &Ctx, command: SpaceReportingCommand) -> Outcome {
    match command {
        SpaceReportingCommand::Query => {
            let report = ctx.client.space_report()?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&report.raw));
            }
            emit(&report.items.report_text);
            Ok(Exit::Ok)
        }
    }
}
