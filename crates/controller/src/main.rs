//! `ferrite-controller`: see `ferrite_controller::config::Args`.

use clap::Parser;
use ferrite_controller::config::{Args, Config};

fn main() -> anyhow::Result<()> {
    tune_allocator();
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

/// Keeps the controller's memory close to what it uses. glibc gives every thread that allocates
/// its own arena, and after a large buffer (a 15 MiB resource view) is freed it raises its mmap
/// threshold so the next ones come from, and stay in, the heap: a controller with 10,000
/// resources grew from 86 to 155 MiB over a hundred full views. Two arenas and a fixed 1 MiB
/// threshold (large buffers are mapped and returned on free) keep it near its live size.
///
/// The trim threshold is fixed too, at 16 MiB: with glibc's default (128 KiB once the mmap
/// threshold is set) every piece of a large view (about 560 KiB) was built in memory given back
/// to the kernel when the piece before it was freed, so each byte of the 108 MiB view of
/// 200,000 resources was a fresh page: 40,000 page faults per view, and a fifth of its time.
/// What the heap keeps is bounded by the threshold per arena.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
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
