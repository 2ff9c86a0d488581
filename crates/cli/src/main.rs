//! `ferrite`: the command line of a Ferrite cluster — LINSTOR's command tree, tables and `-m`
//! JSON over the controller's REST API.
//!
//! A run parses the arguments (bad ones exit 2 with a usage message), decides which controllers
//! to try, connects to the first that answers, runs one command and exits with LINSTOR's codes:
//! 0 success, 10 when the controller answered an error entry, 20 when no controller could be
//! reached (or the connection broke), 21 on a timeout, 22 on a reply that is not LINSTOR's JSON.

mod args;
mod commands;
mod json;
mod output;
mod table;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use ferrite_client::controllers::{self, ResolveError};
use ferrite_client::{Client, ClientError, Controllers, Source};

use crate::args::{Cli, Command};
use crate::commands::{Ctx, Failure, Outcome, emit};
use crate::output::{Exit, Style, format_replies};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Usage errors exit 2 (as argparse does); --help and --version exit 0.
        Err(error) => error.exit(),
    };
    ExitCode::from(run(cli).code())
}

/// Box-drawing characters on a UTF-8 terminal, colors on a terminal, plain text otherwise.
fn detect_style(no_utf8: bool, no_color: bool) -> Style {
    let terminal = std::io::stdout().is_terminal();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let utf8_locale = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|name| env(name))
        .is_some_and(|locale| {
            let locale = locale.to_ascii_lowercase();
            locale.contains("utf-8") || locale.contains("utf8")
        });
    Style {
        utf8: !no_utf8 && terminal && utf8_locale,
        color: !no_color
            && terminal
            && env("NO_COLOR").is_none()
            && env("TERM").as_deref() != Some("dumb"),
    }
}

fn run(cli: Cli) -> Exit {
    let style = detect_style(cli.no_utf8, cli.no_color);
    let env = |name: &str| std::env::var(name).ok();
    let config_files = controllers::default_config_files(env);
    let controllers = match controllers::resolve(cli.controllers.as_deref(), env, &config_files) {
        Ok(controllers) => controllers,
        Err(error) => {
            eprintln!("Error: {error}");
            return match error {
                ResolveError::Address {
                    source_name: Source::Flag,
                    ..
                } => Exit::Usage,
                _ => Exit::Failure,
            };
        }
    };
    let client = match Client::connect(&controllers.addresses, Duration::from_secs(cli.timeout)) {
        Ok(client) => client,
        Err(error) => return report(Failure::Client(error), &controllers, &style, false),
    };
    let ctx = Ctx {
        client,
        style,
        machine_readable: cli.machine_readable,
        warn_as_error: cli.warn_as_error,
    };
    match dispatch(&ctx, cli.command) {
        Ok(exit) => exit,
        Err(failure) => report(failure, &controllers, &style, ctx.machine_readable),
    }
}

fn dispatch(ctx: &Ctx, command: Command) -> Outcome {
    match command {
        Command::Controller(c) => commands::controller::run(ctx, c),
        Command::Node(c) => commands::node::run(ctx, c),
        Command::StoragePool(c) => commands::storage_pool::run(ctx, c),
        Command::ResourceGroup(c) => commands::resource_group::run(ctx, c),
        Command::VolumeGroup(c) => commands::resource_group::run_volume_group(ctx, c),
        Command::ResourceDefinition(c) => commands::resource_definition::run(ctx, c),
        Command::VolumeDefinition(c) => {
            commands::resource_definition::run_volume_definition(ctx, c)
        }
        Command::Resource(c) => commands::resource::run(ctx, c),
        Command::Volume(c) => commands::resource::run_volume(ctx, c),
        Command::ErrorReports(c) => commands::error_reports::run(ctx, c),
        Command::KeyValueStore(c) => commands::key_value_store::run(ctx, c),
        Command::NodeConnection(c) => commands::connections::run_node(ctx, c),
        Command::ResourceConnection(c) => commands::connections::run_resource(ctx, c),
        Command::SpaceReporting(c) => commands::space_reporting::run(ctx, c),
        Command::Snapshot(c) => commands::snapshot::run(ctx, c),
        Command::PhysicalStorage(c) => commands::physical_storage::run(ctx, c),
    }
}

/// Prints why a command failed and picks the exit code.
fn report(failure: Failure, controllers: &Controllers, style: &Style, machine: bool) -> Exit {
    match failure {
        Failure::Local { message, exit } => {
            eprintln!("Error: {message}");
            exit
        }
        Failure::Client(error) => report_client_error(error, controllers, style, machine),
    }
}

fn report_client_error(
    error: ClientError,
    controllers: &Controllers,
    style: &Style,
    machine: bool,
) -> Exit {
    match error {
        ClientError::Unreachable { attempts } => {
            let mut text = format!(
                "Error: no controller could be reached (controllers from {}):\n",
                controllers.source
            );
            for attempt in &attempts {
                text.push_str(&format!("  {}: {}\n", attempt.controller, attempt.cause));
            }
            text.push_str(
                "Correction: start ferrite-controller, or pass --controllers HOST[:PORT] (or set \
                 FERRITE_CONTROLLERS) to reach a running one.\n",
            );
            eprint!("{text}");
            Exit::Connection
        }
        ClientError::Timeout { .. } => {
            eprintln!(
                "Error: {error}.\nCorrection: the request may still complete on the \
                 controller; check with a list command, or give more time with -t/--timeout."
            );
            Exit::Timeout
        }
        ClientError::ConnectionLost { .. } => {
            eprintln!(
                "Error: {error}.\nCorrection: check that ferrite-controller is still running; \
                 a change may or may not have been made, so check with a list command."
            );
            Exit::Connection
        }
        ClientError::UnexpectedReply { .. } => {
            eprintln!("Error: {error}");
            Exit::UnexpectedReply
        }
        ClientError::Api { answer, .. } => {
            if machine {
                emit(&format!("{}\n", json::pretty(&answer.raw)));
            } else {
                emit(&format_replies(&answer.replies, style));
            }
            Exit::Api
        }
    }
}
