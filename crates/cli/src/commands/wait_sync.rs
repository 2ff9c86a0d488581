//! `resource-definition wait-sync`: polls the definition's sync status until every diskful
//! replica is in sync, or the timeout passes.

use std::time::{Duration, Instant};

use clap::Args;

use super::{Ctx, Failure, Outcome, emit};
use crate::output::Exit;

#[derive(Debug, Args)]
pub struct WaitSync {
    /// The resource definition.
    pub name: String,
    /// Seconds between two polls.
    #[arg(long, default_value_t = 1.0)]
    pub wait_interval: f64,
    /// Give up after this many seconds (default: wait for ever).
    #[arg(long)]
    pub timeout: Option<f64>,
}

pub fn run(ctx: &Ctx, wait: &WaitSync) -> Outcome {
    let interval = Duration::try_from_secs_f64(wait.wait_interval.max(0.01))
        .map_err(|_| Failure::usage("--wait-interval takes a number of seconds"))?;
    let deadline = match wait.timeout {
        Some(seconds) => Some(
            Instant::now()
                + Duration::try_from_secs_f64(seconds.max(0.0))
                    .map_err(|_| Failure::usage("--timeout takes a number of seconds"))?,
        ),
        None => None,
    };
    loop {
        if ctx.client.sync_status(&wait.name)?.items.synced_on_all {
            if !ctx.machine_readable {
                emit(&format!(
                    "Resource definition '{}' is in sync.\n",
                    wait.name
                ));
            }
            return Ok(Exit::Ok);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Failure::Local {
                message: format!(
                    "Resource definition '{}' did not get in sync within {} s.",
                    wait.name,
                    wait.timeout.unwrap_or_default()
                ),
                exit: Exit::Failure,
            });
        }
        std::thread::sleep(interval);
    }
}
