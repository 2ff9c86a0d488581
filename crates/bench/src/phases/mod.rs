//! The benchmark's phases and what they share: settings, filling the cluster window by window,
//! and timing restarts.
//!
//! - [`real`]: a controller and real `ferrite-satellite` processes with FILE_THIN pools (loop
//!   devices), up to 1,000 resources;
//! - [`simulated`]: a controller and simulated nodes (the real satellite in-process, on a fake
//!   host), 100,000 resources on 16 nodes by default;
//! - [`options`]: simulated nodes running DRBD as a dry run, 10,000 replicated resources, and a
//!   `DrbdOptions/*` change on the controller and the resource group.

pub mod options;
pub mod real;
pub mod satellite;
pub mod simulated;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use ferrite_testkit::Binaries;

use crate::controller::{ControllerUnderTest, StartTiming, Stop};
use crate::probe::{self, Checkpoint};
use crate::procfs::Memory;
use crate::stats::{self, Summary};
use crate::workload::{self, Batch};

/// What every phase needs to know.
pub struct Settings {
    pub binaries: Binaries,
    /// Where each phase makes its temporary directory.
    pub work_dir: PathBuf,
    pub nodes: usize,
    pub clients: usize,
    pub volume_kib: u64,
    /// Sequential requests per read endpoint and checkpoint.
    pub samples: usize,
    /// Sequential requests of the whole resource view per checkpoint.
    pub view_samples: usize,
    /// Restarts per stop variant.
    pub cold_starts: usize,
    /// Wall-clock budget of phase A's creation; its teardown and convergence wait get half of
    /// it each.
    pub real_budget: Duration,
    /// Keep each phase's directory (database, logs) instead of deleting it.
    pub keep: bool,
}

impl Settings {
    pub fn sampling(&self) -> probe::Sampling {
        probe::Sampling {
            samples: self.samples,
            view_samples: self.view_samples,
        }
    }
}

/// A stretch of resource creation, measured on its own.
pub struct Window {
    /// Resources in the cluster at the end of the window.
    pub upto: usize,
    pub batch: Batch,
    pub memory: Memory,
}

/// How the cluster was filled.
pub struct Fill {
    /// Resources created (fewer than planned if the budget ran out first).
    pub reached: usize,
    /// Whether the budget ran out before the plan was done.
    pub stopped_early: bool,
    pub windows: Vec<Window>,
    pub checkpoints: Vec<Checkpoint>,
    /// Controller CPU seconds spent while filling.
    pub controller_cpu: f64,
    /// This process's CPU seconds spent while filling: the clients, and in phase B the
    /// simulated satellites.
    pub bench_cpu: f64,
}

impl Fill {
    fn batches(&self, concurrent: bool) -> impl Iterator<Item = &Batch> {
        self.windows
            .iter()
            .map(|w| &w.batch)
            .filter(move |b| (b.clients > 1) == concurrent)
    }

    /// Resources per second over every window run with `concurrent` (or single) clients.
    pub fn rate(&self, concurrent: bool) -> f64 {
        let (requests, seconds) = self.batches(concurrent).fold((0, 0.0), |(r, s), b| {
            (r + b.requests, s + b.elapsed.as_secs_f64())
        });
        requests as f64 / f64::max(seconds, 1e-9)
    }

    pub fn latency(&self, concurrent: bool) -> Summary {
        let all: Vec<Duration> = self
            .batches(concurrent)
            .flat_map(|b| b.latencies.iter().copied())
            .collect();
        Summary::of(&all)
    }

    pub fn total_elapsed(&self) -> Duration {
        self.windows.iter().map(|w| w.batch.elapsed).sum()
    }

    pub fn unconfirmed(&self) -> usize {
        self.windows.iter().map(|w| w.batch.unconfirmed).sum()
    }

    /// The last window run with several clients.
    pub fn last_concurrent(&self) -> Option<&Window> {
        self.windows.iter().rev().find(|w| w.batch.clients > 1)
    }

