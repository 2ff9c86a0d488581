//! What the client tests share: a server with in-memory exports on a unix socket (and TCP on
//! loopback), the tools' lookup (a missing tool skips its test with a message; scripts/setup.sh
//! installs them all) and running them with a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ferrite_nbd::testing::MemoryVolume;
use ferrite_nbd::{ExportConfig, ExportName, Server, ServerConfig};
use tokio::net::{TcpListener, UnixListener};

/// How long one client tool may run.
pub const TOOL_DEADLINE: Duration = Duration::from_secs(120);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// The tool's path, or `None` after saying the test is skipped.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: `{name}` is not installed (scripts/setup.sh installs it)");
    }
    found
}

/// A running server with some exports.
pub struct Harness {
    pub server: Server<MemoryVolume>,
    pub socket: PathBuf,
    pub tcp_port: u16,
    pub dir: tempfile::TempDir,
}

/// An export to create: name, size, read-only.
pub struct Export<'a> {
    pub name: &'a str,
    pub volume: Arc<MemoryVolume>,
    pub read_only: bool,
}

impl Harness {
    pub async fn start(exports: Vec<Export<'_>>) -> anyhow::Result<Harness> {
        init_tracing();
        let server = Server::new(ServerConfig::default());
        for export in exports {
            server.add_export(
                ExportConfig::new(ExportName::new(export.name)?)
                    .read_only(export.read_only)
                    .description(format!("in-memory test volume {}", export.name)),
                export.volume,
            )?;
        }
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("nbd.sock");
        let unix = UnixListener::bind(&socket).context("binding the unix socket")?;
        let tcp = TcpListener::bind("127.0.0.1:0").await?;
        let tcp_port = tcp.local_addr()?.port();
        let serving = server.clone();
        tokio::spawn(async move { serving.serve_unix(unix).await });
        let serving = server.clone();
        tokio::spawn(async move { serving.serve_tcp(tcp).await });
        Ok(Harness {
            server,
            socket,
            tcp_port,
            dir,
        })
    }

    /// The export's NBD URI over the unix socket.
    pub fn uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.socket.display())
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Stops the server and waits for its connections to close.
    pub async fn stop(self) {
        self.server.shutdown();
        tokio::time::timeout(Duration::from_secs(10), self.server.closed())
            .await
            .expect("every connection closes");
    }
}

/// Runs a tool to completion within [`TOOL_DEADLINE`]; fails with its output if it fails.
pub async fn run(program: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let output = run_unchecked(program, args).await?;
    if !output.status.success() {
        bail!(
            "{} {} failed ({}):\n{}\n{}",
            program.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// Runs a tool to completion within [`TOOL_DEADLINE`], whatever its exit status.
pub async fn run_unchecked(program: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(TOOL_DEADLINE, child)
        .await
        .with_context(|| format!("{} did not finish in {TOOL_DEADLINE:?}", program.display()))?
        .with_context(|| format!("starting {}", program.display()))
}

/// Reproducible bytes that do not compress (xorshift).
pub fn noise(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}
