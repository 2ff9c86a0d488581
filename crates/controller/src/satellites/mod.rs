//! The controller's side of every satellite connection.
//!
//! One link task per node owns that node's connection (STYLE habit 1): it dials the satellite
//! at the node's active net interface, handshakes, pushes the node's full desired state, then
//! forwards deltas as the graph changes, answers keep-alives and records what the satellite
//! reports. When the connection drops it retries with backoff; a reconnect always starts with a
//! full state, so nothing missed while offline is lost.
//!
//! What satellites report (connection state, capabilities, pool capacities, volume states) is
//! kept here, next to the links, not in the persisted graph; its type is `crate::reported`'s, so
//! the rules in `app` read it without depending on the links.

pub mod desired;
pub mod inheritance;
mod link;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ferrite_proto::{DesiredState, NodeCommand, PoolReport, PoolSpec};
use ferrite_types::{ConnectionStatus, NodeName};
use tokio::sync::{mpsc, oneshot, watch};

use crate::model::Cluster;
pub use crate::reported::NodeRuntime;

/// Named thresholds of the satellite connections.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// How long a TCP connect plus handshake may take.
    pub connect: Duration,
    /// How long a mutating REST call waits for satellites to apply it before answering with a
    /// warning instead. LINSTOR waits up to 15 s for resources to become ready.
    pub apply: Duration,
    /// How often the controller pings a satellite.
    pub ping_interval: Duration,
    /// After this many ping intervals without hearing from it, a satellite counts as gone.
    pub ping_misses: u32,
    /// First and longest wait between reconnect attempts.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How long a storage pool check may take.
    pub check_pool: Duration,
    /// How long creating a node waits for its satellite to come online before answering.
    pub node_online: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            apply: Duration::from_secs(30),
            ping_interval: Duration::from_secs(2),
            ping_misses: 5,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(5),
            check_pool: Duration::from_secs(15),
            node_online: Duration::from_secs(5),
        }
    }
}

/// The progress of a link, watched by callers waiting for a change to be applied.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Counts connections; a waiter notices when the session it waited on ended.
    pub session: u64,
    pub online: bool,
    pub applied: Option<u64>,
    pub error: Option<String>,
    /// The latest generation the satellite could not take, and why.
    pub not_applied: Option<(u64, String)>,
}

enum LinkCommand {
    Push(DesiredState),
    CheckPool(PoolSpec, oneshot::Sender<Result<PoolReport, String>>),
    Command(NodeCommand, oneshot::Sender<Result<String, String>>),
    Reconnect,
}

struct Link {
    commands: mpsc::UnboundedSender<LinkCommand>,
    progress: watch::Receiver<Progress>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    cluster: Arc<RwLock<Cluster>>,
    /// The revision up to which every change is on disk (`crate::durable`): a full state,
    /// built from the graph, goes out once it is.
    durable: tokio::sync::watch::Receiver<u64>,
    timeouts: Timeouts,
    controller_version: String,
    runtime: RwLock<HashMap<NodeName, NodeRuntime>>,
    /// Woken when a satellite confirms deletions, so the controller can finish them.
    deletions_confirmed: Arc<tokio::sync::Notify>,
    /// Woken when a satellite reports a replicated resource in use, so the controller can keep
    /// a tiebreaker its node uses (`crate::app::tiebreaker::keep_used`).
    in_use_reported: Arc<tokio::sync::Notify>,
    /// Permits for a node's bulk work: building, digesting or encoding its full state, and
    /// decoding its whole report ([`bulk_workers`] at once).
    bulk: Arc<tokio::sync::Semaphore>,
}

/// How many nodes' bulk work (a full state built or digested, a whole report decoded) runs at
/// once: half the machine's cores, at least one. When a controller starts, every node
/// connects at once, and each such piece is tens of milliseconds of CPU at 12,500 resources
/// a node: run all together, sixteen of them crowd out the threads that answer REST
/// requests, and the first listing after a start waits for all of them.
fn bulk_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// All satellite links.
#[derive(Clone)]
pub struct Satellites {
    shared: Arc<Shared>,
    links: Arc<Mutex<HashMap<NodeName, Link>>>,
}

/// Why a change was not confirmed by a satellite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotApplied {
    #[error("satellite '{node}' is not connected ({reason})")]
    Offline { node: String, reason: String },
    #[error("satellite '{node}' did not confirm within {seconds} s")]
    Timeout { node: String, seconds: u64 },
    #[error("satellite '{node}' could not take the change: {reason}")]
    Refused { node: String, reason: String },
}

