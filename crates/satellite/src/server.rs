//! The controller's connection: listen, handshake, one session at a time, and the session's
//! message loop.
//!
//! A session reads frames and hands desired states to the reconciler as events; answers
//! (`Applied`, `NeedFullState`, reports) come back through the session's outbox, written by a
//! separate writer task. So `Ping` is answered at once even while a long convergence runs.
//! A peer that sends garbage, a malformed frame or an unexpected message loses its connection;
//! the satellite keeps serving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrite_proto::{
    Capabilities, ControllerMessage, FrameError, FrameReader, FrameWriter, PROTOCOL_VERSION,
    Refusal, SAME_STATE_VERSION, SatelliteMessage, frame_reader, frame_writer, read_frame,
    write_frame,
};
use ferrite_storage::{ProviderSupport, Providers};
use ferrite_types::NodeName;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::identity::{Greeting, Identity, admit};
use crate::persist::{IDENTITY_FILE, StateDir};
use crate::reconciler::{Event, pool_report};

/// How long the `Welcome` waits for the reconciler to say which state the node holds; it
/// answers between events, so a pass in progress can keep it longer, and the controller then
/// sends the full state instead.
pub const HELD_STATE_WAIT: Duration = Duration::from_secs(2);

/// How long a new connection may take to say `Hello`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A session in which the controller sends nothing (it pings every 2 s) for this long is
/// considered dead, so a controller that vanished without closing its connection does not
/// keep the session slot, and with it every other controller, out forever.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection needs.
pub struct ServerContext {
    /// `--node-name`, if given.
    pub configured_node_name: Option<NodeName>,
    pub state_dir: Arc<StateDir>,
    /// The persisted identity; changed only by a successful handshake.
    pub identity: Mutex<Option<Identity>>,
    pub capabilities: Capabilities,
    pub hostname: String,
    pub events: Sender<Event>,
    pub providers: Arc<Providers>,
    pub support: ProviderSupport,
    /// Whether a controller session is open.
    pub session_active: AtomicBool,
    /// [`HANDSHAKE_TIMEOUT`], shorter in tests.
    pub handshake_timeout: Duration,
    /// [`SESSION_IDLE_TIMEOUT`], shorter in tests.
    pub session_idle_timeout: Duration,
}

impl ServerContext {
    fn send_event(&self, event: Event) -> bool {
        self.events.send(event).is_ok()
    }

    /// The node name for logs: configured, adopted, or not known yet.
    pub fn node_name(&self) -> String {
        if let Some(name) = &self.configured_node_name {
            return name.to_string();
        }
        self.identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|i| i.node_name.clone())
            .unwrap_or_else(|| "(unnamed)".to_string())
    }
}

/// Holds the session slot; frees it when dropped.
struct SessionSlot<'a>(&'a AtomicBool);

impl<'a> SessionSlot<'a> {
    fn claim(flag: &'a AtomicBool) -> Option<Self> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| SessionSlot(flag))
    }
}

