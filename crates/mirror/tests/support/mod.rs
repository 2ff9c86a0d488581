//! The harness of the fault tests: `ferrite-mirrord` as real processes (killed with SIGKILL,
//! restarted on the same state directory and backing file), an NBD client, an ack log that
//! records every write its writer saw acknowledged and checks a node's data against it, and a
//! small network of namespaces whose links can be cut.
//!
//! Waiting is always on a status condition read from the daemon's control socket, with a
//! deadline; nothing sleeps for a guessed time.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read as _, Seek as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::ports::free_port;
use ferrite_mirror::activity_log::AL_EXTENTS_DEFAULT;
use ferrite_mirror::backing::DEFAULT_PEER_SLOTS;
use ferrite_mirror::config::{Options, PeerConfig, ResourceConfig, VolumeConfig};
use ferrite_mirror::control::{Client, Paths, Reply, Request};
use ferrite_mirror::daemon::write_resource_file;
use ferrite_mirror::metadata::metadata_size;
use ferrite_mirror::status::ResourceStatus;
use ferrite_nbd::protocol::{CMD_READ, CMD_WRITE};
use ferrite_nbd::testing::{RawClient, request};
use tokio::net::UnixStream;

/// The block the writer writes and the checker reads.
pub const BLOCK: usize = 4096;

/// The resource every test uses.
pub const RESOURCE: &str = "r0";

/// How long a state is waited for before the test fails (generous: two cores run everything).
pub const SETTLE: Duration = Duration::from_secs(20);

/// Why a test cannot run here, printed when it skips.
pub fn skip(test: &str, reason: &str) {
    println!("SKIPPED {test}: {reason}");
    eprintln!("SKIPPED {test}: {reason}");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------------
// Members and their daemons

/// One member of the test resource: where it lives and how its peers reach it.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub node_id: u8,
    pub diskful: bool,
    /// Where it listens.
    pub listen: SocketAddr,
    /// How each other member reaches it, by that member's node-id (the same address for all on
    /// loopback; one per link in a namespace network).
    pub reached_at: BTreeMap<u8, SocketAddr>,
    /// The network namespace its daemon runs in, if any.
    pub netns: Option<String>,
}

/// The resource as a whole: its members and options.
pub struct Layout {
    /// Kept after the test when `FERRITE_FAULTS_KEEP` is set (to read the daemons' logs).
    pub dir: tempfile::TempDir,
    pub usable: u64,
    pub members: Vec<MemberSpec>,
    pub options: Options,
    pub secret: String,
}

impl Layout {
    /// `diskful` diskful members then `diskless` diskless ones, all on 127.0.0.1.
    pub fn loopback(diskful: u8, diskless: u8, usable: u64) -> Layout {
        let total = diskful + diskless;
        let ports: Vec<u16> = (0..total).map(|_| free_port()).collect();
        let members = (0..total)
            .map(|id| {
                let listen: SocketAddr =
                    format!("127.0.0.1:{}", ports[id as usize]).parse().unwrap();
                MemberSpec {
                    node_id: id,
                    diskful: id < diskful,
                    listen,
                    reached_at: (0..total).map(|other| (other, listen)).collect(),
                    netns: None,
                }
            })
            .collect();
        Layout::new(members, usable)
    }

    pub fn new(members: Vec<MemberSpec>, usable: u64) -> Layout {
        let dir = tempfile::Builder::new()
            .prefix("ferrite-mirror-faults-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let quorum = if members.len() >= 3 {
            "majority"
        } else {
            "off"
        };
        Layout {
            dir,
            usable,
            members,
            // As LINSTOR sets them: quorum from three members on, none with two.
            options: Options {
                quorum: quorum.into(),
                on_no_quorum: "io-error".into(),
                ..Options::default()
            },
            secret: "fault-test-secret".into(),
        }
    }

    pub fn node_dir(&self, node_id: u8) -> PathBuf {
        self.dir.path().join(format!("node{node_id}"))
    }

    pub fn backing(&self, node_id: u8) -> PathBuf {
        self.node_dir(node_id).join("backing.img")
    }