impl Satellites {
    pub fn new(
        cluster: Arc<RwLock<Cluster>>,
        durable: tokio::sync::watch::Receiver<u64>,
        timeouts: Timeouts,
        controller_version: String,
    ) -> Self {
        Satellites {
            shared: Arc::new(Shared {
                cluster,
                durable,
                timeouts,
                controller_version,
                runtime: RwLock::new(HashMap::new()),
                deletions_confirmed: Arc::new(tokio::sync::Notify::new()),
                in_use_reported: Arc::new(tokio::sync::Notify::new()),
                bulk: Arc::new(tokio::sync::Semaphore::new(bulk_workers())),
            }),
            links: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.shared.timeouts
    }

    /// Notified whenever a satellite reports confirmed deletions.
    pub fn deletions_confirmed(&self) -> Arc<tokio::sync::Notify> {
        self.shared.deletions_confirmed.clone()
    }

    /// Notified whenever a satellite reports a replicated resource in use.
    pub fn in_use_reported(&self) -> Arc<tokio::sync::Notify> {
        self.shared.in_use_reported.clone()
    }

    /// Starts the link to `node` if it has none.
    pub fn start(&self, node: &NodeName) {
        let mut links = self.links.lock().expect("links lock");
        if links.contains_key(node) {
            return;
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        self.shared
            .runtime
            .write()
            .expect("runtime lock")
            .entry(node.clone())
            .or_default();
        let task = tokio::spawn(link::run(
            self.shared.clone(),
            node.clone(),
            receiver,
            progress_tx,
        ));
        links.insert(
            node.clone(),
            Link {
                commands,
                progress,
                task,
            },
        );
    }

    /// Stops the link to `node` and forgets what it reported.
    pub fn stop(&self, node: &NodeName) {
        if let Some(link) = self.links.lock().expect("links lock").remove(node) {
            link.task.abort();
        }
        self.shared
            .runtime
            .write()
            .expect("runtime lock")
            .remove(node);
    }

    /// Drops the current connection (if any) and dials again at once, e.g. after the node's
    /// address changed.
    pub fn reconnect(&self, node: &NodeName) {
        if let Some(link) = self.links.lock().expect("links lock").get(node) {
            let _ = link.commands.send(LinkCommand::Reconnect);
        }
    }

    /// Queues a desired-state delta for `node`. Never blocks; a disconnected link drops it,
    /// since it sends the full state when it reconnects.
    pub fn push(&self, node: &NodeName, state: DesiredState) {
        if let Some(link) = self.links.lock().expect("links lock").get(node) {
            let _ = link.commands.send(LinkCommand::Push(state));
        }
    }

    fn progress(&self, node: &NodeName) -> Option<watch::Receiver<Progress>> {
        self.links
            .lock()
            .expect("links lock")
            .get(node)
            .map(|l| l.progress.clone())
    }

    /// Waits until `node` has applied `generation`.
    pub async fn wait_applied(&self, node: &NodeName, generation: u64) -> Result<(), NotApplied> {
        let timeout = self.shared.timeouts.apply;
        let offline = |reason: String| NotApplied::Offline {
            node: node.to_string(),
            reason,
        };
        let Some(mut progress) = self.progress(node) else {
            return Err(offline("the node has no satellite".to_string()));
        };
        let start = progress.borrow().clone();
        if !start.online {
            return Err(offline(
                start.error.unwrap_or_else(|| "connecting".to_string()),
            ));
        }
        let result = tokio::time::timeout(
            timeout,
            progress.wait_for(|p| {
                p.session != start.session
                    || !p.online
                    || p.applied.is_some_and(|g| g >= generation)
                    || p.not_applied
                        .as_ref()
                        .is_some_and(|(g, _)| *g >= generation)
            }),
        )
        .await;
        match result {
            Err(_) => Err(NotApplied::Timeout {
                node: node.to_string(),
                seconds: timeout.as_secs(),
            }),
            Ok(Err(_)) => Err(offline("the link was stopped".to_string())),
            Ok(Ok(p))
                if p.applied.is_some_and(|g| g >= generation) && p.session == start.session =>
            {
                Ok(())
            }
            Ok(Ok(p)) if p.session == start.session && p.online => match &p.not_applied {
                Some((_, reason)) => Err(NotApplied::Refused {
                    node: node.to_string(),
                    reason: reason.clone(),
                }),
                None => Err(offline("connection lost".into())),
            },
            Ok(Ok(p)) => Err(offline(
                p.error.clone().unwrap_or_else(|| "connection lost".into()),
            )),
        }
    }

    /// Waits until `node` is online (connected and has applied its full state), up to `timeout`.
    pub async fn wait_online(&self, node: &NodeName, timeout: Duration) -> Result<(), String> {
        let Some(mut progress) = self.progress(node) else {
            return Err("the node has no satellite".to_string());
        };
        let outcome = tokio::time::timeout(
            timeout,
            progress.wait_for(|p| p.online && p.applied.is_some()),
        )
        .await
        .map(|r| r.map(|_| ()));
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the link was stopped".to_string()),
            Err(_) => Err(progress
                .borrow()
                .error
                .clone()
                .unwrap_or_else(|| "the satellite did not answer".to_string())),
        }
    }

    /// Asks the satellite of `node` whether `pool` is usable.
    pub async fn check_pool(&self, node: &NodeName, pool: PoolSpec) -> Result<PoolReport, String> {
        let (reply, answer) = oneshot::channel();
        {
            let links = self.links.lock().expect("links lock");
            let link = links
                .get(node)
                .ok_or_else(|| "the node has no satellite".to_string())?;
            link.commands
                .send(LinkCommand::CheckPool(pool, reply))
                .map_err(|_| "the link was stopped".to_string())?;
        }
        match tokio::time::timeout(self.shared.timeouts.check_pool, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the connection was lost before the satellite answered".to_string()),
            Err(_) => Err(format!(
                "the satellite did not answer within {} s",
                self.shared.timeouts.check_pool.as_secs()
            )),
        }
    }

    /// Sends an operator's command to the satellite of `node` and waits for its answer.
    pub async fn command(&self, node: &NodeName, command: NodeCommand) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        {
            let links = self.links.lock().expect("links lock");
            let link = links
                .get(node)
                .ok_or_else(|| "the node has no satellite".to_string())?;
            link.commands
                .send(LinkCommand::Command(command, reply))
                .map_err(|_| "the link was stopped".to_string())?;
        }
        match tokio::time::timeout(self.shared.timeouts.apply, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the connection was lost before the satellite answered".to_string()),
            Err(_) => Err(format!(
                "the satellite did not answer within {} s",
                self.shared.timeouts.apply.as_secs()
            )),
        }
    }

