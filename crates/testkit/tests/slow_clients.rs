//! Slow and idle clients against a real controller process: some 19,900 connections that each
//! send part of a request head and then stall must neither keep `GET /health` from answering
//! within 100 ms, nor use up the controller's file descriptors or memory.
//!
//! The test raises its own soft `RLIMIT_NOFILE` to the hard limit (the controller inherits it),
//! opens the half-sent connections from one thread, and then, while a second thread keeps
//! replacing the oldest of them with new ones, probes `GET /health` on a fresh connection each
//! time. A third thread samples the controller's open descriptors (`/proc/<pid>/fd`) and memory
//! (`VmRSS`, and `VmHWM` for the peak) throughout.
//!
//! The probes begin once the kernel's accept queue for the controller's port has drained. A
//! client that connects faster than any server accepts fills that queue, and the kernel then
//! drops SYNs (the client resends after a second); no server code can prevent that, and it is
//! not what this test is about. The test reports how long the controller took to take the
//! flood in.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrite_testkit::{Binaries, ControllerProcess};
use socket2::{Domain, Protocol, Socket, Type};

/// Half-sent connections the test holds at once.
const HALF_SENT_CONNECTIONS: usize = 19_900;
/// Descriptors the test process keeps for everything else: the harness, the probes, the logs.
const OWN_DESCRIPTORS: u64 = 64;
/// What every half-sent connection sends: a request line and part of a header, never the end of
/// the head.
const HALF_SENT_HEAD: &[u8] = b"GET /v1/nodes HTTP/1.1\r\nHost: controller\r\nX-Stalled: ";
/// The controller's cap on open REST connections in this test (`--max-connections`).
const MAX_CONNECTIONS: usize = 1024;
/// Descriptors the controller may hold beyond the cap: its listener, database, logs, runtime,
/// and connections it has evicted but not yet closed.
const DESCRIPTOR_MARGIN: usize = 160;
/// The controller's peak resident memory must stay below this.
const PEAK_RSS_LIMIT_KIB: u64 = 150 * 1024;
/// `/health` probes, each on a fresh connection.
const HEALTH_PROBES: usize = 50;
/// Every probe must have its answer within this time, connecting included.
const HEALTH_DEADLINE: Duration = Duration::from_millis(100);
/// How long a probe waits before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening one half-sent connection may take before the flood gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The flood stops early after this many failed connects (the controller is not accepting).
const MAX_CONNECT_FAILURES: usize = 50;
/// Loopback source addresses the half-sent connections come from.
const SOURCE_ADDRESSES: usize = 16;
/// The pause between two replacements of a half-sent connection while probing: 1,000 per second.
const CHURN_INTERVAL: Duration = Duration::from_millis(1);
/// How often the sampler reads the controller's descriptors and memory.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(20);

/// How long the controller may take to accept the whole flood.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections the kernel has completed on the listening socket at `address` and the controller
/// has not yet accepted, from `/proc/net/tcp` (`rx_queue` of the socket in state LISTEN).
fn accept_queue(address: SocketAddr) -> Option<u64> {
    let SocketAddr::V4(address) = address else {
        return None;
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(address.ip().octets()),
        address.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(3) != Some(&"0A") {
            return None;
        }
        let (_, receive) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(receive, 16).ok()
    })
}

/// Raises the soft descriptor limit to the hard one; returns the hard limit.
fn raise_descriptor_limit() -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and has no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct; raising the soft limit up to the hard one is allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
    }
    Ok(limit.rlim_max)
}

/// Opens connection `index` and sends it a request head that never ends.
///
/// The connections come from [`SOURCE_ADDRESSES`] loopback addresses in turn: from one address,
/// the kernel's search for a free source port to the same destination grows slow once most of
/// the port range is taken, and the flood would measure that instead of the controller.
fn half_sent(address: SocketAddr, index: usize) -> std::io::Result<TcpStream> {
    let source = SocketAddr::from(([127, 1, 0, (index % SOURCE_ADDRESSES) as u8 + 1], 0));
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&source.into())?;
    socket.connect_timeout(&address.into(), CONNECT_TIMEOUT)?;
    let mut stream = TcpStream::from(socket);
    stream.write_all(HALF_SENT_HEAD)?;
    Ok(stream)
}