    /// One line per window: how creation speed and memory evolve with the cluster's size.
    pub fn curve(&self) -> String {
        self.windows
            .iter()
            .map(|w| {
                format!(
                    "{}: {:.0}/s ({} cl.), p99 {} ms, RSS {:.0} MiB",
                    w.upto,
                    w.batch.per_second(),
                    w.batch.clients,
                    stats::ms(Summary::of(&w.batch.latencies).p99_ms),
                    w.memory.rss_mib()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// How resources are created: how many, in which windows, from how many clients.
pub struct FillPlan<'a> {
    pub total: usize,
    /// Resources per measured window.
    pub window: usize,
    /// The last this many are created from one client, the rest from `settings.clients`.
    pub single_tail: usize,
    /// Cluster sizes at which a [`Checkpoint`] is measured.
    pub checkpoint_at: &'a [usize],
    /// Wall-clock budget: the concurrent part gets 80 % of it, the single-client tail the rest
    /// (and runs on from wherever the concurrent part stopped).
    pub budget: Option<Duration>,
}

/// Fills the cluster as `plan` says.
pub fn fill(
    tag: &str,
    controller: &ControllerUnderTest,
    settings: &Settings,
    plan: &FillPlan,
) -> Result<Fill> {
    let rest = controller.rest();
    let cpu_before = controller.cpu_seconds()?;
    let bench_cpu_before = crate::procfs::cpu_seconds(std::process::id())?;
    let concurrent_target = plan.total.saturating_sub(plan.single_tail);
    let share = |fraction: f64| plan.budget.map(|b| Instant::now() + b.mul_f64(fraction));
    let mut windows = Vec::new();
    let mut checkpoints = Vec::new();
    let mut start = 0;
    let mut stopped_early = false;
    for (clients, target, deadline) in [
        (settings.clients, concurrent_target, share(0.8)),
        (1, usize::MAX, None),
    ] {
        let (target, deadline) = if clients == 1 {
            // The tail: a fixed number from wherever the concurrent part got to.
            (
                (start + plan.single_tail).min(plan.total.max(start)),
                share(0.2),
            )
        } else {
            (target, deadline)
        };
        let mut boundaries: Vec<usize> = (1..)
            .map(|i| i * plan.window)
            .take_while(|&b| b < target)
            .chain(plan.checkpoint_at.iter().copied())
            .filter(|&b| b > start && b < target)
            .collect();
        boundaries.push(target);
        boundaries.sort_unstable();
        boundaries.dedup();
        boundaries.retain(|&b| b > start);
        for end in boundaries {
            let batch = workload::spawn_resources(
                &rest,
                start..end,
                clients,
                settings.volume_kib,
                deadline,
            )?;
            let complete = batch.requests == end - start;
            let end = start + batch.requests;
            let memory = controller.memory()?;
            eprintln!(
                "[{tag}] {end}/{} resources: {:.1}/s with {clients} client(s), spawn {}, controller RSS {:.1} MiB (peak {:.1}){}",
                plan.total,
                batch.per_second(),
                Summary::of(&batch.latencies),
                memory.rss_mib(),
                memory.peak_mib(),
                if batch.unconfirmed > 0 {
                    format!(
                        ", {} answers without satellite confirmation",
                        batch.unconfirmed
                    )
                } else {
                    String::new()
                }
            );
            if batch.requests > 0 {
                windows.push(Window {
                    upto: end,
                    batch,
                    memory,
                });
            }
            start = end;
            if !complete {
                eprintln!(
                    "[{tag}] time budget of this part spent at {end} resources ({clients} client(s))"
                );
                stopped_early = true;
                break;
            }
            if plan.checkpoint_at.contains(&end) {
                probe::settle();
                let checkpoint = probe::checkpoint(controller, settings.sampling(), end)?;
                eprintln!(
                    "[{tag}] checkpoint at {end}: view {}, RSS {:.1} MiB",
                    checkpoint.view.latency,
                    checkpoint.memory.rss_mib()
                );
                checkpoints.push(checkpoint);
            }
        }
    }
    Ok(Fill {
        reached: start,
        stopped_early,
        windows,
        checkpoints,
        controller_cpu: controller.cpu_seconds()? - cpu_before,
        bench_cpu: crate::procfs::cpu_seconds(std::process::id())? - bench_cpu_before,
    })
}

/// One stop and start of the controller.
pub struct Restart {
    /// Signal → process exited.
    pub stopped: Duration,
    pub timing: StartTiming,
    /// Once every node is ONLINE and one full view was served.
    pub memory: Memory,
}

/// Restarts `repeats` times after `how`, waiting for `nodes` to come ONLINE each time.
pub fn restarts(
    tag: &str,
    controller: &mut ControllerUnderTest,
    how: Stop,
    repeats: usize,
    nodes: usize,
) -> Result<Vec<Restart>> {
    let mut runs = Vec::new();
    for i in 1..=repeats {
        probe::settle();
        let stopped = controller.stop(how)?;
        let timing = controller.start(nodes)?;
        let memory = controller.memory()?;
        eprintln!(
            "[{tag}] restart {i}/{repeats} {}: stopped in {} ms; /health after {} ms, full view after {} ms, all ONLINE after {} ms (store load logged: {} ms), RSS {:.1} MiB",
            how.label(),
            stats::ms(stopped.as_secs_f64() * 1e3),
            stats::ms(timing.health.as_secs_f64() * 1e3),
            stats::ms(timing.view.as_secs_f64() * 1e3),
            timing
                .online
                .map(|d| stats::ms(d.as_secs_f64() * 1e3))
                .unwrap_or_else(|| "-".into()),
            timing
                .logged_load
                .map(|d| d.as_millis().to_string())
                .unwrap_or_else(|| "?".into()),
            memory.rss_mib()
        );
        runs.push(Restart {
            stopped,
            timing,
            memory,
        });
    }
    Ok(runs)
}

/// Summaries of restarts: (stop, /health, view, online).
pub struct Restarts {
    pub stop: Summary,
    pub health: Summary,
    pub view: Summary,
    pub online: Summary,
    pub logged_load: Summary,
    pub memory: Memory,
}

impl Restarts {
    pub fn of(runs: &[Restart]) -> Restarts {
        let pick = |f: &dyn Fn(&Restart) -> Option<Duration>| {
            Summary::of(&runs.iter().filter_map(f).collect::<Vec<_>>())
        };
        Restarts {
            stop: pick(&|r| Some(r.stopped)),
            health: pick(&|r| Some(r.timing.health)),
            view: pick(&|r| Some(r.timing.view)),
            online: pick(&|r| r.timing.online),
            logged_load: pick(&|r| r.timing.logged_load),
            memory: runs.last().map(|r| r.memory).unwrap_or_default(),
        }
    }
}

/// "mean ± stdev (max)" in ms, for a few restarts.
pub fn spread(summary: &Summary) -> String {
    format!(
        "{} ± {} ms (max {}, n={})",
        stats::ms(summary.mean_ms),
        stats::ms(summary.stdev_ms),
        stats::ms(summary.max_ms),
        summary.count
    )
}

/// "p50 / p99 ms, size".
pub fn latency_and_size(endpoint: &probe::Endpoint) -> String {
    format!(
        "p50 {} / p99 {} ms, {}",
        stats::ms(endpoint.latency.p50_ms),
        stats::ms(endpoint.latency.p99_ms),
        stats::bytes(endpoint.bytes as u64)
    )
}
