//! The benchmark example, `nbd_file_server`, serves a real file correctly through both of its
//! I/O paths (io_uring and the blocking pool), aligned and unaligned requests alike: qemu-io
//! writes and reads back, and the file holds what was written after the server stops.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{noise, run, tool};

const MIB: usize = 1 << 20;

/// The example's binary, built by `cargo test` next to this test's own.
fn example() -> Option<PathBuf> {
    let binary = std::env::current_exe()
        .ok()?
        .parent()?
        .parent()?
        .join("examples")
        .join("nbd_file_server");
    if binary.is_file() {
        Some(binary)
    } else {
        eprintln!("SKIPPED: {} is not built", binary.display());
        None
    }
}

async fn serve_and_check(io: &str) -> anyhow::Result<()> {
    let (Some(server), Some(qemu_io)) = (example(), tool("qemu-io")) else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("volume.img");
    let socket = dir.path().join("nbd.sock");
    let original = noise(16 * MIB, 7);
    tokio::fs::write(&file, &original).await?;

    let mut child = tokio::process::Command::new(&server)
        .args(["--file", file.to_str().expect("UTF-8"), "--socket"])
        .arg(&socket)
        .args(["--export", "disk", "--io", io])
        .kill_on_drop(true)
        .spawn()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let uri = format!("nbd+unix:///disk?socket={}", socket.display());
    let commands = [
        "write -P 0x5a 0 1M",
        "write -P 0x11 3000 1000",
        "aio_write -P 0x22 2M 64k",
        "aio_write -P 0x23 3M 64k",
        "aio_flush",
        "write -z 4M 1M",
        "read -P 0x5a 0 3000",
        "read -P 0x11 3000 1000",
        "read -P 0x5a 4096 1044480",
        "read -P 0x22 2M 64k",
        "read -P 0x23 3M 64k",
        "read -P 0 4M 1M",
        "flush",
    ];
    let mut args = vec!["-f", "raw", &uri[..]];
    for command in &commands {
        args.extend(["-c", command]);
    }
    let output = run(&qemu_io, &args).await?;
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!text.contains("failed"), "{text}");

    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id().expect("running") as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
    assert!(status.success(), "the server stops cleanly: {status}");

    let contents = tokio::fs::read(&file).await?;
    assert!(contents[..3000].iter().all(|b| *b == 0x5a));
    assert!(contents[3000..4000].iter().all(|b| *b == 0x11));
    assert!(contents[4000..MIB].iter().all(|b| *b == 0x5a));
    assert_eq!(&contents[MIB..2 * MIB], &original[MIB..2 * MIB]);
    assert!(
        contents[2 * MIB..2 * MIB + 65536]
            .iter()
            .all(|b| *b == 0x22)
    );
    assert!(
        contents[3 * MIB..3 * MIB + 65536]
            .iter()
            .all(|b| *b == 0x23)
    );
    assert!(contents[4 * MIB..5 * MIB].iter().all(|b| *b == 0));
    assert_eq!(&contents[5 * MIB..], &original[5 * MIB..]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_server_serves_a_file_through_io_uring() -> anyhow::Result<()> {
    serve_and_check("uring").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_server_serves_a_file_through_the_blocking_pool() -> anyhow::Result<()> {
    serve_and_check("threads").await
}
