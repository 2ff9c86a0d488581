//! `ferrite-mirrord`: the data-path daemon of the MIRROR layer on one node, and the commands
//! that talk to it (what `drbdsetup` is to DRBD).
//!
//! - `ferrite-mirrord run`: serve every resource configured in `<state-dir>/resources/`, each
//!   volume as an NBD export and, where the host allows, as a block device under
//!   `--device-root`;
//! - `ferrite-mirrord up|down RESOURCE`: apply a resource's file now / take it down;
//! - `ferrite-mirrord status [RESOURCE]`: what `drbdsetup status` prints;
//! - `ferrite-mirrord events`: one JSON line per change;
//! - `ferrite-mirrord discard-my-data RESOURCE`: resolve a split brain against this node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrite_blockdev::{BlockFrontend, DEFAULT_DEVICE_ROOT};
use ferrite_mirror::block_devices::BlockDeviceSetting;
use ferrite_mirror::control::{Client, Frontend, Paths, Reply, Request};
use ferrite_mirror::daemon::{Daemon, DaemonConfig};

/// Threads that run every resource's I/O path unless `--worker-threads` says otherwise. The
/// disk I/O runs in io_uring and the socket copies in the kernel, so one thread carries a
/// node's replication traffic on small machines; with two, the tasks of one write (the NBD
/// request, the peer's sender and receiver, the disk completion) kept waking each other across
/// threads: on 2 cores, 4 KiB writes at QD1 took about 70 µs less and at QD32 ran at 1.6 times
/// the rate with one (docs/benchmarks.md, "MIRROR engine").
const DEFAULT_WORKER_THREADS: u16 = 1;

/// The default state directory: the satellite's, plus `mirror`.
const DEFAULT_STATE_DIR: &str = "/var/lib/ferrite/satellite/mirror";

#[derive(Parser)]
#[command(
    name = "ferrite-mirrord",
    version,
    about = "The MIRROR layer's data path on this node"
)]
struct Cli {
    /// Where resource files, metadata-free state and sockets live.
    #[arg(long, global = true, env = "FERRITE_MIRROR_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run {
        /// Where block devices appear: `<device-root>/<resource>/<volnr>` and, where no DRBD
        /// module is loaded, `/dev/drbd/by-res/<resource>/<volnr>` (with another device root
        /// than the default, `<device-root>/drbd/by-res/<resource>/<volnr>`).
        #[arg(long, default_value = DEFAULT_DEVICE_ROOT)]
        device_root: PathBuf,
        /// No block devices (no nbd devices, no FUSE mount, no loop devices): NBD exports only.
        #[arg(long, conflicts_with_all = ["device_root", "block_frontend"])]
        no_block_devices: bool,
        /// How volumes get their block devices: `kernel-nbd` (the kernel's nbd driver),
        /// `fuse-loop` (a FUSE file behind a loop device), or `auto`: the nbd driver where it
        /// is loaded, else FUSE + loop.
        #[arg(long, default_value = "auto", value_parser = |text: &str| text.parse::<BlockFrontend>())]
        block_frontend: BlockFrontend,
        /// Also serve every volume over NBD on this TCP address, as export `<resource>/<volnr>`.
        /// Loopback addresses only (127.0.0.1:PORT, [::1]:PORT): NBD has no authentication.
        #[arg(long)]
        nbd_tcp: Option<SocketAddr>,
        /// Log filter (RUST_LOG syntax).
        #[arg(long, env = "RUST_LOG", default_value = "info")]
        log: String,
        /// Threads for the I/O paths of all resources (raise it where the replication
        /// traffic of the node needs more than one core).
        #[arg(long, default_value_t = DEFAULT_WORKER_THREADS, value_parser = clap::value_parser!(u16).range(1..=256))]
        worker_threads: u16,
    },
    /// Bring a resource up from its file, or adjust it to the file if it is up.
    Up { resource: String },
    /// Take a resource down.
    Down {
        resource: String,
        /// Even if it is in use here (its users get I/O errors).
        #[arg(long)]
        force: bool,
    },
    /// Show resources as `drbdsetup status` does.
    Status {
        resource: Option<String>,
        /// Node-ids, quorum, out-of-sync amounts for every peer.
        #[arg(long, short)]
        verbose: bool,
        /// The raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every resource's state now, then one JSON line per change.
    Events,
    /// Resolve a split brain: this node's changes are thrown away and resynced from its peers.
    DiscardMyData { resource: String },
}

/// Raises the soft limit on open descriptors to the hard one, as a daemon serving many volumes
/// should (systemd leaves the soft limit at 1,024): every resource holds backing files, sockets
/// and block devices, and large reads hold pipes (`ferrite_block::MAX_PIPES`).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct passed, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let worker_threads = match &cli.command {
        Command::Run { worker_threads, .. } => {
            raise_open_files_limit();
            usize::from(*worker_threads)
        }
        _ => {
            // A client command's output piped into `head` or `grep -q` ends it quietly, as
            // with any command-line tool; the daemon keeps ignoring SIGPIPE (a peer or client
            // that went away is an error on that socket, not the end of the daemon).
            // SAFETY: restores the default disposition before any thread is started.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            1
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .thread_name("mirrord")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferrite-mirrord: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let paths = Paths::new(cli.state_dir);
    runtime.block_on(async move {
        match cli.command {
            Command::Run {
                device_root,
                no_block_devices,
                block_frontend,
                nbd_tcp,
                log,
                worker_threads: _,
            } => {
                let block_devices = if no_block_devices {
                    BlockDeviceSetting::Disabled
                } else {
                    BlockDeviceSetting::Enabled {
                        device_root,
                        frontend: block_frontend,
                    }
                };
                run(paths, block_devices, nbd_tcp, &log).await
            }
            command => client(paths, command).await,
        }
    })
}

