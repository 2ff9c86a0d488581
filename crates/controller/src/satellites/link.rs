//! One satellite link: connect, handshake, full sync, deltas, reports, keep-alive, reconnect.
//!
//! ```text
//!   Offline ──dial+Hello──▶ Connected ──Applied(full)──▶ Online
//!      ▲                        │                          │
//!      └──── backoff ◀──────────┴── error / silence / ─────┘
//!                                   Reconnect command
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ferrite_proto::{
    ControllerMessage, FrameError, FrameReader, FrameWriter, HeldState, PROTOCOL_VERSION,
    PoolReport, Refusal, SAME_STATE_VERSION, SatelliteMessage, decode, encode, frame_reader,
    frame_writer, is_compatible, read_body, read_frame, write_body, write_frame,
};
use ferrite_types::{ConnectionStatus, NodeName};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, info, info_span, warn};

use super::{LinkCommand, Progress, Shared, desired};

/// A satellite's connection, framed each way, with the state its `Welcome` said it holds.
struct Connection {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
    holds: Option<HeldState>,
}

/// Why a connection attempt failed, and the status the node shows for it.
struct ConnectFailure {
    status: ConnectionStatus,
    message: String,
}

pub(super) async fn run(
    shared: Arc<Shared>,
    node: NodeName,
    mut commands: mpsc::UnboundedReceiver<LinkCommand>,
    progress: watch::Sender<Progress>,
) {
    let span = info_span!("satellite", node = %node);
    async move {
        let mut backoff = shared.timeouts.reconnect_min;
        let mut session = 0u64;
        loop {
            let address = {
                let cluster = shared.cluster.read().expect("cluster lock");
                match cluster.node(&node) {
                    Some(n) => n.satellite_address(),
                    None => return,
                }
            };
            let Some(address) = address else {
                set_offline(
                    &shared,
                    &node,
                    &progress,
                    session,
                    ConnectionStatus::NoStltConn,
                    "the node has no net interface",
                );
                if !wait_backoff(&mut commands, shared.timeouts.reconnect_max).await {
                    return;
                }
                continue;
            };
            session += 1;
            match connect(&shared, &node, address).await {
                Ok((connection, capabilities, hostname)) => {
                    info!(%address, "satellite connected");
                    backoff = shared.timeouts.reconnect_min;
                    {
                        let mut runtime = shared.runtime.write().expect("runtime lock");
                        let entry = runtime.entry(node.clone()).or_default();
                        entry.status = ConnectionStatus::Connected;
                        entry.last_error = None;
                        entry.capabilities = Some(capabilities);
                        entry.hostname = Some(hostname);
                    }
                    progress.send_replace(Progress {
                        session,
                        online: true,
                        applied: None,
                        error: None,
                        not_applied: None,
                    });
                    let reason =
                        run_session(&shared, &node, connection, &mut commands, &progress).await;
                    match reason {
                        SessionEnd::Stopped => return,
                        SessionEnd::Lost(reason) => {
                            warn!(%reason, "satellite connection ended");
                            set_offline(
                                &shared,
                                &node,
                                &progress,
                                session,
                                ConnectionStatus::Offline,
                                &reason,
                            );
                        }
                    }
                }
                Err(failure) => {
                    set_offline(
                        &shared,
                        &node,
                        &progress,
                        session,
                        failure.status,
                        &failure.message,
                    );
                }
            }
            if !wait_backoff(&mut commands, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(shared.timeouts.reconnect_max);
        }
    }
    .instrument(span)
    .await
}

fn set_offline(
    shared: &Shared,
    node: &NodeName,
    progress: &watch::Sender<Progress>,
    session: u64,
    status: ConnectionStatus,
    message: &str,
) {
    {
        let mut runtime = shared.runtime.write().expect("runtime lock");
        let entry = runtime.entry(node.clone()).or_default();
        if entry.last_error.as_deref() != Some(message) {
            info!(status = %status, reason = message, "satellite not online");
        }
        entry.status = status;
        entry.last_error = Some(message.to_string());
    }
    progress.send_replace(Progress {
        session,
        online: false,
        applied: None,
        error: Some(message.to_string()),
        not_applied: None,
    });
}

/// Waits before the next attempt while still answering commands. Returns false when the link
/// should end.
async fn wait_backoff(
    commands: &mut mpsc::UnboundedReceiver<LinkCommand>,
    wait: std::time::Duration,
) -> bool {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return true,
            command = commands.recv() => match command {
                None => return false,
                Some(LinkCommand::Reconnect) => return true,
                Some(LinkCommand::CheckPool(_, reply)) => {
                    let _ = reply.send(Err("the satellite is not connected".to_string()));
                }
                Some(LinkCommand::Command(_, reply)) => {
                    let _ = reply.send(Err("the satellite is not connected".to_string()));
                }
                Some(LinkCommand::Push(_)) => {}
            }
        }
    }
}