    /// Runs `f` on what the satellites reported.
    pub fn with_runtime<T>(&self, f: impl FnOnce(&HashMap<NodeName, NodeRuntime>) -> T) -> T {
        f(&self.shared.runtime.read().expect("runtime lock"))
    }

    /// The connection status of `node`.
    pub fn status(&self, node: &NodeName) -> ConnectionStatus {
        self.with_runtime(|r| {
            r.get(node)
                .map(|n| n.status)
                .unwrap_or(ConnectionStatus::Offline)
        })
    }
}

#[cfg(test)]
mod tests {
    use ferrite_proto::{NodeReport, VolumeReport};

    use super::*;

    fn volume(resource: &str, number: u16, device: &str) -> VolumeReport {
        VolumeReport {
            resource: resource.to_string(),
            volume_number: number,
            device_path: Some(device.to_string()),
            allocated_size_kib: Some(0),
            usable_size_kib: Some(4096),
            disk_state: "UpToDate".to_string(),
            error: None,
        }
    }

    fn report(volumes: Vec<VolumeReport>, only: Option<&[&str]>) -> NodeReport {
        NodeReport {
            generation: Some(1),
            volumes,
            only_resources: only.map(|o| o.iter().map(|r| r.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn a_scoped_report_replaces_only_the_resources_it_names() {
        let mut runtime = NodeRuntime::default();
        runtime.absorb(report(
            vec![
                volume("web", 0, "/dev/loop0"),
                volume("web", 1, "/dev/loop1"),
                volume("db", 0, "/dev/loop2"),
            ],
            None,
        ));
        // web lost volume 1 and moved volume 0; db is not named and stays; new is added; old
        // is named without volumes, so it is gone.
        runtime.absorb(report(
            vec![
                volume("WEB", 0, "/dev/loop5"),
                volume("new", 0, "/dev/loop6"),
            ],
            Some(&["web", "new", "old"]),
        ));
        let devices = |resource: &str| -> Vec<String> {
            runtime
                .volumes
                .get(resource)
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| v.device_path.as_deref().map(String::from))
                .collect()
        };
        assert_eq!(devices("WEB"), ["/dev/loop5"]);
        assert_eq!(devices("DB"), ["/dev/loop2"]);
        assert_eq!(devices("NEW"), ["/dev/loop6"]);
        assert!(!runtime.volumes.contains_key("OLD"));

        // A complete report replaces everything.
        runtime.absorb(report(vec![volume("db", 0, "/dev/loop2")], None));
        assert_eq!(runtime.volumes.len(), 1);
    }
}