    /// The resource file of a member.
    pub fn config(&self, node_id: u8) -> ResourceConfig {
        let me = &self.members[node_id as usize];
        ResourceConfig {
            name: RESOURCE.into(),
            node_name: format!("node{node_id}"),
            node_id,
            listen: me.listen,
            secret: self.secret.clone(),
            peers: self
                .members
                .iter()
                .filter(|m| m.node_id != node_id)
                .map(|m| PeerConfig {
                    node_name: format!("node{}", m.node_id),
                    node_id: m.node_id,
                    address: m.reached_at[&node_id],
                    diskless: !m.diskful,
                })
                .collect(),
            volumes: vec![VolumeConfig {
                number: 0,
                minor: Some(1000),
                usable_bytes: self.usable,
                backing: me.diskful.then(|| self.backing(node_id)),
                new_volume: true,
            }],
            options: self.options.clone(),
        }
    }

    /// Creates every member's state directory, backing file and resource file.
    pub fn prepare(&self) -> Vec<Node> {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_ferrite-mirrord"));
        let size = self.usable
            + metadata_size(self.usable, DEFAULT_PEER_SLOTS, AL_EXTENTS_DEFAULT).unwrap();
        self.members
            .iter()
            .map(|m| {
                let dir = self.node_dir(m.node_id);
                std::fs::create_dir_all(&dir).unwrap();
                if m.diskful {
                    File::create(self.backing(m.node_id))
                        .unwrap()
                        .set_len(size)
                        .unwrap();
                }
                let paths = Paths::new(dir.join("state"));
                write_resource_file(&paths, &self.config(m.node_id)).unwrap();
                Node {
                    node_id: m.node_id,
                    binary: binary.clone(),
                    paths,
                    log: dir.join("mirrord.log"),
                    netns: m.netns.clone(),
                    child: None,
                }
            })
            .collect()
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        if std::env::var_os("FERRITE_FAULTS_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// A member's `ferrite-mirrord`, started, killed and restarted by the test.
pub struct Node {
    pub node_id: u8,
    binary: PathBuf,
    pub paths: Paths,
    /// Both output streams of every run of the daemon, appended.
    pub log: PathBuf,
    netns: Option<String>,
    child: Option<Child>,
}

impl Node {
    /// Starts the daemon (which brings up the resource from its file) and waits until it
    /// reports the resource.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "node{} already runs", self.node_id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = match &self.netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns]).arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("--state-dir")
            .arg(&self.paths.state_dir)
            .arg("run")
            // NBD only: a node killed with SIGKILL would leave a block device's FUSE mount.
            .arg("--no-block-devices")
            .arg("--log")
            .arg(std::env::var("FERRITE_FAULTS_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(command.spawn().unwrap());
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(status) = self.status().await {
                let _ = status;
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(exit)) = child.try_wait()
            {
                panic!(
                    "node{} exited at start ({exit}):\n{}",
                    self.node_id,
                    self.log_tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "node{} did not come up:\n{}",
                self.node_id,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no clean shutdown, no bitmap written, no demotion.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the node runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGKILL to each node before waiting for any: every member lost at the same moment (a
    /// power loss of them all), none left to notice the others go.
    pub fn kill9_together(nodes: &mut [Node]) {
        let mut children: Vec<Child> = nodes
            .iter_mut()
            .map(|node| node.child.take().expect("the node runs"))
            .collect();
        for child in &mut children {
            child.kill().unwrap();
        }
        for child in &mut children {
            child.wait().unwrap();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The resource's status, or `None` while the daemon does not answer.
    pub async fn status(&self) -> Option<ResourceStatus> {
        let mut client = Client::connect(&self.paths.control_socket()).await.ok()?;
        match client
            .call(&Request::Status {
                resource: Some(RESOURCE.into()),
            })
            .await
        {
            Ok(Reply::Status { resources }) => resources.into_iter().next()?.status,
            _ => None,
        }
    }

    /// Waits until the status satisfies `predicate`; fails the test with the last status and
    /// the daemon's log otherwise.
    pub async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&ResourceStatus) -> bool,
    ) -> ResourceStatus {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(status) = self.status().await {
                if predicate(&status) {
                    return status;
                }
                last = Some(status);
            }
            if Instant::now() >= deadline {
                panic!(
                    "node{}: {what}: not reached in {timeout:?}; last status: {last:#?}\nlog:\n{}",
                    self.node_id,
                    self.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn nbd_socket(&self) -> PathBuf {
        self.paths.nbd_socket(RESOURCE, 0)
    }

    /// The daemon's output so far, without terminal colours.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The log's length now, to look only at what comes after.
    pub fn log_mark(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    pub fn log_since(&self, mark: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let _ = file.seek(io::SeekFrom::Start(mark));
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Waits until a log line written after `mark` contains every one of `needles`.
    pub async fn wait_log(&self, mark: u64, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_since(mark);
            if let Some(line) = text
                .lines()
                .find(|line| needles.iter().all(|n| line.contains(n)))
            {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "node{}: no log line with {needles:?} in {timeout:?}; log since:\n{text}",
                self.node_id
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Status predicates

/// This member and every peer are UpToDate (or Diskless), every peer connected, nothing out of
/// sync, no split brain.
pub fn all_in_sync(status: &ResourceStatus, peers: usize) -> bool {
    status
        .volumes
        .iter()
        .all(|v| v.disk == "UpToDate" || v.disk == "Diskless")
        && status.error.is_none()
        && status
            .peers
            .iter()
            .filter(|p| p.connection == "Connected")
            .count()
            == peers
        && status.peers.iter().all(|p| {
            p.volumes.iter().all(|v| {
                (v.peer_disk == "UpToDate" || v.peer_disk == "Diskless")
                    && (v.replication == "Established" || v.replication == "Off")
                    && v.out_of_sync_kib == 0
            })
        })
}

pub fn peer(status: &ResourceStatus, node_id: u8) -> &ferrite_mirror::status::PeerStatus {
    status
        .peers
        .iter()
        .find(|p| p.node_id == node_id)
        .expect("a configured peer")
}

/// No peer is StandAlone and no error is reported: no split brain, no unrelated data.
pub fn no_split_brain(status: &ResourceStatus) -> bool {
    status.error.is_none() && status.peers.iter().all(|p| p.connection != "StandAlone")
}

// ---------------------------------------------------------------------------------------------
// NBD

/// An NBD connection to a volume's unix socket.
pub struct Nbd {
    client: RawClient<UnixStream>,
    pub size: u64,
    cookie: u64,
}

/// An NBD request's outcome: the error value the server answered (0 is success).
pub type NbdError = u32;

impl Nbd {
    pub async fn connect(socket: &Path) -> io::Result<Nbd> {
        let stream = UnixStream::connect(socket).await?;
        let (client, info) = RawClient::connect(stream, "").await?;
        Ok(Nbd {
            client,
            size: info.size,
            cookie: 0,
        })
    }

    /// Connects, retrying while the socket is not there yet.
    pub async fn connect_within(socket: &Path, timeout: Duration) -> Nbd {
        let deadline = Instant::now() + timeout;
        loop {
            match Nbd::connect(socket).await {
                Ok(nbd) => return nbd,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot connect to {}: {e}",
                        socket.display()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn next_cookie(&mut self) -> u64 {
        self.cookie += 1;
        self.cookie
    }

    pub async fn send_write(&mut self, offset: u64, data: &[u8]) -> io::Result<u64> {
        let cookie = self.next_cookie();
        self.client
            .send(
                request(CMD_WRITE, 0, cookie, offset, data.len() as u32),
                data,
            )
            .await?;
        Ok(cookie)
    }

    /// The next reply: cookie and error value.
    pub async fn reply(&mut self) -> io::Result<(u64, NbdError, Bytes)> {
        let reply = self.client.reply().await?;
        Ok((reply.cookie, reply.error, reply.data))
    }

    pub async fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<NbdError> {
        let cookie = self.send_write(offset, data).await?;
        let (answered, error, _) = self.reply().await?;
        assert_eq!(answered, cookie);
        Ok(error)
    }

    pub async fn read(&mut self, offset: u64, len: u32) -> io::Result<Result<Bytes, NbdError>> {
        let cookie = self.next_cookie();
        let reply = self
            .client
            .call(request(CMD_READ, 0, cookie, offset, len), &[])
            .await?;
        Ok(if reply.error == 0 {
            Ok(reply.data)
        } else {
            Err(reply.error)
        })
    }

    /// Ends the session politely (`NBD_CMD_DISC`), so the member sees its frontend close.
    pub async fn close(mut self) {
        let cookie = self.next_cookie();
        let _ = self
            .client
            .send(
                request(ferrite_nbd::protocol::CMD_DISC, 0, cookie, 0, 0),
                &[],
            )
            .await;
        let mut stream = self.client.into_stream();
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The ack log

const RECORD_MAGIC: &[u8; 8] = b"FERACKLG";

/// The content of block `block` written with sequence number `seq`: self-describing (magic,
/// block, sequence number, which node took it) with a fill derived from both and a checksum.
pub fn block_content(block: u64, seq: u64, node: u8) -> Vec<u8> {
    let mut buf = vec![0u8; BLOCK];
    buf[0..8].copy_from_slice(RECORD_MAGIC);
    buf[8..16].copy_from_slice(&block.to_le_bytes());
    buf[16..24].copy_from_slice(&seq.to_le_bytes());
    buf[24] = node;
    let mut state = block.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq ^ 0x5151;
    for chunk in buf[32..BLOCK - 4].chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let crc = crc32c::crc32c(&buf[..BLOCK - 4]);
    buf[BLOCK - 4..].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// What a block read back holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Zero,
    Record {
        seq: u64,
        node: u8,
    },
    /// Not a whole record of this block: torn, misplaced or foreign.
    Garbage(String),
}

pub fn decode_block(block: u64, buf: &[u8]) -> Found {
    if buf.iter().all(|b| *b == 0) {
        return Found::Zero;
    }
    if &buf[0..8] != RECORD_MAGIC {
        return Found::Garbage("no record magic".into());
    }
    let crc = u32::from_le_bytes(buf[BLOCK - 4..].try_into().unwrap());
    if crc32c::crc32c(&buf[..BLOCK - 4]) != crc {
        return Found::Garbage("checksum mismatch (torn block)".into());
    }
    let written_for = u64::from_le_bytes(buf[8..16].try_into().unwrap());
    if written_for != block {
        return Found::Garbage(format!("holds block {written_for}'s record"));
    }
    let seq = u64::from_le_bytes(buf[16..24].try_into().unwrap());
    let node = buf[24];
    if buf != block_content(block, seq, node) {
        return Found::Garbage("fill differs".into());
    }
    Found::Record { seq, node }
}

#[derive(Debug, Default, Clone)]
struct BlockHistory {
    /// The newest write of this block that was acknowledged.
    acked: Option<u64>,
    /// Writes issued after it that were not acknowledged (failed, or in flight when the
    /// connection died): any of them may or may not have landed.
    uncertain: Vec<u64>,
}

/// Every write issued and how it ended, by block. Writes to one block never overlap in time
/// (a block is not written again until its previous write was answered or abandoned), so "the
/// newest acknowledged version" of a block is well defined.
#[derive(Default)]
pub struct AckLog {
    blocks: Mutex<HashMap<u64, BlockHistory>>,
    in_flight: Mutex<HashSet<u64>>,
    seq: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
}

impl AckLog {
    pub fn new() -> Arc<AckLog> {
        Arc::new(AckLog::default())
    }

    /// Takes `block` for a new write (false if a write to it is in flight) and returns its
    /// sequence number.
    fn issue(&self, block: u64) -> Option<u64> {
        if !self.in_flight.lock().unwrap().insert(block) {
            return None;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.blocks
            .lock()
            .unwrap()
            .entry(block)
            .or_default()
            .uncertain
            .push(seq);
        Some(seq)
    }

    fn acknowledged(&self, block: u64, seq: u64) {
        let mut blocks = self.blocks.lock().unwrap();
        let history = blocks.get_mut(&block).unwrap();
        history.acked = Some(seq);
        history.uncertain.clear();
        drop(blocks);
        self.in_flight.lock().unwrap().remove(&block);
        self.acked.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, block: u64) {
        self.in_flight.lock().unwrap().remove(&block);
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The connection died with writes in flight: they stay uncertain.
    fn abandoned(&self, block: u64) {
        self.in_flight.lock().unwrap().remove(&block);
    }

    pub fn acked_count(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    pub fn failed_count(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Reads the whole volume through `socket` and checks every block against the log:
    /// the newest acknowledged version, or one of the unacknowledged writes issued after it;
    /// zeroes only where nothing was acknowledged. Returns the problems found (empty: all good).
    pub async fn verify(&self, socket: &Path) -> Vec<String> {
        let mut nbd = Nbd::connect_within(socket, SETTLE).await;
        let blocks = self.blocks.lock().unwrap().clone();
        let mut problems = Vec::new();
        const CHUNK: u32 = 1 << 20;
        let mut offset = 0u64;
        while offset < nbd.size {
            let len = CHUNK.min((nbd.size - offset) as u32);
            let data = match nbd.read(offset, len).await {
                Ok(Ok(data)) => data,
                Ok(Err(error)) => {
                    problems.push(format!(
                        "reading {len} bytes at {offset}: NBD error {error}"
                    ));
                    offset += u64::from(len);
                    continue;
                }
                Err(e) => {
                    problems.push(format!("reading at {offset}: {e}"));
                    break;
                }
            };
            for (i, buf) in data.chunks(BLOCK).enumerate() {
                let block = offset / BLOCK as u64 + i as u64;
                let history = blocks.get(&block).cloned().unwrap_or_default();
                let found = decode_block(block, buf);
                let fine = match &found {
                    Found::Zero => history.acked.is_none(),
                    Found::Record { seq, .. } => {
                        history.acked == Some(*seq) || history.uncertain.contains(seq)
                    }
                    Found::Garbage(_) => false,
                };
                if !fine && problems.len() < 20 {
                    problems.push(format!(
                        "block {block}: found {found:?}, acknowledged {:?}, uncertain {:?}",
                        history.acked, history.uncertain
                    ));
                }
            }
            offset += u64::from(len);
        }
        nbd.close().await;
        problems
    }
}

/// What a writer saw.
#[derive(Debug, Default, Clone)]
pub struct WriterReport {
    pub acked: u64,
    pub failed: u64,
    /// The NBD error values of failed writes, by value.
    pub errors: BTreeMap<u32, u64>,
    /// Why the connection ended, if it did not end because it was told to stop.
    pub connection_lost: Option<String>,
}

/// A writer: `depth` writes in flight on one NBD connection, distinct verifiable blocks
/// spread over the first `span` blocks of the volume, every outcome recorded in the log.
pub struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<WriterReport>,
}

impl Writer {
    pub async fn start(
        socket: &Path,
        log: Arc<AckLog>,
        node: u8,
        depth: usize,
        span: u64,
    ) -> Writer {
        let nbd = Nbd::connect_within(socket, SETTLE).await;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(write_loop(nbd, log, node, depth, span, stop.clone()));
        Writer { stop, task }
    }

    /// Stops issuing, waits for the answers of what is in flight, and reports.
    pub async fn stop(self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }

    /// Whether the writer ended by itself (its connection died).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

async fn write_loop(
    mut nbd: Nbd,
    log: Arc<AckLog>,
    node: u8,
    depth: usize,
    span: u64,
    stop: Arc<AtomicBool>,
) -> WriterReport {
    let blocks = span.min(nbd.size / BLOCK as u64);
    let mut report = WriterReport::default();
    let mut in_flight: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut random =
        0x2545_F491_4F6C_DD1Du64 ^ (u64::from(node) << 32) ^ log.seq.load(Ordering::Relaxed);
    let mut pause_until = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        while !stopping && in_flight.len() < depth && Instant::now() >= pause_until {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let block = random % blocks;
            let Some(seq) = log.issue(block) else {
                continue;
            };
            let data = block_content(block, seq, node);
            match nbd.send_write(block * BLOCK as u64, &data).await {
                Ok(cookie) => {
                    in_flight.insert(cookie, (block, seq));
                }
                Err(e) => {
                    log.abandoned(block);
                    report.connection_lost = Some(format!("sending: {e}"));
                    for (block, _) in in_flight.into_values() {
                        log.abandoned(block);
                    }
                    return report;
                }
            }
        }
        if in_flight.is_empty() {
            if stopping {
                nbd.close().await;
                return report;
            }
            // Paused after a failure: wait out the pause.
            tokio::time::sleep_until(pause_until.into()).await;
            continue;
        }
        match nbd.reply().await {
            Ok((cookie, error, _)) => {
                let Some((block, seq)) = in_flight.remove(&cookie) else {
                    report.connection_lost = Some(format!("a reply for unknown cookie {cookie}"));
                    return report;
                };
                if error == 0 {
                    log.acknowledged(block, seq);
                    report.acked += 1;
                } else {
                    log.failed(block);
                    report.failed += 1;
                    *report.errors.entry(error).or_default() += 1;
                    // Failing writes come back at once; do not spin on them.
                    pause_until = Instant::now() + Duration::from_millis(5);
                }
            }
            Err(e) => {
                report.connection_lost = Some(format!("reading a reply: {e}"));
                for (block, _) in in_flight.into_values() {
                    log.abandoned(block);
                }
                return report;
            }
        }
    }
}

/// Waits until the log has `count` more acknowledged writes than `from`.
pub async fn wait_acks(log: &AckLog, from: u64, count: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while log.acked_count() < from + count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} writes acknowledged in {timeout:?}",
            log.acked_count() - from
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A network of namespaces

/// One network namespace per member and one veth link per pair of members, so any pair can be
/// cut alone. Member `i` listens on `0.0.0.0:PORT` in its namespace; on the link between `i`
/// and `j` (`i < j`), `i` is `10.77.L.1` and `j` is `10.77.L.2`. Removed on drop.
pub struct Fabric {
    pub prefix: String,
    members: u8,
}

pub const FABRIC_PORT: u16 = 7000;

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "'ip {}' failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Fabric {
    /// Builds the namespaces and links, or says why it cannot.
    pub fn new(members: u8) -> Result<Fabric, String> {
        if !is_root() {
            return Err("network namespaces need root".into());
        }
        let prefix = format!("fmf{}", std::process::id());
        let fabric = Fabric { prefix, members };
        for i in 0..members {
            ip(&["netns", "add", &fabric.netns(i)])?;
            ip(&["-n", &fabric.netns(i), "link", "set", "lo", "up"])?;
        }
        for i in 0..members {
            for j in i + 1..members {
                let link = fabric.link(i, j);
                let (a, b) = (format!("l{link}a"), format!("l{link}b"));
                ip(&[
                    "link",
                    "add",
                    &a,
                    "netns",
                    &fabric.netns(i),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &b,
                    "netns",
                    &fabric.netns(j),
                ])?;
                for (ns, dev, host) in [(i, &a, 1), (j, &b, 2)] {
                    let address = format!("10.77.{link}.{host}/24");
                    ip(&["-n", &fabric.netns(ns), "addr", "add", &address, "dev", dev])?;
                    ip(&["-n", &fabric.netns(ns), "link", "set", dev, "up"])?;
                }
            }
        }
        Ok(fabric)
    }

    pub fn netns(&self, member: u8) -> String {
        format!("{}-n{member}", self.prefix)
    }

    fn link(&self, i: u8, j: u8) -> u8 {
        let (i, j) = (i.min(j), i.max(j));
        i * 8 + j
    }

    /// The members, each reached by each other on their common link.
    pub fn members(&self, diskful: u8) -> Vec<MemberSpec> {
        (0..self.members)
            .map(|id| MemberSpec {
                node_id: id,
                diskful: id < diskful,
                listen: format!("0.0.0.0:{FABRIC_PORT}").parse().unwrap(),
                reached_at: (0..self.members)
                    .filter(|other| *other != id)
                    .map(|other| {
                        let host = if id < other { 1 } else { 2 };
                        let address =
                            format!("10.77.{}.{host}:{FABRIC_PORT}", self.link(id, other));
                        (other, address.parse().unwrap())
                    })
                    .collect(),
                netns: Some(self.netns(id)),
            })
            .collect()
    }

    /// Cuts (or restores) the link between `i` and `j`: its far end goes down, so nothing passes
    /// either way and neither side is told (packets are dropped, as by a failed switch).
    pub fn set_link(&self, i: u8, j: u8, up: bool) {
        let link = self.link(i, j);
        let (ns, dev) = (self.netns(i.max(j)), format!("l{link}b"));
        ip(&[
            "-n",
            &ns,
            "link",
            "set",
            &dev,
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }

    /// Isolates member `i` from every other member (or joins it again).
    pub fn isolate(&self, i: u8, isolated: bool) {
        for j in (0..self.members).filter(|j| *j != i) {
            self.set_link(i, j, !isolated);
        }
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        for i in 0..self.members {
            let _ = ip(&["netns", "del", &self.netns(i)]);
        }
    }
}
