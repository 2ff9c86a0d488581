//! `controller` (`c`): version, controller-wide properties and backups of the store.

use super::{Ctx, Outcome, emit, property_change};
use crate::args::controller::ControllerCommand;
use crate::json;
use crate::output::Exit;

pub fn run(ctx: &Ctx, command: ControllerCommand) -> Outcome {
    match command {
        ControllerCommand::Version => {
            // The handshake already asked; asking again would only cost a round trip.
            let version = ctx.client.version();
            if ctx.machine_readable {
                emit(&format!("{}\n", json::compact(&version.raw)));
            } else {
                emit(&format!(
                    "ferrite controller {}; GIT-hash: {}\n",
                    version.items.version,
                    version.items.git_hash.as_deref().unwrap_or("")
                ));
            }
            Ok(Exit::Ok)
        }
        ControllerCommand::ListProperties(opts) => {
            let props = ctx.client.controller_properties()?;
            Ok(ctx.properties(Some(&props.items), opts.pastable))
        }
        ControllerCommand::SetProperty(property) => {
            let change = property_change(&property);
            ctx.one(ctx.client.modify_controller_properties(&change))
        }
        // The path was checked to be absolute when the arguments were parsed.
        ControllerCommand::Backup(backup) => ctx.one(ctx.client.backup_database(&backup.file)),
    }
}