async fn connect(
    shared: &Shared,
    node: &NodeName,
    address: SocketAddr,
) -> Result<(Connection, ferrite_proto::Capabilities, String), ConnectFailure> {
    let offline = |message: String| ConnectFailure {
        status: ConnectionStatus::Offline,
        message,
    };
    let attempt = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| offline(format!("cannot connect to {address}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let (mut reader, mut writer) = (frame_reader(reader), frame_writer(writer));
        let (cluster_id, node_uuid) = {
            let cluster = shared.cluster.read().expect("cluster lock");
            (
                cluster.cluster_id.clone(),
                cluster
                    .node(node)
                    .map(|n| n.uuid.clone())
                    .unwrap_or_default(),
            )
        };
        let hello = ControllerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id,
            node_name: node.to_string(),
            node_uuid,
            controller_version: shared.controller_version.clone(),
        };
        write_frame(&mut writer, &hello)
            .await
            .map_err(|e| offline(format!("handshake with {address} failed: {e}")))?;
        let reply: SatelliteMessage = read_frame(&mut reader)
            .await
            .map_err(|e| offline(format!("handshake with {address} failed: {e}")))?;
        match reply {
            SatelliteMessage::Welcome {
                protocol_version,
                hostname,
                capabilities,
                holds,
                ..
            } => {
                if !is_compatible(protocol_version) {
                    return Err(ConnectFailure {
                        status: ConnectionStatus::VersionMismatch,
                        message: format!(
                            "satellite speaks protocol {protocol_version}, controller {PROTOCOL_VERSION}"
                        ),
                    });
                }
                // Only a satellite that takes `ApplySameState` says what it holds.
                let holds = holds.filter(|_| protocol_version >= SAME_STATE_VERSION);
                Ok((
                    Connection {
                        reader,
                        writer,
                        holds,
                    },
                    capabilities,
                    hostname,
                ))
            }
            SatelliteMessage::Refused { reason } => Err(ConnectFailure {
                status: match reason {
                    Refusal::VersionMismatch { .. } => ConnectionStatus::VersionMismatch,
                    Refusal::NodeNameMismatch { .. } => ConnectionStatus::HostnameMismatch,
                    Refusal::OtherController { .. } | Refusal::AlreadyConnected => {
                        ConnectionStatus::OtherController
                    }
                },
                message: format!("satellite refused the connection: {reason}"),
            }),
            other => Err(offline(format!(
                "satellite answered the handshake with an unexpected {}",
                message_name(&other)
            ))),
        }
    };
    match tokio::time::timeout(shared.timeouts.connect, attempt).await {
        Ok(result) => result,
        Err(_) => Err(offline(format!(
            "no answer from {address} within {} s",
            shared.timeouts.connect.as_secs()
        ))),
    }
}

fn message_name(message: &SatelliteMessage) -> &'static str {
    match message {
        SatelliteMessage::Welcome { .. } => "Welcome",
        SatelliteMessage::Refused { .. } => "Refused",
        SatelliteMessage::Applied { .. } => "Applied",
        SatelliteMessage::NotApplied { .. } => "NotApplied",
        SatelliteMessage::NeedFullState { .. } => "NeedFullState",
        SatelliteMessage::Report { .. } => "Report",
        SatelliteMessage::PoolChecked { .. } => "PoolChecked",
        SatelliteMessage::CommandDone { .. } => "CommandDone",
        SatelliteMessage::Pong => "Pong",
    }
}