async fn run(
    paths: Paths,
    block_devices: BlockDeviceSetting,
    nbd_tcp: Option<SocketAddr>,
    log: &str,
) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(log))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = DaemonConfig {
        paths,
        block_devices,
        nbd_tcp,
    };
    let (daemon, listener) = match Daemon::start(config).await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("ferrite-mirrord: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(pid = std::process::id(), "ferrite-mirrord running");
    let serving = daemon.clone();
    let server = tokio::spawn(async move { serving.serve(listener).await });
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("ferrite-mirrord: cannot handle SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: block devices removed, then every resource down cleanly");
    server.abort();
    daemon.shutdown().await;
    ExitCode::SUCCESS
}

async fn client(paths: Paths, command: Command) -> ExitCode {
    let mut client = match Client::connect(&paths.control_socket()).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("ferrite-mirrord: {e}");
            return ExitCode::FAILURE;
        }
    };
    let request = match &command {
        Command::Up { resource } => Request::Up {
            resource: resource.clone(),
        },
        Command::Down { resource, force } => Request::Down {
            resource: resource.clone(),
            force: *force,
        },
        Command::Status { resource, .. } => Request::Status {
            resource: resource.clone(),
        },
        Command::DiscardMyData { resource } => Request::DiscardMyData {
            resource: resource.clone(),
        },
        Command::Events => {
            if let Err(e) = client.send(&Request::Events).await {
                eprintln!("ferrite-mirrord: {e}");
                return ExitCode::FAILURE;
            }
            loop {
                match client.next_event().await {
                    Ok(Some(reply)) => println!(
                        "{}",
                        serde_json::to_string(&reply).expect("replies serialize")
                    ),
                    Ok(None) => return ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("ferrite-mirrord: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        Command::Run { .. } => unreachable!("handled by run"),
    };
    match client.call(&request).await {
        Ok(Reply::Status { resources }) => {
            let (verbose, json) = match command {
                Command::Status { verbose, json, .. } => (verbose, json),
                _ => (false, false),
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&resources).expect("status serializes")
                );
                return ExitCode::SUCCESS;
            }
            for entry in resources {
                match (&entry.status, &entry.failure) {
                    (Some(status), _) => print!("{}", status.render(verbose)),
                    (None, Some(failure)) => println!("{} failed: {failure}", entry.name),
                    (None, None) => println!("{}", entry.name),
                }
                if verbose {
                    for frontend in &entry.frontends {
                        print!("{}", render_frontend(frontend));
                    }
                }
                println!();
            }
            ExitCode::SUCCESS
        }
        Ok(Reply::Done { message }) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Ok(other) => {
            eprintln!("ferrite-mirrord: unexpected answer {other:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ferrite-mirrord: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A volume's frontends, as `status -v` shows them.
fn render_frontend(frontend: &Frontend) -> String {
    let mut line = format!("  volume:{} nbd:{}", frontend.volume, frontend.nbd_uri);
    if let Some(uri) = &frontend.nbd_tcp_uri {
        line.push_str(&format!(" nbd-tcp:{uri}"));
    }
    match (&frontend.device_path, &frontend.device_unavailable) {
        (Some(path), _) => {
            line.push_str(&format!(" device:{path}"));
            if let Some(drbd) = &frontend.drbd_device_path {
                line.push_str(&format!(" drbd-device:{drbd}"));
            }
            if let Some(loop_device) = &frontend.loop_device {
                line.push_str(&format!(" ({loop_device})"));
            }
            line.push('\n');
        }
        (None, Some(reason)) => line.push_str(&format!("\n    no block device: {reason}\n")),
        (None, None) => line.push('\n'),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_verbose_names_each_volume_s_device_or_why_it_has_none() {
        let mut frontend = Frontend {
            volume: 0,
            nbd_uri: "nbd+unix:///?socket=/run/r0/0.nbd".into(),
            nbd_tcp_uri: None,
            device_path: Some("/dev/ferrite/r0/0".into()),
            drbd_device_path: Some("/dev/drbd/by-res/r0/0".into()),
            loop_device: Some("/dev/loop3".into()),
            device_unavailable: None,
        };
        assert_eq!(
            render_frontend(&frontend),
            "  volume:0 nbd:nbd+unix:///?socket=/run/r0/0.nbd device:/dev/ferrite/r0/0 \
             drbd-device:/dev/drbd/by-res/r0/0 (/dev/loop3)\n"
        );
        frontend.device_path = None;
        frontend.drbd_device_path = None;
        frontend.loop_device = None;
        frontend.device_unavailable = Some("/dev/fuse is missing".into());
        assert_eq!(
            render_frontend(&frontend),
            "  volume:0 nbd:nbd+unix:///?socket=/run/r0/0.nbd\n    no block device: \
             /dev/fuse is missing\n"
        );
    }
}