impl Drop for SessionSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, context: Arc<ServerContext>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let context = context.clone();
                let span = info_span!("connection", node = %context.node_name(), %peer);
                tokio::spawn(handle_connection(stream, context).instrument(span));
            }
            Err(e) => {
                // E.g. out of file descriptors: wait instead of spinning.
                warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn refuse(writer: &mut FrameWriter<OwnedWriteHalf>, reason: Refusal) {
    warn!(%reason, "refusing the controller");
    if let Err(e) = write_frame(writer, &SatelliteMessage::Refused { reason }).await {
        debug!(error = %e, "could not send the refusal");
    }
}

async fn handle_connection(stream: TcpStream, context: Arc<ServerContext>) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (mut reader, mut writer) = (frame_reader(reader), frame_writer(writer));
    let hello = match tokio::time::timeout(
        context.handshake_timeout,
        read_frame::<_, ControllerMessage>(&mut reader),
    )
    .await
    {
        Err(_) => {
            warn!(
                timeout_ms = context.handshake_timeout.as_millis() as u64,
                "no Hello in time; closing"
            );
            return;
        }
        Ok(Err(FrameError::Closed)) => {
            debug!("closed before the handshake");
            return;
        }
        Ok(Err(e)) => {
            warn!(error = %e, "bad handshake frame; closing");
            return;
        }
        Ok(Ok(message)) => message,
    };
    let ControllerMessage::Hello {
        protocol_version,
        cluster_id,
        node_name,
        node_uuid,
        controller_version,
    } = hello
    else {
        warn!(message = ?hello, "expected Hello as the first message; closing");
        return;
    };
    info!(protocol_version, %cluster_id, %node_name, %controller_version, "controller says Hello");

    // Identity checks and adoption happen under the identity lock, so two controllers racing to
    // be first cannot both be adopted.
    let identity = {
        let mut current = context.identity.lock().unwrap_or_else(|e| e.into_inner());
        let greeting = Greeting {
            protocol_version,
            cluster_id: &cluster_id,
            node_name: &node_name,
        };
        match admit(
            &greeting,
            context.configured_node_name.as_ref(),
            current.as_ref(),
            context.state_dir.path(),
        ) {
            Ok(identity) => {
                if current.as_ref() != Some(&identity) {
                    if let Err(e) = context.state_dir.write(IDENTITY_FILE, &identity) {
                        error!(error = %e, "could not persist the identity; closing");
                        return;
                    }
                    info!(cluster_id = %identity.cluster_id, node_name = %identity.node_name, "identity recorded");
                    *current = Some(identity.clone());
                }
                Ok(identity)
            }
            Err(reason) => Err(reason),
        }
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(reason) => {
            refuse(&mut writer, reason).await;
            return;
        }
    };
    let Some(_slot) = SessionSlot::claim(&context.session_active) else {
        refuse(&mut writer, Refusal::AlreadyConnected).await;
        return;
    };
    let holds = if protocol_version >= SAME_STATE_VERSION {
        held_state(&context, node_uuid.clone()).await
    } else {
        None
    };
    let welcome = SatelliteMessage::Welcome {
        protocol_version: PROTOCOL_VERSION,
        node_name: identity.node_name.clone(),
        hostname: context.hostname.clone(),
        satellite_version: env!("CARGO_PKG_VERSION").to_string(),
        capabilities: context.capabilities.clone(),
        holds,
    };
    if let Err(e) = write_frame(&mut writer, &welcome).await {
        warn!(error = %e, "could not send Welcome");
        return;
    }
    info!(node = %identity.node_name, "session open");

    let (outbox, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<SatelliteMessage>();
    let writer_task = tokio::spawn(
        async move {
            while let Some(message) = outgoing.recv().await {
                if let Err(e) = write_frame(&mut writer, &message).await {
                    warn!(error = %e, "sending to the controller failed");
                    break;
                }
            }
        }
        .in_current_span(),
    );
    context.send_event(Event::ControllerConnected {
        node_name: identity.node_name.clone(),
        node_uuid,
        outbox: outbox.clone(),
    });

    let end = session_loop(&mut reader, &outbox, &context).await;
    info!(reason = %end, "session closed");
    context.send_event(Event::ControllerLost);
    // The reconciler keeps a clone of the outbox; stopping the writer closes the connection.
    writer_task.abort();
}

/// The state the node holds, for the `Welcome` to a controller of registration `node_uuid`;
/// `None` when the reconciler does not say within [`HELD_STATE_WAIT`] (busy with a long pass),
/// and the controller then sends the full state, as to a satellite that holds none.
async fn held_state(
    context: &ServerContext,
    node_uuid: String,
) -> Option<ferrite_proto::HeldState> {
    let (reply, held) = tokio::sync::oneshot::channel();
    if !context.send_event(Event::Held { node_uuid, reply }) {
        return None;
    }
    match tokio::time::timeout(HELD_STATE_WAIT, held).await {
        Ok(Ok(held)) => held,
        Ok(Err(_)) => None,
        Err(_) => {
            info!(
                wait_ms = HELD_STATE_WAIT.as_millis() as u64,
                "the reconciler did not say which state it holds in time; the controller will send the full state"
            );
            None
        }
    }
}

async fn session_loop(
    reader: &mut FrameReader<OwnedReadHalf>,
    outbox: &crate::reconciler::Outbox,
    context: &Arc<ServerContext>,
) -> String {
    loop {
        let frame = match tokio::time::timeout(
            context.session_idle_timeout,
            read_frame::<_, ControllerMessage>(reader),
        )
        .await
        {
            Err(_) => {
                return format!(
                    "nothing heard from the controller for {} ms",
                    context.session_idle_timeout.as_millis()
                );
            }
            Ok(frame) => frame,
        };
        let message = match frame {
            Ok(message) => message,
            Err(FrameError::Closed) => return "closed by the controller".to_string(),
            Err(e) => {
                warn!(error = %e, "bad frame from the controller; closing the connection");
                return format!("bad frame: {e}");
            }
        };
        match message {
            ControllerMessage::Ping => {
                let _ = outbox.send(SatelliteMessage::Pong);
            }
            ControllerMessage::ApplyState(state) => {
                debug!(generation = state.generation, base_generation = ?state.base_generation, "desired state received");
                if !context.send_event(Event::Apply {
                    state,
                    reply: outbox.clone(),
                }) {
                    return "the reconciler has stopped".to_string();
                }
            }
            ControllerMessage::ApplySameState {
                epoch,
                generation,
                digest,
            } => {
                debug!(generation, epoch, "the controller's state is the one held");
                if !context.send_event(Event::ApplySame {
                    stamp: ferrite_proto::Stamp { epoch, generation },
                    digest,
                    reply: outbox.clone(),
                }) {
                    return "the reconciler has stopped".to_string();
                }
            }
            ControllerMessage::CheckPool { request_id, pool } => {
                let context = context.clone();
                let outbox = outbox.clone();
                // Checking runs host commands; it only reads, so it need not wait for the
                // reconciler.
                tokio::task::spawn_blocking(move || {
                    let report = pool_report(&context.providers, &context.support, &pool);
                    info!(pool = %pool.name, errors = ?report.errors, "pool checked");
                    let _ = outbox.send(SatelliteMessage::PoolChecked { request_id, report });
                });
            }
            ControllerMessage::Command {
                request_id,
                command,
            } => {
                info!(request_id, ?command, "operator command received");
                if !context.send_event(Event::Command {
                    request_id,
                    command,
                    reply: outbox.clone(),
                }) {
                    return "the reconciler has stopped".to_string();
                }
            }
            ControllerMessage::Hello { .. } => {
                warn!("Hello in the middle of a session; closing the connection");
                return "protocol violation: Hello mid-session".to_string();
            }
        }
    }
}