/// Whether a report confirms any deletion.
fn confirms_deletions(report: &ferrite_proto::NodeReport) -> bool {
    !report.deleted_volumes.is_empty()
        || !report.deleted_resources.is_empty()
        || !report.deleted_snapshots.is_empty()
}

/// Whether a report has a replicated resource in use (a tiebreaker among them is kept).
fn reports_in_use(report: &ferrite_proto::NodeReport) -> bool {
    report.replication.iter().any(|r| r.in_use)
}

enum SessionEnd {
    /// The controller stopped the link (node deleted).
    Stopped,
    Lost(String),
}

async fn send(
    writer: &mut FrameWriter<OwnedWriteHalf>,
    message: &ControllerMessage,
) -> Result<(), SessionEnd> {
    write_frame(writer, message)
        .await
        .map_err(|e| SessionEnd::Lost(format!("sending to the satellite failed: {e}")))
}

/// Builds `node`'s full state, sends it once every change it holds is on disk, and returns its
/// generation. It is built and encoded on a blocking thread, not on the runtime's workers,
/// which serve the REST requests, and with a permit of `Shared::bulk`: when a controller starts
/// every node asks for its state at once, and at 100,000 × 2 on 16 nodes each is 12,500
/// resources and 2.7 MiB of JSON, tens of milliseconds of CPU without an await.
///
/// When the satellite said it `holds` a state with the full state's content, under a stamp no
/// newer, `ApplySameState` goes instead: the same answer, without the JSON each way. A state
/// held under a newer stamp gets the full state, which the satellite refuses as it should.
async fn send_full_state(
    shared: &Shared,
    node: &NodeName,
    holds: Option<HeldState>,
    writer: &mut FrameWriter<OwnedWriteHalf>,
) -> Result<u64, SessionEnd> {
    let cluster = shared.cluster.clone();
    let for_node = node.clone();
    let permit = shared
        .bulk
        .clone()
        .acquire_owned()
        .await
        .expect("the bulk work semaphore is never closed");
    let (generation, same, body, built) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let started = std::time::Instant::now();
        let cluster = cluster.read().expect("cluster lock");
        let stamp = desired::full_state_stamp(&cluster);
        // The digest is made without the state held whole; the state only when it is sent.
        let same = holds.filter(|held| {
            held.stamp <= stamp && held.digest == desired::full_state_digest(&cluster, &for_node)
        });
        let message = match &same {
            Some(held) => ControllerMessage::ApplySameState {
                epoch: stamp.epoch,
                generation: stamp.generation,
                digest: held.digest.clone(),
            },
            None => {
                let full = desired::full_state(&cluster, &for_node);
                drop(cluster);
                ControllerMessage::ApplyState(full)
            }
        };
        let body = encode(&message);
        (stamp.generation, same.is_some(), body, started.elapsed())
    })
    .await
    .map_err(|e| SessionEnd::Lost(format!("building the full state failed: {e}")))?;
    let body =
        body.map_err(|e| SessionEnd::Lost(format!("encoding the full state failed: {e}")))?;
    // Built from the graph, it may hold a change whose sync is under way: it goes out once
    // that change is on disk.
    shared
        .durable
        .clone()
        .wait_for(|durable| *durable >= generation)
        .await
        .map_err(|_| SessionEnd::Lost("the controller is stopping".to_string()))?;
    let built_ms = built.as_secs_f64() * 1e3;
    if same {
        info!(
            generation,
            built_ms, "the satellite holds the full state; sent its stamp only"
        );
    } else {
        info!(generation, built_ms, "the full state is built");
    }
    write_body(writer, body)
        .await
        .map_err(|e| SessionEnd::Lost(format!("sending to the satellite failed: {e}")))?;
    Ok(generation)
}

/// Frames at least this large are decoded on a blocking thread (a node's whole report, 12,500
/// volumes at 100,000 × 2 on 16 nodes), the rest (pings, deltas' answers) where they are read.
const DECODE_ASIDE_BYTES: usize = 64 * 1024;

