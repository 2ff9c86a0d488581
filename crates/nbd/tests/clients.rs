//! The server against real NBD clients: nbdinfo, qemu-io, nbdcopy and fio's nbd engine (libnbd
//! and qemu's own client), over the unix socket and TCP, with in-memory volumes; and a client
//! that sends garbage.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Export, Harness, noise, run, run_unchecked, tool};
use ferrite_nbd::testing::MemoryVolume;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1 << 20;

fn volume(size: usize) -> Arc<MemoryVolume> {
    Arc::new(MemoryVolume::new(size))
}

fn export<'a>(name: &'a str, volume: &Arc<MemoryVolume>) -> Export<'a> {
    Export {
        name,
        volume: Arc::clone(volume),
        read_only: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_sees_size_block_sizes_flags_and_every_export() -> anyhow::Result<()> {
    let Some(nbdinfo) = tool("nbdinfo") else {
        return Ok(());
    };
    let disk = volume(64 * MIB);
    let cdrom = volume(MIB);
    let harness = Harness::start(vec![
        export("disk", &disk),
        Export {
            name: "cdrom",
            volume: Arc::clone(&cdrom),
            read_only: true,
        },
    ])
    .await?;

    let output = run(&nbdinfo, &["--json", &harness.uri("disk")]).await?;
    let info: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(info["protocol"], "newstyle-fixed");
    assert_eq!(info["structured"], false, "simple replies only");
    let disk_info = &info["exports"][0];
    assert_eq!(disk_info["export-name"], "disk");
    assert_eq!(disk_info["export-size"], 64 * MIB);
    assert_eq!(disk_info["description"], "in-memory test volume disk");
    assert_eq!(disk_info["block_size_minimum"], 1);
    assert_eq!(disk_info["block_size_preferred"], 4096);
    assert_eq!(disk_info["block_size_maximum"], 32 * MIB);
    for flag in [
        "can_flush",
        "can_fua",
        "can_trim",
        "can_zero",
        "can_multi_conn",
    ] {
        assert_eq!(disk_info[flag], true, "{flag}");
    }
    assert_eq!(disk_info["is_read_only"], false);

    let output = run(&nbdinfo, &["--json", &harness.uri("cdrom")]).await?;
    let info: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(info["exports"][0]["is_read_only"], true);
    assert_eq!(info["exports"][0]["export-size"], MIB);

    // Over TCP too.
    let tcp = format!("nbd://127.0.0.1:{}/disk", harness.tcp_port);
    let output = run(&nbdinfo, &["--size", &tcp]).await?;
    assert_eq!(
        String::from_utf8(output.stdout)?.trim(),
        (64 * MIB).to_string()
    );

    let output = run(&nbdinfo, &["--list", "--json", &harness.uri("")]).await?;
    let list: Value = serde_json::from_slice(&output.stdout)?;
    let mut names: Vec<&str> = list["exports"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|export| export["export-name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["cdrom", "disk"]);

    // An export that does not exist is an error, not a hang.
    let output = run_unchecked(&nbdinfo, &["--size", &harness.uri("nope")]).await?;
    assert!(!output.status.success());

    assert_eq!(disk.sessions(), 0);
    assert!(disk.sessions_opened() >= 2);
    harness.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_writes_patterns_and_reads_them_back() -> anyhow::Result<()> {
    let Some(qemu_io) = tool("qemu-io") else {
        return Ok(());
    };
    let disk = volume(16 * MIB);
    let cdrom = volume(MIB);
    let harness = Harness::start(vec![
        export("disk", &disk),
        Export {
            name: "cdrom",
            volume: Arc::clone(&cdrom),
            read_only: true,
        },
    ])
    .await?;
    let uri = harness.uri("disk");
    let commands = [
        "write -P 0xab 0 1M",
        "write -P 0xcd 1M 4k",
        "write -P 0x11 3000 1000", // not aligned
        "write -z 2M 64k",
        "write -P 0x22 4M 8M", // one request of 8 MiB
        "aio_write -P 0x33 8M 64k",
        "aio_write -P 0x44 9M 64k",
        "aio_flush",
        "discard 12M 1M",
        "read -P 0xab 0 3000",
        "read -P 0x11 3000 1000",
        "read -P 0xab 4000 1044576",
        "read -P 0xcd 1M 4k",
        "read -P 0x22 4M 4M",
        "read -P 0 2M 64k",
        "read -P 0x33 8M 64k",
        "read -P 0x44 9M 64k",
        "flush",
    ];
    let mut args = vec!["-f", "raw", &uri[..]];
    for command in &commands {
        args.extend(["-c", command]);
    }
    let output = run(&qemu_io, &args).await?;
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert!(
        !stdout.contains("Pattern verification failed")
            && !stderr.contains("Pattern verification failed"),
        "{stdout}{stderr}"
    );
    let contents = disk.contents();
    assert!(contents[..3000].iter().all(|b| *b == 0xab));
    assert!(contents[3000..4000].iter().all(|b| *b == 0x11));
    assert!(contents[MIB..MIB + 4096].iter().all(|b| *b == 0xcd));
    assert!(
        contents[8 * MIB..8 * MIB + 65536]
            .iter()
            .all(|b| *b == 0x33)
    );
    assert!(contents[4 * MIB..8 * MIB].iter().all(|b| *b == 0x22));
    assert!(
        contents[9 * MIB..9 * MIB + 65536]
            .iter()
            .all(|b| *b == 0x44)
    );

    // A read-only export refuses writes (EPERM) and still reads.
    let uri = harness.uri("cdrom");
    let output = run_unchecked(
        &qemu_io,
        &["-f", "raw", "-r", &uri, "-c", "read -P 0 0 64k"],
    )
    .await?;
    assert!(output.status.success(), "{output:?}");
    let output = run_unchecked(&qemu_io, &["-f", "raw", &uri, "-c", "write -P 1 0 4k"]).await?;
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    // qemu sees NBD_FLAG_READ_ONLY and refuses to open the export for writing.
    assert!(
        !output.status.success()
            && ["read-only", "not permitted", "Permission denied"]
                .iter()
                .any(|refusal| text.contains(refusal)),
        "a write to a read-only export fails: {text}"
    );
    assert!(cdrom.contents().iter().all(|b| *b == 0));

    harness.stop().await;
    assert_eq!(disk.sessions(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdcopy_copies_a_random_file_in_and_out() -> anyhow::Result<()> {
    let Some(nbdcopy) = tool("nbdcopy") else {
        return Ok(());
    };
    let size = 24 * MIB;
    let disk = volume(size);
    let harness = Harness::start(vec![export("disk", &disk)]).await?;
    let source = harness.path("source.img");
    let copy = harness.path("copy.img");
    let data = noise(size, 0x5eed);
    tokio::fs::write(&source, &data).await?;

    // In: several connections (the export allows multi-conn) and many requests in flight.
    run(
        &nbdcopy,
        &[
            "--connections=4",
            "--requests=32",
            "--flush",
            source.to_str().expect("a UTF-8 path"),
            &harness.uri("disk"),
        ],
    )
    .await?;
    assert!(disk.contents() == data, "the volume holds the file");
    assert!(disk.flushes() >= 1, "nbdcopy --flush flushes at the end");

    // Out, over TCP.
    let tcp = format!("nbd://127.0.0.1:{}/disk", harness.tcp_port);
    run(
        &nbdcopy,
        &[&tcp, copy.to_str().expect("a UTF-8 path"), "--requests=64"],
    )
    .await?;
    assert!(
        tokio::fs::read(&copy).await? == data,
        "the copy equals the file"
    );

    harness.stop().await;
    assert_eq!(disk.sessions(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fio_random_writes_verify_at_queue_depth_32_with_four_jobs() -> anyhow::Result<()> {
    let Some(fio) = tool("fio") else {
        return Ok(());
    };
    let jobs = 4;
    let per_job = 8 * MIB;
    let disk = volume(jobs * per_job);
    let harness = Harness::start(vec![export("disk", &disk)]).await?;
    let uri = harness.uri("disk");
    let size = per_job.to_string();
    let output = run(
        &fio,
        &[
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=32",
            &format!("--numjobs={jobs}"),
            &format!("--size={size}"),
            &format!("--offset_increment={size}"),
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--group_reporting",
            "--output-format=json",
        ],
    )
    .await?;
    let stdout = String::from_utf8(output.stdout)?;
    // The nbd engine prints a line before the JSON report.
    let report: Value = serde_json::from_str(&stdout[stdout.find('{').unwrap_or(0)..])?;
    let job = &report["jobs"][0];
    assert_eq!(job["error"], 0, "{job}");
    assert_eq!(
        job["write"]["io_bytes"],
        jobs * per_job,
        "every block written once"
    );
    assert_eq!(
        job["read"]["io_bytes"],
        jobs * per_job,
        "and read back to verify"
    );
    assert!(disk.most_calls_in_flight() > 1, "requests ran concurrently");

    harness.stop().await;
    assert_eq!(disk.sessions(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_client_is_disconnected_and_the_server_serves_on() -> anyhow::Result<()> {
    let disk = volume(MIB);
    let harness = Harness::start(vec![export("disk", &disk)]).await?;
    for seed in 1..=8u64 {
        let mut stream = tokio::net::UnixStream::connect(&harness.socket).await?;
        // Whatever the server says, answer with noise: unknown client flags or a bad option
        // magic, and in any case a hang-up from the server.
        let garbage = noise(4096 * seed as usize, seed);
        let _ = stream.write_all(&garbage).await;
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("the server hangs up")
            .ok();
        assert!(
            rest.len() <= 18,
            "only the greeting came back: {} bytes",
            rest.len()
        );
    }
    // An HTTP client over TCP.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", harness.tcp_port)).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the server hangs up")
        .ok();

    tokio::time::timeout(Duration::from_secs(10), async {
        while harness.server.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no connection left behind");

    if let Some(nbdinfo) = tool("nbdinfo") {
        let output = run(&nbdinfo, &["--size", &harness.uri("disk")]).await?;
        assert_eq!(String::from_utf8(output.stdout)?.trim(), MIB.to_string());
    }
    assert_eq!(disk.sessions(), 0);
    harness.stop().await;
    Ok(())
}
