//! `ferrite-controller`: see `ferrite_controller::config::Args`.

use clap::Parser;
use ferrite_controller::config::{Args, Config};

/// The controller's allocator: mimalloc, not glibc's malloc. The controller's hot paths are
/// made of many small allocations that live for one request: building and serializing a view
/// of 200,000 resources, a node's digest, decoding a node's whole report. With glibc's malloc
/// the unpaged view of 100,000 × 2 with every node reporting answered in 439–449 ms at p50;
/// with mimalloc, in about a quarter less (docs/benchmarks.md, "the controller's allocator").
///
/// Built without transparent huge pages (the `no_thp` feature): with them, mimalloc backs
/// its arenas with 2 MiB pages, and a controller with 1,000 resources kept 101 MiB instead of
/// 25 MiB (glibc), each thread's first allocations faulting in a whole huge page. Without
/// them it keeps less than glibc's malloc did, once its load's scratch memory is returned.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_openapi {
        print!("{}", ferrite_controller::http::openapi_json());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    raise_descriptor_limit();
    let config = Config::from_args(&args)?;
    if let Some(backup) = &args.restore {
        return restore(&config, backup);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(ferrite_controller::run(config))
}

/// `--restore FILE`: replaces the stopped controller's store with a backup.
fn restore(config: &Config, backup: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let lock = ferrite_controller::DataDirLock::acquire(&config.data_dir)?;
    let restored = ferrite_store::backup::restore(&lock, backup).with_context(|| {
        format!(
            "restoring {} into {}",
            backup.display(),
            config.data_dir.display()
        )
    })?;
    println!(
        "Restored {} (cluster {}, revision {}) into {}; the store's epoch is now {}.",
        backup.display(),
        restored.restored.cluster_id,
        restored.restored.revision,
        config.data_dir.display(),
        restored.epoch
    );
    if let Some(previous) = restored.previous {
        println!("The replaced store was kept as {}.", previous.display());
    }
    println!(
        "Start the controller: satellites take the restored state; volumes it does not know are kept on their nodes as orphans ('ferrite node orphans')."
    );
    Ok(())
}

/// Raises the soft limit on open files to the hard limit. Every REST connection and satellite
/// link is a descriptor, and the usual soft default (1,024) is far below what the hard limit
/// allows; the REST server caps its connections at half of the result.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let soft = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        (libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0).then_some(soft)
    };
    match raised {
        Some(soft) => tracing::debug!(from = soft, to = limit.rlim_max, "raised RLIMIT_NOFILE"),
        None => tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot raise RLIMIT_NOFILE to its hard limit"
        ),
    }
}