/// Reads and decodes the satellite's next message; see [`DECODE_ASIDE_BYTES`]. A large one
/// waits for a permit of `bulk` first (`Shared::bulk`).
async fn read_message(
    reader: &mut FrameReader<OwnedReadHalf>,
    bulk: &Arc<tokio::sync::Semaphore>,
) -> Result<SatelliteMessage, FrameError> {
    let body = read_body(reader).await?;
    if body.len() < DECODE_ASIDE_BYTES {
        return decode(&body);
    }
    let permit = bulk
        .clone()
        .acquire_owned()
        .await
        .expect("the bulk work semaphore is never closed");
    match tokio::task::spawn_blocking(move || {
        let _permit = permit;
        decode(&body)
    })
    .await
    {
        Ok(message) => message,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(FrameError::Closed),
    }
}

async fn run_session(
    shared: &Shared,
    node: &NodeName,
    connection: Connection,
    commands: &mut mpsc::UnboundedReceiver<LinkCommand>,
    progress: &watch::Sender<Progress>,
) -> SessionEnd {
    let Connection {
        mut reader,
        mut writer,
        holds,
    } = connection;
    let (frames_tx, mut frames) = mpsc::channel(64);
    let bulk = shared.bulk.clone();
    // Frames are read on their own task and queued, so the session loop selects on queues only.
    let reader_task = tokio::spawn(async move {
        loop {
            let frame = read_message(&mut reader, &bulk).await;
            let end = frame.is_err();
            if frames_tx.send(frame).await.is_err() || end {
                break;
            }
        }
    });
    let end = session_loop(
        shared,
        node,
        holds,
        &mut writer,
        &mut frames,
        commands,
        progress,
    )
    .await;
    reader_task.abort();
    end
}