/// `GET /health` on a fresh connection; the time until the whole answer is in.
fn probe_health(address: SocketAddr) -> Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&address, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: controller\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let elapsed = started.elapsed();
    if !answer.starts_with(b"HTTP/1.1 200 ") {
        bail!(
            "/health answered {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    }
    Ok(elapsed)
}

/// The peaks of what the sampler saw.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    descriptors: usize,
    rss_kib: u64,
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn open_descriptors(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Samples the controller until `stop` is set.
fn sample(pid: u32, stop: Arc<AtomicBool>) -> Peaks {
    let mut peaks = Peaks::default();
    while !stop.load(Ordering::Relaxed) {
        if let Some(descriptors) = open_descriptors(pid) {
            peaks.descriptors = peaks.descriptors.max(descriptors);
        }
        if let Some(rss) = status_kib(pid, "VmRSS:") {
            peaks.rss_kib = peaks.rss_kib.max(rss);
        }
        std::thread::sleep(SAMPLE_INTERVAL);
    }
    peaks
}

/// Replaces the half-sent connections one by one, oldest first, until `stop` is set; returns
/// them and how many it replaced.
fn churn(
    address: SocketAddr,
    mut connections: Vec<TcpStream>,
    stop: Arc<AtomicBool>,
) -> (Vec<TcpStream>, usize) {
    let mut replaced = 0;
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) && !connections.is_empty() {
        // Close first, so the test never holds more descriptors than it did after the flood.
        let slot = next % connections.len();
        let _ = connections[slot].shutdown(std::net::Shutdown::Both);
        if let Ok(stream) = half_sent(address, next) {
            connections[slot] = stream;
            replaced += 1;
        }
        next += 1;
        std::thread::sleep(CHURN_INTERVAL);
    }
    (connections, replaced)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

#[test]
fn half_sent_connections_neither_block_health_nor_exhaust_the_controller() -> Result<()> {
    let hard_limit = raise_descriptor_limit()?;
    let needed = HALF_SENT_CONNECTIONS as u64 + OWN_DESCRIPTORS;
    if hard_limit < needed {
        eprintln!(
            "skipped: the hard RLIMIT_NOFILE is {hard_limit}, the test needs {needed} descriptors \
             (raise it with `ulimit -Hn` or LimitNOFILE=)"
        );
        return Ok(());
    }
    let binaries = Binaries::locate()?;
    let dir = tempfile::Builder::new()
        .prefix("ferrite-slow-clients-")
        .tempdir()?;
    let controller = ControllerProcess::start_with(
        &binaries,
        dir.path(),
        &["--max-connections".to_string(), MAX_CONNECTIONS.to_string()],
    )?;
    let pid = controller.pid().context("controller pid")?;
    let address = controller.listen;
    let rss_before_kib = status_kib(pid, "VmRSS:").unwrap_or(0);

    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop_sampling.clone();
        std::thread::spawn(move || sample(pid, stop))
    };

    // The flood: every connection the test can afford, each with a head that never ends.
    let flood_started = Instant::now();
    let mut connections = Vec::with_capacity(HALF_SENT_CONNECTIONS);
    let mut failures = 0;
    while connections.len() < HALF_SENT_CONNECTIONS && failures < MAX_CONNECT_FAILURES {
        match half_sent(address, connections.len() + failures) {
            Ok(stream) => connections.push(stream),
            Err(_) => failures += 1,
        }
    }
    let flood_time = flood_started.elapsed();
    let opened = connections.len();
    let mut queued = accept_queue(address);
    while queued.is_some_and(|queued| queued > 0) && flood_started.elapsed() < DRAIN_TIMEOUT {
        std::thread::sleep(Duration::from_millis(10));
        queued = accept_queue(address);
    }
    let taken_in = flood_started.elapsed();

    // The probes, while the half-sent connections keep being replaced.
    let stop_churn = Arc::new(AtomicBool::new(false));
    let churner = {
        let stop = stop_churn.clone();
        std::thread::spawn(move || churn(address, connections, stop))
    };
    let mut latencies = Vec::new();
    let mut probe_failures = Vec::new();
    for _ in 0..HEALTH_PROBES {
        match probe_health(address) {
            Ok(elapsed) => latencies.push(elapsed),
            Err(e) => probe_failures.push(format!("{e:#}")),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_churn.store(true, Ordering::Relaxed);
    let (connections, replaced) = churner.join().expect("churn thread");
    let rss_under_load_kib = status_kib(pid, "VmRSS:").unwrap_or(0);
    let peak_rss_kib = status_kib(pid, "VmHWM:").unwrap_or(0);
    stop_sampling.store(true, Ordering::Relaxed);
    let peaks = sampler.join().expect("sampler thread");
    drop(connections);

    latencies.sort();
    let summary = if latencies.is_empty() {
        "no /health probe succeeded".to_string()
    } else {
        format!(
            "/health over {} probes: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            latencies.len(),
            percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.9).as_secs_f64() * 1000.0,
            latencies[latencies.len() - 1].as_secs_f64() * 1000.0,
        )
    };
    eprintln!(
        "half-sent connections: {opened} opened in {:.1} s ({failures} connects failed), all \
         accepted after {:.1} s, {replaced} replaced while probing\n\
         controller: {} descriptors at most; RSS {:.1} MiB idle, {:.1} MiB at most sampled, \
         {:.1} MiB under load, peak (VmHWM) {:.1} MiB\n{summary}",
        flood_time.as_secs_f64(),
        taken_in.as_secs_f64(),
        peaks.descriptors,
        rss_before_kib as f64 / 1024.0,
        peaks.rss_kib as f64 / 1024.0,
        rss_under_load_kib as f64 / 1024.0,
        peak_rss_kib as f64 / 1024.0,
    );

    assert!(
        opened >= HALF_SENT_CONNECTIONS - MAX_CONNECT_FAILURES,
        "only {opened} half-sent connections could be opened"
    );
    assert_eq!(
        queued,
        Some(0),
        "the controller did not accept the flood within {DRAIN_TIMEOUT:?}"
    );
    assert!(
        probe_failures.is_empty(),
        "{} of {HEALTH_PROBES} /health probes failed, first: {}",
        probe_failures.len(),
        probe_failures[0]
    );
    let slowest = latencies[latencies.len() - 1];
    assert!(
        slowest < HEALTH_DEADLINE,
        "the slowest /health took {slowest:?}; {summary}"
    );
    assert!(
        peaks.descriptors < MAX_CONNECTIONS + DESCRIPTOR_MARGIN,
        "the controller held {} descriptors, the cap is {MAX_CONNECTIONS} connections",
        peaks.descriptors
    );
    assert!(
        peak_rss_kib < PEAK_RSS_LIMIT_KIB,
        "the controller's peak RSS was {peak_rss_kib} KiB"
    );
    // Still serving the API.
    let version = controller.rest().get("/v1/controller/version")?;
    assert_eq!(version.status, 200, "{}", version.json);
    Ok(())
}