async fn session_loop(
    shared: &Shared,
    node: &NodeName,
    holds: Option<HeldState>,
    writer: &mut FrameWriter<OwnedWriteHalf>,
    frames: &mut mpsc::Receiver<Result<SatelliteMessage, ferrite_proto::FrameError>>,
    commands: &mut mpsc::UnboundedReceiver<LinkCommand>,
    progress: &watch::Sender<Progress>,
) -> SessionEnd {
    let mut sent_generation = match send_full_state(shared, node, holds, writer).await {
        Ok(generation) => generation,
        Err(end) => return end,
    };
    let mut pending_checks: HashMap<u64, oneshot::Sender<Result<PoolReport, String>>> =
        HashMap::new();
    let mut pending_commands: HashMap<u64, oneshot::Sender<Result<String, String>>> =
        HashMap::new();
    let mut next_request = 1u64;
    let mut ping = tokio::time::interval(shared.timeouts.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence_limit = shared.timeouts.ping_interval * shared.timeouts.ping_misses;
    let mut last_heard = Instant::now();
    // Set when the satellite could not take a state: the full state is sent again at the next
    // ping, so the node converges once the cause on the node is fixed.
    let mut resend_full = false;

    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return SessionEnd::Stopped,
                Some(LinkCommand::Reconnect) => return SessionEnd::Lost("reconnect requested".to_string()),
                Some(LinkCommand::Push(mut delta)) => {
                    if delta.generation > sent_generation {
                        delta.base_generation = Some(sent_generation);
                        sent_generation = delta.generation;
                        if let Err(end) = send(writer, &ControllerMessage::ApplyState(delta)).await {
                            return end;
                        }
                    }
                }
                Some(LinkCommand::CheckPool(pool, reply)) => {
                    let request_id = next_request;
                    next_request += 1;
                    pending_checks.insert(request_id, reply);
                    if let Err(end) = send(writer, &ControllerMessage::CheckPool { request_id, pool }).await {
                        return end;
                    }
                }
                Some(LinkCommand::Command(command, reply)) => {
                    let request_id = next_request;
                    next_request += 1;
                    pending_commands.insert(request_id, reply);
                    if let Err(end) = send(writer, &ControllerMessage::Command { request_id, command }).await {
                        return end;
                    }
                }
            },
            frame = frames.recv() => {
                let message = match frame {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => return SessionEnd::Lost(format!("connection lost: {e}")),
                    None => return SessionEnd::Lost("connection lost".to_string()),
                };
                last_heard = Instant::now();
                match message {
                    SatelliteMessage::Applied { generation, report } => {
                        let confirms = confirms_deletions(&report);
                        let in_use = reports_in_use(&report);
                        {
                            let mut runtime = shared.runtime.write().expect("runtime lock");
                            let entry = runtime.entry(node.clone()).or_default();
                            entry.absorb(report);
                            entry.applied_generation = Some(generation);
                            if entry.refusal.take().is_some() {
                                info!(generation, "satellite takes its desired state again");
                            }
                            entry.status = ConnectionStatus::Online;
                            entry.last_error = None;
                        }
                        progress.send_modify(|p| p.applied = Some(p.applied.unwrap_or(0).max(generation)));
                        if confirms || evacuations_pending(shared) {
                            shared.deletions_confirmed.notify_one();
                        }
                        if in_use {
                            shared.in_use_reported.notify_one();
                        }
                    }
                    SatelliteMessage::NotApplied { generation, refusal, report } => {
                        warn!(generation, %refusal, "satellite did not take the desired state");
                        {
                            let mut runtime = shared.runtime.write().expect("runtime lock");
                            let entry = runtime.entry(node.clone()).or_default();
                            entry.absorb(report);
                            if !refusal.is_transient() {
                                // Connected, but its state is not the controller's: LINSTOR's
                                // FULL_SYNC_FAILED, with the reason for 'node list'.
                                entry.status = ConnectionStatus::FullSyncFailed;
                                entry.last_error = Some(refusal.to_string());
                                entry.refusal = Some(refusal.clone());
                            }
                        }
                        // A transient cause is retried with the next ping; a refusal on
                        // principle stands until the operator acts (and is repeated whenever a
                        // change makes the controller send the state again).
                        resend_full = refusal.is_transient();
                        progress.send_modify(|p| p.not_applied = Some((generation, refusal.to_string())));
                    }
                    SatelliteMessage::Report { report } => {
                        let confirms = confirms_deletions(&report);
                        let in_use = reports_in_use(&report);
                        {
                            let mut runtime = shared.runtime.write().expect("runtime lock");
                            let entry = runtime.entry(node.clone()).or_default();
                            let applied = entry.applied_generation;
                            entry.absorb(report);
                            entry.applied_generation = entry.applied_generation.max(applied);
                        }
                        if confirms || evacuations_pending(shared) {
                            shared.deletions_confirmed.notify_one();
                        }
                        if in_use {
                            shared.in_use_reported.notify_one();
                        }
                    }
                    SatelliteMessage::CommandDone { request_id, result } => {
                        if let Some(reply) = pending_commands.remove(&request_id) {
                            let _ = reply.send(result);
                        }
                    }
                    SatelliteMessage::NeedFullState { have_generation } => {
                        info!(?have_generation, "satellite asked for its full state");
                        match send_full_state(shared, node, None, writer).await {
                            Ok(generation) => sent_generation = generation,
                            Err(end) => return end,
                        }
                    }
                    SatelliteMessage::PoolChecked { request_id, report } => {
                        if let Some(reply) = pending_checks.remove(&request_id) {
                            let _ = reply.send(Ok(report));
                        }
                    }
                    SatelliteMessage::Pong => {}
                    other @ (SatelliteMessage::Welcome { .. } | SatelliteMessage::Refused { .. }) => {
                        return SessionEnd::Lost(format!(
                            "protocol violation: satellite sent {} mid-session",
                            message_name(&other)
                        ));
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > silence_limit {
                    return SessionEnd::Lost(format!(
                        "the satellite has not answered for {} s",
                        silence_limit.as_secs()
                    ));
                }
                if let Err(end) = send(writer, &ControllerMessage::Ping).await {
                    return end;
                }
                if std::mem::take(&mut resend_full) {
                    match send_full_state(shared, node, None, writer).await {
                        Ok(generation) => {
                            info!(generation, "sent the full state again");
                            sent_generation = generation;
                        }
                        Err(end) => return end,
                    }
                }
            }
        }
    }
}

/// Whether a node is being evacuated or deleted: then any report may bring a replacement's
/// sync to its end, and the controller checks whether an evacuated resource can go
/// (`app::evacuation::finish`). Nodes are few, so this is cheap on every report.
fn evacuations_pending(shared: &Shared) -> bool {
    shared
        .cluster
        .read()
        .expect("cluster lock")
        .nodes
        .values()
        .any(|n| n.is_evacuating() || n.is_deleting())
}
